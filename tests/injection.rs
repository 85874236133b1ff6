//! Kernel failures injected into random request sequences from three
//! clients: the model refuses the n-th kernel invocation of a request, as
//! the kernel refuses one (an seL4 error, no effect).
//!
//! One failure at a time: the request is refused with a KERNEL error naming
//! the invocation and the seL4 error; memsrv's books (buffers, grants,
//! attachments, usage, free bytes, reserve blocks in use, window runs, holes)
//! are as before the request (a FREE may have revoked attachments, leaving
//! holes, and no more);
//! after every step pool bytes, table slots, untyped blocks, registry
//! entries, reserve blocks, window runs and quotas are conserved and nothing
//! is lost; the same request, sent again, is served. At the end everything
//! is freed and the system is exactly as it started.
//!
//! Two failures at a time (the second usually refusing the undo): nothing
//! panics, what memsrv could not undo is counted as lost and nothing else
//! leaks, no client reaches memory it is not attached to, and memsrv goes on
//! serving. Start-up is tested with a failure at each of its invocations.

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;

use capbuf_client::ClientError;
use capbuf_model::Model;
use capbuf_pool::Allocation;
use capbuf_protocol::{
    Align, AllocFlags, BufferId, ClientId, ConfigError, Invocation, KernelFailure, PoolId, Rights, MAX_CLIENTS,
    PAGE_BITS,
};
use capbuf_server::{Failure, KernelError, Lost, Server, StartError, Usage};
use capbuf_testing::proptest_config;
use common::invariants::check_invariants;
use common::*;
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};

/// One request. In those about a buffer (picked among the live ones by
/// `buffer` modulo their number), `client` and `grantee` count from the
/// buffer's owner: 0 is the owner, 1 and 2 the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Request {
    Alloc {
        client: usize,
        pages: u64,
        pool: u64,
        align_bits: u64,
    },
    Attach {
        client: usize,
        buffer: usize,
        write: bool,
    },
    Detach {
        client: usize,
        buffer: usize,
    },
    Grant {
        client: usize,
        buffer: usize,
        grantee: usize,
        write: bool,
    },
    Ungrant {
        client: usize,
        buffer: usize,
        grantee: usize,
    },
    Free {
        client: usize,
        buffer: usize,
    },
    /// INFO: by the `dma` client (client index 2), it exposes the buffer, so
    /// that a FREE quarantines its pages.
    Info {
        client: usize,
        buffer: usize,
    },
    /// EXPORT: only client index 1 has `frame_caps`; the others are refused.
    Export {
        client: usize,
        buffer: usize,
        write: bool,
    },
    Unexport {
        client: usize,
        buffer: usize,
    },
    Reclaim,
}

impl Request {
    fn name(self) -> &'static str {
        match self {
            Request::Alloc { .. } => "ALLOC",
            Request::Attach { .. } => "ATTACH",
            Request::Detach { .. } => "DETACH",
            Request::Grant { .. } => "GRANT",
            Request::Ungrant { .. } => "UNGRANT",
            Request::Free { .. } => "FREE",
            Request::Info { .. } => "INFO",
            Request::Export { .. } => "EXPORT",
            Request::Unexport { .. } => "UNEXPORT",
            Request::Reclaim => "reclaim",
        }
    }
}

fn request() -> impl Strategy<Value = Request> {
    let c = 0usize..3;
    // Mostly the owner, which may grant, ungrant and free.
    let owner = || prop_oneof![3 => Just(0usize), 1 => 1usize..3];
    let b = any::<usize>();
    prop_oneof![
        4 => (c.clone(), prop_oneof![1u64..20, 500u64..700, 512u64..1024], 0u64..3, prop_oneof![Just(0u64), 12u64..23])
            .prop_map(|(client, pages, pool, align_bits)| Request::Alloc { client, pages, pool, align_bits }),
        5 => (c.clone(), b, any::<bool>()).prop_map(|(client, buffer, write)| Request::Attach { client, buffer, write }),
        2 => (c.clone(), b).prop_map(|(client, buffer)| Request::Detach { client, buffer }),
        4 => (owner(), b, c.clone(), any::<bool>())
            .prop_map(|(client, buffer, grantee, write)| Request::Grant { client, buffer, grantee, write }),
        2 => (owner(), b, c.clone()).prop_map(|(client, buffer, grantee)| Request::Ungrant { client, buffer, grantee }),
        2 => (owner(), b).prop_map(|(client, buffer)| Request::Free { client, buffer }),
        2 => (c.clone(), b).prop_map(|(client, buffer)| Request::Info { client, buffer }),
        2 => (c.clone(), b, any::<bool>()).prop_map(|(client, buffer, write)| Request::Export { client, buffer, write }),
        1 => (c, b).prop_map(|(client, buffer)| Request::Unexport { client, buffer }),
        1 => Just(Request::Reclaim),
    ]
}

