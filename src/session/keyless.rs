//! Writes that change sharded rows on several shards: UPDATE / DELETE without the key (or with
//! keys on several shards) and multi-row INSERTs split per shard. The statement runs on every up
//! node of every target shard, each node inside a transaction; the nodes of one shard must agree
//! with that shard's main (a node that differs is detached), and the client gets one answer
//! (rows of every shard, the summed row count). Outside a transaction pgproxy commits them all
//! with two-phase commit; inside one, the nodes join the transaction as parked participants and
//! the client's COMMIT commits them with the rest.

use super::commit::quote;
use super::keyless_det::PartsMade;
use super::keyless_request::Unfit;
use super::relay::Session;
use super::replica::Plan;
use super::SessionError;
use crate::backend::BackendError;
use crate::cluster::DetachCause;
use crate::pool::Pooled;
use crate::protocol::frame::{self, Frame};
use crate::protocol::message::{self, be};
use crate::protocol::sqlstate;
use crate::router::route::Route;
use bytes::{BufMut, BytesMut};
use futures_util::future::join_all;
use tracing::warn;

/// One node taking part.
pub(super) struct Participant {
    pub(super) shard: usize,
    pub(super) node: usize,
    /// The shard's main (its answer is the shard's answer).
    pub(super) main: bool,
    pub(super) conn: Pooled,
}

/// What one node answered.
#[derive(Default, Clone)]
pub(super) struct Answer {
    pub(super) error: Option<Frame>,
    /// ParseComplete (1) and BindComplete (2) were read.
    pub(super) progress: u8,
    /// ParameterDescription's types (a Describe of a statement).
    pub(super) param_types: Option<Vec<u32>>,
    pub(super) desc: Option<Frame>,
    pub(super) rows: Vec<Frame>,
    pub(super) tag: Option<String>,
    pub(super) status: u8,
}

/// Sends `request` and reads the node's answer up to its ReadyForQuery.
pub(super) async fn run(conn: &mut Pooled, request: &[u8]) -> Result<Answer, BackendError> {
    conn.write_all(request).await?;
    read_answer(conn).await
}

/// Reads the node's answer up to its ReadyForQuery.
pub(super) async fn read_answer(conn: &mut Pooled) -> Result<Answer, BackendError> {
    let mut a = Answer::default();
    loop {
        let f = conn.read_frame().await?;
        match f.tag() {
            be::ERROR_RESPONSE => {
                if message::is_fatal_error(f.body()) {
                    return Err(BackendError::Io("the node closed the connection".into()));
                }
                a.error.get_or_insert(f);
            }
            be::PARSE_COMPLETE => a.progress = 1,
            be::PARAMETER_DESCRIPTION => {
                a.param_types = Some(super::keyless_split::parameter_types(f.body()))
            }
            be::BIND_COMPLETE => a.progress = 2,
            be::ROW_DESCRIPTION | be::NO_DATA => a.desc = Some(f),
            be::DATA_ROW => a.rows.push(f),
            be::COMMAND_COMPLETE => {
                let mut b = f.body();
                a.tag = frame::read_cstr(&mut b).map(str::to_string);
            }
            be::READY_FOR_QUERY => {
                a.status = f.body().first().copied().unwrap_or(b'I');
                return Ok(a);
            }
            _ => {}
        }
    }
}

/// "UPDATE 3" + "UPDATE 4" = "UPDATE 7" (the last number is the row count).
pub(super) fn add_tags(a: &str, b: &str) -> String {
    let split = |t: &str| -> (String, u64) {
        match t.rsplit_once(' ') {
            Some((head, n)) => (head.to_string(), n.parse().unwrap_or(0)),
            None => (t.to_string(), 0),
        }
    };
    let ((head, x), (_, y)) = (split(a), split(b));
    format!("{head} {}", x + y)
}

