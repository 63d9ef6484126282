//! Committing a transaction that wrote on a replicated shard.
//!
//! Two-phase commit (default) is `commit_main` (the main's plain COMMIT decides); this file's
//! `commit_two_phase` is its fallback where the gid cannot name the main: PREPARE TRANSACTION
//! on the main and every follower at once;
//! if the main cannot prepare, the transaction rolls back everywhere and the client gets the
//! main's error; a follower that cannot prepare is detached. Then the decision is recorded
//! (fsynced) in the decision log, and COMMIT PREPARED runs everywhere; a follower that fails
//! it is detached (the operator is told in the log), and the client's COMMIT succeeds.
//!
//! Ordered (`replication.commit = "ordered"`): COMMIT on the followers, then on the main.

use super::relay::Session;
use super::replica::Plan;
use super::SessionError;
use crate::backend::Exchange;
use crate::cluster::DetachCause;
use crate::config::CommitMode;
use crate::protocol::frame::Frame;
use crate::protocol::message;
use crate::protocol::sqlstate;
use bytes::{BufMut, Bytes};
use tracing::{error, warn};

/// A gid as a SQL string literal.
pub(super) fn quote(gid: &str) -> String {
    format!("'{}'", gid.replace('\'', "''"))
}

/// The client's answer when the main died before an ordered commit: nothing committed.
fn commit_lost() -> Frame {
    message::error_response(
        message::Severity::Error,
        sqlstate::SERIALIZATION_FAILURE,
        "the main node failed while committing this transaction; it was rolled back on every node",
        Some("retry the transaction"),
    )
}

/// The client's answer when the transaction committed nowhere: `why`, and retry.
pub(super) fn rolled_back(why: &str) -> Frame {
    message::error_response(
        message::Severity::Error,
        sqlstate::SERIALIZATION_FAILURE,
        &format!("the transaction was rolled back on every node: {why}"),
        Some("retry the transaction"),
    )
}

/// The client's answer when the only node that had `what` (a statement, a transaction) was
/// lost during its COMMIT: whether it committed is unknown.
pub(super) fn commit_unknown(what: &str, e: &dyn std::fmt::Display) -> Frame {
    message::error_response(
        message::Severity::Error,
        sqlstate::CONNECTION_FAILURE,
        &format!("the node failed while committing this {what} ({e}); it may or may not have been committed"),
        Some("check whether the change is there before repeating it"),
    )
}

/// Followers whose COMMIT PREPARED failed, to detach: the gid stays prepared there, to be
/// committed when pgproxy next starts or the node is recovered (`decided`: who decided).
pub(super) fn failed_commits(
    done: Vec<Result<super::follower::FollowerResult, crate::backend::BackendError>>,
    gid: &str,
    decided: &str,
) -> Vec<(usize, String, DetachCause)> {
    done.into_iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let problem = match r {
                Err(e) => Some(e.to_string()),
                Ok(res) => res.internal_error,
            }?;
            Some((
                i,
                format!(
                    "COMMIT PREPARED {gid} failed: {problem}; {decided}, resolve it on that node"
                ),
                DetachCause::CommitFailed,
            ))
        })
        .collect()
}

/// How a follower's outcomes differ from the main's, for the log.
pub(super) fn differs(
    want: &[super::follower::Outcome],
    got: &[super::follower::Outcome],
) -> String {
    format!(
        "main: [{}], node: [{}]",
        super::replica::join(want),
        super::replica::join(got)
    )
}

/// The client's answer when `node` cannot prepare transactions (max_prepared_transactions = 0).
pub(super) fn cannot_prepare(node: &str) -> Frame {
    message::error_response(
        message::Severity::Error,
        "55000",
        &format!("the transaction was rolled back: {node} cannot prepare transactions"),
        Some("set max_prepared_transactions (e.g. to max_connections) on every node and restart them, or set replication.commit = \"ordered\""),
    )
}

