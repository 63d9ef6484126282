//! The configuration model (TOML), its defaults, loading and validation.
//!
//! `Config` is immutable once built; live reload builds a new one and swaps it in through the
//! `ArcSwap` the server owns. Every option is documented in docs/CONFIG.md with its default and
//! whether it reloads live. This module reads nothing but the file.

mod diff;
mod sharding;
mod validate;

pub use sharding::{
    CrossShard, KeyLiteral, KeyTypeName, KeylessWrites, ListRule, Override, RangeRule,
    ShardFunction, ShardedTable, Sharding,
};

pub use diff::restart_required;
pub use validate::{ConfigError, Problem};

use serde::Deserialize;
use std::path::Path;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Process-wide settings.
    #[serde(default)]
    pub general: General,
    /// Users clients may log in as.
    #[serde(default)]
    pub users: Vec<User>,
    /// Databases clients may connect to; empty means any name, passed through to the nodes.
    #[serde(default)]
    pub databases: Vec<Database>,
    /// Shards, each a group of nodes kept identical; several shards need `[sharding]` rules.
    #[serde(default)]
    pub shards: Vec<Shard>,
    /// Which tables are sharded, by which key and function.
    #[serde(default)]
    pub sharding: Sharding,
    /// Synchronous replication within a shard.
    #[serde(default)]
    pub replication: Replication,
    /// Node health checks.
    #[serde(default)]
    pub health: Health,
}

/// How a transaction that wrote commits across a shard's nodes.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum CommitMode {
    /// Two-phase commit: PREPARE TRANSACTION on the other nodes, a plain COMMIT on the main
    /// (the decision), COMMIT PREPARED on the others.
    #[default]
    #[serde(rename = "2pc")]
    TwoPhase,
    /// pgpool-style: COMMIT on the other nodes first, the main last (no 2PC needed).
    Ordered,
}

/// What to do with a write pgproxy cannot make deterministic (a volatile user function).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum NondeterministicPolicy {
    /// Refuse it with an error that says why.
    #[default]
    Refuse,
    /// Run it on every node anyway, log a warning and count it.
    Warn,
}

/// `[replication]`: synchronous multi-master replication inside a shard.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Replication {
    /// Commit protocol for transactions that wrote.
    pub commit: CommitMode,
    /// Writes pgproxy cannot make deterministic.
    pub nondeterministic: NondeterministicPolicy,
    /// File where two-phase commit decisions are recorded (fsynced) before the second phase.
    pub decision_log: String,
    /// Spread reads outside written transactions over the shard's healthy nodes by weight.
    pub load_balance: bool,
}

impl Default for Replication {
    fn default() -> Self {
        Replication {
            commit: CommitMode::TwoPhase,
            nondeterministic: NondeterministicPolicy::Refuse,
            decision_log: "pgproxy-decisions.log".into(),
            load_balance: true,
        }
    }
}

/// `[health]`: periodic node checks.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Health {
    /// Time between checks of each node, in milliseconds (0 = no periodic checks).
    pub interval_ms: u64,
    /// A check that takes longer fails, in milliseconds.
    pub timeout_ms: u64,
    /// Consecutive failed checks that mark a node down.
    pub failures: u32,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            interval_ms: 1_000,
            timeout_ms: 2_000,
            failures: 3,
        }
    }
}

/// How server connections are shared between clients.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    /// A client keeps one server connection for its whole session.
    Session,
    /// A client holds a server connection only while a transaction is open.
    #[default]
    Transaction,
}

/// How a client authenticates to pgproxy.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMethod {
    /// SCRAM-SHA-256 (RFC 7677, as PostgreSQL does it).
    #[default]
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    /// MD5 challenge (legacy).
    Md5,
    /// No password (only where configured).
    Trust,
}

/// TLS towards the backend nodes.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ServerTls {
    /// Plain TCP.
    #[default]
    Disable,
    /// TLS if the server accepts it, plain otherwise; no certificate check.
    Prefer,
    /// TLS required; certificate not checked.
    Require,
    /// TLS required; certificate chain and host name checked against `server_tls_ca_file`.
    VerifyFull,
}

/// `[general]`: process-wide settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct General {
    /// Address to listen on (`host:port`). Not reloadable.
    pub listen: String,
    /// Maximum number of client connections at once.
    pub max_client_conn: usize,
    /// Default pool mode.
    pub pool_mode: PoolMode,
    /// Default maximum number of server connections per (user, database, node) pool.
    pub default_pool_size: usize,
    /// Server connections each pool keeps open even when idle.
    pub min_pool_size: usize,
    /// How long a client waits for a server connection before 53300, in milliseconds.
    pub checkout_timeout_ms: u64,
    /// Idle server connections are closed after this many milliseconds (0 = never).
    pub idle_timeout_ms: u64,
    /// Server connections are closed once this old, when next idle (0 = never), in milliseconds.
    pub server_lifetime_ms: u64,
    /// Timeout for connecting and authenticating to a node, in milliseconds.
    pub connect_timeout_ms: u64,
    /// How long SIGTERM waits for open transactions before closing, in milliseconds.
    pub shutdown_timeout_ms: u64,
    /// Largest protocol message accepted from a client or server, in bytes.
    pub max_message_size: usize,
    /// Default client authentication method.
    pub auth_method: AuthMethod,
    /// Query run on a server connection before another client may use it after a session ended.
    pub server_reset_query: String,
    /// Shared prepared statements kept per server connection; past it the least recently used
    /// is closed (0 = no limit).
    pub max_prepared_statements: usize,
    /// PEM certificate chain for client TLS; TLS is offered only when this and the key are set.
    pub tls_cert_file: Option<String>,
    /// PEM private key for client TLS.
    pub tls_key_file: Option<String>,
    /// TLS towards the nodes.
    pub server_tls: ServerTls,
    /// PEM CA bundle for `server_tls = "verify-full"`.
    pub server_tls_ca_file: Option<String>,
    /// Threads serving connections. 1 (default): one event loop, like PgBouncer, the least CPU
    /// per query; more: tokio's work-stealing scheduler on that many threads (0 = one per core).
    pub worker_threads: usize,
}

