//! A split INSERT on replicated shards: each shard's part must write the same rows on every
//! node of the shard, so it goes through the same determinism rewrite as a write on one
//! shard (`router::determinism`): column defaults (a serial id's nextval), clock functions,
//! random() and uuids are evaluated once on that shard's main, inside the transaction
//! pgproxy opened there, and every node of the shard gets the part with those values as
//! literals; the other nodes' sequences are moved to the value the main handed out.

use super::determinism::{table_defaults, values_on, Loaded};
use super::keyless::{Answer, Participant};
use super::keyless_request::Request;
use super::keyless_split::failed_at;
use super::relay::Session;
use crate::backend::BackendError;
use crate::config::NondeterministicPolicy;
use crate::protocol::message;
use crate::router::determinism::{self as det, Planned};
use std::collections::HashMap;
use std::sync::Arc;

/// How making the parts deterministic went.
pub(super) enum PartsMade {
    /// The parts (maybe rewritten) are ready to run.
    Ready,
    /// A shard's main failed a query pgproxy ran for them: the answers, one per participant.
    Failed(Vec<Result<Answer, BackendError>>),
    /// Nothing ran, and the client gets this error: pgproxy cannot make a part deterministic
    /// (0A000), or another node of a shard failed to follow its main.
    Own(crate::protocol::frame::Frame),
}

impl Session {
    /// Rewrites the parts of `req.split` whose shard has several nodes taking part (see the
    /// module doc); for the simple protocol the shards' requests are rebuilt.
    pub(super) async fn split_deterministic(
        &mut self,
        req: &mut Request,
        parts: &mut [Participant],
    ) -> PartsMade {
        let Some(mut split) = req.split.take() else {
            return PartsMade::Ready;
        };
        let made = self.parts_deterministic(&mut split, parts).await;
        if matches!(made, PartsMade::Ready) && !req.extended {
            req.per_shard = split
                .parts
                .iter()
                .map(|p| (p.shard, message::query(&p.sql).raw().to_vec()))
                .collect();
        }
        req.split = Some(split);
        made
    }

    async fn parts_deterministic(
        &mut self,
        split: &mut crate::router::route::Split,
        parts: &mut [Participant],
    ) -> PartsMade {
        let scope = self.cache_scope();
        let policy = self.shared.cluster.config().replication.nondeterministic;
        for part in &mut split.parts {
            let s = part.shard;
            if parts.iter().filter(|p| p.shard == s).count() < 2 {
                continue;
            }
            let Some(m) = parts.iter().position(|p| p.main && p.shard == s) else {
                continue;
            };
            // The defaults of the table it writes to.
            let mut loaded = HashMap::new();
            for table in det::write_targets(&part.sql) {
                let cached = scope
                    .as_ref()
                    .and_then(|db| self.shared.schema.table(db, &table));
                let t = match cached {
                    Some(t) => t,
                    None => match table_defaults(&mut parts[m].conn, &table).await {
                        Ok(Ok(t)) => {
                            let t = Arc::new(t);
                            if let Some(db) = &scope {
                                self.shared.schema.keep_table(db, &table, t.clone());
                            }
                            t
                        }
                        Ok(Err(e)) => return failed(parts, m, e),
                        Err(e) => return PartsMade::Failed(failed_at(parts, m, Err(e))),
                    },
                };
                loaded.insert(table, t);
            }
            let plan = match det::plan(&part.sql, &Loaded(loaded)) {
                Planned::Unchanged => continue,
                Planned::Refused(why) => match policy {
                    NondeterministicPolicy::Refuse => {
                        return PartsMade::Own(message::error_response(
                            message::Severity::Error,
                            crate::protocol::sqlstate::FEATURE_NOT_SUPPORTED,
                            &format!("this INSERT's rows belong to several shards and pgproxy cannot make a shard's part identical on its nodes: {why}"),
                            Some("write per key"),
                        ))
                    }
                    NondeterministicPolicy::Warn => {
                        self.shared.schema.run_anyway(&why);
                        continue;
                    }
                },
                Planned::Rewrite(plan) => plan,
            };
            let exprs: Vec<String> = plan.needs.iter().map(|n| n.main_sql()).collect();
            let values: Vec<String> = match values_on(&mut parts[m].conn, &exprs).await {
                Ok(Ok(row)) => row.into_iter().map(Option::unwrap_or_default).collect(),
                Ok(Err(e)) => return failed(parts, m, e),
                Err(e) => return PartsMade::Failed(failed_at(parts, m, Err(e))),
            };
            // The other nodes' sequences catch up with the main's before the part runs.
            let mut catch_up = det::CatchUp::default();
            for (n, v) in plan.needs.iter().zip(&values) {
                catch_up.add(n, v);
            }
            let catch_up = catch_up.into_sql();
            if !catch_up.is_empty() {
                let sql = catch_up.join("; ");
                for (i, p) in parts.iter_mut().enumerate() {
                    if p.shard != s || i == m {
                        continue;
                    }
                    let ok = super::keyless::run(&mut p.conn, message::query(&sql).raw())
                        .await
                        .is_ok_and(|a| a.error.is_none());
                    if !ok {
                        return PartsMade::Own(message::error_response(
                            message::Severity::Error,
                            crate::protocol::sqlstate::SERIALIZATION_FAILURE,
                            "a node of a shard could not follow its main's sequence during a write across shards; nothing was written",
                            Some("retry the statement"),
                        ));
                    }
                }
            }
            part.sql = plan.render(&values);
        }
        PartsMade::Ready
    }
}

/// Participant `i` failed a query pgproxy ran (its transaction is aborted there).
fn failed(parts: &[Participant], i: usize, e: crate::protocol::frame::Frame) -> PartsMade {
    let a = Answer {
        error: Some(e),
        status: b'E',
        ..Answer::default()
    };
    PartsMade::Failed(failed_at(parts, i, Ok(a)))
}
