//! `COPY <sharded table> [(columns)] FROM STDIN` in the simple query protocol (psql's
//! `\copy`, a data load, most drivers' COPY APIs): every up node of every shard starts the
//! same COPY inside a transaction (`keyless_participants`), pgproxy cuts the client's data into
//! rows as it streams in (`RowCutter`), reads each row's key (`field_of`) and sends the row to
//! the nodes of the key's shard in batches. At the client's CopyDone every node ends its COPY;
//! the shards' row counts add up to the client's `COPY n`. Outside a transaction the shards
//! commit together (two-phase commit) or nothing is written; inside one they join it.
//!
//! A row whose key is NULL or does not parse, or that no shard holds, fails the whole COPY with
//! pgproxy's error (the nodes get CopyFail). A row with fewer fields than the key's position
//! goes to one shard, which reports it as PostgreSQL does. On replicated shards a column left
//! out of the list whose default every node would compute itself (serial, now(), …) is filled
//! in per shard (`shard_copy_fill`).

use super::cancel::CancelTarget;
use super::keyless::{add_tags, read_answer, Answer, Participant};
use super::keyless_request::{Request, Unfit};
use super::keyless_split::parameter_description;
use super::relay::Session;
use super::replica::{Plan, Step};
use super::shard_copy_fill::{Connect, ShardFill};
use super::shard_copy_rows::{own_error, Cutter, ShardCopy, MAX_ROW, SEND_BYTES};
use super::SessionError;
use crate::cluster::DetachCause;
use crate::protocol::frame::{self, Frame};
use crate::protocol::message::{self, be, fe};
use crate::protocol::sqlstate;
use crate::router::determinism::{plan_copy, BinaryCutter, CopyPlan, RowCutter};
use crate::router::route::{copy_into, CopyInto, Route};
use futures_util::future::join_all;
use std::collections::HashMap;
use tracing::warn;

/// How a node answered the COPY statement.
enum Started {
    /// CopyInResponse: it waits for data.
    Copying(Frame),
    /// It refused (the error and its ReadyForQuery were read).
    Refused(Answer),
}