/// How the main's deferred checks before an ordered commit went.
enum Deferred {
    Passed,
    /// They failed: the transaction was rolled back everywhere; the error for the client.
    Failed(Frame),
    /// The main's connection failed (handled as any lost server).
    Lost,
}

impl Session {
    /// The commit protocol for this session's transactions: the configured one, except that a
    /// session that made temporary objects commits in order (PostgreSQL cannot PREPARE a
    /// transaction that touched temporary objects).
    pub(super) fn commit_mode(&mut self) -> CommitMode {
        if self.repl_mut().temp_objects {
            CommitMode::Ordered
        } else {
            self.shared.cluster.config().replication.commit
        }
    }

    /// COMMIT (alone in its unit) of an explicit transaction the followers joined.
    pub(super) async fn commit_unit(
        &mut self,
        bytes: Bytes,
        simple: bool,
    ) -> Result<Plan, SessionError> {
        if self.tx_status == b'E' {
            // An aborted transaction: COMMIT means ROLLBACK; the main answers it.
            self.rollback_followers().await;
            self.after_txn();
            return Ok(Plan::Run(bytes));
        }
        let mode = self.commit_mode();
        if mode == CommitMode::Ordered || self.repl_mut().followers.is_empty() {
            // (No follower left: a plain COMMIT on the main is all there is to do.)
            match self.deferred_checks_on_main().await? {
                Deferred::Passed => {}
                Deferred::Lost => {
                    self.tx_status = b'I';
                    self.to_client.put_slice(commit_lost().raw());
                    self.to_client
                        .put_slice(message::ready_for_query(b'I').raw());
                    return Ok(Plan::Done);
                }
                Deferred::Failed(e) => {
                    self.tx_status = b'I';
                    self.to_client.put_slice(e.raw());
                    self.to_client
                        .put_slice(message::ready_for_query(b'I').raw());
                    return Ok(Plan::Done);
                }
            }
            self.commit_followers_first().await;
            self.after_txn();
            return Ok(Plan::Run(bytes));
        }
        let result = self.commit_atomic().await?;
        self.after_txn();
        match result {
            Ok(()) if simple => {
                self.tx_status = b'I';
                self.to_client
                    .put_slice(message::command_complete("COMMIT").raw());
                self.to_client
                    .put_slice(message::ready_for_query(b'I').raw());
                Ok(Plan::Done)
            }
            Ok(()) => {
                // Let the main answer the client's COMMIT exactly as PostgreSQL would, on an
                // empty transaction.
                self.inject_query("BEGIN", super::expect::Expect::InjectedQuery);
                Ok(Plan::Run(bytes))
            }
            Err(e) => {
                self.tx_status = b'I';
                self.to_client.put_slice(e.raw());
                self.to_client
                    .put_slice(message::ready_for_query(b'I').raw());
                Ok(Plan::Done)
            }
        }
    }

    /// Commits the implicit transaction around an autocommit write (the main answered it).
    /// A failure is reported to the client as PostgreSQL reports a failed commit.
    pub(super) async fn commit_implicit(&mut self) -> Result<(), SessionError> {
        let mode = self.commit_mode();
        if mode == CommitMode::Ordered || self.repl_mut().followers.is_empty() {
            match self.deferred_checks_on_main().await? {
                Deferred::Passed => {}
                Deferred::Lost => {
                    // The statement had its answer; its commit fails, on every node.
                    self.to_client.put_slice(commit_lost().raw());
                    return Ok(());
                }
                Deferred::Failed(e) => {
                    self.to_client.put_slice(e.raw());
                    return Ok(());
                }
            }
            self.commit_followers_first().await;
            let server = self.server.as_mut().expect("main attached");
            match server.exchange("COMMIT").await {
                Ok(r) => {
                    self.repl_mut().committed_elsewhere = false;
                    if let Some(e) = r.error {
                        self.to_client.put_slice(e.raw());
                    }
                }
                Err(e) => {
                    // The statement already had its answer; its commit now fails. With the
                    // followers committed, the main is detached and the write stands on
                    // them; with no follower left, nobody knows whether it committed.
                    let elsewhere = self.repl_mut().committed_elsewhere;
                    self.server_lost(e.to_string())?;
                    self.lost_txn = false;
                    self.lost_untold = false;
                    if !elsewhere {
                        self.to_client
                            .put_slice(commit_unknown("statement", &e).raw());
                    }
                }
            }
            return Ok(());
        }
        if let Err(e) = self.commit_atomic().await? {
            self.to_client.put_slice(e.raw());
        }
        Ok(())
    }

