//! A whole capbuf system on the host: the real server state machine and the
//! real client library, joined through the seL4 model.
#![allow(dead_code)]

pub mod drive;
pub mod fuzz;
pub mod invariants;

use std::cell::RefCell;
use std::rc::Rc;

use capbuf_client::{Client, RawReply, Sys};
use capbuf_model::Model;
use capbuf_protocol::{ClientConfig, Config, PoolConfig, MAX_CLIENTS, MAX_MESSAGE_WORDS, MAX_POOLS};
use capbuf_server::Server;

/// Pools up to 2^12 pages (16 MiB) in tests.
pub const NODES: usize = capbuf_server::pool_nodes(17);
pub type TestServer = Server<Model, NODES>;
pub type World = Rc<RefCell<TestServer>>;

/// Pool 0: 4 MiB at 0x4000_0000; pool 1: 1 MiB at 0x5000_0000; pool 2: 16 MiB
/// at 0x6000_0000. memsrv carves the clients' metadata reserves from the last
/// pool first, so pool 2 holds them and pools 0 and 1 are all for buffers.
pub const POOLS: [(u64, u64); 3] = [(0x4000_0000, 22), (0x5000_0000, 20), (0x6000_0000, 24)];

/// Three clients on memsrv channels 0, 1, 2 with ids 10, 11, 12; client 2 may see physical addresses.
pub fn config(quota_bytes: u64, quota_buffers: u64, quota_attachments: u64) -> Config {
    let mut config = Config { table_bits: 12, pools: [None; MAX_POOLS], clients: [None; MAX_CLIENTS] };
    for (i, &(physical_address, size_bits)) in POOLS.iter().enumerate() {
        config.pools[i] = Some(PoolConfig { physical_address, size_bits, device: false });
    }
    for i in 0..3 {
        config.clients[i] = Some(ClientConfig {
            channel: i as u64,
            client_id: 10 + i as u64,
            quota_bytes,
            quota_buffers,
            quota_attachments,
            dma: i == 2,
            frame_caps: i == 1,
            supervisor: None,
            io_space: false,
        });
    }
    config
}

/// `config` with room for a full buffer table: the largest table, pool 0
/// grown to 32 MiB (8192 pages) and a fourth pool of 512 MiB for the
/// metadata reserves of thousands of buffers (filled first, last pool first).
pub fn at_scale(mut config: Config) -> Config {
    config.table_bits = *capbuf_protocol::TABLE_BITS.end();
    config.pools[0] = Some(PoolConfig { physical_address: 0x4000_0000, size_bits: 25, device: false });
    config.pools[3] = Some(PoolConfig { physical_address: 0x8000_0000, size_bits: 29, device: false });
    config
}

/// The pools a configuration names, as the model wants them.
pub fn pools_of(config: &Config) -> Vec<(u64, u64)> {
    config.pools.iter().flatten().map(|p| (p.physical_address, p.size_bits)).collect()
}

/// memsrv started with `config` on a model holding its pools' untypeds, its
/// clients' VSpaces and, for each `io_space` client, its device's IOSpace
/// (where capbuf-compose puts them).
pub fn start<const N: usize>(config: Config) -> Server<Model, N> {
    Server::new(model_for(&config), config).expect("valid config")
}

/// The model memsrv starts on under `config` (see [`start`]).
pub fn model_for(config: &Config) -> Model {
    let clients = config.clients.iter().flatten().count();
    let mut model = Model::new(config.table_bits, &pools_of(config), clients);
    for client in 0..clients {
        if let Some(slot) = config.io_space_slot(client) {
            model.add_io_space(slot as capbuf_server::Slot);
        }
    }
    model
}

/// A system with `config`: a model holding its pools' untypeds, and memsrv started on it.
pub fn world_with(config: Config) -> World {
    Rc::new(RefCell::new(start(config)))
}

pub fn world() -> World {
    world_with(config(8 << 20, 16, 16))
}

/// One client's kernel interface: PPCs go to the server (which maps
/// attachments into the client's VSpace in the model). `N` is the server's
/// pool bound.
pub struct Port<const N: usize = NODES> {
    pub world: Rc<RefCell<Server<Model, N>>>,
    pub client: usize,
}

impl<const N: usize> Sys for Port<N> {
    fn call(&mut self, label: u64, words: &[u64]) -> RawReply {
        let mut server = self.world.borrow_mut();
        let outcome = server.handle(self.client as u64, label, words, 0);
        let mut raw = RawReply { label: 0, words: [0; MAX_MESSAGE_WORDS], length: 0, caps: 0 };
        (raw.label, raw.length) = outcome.encode(&mut raw.words);
        raw
    }

    /// The kernel's capability transfer: the capability memsrv sends lands
    /// in the client's root CNode slot `slot`, if that slot is empty.
    fn call_receiving(&mut self, label: u64, words: &[u64], slot: u64) -> RawReply {
        let mut server = self.world.borrow_mut();
        let outcome = server.handle(self.client as u64, label, words, 0);
        let mut raw = RawReply { label: 0, words: [0; MAX_MESSAGE_WORDS], length: 0, caps: 0 };
        (raw.label, raw.length) = outcome.encode(&mut raw.words);
        if let Some(send) = outcome.send {
            let from = capbuf_server::CapRef::Table(send);
            raw.caps = usize::from(server.kernel_mut().transfer_to_client(self.client, slot, from).is_ok());
        }
        raw
    }
}

pub fn client(world: &World, index: usize) -> Client<Port> {
    Client::new(Port { world: world.clone(), client: index }).expect("hello")
}

/// Everything observable about the server's state, to show an error changed nothing.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    buffers: usize,
    free: Vec<u64>,
    usage: Vec<capbuf_server::Usage>,
    objects: (usize, usize, usize, usize),
    slots: usize,
    attachments: Vec<u64>,
}

pub fn snapshot(world: &World) -> Snapshot {
    let server = world.borrow();
    Snapshot {
        buffers: server.registry().len(),
        free: (0..server.config().pool_count()).map(|p| server.free_bytes(p).unwrap()).collect(),
        usage: (0..3).map(|c| server.usage(c)).collect(),
        objects: server.kernel().live_objects(),
        slots: server.kernel().used_table_slots(),
        attachments: server.registry().iter().map(|(_, b)| b.attachment_count()).collect(),
    }
}

/// The system is back to its first state ([`invariants::pristine`]), or panic.
pub fn assert_pristine(world: &World) {
    let fresh = world_with(world.borrow().config().clone());
    let fresh = fresh.borrow();
    if let Err(violation) = invariants::pristine(&mut world.borrow_mut(), &fresh) {
        panic!("not pristine: {violation}");
    }
}
