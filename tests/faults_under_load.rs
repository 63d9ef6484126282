//! Faults injected while a write workload of real clients runs through pgproxy: server
//! connections terminated (one node and a replicated shard), a replica frozen with SIGSTOP,
//! the main restarted with `pg_ctl restart -m fast`, pgproxy itself SIGKILLed and restarted.
//!
//! The workload (`workload`): 12 tokio-postgres clients, each in a loop: a transaction
//! `BEGIN; INSERT ledger; UPDATE counters … RETURNING n; COMMIT` (even clients with named
//! prepared statements, odd ones with simple Queries), an autocommit INSERT, and a read of its
//! own counter. Every outcome is recorded; afterwards (`Outcomes::check_node`) each surviving
//! node must hold every acknowledged id, no id of a transaction that failed before COMMIT (or
//! failed with 40001), and per client as many `tx` rows as its counter says (no half-applied
//! transaction). Every error must carry an allowed SQLSTATE, no request may hang, and every
//! value read must be one the committed history allows.

mod common;

use common::cluster::*;
use common::workloads::exec;
use common::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::{Client, Error, SimpleQueryMessage, Statement};

/// Concurrent clients of the workload.
const CLIENTS: usize = 12;
/// Longest a single request may take before it counts as a hang.
const OP_LIMIT: Duration = Duration::from_secs(20);
/// SQLSTATEs a client may see while a fault happens (docs/OPERATIONS.md).
const ALLOWED: [&str; 6] = ["08006", "08003", "57P01", "40001", "25P02", "53300"];

const SCHEMA: &str =
    "CREATE TABLE ledger (id bigint PRIMARY KEY, client int NOT NULL, kind text NOT NULL);
CREATE TABLE counters (client int PRIMARY KEY, n bigint NOT NULL)";

// ---------------------------------------------------------------------------------------------
// Outcomes of the workload
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct ClientBook {
    /// Transactions acknowledged as committed.
    committed_tx: i64,
    /// Transactions whose COMMIT failed in a way that leaves the outcome unknown.
    unknown_tx: i64,
}

#[derive(Default)]
struct Book {
    /// Ids whose transaction (or autocommit INSERT) the client saw succeed.
    acked: HashSet<i64>,
    /// Ids that must not exist: failed before COMMIT, or failed with 40001.
    failed: HashSet<i64>,
    /// Ids whose outcome is unknown (COMMIT or autocommit INSERT broke without 40001).
    unknown: HashSet<i64>,
    /// "stage code" -> count.
    errors: BTreeMap<String, usize>,
    /// Broken invariants seen while running.
    violations: Vec<String>,
    clients: HashMap<usize, ClientBook>,
}

/// Shared between the workload's clients and the test.
#[derive(Default)]
struct Outcomes {
    book: Mutex<Book>,
    /// Acknowledged commits so far (for progress checks while faults run).
    acked: AtomicUsize,
}

impl Outcomes {
    fn violation(&self, v: String) {
        let v = format!("{} {v}", utc_now());
        eprintln!("VIOLATION: {v}");
        self.book.lock().unwrap().violations.push(v);
    }

    fn error(&self, stage: &str, code: &str) {
        *self
            .book
            .lock()
            .unwrap()
            .errors
            .entry(format!("{stage} {code}"))
            .or_default() += 1;
    }

    fn acked(&self) -> usize {
        self.acked.load(Ordering::SeqCst)
    }

    fn summary(&self) -> String {
        let b = self.book.lock().unwrap();
        format!(
            "acked {} failed {} unknown {}; errors {:?}",
            b.acked.len(),
            b.failed.len(),
            b.unknown.len(),
            b.errors
        )
    }

    fn violations(&self) -> Vec<String> {
        self.book.lock().unwrap().violations.clone()
    }

    /// Checks one node's tables against the outcomes; returns the problems found.
    async fn check_node(&self, node: &PgNode) -> Vec<String> {
        let c = node.superuser("app").await;
        let ids: HashSet<i64> = c
            .query("SELECT id FROM ledger", &[])
            .await
            .expect("read ledger")
            .iter()
            .map(|r| r.get(0))
            .collect();
        let counters: HashMap<i32, i64> = c
            .query("SELECT client, n FROM counters", &[])
            .await
            .expect("read counters")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let tx_rows: HashMap<i32, i64> = c
            .query(
                "SELECT client, count(*) FROM ledger WHERE kind = 'tx' GROUP BY client",
                &[],
            )
            .await
            .expect("count tx rows")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let b = self.book.lock().unwrap();
        let mut problems = Vec::new();
        let mut lost: Vec<i64> = b.acked.difference(&ids).copied().collect();
        lost.sort();
        if !lost.is_empty() {
            problems.push(format!(
                "node {}: {} acknowledged ids missing, e.g. {:?}",
                node.port(),
                lost.len(),
                &lost[..lost.len().min(10)]
            ));
        }
        let mut ghosts: Vec<i64> = b.failed.intersection(&ids).copied().collect();
        ghosts.sort();
        if !ghosts.is_empty() {
            problems.push(format!(
                "node {}: {} ids of failed transactions present, e.g. {:?}",
                node.port(),
                ghosts.len(),
                &ghosts[..ghosts.len().min(10)]
            ));
        }
        for k in 0..CLIENTS as i32 {
            let n = counters.get(&k).copied().unwrap_or(-1);
            let rows = tx_rows.get(&k).copied().unwrap_or(0);
            if n != rows {
                problems.push(format!(
                    "node {}: client {k}: counter {n} but {rows} tx rows (half-applied)",
                    node.port()
                ));
            }
            let book = b.clients.get(&(k as usize));
            let (lo, hi) = book.map_or((0, 0), |cb| {
                (cb.committed_tx, cb.committed_tx + cb.unknown_tx)
            });
            if n < lo || n > hi {
                problems.push(format!(
                    "node {}: client {k}: counter {n} outside acknowledged [{lo}, {hi}]",
                    node.port()
                ));
            }
        }
        problems
    }
}

