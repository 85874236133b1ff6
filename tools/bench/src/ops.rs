//! Kernel invocations memsrv makes for each op, counted on the host model:
//! what each request costs beyond its PPC, independent of the machine.

use capbuf_model::{Counts, Model};
use capbuf_protocol::{ClientConfig, Config, Op, PoolConfig, Reply, Rights, MAX_CLIENTS, MAX_POOLS};
use capbuf_server::Server;

const NODES: usize = 2 << 14;
type Memsrv = Server<Model, NODES>;

fn memsrv() -> Box<Memsrv> {
    let mut config = Config { table_bits: 12, pools: [None; MAX_POOLS], clients: [None; MAX_CLIENTS] };
    config.pools[0] = Some(PoolConfig { physical_address: 0xa000_0000, size_bits: 26 });
    for i in 0..2 {
        config.clients[i] = Some(ClientConfig {
            channel: i as u64,
            client_id: i as u64 + 1,
            quota_bytes: 1 << 26,
            quota_buffers: 64,
            quota_attachments: 64,
            dma: true,
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
    }
}

/// Run one request and return its reply and the kernel invocations it caused.
fn measure(server: &mut Memsrv, client: u64, op: Op, words: &[u64]) -> (Reply, Counts) {
    let before = server.kernel().counts;
    let outcome = server.handle(client, op as u64, words, 0);
    let reply = outcome.result.unwrap_or_else(|e| panic!("{op:?} refused: {e}"));
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

fn id(reply: Reply) -> u64 {
    match reply {
        Reply::Alloc(id) => id.raw(),
        other => panic!("{other:?}"),
    }
}

/// Print the table.
pub fn print() {
    println!("Kernel invocations memsrv makes per request (host model of seL4; one PPC each on top):");
    println!();
    println!("| request | retype | copy | mutate | map | revoke | delete | total | zeroed by reset |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut server = memsrv();
    row("HELLO, INFO, GRANT, POOL_INFO", measure(&mut server, 0, Op::Hello, &[]).1);
    let (first, c) = measure(&mut server, 0, Op::Alloc, &[4096, 0, 0, 0]);
    // The reserves carved at start-up (16 MiB for these quotas) already split
    // the pool; the first buffer splits the next free 16 MiB block down to a page.
    row("ALLOC 4 KiB, first after start-up (splits a 16 MiB block)", c);
    let first = id(first);
    for (size, name) in [(4096u64, "4 KiB"), (64 << 10, "64 KiB"), (3 << 20, "3 MiB"), (16 << 20, "16 MiB")] {
        let (reply, alloc) = measure(&mut server, 0, Op::Alloc, &[size, 0, 0, 0]);
        let buffer = id(reply);
        row(&format!("ALLOC {name} (pool already split)"), alloc);
        row(&format!("ATTACH {name}"), measure(&mut server, 0, Op::Attach, &[buffer, Rights::ReadWrite as u64]).1);
        row(&format!("DETACH {name}"), measure(&mut server, 0, Op::Detach, &[buffer]).1);
        measure(&mut server, 0, Op::Attach, &[buffer, Rights::ReadWrite as u64]);
        row(&format!("FREE {name}, attached"), measure(&mut server, 0, Op::Free, &[buffer]).1);
    }
    row("FREE the last buffer (pool merges back whole)", measure(&mut server, 0, Op::Free, &[first]).1);
    let (reply, c) = measure(&mut server, 0, Op::Alloc, &[4096, 0, 0, 0]);
    row("ALLOC 4 KiB after everything was freed", c);
    let _ = reply;
}
