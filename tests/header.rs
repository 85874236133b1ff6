//! The generated C header compiles cleanly and says what the Rust protocol says.

use std::process::Command;

use capbuf_protocol::{
    AllocFlags, ClientId, Error, HelloReply, InfoReply, Invocation, Op, PoolId, PoolInfoReply, Reply, Rights,
    MAX_MESSAGE_WORDS,
};

#[test]
fn c_header_compiles_and_matches_the_rust_definitions() {
    let dir = std::env::temp_dir().join(format!("capbuf-header-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut c = String::from("#include <stdio.h>\n#include \"capbuf.h\"\nint main(void) {\n");
    let mut expected = String::new();
    let mut emit = |name: String, value: u64| {
        c.push_str(&format!("    printf(\"%llu\\n\", (unsigned long long)({name}));\n"));
        expected.push_str(&format!("{value}\n"));
    };
    for op in Op::ALL {
        emit(format!("CAPBUF_OP_{}", op.name()), op as u64);
        emit(format!("CAPBUF_{}_REQUEST_WORDS", op.name()), op.request_words() as u64);
        emit(format!("CAPBUF_{}_REPLY_WORDS", op.name()), op.reply_words() as u64);
        emit(format!("CAPBUF_{}_REPLY_CAPS", op.name()), op.reply_caps() as u64);
        for (i, field) in op.request_fields().iter().enumerate() {
            emit(format!("CAPBUF_{}_MR_{}", op.name(), field.name), i as u64);
        }
        for (i, field) in op.reply_fields().iter().enumerate() {
            emit(format!("CAPBUF_{}_REPLY_MR_{}", op.name(), field.name), i as u64);
            if field.parts.is_empty() {
                continue;
            }
            emit(format!("CAPBUF_{}_REPLY_{}_UNUSED", op.name(), field.name), field.unused_bits());
            for part in field.parts {
                let name = format!("CAPBUF_{}_REPLY_{}", op.name(), part.name);
                emit(format!("{name}_SHIFT"), part.shift as u64);
                emit(format!("{name}_MASK"), u64::MAX >> (64 - part.width));
                emit(format!("{name}_UNIT_BITS"), part.unit_bits as u64);
            }
        }
    }
    // The accessors on replies the Rust protocol encodes: every packed
    // field's value, whole, in its own units.
    let replies = [
        Reply::Hello(HelloReply {
            version: capbuf_protocol::PROTOCOL_VERSION,
            client_id: ClientId(77),
            pools: 3,
            quota_bytes: 1 << 40,
            quota_buffers: 4096,
            quota_attachments: 513,
        }),
        Reply::Info(InfoReply {
            size: 1 << 30,
            physical_address: 0x4000_0000,
            page_bits: 21,
            rights: Rights::ReadOnly,
            attachments: 65,
            flags: AllocFlags::UNCACHED | AllocFlags::READ_ONLY,
            pool: PoolId(3),
            owner: ClientId(u64::MAX),
        }),
        Reply::Attach(capbuf_protocol::AttachReply {
            size: 1 << 21,
            vaddr: 0x2020_0000,
            page_bits: 12,
            rights: Rights::ReadWrite,
            flags: AllocFlags::UNCACHED,
        }),
        Reply::PoolInfo(PoolInfoReply {
            total: (1 << 40) - (3 << 12),
            free: 1 << 35,
            largest_free: 7 << 12,
            lost: 1 << 12,
            quarantined: (1 << 40) - (1 << 12),
        }),
    ];
    for reply in replies {
        let mut words = [0; MAX_MESSAGE_WORDS];
        let length = reply.encode(&mut words);
        let registers: Vec<String> = words[..length].iter().map(|w| format!("{w}ULL")).collect();
        let array = format!("((const uint64_t[]){{{}}})", registers.join(", "));
        let op = reply.op();
        let fields: Vec<(&str, u64)> = match reply {
            Reply::Hello(r) => {
                vec![("POOLS", r.pools), ("QUOTA_BUFFERS", r.quota_buffers), ("QUOTA_ATTACHMENTS", r.quota_attachments)]
            }
            Reply::Info(r) => vec![
                ("PAGE_BITS", r.page_bits),
                ("RIGHTS", r.rights as u64),
                ("FLAGS", r.flags.bits()),
                ("POOL", r.pool.0),
                ("ATTACHMENTS", r.attachments),
            ],
            Reply::Attach(r) => {
                vec![("PAGE_BITS", r.page_bits), ("RIGHTS", r.rights as u64), ("FLAGS", r.flags.bits())]
            }
            Reply::PoolInfo(r) => vec![
                ("TOTAL", r.total),
                ("FREE", r.free),
                ("LARGEST_FREE", r.largest_free),
                ("LOST", r.lost),
                ("QUARANTINED", r.quarantined),
            ],
            _ => unreachable!(),
        };
        for (field, value) in fields {
            emit(format!("CAPBUF_{}_REPLY_{field}({array})", op.name()), value);
        }
        emit(format!("CAPBUF_{}_REPLY_UNUSED_CLEAR({array})", op.name()), 1);
    }
    for error in Error::ALL {
        emit(format!("CAPBUF_ERR_{}", error.name()), error.code());
    }
    emit("CAPBUF_ERR_KERNEL_REPLY_WORDS".into(), Error::Kernel.reply_fields().len() as u64);
    emit("CAPBUF_ERR_KERNEL_REPLY_MR_INVOCATION".into(), 0);
    emit("CAPBUF_ERR_KERNEL_REPLY_MR_CODE".into(), 1);
    for invocation in Invocation::ALL {
        emit(format!("CAPBUF_INVOCATION_{}", invocation.name()), invocation as u64);
    }
    emit("CAPBUF_POOL_INFO_REPLY_MR_LARGEST_LOST".into(), 1);
    emit("CAPBUF_POOL_INFO_REPLY_MR_QUARANTINE".into(), 2);
    emit("CAPBUF_POOL_INFO_REPLY_WORDS".into(), 3);
    emit("CAPBUF_POOL_INFO_REPLY_LOST_SHIFT".into(), 32);
    emit("CAPBUF_POOL_INFO_REPLY_LOST_UNIT_BITS".into(), 12);
    emit("CAPBUF_POOL_INFO_REPLY_QUARANTINE_UNUSED".into(), 0xffff_ffff_0000_0000);
    emit("CAPBUF_HELLO_REPLY_WORDS".into(), 4);
    emit("CAPBUF_HELLO_REPLY_MR_VERSION".into(), 0);
    emit("CAPBUF_HELLO_REPLY_MR_COUNTS".into(), 3);
    emit("CAPBUF_ATTACH_REPLY_WORDS".into(), 3);
    emit("CAPBUF_ATTACH_REPLY_RIGHTS_SHIFT".into(), 8);
    emit("CAPBUF_INFO_REPLY_WORDS".into(), 4);
    emit("CAPBUF_INFO_REPLY_MR_OWNER".into(), 3);
    emit("CAPBUF_INFO_REPLY_ATTACHMENTS_SHIFT".into(), 32);
    emit("CAPBUF_MAX_MESSAGE_WORDS".into(), 4);
    emit("CAPBUF_OP_QUIESCE".into(), 10);
    emit("CAPBUF_QUIESCE_MR_ID".into(), 0);
    emit("CAPBUF_QUIESCE_REPLY_WORDS".into(), 0);
    emit("CAPBUF_PROTOCOL_VERSION".into(), capbuf_protocol::PROTOCOL_VERSION);
    emit("CAPBUF_VERSION_MAJOR_SHIFT".into(), capbuf_protocol::VERSION_MAJOR_SHIFT as u64);
    emit("CAPBUF_RIGHTS_READ_ONLY".into(), Rights::ReadOnly as u64);
    emit("CAPBUF_FLAG_UNCACHED".into(), AllocFlags::UNCACHED.bits());
    emit("CAPBUF_FLAG_READ_ONLY".into(), AllocFlags::READ_ONLY.bits());
    emit("CAPBUF_FLAG_WAIT".into(), AllocFlags::WAIT.bits());
    emit("CAPBUF_ALLOC_MR_FLAGS".into(), 3);
    emit("CAPBUF_OP_RECLAIM".into(), 13);
    emit("CAPBUF_RECLAIM_MR_CLIENT".into(), 0);
    emit("CAPBUF_RECLAIM_REPLY_WORDS".into(), 3);
    emit("CAPBUF_RECLAIM_REPLY_MR_BYTES".into(), 1);
    emit("CAPBUF_ERR_NOT_SUPERVISOR".into(), 26);
    emit("CAPBUF_ERR_WAITING".into(), 27);
    emit("CAPBUF_ATTACH_REPLY_MR_VADDR".into(), 1);
    emit("CAPBUF_INFO_REPLY_MR_PADDR".into(), 1);
    emit("sizeof(capbuf_id_t)".into(), 8);
    c.push_str("    return 0;\n}\n");
    std::fs::write(dir.join("main.c"), c).unwrap();
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let include = concat!(env!("CARGO_MANIFEST_DIR"), "/include");
    let status = Command::new(&compiler)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I", include, "-o"])
        .arg(dir.join("main"))
        .arg(dir.join("main.c"))
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler `{compiler}`: {e}"));
    assert!(status.success(), "the header does not compile cleanly");
    let output = Command::new(dir.join("main")).output().unwrap();
    assert_eq!(String::from_utf8(output.stdout).unwrap(), expected);
    std::fs::remove_dir_all(&dir).ok();
}
