//! Synchronous replication inside a shard, on the session side.
//!
//! A replicated session handles client requests one *unit* at a time (a simple Query, or
//! extended-protocol messages up to Sync or Flush). Each unit is classified (`router::classify`):
//! - reads outside a transaction go to one up node chosen by weight (load balancing);
//! - everything else runs on the shard's main node first, through the ordinary relay;
//! - writes (and session changes, savepoints, once a transaction wrote) then run on every other
//!   up node (the *followers*), with the same statement names and literal values; their
//!   outcomes (command tags, error codes) must equal the main's, or the node is quarantined;
//! - an autocommit write runs inside a transaction pgproxy opens, so that it commits on every
//!   node or none; COMMIT of a transaction that wrote uses two-phase commit (or the ordered
//!   commit), in `commit.rs`.
//!
//! The main's final ReadyForQuery of a unit is held back until the followers answered, so the
//! client never sees a write acknowledged before every node has it.

use super::follower::{Follower, Outcome};
use super::relay::{frames_of, Session};
use super::SessionError;
use crate::cluster::DetachCause;
use crate::config::{Database, PoolMode, User};
use crate::pool::PoolError;
use crate::protocol::frame::{self, FrameRef};
use crate::protocol::message::{self, fe, Bind, Parse};
use crate::router::keywords::{
    cannot_run_in_block, creates_temp, is_copy_from_stdin, reads_catalog,
};
use crate::router::{classify, Classified, Kind};
use bytes::{BufMut, Bytes};
use std::collections::HashMap;

/// Replication state of one session.
pub struct Repl {
    /// The session created temporary objects: its transactions commit in order, not with 2PC.
    pub temp_objects: bool,
    /// The unit being run reads currval/lastval (its main connection is chosen by client).
    pub reads_sequences: bool,
    /// Shard index.
    pub shard: usize,
    pub(super) user: User,
    pub(super) db: Database,
    /// Node the attached server connection belongs to.
    pub node: usize,
    /// Connections to the other up nodes, while the session needs them.
    pub followers: Vec<Follower>,
    /// Followers are inside the current transaction.
    pub joined: bool,
    /// Units the main ran in this transaction before the followers joined, replayed when they
    /// join (BEGIN, savepoints, SET).
    pub prefix: Vec<Bytes>,
    /// pgproxy opened the transaction around an autocommit write.
    pub implicit: bool,
    /// The unit in flight on the main.
    pub unit: Option<Unit>,
    /// The main's outcomes since the followers last caught up.
    pub outcomes: Vec<Outcome>,
    /// The main's last ReadyForQuery status of the unit, held back.
    pub held_ready: Option<u8>,
    /// Ordered commit: the followers committed and the main's COMMIT is pending. If the main
    /// is lost now, the transaction exists on the followers only: the main must be detached.
    pub committed_elsewhere: bool,
    /// The main's outcomes of units sent to the followers whose answers are not read yet
    /// (followers run one unit behind the main inside a transaction; settled before the next
    /// unit's answer, and always before a commit).
    pub expect: Vec<Outcome>,
    /// A savepoint was set in this transaction.
    pub savepoints: bool,
    /// Named portals and whether executing them writes.
    pub portals: HashMap<String, bool>,
    /// Offsets of pgproxy's own frames in the unit being sent (see `Made::Frames`).
    pub own_frames: Vec<usize>,
    /// The transaction's timestamp as the main gave it (now() for every node).
    pub txn_ts: Option<String>,
    /// The main's transaction id (`txid_current_if_assigned()`), read ahead with the
    /// timestamp or after an autocommit write, with the (shard, node) it was read on (a
    /// transaction that moves between shards changes mains); two-phase commit names the
    /// followers' prepared transactions after it (`commit_main`).
    pub txn_xid: Option<(usize, usize, u64)>,
    /// pgproxy asked the main for the transaction's timestamp in this transaction.
    pub ts_asked: bool,
    /// A write of this transaction needed the transaction's timestamp.
    pub ts_used: bool,
    /// Read the timestamp ahead in this transaction: the session's last transaction needed
    /// it (a transaction that does not pays no query for it).
    pub ts_ahead: bool,
    /// The unnamed portal may be suspended (an Execute with a row limit ran in this
    /// transaction): pgproxy's own simple Query would drop it, so the timestamp is not read
    /// ahead of need.
    pub unnamed_portal_kept: bool,
    /// Sharding state, when there are several shards.
    pub sharding: Option<Box<super::shard::ShardState>>,
    /// The unit (or transaction) writes on every node of every shard: DDL, shared tables.
    pub span_all: bool,
    /// A transaction across shards: how it began (isolation level etc.), for the next shard.
    pub txn_begin: Option<String>,
    /// BEGIN to send to the main before the next unit (the transaction moved to this shard).
    pub pending_begin: Option<String>,
    /// A statement that changes settings (SET, SET LOCAL, RESET …) ran in this transaction:
    /// a read merged across shards would not see them (`merged_in_txn.rs`).
    pub txn_settings_changed: bool,
    /// Since the client's last Sync, a unit began the transaction (a BEGIN inside a
    /// pipeline, as psycopg 3 sends it): the pipeline runs in an explicit transaction.
    pub pipe_begun: bool,
    /// Since the client's last Sync, a unit ran other transaction control (COMMIT, ROLLBACK,
    /// SAVEPOINT …): where the pipeline's transaction stands is not known.
    pub pipe_control: bool,
    /// A CREATE, ALTER or DROP ran in this transaction: once it is over (on every node), a
    /// Parse makes a new shared statement (`StatementCache::schema_changed`).
    pub schema_changed: bool,
}

