//! Making a write unit deterministic before it runs anywhere: clock functions, random(),
//! gen_random_uuid() and nextval() (also those hidden in column defaults) are evaluated once
//! on the main node and every node receives the same literals (`router::determinism` plans
//! the rewrite). Sequences on the followers are moved to the value the main handed out, so
//! after a failover the next value is still unique.
//!
//! Extended protocol: a Bind of a statement that needs values is sent as a Parse of the
//! rewritten text into the unnamed statement plus a Bind of it, per execution.

use super::relay::Session;
use super::SessionError;
use crate::config::NondeterministicPolicy;
use crate::protocol::frame::{self, Frame, FrameRef};
use crate::protocol::message::{self, fe, Bind, Parse};
use crate::router::determinism::{self as det, Need, Planned, TableDefaults};
use crate::router::keywords::{is_copy_from_stdin, is_ddl};
use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tracing::warn;

pub(super) use super::catalog::{rows, table_defaults, values_on};

/// Column defaults per (database and search_path, table as written), loaded from main nodes on
/// first use and dropped whenever a unit that may change a schema runs.
#[derive(Default)]
pub struct SchemaCache {
    tables: Mutex<HashMap<(String, String), Arc<TableDefaults>>>,
    /// Plans per database and search_path: of unnamed statements' texts and of simple
    /// queries' templates (`det::template`), so a write is not parsed on every execution.
    plans: Mutex<HashMap<String, DbPlans>>,
    /// Bumped on every invalidation: plans cached on statements carry the epoch they saw.
    epoch: AtomicU64,
    /// Writes run on every node although pgproxy could not make them deterministic.
    pub nondeterministic_total: AtomicU64,
}

/// The plans of one database: of texts as they are, and of templates (whose plans render
/// with the statement's numbers: a template's text may equal a text with real parameters).
#[derive(Default)]
struct DbPlans {
    texts: HashMap<String, Arc<Planned>>,
    templates: HashMap<String, Arc<Planned>>,
}

impl DbPlans {
    fn map(&mut self, template: bool) -> &mut HashMap<String, Arc<Planned>> {
        if template {
            &mut self.templates
        } else {
            &mut self.texts
        }
    }
}

/// Texts longer than this are planned every time rather than kept.
const MAX_CACHED_TEXT: usize = 8192;
/// Plans kept at most (the cache starts over when full).
const MAX_CACHED_PLANS: usize = 4096;

impl SchemaCache {
    /// The plan kept for `text` (a template's text if `template`).
    fn cached_plan(&self, db: &str, text: &str, template: bool) -> Option<Arc<Planned>> {
        self.plans
            .lock()
            .get_mut(db)?
            .map(template)
            .get(text)
            .cloned()
    }

    /// Keeps a plan made with the schema of `epoch` (not if DDL ran since).
    fn keep_plan(&self, db: &str, text: &str, template: bool, plan: Arc<Planned>, epoch: u64) {
        if text.len() > MAX_CACHED_TEXT {
            return;
        }
        let mut plans = self.plans.lock();
        if self.epoch.load(Ordering::Acquire) != epoch {
            return;
        }
        let db_plans = plans.entry(db.to_string()).or_default().map(template);
        if db_plans.len() >= MAX_CACHED_PLANS {
            db_plans.clear();
        }
        db_plans.insert(text.to_string(), plan);
    }

    /// The defaults of `table` kept for cache scope `db` (see `Session::cache_scope`).
    pub(super) fn table(&self, db: &str, table: &str) -> Option<Arc<TableDefaults>> {
        self.tables
            .lock()
            .get(&(db.to_string(), table.to_string()))
            .cloned()
    }

    /// Keeps the defaults of `table` for cache scope `db`.
    pub(super) fn keep_table(&self, db: &str, table: &str, t: Arc<TableDefaults>) {
        self.tables
            .lock()
            .insert((db.to_string(), table.to_string()), t);
    }

