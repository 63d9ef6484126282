//! The two-phase commit decision log and the transaction ids (gids) pgproxy prepares under.
//!
//! Most commits need no log: the followers prepare under a gid naming the main's transaction id
//! and node (`GidGen::next_for_main`), and the main's own COMMIT decides (`resolve` asks it).
//! Where every participant prepares (writes across shards outside a transaction, a main whose
//! host name is too long for a gid), the commit decision is appended here and fsynced before
//! `COMMIT PREPARED` runs anywhere. After a crash between the phases, such a gid with a `C`
//! line must be committed everywhere and any other of its kind rolled back (see `resolve`).
//!
//! File format, one record per line: `C <gid>` (commit decided, fsynced before the second phase)
//! and `D <gid>` (second phase finished everywhere; not fsynced, losing it only means the gid is
//! looked for again). A torn last line (crash mid-write) is ignored and cut off at open.
//!
//! Writes go through one writer thread that drains every queued record into a single `write` and
//! a single `fsync` (group commit), so concurrent sessions share the cost of the disk flush.
//! After a failed write or fsync the log refuses every later record: the file's state is unknown
//! (a failed fsync may have dropped pages) and only a restart, which re-reads it, is safe.
//! Must not: talk to nodes.

use parking_lot::Mutex;
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use tokio::sync::oneshot;
use tracing::{info, warn};

/// A log file larger than this is rewritten at open to its undone `C` lines.
pub const COMPACT_ABOVE: u64 = 1024 * 1024;

/// Generates gids of the form `pgproxy_<instance>_<n>`: `<instance>` is 16 hex digits chosen at
/// random when the generator is made (once per process), `<n>` a decimal counter from 1. The
/// instance part keeps gids of different runs apart, so a restarted pgproxy never reuses a gid
/// still prepared on a node.
#[derive(Debug)]
pub struct GidGen {
    instance: String,
    next: AtomicU64,
}

impl GidGen {
    /// A generator with a fresh random instance id.
    pub fn new() -> Self {
        GidGen {
            instance: format!("{:016x}", rand::random::<u64>()),
            next: AtomicU64::new(1),
        }
    }

    /// The next gid.
    pub fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("pgproxy_{}_{n}", self.instance)
    }

    /// The next gid for followers of a transaction whose commit the main decides: it names the
    /// main's transaction id and the main node, `pgproxy_<instance>_<n>_<xid>@<host>:<port>`,
    /// so that after a crash the main's `txid_status(xid)` says whether to commit.
    pub fn next_for_main(&self, xid: u64, host: &str, port: u16) -> String {
        format!("{}_{xid}@{host}:{port}", self.next())
    }

    /// The instance part of this generator's gids.
    pub fn instance(&self) -> &str {
        &self.instance
    }
}

/// The `<instance>` part of a gid in [`GidGen`]'s formats (not validated).
pub fn gid_instance(gid: &str) -> Option<&str> {
    gid.strip_prefix("pgproxy_")
        .and_then(|r| r.split_once('_'))
        .map(|(instance, _)| instance)
}

/// The main a gid of [`GidGen::next_for_main`] names: its transaction id, host and port.
pub fn main_of_gid(gid: &str) -> Option<(u64, &str, u16)> {
    let (head, node) = gid.split_once('@')?;
    let (host, port) = node.rsplit_once(':')?;
    let (plain, xid) = head.rsplit_once('_')?;
    if !is_pgproxy_gid(plain) || host.is_empty() {
        return None;
    }
    Some((xid.parse().ok()?, host, port.parse().ok()?))
}

impl Default for GidGen {
    fn default() -> Self {
        Self::new()
    }
}

/// True for a gid in [`GidGen`]'s formats: `pgproxy_`, 1–16 hex digits, `_`, 1–20 decimal
/// digits, and for [`GidGen::next_for_main`] `_<xid>@<host>:<port>` after that.
pub fn is_pgproxy_gid(gid: &str) -> bool {
    if gid.contains('@') {
        return main_of_gid(gid).is_some();
    }
    let Some((instance, n)) = gid.strip_prefix("pgproxy_").and_then(|r| r.split_once('_')) else {
        return false;
    };
    (1..=16).contains(&instance.len())
        && instance.bytes().all(|b| b.is_ascii_hexdigit())
        && (1..=20).contains(&n.len())
        && n.bytes().all(|b| b.is_ascii_digit())
}

/// Failures of the decision log; every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Opening, reading, compacting or truncating the file failed.
    #[error("decision log {path}: cannot open: {message}")]
    Open {
        /// The file.
        path: String,
        /// OS error.
        message: String,
    },
    /// Appending or fsyncing failed (now or earlier: the log then refuses every record).
    #[error("decision log {path}: write failed: {message}")]
    Write {
        /// The file.
        path: String,
        /// OS error.
        message: String,
    },
    /// The gid is not one pgproxy makes (see [`is_pgproxy_gid`]).
    #[error("decision log {path}: {gid:?} is not a pgproxy gid")]
    InvalidGid {
        /// The file.
        path: String,
        /// The refused gid.
        gid: String,
    },
}

