//! A read merged across shards inside the client's transaction.
//!
//! The merged read runs on connections of its own (`scatter`), outside the transaction. That
//! answers exactly what PostgreSQL would only while the transaction is READ COMMITTED (each
//! statement takes a new snapshot anyway), has written nothing on any shard (its own rows
//! would be missing) and changed no setting (SET LOCAL, or a SET not yet read back, would not
//! apply there). pgproxy asks the transaction's own connections, so that no way of setting
//! the isolation level or of writing (a function, SELECT … FOR UPDATE) is missed.

use super::relay::Session;

/// Asked on every connection of the transaction: its isolation level, and whether it has a
/// transaction id (it wrote or locked rows).
const CHECK_SQL: &str = "SELECT pg_catalog.current_setting('transaction_isolation'), \
                         pg_catalog.pg_current_xact_id_if_assigned() IS NULL";

impl Session {
    /// Why a merged read cannot run in the current transaction, if it cannot.
    pub(super) async fn merged_read_in_txn_obstacle(&mut self) -> Option<&'static str> {
        if self.tx_status != b'T' || self.lost_txn || self.pin.is_some() {
            return Some("in a transaction in this state");
        }
        let repl = self.repl.as_ref()?;
        if repl.txn_settings_changed {
            return Some("after a SET in the same transaction");
        }
        if repl.joined || repl.unnamed_portal_kept || repl.unit.is_some() {
            return Some("after a write in the same transaction");
        }
        let mut verdicts = Vec::new();
        if let Some(server) = self.server.as_mut() {
            verdicts.push(check(server).await);
        }
        let repl = self.repl.as_mut()?;
        for f in repl.followers.iter_mut() {
            if !f.parked || !f.is_idle() {
                return Some("after a write in the same transaction");
            }
            verdicts.push(check(&mut f.conn).await);
        }
        verdicts.into_iter().find_map(|v| v.err())
    }
}

/// One connection of the transaction: Ok if it is READ COMMITTED and wrote nothing.
async fn check(conn: &mut crate::backend::ServerConn) -> Result<(), &'static str> {
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
    if get(1) != "t" {
        return Err("after a write in the same transaction (its rows would be missing)");
    }
    Ok(())
}