    /// `nondeterministic = "warn"`: a write pgproxy cannot make deterministic runs anyway,
    /// logged and counted.
    pub(super) fn run_anyway(&self, reason: &str) {
        warn!(reason, "running a write pgproxy cannot make deterministic");
        self.nondeterministic_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Forgets everything (after DDL).
    pub fn invalidate(&self) {
        self.tables.lock().clear();
        // Under the plans' lock: a plan made before is either cleared or refused by epoch.
        let mut plans = self.plans.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        plans.clear();
    }
}

pub(super) struct Loaded(pub(super) HashMap<String, Arc<TableDefaults>>);

impl det::Schema for Loaded {
    fn defaults(&self, table: &str) -> Option<&TableDefaults> {
        self.0.get(table).map(|t| t.as_ref())
    }
}

/// The result of making a unit deterministic.
pub(super) enum Made {
    /// Send these frames (maybe rewritten); run these statements on every follower first; the
    /// frames starting at these offsets are pgproxy's own (a Parse of the rewritten text into
    /// the unnamed statement and the Bind of it), sent to the main as they are.
    Frames(Bytes, Vec<String>, Vec<usize>),
    /// Refused: the reason.
    Refused(String),
    /// The main node failed a query pgproxy ran for the unit, inside the client's transaction
    /// if one is open (which is now aborted there): its error, for the client as it is (the
    /// error the statement itself would have met, e.g. nextval() in a read-only transaction).
    Failed(Frame),
    /// The main's connection failed while values were read (the client was told).
    Lost,
    /// A COPY pgproxy completes (`copy_fill`): the frames to send (own frames at these
    /// offsets, as for `Frames`), and the copy's state.
    Copy(Bytes, Vec<usize>, Box<super::copy_fill::CopyFill>),
}

/// The parameter types of the last Parse of statement `name` among `frames`, if any.
fn parse_in_unit(frames: &[u8], name: &str) -> Option<Bytes> {
    let mut found = None;
    let mut pos = 0;
    while let Ok(Some(n)) = frame::peek_frame_len(&frames[pos..], usize::MAX) {
        let f = FrameRef::new(&frames[pos..pos + n]);
        if f.tag() == fe::PARSE {
            if let Some(p) = Parse::parse(f.body()).filter(|p| p.name == name) {
                found = Some(Bytes::copy_from_slice(p.param_types));
            }
        }
        pos += n;
    }
    found
}

/// How reading something from the main went.
enum Got<T> {
    Value(T),
    /// The main failed the query, in the client's transaction: its error.
    Failed(Frame),
    /// The connection failed (the client was told, as for any lost server).
    Lost,
}

/// One Query or Bind of a write unit and its plan.
struct Work {
    /// Where its frame is in the unit, and its length.
    at: usize,
    len: usize,
    /// The SQL it runs.
    sql: String,
    /// The client's named statement it executes (its plan is kept on it).
    stmt: Option<Arc<super::statements::Statement>>,
    /// A simple query's template, while its plan is (or will be) the template's: the plan
    /// renders with the query's own numbers.
    template: Option<det::Template>,
    /// The plan, once known.
    planned: Option<Arc<Planned>>,
}

impl Work {
    fn new(
        at: usize,
        len: usize,
        sql: String,
        stmt: Option<Arc<super::statements::Statement>>,
    ) -> Work {
        Work {
            at,
            len,
            sql,
            stmt,
            template: None,
            planned: None,
        }
    }
}

impl Session {
    /// Makes a write unit deterministic (see the module doc). The main is attached.
    pub(super) async fn make_deterministic(&mut self, frames: &[u8]) -> Result<Made, SessionError> {
        // First pass: the SQL each Query / Bind runs, and whether anything needs the schema.
        let mut pos = 0;
        let mut work: Vec<Work> = Vec::new();
        let mut unnamed_in_unit: Option<String> = None;
        while pos < frames.len() {
            let Ok(Some(n)) = frame::peek_frame_len(&frames[pos..], usize::MAX) else {
                break;
            };
            let f = FrameRef::new(&frames[pos..pos + n]);
            match f.tag() {
                fe::QUERY => {
                    if let Some(q) = message::query_text(f.body()) {
                        work.push(Work::new(pos, n, q.to_string(), None));
                    }
                }
                fe::PARSE => {
                    if let Some(p) = Parse::parse(f.body()) {
                        if p.name.is_empty() {
                            unnamed_in_unit = Some(p.query.to_string());
                        }
                    }
                }
                fe::BIND => {
                    if let Some(b) = Bind::parse(f.body()) {
                        if b.statement.is_empty() && unnamed_in_unit.is_some() {
                            let sql = unnamed_in_unit.clone().unwrap_or_default();
                            work.push(Work::new(pos, n, sql, None));
                        } else if let Some(st) = self.statements.get(b.statement) {
                            let cache = (!b.statement.is_empty()).then(|| st.clone());
                            work.push(Work::new(pos, n, st.query().to_string(), cache));
                        }
                    }
                }
                _ => {}
            }
            pos += n;
        }
        if work.is_empty() || !work.iter().any(|w| may_need(&w.sql)) {
            if work.iter().any(|w| is_ddl(&w.sql)) {
                self.shared.schema.invalidate();
            }
            return Ok(Made::Frames(
                Bytes::copy_from_slice(frames),
                Vec::new(),
                Vec::new(),
            ));
        }
        if let [w] = &work[..] {
            if is_copy_from_stdin(&w.sql) {
                return self.copy_unit(frames, &work).await;
            }
        }
        let db = self.cache_scope();
        let epoch = self.shared.schema.epoch.load(Ordering::Acquire);
        for w in &mut work {
            if let Some(st) = &w.stmt {
                w.planned = st
                    .det_plan
                    .lock()
                    .as_ref()
                    .filter(|(e, _)| *e == epoch)
                    .map(|(_, p)| p.clone());
            } else {
                w.template = det::template(&w.sql);
                let key = w
                    .template
                    .as_ref()
                    .map_or(w.sql.as_str(), |t| t.text.as_str());
                w.planned = db.as_ref().and_then(|db| {
                    self.shared
                        .schema
                        .cached_plan(db, key, w.template.is_some())
                });
            }
        }
        let schema = match self.load_schema(&work).await? {
            Got::Value(s) => s,
            Got::Failed(e) => return Ok(Made::Failed(e)),
            Got::Lost => return Ok(Made::Lost),
        };
        for w in &mut work {
            if w.planned.is_some() {
                continue;
            }
            if let Some(st) = &w.stmt {
                let p = Arc::new(det::plan(&w.sql, &schema));
                *st.det_plan.lock() = Some((epoch, p.clone()));
                w.planned = Some(p);
                continue;
            }
            if let Some(t) = &w.template {
                if let Some(p) = det::plan_template(&t.text, &schema) {
                    let p = Arc::new(p);
                    if let Some(db) = &db {
                        self.shared
                            .schema
                            .keep_plan(db, &t.text, true, p.clone(), epoch);
                    }
                    w.planned = Some(p);
                    continue;
                }
                // The template cannot stand for the text: plan the text each time.
                w.template = None;
                w.planned = Some(Arc::new(det::plan(&w.sql, &schema)));
                continue;
            }
            let p = Arc::new(det::plan(&w.sql, &schema));
            if let Some(db) = &db {
                self.shared
                    .schema
                    .keep_plan(db, &w.sql, false, p.clone(), epoch);
            }
            w.planned = Some(p);
        }
        let mut out = BytesMut::with_capacity(frames.len() + 64);
        let mut catch_up = det::CatchUp::default();
        let mut own = Vec::new();
        let mut last = 0;
        for w in &work {
            let Some(planned) = &w.planned else {
                continue;
            };
            let plan = match planned.as_ref() {
                Planned::Unchanged => continue,
                Planned::Refused(reason) => {
                    match self.shared.cluster.config().replication.nondeterministic {
                        NondeterministicPolicy::Refuse => return Ok(Made::Refused(reason.clone())),
                        NondeterministicPolicy::Warn => {
                            self.shared.schema.run_anyway(reason);
                            continue;
                        }
                    }
                }
                Planned::Rewrite(plan) => plan,
            };
            let resolved;
            let needs = if plan.needs.iter().any(|n| !n.row_params().is_empty()) {
                // An UNNEST of array parameters: as many rows as the Bind's longest array.
                let lens = bind_array_lens(&frames[w.at..w.at + w.len]);
                let filled: Option<Vec<Need>> = plan
                    .needs
                    .iter()
                    .map(|n| n.with_row_counts(|k| lens.get(k - 1).copied().flatten()))
                    .collect();
                let Some(filled) = filled else {
                    return Ok(Made::Refused(
                        "INSERT ... SELECT ... FROM UNNEST($n) into a table with a serial or uuid default: pgproxy could not read the length of an array parameter (send it as a one-dimensional array)".to_string(),
                    ));
                };
                resolved = filled;
                &resolved
            } else {
                &plan.needs
            };
            let values = match self.evaluate(needs).await? {
                Got::Value(v) => v,
                Got::Failed(e) => return Ok(Made::Failed(e)),
                Got::Lost => return Ok(Made::Lost),
            };
            for (need, v) in needs.iter().zip(&values) {
                catch_up.add(need, v);
            }
            let text = match &w.template {
                Some(t) => plan.render_with(&values, &t.params(&w.sql)),
                None => plan.render(&values),
            };
            out.put_slice(&frames[last..w.at]);
            self.put_rewritten(frames, w, &text, &mut out, &mut own);
            last = w.at + w.len;
        }
        out.put_slice(&frames[last..]);
        if work.iter().any(|w| is_ddl(&w.sql)) {
            self.shared.schema.invalidate();
        }
        Ok(Made::Frames(out.freeze(), catch_up.into_sql(), own))
    }

