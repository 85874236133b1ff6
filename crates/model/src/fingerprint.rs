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
        for state in self.objects.iter().flatten() {
            match &state.kind {
                Kind::CNode { slots } => {
                    write!(out, "cnode ")?;
                    caps(out, slots);
                }
                kind => write!(out, "{kind:?}")?,
            }
            write!(out, " {:#x} {} {};", state.physical_address, state.size_bits, state.caps)?;
        }
        for c in self.caps.iter().flatten() {
            let place = match c.place {
                Place::InNode(node, index) => Place::InNode(object[node], index),
                place => place,
            };
            let parent = c.parent.map(|p| cap[p]);
            write!(
                out,
                "cap {} {:?} {} {parent:?} {place:?} {:?};",
                object[c.object], c.rights, c.guard_bits, c.mapped
            )?;
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