/// The wall clock as HH:MM:SS.mmm UTC, to match log lines.
fn utc_now() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let day = (ms / 1000) % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day / 3600,
        day / 60 % 60,
        day % 60,
        ms % 1000
    )
}

// ---------------------------------------------------------------------------------------------
// The workload
// ---------------------------------------------------------------------------------------------

/// How a client reports a failed request.
enum Failure {
    /// An ErrorResponse with this SQLSTATE.
    Code(String),
    /// The connection closed (or broke) without an ErrorResponse.
    Closed(String),
    /// No answer within [`OP_LIMIT`].
    Hang,
}

impl Failure {
    fn code(&self) -> &str {
        match self {
            Failure::Code(c) => c,
            Failure::Closed(_) => "closed",
            Failure::Hang => "hang",
        }
    }
}

fn failure(e: &Error) -> Failure {
    match e.as_db_error() {
        Some(db) => Failure::Code(db.code().code().to_string()),
        None => Failure::Closed(e.to_string()),
    }
}

async fn bounded<T>(
    fut: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(OP_LIMIT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(failure(&e)),
        Err(_) => Err(Failure::Hang),
    }
}

/// What the workload may see without it being a violation.
#[derive(Clone, Copy)]
struct Allow {
    /// Connections closing without an ErrorResponse, and refused logins (pgproxy killed).
    closed: bool,
}

struct Conn {
    client: Client,
    ins: Statement,
    upd: Statement,
    read: Statement,
}

async fn open(port: u16) -> Result<Conn, Failure> {
    let cfg = pg_config(port, "app", "secret", "app");
    let client = match tokio::time::timeout(OP_LIMIT, cfg.connect(tokio_postgres::NoTls)).await {
        Ok(Ok((client, conn))) => {
            tokio::spawn(async move {
                let _ = conn.await;
            });
            client
        }
        Ok(Err(e)) => return Err(failure(&e)),
        Err(_) => return Err(Failure::Hang),
    };
    let ins = bounded(client.prepare("INSERT INTO ledger (id, client, kind) VALUES ($1, $2, $3)"))
        .await?;
    let upd =
        bounded(client.prepare("UPDATE counters SET n = n + 1 WHERE client = $1 RETURNING n"))
            .await?;
    let read = bounded(client.prepare("SELECT n FROM counters WHERE client = $1")).await?;
    Ok(Conn {
        client,
        ins,
        upd,
        read,
    })
}

/// Runs `sql` with the simple protocol; the first column of the first row, if any.
async fn simple_first(c: &Client, sql: &str) -> Result<Option<String>, Error> {
    let msgs = c.simple_query(sql).await?;
    Ok(msgs.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_string).unwrap_or_default()),
        _ => None,
    }))
}

struct Worker {
    k: usize,
    prepared: bool,
    out: Arc<Outcomes>,
    allow: Allow,
}

impl Worker {
    /// Records a failure; true if the connection must be replaced.
    fn failed(&self, stage: &str, f: &Failure, c: &Client) -> bool {
        self.out.error(stage, f.code());
        match f {
            Failure::Code(code) if ALLOWED.contains(&code.as_str()) => {}
            Failure::Code(code) => self
                .out
                .violation(format!("client {}: {stage}: SQLSTATE {code}", self.k)),
            Failure::Closed(e) if !self.allow.closed => self.out.violation(format!(
                "client {}: {stage}: closed without an ErrorResponse: {e}",
                self.k
            )),
            Failure::Closed(_) => {}
            Failure::Hang => self.out.violation(format!(
                "client {}: {stage}: no answer within {OP_LIMIT:?}",
                self.k
            )),
        }
        matches!(f, Failure::Hang) || c.is_closed()
    }

    fn counter_range(&self) -> (i64, i64) {
        let b = self.out.book.lock().unwrap();
        let cb = b.clients.get(&self.k);
        cb.map_or((0, 0), |cb| {
            (cb.committed_tx, cb.committed_tx + cb.unknown_tx)
        })
    }

    /// One transaction; returns false if the connection must be replaced.
    async fn transaction(&self, c: &Conn, id: i64) -> bool {
        let k = self.k as i32;
        let (lo, hi) = self.counter_range();
        let res = async {
            bounded(c.client.batch_execute("BEGIN"))
                .await
                .map_err(|f| ("begin", f))?;
            let n: i64 = if self.prepared {
                bounded(c.client.execute(&c.ins, &[&id, &k, &"tx"]))
                    .await
                    .map_err(|f| ("insert", f))?;
                bounded(c.client.query_one(&c.upd, &[&k]))
                    .await
                    .map_err(|f| ("update", f))?
                    .get(0)
            } else {
                let ins = format!("INSERT INTO ledger VALUES ({id}, {k}, 'tx')");
                bounded(c.client.batch_execute(&ins))
                    .await
                    .map_err(|f| ("insert", f))?;
                let upd = format!("UPDATE counters SET n = n + 1 WHERE client = {k} RETURNING n");
                let v = bounded(simple_first(&c.client, &upd))
                    .await
                    .map_err(|f| ("update", f))?;
                v.and_then(|v| v.parse().ok()).unwrap_or(-1)
            };
            if n < lo + 1 || n > hi + 1 {
                self.out.violation(format!(
                    "client {k}: UPDATE … RETURNING n gave {n}, expected [{}, {}]",
                    lo + 1,
                    hi + 1
                ));
            }
            bounded(c.client.batch_execute("COMMIT"))
                .await
                .map_err(|f| ("commit", f))
        }
        .await;
        match res {
            Ok(()) => {
                let mut b = self.out.book.lock().unwrap();
                b.acked.insert(id);
                b.clients.entry(self.k).or_default().committed_tx += 1;
                self.out.acked.fetch_add(1, Ordering::SeqCst);
                true
            }
            Err((stage, f)) => {
                {
                    let mut b = self.out.book.lock().unwrap();
                    if stage == "commit" && f.code() != "40001" {
                        b.unknown.insert(id);
                        b.clients.entry(self.k).or_default().unknown_tx += 1;
                    } else {
                        b.failed.insert(id);
                    }
                }
                if self.failed(stage, &f, &c.client) {
                    return false;
                }
                match bounded(c.client.batch_execute("ROLLBACK")).await {
                    Ok(()) => true,
                    Err(f) => !self.failed("rollback", &f, &c.client),
                }
            }
        }
    }

