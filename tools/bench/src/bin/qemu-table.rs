//! Turns the `BENCH <name> <value> <unit>` lines `make qemu-bench` gets from
//! the bench protection domain into its table: each request's cost in guest
//! instructions, its PPCs, the kernel floor of what it necessarily does, the
//! ratio, and whether it meets its target.
//!
//! The floor of a request is its PPCs times a null PPC, plus, for each kernel
//! invocation memsrv makes for it, the measured cost of that operation. The
//! invocations come from running the bench PD's exact request sequence
//! (pds/bench/src/main.rs) on the host model of seL4 with memsrv's server
//! code and the benchmark system's configuration, recorded one by one with
//! their parameters (object type and count of a retype, bytes its reset
//! zeroed, capabilities and mappings a revoke removed).
//!
//! ```text
//! qemu-table LOG KERNEL [--bench-out FILE]
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::rc::Rc;

use capbuf_model::Model;
use capbuf_protocol::{
    Align, AllocFlags, AllocReply, BufferId, ClientConfig, Config, PoolConfig, PoolId, Reply, Request, Rights,
    MAX_CLIENTS, MAX_MESSAGE_WORDS, MAX_POOLS,
};
use capbuf_server::{CapRef, Kernel, KernelError, MapAttributes, Object, Server, Slot};

/// As in the bench PD.
const ROUNDS: usize = 32;
/// As in memsrv and the bench PD: the per-invocation counters (the last sums
/// the rest).
const CALL_COUNTERS: usize = 24;
const NODES: usize = 2 << 14;
const SIZES: [(u64, &str, &str); 5] = [
    (4096, "4k", "4 KiB"),
    (64 << 10, "64k", "64 KiB"),
    (2 << 20, "2m", "2 MiB"),
    (3 << 20, "3m", "3 MiB"),
    (16 << 20, "16m", "16 MiB"),
];
/// Targets (issue #13): a request within 1.25 times its floor plus one null
/// PPC; the queries within two null PPCs.
const FLOOR_FACTOR: f64 = 1.25;
const QUERY_FACTOR: f64 = 2.0;

/// One kernel invocation memsrv made, with what its cost depends on.
#[derive(Debug)]
enum Call {
    Retype {
        object: Object,
        count: u32,
        zeroed: u64,
    },
    Copy,
    Mutate,
    MapPageTable,
    MapFrame {
        large: bool,
    },
    /// `cnodes`: the slots of each CNode it destroyed.
    Revoke {
        deleted: usize,
        unmapped: usize,
        cnodes: Vec<usize>,
        tables: usize,
    },
    Delete {
        unmapped: usize,
    },
}

/// The host model, recording each invocation.
struct Recorder {
    model: Model,
    calls: Rc<RefCell<Vec<Call>>>,
    /// Slots holding 2 MiB frame capabilities (maps of them cost differently).
    large: BTreeSet<(u32, u32, u32)>,
}

fn key(at: CapRef, offset: u32) -> (u32, u32, u32) {
    match at {
        CapRef::Table(slot) => (0, slot + offset, 0),
        CapRef::InNode { node, index, .. } => (1, node, index + offset),
    }
}

impl Recorder {
    fn push(&self, call: Call) {
        self.calls.borrow_mut().push(call);
    }
}

impl Kernel for Recorder {
    fn retype(&mut self, untyped: Slot, object: Object, dest: CapRef, count: u32) -> Result<(), KernelError> {
        let before = self.model.counts.zeroed_bytes;
        self.model.retype(untyped, object, dest, count)?;
        for i in 0..count {
            if object == Object::LargeFrame {
                self.large.insert(key(dest, i));
            } else {
                self.large.remove(&key(dest, i));
            }
        }
        self.push(Call::Retype { object, count, zeroed: self.model.counts.zeroed_bytes - before });
        Ok(())
    }

    fn copy(&mut self, source: CapRef, dest: CapRef, rights: Rights) -> Result<(), KernelError> {
        self.model.copy(source, dest, rights)?;
        if self.large.contains(&key(source, 0)) {
            self.large.insert(key(dest, 0));
        } else {
            self.large.remove(&key(dest, 0));
        }
        self.push(Call::Copy);
        Ok(())
    }

