//! SQL-level cursors of a sharded session (`DECLARE … CURSOR`, used by Django's
//! `.iterator()`, SQLAlchemy's `stream_results` and psycopg's named cursors): which shard each
//! lives on, so that FETCH / MOVE / CLOSE (and a protocol-level Describe or Execute of the
//! cursor's portal) go there. Names are keyed as PostgreSQL compares them (unquoted names
//! folded to lowercase). A DECLARE is remembered once its unit succeeded; CLOSE, the end of
//! the transaction (for cursors without HOLD, and for WITH HOLD cursors of a transaction rolled
//! back) and DISCARD ALL forget them. Must not: do IO or route anything itself.

use crate::router::route::CursorName;
use std::collections::HashMap;

/// One open cursor.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    shard: usize,
    /// WITH HOLD: outlives the transaction that declared it (if that one commits).
    hold: bool,
    /// Declared in the open transaction (a ROLLBACK takes even a WITH HOLD cursor away).
    fresh: bool,
}

/// What a unit does to the session's cursors, applied once it ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CursorEffect {
    /// `DECLARE name … [WITH HOLD]`.
    Declare(String, bool),
    /// `CLOSE name`.
    Close(String),
    /// `CLOSE ALL`, `DISCARD ALL`.
    CloseAll,
}

/// The cursors of a session.
#[derive(Debug, Default)]
pub(super) struct Cursors {
    open: HashMap<String, Cursor>,
    /// The effects of the unit being routed or run.
    unit: Vec<CursorEffect>,
}

impl Cursors {
    /// The shards holding `name` (for `CLOSE ALL`: every shard holding a cursor); empty when
    /// pgproxy knows of none. A cursor the unit being routed declares itself is not looked
    /// up: it is declared where the unit runs.
    pub fn shards(&self, name: &CursorName) -> Vec<usize> {
        match name {
            CursorName::Named(n) => {
                if self.declared_in_unit(n) {
                    return Vec::new();
                }
                self.open.get(n).map(|c| vec![c.shard]).unwrap_or_default()
            }
            CursorName::All => {
                let mut v: Vec<usize> = self.open.values().map(|c| c.shard).collect();
                v.sort_unstable();
                v.dedup();
                v
            }
        }
    }

    /// The shard an open cursor `name` lives on.
    pub fn shard_of(&self, name: &str) -> Option<usize> {
        self.open.get(name).map(|c| c.shard)
    }

    fn declared_in_unit(&self, name: &str) -> bool {
        self.unit
            .iter()
            .any(|e| matches!(e, CursorEffect::Declare(n, _) if n == name))
    }

    /// Starts routing a new unit: effects of one not run are dropped.
    pub fn begin_unit(&mut self) {
        self.unit.clear();
    }

    /// Records an effect of the unit being routed.
    pub fn note(&mut self, e: CursorEffect) {
        self.unit.push(e);
    }

    /// The unit was not run (refused, or answered by pgproxy across shards).
    pub fn drop_unit(&mut self) {
        self.unit.clear();
    }

    /// The unit ran on `shard`; `failed`: it reported an error (its declarations did not
    /// happen, or were undone with its transaction). `in_txn`: a transaction is still open.
    pub fn finish_unit(&mut self, shard: usize, failed: bool, in_txn: bool) {
        for e in std::mem::take(&mut self.unit) {
            match e {
                CursorEffect::Declare(name, hold) if !failed => {
                    self.open.insert(
                        name,
                        Cursor {
                            shard,
                            hold,
                            fresh: in_txn,
                        },
                    );
                }
                CursorEffect::Declare(..) => {}
                CursorEffect::Close(name) => {
                    self.open.remove(&name);
                }
                CursorEffect::CloseAll => self.open.clear(),
            }
        }
    }

    /// The transaction ended: cursors without HOLD are gone; WITH HOLD ones declared in it
    /// stay if it committed.
    pub fn txn_over(&mut self, rolled_back: bool) {
        self.open.retain(|_, c| c.hold && !(rolled_back && c.fresh));
        for c in self.open.values_mut() {
            c.fresh = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle() {
        let mut c = Cursors::default();
        let named = |s: &str| CursorName::Named(s.into());
        // A declaration that failed is not remembered.
        c.note(CursorEffect::Declare("a".into(), true));
        c.finish_unit(1, true, false);
        assert!(c.shards(&named("a")).is_empty());
        // WITH HOLD, autocommit: kept past the transaction.
        c.note(CursorEffect::Declare("a".into(), true));
        assert!(c.shards(&named("a")).is_empty(), "declared by this unit");
        c.finish_unit(1, false, false);
        c.txn_over(false);
        assert_eq!(c.shards(&named("a")), vec![1]);
        // Without HOLD in a transaction: gone at its end.
        c.note(CursorEffect::Declare("b".into(), false));
        c.finish_unit(0, false, true);
        assert_eq!(c.shards(&CursorName::All), vec![0, 1]);
        c.txn_over(false);
        assert!(c.shards(&named("b")).is_empty());
        // WITH HOLD declared in a transaction rolled back: gone.
        c.note(CursorEffect::Declare("h".into(), true));
        c.finish_unit(0, false, true);
        c.txn_over(true);
        assert!(c.shards(&named("h")).is_empty());
        assert_eq!(c.shards(&named("a")), vec![1]);
        c.note(CursorEffect::Close("a".into()));
        c.finish_unit(1, true, false);
        assert!(c.shards(&CursorName::All).is_empty());
    }
}
