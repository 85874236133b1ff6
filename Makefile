# capbuf build and test entry points.
#
#   make test        host tests, compose test and the QEMU system test
#   make run         boot the demo in QEMU (Ctrl-A X quits)
#   make host-test   host tests only (offline, crates.io dependencies only); they include
#                    short fuzz runs and the depth-6 exhaustive check (docs/assurance.md)
#   make fuzz-long   every fuzz target for 10^6 executions (FUZZ_EXECUTIONS=n to change)
#   make exhaustive-deep  the exhaustive check deeper (EXHAUSTIVE_DEPTH, EXHAUSTIVE_FAILURES)
#   make image       build the demo system image
#   make memsrv      build only memsrv.elf, for your own system
#   make qemu-test   boot the demo and tests/region-paddr.system, wait for the success lines, fail on any fault or panic
#   make compose-test  check capbuf-compose refuses broken system.xml variants and composes
#                    the SDK's examples as the SDK's microkit does (scripts/compose-examples)
#   make integration-test  boot the smallest system with capbuf (docs/integration.md)
#   make test-boards the demo and the integration system booted on the other boards QEMU
#                    runs (qemu_virt_riscv64, x86_64_generic); .ci/run runs it after make test
#   make board-test  the same on MICROKIT_BOARD alone
#   make compose-boards  compose the demo and the integration example for the real boards
#                    (COMPOSE_BOARDS, default maaxboard odroidc4), pools placed in each
#                    board's RAM; needs only the SDK (scripts/compose-boards)
#   make dma-test    QEMU's virtio-blk disk DMAs into capbuf buffers (docs/dma.md); checked on the host
#   make big-pool-test  a 4 GiB pool of RAM the kernel does not know (device untyped, QEMU -m 8G)
#                    hands out a 1 GiB buffer; memsrv zeroes such memory itself (tests/big-pool)
#   make setup       install/find what the system targets need and say what was chosen
#   make bench       allocator pairs/s (interleaved, then divan), waste, fragmentation study, kernel invocations per request
#   make qemu-bench  every request in guest instructions next to its kernel floor, measured in
#                    the same run (QEMU, -icount); MICROKIT_CONFIG=release for the release kernel
#   make plots       docs/benchmarks.md's plots (SVG) from the BENCH lines of the two above
#   make header      regenerate include/capbuf.h after changing the protocol
#
# Microkit conventions: MICROKIT_SDK, MICROKIT_BOARD, MICROKIT_CONFIG. Every
# system target first runs scripts/setup, which installs missing Debian
# packages (as root), finds the SDK (MICROKIT_SDK, an offline bundle in
# CAPBUF_OFFLINE or ../shared/offline, ~/microkit-sdk-2.3.0, or a checked
# download) and the toolchain, and writes $(BUILD_DIR)/<board>-<config>/setup.mk.

MICROKIT_BOARD ?= qemu_virt_aarch64
MICROKIT_CONFIG ?= debug
BUILD_DIR ?= build
QEMU_TIMEOUT ?= 120
CARGO ?= cargo

# What differs per board, in one place: the architecture (the PDs' target
# spec pds/support/<arch>-sel4-microkit.json), the C cross compiler and its
# flags (those of the SDK's example/hello Makefile), and QEMU (its command
# line is in scripts/board-qemu). maaxboard and odroidc4 compose only.
BOARDS_IN_QEMU := qemu_virt_aarch64 qemu_virt_riscv64 x86_64_generic
ifeq ($(MICROKIT_BOARD),qemu_virt_riscv64)
  ARCH := riscv64
  CROSS_COMPILE ?= riscv64-unknown-elf-
  C_ARCH_FLAGS := -march=rv64imafdc_zicsr_zifencei -mabi=lp64d -mcmodel=medany
  QEMU ?= qemu-system-riscv64
else ifeq ($(MICROKIT_BOARD),x86_64_generic)
  ARCH := x86_64
  CROSS_COMPILE ?= x86_64-linux-gnu-
  C_ARCH_FLAGS := -march=x86-64 -mtune=generic
  QEMU ?= qemu-system-x86_64
else
  ARCH := aarch64
  CROSS_COMPILE ?= aarch64-linux-gnu-
  C_ARCH_FLAGS := -mstrict-align
  QEMU ?= qemu-system-aarch64
