//! Metadata reserves: a client within its quotas can always attach and
//! allocate, whatever it or anyone else did to the pools, and configurations
//! whose reserves do not fit are refused at start-up.

mod common;

use capbuf_model::Model;
use capbuf_protocol::{
    Align, AllocFlags, ClientConfig, ClientId, Config, ConfigError, PoolConfig, PoolId, Rights, MAX_CLIENTS, MAX_POOLS,
    PAGE_BITS,
};
use capbuf_server::{reserve, Server};
use common::*;

const PAGE: u64 = 1 << PAGE_BITS;

/// The regression of issue 9 (and of the flaky property test): one client
/// fills a 1024-page pool with its own buffers, then attaches them. The
/// attachments' CNodes and page tables come from its reserve, not the pool.
#[test]
fn a_client_that_filled_a_pool_attaches_its_buffers() {
    let world = world_with(config(6 << 20, 10, 10));
    let mut c = client(&world, 0);
    let mut ids = vec![
        c.alloc(501 * PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap(),
        c.alloc(505 * PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap(),
    ];
    // The rest, 18 pages in one run of two blocks (2 and 16 pages), too:
    // POOL_INFO's largest_free is the longest free run, the largest buffer
    // ALLOC can get. The second buffer crosses block boundaries as well.
    loop {
        let largest = world.borrow_mut().handle(0, capbuf_protocol::Op::PoolInfo as u64, &[0], 0).result;
        let Ok(capbuf_protocol::Reply::PoolInfo(info)) = largest else { panic!("{largest:?}") };
        if info.largest_free == 0 {
            break;
        }
        ids.push(c.alloc(info.largest_free, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap());
    }
    assert_eq!(ids.len(), 3);
    assert_eq!(world.borrow().free_bytes(0), Some(0), "not one page of pool 0 left");
    for &id in &ids {
        let view = c.attach(id, Rights::ReadWrite).unwrap();
        let end = view.vaddr + view.size - PAGE;
        world.borrow_mut().kernel_mut().client_write(0, end, 5).unwrap();
        assert_eq!(world.borrow().kernel().client_read(0, end), Ok(5));
    }
    assert_eq!(world.borrow().free_bytes(0), Some(0));
    // Another client's buffer fills the other pool to the last page too: its
    // master CNode needs no pool memory either.
    let mut other = client(&world, 1);
    let whole = other.alloc(1 << 20, Align::PAGE, PoolId(1), AllocFlags::NONE).unwrap();
    assert_eq!(world.borrow().free_bytes(1), Some(0));
    other.attach(whole, Rights::ReadOnly).unwrap();
    for id in ids {
        c.free(id).unwrap();
    }
    other.free(whole).unwrap();
    assert_pristine(&world);
}

/// Every client at its quotas, with buffers whose metadata is the worst case
/// (4 MiB - 4 KiB: 511 small frames, one large, a page table: a 64 KiB
/// block), while the pools are full: each attach and alloc finds a free block
/// of the right client's reserve, and every CNode and page table lies in one.
#[test]
fn a_full_reserve_serves_every_attachment_and_buffer_the_quotas_allow() {
    let world = world_with(config(6 << 20, 3, 3));
    let mut clients = [client(&world, 0), client(&world, 1), client(&world, 2)];
    let worst = clients[0].alloc(1023 * PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    let most_small = clients[0].alloc(255 * PAGE, Align::PAGE, PoolId(1), AllocFlags::NONE).unwrap();
    let last_page = clients[0].alloc(PAGE, Align::PAGE, PoolId(1), AllocFlags::NONE).unwrap();
    assert_eq!((world.borrow().free_bytes(0), world.borrow().free_bytes(1)), (Some(PAGE), Some(0)));
    for id in [worst, most_small, last_page] {
        clients[0].grant(id, ClientId(11), Rights::ReadWrite).unwrap();
        clients[0].grant(id, ClientId(12), Rights::ReadOnly).unwrap();
    }
    for (index, c) in clients.iter_mut().enumerate() {
        for id in [worst, most_small, last_page] {
            c.attach(id, Rights::ReadOnly).unwrap_or_else(|e| panic!("client {index} attaching {id}: {e:?}"));
        }
    }
    let server = world.borrow();
    let reserves = server.reserves();
    assert_eq!(reserves.block_pages(), 16);
    for c in 0..3 {
        let in_use = reserves.of(c).filter(|&i| reserves.get(i).unwrap().in_use).count();
        assert_eq!(in_use, if c == 0 { 6 } else { 3 }, "client {c}: three attachments, and client 0's buffers");
        assert_eq!(reserves.of(c).len(), 6, "3 buffers + 3 attachments");
    }
    for (address, size_bits) in server.kernel().metadata_objects() {
        let holder = reserves.iter().find(|(_, r)| {
            let start = POOLS[r.pool].0 + (r.block.offset << PAGE_BITS);
            r.in_use && address >= start && address + (1 << size_bits) <= start + (r.block.pages << PAGE_BITS)
        });
        assert!(holder.is_some(), "CNode or page table at {address:#x} outside the reserves");
    }
    assert_eq!(server.kernel().live_objects().3, 3 + 9, "three master CNodes, nine attachment CNodes");
    drop(server);
    // At the quotas, with the pools full, the refusals are the quotas'.
    use capbuf_client::ClientError::Server as Refused;
    use capbuf_protocol::Error;
    let mine = clients[1].alloc(PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    assert_eq!(world.borrow().free_bytes(0), Some(0), "the last page; its master CNode is in client 1's reserve");
    assert_eq!(clients[1].attach(mine, Rights::ReadWrite), Err(Refused(Error::QuotaAttachments)));
    assert_eq!(clients[0].alloc(PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE), Err(Refused(Error::QuotaBuffers)));
    clients[1].detach(worst).unwrap();
    clients[1].attach(mine, Rights::ReadWrite).unwrap();
    clients[1].free(mine).unwrap();
    for id in [worst, most_small, last_page] {
        clients[0].free(id).unwrap();
    }
    // The others' attachments went with the frees; their window runs stay
    // taken (holes) until they detach.
    for c in &mut clients[1..] {
        for id in [worst, most_small, last_page] {
            if c.view(id).is_some() {
                c.detach(id).unwrap();
            }
        }
    }
    assert_pristine(&world);
}

/// Issue 9: four 4 KiB buffers aligned to 4 MiB (16 KiB of quota) left no
/// 8 MiB block in a 16 MiB pool. Each now pays for the 4 MiB block it breaks,
/// so a client with half the pool as its quota breaks at most half the pool,
/// and another client's 8 MiB buffer, within its own quota, fits.
#[test]
fn aligned_buffers_pay_for_the_blocks_they_break() {
    let mut config = config(8 << 20, 4, 1);
    config.pools = [None; MAX_POOLS];
    config.pools[0] = Some(PoolConfig { physical_address: 0x4000_0000, size_bits: 24, device: false });
    config.pools[1] = Some(PoolConfig { physical_address: 0x5000_0000, size_bits: 20, device: false });
    let world = world_with(config);
    assert_eq!(world.borrow().reserved_bytes(0), Some(0), "the reserves went to the last pool");
    let (mut attacker, mut victim) = (client(&world, 0), client(&world, 1));
    let first = attacker.alloc(PAGE, Align::bits(22), PoolId(0), AllocFlags::NONE).unwrap();
    let second = attacker.alloc(PAGE, Align::bits(22), PoolId(0), AllocFlags::NONE).unwrap();
    assert_eq!(world.borrow().usage(0).bytes, 8 << 20, "each paid for a 4 MiB block");
    assert_eq!(attacker.info(first).unwrap().size, PAGE, "the buffer itself is one page");
    assert_eq!(
        attacker.alloc(PAGE, Align::bits(22), PoolId(0), AllocFlags::NONE),
        Err(capbuf_client::ClientError::Server(capbuf_protocol::Error::QuotaBytes))
    );
    let big = victim
        .alloc(8 << 20, Align::PAGE, PoolId(0), AllocFlags::NONE)
        .expect("an 8 MiB buffer within the victim's quota");
    attacker.free(first).unwrap();
    assert_eq!(world.borrow().usage(0).bytes, 4 << 20);
    // Alignment up to the buffer's own power-of-two size costs nothing more.
    let aligned = attacker.alloc(5 * PAGE, Align::bits(15), PoolId(0), AllocFlags::NONE).unwrap();
    assert_eq!(world.borrow().usage(0).bytes, (4 << 20) + 5 * PAGE);
    for id in [second, aligned] {
        attacker.free(id).unwrap();
    }
    victim.free(big).unwrap();
    assert_pristine(&world);
}

#[test]
fn configurations_whose_reserves_do_not_fit_are_refused() {
    let start = |config: Config, pools: &[(u64, u64)]| {
        Server::<Model, NODES>::new(Model::new(config.table_bits, pools, 3), config).err()
    };
    // 3 clients x (128 + 128) blocks of 64 KiB: 48 MiB, more than the 21 MiB of pools.
    assert_eq!(start(config(1 << 30, 1000, 1000), &POOLS), Some(ConfigError::ReservesExceedPools));
    let mut small = config(1 << 30, 100, 0);
    small.table_bits = 7;
    assert_eq!(start(small, &POOLS), Some(ConfigError::ReservesExceedTable));
    assert_eq!(start(config(6 << 20, 6, 6), &POOLS[..2]), Some(ConfigError::PoolCapability), "no untyped for pool 2");
    // What fits starts, and reports each client's reserve.
    let fits = config(6 << 20, 6, 6);
    let world = world_with(fits.clone());
    for c in 0..3 {
        assert_eq!(reserve::reserve_bytes(&fits, c), 12 * (64 << 10), "6 buffers and 6 attachments of 64 KiB");
    }
    assert_eq!(world.borrow().reserved_bytes(2), Some(3 * 12 * (64 << 10)));
    assert_eq!(world.borrow().total_bytes(2), Some((16 << 20) - 3 * 12 * (64 << 10)));
    // Clients without quotas reserve nothing.
    let world = world_with(config(0, 0, 0));
    for (p, &(_, size_bits)) in POOLS.iter().enumerate() {
        assert_eq!(world.borrow().free_bytes(p), Some(1 << size_bits));
    }
}

/// The start-up check counts the table slots the reserves take without a
/// kernel; memsrv, carving them, uses exactly as many.
#[test]
fn the_reserves_take_the_table_slots_the_check_predicts() {
    for (quotas, buffers, attachments) in
        [(0, 0, 0), (1 << 20, 1, 0), (6 << 20, 6, 6), (1 << 30, 40, 3), (1 << 30, 60, 40), (1 << 30, 128, 128)]
    {
        for pools in [&POOLS[..], &POOLS[..1], &POOLS[1..]] {
            let mut config = config(quotas, buffers, attachments);
            config.pools = [None; MAX_POOLS];
            for (i, &(physical_address, size_bits)) in pools.iter().enumerate() {
                config.pools[i] = Some(PoolConfig { physical_address, size_bits, device: false });
            }
            let predicted = reserve::table_slots(&config);
            match Server::<Model, NODES>::new(Model::new(12, pools, 3), config) {
                Ok(server) => {
                    assert_eq!(server.free_slot_count() as u64, 4096 - predicted.unwrap());
                    // Below the first free slot only the pools' untypeds and the three clients' VSpaces are filled: the slots of absent pools stay empty.
                    let reserved_but_empty = capbuf_protocol::MEMSRV_TABLE_VSPACES - pools.len() as u64;
                    assert_eq!(server.kernel().used_table_slots() as u64, predicted.unwrap() - reserved_but_empty);
                }
                Err(error) => assert_eq!(predicted.err(), Some(error)),
            }
        }
    }
}

/// The value of attribute `name` in one line of XML.
fn attribute<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {name}=\""))? + name.len() + 3;
    Some(&line[start..start + line[start..].find('"')?])
}

fn number(text: &str) -> u64 {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).unwrap(),
        None => text.parse().unwrap(),
    }
}