/// One unit in flight.
pub struct Unit {
    /// The client frames, as sent to the main.
    pub frames: Bytes,
    /// Run on the followers once the main answered.
    pub mirror: bool,
    /// Part of the transaction's prefix if the followers have not joined.
    pub prefix: bool,
    /// A COPY FROM STDIN: the followers run it alongside the main.
    pub copy: bool,
    /// The main started a COPY FROM STDIN of the extended protocol: it ignored the unit's
    /// Sync and answers the copy only at the client's next Sync (sent after CopyDone or
    /// CopyFail, or after the main's error), which therefore belongs to this unit too.
    pub sync_owed: bool,
    /// The client ended the copy (CopyDone or CopyFail sent).
    pub copy_ended: bool,
    /// A COPY pgproxy completes with the columns the client left out.
    pub fill: Option<Box<super::copy_fill::CopyFill>>,
}

/// What the client-side loop does next.
pub(super) enum Step {
    /// Look at the buffer again.
    Continue,
    /// Wait for more client bytes or for the main's answer.
    Wait,
    /// The client sent Terminate.
    Terminate,
}

/// What to do with a unit.
pub(super) enum Plan {
    /// Send it through the relay.
    Run(Bytes),
    /// Answered already (refused, or handled by pgproxy).
    Done,
}

impl Repl {
    /// Other nodes take part in the current transaction: followers joined it, or shards the
    /// session left during it wait for the commit.
    pub fn in_shared_txn(&self) -> bool {
        self.joined || self.followers.iter().any(|f| f.parked)
    }

    /// State for a session on a shard with several nodes.
    pub fn new(shard: usize, node: usize, user: User, db: Database) -> Repl {
        Repl {
            shard,
            user,
            db,
            node,
            followers: Vec::new(),
            joined: false,
            prefix: Vec::new(),
            implicit: false,
            unit: None,
            outcomes: Vec::new(),
            held_ready: None,
            committed_elsewhere: false,
            expect: Vec::new(),
            savepoints: false,
            temp_objects: false,
            reads_sequences: false,
            portals: HashMap::new(),
            own_frames: Vec::new(),
            txn_ts: None,
            txn_xid: None,
            ts_asked: false,
            ts_used: false,
            ts_ahead: true,
            unnamed_portal_kept: false,
            sharding: None,
            span_all: false,
            txn_begin: None,
            pending_begin: None,
            schema_changed: false,
            txn_settings_changed: false,
            pipe_begun: false,
            pipe_control: false,
        }
    }
}

/// Byte length of the next complete unit at the start of `buf`, or None if incomplete.
pub(super) fn unit_len(buf: &[u8], max: usize) -> Result<Option<usize>, frame::FrameError> {
    let mut pos = 0;
    loop {
        let Some(n) = frame::peek_frame_len(&buf[pos..], max)? else {
            return Ok(None);
        };
        let tag = buf[pos];
        pos += n;
        match tag {
            fe::PARSE | fe::BIND | fe::DESCRIBE | fe::EXECUTE | fe::CLOSE => {}
            _ => return Ok(Some(pos)),
        }
        if pos > max {
            return Err(frame::FrameError::TooLarge { len: pos, max });
        }
    }
}

/// The statements a unit executes, as SQL texts with whether each is `Execute`d.
pub(super) struct UnitSql {
    pub(super) kinds: Vec<Kind>,
    force_main: bool,
    unknown: bool,
    pub(super) copy_in: bool,
    /// A statement that cannot run inside a transaction block (VACUUM, CREATE DATABASE ...).
    pub(super) no_txn_block: bool,
    /// Creates a temporary table, view or sequence.
    pub(super) temp: bool,
}

impl Session {
    pub(super) fn repl_mut(&mut self) -> &mut Repl {
        self.repl.as_mut().expect("replicated session")
    }

    /// Takes the next unit from the client's buffer and runs it, unless one is in flight
    /// (then only COPY data passes, to the main and to followers running the COPY too).
    pub(super) async fn repl_step(
        &mut self,
        buf: &[u8],
        pos: &mut usize,
    ) -> Result<Step, SessionError> {
        let rest = &buf[*pos..];
        if self.shard_copy.is_some() {
            return self.shard_copy_step(rest, pos).await;
        }
        let max = self.client.max_message;
        let busy = !self.queue.is_empty() || self.repl_mut().unit.is_some();
        if busy {
            return self.busy_step(rest, pos).await;
        }
        if self.batch.is_some() {
            // The parts of a batch across shards go first (`batch.rs`).
            return self.batch_step().await;
        }
        let n = match unit_len(rest, max) {
            Ok(Some(n)) => n,
            Ok(None) => return Ok(Step::Wait),
            Err(e) => return Err(super::client::frame_error(e)),
        };
        *pos += n;
        self.run_unit(&rest[..n]).await
    }

