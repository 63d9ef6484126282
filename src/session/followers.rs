//! The followers of a replicated session: joining them to a transaction (checkout, settings,
//! the transaction so far), sending them queued units, reading and comparing their outcomes,
//! and detaching a node that failed or disagreed.

use super::follower::Follower;
use super::relay::Session;
use super::replica::join;
use crate::cluster::DetachCause;
use crate::pool::PoolError;
use std::collections::BTreeMap;
use tracing::warn;

impl Session {
    /// Checks out connections to the other up nodes (if not held yet), brings their settings
    /// in line, and queues what the transaction did so far (or BEGIN, for an implicit one).
    ///
    /// A follower pool with no free connection fails the join (the client's statement is
    /// refused with 53300 before anything ran): a healthy node is never detached for being
    /// busy.
    pub(super) async fn join_followers(&mut self, implicit: bool) -> Result<(), PoolError> {
        let cluster = self.shared.cluster.clone();
        let settings = self.settings.clone();
        let repl = self.repl.as_mut().expect("replicated");
        // Never the main itself, never a node that went down since; a write that spans shards
        // (DDL, shared tables) takes every node of every shard.
        let (main, shard, span_all) = (repl.node, repl.shard, repl.span_all);
        repl.followers.retain(|f| {
            f.parked
                || (f.shard != shard || f.node != main)
                    && (span_all || f.shard == shard)
                    && cluster.topology.state(f.shard, f.node) == crate::cluster::NodeState::Up
        });
        // Connections held since an earlier transaction (a pinned client keeps them): a SET,
        // RESET ALL or DISCARD ALL since then left settings there that the main has put back
        // to the client's (read back from the main only).
        let mut failed = Vec::new();
        for (i, f) in repl.followers.iter_mut().enumerate() {
            if f.parked || !f.is_idle() {
                continue;
            }
            if let Err((why, cause)) = apply_settings(&mut f.conn, &settings).await {
                failed.push((i, why, cause));
            }
        }
        if !failed.is_empty() {
            self.detach_followers(failed);
        }
        let repl = self.repl.as_mut().expect("replicated");
        let shards: Vec<usize> = if span_all {
            (0..cluster.config().shards.len()).collect()
        } else {
            vec![shard]
        };
        for s in shards {
            // Every up node but the main needs a connection (some may be held already).
            for node in cluster.topology.up_nodes(s) {
                if (s == shard && node == main)
                    || repl
                        .followers
                        .iter()
                        .any(|f| f.shard == s && f.node == node)
                {
                    continue;
                }
                let pool = cluster.pool(&repl.user, &repl.db, s, node);
                match pool.checkout().await {
                    Ok(mut conn) => {
                        if let Err((why, cause)) = apply_settings(&mut conn, &settings).await {
                            warn!(shard = s, node, error = %why, "could not apply settings on a follower");
                            cluster.detach(s, node, cause, &why);
                            continue;
                        }
                        let down = cluster.topology.detached_signal(s, node);
                        repl.followers.push(Follower::new(s, node, conn, down));
                    }
                    Err(PoolError::Backend(e)) if e.is_connect() => {
                        cluster.detach(s, node, DetachCause::ConnectionFailed, &e.to_string());
                    }
                    Err(e) => {
                        warn!(shard = s, node, error = %e, "no free connection to a follower for a write");
                        return Err(e);
                    }
                }
            }
        }
        let prefix = std::mem::take(&mut repl.prefix);
        for f in repl.followers.iter_mut().filter(|f| !f.parked) {
            if implicit {
                f.queue_internal("BEGIN");
            }
            for u in &prefix {
                f.queue_unit_internal(u, &self.statements);
            }
        }
        repl.joined = true;
        Ok(())
    }

    /// Sends what is queued to every follower, detaching those that fail.
    pub(super) async fn flush_followers(&mut self) {
        let repl = self.repl.as_mut().expect("replicated");
        let mut failed = Vec::new();
        for (i, f) in repl.followers.iter_mut().enumerate() {
            if let Err(e) = f.flush().await {
                failed.push((i, e.to_string(), DetachCause::ConnectionFailed));
            }
        }
        self.detach_followers(failed);
    }

    /// Detaches and drops followers by index, each for its cause, in one pass (removal from
    /// the highest index down keeps the others valid).
    pub(super) fn detach_followers(&mut self, mut gone: Vec<(usize, String, DetachCause)>) {
        gone.sort_by_key(|g| std::cmp::Reverse(g.0));
        let cluster = self.shared.cluster.clone();
        let repl = self.repl.as_mut().expect("replicated");
        for (i, why, cause) in gone {
            let f = repl.followers.remove(i);
            warn!(shard = f.shard, node = f.node, detail = %why, "follower detached");
            cluster.detach(f.shard, f.node, cause, &why);
        }
    }

    /// True when a follower was sent so much unanswered work that its answers must be read.
    pub(super) fn followers_busy(&self) -> bool {
        self.repl
            .as_ref()
            .is_some_and(|r| r.followers.iter().any(|f| f.backlogged()))
    }

    /// Runs every follower's queued work and compares its outcomes with the main's
    /// (`Repl::expect`). Followers that fail or disagree are detached and dropped.
    pub(super) async fn run_followers(&mut self) {
        let repl = self.repl.as_mut().expect("replicated");
        let expected = std::mem::take(&mut repl.expect);
        let expected = &expected[..];
        let results =
            futures_util::future::join_all(repl.followers.iter_mut().map(|f| f.run())).await;
        let mut gone = Vec::new();
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Err(e) => gone.push((i, e.to_string(), DetachCause::ConnectionFailed)),
                Ok(got) => {
                    // A parked participant runs nothing but the commit protocol.
                    let want = if repl.followers[i].parked {
                        &[][..]
                    } else {
                        expected
                    };
                    if got.internal_error.is_some() || got.outcomes != want {
                        let detail = format!(
                            "main: [{}], shard {} node {}: [{}]{}",
                            join(want),
                            repl.followers[i].shard,
                            repl.followers[i].node,
                            join(&got.outcomes),
                            got.internal_error
                                .map(|e| format!(" ({e})"))
                                .unwrap_or_default()
                        );
                        gone.push((i, detail, DetachCause::Divergence));
                    }
                }
            }
        }
        self.detach_followers(gone);
    }

    /// ROLLBACK on every follower that joined the transaction.
    pub(super) async fn rollback_followers(&mut self) {
        if !self.repl_mut().in_shared_txn() {
            return;
        }
        for f in &mut self.repl_mut().followers {
            f.queue_internal("ROLLBACK");
        }
        self.run_followers().await;
        self.repl_mut().joined = false;
    }
}

/// Brings a follower connection's settings in line with the session's. On failure, why and
/// the cause to detach its node with: the main took these settings, so a node that refuses
/// them would run the client's statements differently.
pub(super) async fn apply_settings(
    conn: &mut crate::pool::Pooled,
    settings: &BTreeMap<String, String>,
) -> Result<(), (String, DetachCause)> {
    let Some(sql) = super::settings::replay_sql(settings, &conn.settings) else {
        return Ok(());
    };
    match conn.run_internal(&sql).await {
        Ok(_) => {
            conn.settings = settings.clone();
            Ok(())
        }
        Err(e @ crate::backend::BackendError::Io(_)) => {
            Err((e.to_string(), DetachCause::ConnectionFailed))
        }
        Err(e) => Err((
            format!("the session's settings failed there: {e}"),
            DetachCause::Divergence,
        )),
    }
}