    /// Before an ordered commit (the followers commit first): the main runs the checks its
    /// COMMIT would run (deferred constraints) so that a transaction failing them fails on
    /// every node alike, instead of committing nowhere after the followers were detached for
    /// refusing it. On failure the transaction is rolled back everywhere.
    async fn deferred_checks_on_main(&mut self) -> Result<Deferred, SessionError> {
        if self.repl_mut().followers.is_empty() {
            return Ok(Deferred::Passed);
        }
        let failed = self.main_exchange("SET CONSTRAINTS ALL IMMEDIATE").await?;
        if self.server.is_none() || self.lost_txn {
            // The main died before anything committed; the followers' connections were let
            // go with their transactions (`repl_main_lost`). The caller tells the client now.
            self.lost_txn = false;
            self.lost_untold = false;
            return Ok(Deferred::Lost);
        }
        let Some(e) = failed else {
            return Ok(Deferred::Passed);
        };
        self.rollback_followers().await;
        self.rollback_main().await?;
        self.after_txn();
        if self.server.is_none() {
            return Ok(Deferred::Lost);
        }
        Ok(Deferred::Failed(e))
    }

    /// ROLLBACK on the main (pgproxy's implicit transaction after the main failed a statement).
    pub(super) async fn rollback_main(&mut self) -> Result<(), SessionError> {
        self.main_exchange("ROLLBACK").await.map(|_| ())
    }

    /// One of pgproxy's own statements on the main: its ErrorResponse, if any (a lost
    /// connection is handled as any lost server).
    async fn main_exchange(&mut self, sql: &str) -> Result<Option<Frame>, SessionError> {
        let server = self.server.as_mut().expect("main attached");
        match server.exchange(sql).await {
            Ok(r) => Ok(r.error),
            Err(e) => {
                self.server_lost(e.to_string())?;
                Ok(None)
            }
        }
    }

    /// Ordered commit, first half: COMMIT on every follower (a failure detaches it).
    async fn commit_followers_first(&mut self) {
        for f in &mut self.repl_mut().followers {
            f.queue_internal("COMMIT");
        }
        self.run_followers().await;
        let r = self.repl_mut();
        r.joined = false;
        // Those still there committed (a follower that failed was detached).
        r.committed_elsewhere = !r.followers.is_empty();
    }

    /// Atomic commit across the main and the followers: the main decides with its own COMMIT
    /// (`commit_main`), or, when the gid cannot name the main, everyone prepares.
    async fn commit_atomic(&mut self) -> Result<Result<(), Frame>, SessionError> {
        match self.main_addr() {
            Some((host, port)) => self.commit_main_decides(&host, port).await,
            None => self.commit_two_phase().await,
        }
    }