async fn start(p: &mut Participant, sql: &[u8]) -> Result<Started, crate::backend::BackendError> {
    p.conn.write_all(sql).await?;
    let mut a = Answer::default();
    loop {
        let f = p.conn.read_frame().await?;
        match f.tag() {
            be::COPY_IN_RESPONSE => return Ok(Started::Copying(f)),
            be::ERROR_RESPONSE => {
                a.error.get_or_insert(f);
            }
            be::READY_FOR_QUERY => {
                a.status = f.body().first().copied().unwrap_or(b'I');
                return Ok(Started::Refused(a));
            }
            _ => {}
        }
    }
}
impl Session {
    /// Starts a COPY into a sharded table (see the module doc).
    pub(super) async fn start_shard_copy(
        &mut self,
        route: &Route,
        shards: &[usize],
        frames: &[u8],
        simple: bool,
    ) -> Result<Plan, SessionError> {
        let Some(CopyRequest { sql, prefix, .. }) =
            self.copy_request(route, shards, frames, simple, "into")?
        else {
            return Ok(Plan::Done);
        };
        let extended = prefix.is_some();
        let map = self.shared.cluster.shard_map();
        let copy = match copy_into(&sql, &map) {
            Some(Ok(c)) => c,
            Some(Err(why)) => return self.refuse_msg(simple, &why),
            None => return self.refuse_msg(simple, "pgproxy could not read this COPY into a sharded table (only COPY <table> [(columns)] FROM STDIN [WITH (…)] alone in its Query): send one COPY per shard with a /* pgproxy: shard=… */ hint"),
        };
        if let (false, Some(e)) = (copy.binary, self.copy_unsafe_encoding()) {
            return self.refuse_msg(simple, &format!("COPY into a sharded table in client_encoding {e}: pgproxy cannot cut its rows (a character's second byte can look like a delimiter or backslash); use UTF8, or the binary format"));
        }
        let cfg = self.shared.cluster.config();
        let in_txn = self.tx_status != b'I';
        if in_txn {
            if let Some(why) = self.cross_shard_obstacle(&cfg, false) {
                return self.refuse_msg(simple, &format!("this COPY writes on every shard, but the transaction cannot continue on other shards: {why}"));
            }
        }
        let mut parts = match self.keyless_participants(shards, in_txn).await {
            Ok(p) => p,
            Err(e) => {
                self.report_error(&e, simple);
                return Ok(Plan::Done);
            }
        };
        let prefix = prefix.unwrap_or_default();
        let headless = shards
            .iter()
            .any(|s| !parts.iter().any(|p| p.main && p.shard == *s));
        let prepared = if headless {
            Err(own_error(
                sqlstate::CONNECTION_FAILURE,
                "a shard this COPY needs has no node up; nothing was written",
                Some("retry when the shard is back"),
            ))
        } else {
            let replicated = shards
                .iter()
                .any(|&s| cfg.shards.get(s).is_some_and(|x| x.nodes.len() > 1));
            check_columns(&copy, &sql, replicated, &mut parts).await
        };
        let prepared = match prepared {
            Ok((key, Some(plan))) => self
                .shard_fill(plan, &mut parts)
                .await
                .map(|(sql, fill)| (key, sql, Some(fill))),
            Ok((key, None)) => Ok((key, sql.clone(), None)),
            Err(e) => Err(e),
        };
        let (key, sql, fill) = match prepared {
            Ok(k) => k,
            Err(e) => {
                self.to_client.extend_from_slice(&prefix);
                self.end_shard_copy_early(parts, in_txn, e, true, extended)
                    .await;
                return Ok(Plan::Done);
            }
        };
        // Every node starts the COPY; one that refuses (PostgreSQL's error) ends it everywhere.
        let q = message::query(&sql);
        let started = join_all(parts.iter_mut().map(|p| start(p, q.raw()))).await;
        let mut response = None;
        let mut refusal: Option<Frame> = None;
        for (p, s) in parts.iter().zip(&started) {
            match s {
                Ok(Started::Copying(f)) => {
                    response.get_or_insert_with(|| f.clone());
                }
                Ok(Started::Refused(a)) if p.main => {
                    if let Some(e) = &a.error {
                        refusal.get_or_insert_with(|| e.clone());
                    }
                }
                _ => {
                    refusal.get_or_insert_with(|| {
                        own_error(
                            sqlstate::CONNECTION_FAILURE,
                            "a node could not start this COPY; nothing was written",
                            Some("retry the COPY"),
                        )
                    });
                }
            }
        }
        if let (None, Some(response)) = (refusal.clone(), response) {
            self.to_client.extend_from_slice(&prefix);
            self.to_client.extend_from_slice(response.raw());
            // A CancelRequest reaches the first node: its COPY fails with 57014 at its next
            // row, which fails the whole COPY (nothing written anywhere), as PostgreSQL
            // cancels a COPY.
            let cancel_before = self
                .cancel
                .swap(parts.first().map(|p| CancelTarget::of(&p.conn)));
            self.shard_copy = Some(Box::new(ShardCopy {
                cancel_before,
                parts,
                cutter: if copy.binary {
                    Cutter::Binary(BinaryCutter::default())
                } else {
                    Cutter::Text(RowCutter::new(copy.format.clone(), key + 1))
                },
                format: copy.format,
                map: map.clone(),
                key,
                key_column: copy.key_column,
                pending: vec![Vec::new(); map.shard_count()],
                first: shards[0],
                line: 0,
                in_txn,
                extended,
                own: None,
                fill,
            }));
            return Ok(Plan::Done);
        }
        // Nodes still in COPY mode are ended; then the error is reported.
        let fail = message::copy_fail("pgproxy ended the COPY: another node refused it");
        for (p, s) in parts.iter_mut().zip(&started) {
            if matches!(s, Ok(Started::Copying(_))) && p.conn.write_all(fail.raw()).await.is_ok() {
                let _ = read_answer(&mut p.conn).await;
            }
        }
        let e = refusal.unwrap_or_else(|| {
            own_error(
                sqlstate::CONNECTION_FAILURE,
                "no node started this COPY",
                None,
            )
        });
        self.to_client.extend_from_slice(&prefix);
        self.end_shard_copy_early(parts, in_txn, e, false, extended)
            .await;
        Ok(Plan::Done)
    }

