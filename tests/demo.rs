//! The names the demo's Rust protection domains share (`pds/demo/common`)
//! are the ones `system.xml` gives: client ids, the pool, the channel to memsrv.

/// The value of attribute `name` in one line of XML.
fn attribute<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {name}=\""))? + name.len() + 3;
    Some(&line[start..start + line[start..].find('"')?])
}

fn number(text: &str) -> u64 {
    let text = text.replace('_', "");
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).unwrap(),
        None => text.parse().unwrap(),
    }
}

/// `pub const NAME: Type = <expression>;` lines of the common crate, as (NAME, expression).
fn constants(source: &str) -> Vec<(String, String)> {
    source
        .lines()
        .filter_map(|line| line.trim().strip_prefix("pub const "))
        .filter_map(|rest| {
            let (name, rest) = rest.split_once(':')?;
            let (_, value) = rest.split_once(" = ")?;
            Some((name.trim().to_string(), value.trim_end_matches(';').to_string()))
        })
        .collect()
}

#[test]
fn the_demo_pds_names_are_system_xmls() {
    let root = env!("CARGO_MANIFEST_DIR");
    let xml = std::fs::read_to_string(format!("{root}/system.xml")).unwrap();
    let common = std::fs::read_to_string(format!("{root}/pds/demo/common/src/lib.rs")).unwrap();
    let constants = constants(&common);
    let value = |name: &str| {
        let (_, value) = constants.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no constant {name}"));
        value.clone()
    };
    let lines: Vec<&str> = xml.lines().map(str::trim).collect();
    let clients: Vec<(&str, u64)> = lines
        .iter()
        .filter(|line| line.starts_with("<client "))
        .map(|line| (attribute(line, "pd").unwrap(), number(attribute(line, "id").unwrap())))
        .collect();
    assert_eq!(clients.len(), 8);
    for (pd, id) in &clients {
        assert_eq!(value(&pd.to_uppercase()), format!("ClientId({id})"), "{pd}'s client id");
    }
    let pools: Vec<&&str> = lines.iter().filter(|line| line.starts_with("<pool ")).collect();
    assert_eq!(pools.len(), 2, "the demo has two pools, POOL (0) and SMALL_POOL (1)");
    assert_eq!(value("POOL"), "PoolId(0)");
    assert_eq!(value("SMALL_POOL"), "PoolId(1)");
    let small = value("SMALL_POOL_SIZE");
    let (kib, shift) = small.split_once(" << ").unwrap();
    assert_eq!((number(kib) << number(shift)), number(attribute(pools[1], "size").unwrap()));
    // Pool 0 is placed by capbuf-compose, which writes where into the
    // driver's `capbuf_pools` (the driver is a dma client and checks its
    // buffer's physical address against it): no address to repeat here.
    assert_eq!(attribute(pools[0], "phys_addr"), None, "the demo's main pool is placed by capbuf-compose");
    assert!(constants.iter().all(|(name, _)| name != "POOL_BASE"), "no pool address in the common crate");
    let driver = std::fs::read_to_string(format!("{root}/pds/demo/driver/src/main.rs")).unwrap();
    assert!(driver.contains("capbuf_pools: [u64; POOL_TABLE_WORDS]"), "the driver reads the pools' placement");
    let driver_client = lines.iter().find(|line| line.starts_with("<client pd=\"driver\"")).unwrap();
    assert_eq!(attribute(driver_client, "dma"), Some("true"), "only dma clients learn where the pools are");
    let size = value("POOL_SIZE");
    let (mib, shift) = size.split_once(" << ").unwrap();
    assert_eq!((number(mib) << number(shift)), number(attribute(pools[0], "size").unwrap()));
    // Every client's end of its channel to memsrv has id 0: MEMSRV.
    assert_eq!(value("MEMSRV"), "Channel::new(0)");
    for (pd, _) in &clients {
        let end = format!("<end pd=\"{pd}\"");
        let channel = lines.iter().find(|l| l.contains(&end) && l.contains("pd=\"memsrv\"")).expect("a channel");
        let client_end = &channel[channel.find(&end).unwrap()..];
        assert_eq!(attribute(client_end, "id"), Some("0"), "{pd}'s end of its channel to memsrv");
    }
}