    /// Two-phase commit across the main and the followers. Outer error: the session cannot go
    /// on; inner error: the transaction did not commit (the frame to send the client).
    async fn commit_two_phase(&mut self) -> Result<Result<(), Frame>, SessionError> {
        let gid = self.shared.gids.next();
        let prepare = format!("PREPARE TRANSACTION {}", quote(&gid));
        for f in &mut self.repl_mut().followers {
            f.queue_internal(&prepare);
        }
        let server = self.server.as_mut().expect("main attached");
        let repl = self.repl.as_mut().expect("replicated");
        let main_fut = server.exchange(&prepare);
        let followers_fut =
            futures_util::future::join_all(repl.followers.iter_mut().map(|f| f.run()));
        let (main, followers) = tokio::join!(main_fut, followers_fut);
        // The followers' answers to the transaction's last units come with PREPARE's.
        let expected = std::mem::take(&mut self.repl_mut().expect);
        let mut failed = Vec::new();
        let mut diverged = Vec::new();
        let roles: Vec<(bool, bool)> = self
            .repl_mut()
            .followers
            .iter()
            .map(|f| (f.parked, f.was_main))
            .collect();
        let mut main_of_other_shard_failed = None;
        // The main refused to prepare too (a deferred constraint, a serialization failure):
        // the transaction rolls back everywhere, and a follower refusing the same is no
        // sign of a difference.
        let main_refused = matches!(&main, Ok(r) if r.error.is_some());
        for (i, r) in followers.into_iter().enumerate() {
            let (parked, was_main) = roles[i];
            let want: &[super::follower::Outcome] = if parked { &[] } else { &expected };
            if was_main {
                let problem = match &r {
                    Err(e) => Some(e.to_string()),
                    Ok(res) => res.internal_error.clone(),
                };
                if let Some(p) = problem {
                    // Not detached: the transaction aborts instead (the cause may be the
                    // node's configuration, e.g. max_prepared_transactions = 0).
                    main_of_other_shard_failed.get_or_insert(p);
                    continue;
                }
            }
            match r {
                Err(e) => failed.push((i, format!("PREPARE TRANSACTION failed: {e}"))),
                Ok(res) if res.outcomes != want => diverged.push((i, differs(want, &res.outcomes))),
                Ok(res) => {
                    if let Some(p) = res.internal_error.filter(|_| !main_refused) {
                        failed.push((i, format!("PREPARE TRANSACTION failed: {p}")));
                    }
                }
            }
        }
        self.rollback_prepared_on(&gid, diverged.iter().map(|d| d.0))
            .await;
        let all = diverged
            .into_iter()
            .map(|(i, w)| (i, w, DetachCause::Divergence))
            .chain(
                failed
                    .into_iter()
                    .map(|(i, w)| (i, w, DetachCause::CommitFailed)),
            )
            .collect();
        self.detach_followers(all);
        if let Some(why) = main_of_other_shard_failed {
            // Another shard's main could not prepare: its changes may exist nowhere else.
            if main.is_ok() {
                let _ = self
                    .main_exchange(&format!("ROLLBACK PREPARED {}", quote(&gid)))
                    .await;
            }
            self.abort_prepared(&gid).await;
            if main.is_err() {
                self.server_lost(why.clone())?;
                self.lost_txn = false;
                self.lost_untold = false;
            }
            return Ok(Err(message::error_response(
                message::Severity::Error,
                sqlstate::SERIALIZATION_FAILURE,
                &format!("the transaction was rolled back on every shard: a shard could not prepare it ({why})"),
                Some("retry the transaction"),
            )));
        }
        let main = match main {
            Ok(r) => r,
            Err(e) => {
                // The main died before it prepared (or before it said so): nothing is
                // committed anywhere; the client's COMMIT fails with 40001 and its
                // transaction is over.
                self.abort_prepared(&gid).await;
                let why = e.to_string();
                self.server_lost(why.clone())?;
                self.lost_txn = false;
                self.lost_untold = false;
                return Ok(Err(rolled_back(&format!(
                    "the main node failed while committing it ({why})"
                ))));
            }
        };
        if main.error.is_none() && main.tag.as_deref() == Some("ROLLBACK") {
            // PostgreSQL answers PREPARE TRANSACTION of an aborted transaction with ROLLBACK,
            // not an error: nothing was prepared on the main, so nothing commits anywhere.
            self.abort_prepared(&gid).await;
            return Ok(Err(rolled_back("it had failed on the main node")));
        }
        if let Some(err) = main.error {
            self.abort_prepared(&gid).await;
            let err = if message::error_code(err.body()) == Some("55000") {
                cannot_prepare("the main node")
            } else {
                err
            };
            return Ok(Err(err));
        }
        if let Some(log) = self.shared.decisions.get() {
            if let Err(e) = log.record_commit(&gid).await {
                error!(error = %e, gid, "could not record the commit decision; rolling back");
                let _ = self
                    .main_exchange(&format!("ROLLBACK PREPARED {}", quote(&gid)))
                    .await;
                self.abort_prepared(&gid).await;
                return Ok(Err(message::error_response(
                    message::Severity::Error,
                    sqlstate::SYSTEM_ERROR,
                    &format!("the transaction was rolled back: pgproxy could not record its commit decision: {e}"),
                    Some("check the disk holding replication.decision_log"),
                )));
            }
        }
        let commit = format!("COMMIT PREPARED {}", quote(&gid));
        for f in &mut self.repl_mut().followers {
            f.queue_internal(&commit);
        }
        let server = self.server.as_mut().expect("main attached");
        let repl = self.repl.as_mut().expect("replicated");
        let (main, followers) = tokio::join!(
            server.exchange(&commit),
            futures_util::future::join_all(repl.followers.iter_mut().map(|f| f.run()))
        );
        let failed = failed_commits(followers, &gid, "the decision was commit");
        let all_committed = failed.is_empty() && matches!(main, Ok(Exchange { error: None, .. }));
        self.detach_followers(failed);
        self.repl_mut().joined = false;
        match main {
            Ok(Exchange { error: None, .. }) => {}
            Ok(Exchange { error: Some(e), .. }) => {
                let msg = String::from_utf8_lossy(e.body()).into_owned();
                self.detach_main(&format!("COMMIT PREPARED {gid} failed: {msg}"));
            }
            Err(e) => self.detach_main(&format!("COMMIT PREPARED {gid} failed: {e}")),
        }
        // Kept undone while a node may still hold the prepared transaction: resolved (committed)
        // there when pgproxy next starts or the node is recovered.
        if let (true, Some(log)) = (all_committed, self.shared.decisions.get()) {
            if let Err(e) = log.record_done(&gid) {
                warn!(error = %e, "could not mark a commit decision done");
            }
        }
        Ok(Ok(()))
    }

