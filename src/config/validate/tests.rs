//! Table-driven tests of config validation: text in, problems (line + message fragment) out.

use super::*;

/// A valid remainder of a config (8 lines) for cases that only touch `[general]`.
const REST: &str = r#"[[users]]
name = "app"
password = "pw"

[[shards]]
name = "main"
[[shards.nodes]]
host = "127.0.0.1"
"#;

/// `[general]` with `body` on line 2 onwards, followed by REST.
fn general(body: &str) -> String {
    format!("[general]\n{body}\n{REST}")
}

/// A valid `[[shards]]` block (4 lines) for cases about users and databases.
const SHARD: &str = r#"[[shards]]
name = "main"
[[shards.nodes]]
host = "127.0.0.1"
"#;

fn with_shard(body: &str) -> String {
    format!("{body}\n{SHARD}")
}

const VERIFIER: &str = "SCRAM-SHA-256$4096:o6owG7An7YCe+C96zRooiQ==$yvKyvpvADLOWvuNP/zX0dXlXPX1rrSATSeO7o1itaUU=:+OggruqpgDc79O4j3sMIzK54Ugd+MZKAjBRhsaszFvk=";
const MD5: &str = "md521f3163f8f86fa10bdefbfbd502a8f06";

/// Validates `text` and returns its problems as (line, message).
fn problems(text: &str) -> Vec<(Option<usize>, String)> {
    match Config::from_toml(text) {
        Ok(_) => vec![],
        Err(e) => e
            .problems()
            .iter()
            .map(|p| (p.line, p.message.clone()))
            .collect(),
    }
}

/// (name, config text, expected problems as (line, message fragment)).
type Case = (&'static str, String, Vec<(Option<usize>, &'static str)>);