impl Default for General {
    fn default() -> Self {
        General {
            listen: "127.0.0.1:6432".into(),
            max_client_conn: 10_000,
            pool_mode: PoolMode::Transaction,
            default_pool_size: 20,
            min_pool_size: 0,
            checkout_timeout_ms: 5_000,
            idle_timeout_ms: 600_000,
            server_lifetime_ms: 3_600_000,
            connect_timeout_ms: 5_000,
            shutdown_timeout_ms: 30_000,
            max_message_size: 64 * 1024 * 1024,
            auth_method: AuthMethod::ScramSha256,
            server_reset_query: "DISCARD ALL".into(),
            max_prepared_statements: 500,
            tls_cert_file: None,
            tls_key_file: None,
            server_tls: ServerTls::Disable,
            server_tls_ca_file: None,
            worker_threads: 1,
        }
    }
}

/// `[[users]]`: a user clients log in as.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Password: plaintext, or a `SCRAM-SHA-256$…` verifier, or an `md5…` hash. A verifier or
    /// hash checks clients but cannot log in to nodes: then set `server_password`.
    #[serde(default)]
    pub password: Option<String>,
    /// Authentication method for this user (default `general.auth_method`).
    #[serde(default)]
    pub auth_method: Option<AuthMethod>,
    /// Pool mode for this user (overrides the database's and the default).
    #[serde(default)]
    pub pool_mode: Option<PoolMode>,
    /// Pool size for this user's pools (overrides the database's and the default).
    #[serde(default)]
    pub pool_size: Option<usize>,
    /// User name on the nodes (default: `name`).
    #[serde(default)]
    pub server_user: Option<String>,
    /// Password on the nodes (default: `password` when it is plaintext).
    #[serde(default)]
    pub server_password: Option<String>,
}

/// `[[databases]]`: a database clients may connect to.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// Name clients use.
    pub name: String,
    /// Name on the nodes (default: `name`).
    #[serde(default)]
    pub server_database: Option<String>,
    /// Pool mode for this database (overrides the default).
    #[serde(default)]
    pub pool_mode: Option<PoolMode>,
    /// Pool size for this database's pools (overrides the default).
    #[serde(default)]
    pub pool_size: Option<usize>,
}

/// `[[shards]]`: a group of nodes holding the same data.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Shard {
    /// Shard name, used in logs, hints and the admin console.
    pub name: String,
    /// The nodes; the first healthy one is the main.
    pub nodes: Vec<Node>,
}

/// `[[shards.nodes]]`: one PostgreSQL server.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    #[serde(default = "default_pg_port")]
    pub port: u16,
    /// Share of load-balanced reads (relative).
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_pg_port() -> u16 {
    5432
}

fn default_weight() -> u32 {
    1
}

impl Config {
    /// Parses and validates TOML text. On failure, every problem found, each with its line.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        validate::parse_and_validate(text)
    }

    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_toml(&text)
    }

    /// The user entry for a login name.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    /// The database entry for a name; `None` if databases are listed and this one is not.
    /// When no databases are listed, any name is accepted and maps to itself.
    pub fn database(&self, name: &str) -> Option<Database> {
        if self.databases.is_empty() {
            return Some(Database {
                name: name.to_string(),
                server_database: None,
                pool_mode: None,
                pool_size: None,
            });
        }
        self.databases.iter().find(|d| d.name == name).cloned()
    }

    /// Effective pool mode for a (user, database).
    pub fn pool_mode(&self, user: &User, db: &Database) -> PoolMode {
        user.pool_mode
            .or(db.pool_mode)
            .unwrap_or(self.general.pool_mode)
    }

    /// Effective pool size for a (user, database).
    pub fn pool_size(&self, user: &User, db: &Database) -> usize {
        user.pool_size
            .or(db.pool_size)
            .unwrap_or(self.general.default_pool_size)
    }
}

impl User {
    /// Effective client authentication method.
    pub fn auth(&self, general: &General) -> AuthMethod {
        self.auth_method.unwrap_or(general.auth_method)
    }

    /// User name on the nodes.
    pub fn server_user(&self) -> &str {
        self.server_user.as_deref().unwrap_or(&self.name)
    }

    /// Password to log in to the nodes, if one is known in plaintext.
    pub fn server_password(&self) -> Option<&str> {
        if let Some(p) = &self.server_password {
            return Some(p);
        }
        match &self.password {
            Some(p) if !is_hashed_password(p) => Some(p),
            _ => None,
        }
    }
}

/// True for a SCRAM verifier or an md5 hash (as opposed to a plaintext password).
pub fn is_hashed_password(p: &str) -> bool {
    p.starts_with("SCRAM-SHA-256$")
        || (p.len() == 35 && p.starts_with("md5") && p[3..].bytes().all(|c| c.is_ascii_hexdigit()))
}