    /// Runs one unit: the client's, or a part of a batch.
    pub(super) async fn run_unit(&mut self, unit: &[u8]) -> Result<Step, SessionError> {
        let reads = self.server.is_none()
            && self.mode == PoolMode::Transaction
            && frames_of(unit).any(|f| self.reads_sequence_state(f));
        self.repl_mut().reads_sequences = reads;
        let ends_sync =
            unit.first().is_some_and(|&t| t != fe::QUERY) && last_tag(unit) == Some(fe::SYNC);
        let begins_txn = self.tx_status == b'I'
            && (unit.first() == Some(&fe::QUERY) || ends_sync)
            && starts_with_begin(unit);
        match self.plan_unit(unit).await? {
            Plan::Done => {
                if std::mem::take(&mut self.abort_owed) {
                    self.abort_refused_txn().await?;
                }
                if self.skip_until_sync && ends_sync {
                    self.skip_until_sync = false;
                    self.to_client
                        .put_slice(message::ready_for_query(self.tx_status_for_client()).raw());
                }
                if self.server.is_some() && self.is_idle() {
                    self.flush_client().await?;
                    self.idle_point().await?;
                }
            }
            Plan::Run(frames) => {
                let mut p = 0;
                while p < frames.len() {
                    let Ok(Some(n)) = frame::peek_frame_len(&frames[p..], usize::MAX) else {
                        break;
                    };
                    let f = FrameRef::new(&frames[p..p + n]);
                    let own = self.repl_mut().own_frames.contains(&p);
                    p += n;
                    if own {
                        self.send_own_frame(f);
                    } else if self.client_message(f).await? {
                        return Ok(Step::Terminate);
                    }
                }
                if self.server.is_some()
                    && !self.skip_until_sync
                    && self.replicates()
                    && self.read_txn_ts_after(unit, begins_txn)
                {
                    // Read the transaction's timestamp right after the transaction's first
                    // statement (same write, no extra round trip): now() in a later write
                    // becomes this literal on every node. Not with the BEGIN itself: the
                    // query would take a REPEATABLE READ transaction's snapshot before the
                    // client's first statement does.
                    self.repl_mut().ts_asked = true;
                    self.inject_query(
                        "SELECT pg_catalog.now()::text, pg_catalog.txid_current_if_assigned()::text",
                        super::expect::Expect::CaptureTxnTimestamp,
                    );
                } else if self.server.is_some()
                    && !self.skip_until_sync
                    && self.replicates()
                    && self.read_xid_after(unit)
                {
                    // The commit prepares the followers under the main's transaction id: read
                    // it in the same write instead of a round trip at commit.
                    self.inject_query(
                        "SELECT NULL::text, pg_catalog.txid_current_if_assigned()::text",
                        super::expect::Expect::CaptureTxnTimestamp,
                    );
                }
                if self.queue.is_empty() && self.repl_mut().unit.is_some() {
                    // Answered without the server (e.g. a Sync with nothing pending).
                    self.finish_unit().await?;
                } else if self.followers_busy()
                    && !self.repl_mut().unit.as_ref().is_some_and(|u| u.copy)
                {
                    // The main works on this unit while the followers' answers to the previous
                    // one are read.
                    self.flush_server().await?;
                    self.run_followers().await;
                }
            }
        }
        Ok(Step::Continue)
    }

    /// Queues one of pgproxy's own simple queries for the main, answered as `expect` says. A
    /// simple Query drops the server's unnamed statement: the client's is parsed again there
    /// when next bound.
    pub(super) fn inject_query(&mut self, sql: &str, expect: super::expect::Expect) {
        if let Some(server) = self.server.as_mut() {
            server.unnamed = None;
        }
        self.queue.push_back(expect);
        self.to_server.put_slice(message::query(sql).raw());
    }

    /// Sends one of pgproxy's own frames of a rewritten unit to the main: the Parse of the
    /// rewritten text into the unnamed statement (its ParseComplete is dropped; the client's own
    /// unnamed statement is prepared again when next used) or the Bind of it (answered to the
    /// client, in place of the Bind it replaced).
    fn send_own_frame(&mut self, f: FrameRef<'_>) {
        self.since_sync = true;
        self.pipeline_ran = true;
        if f.tag() == fe::PARSE {
            if let Some(server) = self.server.as_mut() {
                server.unnamed = None;
            }
            self.queue
                .push_back(super::expect::Expect::InjectedParse { stmt: None });
        } else {
            self.queue
                .push_back(super::expect::Expect::Bind { stmt: None });
        }
        self.to_server.put_slice(f.raw());
    }

