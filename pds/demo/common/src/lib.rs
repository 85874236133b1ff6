//! What the capbuf demo's Rust protection domains share: how they reach
//! memsrv, the names `system.xml` gives the clients, the pool and the
//! producer's buffers, and how each reports success and failure. The demo
//! PDs (and those of `tests/region-paddr.system` and `examples/dma`) are
//! each one `main.rs` of their own scenario on top of this.
//!
//! A line saying `FAIL` fails `scripts/qemu-test` at once ([`fail!`]); so
//! does a panic, which is how a PD stops when it cannot go on at all (no
//! memsrv, or a call the scenario needs refused: `expect`).
#![no_std]

use core::fmt::{Arguments, Debug};

use capbuf_microkit::{BufferId, Capbuf, ClientError, Error, PoolId};
use sel4_microkit::{debug_println, Channel};

/// The one-instruction load the hostile client probes a revoked mapping
/// with, and how the supervisor reads a VM fault: per architecture.
pub mod probe {
    /// What a probe reads when the load did not happen (the supervisor skipped it).
    pub const NOT_READ: u64 = 0xdead_0000_dead_0000;

    /// One 8-byte load from `address` in one instruction of
    /// [`PROBE_LENGTH`] bytes, which the supervisor steps over if it faults;
    /// [`NOT_READ`] if it did.
    pub fn probe(address: u64) -> u64 {
        let mut value = NOT_READ;
        // SAFETY: a plain 8-byte load. If `address` is mapped (inside
        // capbuf's window, where memsrv mapped a buffer) it reads it; if not,
        // the kernel raises a VM fault that the supervisor handles by
        // skipping this one instruction, leaving `value` untouched. No memory
        // is written.
        unsafe { load(address, &mut value) };
        value
    }

    /// `ldr`: 4 bytes.
    #[cfg(target_arch = "aarch64")]
    unsafe fn load(address: u64, value: &mut u64) {
        core::arch::asm!("ldr {value}, [{address}]", value = inout(reg) *value, address = in(reg) address);
    }
    /// Bytes of the probe's load instruction.
    #[cfg(target_arch = "aarch64")]
    pub const PROBE_LENGTH: u64 = 4;

    /// `ld`, uncompressed (`.option norvc`): 4 bytes, though the target
    /// has the C extension.
    #[cfg(target_arch = "riscv64")]
    unsafe fn load(address: u64, value: &mut u64) {
        core::arch::asm!(
            ".option push", ".option norvc", "ld {value}, 0({address})", ".option pop",
            value = inout(reg) *value, address = in(reg) address
        );
    }
    /// Bytes of the probe's load instruction.
    #[cfg(target_arch = "riscv64")]
    pub const PROBE_LENGTH: u64 = 4;

    /// `mov rax, [rcx]` (48 8b 01): 3 bytes, registers fixed so the encoding is.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load(address: u64, value: &mut u64) {
        core::arch::asm!(".byte 0x48, 0x8b, 0x01", inout("rax") *value, in("rcx") address);
    }
    /// Bytes of the probe's load instruction.
    #[cfg(target_arch = "x86_64")]
    pub const PROBE_LENGTH: u64 = 3;

    /// Whether a VM fault's status word (`seL4_VMFault_FSR`) says the access was a write.
    pub const fn fault_is_write(fsr: u64) -> bool {
        if cfg!(target_arch = "aarch64") {
            // ESR_EL1 of a data abort: bit 6, WnR.
            fsr & (1 << 6) != 0
        } else if cfg!(target_arch = "riscv64") {
            // scause: 15 store/AMO page fault, 7 store/AMO access fault.
            fsr == 15 || fsr == 7
        } else {
            // x86 page-fault error code: bit 1, W/R.
            fsr & (1 << 1) != 0
        }
    }
}

/// Every demo PD's channel to memsrv: its end of the PPC channel has id 0.
pub const MEMSRV: Channel = Channel::new(0);

