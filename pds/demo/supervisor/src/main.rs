//! Demo supervisor: parent of the consumer, the victim, the hostile client, the C client
//! and the worker, so their faults come here instead of stopping the system. A fault is
//! expected only where the demo provokes it, in capbuf's mapping window: a
//! write by the consumer, a read by the victim (both then stay suspended), a
//! read by the hostile client after it detached or by the C client after the
//! owner withdrew its grant (the probe instruction is skipped and the client
//! carries on); and the worker's deliberate fault outside it.
//! Anything else is reported as a failure.
//!
//! It is also a capbuf client, and the children's supervisor in `system.xml`
//! (`<client ... supervisor="supervisor">`): when the worker faults holding
//! the whole small pool, it first asks for part of that pool with WAIT (and
//! is answered WAITING), then RECLAIMs the worker, which gives the pool back
//! (memsrv notifies it; its retry succeeds), and restarts the worker as
//! Microkit's `microkit_pd_restart` does. When the restarted worker waits for
//! the small pool in turn, it frees its buffer, and memsrv notifies the worker.
#![no_std]
#![no_main]

use capbuf_demo::probe::{fault_is_write, PROBE_LENGTH};
use capbuf_demo::{clients, fail, MEMSRV, SMALL_POOL};
use capbuf_microkit::{Align, AllocFlags, BufferId, Capbuf, ClientError, Error};
use capbuf_protocol::CLIENT_WINDOW;
use sel4_microkit::{debug_println, protection_domain, Channel, ChannelSet, Child, Handler, Infallible, MessageInfo};

const PD: &str = "supervisor";
const PRODUCER: Channel = Channel::new(1);
const WORKER_CHANNEL: Channel = Channel::new(2);
const CONSUMER: usize = 0;
const VICTIM: usize = 1;
const HOSTILE: usize = 2;
const CDEMO: usize = 3;
const WORKER: usize = 4;
/// Where `microkit.ld` puts a C protection domain's `_start`: the worker's
/// entry point, as `microkit_pd_restart` is given it.
const C_ENTRY_POINT: u64 = 0x20_0000;
/// What the supervisor asks of the small pool: half of it.
const HALF: u64 = 16 << 10;

struct Supervisor {
    capbuf: Capbuf,
    /// The supervisor waits for the small pool (registered with WAIT).
    waiting: bool,
    /// Its buffer in the small pool, held until the worker waits for it.
    held: Option<BufferId>,
}

#[protection_domain]
fn init() -> Supervisor {
    let capbuf = capbuf_demo::connect(PD);
    debug_println!("supervisor: watching the consumer, the victim, the hostile client, the C client and the worker");
    Supervisor { capbuf, waiting: false, held: None }
}

/// Restart a child at `entry`: its program counter only, and resume it
/// (Microkit's `microkit_pd_restart`, `seL4_TCB_WriteRegisters`). This
/// cancels the pending fault, so no reply is sent.
fn restart(child: Child, entry: u64) -> Result<(), sel4::Error> {
    let mut context = sel4::UserContext::default();
    *context.pc_mut() = entry;
    child.tcb().tcb_write_registers(true, 1, &mut context)
}

impl Supervisor {
    /// The worker faulted holding the whole small pool: wait for part of
    /// it, reclaim the worker (which frees it), restart the worker.
    fn reclaim_and_restart_worker(&mut self, child: Child) {
        match self.capbuf.alloc_or_wait(HALF, Align::PAGE, SMALL_POOL, AllocFlags::NONE) {
            Err(ClientError::Server(Error::Waiting)) => {
                self.waiting = true;
                debug_println!(
                    "supervisor: ALLOC of {HALF} bytes of the small pool with WAIT while the worker holds it all: WAITING"
                );
            }
            other => fail!(PD, "ALLOC with WAIT from the full small pool: {other:?}, want WAITING"),
        }
        match self.capbuf.reclaim(clients::WORKER) {
            Ok(reclaimed) => debug_println!(
                "supervisor: reclaimed the faulted worker before restarting it: {} buffers, {} bytes, {} attachments returned",
                reclaimed.buffers,
                reclaimed.bytes,
                reclaimed.attachments
            ),
            Err(error) => fail!(PD, "RECLAIM of the worker: {error:?}"),
        }
        match self.capbuf.reclaim(clients::PRODUCER) {
            Err(ClientError::Server(Error::NotSupervisor)) => {
                debug_println!("supervisor: RECLAIM of the producer, not its child: refused with NOT_SUPERVISOR")
            }
            other => fail!(PD, "RECLAIM of a client it does not supervise: {other:?}"),
        }
        match restart(child, C_ENTRY_POINT) {
            Ok(()) => debug_println!("supervisor: worker restarted at its entry point"),
            Err(e) => fail!(PD, "cannot restart the worker: {e:?}"),
        }
    }