    /// One autocommit INSERT; returns false if the connection must be replaced.
    async fn autocommit(&self, c: &Conn, id: i64) -> bool {
        let k = self.k as i32;
        let res = if self.prepared {
            bounded(c.client.execute(&c.ins, &[&id, &k, &"auto"]))
                .await
                .map(|_| ())
        } else {
            let sql = format!("INSERT INTO ledger VALUES ({id}, {k}, 'auto')");
            bounded(c.client.batch_execute(&sql)).await
        };
        match res {
            Ok(()) => {
                self.out.book.lock().unwrap().acked.insert(id);
                self.out.acked.fetch_add(1, Ordering::SeqCst);
                true
            }
            Err(f) => {
                {
                    let mut b = self.out.book.lock().unwrap();
                    if f.code() == "40001" {
                        b.failed.insert(id);
                    } else {
                        b.unknown.insert(id);
                    }
                }
                !self.failed("autocommit", &f, &c.client)
            }
        }
    }

    /// Reads the client's own counter (a load-balanced read on a replicated shard).
    async fn read(&self, c: &Conn) -> bool {
        let k = self.k as i32;
        let (lo, hi) = self.counter_range();
        let res = if self.prepared {
            bounded(c.client.query_one(&c.read, &[&k]))
                .await
                .map(|r| r.get::<_, i64>(0))
        } else {
            let sql = format!("SELECT n FROM counters WHERE client = {k}");
            bounded(simple_first(&c.client, &sql))
                .await
                .map(|v| v.and_then(|v| v.parse().ok()).unwrap_or(-1))
        };
        match res {
            Ok(n) => {
                if n < lo || n > hi {
                    self.out.violation(format!(
                        "client {k}: read counter {n}, expected [{lo}, {hi}]"
                    ));
                }
                true
            }
            Err(f) => !self.failed("read", &f, &c.client),
        }
    }

