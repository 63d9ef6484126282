//! Throwaway PostgreSQL servers: a copy of the template data dir (initdb and the test roles, made
//! once: `template.rs`) in a temp dir, started on a free port, stopped and removed on drop.
//!
//! Roles on every node (see `SETUP_ROLES`): `postgres` (superuser, trust), `app`/'secret' (SCRAM,
//! owns database `app`), `md5user`/'md5pass' (MD5 hash, md5 in pg_hba), `trustuser` (trust).

use super::{free_port, pg_tool, tail, INSTALL_HINT};
use std::ffi::CString;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_postgres::{Client, NoTls};

/// pg_hba.conf of every node: superuser and trustuser trusted, md5user by MD5, everyone else SCRAM.
pub(super) const PG_HBA: &str = "\
local all all trust
host all postgres 127.0.0.1/32 trust
host all trustuser 127.0.0.1/32 trust
host all md5user 127.0.0.1/32 md5
host all all 127.0.0.1/32 scram-sha-256
";

/// One running PostgreSQL server in its own temp dir. Dropping it stops the server (immediate
/// shutdown) and removes the dir.
pub struct PgNode {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl PgNode {
    /// A fresh copy of the template data directory (initdb, the test roles and database `app`:
    /// see [`super::template`]), started on a free port; returns once it accepts connections.
    /// Panics with the server log on failure.
    pub async fn start() -> PgNode {
        let template = super::template::data_dir().await;
        let dir = tokio::task::spawn_blocking(move || copy_data_dir(template))
            .await
            .expect("data dir copy task panicked");
        PgNode::listen(dir).await
    }

    /// initdb, start, create the test roles and database `app`: what the template is made of.
    pub(super) async fn initdb_and_setup() -> PgNode {
        let dir = tokio::task::spawn_blocking(init_data_dir)
            .await
            .expect("initdb task panicked");
        let node = PgNode::listen(dir).await;
        let su = node.superuser("postgres").await;
        su.batch_execute(SETUP_ROLES)
            .await
            .expect("create test roles");
        su.batch_execute("CREATE DATABASE app OWNER app")
            .await
            .expect("create database app");
        let su_app = node.superuser("app").await;
        su_app
            .batch_execute(SETUP_APP_DB)
            .await
            .expect("grants in database app");
        node
    }

    /// Starts the server of data dir `<dir>/data` on a free port.
    async fn listen(dir: tempfile::TempDir) -> PgNode {
        let mut node = PgNode {
            dir,
            port: 0,
            child: None,
        };
        // A port picked by free_port() can be taken by a parallel test before postgres binds it:
        // retry on a fresh port when that happens. Also seen twice under full parallel load:
        // "could not create lock file …/.s.PGSQL.<port>.lock: Permission denied" in the node's
        // own socket dir (likely the dir chowned from a racing getpwnam, now read once:
        // `postgres_ids`): retry that too, with the dir's owner set again.
        for attempt in 1..=3 {
            node.port = free_port();
            match node.spawn_and_wait(Duration::from_secs(30)).await {
                Ok(()) => break,
                Err(log) if attempt < 3 && log.contains("could not bind") => continue,
                Err(log) if attempt < 3 && log.contains("could not create lock file") => {
                    eprintln!("postgres could not create its lock file; retrying:\n{log}");
                    if is_root() {
                        let (uid, gid) = postgres_ids();
                        let _ = std::os::unix::fs::chown(node.dir.path(), Some(uid), Some(gid));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                Err(log) => panic!("postgres did not start on port {}:\n{log}", node.port),
            }
        }
        node
    }

    /// TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// PID of the postmaster, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// SIGKILL the postmaster (a crash); its backends notice and exit on their own.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Fast shutdown (SIGINT: roll back open transactions, disconnect clients), waiting for exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal_and_wait(&mut child, libc::SIGINT, Duration::from_secs(20));
        }
    }