impl Session {
    /// Runs a write of sharded rows on several shards (see the module doc).
    pub(super) async fn keyless_write(
        &mut self,
        route: &Route,
        shards: &[usize],
        frames: &[u8],
        simple: bool,
    ) -> Result<Plan, SessionError> {
        let cfg = self.shared.cluster.config();
        let mut req = match self.keyless_request(route, frames, simple, shards) {
            Ok(r) => r,
            Err(Unfit::Unsupported(what)) => {
                return self.refuse_msg(
                    simple,
                    &format!(
                        "a write on several shards is not supported with {what}: write per key"
                    ),
                )
            }
            Err(Unfit::Error(code, msg)) => {
                let e = message::error_response(message::Severity::Error, code, &msg, None);
                self.to_client.put_slice(e.raw());
                self.end_refused(simple);
                return Ok(Plan::Done);
            }
        };
        let replicated = shards
            .iter()
            .any(|&s| cfg.shards.get(s).is_some_and(|x| x.nodes.len() > 1));
        // A split INSERT is made deterministic per shard (`keyless_det`), after its nodes
        // joined; other writes must be deterministic as they are.
        if replicated && route.split.is_none() {
            let uses_default = crate::router::classify::lex::Lexed::new(&req.sql).is_none_or(|l| {
                l.tokens.iter().any(|t| {
                    matches!(&t.token, sqlparser::tokenizer::Token::Word(w)
                        if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("default"))
                })
            });
            let unchanged = matches!(
                crate::router::determinism::plan(&req.sql, &std::collections::HashMap::new()),
                crate::router::determinism::Planned::Unchanged
            );
            if !unchanged || uses_default {
                return self.refuse_msg(simple, "this write spans shards and pgproxy cannot make it identical on every node of a replicated shard (values computed per node, column defaults): write per key");
            }
        }
        let in_txn = self.tx_status != b'I';
        if in_txn {
            if let Some(why) = self.cross_shard_obstacle(&cfg, false) {
                return self.refuse_msg(simple, &format!("this write spans shards, but the transaction cannot continue on other shards: {why}"));
            }
        }
        // The participants: every up node of every target shard.
        let mut parts = match self.keyless_participants(shards, in_txn).await {
            Ok(p) => p,
            Err(e) => {
                if in_txn {
                    // The transaction's connections were parked for this write, and those
                    // taken for it closed with the failure (rolling back what ran there): the
                    // transaction is lost. The rest are let go (closed, rolled back too), and
                    // pgproxy answers for the transaction until the client ends it.
                    let repl = self.repl_mut();
                    repl.followers.clear();
                    if let Some(st) = repl.sharding.as_deref_mut() {
                        st.cursors.txn_over(true);
                    }
                    self.after_txn();
                    self.server.take();
                    self.cancel.set(None);
                    self.tx_status = b'I';
                    self.lost_txn = true;
                    self.lost_untold = false;
                }
                self.report_error(&e, simple);
                if !simple {
                    self.skip_until_sync = false;
                    self.to_client
                        .put_slice(message::ready_for_query(self.tx_status_for_client()).raw());
                }
                return Ok(Plan::Done);
            }
        };
        // pgproxy's own error: nothing ran, or the shards' answers cannot be used.
        let mut own: Option<Frame> = None;
        // A shard without a main taking part (no node up) would silently miss its rows.
        let headless = shards
            .iter()
            .any(|s| !parts.iter().any(|p| p.main && p.shard == *s));
        let made = if headless {
            PartsMade::Own(message::error_response(
                message::Severity::Error,
                sqlstate::CONNECTION_FAILURE,
                "a shard this write needs has no node up; nothing was written",
                Some("retry when the shard is back"),
            ))
        } else {
            self.split_deterministic(&mut req, &mut parts).await
        };
        let early = match made {
            PartsMade::Ready => super::keyless_split::prepare_parts(&mut req, &mut parts).await,
            PartsMade::Failed(a) => Some(a),
            PartsMade::Own(e) => {
                own = Some(e);
                Some(
                    parts
                        .iter()
                        .map(|_| {
                            Ok(Answer {
                                status: b'T',
                                ..Answer::default()
                            })
                        })
                        .collect(),
                )
            }
        };
        let own_before = own.is_some();
        let answers = match early {
            Some(a) => a,
            None => {
                join_all(parts.iter_mut().map(|p| {
                    let request = req
                        .per_shard
                        .iter()
                        .find(|(s, _)| *s == p.shard)
                        .map(|(_, r)| r.clone())
                        .unwrap_or_default();
                    async move { run(&mut p.conn, &request).await }
                }))
                .await
            }
        };
        // pgproxy's own Parse of the unnamed statement replaced whatever a connection held.
        for p in parts.iter_mut() {
            p.conn.unnamed = None;
        }
        // Each shard's answer is its main's; a node that differs from its main is dropped.
        let mut error: Option<Frame> = None;
        let mut ok: Vec<usize> = Vec::new();
        let mut mains: Vec<(usize, Answer)> = Vec::new();
        let mut detach = Vec::new();
        let mut answers: Vec<Option<Answer>> = answers.into_iter().map(|a| a.ok()).collect();
        for (i, p) in parts.iter().enumerate() {
            if p.main {
                match answers[i].take() {
                    Some(a) => {
                        if let Some(e) = &a.error {
                            error.get_or_insert(e.clone());
                        }
                        mains.push((p.shard, a));
                        ok.push(i);
                    }
                    None => {
                        error.get_or_insert(message::error_response(
                            message::Severity::Error,
                            sqlstate::SERIALIZATION_FAILURE,
                            "a shard's main node failed during a write across shards; nothing was committed",
                            Some("retry the statement"),
                        ));
                    }
                }
            }
        }
        for (i, p) in parts.iter().enumerate() {
            if p.main {
                continue;
            }
            let main = mains.iter().find(|(s, _)| *s == p.shard).map(|(_, a)| a);
            match (&answers[i], main) {
                (Some(a), Some(m)) if a.error.is_none() == m.error.is_none() && a.tag == m.tag => {
                    ok.push(i)
                }
                (_, None) => ok.push(i),
                (a, Some(m)) => {
                    let got = a
                        .as_ref()
                        .map(|a| format!("{:?}", a.tag))
                        .unwrap_or_else(|| "connection failed".into());
                    detach.push((
                        i,
                        format!("write across shards: main {:?}, node {got}", m.tag),
                    ));
                }
            }
        }
        let cluster = self.shared.cluster.clone();
        let mut kept = Vec::new();
        for (i, p) in parts.into_iter().enumerate() {
            if let Some((_, why)) = detach.iter().find(|(j, _)| *j == i) {
                warn!(shard = p.shard, node = p.node, detail = %why, "node detached");
                cluster.detach(p.shard, p.node, DetachCause::Divergence, why);
            } else {
                kept.push(p);
            }
        }
        let mut out = BytesMut::new();
        // What the client hears before the rows or the error, as PostgreSQL answers: for an
        // error, as far as the failing main got.
        let failed = mains
            .iter()
            .find(|(_, a)| a.error.is_some())
            .map(|(_, a)| a);
        let progress = if own_before {
            0
        } else {
            failed.map_or(2, |a| a.progress)
        };
        if req.extended {
            if req.parse && progress >= 1 {
                out.put_slice(Frame::new(be::PARSE_COMPLETE, &[]).raw());
            }
            if progress >= 2 && !req.describe_first {
                out.put_slice(Frame::new(be::BIND_COMPLETE, &[]).raw());
            }
        }
        let desc = match failed {
            Some(a) => a.desc.clone(),
            None => mains.iter().find_map(|(_, a)| a.desc.clone()),
        };
        if req.describe == Some(b'S') && progress >= 2 {
            // The whole statement's parameters (a split's parts have fewer).
            let types = match &req.param_types {
                Some(t) => Some(t.clone()),
                None => match failed {
                    Some(a) => a.param_types.clone(),
                    None => mains.iter().find_map(|(_, a)| a.param_types.clone()),
                },
            };
            if let Some(t) = types {
                out.put_slice(super::keyless_split::parameter_description(&t).raw());
            }
        }
        let described = req.describe.is_some();
        match desc {
            Some(d) if d.tag() == be::NO_DATA && described => out.put_slice(d.raw()),
            Some(d) if d.tag() != be::NO_DATA && (!req.extended || described) => {
                out.put_slice(d.raw())
            }
            None if described && error.is_none() => {
                out.put_slice(Frame::new(be::NO_DATA, &[]).raw())
            }
            _ => {}
        }
        if req.extended && progress >= 2 && req.describe_first {
            // The client described the statement before binding it.
            out.put_slice(Frame::new(be::BIND_COMPLETE, &[]).raw());
        }
        if own_before {
            error = own.take();
        }
        // A split INSERT's RETURNING rows, in VALUES order.
        let merged = match (&req.split, error.is_none()) {
            (Some(split), true) if split.returning => {
                match super::keyless_split::merged_rows(split, &mains) {
                    Ok(rows) => Some(rows),
                    Err(why) => {
                        error = Some(super::keyless_split::order_error(&why));
                        own = error.clone();
                        None
                    }
                }
            }
            _ => None,
        };
        let own_error = own_before || own.is_some();
        if error.is_none() {
            let mut tag: Option<String> = None;
            match merged {
                Some(rows) => rows.into_iter().for_each(|r| out.put_slice(r.raw())),
                None => mains
                    .iter()
                    .flat_map(|(_, a)| &a.rows)
                    .for_each(|r| out.put_slice(r.raw())),
            }
            for (_, a) in &mains {
                if let Some(t) = &a.tag {
                    tag = Some(match tag {
                        None => t.clone(),
                        Some(prev) => add_tags(&prev, t),
                    });
                }
            }
            out.put_slice(message::command_complete(tag.as_deref().unwrap_or("")).raw());
            if req.close_portal {
                out.put_slice(message::close_complete().raw());
            }
        }
        if in_txn {
            self.keyless_keep(kept, error.is_some() && !own_error, &mains);
            self.to_client.put_slice(&out);
            if let Some(e) = error {
                // The transaction is aborted on that shard, which becomes the current one.
                self.to_client.put_slice(e.raw());
            }
            if own_error {
                // pgproxy's own error aborts the transaction, as a refusal does.
                self.note_refusal();
            }
            self.to_client
                .put_slice(message::ready_for_query(self.tx_status_for_client()).raw());
            return Ok(Plan::Done);
        }
        let result = match error {
            Some(e) => {
                let rollback = message::query("ROLLBACK");
                let _ = join_all(kept.iter_mut().map(|p| run(&mut p.conn, rollback.raw()))).await;
                Err(e)
            }
            None => self.keyless_commit(&mut kept).await,
        };
        for p in kept {
            p.conn.release();
        }
        self.to_client.put_slice(&out);
        match result {
            Ok(()) => {}
            Err(e) => self.to_client.put_slice(e.raw()),
        }
        self.to_client
            .put_slice(message::ready_for_query(b'I').raw());
        Ok(Plan::Done)
    }

