//! Semantic checks of a deserialized `Config`: everything that is well-typed TOML but cannot
//! work (a missing password, a pool of size 0, a listen address without a port, …).
//!
//! Pure: each issue carries the config path of the offending entry or key, which the caller
//! turns into a line number.

use super::locate::Seg::{self, Index as I, Key as K};
use crate::config::{is_hashed_password, AuthMethod, Config, ServerTls};
use crate::protocol::scram::Verifier;
use std::collections::HashMap;

/// Smallest accepted `max_message_size`: 8 KiB.
pub(super) const MIN_MESSAGE_SIZE: usize = 8 * 1024;
/// Largest accepted `max_message_size`: 1 GiB, PostgreSQL's own limit for a field.
pub(super) const MAX_MESSAGE_SIZE: usize = 1024 * 1024 * 1024;

/// One semantic problem and where it is.
#[derive(Debug)]
pub(super) struct Issue {
    /// Path of the key or entry at fault (just `users` for "no users").
    pub path: Vec<Seg>,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Runs every check and returns all issues found.
pub(super) fn check(config: &Config) -> Vec<Issue> {
    let mut issues = Vec::new();
    check_general(config, &mut issues);
    check_users(config, &mut issues);
    check_databases(config, &mut issues);
    check_shards(config, &mut issues);
    super::sharding::check_sharding(config, &mut issues);
    issues
}

fn issue(issues: &mut Vec<Issue>, path: &[Seg], message: String) {
    issues.push(Issue {
        path: path.to_vec(),
        message,
    });
}

fn check_general(config: &Config, issues: &mut Vec<Issue>) {
    let g = &config.general;
    let at = |key| [K("general"), K(key)];
    if let Err(why) = check_listen(&g.listen) {
        let msg = format!(
            "general.listen = {:?}: {why}; expected host:port, e.g. \"0.0.0.0:6432\"",
            g.listen
        );
        issue(issues, &at("listen"), msg);
    }
    if g.max_client_conn == 0 {
        issue(
            issues,
            &at("max_client_conn"),
            "general.max_client_conn must be at least 1".into(),
        );
    }
    if g.default_pool_size == 0 {
        issue(
            issues,
            &at("default_pool_size"),
            "general.default_pool_size must be at least 1".into(),
        );
    }
    if g.min_pool_size > g.default_pool_size {
        let msg = format!(
            "general.min_pool_size ({}) must not exceed general.default_pool_size ({})",
            g.min_pool_size, g.default_pool_size
        );
        issue(issues, &at("min_pool_size"), msg);
    }
    if !(MIN_MESSAGE_SIZE..=MAX_MESSAGE_SIZE).contains(&g.max_message_size) {
        let msg = format!(
            "general.max_message_size ({}) must be between {MIN_MESSAGE_SIZE} (8 KiB) and {MAX_MESSAGE_SIZE} (1 GiB)",
            g.max_message_size
        );
        issue(issues, &at("max_message_size"), msg);
    }
    for (key, value) in [
        ("checkout_timeout_ms", g.checkout_timeout_ms),
        ("connect_timeout_ms", g.connect_timeout_ms),
    ] {
        if value == 0 {
            issue(
                issues,
                &at(key),
                format!("general.{key} must be greater than 0"),
            );
        }
    }
    match (&g.tls_cert_file, &g.tls_key_file) {
        (Some(_), None) => issue(
            issues,
            &at("tls_cert_file"),
            "general.tls_cert_file is set but general.tls_key_file is not: set both to offer TLS, or neither".into(),
        ),
        (None, Some(_)) => issue(
            issues,
            &at("tls_key_file"),
            "general.tls_key_file is set but general.tls_cert_file is not: set both to offer TLS, or neither".into(),
        ),
        _ => {}
    }
    if g.server_tls == ServerTls::VerifyFull && g.server_tls_ca_file.is_none() {
        issue(
            issues,
            &at("server_tls"),
            "general.server_tls = \"verify-full\" needs general.server_tls_ca_file (a PEM CA bundle)".into(),
        );
    }
}

/// `host:port` with a non-empty host (`[v6]` allowed) and a port that fits 16 bits.
fn check_listen(listen: &str) -> Result<(), &'static str> {
    let (host, port) = listen.rsplit_once(':').ok_or("no port")?;
    if host.is_empty() {
        return Err("empty host");
    }
    let bracketed = host.starts_with('[') || host.ends_with(']');
    if bracketed && !(host.starts_with('[') && host.ends_with(']') && host.len() > 2) {
        return Err("unbalanced brackets around an IPv6 address");
    }
    if !bracketed && host.contains(':') {
        return Err("an IPv6 address must be in brackets");
    }
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) || port.parse::<u16>().is_err()
    {
        return Err("invalid port");
    }
    Ok(())
}

/// Names appearing twice: `(index of the repeat, index of the first)`.
fn duplicates<'a>(names: impl Iterator<Item = &'a str>) -> Vec<(usize, usize)> {
    let mut first: HashMap<&str, usize> = HashMap::new();
    let mut dups = Vec::new();
    for (i, name) in names.enumerate() {
        match first.get(name) {
            Some(&j) => dups.push((i, j)),
            None => {
                first.insert(name, i);
            }
        }
    }
    dups
}

