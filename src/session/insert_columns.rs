//! An INSERT into a sharded table without a column list (`INSERT INTO contacts VALUES (…)`):
//! the router cannot tell which value is the key until it knows the table's column order. The
//! session reads it from the catalog of the current shard's main, on a pooled connection of
//! its own with the session's settings (its search_path resolves the name as the INSERT will),
//! and routes the unit again with it (`ShardMap::with_columns`). Read for every such unit,
//! never kept: a column dropped since would move the key's position, and a wrong position
//! would send rows to the wrong shard. Must not: run on the client's own connection (an error
//! there would abort its transaction).

use super::determinism::quote_lit;
use super::relay::Session;
use crate::protocol::frame::{self, FrameRef};
use crate::protocol::message::{self, fe, Bind, Parse};
use std::time::Duration;
use tracing::debug;

/// Longest wait for a pooled connection to read the columns on.
const CHECKOUT_LIMIT: Duration = Duration::from_secs(2);

impl Session {
    /// When the unit executes one statement, an INSERT the router refused for want of the
    /// table's columns, reads them and keeps them for routing this unit again
    /// (`ShardState::insert_columns`). Returns whether it did.
    pub(super) async fn read_insert_columns(&mut self, frames: &[u8]) -> bool {
        let Some(text) = self.only_text(frames) else {
            return false;
        };
        let Some(st) = self.shard_state() else {
            return false;
        };
        let table = match &st.plan(&text).statements[..] {
            [s] => match &s.needs_columns {
                Some(t) => t.clone(),
                None => return false,
            },
            _ => return false,
        };
        match self.table_columns(&table).await {
            Some(columns) if !columns.is_empty() => {
                if let Some(st) = self.shard_state() {
                    st.insert_columns = Some((table, columns));
                }
                true
            }
            _ => false,
        }
    }

    /// The one SQL text the unit executes: its Query (one), or the statement its Binds use
    /// (one, parsed in the unit or before). None for anything else.
    fn only_text(&self, frames: &[u8]) -> Option<String> {
        let mut text: Option<String> = None;
        let mut parsed: Option<(String, String)> = None;
        let mut pos = 0;
        while pos < frames.len() {
            let n = frame::peek_frame_len(&frames[pos..], usize::MAX).ok()??;
            let f = FrameRef::new(&frames[pos..pos + n]);
            pos += n;
            let this = match f.tag() {
                fe::QUERY => message::query_text(f.body())?.to_string(),
                fe::PARSE => {
                    let p = Parse::parse(f.body())?;
                    parsed = Some((p.name.to_string(), p.query.to_string()));
                    continue;
                }
                fe::BIND => {
                    let b = Bind::parse(f.body())?;
                    match &parsed {
                        Some((name, q)) if name == b.statement => q.clone(),
                        _ => self.statements.get(b.statement)?.query().to_string(),
                    }
                }
                _ => continue,
            };
            if text.as_ref().is_some_and(|t| *t != this) {
                return None;
            }
            text = Some(this);
        }
        text
    }

    /// The columns of `table` (as an INSERT names it) in table order, read on the current
    /// shard's main; None if they could not be read (no such table visible there, a node or
    /// pool problem, no free connection within [`CHECKOUT_LIMIT`]).
    async fn table_columns(&mut self, table: &str) -> Option<Vec<String>> {
        let cluster = self.shared.cluster.clone();
        let settings = self.settings.clone();
        let repl = self.repl.as_ref()?;
        let shard = repl.shard;
        let main = cluster.topology.main(shard)?;
        let pool = cluster.pool(&repl.user, &repl.db, shard, main);
        // Not waiting long: a session-mode client may hold the pool's last connection.
        let mut conn = match tokio::time::timeout(CHECKOUT_LIMIT, pool.checkout()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                debug!(error = %e, "no connection to read an INSERT's table columns");
                return None;
            }
            Err(_) => {
                debug!("no free connection to read an INSERT's table columns");
                return None;
            }
        };
        if let Err((why, _)) = super::followers::apply_settings(&mut conn, &settings).await {
            debug!(error = %why, "could not read an INSERT's table columns");
            return None;
        }
        let sql = format!(
            "SELECT a.attname FROM pg_catalog.pg_attribute a \
             WHERE a.attrelid = pg_catalog.to_regclass({}) AND a.attnum > 0 \
             AND NOT a.attisdropped ORDER BY a.attnum",
            quote_lit(table)
        );
        let rows = match super::catalog::rows(&mut conn, &sql).await {
            Ok(r) => {
                conn.release();
                r
            }
            Err(e) => {
                debug!(error = %e, "could not read an INSERT's table columns");
                return None;
            }
        };
        match rows {
            Ok(rows) => Some(
                rows.into_iter()
                    .filter_map(|r| r.into_iter().next()?)
                    .collect(),
            ),
            Err(why) => {
                debug!(error = %why, "could not read an INSERT's table columns");
                None
            }
        }
    }
}
