//! Extended-protocol messages on the relay: Parse/Bind/Describe/Close with prepared statements
//! that survive transaction pooling (renamed to shared `pgproxy_<n>` statements, injected on a
//! server connection that lacks them, capped per connection), and the messages answered
//! without a server connection.

use super::expect::Expect;
use super::relay::Session;
use super::SessionError;
use crate::pool::Pooled;
use crate::protocol::frame::FrameRef;
use crate::protocol::message::{self, be, fe, Bind, Parse, Target};
use crate::protocol::Frame;
use bytes::BufMut;
use std::sync::atomic::Ordering;

/// Where a client's statement stands on the attached server connection.
enum Prepared {
    /// pgproxy does not know the client's name: the message goes on as it is, and the server
    /// answers as PostgreSQL would.
    Unknown,
    /// Prepared there under this name.
    As(String),
    /// The client's message must not be sent: the statement's result changed (the client gets
    /// PostgreSQL's error), or the batch failed or the server was lost meanwhile.
    Withheld,
}

impl Session {
    /// Messages that need no server connection when none is attached: Sync and Flush with
    /// nothing pending, Close of a statement, and Parse of a statement a server already
    /// accepted (it is prepared for real before its first Bind). This keeps a client that
    /// prepares statements between transactions (pgbench -M prepared, most drivers) from
    /// holding or waiting for a server connection.
    pub(super) fn answer_without_server(&mut self, f: FrameRef<'_>) -> Result<bool, SessionError> {
        match f.tag() {
            fe::SYNC => {
                self.to_client
                    .put_slice(message::ready_for_query(b'I').raw());
                Ok(true)
            }
            fe::FLUSH => Ok(true),
            fe::CLOSE => {
                let t = Target::parse(f.body())
                    .ok_or_else(|| SessionError::Protocol("malformed Close message".into()))?;
                if t.kind != b'S' {
                    return Ok(false);
                }
                self.statements.close(t.name);
                self.to_client
                    .put_slice(Frame::new(be::CLOSE_COMPLETE, &[]).raw());
                Ok(true)
            }
            // An unnamed Parse always goes to a server (checked before parsing: it is the
            // `-M extended` hot path, and `on_parse` validates it).
            fe::PARSE if f.body().first() == Some(&0) => Ok(false),
            fe::PARSE => {
                let p = Parse::parse(f.body())
                    .ok_or_else(|| SessionError::Protocol("malformed Parse message".into()))?;
                if p.name.is_empty() {
                    return Ok(false);
                }
                let stmt = self.intern_statement(p.query, p.param_types);
                if !stmt.validated.load(Ordering::Relaxed) {
                    return Ok(false);
                }
                let name = p.name.to_string();
                self.statements.define(&name, stmt);
                self.to_client
                    .put_slice(Frame::new(be::PARSE_COMPLETE, &[]).raw());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The client's search_path as pgproxy last read it ("" before any), part of a shared
    /// statement's identity.
    pub(super) fn search_path(&self) -> &str {
        self.settings.get("search_path").map_or("", String::as_str)
    }

    /// A SET of search_path (also SET LOCAL, set_config, RESET ALL) ran since pgproxy last
    /// read the client's settings: `search_path()` may not be what the server uses now.
    pub(super) fn search_path_unread(&self) -> bool {
        self.dirty.contains("search_path")
    }

    /// The shared statement for a client's named Parse; a statement of its own while its
    /// search_path may have changed since pgproxy last read it (`SET [LOCAL] search_path` in
    /// the current transaction): the text may name other tables then.
    pub(super) fn intern_statement(
        &self,
        query: &str,
        param_types: &[u8],
    ) -> std::sync::Arc<super::statements::Statement> {
        let statements = &self.shared.statements;
        if self.search_path_unread() {
            statements.private(query, param_types)
        } else {
            statements.intern(query, param_types, self.search_path())
        }
    }

    pub(super) fn next_seq(&mut self) -> u64 {
        self.exec_seq += 1;
        self.copy_window = Some(self.exec_seq);
        self.exec_seq
    }

    pub(super) fn server(&mut self) -> &mut Pooled {
        self.server
            .as_mut()
            .expect("ensure_server attached a connection")
    }

    pub(super) fn on_parse(&mut self, f: FrameRef<'_>) -> Result<(), SessionError> {
        let malformed = || SessionError::Protocol("malformed Parse message".into());
        if f.body().first() == Some(&0) {
            // The unnamed statement. The search_path, when known, lets a repeated Parse keep
            // its determinism plan.
            let path = if self.search_path_unread() {
                ""
            } else {
                // Never empty once read ("" would mean unknown).
                self.settings
                    .get("search_path")
                    .map_or("\u{0}default", String::as_str)
            };
            let stmt = self
                .shared
                .statements
                .unnamed_again(f.raw(), path, self.statements.last_unnamed.as_ref())
                .ok_or_else(malformed)?;
            self.since_sync = true;
            self.statements.last_unnamed = Some(stmt.clone());
            self.server().unnamed = Some(stmt.id);
            self.statements.define("", stmt);
            self.queue.push_back(Expect::Parse { stmt: None });
            self.to_server.put_slice(f.raw());
            return Ok(());
        }
        let p = Parse::parse(f.body()).ok_or_else(malformed)?;
        self.since_sync = true;
        let stmt = self.intern_statement(p.query, p.param_types);
        let name = p.name.to_string();
        self.statements.define(&name, stmt.clone());
        // In a failed transaction PostgreSQL refuses the Parse (25P02) unless the text ends the
        // transaction; inside a transaction with requests still in flight, one of them may be
        // failing it right now (a client may send the next request as soon as it reads an
        // ErrorResponse, before its ReadyForQuery). Let the server judge, on its unnamed
        // statement (pgproxy's shared one, maybe prepared there already, stays as it is).
        let may_be_failed =
            self.tx_status == b'E' || (self.tx_status == b'T' && !self.queue.is_empty());
        if may_be_failed {
            self.server().unnamed = None;
            self.queue.push_back(Expect::Parse { stmt: None });
            self.to_server
                .put_slice(Parse::encode("", p.query, p.param_types).raw());
            return Ok(());
        }
        if self.server().prepared.contains(stmt.id) {
            self.push_synthetic(Frame::new(be::PARSE_COMPLETE, &[]));
        } else {
            self.server().prepared.insert(stmt.id);
            self.to_server.put_slice(stmt.parse_again().raw());
            let id = stmt.id;
            self.queue.push_back(Expect::Parse { stmt: Some(stmt) });
            self.enforce_prepared_cap(id);
        }
        Ok(())
    }

    /// Makes sure the attached server holds the statement behind a client name, and that it
    /// still returns what the client was told (see `shape.rs`).
    async fn prepare_on_server(&mut self, client_name: &str) -> Result<Prepared, SessionError> {
        let Some(stmt) = self.statements.get(client_name).cloned() else {
            return Ok(Prepared::Unknown);
        };
        if let Some(e) = &stmt.effects {
            let e = e.as_ref().clone();
            self.note_effects(&e);
        }
        let server = self.server.as_mut().expect("attached");
        let injected = if client_name.is_empty() {
            let fresh = server.unnamed != Some(stmt.id);
            if fresh {
                server.unnamed = Some(stmt.id);
                self.queue.push_back(Expect::InjectedParse { stmt: None });
                self.to_server.put_slice(stmt.parse_again().raw());
            }
            fresh
        } else if !server.prepared.contains(stmt.id) {
            server.prepared.insert(stmt.id);
            self.to_server.put_slice(stmt.parse_again().raw());
            self.queue.push_back(Expect::InjectedParse {
                stmt: Some(stmt.clone()),
            });
            self.enforce_prepared_cap(stmt.id);
            true
        } else {
            false
        };
        if injected && !self.check_shape(&stmt).await? {
            return Ok(Prepared::Withheld);
        }
        Ok(Prepared::As(stmt.server_name.clone()))
    }

    /// Keeps a server connection under `max_prepared_statements`: closes the least recently used
    /// shared statements (never `just_added`). Portals already bound keep working; a statement
    /// closed here is prepared again when next needed.
    fn enforce_prepared_cap(&mut self, just_added: u64) {
        let cap = self.pool.settings_ref().max_prepared;
        while cap > 0 && self.server().prepared.len() > cap {
            let Some(id) = self.server().prepared.pop_least_recent(just_added) else {
                break;
            };
            self.queue_close(id);
        }
    }

    /// Closes shared statement `id` on the attached server (already out of its prepared set);
    /// its CloseComplete is dropped.
    pub(super) fn queue_close(&mut self, id: u64) {
        let close = Target::encode(fe::CLOSE, b'S', &format!("pgproxy_{id}"));
        self.to_server.put_slice(close.raw());
        self.queue.push_back(Expect::InjectedClose { id });
    }

    pub(super) async fn on_bind(&mut self, f: FrameRef<'_>) -> Result<(), SessionError> {
        let b = Bind::parse(f.body())
            .ok_or_else(|| SessionError::Protocol("malformed Bind message".into()))?;
        self.since_sync = true;
        self.pipeline_ran = true;
        match self.prepare_on_server(b.statement).await? {
            Prepared::Withheld => return Ok(()),
            Prepared::As(name) if name != b.statement => {
                let g = Bind::encode(b.portal, &name, b.rest);
                self.to_server.put_slice(g.raw());
            }
            _ => self.to_server.put_slice(f.raw()),
        }
        let stmt = self.statements.get(b.statement).cloned();
        self.statements.bind_portal(b.portal, stmt.clone());
        self.queue.push_back(Expect::Bind { stmt });
        Ok(())
    }

    pub(super) async fn on_describe(&mut self, f: FrameRef<'_>) -> Result<(), SessionError> {
        let t = Target::parse(f.body())
            .ok_or_else(|| SessionError::Protocol("malformed Describe message".into()))?;
        self.since_sync = true;
        let stmt = if t.kind == b'S' {
            match self.prepare_on_server(t.name).await? {
                Prepared::Withheld => return Ok(()),
                Prepared::As(name) if name != t.name => self
                    .to_server
                    .put_slice(Target::encode(fe::DESCRIBE, b'S', &name).raw()),
                _ => self.to_server.put_slice(f.raw()),
            }
            self.statements.get(t.name).cloned()
        } else {
            self.to_server.put_slice(f.raw());
            self.statements.portal(t.name).cloned()
        };
        self.queue.push_back(Expect::Describe { stmt });
        Ok(())
    }

    pub(super) fn on_close(&mut self, f: FrameRef<'_>) -> Result<(), SessionError> {
        let t = Target::parse(f.body())
            .ok_or_else(|| SessionError::Protocol("malformed Close message".into()))?;
        self.since_sync = true;
        if t.kind == b'S' && !t.name.is_empty() && self.statements.get(t.name).is_some() {
            // Shared on the server: only the client's name goes away.
            self.statements.close(t.name);
            self.push_synthetic(Frame::new(be::CLOSE_COMPLETE, &[]));
            return Ok(());
        }
        if t.kind == b'S' && t.name.is_empty() {
            self.statements.close("");
            self.server().unnamed = None;
        }
        if t.kind == b'P' {
            self.statements.close_portal(t.name);
        }
        self.queue.push_back(Expect::Close);
        self.to_server.put_slice(f.raw());
        Ok(())
    }

    /// Queues a response pgproxy produces itself, in order with the server's.
    pub(super) fn push_synthetic(&mut self, f: Frame) {
        if self.queue.is_empty() {
            self.to_client.put_slice(f.raw());
        } else {
            self.queue.push_back(Expect::Synthetic(f));
        }
    }

    /// `DEALLOCATE name` for a protocol-level statement pgproxy renamed: answered locally
    /// (the statement stays on the server for other clients).
    pub(super) fn try_local_deallocate(&mut self, sql: &str) -> bool {
        let t = sql.trim_start();
        if !t
            .as_bytes()
            .first()
            .is_some_and(|b| b.eq_ignore_ascii_case(&b'd'))
        {
            return false;
        }
        let t = t.trim_end().trim_end_matches(';').trim();
        let mut words = t.split_whitespace();
        if !words
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case("deallocate"))
        {
            return false;
        }
        let mut name = words.next().unwrap_or("");
        if name.eq_ignore_ascii_case("prepare") {
            name = words.next().unwrap_or("");
        }
        if words.next().is_some() || name.is_empty() {
            return false;
        }
        let name = name.trim_matches('"');
        if name.eq_ignore_ascii_case("all") || self.statements.get(name).is_none() {
            return false;
        }
        self.statements.close(name);
        self.push_synthetic(message::command_complete("DEALLOCATE"));
        let status = self.tx_status_for_client();
        self.push_synthetic(message::ready_for_query(status));
        true
    }
}