    /// ROLLBACK PREPARED on the followers at `idx`: a node that differs may have prepared;
    /// rolled back before it is let go, so it holds no locks while it waits for recovery.
    pub(super) async fn rollback_prepared_on(
        &mut self,
        gid: &str,
        idx: impl Iterator<Item = usize>,
    ) {
        let rollback = format!("ROLLBACK PREPARED {}", quote(gid));
        for i in idx {
            let f = &mut self.repl_mut().followers[i];
            f.queue_internal(&rollback);
            let _ = f.run().await;
        }
    }

    /// ROLLBACK PREPARED on every follower (those that did not prepare answer with an error,
    /// which is fine).
    pub(super) async fn abort_prepared(&mut self, gid: &str) {
        let sql = format!("ROLLBACK PREPARED {}", quote(gid));
        let repl = self.repl_mut();
        for f in &mut repl.followers {
            f.queue_internal(&sql);
        }
        let _ = futures_util::future::join_all(repl.followers.iter_mut().map(|f| f.run())).await;
        repl.joined = false;
    }

    /// The main failed the second phase after the decision was commit: the followers have the
    /// transaction, the main may not. Detach the main; the session lets go of its connection.
    pub(super) fn detach_main(&mut self, detail: &str) {
        let (shard, node) = {
            let r = self.repl_mut();
            (r.shard, r.node)
        };
        error!(
            shard,
            node, detail, "main node failed to commit a prepared transaction"
        );
        self.shared
            .cluster
            .detach(shard, node, DetachCause::CommitFailed, detail);
        self.server.take();
        self.cancel.set(None);
        self.tx_status = b'I';
    }
}
