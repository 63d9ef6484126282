//! Client helpers: tokio-postgres connections (with bounded waits), SQLSTATE assertions, and
//! running psql/pgbench from the PostgreSQL bin dir.

use super::{pg_tool, within};
use futures_util::StreamExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_postgres::{
    AsyncMessage, Client, Config, Error, NoTls, Notification, SimpleQueryMessage,
};

/// Longest a connection attempt (TCP, startup, auth) may take before the test fails.
const CONNECT_LIMIT_SECS: u64 = 15;

/// A tokio-postgres config for 127.0.0.1:`port`; an empty `password` sends none.
pub fn pg_config(port: u16, user: &str, password: &str, db: &str) -> Config {
    let mut cfg = Config::new();
    cfg.host("127.0.0.1")
        .port(port)
        .user(user)
        .dbname(db)
        .connect_timeout(Duration::from_secs(CONNECT_LIMIT_SECS));
    if !password.is_empty() {
        cfg.password(password);
    }
    cfg
}

/// Connects (bounded; panics if the attempt hangs), spawning the connection task.
pub async fn connect(port: u16, user: &str, password: &str, db: &str) -> Result<Client, Error> {
    connect_with(&pg_config(port, user, password, db)).await
}

/// Connects with a prepared config (bounded; panics if the attempt hangs).
pub async fn connect_with(cfg: &Config) -> Result<Client, Error> {
    let (client, conn) = within(CONNECT_LIMIT_SECS + 5, "connect", cfg.connect(NoTls)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// `app`/'secret' to database `app`; panics on failure.
pub async fn connect_app(port: u16) -> Client {
    connect(port, "app", "secret", "app")
        .await
        .unwrap_or_else(|e| panic!("connect as app through port {port}: {}", describe(&e)))
}

/// Connects and also returns the NOTIFY messages the server sends this session.
pub async fn connect_notify(
    cfg: &Config,
) -> Result<(Client, UnboundedReceiver<Notification>), Error> {
    let (client, mut conn) = within(CONNECT_LIMIT_SECS + 5, "connect", cfg.connect(NoTls)).await?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        // poll_message drives the whole connection (requests too), not only async messages.
        let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(msg)) = messages.next().await {
            if let AsyncMessage::Notification(n) = msg {
                let _ = tx.send(n);
            }
        }
    });
    Ok((client, rx))
}

/// The SQLSTATE of an error, if the server (or proxy) sent one.
pub fn sqlstate(e: &Error) -> Option<String> {
    e.code().map(|c| c.code().to_string())
}

/// Error text with its SQLSTATE, for assertion messages.
pub fn describe(e: &Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        None => format!("{e} (no SQLSTATE; closed: {})", e.is_closed()),
    }
}

/// Asserts `res` failed with SQLSTATE `code`; returns the error for further checks.
#[track_caller]
pub fn expect_sqlstate<T: std::fmt::Debug>(res: Result<T, Error>, code: &str) -> Error {
    match res {
        Ok(v) => panic!("expected SQLSTATE {code}, got success: {v:?}"),
        Err(e) => {
            assert_eq!(
                sqlstate(&e).as_deref(),
                Some(code),
                "wrong error: {}",
                describe(&e)
            );
            e
        }
    }
}

/// Runs `sql` with the simple protocol; the rows of all its result sets as text.
pub async fn simple_rows(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let msgs = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql:?}: {}", describe(&e)));
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect()
}

/// First column of the first row as text ("" without rows, "NULL" for null); panics on error.
pub async fn scalar(client: &Client, sql: &str) -> String {
    let rows = simple_rows(client, sql).await;
    match rows.first().and_then(|r| r.first()) {
        None => String::new(),
        Some(None) => "NULL".into(),
        Some(Some(v)) => v.clone(),
    }
}

/// What a psql/pgbench run produced.
#[derive(Debug)]
pub struct ToolOutput {
    /// Exit status (killed by us when it ran past its limit).
    pub status: ExitStatus,
    /// Captured stdout.
    pub stdout: String,
    /// Captured stderr.
    pub stderr: String,
}

/// Runs a PostgreSQL client tool (blocking) with PGPASSWORD set when `password` is non-empty; kills
/// it after `limit`. Output goes through files, so a chatty tool cannot block on a full pipe.
pub fn run_tool(name: &str, args: &[&str], password: &str, limit: Duration) -> ToolOutput {
    let dir = tempfile::tempdir().expect("temp dir for tool output");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let mut cmd = Command::new(pg_tool(name));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("create stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("create stderr file"))
        .env_remove("PGPASSWORD")
        .env("PGCONNECT_TIMEOUT", "15");
    if !password.is_empty() {
        cmd.env("PGPASSWORD", password);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {name}: {e}"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for tool") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "{name} {args:?} ran past {limit:?}; stdout:\n{}\nstderr:\n{}",
                std::fs::read_to_string(&out_path).unwrap_or_default(),
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    ToolOutput {
        status,
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

/// `psql -X -A -t -c sql` against 127.0.0.1:`port` (off the async runtime's workers).
pub async fn psql(port: u16, user: &str, password: &str, db: &str, sql: &str) -> ToolOutput {
    let args: Vec<String> = [
        "-X",
        "-A",
        "-t",
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        user,
        "-d",
        db,
        "-c",
        sql,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let password = password.to_string();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_tool("psql", &args, &password, Duration::from_secs(60))
    })
    .await
    .expect("psql task panicked")
}

/// `pgbench -h 127.0.0.1 -p port -U user <extra> db` (off the async runtime's workers).
pub async fn pgbench(
    port: u16,
    user: &str,
    password: &str,
    db: &str,
    extra: &[&str],
) -> ToolOutput {
    let mut args: Vec<String> = ["-h", "127.0.0.1", "-p", &port.to_string(), "-U", user]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(db.to_string());
    let password = password.to_string();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_tool("pgbench", &args, &password, Duration::from_secs(180))
    })
    .await
    .expect("pgbench task panicked")
}

/// From a pgbench run's stdout: (transactions actually processed, failed transactions if printed).
pub fn pgbench_counts(stdout: &str) -> (u64, Option<u64>) {
    let number_after = |prefix: &str| -> Option<u64> {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(prefix))?;
        let rest = line.split_once(':')?.1.trim();
        // "800/800" (with -t) or "800" (with -T); "0 (0.000%)" for failures.
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let processed = number_after("number of transactions actually processed").unwrap_or(0);
    (processed, number_after("number of failed transactions"))
}
