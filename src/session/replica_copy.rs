//! A replicated session while a unit is in flight on the main: only COPY data (and the Sync
//! that ends an extended-protocol COPY) passes, to the main and to the followers running the
//! COPY too; a COPY pgproxy completes (`copy_fill`) goes out in batches of rows with values.

use super::relay::Session;
use super::replica::Step;
use super::SessionError;
use crate::protocol::frame::{self, FrameRef};
use crate::protocol::message::{self, fe};
use bytes::BufMut;

impl Session {
    /// The next client message while a unit is in flight (`rest`: the unread client bytes).
    pub(super) async fn busy_step(
        &mut self,
        rest: &[u8],
        pos: &mut usize,
    ) -> Result<Step, SessionError> {
        let max = self.client.max_message;
        let Some(&tag) = rest.first() else {
            return Ok(Step::Wait);
        };
        let sync_owed = self.repl_mut().unit.as_ref().is_some_and(|u| u.sync_owed);
        let ends_copy_batch = sync_owed && matches!(tag, fe::SYNC | fe::FLUSH);
        if !matches!(tag, fe::COPY_DATA | fe::COPY_DONE | fe::COPY_FAIL) && !ends_copy_batch {
            return Ok(Step::Wait);
        }
        let n = match frame::peek_frame_len(rest, max) {
            Ok(Some(n)) => n,
            Ok(None) => return Ok(Step::Wait),
            Err(e) => return Err(super::client::frame_error(e)),
        };
        *pos += n;
        if ends_copy_batch {
            // The main's answer to the COPY comes at this Sync (the followers get pgproxy's
            // own, `Follower::end_copy`); anything after it waits for the unit's end. A
            // Sync the main ignores (still copying) leaves the next one owed.
            self.client_message(FrameRef::new(&rest[..n])).await?;
            if matches!(self.queue.back(), Some(super::expect::Expect::Sync { .. })) {
                if let Some(u) = self.repl_mut().unit.as_mut() {
                    u.sync_owed = false;
                }
            }
            return Ok(Step::Continue);
        }
        // A unit cut short by Flush holds no Sync: the main would keep the COPY's answer in
        // its output buffer until the client's next Sync or Flush, which wait for this unit
        // to end. pgproxy's own Flush after CopyDone/CopyFail has it sent now.
        let mut flush_main = false;
        if tag != fe::COPY_DATA {
            if let Some(u) = self.repl_mut().unit.as_mut() {
                u.copy_ended = true;
                flush_main = !u.sync_owed && super::replica::last_tag(&u.frames) == Some(fe::FLUSH);
            }
        }
        let filled = self
            .repl_mut()
            .unit
            .as_ref()
            .is_some_and(|u| u.fill.is_some());
        if filled {
            // pgproxy completes this COPY: its rows go out in batches, with values.
            for out in self.fill_copy(FrameRef::new(&rest[..n])).await {
                self.copy_message(out.raw()).await?;
            }
        } else {
            self.copy_message(&rest[..n]).await?;
        }
        if flush_main && self.server.is_some() {
            self.to_server.put_slice(message::flush().raw());
        }
        Ok(Step::Continue)
    }

    /// A copy message for the main and, while they copy too, the followers.
    async fn copy_message(&mut self, raw: &[u8]) -> Result<(), SessionError> {
        let tag = raw.first().copied().unwrap_or(0);
        let copying = self.repl_mut().unit.as_ref().is_some_and(|u| u.copy);
        if copying {
            let mut big = false;
            for f in self.repl_mut().followers.iter_mut().filter(|f| !f.parked) {
                f.queue_raw(raw);
                if tag != fe::COPY_DATA {
                    f.end_copy();
                }
                big |= f.queued() > 64 * 1024;
            }
            if big || tag != fe::COPY_DATA {
                self.flush_followers().await;
            }
        }
        self.client_message(FrameRef::new(raw)).await?;
        Ok(())
    }
}