#[test]
fn reports_each_problem_at_its_line() {
    let user = |extra: &str| with_shard(&format!("[[users]]\nname = \"app\"\n{extra}"));
    let cases: Vec<Case> = vec![
        ("valid", general("listen = \"0.0.0.0:6432\""), vec![]),
        ("syntax", general("listen = \"x\nfoo"), vec![(Some(2), "TOML syntax error")]),
        ("unclosed table", "[general\n".into(), vec![(Some(1), "TOML syntax error")]),
        ("unknown key", general("lisen = \"x\""), vec![(Some(2), "general.lisen: unknown key `lisen`; did you mean `listen`?")]),
        ("unknown key, no close match", general("colour = 1"), vec![(Some(2), "unknown key `colour`, expected one of `listen`")]),
        ("unknown top-level table", format!("[generl]\n{REST}"), vec![(Some(1), "unknown key `generl`")]),
        (
            "every unknown key and type error",
            format!("[general]\nfoo = 1\ndefault_pool_size = \"x\"\nbar = 2\n[[users]]\nname = \"a\"\npasswrd = \"x\"\n{SHARD}"),
            vec![
                (Some(2), "unknown key `foo`"),
                (Some(3), "general.default_pool_size: invalid type: string \"x\", expected usize"),
                (Some(4), "unknown key `bar`"),
                (Some(5), "user \"a\": a password is required"),
                (Some(7), "users[0].passwrd: unknown key `passwrd`"),
            ],
        ),
        ("auth methods as PostgreSQL spells them", general("auth_method = \"scram-sha-256\""), vec![]),
        ("bad enum", general("pool_mode = \"sesion\""), vec![(Some(2), "unknown variant `sesion`")]),
        ("dotted key", format!("general.listen = 5\n{REST}"), vec![(Some(1), "general.listen: invalid type")]),
        ("listen without port", general("listen = \"127.0.0.1\""), vec![(Some(2), "general.listen = \"127.0.0.1\": no port")]),
        ("listen bad port", general("listen = \"h:99999\""), vec![(Some(2), "invalid port")]),
        ("pool size 0", general("default_pool_size = 0"), vec![(Some(2), "default_pool_size must be at least 1")]),
        ("min above default", general("default_pool_size = 2\nmin_pool_size = 3"), vec![(Some(3), "min_pool_size (3) must not exceed")]),
        ("min above implicit default", general("min_pool_size = 21"), vec![(Some(2), "default_pool_size (20)")]),
        ("max_client_conn 0", general("max_client_conn = 0"), vec![(Some(2), "max_client_conn must be at least 1")]),
        ("message too small", general("max_message_size = 8191"), vec![(Some(2), "max_message_size (8191) must be between")]),
        ("message too big", general("max_message_size = 1073741825"), vec![(Some(2), "1 GiB")]),
        ("message bounds ok", general("max_message_size = 8192"), vec![]),
        ("checkout timeout 0", general("checkout_timeout_ms = 0"), vec![(Some(2), "checkout_timeout_ms must be greater than 0")]),
        ("connect timeout 0", general("connect_timeout_ms = 0"), vec![(Some(2), "connect_timeout_ms must be greater than 0")]),
        ("idle timeout 0 is never", general("idle_timeout_ms = 0\nserver_lifetime_ms = 0"), vec![]),
        ("cert without key", general("tls_cert_file = \"c.pem\""), vec![(Some(2), "tls_key_file is not")]),
        ("key without cert", general("\ntls_key_file = \"k.pem\""), vec![(Some(3), "tls_cert_file is not")]),
        ("cert and key", general("tls_cert_file = \"c\"\ntls_key_file = \"k\""), vec![]),
        ("verify-full without ca", general("server_tls = \"verify-full\""), vec![(Some(2), "needs general.server_tls_ca_file")]),
        ("verify-full with ca", general("server_tls = \"verify-full\"\nserver_tls_ca_file = \"ca\""), vec![]),
        ("no users", SHARD.to_string(), vec![(None, "no [[users]] entry")]),
        (
            "duplicate user",
            with_shard("[[users]]\nname = \"a\"\npassword = \"x\"\n[[users]]\nname = \"a\"\npassword = \"y\""),
            vec![(Some(5), "user \"a\" is defined twice (first as users[0])")],
        ),
        ("empty user name", user("password = \"x\"").replace("\"app\"", "\"\""), vec![(Some(2), "user name must not be empty")]),
        ("password missing", user(""), vec![(Some(1), "user \"app\": a password is required unless auth_method = \"trust\"")]),
        ("password empty", user("password = \"\""), vec![(Some(1), "a password is required")]),
        ("trust needs no password", user("auth_method = \"trust\""), vec![]),
        ("trust by default", format!("[general]\nauth_method = \"trust\"\n{}", user("")), vec![]),
        ("md5 hash with scram", user(&format!("password = \"{MD5}\"")), vec![(Some(3), "an md5 hash cannot check SCRAM-SHA-256 logins")]),
        ("md5 hash with md5", user(&format!("password = \"{MD5}\"\nauth_method = \"md5\"")), vec![]),
        ("verifier with scram", user(&format!("password = \"{VERIFIER}\"")), vec![]),
        (
            "verifier with general md5",
            format!("[general]\nauth_method = \"md5\"\n{}", user(&format!("password = \"{VERIFIER}\""))),
            vec![(Some(5), "a SCRAM-SHA-256 verifier cannot check md5 logins; set auth_method = \"scram-sha-256\"")],
        ),
        ("malformed verifier", user("password = \"SCRAM-SHA-256$4096:xx\""), vec![(Some(3), "malformed SCRAM-SHA-256 verifier")]),
        ("user pool size 0", user("password = \"x\"\npool_size = 0"), vec![(Some(4), "user \"app\": pool_size must be at least 1")]),
        (
            "a wrong value hides the checks of its entry",
            format!("[general]\ntls_key_file = 5\n{REST}"),
            vec![(Some(2), "general.tls_key_file: invalid type: integer `5`")],
        ),
        (
            "user name of wrong type is reported once",
            with_shard("[[users]]\nname = 5\npassword = \"x\""),
            vec![(Some(2), "users[0].name: invalid type: integer `5`")],
        ),
        ("user without name", with_shard("[[users]]\npassword = \"x\""), vec![(Some(1), "users[0]: missing key `name`")]),
        (
            "duplicate database",
            general("").replace("[[shards]]", "[[databases]]\nname = \"d\"\n[[databases]]\nname = \"d\"\npool_size = 0\n[[shards]]"),
            vec![
                (Some(10), "database \"d\" is defined twice (first as databases[0])"),
                (Some(11), "database \"d\": pool_size must be at least 1"),
            ],
        ),
        ("no shards", general("").replace(SHARD, ""), vec![(None, "no [[shards]] entry")]),
        (
            "duplicate shard, no nodes",
            format!("{}[[shards]]\nname = \"main\"\nnodes = []\n", general("")),
            vec![
                (Some(7), "2 shards but no [[sharding.tables]]"),
                (Some(12), "shard \"main\" is defined twice (first as shards[0])"),
                (Some(13), "shard \"main\" has no nodes"),
            ],
        ),
        (
            "bad node",
            general("").replace("host = \"127.0.0.1\"", "host = \"\"\nport = 0"),
            vec![
                (Some(10), "shard \"main\", node 0: host must not be empty"),
                (Some(11), "shard \"main\", node 0: port must not be 0"),
            ],
        ),
        (
            "inline node with port 0",
            format!("{}[[shards]]\nname = \"b\"\nnodes = [{{ host = \"h\" }},\n  {{ host = \"h\", port = 0 }}]\n", general("")),
            vec![(Some(7), "2 shards but no [[sharding.tables]]"), (Some(14), "shard \"b\", node 1: port must not be 0")],
        ),
        ("node port too big", general("").replace("host = \"127.0.0.1\"", "host = \"h\"\nport = 70000"), vec![(Some(11), "shards[0].nodes[0].port: invalid value")]),
        ("unknown node key", general("").replace("host = \"127.0.0.1\"", "host = \"h\"\nprot = 1"), vec![(Some(11), "shards[0].nodes[0].prot: unknown key `prot`")]),
        (
            "inline node without host",
            format!("{}[[shards]]\nname = \"b\"\nnodes = [{{ port = 1 }}]\n", general("")),
            vec![(Some(13), "shards[1].nodes[0]: missing key `host`")],
        ),
        (
            "a dropped shard does not hide other problems",
            "[general]\nlisten = \"x\"\n[[users]]\nname = \"a\"\n[[shards]]\nname = \"s\"\nnodes = [{ port = 1 }]\n".into(),
            vec![
                (Some(2), "general.listen = \"x\": no port"),
                (Some(3), "user \"a\": a password is required"),
                (Some(7), "shards[0].nodes[0]: missing key `host`"),
            ],
        ),
        (
            "node table after another table, wrong host type",
            "[[users]]\nname = \"a\"\npassword = \"p\"\n[[shards]]\nname = \"a\"\n[general]\n[[shards.nodes]]\nhost = 5\n".into(),
            vec![(Some(8), "shards[0].nodes[0].host: invalid type: integer `5`, expected a string")],
        ),
        ("empty users list", format!("users = []\n{SHARD}"), vec![(Some(1), "no [[users]] entry")]),
        (
            "structural and semantic problems in different entries",
            format!("[general]\nlisten = \"nope\"\n[[users]]\nname = \"a\"\npasword = \"x\"\n{SHARD}"),
            vec![
                (Some(2), "general.listen = \"nope\": no port"),
                (Some(3), "user \"a\": a password is required"),
                (Some(5), "unknown key `pasword`"),
            ],
        ),
    ];
    for (name, text, want) in cases {
        let got = problems(&text);
        let ok = got.len() == want.len()
            && got
                .iter()
                .zip(&want)
                .all(|((gl, gm), (wl, wm))| gl == wl && gm.contains(wm));
        assert!(
            ok,
            "{name}:\n got  {got:#?}\n want {want:#?}\n--- text:\n{text}"
        );
    }
}