/// Which invocation of the request fails, counted from 1, and the seL4
/// error (`seL4_Error`, 1 to 10) it fails with. Most requests make a few
/// invocations, attaching 3 MiB over 500.
fn fault() -> impl Strategy<Value = (u64, u64)> {
    (prop_oneof![4 => 1u64..4, 3 => 1u64..30, 1 => 1u64..600], 1u64..=10)
}

/// The three clients, the live buffers with their owners, every id issued
/// with its owner.
struct System {
    world: World,
    clients: [capbuf_client::Client<Port>; 3],
    buffers: Vec<(BufferId, usize)>,
    issued: Vec<(BufferId, usize)>,
}

impl System {
    fn new() -> System {
        System::with(config(6 << 20, 6, 6))
    }

    fn with(config: capbuf_protocol::Config) -> System {
        let world = world_with(config);
        let clients = [client(&world, 0), client(&world, 1), client(&world, 2)];
        System { world, clients, buffers: Vec::new(), issued: Vec::new() }
    }

    fn pick(&self, index: usize) -> Option<(BufferId, usize)> {
        (!self.buffers.is_empty()).then(|| self.buffers[index % self.buffers.len()])
    }

    /// The buffers a DETACH may name: the live ones, and freed ones a client
    /// still has a hole for (its attachment went with the FREE; its DETACH
    /// gives the window run back).
    fn detachable(&self) -> Vec<(BufferId, usize)> {
        let server = self.world.borrow();
        let holed = |id: BufferId| (0..3).any(|c| server.windows().hole(c, id).is_some());
        let freed = self.issued.iter().filter(|(id, _)| server.registry().get(*id).is_err() && holed(*id));
        self.buffers.iter().chain(freed).copied().collect()
    }

    /// The buffer `request` is about, if any.
    fn target(&self, request: Request) -> Option<BufferId> {
        match request {
            Request::Detach { buffer, .. } => {
                let ids = self.detachable();
                (!ids.is_empty()).then(|| ids[buffer % ids.len()].0)
            }
            Request::Attach { buffer, .. }
            | Request::Grant { buffer, .. }
            | Request::Ungrant { buffer, .. }
            | Request::Free { buffer, .. }
            | Request::Info { buffer, .. }
            | Request::Export { buffer, .. }
            | Request::Unexport { buffer, .. } => self.pick(buffer).map(|(id, _)| id),
            Request::Alloc { .. } | Request::Reclaim => None,
        }
    }