    async fn run(self, port: Arc<AtomicU16>, stop: Arc<AtomicBool>) {
        let mut conn: Option<Conn> = None;
        let mut seq: i64 = 0;
        while !stop.load(Ordering::SeqCst) {
            let Some(c) = &conn else {
                match open(port.load(Ordering::SeqCst)).await {
                    Ok(c) => conn = Some(c),
                    Err(f) => {
                        self.out.error("connect", f.code());
                        let ok = match &f {
                            Failure::Code(code) => ALLOWED.contains(&code.as_str()),
                            Failure::Closed(_) => self.allow.closed,
                            Failure::Hang => false,
                        };
                        if !ok {
                            self.out.violation(format!(
                                "client {}: connect: {}",
                                self.k,
                                match &f {
                                    Failure::Closed(e) => e.clone(),
                                    other => other.code().to_string(),
                                }
                            ));
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                continue;
            };
            seq += 1;
            let id = self.k as i64 * 1_000_000 + seq;
            let keep = match seq % 5 {
                0..=2 => self.transaction(c, id).await,
                3 => self.autocommit(c, id).await,
                _ => self.read(c).await,
            };
            if !keep {
                conn = None;
            }
        }
    }
}

/// The running workload (its clients are aborted if it is dropped unfinished).
struct Workload {
    out: Arc<Outcomes>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Workload {
    /// Creates the tables through `port` and starts [`CLIENTS`] clients against `port`'s
    /// current value.
    async fn start(port: Arc<AtomicU16>, allow: Allow) -> Workload {
        let c = connect_app(port.load(Ordering::SeqCst)).await;
        exec(&c, SCHEMA).await;
        exec(
            &c,
            &format!(
                "INSERT INTO counters SELECT g, 0 FROM generate_series(0, {}) g",
                CLIENTS - 1
            ),
        )
        .await;
        let out = Arc::new(Outcomes::default());
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..CLIENTS)
            .map(|k| {
                let w = Worker {
                    k,
                    prepared: k % 2 == 0,
                    out: out.clone(),
                    allow,
                };
                tokio::spawn(w.run(port.clone(), stop.clone()))
            })
            .collect();
        Workload { out, stop, tasks }
    }

    /// Waits until `n` more commits were acknowledged.
    async fn progress(&self, n: usize, what: &str) {
        let start = self.out.acked();
        eventually(30, what, || async {
            (self.out.acked() >= start + n).then_some(())
        })
        .await;
    }

    /// Stops the clients (each finishes its current request, bounded by [`OP_LIMIT`]).
    async fn finish(mut self) -> Arc<Outcomes> {
        self.stop.store(true, Ordering::SeqCst);
        for t in std::mem::take(&mut self.tasks) {
            within(OP_LIMIT.as_secs() * 3, "workload clients stop", t)
                .await
                .expect("workload client panicked");
        }
        println!("workload: {}", self.out.summary());
        self.out.clone()
    }
}

// ---------------------------------------------------------------------------------------------
// Checks shared by the tests
// ---------------------------------------------------------------------------------------------

/// Nodes pgproxy logged as detached ("node state changed … node=N … to=\"down\"").
fn detached(log: &str) -> HashSet<usize> {
    for l in log.lines().filter(|l| {
        l.contains("node state changed") || l.contains("failover") || l.contains("probe")
    }) {
        println!("pgproxy: {l}");
    }
    log.lines()
        .filter(|l| l.contains("node state changed") && l.contains("to=\"down\""))
        .filter_map(|l| {
            let rest = l.split(" node=").nth(1)?;
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

fn assert_no_panic(log: &str) {
    let lines: Vec<&str> = log.lines().collect();
    let bad: Vec<String> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("panicked at"))
        .map(|(i, _)| lines[i..(i + 2).min(lines.len())].join("\n"))
        .collect();
    if bad.is_empty() {
        return;
    }
    let saved = save_log(log);
    panic!(
        "pgproxy panicked {} times (log saved to {}):\n{}",
        bad.len(),
        saved.display(),
        bad[..bad.len().min(5)].join("\n")
    );
}

/// The proxy keeps serving: a new client writes and reads back.
async fn still_serving(port: u16) {
    let c = within(20, "connect after the fault", connect_app(port)).await;
    within(
        20,
        "a write after the fault",
        exec(&c, "INSERT INTO ledger VALUES (-1, -1, 'after')"),
    )
    .await;
    let n = within(
        20,
        "a read after the fault",
        scalar(&c, "SELECT count(*) FROM ledger WHERE id = -1"),
    )
    .await;
    assert_eq!(n, "1", "the write after the fault is visible");
}

/// Asserts no violation during the run and the data invariants on every node in `nodes`.
async fn assert_outcomes(out: &Outcomes, nodes: &[&PgNode], log: &str) {
    let mut problems = out.violations();
    for node in nodes {
        problems.extend(out.check_node(node).await);
    }
    if problems.is_empty() {
        return;
    }
    panic!(
        "{} problems ({}; pgproxy log saved to {}):\n{}",
        problems.len(),
        out.summary(),
        save_log(log).display(),
        problems.join("\n")
    );
}

/// Keeps a copy of pgproxy's log (its temp dir goes with the test) for a failure message.
fn save_log(log: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "pgproxy-faults-{}-{}.log",
        std::process::id(),
        rand_u64() % 100_000
    ));
    let _ = std::fs::write(&path, log);
    path
}

/// Verifies the nodes in `keep` (by index) are identical, directly and with `pgproxy verify`.
async fn assert_survivors_identical(cl: &ReplCluster, keep: &[usize]) {
    let nodes: Vec<&PgNode> = keep.iter().map(|&i| &cl.nodes[i]).collect();
    if nodes.len() > 1 {
        assert_identical(&nodes, &["ledger", "counters"]).await;
    }
    let ports: Vec<u16> = nodes.iter().map(|n| n.port()).collect();
    let dir = tempfile::tempdir().expect("temp dir");
    assert_verify_ok_for(
        &cl.config.clone().with_ports(&ports),
        dir.path(),
        "alive.toml",
    )
    .await;
}

/// Prepared transactions on a node (gids).
async fn prepared_xacts(node: &PgNode) -> String {
    node.scalar("SELECT coalesce(string_agg(gid, ','), '') FROM pg_prepared_xacts")
        .await
}

// ---------------------------------------------------------------------------------------------
// Fault helpers
// ---------------------------------------------------------------------------------------------

const TERMINATE_ONE: &str = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
     WHERE usename = 'app' AND datname = 'app' AND backend_type = 'client backend' \
     AND pid <> pg_backend_pid() ORDER BY random() LIMIT 1";

/// Until `stop`, terminates one random pgproxy server connection on one of `nodes` (in turn)
/// every 150-400 ms; returns how many were terminated per node.
async fn terminate_backends(nodes: &[&PgNode], stop: &AtomicBool, pause_ms: u64) -> Vec<usize> {
    let mut killed = vec![0; nodes.len()];
    let mut i = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let n = i % nodes.len();
        if let Ok(c) = connect(nodes[n].port(), "postgres", "", "app").await {
            if let Ok(rows) = c.simple_query(TERMINATE_ONE).await {
                if rows
                    .iter()
                    .any(|m| matches!(m, SimpleQueryMessage::Row(r) if r.get(0) == Some("t")))
                {
                    killed[n] += 1;
                }
            }
        }
        i += 1;
        let pause = pause_ms + (rand_u64() % (pause_ms * 5 / 3 + 1));
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    killed
}

/// [`terminate_backends`] for `how_long`.
async fn terminate_for(nodes: &[&PgNode], how_long: Duration, pause_ms: u64) -> Vec<usize> {
    let stop = AtomicBool::new(false);
    let stopper = async {
        tokio::time::sleep(how_long).await;
        stop.store(true, Ordering::SeqCst);
    };
    tokio::join!(terminate_backends(nodes, &stop, pause_ms), stopper).0
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// The postmaster's PID as its data dir records it (first line of postmaster.pid).
fn postmaster_pid(data_dir: &Path) -> i32 {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).expect("postmaster.pid");
    text.lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("pid on the first line of postmaster.pid")
}

/// Every process of a node stopped with SIGSTOP; SIGCONT on `resume` or drop.
struct Frozen {
    pids: Vec<i32>,
}

impl Frozen {
    /// SIGSTOPs the postmaster first (so it forks nothing new), then all its children.
    fn freeze(data_dir: &Path) -> Frozen {
        let pm = postmaster_pid(data_dir);
        signal(pm, libc::SIGSTOP);
        let out = std::process::Command::new("pgrep")
            .arg("-P")
            .arg(pm.to_string())
            .output()
            .expect("run pgrep");
        let mut pids = vec![pm];
        for pid in String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().parse::<i32>().ok())
        {
            signal(pid, libc::SIGSTOP);
            pids.push(pid);
        }
        Frozen { pids }
    }

    fn resume(&mut self) {
        for pid in self.pids.drain(..).rev() {
            signal(pid, libc::SIGCONT);
        }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        self.resume();
    }
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) with a PID read from the node's own postmaster.pid or pgrep -P of it.
    unsafe { libc::kill(pid, sig) };
}

/// Runs a PostgreSQL tool as the `postgres` OS user when we are root.
fn pg_command(tool: &str) -> std::process::Command {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let mut cmd = std::process::Command::new("setpriv");
        cmd.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(pg_tool(tool));
        cmd
    } else {
        std::process::Command::new(pg_tool(tool))
    }
}

