//! Fuzz targets, run on random inputs by [`common::fuzz::fuzz`]: a short
//! run of each in `cargo test`, a long one (10^6 executions each, or
//! `CAPBUF_FUZZ_EXECUTIONS`) with `cargo test --release --test fuzz --
//! --ignored` (`make fuzz-long`). See docs/assurance.md.
//!
//! - `decoder`: any label, registers and capability count. Decoding never
//!   panics; what it accepts re-encodes to exactly the message; what it
//!   refuses gets a decode error, or a field's own error only once the
//!   message is well formed. Any reply decodes or is refused, and one that
//!   decodes re-encodes to the same registers.
//! - `config`: any configuration words (mostly near a valid one). Decoding
//!   never panics, an accepted configuration round-trips, and memsrv started
//!   on it either refuses it or starts sound (the invariants hold).
//! - `server`: memsrv driven by any sequence of steps from three clients
//!   (every op with ids issued, stale or made up, malformed messages on any
//!   channel, a hostile client's capability operations, reads and writes
//!   through its window, collapses), each step possibly with one of memsrv's
//!   kernel invocations refused, checked after every step as the property
//!   tests are ([`common::drive`]), and at the end everything freed must
//!   leave the system exactly as it started.

mod common;

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use arbitrary::{Result as Parsed, Unstructured};
use capbuf_model::Model;
use capbuf_protocol::{
    Align, AllocFlags, BufferId, ClientConfig, ClientId, Config, Error, Op, PoolConfig, PoolId, Reply, Request, Rights,
    CONFIG_MAGIC, CONFIG_VERSION, CONFIG_WORDS, MAX_CLIENTS, MAX_MESSAGE_WORDS, MAX_POOLS, PAGE_BITS,
};
use capbuf_server::{KernelError, Server};
use common::drive::{nth_issued, Harness, Step, RECEIVE_SLOT};
use common::fuzz::fuzz;
use common::invariants::{check, Violation};

/// Short runs: executions per target in `cargo test`.
const SHORT: [u64; 3] = [200_000, 20_000, 10_000];
/// Long runs: executions per target.
const LONG: u64 = 1_000_000;

/// A word that is often one a field could hold: small, a page multiple, an
/// id, a packed register of small fields at byte offsets (as ATTACH's and
/// INFO's attributes, HELLO's counts, POOL_INFO's page counts), or anything.
fn word(u: &mut Unstructured) -> Parsed<u64> {
    Ok(match u.int_in_range(0..=6u8)? {
        0 => u.int_in_range(0..=4)?,
        1 => u.int_in_range(0..=16u64)? << PAGE_BITS,
        2 => BufferId::new(u.int_in_range(0..=3)?, u.int_in_range(0..=3)?).raw(),
        3 => 10 + u.int_in_range(0..=3)?,
        4 => (0..8).try_fold(0, |packed, byte| Ok(packed | u.int_in_range(0..=3u64)? << (8 * byte)))?,
        _ => u.arbitrary()?,
    })
}

fn decoder(input: &[u8]) -> Result<(), Violation> {
    let mut u = Unstructured::new(input);
    let parsed = (|| -> Parsed<(u64, Vec<u64>, usize)> {
        let label = if u.arbitrary()? { u.int_in_range(0..=15)? } else { u.arbitrary()? };
        let length = u.int_in_range(0..=MAX_MESSAGE_WORDS + 2)?;
        let words = (0..length).map(|_| word(&mut u)).collect::<Parsed<Vec<u64>>>()?;
        Ok((label, words, u.int_in_range(0..=2)?))
    })();
    let Ok((label, words, caps)) = parsed else { return Ok(()) };
    match Request::decode(label, &words, caps) {
        Ok(request) => {
            let mut out = [0; MAX_MESSAGE_WORDS];
            let (l, n) = request.encode(&mut out);
            if (l, &out[..n]) != (label, &words[..]) || caps != 0 {
                return Err(format!("{request:?} from {label} {words:?} {caps} re-encodes as {l} {:?}", &out[..n]));
            }
        }
        Err(Error::InvalidRights | Error::InvalidFlags) => {
            let well_formed = Op::try_from(label).is_ok_and(|op| op.request_words() == words.len()) && caps == 0;
            if !well_formed {
                return Err(format!("a field's error for a malformed message {label} {words:?} {caps}"));
            }
        }
        Err(error) if error.code() >= Error::DECODE_BASE => {}
        Err(error) => return Err(format!("{label} {words:?}: {error:?} is no decode error")),
    }
    for op in Op::ALL {
        if let Ok(reply) = Reply::decode(op, 0, &words, caps) {
            let mut out = [0; MAX_MESSAGE_WORDS];
            let n = reply.encode(&mut out);
            if out[..n] != words[..] || reply.op() != op {
                return Err(format!("{op:?} reply {reply:?} from {words:?} re-encodes as {:?}", &out[..n]));
            }
        }
        let _ = Reply::decode(op, label, &words, caps);
    }
    Ok(())
}