    fn mutate_cnode(&mut self, source: Slot, dest: Slot, guard_bits: u32) -> Result<(), KernelError> {
        self.model.mutate_cnode(source, dest, guard_bits)?;
        self.push(Call::Mutate);
        Ok(())
    }

    fn revoke(&mut self, slot: Slot) -> Result<(), KernelError> {
        let (caps, maps, tables) = (self.model.live_caps(), self.model.live_mappings(), self.model.live_objects().2);
        let mut cnodes = self.model.live_cnode_slots();
        self.model.revoke(slot)?;
        let deleted = caps - self.model.live_caps();
        for survivor in self.model.live_cnode_slots() {
            let at = cnodes.iter().position(|&slots| slots == survivor).expect("a CNode that was live");
            cnodes.remove(at);
        }
        let tables = tables - self.model.live_objects().2;
        self.push(Call::Revoke { deleted, unmapped: maps - self.model.live_mappings(), cnodes, tables });
        Ok(())
    }

    fn delete(&mut self, slot: Slot) -> Result<(), KernelError> {
        let maps = self.model.live_mappings();
        self.model.delete(slot)?;
        self.push(Call::Delete { unmapped: maps - self.model.live_mappings() });
        Ok(())
    }

    fn map_page_table(&mut self, table: CapRef, vspace: Slot, vaddr: u64) -> Result<(), KernelError> {
        self.model.map_page_table(table, vspace, vaddr)?;
        self.push(Call::MapPageTable);
        Ok(())
    }

    fn map_frame(
        &mut self,
        frame: CapRef,
        vspace: Slot,
        vaddr: u64,
        attributes: MapAttributes,
    ) -> Result<(), KernelError> {
        self.model.map_frame(frame, vspace, vaddr, attributes)?;
        self.push(Call::MapFrame { large: self.large.contains(&key(frame, 0)) });
        Ok(())
    }

    /// Only `device` pools' frames are zeroed by memsrv (the bench system has
    /// none): priced as the map it starts with, a lower bound.
    fn zero_frame(&mut self, frame: CapRef, object: Object) -> Result<(), KernelError> {
        self.model.zero_frame(frame, object)?;
        self.push(Call::MapFrame { large: object == Object::LargeFrame });
        Ok(())
    }

    /// The bench system has no `io_space` client: priced as a 4 KiB map.
    fn map_io_frame(&mut self, frame: CapRef, iospace: Slot, rights: Rights, ioaddr: u64) -> Result<(), KernelError> {
        self.model.map_io_frame(frame, iospace, rights, ioaddr)?;
        self.push(Call::MapFrame { large: false });
        Ok(())
    }
}

/// The guest's figures by name.
struct Figures(BTreeMap<String, f64>);

impl Figures {
    fn parse(log: &str) -> Figures {
        let mut values = BTreeMap::new();
        for line in log.lines() {
            let Some(start) = line.find("BENCH ") else { continue };
            let words: Vec<&str> = line[start..].split_whitespace().collect();
            if let [_, name, value, _unit] = words[..] {
                if let Ok(value) = value.parse::<f64>() {
                    values.insert(name.to_string(), value);
                }
            }
        }
        Figures(values)
    }

    fn get(&self, name: &str) -> f64 {
        *self.0.get(name).unwrap_or_else(|| panic!("the log has no 'BENCH {name}' line"))
    }

    /// `at` on the line through the measured points `(x, name)`, piecewise,
    /// extended past the last two.
    fn line(&self, points: &[(f64, &str)], at: f64) -> f64 {
        let points: Vec<(f64, f64)> = points.iter().map(|&(x, name)| (x, self.get(name))).collect();
        Self::through(&points, at)
    }

    /// `at` on the line through `points`, piecewise, extended past the last two.
    fn through(points: &[(f64, f64)], at: f64) -> f64 {
        let i = points.windows(2).position(|w| at <= w[1].0).unwrap_or(points.len() - 2);
        let ((x0, y0), (x1, y1)) = (points[i], points[i + 1]);
        y0 + (y1 - y0) * (at - x0) / (x1 - x0)
    }

    /// A revoke of a block whose child is a CNode of `slots` slots, all
    /// empty: the kernel visits every slot of a CNode it destroys.
    fn cnode_slots(&self, slots: usize) -> f64 {
        let points = [
            (2.0, "floor_revoke_cnode_empty_1"),
            (16.0, "floor_revoke_cnode_empty_4"),
            (1024.0, "floor_revoke_cnode_empty_10"),
        ];
        self.line(&points, slots as f64)
    }