    /// The frame of `w` (a Query or a Bind) with `text` as its SQL: a Query of it, or a Parse
    /// of it into the unnamed statement and a Bind of that (pgproxy's own frames, at the
    /// offsets pushed to `own`).
    fn put_rewritten(
        &self,
        frames: &[u8],
        w: &Work,
        text: &str,
        out: &mut BytesMut,
        own: &mut Vec<usize>,
    ) {
        let at = w.at;
        let f = FrameRef::new(&frames[at..at + w.len]);
        if f.tag() == fe::QUERY {
            out.put_slice(message::query(text).raw());
        } else if let Some(b) = Bind::parse(f.body()) {
            // The statement's parameter types: from its Parse earlier in this unit (not
            // processed yet, so not in the client's statements), else as known.
            let types = parse_in_unit(&frames[..at], b.statement)
                .or_else(|| {
                    self.statements.get(b.statement).and_then(|s| {
                        Parse::parse(s.parse.body()).map(|p| Bytes::copy_from_slice(p.param_types))
                    })
                })
                .unwrap_or_else(|| Bytes::from_static(&[0, 0]));
            own.push(out.len());
            out.put_slice(Parse::encode("", text, &types).raw());
            own.push(out.len());
            out.put_slice(Bind::encode(b.portal, "", b.rest).raw());
        }
    }

