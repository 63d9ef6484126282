//! Prepared statements that survive transaction pooling.
//!
//! A client's named statement is mapped to a pgproxy statement, identified by its text and
//! parameter types and shared by every client; on the server it is prepared under a name
//! pgproxy controls (`pgproxy_<id>`), once per server connection, and never closed by a client
//! (another client may use it). A client's Close only forgets its own name.

use crate::protocol::frame::{Frame, FrameRef};
use crate::protocol::message::Parse;
use crate::protocol::rows::ResultShape;
use crate::router::determinism::Planned;
use crate::router::{classify, session_effects, Classified, Effects};
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

/// One distinct statement (text + parameter types).
#[derive(Debug)]
pub struct Statement {
    /// pgproxy's id.
    pub id: u64,
    /// Name on server connections ("" for a client's unnamed statement).
    pub server_name: String,
    /// A ready Parse frame under `server_name`.
    pub parse: Frame,
    /// What executing it does to session state (None: nothing).
    pub effects: Option<Box<Effects>>,
    /// A server accepted this Parse once: later Parses of it may be answered without a server
    /// (the real Parse then happens before its first Bind).
    pub validated: AtomicBool,
    /// Replication: what it does (classified once).
    pub class: OnceLock<Classified>,
    /// Replication: its determinism plan, with the schema epoch it was made under.
    pub det_plan: Mutex<Option<(u64, Arc<Planned>)>>,
    /// The result columns a client was first told (Describe): when pgproxy prepares the
    /// statement on another server connection, the new plan must return the same, as
    /// PostgreSQL requires of a prepared statement.
    pub shape: OnceLock<ResultShape>,
    /// A repeated unnamed statement: its predecessor's shape, taken as its own when the first
    /// Describe matches it (saves building one per transaction; `Statement::again`).
    pub shape_hint: Option<ResultShape>,
    /// Its text might start a COPY FROM STDIN.
    pub may_copy_in: bool,
    /// The search_path it was prepared under (part of its identity).
    pub search_path: Arc<str>,
    /// The schema epoch it was made in (see `StatementCache::schema_changed`).
    pub epoch: u64,
    /// The parameter types a client was told (ParameterDescription body), when the client's
    /// Parse left some unspecified: prepared again elsewhere, the statement keeps them, as
    /// PostgreSQL's does (after an ALTER, the node would infer others, and the client's
    /// binary parameters would no longer fit).
    pub param_types: OnceLock<Bytes>,
}

impl Statement {
    /// The query text.
    pub fn query(&self) -> &str {
        Parse::parse(self.parse.body())
            .map(|p| p.query)
            .unwrap_or("")
    }

    fn new(id: u64, server_name: String, parse: Frame, query: &str) -> Statement {
        let e = session_effects(query);
        Statement {
            id,
            server_name,
            parse,
            effects: (!e.is_empty()).then(|| Box::new(e)),
            validated: AtomicBool::new(false),
            class: OnceLock::new(),
            det_plan: Mutex::new(None),
            shape: OnceLock::new(),
            shape_hint: None,
            may_copy_in: crate::router::keywords::may_copy_in(query),
            search_path: Arc::from(""),
            epoch: 0,
            param_types: OnceLock::new(),
        }
    }

    /// A new unnamed statement for a Parse with the same bytes as this one's (drivers send
    /// the same unnamed Parse again and again): what depends on the text alone is carried
    /// over instead of worked out again; what a server told (shape, parameter types) starts
    /// afresh, as it would for any new statement (the shape kept as `shape_hint`). The
    /// determinism plan is carried over when both were parsed under the same known
    /// search_path (`search_path`, "" if unknown); it holds the schema epoch it was made in,
    /// checked where it is used.
    pub fn again(&self, id: u64, search_path: &str) -> Statement {
        let same_path = !search_path.is_empty() && *self.search_path == *search_path;
        let plan = if same_path {
            self.det_plan.lock().clone()
        } else {
            None
        };
        Statement {
            id,
            server_name: self.server_name.clone(),
            parse: self.parse.clone(),
            effects: self.effects.clone(),
            validated: AtomicBool::new(false),
            class: self.class.clone(),
            det_plan: Mutex::new(plan),
            shape: OnceLock::new(),
            // Under the same known search_path the columns are likely the same: checked
            // against the first Describe (a schema change, even behind pgproxy's back, is seen).
            shape_hint: if same_path {
                self.shape.get().cloned()
            } else {
                None
            },
            may_copy_in: self.may_copy_in,
            search_path: if same_path {
                self.search_path.clone()
            } else {
                Arc::from(search_path)
            },
            epoch: self.epoch,
            param_types: OnceLock::new(),
        }
    }

