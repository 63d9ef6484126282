//! Reads that run on several shards and are merged into the answer one PostgreSQL would give
//! (the plan comes from `router::route::merge`): rows in ORDER BY order through a streaming
//! k-way merge (each shard sorts its own rows, pgproxy keeps one row per shard in hand), or
//! groups of partial aggregates combined (count and sum added, min and max compared, avg
//! computed from sum and count as PostgreSQL does), then OFFSET and LIMIT. Types pgproxy
//! cannot compare or add exactly are refused (0A000) before any row is sent.

use super::follower::Follower;
use super::relay::Session;
use super::replica::Plan;
use super::SessionError;
use crate::backend::BackendError;
use crate::pool::Pooled;
use crate::protocol::frame::Frame;
use crate::protocol::message::{self, be};
use crate::protocol::rows::{self, Field};
use crate::protocol::value::{self, oid};
use crate::router::route::merge::{Col, Count};
use crate::router::route::{Agg, MergeKind, MergeSpec, SortKey};
use bytes::BufMut;
use std::cmp::Ordering;
use std::collections::HashMap;

type Row = Vec<Option<Vec<u8>>>;

/// What is sent to every shard and what the client hears besides the rows.
pub(super) struct Request {
    /// The frames each shard gets (ending with Sync or being a Query).
    pub frames: Vec<u8>,
    /// The client's request had a Parse (it gets ParseComplete).
    pub parse: bool,
    /// The client's request had a Describe of the statement (ParameterDescription and the
    /// statement's RowDescription).
    pub describe_statement: bool,
    /// Extended protocol: the client gets BindComplete.
    pub bind: bool,
    /// The client asked for the RowDescription of the portal (a simple Query always gets it).
    pub describe: bool,
    /// OFFSET / LIMIT values from bind parameters (Some(None): NULL = none).
    pub offset: Option<Option<u64>>,
    /// See `offset`.
    pub limit: Option<Option<u64>>,
    /// A simple Query (else extended protocol).
    pub simple: bool,
    /// The result formats of the client's Bind (none: all text); the shards always answer in
    /// text, and columns the client wants in binary are encoded by pgproxy.
    pub formats: Vec<i16>,
    /// The client closed the unnamed portal after its Execute (sqlx does): it gets
    /// CloseComplete after the rows.
    pub close_portal: bool,
    /// The Execute's row limit (0: none). The request ends with Sync, outside a transaction:
    /// the portal goes away with it, so what is past the limit is never asked for; the client
    /// gets PortalSuspended when the limit is reached, as from PostgreSQL.
    pub max_rows: u64,
}

/// The visible columns of a merged row and, per column, the type to encode in binary.
type Out<'a> = (usize, &'a [Option<u32>]);

/// Where a part's connection came from, and where it goes back after the read.
pub(super) enum Slot {
    /// Checked out for the read: released (or closed) after it.
    Pool(Pooled),
    /// The session's own server connection, inside the client's transaction.
    Server(Pooled),
    /// A parked participant of the client's transaction (another shard's main), and its
    /// place among the followers when it was taken out.
    Parked(Box<Follower>, usize),
    /// Closed (or given back).
    Gone,
}

/// One shard's connection while it answers.
pub(super) struct Part {
    slot: Slot,
    /// The request was sent (a ReadyForQuery is owed).
    asked: bool,
    /// CommandComplete (or an error) was read: only ReadyForQuery remains.
    finished: bool,
    /// ParseComplete (1) and BindComplete (2) were read.
    progress: u8,
    /// The statement's ParameterDescription.
    param_desc: Option<Frame>,
}

/// Why a merge stops.
enum Stop {
    /// A shard's ErrorResponse, passed on.
    Error(Frame),
    /// pgproxy's own error: (SQLSTATE, message).
    Own(&'static str, String),
}

impl From<BackendError> for Stop {
    fn from(e: BackendError) -> Stop {
        Stop::Own(
            crate::protocol::sqlstate::CONNECTION_FAILURE,
            format!("a shard's connection failed during a read across shards: {e}"),
        )
    }
}

/// Group keys are compared as text: only types whose text form is canonical.
fn canonical(t: u32) -> bool {
    matches!(
        t,
        oid::INT2
            | oid::INT4
            | oid::INT8
            | oid::TEXT
            | oid::VARCHAR
            | oid::BPCHAR
            | oid::NAME
            | oid::BOOL
            | oid::DATE
            | oid::TIMESTAMP
            | oid::TIMESTAMPTZ
            | oid::UUID
            | oid::OID
    )
}

fn is_text(t: u32) -> bool {
    matches!(t, oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME)
}

impl Part {
    fn new(slot: Slot) -> Part {
        Part {
            slot,
            asked: false,
            finished: false,
            progress: 0,
            param_desc: None,
        }
    }

