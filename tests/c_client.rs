//! The C client library (`include/capbuf_client.h`) against the Rust protocol:
//! compiled on the host with a stand-in `microkit.h` (`tests/c/`) whose
//! `microkit_ppcall` prints each request and answers with replies this test
//! encodes with `capbuf_protocol`. Every request the C library sends must
//! decode to the request meant, and every reply field must come out where the
//! C caller reads it; malformed replies must be refused.

use std::io::Write;
use std::process::{Command, Stdio};

use capbuf_client::{dma, ClientError, View};
use capbuf_protocol::{
    Align, AllocFlags, AllocReply, AttachReply, BufferId, ClientId, DetachReply, Error, GrantReply, HelloReply,
    InfoReply, PoolId, PoolInfoReply, ReclaimReply, Reply, Request, Rights, UngrantReply, MAX_MESSAGE_WORDS,
    PADDR_HIDDEN, PROTOCOL_VERSION,
};

/// One reply as the stand-in reads it: label, extra caps, length, words.
fn reply(r: Result<Reply, Error>) -> String {
    match r {
        Ok(reply) => {
            let mut words = [0; MAX_MESSAGE_WORDS];
            let length = reply.encode(&mut words);
            raw(0, 0, &words[..length])
        }
        Err(error) => raw(error.code(), 0, &[]),
    }
}

fn raw(label: u64, caps: u64, words: &[u64]) -> String {
    let words: Vec<String> = words.iter().map(u64::to_string).collect();
    format!("{label} {caps} {} {}\n", words.len(), words.join(" "))
}

