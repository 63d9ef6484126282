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
use crate::backend::{BackendError, ServerConn};
use crate::config::NondeterministicPolicy;
use crate::protocol::frame::{self, FrameRef};
use crate::protocol::message::{self, fe, Bind, Parse};
use crate::router::determinism::{self as det, ColumnDefault, Need, Planned, TableDefaults};
use crate::router::keywords::is_ddl;
use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tracing::warn;

/// Column defaults per (database, table as written), loaded from main nodes on first use and
/// dropped whenever a unit that may change a schema runs.
#[derive(Default)]
pub struct SchemaCache {
    tables: Mutex<HashMap<(String, String), Arc<TableDefaults>>>,
    /// Bumped on every invalidation: plans cached on statements carry the epoch they saw.
    epoch: AtomicU64,
    /// Writes run on every node although pgproxy could not make them deterministic.
    pub nondeterministic_total: AtomicU64,
}

impl SchemaCache {
    /// Forgets everything (after DDL).
    pub fn invalidate(&self) {
        self.tables.lock().clear();
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }
}

struct Loaded(HashMap<String, Arc<TableDefaults>>);

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
    /// The main's connection failed while values were read (the client was told).
    Lost,
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

/// Runs a query on the main inside whatever transaction is open and returns its text rows,
/// or the error message PostgreSQL gave (`Ok(Err)`); `Err` when the connection failed.
async fn rows(
    conn: &mut ServerConn,
    sql: &str,
) -> Result<Result<Vec<Vec<Option<String>>>, String>, BackendError> {
    let r = conn.exchange(sql).await?;
    Ok(match r.error {
        None => Ok(r.result.rows),
        Some(e) => Err(message::error_fields(e.body())
            .into_iter()
            .find(|(c, _)| *c == b'M')
            .map(|(_, m)| m.to_string())
            .unwrap_or_default()),
    })
}

/// How reading something from the main went.
enum Got<T> {
    Value(T),
    /// PostgreSQL refused the query: the unit is refused with this reason.
    Refused(String),
    /// The connection failed (the client was told, as for any lost server).
    Lost,
}

const DEFAULTS_SQL: &str = "SELECT a.attname, \
     CASE WHEN a.attidentity <> '' THEN 'nextval(' || quote_literal(pg_catalog.pg_get_serial_sequence(c.oid::regclass::text, a.attname)) || '::regclass)' \
          ELSE pg_catalog.pg_get_expr(d.adbin, d.adrelid) END, \
     a.attidentity = 'a' \
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
     LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum \
     WHERE c.oid = pg_catalog.to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
     ORDER BY a.attnum";

impl Session {
    /// Makes a write unit deterministic (see the module doc). The main is attached.
    pub(super) async fn make_deterministic(&mut self, frames: &[u8]) -> Result<Made, SessionError> {
        // First pass: the SQL each Query / Bind runs, and whether anything needs the schema.
        let mut pos = 0;
        let mut work: Vec<(
            usize,
            usize,
            String,
            Option<Arc<super::statements::Statement>>,
        )> = Vec::new();
        let mut unnamed_in_unit: Option<String> = None;
        while pos < frames.len() {
            let Ok(Some(n)) = frame::peek_frame_len(&frames[pos..], usize::MAX) else {
                break;
            };
            let f = FrameRef::new(&frames[pos..pos + n]);
            match f.tag() {
                fe::QUERY => {
                    if let Some(q) = message::query_text(f.body()) {
                        work.push((pos, n, q.to_string(), None));
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
                            work.push((pos, n, unnamed_in_unit.clone().unwrap_or_default(), None));
                        } else if let Some(st) = self.statements.get(b.statement) {
                            let cache = (!b.statement.is_empty()).then(|| st.clone());
                            work.push((pos, n, st.query().to_string(), cache));
                        }
                    }
                }
                _ => {}
            }
            pos += n;
        }
        if work.is_empty() || !work.iter().any(|(_, _, q, _)| may_need(q)) {
            if work.iter().any(|(_, _, q, _)| is_ddl(q)) {
                self.shared.schema.invalidate();
            }
            return Ok(Made::Frames(
                Bytes::copy_from_slice(frames),
                Vec::new(),
                Vec::new(),
            ));
        }
        let schema = match self.load_schema(&work).await? {
            Got::Value(s) => s,
            Got::Refused(why) => return Ok(Made::Refused(why)),
            Got::Lost => return Ok(Made::Lost),
        };
        let mut out = BytesMut::with_capacity(frames.len() + 64);
        let mut follower_sql = Vec::new();
        let mut own = Vec::new();
        let mut last = 0;
        let epoch = self.shared.schema.epoch.load(Ordering::Acquire);
        for (at, n, sql, stmt) in &work {
            let cached = stmt.as_ref().and_then(|st| {
                st.det_plan
                    .lock()
                    .as_ref()
                    .filter(|(e, _)| *e == epoch)
                    .map(|(_, p)| p.clone())
            });
            let planned = match cached {
                Some(p) => p,
                None => {
                    let p = Arc::new(det::plan(sql, &schema));
                    if let Some(st) = stmt {
                        *st.det_plan.lock() = Some((epoch, p.clone()));
                    }
                    p
                }
            };
            let plan = match planned.as_ref() {
                Planned::Unchanged => continue,
                Planned::Refused(reason) => {
                    match self.shared.cluster.config().replication.nondeterministic {
                        NondeterministicPolicy::Refuse => return Ok(Made::Refused(reason.clone())),
                        NondeterministicPolicy::Warn => {
                            warn!(reason, "running a write pgproxy cannot make deterministic");
                            self.shared
                                .schema
                                .nondeterministic_total
                                .fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    }
                }
                Planned::Rewrite(plan) => plan,
            };
            let values = match self.evaluate(&plan.needs).await? {
                Got::Value(v) => v,
                Got::Refused(why) => return Ok(Made::Refused(why)),
                Got::Lost => return Ok(Made::Lost),
            };
            for (need, v) in plan.needs.iter().zip(&values) {
                if let Some(sql) = need.follower_sql(v) {
                    follower_sql.push(sql);
                }
            }
            let text = plan.render(&values);
            out.put_slice(&frames[last..*at]);
            let f = FrameRef::new(&frames[*at..*at + *n]);
            if f.tag() == fe::QUERY {
                out.put_slice(message::query(&text).raw());
            } else if let Some(b) = Bind::parse(f.body()) {
                // The statement's parameter types: from its Parse earlier in this unit (not
                // processed yet, so not in the client's statements), else as known.
                let types = parse_in_unit(&frames[..*at], b.statement)
                    .or_else(|| {
                        self.statements.get(b.statement).and_then(|s| {
                            Parse::parse(s.parse.body())
                                .map(|p| Bytes::copy_from_slice(p.param_types))
                        })
                    })
                    .unwrap_or_else(|| Bytes::from_static(&[0, 0]));
                own.push(out.len());
                out.put_slice(Parse::encode("", &text, &types).raw());
                own.push(out.len());
                out.put_slice(Bind::encode(b.portal, "", b.rest).raw());
            }
            last = at + n;
        }
        out.put_slice(&frames[last..]);
        if work.iter().any(|(_, _, q, _)| is_ddl(q)) {
            self.shared.schema.invalidate();
        }
        Ok(Made::Frames(out.freeze(), follower_sql, own))
    }