/// A postmaster started by `pg_ctl` (not the harness's child): stopped (immediate) on drop.
struct PgCtlStarted {
    data_dir: std::path::PathBuf,
}

impl Drop for PgCtlStarted {
    fn drop(&mut self) {
        let _ = pg_command("pg_ctl")
            .args(["stop", "-m", "immediate", "-w", "-t", "20", "-D"])
            .arg(&self.data_dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// `pg_ctl restart -m fast` of a node (blocking until the new postmaster accepts connections).
async fn pg_ctl_restart(node: &PgNode) -> (PgCtlStarted, std::process::Output) {
    let data = node.data_dir();
    let log = data.parent().expect("node dir").join("restart.log");
    let guard = PgCtlStarted {
        data_dir: data.clone(),
    };
    let out = tokio::task::spawn_blocking(move || {
        pg_command("pg_ctl")
            .args(["restart", "-m", "fast", "-w", "-t", "30", "-D"])
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run pg_ctl")
    })
    .await
    .expect("pg_ctl task");
    (guard, out)
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

/// (a) One node, transaction pooling: random pgproxy server connections are terminated with
/// pg_terminate_backend() every 150-400 ms for 10 s while the workload runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn terminated_server_connections_on_one_node() {
    within(90, "test", async {
        let (node, proxy) = node_and_proxy(|c| c.pool_size(8).checkout_timeout_ms(20_000)).await;
        let port = Arc::new(AtomicU16::new(proxy.port()));
        let wl = Workload::start(port.clone(), Allow { closed: false }).await;
        wl.progress(100, "commits before the fault").await;
        let killed = terminate_for(&[&node], Duration::from_secs(10), 150).await;
        println!("terminated backends: {killed:?}");
        assert!(killed[0] >= 10, "terminated {killed:?}");
        wl.progress(100, "commits after the fault").await;
        let out = wl.finish().await;
        still_serving(proxy.port()).await;
        assert_no_panic(&proxy.log());
        assert_outcomes(&out, &[&node], &proxy.log()).await;
    })
    .await
}

/// (b) A replicated 2-node shard: pgproxy's server connections are terminated on the main and
/// on the replica in turn. A terminated follower connection may detach the replica (its
/// transaction is gone there); the survivors must agree and hold every acknowledged commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn terminated_server_connections_on_a_replicated_shard() {
    within(120, "test", async {
        let cl = ReplCluster::start(2, |c| c.health("interval_ms", "200")).await;
        let port = Arc::new(AtomicU16::new(cl.port()));
        let wl = Workload::start(port.clone(), Allow { closed: false }).await;
        wl.progress(60, "commits before the fault").await;
        // The replica's connections first, then both nodes' in turn.
        let on_replica = terminate_for(&[&cl.nodes[1]], Duration::from_secs(5), 150).await;
        println!(
            "terminated {on_replica:?} on the replica; detached so far: {:?}",
            detached(&cl.proxy.log())
        );
        let killed = terminate_for(&cl.all(), Duration::from_secs(6), 150).await;
        println!("then terminated backends per node: {killed:?}");
        wl.progress(60, "commits after the fault").await;
        let out = wl.finish().await;
        still_serving(cl.port()).await;
        let log = cl.proxy.log();
        assert_no_panic(&log);
        let gone = detached(&log);
        println!("detached nodes: {gone:?}");
        let keep: Vec<usize> = (0..2).filter(|i| !gone.contains(i)).collect();
        assert!(!keep.is_empty(), "a node is left");
        let nodes: Vec<&PgNode> = keep.iter().map(|&i| &cl.nodes[i]).collect();
        assert_outcomes(&out, &nodes, &log).await;
        assert_survivors_identical(&cl, &keep).await;
        for &i in &gone {
            println!(
                "detached node {i}: prepared transactions {:?}",
                prepared_xacts(&cl.nodes[i]).await
            );
        }
        for node in &nodes {
            let left = eventually(10, "no prepared transaction left", || async {
                let p = prepared_xacts(node).await;
                p.is_empty().then_some(p)
            });
            left.await;
        }
    })
    .await
}

/// (c) A replica (every process of it) frozen with SIGSTOP for 8 s, well past the health
/// checks' limit (2 failures of 1 s), then SIGCONT: it is detached, the workload goes on while
/// it is frozen, nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn a_frozen_replica_is_detached_and_the_workload_goes_on() {
    within(120, "test", async {
        let cl = ReplCluster::start(2, |c| {
            c.health("interval_ms", "200")
                .health("timeout_ms", "1000")
                .health("failures", "2")
        })
        .await;
        let port = Arc::new(AtomicU16::new(cl.port()));
        let wl = Workload::start(port.clone(), Allow { closed: false }).await;
        wl.progress(60, "commits before the fault").await;
        let mut frozen = Frozen::freeze(&cl.nodes[1].data_dir());
        println!("froze {} processes of node 1", frozen.pids.len());
        let t0 = Instant::now();
        cl.wait_log(10, "node state changed").await;
        println!("detached after {:?}", t0.elapsed());
        // While the replica is still frozen, commits must go on (on the main alone).
        let progressed = tokio::time::timeout(
            Duration::from_secs(5),
            wl.progress(30, "commits while the replica is frozen"),
        )
        .await
        .is_ok();
        let stuck = if progressed {
            String::new()
        } else {
            let sql = "SELECT pid, state, wait_event, left(query, 60) FROM pg_stat_activity \
                       WHERE datname = 'app' AND pid <> pg_backend_pid() ORDER BY pid";
            format!(
                "{:?}",
                simple_rows(&cl.nodes[0].superuser("app").await, sql).await
            )
        };
        tokio::time::sleep(Duration::from_secs(8).saturating_sub(t0.elapsed())).await;
        frozen.resume();
        println!("resumed at {}; acked so far {}", utc_now(), wl.out.acked());
        wl.progress(60, "commits after SIGCONT").await;
        let out = wl.finish().await;
        still_serving(cl.port()).await;
        let log = cl.proxy.log();
        assert_no_panic(&log);
        assert_eq!(
            detached(&log),
            HashSet::from([1]),
            "the replica is detached"
        );
        assert_outcomes(&out, &[&cl.nodes[0]], &log).await;
        assert_survivors_identical(&cl, &[0]).await;
        assert_eq!(prepared_xacts(&cl.nodes[0]).await, "", "main: prepared");
        assert!(
            progressed,
            "no commit while the detached replica stayed frozen; main's backends:\n{stuck}"
        );
    })
    .await
}

/// (d) The main restarted with `pg_ctl restart -m fast` under load: transactions in flight get
/// 40001 (or another allowed error), the main is detached, node 1 takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_main_restarted_under_load() {
    within(120, "test", async {
        let cl = ReplCluster::start(2, |c| c.health("interval_ms", "200")).await;
        let port = Arc::new(AtomicU16::new(cl.port()));
        let wl = Workload::start(port.clone(), Allow { closed: false }).await;
        wl.progress(60, "commits before the fault").await;
        let (_restarted, out) = pg_ctl_restart(&cl.nodes[0]).await;
        assert!(
            out.status.success(),
            "pg_ctl restart: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        wl.progress(100, "commits after the restart").await;
        let out = wl.finish().await;
        still_serving(cl.port()).await;
        let log = cl.proxy.log();
        assert_no_panic(&log);
        let gone = detached(&log);
        println!("detached nodes: {gone:?}");
        assert_eq!(gone, HashSet::from([0]), "the restarted main is detached");
        assert!(log.contains("failover"), "node 1 became the main");
        assert_outcomes(&out, &[&cl.nodes[1]], &log).await;
        assert_survivors_identical(&cl, &[1]).await;
        assert_eq!(prepared_xacts(&cl.nodes[1]).await, "", "the new main");
    })
    .await
}

/// (e) pgproxy SIGKILLed under load on a 2-node shard and started again (same config and
/// decision log): clients reconnect; afterwards no prepared transaction is left on any node,
/// both nodes are identical and hold every acknowledged commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgproxy_killed_and_restarted_under_load() {
    within(120, "test", async {
        let mut cl = ReplCluster::start(2, |c| c.health("interval_ms", "200")).await;
        let port = Arc::new(AtomicU16::new(cl.port()));
        let wl = Workload::start(port.clone(), Allow { closed: true }).await;
        wl.progress(100, "commits before the kill").await;
        cl.proxy.signal(libc::SIGKILL);
        assert!(
            cl.proxy.wait_exit(Duration::from_secs(5)).await.is_some(),
            "pgproxy exits on SIGKILL"
        );
        let old_log = cl.proxy.log();
        let in_doubt: Vec<String> =
            futures_util::future::join_all(cl.nodes.iter().map(prepared_xacts)).await;
        println!("prepared transactions right after the kill: {in_doubt:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        cl.proxy = Proxy::start(&cl.config.render()).await;
        port.store(cl.port(), Ordering::SeqCst);
        wl.progress(100, "commits after the restart").await;
        let out = wl.finish().await;
        still_serving(cl.port()).await;
        let log = cl.proxy.log();
        assert_no_panic(&old_log);
        assert_no_panic(&log);
        assert!(detached(&log).is_empty(), "no node detached:\n{log}");
        for node in &cl.nodes {
            eventually(20, "no prepared transaction left", || async {
                prepared_xacts(node).await.is_empty().then_some(())
            })
            .await;
        }
        assert_outcomes(
            &out,
            &cl.all(),
            &format!("{old_log}\n--- restarted ---\n{log}"),
        )
        .await;
        cl.assert_identical(&["ledger", "counters"]).await;
        cl.assert_verify_ok().await;
    })
    .await
}

/// Minimized from (a): the server connection of a transaction-mode client that sits idle
/// inside a transaction is terminated. Returns what the client received unasked within 1 s
/// (tags and SQLSTATEs) and then what its next statement got.
async fn idle_in_transaction_backend_terminated(
    proxy_port: u16,
    nodes: &[&PgNode],
) -> (Vec<String>, Vec<String>) {
    let mut raw = wire::RawConn::login_trust(proxy_port, "trustuser", "app").await;
    raw.send(&wire::query("BEGIN")).await.expect("send BEGIN");
    raw.until_ready().await;
    raw.send(&wire::query("SELECT 1"))
        .await
        .expect("send SELECT");
    raw.until_ready().await;
    let kill = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                WHERE usename = 'trustuser' AND pid <> pg_backend_pid()";
    let mut killed = 0;
    for node in nodes {
        killed += node.scalar(kill).await.parse::<i32>().expect("count");
    }
    assert!(
        killed >= 1,
        "a server connection of the client was terminated"
    );
    let show = |m: &wire::Msg| match m.tag {
        b'E' => format!(
            "E {}",
            wire::error_fields(&m.body)
                .get(&b'C')
                .cloned()
                .unwrap_or_default()
        ),
        b'Z' => format!("Z {}", m.body.first().map(|&b| b as char).unwrap_or('?')),
        t => (t as char).to_string(),
    };
    let mut unasked = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(1), raw.recv()).await {
        unasked.push(show(&m));
    }
    raw.send(&wire::query("SELECT 2"))
        .await
        .expect("send the next statement");
    let mut next = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(5), raw.recv()).await {
        next.push(show(&m));
        if m.tag == b'Z' {
            break;
        }
    }
    (unasked, next)
}