    /// Classifies what a unit executes: Query texts, and for Execute the statement bound to
    /// its portal (in this unit or earlier).
    pub(super) fn unit_sql(&mut self, frames: &[u8]) -> UnitSql {
        let mut out = UnitSql {
            kinds: Vec::new(),
            force_main: false,
            unknown: false,
            copy_in: false,
            no_txn_block: false,
            temp: false,
        };
        let mut bound: HashMap<String, Classified> = HashMap::new();
        let mut parsed_unnamed: Option<Classified> = None;
        // Statements parsed in this unit (not yet in `self.statements`).
        let mut parsed: HashMap<String, Classified> = HashMap::new();
        let mut copies: std::collections::HashSet<String> = Default::default();
        // Statements parsed in this unit that PostgreSQL runs only outside a transaction block.
        let mut no_block: std::collections::HashSet<String> = Default::default();
        let mut pos = 0;
        while pos < frames.len() {
            let Ok(Some(n)) = frame::peek_frame_len(&frames[pos..], usize::MAX) else {
                out.unknown = true;
                break;
            };
            let f = FrameRef::new(&frames[pos..pos + n]);
            pos += n;
            match f.tag() {
                // Object ids differ between nodes (each made its own types and tables): what
                // shows or looks up ids (Describe, catalog queries) runs on the main, so a
                // client caching them (asyncpg's type introspection) sees one set.
                fe::DESCRIBE => out.force_main = true,
                fe::QUERY => {
                    let text = message::query_text(f.body()).unwrap_or("");
                    out.force_main |= reads_catalog(text);
                    out.temp |= creates_temp(text);
                    out.copy_in |= is_copy_from_stdin(text);
                    out.no_txn_block |= cannot_run_in_block(text);
                    out.absorb(&classify(text));
                }
                fe::PARSE => {
                    if let Some(p) = Parse::parse(f.body()) {
                        out.force_main |= reads_catalog(p.query);
                        out.temp |= creates_temp(p.query);
                        if cannot_run_in_block(p.query) {
                            no_block.insert(p.name.to_string());
                        } else {
                            no_block.remove(p.name);
                        }
                        if is_copy_from_stdin(p.query) {
                            copies.insert(p.name.to_string());
                        } else {
                            copies.remove(p.name);
                        }
                        if p.name.is_empty() {
                            parsed_unnamed = Some(classify(p.query));
                        } else {
                            parsed.insert(p.name.to_string(), classify(p.query));
                        }
                    }
                }
                fe::BIND => {
                    if let Some(b) = Bind::parse(f.body()) {
                        // Parsed in this unit (`copies` knows), or earlier (the text is kept).
                        let in_unit = parsed.contains_key(b.statement)
                            || (b.statement.is_empty() && parsed_unnamed.is_some());
                        let copy = copies.contains(b.statement)
                            || (!in_unit
                                && self
                                    .statements
                                    .get(b.statement)
                                    .is_some_and(|s| is_copy_from_stdin(s.query())));
                        out.copy_in |= copy;
                        // VACUUM & co. prepared by name (psycopg's prepare=True) run outside
                        // pgproxy's transaction block like their simple-query form.
                        out.no_txn_block |= no_block.contains(b.statement)
                            || (!in_unit
                                && self
                                    .statements
                                    .get(b.statement)
                                    .is_some_and(|s| cannot_run_in_block(s.query())));
                        out.force_main |= !in_unit
                            && self
                                .statements
                                .get(b.statement)
                                .is_some_and(|s| reads_catalog(s.query()));
                        let c = if b.statement.is_empty() && parsed_unnamed.is_some() {
                            parsed_unnamed.clone()
                        } else if let Some(c) = parsed.get(b.statement) {
                            Some(c.clone())
                        } else {
                            self.statements
                                .get(b.statement)
                                .map(|s| s.classified().clone())
                        };
                        match c {
                            Some(c) => {
                                let writes = c.unit_kind() != Kind::Read;
                                self.repl_mut().portals.insert(b.portal.to_string(), writes);
                                bound.insert(b.portal.to_string(), c);
                            }
                            None => {
                                bound.remove(b.portal);
                                self.repl_mut().portals.insert(b.portal.to_string(), true);
                            }
                        }
                    }
                }
                fe::EXECUTE => {
                    let mut b = f.body();
                    let portal = frame::read_cstr(&mut b).unwrap_or("");
                    match bound.get(portal) {
                        Some(c) => {
                            let c = c.clone();
                            out.absorb(&c);
                        }
                        None => {
                            // Bound in an earlier unit: only whether it writes is known.
                            let writes =
                                self.repl_mut().portals.get(portal).copied().unwrap_or(true);
                            out.kinds
                                .push(if writes { Kind::Write } else { Kind::Read });
                        }
                    }
                }
                fe::FUNCTION_CALL => out.kinds.push(Kind::Write),
                _ => {}
            }
        }
        out
    }

