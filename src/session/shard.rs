//! Sharded sessions: each unit (a Query, or extended-protocol messages up to Sync) is routed
//! with `router::route` before the replication logic runs it on its shard. Between
//! transactions the session moves to whichever shard the next unit needs; a transaction stays
//! on the shard it started on (or spans every shard, for DDL and writes to shared tables); a
//! read without a key runs on every shard and is merged (`scatter.rs`). What cannot be run
//! correctly is refused with the router's reason.

use super::cursors::CursorEffect;
use super::relay::Session;
use super::replica::Plan;
use super::SessionError;
use crate::protocol::frame::{self, FrameRef};
use crate::protocol::message::{self, fe, Bind, Parse};
use crate::protocol::rows::bind_values;
use crate::router::route::{plan, CursorName, Param, Route, RouteError, RoutePlan, Shards, Target};
use crate::shard::{KeyType, KeyValue, ShardMap};
use bytes::BufMut;
use std::collections::HashMap;
use std::sync::Arc;

/// Plans kept per session (by SQL text) before the cache is cleared.
const MAX_PLANS: usize = 1_000;

/// Sharding state of a session.
pub struct ShardState {
    /// The rules this session routes with: refreshed between transactions, so a transaction
    /// finishes under the rules it began with.
    pub map: Arc<ShardMap>,
    /// `SET pgproxy.shard_key = …` (session scope).
    pub key: Option<String>,
    /// Routes of the portals bound (extended protocol).
    portals: HashMap<String, Route>,
    /// Route plans by SQL text (a prepared statement is not parsed again per execution).
    plans: HashMap<String, Arc<RoutePlan>>,
    /// How the database compares text, once asked (`scatter.rs`).
    pub text_rules: Option<super::scatter::TextRules>,
    /// The key before the open transaction first changed it (restored by ROLLBACK).
    key_before_txn: Option<Option<String>>,
    /// SQL-level cursors and the shards they live on.
    pub(super) cursors: super::cursors::Cursors,
    /// The open transaction's SET statements, for the shards it moves to.
    pub(super) sets: super::txn_sets::TxnSets,
    /// The columns of the table an INSERT without a column list names, read for the unit
    /// being routed (`insert_columns.rs`); cleared once it is routed.
    pub(super) insert_columns: Option<(String, Vec<String>)>,
}

impl ShardState {
    /// State for a new session.
    pub fn new(map: Arc<ShardMap>) -> ShardState {
        ShardState {
            map,
            key: None,
            portals: HashMap::new(),
            plans: HashMap::new(),
            text_rules: None,
            key_before_txn: None,
            cursors: Default::default(),
            sets: Default::default(),
            insert_columns: None,
        }
    }

    pub(super) fn plan(&mut self, sql: &str) -> Arc<RoutePlan> {
        if let Some(p) = self.plans.get(sql) {
            return p.clone();
        }
        if self.plans.len() >= MAX_PLANS {
            self.plans.clear();
        }
        let p = Arc::new(plan(sql, &self.map));
        if let Some(table) = p.statements.iter().find_map(|s| s.needs_columns.as_ref()) {
            // Not kept: planned with the table's columns only while they were just read.
            return match &self.insert_columns {
                Some((t, columns)) if t == table => {
                    Arc::new(plan(sql, &self.map.with_columns(t, columns.clone())))
                }
                _ => p,
            };
        }
        self.plans.insert(sql.to_string(), p.clone());
        p
    }
}

/// Where a unit goes.
struct UnitRoute {
    route: Route,
    /// The unit executes something (a Query or an Execute).
    executes: usize,
    /// The shard of each Execute, in order (None: any shard), when they go to different
    /// shards (a batch of one statement per key: `batch.rs` splits it).
    mixed: Option<Vec<Option<usize>>>,
}

/// `SET pgproxy.shard_key = X` / `RESET pgproxy.shard_key`: Some(new value) when the text is
/// one of those (None inside = reset).
fn shard_key_setting(sql: &str) -> Option<Option<String>> {
    let t = sql.trim().trim_end_matches(';').trim();
    let lower = t.to_ascii_lowercase();
    if lower.starts_with("reset") && lower.contains("pgproxy.shard_key") {
        return Some(None);
    }
    let rest = lower.strip_prefix("set")?.trim_start();
    let rest = rest
        .strip_prefix("session")
        .map(str::trim_start)
        .unwrap_or(rest);
    let at = rest.strip_prefix("pgproxy.shard_key")?;
    let at = at.trim_start();
    let at = at
        .strip_prefix('=')
        .or_else(|| at.strip_prefix("to"))?
        .trim();
    // Take the value from the original text (case kept).
    let value = &t[t.len() - at.len()..];
    let value = value.trim_matches('\'').to_string();
    Some((!value.eq_ignore_ascii_case("default")).then_some(value))
}

impl Session {
    pub(super) fn shard_state(&mut self) -> Option<&mut ShardState> {
        self.repl.as_mut().and_then(|r| r.sharding.as_deref_mut())
    }