    fn conn(&mut self) -> &mut Pooled {
        self.conn_mut().expect("connection held while reading")
    }

    /// The connection, unless it was closed.
    pub(super) fn conn_mut(&mut self) -> Option<&mut Pooled> {
        match &mut self.slot {
            Slot::Pool(c) | Slot::Server(c) => Some(c),
            Slot::Parked(f, _) => Some(&mut f.conn),
            Slot::Gone => None,
        }
    }

    fn server_conn(&self) -> Option<&crate::backend::ServerConn> {
        match &self.slot {
            Slot::Pool(c) | Slot::Server(c) => Some(c),
            Slot::Parked(f, _) => Some(&f.conn),
            Slot::Gone => None,
        }
    }

    /// A connection of the client's transaction (given back, never closed or pooled).
    fn is_own(&self) -> bool {
        matches!(self.slot, Slot::Server(_) | Slot::Parked(..))
    }

    /// Closes a connection checked out for the read (the transaction's own are kept).
    pub(super) fn close(&mut self) {
        if matches!(self.slot, Slot::Pool(_)) {
            self.slot = Slot::Gone;
        }
    }

    /// The connection checked out for the read, if it is still open.
    pub(super) fn into_pooled(self) -> Option<Pooled> {
        match self.slot {
            Slot::Pool(c) => Some(c),
            _ => None,
        }
    }