endif

OUT := $(BUILD_DIR)/$(MICROKIT_BOARD)-$(MICROKIT_CONFIG)
SETUP_MK := $(OUT)/setup.mk
SETUP := scripts/setup --board $(MICROKIT_BOARD) --config $(MICROKIT_CONFIG) --output $(SETUP_MK)
SYSTEM_TARGETS := check-sdk pds memsrv compose image region-image run qemu-test compose-test qemu-bench integration-test dma-test iommu-test \
                  big-pool-test \
                  board-test board-images compose-boards
# Boards besides the default one whose demo boots in QEMU (make test-boards).
OTHER_BOARDS := qemu_virt_riscv64 x86_64_generic
# The real boards capbuf's images are composed for (make compose-boards).
COMPOSE_BOARDS ?= maaxboard odroidc4

.PHONY: all test test-boards host-test fuzz-long exhaustive-deep bench plots header setup $(SYSTEM_TARGETS) clean
all: host-test

# The exhaustive check (tests/exhaustive.rs) runs on its own build of the
# server, with tables sized for its small configuration (4 buffers, pools of
# up to 256 KiB, a 2^7-slot table) instead of the protocol's ceilings: the
# same search (the same states and steps, docs/assurance.md), but each
# explored state copies a server of some KiB instead of 3 MiB (about 45 s
# instead of 330). Its target directory is its own, so the two builds do not
# undo each other. A plain `cargo test` runs it at full size.
EXHAUSTIVE_TESTS := every_short_sequence_keeps_the_invariants skipping_refusals_loses_no_state
EXHAUSTIVE_BUILD := env CAPBUF_MAX_BUFFERS=16 CAPBUF_MAX_POOL_BITS=18 CAPBUF_MAX_TABLE_BITS=7 \
                    $(CARGO) test --profile checked --test exhaustive --target-dir target/exhaustive
host-test:
	$(CARGO) test --workspace --profile checked -- $(addprefix --skip ,$(EXHAUSTIVE_TESTS))
	$(EXHAUSTIVE_BUILD)

# Long runs (docs/assurance.md): a million random inputs per fuzz target, and
# the bounded-exhaustive check with more steps or more kernel failures.
FUZZ_EXECUTIONS ?= 1000000
EXHAUSTIVE_DEPTH ?= 7
EXHAUSTIVE_FAILURES ?= 1
fuzz-long:
	CAPBUF_FUZZ_EXECUTIONS=$(FUZZ_EXECUTIONS) $(CARGO) test --profile checked --test fuzz -- --ignored --nocapture --test-threads=1

exhaustive-deep:
	CAPBUF_EXHAUSTIVE_DEPTH=$(EXHAUSTIVE_DEPTH) CAPBUF_EXHAUSTIVE_FAILURES=$(EXHAUSTIVE_FAILURES) \
		$(EXHAUSTIVE_BUILD) -- --nocapture

bench:
	$(CARGO) run --release -p capbuf-bench
	$(CARGO) bench -p capbuf-bench --bench pairs

header:
	CAPBUF_UPDATE_HEADER=1 $(CARGO) build -p capbuf