/// The demo's `system.xml`: the reserves the README states, and the free
/// bytes the QEMU test expects memsrv to report once every buffer is freed.
#[test]
fn the_demo_systems_reserves() {
    let xml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/system.xml")).unwrap();
    let mut config = Config { table_bits: 12, pools: [None; MAX_POOLS], clients: [None; MAX_CLIENTS] };
    let mut names = Vec::new();
    // system.xml gives the pools no address: capbuf-compose places them. The
    // reserves do not depend on where; place them as it would in
    // qemu_virt_aarch64's RAM (less what the kernel takes).
    let pools: Vec<(Option<u64>, u32)> = xml
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("<pool "))
        .map(|line| {
            (attribute(line, "phys_addr").map(number), number(attribute(line, "size").unwrap()).trailing_zeros())
        })
        .collect();
    let fixed: Vec<Option<u64>> = pools.iter().map(|&(address, _)| address).collect();
    let bits: Vec<u32> = pools.iter().map(|&(_, bits)| bits).collect();
    let mut addresses = vec![0; pools.len()];
    capbuf_server::place_pools(&[0x6100_0000..0xbf00_0000], &[], &bits, &fixed, &mut addresses).unwrap();
    for (i, (&physical_address, &bits)) in addresses.iter().zip(&bits).enumerate() {
        config.pools[i] = Some(PoolConfig { physical_address, size_bits: bits as u64, device: false });
    }
    for line in xml.lines().map(str::trim) {
        if line.starts_with("<client ") {
            let index = names.len();
            names.push(attribute(line, "pd").unwrap().to_string());
            let quota = |name: &str, default: u64| attribute(line, name).map_or(default, number);
            config.clients[index] = Some(ClientConfig {
                channel: index as u64,
                client_id: number(attribute(line, "id").unwrap()),
                quota_bytes: quota("quota_bytes", 16 << 20),
                quota_buffers: quota("quota_buffers", 16),
                quota_attachments: quota("quota_attachments", 16),
                dma: false,
                frame_caps: false,
                supervisor: None,
                io_space: false,
            });
        }
    }
    let reserves: Vec<(&str, u64)> =
        names.iter().enumerate().map(|(i, name)| (name.as_str(), reserve::reserve_bytes(&config, i) >> 10)).collect();
    assert_eq!(
        reserves,
        [
            ("producer", 512),
            ("consumer", 128),
            ("victim", 128),
            ("driver", 512),
            ("hostile", 448),
            ("cdemo", 256),
            ("supervisor", 64),
            ("worker", 256)
        ],
        "KiB per client, as the README says"
    );
    let pools = pools_of(&config);
    // memsrv's state for a 64 MiB pool is about 0.5 MiB and start-up moves
    // it a few times: more than a test thread's 2 MiB of stack holds (the
    // memsrv PD has 4 MiB, see README), so it starts on a thread with as much.
    let clients = names.len();
    let start = move || {
        let memsrv =
            Server::<Model, { capbuf_server::pool_nodes(14) }>::new(Model::new(12, &pools, clients), config).unwrap();
        let small = (memsrv.free_bytes(1).unwrap(), memsrv.total_bytes(1));
        (memsrv.free_bytes(0).unwrap(), memsrv.total_bytes(0), small)
    };
    let (free, total, small) = std::thread::Builder::new().stack_size(256 << 20).spawn(start).unwrap().join().unwrap();
    assert_eq!(free, (64 << 20) - (2304 << 10));
    assert_eq!(total, Some(free), "POOL_INFO's total: what buffers can use");
    assert_eq!(small, (32 << 10, Some(32 << 10)), "the small pool holds no reserve block: all of it is for buffers");
    let script = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/qemu-test")).unwrap();
    for line in [
        format!("producer: pool 0 after: {free} of {free} bytes free"),
        format!("producer: pool 0 whole: free {free} of {free} bytes, lost 0, quarantined 0"),
        "producer: pool 1 whole: free 32768 of 32768 bytes, lost 0, quarantined 0".to_string(),
    ] {
        assert!(script.contains(&line), "scripts/qemu-test requires '{line}'");
    }
}