    /// The COPY the nodes run (the left-out columns listed) and its fill; the values evaluated
    /// once per COPY are read on the first shard's main, inside the transaction.
    async fn shard_fill(
        &mut self,
        plan: CopyPlan,
        parts: &mut [Participant],
    ) -> Result<(String, ShardFill), Frame> {
        if let Some(e) = self.copy_unsafe_encoding() {
            return Err(own_error(
                sqlstate::FEATURE_NOT_SUPPORTED,
                &format!("COPY leaving out column {}, whose default every node would evaluate itself: pgproxy cannot add values to data in client_encoding {e}; list the column and send its values", plan.added[0].name),
                None,
            ));
        }
        let once_cols = ShardFill::once_exprs(&plan);
        let mut once = vec![None; plan.added.len()];
        if !once_cols.is_empty() {
            let exprs: Vec<String> = once_cols.iter().map(|(_, e)| e.clone()).collect();
            let main = parts
                .iter_mut()
                .find(|p| p.main)
                .expect("check_columns found a main");
            match super::catalog::values_on(&mut main.conn, &exprs).await {
                Ok(Ok(row)) => {
                    for ((i, _), v) in once_cols.iter().zip(row) {
                        once[*i] = v;
                    }
                }
                Ok(Err(e)) => return Err(e),
                Err(e) => {
                    return Err(own_error(
                        sqlstate::SERIALIZATION_FAILURE,
                        &format!(
                            "a shard's main node failed before the COPY: {e}; nothing was written"
                        ),
                        Some("retry the COPY"),
                    ))
                }
            }
        }
        let cluster = self.shared.cluster.clone();
        let settings = self.settings.clone();
        let r = self.repl_mut();
        let connect = Connect {
            cluster,
            user: r.user.clone(),
            db: r.db.clone(),
            settings,
        };
        Ok((plan.sql.clone(), ShardFill::new(plan, once, connect)))
    }

    /// The COPY ends before its data: rolled back (outside a transaction), or the nodes stay
    /// in the client's transaction, which the error aborts; `mains`: the mains' answers
    /// (`own`: pgproxy's error, the nodes ran nothing wrong).
    async fn end_shard_copy_early(
        &mut self,
        mut parts: Vec<Participant>,
        in_txn: bool,
        error: Frame,
        own: bool,
        extended: bool,
    ) {
        if in_txn {
            let mains: Vec<(usize, Answer)> = parts
                .iter()
                .filter(|p| p.main)
                .map(|p| {
                    let a = Answer {
                        error: (!own).then(|| error.clone()),
                        status: if own { b'T' } else { b'E' },
                        ..Answer::default()
                    };
                    (p.shard, a)
                })
                .collect();
            self.keyless_keep(parts, !own, &mains);
            self.to_client.extend_from_slice(error.raw());
            if own {
                self.note_refusal();
            }
            self.copy_answer_end(extended);
            return;
        }
        let rollback = message::query("ROLLBACK");
        let _ = join_all(
            parts
                .iter_mut()
                .map(|p| super::keyless::run(&mut p.conn, rollback.raw())),
        )
        .await;
        for p in parts {
            p.conn.release();
        }
        self.to_client.extend_from_slice(error.raw());
        self.copy_answer_end(extended);
    }

    /// The end of the COPY's answer: ReadyForQuery now (simple protocol), or at the client's
    /// next Sync (extended: the Sync after its CopyDone; the one after its Execute came
    /// during the COPY and, as PostgreSQL does, got no answer).
    fn copy_answer_end(&mut self, extended: bool) {
        if extended {
            self.skip_until_sync = true;
        } else {
            self.to_client
                .extend_from_slice(message::ready_for_query(self.tx_status_for_client()).raw());
        }
    }

