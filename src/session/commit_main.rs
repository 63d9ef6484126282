//! Two-phase commit in which the main's own COMMIT is the decision (the default `"2pc"`).
//!
//! 1. The main's transaction id: read ahead with the transaction timestamp
//!    (`Repl::txn_xid`), else `txid_current()` now.
//! 2. `PREPARE TRANSACTION` on every follower under a gid naming that id and the main node
//!    (`GidGen::next_for_main`).
//! 3. A plain `COMMIT` on the main. Its commit record is the decision: no decision log, and
//!    the main pays no PREPARE / COMMIT PREPARED (each flushes WAL).
//! 4. `COMMIT PREPARED` on the followers, then the client's answer (so a read balanced to a
//!    follower next sees the commit).
//!
//! If pgproxy dies between the steps, the followers' prepared transactions are resolved by
//! asking the main `txid_status(xid)` (`replication::resolve`). The main refusing its COMMIT
//! (a deferred constraint, a serialization failure) rolls the followers back and the client
//! gets the main's error; the main lost during its COMMIT is detached and the followers
//! commit (the transaction lives on them). A follower that refuses to prepare with an error is
//! judged by the main: `SET CONSTRAINTS ALL IMMEDIATE` there failing too means the
//! transaction fails everywhere with the main's error, else the follower alone is detached.

use super::commit::{commit_unknown, differs, failed_commits, quote, rolled_back};
use super::relay::Session;
use super::SessionError;
use crate::backend::Exchange;
use crate::cluster::DetachCause;
use crate::protocol::frame::Frame;
use crate::protocol::message;
use crate::protocol::sqlstate;
use tracing::debug;

/// A follower refused PREPARE TRANSACTION for a reason that is not its data: 0A000 (the
/// transaction ran LISTEN / NOTIFY or touched temporary objects: the main would refuse too),
/// 55000 (max_prepared_transactions = 0: a setup mistake to report, not a node to detach).
fn refusal_is_not_the_nodes(frame: &Frame) -> bool {
    matches!(
        message::error_code(frame.body()),
        Some(sqlstate::FEATURE_NOT_SUPPORTED | "55000")
    )
}

/// Longest host name the gid can carry (PostgreSQL's gids are at most 199 bytes).
const MAX_GID_HOST: usize = 100;

impl Session {
    /// The host and port of the session's main node, if the gid can name it.
    pub(super) fn main_addr(&mut self) -> Option<(String, u16)> {
        let (shard, node) = {
            let r = self.repl_mut();
            (r.shard, r.node)
        };
        let cfg = self.shared.cluster.config();
        let n = cfg.shards.get(shard)?.nodes.get(node)?;
        (n.host.len() <= MAX_GID_HOST && !n.host.contains('@')).then(|| (n.host.clone(), n.port))
    }