    /// Connections to every up node of each shard, inside the transaction (the session's own
    /// transaction parked first, when there is one).
    pub(super) async fn keyless_participants(
        &mut self,
        shards: &[usize],
        in_txn: bool,
    ) -> Result<Vec<Participant>, crate::pool::PoolError> {
        let cluster = self.shared.cluster.clone();
        let begin = if in_txn {
            self.park_current().await;
            self.repl_mut()
                .txn_begin
                .clone()
                .unwrap_or_else(|| "BEGIN".into())
        } else {
            "BEGIN".to_string()
        };
        let (user, db) = {
            let r = self.repl_mut();
            (r.user.clone(), r.db.clone())
        };
        let mut parts = Vec::new();
        for &s in shards {
            // Already in the transaction: its parked connections.
            let repl = self.repl.as_mut().expect("sharded");
            let (mine, rest): (Vec<_>, Vec<_>) = repl
                .followers
                .drain(..)
                .partition(|f| f.parked && f.shard == s);
            repl.followers = rest;
            let have: Vec<usize> = mine.iter().map(|f| f.node).collect();
            let resumed = mine.iter().any(|f| f.was_main);
            // Joined as followers of another shard (a write on every shard earlier in the
            // transaction): the one on this shard's main node is its main here.
            let main_node = cluster.topology.main(s);
            for f in mine {
                parts.push(Participant {
                    shard: s,
                    node: f.node,
                    main: f.was_main || (!resumed && Some(f.node) == main_node),
                    conn: f.conn,
                });
            }
            // Every other up node joins now (the transaction may not have written there yet,
            // so its followers were not in it).
            let main = if resumed { None } else { main_node };
            for node in cluster.topology.up_nodes(s) {
                if have.contains(&node) {
                    continue;
                }
                let mut conn = cluster.pool(&user, &db, s, node).checkout().await?;
                if let Some(sql) = super::settings::replay_sql(&self.settings, &conn.settings) {
                    conn.run_internal(&sql)
                        .await
                        .map_err(crate::pool::PoolError::Backend)?;
                    conn.settings = self.settings.clone();
                }
                let a = run(&mut conn, message::query(&begin).raw())
                    .await
                    .map_err(crate::pool::PoolError::Backend)?;
                if a.error.is_some() {
                    return Err(crate::pool::PoolError::Backend(BackendError::Io(
                        "BEGIN failed on a node".into(),
                    )));
                }
                parts.push(Participant {
                    shard: s,
                    node,
                    main: Some(node) == main,
                    conn,
                });
            }
        }
        Ok(parts)
    }