    /// A `COPY … FROM STDIN` alone in its unit (a simple Query, or one Bind of it): completed
    /// by pgproxy (`copy_fill`) when its column list leaves out a column with a
    /// non-deterministic default.
    async fn copy_unit(&mut self, frames: &[u8], work: &[Work]) -> Result<Made, SessionError> {
        let schema = match self.load_schema(work).await? {
            Got::Value(s) => s,
            Got::Failed(e) => return Ok(Made::Failed(e)),
            Got::Lost => return Ok(Made::Lost),
        };
        let plan = match det::plan_copy(&work[0].sql, &schema) {
            // Nothing left out, or text sqlparser cannot parse: the general plan refuses a
            // COPY that may leave out such a column (it reads the column list from tokens).
            None => {
                return Ok(match det::plan(&work[0].sql, &schema) {
                    Planned::Refused(why) => Made::Refused(why),
                    Planned::Rewrite(_) => Made::Refused(
                        "a COPY whose text calls a clock or random function".to_string(),
                    ),
                    Planned::Unchanged => {
                        Made::Frames(Bytes::copy_from_slice(frames), Vec::new(), Vec::new())
                    }
                })
            }
            Some(Err(why)) => return Ok(Made::Refused(why)),
            Some(Ok(p)) => p,
        };
        if let Some(e) = self.copy_unsafe_encoding() {
            return Ok(Made::Refused(format!(
                "COPY leaving out column {}, whose default every node would evaluate itself: pgproxy cannot add values to data in client_encoding {e}; list the column and send its values",
                plan.added[0].name
            )));
        }
        let once_cols: Vec<usize> = (0..plan.added.len())
            .filter(|&i| !plan.added[i].per_row)
            .collect();
        let mut once = vec![None; plan.added.len()];
        if !once_cols.is_empty() {
            // Inside the client's transaction: now() is the transaction's time, as PostgreSQL's.
            let exprs: Vec<String> = once_cols
                .iter()
                .map(|&i| plan.added[i].expr.clone())
                .collect();
            let row = match self.main_values(&exprs).await? {
                Got::Value(r) => r,
                Got::Failed(e) => return Ok(Made::Failed(e)),
                Got::Lost => return Ok(Made::Lost),
            };
            for (k, &i) in once_cols.iter().enumerate() {
                once[i] = row.get(k).cloned().flatten();
            }
        }
        let w = &work[0];
        let mut out = BytesMut::with_capacity(frames.len() + plan.sql.len() + 32);
        let mut own = Vec::new();
        out.put_slice(&frames[..w.at]);
        self.put_rewritten(frames, w, &plan.sql, &mut out, &mut own);
        out.put_slice(&frames[w.at + w.len..]);
        Ok(Made::Copy(
            out.freeze(),
            own,
            Box::new(super::copy_fill::CopyFill::new(plan, once)),
        ))
    }

