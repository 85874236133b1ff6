//! memsrv at the protocol's scale, on the host model: 63 clients (as many
//! as a Microkit memsrv has channels) sharing 4000 live buffers, the bound
//! on holders per buffer, and a 4 GiB pool handing out a 1 GiB buffer.
//! Servers this large run on threads with large stacks.

mod common;

use capbuf_client::{Client, ClientError};
use capbuf_model::Model;
use capbuf_protocol::{
    Align, AllocFlags, ClientConfig, ClientId, Config, Error, PoolConfig, PoolId, Rights, MAX_CLIENTS, MAX_POOLS,
};
use capbuf_server::{Server, MAX_HOLDERS};
use common::Port;
use std::cell::RefCell;
use std::rc::Rc;

/// Pool trees for pools of up to 4 GiB.
const BIG: usize = capbuf_server::pool_nodes(20);
type World = Rc<RefCell<Server<Model, BIG>>>;

fn on_big_stack(test: fn()) {
    std::thread::Builder::new().stack_size(512 << 20).spawn(test).unwrap().join().unwrap();
}

fn world(pool: (u64, u64), clients: usize, quota_buffers: u64) -> World {
    let mut config = Config { table_bits: 15, pools: [None; MAX_POOLS], clients: [None; MAX_CLIENTS] };
    config.pools[0] = Some(PoolConfig { physical_address: pool.0, size_bits: pool.1, device: false });
    for i in 0..clients {
        config.clients[i] = Some(ClientConfig {
            channel: i as u64,
            client_id: 100 + i as u64,
            quota_bytes: 1 << 31,
            quota_buffers,
            quota_attachments: 4,
            dma: false,
            frame_caps: false,
            supervisor: None,
            io_space: false,
        });
    }
    let model = Model::new(15, &[pool], clients);
    Rc::new(RefCell::new(Server::new(model, config).expect("valid config")))
}

fn client(world: &World, index: usize) -> Client<Port<BIG>> {
    Client::new(Port { world: world.clone(), client: index }).expect("hello")
}

const PAGE: u64 = 4096;

#[test]
fn sixty_three_clients_share_four_thousand_buffers() {
    on_big_stack(|| {
        let clients = 63;
        let world = world((0x8000_0000, 29), clients, 64);
        let mut ports: Vec<_> = (0..clients).map(|c| client(&world, c)).collect();
        let mut ids = Vec::new();
        for round in 0..64 {
            for (c, port) in ports.iter_mut().enumerate() {
                if ids.len() == 4000 {
                    break;
                }
                let id = port.alloc(PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
                port.grant(id, ClientId(100 + ((c + 1) % clients) as u64), Rights::ReadOnly).unwrap();
                ids.push((c, id, round));
            }
        }
        assert_eq!(world.borrow().registry().len(), 4000);
        // The last client reads what the first wrote, through its own mapping.
        let (owner, id, _) = ids[0];
        let view = ports[owner].attach(id, Rights::ReadWrite).unwrap();
        world.borrow_mut().kernel_mut().client_write(owner, view.vaddr, 0x5ca1e).unwrap();
        let shared = ports[owner + 1].attach(id, Rights::ReadOnly).unwrap();
        assert_eq!(world.borrow().kernel().client_read(owner + 1, shared.vaddr), Ok(0x5ca1e));
        // A client with no grant learns nothing, among thousands of ids.
        assert_eq!(ports[owner + 2].info(id).err(), Some(ClientError::Server(Error::UnknownBuffer)));
        // Its whole quota: the 65th buffer of client 0 is refused by quota, not by the table.
        let mut extra = Vec::new();
        while let Ok(id) = ports[0].alloc(PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE) {
            extra.push(id);
        }
        assert_eq!(
            ports[0].alloc(PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE),
            Err(ClientError::Server(Error::QuotaBuffers))
        );
        assert_eq!(world.borrow().usage(0).buffers, 64);
        ports[owner + 1].detach(id).unwrap();
        ports[owner].detach(id).unwrap();
        for (c, id, _) in ids {
            ports[c].free(id).unwrap();
        }
        for id in extra {
            ports[0].free(id).unwrap();
        }
        assert!(world.borrow().registry().is_empty());
        assert_eq!(world.borrow().free_bytes(0), world.borrow().total_bytes(0));
    });
}

#[test]
fn a_buffer_has_at_most_eight_holders_one_kept_for_its_owner() {
    on_big_stack(|| {
        let world = world((0x8000_0000, 26), 12, 4);
        let mut ports: Vec<_> = (0..12).map(|c| client(&world, c)).collect();
        let id = ports[0].alloc(PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
        for grantee in 1..MAX_HOLDERS {
            ports[0].grant(id, ClientId(100 + grantee as u64), Rights::ReadOnly).unwrap();
        }
        let one_more = ClientId(100 + MAX_HOLDERS as u64);
        assert_eq!(ports[0].grant(id, one_more, Rights::ReadOnly), Err(ClientError::Server(Error::TooManyHolders)));
        // A grantee's grant changes in place; the owner still attaches.
        ports[0].grant(id, ClientId(101), Rights::ReadWrite).unwrap();
        ports[0].attach(id, Rights::ReadWrite).unwrap();
        for port in &mut ports[1..MAX_HOLDERS] {
            port.attach(id, Rights::ReadOnly).unwrap();
        }
        assert_eq!(world.borrow().registry().get(id).unwrap().attachment_count(), MAX_HOLDERS as u64);
        // Withdrawing one makes room for another (the withdrawn client keeps a
        // hole until it detaches, in its own window, not in the buffer).
        ports[0].ungrant(id, ClientId(103)).unwrap();
        ports[0].grant(id, one_more, Rights::ReadOnly).unwrap();
        ports[MAX_HOLDERS].attach(id, Rights::ReadOnly).unwrap();
        ports[3].detach(id).unwrap();
        ports[0].free(id).unwrap();
        for c in (1..=MAX_HOLDERS).filter(|&c| c != 3) {
            ports[c].detach(id).unwrap();
        }
        assert_eq!(world.borrow().free_bytes(0), world.borrow().total_bytes(0));
    });
}

#[test]
fn a_four_gib_pool_hands_out_a_one_gib_buffer() {
    on_big_stack(|| {
        let world = world((0x1_0000_0000, 32), 2, 4);
        let mut port = client(&world, 0);
        assert_eq!(world.borrow().total_bytes(0).unwrap() >> 30, 3, "4 GiB less the metadata reserves");
        let id = port.alloc(1 << 30, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
        let info = port.info(id).unwrap();
        assert_eq!(info.size, 1 << 30);
        // One buffer is at most the 512 MiB window: it cannot be mapped whole.
        assert_eq!(port.attach(id, Rights::ReadWrite).err(), Some(ClientError::Server(Error::WindowFull)));
        let half = port.alloc(256 << 20, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
        let view = port.attach(half, Rights::ReadWrite).unwrap();
        let last = view.vaddr + (256 << 20) - 8;
        world.borrow_mut().kernel_mut().client_write(0, last, 7).unwrap();
        assert_eq!(world.borrow().kernel().client_read(0, last), Ok(7));
        port.detach(half).unwrap();
        port.free(half).unwrap();
        port.free(id).unwrap();
        assert_eq!(world.borrow().free_bytes(0), world.borrow().total_bytes(0));
    });
}