    /// Parks the session's current shard (its main and the followers in the transaction).
    pub(super) async fn park_current(&mut self) {
        if self.server.is_none() {
            return;
        }
        if self
            .repl_mut()
            .followers
            .iter()
            .any(|f| !f.parked && !f.is_idle())
        {
            self.run_followers().await;
        }
        if self.repl_mut().txn_begin.is_none() {
            let sql = "SELECT current_setting('transaction_isolation'), current_setting('transaction_read_only'), current_setting('transaction_deferrable')";
            let server = self.server.as_mut().expect("attached");
            let row = match server.exchange(sql).await {
                Ok(r) => r.result.rows.into_iter().next().unwrap_or_default(),
                Err(_) => Vec::new(),
            };
            let get = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
            let begin = format!(
                "BEGIN ISOLATION LEVEL {} {}{}",
                if get(0).is_empty() {
                    "READ COMMITTED".to_string()
                } else {
                    get(0).to_uppercase()
                },
                if get(1) == "on" {
                    "READ ONLY"
                } else {
                    "READ WRITE"
                },
                if get(2) == "on" { " DEFERRABLE" } else { "" }
            );
            self.repl_mut().txn_begin = Some(begin);
        }
        let server = self.server.take().expect("attached");
        self.cancel.set(None);
        let repl = self.repl.as_mut().expect("sharded");
        let joined = repl.joined;
        let (shard, node) = (repl.shard, repl.node);
        let mut kept = Vec::new();
        for mut f in repl.followers.drain(..) {
            if f.parked || joined {
                f.parked = true;
                kept.push(f);
            } else if f.is_idle() {
                f.conn.release();
            }
        }
        let down = self.shared.cluster.topology.detached_signal(shard, node);
        let mut main = super::follower::Follower::new(shard, node, server, down);
        main.parked = true;
        main.was_main = true;
        kept.push(main);
        repl.followers = kept;
        repl.joined = false;
        repl.prefix.clear();
    }