/// Configurations memsrv started with in this run.
static STARTED: AtomicU64 = AtomicU64::new(0);

/// Pool bound for `config`: pools up to 2^10 pages (4 MiB).
const CONFIG_NODES: usize = 2 << 10;

fn config(input: &[u8]) -> Result<(), Violation> {
    let mut u = Unstructured::new(input);
    let mut words = [0u64; CONFIG_WORDS];
    let parsed = (|| -> Parsed<()> {
        // Mostly a header memsrv accepts, then mostly plausible values.
        let header = u.int_in_range(0..=7u8)? != 0;
        words[0] = if header { CONFIG_MAGIC } else { u.arbitrary()? };
        words[1] = if header { CONFIG_VERSION } else { u.arbitrary()? };
        words[2] = if u.arbitrary()? { u.int_in_range(4..=13)? } else { u.arbitrary()? };
        words[3] = u.int_in_range(0..=MAX_POOLS as u64 + 1)?;
        words[4] = u.int_in_range(0..=4)?;
        // Per pool: address, size bits, device (mostly RAM, sometimes device
        // untyped, rarely any word).
        for pool in 0..MAX_POOLS {
            let bits = u.int_in_range(10..=23u64)?;
            words[5 + 3 * pool] = if u.arbitrary()? { (0x40 + pool as u64) << 24 } else { u.arbitrary()? };
            words[6 + 3 * pool] = if u.arbitrary()? { bits } else { u.arbitrary()? };
            words[7 + 3 * pool] = match u.int_in_range(0..=7u8)? {
                0 => u.arbitrary()?,
                1 | 2 => 1,
                _ => 0,
            };
        }
        for at in 5 + 3 * MAX_POOLS..CONFIG_WORDS {
            words[at] = if u.int_in_range(0..=3u8)? != 0 { u.int_in_range(0..=20)? } else { word(&mut u)? };
        }
        Ok(())
    })();
    if parsed.is_err() {
        return Ok(());
    }
    let Ok(decoded) = Config::decode(&words) else { return Ok(()) };
    if Config::decode(&decoded.encode()) != Ok(decoded.clone()) {
        return Err(format!("{decoded:?} does not round-trip"));
    }
    if decoded.validate().is_err() {
        return Ok(());
    }
    // Start memsrv on it: refused with a reason, or started sound.
    let mut model = common::model_for(&decoded);
    for pool in decoded.pools.iter().flatten().filter(|pool| pool.device) {
        model = model.device_memory(pool.physical_address..pool.physical_address + (1 << pool.size_bits));
    }
    if let Ok(server) = Server::<Model, CONFIG_NODES>::start(model, decoded) {
        check(&server)?;
        STARTED.fetch_add(1, Relaxed);
    }
    Ok(())
}

/// Pool bound for `server`: pool 1 has 1024 pages.
const NODES: usize = 2 << 10;

/// Pool 0: 64 pages for buffers; pool 1: 4 MiB, which holds the metadata
/// reserves and room for buffers with a 2 MiB page. Client 0 (id 10) is
/// `dma`, client 1 (id 11) has `frame_caps`, client 2 (id 12) neither and
/// supervises the other two (RECLAIM), client 3 (id 13) is `dma` with an
/// `io_space` (its device behind the IOMMU); each may own 3 buffers and
/// 3 MiB and hold 3 attachments.
fn server_config() -> Config {
    let mut pools = [None; MAX_POOLS];
    pools[0] = Some(PoolConfig { physical_address: 0x4000_0000, size_bits: 18, device: false });
    pools[1] = Some(PoolConfig { physical_address: 0x4040_0000, size_bits: 22, device: false });
    let mut clients = [None; MAX_CLIENTS];
    for (i, client) in clients.iter_mut().enumerate().take(4) {
        *client = Some(ClientConfig {
            channel: i as u64,
            client_id: 10 + i as u64,
            quota_bytes: 3 << 20,
            quota_buffers: 3,
            quota_attachments: 3,
            dma: i == 0 || i == 3,
            frame_caps: i == 1,
            supervisor: (i < 2).then_some(2),
            io_space: i == 3,
        });
    }
    Config { table_bits: 9, pools, clients }
}

