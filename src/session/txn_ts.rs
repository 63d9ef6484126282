//! The transaction timestamp on a replicated shard: pgproxy reads now() from the main once per
//! transaction (right after the transaction's first statement, in the same write) so that
//! now() in a later write becomes the same literal on every node. Read ahead only where a
//! simple Query of pgproxy's own cannot disturb the client (not mid-batch, not while the
//! unnamed portal may be suspended), and only while the session's transactions use it (its
//! last one did); otherwise read when a write needs it.

use super::relay::Session;
use crate::protocol::frame::{self, FrameRef};
use crate::protocol::message::{self, fe, Bind, Parse};
use crate::router::classify;
use crate::router::keywords::takes_snapshot;
use std::collections::HashMap;

impl Session {
    /// Whether to read the transaction timestamp after this unit: it runs the transaction's
    /// first statement (after a BEGIN answered before, or with its BEGIN), no COPY follows,
    /// and the timestamp is neither known nor asked for.
    pub(super) fn read_txn_ts_after(&mut self, unit: &[u8], begins_txn: bool) -> bool {
        let in_txn = self.tx_status == b'T';
        let r = self.repl_mut();
        r.unnamed_portal_kept |= suspends_unnamed_portal(unit);
        if r.txn_ts.is_some()
            || !r.ts_ahead
            || r.ts_asked
            || r.unnamed_portal_kept
            || r.unit.as_ref().is_some_and(|u| u.copy)
        {
            return false;
        }
        // Not in the middle of an extended-protocol batch (a unit cut short by Flush): the
        // client goes on with it, and a Query there would end it.
        if unit.first() != Some(&fe::QUERY) && super::replica::last_tag(unit) != Some(fe::SYNC) {
            return false;
        }
        let after = if begins_txn {
            more_than_begin(unit)
        } else {
            in_txn
        };
        // Not before the transaction took its snapshot: a REPEATABLE READ transaction that
        // starts with SAVEPOINT, SET or LOCK takes it at its next statement.
        after && self.unit_takes_snapshot(unit)
    }

    /// Whether to read the main's transaction id after this unit, for a commit that prepares
    /// the followers under it (`commit_main`): after an autocommit write (in the transaction
    /// pgproxy opened around it) or a write in a transaction the followers joined, while the id
    /// is not known, and only where the Query cannot disturb the client (not after a COPY or a
    /// batch cut short by Flush, not while the unnamed portal may be suspended, not before the
    /// transaction's snapshot).
    pub(super) fn read_xid_after(&mut self, unit: &[u8]) -> bool {
        let in_txn = self.tx_status == b'T';
        let r = self.repl_mut();
        let mirrored = r.unit.as_ref().is_some_and(|u| u.mirror && !u.copy);
        let written_txn = in_txn && r.joined && r.txn_xid.is_none();
        let implicit = r.implicit;
        // The cheap checks first: this runs after every unit of a replicated session.
        let asked = mirrored
            && (implicit || written_txn)
            && !r.followers.is_empty()
            && !r.unnamed_portal_kept
            && !suspends_unnamed_portal(unit)
            && (unit.first() == Some(&fe::QUERY)
                || super::replica::last_tag(unit) == Some(fe::SYNC));
        // In a transaction, not before it took its snapshot (REPEATABLE READ: a LOCK or
        // SAVEPOINT first leaves that to the client's next statement).
        asked
            && self.commit_mode() == crate::config::CommitMode::TwoPhase
            && (implicit || self.unit_takes_snapshot(unit))
    }

    /// Some statement the unit runs may take a snapshot (`keywords::takes_snapshot`); a
    /// statement whose text is not known counts as taking one.
    fn unit_takes_snapshot(&self, unit: &[u8]) -> bool {
        let mut parsed: HashMap<&str, &str> = HashMap::new();
        let mut pos = 0;
        while let Ok(Some(n)) = frame::peek_frame_len(&unit[pos..], usize::MAX) {
            let f = FrameRef::new(&unit[pos..pos + n]);
            pos += n;
            let snapshot = match f.tag() {
                fe::QUERY => takes_snapshot(message::query_text(f.body()).unwrap_or("")),
                fe::PARSE => {
                    if let Some(p) = Parse::parse(f.body()) {
                        parsed.insert(p.name, p.query);
                    }
                    false
                }
                fe::BIND => match Bind::parse(f.body()) {
                    Some(b) => match parsed.get(b.statement) {
                        Some(q) => takes_snapshot(q),
                        None => self
                            .statements
                            .get(b.statement)
                            .is_none_or(|s| takes_snapshot(s.query())),
                    },
                    None => true,
                },
                fe::FUNCTION_CALL => true,
                _ => false,
            };
            if snapshot {
                return true;
            }
        }
        false
    }
}

/// A unit that starts with BEGIN also runs something else: a Query of several statements, or
/// several Executes.
fn more_than_begin(unit: &[u8]) -> bool {
    let mut pos = 0;
    let mut executes = 0;
    while let Ok(Some(n)) = frame::peek_frame_len(&unit[pos..], usize::MAX) {
        let f = FrameRef::new(&unit[pos..pos + n]);
        match f.tag() {
            fe::QUERY => {
                let text = message::query_text(f.body()).unwrap_or("");
                return classify(text).kinds.len() > 1;
            }
            fe::EXECUTE => executes += 1,
            _ => {}
        }
        pos += n;
    }
    executes > 1
}

/// An Execute of the unnamed portal with a row limit: the portal may stay open, suspended.
fn suspends_unnamed_portal(unit: &[u8]) -> bool {
    let mut pos = 0;
    while let Ok(Some(n)) = frame::peek_frame_len(&unit[pos..], usize::MAX) {
        let f = FrameRef::new(&unit[pos..pos + n]);
        pos += n;
        if f.tag() == fe::EXECUTE && f.body().first() == Some(&0) {
            let limit = f
                .body()
                .get(1..5)
                .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            if limit.is_some_and(|l| l > 0) {
                return true;
            }
        }
    }
    false
}
