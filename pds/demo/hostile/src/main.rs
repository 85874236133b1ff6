//! Demo hostile client: thousands of random requests, raw and malformed, from
//! a fixed-seed generator. Every reply must be success or a known error code,
//! memsrv must keep serving, and once this client gives back what it got, the
//! pool must be exactly as before. Then the copy-out attack that worked
//! against capbuf 1.x: look for a frame capability anywhere capbuf ever put
//! one (the receive path at Microkit slot 458 and the root CNode's slots),
//! try to copy out of the receive path, and read the buffer after DETACH. The
//! supervisor (this PD's parent) sees that read fault and steps over it.
#![no_std]
#![no_main]

use capbuf_demo::probe::{probe, NOT_READ};
use capbuf_demo::{fail, MEMSRV, POOL};
use capbuf_microkit::{Align, AllocFlags, BufferId, Capbuf, ClientError, Error, Memory, Rights};
use capbuf_protocol::{microkit, Op, MAX_MESSAGE_WORDS, ROOT_SLOT_SHIFT};
use sel4_microkit::{debug_println, protection_domain, ChannelSet, Handler, Infallible};

const PD: &str = "hostile";
const REQUESTS: u32 = 3000;
/// memsrv's endpoint as this PD holds it: sending it along makes the kernel
/// transfer (unwrap) one capability, which memsrv must refuse.
const MEMSRV_ENDPOINT_CPTR: u64 = microkit::BASE_ENDPOINT_CPTR + MEMSRV.index() as u64;

struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One raw PPC; returns the reply label and first word.
fn call(label: u64, words: &[u64], send_cap: bool) -> (u64, u64) {
    sel4::with_ipc_buffer_mut(|ipc| {
        ipc.msg_regs_mut()[..words.len()].copy_from_slice(words);
        ipc.caps_or_badges_mut()[0] = MEMSRV_ENDPOINT_CPTR;
    });
    let info = sel4::MessageInfo::new(label, 0, send_cap as usize, words.len());
    let reply = MEMSRV.pp_call(sel4_microkit::MessageInfo::from_inner(info));
    let first = sel4::with_ipc_buffer(|ipc| ipc.msg_regs()[0]);
    (reply.inner().label(), first)
}

const MARKER: u64 = 0x5ec2_e7ed_0000_0001;

/// Every capability pointer where capbuf 1.x put capabilities a client could
/// copy and map: the receive path and the free tail of the Microkit CNode,
/// and every slot of the root CNode.
fn former_capbuf_cptrs() -> impl Iterator<Item = u64> {
    microkit::FREE_CPTRS.chain((1..64u64).map(|slot| slot << ROOT_SLOT_SHIFT))
}

/// The copy-out attack; true if it failed everywhere it must.
fn attack(capbuf: &mut Capbuf) -> bool {
    let id = capbuf.alloc(64 * 1024, Align::PAGE, POOL, AllocFlags::NONE).expect("alloc");
    let view = capbuf.attach(id, Rights::ReadWrite).expect("attach");
    capbuf.words_mut(id).expect("writable").as_mut_ptr().index(0).write(MARKER);
    // Any frame capability answers GetAddress: look for one.
    let cptrs = former_capbuf_cptrs().count();
    let frames =
        former_capbuf_cptrs().filter(|&cptr| sel4::cap::UnspecifiedPage::from_bits(cptr).frame_get_address().is_ok()).count();
    // Copy whatever the old receive path would name into a free slot of it.
    let receive_path = sel4::cap::CNode::from_bits(microkit::FREE_CPTRS.start);
    let copied = receive_path
        .absolute_cptr_from_bits_with_depth(40, 6)
        .copy(&receive_path.absolute_cptr_from_bits_with_depth(32, 6), sel4::CapRights::all());
    let before = probe(view.vaddr);
    capbuf.detach(id).expect("detach");
    let after = probe(view.vaddr);
    debug_println!(
        "hostile: copy-out attack: {frames} of {cptrs} capability pointers hold a frame capability; CNode copy from the old receive path: {}; read before DETACH {}, after DETACH {}",
        match copied {
            Ok(()) => "SUCCEEDED",
            Err(_) => "refused",
        },
        if before == MARKER { "saw the data" } else { "FAILED" },
        if after == NOT_READ { "faulted" } else { "READ MEMORY" },
    );
    capbuf.free(id).expect("free");
    // What it can reach is what it is attached to, and no more than its quota.
    let quota = capbuf.hello().quota_attachments as usize;
    let mut held: heapless::Vec<BufferId, 8> = heapless::Vec::new();
    let mut refusal = None;
    for _ in 0..=quota {
        let Ok(extra) = capbuf.alloc(4096, Align::PAGE, POOL, AllocFlags::NONE) else { break };
        let _ = held.push(extra);
        if let Err(e) = capbuf.attach(extra, Rights::ReadOnly) {
            refusal = Some(e);
            break;
        }
    }
    let attached = held.iter().filter(|id| capbuf.view(**id).is_some()).count();
    debug_println!(
        "hostile: {attached} attachments held, quota {quota}; one more: {}",
        match refusal {
            Some(ClientError::Server(Error::QuotaAttachments)) => "refused with QUOTA_ATTACHMENTS",
            _ => "NOT REFUSED",
        }
    );
    let within_quota = attached == quota && matches!(refusal, Some(ClientError::Server(Error::QuotaAttachments)));
    for extra in held {
        capbuf.free(extra).expect("free");
    }
    // Breaking large blocks with small, very aligned buffers costs the whole
    // aligned block from the byte quota, so this client cannot fragment the
    // pool beyond what it may hold.
    let quota_bytes = capbuf.hello().quota_bytes;
    let aligned = capbuf.alloc(4096, Align::bits(22), POOL, AllocFlags::NONE);
    let charged = matches!(aligned, Err(ClientError::Server(Error::QuotaBytes)));
    debug_println!(
        "hostile: a 4 KiB buffer aligned to 4 MiB is charged 4 MiB against its {} KiB quota: {}",
        quota_bytes >> 10,
        if charged { "refused with QUOTA_BYTES" } else { "NOT REFUSED" }
    );
    if let Ok(id) = aligned {
        let _ = capbuf.free(id);
    }
    frames == 0 && copied.is_err() && before == MARKER && after == NOT_READ && within_quota && charged
}