    /// Routes a unit. `Ok(None)`: run it through the replication logic on the (possibly
    /// switched) current shard; `Ok(Some(plan))`: answered here (refused, or merged across
    /// shards).
    pub(super) async fn route_unit(
        &mut self,
        frames: &[u8],
        simple: bool,
    ) -> Result<Option<Plan>, SessionError> {
        let outside = self.tx_status == b'I';
        let Some(st) = self.shard_state() else {
            return Ok(None);
        };
        st.cursors.begin_unit();
        if outside {
            st.sets.clear();
        }
        st.sets.begin_unit();
        if let Some(rolled_back) = first_query_text(frames).and_then(|t| ends_txn(&t)) {
            // A ROLLBACK (or COMMIT of an aborted transaction) takes the WITH HOLD cursors
            // it declared away too; the rest is settled when the transaction is over.
            if rolled_back || self.tx_status == b'E' {
                self.shard_state().expect("sharded").cursors.txn_over(true);
            }
        }
        let routed = self.route_unit_inner(frames, simple).await;
        if let Some(st) = self.shard_state() {
            if matches!(routed, Ok(None)) {
                st.sets.unit_ran();
            } else {
                st.cursors.drop_unit();
            }
        }
        routed
    }

    async fn route_unit_inner(
        &mut self,
        frames: &[u8],
        simple: bool,
    ) -> Result<Option<Plan>, SessionError> {
        let in_txn = self.tx_status != b'I';
        if self.tx_status == b'E' {
            // An aborted transaction: its shard answers everything but ROLLBACK with 25P02.
            if let Some(text) = first_query_text(frames) {
                self.note_txn_end(&text);
            }
            return Ok(None);
        }
        if !in_txn {
            let current = self.shared.cluster.shard_map();
            let st = self.shard_state().expect("sharded");
            if !Arc::ptr_eq(&st.map, &current) {
                st.map = current;
                st.plans.clear();
            }
        }
        if simple {
            if let Some(sql) = explain_route_text(frames) {
                return self.explain_route(&sql).map(Some);
            }
        }
        let mut routed = self.unit_route(frames);
        if routed.is_err() && self.read_insert_columns(frames).await {
            // An INSERT without a column list, now with its table's columns.
            routed = self.unit_route(frames);
        }
        if let Some(st) = self.shard_state() {
            st.insert_columns = None;
        }
        let unit = match routed {
            Ok(u) => u,
            Err(e) if self.only_a_syntax_error(frames, &e).await => {
                // It fails the same way on every node: the current shard answers it.
                return Ok(None);
            }
            Err(e) => return self.refuse_route(simple, &e).map(Some),
        };
        if let Some(per_execute) = unit.mixed {
            return self.start_batch(frames, &per_execute).await.map(Some);
        }
        let r = unit.route;
        let shards = match &r.shards {
            Shards::Any => return Ok(None),
            Shards::Some(v) => v.clone(),
        };
        if shards.len() == 1 {
            if self.repl_mut().span_all && shards[0] != self.repl_mut().shard && in_txn {
                return self.refuse_msg(simple, "this transaction changes every shard (DDL or shared tables): a statement for one shard must run in a transaction of its own").map(Some);
            }
            if self.repl_mut().span_all && in_txn && r.write {
                return self.refuse_msg(simple, "this transaction changes every shard (DDL or shared tables): a write for one shard must run in a transaction of its own").map(Some);
            }
            return self.switch_shard(shards[0], simple).await;
        }
        if let Some(spec) = &r.merge {
            if in_txn {
                if let Some(why) = self.merged_read_in_txn_obstacle(true).await {
                    return self
                        .refuse_msg(simple, &format!("a read without a sharding key runs on every shard, which pgproxy does inside a transaction only while it is READ COMMITTED and changed no setting; not {why}: add the key, or run it outside the transaction"))
                        .map(Some);
                }
            }
            if unit.executes != 1 {
                return self.refuse_msg(simple, "a read without a sharding key is merged across shards only when sent on its own: add the key, or send it in a request of its own").map(Some);
            }
            if !simple {
                return self.scatter_extended(spec, &shards, frames).await.map(Some);
            }
            return self.scatter_read(spec, &shards).await.map(Some);
        }
        if r.copy_out && shards.len() > 1 {
            return self
                .copy_out_of_shards(&r, &shards, frames, simple)
                .await
                .map(Some);
        }
        if r.copy_in && shards.len() > 1 {
            return self
                .start_shard_copy(&r, &shards, frames, simple)
                .await
                .map(Some);
        }
        if r.split.is_some() || r.keyless {
            if unit.executes != 1 {
                return self.refuse_msg(simple, "a write on several shards must be sent on its own (not with BEGIN/COMMIT or other statements in the same request)").map(Some);
            }
            return self
                .keyless_write(&r, &shards, frames, simple)
                .await
                .map(Some);
        }
        // A write on every shard: DDL, shared tables.
        let joined_one = self.repl_mut().joined && !self.repl_mut().span_all;
        if in_txn && joined_one {
            return self.refuse_msg(simple, "this transaction already wrote on one shard; DDL and writes to shared tables change every shard and must run in a transaction of their own").map(Some);
        }
        // Shards the transaction left (or wrote on across shards) wait for the commit with
        // connections of their own: the write would not reach those nodes.
        if in_txn && self.repl_mut().followers.iter().any(|f| f.parked) {
            return self.refuse_msg(simple, "this transaction already ran on several shards; DDL and writes to shared tables change every shard and must run in a transaction of their own (or before the transaction's statements for one shard)").map(Some);
        }
        self.repl_mut().span_all = true;
        Ok(None)
    }