    /// Inside a transaction: the participants stay in it (parked), and one shard becomes the
    /// session's current one again (the one that failed, if one did).
    pub(super) fn keyless_keep(
        &mut self,
        parts: Vec<Participant>,
        failed: bool,
        mains: &[(usize, Answer)],
    ) {
        let failed_shard = mains
            .iter()
            .find(|(_, a)| a.error.is_some())
            .map(|(s, _)| *s);
        let cluster = self.shared.cluster.clone();
        let begin = self.txn_begin_sql();
        let repl = self.repl.as_mut().expect("sharded");
        for p in parts {
            let down = cluster.topology.detached_signal(p.shard, p.node);
            let mut f = super::follower::Follower::new(p.shard, p.node, p.conn, down);
            f.parked = true;
            f.was_main = p.main;
            repl.followers.push(f);
        }
        let current = if failed {
            failed_shard.unwrap_or(repl.shard)
        } else {
            repl.shard
        };
        let Some(i) = repl
            .followers
            .iter()
            .position(|f| f.was_main && f.shard == current)
        else {
            return;
        };
        let f = repl.followers.remove(i);
        repl.shard = current;
        repl.node = f.node;
        let mut joined = false;
        for g in repl.followers.iter_mut().filter(|g| g.shard == current) {
            g.parked = false;
            joined = true;
        }
        repl.joined = joined;
        if !joined {
            // The shard's other nodes join at its next write, and begin the transaction
            // first: parking cleared the prefix that held its BEGIN (without it a replica ran
            // that write outside the transaction, committed at once).
            repl.prefix.push(message::query(&begin).into_raw());
        }
        let status = mains
            .iter()
            .find(|(s, _)| *s == current)
            .map(|(_, a)| a.status)
            .unwrap_or(b'T');
        let pool = self
            .shared
            .cluster
            .pool(&repl.user, &repl.db, current, f.node);
        self.pool = pool;
        self.attach(f.conn);
        self.tx_status = status;
    }