    /// What `copies` mapped frame copies in a CNode being destroyed add to
    /// it, through a page table in the same CNode (`table`: deleted first,
    /// so the copies' unmaps find no table) or not: measured as such blocks
    /// with 1, 16 and 48 copies, less the same CNode empty.
    fn cnode_copies(&self, copies: usize, table: bool) -> f64 {
        if copies == 0 {
            return 0.0;
        }
        let shape = |n: u64| {
            let name = if table { "floor_revoke_cnode_table_" } else { "floor_revoke_cnode_mapped_" };
            // The measured CNodes are just large enough (the table after the copies).
            let slots = (n + u64::from(table)).max(2).next_power_of_two();
            (n as f64, self.get(&format!("{name}{n}")) - self.cnode_slots(slots as usize))
        };
        Self::through(&[shape(1), shape(16), shape(48)], copies as f64)
    }

    /// What deleting `mapped` mapped frame capabilities adds to a revoke:
    /// measured as a frame's revoke with that many mapped copies, less a
    /// revoke that deletes nothing.
    fn unmapping(&self, mapped: usize) -> f64 {
        if mapped == 0 {
            return 0.0;
        }
        let points = [
            (0.0, "floor_revoke_0"),
            (1.0, "floor_revoke_mapped_1"),
            (16.0, "floor_revoke_mapped_16"),
            (48.0, "floor_revoke_mapped_48"),
        ];
        self.line(&points, mapped as f64) - self.get("floor_revoke_0")
    }

    /// The measured floor of one invocation.
    fn call(&self, call: &Call) -> f64 {
        match *call {
            Call::Retype { object, count, zeroed } => {
                let n = count as f64;
                let make = match object {
                    Object::SmallFrame => self.line(&[(1.0, "floor_retype_4k"), (16.0, "floor_retype_64k")], n),
                    Object::LargeFrame => self.line(&[(1.0, "floor_retype_2m"), (8.0, "floor_retype_16m")], n),
                    Object::PageTable => self.get("floor_retype_page_table"),
                    Object::CNode { radix } => {
                        self.line(&[(4.0, "floor_retype_cnode_4"), (10.0, "floor_retype_cnode_10")], radix as f64)
                    }
                    Object::Untyped { .. } => self.get("floor_retype_untyped"),
                };
                let zero_per_byte =
                    (self.get("floor_retype_16m_reset") - self.get("floor_retype_16m")) / (16u64 << 20) as f64;
                make + zeroed as f64 * zero_per_byte
            }
            Call::Copy => self.get("floor_copy"),
            Call::Mutate => self.get("floor_mutate"),
            Call::MapPageTable => self.get("floor_page_table_map"),
            Call::MapFrame { large: false } => self.get("floor_map_4k"),
            Call::MapFrame { large: true } => self.get("floor_map_2m"),
            Call::Revoke { deleted, unmapped, ref cnodes, tables } => {
                let points = [
                    (0.0, "floor_revoke_0"),
                    (1.0, "floor_revoke_1"),
                    (16.0, "floor_revoke_16"),
                    (48.0, "floor_revoke_48"),
                ];
                let plain = deleted - unmapped - cnodes.len();
                if !cnodes.is_empty() && unmapped > 0 {
                    // An attachment's block: its CNode destroyed (every slot
                    // visited), each copy in it deleted and unmapped, through
                    // a page table of the block's own (4 KiB frames) or not;
                    // then its other children.
                    let (largest, others) = cnodes.split_last().expect("a CNode");
                    // The shape measured has one page table; any other
                    // is priced as one more mapping removed.
                    let copies = unmapped - tables;
                    self.cnode_slots(*largest)
                        + self.cnode_copies(copies, tables > 0)
                        + self.unmapping(tables.saturating_sub(1))
                        + others.iter().map(|&slots| self.cnode_slots(slots) - self.get("floor_revoke_0")).sum::<f64>()
                        + self.line(&points, plain as f64)
                        - self.get("floor_revoke_0")
                } else {
                    self.line(&points, plain as f64)
                        + self.unmapping(unmapped)
                        + cnodes.iter().map(|&slots| self.cnode_slots(slots) - self.get("floor_revoke_0")).sum::<f64>()
                }
            }
            Call::Delete { unmapped } => self.get("floor_delete") + self.unmapping(unmapped),
        }
    }
}