    /// The Parse to prepare it on another server connection: with the parameter types its
    /// clients were told, once recorded. Every client of a shared statement is told the same
    /// types and every server connection prepares it with them (after a schema change pgproxy
    /// did not see, a node would infer others: a client told `int4` by one connection would
    /// send `int4` binary values to another that expects `numeric`).
    pub fn parse_again(&self) -> Frame {
        match self.param_types.get() {
            Some(types) => Parse::encode(&self.server_name, self.query(), types),
            None => self.parse.clone(),
        }
    }

    /// Records the parameter types of a ParameterDescription, if the client's Parse left some
    /// unspecified and every type is built in (user-defined type OIDs differ between nodes).
    pub fn record_param_types(&self, description: &[u8]) {
        if self.param_types.get().is_some() {
            return;
        }
        let Some(p) = Parse::parse(self.parse.body()) else {
            return;
        };
        let given = p.param_types.get(2..).unwrap_or(&[]);
        let unspecified = given.chunks(4).any(|c| c == [0, 0, 0, 0]) || p.param_types.len() <= 2;
        let oids = description.get(2..).unwrap_or(&[]);
        let built_in = oids
            .chunks(4)
            .all(|c| c.len() == 4 && u32::from_be_bytes([c[0], c[1], c[2], c[3]]) < 16384);
        if unspecified && built_in && oids.len() >= given.len() {
            let _ = self.param_types.set(Bytes::copy_from_slice(description));
        }
    }

    /// What executing it does (for replication), classified on first use.
    pub fn classified(&self) -> &Classified {
        self.class.get_or_init(|| classify(self.query()))
    }
}

/// Query text, parameter type bytes and the search_path it was prepared under (PostgreSQL
/// resolves the text's names with it: the same text under another search_path is another
/// statement).
type StatementKey = (Arc<str>, Bytes, Arc<str>);

/// All statements known to this process. Entries are few compared to executions; they stay
/// until restart (bounded by `MAX_ENTRIES`, beyond which new statements get fresh ids and are
/// not shared).
#[derive(Default)]
pub struct StatementCache {
    map: Mutex<HashMap<StatementKey, Arc<Statement>>>,
    next: std::sync::atomic::AtomicU64,
    /// Bumped when a schema change ran through pgproxy: a Parse after it makes a new shared
    /// statement, so that the node infers its types afresh (as PostgreSQL does for a new
    /// prepared statement), while the clients of the old one keep theirs.
    epoch: std::sync::atomic::AtomicU64,
}

const MAX_ENTRIES: usize = 100_000;

impl StatementCache {
    /// The shared statement for this text and parameter types under this search_path.
    pub fn intern(&self, query: &str, param_types: &[u8], search_path: &str) -> Arc<Statement> {
        let mut map = self.map.lock();
        let key: StatementKey = (
            Arc::from(query),
            Bytes::copy_from_slice(param_types),
            Arc::from(search_path),
        );
        let epoch = self.epoch.load(std::sync::atomic::Ordering::Acquire);
        if let Some(s) = map.get(&key).filter(|s| s.epoch == epoch) {
            return s.clone();
        }
        let stmt = Arc::new(self.named(query, param_types, key.2.clone(), epoch));
        if map.len() < MAX_ENTRIES {
            map.insert(key, stmt.clone());
        }
        stmt
    }

    /// A statement of one client only, not kept in the cache: prepared while the client's
    /// search_path may differ from what pgproxy last read (a SET in the current transaction),
    /// its names may resolve to other tables than the same text does for anyone else.
    pub fn private(&self, query: &str, param_types: &[u8]) -> Arc<Statement> {
        Arc::new(self.named(query, param_types, Arc::from("\u{0}private"), 0))
    }

    /// A new statement under a server name of pgproxy's (`pgproxy_<id>`).
    fn named(
        &self,
        query: &str,
        param_types: &[u8],
        search_path: Arc<str>,
        epoch: u64,
    ) -> Statement {
        let id = self.next_id();
        let server_name = format!("pgproxy_{id}");
        let parse = Parse::encode(&server_name, query, param_types);
        let mut stmt = Statement::new(id, server_name, parse, query);
        stmt.search_path = search_path;
        stmt.epoch = epoch;
        stmt
    }