    /// Send `request` through the client library (or call reclaim).
    fn perform(&mut self, request: Request) -> Result<(), Failure> {
        let refused = |error: ClientError| match error {
            ClientError::Server(error) => Failure::Refused(error),
            ClientError::Kernel(failure) => Failure::Kernel(failure),
            other => panic!("library failure {other:?}"),
        };
        let rights = |write| if write { Rights::ReadWrite } else { Rights::ReadOnly };
        match request {
            Request::Alloc { client, pages, pool, align_bits } => {
                let id = self.clients[client]
                    .alloc(pages << PAGE_BITS, Align::bits(align_bits), PoolId(pool), AllocFlags::NONE)
                    .map_err(refused)?;
                self.buffers.push((id, client));
                self.issued.push((id, client));
                Ok(())
            }
            Request::Reclaim => self.world.borrow_mut().reclaim(),
            _ => {
                let Some(id) = self.target(request) else { return Ok(()) };
                let owner = self.issued.iter().find(|(b, _)| *b == id).map_or(0, |(_, owner)| *owner);
                let who = |offset: usize| (owner + offset) % 3;
                let id_of = |offset: usize| 10 + who(offset) as u64;
                let result = match request {
                    Request::Attach { client, write, .. } => {
                        self.clients[who(client)].attach(id, rights(write)).map(|_| ())
                    }
                    Request::Detach { client, .. } => self.clients[who(client)].detach(id),
                    Request::Grant { client, grantee, write, .. } => {
                        self.clients[who(client)].grant(id, ClientId(id_of(grantee)), rights(write))
                    }
                    Request::Ungrant { client, grantee, .. } => {
                        self.clients[who(client)].ungrant(id, ClientId(id_of(grantee)))
                    }
                    Request::Info { client, .. } => self.clients[who(client)].info(id).map(|_| ()),
                    Request::Export { client, write, .. } => {
                        self.clients[who(client)].export(id, rights(write)).map(|_| ())
                    }
                    Request::Unexport { client, .. } => self.clients[who(client)].unexport(id),
                    Request::Free { client, .. } => {
                        let result = self.clients[who(client)].free(id);
                        if result.is_ok() {
                            self.buffers.retain(|(b, _)| *b != id);
                        }
                        result
                    }
                    Request::Alloc { .. } | Request::Reclaim => unreachable!(),
                };
                result.map_err(refused)
            }
        }
    }

    /// Free every buffer, then detach every hole the frees (and earlier
    /// revocations) left, whether the library has a view of it or not (an
    /// attach whose undo the kernel refused was kept without one), and tidy
    /// the libraries' other views of freed buffers.
    /// Returns how many holes there were once every buffer was freed.
    fn free_everything(&mut self) -> u64 {
        for (id, owner) in std::mem::take(&mut self.buffers) {
            self.clients[owner].free(id).unwrap();
        }
        let mut holes = 0;
        for (c, client) in self.clients.iter_mut().enumerate() {
            for &(id, _) in &self.issued {
                if self.world.borrow().windows().hole(c, id).is_some() {
                    holes += 1;
                    assert_eq!(client.detach(id), Ok(()), "client {c} detaches its hole for {id}");
                } else if client.view(id).is_some() {
                    assert!(client.detach(id).is_err(), "the buffer was freed");
                }
            }
            assert!(self.world.borrow().windows().holes(c).is_empty(), "client {c}: holes left");
        }
        // Every exposed client confirms: the quarantine gives everything back.
        let held: Vec<_> = self.world.borrow().quarantine().iter().map(|q| (q.id, q.pending)).collect();
        for (id, pending) in held {
            for (c, client) in self.clients.iter_mut().enumerate() {
                if pending & (1 << c) != 0 {
                    assert_eq!(client.quiesce(id), Ok(()), "client {c} confirms {id}");
                }
            }
        }
        holes
    }
}

/// memsrv's books, as a client could learn them: every buffer with its
/// owner, place, grants, attachments (rights and window run) and whether it
/// is being freed; usage; free bytes; reserve blocks in use; window slots;
/// each client's holes (buffer id, first slot, slots; sorted); lost;
/// quarantined bytes per pool.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Books {
    buffers: BTreeMap<BufferId, BufferBooks>,
    usage: Vec<Usage>,
    free: Vec<u64>,
    reserves_in_use: Vec<usize>,
    window_slots: Vec<u32>,
    holes: Vec<Vec<(BufferId, u32, u32)>>,
    lost: Lost,
    quarantined: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct BufferBooks {
    owner: usize,
    pool: usize,
    data: Allocation,
    grants: [Option<Rights>; MAX_CLIENTS],
    attachments: [Option<(Rights, capbuf_server::window::Run)>; MAX_CLIENTS],
    exports: [Option<Rights>; MAX_CLIENTS],
    freeing: bool,
    exposed: u64,
}

