//! A read merged across shards inside the client's transaction.
//!
//! Reads (`scatter`) run on the transaction's own connection for every shard it holds one on
//! (the session's server, the parked mains of shards it left), so they see its writes, and
//! on connections of their own elsewhere (shards it has not touched: nothing of its own to
//! see there). That answers what PostgreSQL would while the transaction is READ COMMITTED
//! (each statement takes a new snapshot anyway; a REPEATABLE READ snapshot cannot span
//! shards) and changed no setting (SET LOCAL, or a SET not yet read back, would not apply on
//! the other connections). pgproxy asks the transaction's own connections, so that no way of
//! setting the isolation level is missed.
//!
//! A COPY out of a sharded table still reads on connections of its own only: it runs while
//! the transaction has written nothing.

use super::relay::Session;

/// Asked on every connection of the transaction: its isolation level, and whether it has a
/// transaction id (it wrote or locked rows).
const CHECK_SQL: &str = "SELECT pg_catalog.current_setting('transaction_isolation'), \
                         pg_catalog.pg_current_xact_id_if_assigned() IS NULL";

const WROTE: &str = "after a write in the same transaction (its rows would be missing)";

impl Session {
    /// Why a merged read cannot run in the current transaction, if it cannot. `own`: the
    /// read runs on the transaction's own connections where it has them (`scatter`), so a
    /// write before it is no obstacle; else on fresh connections only (COPY out).
    pub(super) async fn merged_read_in_txn_obstacle(&mut self, own: bool) -> Option<&'static str> {
        if self.tx_status != b'T' || self.lost_txn || self.pin.is_some() {
            return Some("in a transaction in this state");
        }
        if !self.queue.is_empty() || !self.to_server.is_empty() {
            return Some("in the middle of a pipeline");
        }
        let repl = self.repl.as_ref()?;
        if repl.txn_settings_changed {
            return Some("after a SET in the same transaction");
        }
        if repl.implicit || repl.unnamed_portal_kept || repl.unit.is_some() {
            return Some("while a statement of the transaction is unfinished");
        }
        if !own && repl.joined {
            return Some(WROTE);
        }
        if repl.span_all {
            return Some("after a write on every shard in the same transaction");
        }
        let current = repl.shard;
        let parked_any = repl.followers.iter().any(|f| f.parked);
        for f in &repl.followers {
            if f.parked && !f.is_idle() {
                return Some("while a statement of the transaction is unfinished");
            }
            // A write on every shard (DDL, shared tables) joined other shards' nodes as
            // followers of this one: their connections are not the reads' to take.
            if !f.parked && f.shard != current {
                return Some("after a write on every shard in the same transaction");
            }
            if f.parked
                && !repl
                    .followers
                    .iter()
                    .any(|g| g.parked && g.was_main && g.shard == f.shard)
            {
                return Some("after its main node of another shard failed");
            }
        }
        if parked_any && repl.savepoints {
            // An error of the read on a parked shard could not be undone by ROLLBACK TO
            // SAVEPOINT, which reaches the current shard only.
            return Some("after a SAVEPOINT in a transaction across shards");
        }
        let mut verdicts = Vec::new();
        if let Some(server) = self.server.as_mut() {
            verdicts.push(check(server, own).await);
        }
        let repl = self.repl.as_mut()?;
        for f in repl.followers.iter_mut().filter(|f| f.parked) {
            verdicts.push(check(&mut f.conn, own).await);
        }
        verdicts.into_iter().find_map(|v| v.err())
    }
}

/// One connection of the transaction: Ok if it is READ COMMITTED and (unless the read runs
/// on it, `own`) wrote nothing.
async fn check(conn: &mut crate::backend::ServerConn, own: bool) -> Result<(), &'static str> {
    let r = conn
        .exchange(CHECK_SQL)
        .await
        .map_err(|_| "in a transaction in this state")?;
    let row = r.result.rows.into_iter().next().unwrap_or_default();
    let get = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
    if get(0) != "read committed" {
        return Err(
            "in a REPEATABLE READ or SERIALIZABLE transaction (one snapshot cannot span shards)",
        );
    }
    if !own && get(1) != "t" {
        return Err(WROTE);
    }
    Ok(())
}