    /// The client's encoding, when it is one whose bytes of a multibyte character can look
    /// like ASCII delimiters (pgproxy cannot cut COPY rows in it).
    pub(super) fn copy_unsafe_encoding(&self) -> Option<String> {
        let e = self
            .settings
            .get("client_encoding")
            .map(|e| e.to_ascii_uppercase().replace(['-', '_'], ""))?;
        [
            "SJIS",
            "SHIFTJIS2004",
            "BIG5",
            "GBK",
            "GB18030",
            "UHC",
            "JOHAB",
        ]
        .contains(&e.as_str())
        .then_some(e)
    }

    /// What the schema cache is kept per: the database and the client's search_path (which
    /// decides what an unqualified table name means). None while the search_path may differ
    /// from what pgproxy last read (`SET [LOCAL] search_path` in this transaction): then
    /// nothing is taken from the cache or kept in it.
    pub(super) fn cache_scope(&mut self) -> Option<String> {
        if self.search_path_unread() {
            return None;
        }
        let path = self.search_path().to_string();
        Some(format!("{}\0{path}", self.repl_mut().db.name))
    }

    /// Evaluates needs on the main; the transaction timestamp once per transaction.
    async fn evaluate(&mut self, needs: &[Need]) -> Result<Got<Vec<String>>, SessionError> {
        if self.tx_status != b'I' && needs.contains(&Need::TxnTimestamp) {
            self.repl_mut().ts_used = true;
        }
        if let Some(ts) = self.repl_mut().txn_ts.clone() {
            if needs.iter().all(|n| *n == Need::TxnTimestamp) {
                // Known since BEGIN: no round trip.
                return Ok(Got::Value(vec![ts; needs.len()]));
            }
        }
        let exprs: Vec<String> = needs
            .iter()
            .map(|n| match (n, self.repl_mut().txn_ts.as_ref()) {
                (Need::TxnTimestamp, Some(ts)) => format!("{}::timestamptz", quote_lit(ts)),
                _ => n.main_sql(),
            })
            .collect();
        let row = match self.main_values(&exprs).await? {
            Got::Value(r) => r,
            Got::Failed(e) => return Ok(Got::Failed(e)),
            Got::Lost => return Ok(Got::Lost),
        };
        let values: Vec<String> = row.into_iter().map(|v| v.unwrap_or_default()).collect();
        if self.tx_status != b'I' {
            if let Some((_, v)) = needs
                .iter()
                .zip(&values)
                .find(|(n, _)| **n == Need::TxnTimestamp)
            {
                self.repl_mut().txn_ts = Some(v.clone());
            }
        }
        Ok(Got::Value(values))
    }

