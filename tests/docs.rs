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