    /// Moves the session to another shard (between transactions only).
    pub(super) async fn switch_shard(
        &mut self,
        to: usize,
        simple: bool,
    ) -> Result<Option<Plan>, SessionError> {
        if self.repl_mut().shard == to {
            return Ok(None);
        }
        if self.since_sync
            && self.server.is_some()
            && !self.pipeline_ran
            && !self.server_skipping
            && !self.lost_txn
            && self.tx_status != b'E'
        {
            // Only statements prepared or described since the last Sync (asyncpg prepares
            // with Parse/Describe/Flush): nothing to carry over. The old shard's implicit
            // transaction ends here (inside the client's transaction, only the batch ends:
            // the transaction then moves as for any statement of another shard, below); the
            // statements are prepared on the new shard's connection when first bound
            // (`extended::prepare_on_server`).
            self.end_pipeline().await;
        }
        if self.since_sync && self.server.is_some() && self.pipeline_in_explicit_txn() {
            // A pipeline inside the client's transaction (begun before it, or by a BEGIN in
            // it): the transaction moves as for any statement of another shard (below); the
            // old shard's connection is parked mid-pipeline, which is fine inside a
            // transaction block (a simple Query there commits nothing).
            self.tx_status = b'T';
        } else if self.since_sync && self.server.is_some() {
            // A pipeline (Flush, no Sync yet) is open here: its implicit transaction cannot
            // move. It is aborted, as an error in a pipeline aborts it in PostgreSQL.
            self.abort_pipeline().await;
            if self.repl_mut().implicit {
                // On a replicated shard that transaction is pgproxy's own, around the
                // pipeline's autocommit writes: rolled back on every node, so that the
                // client's Sync finds it gone, as in PostgreSQL (it said 'E' and the client's
                // next statements failed with 25P02).
                self.repl_mut().implicit = false;
                if self.server.is_some() {
                    self.rollback_main().await?;
                }
                self.rollback_followers().await;
                self.tx_status = b'I';
            }
            return self
                .refuse_msg(simple, "a pipeline (requests ended by Flush, not Sync) cannot continue on another shard; the pipeline was rolled back: send Sync before a statement for another key")
                .map(Some);
        }
        if self.mode == crate::config::PoolMode::Session && self.repl_mut().temp_objects {
            return self
                .refuse_msg(simple, "this session created temporary objects on its shard, which another shard would not have: use them in a session of their own")
                .map(Some);
        }
        let cluster = self.shared.cluster.clone();
        let (from_name, to_name) = {
            let from = self.repl_mut().shard;
            let map = &self.shard_state().expect("sharded").map;
            (map.name(from).to_string(), map.name(to).to_string())
        };
        if self.tx_status != b'I' || self.repl_mut().unit.is_some() {
            let cfg = cluster.config();
            let why = match self.cross_shard_obstacle(&cfg, true) {
                None => return self.move_transaction(to).await,
                Some(why) => why,
            };
            return self
                .refuse_msg(
                    simple,
                    &format!("this transaction runs on shard {from_name} and this statement needs shard {to_name} ({why}): keep each transaction to one sharding key, or commit first"),
                )
                .map(Some);
        }
        if self.pin.is_some() {
            return self
                .refuse_msg(
                    simple,
                    &format!("this session holds state on shard {from_name} (a temporary table, cursor, advisory lock or LISTEN) and this statement needs shard {to_name}: release that state first"),
                )
                .map(Some);
        }
        if let Some(server) = self.server.take() {
            // Session mode: the session moves; its settings are replayed on the next server.
            self.hand_back(server, true);
        }
        let repl = self.repl.as_mut().expect("sharded");
        for f in repl.followers.drain(..) {
            if f.is_idle() {
                f.conn.release();
            }
        }
        repl.shard = to;
        repl.node = cluster.topology.main(to).unwrap_or(0);
        Ok(None)
    }

    /// The open pipeline (no Sync since it began) runs inside an explicit transaction, with no
    /// error and no transaction control but a BEGIN: the client's transaction was open at
    /// its last Sync, or a BEGIN in the pipeline opened one.
    fn pipeline_in_explicit_txn(&mut self) -> bool {
        let ok = !self.server_skipping && !self.lost_txn;
        let status = self.tx_status;
        let repl = self.repl_mut();
        let explicit = match status {
            // Not a transaction pgproxy opened around an autocommit write (replicated shard).
            b'T' => !repl.implicit,
            b'I' => repl.pipe_begun,
            _ => false,
        };
        ok && explicit && !repl.pipe_control
    }

