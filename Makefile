# capbuf build and test entry points.
#
#   make test        host tests, compose test and the QEMU system test
#   make run         boot the demo in QEMU (Ctrl-A X quits)
#   make host-test   host tests only (offline, crates.io dependencies only)
#   make image       build the demo system image
#   make memsrv      build only memsrv.elf, for your own system
#   make qemu-test   boot the demo and tests/region-paddr.system, wait for the success lines, fail on any fault or panic
#   make compose-test  check capbuf-compose refuses broken system.xml variants and composes
#                    the SDK's examples as the SDK's microkit does (scripts/compose-examples)
#   make integration-test  boot the smallest system with capbuf (docs/integration.md)
#   make dma-test    QEMU's virtio-blk disk DMAs into capbuf buffers (docs/dma.md); checked on the host
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
QEMU ?= qemu-system-aarch64
QEMU_TIMEOUT ?= 120
CARGO ?= cargo

OUT := $(BUILD_DIR)/$(MICROKIT_BOARD)-$(MICROKIT_CONFIG)
SETUP_MK := $(OUT)/setup.mk
SETUP := scripts/setup --board $(MICROKIT_BOARD) --config $(MICROKIT_CONFIG) --output $(SETUP_MK)
SYSTEM_TARGETS := check-sdk pds memsrv compose image region-image run qemu-test compose-test qemu-bench integration-test dma-test

.PHONY: all test host-test bench plots header setup $(SYSTEM_TARGETS) clean
all: host-test

host-test:
	$(CARGO) test --workspace --release

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
		$(MAKE) --no-print-directory CAPBUF_SETUP_DONE=1 compose-test qemu-test integration-test dma-test; \
	elif [ $$status -eq 3 ]; then \
		echo; \
		echo "=================================================================="; \
		echo "SKIPPED: the Microkit SDK or the packages for $(MICROKIT_BOARD) could not be set up"; \
		echo "         (see the setup lines above). These tests did not run:"; \
		echo "           - compose-test: capbuf-compose accepts system.xml, refuses broken variants,"; \
		echo "             composes the SDK's examples byte for byte as microkit does"; \
		echo "           - qemu-test: the demo system and tests/region-paddr.system booted on seL4 in QEMU"; \
		echo "           - integration-test: docs/integration.md's system booted in QEMU"; \
		echo "           - dma-test: QEMU's virtio-blk disk DMAs into capbuf buffers, checked on the host"; \
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
PD_ELF_DIR := $(PD_TARGET_DIR)/aarch64-sel4-microkit/release
COMPOSE := tools/compose/target/release/capbuf-compose
IMAGE := $(OUT)/loader.img
REGION_IMAGE := $(OUT)/region-paddr.img
PD_FLAGS := -Z build-std=core,alloc,compiler_builtins -Z build-std-features=compiler-builtins-mem \
            -Z unstable-options -Z json-target-spec --target support/aarch64-sel4-microkit.json --release
# RUSTC is set by the fragment when the pinned nightly is missing: a
# distribution rustc with its sources, -Z flags unlocked, rustup's cargo run
# with any installed toolchain, and the system's ld.lld.
ifneq ($(RUSTC),)
  PD_ENV := RUSTC=$(RUSTC) RUSTC_BOOTSTRAP=1 RUSTUP_TOOLCHAIN=$(or $(RUSTUP_TOOLCHAIN),stable) \
            CARGO_TARGET_AARCH64_SEL4_MICROKIT_LINKER=$(CAPBUF_LINKER)
endif
# memsrv's static tables are sized for the systems it is built for
# (capbuf-compose --capbuf-limits prints the CAPBUF_MAX_* settings, see
# crates/server/src/capacity.rs); capbuf-compose refuses a system the ELF
# was not built for. One build serves every system make test boots.
MEMSRV_SYSTEMS ?= system.xml tests/region-paddr.system examples/integration/system.xml examples/dma/system.xml
PD_BUILD = cd pds && env $(PD_ENV) $$($(abspath $(COMPOSE)) --capbuf-limits $(abspath $(MEMSRV_SYSTEMS))) \
		SEL4_INCLUDE_DIRS=$(abspath $(SDK_CONFIG_DIR))/include \
		$(CARGO) build $(PD_FLAGS) --target-dir $(PD_TARGET_DIR)