fn books(world: &World) -> Books {
    let server = world.borrow();
    let buffers = server.registry().iter().map(|(id, b)| {
        let attachments = std::array::from_fn(|c| b.holders.attachment(c).map(|a| (a.rights, a.window)));
        (
            id,
            BufferBooks {
                owner: b.made.owner,
                pool: b.made.pool,
                data: b.made.data,
                grants: std::array::from_fn(|c| b.holders.grant(c)),
                attachments,
                exports: std::array::from_fn(|c| b.holders.export(c).map(|e| e.rights)),
                freeing: b.freeing,
                exposed: b.exposed,
            },
        )
    });
    Books {
        buffers: buffers.collect(),
        usage: (0..3).map(|c| server.usage(c)).collect(),
        free: (0..POOLS.len()).map(|p| server.free_bytes(p).unwrap()).collect(),
        reserves_in_use: server.reserves().iter().filter(|(_, r)| r.in_use).map(|(i, _)| i).collect(),
        window_slots: (0..3).map(|c| server.windows().used_slots(c)).collect(),
        holes: (0..3)
            .map(|c| {
                let mut holes: Vec<_> =
                    server.windows().holes(c).iter().map(|h| (h.id, h.run.first, h.run.slots)).collect();
                holes.sort();
                holes
            })
            .collect(),
        lost: server.lost(),
        quarantined: (0..POOLS.len()).map(|p| server.quarantined_bytes(p).unwrap()).collect(),
    }
}

/// A FREE the kernel interrupted may have revoked attachments of its buffer,
/// and started on its memory; nothing else may differ. Each attachment it
/// revoked left its holder a hole with the same run (counted in the holder's
/// attachments and window as before), but the owner's own, whose run and
/// quota came back. Each export it revoked gave its quota back.
/// The books after an UNGRANT or GRANT the kernel refused at its second
/// revocation: exactly one export of `id` is gone, with its quota and its
/// reserve block; nothing else changed.
fn after_interrupted_revocation(before: &Books, after: &Books, id: BufferId) -> Result<(), TestCaseError> {
    let (was, is) = (&before.buffers[&id], &after.buffers[&id]);
    let revoked: Vec<usize> =
        (0..MAX_CLIENTS).filter(|&c| was.exports[c].is_some() && is.exports[c].is_none()).collect();
    prop_assert_eq!(revoked.len(), 1, "only an export was revoked");
    let holder = revoked[0];
    let mut expected = before.clone();
    expected.buffers.get_mut(&id).expect("there").exports[holder] = None;
    expected.usage[holder].attachments -= 1;
    let released: Vec<usize> =
        before.reserves_in_use.iter().copied().filter(|b| !after.reserves_in_use.contains(b)).collect();
    prop_assert_eq!(released.len(), 1, "the export's reserve block came back");
    expected.reserves_in_use.retain(|b| *b != released[0]);
    prop_assert_eq!(&expected, after);
    Ok(())
}

fn after_interrupted_free(before: &Books, after: &Books, id: BufferId) -> Result<(), TestCaseError> {
    let (was, is) = (&before.buffers[&id], after.buffers.get(&id).expect("the buffer is still there"));
    prop_assert_eq!(
        (was.owner, was.pool, was.data, was.grants, was.exposed),
        (is.owner, is.pool, is.data, is.grants, is.exposed)
    );
    let mut holes = before.holes.clone();
    let mut usage = before.usage.clone();
    let mut window_slots = before.window_slots.clone();
    for (holder, (old, new)) in was.attachments.iter().zip(is.attachments).enumerate() {
        prop_assert!(new.is_none() || new == *old, "an attachment changed");
        let Some((_, run)) = old.filter(|_| new.is_none()) else { continue };
        if holder == was.owner {
            usage[holder].attachments -= 1;
            window_slots[holder] -= run.slots;
        } else {
            holes[holder].push((id, run.first, run.slots));
            holes[holder].sort();
        }
    }
    // A revoked export gives its quota back at once: it leaves no hole.
    for (holder, (old, new)) in was.exports.iter().zip(is.exports).enumerate() {
        prop_assert!(new.is_none() || new == *old, "an export changed");
        if old.is_some() && new.is_none() {
            usage[holder].attachments -= 1;
        }
    }
    prop_assert_eq!(&holes, &after.holes, "holes: the revoked attachments of others");
    prop_assert_eq!(&usage, &after.usage);
    prop_assert_eq!(&window_slots, &after.window_slots);
    let others = |books: &Books| {
        books.buffers.iter().filter(|(b, _)| **b != id).map(|(b, v)| (*b, v.clone())).collect::<Vec<_>>()
    };
    prop_assert_eq!(others(before), others(after));
    prop_assert_eq!(&before.free, &after.free);
    prop_assert_eq!(&before.quarantined, &after.quarantined, "nothing quarantined until the FREE completes");
    prop_assert_eq!(before.lost, after.lost);
    Ok(())
}

