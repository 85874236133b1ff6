//! The generated C header compiles cleanly and says what the Rust protocol says.

use std::process::Command;

use capbuf_protocol::{AllocFlags, Error, Invocation, Op, Rights};

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
        }
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
    emit("CAPBUF_POOL_INFO_REPLY_MR_LOST".into(), 3);
    emit("CAPBUF_POOL_INFO_REPLY_MR_QUARANTINED".into(), 4);
    emit("CAPBUF_POOL_INFO_REPLY_WORDS".into(), 5);
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
