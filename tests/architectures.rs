//! The same memsrv on each architecture's translation rules (the model's
//! `Model::on`): buffers of 2 MiB and 4 KiB frames map in every client's
//! window, where the table above the last level exists because of the
//! client's program image; an uncached buffer is uncached where the page
//! tables can say so and cacheable (coherent) on RISC-V; a mapping outside
//! that 1 GiB is refused by the kernel.

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use capbuf_model::{error, Model};
use capbuf_protocol::{Align, AllocFlags, PoolId, Rights, CLIENT_WINDOW};
use capbuf_server::arch::{ARCHITECTURES, RISCV64};
use capbuf_server::{Architecture, Server};
use common::*;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// memsrv's state lives on the stack in these tests: more than a test thread's default.
fn with_large_stack(test: fn()) {
    std::thread::Builder::new().stack_size(64 << 20).spawn(test).unwrap().join().unwrap();
}

fn world_on(architecture: Architecture) -> World {
    let config = config(16 * MIB, 16, 16);
    let model = Model::new(config.table_bits, &pools_of(&config), 3).on(architecture);
    Rc::new(RefCell::new(Server::new(model, config).expect("valid config")))
}

#[test]
fn buffers_map_on_every_architecture() {
    with_large_stack(buffers_map);
}

fn buffers_map() {
    for architecture in ARCHITECTURES {
        let world = world_on(architecture);
        let mut driver = client(&world, 2);
        let id = driver.alloc(2 * MIB + 8 * KIB, Align::bits(21), PoolId(0), AllocFlags::UNCACHED).unwrap();
        let view = driver.attach(id, Rights::ReadWrite).unwrap();
        assert!(CLIENT_WINDOW.contains(&view.vaddr), "{}", architecture.name);
        let mappings = world.borrow().kernel().client_mappings(2);
        let sizes: Vec<u32> = mappings.iter().map(|m| m.size_bits).collect();
        assert_eq!(sizes, [21, 12, 12], "{}: one 2 MiB frame, then two 4 KiB", architecture.name);
        let cached = architecture == RISCV64;
        assert!(mappings.iter().all(|m| m.cached == cached), "{}: {mappings:?}", architecture.name);
        driver.detach(id).unwrap();
        driver.free(id).unwrap();
        assert_pristine(&world);
    }
}

#[test]
fn the_kernel_refuses_a_mapping_outside_the_program_images_gigabyte() {
    use capbuf_server::{CapRef, Kernel, Object};
    for architecture in ARCHITECTURES {
        let mut model = Model::new(12, &[(0x4000_0000, 22)], 1).on(architecture);
        let vspace = capbuf_protocol::MEMSRV_TABLE_VSPACES as u32;
        model.retype(0, Object::PageTable, CapRef::Table(40), 1).unwrap();
        assert_eq!(
            model.map_page_table(CapRef::Table(40), vspace, CLIENT_WINDOW.end),
            Err(error::FAILED_LOOKUP),
            "{}",
            architecture.name
        );
        assert_eq!(model.map_page_table(CapRef::Table(40), vspace, CLIENT_WINDOW.start), Ok(()), "{}", architecture.name);
    }
}