/// What an invocation was, for the per-invocation table.
fn describe(call: &Call) -> String {
    let size = |bytes: u64| match bytes {
        0 => String::new(),
        b if b >= 1 << 20 => format!(", zeroes {} MiB", b >> 20),
        b if b >= 1 << 10 => format!(", zeroes {} KiB", b >> 10),
        b => format!(", zeroes {b} bytes"),
    };
    match *call {
        Call::Retype { object, count, zeroed } => {
            let what = match object {
                Object::SmallFrame => "4 KiB frame".to_string(),
                Object::LargeFrame => "2 MiB frame".to_string(),
                Object::PageTable => "page table".to_string(),
                Object::CNode { radix } => format!("CNode of {} slots", 1u64 << radix),
                Object::Untyped { .. } => "untyped".to_string(),
            };
            format!("Untyped_Retype {count} x {what}{}", size(zeroed))
        }
        Call::Copy => "CNode_Copy".into(),
        Call::Mutate => "CNode_Mutate".into(),
        Call::MapPageTable => "PageTable_Map".into(),
        Call::MapFrame { large } => format!("Page_Map {}", if large { "2 MiB" } else { "4 KiB" }),
        Call::Revoke { deleted, unmapped, ref cnodes, tables } => {
            let count = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
            let mut what = vec![format!("{unmapped} mapped")];
            if tables > 0 {
                what.push(format!("{} among them", count(tables, "page table", "page tables")));
            }
            what.extend(cnodes.iter().map(|slots| format!("a CNode of {slots} slots")));
            format!("CNode_Revoke: {} deleted ({})", count(deleted, "capability", "capabilities"), what.join(", "))
        }
        Call::Delete { unmapped } => format!("CNode_Delete ({unmapped} mapped frames)"),
    }
}

type Memsrv = Server<Recorder, NODES>;

/// memsrv as bench/system.xml configures it: one pool of 64 MiB (at
/// 0xa0000000 here; capbuf-compose places it, and where does not change an
/// invocation count), one client (channel 0, id 1) with 64 MiB, 8 buffers, 8 attachments.
fn memsrv(calls: Rc<RefCell<Vec<Call>>>) -> Box<Memsrv> {
    let mut config = Config { table_bits: 12, pools: [None; MAX_POOLS], clients: [None; MAX_CLIENTS] };
    config.pools[0] = Some(PoolConfig { physical_address: 0xa000_0000, size_bits: 26, device: false });
    config.clients[0] = Some(ClientConfig {
        channel: 0,
        client_id: 1,
        quota_bytes: 1 << 26,
        quota_buffers: 8,
        quota_attachments: 8,
        dma: false,
        frame_caps: false,
        supervisor: None,
        io_space: false,
    });
    let model = Model::new(12, &[(0xa000_0000, 26)], 1);
    let kernel = Recorder { model, calls, large: BTreeSet::new() };
    Box::new(Server::new(kernel, config).unwrap_or_else(|_| panic!("the benchmark's configuration")))
}

/// Runs requests and sums the floor of the kernel invocations each made.
struct Bench<'a> {
    server: Box<Memsrv>,
    calls: Rc<RefCell<Vec<Call>>>,
    figures: &'a Figures,
    /// The last request's invocations: what each was, and its floor.
    last: Vec<(String, f64)>,
}

/// A request's kernel floor, mean over the rounds, and the same per
/// invocation by its place in the request (as memsrv's counters: the last
/// place sums the rest).
struct Floor {
    key: String,
    name: String,
    total: f64,
    each: Vec<(String, f64)>,
}

/// Sums of a request's floor over the rounds.
#[derive(Default)]
struct Sums {
    total: f64,
    each: Vec<(String, f64)>,
}

impl Sums {
    fn add(&mut self, floor: f64, last: &[(String, f64)]) {
        self.total += floor;
        for (k, (what, value)) in last.iter().enumerate() {
            let k = k.min(CALL_COUNTERS - 1);
            if self.each.len() <= k {
                self.each.push((what.clone(), 0.0));
            } else if k == CALL_COUNTERS - 1 {
                self.each[k].0 = "the rest".into();
            } else if !self.each[k].0.starts_with(what.as_str()) {
                // Priced round by round all the same; the text says so.
                let first = self.each[k].0.split(" (in round 1").next().unwrap_or_default().to_string();
                self.each[k].0 = format!("{first} (in round 1; later rounds: {what})");
            }
            self.each[k].1 += value;
        }
    }
}