    /// Starts the server again on the same port and data dir (after `kill9` or `stop`). Retries
    /// while the previous instance's backends or socket linger.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "restart() on a running node");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.spawn_and_wait(Duration::from_secs(30)).await {
                Ok(()) => return,
                Err(log) if Instant::now() < deadline => {
                    let _ = log;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(log) => panic!("postgres did not restart on port {}:\n{log}", self.port),
            }
        }
    }

    /// A tokio-postgres client connected directly (not through the proxy) as superuser `postgres`.
    pub async fn superuser(&self, db: &str) -> Client {
        connect_direct(self.port, db).await.unwrap_or_else(|e| {
            panic!(
                "superuser connect to node {}: {e}\n{}",
                self.port,
                self.log_tail()
            )
        })
    }

    /// Runs `sql` as superuser in database `app` (simple protocol) and returns the first column of
    /// the first row as text ("" when there is no row, "NULL" for a null).
    pub async fn scalar(&self, sql: &str) -> String {
        let client = self.superuser("app").await;
        super::scalar(&client, sql).await
    }

    /// Runs `sql` with psql directly against the node as superuser in database `app`; returns the
    /// unaligned, tuples-only output, trimmed. Panics if psql fails.
    pub fn psql_direct(&self, sql: &str) -> String {
        let port = self.port.to_string();
        let out = super::run_tool(
            "psql",
            &[
                "-X",
                "-A",
                "-t",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                "app",
                "-c",
                sql,
            ],
            "",
            Duration::from_secs(60),
        );
        assert!(
            out.status.success(),
            "psql_direct {sql:?} failed: {}",
            out.stderr
        );
        out.stdout.trim().to_string()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn log_tail(&self) -> String {
        tail(&self.log_path(), 40)
    }

    /// Spawns the postmaster on `self.port` and waits until a superuser connection works. On
    /// failure the child is reaped and the log tail returned.
    async fn spawn_and_wait(&mut self, limit: Duration) -> Result<(), String> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open postgres.log");
        let port = self.port.to_string();
        let data = self.data_dir();
        let child = as_postgres(&pg_tool("postgres"))
            .args([
                "-D".as_ref(),
                data.as_os_str(),
                "-p".as_ref(),
                port.as_ref(),
                "-k".as_ref(),
                self.dir.path().as_os_str(),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn postgres");
        self.child = Some(child);
        let deadline = Instant::now() + limit;
        loop {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                return Err(format!("postgres exited ({status}):\n{}", self.log_tail()));
            }
            // Another test's server may hold the port (two nodes picked the same free port and
            // ours is about to exit with "could not bind"): only our own data directory counts.
            if self.answers_as_itself().await {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill9();
                return Err(format!("not ready after {limit:?}:\n{}", self.log_tail()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl PgNode {
    /// Whether the server on `self.port` accepts connections and is this node's (its
    /// data_directory is ours).
    async fn answers_as_itself(&self) -> bool {
        let Ok(client) = connect_direct(self.port, "postgres").await else {
            return false;
        };
        let Ok(row) = client.query_one("SHOW data_directory", &[]).await else {
            return false;
        };
        let theirs = PathBuf::from(row.get::<_, String>(0));
        let ours = self.data_dir();
        theirs == ours || theirs.canonicalize().ok() == ours.canonicalize().ok()
    }
}

impl Drop for PgNode {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- postgres log (node port {}), last lines ---\n{}",
                self.port,
                self.log_tail()
            );
        }
        if let Some(mut child) = self.child.take() {
            // SIGQUIT = immediate shutdown: the postmaster takes its backends down with it.
            signal_and_wait(&mut child, libc::SIGQUIT, Duration::from_secs(10));
        }
    }
}

/// Appended to every node's postgresql.conf (the unix socket directory, which differs per node,
/// is given on the command line).
pub(super) const SETTINGS: &str = "
# pgproxy test settings
listen_addresses = '127.0.0.1'
fsync = off
full_page_writes = off
max_connections = 200
max_prepared_transactions = 20
shared_buffers = 32MB
log_line_prefix = '%m [%p] %q%u@%d '
";

pub(super) const SETUP_ROLES: &str = "
SET password_encryption = 'scram-sha-256';
CREATE ROLE app LOGIN PASSWORD 'secret';
SET password_encryption = 'md5';
CREATE ROLE md5user LOGIN PASSWORD 'md5pass';
RESET password_encryption;
CREATE ROLE trustuser LOGIN;
";

pub(super) const SETUP_APP_DB: &str = "
GRANT ALL ON DATABASE app TO PUBLIC;
GRANT ALL ON SCHEMA public TO PUBLIC;
";

/// Connects to the node as superuser over TCP, spawning the connection task.
async fn connect_direct(port: u16, db: &str) -> Result<Client, tokio_postgres::Error> {
    let conn_str =
        format!("host=127.0.0.1 port={port} user=postgres dbname={db} connect_timeout=5");
    let (client, conn) = tokio_postgres::connect(&conn_str, NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// A temp dir for a node, owned by the `postgres` OS user when we are root.
fn node_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("pgproxy-node-")
        .tempdir()
        .expect("create temp dir for a node");
    if is_root() {
        let (uid, gid) = postgres_ids();
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
            .expect("chown node dir to postgres");
    }
    dir
}

/// A node dir whose `data` is a copy of `template` (`cp -a`: owner and modes kept).
fn copy_data_dir(template: &Path) -> tempfile::TempDir {
    let dir = node_dir();
    super::template::copy_tree(template, &dir.path().join("data"));
    dir
}

/// Creates the temp dir and runs initdb into `<dir>/data`, then writes the test settings.
fn init_data_dir() -> tempfile::TempDir {
    let dir = node_dir();
    let data = dir.path().join("data");
    let out = as_postgres(&pg_tool("initdb"))
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run initdb: {e}; {INSTALL_HINT}"));
    assert!(
        out.status.success(),
        "initdb failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    append(&data.join("postgresql.conf"), SETTINGS);
    std::fs::write(data.join("pg_hba.conf"), PG_HBA).expect("write pg_hba.conf");
    dir
}

fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open postgresql.conf");
    f.write_all(text.as_bytes())
        .expect("append to postgresql.conf");
}

/// A command running `bin` as the `postgres` OS user when we are root (PostgreSQL refuses to run
/// as root). setpriv execs, so the child's PID is the program's own PID and signals reach it.
fn as_postgres(bin: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(bin);
        cmd
    } else {
        Command::new(bin)
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// uid and gid of the `postgres` OS user.
fn postgres_ids() -> (u32, u32) {
    // getpwnam's record is one static buffer: nodes start on parallel threads, and two calls at
    // once could read each other's half-written record (a node dir chowned to the wrong user:
    // postgres then cannot create its socket lock file there). Read once, by one thread.
    static IDS: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    *IDS.get_or_init(|| {
        let name = CString::new("postgres").expect("no NUL in a literal");
        // SAFETY: `name` is a valid C string; OnceLock runs this on one thread, and the test
        // code makes no other getpw* call.
        let pw = unsafe { libc::getpwnam(name.as_ptr()) };
        assert!(
            !pw.is_null(),
            "running as root but there is no `postgres` OS user: {INSTALL_HINT}"
        );
        // SAFETY: checked non-null above.
        unsafe { ((*pw).pw_uid, (*pw).pw_gid) }
    })
}

/// Sends `sig`, waits up to `limit` for the exit, then SIGKILLs.
pub(crate) fn signal_and_wait(child: &mut Child, sig: i32, limit: Duration) {
    // SAFETY: kill(2) on our own child's PID; the child is not yet reaped, so the PID is its own.
    unsafe { libc::kill(child.id() as i32, sig) };
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}
