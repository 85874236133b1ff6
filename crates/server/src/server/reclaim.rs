//! RECLAIM: a supervisor takes back everything a client holds, so that the
//! client, restarted, starts clean. Decided like every request (who may ask,
//! room for the holes and the quarantine it will make), then carried out as
//! a series of steps each complete in itself (the teardowns and FREEs other
//! requests use), so that a kernel refusal midway leaves memsrv consistent:
//! what was reclaimed stays reclaimed, and RECLAIM again finishes the job.

use capbuf_protocol::{BufferId, ClientId, Error, ReclaimReply, MAX_CLIENTS};

use crate::registry::MAX_BUFFERS;

use super::state::State;
use super::Usage;
use crate::kernel::{Failure, Kernel};

/// Whom to reclaim, and what the reply will count.
#[derive(Clone, Copy, Debug)]
pub(super) struct ReclaimPlan {
    pub(super) target: usize,
    pub(super) before: Usage,
}

impl<const NODES: usize> State<NODES> {
    /// Only the target's configured supervisor may reclaim it; an unknown
    /// id gets the same answer, so that nobody can probe which ids exist.
    /// The holes the target's buffers' FREEs leave in other clients' windows
    /// and the quarantine they fill must fit, as FREE checks them.
    pub(super) fn plan_reclaim(&self, caller: usize, target: ClientId) -> Result<ReclaimPlan, Error> {
        let (target, config) = self.config.client_by_id(target.0).ok_or(Error::NotSupervisor)?;
        if config.supervisor != Some(caller) {
            return Err(Error::NotSupervisor);
        }
        let bit = 1u64 << target;
        let mut holes = [0usize; MAX_CLIENTS];
        let mut quarantined = 0;
        for (_, buffer) in self.registry.iter().filter(|(_, buffer)| buffer.made.owner == target) {
            for (holder, _) in buffer.holders.attachments() {
                if holder != target {
                    holes[holder] += 1;
                }
            }
            quarantined += usize::from(buffer.exposed & !bit != 0);
        }
        if (0..MAX_CLIENTS).any(|holder| holes[holder] > self.windows.hole_room(holder)) {
            return Err(Error::Internal);
        }
        if quarantined > self.quarantine.room() {
            // As FREE: full of memory devices may still write.
            return Err(Error::TooManyBuffers);
        }
        Ok(ReclaimPlan { target, before: self.usage[target] })
    }

    /// Take everything from client `plan.target`: its exposure (the reclaim
    /// is its QUIESCE), its exports, attachments and grants of other
    /// clients' buffers, its own buffers (freed as FREE frees them), its
    /// holes and its pending wait; then its usage is zero.
    pub(super) fn reclaim_client<K: Kernel>(
        &mut self,
        kernel: &mut K,
        plan: ReclaimPlan,
    ) -> Result<ReclaimReply, Failure> {
        let target = plan.target;
        let bit = 1u64 << target;
        self.waits.cancel(target);
        // Its device no longer uses anything: exposure ends, on live buffers
        // and in quarantine (the last confirmation frees the pages).
        for id in self.quarantine.pending_for(target) {
            if let Some(Some(entry)) = self.quarantine.confirm(target, id) {
                self.pool_free(entry.pool, entry.data)?;
            }
        }
        let ids: heapless::Vec<BufferId, MAX_BUFFERS> = self.registry.iter().map(|(id, _)| id).collect();
        for &id in &ids {
            self.registry.get_mut(id)?.exposed &= !bit;
        }
        // Other clients' buffers: what the target holds of them goes.
        for &id in &ids {
            if self.registry.get(id)?.made.owner == target {
                continue;
            }
            self.teardown_export(kernel, id, target)?;
            self.teardown(kernel, id, target, target)?;
            self.registry.get_mut(id)?.holders.set_grant(target, None)?;
        }
        // Its own buffers, as its own FREE of each.
        for &id in &ids {
            if self.registry.get(id)?.made.owner == target {
                self.free(kernel, target, id)?;
            }
        }
        // Its holes: the mappings went when the attachments were revoked.
        while let Some(hole) = self.windows.holes(target).first().copied() {
            self.windows.release_hole(target, hole.id).ok_or(Error::Internal)?;
            self.usage[target].attachments -= 1;
        }
        let holds_anything = self.registry.iter().any(|(_, buffer)| {
            buffer.made.owner == target || buffer.known_to(target) || buffer.holders.export(target).is_some()
        });
        if holds_anything || self.usage[target] != Usage::default() || self.windows.used_slots(target) != 0 {
            return Err(Error::Internal.into());
        }
        self.windows.clear(target);
        Ok(ReclaimReply {
            buffers: plan.before.buffers,
            bytes: plan.before.bytes,
            attachments: plan.before.attachments,
        })
    }
}

impl<const NODES: usize> State<NODES> {
    /// Walk the waiting ALLOCs in order of registration and take out every
    /// one whose request would now pass its checks ([`Self::plan_alloc`],
    /// which touches no kernel): the returned bits are the clients to
    /// notify. An entry still short of a pool's memory stops every later
    /// entry for that pool; one short only of its own quota stops nobody.
    pub(super) fn wake_waiters(&mut self) -> u64 {
        if self.waits.is_empty() {
            return 0;
        }
        // As before an ALLOC: a waiter's retry would merge the parked runs
        // if the table ran short, so its plan must count their slots too.
        self.settle_if_short();
        let mut notify = 0u64;
        let mut blocked_pools = 0u64;
        for wait in self.waits.iter() {
            let pool_bit = 1u64.checked_shl(wait.pool.0.min(63) as u32).unwrap_or(0);
            if blocked_pools & pool_bit != 0 {
                continue;
            }
            match self.plan_alloc(wait.client, wait.size, wait.align, wait.pool, wait.flags) {
                Ok(_) => notify |= 1u64 << wait.client,
                Err(Error::QuotaBytes | Error::QuotaBuffers) => {}
                // Its own reserve has no block left (one was lost to a
                // kernel failure): its own shortage, like a quota.
                Err(Error::OutOfMemory) if self.reserves.free_block(wait.client).is_none() => {}
                Err(_) => blocked_pools |= pool_bit,
            }
        }
        self.waits.retain(|wait| notify & (1u64 << wait.client) == 0);
        notify
    }
}
