//! Bounded-exhaustive check of memsrv in a small scope: every sequence of up
//! to [`DEPTH`] steps (`CAPBUF_EXHAUSTIVE_DEPTH` to change it) from two
//! clients and a supervisor over a 16-page pool, each step taken once as it
//! is and once with each of memsrv's kernel invocations in it refused (one
//! failure per step, at any step), and after every step the invariants and
//! the step's own checks ([`common::drive`]); in every state reached, freeing
//! everything must leave the system exactly as it started.
//!
//! States are told apart by a 128-bit digest of memsrv's whole state, the
//! kernel model's (its object and capability ids renumbered in order) and
//! the ids issued and freed ([`Harness::fingerprint`]). A state reached again
//! with no more steps left than before is not explored again: everything
//! checked is a function of the state and the step, and the digest covers
//! everything memsrv and the model decide by, so the sequences below it were
//! checked from its first visit (unless two states collide in 128 bits).

mod common;

use std::collections::HashMap;
use std::time::Instant;

use capbuf_model::{error, Model};
use capbuf_protocol::{
    Align, AllocFlags, ClientConfig, ClientId, Config, PoolConfig, PoolId, Request, Rights, MAX_CLIENTS, MAX_POOLS,
    PAGE_BITS,
};
use capbuf_server::Server;
use common::drive::{nth_issued, Harness, Step, RECEIVE_SLOT};

/// Sequences up to this many steps.
const DEPTH: usize = 6;
/// Kernel failures per sequence: each at any step and any invocation of it.
const FAILURES: usize = 1;
/// Pool bound: the largest pool has 64 pages.
const NODES: usize = 2 << 6;

/// Pool 0: 16 pages for buffers. Pool 1: 256 KiB, where memsrv carves the
/// metadata reserves (last pool first). Client 0 (id 10) is `dma`, client 1
/// (id 11) has `frame_caps`; each may own 2 buffers, 16 pages, and hold 2
/// attachments. Client 2 (id 12), their supervisor, owns nothing.
fn small_config() -> Config {
    let mut pools = [None; MAX_POOLS];
    pools[0] = Some(PoolConfig { physical_address: 0x4000_0000, size_bits: 16, device: false });
    pools[1] = Some(PoolConfig { physical_address: 0x4100_0000, size_bits: 18, device: false });
    let mut clients = [None; MAX_CLIENTS];
    for i in 0..3 {
        let owner = i < 2;
        clients[i] = Some(ClientConfig {
            channel: i as u64,
            client_id: 10 + i as u64,
            quota_bytes: if owner { 16 << PAGE_BITS } else { 0 },
            quota_buffers: if owner { 2 } else { 0 },
            quota_attachments: if owner { 2 } else { 1 },
            dma: i == 0,
            frame_caps: i == 1,
            supervisor: owner.then_some(2),
            io_space: false,
        });
    }
    Config { table_bits: 7, pools, clients }
}