/// One record for the writer thread.
struct Request {
    line: String,
    sync: bool,
    reply: Option<oneshot::Sender<Result<(), String>>>,
}

/// The append-only decision log. Share it as `Arc<DecisionLog>`; dropping it waits for queued
/// records to be written.
pub struct DecisionLog {
    path: PathBuf,
    tx: Option<mpsc::Sender<Request>>,
    writer: Option<std::thread::JoinHandle<()>>,
    committed: Mutex<HashSet<String>>,
    syncs: Arc<AtomicU64>,
}

impl DecisionLog {
    /// Opens (creating it if missing) the log at `path`, reads its undone commit decisions, cuts
    /// off a torn last line, compacts it when larger than [`COMPACT_ABOVE`], and starts the
    /// writer thread.
    pub fn open(path: &Path) -> Result<DecisionLog, LogError> {
        let err = |e: std::io::Error| LogError::Open {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(err)?;
        if !existed {
            sync_parent(path).map_err(err)?;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(err)?;
        let (committed, valid_len) = parse(&bytes, path);
        if bytes.len() as u64 > COMPACT_ABOVE {
            file = compact(path, &committed).map_err(err)?;
            info!(path = %path.display(), from = bytes.len(), kept = committed.len(), "decision log compacted");
        } else if valid_len < bytes.len() {
            warn!(path = %path.display(), bytes = bytes.len() - valid_len, "decision log ends in a torn line; cutting it off");
            file.set_len(valid_len as u64).map_err(err)?;
            file.sync_all().map_err(err)?;
        }
        let (tx, rx) = mpsc::channel();
        let syncs = Arc::new(AtomicU64::new(0));
        let thread_syncs = syncs.clone();
        let thread_path = path.display().to_string();
        let writer = std::thread::Builder::new()
            .name("pgproxy-decision-log".into())
            .spawn(move || write_loop(file, rx, &thread_path, &thread_syncs))
            .map_err(err)?;
        Ok(DecisionLog {
            path: path.to_path_buf(),
            tx: Some(tx),
            writer: Some(writer),
            committed: Mutex::new(committed),
            syncs,
        })
    }

    /// Durably records the decision to commit `gid`: returns once `C <gid>` is on disk. Callers
    /// arriving while a flush runs share the next one.
    pub async fn record_commit(&self, gid: &str) -> Result<(), LogError> {
        self.check_gid(gid)?;
        let (reply, answer) = oneshot::channel();
        self.send(format!("C {gid}\n"), true, Some(reply))?;
        match answer.await {
            Ok(Ok(())) => {
                self.committed.lock().insert(gid.to_string());
                Ok(())
            }
            Ok(Err(message)) => Err(self.write_error(message)),
            Err(_) => Err(self.write_error("writer thread stopped".into())),
        }
    }

    /// Records that the second phase of `gid` finished on every node. Only queues `D <gid>` (no
    /// wait, no fsync): a lost `D` line costs a needless look for the gid at the next start,
    /// while waiting would put other sessions' fsyncs on this caller's latency.
    pub fn record_done(&self, gid: &str) -> Result<(), LogError> {
        self.check_gid(gid)?;
        self.committed.lock().remove(gid);
        self.send(format!("D {gid}\n"), false, None)
    }

    /// Waits until every record queued before this call has been written (not fsynced).
    pub async fn flush(&self) -> Result<(), LogError> {
        let (reply, answer) = oneshot::channel();
        self.send(String::new(), false, Some(reply))?;
        match answer.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(self.write_error(message)),
            Err(_) => Err(self.write_error("writer thread stopped".into())),
        }
    }

    /// Gids with a commit decision and no done record: read at open, plus those recorded since.
    pub fn committed(&self) -> HashSet<String> {
        self.committed.lock().clone()
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many fsyncs the writer has done (fewer than commits when group commit batches them).
    pub fn sync_count(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    fn check_gid(&self, gid: &str) -> Result<(), LogError> {
        if is_pgproxy_gid(gid) {
            return Ok(());
        }
        Err(LogError::InvalidGid {
            path: self.path.display().to_string(),
            gid: gid.to_string(),
        })
    }

    fn send(
        &self,
        line: String,
        sync: bool,
        reply: Option<oneshot::Sender<Result<(), String>>>,
    ) -> Result<(), LogError> {
        let req = Request { line, sync, reply };
        match &self.tx {
            Some(tx) if tx.send(req).is_ok() => Ok(()),
            _ => Err(self.write_error("writer thread stopped".into())),
        }
    }

    fn write_error(&self, message: String) -> LogError {
        LogError::Write {
            path: self.path.display().to_string(),
            message,
        }
    }
}

impl Drop for DecisionLog {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish the queue and exit; joining makes a reopen
        // (or the process exit) see every queued line.
        self.tx = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Parses complete lines; returns the undone commit decisions and the length of the complete
/// lines (anything after the last newline is a torn write).
fn parse(bytes: &[u8], path: &Path) -> (HashSet<String>, usize) {
    let valid_len = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut committed = HashSet::new();
    for (n, line) in bytes[..valid_len].split(|&b| b == b'\n').enumerate() {
        let text = String::from_utf8_lossy(line);
        match text.split_once(' ') {
            Some(("C", gid)) if is_pgproxy_gid(gid) => {
                committed.insert(gid.to_string());
            }
            Some(("D", gid)) if is_pgproxy_gid(gid) => {
                committed.remove(gid);
            }
            _ if line.is_empty() => {}
            _ => {
                warn!(path = %path.display(), line = n + 1, "decision log: skipping an unreadable line")
            }
        }
    }
    (committed, valid_len)
}

/// Rewrites the log to its undone `C` lines: temp file, fsync, rename over, fsync the directory.
fn compact(path: &Path, committed: &HashSet<String>) -> std::io::Result<File> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".compact");
    let tmp = PathBuf::from(tmp_name);
    let mut gids: Vec<&String> = committed.iter().collect();
    gids.sort();
    let text: String = gids.iter().map(|g| format!("C {g}\n")).collect();
    let mut f = File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    sync_parent(path)?;
    OpenOptions::new().read(true).append(true).open(path)
}

/// fsyncs the directory holding `path`, so a created or renamed entry survives a crash.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// The writer thread: takes every queued record, writes them at once, fsyncs if any needs it,
/// answers all. Exits when the log is dropped.
fn write_loop(mut file: File, rx: mpsc::Receiver<Request>, path: &str, syncs: &AtomicU64) {
    let mut failed: Option<String> = None;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let result = match &failed {
            Some(m) => Err(format!("an earlier write failed ({m}); restart pgproxy")),
            None => {
                let text: String = batch.iter().map(|r| r.line.as_str()).collect();
                let sync = batch.iter().any(|r| r.sync);
                let r = file.write_all(text.as_bytes()).and_then(|()| {
                    if sync {
                        file.sync_data()
                    } else {
                        Ok(())
                    }
                });
                if sync && r.is_ok() {
                    syncs.fetch_add(1, Ordering::Relaxed);
                }
                r.map_err(|e| e.to_string())
            }
        };
        if let (Err(m), None) = (&result, &failed) {
            tracing::error!(path, error = %m, "decision log write failed; refusing further commits");
            failed = Some(m.clone());
        }
        for r in batch {
            if let Some(reply) = r.reply {
                let _ = reply.send(result.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gids_are_recognised() {
        let gen = GidGen::new();
        let (a, b) = (gen.next(), gen.next());
        assert_ne!(a, b);
        for gid in [a.as_str(), b.as_str(), "pgproxy_0_1", "pgproxy_deadBEEF_42"] {
            assert!(is_pgproxy_gid(gid), "{gid}");
        }
        for gid in [
            "",
            "pgproxy_",
            "pgproxy__1",
            "pgproxy_x_1",
            "pgproxy_ab_",
            "pgproxy_ab_1_2",
            "pgproxy_ab_1'",
            "pgproxy_ab_1 ",
            "pgproxy_00000000000000000_1",
            "other_ab_1",
        ] {
            assert!(!is_pgproxy_gid(gid), "{gid}");
        }
    }

    #[test]
    fn a_main_decided_gid_names_its_main() {
        let gen = GidGen::new();
        let gid = gen.next_for_main(7_301, "db-1.example", 5433);
        assert!(is_pgproxy_gid(&gid), "{gid}");
        assert_eq!(main_of_gid(&gid), Some((7_301, "db-1.example", 5433)));
        let v6 = gen.next_for_main(u64::MAX, "::1", 5432);
        assert_eq!(main_of_gid(&v6), Some((u64::MAX, "::1", 5432)));
        assert_eq!(main_of_gid(&gen.next()), None);
        for gid in [
            "pgproxy_ab_1_2@h",
            "pgproxy_ab_1_2@:5432",
            "pgproxy_ab_1_x@h:5432",
            "pgproxy_ab_1@h:5432",
            "pgproxy_ab_1_2@h:99999",
            "other_ab_1_2@h:5432",
        ] {
            assert!(!is_pgproxy_gid(gid), "{gid}");
            assert_eq!(main_of_gid(gid), None, "{gid}");
        }
    }

    #[test]
    fn a_generator_knows_its_own_gids() {
        let (gen, other) = (GidGen::new(), GidGen::new());
        for gid in [gen.next(), gen.next_for_main(9, "h", 5432)] {
            assert_eq!(gid_instance(&gid), Some(gen.instance()), "{gid}");
            assert_ne!(gid_instance(&gid), Some(other.instance()), "{gid}");
        }
        for gid in ["", "pgproxy_", "other_ab_1"] {
            assert_eq!(gid_instance(gid), None, "{gid}");
        }
        assert_ne!(gid_instance("pgproxy_ab_1"), Some(gen.instance()));
    }
}
