//! memsrv's own cost per request at scale: `scale-cost LIVE CLIENTS OP`
//! starts a server (a 512 MiB pool, a 2^15-slot table) with CLIENTS
//! clients, makes LIVE buffers live (spread over the clients, each granted
//! to the next client), then runs OP (alloc, attach, info, detach, free) on
//! one more 4 KiB buffer of client 0, [`ROUNDS`] times. Only `measure` runs
//! OP; `scripts/scale-cost` counts its instructions under callgrind
//! (`--toggle-collect=*measure*`) and prints the table of docs/benchmarks.md.
//!
//! The kernel is [`Null`]: every invocation succeeds at no cost, so the
//! count is the server's own work (decoding, books, decisions), what must
//! not grow with the number of buffers or clients. The kernel's own cost per
//! request is the floor `make qemu-bench` measures; it does not depend on
//! how many buffers memsrv tracks.

use capbuf_protocol::{
    Align, AllocFlags, AllocReply, BufferId, ClientConfig, ClientId, Config, PoolConfig, PoolId, Reply, Request,
    Rights, MAX_CLIENTS, MAX_MESSAGE_WORDS, MAX_POOLS,
};
use capbuf_server::{CapRef, Kernel, KernelError, MapAttributes, Object, Server, Slot};

/// Repetitions of the measured request (callgrind's count is divided by it).
const ROUNDS: u64 = 64;
const NODES: usize = capbuf_server::pool_nodes(17);

/// A kernel that accepts every invocation and does nothing.
struct Null;

impl Kernel for Null {
    fn retype(&mut self, _: Slot, _: Object, _: CapRef, _: u32) -> Result<(), KernelError> {
        Ok(())
    }
    fn copy(&mut self, _: CapRef, _: CapRef, _: Rights) -> Result<(), KernelError> {
        Ok(())
    }
    fn mutate_cnode(&mut self, _: Slot, _: Slot, _: u32) -> Result<(), KernelError> {
        Ok(())
    }
    fn revoke(&mut self, _: Slot) -> Result<(), KernelError> {
        Ok(())
    }
    fn delete(&mut self, _: Slot) -> Result<(), KernelError> {
        Ok(())
    }
    fn map_page_table(&mut self, _: CapRef, _: Slot, _: u64) -> Result<(), KernelError> {
        Ok(())
    }
    fn map_frame(&mut self, _: CapRef, _: Slot, _: u64, _: MapAttributes) -> Result<(), KernelError> {
        Ok(())
    }
    fn zero_frame(&mut self, _: CapRef, _: Object) -> Result<(), KernelError> {
        Ok(())
    }
    fn map_io_frame(&mut self, _: CapRef, _: Slot, _: Rights, _: u64) -> Result<(), KernelError> {
        Ok(())
    }
}

type Memsrv = Server<Null, NODES>;

fn call(server: &mut Memsrv, client: usize, request: Request) -> Reply {
    let mut words = [0; MAX_MESSAGE_WORDS];
    let (label, length) = request.encode(&mut words);
    let outcome = server.handle(client as u64, label, &words[..length], 0);
    outcome.result.unwrap_or_else(|e| panic!("{request:?} refused: {e}"))
}

fn alloc(server: &mut Memsrv, client: usize) -> BufferId {
    let request = Request::Alloc { size: 4096, align: Align::PAGE, pool: PoolId(0), flags: AllocFlags::NONE };
    match call(server, client, request) {
        Reply::Alloc(AllocReply { id }) => id,
        other => panic!("ALLOC answered {other:?}"),
    }
}

/// The only place the measured request runs.
#[inline(never)]
fn measure(server: &mut Memsrv, request: Request) -> Reply {
    call(server, 0, request)
}

