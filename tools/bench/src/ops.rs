//! Kernel invocations memsrv makes for each op, counted on the host model:
//! what each request costs beyond its PPC, independent of the machine.

use capbuf_model::{Counts, Model};
use capbuf_protocol::{
    Align, AllocFlags, AllocReply, BufferId, ClientConfig, Config, PoolConfig, PoolId, Reply, Request, Rights,
    MAX_CLIENTS, MAX_MESSAGE_WORDS, MAX_POOLS,
};
use capbuf_server::Server;

const NODES: usize = capbuf_server::pool_nodes(14);
type Memsrv = Server<Model, NODES>;

fn memsrv() -> Box<Memsrv> {
    let mut config = Config { table_bits: 12, pools: [None; MAX_POOLS], clients: [None; MAX_CLIENTS] };
    config.pools[0] = Some(PoolConfig { physical_address: 0xa000_0000, size_bits: 26, device: false });
    for i in 0..2 {
        config.clients[i] = Some(ClientConfig {
            channel: i as u64,
            client_id: i as u64 + 1,
            quota_bytes: 1 << 26,
            quota_buffers: 64,
            quota_attachments: 64,
            dma: true,
            frame_caps: false,
            supervisor: None,
            io_space: false,
        });
    }
    Box::new(Server::new(Model::new(12, &[(0xa000_0000, 26)], 2), config).expect("config"))
}

fn delta(after: Counts, before: Counts) -> Counts {
    Counts {
        retype: after.retype - before.retype,
        reset: after.reset - before.reset,
        zeroed_bytes: after.zeroed_bytes - before.zeroed_bytes,
        copy: after.copy - before.copy,
        mutate: after.mutate - before.mutate,
        map: after.map - before.map,
        revoke: after.revoke - before.revoke,
        delete: after.delete - before.delete,
        zero_frames: after.zero_frames - before.zero_frames,
        io_map: after.io_map - before.io_map,
    }
}

/// Run one request and return its reply and the kernel invocations it caused.
fn measure(server: &mut Memsrv, client: u64, request: Request) -> (Reply, Counts) {
    let mut words = [0; MAX_MESSAGE_WORDS];
    let (label, length) = request.encode(&mut words);
    let before = server.kernel().counts;
    let outcome = server.handle(client, label, &words[..length], 0);
    let reply = outcome.result.unwrap_or_else(|e| panic!("{request:?} refused: {e}"));
    (reply, delta(server.kernel().counts, before))
}

fn row(name: &str, c: Counts) {
    let total = c.retype + c.copy + c.mutate + c.map + c.revoke + c.delete;
    println!(
        "| {name} | {} | {} | {} | {} | {} | {} | {} | {} KiB |",
        c.retype,
        c.copy,
        c.mutate,
        c.map,
        c.revoke,
        c.delete,
        total,
        c.zeroed_bytes >> 10
    );
}

fn id(reply: Reply) -> BufferId {
    match reply {
        Reply::Alloc(AllocReply { id }) => id,
        other => panic!("{other:?}"),
    }
}

fn alloc(size: u64) -> Request {
    Request::Alloc { size, align: Align::PAGE, pool: PoolId(0), flags: AllocFlags::NONE }
}

/// Print the table.
pub fn print() {
    println!("Kernel invocations memsrv makes per request (host model of seL4; one PPC each on top):");
    println!();
    println!("| request | retype | copy | mutate | map | revoke | delete | total | zeroed by reset |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut server = memsrv();
    row("HELLO, INFO, GRANT, POOL_INFO", measure(&mut server, 0, Request::Hello {}).1);
    let (first, c) = measure(&mut server, 0, alloc(4096));
    // The reserves carved at start-up (16 MiB for these quotas) already split
    // the pool; the first buffer splits the next free 16 MiB block down to a page.
    row("ALLOC 4 KiB, first after start-up (splits a 16 MiB block)", c);
    let first = id(first);
    for (size, name) in [(4096u64, "4 KiB"), (64 << 10, "64 KiB"), (3 << 20, "3 MiB"), (16 << 20, "16 MiB")] {
        let (reply, counts) = measure(&mut server, 0, alloc(size));
        let id = id(reply);
        let attach = Request::Attach { id, rights: Rights::ReadWrite };
        row(&format!("ALLOC {name} (pool already split)"), counts);
        row(&format!("ATTACH {name}"), measure(&mut server, 0, attach).1);
        row(&format!("DETACH {name}"), measure(&mut server, 0, Request::Detach { id }).1);
        measure(&mut server, 0, attach);
        row(&format!("FREE {name}, attached"), measure(&mut server, 0, Request::Free { id }).1);
    }
    row("FREE the last buffer (pool merges back whole)", measure(&mut server, 0, Request::Free { id: first }).1);
    let (reply, c) = measure(&mut server, 0, alloc(4096));
    row("ALLOC 4 KiB after everything was freed", c);
    let _ = reply;
}