# docs/benchmarks.md's plots from BENCH lines: the latest make qemu-bench of
# each kernel (copied into docs/data/ when there is one) and make bench's.
plots:
	@mkdir -p docs/data
	@for config in debug release; do \
		f=$(BUILD_DIR)/$(MICROKIT_BOARD)-$$config/qemu-bench.txt; \
		if [ -f $$f ]; then cp $$f docs/data/qemu-bench-$$config.txt; echo "plots: $$f -> docs/data/"; fi; \
	done
	$(CARGO) run --release -q -p capbuf-bench | grep '^BENCH ' >docs/data/bench.txt || true
	$(CARGO) run --release -q --manifest-path tools/plots/Cargo.toml -- docs docs/data/*.txt

clean:
	rm -rf $(BUILD_DIR) target pds/target tools/compose/target tools/plots/target

# Each board in its own make, set up for it (its packages are installed then).
# Skipped with a banner, as make test's system tests, when set-up cannot work here.
test-boards:
	@for board in $(OTHER_BOARDS); do \
		scripts/setup --board $$board --config $(MICROKIT_CONFIG) --output $(BUILD_DIR)/$$board-$(MICROKIT_CONFIG)/setup.mk; \
		status=$$?; \
		if [ $$status -eq 3 ]; then echo "SKIPPED: board-test on $$board: the SDK or its packages could not be set up"; continue; fi; \
		[ $$status -eq 0 ] || exit $$status; \
		start=$$(date +%s); \
		$(MAKE) --no-print-directory MICROKIT_BOARD=$$board CAPBUF_SETUP_DONE=1 board-test || exit 1; \
		echo "test-boards: $$board: built and booted in $$(( $$(date +%s) - start )) s"; \
	done

ifeq ($(CAPBUF_SETUP_DONE),)
# First pass: set up, then run the system target again with the fragment.
setup:
	@$(SETUP)

$(SYSTEM_TARGETS):
	@$(SETUP)
	@$(MAKE) --no-print-directory CAPBUF_SETUP_DONE=1 $@

# Host tests always; the system tests unless the SDK cannot be had here (no
# bundle, no network): then say loudly what did not run and how to get it.
# With an offline bundle present a failed set-up fails the test.
test: host-test
	@$(SETUP); status=$$?; \
	if [ $$status -eq 0 ]; then \
		$(MAKE) --no-print-directory CAPBUF_SETUP_DONE=1 compose-test compose-boards qemu-test integration-test dma-test \
			big-pool-test; \
	elif [ $$status -eq 3 ]; then \
		echo; \
		echo "=================================================================="; \
		echo "SKIPPED: the Microkit SDK or the packages for $(MICROKIT_BOARD) could not be set up"; \
		echo "         (see the setup lines above). These tests did not run:"; \
		echo "           - compose-test: capbuf-compose accepts system.xml, refuses broken variants,"; \
		echo "             composes the SDK's examples byte for byte as microkit does"; \
		echo "           - compose-boards: the demo and the integration example composed for $(COMPOSE_BOARDS)"; \
		echo "           - qemu-test: the demo system and tests/region-paddr.system booted on seL4 in QEMU"; \
		echo "           - integration-test: docs/integration.md's system booted in QEMU"; \
		echo "           - dma-test: QEMU's virtio-blk disk DMAs into capbuf buffers, checked on the host"; \
		echo "           - big-pool-test: a 4 GiB pool of device untyped hands out a 1 GiB buffer, zeroed by memsrv"; \
		echo "         Only the host tests ran. Get the SDK and run make test again."; \
		echo "=================================================================="; \
	else \
		exit $$status; \
	fi
else
include $(SETUP_MK)
# Second pass: scripts/setup has chosen the SDK, rustc, linker and git sources.
SDK_CONFIG_DIR := $(MICROKIT_SDK)/board/$(MICROKIT_BOARD)/$(MICROKIT_CONFIG)
PD_TARGET_DIR := $(abspath $(OUT))/pds
PD_TARGET := $(ARCH)-sel4-microkit
PD_ELF_DIR := $(PD_TARGET_DIR)/$(PD_TARGET)/release
COMPOSE := tools/compose/target/release/capbuf-compose
IMAGE := $(OUT)/loader.img
REGION_IMAGE := $(OUT)/region-paddr.img
PD_FLAGS := -Z build-std=core,alloc,compiler_builtins -Z build-std-features=compiler-builtins-mem \
            -Z unstable-options -Z json-target-spec --target support/$(PD_TARGET).json --release
# RUSTC is set by the fragment when the pinned nightly is missing: a
# distribution rustc with its sources, -Z flags unlocked, rustup's cargo run
# with any installed toolchain, and the system's ld.lld.
ifneq ($(RUSTC),)
  PD_ENV := RUSTC=$(RUSTC) RUSTC_BOOTSTRAP=1 RUSTUP_TOOLCHAIN=$(or $(RUSTUP_TOOLCHAIN),stable) \
            CARGO_TARGET_$(shell echo $(PD_TARGET) | tr a-z- A-Z_)_LINKER=$(CAPBUF_LINKER)
endif
# memsrv's static tables are sized for the systems it is built for
# (capbuf-compose --capbuf-limits prints the CAPBUF_MAX_* settings, see
# crates/server/src/capacity.rs); capbuf-compose refuses a system the ELF
# was not built for. One build serves every system make test boots.
MEMSRV_SYSTEMS ?= system.xml tests/region-paddr.system examples/integration/system.xml examples/dma/system.xml
PD_BUILD = cd pds && env $(PD_ENV) $$($(abspath $(COMPOSE)) --capbuf-limits $(abspath $(MEMSRV_SYSTEMS))) \
		SEL4_INCLUDE_DIRS=$(abspath $(SDK_CONFIG_DIR))/include \
		$(CARGO) build $(PD_FLAGS) --target-dir $(PD_TARGET_DIR)

# The in-QEMU benchmark PD reads the Arm generic timer: built on AArch64 only.
ifneq ($(ARCH),aarch64)
  PD_ALL := --workspace --exclude bench
endif
# What scripts/qemu-test and scripts/board-qemu need to know of the board.
QEMU_ENV := MICROKIT_BOARD=$(MICROKIT_BOARD) SDK_BOARD_DIR=$(SDK_CONFIG_DIR) QEMU=$(QEMU) TIMEOUT=$(QEMU_TIMEOUT)

check-sdk:
	@echo "Microkit SDK $(MICROKIT_SDK) ($(CAPBUF_SDK_FROM)), board $(MICROKIT_BOARD), config $(MICROKIT_CONFIG): ready"

pds: compose
	$(PD_BUILD) $(PD_ALL)

memsrv: compose
	$(PD_BUILD) -p memsrv
	@echo "memsrv.elf: $(PD_ELF_DIR)/memsrv.elf"

compose:
	$(CARGO) build --release --manifest-path tools/compose/Cargo.toml

# C protection domains: the board's cross compiler against the SDK's
# libmicrokit, in the dialect libmicrokit is built with.
C_FLAGS := -std=gnu11 -Wall -Wextra -Werror -O2 -g -ffreestanding -nostdlib -fno-pie $(C_ARCH_FLAGS) \
           -I$(SDK_CONFIG_DIR)/include -Iinclude
C_PDS := $(PD_ELF_DIR)/cdemo.elf $(PD_ELF_DIR)/worker.elf

$(OUT)/c/%.o: pds/%.c include/capbuf.h include/capbuf_client.h
	@mkdir -p $(dir $@)
	$(CROSS_COMPILE)gcc -c $(C_FLAGS) $< -o $@

$(PD_ELF_DIR)/app.elf: $(OUT)/c/integration/app.o
	@mkdir -p $(PD_ELF_DIR)
	$(CROSS_COMPILE)ld -L$(SDK_CONFIG_DIR)/lib $^ -lmicrokit -Tmicrokit.ld -o $@

$(OUT)/c/integration/app.o: examples/integration/app.c include/capbuf.h include/capbuf_client.h
	@mkdir -p $(dir $@)
	$(CROSS_COMPILE)gcc -c $(C_FLAGS) $< -o $@

$(PD_ELF_DIR)/cdemo.elf: $(OUT)/c/cdemo/cdemo.o
	@mkdir -p $(PD_ELF_DIR)
	$(CROSS_COMPILE)ld -L$(SDK_CONFIG_DIR)/lib $^ -lmicrokit -Tmicrokit.ld -o $@

# The supervisor restarts the worker at 0x200000, where microkit.ld puts _start.
$(PD_ELF_DIR)/worker.elf: $(OUT)/c/worker/worker.o
	@mkdir -p $(PD_ELF_DIR)
	$(CROSS_COMPILE)ld -L$(SDK_CONFIG_DIR)/lib $^ -lmicrokit -Tmicrokit.ld -o $@

# capbuf-compose takes the microkit tool's command line; the system comes
# first, as --search-path takes every word after it up to the next option.
image: pds compose $(C_PDS)
	MICROKIT_SDK=$(MICROKIT_SDK) $(COMPOSE) system.xml --board $(MICROKIT_BOARD) --config $(MICROKIT_CONFIG) \
		-o $(IMAGE) -r $(OUT)/report.txt --search-path $(PD_ELF_DIR)

region-image: pds compose
	MICROKIT_SDK=$(MICROKIT_SDK) $(COMPOSE) tests/region-paddr.system --board $(MICROKIT_BOARD) --config $(MICROKIT_CONFIG) \
		-o $(REGION_IMAGE) -r $(OUT)/region-paddr-report.txt --search-path $(PD_ELF_DIR)

$(OUT)/bench.img: pds compose
	MICROKIT_SDK=$(MICROKIT_SDK) $(COMPOSE) bench/system.xml --board $(MICROKIT_BOARD) --config $(MICROKIT_CONFIG) \
		-o $@ -r $(OUT)/bench-report.txt --search-path $(PD_ELF_DIR)

# The table: each request next to the kernel floor measured in the same run
# (tools/bench/src/bin/qemu-table.rs); its figures also as BENCH lines for
# make plots. MICROKIT_CONFIG=release measures the release kernel.
qemu-bench: $(OUT)/bench.img
	@[ "$(MICROKIT_BOARD)" = qemu_virt_aarch64 ] || { echo "qemu-bench: qemu_virt_aarch64 only (the bench PD reads the Arm generic timer, bench/system.xml maps its PL011)"; exit 1; }
	$(CARGO) build --release -q -p capbuf-bench --bin qemu-table
	QEMU=$(QEMU) TIMEOUT=$(QEMU_TIMEOUT) scripts/qemu-bench $< $(OUT)/bench.log
	target/release/qemu-table $(OUT)/bench.log $(MICROKIT_CONFIG) --bench-out $(OUT)/qemu-bench.txt >$(OUT)/qemu-bench.md; \
		status=$$?; cat $(OUT)/qemu-bench.md; exit $$status

run: image
	$(QEMU_ENV) scripts/board-qemu $(MICROKIT_BOARD) $(IMAGE)

qemu-test: image region-image
	$(QEMU_ENV) scripts/qemu-test $(IMAGE) $(OUT)/qemu.log
	$(QEMU_ENV) scripts/qemu-test $(REGION_IMAGE) $(OUT)/qemu-region-paddr.log tests/region-paddr.expect

# The demo and the integration system on MICROKIT_BOARD (make test-boards runs
# it for each of OTHER_BOARDS). tests/region-paddr.system and the virtio-blk
# DMA test place memory at qemu_virt_aarch64's addresses: AArch64 only.
board-test: image integration-test
	$(QEMU_ENV) scripts/qemu-test $(IMAGE) $(OUT)/qemu.log

# x86_64_generic also boots the IOMMU system (make iommu-test).
ifeq ($(MICROKIT_BOARD),x86_64_generic)
board-test: iommu-test
endif

$(OUT)/integration.img: memsrv compose $(PD_ELF_DIR)/app.elf examples/integration/system.xml
	MICROKIT_SDK=$(MICROKIT_SDK) $(COMPOSE) examples/integration/system.xml --board $(MICROKIT_BOARD) \
		--config $(MICROKIT_CONFIG) -o $@ -r $(OUT)/integration-report.txt --search-path $(PD_ELF_DIR)

# The system docs/integration.md walks through, built and booted.
integration-test: $(OUT)/integration.img
	$(QEMU_ENV) scripts/qemu-test $< $(OUT)/integration.log examples/integration/expect

$(OUT)/dma.img: pds compose examples/dma/system.xml
	MICROKIT_SDK=$(MICROKIT_SDK) $(COMPOSE) examples/dma/system.xml --board $(MICROKIT_BOARD) \
		--config $(MICROKIT_CONFIG) -o $@ -r $(OUT)/dma-report.txt --search-path $(PD_ELF_DIR)

# The virtio-blk driver (pds/demo/blk) against QEMU's disk: reads and writes
# through uncached and cached capbuf buffers; the disk image is checked after.
dma-test: $(OUT)/dma.img
	$(QEMU_ENV) scripts/dma-test $< $(OUT)/dma-disk.img $(OUT)/dma.log

# A 4 GiB pool (tests/big-pool): RAM the SDK's kernel does not know, which
# QEMU's -m 8G adds above 4 GiB and seL4 hands out as device untyped. memsrv is
# built for that system alone (pool trees for 4 GiB, a 16 MiB stack) in a
# target directory of its own, so the other systems' memsrv stays as it is.
# qemu_virt_aarch64 only (the pool's address is that board's).
BIG_POOL := $(OUT)/big-pool
BIG_POOL_ELFS := $(BIG_POOL)/pds/$(PD_TARGET)/release
big-pool-test: compose
	@[ "$(MICROKIT_BOARD)" = qemu_virt_aarch64 ] || { echo "big-pool-test: qemu_virt_aarch64 only"; exit 1; }
	cd pds && env $(PD_ENV) $$($(abspath $(COMPOSE)) --capbuf-limits $(abspath tests/big-pool/system.xml)) \
		SEL4_INCLUDE_DIRS=$(abspath $(SDK_CONFIG_DIR))/include \
		$(CARGO) build $(PD_FLAGS) --target-dir $(abspath $(BIG_POOL))/pds -p memsrv
	$(CROSS_COMPILE)gcc -c $(C_FLAGS) tests/big-pool/bigpool.c -o $(BIG_POOL)/bigpool.o
	$(CROSS_COMPILE)ld -L$(SDK_CONFIG_DIR)/lib $(BIG_POOL)/bigpool.o -lmicrokit -Tmicrokit.ld -o $(BIG_POOL_ELFS)/bigpool.elf
	MICROKIT_SDK=$(MICROKIT_SDK) $(COMPOSE) tests/big-pool/system.xml --board $(MICROKIT_BOARD) \
		--config $(MICROKIT_CONFIG) -o $(BIG_POOL)/big-pool.img -r $(BIG_POOL)/report.txt --search-path $(BIG_POOL_ELFS)
	$(QEMU_ENV) QEMU_EXTRA="-m size=8G" scripts/qemu-test $(BIG_POOL)/big-pool.img $(BIG_POOL)/qemu.log tests/big-pool/expect

# x86_64 with an IOMMU (tests/iommu): QEMU's q35 with intel-iommu and its edu
# PCI device, driven by an io_space client whose buffers memsrv maps into the
# device's I/O address space. x86_64_generic only; memsrv built for that
# system in a target directory of its own, like the big pool's.
IOMMU := $(OUT)/iommu
IOMMU_ELFS := $(IOMMU)/pds/$(PD_TARGET)/release
IOMMU_QEMU := -machine q35,kernel-irqchip=split -device intel-iommu,intremap=off,caching-mode=on \
              -device edu,addr=4.0,dma_mask=0xffffffff
iommu-test: compose
	@[ "$(MICROKIT_BOARD)" = x86_64_generic ] || { echo "iommu-test: x86_64_generic only"; exit 1; }
	cd pds && env $(PD_ENV) $$($(abspath $(COMPOSE)) --capbuf-limits $(abspath tests/iommu/system.xml)) \
		SEL4_INCLUDE_DIRS=$(abspath $(SDK_CONFIG_DIR))/include \
		$(CARGO) build $(PD_FLAGS) --target-dir $(abspath $(IOMMU))/pds -p memsrv
	$(CROSS_COMPILE)gcc -c $(C_FLAGS) tests/iommu/edu.c -o $(IOMMU)/edu.o
	$(CROSS_COMPILE)ld -L$(SDK_CONFIG_DIR)/lib $(IOMMU)/edu.o -lmicrokit -Tmicrokit.ld -o $(IOMMU_ELFS)/edu.elf
	MICROKIT_SDK=$(MICROKIT_SDK) $(COMPOSE) tests/iommu/system.xml --board $(MICROKIT_BOARD) \
		--config $(MICROKIT_CONFIG) -o $(IOMMU)/iommu.img -r $(IOMMU)/report.txt --search-path $(IOMMU_ELFS)
	MICROKIT_SDK=$(MICROKIT_SDK) scripts/iommu-compose-test $(COMPOSE) $(IOMMU_ELFS) $(MICROKIT_CONFIG)
	$(QEMU_ENV) QEMU_EXTRA="$(IOMMU_QEMU)" scripts/qemu-test $(IOMMU)/iommu.img $(IOMMU)/qemu.log tests/iommu/expect

# The board-neutral systems (the demo has no devices; the integration
# example neither) for this board: what make compose-boards builds per board.
board-images: image $(OUT)/integration.img

compose-boards:
	MICROKIT_SDK=$(MICROKIT_SDK) scripts/compose-boards $(MICROKIT_CONFIG) $(COMPOSE_BOARDS)

compose-test: pds compose $(C_PDS)
	MICROKIT_SDK=$(MICROKIT_SDK) scripts/compose-test $(COMPOSE) $(PD_ELF_DIR) $(MICROKIT_BOARD) $(MICROKIT_CONFIG)
	scripts/compose-examples $(COMPOSE) $(MICROKIT_SDK)
endif
