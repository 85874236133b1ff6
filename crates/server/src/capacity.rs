//! What this build of the server has room for: its static tables' sizes.
//!
//! The protocol sets the ceilings ([`capbuf_protocol::MAX_BUFFERS`],
//! [`capbuf_protocol::MAX_POOL_BITS`], the top of
//! [`capbuf_protocol::TABLE_BITS`]); a build may be smaller. The memsrv
//! protection domain is built with the limits its `system.xml` needs
//! (`capbuf-compose --limits system.xml` prints them as `CAPBUF_MAX_*`
//! variables, the Makefile passes them to cargo), so that a small system
//! gets a small memsrv; memsrv records them in its ELF and capbuf-compose
//! refuses a `system.xml` that needs more than the ELF was built for. Without
//! the variables (host tests, a plain build) every limit is the ceiling.

/// Buffers the registry tracks at once (`CAPBUF_MAX_BUFFERS`).
pub const MAX_BUFFERS: usize =
    parse_or(option_env!("CAPBUF_MAX_BUFFERS"), capbuf_protocol::MAX_BUFFERS as u64) as usize;
/// Largest pool, as a power of two in bytes (`CAPBUF_MAX_POOL_BITS`): sizes
/// the pool trees ([`crate::pool_nodes`]).
pub const MAX_POOL_BITS: u32 =
    parse_or(option_env!("CAPBUF_MAX_POOL_BITS"), capbuf_protocol::MAX_POOL_BITS as u64) as u32;
/// Largest table CNode radix (`CAPBUF_MAX_TABLE_BITS`): sizes the slot and
/// block books.
pub const MAX_TABLE_BITS: u64 = parse_or(option_env!("CAPBUF_MAX_TABLE_BITS"), *capbuf_protocol::TABLE_BITS.end());

const _: () = assert!(MAX_BUFFERS >= 1 && MAX_BUFFERS <= capbuf_protocol::MAX_BUFFERS, "CAPBUF_MAX_BUFFERS");
const _: () = assert!(
    MAX_POOL_BITS >= capbuf_protocol::PAGE_BITS && MAX_POOL_BITS <= capbuf_protocol::MAX_POOL_BITS,
    "CAPBUF_MAX_POOL_BITS"
);
const _: () = assert!(
    MAX_TABLE_BITS >= *capbuf_protocol::TABLE_BITS.start() && MAX_TABLE_BITS <= *capbuf_protocol::TABLE_BITS.end(),
    "CAPBUF_MAX_TABLE_BITS"
);

/// The decimal number in `value`, or `default` if there is none. Anything
/// else stops the build (a constant evaluation panic names the variable's use).
pub const fn parse_or(value: Option<&str>, default: u64) -> u64 {
    let Some(text) = value else { return default };
    let bytes = text.as_bytes();
    assert!(!bytes.is_empty(), "a CAPBUF_MAX_* variable is empty");
    let mut number: u64 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let digit = bytes[i];
        assert!(digit.is_ascii_digit(), "a CAPBUF_MAX_* variable is not a decimal number");
        number = number * 10 + (digit - b'0') as u64;
        i += 1;
    }
    number
}

/// The limits as the words memsrv keeps in its `capbuf_limits` symbol for
/// capbuf-compose: magic, then buffers, pool bits, table bits, clients.
pub const LIMITS_WORDS: [u64; 5] =
    [LIMITS_MAGIC, MAX_BUFFERS as u64, MAX_POOL_BITS as u64, MAX_TABLE_BITS, capbuf_protocol::MAX_CLIENTS as u64];
/// First word of [`LIMITS_WORDS`] ("capbufli").
pub const LIMITS_MAGIC: u64 = u64::from_le_bytes(*b"capbufli");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_and_absent_ones_default() {
        assert_eq!(parse_or(None, 7), 7);
        assert_eq!(parse_or(Some("4096"), 7), 4096);
        assert_eq!(parse_or(Some("0"), 7), 0);
        assert!(std::panic::catch_unwind(|| parse_or(Some("12k"), 7)).is_err());
        assert!(std::panic::catch_unwind(|| parse_or(Some(""), 7)).is_err());
    }
}