    /// Aborts the implicit transaction of an unfinished pipeline on the attached server: an
    /// Execute of a portal that does not exist fails it, the Sync rolls it back.
    async fn abort_pipeline(&mut self) {
        self.sync_pipeline(true).await;
    }

    /// Ends the implicit transaction of a pipeline that only prepared statements: a Sync of
    /// pgproxy's own (its ReadyForQuery is not the client's).
    async fn end_pipeline(&mut self) {
        self.sync_pipeline(false).await;
    }

    /// Sends the attached server a Sync (after a failing Execute when `abort`) and reads up to
    /// its ReadyForQuery, which the client does not get.
    async fn sync_pipeline(&mut self, abort: bool) {
        let Some(server) = self.server.as_mut() else {
            return;
        };
        let mut req = bytes::BytesMut::new();
        if abort {
            req.put_slice(message::execute("pgproxy_abort_pipeline", 0).raw());
        }
        req.put_slice(message::sync().raw());
        let mut status = b'I';
        let ok = async {
            server.write_all(&req).await?;
            loop {
                let f = server.read_frame().await?;
                if f.tag() == crate::protocol::message::be::READY_FOR_QUERY {
                    status = f.body().first().copied().unwrap_or(b'I');
                    return Ok::<(), crate::backend::BackendError>(());
                }
            }
        }
        .await;
        if ok.is_err() {
            // The connection is unusable: drop it.
            self.server.take();
            self.cancel.set(None);
        }
        self.since_sync = false;
        self.pipeline_ran = false;
        self.tx_status = status;
    }