    /// Column defaults of every table the unit writes to, from the cache or the main.
    /// `SELECT (e1)::text, …` on the main, inside whatever transaction is open: its one row.
    async fn main_values(
        &mut self,
        exprs: &[String],
    ) -> Result<Got<Vec<Option<String>>>, SessionError> {
        let server = self.server.as_mut().expect("main attached");
        match values_on(server, exprs).await {
            Ok(Ok(r)) => Ok(Got::Value(r)),
            Ok(Err(e)) => Ok(Got::Failed(e)),
            Err(e) => {
                self.server_lost(e.to_string())?;
                Ok(Got::Lost)
            }
        }
    }

    /// Column defaults of every table the unit's unplanned writes write to, from the cache or
    /// the main.
    async fn load_schema(&mut self, work: &[Work]) -> Result<Got<Loaded>, SessionError> {
        let db = self.cache_scope();
        let mut loaded = HashMap::new();
        for w in work {
            if w.planned.is_some() || !may_need(&w.sql) {
                continue;
            }
            for table in det::write_targets(&w.sql) {
                if loaded.contains_key(&table) {
                    continue;
                }
                let cached = db
                    .as_ref()
                    .and_then(|db| self.shared.schema.table(db, &table));
                if let Some(t) = cached {
                    loaded.insert(table, t);
                    continue;
                }
                let server = self.server.as_mut().expect("main attached");
                let t = match table_defaults(server, &table).await {
                    Ok(Ok(t)) => t,
                    Ok(Err(e)) => return Ok(Got::Failed(e)),
                    Err(e) => {
                        self.server_lost(e.to_string())?;
                        return Ok(Got::Lost);
                    }
                };
                let t = Arc::new(t);
                if let Some(db) = &db {
                    self.shared.schema.keep_table(db, &table, t.clone());
                }
                loaded.insert(table, t);
            }
        }
        Ok(Got::Value(Loaded(loaded)))
    }
}

/// Per parameter of a Bind frame, the number of elements if it is an array (NULL: none).
fn bind_array_lens(frame: &[u8]) -> Vec<Option<usize>> {
    let f = FrameRef::new(frame);
    if f.tag() != fe::BIND {
        return Vec::new();
    }
    let Some(b) = Bind::parse(f.body()) else {
        return Vec::new();
    };
    let Some(values) = crate::protocol::rows::bind_values(b.rest) else {
        return Vec::new();
    };
    values
        .params
        .iter()
        .map(|&(format, v)| match v {
            None => Some(0),
            Some(v) => crate::protocol::array::array_len(format, v),
        })
        .collect()
}

pub(super) fn quote_lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Cheap pre-check: could this text need values from the main?
fn may_need(sql: &str) -> bool {
    let l = sql.to_ascii_lowercase();
    l.contains("insert")
        || l.contains("now")
        || l.contains("current_")
        || l.contains("local")
        || l.contains("random")
        || l.contains("uuid")
        || l.contains("nextval")
        || l.contains("currval")
        || l.contains("lastval")
        || l.contains("timestamp")
        || l.contains("timeofday")
        || l.contains("default")
        || l.contains("copy")
        || may_pick_rows(&l)
}

/// Words of a write whose rows may depend on each node's physical row order
/// (`router::determinism::selection`); `l` is lowercase.
fn may_pick_rows(l: &str) -> bool {
    [
        "limit",
        "fetch",
        "offset",
        "skip",
        "ctid",
        "tablesample",
        "distinct",
        "over",
        "agg",
    ]
    .iter()
    .any(|w| l.contains(w))
}