/// The demo's main pool (`main`, the first `<pool>`: index 0).
pub const POOL: PoolId = PoolId(0);
/// The small pool (`small`, index 1, 32 KiB): the worker fills it, and the
/// supervisor and the worker wait for it in turn.
pub const SMALL_POOL: PoolId = PoolId(1);
/// The small pool's size in bytes.
pub const SMALL_POOL_SIZE: u64 = 32 << 10;
/// The pool's size in bytes (system.xml gives no address: capbuf-compose
/// places it, and tells the driver where in its `capbuf_pools`).
pub const POOL_SIZE: u64 = 64 << 20;

/// The clients, by the `id` of their `<client>` in `system.xml`: how they
/// name each other in grants.
pub mod clients {
    use capbuf_microkit::ClientId;

    /// The producer: owns the buffers it shares.
    pub const PRODUCER: ClientId = ClientId(1);
    /// The consumer: attaches the producer's first buffer read-only.
    pub const CONSUMER: ClientId = ClientId(2);
    /// The victim: attached to the buffer the producer frees under it.
    pub const VICTIM: ClientId = ClientId(3);
    /// The driver: DMA, a 16 MiB buffer, the careless client's mistakes.
    pub const DRIVER: ClientId = ClientId(4);
    /// The hostile client: random and malformed requests, the copy-out attack.
    pub const HOSTILE: ClientId = ClientId(5);
    /// The C client (`pds/cdemo`), which trades buffers with the producer.
    pub const CDEMO: ClientId = ClientId(6);
    /// The supervisor: parent and capbuf supervisor of the consumer, the
    /// victim, the hostile client, the C client and the worker.
    pub const SUPERVISOR: ClientId = ClientId(7);
    /// The worker (`pds/worker`, C): faults holding buffers, is reclaimed and
    /// restarted, then waits for memory.
    pub const WORKER: ClientId = ClientId(8);
}

/// The producer's first buffer, granted read-only to the consumer: memsrv's
/// first id (table index 0, generation 1), as the producer allocates first.
pub const SHARED: BufferId = BufferId::new(0, 1);
/// The producer's second buffer, granted read-write to the victim and freed
/// while the victim is attached.
pub const DOOMED: BufferId = BufferId::new(1, 1);

/// What word `i` of the producer's shared buffers holds.
pub const fn pattern(i: usize) -> u64 {
    0xcafe_0000_0000_0000 | i as u64
}

/// Greet memsrv on [`MEMSRV`] and check its protocol version. A demo PD can
/// do nothing without it: it stops here, naming itself and the error.
pub fn connect(pd: &str) -> Capbuf {
    match capbuf_microkit::connect(MEMSRV) {
        Ok(capbuf) => capbuf,
        Err(error) => panic!("{pd}: cannot reach memsrv: {error:?}"),
    }
}

/// Print `<pd>: FAIL: <message>`, the line on which `scripts/qemu-test` fails.
#[macro_export]
macro_rules! fail {
    ($pd:expr, $($message:tt)*) => {
        $crate::print_failure($pd, format_args!($($message)*))
    };
}

#[doc(hidden)]
pub fn print_failure(pd: &str, message: Arguments<'_>) {
    debug_println!("{pd}: FAIL: {message}");
}

/// A call memsrv must refuse with `want`: prints `<pd>: <what>: refused with
/// NAME (code)` and returns `true` if it did, a FAIL line and `false` if not.
pub fn expect_refusal<T: Debug>(pd: &str, what: &str, result: Result<T, ClientError>, want: Error) -> bool {
    match result {
        Err(ClientError::Server(error)) if error == want => {
            debug_println!("{pd}: {what}: refused with {} ({})", error.name(), error.code());
            true
        }
        other => {
            fail!(pd, "{what}: got {other:?}, want {}", want.name());
            false
        }
    }
}