fn check_users(config: &Config, issues: &mut Vec<Issue>) {
    if config.users.is_empty() {
        issue(
            issues,
            &[K("users")],
            "no [[users]] entry: at least one user is required".into(),
        );
    }
    for (i, j) in duplicates(config.users.iter().map(|u| u.name.as_str())) {
        let msg = format!(
            "user {:?} is defined twice (first as users[{j}])",
            config.users[i].name
        );
        issue(issues, &[K("users"), I(i), K("name")], msg);
    }
    for (i, user) in config.users.iter().enumerate() {
        let at = |key| [K("users"), I(i), K(key)];
        let who = format!("user {:?}", user.name);
        if user.name.is_empty() {
            issue(issues, &at("name"), "user name must not be empty".into());
        }
        if user.pool_size == Some(0) {
            issue(
                issues,
                &at("pool_size"),
                format!("{who}: pool_size must be at least 1"),
            );
        }
        let auth = user.auth(&config.general);
        match user.password.as_deref() {
            None | Some("") if auth != AuthMethod::Trust => {
                let msg = format!("{who}: a password is required unless auth_method = \"trust\"");
                issue(issues, &[K("users"), I(i)], msg);
            }
            Some(p) => check_password(&who, p, auth, &at("password"), issues),
            None => {}
        }
    }
}

/// A stored hash must fit the method that will check it.
fn check_password(who: &str, p: &str, auth: AuthMethod, at: &[Seg], issues: &mut Vec<Issue>) {
    let is_scram = p.starts_with("SCRAM-SHA-256$");
    if is_scram && Verifier::parse(p).is_none() {
        let msg = format!(
            "{who}: malformed SCRAM-SHA-256 verifier; copy it whole from pg_authid.rolpassword"
        );
        issue(issues, at, msg);
    }
    let is_md5 = is_hashed_password(p) && !is_scram;
    let msg = match auth {
        AuthMethod::ScramSha256 if is_md5 => format!(
            "{who}: an md5 hash cannot check SCRAM-SHA-256 logins; give the plaintext password or \
             a SCRAM-SHA-256 verifier, or set auth_method = \"md5\" for this user"
        ),
        AuthMethod::Md5 if is_scram => format!(
            "{who}: a SCRAM-SHA-256 verifier cannot check md5 logins; set auth_method = \
             \"scram-sha-256\" (recommended), or give the plaintext password or an md5 hash"
        ),
        _ => return,
    };
    issue(issues, at, msg);
}

fn check_databases(config: &Config, issues: &mut Vec<Issue>) {
    for (i, j) in duplicates(config.databases.iter().map(|d| d.name.as_str())) {
        let msg = format!(
            "database {:?} is defined twice (first as databases[{j}])",
            config.databases[i].name
        );
        issue(issues, &[K("databases"), I(i), K("name")], msg);
    }
    for (i, db) in config.databases.iter().enumerate() {
        if db.name.is_empty() {
            issue(
                issues,
                &[K("databases"), I(i), K("name")],
                "database name must not be empty".into(),
            );
        }
        if db.pool_size == Some(0) {
            let msg = format!("database {:?}: pool_size must be at least 1", db.name);
            issue(issues, &[K("databases"), I(i), K("pool_size")], msg);
        }
    }
}

fn check_shards(config: &Config, issues: &mut Vec<Issue>) {
    if config.shards.is_empty() {
        issue(
            issues,
            &[K("shards")],
            "no [[shards]] entry: at least one shard with one node is required".into(),
        );
    }
    for (i, j) in duplicates(config.shards.iter().map(|s| s.name.as_str())) {
        let msg = format!(
            "shard {:?} is defined twice (first as shards[{j}])",
            config.shards[i].name
        );
        issue(issues, &[K("shards"), I(i), K("name")], msg);
    }
    for (i, shard) in config.shards.iter().enumerate() {
        if shard.name.is_empty() {
            issue(
                issues,
                &[K("shards"), I(i), K("name")],
                "shard name must not be empty".into(),
            );
        }
        if shard.nodes.is_empty() {
            let msg = format!(
                "shard {:?} has no nodes: add a [[shards.nodes]] entry",
                shard.name
            );
            issue(issues, &[K("shards"), I(i), K("nodes")], msg);
        }
        for (n, node) in shard.nodes.iter().enumerate() {
            let at = |key| [K("shards"), I(i), K("nodes"), I(n), K(key)];
            if node.host.trim().is_empty() {
                let msg = format!("shard {:?}, node {n}: host must not be empty", shard.name);
                issue(issues, &at("host"), msg);
            }
            if node.port == 0 {
                let msg = format!("shard {:?}, node {n}: port must not be 0", shard.name);
                issue(issues, &at("port"), msg);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_listen;

    #[test]
    fn listen_addresses() {
        let cases = [
            ("127.0.0.1:6432", Ok(())),
            ("0.0.0.0:0", Ok(())),
            ("localhost:6432", Ok(())),
            ("[::1]:6432", Ok(())),
            ("[::]:65535", Ok(())),
            ("127.0.0.1", Err("no port")),
            (":6432", Err("empty host")),
            ("::1:6432", Err("an IPv6 address must be in brackets")),
            (
                "[::1:6432",
                Err("unbalanced brackets around an IPv6 address"),
            ),
            ("[]:6432", Err("unbalanced brackets around an IPv6 address")),
            ("host:65536", Err("invalid port")),
            ("host:-1", Err("invalid port")),
            ("host:+1", Err("invalid port")),
            ("host:", Err("invalid port")),
        ];
        for (listen, want) in cases {
            assert_eq!(check_listen(listen), want, "{listen}");
        }
    }
}
