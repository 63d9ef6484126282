//! A COPY into a sharded table on replicated shards that leaves out a column whose default
//! every node would compute itself (serial, identity, uuid, now()): as `copy_fill` does on one
//! shard, every node gets the COPY with the column listed (`CopyPlan::sql`) and each row the
//! same value, per shard: a shard's rows get values evaluated on that shard's main (its own
//! sequence), on a connection of pgproxy's own, batch by batch as they are sent; values
//! evaluated once per COPY (clock functions) are read once, on the first shard's main inside
//! the transaction. After the COPY, each shard's followers' sequences move past the last value
//! handed out there.

use super::copy_fill::{per_row_query, row_values};
use super::keyless::{run, Participant};
use crate::cluster::Cluster;
use crate::config::{Database, User};
use crate::pool::Pooled;
use crate::protocol::message;
use crate::router::determinism::{CopyPlan, Need, RowCutter};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The values of one shard.
struct Side {
    conn: Pooled,
    cutter: RowCutter,
    /// The last value each added column got on this shard.
    last: Vec<Option<String>>,
}

/// How pgproxy connects to a shard's main for values: as the session's user, with its
/// settings (search_path decides what the defaults' names mean).
pub(super) struct Connect {
    pub(super) cluster: Arc<Cluster>,
    pub(super) user: User,
    pub(super) db: Database,
    pub(super) settings: BTreeMap<String, String>,
}

impl Connect {
    async fn to_main(&self, shard: usize) -> Result<Pooled, String> {
        let node = self
            .cluster
            .topology
            .main(shard)
            .ok_or("the shard has no node up")?;
        let pool = self.cluster.pool(&self.user, &self.db, shard, node);
        let mut conn = pool.checkout().await.map_err(|e| e.to_string())?;
        super::followers::apply_settings(&mut conn, &self.settings)
            .await
            .map_err(|(why, _)| why)?;
        Ok(conn)
    }
}

/// Values for a COPY's left-out columns, per shard.
pub(super) struct ShardFill {
    plan: CopyPlan,
    /// Values of the columns evaluated once per COPY, by added column.
    once: Vec<Option<String>>,
    sides: BTreeMap<usize, Side>,
    connect: Connect,
}

impl ShardFill {
    /// `once` evaluated on a main already (see the module doc).
    pub(super) fn new(plan: CopyPlan, once: Vec<Option<String>>, connect: Connect) -> ShardFill {
        ShardFill {
            plan,
            once,
            sides: BTreeMap::new(),
            connect,
        }
    }

    /// The columns evaluated once per COPY.
    pub(super) fn once_exprs(plan: &CopyPlan) -> Vec<(usize, String)> {
        plan.added
            .iter()
            .enumerate()
            .filter(|(_, a)| !a.per_row)
            .map(|(i, a)| (i, a.expr.clone()))
            .collect()
    }

    /// Shard `shard`'s rows `data` (complete rows as the client sent them; `last`: the final
    /// batch, whose last row may lack its line end) with the values appended.
    pub(super) async fn complete(
        &mut self,
        shard: usize,
        data: &[u8],
        last: bool,
    ) -> Result<Vec<u8>, String> {
        if !self.sides.contains_key(&shard) {
            let conn = self.connect.to_main(shard).await?;
            self.sides.insert(
                shard,
                Side {
                    conn,
                    cutter: RowCutter::new(self.plan.format.clone(), self.plan.listed),
                    last: vec![None; self.plan.added.len()],
                },
            );
        }
        let plan = &self.plan;
        let side = self.sides.get_mut(&shard).expect("inserted above");
        side.cutter.push(data);
        if last {
            side.cutter.finish();
        }
        let n = side.cutter.data_rows();
        let mut evaluated: Vec<Vec<Option<String>>> = Vec::new();
        if let Some(sql) = per_row_query(plan, n) {
            evaluated = match super::catalog::rows(&mut side.conn, &sql).await {
                Ok(Ok(r)) if r.len() == n => r,
                Ok(Ok(r)) => return Err(format!("{} values for {n} rows", r.len())),
                Ok(Err(m)) => return Err(m),
                Err(e) => return Err(e.to_string()),
            };
        }
        let values = row_values(plan, &self.once, &evaluated, n)?;
        if let Some(l) = values.last() {
            side.last = l.iter().cloned().map(Some).collect();
        }
        let names: Vec<String> = plan.added.iter().map(|a| a.name.clone()).collect();
        side.cutter.take(&values, &names)
    }

    /// Moves the followers' sequences past the values handed out on their shard; the
    /// followers (indexes into `parts`) that failed to, and why.
    pub(super) async fn settle_followers(&self, parts: &mut [Participant]) -> Vec<(usize, String)> {
        let mut failed = Vec::new();
        for (i, p) in parts.iter_mut().enumerate() {
            let Some(side) = self.sides.get(&p.shard).filter(|_| !p.main) else {
                continue;
            };
            for (a, v) in self.plan.added.iter().zip(&side.last) {
                let Some(sql) = v
                    .as_ref()
                    .and_then(|v| Need::Nextval(a.sequence.clone()?).follower_sql(v))
                else {
                    continue;
                };
                if !matches!(run(&mut p.conn, message::query(&sql).raw()).await, Ok(ans) if ans.error.is_none())
                {
                    failed.push((i, format!("moving its sequence failed: {sql}")));
                    break;
                }
            }
        }
        failed
    }

    /// Gives pgproxy's connections back.
    pub(super) fn release(self) {
        for (_, s) in self.sides {
            s.conn.release();
        }
    }
}