check-sdk:
	@echo "Microkit SDK $(MICROKIT_SDK) ($(CAPBUF_SDK_FROM)), board $(MICROKIT_BOARD), config $(MICROKIT_CONFIG): ready"

pds: compose
	$(PD_BUILD)

memsrv: compose
	$(PD_BUILD) -p memsrv
	@echo "memsrv.elf: $(PD_ELF_DIR)/memsrv.elf"

compose:
	$(CARGO) build --release --manifest-path tools/compose/Cargo.toml

# C protection domains: the board's cross compiler against the SDK's
# libmicrokit, in the dialect libmicrokit is built with.
CROSS_COMPILE ?= aarch64-linux-gnu-
C_FLAGS := -std=gnu11 -Wall -Wextra -Werror -O2 -g -ffreestanding -nostdlib -fno-pie -mstrict-align \
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
	$(CARGO) build --release -q -p capbuf-bench --bin qemu-table
	QEMU=$(QEMU) TIMEOUT=$(QEMU_TIMEOUT) scripts/qemu-bench $< $(OUT)/bench.log
	target/release/qemu-table $(OUT)/bench.log $(MICROKIT_CONFIG) --bench-out $(OUT)/qemu-bench.txt | tee $(OUT)/qemu-bench.md

run: image
	$(QEMU) -machine virt,virtualization=on -cpu cortex-a53 -nographic -nic none -serial mon:stdio \
		-device loader,file=$(IMAGE),addr=0x70000000,cpu-num=0 -m size=2G

qemu-test: image region-image
	QEMU=$(QEMU) TIMEOUT=$(QEMU_TIMEOUT) scripts/qemu-test $(IMAGE) $(OUT)/qemu.log
	QEMU=$(QEMU) TIMEOUT=$(QEMU_TIMEOUT) scripts/qemu-test $(REGION_IMAGE) $(OUT)/qemu-region-paddr.log tests/region-paddr.expect

$(OUT)/integration.img: memsrv compose $(PD_ELF_DIR)/app.elf examples/integration/system.xml
	MICROKIT_SDK=$(MICROKIT_SDK) $(COMPOSE) examples/integration/system.xml --board $(MICROKIT_BOARD) \
		--config $(MICROKIT_CONFIG) -o $@ -r $(OUT)/integration-report.txt --search-path $(PD_ELF_DIR)

# The system docs/integration.md walks through, built and booted.
integration-test: $(OUT)/integration.img
	QEMU=$(QEMU) TIMEOUT=$(QEMU_TIMEOUT) scripts/qemu-test $< $(OUT)/integration.log examples/integration/expect

$(OUT)/dma.img: pds compose examples/dma/system.xml
	MICROKIT_SDK=$(MICROKIT_SDK) $(COMPOSE) examples/dma/system.xml --board $(MICROKIT_BOARD) \
		--config $(MICROKIT_CONFIG) -o $@ -r $(OUT)/dma-report.txt --search-path $(PD_ELF_DIR)

# The virtio-blk driver (pds/demo/blk) against QEMU's disk: reads and writes
# through uncached and cached capbuf buffers; the disk image is checked after.
dma-test: $(OUT)/dma.img
	QEMU=$(QEMU) TIMEOUT=$(QEMU_TIMEOUT) scripts/dma-test $< $(OUT)/dma-disk.img $(OUT)/dma.log

compose-test: pds compose $(C_PDS)
	MICROKIT_SDK=$(MICROKIT_SDK) scripts/compose-test $(COMPOSE) $(PD_ELF_DIR) $(MICROKIT_BOARD) $(MICROKIT_CONFIG)
	scripts/compose-examples $(COMPOSE) $(MICROKIT_SDK)
endif