    /// The next client message while a COPY into a sharded table runs.
    pub(super) async fn shard_copy_step(
        &mut self,
        rest: &[u8],
        pos: &mut usize,
    ) -> Result<Step, SessionError> {
        let n = match frame::peek_frame_len(rest, self.client.max_message) {
            Ok(Some(n)) => n,
            Ok(None) => return Ok(Step::Wait),
            Err(e) => return Err(super::client::frame_error(e)),
        };
        *pos += n;
        let (tag, body) = (rest[0], &rest[5..n]);
        let Some(mut sc) = self.shard_copy.take() else {
            return Ok(Step::Continue);
        };
        let end = match tag {
            fe::COPY_DATA if sc.own.is_none() => {
                sc.cutter.push(body);
                if sc.cutter.partial_bytes() > MAX_ROW {
                    sc.own = Some(own_error(
                        sqlstate::PROGRAM_LIMIT_EXCEEDED,
                        &format!("a COPY row longer than {MAX_ROW} bytes; nothing was written"),
                        None,
                    ));
                } else if let Err(e) = sc.route_rows() {
                    sc.own = Some(e);
                }
                let failed = sc.send(SEND_BYTES).await;
                self.shard_copy_lost(&mut sc, failed);
                None
            }
            fe::COPY_DONE => {
                if sc.own.is_none() {
                    if let Cutter::Text(c) = &mut sc.cutter {
                        c.finish();
                    }
                    if let Err(e) = sc.route_rows() {
                        sc.own = Some(e);
                    }
                    sc.end_binary();
                    let failed = sc.send(0).await;
                    self.shard_copy_lost(&mut sc, failed);
                }
                Some(match sc.own {
                    None => Frame::new(fe::COPY_DONE, &[]),
                    Some(_) => message::copy_fail("pgproxy ended the COPY"),
                })
            }
            // The client's own CopyFail: the nodes answer it as PostgreSQL does.
            fe::COPY_FAIL => Some(Frame::new(fe::COPY_FAIL, body)),
            // PostgreSQL ignores these during a COPY from a simple Query.
            fe::COPY_DATA | fe::FLUSH | fe::SYNC => None,
            fe::TERMINATE => {
                // The nodes' connections close with `sc`: their transactions roll back.
                return Ok(Step::Terminate);
            }
            other => {
                sc.own.get_or_insert_with(|| {
                    own_error(
                        sqlstate::PROTOCOL_VIOLATION,
                        &format!("unexpected message type 0x{other:02X} during COPY from stdin"),
                        None,
                    )
                });
                Some(message::copy_fail("pgproxy ended the COPY"))
            }
        };
        match end {
            None => self.shard_copy = Some(sc),
            Some(end) => self.finish_shard_copy(*sc, end).await,
        }
        Ok(Step::Continue)
    }

    /// Nodes whose connection failed mid-COPY: a follower is detached and the COPY goes on
    /// without it; a main fails the COPY.
    fn shard_copy_lost(&mut self, sc: &mut ShardCopy, failed: Vec<(usize, String)>) {
        for (i, why) in failed.into_iter().rev() {
            let p = sc.parts.remove(i);
            if p.main {
                sc.own.get_or_insert_with(|| {
                    own_error(
                        sqlstate::SERIALIZATION_FAILURE,
                        "a shard's main node failed during the COPY; nothing was written",
                        Some("retry the COPY"),
                    )
                });
            } else {
                let why = format!("COPY into a sharded table: {why}");
                warn!(shard = p.shard, node = p.node, detail = %why, "node detached");
                self.shared
                    .cluster
                    .detach(p.shard, p.node, DetachCause::ConnectionFailed, &why);
            }
        }
    }