    /// A client's unnamed statement: not shared, kept as the client's own Parse frame.
    pub fn unnamed(&self, parse: Frame, query: &str) -> Arc<Statement> {
        Arc::new(Statement::new(self.next_id(), String::new(), parse, query))
    }

    /// A client's unnamed Parse (`raw`: the whole message) under `search_path` ("" if not
    /// known): from the client's previous unnamed statement when the bytes are the same
    /// (`Statement::again`; they were valid then, so they are not parsed again: the
    /// `-M extended` hot path), else made afresh like `unnamed`. None if the message is
    /// malformed.
    pub fn unnamed_again(
        &self,
        raw: &[u8],
        search_path: &str,
        previous: Option<&Arc<Statement>>,
    ) -> Option<Arc<Statement>> {
        if let Some(prev) = previous.filter(|prev| prev.parse.raw() == raw) {
            return Some(Arc::new(prev.again(self.next_id(), search_path)));
        }
        let query = Parse::parse(FrameRef::new(raw).body())?.query;
        // A copy: a slice of the read buffer would keep the whole buffer alive.
        let parse = Frame::from_raw(Bytes::copy_from_slice(raw));
        let mut s = Statement::new(self.next_id(), String::new(), parse, query);
        s.search_path = Arc::from(search_path);
        Some(Arc::new(s))
    }

    fn next_id(&self) -> u64 {
        self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
    }