fn run(live: usize, clients: usize, op: &str) {
    let mut config = Config { table_bits: 15, pools: [None; MAX_POOLS], clients: [None; MAX_CLIENTS] };
    config.pools[0] = Some(PoolConfig { physical_address: 0x8000_0000, size_bits: 29, device: false });
    for i in 0..clients {
        config.clients[i] = Some(ClientConfig {
            channel: i as u64,
            client_id: i as u64 + 1,
            quota_bytes: 1 << 26,
            quota_buffers: (4096 / clients as u64).max(live as u64 / clients as u64 + 2),
            quota_attachments: 4,
            dma: true,
            frame_caps: false,
            supervisor: None,
            io_space: false,
        });
    }
    let mut server = Memsrv::new(Null, config).expect("configuration");
    for i in 0..live {
        let owner = i % clients;
        let id = alloc(&mut server, owner);
        let grantee = ClientId((owner + 1) as u64 % clients as u64 + 1);
        call(&mut server, owner, Request::Grant { id, grantee, rights: Rights::ReadOnly });
    }
    for _ in 0..ROUNDS {
        let request = Request::Alloc { size: 4096, align: Align::PAGE, pool: PoolId(0), flags: AllocFlags::NONE };
        let id = if op == "alloc" {
            match measure(&mut server, request) {
                Reply::Alloc(AllocReply { id }) => id,
                other => panic!("ALLOC answered {other:?}"),
            }
        } else {
            alloc(&mut server, 0)
        };
        let attach = Request::Attach { id, rights: Rights::ReadWrite };
        if op == "attach" {
            measure(&mut server, attach);
        } else {
            call(&mut server, 0, attach);
        }
        if op == "info" {
            measure(&mut server, Request::Info { id });
        }
        if op == "detach" {
            measure(&mut server, Request::Detach { id });
        } else {
            call(&mut server, 0, Request::Detach { id });
        }
        if op == "free" {
            measure(&mut server, Request::Free { id });
        } else {
            call(&mut server, 0, Request::Free { id });
        }
    }
    assert_eq!(server.registry().len(), live);
    println!("scale-cost: {live} live buffers, {clients} clients, {op}: {ROUNDS} rounds");
}

/// `scale-cost footprint`: memsrv's static tables at this build's limits
/// (the host's layout is AArch64's: both are LP64 with the same alignments).
fn footprint() {
    use capbuf_server::{capacity, quarantine::Quarantine, window::Windows, Registry, Reserves};
    use std::mem::size_of;
    let buffers = capacity::MAX_BUFFERS;
    let pool_bytes = 1u64 << capacity::MAX_POOL_BITS;
    let tree = size_of::<capbuf_pool::Pool<{ capbuf_server::pool_nodes(capacity::MAX_POOL_BITS - 12) }>>();
    let per_buffer = size_of::<Registry>() + size_of::<Quarantine>();
    println!(
        "BENCH footprint limits buffers={buffers} pool_bits={} table_bits={}",
        capacity::MAX_POOL_BITS,
        capacity::MAX_TABLE_BITS
    );
    println!("BENCH footprint registry bytes={} per_slot={}", size_of::<Registry>(), size_of::<Registry>() / buffers);
    println!(
        "BENCH footprint quarantine bytes={} per_slot={}",
        size_of::<Quarantine>(),
        size_of::<Quarantine>() / buffers
    );
    println!("BENCH footprint buffer_slot bytes={}", per_buffer / buffers);
    println!("BENCH footprint reserves bytes={} (one entry per table slot)", size_of::<Reserves>());
    println!("BENCH footprint windows bytes={} (64 clients)", size_of::<Windows>());
    println!(
        "BENCH footprint pool_tree bytes={tree} for {} MiB: {:.5} bytes per pool byte ({:.3} per 4 KiB page)",
        pool_bytes >> 20,
        tree as f64 / pool_bytes as f64,
        tree as f64 / (pool_bytes >> 12) as f64
    );
    println!(
        "BENCH footprint server bytes={} (4 pool trees of {} MiB)",
        size_of::<Server<Null, { capbuf_server::pool_nodes(capacity::MAX_POOL_BITS - 12) }>>(),
        pool_bytes >> 20
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("footprint") {
        return footprint();
    }
    let [live, clients, op] = &args[..] else {
        eprintln!("usage: scale-cost LIVE CLIENTS OP   (OP: alloc attach info detach free)");
        std::process::exit(2);
    };
    let (live, clients, op) = (live.parse().expect("LIVE"), clients.parse().expect("CLIENTS"), op.clone());
    // The server's tables at full scale are a few MiB: start it on a thread
    // with room for them.
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || run(live, clients, &op))
        .expect("thread")
        .join()
        .expect("run");
}