impl Bench<'_> {
    /// One request; its reply and the floor of its kernel invocations.
    fn run(&mut self, request: Request) -> (Reply, f64) {
        let mut words = [0; MAX_MESSAGE_WORDS];
        let (label, length) = request.encode(&mut words);
        self.calls.borrow_mut().clear();
        let outcome = self.server.handle(0, label, &words[..length], 0);
        let reply = outcome.result.unwrap_or_else(|e| panic!("{request:?} refused: {e}"));
        self.last = self.calls.borrow().iter().map(|call| (describe(call), self.figures.call(call))).collect();
        let floor = self.last.iter().map(|(_, floor)| floor).sum();
        (reply, floor)
    }

    fn alloc(&mut self, size: u64) -> (BufferId, f64) {
        match self.run(Request::Alloc { size, align: Align::PAGE, pool: PoolId(0), flags: AllocFlags::NONE }) {
            (Reply::Alloc(AllocReply { id }), floor) => (id, floor),
            (other, _) => panic!("{other:?}"),
        }
    }

    fn attach(&mut self, id: BufferId) -> f64 {
        self.run(Request::Attach { id, rights: Rights::ReadWrite }).1
    }

    fn detach(&mut self, id: BufferId) -> f64 {
        self.run(Request::Detach { id }).1
    }

    fn free(&mut self, id: BufferId) -> f64 {
        self.run(Request::Free { id }).1
    }

    /// Kernel floor of each request, mean over the rounds, in the bench PD's order.
    fn floors(&mut self) -> Vec<Floor> {
        let mut rows = Vec::new();
        let (warm, _) = self.alloc(4096);
        self.attach(warm);
        self.free(warm);
        let (keep, _) = self.alloc(4096);
        let mean = |rows: &mut Vec<Floor>, key: &str, name: String, sums: Sums| {
            let rounds = ROUNDS as f64;
            let each = sums.each.into_iter().map(|(what, total)| (what, total / rounds)).collect();
            rows.push(Floor { key: key.to_string(), name, total: sums.total / rounds, each });
        };
        for (key, name, request) in [
            ("hello", "HELLO", Request::Hello {}),
            ("pool_info", "POOL_INFO", Request::PoolInfo { pool: PoolId(0) }),
            ("info", "INFO", Request::Info { id: keep }),
        ] {
            let mut sums = Sums::default();
            for _ in 0..ROUNDS {
                let floor = self.run(request).1;
                sums.add(floor, &self.last);
            }
            mean(&mut rows, key, name.into(), sums);
        }
        for (size, key, name) in SIZES {
            let mut sums = Sums::default();
            for _ in 0..ROUNDS {
                let (id, floor) = self.alloc(size);
                sums.add(floor, &self.last);
                self.free(id);
            }
            mean(&mut rows, &format!("alloc_{key}"), format!("ALLOC {name}"), sums);
            let mut sums = Sums::default();
            for _ in 0..ROUNDS {
                let (id, _) = self.alloc(size);
                let floor = self.attach(id);
                sums.add(floor, &self.last);
                self.free(id);
            }
            mean(&mut rows, &format!("attach_{key}"), format!("ATTACH {name} (mapped by memsrv)"), sums);
            let mut sums = Sums::default();
            for _ in 0..ROUNDS {
                let (id, _) = self.alloc(size);
                self.attach(id);
                let floor = self.detach(id);
                sums.add(floor, &self.last);
                self.free(id);
            }
            mean(&mut rows, &format!("detach_{key}"), format!("DETACH {name}"), sums);
            let mut sums = Sums::default();
            for _ in 0..ROUNDS {
                let (id, _) = self.alloc(size);
                self.attach(id);
                let floor = self.free(id);
                sums.add(floor, &self.last);
            }
            mean(&mut rows, &format!("free_{key}"), format!("FREE {name} (attached)"), sums);
        }
        // A 4 KiB buffer freed between `keep` and a spacer is parked.
        let mut sums = Sums::default();
        for _ in 0..ROUNDS {
            let (id, _) = self.alloc(4096);
            let (spacer, _) = self.alloc(4096);
            self.free(id);
            let (id, floor) = self.alloc(4096);
            sums.add(floor, &self.last);
            self.free(id);
            self.free(spacer);
        }
        mean(&mut rows, "alloc_parked_4k", "ALLOC 4 KiB (a parked run)".into(), sums);
        let mut sums = Sums::default();
        for _ in 0..ROUNDS {
            let (id, _) = self.alloc(4096);
            self.attach(id);
            let (spacer, _) = self.alloc(4096);
            let floor = self.free(id);
            sums.add(floor, &self.last);
            self.free(spacer);
        }
        mean(&mut rows, "free_parked_4k", "FREE 4 KiB (attached, parked)".into(), sums);
        self.free(keep);
        rows
    }
}