    /// A schema change ran (a CREATE, ALTER or DROP completed).
    pub fn schema_changed(&self) {
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Forgets a statement (its plan went stale), so the next Parse of its text makes a new one.
    pub fn evict(&self, stmt: &Statement) {
        let Some(p) = Parse::parse(stmt.parse.body()) else {
            return;
        };
        let key: StatementKey = (
            Arc::from(p.query),
            Bytes::copy_from_slice(p.param_types),
            stmt.search_path.clone(),
        );
        let mut map = self.map.lock();
        if map.get(&key).is_some_and(|s| s.id == stmt.id) {
            map.remove(&key);
        }
    }

    /// Number of distinct statements.
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    /// True when no statement was ever prepared.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One client's statement names.
#[derive(Default)]
pub struct ClientStatements {
    named: HashMap<String, Arc<Statement>>,
    /// The client's current unnamed statement.
    pub unnamed: Option<Arc<Statement>>,
    /// The client's last unnamed Parse, still known after the statement is gone (a simple
    /// Query drops it): the next Parse of the same bytes starts from it.
    pub last_unnamed: Option<Arc<Statement>>,
    /// The statement behind each portal the client bound in the current transaction (to know
    /// what a Describe of a portal describes).
    portals: HashMap<String, Arc<Statement>>,
    /// The statement behind the unnamed portal.
    unnamed_portal: Option<Arc<Statement>>,
    /// Some statement the client defined reads currval/lastval (never reset: it only spares
    /// the look-up at each checkout for the clients that have none).
    pub any_sequence_state: bool,
}

impl ClientStatements {
    /// Binds a client name to a statement (the unnamed one for "").
    pub fn define(&mut self, name: &str, stmt: Arc<Statement>) {
        self.any_sequence_state |= stmt.effects.as_ref().is_some_and(|e| e.sequence_state);
        if name.is_empty() {
            self.unnamed = Some(stmt);
        } else {
            self.named.insert(name.to_string(), stmt);
        }
    }

    /// The statement behind a client name.
    pub fn get(&self, name: &str) -> Option<&Arc<Statement>> {
        if name.is_empty() {
            self.unnamed.as_ref()
        } else {
            self.named.get(name)
        }
    }

    /// Forgets a client name.
    pub fn close(&mut self, name: &str) {
        if name.is_empty() {
            self.unnamed = None;
        } else {
            self.named.remove(name);
        }
    }

    /// Forgets every name (DISCARD ALL / DEALLOCATE ALL).
    pub fn clear(&mut self) {
        self.named.clear();
        self.unnamed = None;
    }

    /// A Bind made `portal` a portal of `stmt`.
    pub fn bind_portal(&mut self, portal: &str, stmt: Option<Arc<Statement>>) {
        if portal.is_empty() {
            // The common case: no allocation.
            self.unnamed_portal = stmt;
        } else if let Some(s) = stmt {
            self.portals.insert(portal.to_string(), s);
        } else {
            self.portals.remove(portal);
        }
    }

    /// The statement behind a portal.
    pub fn portal(&self, portal: &str) -> Option<&Arc<Statement>> {
        if portal.is_empty() {
            self.unnamed_portal.as_ref()
        } else {
            self.portals.get(portal)
        }
    }

    /// A portal was closed.
    pub fn close_portal(&mut self, portal: &str) {
        self.bind_portal(portal, None);
    }

    /// The transaction ended: PostgreSQL dropped its portals.
    pub fn end_portals(&mut self) {
        self.unnamed_portal = None;
        if !self.portals.is_empty() {
            self.portals.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_and_types_share_one_statement() {
        let c = StatementCache::default();
        let a = c.intern("select $1", &[0, 1, 0, 0, 0, 23], "");
        let b = c.intern("select $1", &[0, 1, 0, 0, 0, 23], "");
        let d = c.intern("select $1", &[0, 0], "");
        let e = c.intern("select $1", &[0, 1, 0, 0, 0, 23], "s2, public");
        assert_ne!(a.id, e.id, "another search_path: another statement");
        c.schema_changed();
        let f = c.intern("select $1", &[0, 1, 0, 0, 0, 23], "");
        assert_ne!(a.id, f.id, "after a schema change: a new statement");
        assert_eq!(f.id, c.intern("select $1", &[0, 1, 0, 0, 0, 23], "").id);
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, d.id);
        assert_eq!(
            Parse::parse(a.parse.body()).map(|p| p.name),
            Some(a.server_name.as_str())
        );
    }

    #[test]
    fn client_names_are_private() {
        let c = StatementCache::default();
        let mut x = ClientStatements::default();
        let mut y = ClientStatements::default();
        x.define("s", c.intern("select 1", &[0, 0], ""));
        y.define("s", c.intern("select 2", &[0, 0], ""));
        assert_eq!(x.get("s").expect("defined").query(), "select 1");
        assert_eq!(y.get("s").expect("defined").query(), "select 2");
        assert!(c.intern("set x = 1", &[0, 0], "").effects.is_some());
        assert!(c.intern("select 1", &[0, 0], "").effects.is_none());
        x.close("s");
        assert!(x.get("s").is_none());
    }

    #[test]
    fn a_repeated_unnamed_parse_starts_from_the_previous_one() {
        let c = StatementCache::default();
        let parse = |q: &str| Parse::encode("", q, &[0, 0]);
        let set = parse("set search_path = a");
        let a = c.unnamed_again(set.raw(), "p", None).expect("well-formed");
        assert!(a.effects.is_some());
        let none: HashMap<String, crate::router::determinism::TableDefaults> = HashMap::new();
        let plan = Arc::new(crate::router::determinism::plan(
            "set search_path = a",
            &none,
        ));
        *a.det_plan.lock() = Some((0, plan));
        let _ = a.shape.set(ResultShape::of(b'n', &[]).expect("NoData"));
        // Same bytes, same search_path: a new statement with the text's work carried over.
        let b = c
            .unnamed_again(set.raw(), "p", Some(&a))
            .expect("same bytes");
        assert_ne!(a.id, b.id);
        assert!(b.effects.is_some());
        assert!(b.det_plan.lock().is_some());
        assert!(b.shape.get().is_none(), "what a server said starts afresh");
        assert!(b.shape_hint.is_some(), "the columns last told, as a hint");
        let _ = b.shape.set(ResultShape::of(b'n', &[]).expect("NoData"));
        // Another search_path, or an unknown one: no plan carried over.
        let d = c
            .unnamed_again(set.raw(), "q", Some(&b))
            .expect("same bytes");
        assert!(d.det_plan.lock().is_none());
        assert!(d.shape_hint.is_none());
        *b.det_plan.lock() = None;
        let e = c
            .unnamed_again(set.raw(), "", Some(&a))
            .expect("same bytes");
        assert!(e.det_plan.lock().is_none());
        // Other bytes: made afresh.
        let sel = parse("select 1");
        let f = c
            .unnamed_again(sel.raw(), "p", Some(&a))
            .expect("well-formed");
        assert!(f.effects.is_none());
        assert_eq!(f.query(), "select 1");
        // Malformed (no terminator after the text): refused.
        let bad = Frame::new(b'P', b"\0select 1");
        assert!(c.unnamed_again(bad.raw(), "p", None).is_none());
    }
}
