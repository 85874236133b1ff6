//! A digest of the whole kernel, for checkers that explore requests
//! exhaustively. Object and capability ids are the model's own bookkeeping
//! (it never reuses one): the digest renumbers the live ones in order, so
//! that a request undone without trace leaves the digest as it was.

use std::fmt::{self, Write};
use std::hash::Hasher;

use crate::{Kind, Model, Place};

struct Feed<'a, H>(&'a mut H);

impl<H: Hasher> Write for Feed<'_, H> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.0.write(text.as_bytes());
        Ok(())
    }
}

/// A number fed as it is, not formatted.
trait Number {
    fn number(&mut self, number: usize);
}

impl<H: Hasher> Number for Feed<'_, H> {
    fn number(&mut self, number: usize) {
        self.0.write_usize(number);
    }
}

impl Model {
    /// Feed `hasher` everything that decides what the kernel does next:
    /// memsrv's table, every live object (kind, address, size, CNode slots,
    /// untyped watermark) and capability (object, rights, guard, parent,
    /// place, mapping), every client's root CNode, page tables and frame
    /// mappings, the nonzero memory pages and the failures planned. Not the
    /// invocation counters, which only count.
    pub fn fingerprint(&self, hasher: &mut impl Hasher) {
        // Writing into a hasher cannot fail.
        let _ = self.write_fingerprint(&mut Feed(hasher));
    }

    fn write_fingerprint<W: Write + Number>(&self, out: &mut W) -> fmt::Result {
        let rank = |live: &mut dyn Iterator<Item = bool>| {
            let mut next = 0;
            live.map(|is| {
                next += usize::from(is);
                next - 1
            })
            .collect::<Vec<usize>>()
        };
        let object = rank(&mut self.objects.iter().map(Option::is_some));
        let cap = rank(&mut self.caps.iter().map(Option::is_some));
        // Slots as one number each (the renumbered capability, or none), as
        // the table and root CNodes are mostly empty and digested often.
        let caps = |out: &mut W, slots: &[Option<usize>]| {
            for slot in slots {
                out.number(slot.map_or(usize::MAX, |c| cap[c]));
            }
        };
        write!(out, "table ")?;
        caps(out, &self.table);
        // Objects and capabilities field by field, as numbers: there are
        // many, and formatting them would cost more than everything else.
        for state in self.objects.iter().flatten() {
            match &state.kind {
                Kind::CNode { slots } => {
                    out.number(1);
                    caps(out, slots);
                }
                Kind::Untyped { watermark } => [2, *watermark as usize].into_iter().for_each(|n| out.number(n)),
                Kind::Frame => out.number(3),
                Kind::PageTable => out.number(4),
                Kind::VSpace { client } => [5, *client].into_iter().for_each(|n| out.number(n)),
                Kind::IOSpace { device } => [6, *device].into_iter().for_each(|n| out.number(n)),
            }
            for n in [state.physical_address as usize, state.size_bits as usize, state.caps] {
                out.number(n);
            }
        }
        for c in self.caps.iter().flatten() {
            let (kind, first, second) = match c.place {
                Place::Table(slot) => (0, slot as usize, 0),
                Place::InNode(node, index) => (1, object[node], index as usize),
                Place::ClientRoot(client, slot) => (2, client, slot as usize),
            };
            let parent = c.parent.map_or(usize::MAX, |p| cap[p]);
            let (mapped_in, mapped_at) = c.mapped.map_or((usize::MAX, 0), |(client, vaddr)| (client, vaddr as usize));
            let rights = c.rights as usize;
            for n in
                [object[c.object], rights, c.guard_bits as usize, parent, kind, first, second, mapped_in, mapped_at]
            {
                out.number(n);
            }
        }
        for (client, space) in self.clients.iter().enumerate() {
            write!(out, "client {client} ")?;
            caps(out, &space.root);
            for (vaddr, (table, table_cap)) in space.page_tables() {
                write!(out, "table {vaddr:#x} {} {};", object[*table], cap[*table_cap])?;
            }
            for (vaddr, (frame, rights, cached)) in space.frames() {
                write!(out, "frame {vaddr:#x} {} {rights:?} {cached};", cap[*frame])?;
            }
        }
        for (page, value) in self.memory.iter().filter(|(_, value)| **value != 0) {
            write!(out, "memory {page:#x} {value};")?;
        }
        write!(out, "pending {:?}", self.injector.pending())
    }
}