    /// Ends the COPY on every node (`end`: CopyDone or CopyFail), then commits, rolls back or
    /// keeps the nodes in the client's transaction, and answers the client.
    async fn finish_shard_copy(&mut self, sc: ShardCopy, end: Frame) {
        let ShardCopy {
            mut parts,
            own,
            in_txn,
            extended,
            fill,
            cancel_before,
            ..
        } = sc;
        let attached = self.server.as_deref().map(CancelTarget::of);
        // A connection a cancel went to is closed, not pooled (`CancelSlot::take_sent`).
        let cancelled = self.cancel.swap(attached);
        self.cancel.restore_sent(cancel_before);
        let answers = join_all(parts.iter_mut().map(|p| {
            let end = end.clone();
            async move {
                p.conn.write_all(end.raw()).await?;
                read_answer(&mut p.conn).await
            }
        }))
        .await;
        let mut error = own.clone();
        let mut mains: Vec<(usize, Answer)> = Vec::new();
        for (p, a) in parts.iter().zip(&answers) {
            if !p.main {
                continue;
            }
            match a {
                Ok(a) => {
                    if let Some(e) = &a.error {
                        error.get_or_insert_with(|| e.clone());
                    }
                    mains.push((p.shard, a.clone()));
                }
                Err(_) => {
                    error.get_or_insert_with(|| {
                        own_error(
                            sqlstate::SERIALIZATION_FAILURE,
                            "a shard's main node failed during the COPY; nothing was written",
                            Some("retry the COPY"),
                        )
                    });
                }
            }
        }
        // The followers' sequences move past the values handed out on their shard.
        let mut unsettled = Vec::new();
        if let Some(fill) = fill {
            if error.is_none() {
                unsettled = fill.settle_followers(&mut parts).await;
            }
            fill.release();
        }
        // A follower that answered otherwise than its main is detached.
        let mut kept = Vec::new();
        for (i, (p, a)) in parts.into_iter().zip(answers).enumerate() {
            if let Some((_, why)) = unsettled.iter().find(|(j, _)| *j == i) {
                warn!(shard = p.shard, node = p.node, detail = %why, "node detached");
                self.shared
                    .cluster
                    .detach(p.shard, p.node, DetachCause::Divergence, why);
                continue;
            }
            let main = mains.iter().find(|(s, _)| *s == p.shard).map(|(_, a)| a);
            let agrees = match (&a, main) {
                _ if p.main => a.is_ok(),
                (Ok(a), Some(m)) => a.error.is_none() == m.error.is_none() && a.tag == m.tag,
                (_, None) => true,
                (Err(_), Some(_)) => false,
            };
            if agrees {
                kept.push(p);
            } else {
                let why = format!(
                    "COPY into a sharded table: main {:?}, node {:?}",
                    main.and_then(|m| m.tag.clone()),
                    a.ok().and_then(|a| a.tag)
                );
                warn!(shard = p.shard, node = p.node, detail = %why, "node detached");
                self.shared
                    .cluster
                    .detach(p.shard, p.node, DetachCause::Divergence, &why);
            }
        }
        let mut tag: Option<String> = None;
        for (_, a) in &mains {
            if let Some(t) = &a.tag {
                tag = Some(match tag {
                    None => t.clone(),
                    Some(prev) => add_tags(&prev, t),
                });
            }
        }
        let done = message::command_complete(tag.as_deref().unwrap_or("COPY 0"));
        if in_txn {
            self.keyless_keep(kept, error.is_some(), &mains);
            match error {
                Some(e) => {
                    self.to_client.extend_from_slice(e.raw());
                    if own.is_some() {
                        self.note_refusal();
                    }
                }
                None => self.to_client.extend_from_slice(done.raw()),
            }
            self.copy_answer_end(extended);
            return;
        }
        let result = match error {
            Some(e) => {
                let rollback = message::query("ROLLBACK");
                let _ = join_all(
                    kept.iter_mut()
                        .map(|p| super::keyless::run(&mut p.conn, rollback.raw())),
                )
                .await;
                Err(e)
            }
            None => self.keyless_commit(&mut kept).await,
        };
        for p in kept {
            if cancelled {
                drop(p.conn);
            } else {
                p.conn.release();
            }
        }
        match result {
            Ok(()) => self.to_client.extend_from_slice(done.raw()),
            Err(e) => self.to_client.extend_from_slice(e.raw()),
        }
        self.copy_answer_end(extended);
    }
}

