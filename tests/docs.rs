//! The documentation shows the files the tests build, as they are.

#[test]
fn the_integration_guide_shows_the_system_the_integration_test_boots() {
    let root = env!("CARGO_MANIFEST_DIR");
    let guide = std::fs::read_to_string(format!("{root}/docs/integration.md")).unwrap();
    let system = std::fs::read_to_string(format!("{root}/examples/integration/system.xml")).unwrap();
    assert!(
        guide.contains(&format!("```xml\n{system}```")),
        "docs/integration.md must show examples/integration/system.xml verbatim"
    );
    let expect = std::fs::read_to_string(format!("{root}/examples/integration/expect")).unwrap();
    // The sentinel and the client's own line, as the guide quotes them.
    let quoted = expect.lines().filter_map(|l| l.strip_prefix("sentinel: ").or_else(|| l.strip_prefix("require: ")));
    for line in quoted.filter(|l| l.starts_with("CAPBUF") || l.starts_with("app:")) {
        assert!(guide.contains(line), "docs/integration.md shows the test's line '{line}'");
    }
}

#[test]
fn the_dma_guide_shows_the_system_the_dma_test_boots() {
    let root = env!("CARGO_MANIFEST_DIR");
    let guide = std::fs::read_to_string(format!("{root}/docs/dma.md")).unwrap();
    let system = std::fs::read_to_string(format!("{root}/examples/dma/system.xml")).unwrap();
    assert!(guide.contains(&format!("```xml\n{system}```")), "docs/dma.md must show examples/dma/system.xml verbatim");
    let expect = std::fs::read_to_string(format!("{root}/examples/dma/expect")).unwrap();
    let sentinel = expect.lines().find_map(|l| l.strip_prefix("sentinel: ")).unwrap();
    assert!(guide.contains(sentinel), "docs/dma.md quotes the test's success line '{sentinel}'");
}

/// The limits the README and the integration guide state are the protocol
/// crate's: each is defined once there, and the prose is checked against it.
#[test]
fn the_guides_state_the_protocols_limits() {
    use capbuf_protocol::{
        DEFAULT_TABLE_BITS, MAX_ALIGN_BITS, MAX_BUFFERS, MAX_CLIENTS, MAX_POOLS, MAX_POOL_BITS, PAGE_SIZE, TABLE_BITS,
    };
    let root = env!("CARGO_MANIFEST_DIR");
    // Prose wraps anywhere: compare with every run of white space made one space.
    let read = |path: &str| {
        let text = std::fs::read_to_string(format!("{root}/{path}")).unwrap();
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let (readme, guide) = (read("README.md"), read("docs/integration.md"));
    let (pool_min, pool_max) = (PAGE_SIZE >> 10, (1u64 << MAX_POOL_BITS) >> 20);
    let table_bits = format!("({} to {}, default {DEFAULT_TABLE_BITS})", TABLE_BITS.start(), TABLE_BITS.end());
    for (name, text, statements) in [
        (
            "README.md",
            &readme,
            vec![
                format!("`table_bits`: radix of memsrv's bookkeeping CNode {table_bits}"),
                format!("({pool_min} KiB to {pool_max} MiB, up to {MAX_POOLS} pools)"),
                format!("Limits: {MAX_POOLS} pools of at most {pool_max} MiB, {MAX_CLIENTS} clients, {MAX_BUFFERS} live buffers"),
                format!("alignment up to 2^{MAX_ALIGN_BITS}"),
                format!("more buffers than memsrv tracks ({MAX_BUFFERS})"),
            ],
        ),
        (
            "docs/integration.md",
            &guide,
            vec![
                format!("`table_bits` {table_bits}"),
                format!("| pools | {MAX_POOLS}, each a power of two from {pool_min} KiB to {pool_max} MiB |"),
                format!("| clients | {MAX_CLIENTS} |"),
                format!("| live buffers | {MAX_BUFFERS} (all clients) |"),
                format!("| alignment | up to 2^{MAX_ALIGN_BITS} bytes;"),
            ],
        ),
    ] {
        for statement in statements {
            assert!(text.contains(&statement), "{name} must say: {statement}");
        }
    }
}
