//! Demo driver: allocates an uncached buffer, gets its physical address for
//! DMA, maps and uses it; attaches a 16 MiB buffer in one call; then behaves
//! like a careless or hostile client and checks memsrv refuses each mistake
//! with its own error code and keeps serving.
#![no_std]
#![no_main]
#![feature(used_with_arg)]

use capbuf_demo::{expect_refusal, fail, MEMSRV, POOL, POOL_SIZE, SHARED};
use capbuf_microkit::{Align, AllocFlags, BufferId, Capbuf, ClientError, ClientId, Error, Memory, PoolId, Rights, Sys};
use capbuf_protocol::{Op, PAGE_SIZE, POOL_TABLE_WORDS};
use sel4_microkit::{debug_println, protection_domain, var, Channel, MessageInfo, NullHandler};

const PD: &str = "driver";
/// The C client, which runs its exchange with the producer when the driver is done.
const NEXT: Channel = Channel::new(1);

/// A raw PPC, bypassing the library, as a hostile client would send it.
fn raw(label: u64, length: usize) -> u64 {
    let reply = MEMSRV.pp_call(MessageInfo::new(label, length));
    reply.label()
}

/// A request the library's types cannot express, sent through its PPC:
/// memsrv's answer as the library would give it.
fn raw_request(capbuf: &mut Capbuf, op: Op, words: &[u64]) -> Result<(), ClientError> {
    match capbuf.sys().call(op as u64, words).label {
        0 => Ok(()),
        label => Err(Error::try_from(label).map_or(ClientError::BadReply, ClientError::Server)),
    }
}

/// Where the pools are: capbuf-compose writes each pool's physical address
/// and size here (`capbuf_pools`, for `dma="true"` clients), having placed
/// them in the board's RAM.
fn pools() -> &'static [u64; POOL_TABLE_WORDS] {
    var!(#[used(linker)] capbuf_pools: [u64; POOL_TABLE_WORDS] = [0; POOL_TABLE_WORDS])
}

fn dma(capbuf: &mut Capbuf) -> bool {
    let id = capbuf.alloc(64 * 1024, Align::bits(16), POOL, AllocFlags::UNCACHED).expect("alloc dma");
    let info = capbuf.info(id).expect("info");
    let view = capbuf.attach(id, Rights::ReadWrite).expect("attach");
    let (pool_base, pool_size) = (pools()[0], pools()[1]);
    if pool_size != POOL_SIZE || pool_base == 0 {
        fail!(PD, "capbuf_pools says pool 0 is {pool_size:#x} bytes at {pool_base:#x}; expected {POOL_SIZE:#x} bytes");
        return false;
    }
    let in_pool = (pool_base..pool_base + pool_size).contains(&info.physical_address);
    let aligned = info.physical_address % (1 << 16) == 0;
    let mut memory = capbuf.words_mut(id).expect("writable");
    let zero = (0..memory.as_ptr().len()).all(|i| memory.as_ptr().index(i).read() == 0);
    memory.as_mut_ptr().index(0).write(0xd1a);
    let ok = in_pool && aligned && zero && view.flags.uncached() && memory.as_ptr().index(0).read() == 0xd1a;
    drop(memory);
    debug_println!(
        "driver: DMA buffer {id}: physical {:#x} (in pool 0 at {pool_base:#x}: {in_pool}; 64 KiB aligned: {aligned}), mapped uncached at {:#x}, zeroed: {zero}",
        info.physical_address,
        view.vaddr
    );
    // No device was given the address: say so, or FREE would quarantine the memory.
    capbuf.quiesce(id).expect("quiesce dma");
    capbuf.free(id).expect("free dma");
    ok
}

fn large(capbuf: &mut Capbuf) -> bool {
    let id = capbuf.alloc(16 << 20, Align::PAGE, POOL, AllocFlags::NONE).expect("alloc 16 MiB");
    let view = capbuf.attach(id, Rights::ReadWrite).expect("attach 16 MiB");
    let mut memory = capbuf.words_mut(id).expect("writable");
    let last = memory.as_ptr().len() - 1;
    memory.as_mut_ptr().index(last).write(16);
    let ok = capbuf.words(id).expect("attached").as_ptr().index(last).read() == 16 && view.size == 16 << 20;
    let info = capbuf.info(id).expect("info");
    debug_println!(
        "driver: 16 MiB buffer attached with one call, page size 2^{}, last word written and read back",
        info.page_bits
    );
    capbuf.quiesce(id).expect("quiesce 16 MiB");
    capbuf.free(id).expect("free 16 MiB");
    ok && info.page_bits == 21
}

/// Where the driver maps an exported 2 MiB frame itself: in the first GiB,
/// whose level-2 table every Microkit PD has, outside capbuf's window and
/// anything system.xml maps here.
const OWN_MAPPING: usize = 0x1800_0000;

/// Cacheable and, where seL4 has the attribute (not x86), never executable.
#[cfg(not(target_arch = "x86_64"))]
const OWN_MAPPING_ATTRIBUTES: sel4::VmAttributes =
    sel4::VmAttributes::from_inner(sel4::VmAttributes::DEFAULT.into_inner() | sel4::VmAttributes::EXECUTE_NEVER.into_inner());
/// Cacheable and, where seL4 has the attribute (not x86), never executable.
#[cfg(target_arch = "x86_64")]
const OWN_MAPPING_ATTRIBUTES: sel4::VmAttributes = sel4::VmAttributes::DEFAULT;