/// The field of the key, and on replicated shards the plan that fills in the columns left out
/// whose default each node would compute itself (`shard_copy_fill`). Reads the table's columns on the first shard's main (inside the
/// transaction just begun).
async fn check_columns(
    copy: &CopyInto,
    sql: &str,
    replicated: bool,
    parts: &mut [Participant],
) -> Result<(usize, Option<CopyPlan>), Frame> {
    let Some(main) = parts.iter_mut().find(|p| p.main) else {
        return Err(own_error(
            sqlstate::CONNECTION_FAILURE,
            "a shard this COPY needs has no node up; nothing was written",
            Some("retry when the shard is back"),
        ));
    };
    let defaults = match super::catalog::table_defaults(&mut main.conn, &copy.table).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return Err(own_error(
                sqlstate::SERIALIZATION_FAILURE,
                "a shard's main node failed before the COPY; nothing was written",
                Some("retry the COPY"),
            ))
        }
    };
    if defaults.all_columns.is_empty() {
        // No such table: the nodes report it when the COPY starts.
        return Ok((0, None));
    }
    let mut fill = None;
    if replicated {
        let schema: HashMap<String, _> = [(copy.table_key.clone(), defaults.clone())]
            .into_iter()
            .collect();
        match plan_copy(sql, &schema) {
            None => {}
            Some(Ok(plan)) => fill = Some(plan),
            Some(Err(why)) => {
                return Err(own_error(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    &format!("COPY into a sharded table on replicated shards leaves out a column whose default every node would compute itself, and pgproxy cannot fill it in: {why}"),
                    None,
                ));
            }
        }
    }
    match copy.key_field(&defaults.all_columns) {
        Some(k) => Ok((k, fill)),
        None => Err(own_error(
            sqlstate::UNDEFINED_COLUMN,
            &format!(
                "table {} has no sharding key column {}",
                copy.table, copy.key_column
            ),
            None,
        )),
    }
}

/// A COPY's text and, in the extended protocol, what the client hears before its
/// CopyIn/CopyOutResponse.
pub(super) struct CopyRequest {
    pub(super) sql: String,
    /// PostgreSQL's answers to the client's Parse / Bind / Describe (extended protocol only).
    pub(super) prefix: Option<Vec<u8>>,
    /// The client closed the unnamed portal after its Execute.
    pub(super) close_portal: bool,
}

impl Session {
    /// Reads a COPY of a sharded table (`direction`: "into" or "out of") from the client's
    /// unit: in the extended protocol the nodes run it as a simple Query, and pgproxy answers
    /// the client's Parse / Bind / Describe itself, as PostgreSQL answers them for a COPY.
    /// `None`: the unit was refused, the client answered.
    pub(super) fn copy_request(
        &mut self,
        route: &Route,
        shards: &[usize],
        frames: &[u8],
        simple: bool,
        direction: &str,
    ) -> Result<Option<CopyRequest>, SessionError> {
        if simple {
            return Ok(Some(CopyRequest {
                sql: super::shard::first_query_text(frames).unwrap_or_default(),
                prefix: None,
                close_portal: false,
            }));
        }
        match self.keyless_request(route, frames, false, shards) {
            Ok(req) => Ok(Some(CopyRequest {
                prefix: Some(extended_prefix(&req)),
                close_portal: req.close_portal,
                sql: req.sql,
            })),
            Err(Unfit::Unsupported(what)) => {
                self.refuse_msg(false, &format!("a COPY {direction} a sharded table is not supported with {what}: send Parse/Bind/Execute/Sync, or the COPY as a simple Query"))?;
                Ok(None)
            }
            Err(Unfit::Error(code, msg)) => {
                let e = message::error_response(message::Severity::Error, code, &msg, None);
                self.to_client.extend_from_slice(e.raw());
                self.end_refused(false);
                Ok(None)
            }
        }
    }
}

/// PostgreSQL's answers to the client's Parse / Bind / Describe of a COPY, up to its Execute.
fn extended_prefix(req: &Request) -> Vec<u8> {
    let mut out = Vec::new();
    let no_data = Frame::new(be::NO_DATA, &[]);
    let statement = || {
        let mut d = parameter_description(&[]).raw().to_vec();
        d.extend_from_slice(no_data.raw());
        d
    };
    if req.parse {
        out.extend_from_slice(Frame::new(be::PARSE_COMPLETE, &[]).raw());
    }
    if req.describe == Some(b'S') && req.describe_first {
        out.extend(statement());
    }
    out.extend_from_slice(Frame::new(be::BIND_COMPLETE, &[]).raw());
    match req.describe {
        Some(b'S') if !req.describe_first => out.extend(statement()),
        Some(b'P') => out.extend_from_slice(no_data.raw()),
        _ => {}
    }
    out
}