    /// Why the open transaction cannot take in another shard, if it cannot.
    /// `moves`: the transaction moves to the other shard (which then runs its SETs first);
    /// else other shards join it for one statement, which pgproxy does only while it changed
    /// no setting.
    pub(super) fn cross_shard_obstacle(
        &mut self,
        cfg: &crate::config::Config,
        moves: bool,
    ) -> Option<&'static str> {
        if cfg.sharding.cross_shard_transactions == crate::config::CrossShard::Deny {
            return Some("cross_shard_transactions = \"deny\"");
        }
        if !moves && self.shard_state().is_some_and(|st| st.sets.any()) {
            return Some("the transaction changed a setting (SET), which a statement on several shards would not see there");
        }
        let repl = self.repl_mut();
        if cfg.replication.commit != crate::config::CommitMode::TwoPhase || repl.temp_objects {
            return Some("a transaction across shards commits with two-phase commit, which replication.commit = \"ordered\" and temporary tables rule out");
        }
        if repl.savepoints {
            return Some("the transaction set a savepoint, which another shard would not have");
        }
        let busy = repl.unit.is_some();
        if self.tx_status != b'T' || busy || self.server.is_none() || self.lost_txn {
            return Some("the transaction is not in a state to continue on another shard");
        }
        if self.pin.is_some() {
            return Some("the session holds state on its shard (a temporary table, cursor, advisory lock or LISTEN)");
        }
        None
    }

    /// What a connection new to the open transaction runs first: its BEGIN (with the
    /// transaction's characteristics) and the transaction's SETs so far.
    pub(super) fn txn_begin_sql(&mut self) -> String {
        let sets = self.shard_state().and_then(|st| st.sets.all_sql());
        let mut begin = self
            .repl_mut()
            .txn_begin
            .clone()
            .unwrap_or_else(|| "BEGIN".into());
        if let Some(sets) = sets {
            begin = format!("{begin};\n{sets}");
        }
        begin
    }

    /// Continues the open transaction on shard `to`: the current shard's connections wait for
    /// the commit (parked), and `to` joins the transaction (its earlier connections resumed
    /// if the transaction was there before, else a new BEGIN with the same characteristics).
    async fn move_transaction(&mut self, to: usize) -> Result<Option<Plan>, SessionError> {
        if self.server.is_some() {
            let from = self.repl_mut().shard;
            self.shard_state().expect("sharded").sets.left(from);
        }
        self.park_current().await;
        let cluster = self.shared.cluster.clone();
        // The transaction's SETs so far: a connection new to it runs them after its BEGIN,
        // one it comes back to those it missed (`txn_sets.rs`).
        let begin = self.txn_begin_sql();
        let missed = self.shard_state().expect("sharded").sets.catch_up(to);
        let repl = self.repl.as_mut().expect("sharded");
        repl.shard = to;
        // Back to a shard the transaction left before: its connections take over again.
        if let Some(i) = repl
            .followers
            .iter()
            .position(|f| f.parked && f.was_main && f.shard == to)
        {
            let f = repl.followers.remove(i);
            repl.node = f.node;
            let mut rejoined = false;
            for g in repl.followers.iter_mut().filter(|g| g.shard == to) {
                g.parked = false;
                rejoined = true;
            }
            repl.joined = rejoined;
            if !rejoined {
                repl.prefix.push(message::query(&begin).into_raw());
            }
            if let Some(sql) = &missed {
                for g in repl
                    .followers
                    .iter_mut()
                    .filter(|g| g.shard == to && !g.parked)
                {
                    g.queue_internal(sql);
                }
            }
            self.pool = cluster.pool(&repl.user, &repl.db, to, f.node);
            self.attach(f.conn);
            if let Some(sql) = missed {
                self.inject_query(&sql, super::expect::Expect::InjectedQuery);
            }
            return Ok(None);
        }
        repl.node = cluster.topology.main(to).unwrap_or(0);
        repl.prefix.push(message::query(&begin).into_raw());
        repl.pending_begin = Some(begin);
        Ok(None)
    }

    /// Applies `SET pgproxy.shard_key` / `RESET pgproxy.shard_key` (and RESET ALL, DISCARD
    /// ALL) found among the statements of `text`.
    fn note_shard_key(&mut self, text: &str) -> Result<(), RouteError> {
        let lower = text.to_ascii_lowercase();
        if !lower.contains("pgproxy.shard_key") && !lower.contains("all") {
            return Ok(());
        }
        let Some(lexed) = crate::router::classify::lex::Lexed::new(text) else {
            return Ok(());
        };
        for r in lexed.statements() {
            let one = lexed.text(r);
            let words: Vec<String> = one
                .split_whitespace()
                .take(2)
                .map(|w| w.trim_end_matches(';').to_ascii_lowercase())
                .collect();
            let clears_all = words.len() == 2
                && (words[0] == "reset" || words[0] == "discard")
                && words[1] == "all";
            let new = if clears_all {
                Some(None)
            } else {
                shard_key_setting(one)
            };
            if let Some(k) = new {
                if let Some(k) = &k {
                    let map = self.shard_state().expect("sharded").map.clone();
                    map.shard_of_text(k).map_err(RouteError::from)?;
                }
                let in_txn = self.tx_status != b'I';
                let st = self.shard_state().expect("sharded");
                if in_txn && st.key_before_txn.is_none() {
                    st.key_before_txn = Some(st.key.clone());
                }
                st.key = k;
            }
        }
        Ok(())
    }

    /// A transaction that changed the shard key ends: ROLLBACK (or COMMIT of an aborted
    /// transaction) restores the key it began with, COMMIT keeps the new one.
    fn note_txn_end(&mut self, text: &str) {
        let first = text
            .split_whitespace()
            .next()
            .unwrap_or("")
            .trim_end_matches(';')
            .to_ascii_lowercase();
        let aborted = self.tx_status == b'E';
        let Some(st) = self.shard_state() else { return };
        let Some(saved) = st.key_before_txn.take() else {
            return;
        };
        let rolls_back = matches!(first.as_str(), "rollback" | "abort")
            || (aborted && matches!(first.as_str(), "commit" | "end"));
        let ends = rolls_back || matches!(first.as_str(), "commit" | "end");
        if rolls_back {
            st.key = saved;
        } else if !ends {
            st.key_before_txn = Some(saved);
        }
    }

    /// The route of everything a unit executes.
    fn unit_route(&mut self, frames: &[u8]) -> Result<UnitRoute, RouteError> {
        let mut acc: Option<Route> = None;
        let mut executes = 0;
        // Only filled once the Executes go to different shards (no allocation otherwise).
        let mut per_execute: Vec<Option<usize>> = Vec::new();
        let mut routed = 0;
        let mut mixed = false;
        // Statements parsed in this unit: text and declared parameter types (Parse's raw list).
        let mut parsed: HashMap<String, (String, Vec<u8>)> = HashMap::new();
        let mut pos = 0;
        while pos < frames.len() {
            let Ok(Some(n)) = frame::peek_frame_len(&frames[pos..], usize::MAX) else {
                break;
            };
            let f = FrameRef::new(&frames[pos..pos + n]);
            pos += n;
            match f.tag() {
                fe::QUERY => {
                    let text = message::query_text(f.body()).unwrap_or("");
                    self.note_txn_end(text);
                    self.note_shard_key(text)?;
                    let st = self.shard_state().expect("sharded");
                    st.sets.note(text);
                    let p = st.plan(text);
                    let r = resolve_noting_cursors(&p, text, st, &|_| None)?;
                    executes += p.statements.len();
                    acc = Some(combine(acc, r)?);
                }
                fe::PARSE => {
                    if let Some(p) = Parse::parse(f.body()) {
                        let types = p.param_types.to_vec();
                        parsed.insert(p.name.to_string(), (p.query.to_string(), types));
                    }
                }
                fe::BIND => {
                    let Some(b) = Bind::parse(f.body()) else {
                        continue;
                    };
                    let (sql, types) = match parsed.get(b.statement) {
                        Some(s) => s.clone(),
                        None => match self.statements.get(b.statement) {
                            Some(s) => (
                                s.query().to_string(),
                                Parse::parse(s.parse.body())
                                    .map(|p| p.param_types.to_vec())
                                    .unwrap_or_default(),
                            ),
                            // PostgreSQL reports the unknown statement.
                            None => continue,
                        },
                    };
                    self.note_shard_key(&sql)?;
                    self.shard_state().expect("sharded").sets.note(&sql);
                    let values = bind_values(b.rest);
                    // Binary integers of a declared width other than the key type's (int4 for
                    // a bigint key: PostgreSQL casts them), as text.
                    let ints: Vec<Option<String>> = values
                        .as_ref()
                        .map(|v| {
                            v.params
                                .iter()
                                .enumerate()
                                .map(|(i, &(format, v))| {
                                    binary_int_text(declared_type(&types, i), format, v?)
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    let st = self.shard_state().expect("sharded");
                    let p = st.plan(&sql);
                    let get = |n: usize| -> Option<Param<'_>> {
                        let (format, v) = *values.as_ref()?.params.get(n - 1)?;
                        if let Some(Some(t)) = ints.get(n - 1) {
                            return Some(Param::Text(t));
                        }
                        Some(match v {
                            None => Param::Null,
                            Some(v) if format == 1 => Param::Binary(v),
                            Some(v) => std::str::from_utf8(v)
                                .map(Param::Text)
                                .unwrap_or(Param::Binary(v)),
                        })
                    };
                    let r = resolve_noting_cursors(&p, &sql, st, &get)?;
                    st.portals.insert(b.portal.to_string(), r);
                }
                fe::EXECUTE => {
                    let mut b = f.body();
                    let portal = frame::read_cstr(&mut b).unwrap_or("");
                    let st = self.shard_state().expect("sharded");
                    // The portal of a SQL-level cursor (psycopg describes its cursors so).
                    let r = st
                        .portals
                        .get(portal)
                        .cloned()
                        .or_else(|| cursor_portal_route(st, portal));
                    if let Some(r) = r {
                        let (shard, was_mixed) = (one_shard(&r), mixed);
                        let before = acc.as_ref().and_then(one_shard);
                        acc = Some(combine_batch(acc, r, &mut mixed)?);
                        if mixed {
                            if !was_mixed {
                                // The Executes so far all went to one shard.
                                per_execute = vec![before; routed];
                            }
                            per_execute.push(shard);
                        }
                        routed += 1;
                        executes += 1;
                    }
                }
                fe::DESCRIBE => {
                    let Some(t) = message::Target::parse(f.body()) else {
                        continue;
                    };
                    let st = self.shard_state().expect("sharded");
                    if t.kind == b'P' && !st.portals.contains_key(t.name) {
                        if let Some(r) = cursor_portal_route(st, t.name) {
                            acc = Some(combine(acc, r)?);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(UnitRoute {
            route: acc.unwrap_or(Route {
                shards: Shards::Any,
                merge: None,
                split: None,
                write: false,
                keyless: false,
                copy_in: false,
                copy_out: false,
                why: String::new(),
            }),
            executes,
            mixed: mixed.then_some(per_execute),
        })
    }

    /// A single statement pgproxy cannot parse: is it a syntax error for PostgreSQL too? Then
    /// any node reports it (42601, with its position), as PostgreSQL would, instead of
    /// pgproxy's refusal. Asked on a connection of its own (the statement is parsed, not run).
    async fn only_a_syntax_error(&mut self, frames: &[u8], e: &RouteError) -> bool {
        let RouteError::Unroutable(why) = e else {
            return false;
        };
        if !why.starts_with(crate::router::route::UNPARSED) {
            return false;
        }
        let Some(text) = self.sole_statement(frames) else {
            return false;
        };
        let cluster = self.shared.cluster.clone();
        let (user, db, shard) = {
            let r = self.repl_mut();
            (r.user.clone(), r.db.clone(), r.shard)
        };
        let Some(node) = cluster.topology.main(shard) else {
            return false;
        };
        let Ok(mut conn) = cluster.pool(&user, &db, shard, node).checkout().await else {
            return false;
        };
        match conn.parse_only(&text).await {
            Ok(error) => {
                conn.release();
                error.is_some_and(|f| message::error_code(f.body()) == Some("42601"))
            }
            Err(_) => false,
        }
    }

    /// The text of the one statement a unit runs: a Query of one statement, or the statement
    /// of the unit's only Bind (no Query). None when it runs several: sending the unit to one
    /// shard would run the others there too.
    fn sole_statement(&self, frames: &[u8]) -> Option<String> {
        let mut parsed: HashMap<&str, &str> = HashMap::new();
        let mut text = None;
        let mut pos = 0;
        while let Ok(Some(n)) = frame::peek_frame_len(&frames[pos..], usize::MAX) {
            let f = FrameRef::new(&frames[pos..pos + n]);
            pos += n;
            let found = match f.tag() {
                fe::QUERY => {
                    let t = message::query_text(f.body())?;
                    let one = crate::router::classify::lex::Lexed::new(t)
                        .is_some_and(|l| l.statements().len() == 1);
                    one.then(|| t.to_string())?
                }
                fe::PARSE => {
                    let p = Parse::parse(f.body())?;
                    parsed.insert(p.name, p.query);
                    continue;
                }
                fe::BIND => {
                    let b = Bind::parse(f.body())?;
                    match parsed.get(b.statement) {
                        Some(q) => q.to_string(),
                        None => self.statements.get(b.statement)?.query().to_string(),
                    }
                }
                _ => continue,
            };
            if text.replace(found).is_some() {
                return None;
            }
        }
        text
    }

    fn refuse_route(&mut self, simple: bool, e: &RouteError) -> Result<Plan, SessionError> {
        let hint = "see `pgproxy route --config FILE \"SQL\"` for how pgproxy routes a statement";
        tracing::debug!(sqlstate = e.sqlstate(), reason = %e, "statement refused");
        let msg = message::error_response(
            message::Severity::Error,
            e.sqlstate(),
            &e.to_string(),
            Some(hint),
        );
        self.to_client.put_slice(msg.raw());
        self.end_refused(simple);
        Ok(Plan::Done)
    }

    pub(super) fn refuse_msg(&mut self, simple: bool, msg: &str) -> Result<Plan, SessionError> {
        self.refuse_route(simple, &RouteError::Unroutable(msg.to_string()))
    }

    pub(super) fn end_refused(&mut self, simple: bool) {
        self.note_refusal();
        if simple {
            self.to_client
                .put_slice(message::ready_for_query(self.tx_status_for_client()).raw());
        } else {
            self.skip_until_sync = true;
        }
    }
}

/// Resolves a plan with the session's cursors, and notes what it does to them: a DECLARE of
/// a name already open on a shard must go there (PostgreSQL then reports the duplicate) and is
/// refused if its query needs another shard.
fn resolve_noting_cursors<'p>(
    p: &RoutePlan,
    text: &str,
    st: &mut ShardState,
    params: &dyn Fn(usize) -> Option<Param<'p>>,
) -> Result<Route, RouteError> {
    let cursors = &st.cursors;
    let mut r =
        p.resolve_with_cursors(&st.map, params, st.key.as_deref(), &|c| cursors.shards(c))?;
    for s in &p.statements {
        if let Some((name, hold)) = &s.declares {
            if let Some(at) = st.cursors.shards(&CursorName::Named(name.clone())).first() {
                match &r.shards {
                    Shards::Any => r.shards = Shards::Some(vec![*at]),
                    Shards::Some(v) if v == &[*at] => {}
                    Shards::Some(_) => {
                        return Err(RouteError::Unroutable(format!(
                            "a cursor named {name} is already open on shard {}, and this DECLARE needs another shard: CLOSE it first, or use another name",
                            st.map.name(*at)
                        )))
                    }
                }
            }
            st.cursors.note(CursorEffect::Declare(name.clone(), *hold));
        }
        if let Target::Cursor { name, closes: true } = &s.target {
            st.cursors.note(match name {
                CursorName::Named(n) => CursorEffect::Close(n.clone()),
                CursorName::All => CursorEffect::CloseAll,
            });
        }
    }
    if discards_all(text) {
        st.cursors.note(CursorEffect::CloseAll);
    }
    Ok(r)
}

/// The route of a protocol-level Describe or Execute of portal `name` when it is a cursor
/// the session declared.
fn cursor_portal_route(st: &ShardState, name: &str) -> Option<Route> {
    if name.is_empty() {
        return None;
    }
    let shard = st.cursors.shard_of(name)?;
    Some(Route {
        shards: Shards::Some(vec![shard]),
        merge: None,
        split: None,
        write: false,
        keyless: false,
        copy_in: false,
        copy_out: false,
        why: "the cursor's shard".into(),
    })
}

/// `DISCARD ALL` among the statements of `text` (it closes every cursor).
fn discards_all(text: &str) -> bool {
    if !text.to_ascii_lowercase().contains("discard") {
        return false;
    }
    let Some(lexed) = crate::router::classify::lex::Lexed::new(text) else {
        return false;
    };
    lexed
        .statements()
        .into_iter()
        .any(|r| lexed.words(r, 2) == ["discard", "all"])
}

/// A Query that ends the transaction: Some(true) for ROLLBACK / ABORT, Some(false) for
/// COMMIT / END; None otherwise (ROLLBACK TO SAVEPOINT, PREPARED forms: None).
fn ends_txn(text: &str) -> Option<bool> {
    let lower = text
        .trim()
        .trim_end_matches(';')
        .trim()
        .to_ascii_lowercase();
    let mut words = lower.split_whitespace();
    let first = words.next()?;
    if words.any(|w| w == "to" || w == "prepared") {
        return None;
    }
    match first {
        "rollback" | "abort" => Some(true),
        "commit" | "end" => Some(false),
        _ => None,
    }
}

/// The type OID a Parse declared for parameter `i` (0: unspecified).
fn declared_type(types: &[u8], i: usize) -> u32 {
    types
        .get(2 + i * 4..6 + i * 4)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// A binary parameter declared int2, int4 or int8 (OIDs 21, 23, 20) of that width, as
/// decimal text.
fn binary_int_text(oid: u32, format: i16, v: &[u8]) -> Option<String> {
    let declared = match oid {
        21 => KeyType::Smallint,
        23 => KeyType::Integer,
        20 => KeyType::Bigint,
        _ => return None,
    };
    if format != 1 {
        return None;
    }
    match declared.parse_binary(v).ok()? {
        KeyValue::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// The text of a unit's first message when it is a Query.
pub(super) fn first_query_text(frames: &[u8]) -> Option<String> {
    if frames.first() != Some(&fe::QUERY) {
        return None;
    }
    let Ok(Some(n)) = frame::peek_frame_len(frames, usize::MAX) else {
        return None;
    };
    message::query_text(FrameRef::new(&frames[..n]).body()).map(str::to_string)
}

/// `EXPLAIN ROUTE <sql>`: the SQL to explain.
fn explain_route_text(frames: &[u8]) -> Option<String> {
    if frames.first() != Some(&fe::QUERY) {
        return None;
    }
    let Ok(Some(n)) = frame::peek_frame_len(frames, usize::MAX) else {
        return None;
    };
    let text = message::query_text(FrameRef::new(&frames[..n]).body())?.trim_start();
    let mut words = text.splitn(3, char::is_whitespace);
    let (a, b) = (words.next()?, words.next()?);
    (a.eq_ignore_ascii_case("explain") && b.eq_ignore_ascii_case("route"))
        .then(|| words.next().unwrap_or("").to_string())
}

impl Session {
    /// Answers `EXPLAIN ROUTE <sql>` with one row per line of the route.
    fn explain_route(&mut self, sql: &str) -> Result<Plan, SessionError> {
        let cfg = self.shared.cluster.config();
        let map = self.shard_state().expect("sharded").map.clone();
        let lines = crate::router::route::explain(sql, &map, &cfg, &[]);
        let field = crate::protocol::rows::Field {
            name: "route".into(),
            table: 0,
            column: 0,
            type_oid: crate::protocol::value::oid::TEXT,
            type_len: -1,
            type_mod: -1,
            format: 0,
        };
        self.to_client
            .put_slice(crate::protocol::rows::row_description(&[field]).raw());
        for l in &lines {
            self.to_client
                .put_slice(crate::protocol::rows::data_row(&[Some(l.clone().into_bytes())]).raw());
        }
        self.to_client
            .put_slice(message::command_complete("EXPLAIN").raw());
        self.to_client
            .put_slice(message::ready_for_query(self.tx_status_for_client()).raw());
        Ok(Plan::Done)
    }
}

/// The shard of a route that goes to exactly one shard and needs no merge or split.
fn one_shard(r: &Route) -> Option<usize> {
    match &r.shards {
        Shards::Some(v) if v.len() == 1 && r.merge.is_none() && r.split.is_none() && !r.keyless => {
            Some(v[0])
        }
        _ => None,
    }
}

/// Like `combine`, but Executes of one shard each, on different shards, are a batch
/// (`mixed`), which `batch.rs` runs one shard at a time.
fn combine_batch(a: Option<Route>, b: Route, mixed: &mut bool) -> Result<Route, RouteError> {
    if let Some(a) = &a {
        if let (Some(x), Some(y)) = (one_shard(a), one_shard(&b)) {
            if x != y || *mixed {
                *mixed = true;
                return Ok(Route {
                    write: a.write || b.write,
                    ..a.clone()
                });
            }
        }
    }
    if *mixed && matches!(b.shards, Shards::Any) && b.merge.is_none() && b.split.is_none() {
        return Ok(a.expect("mixed after a first route"));
    }
    if *mixed {
        return Err(different_shards());
    }
    combine(a, b)
}

fn different_shards() -> RouteError {
    RouteError::Unroutable(
        "the statements of this request go to different shards: send them one at a time (or in one transaction per key)".into(),
    )
}

/// Two routes of one unit: the same shard (or any), else refused.
fn combine(a: Option<Route>, b: Route) -> Result<Route, RouteError> {
    let Some(a) = a else { return Ok(b) };
    if a.merge.is_some() || b.merge.is_some() || a.split.is_some() || b.split.is_some() {
        return Err(RouteError::Unroutable(
            "a statement that spans shards must be sent on its own (not pipelined with others)"
                .into(),
        ));
    }
    let shards = match (a.shards, b.shards) {
        (Shards::Any, s) | (s, Shards::Any) => s,
        (Shards::Some(x), Shards::Some(y)) if x == y => Shards::Some(x),
        _ => return Err(different_shards()),
    };
    Ok(Route {
        shards,
        merge: None,
        split: None,
        write: a.write || b.write,
        keyless: a.keyless || b.keyless,
        copy_in: a.copy_in || b.copy_in,
        copy_out: a.copy_out || b.copy_out,
        why: a.why,
    })
}

#[cfg(test)]
mod tests {
    use super::shard_key_setting;

    #[test]
    fn shard_key_settings() {
        let cases: &[(&str, Option<Option<&str>>)] = &[
            ("SET pgproxy.shard_key = 42", Some(Some("42"))),
            ("set pgproxy.shard_key to '42';", Some(Some("42"))),
            ("SET SESSION pgproxy.shard_key = 'Abc'", Some(Some("Abc"))),
            ("RESET pgproxy.shard_key", Some(None)),
            ("SET pgproxy.shard_key = DEFAULT", Some(None)),
            ("SET search_path = x", None),
            ("SELECT 1", None),
        ];
        for (sql, want) in cases {
            let got = shard_key_setting(sql);
            assert_eq!(got, want.map(|o| o.map(str::to_string)), "{sql}");
        }
    }
}