    /// The protocol above. Outer error: the session cannot go on; inner error: the
    /// transaction did not commit (the frame to send the client).
    pub(super) async fn commit_main_decides(
        &mut self,
        host: &str,
        port: u16,
    ) -> Result<Result<(), Frame>, SessionError> {
        let r = self.repl_mut();
        let here = (r.shard, r.node);
        let known = r.txn_xid.take().filter(|(s, n, _)| (*s, *n) == here);
        let xid = match known.map(|(_, _, x)| x) {
            Some(x) => x,
            None => match self.main_xid().await? {
                Ok(x) => x,
                Err(e) => return Ok(Err(e)),
            },
        };
        let gid = self.shared.gids.next_for_main(xid, host, port);
        let prepare = format!("PREPARE TRANSACTION {}", quote(&gid));
        for f in &mut self.repl_mut().followers {
            f.queue_internal(&prepare);
        }
        let repl = self.repl.as_mut().expect("replicated");
        let results =
            futures_util::future::join_all(repl.followers.iter_mut().map(|f| f.run())).await;
        // The followers' answers to the transaction's last units come with PREPARE's.
        let expected = std::mem::take(&mut repl.expect);
        let mut lost = Vec::new();
        let mut diverged = Vec::new();
        let mut refused = Vec::new();
        let mut abort: Option<Frame> = None;
        for (i, r) in results.into_iter().enumerate() {
            let f = &repl.followers[i];
            let want: &[super::follower::Outcome] = if f.parked { &[] } else { &expected };
            match r {
                Err(e) if f.was_main => {
                    // Another shard's main: its changes may exist nowhere else.
                    abort.get_or_insert_with(|| {
                        rolled_back(&format!("a shard could not prepare it ({e})"))
                    });
                }
                Err(e) => lost.push((i, format!("PREPARE TRANSACTION failed: {e}"))),
                Ok(res) if res.outcomes != want => diverged.push((i, differs(want, &res.outcomes))),
                Ok(res) => {
                    let Some(why) = res.internal_error else {
                        continue;
                    };
                    let mut frame = res.internal_frame.unwrap_or_else(|| {
                        rolled_back(&format!("a node could not prepare it ({why})"))
                    });
                    if message::error_code(frame.body()) == Some("55000") {
                        frame = super::commit::cannot_prepare(&format!(
                            "node {} of shard {}",
                            f.node, f.shard
                        ));
                    }
                    if f.was_main || refusal_is_not_the_nodes(&frame) {
                        abort.get_or_insert(frame);
                    } else {
                        refused.push((i, format!("PREPARE TRANSACTION failed: {why}")));
                    }
                }
            }
        }
        self.rollback_prepared_on(&gid, diverged.iter().map(|d| d.0))
            .await;
        let mut main_lost = None;
        if abort.is_none() && !refused.is_empty() {
            // Whose fault: the main runs the checks its COMMIT would (deferred constraints).
            let server = self.server.as_mut().expect("main attached");
            match server.exchange("SET CONSTRAINTS ALL IMMEDIATE").await {
                Ok(r) => abort = r.error,
                Err(e) => {
                    abort = Some(rolled_back(&format!(
                        "the main node failed while committing it ({e})"
                    )));
                    main_lost = Some(e.to_string());
                }
            }
        }
        let mut gone: Vec<(usize, String, DetachCause)> = diverged
            .into_iter()
            .map(|(i, w)| (i, w, DetachCause::Divergence))
            .chain(
                lost.into_iter()
                    .map(|(i, w)| (i, w, DetachCause::CommitFailed)),
            )
            .collect();
        if abort.is_none() {
            gone.extend(
                refused
                    .into_iter()
                    .map(|(i, w)| (i, w, DetachCause::CommitFailed)),
            );
        }
        self.detach_followers(gone);
        if let Some(e) = abort {
            self.abort_prepared(&gid).await;
            match main_lost {
                Some(why) => {
                    self.server_lost(why)?;
                    self.lost_txn = false;
                    self.lost_untold = false;
                }
                None => self.rollback_main().await?,
            }
            return Ok(Err(e));
        }
        let server = self.server.as_mut().expect("main attached");
        match server.exchange("COMMIT").await {
            Ok(Exchange {
                error: None,
                tag: Some(t),
                ..
            }) if t == "COMMIT" => {}
            Ok(Exchange { error: Some(e), .. }) => {
                self.abort_prepared(&gid).await;
                return Ok(Err(e));
            }
            Ok(_) => {
                // PostgreSQL answers COMMIT of an aborted transaction with ROLLBACK.
                self.abort_prepared(&gid).await;
                return Ok(Err(rolled_back("it had failed on the main node")));
            }
            Err(e) => {
                // Whether the main committed is unknown; the followers have the transaction
                // and decide it: the main is detached and they commit.
                self.detach_main(&format!("COMMIT failed: {e}"));
                if self.repl_mut().followers.is_empty() {
                    return Ok(Err(commit_unknown("transaction", &e)));
                }
            }
        }
        let commit = format!("COMMIT PREPARED {}", quote(&gid));
        let repl = self.repl_mut();
        for f in &mut repl.followers {
            f.queue_internal(&commit);
        }
        let done = futures_util::future::join_all(repl.followers.iter_mut().map(|f| f.run())).await;
        self.detach_followers(failed_commits(done, &gid, "the main committed"));
        self.repl_mut().joined = false;
        Ok(Ok(()))
    }

    /// `txid_current()` on the main. Inner error: the transaction is over (rolled back
    /// everywhere), the frame for the client.
    async fn main_xid(&mut self) -> Result<Result<u64, Frame>, SessionError> {
        debug!("transaction id not read ahead: asking the main");
        let server = self.server.as_mut().expect("main attached");
        let why = match server
            .exchange("SELECT pg_catalog.txid_current()::text")
            .await
        {
            Ok(Exchange {
                error: None,
                result,
                ..
            }) => {
                let xid = result
                    .rows
                    .first()
                    .and_then(|r| r.first())
                    .cloned()
                    .flatten();
                if let Some(x) = xid.and_then(|x| x.parse().ok()) {
                    return Ok(Ok(x));
                }
                rolled_back("the main node gave no transaction id")
            }
            Ok(Exchange { error: Some(e), .. }) => e,
            Err(e) => {
                // The followers' transactions end with their connections.
                self.server_lost(e.to_string())?;
                self.lost_txn = false;
                self.lost_untold = false;
                return Ok(Err(rolled_back(&format!(
                    "the main node failed while committing it ({e})"
                ))));
            }
        };
        self.rollback_followers().await;
        self.rollback_main().await?;
        self.lost_txn = false;
        self.lost_untold = false;
        Ok(Err(why))
    }
}