/// Failures injected, by request and invocation.
#[derive(Default)]
struct Tally {
    cases: u64,
    requests: u64,
    injected: BTreeMap<(&'static str, &'static str), u64>,
    lost: Lost,
    lost_requests: u64,
    kept_attachments: u64,
    /// Holes revocations left, holes DETACH gave back during the sequences,
    /// and holes detached at the end.
    holes: (u64, u64, u64),
    /// Frees that quarantined their buffer (a `dma` client had its address).
    quarantining_frees: u64,
}

/// Holes all clients have.
fn hole_count(world: &World) -> u64 {
    (0..3).map(|c| world.borrow().windows().holes(c).len() as u64).sum()
}

impl Tally {
    /// A request left `after` holes where there were `before`: no request
    /// both makes and gives back holes.
    fn count_holes(&mut self, before: u64, after: u64) {
        self.holes.0 += after.saturating_sub(before);
        self.holes.1 += before.saturating_sub(after);
    }

    fn total(&self) -> u64 {
        self.injected.values().sum()
    }

    fn print(&self, what: &str) {
        eprintln!(
            "{what}: {} cases, {} requests, {} kernel failures injected",
            self.cases,
            self.requests,
            self.total()
        );
        let mut by_request: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for ((request, invocation), count) in &self.injected {
            by_request.entry(request).or_default().push(format!("{invocation} {count}"));
        }
        for (request, invocations) in by_request {
            eprintln!("  {request}: {}", invocations.join(", "));
        }
        eprintln!("  FREEs that quarantined their buffer: {}", self.quarantining_frees);
        let (made, detached, at_end) = self.holes;
        eprintln!(
            "  holes left by revocations during the sequences: {made}, DETACH gave back {detached} of them; \
             detached after the final frees: {at_end}"
        );
        if self.kept_attachments > 0 {
            eprintln!("  attaches whose undo failed too, kept attached: {}", self.kept_attachments);
        }
        if self.lost_requests > 0 {
            eprintln!(
                "  requests whose undo failed too and lost something: {} ({} bytes, {} slots in all)",
                self.lost_requests, self.lost.bytes, self.lost.slots
            );
        }
    }
}

fn runner(cases: u32) -> TestRunner {
    let mut config = proptest_config(cases);
    config.source_file = Some(file!());
    TestRunner::new(config)
}

fn run_single(
    system: &mut System,
    steps: &[(Request, Option<(u64, u64)>)],
    tally: &mut Tally,
) -> Result<(), TestCaseError> {
    for &(request, fault) in steps {
        let before = books(&system.world);
        let injected_before = system.world.borrow().kernel().injected().len();
        if let Some((nth, code)) = fault {
            system.world.borrow_mut().kernel_mut().fail_invocation(nth, KernelError(code));
        }
        let holes_before = hole_count(&system.world);
        let result = system.perform(request);
        system.world.borrow_mut().kernel_mut().clear_failures();
        tally.requests += 1;
        tally.quarantining_frees += (books(&system.world).quarantined > before.quarantined) as u64;
        tally.count_holes(holes_before, hole_count(&system.world));
        check_invariants(&system.world)?;
        prop_assert_eq!(system.world.borrow().lost(), Lost::default(), "one failure at a time loses nothing");
        let injected = system.world.borrow().kernel().injected()[injected_before..].to_vec();
        let [failure] = injected.as_slice() else {
            prop_assert!(injected.is_empty());
            prop_assert!(!matches!(result, Err(Failure::Kernel(_))), "{:?} without an injected failure", result);
            continue;
        };
        *tally.injected.entry((request.name(), failure.invocation.name())).or_default() += 1;
        let named = KernelFailure { invocation: failure.invocation, code: failure.error.0 };
        prop_assert_eq!(result, Err(Failure::Kernel(named)), "{:?}: the reply names the failure", request);
        let after = books(&system.world);
        match (request, system.target(request)) {
            (Request::Free { .. }, Some(id)) => after_interrupted_free(&before, &after, id)?,
            // UNGRANT and a lowering GRANT revoke the grantee's export, then
            // its attachment: each complete in itself, like FREE's. Refused
            // at the second, the export stays revoked and the retry finishes.
            (Request::Ungrant { .. } | Request::Grant { .. }, Some(id)) if before != after => {
                after_interrupted_revocation(&before, &after, id)?
            }
            _ => prop_assert_eq!(&before, &after, "{:?} refused by the kernel changed memsrv's books", request),
        }
        // The next request is served: the same one again succeeds.
        let holes_before = hole_count(&system.world);
        let quarantined_before = books(&system.world).quarantined;
        let retry = system.perform(request);
        tally.count_holes(holes_before, hole_count(&system.world));
        tally.quarantining_frees += (books(&system.world).quarantined > quarantined_before) as u64;
        prop_assert_eq!(retry, Ok(()), "{:?} sent again after {:?}", request, named);
        check_invariants(&system.world)?;
    }
    Ok(())
}