    /// Evaluates needs on the main; the transaction timestamp once per transaction.
    async fn evaluate(&mut self, needs: &[Need]) -> Result<Got<Vec<String>>, SessionError> {
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
        let sql = format!(
            "SELECT {}",
            exprs
                .iter()
                .map(|e| format!("({e})::text"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let server = self.server.as_mut().expect("main attached");
        let row = match rows(server, &sql).await {
            Ok(Ok(mut r)) if !r.is_empty() => r.swap_remove(0),
            Ok(Ok(_)) => Vec::new(),
            Ok(Err(m)) => {
                return Ok(Got::Refused(format!(
                    "computing its values on the main node failed: {m}"
                )))
            }
            Err(e) => {
                self.server_lost(e.to_string())?;
                return Ok(Got::Lost);
            }
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
    async fn load_schema(
        &mut self,
        work: &[(
            usize,
            usize,
            String,
            Option<Arc<super::statements::Statement>>,
        )],
    ) -> Result<Got<Loaded>, SessionError> {
        let db = self.repl_mut().db.name.clone();
        let mut loaded = HashMap::new();
        let epoch = self.shared.schema.epoch.load(Ordering::Acquire);
        for (_, _, sql, stmt) in work {
            let planned = stmt.as_ref().is_some_and(|st| {
                st.det_plan
                    .lock()
                    .as_ref()
                    .is_some_and(|(e, _)| *e == epoch)
            });
            if planned || !may_need(sql) {
                continue;
            }
            for table in det::write_targets(sql) {
                if loaded.contains_key(&table) {
                    continue;
                }
                let key = (db.clone(), table.clone());
                if let Some(t) = self.shared.schema.tables.lock().get(&key).cloned() {
                    loaded.insert(table, t);
                    continue;
                }
                let q = DEFAULTS_SQL.replace("$1", &quote_lit(&table));
                let server = self.server.as_mut().expect("main attached");
                let rows = match rows(server, &q).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(m)) => {
                        return Ok(Got::Refused(format!(
                            "reading the column defaults of {table} failed: {m}"
                        )))
                    }
                    Err(e) => {
                        self.server_lost(e.to_string())?;
                        return Ok(Got::Lost);
                    }
                };
                let mut t = TableDefaults::default();
                for r in rows {
                    let name = r.first().cloned().flatten().unwrap_or_default();
                    t.all_columns.push(name.clone());
                    if let Some(expr) = r.get(1).cloned().flatten() {
                        t.columns.push(ColumnDefault {
                            name,
                            expr,
                            identity_always: r.get(2).cloned().flatten().as_deref() == Some("t"),
                        });
                    }
                }
                let t = Arc::new(t);
                self.shared.schema.tables.lock().insert(key, t.clone());
                loaded.insert(table, t);
            }
        }
        Ok(Got::Value(Loaded(loaded)))
    }
}

fn quote_lit(s: &str) -> String {
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
        || l.contains("timestamp")
        || l.contains("timeofday")
        || l.contains("default")
}