    /// Decides where a unit runs and prepares the followers. Called with no unit in flight.
    pub(super) async fn plan_unit(&mut self, frames: &[u8]) -> Result<Plan, SessionError> {
        let first = frames.first().copied().unwrap_or(0);
        // Offsets of pgproxy's own frames belong to one unit only (a stray CopyFail after a
        // unit with a frame of pgproxy's own at offset 0 was taken for pgproxy's own).
        self.repl_mut().own_frames.clear();
        if matches!(
            first,
            fe::TERMINATE | fe::COPY_DATA | fe::COPY_DONE | fe::COPY_FAIL
        ) {
            return Ok(Plan::Run(Bytes::copy_from_slice(frames)));
        }
        if self.lost_txn {
            // Answered by pgproxy until the client ends the transaction (lost.rs).
            return Ok(Plan::Run(Bytes::copy_from_slice(frames)));
        }
        let simple_unit = first == fe::QUERY || first == fe::FUNCTION_CALL;
        if let Some(done) = self.route_unit(frames, simple_unit).await? {
            return Ok(done);
        }
        let sql = self.unit_sql(frames);
        if sql.temp {
            self.repl_mut().temp_objects = true;
        }
        let simple = first == fe::QUERY || first == fe::FUNCTION_CALL;
        let in_txn = self.tx_status != b'I' || self.lost_txn;
        let control = sql.kinds.iter().any(|k| k.is_txn_control());
        let kind = unit_kind(&sql.kinds);
        {
            let changes_settings = sql.kinds.contains(&Kind::Session);
            let outside = self.tx_status == b'I';
            let new_pipeline = !self.since_sync;
            let repl = self.repl_mut();
            if outside {
                repl.txn_settings_changed = false;
            }
            repl.txn_settings_changed |= changes_settings;
            if new_pipeline {
                repl.pipe_begun = false;
                repl.pipe_control = false;
            }
            let begins = sql.kinds.first() == Some(&Kind::Begin);
            let other_control = sql.kinds.iter().skip(1).any(|k| k.is_txn_control());
            if control && (other_control || !begins) {
                repl.pipe_control = true;
            } else if begins {
                repl.pipe_begun = true;
            }
        }
        let bytes = Bytes::copy_from_slice(frames);
        if control && sql.kinds.len() > 1 && !matches!(sql.kinds.first(), Some(Kind::Begin)) {
            return self.refuse_unit(
                simple,
                "transaction control (COMMIT, ROLLBACK, SAVEPOINT) mixed with other statements in one request on a replicated shard",
                "send COMMIT / ROLLBACK / SAVEPOINT as a statement of its own",
            );
        }
        if sql.kinds.contains(&Kind::Unsupported) {
            return self.refuse_unit(
                simple,
                "COMMIT AND CHAIN / ROLLBACK AND CHAIN are not supported on a replicated shard",
                "end the transaction with COMMIT or ROLLBACK, then BEGIN a new one",
            );
        }
        if sql.kinds.contains(&Kind::TwoPhase) {
            return self.refuse_unit(
                simple,
                "PREPARE TRANSACTION / COMMIT PREPARED are not supported on a replicated shard: pgproxy uses two-phase commit itself",
                "use ordinary COMMIT; pgproxy commits on every node atomically",
            );
        }
        let begins = matches!(sql.kinds.first(), Some(Kind::Begin));
        let only = (sql.kinds.len() == 1).then(|| sql.kinds[0]);
        if only == Some(Kind::Commit) && self.repl_mut().in_shared_txn() && !self.lost_txn {
            return self.commit_unit(bytes, simple).await;
        }
        if only == Some(Kind::Rollback) && self.repl_mut().in_shared_txn() {
            self.rollback_followers().await;
        }
        // On a shard of one node (and not spanning shards) a write just runs there.
        let writes = kind == Kind::Write && self.replicates();
        let session = matches!(kind, Kind::Session)
            || sql
                .kinds
                .iter()
                .any(|k| matches!(k, Kind::Savepoint | Kind::Release | Kind::RollbackTo));
        if sql.kinds.contains(&Kind::Savepoint) {
            self.repl_mut().savepoints = true;
        }
        // Reads outside a transaction: any up node, by weight.
        if kind == Kind::Read
            && !in_txn
            && !begins
            && (simple || last_tag(frames) == Some(fe::SYNC))
            && !sql.force_main
            && self.server.is_none()
            && self.mode == PoolMode::Transaction
            && self.pin.is_none()
            && self.shared.cluster.config().replication.load_balance
        {
            if !self.attach_read_node(simple).await? {
                return Ok(Plan::Done);
            }
            return Ok(Plan::Run(bytes));
        }
        if !self.attach_main(simple).await? {
            return Ok(Plan::Done);
        }
        if let Some(begin) = self.repl_mut().pending_begin.take() {
            // The transaction moved to this shard: it begins here before the unit runs.
            self.inject_query(&begin, super::expect::Expect::InjectedQuery);
        }
        let joined = self.repl_mut().joined;
        let mut bytes = bytes;
        let mut follower_sql: Vec<String> = Vec::new();
        let mut own_frames: Vec<usize> = Vec::new();
        let mut fill = None;
        if writes && !self.lost_txn && self.tx_status != b'E' {
            match self.make_deterministic(&bytes).await? {
                super::determinism::Made::Refused(reason) => {
                    return self.refuse_unit(
                        simple,
                        &format!("pgproxy cannot make this write identical on every node of the shard: {reason}"),
                        "compute the value in the application and pass it as a literal or parameter, or set replication.nondeterministic = \"warn\"",
                    );
                }
                super::determinism::Made::Failed(e) => {
                    // What the statement itself would have met; an open transaction is now
                    // aborted on the main, as it would be on PostgreSQL.
                    if self.tx_status == b'T' {
                        self.tx_status = b'E';
                    }
                    self.answer_unit_error(e.raw(), simple);
                    return Ok(Plan::Done);
                }
                super::determinism::Made::Lost => return Ok(Plan::Done),
                super::determinism::Made::Frames(b, sql, own) => {
                    bytes = b;
                    follower_sql = sql;
                    own_frames = own;
                }
                super::determinism::Made::Copy(b, own, f) => {
                    bytes = b;
                    own_frames = own;
                    fill = Some(f);
                }
            }
        }
        let mut unit = Unit {
            frames: bytes.clone(),
            mirror: false,
            prefix: false,
            copy: sql.copy_in,
            sync_owed: false,
            copy_ended: false,
            fill,
        };
        if writes && !self.lost_txn && self.tx_status != b'E' {
            let implicit = !in_txn && !begins && !sql.no_txn_block;
            if implicit || !joined {
                if let Err(e) = self.join_followers(implicit).await {
                    self.report_error(&e, simple);
                    return Ok(Plan::Done);
                }
            }
            if implicit {
                // Autocommit write: pgproxy opens a transaction on every node around it.
                self.repl_mut().implicit = true;
                self.inject_query("BEGIN", super::expect::Expect::InjectedQuery);
            }
            for f in self.repl_mut().followers.iter_mut().filter(|f| !f.parked) {
                for sql in &follower_sql {
                    f.queue_internal(sql);
                }
            }
            unit.mirror = true;
        } else if session || begins {
            if joined || (!in_txn && !begins && !self.repl_mut().followers.is_empty()) {
                unit.mirror = true;
            } else if in_txn || begins {
                unit.prefix = true;
            }
        }
        if unit.copy && unit.mirror {
            // COPY data is streamed to every node as it comes: send the COPY now.
            let stmts = &self.statements;
            let repl = self.repl.as_mut().expect("replicated");
            for f in repl.followers.iter_mut().filter(|f| !f.parked) {
                // Without the unit's Syncs: during copy-in PostgreSQL ignores them; pgproxy
                // sends the follower its own Sync after the copy ends (`Follower::end_copy`).
                f.queue_copy_start(&bytes, stmts, !simple);
            }
            self.flush_followers().await;
            unit.mirror = false;
            unit.copy = true;
        } else {
            unit.copy = false;
        }
        self.repl_mut().unit = Some(unit);
        self.repl_mut().own_frames = own_frames;
        Ok(Plan::Run(bytes))
    }