#[test]
fn single_kernel_failures_are_undone_and_leak_nothing() {
    let tally = RefCell::new(Tally::default());
    let steps = prop::collection::vec((request(), prop::option::weighted(0.85, fault())), 1..80);
    let mut runner = runner(256);
    let result = runner.run(&steps, |steps| {
        let mut tally = tally.borrow_mut();
        tally.cases += 1;
        let mut system = System::new();
        run_single(&mut system, &steps, &mut tally)?;
        tally.holes.2 += system.free_everything();
        check_invariants(&system.world)?;
        assert_pristine(&system.world);
        Ok(())
    });
    tally.borrow().print("single failures");
    if let Err(error) = result {
        panic!("{error}\n{runner}");
    }
}

/// As above with a table of 128 slots, so that requests often need memsrv
/// to collapse dormant blocks for slots first (and the kernel may refuse
/// those revokes too).
#[test]
fn single_kernel_failures_with_a_small_table() {
    let tally = RefCell::new(Tally::default());
    let steps = prop::collection::vec((request(), prop::option::weighted(0.85, fault())), 1..80);
    let mut runner = runner(64);
    let result = runner.run(&steps, |steps| {
        let mut tally = tally.borrow_mut();
        tally.cases += 1;
        let mut small = config(1 << 30, 2, 2);
        small.table_bits = 7;
        let mut system = System::with(small);
        run_single(&mut system, &steps, &mut tally)?;
        tally.holes.2 += system.free_everything();
        check_invariants(&system.world)?;
        assert_pristine(&system.world);
        Ok(())
    });
    tally.borrow().print("single failures, small table");
    if let Err(error) = result {
        panic!("{error}\n{runner}");
    }
}