/// A titled table of `rows` (markdown lines) under `header` (its head and
/// alignment lines), if there are rows.
fn section(out: &mut String, title: &str, header: &str, rows: &str) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "{title}");
    let _ = writeln!(out);
    let _ = writeln!(out, "{header}");
    out.push_str(rows);
    let _ = writeln!(out);
}

fn thousands(value: f64) -> String {
    // Round first: "-0" for a tiny negative is no figure.
    let digits = format!("{:.0}", value.round() + 0.0);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

const FLOOR_ROWS: [(&str, &str); 42] = [
    ("floor_null_ppc", "null PPC round trip (echo PD)"),
    ("floor_ppc_cap", "PPC whose reply carries one capability"),
    ("floor_ppc_reply_words_4", "PPC, 1-word request, 4-word reply (the fastpath's most)"),
    ("floor_ppc_reply_words_5", "PPC, 1-word request, 5-word reply (slowpath)"),
    ("floor_ppc_reply_words_8", "PPC, 1-word request, 8-word reply (slowpath)"),
    ("floor_retype_4k", "Untyped_Retype 1 x 4 KiB frame, no reset"),
    ("floor_retype_4k_reset", "Untyped_Retype 1 x 4 KiB frame, reset (zeroes 4 KiB)"),
    ("floor_retype_64k", "Untyped_Retype 16 x 4 KiB frames, no reset"),
    ("floor_retype_64k_reset", "Untyped_Retype 16 x 4 KiB frames, reset (zeroes 64 KiB)"),
    ("floor_retype_2m", "Untyped_Retype 1 x 2 MiB frame, no reset"),
    ("floor_retype_2m_reset", "Untyped_Retype 1 x 2 MiB frame, reset (zeroes 2 MiB)"),
    ("floor_retype_16m", "Untyped_Retype 8 x 2 MiB frames, no reset"),
    ("floor_retype_16m_reset", "Untyped_Retype 8 x 2 MiB frames, reset (zeroes 16 MiB)"),
    ("floor_retype_page_table", "Untyped_Retype 1 page table"),
    ("floor_retype_cnode_4", "Untyped_Retype 1 CNode of 16 slots"),
    ("floor_retype_cnode_10", "Untyped_Retype 1 CNode of 1024 slots"),
    ("floor_retype_untyped", "Untyped_Retype 1 x 4 KiB untyped"),
    ("floor_copy", "CNode_Copy of a frame capability, read-only"),
    ("floor_mint", "CNode_Mint of a frame capability, read-only"),
    ("floor_mutate", "CNode_Mutate of a CNode capability (new guard)"),
    ("floor_delete", "CNode_Delete of a frame capability copy"),
    ("floor_revoke_0", "CNode_Revoke of an untyped, no children"),
    ("floor_revoke_1", "CNode_Revoke of an untyped, 1 child"),
    ("floor_revoke_16", "CNode_Revoke of an untyped, 16 children"),
    ("floor_revoke_48", "CNode_Revoke of an untyped, 48 children"),
    ("floor_revoke_mapped_1", "CNode_Revoke of a frame, 1 mapped copy"),
    ("floor_revoke_mapped_16", "CNode_Revoke of a frame, 16 mapped copies"),
    ("floor_revoke_mapped_48", "CNode_Revoke of a frame, 48 mapped copies"),
    ("floor_revoke_cnode_mapped_1", "CNode_Revoke of an untyped whose CNode (2 slots) holds 1 mapped copy"),
    ("floor_revoke_cnode_mapped_16", "CNode_Revoke of an untyped whose CNode (16 slots) holds 16 mapped copies"),
    ("floor_revoke_cnode_mapped_48", "CNode_Revoke of an untyped whose CNode (64 slots) holds 48 mapped copies"),
    (
        "floor_revoke_cnode_table_1",
        "CNode_Revoke of an untyped whose CNode (2 slots) holds 1 copy mapped through a page table, and the table",
    ),
    (
        "floor_revoke_cnode_table_16",
        "CNode_Revoke of an untyped whose CNode (32 slots) holds 16 copies mapped through a page table, and the table",
    ),
    (
        "floor_revoke_cnode_table_48",
        "CNode_Revoke of an untyped whose CNode (64 slots) holds 48 copies mapped through a page table, and the table",
    ),
    ("floor_revoke_cnode_empty_1", "CNode_Revoke of an untyped whose child is an empty CNode of 2 slots"),
    ("floor_revoke_cnode_empty_4", "CNode_Revoke of an untyped whose child is an empty CNode of 16 slots"),
    ("floor_revoke_cnode_empty_10", "CNode_Revoke of an untyped whose child is an empty CNode of 1024 slots"),
    ("floor_map_4k", "Page_Map 4 KiB"),
    ("floor_unmap_4k", "Page_Unmap 4 KiB"),
    ("floor_map_2m", "Page_Map 2 MiB"),
    ("floor_unmap_2m", "Page_Unmap 2 MiB"),
    ("floor_page_table_map", "PageTable_Map"),
];

fn main() {
    // memsrv's state is several MiB and is built on the stack before it is
    // boxed (as in the memsrv PD, which has a 4 MiB stack): more than the
    // main thread's default.
    let table = std::thread::Builder::new().stack_size(256 << 20).spawn(table).expect("a thread for the table");
    if table.join().is_err() {
        std::process::exit(1);
    }
}

fn table() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(path), Some(kernel)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: qemu-table LOG KERNEL [--bench-out FILE]");
        std::process::exit(2);
    };
    let log = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let figures = Figures::parse(&log);
    let null = figures.get("floor_null_ppc");
    let mut out = String::new();
    let mut bench_lines = String::new();
    for (name, value) in &figures.0 {
        let unit = if name.starts_with("ppcs_") { "calls" } else { "instructions" };
        let _ = writeln!(bench_lines, "BENCH {kernel}_{name} {value} {unit}");
    }

    let _ = writeln!(out, "Kernel floor, {kernel} kernel: guest instructions (QEMU -icount shift=0, mean of 32 rounds, 4 for the retypes of 2 MiB and more)");
    let _ = writeln!(out);
    let _ = writeln!(out, "| kernel operation | instructions | x null PPC |");
    let _ = writeln!(out, "|---|---:|---:|");
    for (name, what) in FLOOR_ROWS {
        let value = figures.get(name);
        let _ = writeln!(out, "| {what} | {} | {:.2} |", thousands(value), value / null);
    }
    let _ = writeln!(out);

    let calls = Rc::new(RefCell::new(Vec::new()));
    let mut bench = Bench { server: memsrv(calls.clone()), calls, figures: &figures, last: Vec::new() };
    let rows = bench.floors();
    let _ = writeln!(out, "capbuf requests, {kernel} kernel: guest instructions; floor = PPCs x null PPC + the measured kernel operations memsrv makes for the request (host model); target: <= {FLOOR_FACTOR} x floor + 1 null PPC, queries also <= {QUERY_FACTOR} x null PPC (the targets are for the release kernel)");
    let _ = writeln!(out);
    let _ = writeln!(out, "| request | instructions | PPCs | floor | x floor | target | met |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---|");
    let (mut met, mut missed) = (0, 0);
    let mut each = String::new();
    for Floor { key, name, total: kernel_floor, each: calls } in &rows {
        let value = figures.get(&format!("request_{key}"));
        let ppcs = figures.get(&format!("ppcs_{key}"));
        let floor = ppcs * null + kernel_floor;
        let mut target = FLOOR_FACTOR * floor + null;
        if ["hello", "pool_info", "info"].contains(&key.as_str()) {
            target = target.min(QUERY_FACTOR * null);
        }
        let ok = value <= target;
        if ok {
            met += 1
        } else {
            missed += 1
        }
        for (k, (what, floor)) in calls.iter().enumerate() {
            let _ = writeln!(bench_lines, "BENCH {kernel}_callfloor_{key}_{k} {floor:.0} instructions");
            let Some(measured) = figures.0.get(&format!("call_{key}_{k}")) else { continue };
            if !ok || key.starts_with("detach") || key.starts_with("free") {
                let _ = writeln!(
                    each,
                    "| {name} | {k} | {what} | {} | {} | {:.2} |",
                    thousands(*measured),
                    thousands(*floor),
                    measured / floor
                );
            }
        }
        let _ = writeln!(
            out,
            "| {name} | {} | {ppcs} | {} | {:.2} | {} | {} |",
            thousands(value),
            thousands(floor),
            value / floor,
            thousands(target),
            if ok { "met" } else { "**missed**" }
        );
        let _ = writeln!(bench_lines, "BENCH {kernel}_floorsum_{key} {floor:.0} instructions");
    }
    let mut split = String::new();
    for Floor { key, name, total: kernel_floor, .. } in &rows {
        let value = figures.get(&format!("request_{key}"));
        let counter = |prefix: &str| figures.0.get(&format!("{prefix}_{key}")).copied();
        let (Some(handler), Some(handle), Some(invocations)) =
            (counter("handler"), counter("handle"), counter("invocations"))
        else {
            continue;
        };
        let _ = writeln!(
            split,
            "| {name} | {} | {} | {} | {} | {} | {} | {} |",
            thousands(value),
            thousands(value - handler),
            thousands(handler - handle),
            thousands(handle - invocations),
            thousands(invocations),
            thousands(*kernel_floor),
            if *kernel_floor > 0.0 { format!("{:.2}", invocations / kernel_floor) } else { "-".into() },
        );
    }
    for op in ["alloc", "attach"] {
        let counts: Vec<String> =
            SIZES.iter().map(|(_, key, _)| figures.get(&format!("ppcs_{op}_{key}")).to_string()).collect();
        let constant = counts.iter().all(|c| *c == counts[0]);
        if constant {
            met += 1
        } else {
            missed += 1
        }
        let _ = writeln!(
            out,
            "| {} PPCs, 4 KiB to 16 MiB | {} | | | | constant | {} |",
            op.to_uppercase(),
            counts.join(", "),
            if constant { "met" } else { "**missed**" }
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "targets on the {kernel} kernel: {met} met, {missed} missed");
    let _ = writeln!(out);
    section(
        &mut out,
        &format!("Where the instructions go, {kernel} kernel (memsrv counts its handler's ticks in the bench system):"),
        "| request | total | PPC path and client library | memsrv handler outside Server::handle | Server::handle's own code | memsrv's kernel invocations | their floor | invocations / floor |\n|---|---:|---:|---:|---:|---:|---:|---:|",
        &split,
    );
    section(
        &mut out,
        &format!("Each kernel invocation of the requests that miss their target and of every DETACH and FREE (revokes, priced from several measured shapes), {kernel} kernel: measured by memsrv, against its floor price (the invocation as the host model recorded it):"),
        "| request | # | invocation | measured | floor | measured / floor |\n|---|---:|---|---:|---:|---:|",
        &each,
    );
    let _ = writeln!(out, "Cache maintenance in the client library (no PPC), {kernel} kernel:");
    let _ = writeln!(out);
    let _ = writeln!(out, "| call | size | instructions |");
    let _ = writeln!(out, "|---|---|---:|");
    for (call, what) in [("sync_for_device", "sync_for_device (dc cvac)"), ("sync_for_cpu", "sync_for_cpu (dc civac)")]
    {
        for (key, size) in [("0", "0 B"), ("64", "64 B"), ("4k", "4 KiB"), ("64k", "64 KiB"), ("2m", "2 MiB")] {
            let _ = writeln!(out, "| {what} | {size} | {} |", thousands(figures.get(&format!("request_{call}_{key}"))));
        }
    }
    let value = figures.get("request_sync_for_device_uncached_64k");
    let _ = writeln!(out, "| sync_for_device, UNCACHED (no line) | 64 KiB | {} |", thousands(value));
    print!("{out}");
    if let Some(i) = args.iter().position(|a| a == "--bench-out") {
        let file = args.get(i + 1).expect("--bench-out FILE");
        std::fs::write(file, bench_lines).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
}