    pub(super) fn refuse_unit(
        &mut self,
        simple: bool,
        msg: &str,
        hint: &str,
    ) -> Result<Plan, SessionError> {
        tracing::debug!(reason = msg, "statement refused");
        let e = message::error_response(
            message::Severity::Error,
            crate::protocol::sqlstate::FEATURE_NOT_SUPPORTED,
            msg,
            Some(hint),
        );
        self.note_refusal();
        self.answer_unit_error(e.raw(), simple);
        Ok(Plan::Done)
    }

    /// Attaches a connection to an up node chosen by weight for a read. A node that cannot
    /// be reached is detached and the read goes to the main instead.
    async fn attach_read_node(&mut self, simple: bool) -> Result<bool, SessionError> {
        let shard = self.repl_mut().shard;
        let r: f64 = rand::random();
        let cluster = self.shared.cluster.clone();
        let Some(node) = cluster.pick_read_node(shard, r) else {
            return self.attach_main(simple).await;
        };
        let (user, db) = (self.repl_mut().user.clone(), self.repl_mut().db.clone());
        let pool = cluster.pool(&user, &db, shard, node);
        match pool.checkout().await {
            Ok(conn) => {
                self.pool = pool;
                self.repl_mut().node = node;
                self.attach_checked_out(conn, simple).await?;
                Ok(self.server.is_some())
            }
            Err(PoolError::Backend(e)) if e.is_connect() => {
                cluster.detach(shard, node, DetachCause::ConnectionFailed, &e.to_string());
                self.attach_main(simple).await
            }
            Err(e) => {
                self.report_error(&e, simple);
                Ok(false)
            }
        }
    }

    /// Makes sure the attached server connection is on the shard's main node, checking one out
    /// (and failing over past nodes that cannot be reached). Returns false if none could be
    /// had (the client got the error).
    async fn attach_main(&mut self, simple: bool) -> Result<bool, SessionError> {
        if self.server.is_some() {
            return Ok(true);
        }
        let cluster = self.shared.cluster.clone();
        let shard = self.repl_mut().shard;
        let (user, db) = (self.repl_mut().user.clone(), self.repl_mut().db.clone());
        loop {
            let Some(main) = cluster.topology.main(shard) else {
                return Ok(true);
            };
            self.pool = cluster.pool(&user, &db, shard, main);
            self.repl_mut().node = main;
            // currval/lastval (evaluated on the main): the client's own connection when idle.
            let own = self.repl_mut().reads_sequences && self.mode == PoolMode::Transaction;
            match self.checkout_own(own).await {
                Ok(conn) => {
                    self.attach_checked_out(conn, simple).await?;
                    return Ok(self.server.is_some());
                }
                Err(PoolError::Backend(e)) if e.is_connect() => {
                    let gone =
                        cluster.detach(shard, main, DetachCause::ConnectionFailed, &e.to_string())
                            || cluster.topology.state(shard, main)
                                == crate::cluster::NodeState::Down;
                    if !gone {
                        self.report_error(&e, simple);
                        return Ok(false);
                    }
                }
                Err(e) => {
                    self.report_error(&e, simple);
                    return Ok(false);
                }
            }
        }
    }

