//! Values as they travel in one message register: the [`Word`] trait, the
//! small types the ABI's fields have, and [`Field`], how the table describes
//! a register to the C header.

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

/// One message register as the ABI table declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Name in `SCREAMING_SNAKE_CASE`, as the C header spells it (`CAPBUF_<OP>_MR_<NAME>`).
    pub name: &'static str,
    /// What the register holds ([`Word::C_DESCRIPTION`] of its type).
    pub description: &'static str,
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
        assert_eq!(Rights::from_word(2), Err(Error::InvalidRights));
        assert_eq!(AllocFlags::from_word(8), Err(Error::InvalidFlags), "the first undefined bit");
        assert!(Invocation::from_word(0).is_err());
        assert_eq!(Align::PAGE.page_order(), 0);
        assert_eq!(Align::bits(PAGE_BITS as u64).page_order(), 0);
        assert_eq!(Align::bits(21).page_order(), 9);
    }
}