/// This client has `frame_caps="true"`: it asks for a buffer's frame
/// capabilities (as a driver passing them to a child PD or a VM would), maps
/// the first frame itself, and gives them back.
fn export(capbuf: &mut Capbuf) -> bool {
    let id = capbuf.alloc(2 << 20, Align::bits(21), POOL, AllocFlags::NONE).expect("alloc 2 MiB");
    let view = capbuf.attach(id, Rights::ReadWrite).expect("attach 2 MiB");
    capbuf.words_mut(id).expect("writable").as_mut_ptr().index(7).write(0xe4_9047);
    let export = capbuf.export(id, Rights::ReadOnly).expect("export");
    let frame = export.frame(0).expect("one frame");
    let vspace = sel4::cap::VSpace::from_bits(capbuf_protocol::microkit::VSPACE_CPTR);
    let mapped = sel4::cap::UnspecifiedPage::from_bits(frame).frame_map(
        vspace,
        OWN_MAPPING,
        sel4::CapRights::read_only(),
        OWN_MAPPING_ATTRIBUTES,
    );
    let read = mapped.is_ok().then(|| {
        // SAFETY: the kernel just mapped the exported 2 MiB frame read-only at
        // OWN_MAPPING in this PD; a volatile read of word 7 stays inside it,
        // and nothing unmaps it before the unexport below.
        unsafe { core::ptr::read_volatile((OWN_MAPPING as *const u64).add(7)) }
    });
    let unexported = capbuf.unexport(id);
    debug_println!(
        "driver: exported buffer {id} ({} large frame, CNode in root slot {}), mapped its frame at {OWN_MAPPING:#x} itself: {} at {:#x} wrote; unexport {}",
        export.large,
        export.slot,
        match read {
            Some(0xe4_9047) => "read back what memsrv's mapping",
            Some(_) => "READ SOMETHING ELSE than memsrv's mapping",
            None => "MAP REFUSED of what memsrv's mapping",
        },
        view.vaddr,
        if unexported.is_ok() { "OK" } else { "REFUSED" },
    );
    capbuf.free(id).expect("free 2 MiB");
    read == Some(0xe4_9047) && unexported.is_ok()
}

fn hostile(capbuf: &mut Capbuf) -> bool {
    let mut ok = true;
    ok &= expect_refusal(PD, "zero-size alloc", capbuf.alloc(0, Align::PAGE, POOL, AllocFlags::NONE), Error::ZeroSize);
    ok &= expect_refusal(
        PD,
        "alloc larger than the pool",
        capbuf.alloc(POOL_SIZE * 2, Align::PAGE, POOL, AllocFlags::NONE),
        Error::TooLarge,
    );
    ok &= expect_refusal(
        PD,
        "alloc from pool 7",
        capbuf.alloc(PAGE_SIZE, Align::PAGE, PoolId(7), AllocFlags::NONE),
        Error::InvalidPool,
    );
    let unknown_flags = raw_request(capbuf, Op::Alloc, &[PAGE_SIZE, 0, 0, 1 << 9]);
    ok &= expect_refusal(PD, "alloc with unknown flags", unknown_flags, Error::InvalidFlags);
    ok &= expect_refusal(
        PD,
        "alloc aligned to 2^40",
        capbuf.alloc(PAGE_SIZE, Align::bits(40), POOL, AllocFlags::NONE),
        Error::InvalidAlignment,
    );
    // The producer's first buffer, not granted to the driver: memsrv
    // answers as for an id that never existed, so ids cannot be probed.
    ok &= expect_refusal(
        PD,
        "attach to a buffer not granted",
        capbuf.attach(SHARED, Rights::ReadOnly),
        Error::UnknownBuffer,
    );
    ok &= expect_refusal(PD, "free someone else's buffer", capbuf.free(SHARED), Error::UnknownBuffer);
    ok &= expect_refusal(PD, "info on a never-issued id", capbuf.info(BufferId::new(99, 1)), Error::UnknownBuffer);
    let id = capbuf.alloc(PAGE_SIZE, Align::PAGE, POOL, AllocFlags::NONE).expect("alloc");
    ok &= expect_refusal(
        PD,
        "grant to an unknown client",
        capbuf.grant(id, ClientId(99), Rights::ReadOnly),
        Error::InvalidGrantee,
    );
    ok &= expect_refusal(PD, "detach without attach", capbuf.detach(id), Error::NotAttached);
    capbuf.free(id).expect("free");
    ok &= expect_refusal(PD, "double free", capbuf.free(id), Error::StaleBuffer);
    ok &= expect_refusal(PD, "attach a freed buffer", capbuf.attach(id, Rights::ReadOnly), Error::StaleBuffer);
    let mut check_raw = |what: &str, label: u64, length: usize, want: Error| {
        let got = raw(label, length);
        if got == want.code() {
            debug_println!("driver: {what}: refused with {} ({got:#x})", want.name());
        } else {
            fail!(PD, "{what}: reply label {got:#x}, want {}", want.name());
            ok = false;
        }
    };
    check_raw("unknown op 77", 77, 0, Error::UnknownOp);
    check_raw("alloc with 2 words instead of 4", Op::Alloc as u64, 2, Error::WrongLength);
    check_raw("hello with 40 words", Op::Hello as u64, 40, Error::WrongLength);
    ok
}

#[protection_domain]
fn init() -> NullHandler {
    let mut capbuf = capbuf_demo::connect(PD);
    let dma_ok = dma(&mut capbuf);
    let large_ok = large(&mut capbuf) && export(&mut capbuf);
    let hostile_ok = hostile(&mut capbuf);
    let alive = capbuf.pool_info(POOL).is_ok();
    if dma_ok && large_ok && hostile_ok && alive {
        debug_println!("driver: all checks passed; memsrv still serving");
    } else {
        fail!(PD, "dma {dma_ok}, large {large_ok}, hostile {hostile_ok}, memsrv alive {alive}");
    }
    NEXT.notify();
    NullHandler::new()
}
