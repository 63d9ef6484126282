//! A builder for pgproxy TOML configs pointing at test nodes, and the `listen` rewrite the
//! [`super::Proxy`] applies so tests never pick ports themselves.

use std::fmt::Display;

/// A pgproxy config: `[general]`, the three test users (`app`, `md5user`, `trustuser`, matching
/// the roles every [`super::PgNode`] has), database `app`, and one shard `s0` with the given nodes.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Ports of the nodes of shard `s0` on 127.0.0.1.
    pub nodes: Vec<u16>,
    /// `general` entries in order, each `key = <raw TOML value>`.
    general: Vec<(String, String)>,
    /// `[[users]]` entries: name and `key = <raw TOML value>` lines.
    users: Vec<(String, Vec<(String, String)>)>,
    /// `[[databases]]` names.
    pub databases: Vec<String>,
}

/// `s` as a TOML basic string.
pub fn toml_str(s: &str) -> String {
    let escaped: String = s
        .chars()
        .flat_map(|c| match c {
            '"' => vec!['\\', '"'],
            '\\' => vec!['\\', '\\'],
            c => vec![c],
        })
        .collect();
    format!("\"{escaped}\"")
}

impl ProxyConfig {
    /// Transaction pooling, default_pool_size 4, checkout_timeout_ms 2000, one node.
    pub fn new(node_port: u16) -> ProxyConfig {
        Self::with_nodes(&[node_port])
    }

    /// Like [`ProxyConfig::new`] with several nodes in shard `s0`.
    pub fn with_nodes(node_ports: &[u16]) -> ProxyConfig {
        let user = |name: &str, fields: &[(&str, &str)]| {
            let fields = fields
                .iter()
                .map(|(k, v)| (k.to_string(), toml_str(v)))
                .collect();
            (name.to_string(), fields)
        };
        ProxyConfig {
            nodes: node_ports.to_vec(),
            general: vec![
                ("pool_mode".into(), toml_str("transaction")),
                ("default_pool_size".into(), "4".into()),
                ("checkout_timeout_ms".into(), "2000".into()),
            ],
            users: vec![
                user("app", &[("password", "secret")]),
                user(
                    "md5user",
                    &[("password", "md5pass"), ("auth_method", "md5")],
                ),
                user("trustuser", &[("auth_method", "trust")]),
            ],
            databases: vec!["app".into()],
        }
    }

    /// Sets `[general] key = value` (`value` is raw TOML: use [`toml_str`] for strings).
    pub fn general(mut self, key: &str, value: impl Display) -> Self {
        set(&mut self.general, key, value.to_string());
        self
    }

    /// `pool_mode = "session"` or `"transaction"`.
    pub fn pool_mode(self, mode: &str) -> Self {
        self.general("pool_mode", toml_str(mode))
    }

    /// `default_pool_size`.
    pub fn pool_size(self, n: usize) -> Self {
        self.general("default_pool_size", n)
    }

    /// `checkout_timeout_ms`.
    pub fn checkout_timeout_ms(self, ms: u64) -> Self {
        self.general("checkout_timeout_ms", ms)
    }

    /// Sets `key = value` on user `name` (raw TOML value), adding the user if missing.
    pub fn user(mut self, name: &str, key: &str, value: impl Display) -> Self {
        let idx = match self.users.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                self.users.push((name.to_string(), Vec::new()));
                self.users.len() - 1
            }
        };
        set(&mut self.users[idx].1, key, value.to_string());
        self
    }

    /// Sets user `name`'s password.
    pub fn password(self, name: &str, password: &str) -> Self {
        self.user(name, "password", toml_str(password))
    }

    /// The TOML text (with a placeholder `listen` the [`super::Proxy`] replaces).
    pub fn render(&self) -> String {
        let mut out = String::from("[general]\nlisten = \"127.0.0.1:6432\"\n");
        for (k, v) in &self.general {
            out += &format!("{k} = {v}\n");
        }
        for (name, fields) in &self.users {
            out += &format!("\n[[users]]\nname = {}\n", toml_str(name));
            for (k, v) in fields {
                out += &format!("{k} = {v}\n");
            }
        }
        for db in &self.databases {
            out += &format!("\n[[databases]]\nname = {}\n", toml_str(db));
        }
        out += "\n[[shards]]\nname = \"s0\"\n";
        for port in &self.nodes {
            out += &format!("\n[[shards.nodes]]\nhost = \"127.0.0.1\"\nport = {port}\n");
        }
        out
    }
}

fn set(entries: &mut Vec<(String, String)>, key: &str, value: String) {
    match entries.iter_mut().find(|(k, _)| k == key) {
        Some(e) => e.1 = value,
        None => entries.push((key.to_string(), value)),
    }
}

/// `toml` with `[general] listen` set to 127.0.0.1:`port` (replaced in place, so line numbers
/// stay; inserted after `[general]`, or as a new first table, when missing).
pub fn with_listen(toml: &str, port: u16) -> String {
    let listen = format!("listen = \"127.0.0.1:{port}\"");
    let mut out: Vec<String> = Vec::new();
    let mut in_general = false;
    let mut done = false;
    for line in toml.lines() {
        let t = line.trim_start();
        if t.starts_with('[') {
            if in_general && !done {
                out.push(listen.clone());
                done = true;
            }
            in_general = t.starts_with("[general]");
        }
        let is_listen =
            t.starts_with("listen") && t["listen".len()..].trim_start().starts_with('=');
        if in_general && is_listen {
            out.push(listen.clone());
            done = true;
        } else {
            out.push(line.to_string());
        }
    }
    if in_general && !done {
        out.push(listen.clone());
        done = true;
    }
    let mut text = out.join("\n") + "\n";
    if !done {
        text = format!("[general]\n{listen}\n\n{text}");
    }
    text
}