/// Bit `n` set: a request with label `n` was served in this run.
static SERVED: AtomicU64 = AtomicU64::new(0);

/// Frames memsrv mapped into client 3's device's I/O address space in this run.
static IO_MAPPED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// memsrv just started with [`server_config`]: each input starts from a copy.
    static FRESH: Box<Server<Model, NODES>> = Box::new(common::start(server_config()));
}

/// An id: mostly the k-th issued, sometimes one never issued or any word.
fn id(u: &mut Unstructured) -> Parsed<BufferId> {
    Ok(match u.int_in_range(0..=7u8)? {
        0 => BufferId::new(u.int_in_range(0..=5)?, u.int_in_range(1..=3)?),
        1 => BufferId::from_raw(u.arbitrary()?),
        2 => nth_issued(u.int_in_range(0..=4)?),
        _ => nth_issued(u.int_in_range(0..=1)?),
    })
}

fn rights(u: &mut Unstructured) -> Parsed<Rights> {
    Ok(if u.arbitrary()? { Rights::ReadWrite } else { Rights::ReadOnly })
}

fn grantee(u: &mut Unstructured) -> Parsed<ClientId> {
    Ok(ClientId(if u.int_in_range(0..=7u8)? == 0 { u.arbitrary()? } else { 10 + u.int_in_range(0..=3)? }))
}

/// Any request memsrv knows, with fields mostly near what matters.
fn request(u: &mut Unstructured) -> Parsed<Request> {
    // ALLOC more often than the rest: most requests need a buffer.
    let op = if u.int_in_range(0..=3u8)? == 0 { Op::Alloc } else { *u.choose(&Op::ALL)? };
    Ok(match op {
        Op::Hello => Request::Hello {},
        Op::Alloc => {
            let pages = match u.int_in_range(0..=7u8)? {
                0 => u.int_in_range(511..=513)?,
                1 => u.arbitrary::<u64>()? >> PAGE_BITS,
                _ => u.int_in_range(0..=8)?,
            };
            let size = (pages << PAGE_BITS).wrapping_sub(u64::from(u.int_in_range(0..=1u8)?));
            let align = Align::bits(if u.int_in_range(0..=3u8)? != 0 { 0 } else { u.int_in_range(12..=23)? });
            let pool = PoolId(if u.int_in_range(0..=7u8)? != 0 { u.int_in_range(0..=1)? } else { u.arbitrary()? });
            let flags = AllocFlags::from_bits(u.int_in_range(0..=7)?).unwrap_or(AllocFlags::NONE);
            Request::Alloc { size, align, pool, flags }
        }
        Op::Attach => Request::Attach { id: id(u)?, rights: rights(u)? },
        Op::Grant => Request::Grant { id: id(u)?, grantee: grantee(u)?, rights: rights(u)? },
        Op::Info => Request::Info { id: id(u)? },
        Op::Detach => Request::Detach { id: id(u)? },
        Op::Free => Request::Free { id: id(u)? },
        Op::Ungrant => Request::Ungrant { id: id(u)?, grantee: grantee(u)? },
        Op::PoolInfo => Request::PoolInfo { pool: PoolId(u.int_in_range(0..=3)?) },
        Op::Quiesce => Request::Quiesce { id: id(u)? },
        Op::Export => Request::Export { id: id(u)?, rights: rights(u)? },
        Op::Unexport => Request::Unexport { id: id(u)? },
        Op::Reclaim => Request::Reclaim { client: grantee(u)? },
    })
}