#[test]
fn double_kernel_failures_count_what_is_lost_and_memsrv_goes_on() {
    let tally = RefCell::new(Tally::default());
    let step = (request(), fault(), 1u64..4);
    let steps = prop::collection::vec(step, 1..60);
    let mut runner = runner(64);
    let result = runner.run(&steps, |steps| {
        let mut tally = tally.borrow_mut();
        tally.cases += 1;
        let mut system = System::new();
        for (request, (nth, code), gap) in steps {
            let lost_before = system.world.borrow().lost();
            let attached: u64 = system.world.borrow().registry().iter().map(|(_, b)| b.attachment_count()).sum();
            let injected_before = system.world.borrow().kernel().injected().len();
            {
                let mut world = system.world.borrow_mut();
                world.kernel_mut().fail_invocation(nth, KernelError(code));
                world.kernel_mut().fail_invocation(nth + gap, KernelError(code));
            }
            let holes_before = hole_count(&system.world);
            let result = system.perform(request);
            system.world.borrow_mut().kernel_mut().clear_failures();
            tally.requests += 1;
            tally.count_holes(holes_before, hole_count(&system.world));
            check_invariants(&system.world)?;
            let injected = system.world.borrow().kernel().injected()[injected_before..].to_vec();
            for failure in &injected {
                *tally.injected.entry((request.name(), failure.invocation.name())).or_default() += 1;
            }
            if let Some(first) = injected.first() {
                let named = KernelFailure { invocation: first.invocation, code: first.error.0 };
                prop_assert_eq!(result, Err(Failure::Kernel(named)));
            }
            if let (Request::Attach { .. }, Err(Failure::Kernel(_))) = (request, result) {
                if system.world.borrow().registry().iter().map(|(_, b)| b.attachment_count()).sum::<u64>() > attached {
                    tally.kept_attachments += 1;
                }
            }
            // The same request again is served (though the client may have
            // lost a reserve block, or be attached already).
            if !injected.is_empty() {
                let holes_before = hole_count(&system.world);
                let retry = system.perform(request);
                tally.count_holes(holes_before, hole_count(&system.world));
                prop_assert!(!matches!(retry, Err(Failure::Kernel(_))), "{:?} sent again: {:?}", request, retry);
                check_invariants(&system.world)?;
            }
            let lost = system.world.borrow().lost();
            if lost != lost_before {
                prop_assert!(injected.len() == 2, "only a failed undo loses anything");
                tally.lost_requests += 1;
                tally.lost.bytes += lost.bytes - lost_before.bytes;
                tally.lost.slots += lost.slots - lost_before.slots;
            }
            // memsrv goes on serving: every pool answers.
            for pool in 0..POOLS.len() as u64 {
                let info = system.clients[0].pool_info(PoolId(pool)).unwrap();
                prop_assert_eq!(info.lost, system.world.borrow().lost_bytes(pool as usize).unwrap());
            }
        }
        tally.holes.2 += system.free_everything();
        system.world.borrow_mut().reclaim().unwrap();
        check_invariants(&system.world)?;
        // Everything is back but what was lost: a lost block holds at most
        // its master CNode, whose frames went with the leaves' revoke.
        let server = system.world.borrow();
        let lost_blocks = server.reserves().iter().filter(|(_, r)| r.lost).count();
        let (_, frames, tables, cnodes) = server.kernel().live_objects();
        prop_assert_eq!((frames, tables), (0, 0));
        prop_assert!(cnodes <= lost_blocks);
        prop_assert!(server.registry().is_empty());
        for p in 0..POOLS.len() {
            prop_assert_eq!(server.free_bytes(p), server.total_bytes(p));
        }
        Ok(())
    });
    tally.borrow().print("double failures");
    if let Err(error) = result {
        panic!("{error}\n{runner}");
    }
}

/// A failure at each invocation of start-up: memsrv refuses to start, names
/// the invocation, and leaves the kernel as it found it, so that a second
/// start succeeds and is as good as a first.
#[test]
fn failures_during_start_up_leave_the_kernel_as_it_was() {
    let config = config(6 << 20, 6, 6);
    let fresh = Model::new(config.table_bits, &POOLS, 3);
    let mut counting = Model::new(config.table_bits, &POOLS, 3);
    drop(Server::<&mut Model, NODES>::new(&mut counting, config.clone()).unwrap());
    let invocations = counting.invocations();
    assert!(invocations > 50, "start-up splits the pools: {invocations} invocations");
    eprintln!("start-up: a failure injected at each of its {invocations} invocations");
    for nth in 1..=invocations {
        let mut model = Model::new(config.table_bits, &POOLS, 3);
        model.fail_invocation(nth, KernelError(3));
        let refused = Server::<&mut Model, NODES>::start(&mut model, config.clone()).err();
        let failed = model.injected()[0];
        assert_eq!(failed.invocation, Invocation::UntypedRetype, "start-up only splits");
        let failure = KernelFailure { invocation: Invocation::UntypedRetype, code: 3 };
        assert_eq!(refused, Some(StartError { error: ConfigError::PoolCapability, kernel: Some(failure) }));
        assert_eq!(model.live_objects(), fresh.live_objects(), "failure at {nth}");
        assert_eq!(model.used_table_slots(), fresh.used_table_slots(), "failure at {nth}");
        let again = Server::<&mut Model, NODES>::new(&mut model, config.clone()).expect("a second start");
        let first = world_with(config.clone());
        let first = first.borrow();
        for p in 0..POOLS.len() {
            assert_eq!(again.free_bytes(p), first.free_bytes(p));
        }
        assert_eq!(again.free_slot_count(), first.free_slot_count());
        drop(again);
        assert_eq!(model.live_objects(), first.kernel().live_objects());
    }
}