    /// Two-phase commit of an autocommit write across shards.
    pub(super) async fn keyless_commit(&mut self, parts: &mut [Participant]) -> Result<(), Frame> {
        let gid = self.shared.gids.next();
        let prepare = message::query(&format!("PREPARE TRANSACTION {}", quote(&gid)));
        let prepared = join_all(parts.iter_mut().map(|p| run(&mut p.conn, prepare.raw()))).await;
        // PostgreSQL answers PREPARE TRANSACTION of an aborted transaction with ROLLBACK and no
        // error: nothing was prepared there, so nothing may commit anywhere.
        let rolled_back = |r: &Result<Answer, _>| matches!(r, Ok(a) if a.error.is_none() && a.tag.as_deref() == Some("ROLLBACK"));
        let main_failed = parts
            .iter()
            .zip(&prepared)
            .any(|(p, r)| (p.main && !matches!(r, Ok(a) if a.error.is_none())) || rolled_back(r));
        if main_failed {
            let rollback = message::query(&format!("ROLLBACK PREPARED {}", quote(&gid)));
            let _ = join_all(parts.iter_mut().map(|p| run(&mut p.conn, rollback.raw()))).await;
            return Err(message::error_response(
                message::Severity::Error,
                sqlstate::SERIALIZATION_FAILURE,
                "the write was rolled back on every shard: a shard could not prepare it (are max_prepared_transactions set on every node?)",
                Some("retry the statement"),
            ));
        }
        if let Some(log) = self.shared.decisions.get() {
            if let Err(e) = log.record_commit(&gid).await {
                let rollback = message::query(&format!("ROLLBACK PREPARED {}", quote(&gid)));
                let _ = join_all(parts.iter_mut().map(|p| run(&mut p.conn, rollback.raw()))).await;
                return Err(message::error_response(
                    message::Severity::Error,
                    sqlstate::SYSTEM_ERROR,
                    &format!("the write was rolled back: pgproxy could not record its commit decision: {e}"),
                    Some("check the disk holding replication.decision_log"),
                ));
            }
        }
        let commit = message::query(&format!("COMMIT PREPARED {}", quote(&gid)));
        let done = join_all(parts.iter_mut().map(|p| run(&mut p.conn, commit.raw()))).await;
        let mut all = true;
        for (p, r) in parts.iter().zip(done) {
            if !matches!(r, Ok(a) if a.error.is_none()) {
                all = false;
                let why = format!("COMMIT PREPARED {gid} failed; the decision was commit, resolve it on that node");
                self.shared
                    .cluster
                    .detach(p.shard, p.node, DetachCause::CommitFailed, &why);
            }
        }
        if let (true, Some(log)) = (all, self.shared.decisions.get()) {
            let _ = log.record_done(&gid);
        }
        Ok(())
    }
}