/// One step of any kind; mostly well-formed requests.
fn step(u: &mut Unstructured) -> Parsed<Step> {
    let client = u.int_in_range(0..=3)?;
    Ok(match u.int_in_range(0..=19u8)? {
        0 => Step::Raw {
            channel: u.int_in_range(0..=4)?,
            label: if u.arbitrary()? { u.int_in_range(0..=15)? } else { u.arbitrary()? },
            words: (0..u.int_in_range(0..=9)?).map(|_| word(u)).collect::<Parsed<_>>()?,
            caps: u.int_in_range(0..=1)?,
        },
        1 | 2 => {
            // Mostly the slots where EXPORT's CNode and copies out of it land.
            let slot = |u: &mut Unstructured| -> Parsed<u64> {
                let any = u.int_in_range(0..=63)?;
                Ok(*u.choose(&[RECEIVE_SLOT, 40, 41, any])?)
            };
            let cptr = (slot(u)? << 58) | u.int_in_range(0..=3)?;
            let dest = slot(u)?;
            let op = u.int_in_range(0..=8)?;
            Step::Hostile { client, op, cptr, dest, source: u.int_in_range(0..=3)?, vaddr_slot: u.int_in_range(0..=8)? }
        }
        3 | 4 => Step::Touch { client, page: u.int_in_range(0..=5 * 512)?, write: u.arbitrary()? },
        5 => Step::Collapse,
        _ => Step::Send { client, request: request(u)? },
    })
}

/// A kernel failure for the step, one time in eight: which invocation
/// (mostly one of the first few) and which seL4 error.
fn failure(u: &mut Unstructured) -> Parsed<Option<(u64, KernelError)>> {
    if u.int_in_range(0..=7u8)? != 0 {
        return Ok(None);
    }
    let nth = if u.arbitrary()? { u.int_in_range(1..=4)? } else { u.int_in_range(1..=40)? };
    Ok(Some((nth, KernelError(u.int_in_range(1..=10)?))))
}

fn server(input: &[u8]) -> Result<(), Violation> {
    let mut u = Unstructured::new(input);
    FRESH.with(|fresh| {
        let mut harness = Harness::new((**fresh).clone());
        let mut taken = Vec::new();
        while !u.is_empty() && taken.len() < 48 {
            let Ok((step, fail)) = step(&mut u).and_then(|s| Ok((s, failure(&mut u)?))) else { break };
            let done = harness
                .checked_step(&step, fail)
                .map_err(|violation| format!("{violation}\nafter {taken:#?}\nat {step:?} {fail:?}"))?;
            if let (Step::Send { request, .. }, true) = (&step, done.served) {
                SERVED.fetch_or(1 << request.op() as u64, Relaxed);
            }
            taken.push((step, fail));
        }
        IO_MAPPED.fetch_add(harness.server.kernel().counts.io_map, Relaxed);
        harness.teardown(fresh).map_err(|violation| format!("{violation}\nwhile freeing all after {taken:#?}"))
    })
}

#[test]
fn fuzz_decoder() {
    fuzz("decoder", decoder, SHORT[0], 96);
}

/// The run started memsrv on some configurations, not only refused them.
fn some_started() {
    let started = STARTED.swap(0, Relaxed);
    eprintln!("fuzz config: memsrv started on {started} configurations");
    assert!(started > 0, "no configuration started memsrv");
}

#[test]
fn fuzz_config() {
    fuzz("config", config, SHORT[1], 1024);
    some_started();
}

/// The run reached every op's success path, not only its refusals.
fn every_op_served() {
    let served = SERVED.swap(0, Relaxed);
    let missed: Vec<Op> = Op::ALL.into_iter().filter(|op| served & (1 << *op as u64) == 0).collect();
    assert!(missed.is_empty(), "no request served for {missed:?}");
    let io_mapped = IO_MAPPED.swap(0, Relaxed);
    eprintln!("fuzz server: {io_mapped} frames mapped into the io_space client's device");
    assert!(io_mapped > 0, "the io_space client never attached");
}

#[test]
fn fuzz_server() {
    fuzz("server", server, SHORT[2], 512);
    every_op_served();
}

#[test]
#[ignore = "long run: make fuzz-long"]
fn fuzz_decoder_long() {
    fuzz("decoder", decoder, LONG, 96);
}

#[test]
#[ignore = "long run: make fuzz-long"]
fn fuzz_config_long() {
    fuzz("config", config, LONG, 1024);
    some_started();
}

#[test]
#[ignore = "long run: make fuzz-long"]
fn fuzz_server_long() {
    fuzz("server", server, LONG, 512);
    every_op_served();
}
