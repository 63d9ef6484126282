//! A `COPY … FROM STDIN` that pgproxy completes with the columns the client left out (their
//! defaults are non-deterministic: serial, identity, gen_random_uuid(), now(); see
//! `router::determinism::plan_copy`). Every node gets the COPY with those columns listed and
//! the same rows: the data is cut into rows as it streams in, and for each batch of rows the
//! values are evaluated on the main node, on a connection of pgproxy's own (the session's is
//! busy copying). Clock defaults are evaluated once, inside the client's transaction. After
//! the copy, the followers' sequences move past the last value handed out.

use super::relay::Session;
use crate::pool::Pooled;
use crate::protocol::frame::{Frame, FrameRef};
use crate::protocol::message::{self, fe};
use crate::router::determinism::{CopyPlan, Need, RowCutter};

/// Rows per batch of values (one query on the main node per batch).
const BATCH_ROWS: usize = 2000;
/// Bytes of complete rows that make a batch too.
const BATCH_BYTES: usize = 256 * 1024;
/// The longest row pgproxy holds while it waits for the row's end.
const MAX_ROW: usize = 64 * 1024 * 1024;

/// The state of one completed COPY.
pub struct CopyFill {
    plan: CopyPlan,
    cutter: RowCutter,
    /// Values of the columns evaluated once per COPY, by added column.
    once: Vec<Option<String>>,
    /// pgproxy's connection to the main node for per-row values.
    side: Option<Pooled>,
    /// The last value each added column got.
    last: Vec<Option<String>>,
    /// pgproxy failed the copy (sent CopyFail): the client's later copy messages are dropped.
    pub failed: bool,
}

impl CopyFill {
    /// `once[i]`: the value of added column i if it is evaluated once per COPY.
    pub fn new(plan: CopyPlan, once: Vec<Option<String>>) -> CopyFill {
        let n = plan.added.len();
        CopyFill {
            cutter: RowCutter::new(plan.format.clone(), plan.listed),
            plan,
            once,
            side: None,
            last: vec![None; n],
            failed: false,
        }
    }

    /// The statements that move the followers' sequences past the values handed out.
    pub fn follower_sql(&self) -> Vec<String> {
        self.plan
            .added
            .iter()
            .zip(&self.last)
            .filter_map(|(a, v)| Need::Nextval(a.sequence.clone()?).follower_sql(v.as_ref()?))
            .collect()
    }

    /// Gives pgproxy's connection back.
    pub fn release(self) {
        if let Some(c) = self.side {
            c.release();
        }
    }

    /// Whether the rows cut so far make a batch to send now.
    fn batch_ready(&self, done: bool) -> bool {
        let c = &self.cutter;
        (done || c.ended() || c.data_rows() >= BATCH_ROWS || c.ready_bytes() >= BATCH_BYTES)
            && (c.ready_bytes() > 0 || (c.ended() && c.partial_bytes() > 0))
    }
}

impl Session {
    /// One copy message of the client, for a COPY pgproxy completes: the frames to send to the
    /// nodes instead (none while rows gather; CopyFail when pgproxy cannot go on).
    pub(super) async fn fill_copy(&mut self, f: FrameRef<'_>) -> Vec<Frame> {
        let Some(mut fill) = self
            .repl
            .as_mut()
            .and_then(|r| r.unit.as_mut())
            .and_then(|u| u.fill.take())
        else {
            return Vec::new();
        };
        let out = self.fill_step(&mut fill, f).await;
        if let Some(u) = self.repl.as_mut().and_then(|r| r.unit.as_mut()) {
            if fill.failed {
                u.copy_ended = true;
            }
            u.fill = Some(fill);
        } else {
            (*fill).release();
        }
        out
    }

    async fn fill_step(&mut self, fill: &mut CopyFill, f: FrameRef<'_>) -> Vec<Frame> {
        if fill.failed {
            return Vec::new();
        }
        let tag = f.tag();
        match tag {
            fe::COPY_DATA => fill.cutter.push(f.body()),
            fe::COPY_DONE => fill.cutter.finish(),
            _ => return vec![Frame::new(tag, f.body())],
        }
        let mut out = Vec::new();
        if fill.cutter.partial_bytes() > MAX_ROW {
            return fail(fill, format!("a row longer than {MAX_ROW} bytes"));
        }
        if fill.batch_ready(tag == fe::COPY_DONE) {
            let n = fill.cutter.data_rows();
            let values = match self.fill_values(fill, n).await {
                Ok(v) => v,
                Err(e) => return fail(fill, e),
            };
            let names: Vec<String> = fill.plan.added.iter().map(|a| a.name.clone()).collect();
            match fill.cutter.take(&values, &names) {
                Ok(data) => out.push(Frame::new(fe::COPY_DATA, &data)),
                Err(e) => return fail(fill, e),
            }
        }
        if tag == fe::COPY_DONE {
            out.push(Frame::new(tag, f.body()));
        }
        out
    }