    /// memsrv's notification: the small pool has room; retry.
    fn retry(&mut self) {
        if !self.waiting {
            fail!(PD, "notified by memsrv without waiting");
            return;
        }
        match self.capbuf.alloc_or_wait(HALF, Align::PAGE, SMALL_POOL, AllocFlags::NONE) {
            Ok(id) => {
                self.waiting = false;
                self.held = Some(id);
                debug_println!(
                    "supervisor: notified by memsrv after the reclaim; the retry got buffer {id} ({HALF} bytes of the small pool)"
                );
            }
            Err(ClientError::Server(Error::Waiting)) => {}
            Err(error) => fail!(PD, "retry after memsrv's notification: {error:?}"),
        }
    }

    /// The worker waits for the small pool (first), then is done (second).
    fn worker_says(&mut self) {
        match self.held.take() {
            Some(id) => match self.capbuf.free(id) {
                Ok(()) => debug_println!("supervisor: the worker waits for the small pool: freed buffer {id}"),
                Err(error) => fail!(PD, "free: {error:?}"),
            },
            None => {
                debug_println!("supervisor: the worker's life cycle is done");
                PRODUCER.notify();
            }
        }
    }
}

/// The hostile client and the C client probe a mapping memsrv revoked with
/// one load instruction: step over it ([`PROBE_LENGTH`] bytes) and let the
/// client go on, so it can report and give back what it holds.
fn skip_probe(child: Child) -> Option<MessageInfo> {
    let tcb = child.tcb();
    let skipped = tcb.tcb_read_all_registers(false).and_then(|mut registers| {
        *registers.pc_mut() += PROBE_LENGTH;
        tcb.tcb_write_all_registers(false, &mut registers)
    });
    match skipped {
        Ok(()) => {
            let what = if child.index() == HOSTILE {
                "the hostile client's read after DETACH"
            } else {
                "the C client's read after the owner's UNGRANT"
            };
            debug_println!("supervisor: expected fault: {what} was stopped by the kernel; load skipped");
            Some(MessageInfo::new(0, 0))
        }
        Err(e) => {
            fail!(PD, "cannot step the hostile client over its probe: {e:?}");
            None
        }
    }
}

impl Handler for Supervisor {
    type Error = Infallible;

    fn fault(&mut self, child: Child, msg_info: MessageInfo) -> Result<Option<MessageInfo>, Self::Error> {
        if child.index() == WORKER {
            match msg_info.fault() {
                sel4::Fault::VmFault(fault) if !CLIENT_WINDOW.contains(&fault.inner().get_Addr()) => {
                    debug_println!("supervisor: expected fault: the worker's read at {:#x}", fault.inner().get_Addr());
                    self.reclaim_and_restart_worker(child);
                }
                other => fail!(PD, "unexpected fault of the worker: {other:?}"),
            }
            return Ok(None);
        }
        let expected = match msg_info.fault() {
            sel4::Fault::VmFault(fault) => {
                let address = fault.inner().get_Addr();
                let write = fault_is_write(fault.inner().get_FSR());
                let what = if write { "write" } else { "read" };
                debug_println!(
                    "supervisor: child {} {what} fault at {address:#x} (pc {:#x})",
                    child.index(),
                    fault.inner().get_IP()
                );
                if CLIENT_WINDOW.contains(&address) && (child.index() == HOSTILE || child.index() == CDEMO) && !write {
                    return Ok(skip_probe(child));
                }
                CLIENT_WINDOW.contains(&address)
                    && ((child.index() == CONSUMER && write) || (child.index() == VICTIM && !write))
            }
            other => {
                debug_println!("supervisor: child {} fault {other:?}", child.index());
                false
            }
        };
        // Suspend the child: it stays stopped, and its pending fault reply is
        // cancelled, so the event loop's next receive starts clean.
        if let Err(e) = child.tcb().tcb_suspend() {
            fail!(PD, "cannot suspend child {}: {e:?}", child.index());
        }
        if expected {
            let name = if child.index() == CONSUMER {
                "consumer's write to a read-only buffer"
            } else {
                "victim's read of a freed buffer"
            };
            debug_println!("supervisor: expected fault: the {name} was stopped by the kernel; child suspended");
            PRODUCER.notify();
        } else {
            fail!(PD, "unexpected fault");
        }
        Ok(None)
    }

    fn notified(&mut self, channels: ChannelSet) -> Result<(), Self::Error> {
        for channel in channels.iter() {
            if channel == MEMSRV {
                self.retry();
            } else if channel == WORKER_CHANNEL {
                self.worker_says();
            } else {
                fail!(PD, "unexpected notification on channel {}", channel.index());
            }
        }
        Ok(())
    }
}