    /// Reads to the ReadyForQuery owed; false if the connection failed.
    async fn drain(&mut self) -> bool {
        if !self.asked {
            return true;
        }
        let Some(conn) = self.conn_mut() else {
            return false;
        };
        loop {
            match conn.read_frame().await {
                Ok(f) if f.tag() == be::READY_FOR_QUERY => {
                    self.asked = false;
                    return true;
                }
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    }

    /// The next row, or None at the end of the result.
    async fn next_row(&mut self) -> Result<Option<Row>, Stop> {
        if self.finished {
            return Ok(None);
        }
        loop {
            let f = self.conn().read_frame().await?;
            match f.tag() {
                be::DATA_ROW => {
                    return rows::data_row_values(f.body()).map(Some).ok_or_else(|| {
                        Stop::Own(
                            crate::protocol::sqlstate::PROTOCOL_VIOLATION,
                            "a shard sent a malformed row".into(),
                        )
                    });
                }
                be::COMMAND_COMPLETE | be::EMPTY_QUERY => {
                    self.finished = true;
                    return Ok(None);
                }
                be::ERROR_RESPONSE => {
                    self.finished = true;
                    return Err(Stop::Error(f));
                }
                _ => {}
            }
        }
    }

    /// The RowDescription.
    async fn header(&mut self) -> Result<Vec<Field>, Stop> {
        loop {
            let f = self.conn().read_frame().await?;
            match f.tag() {
                be::PARSE_COMPLETE => self.progress = 1,
                be::BIND_COMPLETE => self.progress = 2,
                be::PARAMETER_DESCRIPTION => self.param_desc = Some(f),
                // The statement's description, before the Bind: the portal's comes next.
                be::ROW_DESCRIPTION if self.progress == 1 => {}
                be::ROW_DESCRIPTION => {
                    return rows::row_description_fields(f.body()).ok_or_else(|| {
                        Stop::Own(
                            crate::protocol::sqlstate::PROTOCOL_VIOLATION,
                            "a shard sent a malformed row description".into(),
                        )
                    })
                }
                be::ERROR_RESPONSE => {
                    self.finished = true;
                    return Err(Stop::Error(f));
                }
                be::COMMAND_COMPLETE | be::EMPTY_QUERY => {
                    self.finished = true;
                    return Err(Stop::Own(
                        crate::protocol::sqlstate::FEATURE_NOT_SUPPORTED,
                        "the statement returned no rows on a shard".into(),
                    ));
                }
                _ => {}
            }
        }
    }

    /// Reads to ReadyForQuery and gives a connection checked out for the read back to its
    /// pool (dropped if it broke).
    pub(super) async fn finish(mut self) {
        if matches!(self.slot, Slot::Pool(_)) && self.drain().await {
            if let Some(c) = self.into_pooled() {
                c.release();
            }
        }
    }
}

fn col(c: Col, visible: usize) -> usize {
    match c {
        Col::Pos(i) => i,
        Col::Hidden(j) => visible + j,
    }
}

fn compare_rows(a: &Row, b: &Row, order: &[(usize, u32, SortKey)]) -> Ordering {
    for (i, t, k) in order {
        let o = match (&a[*i], &b[*i]) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => {
                return if k.nulls_first {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            }
            (Some(_), None) => {
                return if k.nulls_first {
                    Ordering::Greater
                } else {
                    Ordering::Less
                }
            }
            (Some(x), Some(y)) => {
                let o = value::compare(*t, x, y).unwrap_or(Ordering::Equal);
                if k.desc {
                    o.reverse()
                } else {
                    o
                }
            }
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

impl Session {
    /// Runs a merged read on `shards` and answers the client (a simple Query, outside a
    /// transaction).
    pub(super) async fn scatter_read(
        &mut self,
        spec: &MergeSpec,
        shards: &[usize],
    ) -> Result<Plan, SessionError> {
        let request = Request {
            frames: message::query(&spec.sql).raw().to_vec(),
            parse: false,
            describe_statement: false,
            bind: false,
            describe: true,
            offset: None,
            limit: None,
            simple: true,
            formats: Vec::new(),
            close_portal: false,
            max_rows: 0,
        };
        self.scatter(spec, shards, request).await
    }

    /// Runs a merged read: `request` goes to every shard, its answers are merged.
    pub(super) async fn scatter(
        &mut self,
        spec: &MergeSpec,
        shards: &[usize],
        request: Request,
    ) -> Result<Plan, SessionError> {
        let own = self.tx_status == b'T';
        let mut parts = match self.scatter_connect(shards, own).await {
            Ok(p) => p,
            Err(e) => {
                self.note_refusal();
                self.report_error(&e, request.simple);
                if !request.simple {
                    self.skip_until_sync = false;
                    self.to_client
                        .put_slice(message::ready_for_query(self.tx_status_for_client()).raw());
                }
                return Ok(Plan::Done);
            }
        };
        // A CancelRequest reaches one shard (a connection of the read's own if there is one,
        // else the session's server, which is closed when the session gives it back): its
        // query fails with 57014, which ends the merged read with that error (the others are
        // read to their end and released).
        let target = parts
            .iter()
            .position(|p| !p.is_own())
            .or_else(|| parts.iter().position(|p| matches!(p.slot, Slot::Server(_))))
            .or((!parts.is_empty()).then_some(0));
        let target_is_server = target.is_some_and(|i| matches!(parts[i].slot, Slot::Server(_)));
        let first = target.and_then(|i| parts[i].server_conn());
        let before = self.cancel.swap(first.map(super::cancel::CancelTarget::of));
        let result = self.scatter_run(spec, &mut parts, &request).await;
        // The transaction's own connections: read to their end, then back in their places.
        self.give_back(&mut parts).await;
        // Inside a transaction the session keeps its server connection: a later cancel goes
        // there again.
        let attached = self.server.as_deref().map(super::cancel::CancelTarget::of);
        let cancelled = self.cancel.swap(attached);
        // A cancel that went to the session's own connection: closed when the session gives
        // it back (`CancelSlot::take_sent`).
        self.cancel
            .restore_sent(before || (cancelled && target_is_server));
        if cancelled {
            // A connection of the read's own got the cancel: closed, not pooled (a late
            // second signal must not hit another query; `CancelSlot::take_sent`).
            if let Some(i) = target {
                parts[i].close();
            }
        }
        if result.is_err() {
            // The answer is an error: the shards still running are cancelled, and their
            // connections closed rather than reused (a cancel that arrives late must not hit
            // another query).
            for p in parts.iter_mut().filter(|p| !p.finished) {
                if let Slot::Pool(c) = std::mem::replace(&mut p.slot, Slot::Gone) {
                    super::cancel::send_cancel(&super::cancel::CancelTarget::of(&c)).await;
                    drop(c);
                }
            }
        }
        // The shards' connections are read to their end (rows past a LIMIT, the rest of a
        // cancelled query) and released in the background: the client need not wait.
        let futures: Vec<_> = parts.into_iter().map(Part::finish).collect();
        tokio::spawn(futures_util::future::join_all(futures));
        let close_portal = request.close_portal;
        let failed = result.is_err();
        match result {
            Ok(n) if request.max_rows > 0 && n >= request.max_rows => {
                self.to_client.put_slice(message::portal_suspended().raw());
                if close_portal {
                    self.to_client.put_slice(message::close_complete().raw());
                }
            }
            Ok(n) => {
                self.to_client
                    .put_slice(message::command_complete(&format!("SELECT {n}")).raw());
                if close_portal {
                    self.to_client.put_slice(message::close_complete().raw());
                }
            }
            Err(Stop::Error(f)) => self.to_client.put_slice(f.raw()),
            Err(Stop::Own(code, msg)) => {
                let e = message::error_response(
                    message::Severity::Error,
                    code,
                    &msg,
                    Some("add the sharding key to the WHERE clause to run the query on one shard"),
                );
                self.to_client.put_slice(e.raw());
            }
        }
        if failed {
            // Like any error, it aborts the client's transaction.
            self.note_refusal();
        }
        self.to_client
            .put_slice(message::ready_for_query(self.tx_status_for_client()).raw());
        self.flush_client().await?;
        Ok(Plan::Done)
    }

    /// A connection to one node of each shard (by weight), with the session's settings;
    /// with `own`, the client's transaction's own connection for the shards it holds one on.
    pub(super) async fn scatter_connect(
        &mut self,
        shards: &[usize],
        own: bool,
    ) -> Result<Vec<Part>, crate::pool::PoolError> {
        let mut parts = Vec::new();
        match self.scatter_connect_into(shards, own, &mut parts).await {
            Ok(()) => Ok(parts),
            Err(e) => {
                self.give_back(&mut parts).await;
                for p in parts.into_iter().filter_map(Part::into_pooled) {
                    p.release();
                }
                Err(e)
            }
        }
    }

    async fn scatter_connect_into(
        &mut self,
        shards: &[usize],
        own: bool,
        parts: &mut Vec<Part>,
    ) -> Result<(), crate::pool::PoolError> {
        let cluster = self.shared.cluster.clone();
        let (user, db) = {
            let r = self.repl_mut();
            (r.user.clone(), r.db.clone())
        };
        for &s in shards {
            if own {
                if let Some(slot) = self.lend(s) {
                    parts.push(Part::new(slot));
                    continue;
                }
            }
            let node = cluster
                .pick_read_node(s, rand::random())
                .or_else(|| cluster.topology.main(s))
                .unwrap_or(0);
            let mut conn = cluster.pool(&user, &db, s, node).checkout().await?;
            if let Some(sql) = super::settings::replay_sql(&self.settings, &conn.settings) {
                conn.run_internal(&sql)
                    .await
                    .map_err(crate::pool::PoolError::Backend)?;
                conn.settings = self.settings.clone();
            }
            parts.push(Part::new(Slot::Pool(conn)));
        }
        Ok(())
    }

    /// The client's transaction's connection on shard `s`, taken out for a read.
    fn lend(&mut self, s: usize) -> Option<Slot> {
        if self.repl_mut().shard == s {
            return self.server.take().map(Slot::Server);
        }
        let repl = self.repl_mut();
        let i = repl
            .followers
            .iter()
            .position(|f| f.parked && f.was_main && f.shard == s)?;
        Some(Slot::Parked(Box::new(repl.followers.remove(i)), i))
    }

    /// Puts the transaction's own connections back where `lend` took them from, each read to
    /// the end of the read's answer first (never cancelled: the transaction goes on there).
    /// A connection that failed goes back too: its next use finds that out as usual.
    async fn give_back(&mut self, parts: &mut [Part]) {
        let mut parked = Vec::new();
        for p in parts.iter_mut().filter(|p| p.is_own()) {
            p.drain().await;
            match std::mem::replace(&mut p.slot, Slot::Gone) {
                Slot::Server(mut c) => {
                    // The read's statement replaced the unnamed one there.
                    c.unnamed = None;
                    self.server = Some(c);
                }
                Slot::Parked(mut f, i) => {
                    f.conn.unnamed = None;
                    parked.push((i, f));
                }
                _ => {}
            }
        }
        // Back in reverse order of taking, each at the place it was taken from.
        let repl = self.repl_mut();
        for (i, f) in parked.into_iter().rev() {
            let i = i.min(repl.followers.len());
            repl.followers.insert(i, *f);
        }
    }

    /// Sends the shard statement, checks the columns, merges; returns the row count.
    async fn scatter_run(
        &mut self,
        spec: &MergeSpec,
        parts: &mut [Part],
        request: &Request,
    ) -> Result<u64, Stop> {
        for p in parts.iter_mut() {
            p.asked = true;
            p.conn().write_all(&request.frames).await?;
        }
        // The first shard to describe its rows (or to fail) decides: the others' headers are
        // skipped by `next_row`, and a failure ends the wait instead of queueing behind a
        // slower shard.
        let mut fields = None;
        let mut first_err = None;
        {
            let futs = parts
                .iter_mut()
                .enumerate()
                .map(|(i, p)| Box::pin(async move { (i, p.header().await) }));
            let ((i, r), _, _rest) = futures_util::future::select_all(futs).await;
            match r {
                Ok(f) => fields = Some(f),
                Err(e) => first_err = Some((i, e)),
            }
        }
        let first_err = first_err.map(|(i, e)| (parts[i].progress, e));
        if let Some((progress, e)) = first_err {
            // What PostgreSQL answered before the error (ParseComplete, BindComplete).
            if request.parse && progress >= 1 {
                self.to_client
                    .put_slice(Frame::new(be::PARSE_COMPLETE, &[]).raw());
            }
            if request.bind && progress >= 2 {
                self.to_client
                    .put_slice(Frame::new(be::BIND_COMPLETE, &[]).raw());
            }
            return Err(e);
        }
        let fields = fields.unwrap_or_default();
        let visible = fields.len().checked_sub(spec.hidden).ok_or_else(|| {
            Stop::Own(
                crate::protocol::sqlstate::FEATURE_NOT_SUPPORTED,
                "unexpected columns from a shard".into(),
            )
        })?;
        let mut out_fields = self.check_merge(spec, &fields, visible).await?;
        // Columns the client wants in binary: their types (encoded from the merged text).
        // (Empty when every column is text: rows go out as the shards sent them.)
        let mut binary: Vec<Option<u32>> = Vec::new();
        for (i, f) in out_fields.iter_mut().enumerate() {
            if rows::column_format(&request.formats, i) == Some(1) {
                if !self.binary_from_text_exact(f.type_oid) {
                    return Err(Stop::Own(
                        crate::protocol::sqlstate::FEATURE_NOT_SUPPORTED,
                        format!(
                            "a read without a sharding key is merged across shards, but not with column \"{}\" (type oid {}) in binary format (pgproxy encodes the shards' text: it needs DateStyle ISO, extra_float_digits >= 1 and bytea_output hex for those types): ask for text results, or add the key",
                            f.name, f.type_oid
                        ),
                    ));
                }
                f.format = 1;
                binary.resize(visible, None);
                binary[i] = Some(f.type_oid);
            }
        }
        if request.parse {
            self.to_client
                .put_slice(Frame::new(be::PARSE_COMPLETE, &[]).raw());
        }
        if request.describe_statement {
            let pd = parts.iter().find_map(|p| p.param_desc.clone());
            let pd = pd.unwrap_or_else(|| Frame::new(be::PARAMETER_DESCRIPTION, &[0, 0]));
            self.to_client.put_slice(pd.raw());
            let mut stmt_fields = out_fields.clone();
            for f in &mut stmt_fields {
                f.format = 0;
            }
            self.to_client
                .put_slice(rows::row_description(&stmt_fields).raw());
        }
        if request.bind {
            self.to_client
                .put_slice(Frame::new(be::BIND_COMPLETE, &[]).raw());
        }
        if request.describe {
            self.to_client
                .put_slice(rows::row_description(&out_fields).raw());
        }
        // Sort by the types the client sees (an avg column is numeric after the merge).
        let order: Vec<(usize, u32, SortKey)> = spec
            .order
            .iter()
            .map(|k| {
                let i = col(k.col, visible);
                let t = out_fields.get(i).unwrap_or(&fields[i]).type_oid;
                (i, t, *k)
            })
            .collect();
        let count = |c: Option<Count>, given: Option<Option<u64>>| match (c, given) {
            (_, Some(v)) => Ok(v),
            (Some(Count::Lit(n)), None) => Ok(Some(n)),
            (None, None) => Ok(None),
            (Some(Count::Param(_)), None) => Err(Stop::Own(
                crate::protocol::sqlstate::FEATURE_NOT_SUPPORTED,
                "LIMIT / OFFSET parameter without a value".into(),
            )),
        };
        let offset = count(spec.offset, request.offset)?.unwrap_or(0);
        let limit = match (count(spec.limit, request.limit)?, request.max_rows) {
            (l, 0) => l,
            (l, m) => Some(l.map_or(m, |l| l.min(m))),
        };
        match &spec.kind {
            MergeKind::Rows => {
                self.merge_rows(parts, &order, (visible, &binary), offset, limit)
                    .await
            }
            MergeKind::Group { keys, aggs } => {
                let keys: Vec<usize> = match keys {
                    Some(k) => k.iter().map(|c| col(*c, visible)).collect(),
                    None => (0..visible).collect(),
                };
                let aggs: Vec<(usize, u32, Agg)> = aggs
                    .iter()
                    .map(|(c, a)| {
                        let i = col(*c, visible);
                        (i, fields[i].type_oid, *a)
                    })
                    .collect();
                let mut groups = self
                    .gather_groups(parts, &keys, &aggs, &fields, visible)
                    .await?;
                groups.sort_by(|a, b| compare_rows(a, b, &order));
                let mut n = 0;
                for row in groups.into_iter().skip(offset as usize) {
                    if limit.is_some_and(|l| n >= l) {
                        break;
                    }
                    self.emit(&row, (visible, &binary)).await?;
                    n += 1;
                }
                Ok(n)
            }
        }
    }

    /// Checks every merged column's type; returns the client's RowDescription.
    async fn check_merge(
        &mut self,
        spec: &MergeSpec,
        fields: &[Field],
        visible: usize,
    ) -> Result<Vec<Field>, Stop> {
        let refuse =
            |what: String| Stop::Own(crate::protocol::sqlstate::FEATURE_NOT_SUPPORTED, what);
        let mut out: Vec<Field> = fields[..visible].to_vec();
        let mut text_order = false;
        let mut text_group = false;
        for k in &spec.order {
            let f = &fields[col(k.col, visible)];
            if !value::is_orderable(f.type_oid) {
                return Err(refuse(format!(
                    "ORDER BY column \"{}\" (type oid {}) cannot be merged across shards",
                    f.name, f.type_oid
                )));
            }
            text_order |= is_text(f.type_oid);
        }
        if let MergeKind::Group { keys, aggs } = &spec.kind {
            let key_cols: Vec<usize> = match keys {
                Some(k) => k.iter().map(|c| col(*c, visible)).collect(),
                None => (0..visible).collect(),
            };
            for i in key_cols {
                text_group |= is_text(fields[i].type_oid);
                if !canonical(fields[i].type_oid) {
                    return Err(refuse(format!(
                        "grouping by column \"{}\" (type oid {}) across shards is not supported",
                        fields[i].name, fields[i].type_oid
                    )));
                }
            }
            for (c, a) in aggs {
                let i = col(*c, visible);
                let t = fields[i].type_oid;
                let ok = match a {
                    Agg::Count => t == oid::INT8,
                    Agg::Sum => matches!(t, oid::INT8 | oid::NUMERIC | oid::FLOAT4 | oid::FLOAT8),
                    Agg::Min | Agg::Max => {
                        text_order |= is_text(t);
                        value::is_orderable(t)
                    }
                    Agg::Avg { .. } => matches!(t, oid::INT8 | oid::NUMERIC | oid::FLOAT8),
                };
                if !ok {
                    return Err(refuse(format!(
                        "{a:?} of column \"{}\" (type oid {t}) cannot be merged across shards",
                        fields[i].name
                    )));
                }
                if let (Agg::Avg { .. }, Some(f)) = (a, out.get_mut(i)) {
                    let float = t == oid::FLOAT8;
                    f.type_oid = if float { oid::FLOAT8 } else { oid::NUMERIC };
                    f.type_len = if float { 8 } else { -1 };
                    f.type_mod = -1;
                }
            }
        }
        // The value comparisons read ISO dates and sum floats as PostgreSQL prints them with
        // extra_float_digits >= 1.
        let iso = self.datestyle_iso();
        let float_digits_ok = self.floats_exact();
        let compared: Vec<u32> = spec
            .order
            .iter()
            .map(|k| fields[col(k.col, visible)].type_oid)
            .chain(match &spec.kind {
                MergeKind::Group { aggs, .. } => aggs
                    .iter()
                    .filter(|(_, a)| matches!(a, Agg::Min | Agg::Max))
                    .map(|(c, _)| fields[col(*c, visible)].type_oid)
                    .collect(),
                MergeKind::Rows => Vec::new(),
            })
            .collect();
        if !iso
            && compared
                .iter()
                .any(|t| matches!(*t, oid::DATE | oid::TIMESTAMP | oid::TIMESTAMPTZ))
        {
            return Err(refuse(
                "ordering dates across shards needs DateStyle = ISO".into(),
            ));
        }
        // With fewer digits, distinct floats can print alike: their order (and which rows a
        // LIMIT keeps) would be decided by the next key instead.
        let float_order = spec.order.iter().any(|k| {
            matches!(
                fields[col(k.col, visible)].type_oid,
                oid::FLOAT4 | oid::FLOAT8
            )
        });
        if float_order && !float_digits_ok {
            return Err(refuse(
                "ordering floats across shards needs extra_float_digits >= 1 (the default: RESET extra_float_digits)"
                    .into(),
            ));
        }
        if let MergeKind::Group { aggs, .. } = &spec.kind {
            let float_sum = aggs.iter().any(|(c, a)| {
                matches!(a, Agg::Sum | Agg::Avg { .. })
                    && matches!(fields[col(*c, visible)].type_oid, oid::FLOAT4 | oid::FLOAT8)
            });
            if float_sum && !float_digits_ok {
                return Err(refuse(
                    "summing floats across shards needs extra_float_digits >= 1".into(),
                ));
            }
        }
        if text_order && !self.text_rules().await?.byte_order {
            return Err(refuse(
                "ordering text across shards needs the database's collation to be C (byte order) and no column or domain of another collation"
                    .into(),
            ));
        }
        if text_group && !self.text_rules().await?.byte_equality {
            return Err(refuse(
                "grouping text across shards needs every collation in the database to be deterministic (equal text is equal bytes)"
                    .into(),
            ));
        }
        Ok(out)
    }

    /// The session prints dates in ISO style (what pgproxy reads).
    fn datestyle_iso(&self) -> bool {
        self.settings
            .get("datestyle")
            .is_none_or(|v| v.trim_start().to_ascii_uppercase().starts_with("ISO"))
    }

    /// The session prints floats exactly (shortest round-trip: `extra_float_digits >= 1`).
    fn floats_exact(&self) -> bool {
        self.settings
            .get("extra_float_digits")
            .is_none_or(|v| v.trim().parse::<i32>().map_or(true, |d| d >= 1))
    }

    /// Whether `value::to_binary` encodes `type_oid` and reads the text the shards send for it
    /// exactly under the session's settings.
    fn binary_from_text_exact(&self, type_oid: u32) -> bool {
        match type_oid {
            oid::DATE | oid::TIMESTAMP | oid::TIMESTAMPTZ => self.datestyle_iso(),
            oid::FLOAT4 | oid::FLOAT8 => self.floats_exact(),
            oid::BYTEA => self
                .settings
                .get("bytea_output")
                .is_none_or(|v| v.trim().eq_ignore_ascii_case("hex")),
            t => value::binary_encodable(t),
        }
    }

    /// How the database compares text (see [`TextRules`]), asked once per session.
    async fn text_rules(&mut self) -> Result<TextRules, Stop> {
        if let Some(t) = self.repl_mut().sharding.as_ref().and_then(|s| s.text_rules) {
            return Ok(t);
        }
        // Asked on a connection of its own: the shards' connections are mid-result.
        let shard = self.repl_mut().shard;
        let cluster = self.shared.cluster.clone();
        let (user, db) = {
            let r = self.repl_mut();
            (r.user.clone(), r.db.clone())
        };
        let node = cluster.topology.main(shard).unwrap_or(0);
        let mut conn = cluster
            .pool(&user, &db, shard, node)
            .checkout()
            .await
            .map_err(|e| Stop::Own(crate::protocol::sqlstate::CONNECTION_FAILURE, e.to_string()))?;
        let r = conn.run_internal(TEXT_RULES_SQL).await?;
        conn.release();
        let field = |i: usize| r.rows.first().and_then(|row| row.get(i).cloned().flatten());
        let coll = field(0).unwrap_or_default();
        let provider = field(1);
        let rules = TextRules {
            byte_order: matches!(
                coll.as_str(),
                "C" | "POSIX" | "C.UTF-8" | "C.utf8" | "ucs_basic"
            ) && provider.as_deref().is_none_or(|p| p == "c")
                && field(2).as_deref() == Some("f"),
            byte_equality: field(3).as_deref() == Some("f"),
        };
        if let Some(s) = self.repl_mut().sharding.as_mut() {
            s.text_rules = Some(rules);
        }
        Ok(rules)
    }

    /// Sends one row (visible columns; those with a type in `binary` encoded so, `binary`
    /// empty when none is) to the client, flushing now and then.
    async fn emit(&mut self, row: &Row, (visible, binary): Out<'_>) -> Result<(), Stop> {
        if binary.is_empty() {
            self.to_client
                .put_slice(rows::data_row(&row[..visible]).raw());
        } else {
            let mut out = Vec::with_capacity(visible);
            for (v, t) in row[..visible].iter().zip(binary) {
                out.push(match (v, t) {
                    (Some(v), Some(t)) => Some(value::to_binary(*t, v).map_err(|e| {
                        Stop::Own(e.sqlstate(), format!("merging a read across shards: {e}"))
                    })?),
                    (v, _) => v.clone(),
                });
            }
            self.to_client.put_slice(rows::data_row(&out).raw());
        }
        if self.to_client.len() > 64 * 1024 {
            self.flush_client().await.map_err(|e| {
                Stop::Own(crate::protocol::sqlstate::CONNECTION_FAILURE, e.to_string())
            })?;
        }
        Ok(())
    }

    /// Plain rows: k-way merge by the ORDER BY (or one shard after the other without one).
    async fn merge_rows(
        &mut self,
        parts: &mut [Part],
        order: &[(usize, u32, SortKey)],
        visible: Out<'_>,
        offset: u64,
        limit: Option<u64>,
    ) -> Result<u64, Stop> {
        let (mut skipped, mut n) = (0u64, 0u64);
        if order.is_empty() {
            for p in parts.iter_mut() {
                while let Some(row) = p.next_row().await? {
                    if limit.is_some_and(|l| n >= l) {
                        return Ok(n);
                    }
                    if skipped < offset {
                        skipped += 1;
                        continue;
                    }
                    self.emit(&row, visible).await?;
                    n += 1;
                }
            }
            return Ok(n);
        }
        let mut heads: Vec<Option<Row>> =
            futures_util::future::try_join_all(parts.iter_mut().map(|p| p.next_row())).await?;
        loop {
            if limit.is_some_and(|l| n >= l) {
                return Ok(n);
            }
            let mut best: Option<usize> = None;
            for (i, h) in heads.iter().enumerate() {
                let Some(h) = h else { continue };
                best = match best {
                    Some(b)
                        if compare_rows(heads[b].as_ref().expect("head"), h, order)
                            != Ordering::Greater =>
                    {
                        Some(b)
                    }
                    _ => Some(i),
                };
            }
            let Some(b) = best else { return Ok(n) };
            let row = heads[b].take().expect("head");
            heads[b] = parts[b].next_row().await?;
            if skipped < offset {
                skipped += 1;
                continue;
            }
            self.emit(&row, visible).await?;
            n += 1;
        }
    }

    /// Groups: every shard's partial rows combined by key.
    async fn gather_groups(
        &mut self,
        parts: &mut [Part],
        keys: &[usize],
        aggs: &[(usize, u32, Agg)],
        fields: &[Field],
        visible: usize,
    ) -> Result<Vec<Row>, Stop> {
        let mut index: HashMap<Vec<Option<Vec<u8>>>, usize> = HashMap::new();
        let mut groups: Vec<Row> = Vec::new();
        let bad = |e: value::ValueError| Stop::Own(e.sqlstate(), e.to_string());
        for p in parts.iter_mut() {
            while let Some(row) = p.next_row().await? {
                let key: Vec<Option<Vec<u8>>> = keys.iter().map(|&i| row[i].clone()).collect();
                let Some(&g) = index.get(&key) else {
                    index.insert(key, groups.len());
                    groups.push(row);
                    continue;
                };
                let acc = &mut groups[g];
                for &(i, t, a) in aggs {
                    if let Agg::Avg { count } = a {
                        // The counts add up even where a shard's sum is NULL.
                        let c = col(count, visible);
                        acc[c] = match (acc[c].take(), row[c].clone()) {
                            (Some(p), Some(q)) => Some(value::add(oid::INT8, &p, &q).map_err(bad)?),
                            (p, q) => p.or(q),
                        };
                    }
                    let merged = match (a, acc[i].take(), row[i].clone()) {
                        (_, None, x) | (_, x, None) => x,
                        (Agg::Count | Agg::Sum, Some(x), Some(y)) => {
                            Some(value::add(t, &x, &y).map_err(bad)?)
                        }
                        (Agg::Avg { .. }, Some(x), Some(y)) => {
                            Some(value::add(t, &x, &y).map_err(bad)?)
                        }
                        (Agg::Min, Some(x), Some(y)) => {
                            Some(if value::compare(t, &y, &x) == Some(Ordering::Less) {
                                y
                            } else {
                                x
                            })
                        }
                        (Agg::Max, Some(x), Some(y)) => {
                            Some(if value::compare(t, &y, &x) == Some(Ordering::Greater) {
                                y
                            } else {
                                x
                            })
                        }
                    };
                    acc[i] = merged;
                }
            }
        }
        // A query with aggregates and no GROUP BY answers one row even over no rows: every
        // shard sent one, so there is one group.
        for row in &mut groups {
            for &(i, t, a) in aggs {
                if let Agg::Avg { count } = a {
                    let c = col(count, visible);
                    let n: i64 = row[c]
                        .as_deref()
                        .and_then(|b| std::str::from_utf8(b).ok())
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    row[i] = match row[i].take() {
                        Some(sum) if n > 0 => value::avg(t, &sum, n).map_err(bad)?,
                        _ => None,
                    };
                }
            }
        }
        let _ = fields;
        Ok(groups)
    }
}

/// How the database compares text, as far as merging across shards goes.
#[derive(Debug, Clone, Copy)]
pub struct TextRules {
    /// Text orders bytewise: the database's collation is C / POSIX (by the C library) and no
    /// column or domain of its own has a collation that orders otherwise. ORDER BY and
    /// min/max of text can merge.
    pub byte_order: bool,
    /// Equal text is equal bytes: no column or domain has a nondeterministic collation
    /// (PostgreSQL's default collations are deterministic). GROUP BY / DISTINCT of text can
    /// merge.
    pub byte_equality: bool,
}

/// The database's collation, its provider (PostgreSQL 15+: `c` libc, `i` ICU), whether any
/// user column or domain has a collation other than the default or byte order, and whether
/// any has a nondeterministic one.
const TEXT_RULES_SQL: &str = "WITH used AS ( \
       SELECT a.attcollation AS coll FROM pg_catalog.pg_attribute a \
       JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
       WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attcollation <> 0 \
         AND c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace) \
       UNION SELECT t.typcollation FROM pg_catalog.pg_type t \
       WHERE t.typcollation <> 0 \
         AND t.typnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)), \
     colls AS (SELECT co.* FROM used JOIN pg_catalog.pg_collation co ON co.oid = used.coll) \
     SELECT d.datcollate, pg_catalog.to_jsonb(d) ->> 'datlocprovider', \
       EXISTS (SELECT 1 FROM colls WHERE collprovider <> 'd' \
         AND NOT (collprovider = 'c' AND collcollate IN ('C', 'POSIX', 'C.UTF-8', 'C.utf8'))), \
       EXISTS (SELECT 1 FROM colls WHERE NOT collisdeterministic) \
     FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()";