    /// Values for `n` rows, one text per added column each.
    async fn fill_values(
        &mut self,
        fill: &mut CopyFill,
        n: usize,
    ) -> Result<Vec<Vec<String>>, String> {
        let mut rows: Vec<Vec<Option<String>>> = Vec::new();
        if let Some(sql) = per_row_query(&fill.plan, n) {
            if fill.side.is_none() {
                fill.side = Some(self.fill_connection().await?);
            }
            let conn = fill.side.as_mut().expect("connected above");
            rows = match super::determinism::rows(conn, &sql).await {
                Ok(Ok(r)) if r.len() == n => r,
                Ok(Ok(r)) => return Err(format!("{} values for {n} rows", r.len())),
                Ok(Err(m)) => return Err(m),
                Err(e) => {
                    fill.side = None;
                    return Err(e.to_string());
                }
            };
        }
        let out = row_values(&fill.plan, &fill.once, &rows, n)?;
        if let Some(last) = out.last() {
            fill.last = last.iter().cloned().map(Some).collect();
        }
        Ok(out)
    }

    /// A connection to the main node with the session's settings (search_path decides what
    /// the defaults' names mean).
    async fn fill_connection(&mut self) -> Result<Pooled, String> {
        let settings = self.settings.clone();
        let cluster = self.shared.cluster.clone();
        let r = self.repl_mut();
        let pool = cluster.pool(&r.user, &r.db, r.shard, r.node);
        let mut conn = pool.checkout().await.map_err(|e| e.to_string())?;
        super::followers::apply_settings(&mut conn, &settings)
            .await
            .map_err(|(why, _)| why)?;
        Ok(conn)
    }
}

/// The query that evaluates the per-row columns of `plan` for `n` rows (nextval, random(),
/// gen_random_uuid()); None when there is nothing to evaluate.
pub(super) fn per_row_query(plan: &CopyPlan, n: usize) -> Option<String> {
    let exprs: Vec<String> = plan
        .added
        .iter()
        .filter(|a| a.per_row)
        .map(|a| format!("({})::text", a.expr))
        .collect();
    (n > 0 && !exprs.is_empty()).then(|| {
        format!(
            "SELECT {} FROM pg_catalog.generate_series(1, {n})",
            exprs.join(", ")
        )
    })
}

/// `n` rows of values, one text per added column: the per-row columns from `evaluated` (the
/// rows of `per_row_query`, in its column order), the others from `once`.
pub(super) fn row_values(
    plan: &CopyPlan,
    once: &[Option<String>],
    evaluated: &[Vec<Option<String>>],
    n: usize,
) -> Result<Vec<Vec<String>>, String> {
    let per_row: Vec<usize> = (0..plan.added.len())
        .filter(|&i| plan.added[i].per_row)
        .collect();
    let mut out = Vec::with_capacity(n);
    for r in 0..n {
        let mut row = Vec::with_capacity(plan.added.len());
        for (i, once) in once.iter().enumerate() {
            let v = match per_row.iter().position(|&p| p == i) {
                Some(k) => evaluated.get(r).and_then(|e| e.get(k)).cloned().flatten(),
                None => once.clone(),
            };
            let Some(v) = v else {
                return Err(format!(
                    "the default of column {} is NULL, which pgproxy does not write into COPY data",
                    plan.added[i].name
                ));
            };
            row.push(v);
        }
        out.push(row);
    }
    Ok(out)
}

/// Fails the copy on every node with pgproxy's reason.
fn fail(fill: &mut CopyFill, why: String) -> Vec<Frame> {
    fill.failed = true;
    let names: Vec<&str> = fill.plan.added.iter().map(|a| a.name.as_str()).collect();
    vec![message::copy_fail(&format!(
        "pgproxy could not fill in column(s) {} left out of the COPY: {why}",
        names.join(", ")
    ))]
}
