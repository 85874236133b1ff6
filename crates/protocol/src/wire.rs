//! Values as they travel in message registers: the [`Word`] trait, the
//! small types the ABI's fields have, [`Field`] and [`Part`], how the table
//! describes a register (and the fields packed into it) to the C header, and
//! the bit arithmetic of packed registers.

use crate::{Error, PAGE_BITS};

/// A type that travels in one message register. Every field of every request
/// and reply in the ABI table ([`crate::Op`]) has one of these types, and its
/// implementation is the one place the field's wire form is read, checked and
/// written: memsrv decoding a request, a client decoding a reply, the C
/// header describing the register.
pub trait Word: Copy {
    /// What the register holds, for the C header's comment ("" for a plain number).
    const C_DESCRIPTION: &'static str;

    /// Read a register. `Err` is the error memsrv refuses a request with when
    /// the register holds no value of this type (a client reading such a
    /// reply takes it for malformed, whatever the error).
    fn from_word(word: u64) -> Result<Self, Error>;

    /// The register's value.
    fn to_word(self) -> u64;
}

/// One message register as the ABI table declares it: a whole-register
/// field, or a packed register holding several small fields ([`Part`]s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Name in `SCREAMING_SNAKE_CASE`, as the C header spells it (`CAPBUF_<OP>_MR_<NAME>`).
    pub name: &'static str,
    /// What the register holds ([`Word::C_DESCRIPTION`] of its type; for a
    /// packed register, [`PACKED_DESCRIPTION`]).
    pub description: &'static str,
    /// The fields packed into the register, lowest bits first; empty for a
    /// register holding one field whole.
    pub parts: &'static [Part],
}

/// [`Field::description`] of a packed register.
pub const PACKED_DESCRIPTION: &str = "packed";

impl Field {
    /// The register's bits no field uses: a reply with any of them set is
    /// malformed. 0 for a whole-register field.
    pub const fn unused_bits(&self) -> u64 {
        if self.parts.is_empty() {
            return 0;
        }
        let mut used = 0;
        let mut i = 0;
        while i < self.parts.len() {
            used |= mask(self.parts[i].shift, self.parts[i].width);
            i += 1;
        }
        !used
    }
}

/// One field packed into part of a register: bits `shift..shift + width`
/// hold the value shifted right by `unit_bits` (a count of `2^unit_bits`
/// units: POOL_INFO sends byte counts as page counts). The reply structs
/// hold the value itself; only the wire packs it. memsrv never sends a
/// value a field cannot hold (the limits are pinned by `const` assertions
/// beside the table); were one larger, the field would carry its largest
/// value, never a wrapped one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part {
    /// Name in `SCREAMING_SNAKE_CASE`, as the C header spells it (`CAPBUF_<OP>_REPLY_<NAME>_*`).
    pub name: &'static str,
    /// What the field holds ([`Word::C_DESCRIPTION`] of its type).
    pub description: &'static str,
    /// Lowest bit of the field in the register.
    pub shift: u32,
    /// Bits of the field.
    pub width: u32,
    /// The register holds the value divided by `2^unit_bits` (0: the value itself).
    pub unit_bits: u32,
}

impl Part {
    /// Largest value the field can carry, in its own units (bytes, not pages).
    pub const fn max(&self) -> u64 {
        mask(0, self.width) << self.unit_bits
    }
}

/// Bits `shift..shift + width` of a register.
pub(crate) const fn mask(shift: u32, width: u32) -> u64 {
    let low = if width >= u64::BITS { u64::MAX } else { (1 << width) - 1 };
    low << shift
}

/// `value` as field bits `shift..shift + width` in units of `2^unit_bits`,
/// saturated at the field's largest value.
pub(crate) const fn pack(value: u64, shift: u32, width: u32, unit_bits: u32) -> u64 {
    let units = value >> unit_bits;
    let largest = mask(0, width);
    (if units > largest { largest } else { units }) << shift
}

/// The value field bits `shift..shift + width` of `word` carry.
pub(crate) const fn unpack(word: u64, shift: u32, width: u32, unit_bits: u32) -> u64 {
    ((word >> shift) & mask(0, width)) << unit_bits
}

/// Checked when the table is compiled: the parts of a packed register lie
/// inside the register, do not overlap, and their values fit a `u64` in
/// their own units.
pub(crate) const fn check_parts(parts: &[Part]) {
    let mut used = 0u64;
    let mut i = 0;
    while i < parts.len() {
        let part = parts[i];
        assert!(part.width >= 1 && part.shift + part.width <= u64::BITS, "a packed field lies inside its register");
        assert!(part.width + part.unit_bits <= u64::BITS, "a packed field's value fits a u64");
        assert!(used & mask(part.shift, part.width) == 0, "packed fields do not overlap");
        used |= mask(part.shift, part.width);
        i += 1;
    }
}

