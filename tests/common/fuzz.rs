//! A fuzzer on the stable toolchain: each target takes bytes, as a
//! libFuzzer or AFL target does (read through [`arbitrary::Unstructured`]),
//! and says what broke; [`fuzz`] feeds it random inputs from a printed seed,
//! catches panics as failures, and reports the failing input in hex so that
//! `CAPBUF_FUZZ_REPLAY=<hex>` runs exactly that input again.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use super::invariants::Violation;

/// A fuzz target: an input, and what broke, if anything.
pub type Target = fn(&[u8]) -> Result<(), Violation>;

/// How a run went.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    pub executions: u64,
    pub seconds: f64,
}

/// SplitMix64: a small, good generator for the inputs' bytes.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// CPU seconds this process has used (user and system), from Linux's
/// `/proc/self/stat` at its usual 100 ticks a second; 0 elsewhere. On a
/// shared machine the wall clock says little about the work done.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn setting(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|value| value.parse().ok())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len() / 2).map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex")).collect()
}

/// Run `target` on `executions` inputs (`CAPBUF_FUZZ_EXECUTIONS` overrides)
/// of up to `max_length` random bytes, from `CAPBUF_FUZZ_SEED` or a fresh
/// seed; print the figures; panic at the first input that breaks something.
/// memsrv's state is large: targets run on a thread with room for it.
pub fn fuzz(name: &str, target: Target, executions: u64, max_length: usize) -> Run {
    let name = name.to_string();
    let thread = std::thread::Builder::new().stack_size(256 << 20);
    let run = thread.spawn(move || fuzz_here(&name, target, executions, max_length)).expect("fuzz thread");
    run.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

fn fuzz_here(name: &str, target: Target, executions: u64, max_length: usize) -> Run {
    if let Ok(replay) = std::env::var("CAPBUF_FUZZ_REPLAY") {
        let input = unhex(&replay);
        if let Err(violation) = target(&input) {
            panic!("{name}: replayed input breaks: {violation}");
        }
        return Run { executions: 1, seconds: 0.0 };
    }
    let executions = setting("CAPBUF_FUZZ_EXECUTIONS").unwrap_or(executions);
    let seed = setting("CAPBUF_FUZZ_SEED").unwrap_or_else(|| {
        use std::hash::{BuildHasher, Hasher};
        std::collections::hash_map::RandomState::new().build_hasher().finish()
    });
    let mut random = SplitMix(seed);
    let mut input = Vec::with_capacity(max_length);
    let started = Instant::now();
    let cpu = cpu_seconds();
    for execution in 0..executions {
        let length = (random.next() % (max_length as u64 + 1)) as usize;
        input.clear();
        while input.len() < length {
            input.extend_from_slice(&random.next().to_le_bytes());
        }
        input.truncate(length);
        let outcome = catch_unwind(AssertUnwindSafe(|| target(&input)));
        let broke = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(violation)) => violation,
            Err(panic) => {
                let message = panic.downcast_ref::<String>().cloned();
                let message = message.or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
                format!("panicked: {}", message.unwrap_or_default())
            }
        };
        panic!(
            "{name}: execution {execution} (CAPBUF_FUZZ_SEED={seed}) breaks: {broke}\n\
             replay with CAPBUF_FUZZ_REPLAY={}",
            hex(&input)
        );
    }
    let run = Run { executions, seconds: started.elapsed().as_secs_f64() };
    let cpu = cpu_seconds() - cpu;
    eprintln!(
        "fuzz {name}: {} executions, 0 failures, {:.1} s ({:.1} s CPU, {:.0}/CPU s), CAPBUF_FUZZ_SEED={seed}",
        run.executions,
        run.seconds,
        cpu,
        run.executions as f64 / cpu.max(1e-2)
    );
    run
}
