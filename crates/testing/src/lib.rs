//! What capbuf's property tests share, so every crate's tests run the same way.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use proptest::test_runner::{contextualize_config, Config, FileFailurePersistence, RngSeed};

/// The property tests' configuration: `cases` cases unless `PROPTEST_CASES`
/// says otherwise; a fresh seed each run, printed (with `--nocapture`, or
/// beside a failure) so the run can be repeated with `PROPTEST_RNG_SEED`;
/// failing cases saved to the committed `*.proptest-regressions` file beside
/// the test's source file, which every run replays first.
pub fn proptest_config(cases: u32) -> Config {
    use std::hash::{BuildHasher, Hasher};
    let mut config = contextualize_config(Config { cases, ..Config::default() });
    config.failure_persistence = Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions")));
    if config.rng_seed == RngSeed::Random {
        let seed = std::collections::hash_map::RandomState::new().build_hasher().finish();
        config.rng_seed = RngSeed::Fixed(seed);
    }
    eprintln!("proptest: {} cases, PROPTEST_RNG_SEED={}", config.cases, config.rng_seed);
    config
}