#[test]
fn the_c_library_speaks_the_rust_protocol() {
    let dir = std::env::temp_dir().join(format!("capbuf-c-client-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&compiler)
        .args(["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-O1"])
        .arg(format!("-I{root}/tests/c"))
        .arg(format!("-I{root}/include"))
        .arg(format!("{root}/tests/c/client.c"))
        .arg("-o")
        .arg(dir.join("client"))
        .status()
        .expect("run the C compiler");
    assert!(status.success(), "capbuf_client.h does not compile cleanly");

    let id = BufferId::new(5, 3);
    let hello = HelloReply {
        version: PROTOCOL_VERSION | 4,
        client_id: ClientId(6),
        pools: 2,
        quota_bytes: 1 << 20,
        quota_buffers: 2,
        quota_attachments: 3,
    };
    let attach = AttachReply {
        size: 12288,
        vaddr: 0x2020_0000,
        page_bits: 12,
        rights: Rights::ReadWrite,
        flags: AllocFlags::UNCACHED,
    };
    let info = InfoReply {
        size: 12288,
        physical_address: PADDR_HIDDEN,
        page_bits: 12,
        rights: Rights::ReadWrite,
        attachments: 1,
        flags: AllocFlags::UNCACHED,
        pool: PoolId(1),
        owner: ClientId(6),
    };
    // Byte counts beyond 32 bits: the wire's page counts come back as bytes.
    let pool = PoolInfoReply { total: 1 << 34, free: 3 << 32, largest_free: 1 << 19, lost: 4096, quarantined: 3 << 12 };
    let kernel = capbuf_protocol::KernelFailure { invocation: capbuf_protocol::Invocation::CNodeRevoke, code: 3 };
    let mut kernel_words = [0; MAX_MESSAGE_WORDS];
    let kernel_length = kernel.encode(&mut kernel_words);
    let mut attach_words = [0; MAX_MESSAGE_WORDS];
    let attach_length = Reply::Attach(attach).encode(&mut attach_words);
    // Packed registers with a bit set that no field uses: not replies memsrv sends.
    let unused = |reply: Reply, register: usize, bit: u32| {
        let mut words = [0; MAX_MESSAGE_WORDS];
        let length = reply.encode(&mut words);
        words[register] |= 1 << bit;
        raw(0, 0, &words[..length])
    };
    let (grantee, uncached) = (ClientId(7), AllocFlags::UNCACHED);
    let exchanges: Vec<(Request, String)> = vec![
        (Request::Hello {}, reply(Ok(Reply::Hello(hello)))),
        (
            Request::Alloc { size: 12288, align: Align::bits(16), pool: PoolId(1), flags: uncached },
            reply(Ok(Reply::Alloc(AllocReply { id }))),
        ),
        (Request::Attach { id, rights: Rights::ReadWrite }, reply(Ok(Reply::Attach(attach)))),
        (Request::Grant { id, grantee, rights: Rights::ReadOnly }, reply(Ok(Reply::Grant(GrantReply {})))),
        (Request::Info { id }, reply(Ok(Reply::Info(info)))),
        (Request::Ungrant { id, grantee }, reply(Ok(Reply::Ungrant(UngrantReply {})))),
        (Request::Detach { id }, reply(Ok(Reply::Detach(DetachReply {})))),
        (Request::PoolInfo { pool: PoolId(1) }, reply(Ok(Reply::PoolInfo(pool)))),
        (Request::Free { id }, reply(Err(Error::StaleBuffer))),
        (Request::Quiesce { id }, reply(Ok(Reply::Quiesce(capbuf_protocol::QuiesceReply {})))),
        (Request::Quiesce { id }, reply(Err(Error::UnknownBuffer))),
        // A KERNEL reply names the refused invocation and the seL4 error;
        // one without both registers is no reply memsrv sends.
        (Request::Detach { id }, raw(Error::Kernel.code(), 0, &kernel_words[..kernel_length])),
        (Request::Detach { id }, raw(Error::Kernel.code(), 0, &kernel_words[..kernel_length - 1])),
        // A reply that carries a capability, then one a word short: both refused.
        (Request::Attach { id, rights: Rights::ReadOnly }, raw(0, 1, &attach_words[..attach_length])),
        (Request::Attach { id, rights: Rights::ReadOnly }, raw(0, 0, &attach_words[..attach_length - 1])),
        (Request::Attach { id, rights: Rights::ReadOnly }, unused(Reply::Attach(attach), 2, 24)),
        (Request::PoolInfo { pool: PoolId(1) }, unused(Reply::PoolInfo(pool), 2, 63)),
        // WAIT: registered, answered WAITING; RECLAIM by the supervisor, then by someone else.
        (
            Request::Alloc { size: 8192, align: Align::PAGE, pool: PoolId(1), flags: AllocFlags::WAIT | uncached },
            reply(Err(Error::Waiting)),
        ),
        (
            Request::Reclaim { client: ClientId(9) },
            reply(Ok(Reply::Reclaim(ReclaimReply { buffers: 2, bytes: 12288, attachments: 5 }))),
        ),
        (Request::Reclaim { client: ClientId(9) }, reply(Err(Error::NotSupervisor))),
        (Request::Hello {}, unused(Reply::Hello(hello), 3, 56)),
        // A memsrv of another major version.
        (Request::Hello {}, reply(Ok(Reply::Hello(HelloReply { version: 1 << 32, ..hello })))),
    ];
    let mut child = Command::new(dir.join("client"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the C client");
    let mut input: String = exchanges.iter().map(|(_, r)| r.as_str()).collect();
    for (view, offset, len, line_size) in cache_line_cases() {
        input += &format!("{} {} {} {offset} {len} {line_size}\n", view.vaddr, view.size, view.flags.bits());
    }
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "the C client exited with {}", output.status);
    let stdout = String::from_utf8(output.stdout).unwrap();

    let calls: Vec<&str> = stdout.lines().filter(|l| l.starts_with("call ")).collect();
    assert_eq!(calls.len(), exchanges.len(), "one PPC per call:\n{stdout}");
    for (line, (expected, _)) in calls.iter().zip(&exchanges) {
        let numbers: Vec<u64> = line.split(' ').skip(1).map(|w| w.parse().unwrap()).collect();
        assert_eq!(numbers[0], 3, "on the channel given to capbuf_connect");
        assert_eq!(numbers[2] as usize, numbers.len() - 3, "the length says how many registers");
        let request = Request::decode(numbers[1], &numbers[3..], 0);
        assert_eq!(request, Ok(*expected), "{line}");
    }
    let results: Vec<&str> = stdout.lines().filter_map(|l| l.strip_prefix("result ")).collect();
    let attach_vaddr = attach.vaddr;
    let expected = [
        format!("connect OK {} 6 2 1048576 2 3", PROTOCOL_VERSION | 4),
        format!("alloc OK {}", id.raw()),
        format!("attach OK {} {attach_vaddr} 12288 12 3 1", id.raw()),
        "grant OK".to_string(),
        format!("info OK 12288 {PADDR_HIDDEN} 12 3 1 1 1 6"),
        "ungrant OK".to_string(),
        "detach OK".to_string(),
        format!("pool_info OK {} {} 524288 4096 12288", 1u64 << 34, 3u64 << 32),
        "free STALE_BUFFER".to_string(),
        "quiesce OK".to_string(),
        "quiesce_unknown UNKNOWN_BUFFER".to_string(),
        format!("detach_kernel KERNEL {} 3", capbuf_protocol::Invocation::CNodeRevoke as u64),
        "detach_kernel_short CLIENT_ERR_BAD_REPLY".to_string(),
        "attach_with_cap CLIENT_ERR_BAD_REPLY".to_string(),
        "attach_short CLIENT_ERR_BAD_REPLY".to_string(),
        "attach_unused CLIENT_ERR_BAD_REPLY".to_string(),
        "pool_info_unused CLIENT_ERR_BAD_REPLY".to_string(),
        format!("alloc_wait WAITING {}", id.raw()),
        "reclaim OK 2 12288 5".to_string(),
        "reclaim_refused NOT_SUPERVISOR".to_string(),
        "connect_unused CLIENT_ERR_BAD_REPLY".to_string(),
        "connect_old CLIENT_ERR_VERSION".to_string(),
        "sync_device OK".to_string(),
        "sync_cpu_partial OK".to_string(),
        "sync_empty_at_end OK".to_string(),
        "sync_past_end CLIENT_ERR_RANGE".to_string(),
        "sync_wrapping CLIENT_ERR_RANGE".to_string(),
    ];
    assert_eq!(results, expected);

    // The C library's cache lines are the Rust library's, refusals included.
    let lines: Vec<&str> = stdout.lines().filter_map(|l| l.strip_prefix("lines ")).collect();
    let cases = cache_line_cases();
    assert_eq!(lines.len(), cases.len());
    for (line, (view, offset, len, line_size)) in lines.iter().zip(cases) {
        let expected = match dma::cache_lines(&view, offset, len, line_size) {
            Ok(lines) => format!("OK {} {}", lines.span().0, lines.span().1),
            Err(ClientError::OutOfRange) => "CLIENT_ERR_RANGE 0 0".to_string(),
            Err(other) => panic!("{other:?}"),
        };
        assert_eq!(*line, expected, "{view:?} offset {offset} len {len} line {line_size}");
    }
}

/// Views and ranges for the cache-line comparison: partial lines, a range
/// across a 2 MiB frame's end, the last byte, empty, uncached, past the end,
/// wrapping around.
fn cache_line_cases() -> Vec<(View, u64, u64, u64)> {
    let view = |size: u64, flags: AllocFlags| View {
        id: BufferId::new(1, 1),
        vaddr: 0x2020_0000,
        size,
        rights: Rights::ReadWrite,
        flags,
    };
    let cached = AllocFlags::NONE;
    let (small, large, uncached) = (view(12288, cached), view(3 << 20, cached), view(12288, AllocFlags::UNCACHED));
    vec![
        (small, 0, 12288, 64),
        (small, 10, 20, 64),
        (small, 60, 8, 64),
        (small, 4000, 200, 128),
        (small, 12287, 1, 64),
        (small, 12288, 0, 64),
        (large, (2 << 20) - 10, 20, 64),
        (large, 0, 3 << 20, 64),
        (uncached, 0, 12288, 64),
        (small, 12280, 16, 64),
        (small, 12289, 0, 64),
        (small, u64::MAX - 7, 16, 64),
        (uncached, 0, 12289, 64),
    ]
}