#[test]
fn example_config_is_valid() {
    let text = include_str!("../../../pgproxy.toml.example");
    let config = Config::from_toml(text).unwrap_or_else(|e| panic!("{}", e.render("example")));
    assert_eq!(
        config.general,
        crate::config::General::default(),
        "example shows the defaults"
    );
    assert_eq!(config.users[0].name, "app");
    assert_eq!(config.databases.len(), 1);
    assert_eq!(config.shards.len(), 1);
    assert_eq!(config.shards[0].nodes.len(), 1);
    assert_eq!(
        (
            config.shards[0].nodes[0].host.as_str(),
            config.shards[0].nodes[0].port
        ),
        ("127.0.0.1", 5432)
    );
}

#[test]
fn renders_one_line_per_problem() {
    let text = format!("[general]\nfoo = 1\nlisten = \"x\"\n{}", SHARD);
    let err = Config::from_toml(&text).expect_err("invalid");
    let out = err.render("pgproxy.toml");
    let lines: Vec<&str> = out.lines().collect();
    let want = [
        "pgproxy.toml: no [[users]] entry",
        "pgproxy.toml:2: general.foo: unknown key `foo`",
        "pgproxy.toml:3: general.listen = \"x\": no port",
    ];
    assert_eq!(lines.len(), want.len(), "{out}");
    for (line, want) in lines.iter().zip(want) {
        assert!(line.starts_with(want), "{out}");
    }
    let io = ConfigError::Io {
        path: "x".into(),
        message: "No such file".into(),
    };
    assert_eq!(io.render("x"), "x: cannot read: No such file");
    assert!(io.problems().is_empty());
}