/// Every step the search tries in every state; adding one is one line.
/// Client 0 (`dma`) owns and shares; client 1 (`frame_caps`) is granted,
/// exports and tries its capabilities, and allocates with WAIT (two of
/// client 0's 8-page blocks fill the pool); client 2 supervises both.
/// HELLO, POOL_INFO and malformed messages change nothing, and memsrv's
/// collapse of dormant blocks is no request: they are left to the fuzzer
/// (and the collapse to every teardown).
fn alphabet() -> Vec<Step> {
    let page = 1 << PAGE_BITS;
    let alloc = |pages: u64, align_bits, flags| Request::Alloc {
        size: pages * page,
        align: Align::bits(align_bits),
        pool: PoolId(0),
        flags,
    };
    let owner = |request| Step::Send { client: 0, request };
    let grantee = |request| Step::Send { client: 1, request };
    let supervisor = |request| Step::Send { client: 2, request };
    let (first, second) = (nth_issued(0), nth_issued(1));
    vec![
        owner(alloc(1, 0, AllocFlags::NONE)),
        // Five pages aligned to eight: charged eight, half the pool.
        owner(alloc(5, 15, AllocFlags::NONE)),
        owner(Request::Attach { id: first, rights: Rights::ReadWrite }),
        owner(Request::Grant { id: first, grantee: ClientId(11), rights: Rights::ReadOnly }),
        owner(Request::Ungrant { id: first, grantee: ClientId(11) }),
        owner(Request::Detach { id: first }),
        owner(Request::Free { id: first }),
        owner(Request::Info { id: first }),
        owner(Request::Quiesce { id: first }),
        owner(Request::Attach { id: second, rights: Rights::ReadWrite }),
        owner(Request::Grant { id: second, grantee: ClientId(11), rights: Rights::ReadWrite }),
        owner(Request::Free { id: second }),
        grantee(alloc(1, 0, AllocFlags::WAIT)),
        grantee(Request::Attach { id: first, rights: Rights::ReadOnly }),
        grantee(Request::Detach { id: first }),
        grantee(Request::Export { id: first, rights: Rights::ReadOnly }),
        grantee(Request::Unexport { id: first }),
        grantee(Request::Attach { id: second, rights: Rights::ReadWrite }),
        grantee(Request::Free { id: second }),
        supervisor(Request::Reclaim { client: ClientId(10) }),
        supervisor(Request::Reclaim { client: ClientId(11) }),
        // The owner writes the first page of its window (its first attachment's).
        Step::Touch { client: 0, page: 0, write: true },
        // The frame_caps client copies the first frame out of the CNode EXPORT
        // sent it (mapping it needs a page table it cannot have here: the
        // fuzzer's pools have 2 MiB frames for that).
        Step::Hostile { client: 1, op: 8, cptr: RECEIVE_SLOT << 58, dest: 40, source: 0, vaddr_slot: 0 },
    ]
}

/// What the search found.
#[derive(Default, Debug)]
struct Tally {
    /// Steps taken and checked (a step with an injected failure counts once).
    steps: u64,
    /// Of them, with a kernel failure injected.
    failures: u64,
    /// Distinct states reached: per number of failures still allowed, the
    /// most steps left at a visit.
    states: HashMap<u128, [Option<usize>; 8]>,
    /// Distinct states (whatever the failures left), and the invariants checked in each.
    distinct: u64,
    /// Steps refused before any kernel invocation, which leave the state as it was.
    quiet: u64,
    /// Bit `n` set: a request with label `n` was served somewhere.
    served: u64,
}

struct Search {
    alphabet: Vec<Step>,
    fresh: Server<Model, NODES>,
    tally: Tally,
    /// Skip the digest of a request refused before any kernel invocation
    /// ([`common::drive::Done::refused_unchanged`]).
    trust_decide: bool,
}

impl Search {
    /// Take every step from `state` (whose digest is `digest`), and, while
    /// `failures` allow, the same step with each of its invocations refused;
    /// explore what is new with one step fewer left. A step that changed
    /// nothing (the same digest) leaves its copy of `state` fit for the next
    /// step, which saves copying memsrv's large state for most steps.
    fn explore(
        &mut self,
        state: &Box<Harness<NODES>>,
        digest: u128,
        left: usize,
        failures: usize,
        path: &mut Vec<String>,
    ) {
        if left == 0 {
            return;
        }
        // Box's clone writes the copy straight into its allocation.
        let mut next = state.clone();
        for index in 0..self.alphabet.len() {
            let step = self.alphabet[index].clone();
            // 0: nothing refused; then each invocation the step makes, refused in turn.
            let (mut nth, mut invocations) = (0, 0);
            loop {
                let done = self.take(&mut next, &step, (nth > 0).then_some(nth), path);
                if nth == 0 {
                    invocations = done.invocations;
                }
                if let (Step::Send { request, .. }, true) = (&step, done.served) {
                    self.tally.served |= 1 << request.op() as u64;
                }
                if done.refused_unchanged && self.trust_decide {
                    // Still `state`: nothing to visit, nothing to restore.
                    self.tally.quiet += 1;
                    break;
                }
                let reached = next.digest();
                let spent = usize::from(nth > 0);
                self.visit(&mut next, reached, left - 1, failures - spent, path, || match nth {
                    0 => format!("{step:?}"),
                    nth => format!("{step:?} with invocation {nth} refused"),
                });
                if reached != digest {
                    next = state.clone();
                }
                nth += 1;
                if failures == 0 || nth > invocations {
                    break;
                }
            }
        }
    }