/// Bug found by (a): pgproxy relays the FATAL error of a server connection terminated while
/// its client is idle inside a transaction as an unsolicited ErrorResponse + ReadyForQuery.
/// tokio-postgres (and any driver that matches responses to requests) sees a response to no
/// request and drops the connection; psql/libpq would pair it with the next query.
/// Expected (docs/OPERATIONS.md): nothing unasked; the next statement gets 08006 (then 25P02
/// until ROLLBACK).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn repro_unsolicited_error_after_idle_in_transaction_termination() {
    within(60, "test", async {
        let (node, proxy) = node_and_proxy(|c| c).await;
        let (unasked, next) = idle_in_transaction_backend_terminated(proxy.port(), &[&node]).await;
        println!("unasked: {unasked:?}; next statement: {next:?}");
        assert_no_panic(&proxy.log());
        assert!(unasked.is_empty(), "unsolicited messages: {unasked:?}");
        assert_eq!(
            next.first().map(String::as_str),
            Some("E 08006"),
            "{next:?}"
        );
    })
    .await
}

/// Bug found by (c), minimized: one autocommit INSERT while the replica is frozen (SIGSTOP of
/// all its processes). Health checks detach the replica after ~2.5 s, but the INSERT stays
/// blocked on the frozen follower until it is resumed. Expected: answered soon after the
/// detach (the write completes on the main alone, or fails with 40001).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn repro_write_hangs_on_a_frozen_detached_replica() {
    within(60, "test", async {
        let cl = ReplCluster::start(2, |c| {
            c.health("interval_ms", "200")
                .health("timeout_ms", "1000")
                .health("failures", "2")
        })
        .await;
        let c = cl.client().await;
        exec(&c, "CREATE TABLE t (id int PRIMARY KEY)").await;
        exec(&c, "INSERT INTO t VALUES (1)").await;
        let mut frozen = Frozen::freeze(&cl.nodes[1].data_dir());
        let t0 = Instant::now();
        let insert = tokio::spawn(async move {
            let r = c.batch_execute("INSERT INTO t VALUES (2)").await;
            (c, r.map_err(|e| describe(&e)))
        });
        cl.wait_log(10, "node state changed").await;
        let detached_after = t0.elapsed();
        let answered = tokio::time::timeout(Duration::from_secs(8), insert).await;
        let waited = t0.elapsed();
        frozen.resume();
        let (answered, result) = match answered {
            Ok(joined) => (true, joined.expect("task").1),
            Err(_) => (false, Err("still waiting".to_string())),
        };
        println!(
            "detached after {detached_after:?}; INSERT answered: {answered} after {waited:?}: {result:?}"
        );
        assert_no_panic(&cl.proxy.log());
        assert!(
            answered,
            "the INSERT was not answered {waited:?} after the replica froze ({detached_after:?} after it was detached)"
        );
    })
    .await
}