    /// The main answered the whole unit: run it on the followers, finish an implicit
    /// transaction, and release the held ReadyForQuery.
    pub(super) async fn finish_unit(&mut self) -> Result<(), SessionError> {
        let Some(unit) = self.repl_mut().unit.take() else {
            return Ok(());
        };
        let ready = self.repl_mut().held_ready.take();
        let main_failed = self
            .repl_mut()
            .outcomes
            .iter()
            .any(|o| matches!(o, Outcome::Error(_)));
        let (shard, in_txn) = (self.repl_mut().shard, self.tx_status != b'I');
        if let Some(st) = self.repl_mut().sharding.as_deref_mut() {
            st.cursors.finish_unit(shard, main_failed, in_txn);
        }
        if let Some(fill) = unit.fill {
            // The followers' sequences move past the values the COPY handed out (whether or
            // not the transaction commits: sequences are not transactional).
            if !main_failed && !fill.failed {
                let sql = fill.follower_sql();
                for f in self.repl_mut().followers.iter_mut().filter(|f| !f.parked) {
                    for s in &sql {
                        f.queue_internal(s);
                    }
                }
            }
            (*fill).release();
        }
        if unit.copy && !unit.copy_ended {
            // The client gave up after the main's error without CopyDone/CopyFail: the
            // followers abandon their copy as well; the outcomes are not compared.
            for f in self.repl_mut().followers.iter_mut().filter(|f| !f.parked) {
                f.abort_copy();
            }
            self.repl_mut().outcomes.clear();
        }
        if unit.prefix && !self.repl_mut().joined && !main_failed {
            self.repl_mut().prefix.push(unit.frames.clone());
        }
        if (unit.mirror || unit.copy) && !self.repl_mut().followers.is_empty() {
            if main_failed && !unit.copy {
                // The main refused it: the followers never run it. Inside a transaction
                // without savepoints, the main's transaction is now aborted: abort theirs too,
                // so their locks go now.
                if !self.repl_mut().implicit
                    && !self.repl_mut().savepoints
                    && self.repl_mut().joined
                {
                    self.rollback_followers().await;
                }
            } else {
                if unit.mirror {
                    let stmts = &self.statements;
                    let repl = self.repl.as_mut().expect("replicated");
                    for f in repl.followers.iter_mut().filter(|f| !f.parked) {
                        f.queue_unit(&unit.frames, stmts);
                    }
                }
                if ready.is_some() || unit.copy {
                    let outcomes = std::mem::take(&mut self.repl_mut().outcomes);
                    self.repl_mut().expect.extend(outcomes);
                }
                if unit.copy || (ready.is_some_and(|s| s == b'I') && !self.repl_mut().implicit) {
                    // Outside a transaction (VACUUM, a SET): done on every node before the
                    // client hears back.
                    self.run_followers().await;
                } else {
                    // Inside a transaction: sent now, so the followers work while the client
                    // and the main go on; their answers are read at COMMIT (or sooner, after
                    // the main's next answer, when many are outstanding).
                    self.flush_followers().await;
                }
            }
        }
        if ready.is_some() || !unit.mirror {
            // (A unit cut short by Flush keeps its outcomes for the rest of its batch.)
            self.repl_mut().outcomes.clear();
        }
        if self.repl_mut().implicit {
            if ready.is_none() {
                return Ok(());
            }
            self.repl_mut().implicit = false;
            // The main's transaction is aborted ('E'): whatever the outcomes kept say (a COPY
            // cut short by Flush failed in an earlier part of the batch), it must not be
            // prepared, which PostgreSQL answers with ROLLBACK, not an error.
            if main_failed || ready == Some(b'E') {
                self.rollback_main().await?;
                self.rollback_followers().await;
            } else {
                let mark = self.to_client.len();
                self.commit_implicit().await?;
                if self.to_client.len() > mark && unit.frames.first() == Some(&fe::QUERY) {
                    // The commit failed (a deferred constraint, the main lost): PostgreSQL
                    // reports a simple query's commit before its last CommandComplete, so
                    // the client gets the error instead of that CommandComplete.
                    drop_last_command_complete(&mut self.to_client, mark);
                }
            }
            self.tx_status = b'I';
            self.after_txn();
            self.to_client
                .put_slice(message::ready_for_query(b'I').raw());
            return Ok(());
        }
        if let Some(status) = ready {
            if status == b'I' {
                self.after_txn();
            }
            self.to_client
                .put_slice(message::ready_for_query(self.tx_status_for_client()).raw());
        }
        Ok(())
    }

    /// Writes of the current unit go to several nodes: the shard has more than one, or the
    /// unit spans every shard.
    pub(super) fn replicates(&mut self) -> bool {
        let cfg = self.shared.cluster.config();
        let r = self.repl_mut();
        r.span_all || cfg.shards.get(r.shard).is_some_and(|s| s.nodes.len() > 1)
    }