/// The undo of an ATTACH refused too: the attachment stays, counted in the
/// client's quota and mapped no further than its buffer, and DETACH removes
/// it like any other.
#[test]
fn an_attach_whose_undo_is_refused_stays_attached_until_detached() {
    let world = world();
    let mut owner = client(&world, 0);
    let id = owner.alloc(3 << 20, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    // Attaching 3 MiB: the CNode (1), its guard (2), the page table (3), then
    // 257 frame copies: fail the second copy, and the revoke undoing it.
    world.borrow_mut().kernel_mut().fail_invocation(5, KernelError(10));
    world.borrow_mut().kernel_mut().fail_invocation(6, KernelError(3));
    let refused = owner.attach(id, Rights::ReadWrite);
    let copy = KernelFailure { invocation: Invocation::CNodeCopy, code: 10 };
    assert_eq!(refused, Err(ClientError::Kernel(copy)));
    assert_eq!(world.borrow().lost(), Lost::default(), "nothing lost: the attachment is kept");
    assert!(world.borrow().registry().get(id).unwrap().holders.attachment(0).is_some());
    assert_eq!(world.borrow().usage(0).attachments, 1);
    check_invariants(&world).unwrap();
    assert_eq!(owner.attach(id, Rights::ReadWrite), Err(ClientError::Server(capbuf_protocol::Error::AlreadyAttached)));
    owner.detach(id).unwrap();
    assert!(world.borrow().kernel().client_mappings(0).is_empty());
    owner.attach(id, Rights::ReadWrite).unwrap();
    owner.free(id).unwrap();
    assert_pristine(&world);
}

/// The undo of an ALLOC refused too: its metadata block and two slots are
/// lost and counted (POOL_INFO says so), the buffer's pages come back
/// (revoked before their next use), and memsrv goes on serving.
#[test]
fn an_alloc_whose_undo_is_refused_loses_its_metadata_block_and_says_so() {
    let world = world();
    let mut owner = client(&world, 0);
    // Once the pool is split, a 4 KiB buffer is a CNode (1), its guard (2)
    // and a frame (3): fail the frame, and the revoke undoing it.
    let warm = owner.alloc(4096, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    owner.free(warm).unwrap();
    let before = (world.borrow().free_bytes(0), world.borrow().usage(0));
    world.borrow_mut().kernel_mut().fail_invocation(3, KernelError(10));
    world.borrow_mut().kernel_mut().fail_invocation(4, KernelError(3));
    let retype = KernelFailure { invocation: Invocation::UntypedRetype, code: 10 };
    assert_eq!(owner.alloc(4096, Align::PAGE, PoolId(0), AllocFlags::NONE), Err(ClientError::Kernel(retype)));
    let block = world.borrow().reserves().block_pages() << PAGE_BITS;
    assert_eq!(world.borrow().lost(), Lost { bytes: block, slots: 2 });
    assert_eq!((world.borrow().free_bytes(0), world.borrow().usage(0)), before, "the pages and quota are back");
    assert_eq!(owner.pool_info(PoolId(2)).unwrap().lost, block, "the reserves live in pool 2");
    assert_eq!(owner.pool_info(PoolId(0)).unwrap().lost, 0);
    check_invariants(&world).unwrap();
    // The same pages serve the next buffer: memsrv revokes them first.
    let id = owner.alloc(4096, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    let view = owner.attach(id, Rights::ReadWrite).unwrap();
    assert_eq!(world.borrow().kernel().client_read(0, view.vaddr), Ok(0));
    owner.free(id).unwrap();
    world.borrow_mut().reclaim().unwrap();
    let server = world.borrow();
    let (_, frames, tables, cnodes) = server.kernel().live_objects();
    assert_eq!((frames, tables, cnodes), (0, 0, 1), "only the lost block's CNode remains");
    assert_eq!(server.free_bytes(0), server.total_bytes(0));
}