/// On the main only: a deferred trigger that terminates its own backend when the transaction
/// commits (as pg_terminate_backend() from outside would at that moment).
const DIE_AT_COMMIT: &str = "CREATE FUNCTION die() RETURNS trigger LANGUAGE plpgsql AS
    $$ BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(1); RETURN NULL; END $$;
    CREATE CONSTRAINT TRIGGER die AFTER INSERT ON t DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.id < 0) EXECUTE FUNCTION die()";

/// Autocommit INSERT of id -1 whose implicit COMMIT on the main dies; (client's result, the
/// next statement's result, rows with id -1 per node).
async fn autocommit_insert_dying_at_commit(
    cl: &ReplCluster,
) -> (Result<(), String>, Result<(), String>, Vec<String>) {
    let c = cl.client().await;
    let res = within(20, "INSERT", c.batch_execute("INSERT INTO t VALUES (-1)"))
        .await
        .map_err(|e| describe(&e));
    let next = within(20, "next", c.batch_execute("BEGIN; SELECT 1; COMMIT"))
        .await
        .map_err(|e| describe(&e));
    let mut rows = Vec::new();
    for node in &cl.nodes {
        if node.pid().is_some() {
            rows.push(node.scalar("SELECT count(*) FROM t WHERE id = -1").await);
        }
    }
    (res, next, rows)
}

/// The main frozen (SIGSTOP) under a write: once health checks detach it, the write fails
/// with 40001 (not a hang) and its retry runs on the new main.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_a_frozen_main_fails_over_once_it_is_detached() {
    within(60, "test", async {
        let cl = ReplCluster::start(2, |c| {
            c.health("interval_ms", "200")
                .health("timeout_ms", "1000")
                .health("failures", "2")
        })
        .await;
        let c = cl.client().await;
        exec(&c, "CREATE TABLE t (id int PRIMARY KEY)").await;
        exec(&c, "INSERT INTO t VALUES (1)").await;
        let mut frozen = Frozen::freeze(&cl.nodes[0].data_dir());
        let insert = tokio::spawn(async move {
            let r = c.batch_execute("INSERT INTO t VALUES (2)").await;
            (c, r)
        });
        cl.wait_log(10, "node state changed").await;
        let answered = tokio::time::timeout(Duration::from_secs(8), insert).await;
        let log = cl.proxy.log();
        let Ok(joined) = answered else {
            frozen.resume();
            panic!("the INSERT still waits on the frozen, detached main:\n{log}");
        };
        let (c, first) = joined.expect("task");
        if let Err(e) = &first {
            assert_eq!(sqlstate(e).as_deref(), Some("40001"), "{}", describe(e));
            exec(&c, "INSERT INTO t VALUES (2)").await;
        }
        assert_eq!(scalar(&c, "SELECT count(*) FROM t").await, "2");
        frozen.resume();
        assert_no_panic(&log);
        assert_eq!(cl.nodes[1].scalar("SELECT count(*) FROM t").await, "2");
    })
    .await
}