    /// Transaction over: followers leave it.
    pub(super) fn after_txn(&mut self) {
        let repl = self.repl_mut();
        if let Some(st) = repl.sharding.as_deref_mut() {
            // (A ROLLBACK took the WITH HOLD cursors it declared already: `route_unit`.)
            st.cursors.txn_over(false);
        }
        if repl.txn_settings_changed {
            // A SET in the transaction ran on some of these connections (the ones in it then,
            // or given it with the transaction's prefix), not on others: what each now holds
            // is not known. Whoever uses one next sets (or RESETs) those settings again.
            let mut names: std::collections::BTreeSet<String> = self.dirty.clone();
            names.extend(self.settings.keys().cloned());
            names.extend(self.startup_settings.keys().cloned());
            let repl = self.repl.as_mut().expect("replicated");
            for f in repl.followers.iter_mut() {
                super::settings::forget(&mut f.conn.settings, &names, true);
            }
        }
        let repl = self.repl_mut();
        // Participants on other shards leave with the transaction.
        let (parked, kept): (Vec<Follower>, Vec<Follower>) =
            repl.followers.drain(..).partition(|f| f.parked);
        repl.followers = kept;
        repl.txn_begin = None;
        repl.pending_begin = None;
        let session_mode = self.mode == PoolMode::Session;
        for f in parked {
            if !f.is_idle() {
                continue;
            }
            if session_mode {
                f.conn.reset_and_release();
            } else {
                f.conn.release();
            }
        }
        let repl = self.repl_mut();
        repl.span_all = false;
        repl.joined = false;
        repl.prefix.clear();
        repl.savepoints = false;
        repl.portals.clear();
        repl.txn_ts = None;
        repl.txn_xid = None;
        // Read ahead next time if this transaction needed it; a transaction that neither read
        // it ahead nor needed it (an autocommit write) changes nothing.
        if repl.ts_asked || repl.ts_used {
            repl.ts_ahead = repl.ts_used;
        }
        repl.ts_asked = false;
        repl.ts_used = false;
        repl.unnamed_portal_kept = false;
        if std::mem::take(&mut repl.schema_changed) {
            self.shared.statements.schema_changed();
        }
    }

    /// A replicated session's server connection was lost: a follower that joined the
    /// transaction is dropped (its transaction rolls back), and the node is probed.
    pub(super) fn repl_main_lost(&mut self) {
        let Some(repl) = self.repl.as_mut() else {
            return;
        };
        // Their transaction (if any) dies with their connection.
        repl.followers.clear();
        repl.txn_xid = None;
        repl.joined = false;
        repl.implicit = false;
        repl.unit = None;
        repl.held_ready = None;
        repl.outcomes.clear();
        repl.expect.clear();
        repl.prefix.clear();
        let cluster = self.shared.cluster.clone();
        let (shard, node) = (repl.shard, repl.node);
        let params = self.pool.settings().connect.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::backend::ServerConn::connect(&params).await {
                cluster.detach(shard, node, DetachCause::ConnectionFailed, &e.to_string());
            }
        });
    }
}

impl UnitSql {
    fn absorb(&mut self, c: &Classified) {
        self.kinds.extend(c.kinds.iter().copied());
        self.force_main |= c.force_main;
    }
}

/// The kind that decides routing for a unit: Write > MainOnly > Session > Read.
fn unit_kind(kinds: &[Kind]) -> Kind {
    let mut k = Kind::Read;
    for &x in kinds {
        k = match (k, x) {
            (_, Kind::Write) | (Kind::Write, _) => Kind::Write,
            (_, Kind::MainOnly) | (Kind::MainOnly, _) => Kind::MainOnly,
            (_, Kind::Session) | (Kind::Session, _) => Kind::Session,
            (k, Kind::Read | Kind::Empty) => k,
            (k, _) => {
                if k == Kind::Read {
                    Kind::Session
                } else {
                    k
                }
            }
        };
    }
    k
}

pub(super) fn join(o: &[Outcome]) -> String {
    o.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The unit starts with BEGIN / START TRANSACTION (simple or extended).
fn starts_with_begin(unit: &[u8]) -> bool {
    let Ok(Some(n)) = frame::peek_frame_len(unit, usize::MAX) else {
        return false;
    };
    let f = FrameRef::new(&unit[..n]);
    let sql = match f.tag() {
        fe::QUERY => message::query_text(f.body()),
        fe::PARSE => Parse::parse(f.body()).map(|p| p.query),
        _ => None,
    };
    sql.is_some_and(|q| classify(q).kinds.first() == Some(&Kind::Begin))
}

pub(super) fn last_tag(unit: &[u8]) -> Option<u8> {
    let mut pos = 0;
    let mut last = None;
    while let Ok(Some(n)) = frame::peek_frame_len(&unit[pos..], usize::MAX) {
        last = Some(unit[pos]);
        pos += n;
    }
    last
}

/// Removes the CommandComplete that ends `buf[..end]`, if the last frame there is one (it may
/// have been sent to the client already; then nothing is removed).
fn drop_last_command_complete(buf: &mut bytes::BytesMut, end: usize) {
    if let Some(at) = last_command_complete(&buf[..end]) {
        let tail = buf.split_off(end);
        buf.truncate(at);
        buf.unsplit(tail);
    }
}

/// Offset of the last frame of `buf` when it is a CommandComplete and `buf` is whole frames.
pub(super) fn last_command_complete(buf: &[u8]) -> Option<usize> {
    let mut pos = 0;
    let mut last = None;
    while pos < buf.len() {
        let n = frame::peek_frame_len(&buf[pos..], usize::MAX).ok()??;
        last = Some(pos);
        pos += n;
    }
    last.filter(|&at| buf[at] == crate::protocol::message::be::COMMAND_COMPLETE)
}