impl Word for u64 {
    const C_DESCRIPTION: &'static str = "";

    fn from_word(word: u64) -> Result<Self, Error> {
        Ok(word)
    }

    fn to_word(self) -> u64 {
        self
    }
}

/// A pool, by its index in `system.xml` order: pool 0 is the first
/// `<pool>`. Any index can be sent; memsrv refuses one it has no pool for
/// with [`Error::InvalidPool`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PoolId(pub u64);

impl Word for PoolId {
    const C_DESCRIPTION: &'static str = "pool index";

    fn from_word(word: u64) -> Result<Self, Error> {
        Ok(PoolId(word))
    }

    fn to_word(self) -> u64 {
        self.0
    }
}

impl core::fmt::Display for PoolId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A client as other clients name it: the `id` of its `<client>` element in
/// `system.xml` (not its index or channel). memsrv refuses a grant to an id
/// it has no client for, or to the caller itself, with
/// [`Error::InvalidGrantee`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(pub u64);

impl Word for ClientId {
    const C_DESCRIPTION: &'static str = "client id (its id in system.xml)";

    fn from_word(word: u64) -> Result<Self, Error> {
        Ok(ClientId(word))
    }

    fn to_word(self) -> u64 {
        self.0
    }
}

impl core::fmt::Display for ClientId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The alignment of a buffer's first byte: `2^bits` bytes. Every buffer is
/// at least page aligned, so [`Align::PAGE`] (and any `bits` up to
/// [`PAGE_BITS`]) asks for nothing more. Any value can be sent; memsrv
/// refuses one above [`crate::MAX_ALIGN_BITS`] or the pool's size with
/// [`Error::InvalidAlignment`]. An alignment beyond the buffer's own
/// power-of-two size is charged to the byte quota as the whole aligned block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Align(u64);

impl Align {
    /// Page alignment, which every buffer has.
    pub const PAGE: Align = Align(0);

    /// Aligned to `2^bits` bytes.
    pub const fn bits(bits: u64) -> Align {
        Align(bits)
    }

    /// The power of two, as on the wire (below [`PAGE_BITS`]: a page).
    pub const fn log2(self) -> u64 {
        self.0
    }

    /// The alignment in pages, as a power of two: 0 for a page or less.
    pub const fn page_order(self) -> u64 {
        self.0.saturating_sub(PAGE_BITS as u64)
    }
}

impl Word for Align {
    const C_DESCRIPTION: &'static str = "log2 of the alignment in bytes (0: a page)";

    fn from_word(word: u64) -> Result<Self, Error> {
        Ok(Align(word))
    }

    fn to_word(self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AllocFlags, BufferId, Invocation, Rights};

    fn round_trips<T: Word + PartialEq + core::fmt::Debug>(value: T) {
        assert_eq!(T::from_word(value.to_word()), Ok(value));
    }

    #[test]
    fn every_wire_type_round_trips_and_refuses_with_its_own_error() {
        round_trips(u64::MAX);
        round_trips(PoolId(3));
        round_trips(ClientId(u64::MAX));
        round_trips(Align::bits(40));
        round_trips(BufferId::new(7, 9));
        round_trips(Rights::ReadOnly);
        round_trips(AllocFlags::UNCACHED | AllocFlags::READ_ONLY);
        round_trips(Invocation::PageMap);
        assert_eq!(pack(4096, 8, 24, 0), 4096 << 8);
        assert_eq!(pack(u64::MAX, 8, 24, 0), 0xff_ffff << 8, "saturated, never wrapped");
        assert_eq!(pack(5 << PAGE_BITS, 32, 32, PAGE_BITS), 5 << 32, "bytes as pages");
        assert_eq!(unpack(5 << 32 | 7, 32, 32, PAGE_BITS), 5 << PAGE_BITS);
        assert_eq!(unpack(u64::MAX, 0, 64, 0), u64::MAX);
        assert_eq!(mask(8, 8), 0xff00);
        assert_eq!(Rights::from_word(2), Err(Error::InvalidRights));
        assert_eq!(AllocFlags::from_word(8), Err(Error::InvalidFlags), "the first undefined bit");
        assert!(Invocation::from_word(0).is_err());
        assert_eq!(Align::PAGE.page_order(), 0);
        assert_eq!(Align::bits(PAGE_BITS as u64).page_order(), 0);
        assert_eq!(Align::bits(21).page_order(), 9);
    }
}