/// Bug found by (b), minimized: the main's connection dies during the COMMIT of pgproxy's
/// implicit transaction around an autocommit write, on a shard whose replica is detached.
/// Was: the client got success (INSERT 0 1 + ReadyForQuery) although nothing committed, and
/// its next statement 25P02. Now: an error (08006: it may or may not have committed) and the
/// session usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn repro_autocommit_acknowledged_when_the_main_dies_at_commit_alone() {
    within(60, "test", async {
        let mut cl = ReplCluster::start(2, |c| {
            c.health("interval_ms", "200").health("failures", "2")
        })
        .await;
        let c = cl.client().await;
        exec(&c, "CREATE TABLE t (id int PRIMARY KEY)").await;
        cl.nodes[1].kill9();
        cl.wait_log(10, "node state changed").await;
        exec(&cl.nodes[0].superuser("app").await, DIE_AT_COMMIT).await;
        let (res, next, rows) = autocommit_insert_dying_at_commit(&cl).await;
        println!("INSERT: {res:?}; next statement: {next:?}; rows with id -1 per node: {rows:?}");
        assert_no_panic(&cl.proxy.log());
        assert!(
            res.is_err() || rows.iter().all(|r| r == "1"),
            "INSERT acknowledged but not committed: {res:?}, rows {rows:?}"
        );
        next.expect("the session goes on");
    })
    .await
}

/// The same with `commit = "ordered"` and both nodes up: the replica commits first, then the
/// main's COMMIT dies. Was: success for the client, the row on node 1 only, and no node
/// detached (the nodes silently differed). Now the main is detached and the write stands on
/// the replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn repro_autocommit_acknowledged_when_the_main_dies_at_an_ordered_commit() {
    within(60, "test", async {
        let cl = ReplCluster::start(2, |c| c.commit("ordered")).await;
        let c = cl.client().await;
        exec(&c, "CREATE TABLE t (id int PRIMARY KEY)").await;
        exec(&cl.nodes[0].superuser("app").await, DIE_AT_COMMIT).await;
        let (res, next, rows) = autocommit_insert_dying_at_commit(&cl).await;
        println!("INSERT: {res:?}; next statement: {next:?}; rows with id -1 per node: {rows:?}");
        let log = cl.proxy.log();
        assert_no_panic(&log);
        // The replica committed first: the write stands there, and the main, which may not
        // have it, is detached (never left silently different).
        assert!(
            res.is_err() || rows[1] == "1",
            "INSERT acknowledged but not committed: {res:?}, rows {rows:?}"
        );
        if rows[0] != rows[1] {
            assert!(
                log.contains("commit failed after other nodes committed"),
                "nodes differ and the main was not detached: rows {rows:?}\n{log}"
            );
        }
        next.expect("the session goes on");
    })
    .await
}

/// An explicit transaction's COMMIT with `commit = "ordered"` whose main dies while it runs
/// its deferred checks (before any node committed): the client gets 40001 (not a hang, not a
/// success), nothing is stored anywhere, and the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordered_commit_whose_main_dies_first_fails_with_40001() {
    within(60, "test", async {
        let cl = ReplCluster::start(2, |c| c.commit("ordered")).await;
        let c = cl.client().await;
        exec(&c, "CREATE TABLE t (id int PRIMARY KEY)").await;
        exec(&cl.nodes[0].superuser("app").await, DIE_AT_COMMIT).await;
        exec(&c, "BEGIN").await;
        exec(&c, "INSERT INTO t VALUES (-1)").await;
        let res = within(20, "COMMIT", c.batch_execute("COMMIT")).await;
        let e = expect_sqlstate(res, "40001");
        println!("COMMIT: {}", describe(&e));
        assert_no_panic(&cl.proxy.log());
        within(20, "next", c.batch_execute("BEGIN; SELECT 1; COMMIT"))
            .await
            .expect("the session goes on");
        for node in &cl.nodes {
            assert_eq!(
                node.scalar("SELECT count(*) FROM t WHERE id = -1").await,
                "0"
            );
        }
    })
    .await
}

/// Stress variant of (a): terminations every 20-50 ms on one node. Found: the session task
/// panics at `flush_server` ("bytes for a server are only queued while attached", 3-5 times
/// per run; once in 8 runs of (a)): `check_shape` can get the statement's columns and the
/// server's FATAL in one read, loses the server, and still returns true, so `on_bind` queues
/// the Bind with no server attached. Also seen: a login whose server connection is terminated
/// while pgproxy replays the startup settings is refused with 28000 "invalid startup
/// parameter" instead of a connection error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_terminations_hunting_a_panic() {
    within(90, "test", async {
        let (node, proxy) = node_and_proxy(|c| c.pool_size(4).checkout_timeout_ms(20_000)).await;
        let port = Arc::new(AtomicU16::new(proxy.port()));
        let wl = Workload::start(port.clone(), Allow { closed: true }).await;
        wl.progress(50, "commits before the fault").await;
        let killed = terminate_for(&[&node], Duration::from_secs(20), 20).await;
        println!("terminated backends: {killed:?}");
        let out = wl.finish().await;
        let log = proxy.log();
        assert_no_panic(&log);
        assert_outcomes(&out, &[&node], &log).await;
    })
    .await
}
