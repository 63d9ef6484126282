//! The built `pgproxy` binary as a child process: start on a free port, signal, rewrite its
//! config, wait for its exit; its log is shown when a test fails.

use super::{free_port, pg::signal_and_wait, tail, with_listen};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long the proxy may take to accept TCP after it was started.
const START_LIMIT: Duration = Duration::from_secs(20);

/// A running pgproxy. Dropping it SIGKILLs it (and prints its log tail if the test is failing).
pub struct Proxy {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl Proxy {
    /// Writes `config_toml` (its `listen` replaced by a free port) to a temp file, runs
    /// `pgproxy --config FILE` with RUST_LOG=info and waits until the port accepts TCP.
    /// Panics with the proxy's log if it exits or does not listen in time.
    pub async fn start(config_toml: &str) -> Proxy {
        let dir = tempfile::Builder::new()
            .prefix("pgproxy-proxy-")
            .tempdir()
            .expect("temp dir for the proxy");
        let log_path = dir.path().join("pgproxy.log");
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let port = free_port();
            std::fs::write(
                dir.path().join("pgproxy.toml"),
                with_listen(config_toml, port),
            )
            .expect("write proxy config");
            let mut child = spawn(dir.path());
            match wait_listening(&mut child, port, &log_path).await {
                Ok(()) => return Proxy { dir, port, child },
                // Another test took the port between free_port() and the bind: try another.
                Err(log) if log.contains("in use") => {
                    signal_and_wait(&mut child, libc::SIGKILL, Duration::from_secs(5));
                    last_log = log;
                }
                Err(log) => {
                    signal_and_wait(&mut child, libc::SIGKILL, Duration::from_secs(5));
                    panic!("pgproxy did not start listening on {port}:\n{log}");
                }
            }
        }
        panic!("pgproxy could not bind a free port:\n{last_log}");
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The proxy's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Path of the config file the proxy was started with (rewritten by `rewrite_config`).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("pgproxy.toml")
    }

    /// Everything the proxy logged so far (stdout and stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Sends a signal (`libc::SIGHUP`, `SIGTERM`, `SIGINT`, ...).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own, not yet reaped child.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.child.id());
    }

    /// Replaces the config file (keeping this proxy's listen port) atomically; send SIGHUP after.
    pub fn rewrite_config(&self, config_toml: &str) {
        self.rewrite_config_raw(&with_listen(config_toml, self.port));
    }

    /// Replaces the config file with `text` verbatim (e.g. invalid TOML), atomically.
    pub fn rewrite_config_raw(&self, text: &str) {
        let tmp = self.dir.path().join("pgproxy.toml.new");
        std::fs::write(&tmp, text).expect("write new config");
        std::fs::rename(&tmp, self.config_path()).expect("replace config");
    }

    /// Waits up to `limit` for the proxy to exit; its status, or `None` if still running.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for pgproxy") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("pgproxy.log")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Ok(to) = std::env::var("PGPROXY_TEST_LOG_COPY") {
            let _ = std::fs::copy(self.log_path(), format!("{to}.{}", self.port));
        }
        if std::thread::panicking() {
            eprintln!(
                "--- pgproxy log (port {}), last lines ---\n{}",
                self.port,
                tail(&self.log_path(), 80)
            );
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            signal_and_wait(&mut self.child, libc::SIGKILL, Duration::from_secs(5));
        }
    }
}

fn spawn(dir: &Path) -> Child {
    let log = std::fs::File::create(dir.join("pgproxy.log")).expect("create proxy log");
    Command::new(env!("CARGO_BIN_EXE_pgproxy"))
        // Relative paths in the config (the decision log) stay inside the test's own dir.
        .current_dir(dir)
        .arg("--config")
        .arg(dir.join("pgproxy.toml"))
        .env(
            "RUST_LOG",
            std::env::var("PGPROXY_TEST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup log fd"))
        .stderr(log)
        .spawn()
        .expect("spawn pgproxy")
}

/// Waits until our pgproxy has bound `port` and it accepts TCP; on exit or timeout, the log tail.
async fn wait_listening(child: &mut Child, port: u16, log_path: &Path) -> Result<(), String> {
    let deadline = Instant::now() + START_LIMIT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "pgproxy exited ({status}); log:\n{}",
                tail(log_path, 60)
            ));
        }
        // The port answering is not enough: another test's proxy or server may hold it while
        // ours is about to fail its bind. Ours logs "pgproxy listening" (at info, so
        // PGPROXY_TEST_LOG must keep info for pgproxy::server) only once it has bound.
        let log = std::fs::read_to_string(log_path).unwrap_or_default();
        if log.contains("pgproxy listening")
            && tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "not listening after {START_LIMIT:?}; log:\n{}",
                tail(log_path, 60)
            ));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