    fn take(
        &mut self,
        state: &mut Box<Harness<NODES>>,
        step: &Step,
        fail: Option<u64>,
        path: &[String],
    ) -> common::drive::Done {
        self.tally.steps += 1;
        self.tally.failures += u64::from(fail.is_some());
        match state.step(step, fail.map(|nth| (nth, error::NOT_ENOUGH_MEMORY))) {
            Ok(done) => done,
            Err(violation) => panic!("{violation}\nafter {path:#?}\nthen {step:?}, failing invocation {fail:?}"),
        }
    }

    /// A state reached with `left` steps and `failures` failures to go:
    /// explored unless a visit with as many of both (or more) did it.
    fn visit(
        &mut self,
        state: &mut Box<Harness<NODES>>,
        digest: u128,
        left: usize,
        failures: usize,
        path: &mut Vec<String>,
        step: impl Fn() -> String,
    ) {
        let seen = self.tally.states.entry(digest).or_default();
        let new = seen.iter().all(Option::is_none);
        if seen[failures..].iter().any(|before| before.is_some_and(|before| before >= left)) {
            return;
        }
        seen[failures] = Some(left);
        path.push(step());
        if new {
            // A state never seen: the invariants hold in it.
            self.tally.distinct += 1;
            if let Err(violation) = common::invariants::check(&state.server) {
                panic!("{violation}\nafter {path:#?}");
            }
        }
        self.explore(state, digest, left, failures, path);
        if new {
            // And freeing everything from it leaves the system as it
            // started. This spends the state (its digest differs from its
            // parent's, so the caller copies the parent again).
            if let Err(violation) = state.teardown(&self.fresh) {
                panic!("{violation}\nwhile freeing everything after {path:#?}");
            }
        }
        path.pop();
    }
}

/// Every sequence of up to `depth` steps with up to `failures` kernel
/// failures each. memsrv's state is large (its tables are sized for the
/// largest configuration) and the search holds a copy per level: it runs on
/// a thread with room for them.
fn run(depth: usize, failures: usize, trust_decide: bool) -> Search {
    let search = move || {
        let fresh = common::start::<NODES>(small_config());
        let first = Box::new(Harness::new(fresh.clone()));
        let mut search = Search { alphabet: alphabet(), fresh, tally: Tally::default(), trust_decide };
        common::invariants::check(&first.server).expect("memsrv starts sound");
        let digest = first.digest();
        search.tally.states.entry(digest).or_default()[failures] = Some(depth);
        search.explore(&first, digest, depth, failures, &mut Vec::new());
        search
    };
    let thread = std::thread::Builder::new().stack_size(1 << 30).spawn(search).expect("search thread");
    thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

#[test]
fn every_short_sequence_keeps_the_invariants() {
    let setting = |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let depth = setting("CAPBUF_EXHAUSTIVE_DEPTH", DEPTH);
    let failures = setting("CAPBUF_EXHAUSTIVE_FAILURES", FAILURES).min(7);
    let started = Instant::now();
    let cpu = common::fuzz::cpu_seconds();
    let search = run(depth, failures, true);
    let tally = &search.tally;
    eprintln!(
        "exhaustive: depth {depth}, up to {failures} kernel failures, {} steps in the alphabet: {} steps checked \
         ({} with a kernel failure, {} refused by their decide step), {} distinct states, {:.1} s ({:.1} s CPU)",
        search.alphabet.len(),
        tally.steps,
        tally.failures,
        tally.quiet,
        tally.distinct,
        started.elapsed().as_secs_f64(),
        common::fuzz::cpu_seconds() - cpu
    );
    // The search reached every request's success path, and kernel failures.
    for step in &search.alphabet {
        if let Step::Send { request, .. } = step {
            assert!(tally.served & (1 << request.op() as u64) != 0, "{request:?} never served");
        }
    }
    assert!(depth < 2 || failures == 0 || tally.failures > 0, "no kernel failure injected");
}

/// The shortcut for requests refused before any kernel invocation reaches
/// exactly the states the full search reaches.
#[test]
fn skipping_refusals_loses_no_state() {
    let (full, quick) = (run(4, 1, false), run(4, 1, true));
    let states = |search: &Search| {
        let mut digests: Vec<u128> = search.tally.states.keys().copied().collect();
        digests.sort_unstable();
        digests
    };
    assert!(quick.tally.quiet > 0 && full.tally.quiet == 0);
    assert_eq!(states(&full), states(&quick));
}