/// After its run the hostile client only hears from memsrv: a random ALLOC
/// may have set WAIT, and memsrv then notifies it when memory comes back.
/// It does not retry; anything else is a failure.
struct Hostile;

impl Handler for Hostile {
    type Error = Infallible;

    fn notified(&mut self, channels: ChannelSet) -> Result<(), Self::Error> {
        if channels.iter().any(|channel| channel != MEMSRV) {
            fail!(PD, "unexpected notification {}", channels.display());
        }
        Ok(())
    }
}

#[protection_domain]
fn init() -> Hostile {
    let mut capbuf = capbuf_demo::connect(PD);
    let before = capbuf.pool_info(POOL).expect("pool").free;
    let mut random = Random(0x5eed_cafe_f00d_d00d);
    let mut mine: heapless::Vec<u64, 8> = heapless::Vec::new();
    let (mut ok, mut refused, mut unknown) = (0u32, [0u32; 32], 0u32);
    for _ in 0..REQUESTS {
        // Labels are 52 bits wide in a seL4 message info.
        let label = if random.below(8) == 0 { random.next() & ((1 << 52) - 1) } else { random.below(12) };
        let valid_length = Op::try_from(label).map(|op| op.request_words()).unwrap_or(0);
        let length =
            if random.below(6) == 0 { random.below(MAX_MESSAGE_WORDS as u64 + 3) as usize } else { valid_length };
        let mut words = [0u64; MAX_MESSAGE_WORDS + 2];
        for word in &mut words[..length] {
            *word = match random.below(6) {
                0 => random.next(),
                1 => BufferId::new(random.below(4) as u32, 1 + random.below(3) as u32).raw(),
                2 => *mine.get(random.below(8) as usize).unwrap_or(&0),
                3 => random.below(4) << 12,
                _ => random.below(6),
            };
        }
        let (reply, first) = call(label, &words[..length], random.below(20) == 0);
        if reply == 0 {
            ok += 1;
            if label == Op::Alloc as u64 && length == 4 && mine.push(first).is_err() {
                fail!(PD, "more buffers than the quota allows");
            }
            if label == Op::Free as u64 {
                mine.retain(|id| *id != words[0]);
            }
        } else if let Ok(error) = Error::try_from(reply) {
            let index = if error.code() >= Error::DECODE_BASE {
                24 + (error.code() - Error::DECODE_BASE)
            } else {
                error.code()
            };
            refused[index as usize % 32] += 1;
        } else {
            unknown += 1;
        }
    }
    // Give back everything: detach (attachments made by raw calls are not in
    // the library's views) and free.
    for id in mine.iter() {
        let _ = call(Op::Detach as u64, &[*id], false);
        let (label, _) = call(Op::Free as u64, &[*id], false);
        if label != 0 {
            fail!(PD, "could not free my buffer {id:#x}: {label:#x}");
        }
    }
    let after = capbuf.pool_info(POOL).map(|p| p.free);
    let kinds = refused.iter().filter(|n| **n > 0).count();
    if unknown == 0 && after == Ok(before) {
        debug_println!(
            "hostile: {REQUESTS} random requests: {ok} succeeded, {} refused with {kinds} different error codes, none unknown; memsrv still serving, pool back to {before} free bytes",
            REQUESTS - ok
        );
    } else {
        fail!(PD, "{unknown} replies with unknown labels; pool free {after:?}, was {before}");
    }
    if attack(&mut capbuf) {
        debug_println!("hostile: no capability to reach a buffer after DETACH: the attack failed everywhere");
    } else {
        fail!(PD, "the copy-out attack reached something");
    }
    Hostile
}
