# capbuf build and test entry points.
#
#   make test        host tests, then the QEMU system test if a Microkit SDK is found
#   make host-test   host tests only (offline, crates.io dependencies only)
#   make image       build the demo system image (needs the SDK)
#   make run         boot the demo in QEMU (Ctrl-A X quits)
#   make qemu-test   boot the demo, wait for the success line, fail on any fault or panic
#   make compose-test  check capbuf-compose refuses broken system.xml variants
#   make bench       allocator benchmark table and kernel invocations per request
#   make qemu-bench  every request in guest instructions, next to a null PPC (QEMU, -icount)
#   make header      regenerate include/capbuf.h after changing the protocol
#
# Microkit conventions: MICROKIT_SDK, MICROKIT_BOARD, MICROKIT_CONFIG.
# The SDK defaults to ~/microkit-sdk-2.3.0 (where the release tarball unpacks).

MICROKIT_SDK ?= $(HOME)/microkit-sdk-2.3.0
MICROKIT_BOARD ?= qemu_virt_aarch64
MICROKIT_CONFIG ?= debug
BUILD_DIR ?= build
QEMU ?= qemu-system-aarch64
QEMU_TIMEOUT ?= 120

CARGO ?= cargo
# Protection domains need a nightly rustc with rust-src (-Zbuild-std). By
# default that is the toolchain pinned in pds/rust-toolchain.toml. Without it,
# a distribution rustc with its std sources works too: `make RUSTC=/usr/bin/rustc`.
# That is picked automatically when the pinned nightly is missing and Debian's
# rust-web-src is installed.
PINNED_TOOLCHAIN := $(shell sed -n 's/^channel = "\(.*\)"/\1/p' pds/rust-toolchain.toml)
ifeq ($(origin RUSTC),undefined)
  ifeq ($(shell rustup toolchain list 2>/dev/null | grep -c '^$(PINNED_TOOLCHAIN)'),0)
    ifneq ($(wildcard /usr/lib/rustlib/src/rust/library/core),)
      RUSTC := /usr/bin/rustc
    endif
  endif
endif
ifneq ($(RUSTC),)
  # A rustc that is not the pinned nightly: unlock -Z flags, let rustup's
  # cargo run with any installed toolchain, and link with ld.lld (such
  # distributions ship no rust-lld).
  PD_ENV := RUSTC=$(RUSTC) RUSTC_BOOTSTRAP=1 RUSTUP_TOOLCHAIN=$(or $(RUSTUP_TOOLCHAIN),stable)
  LINKER ?= $(firstword $(shell command -v ld.lld ld.lld-16 ld.lld-17 ld.lld-18 2>/dev/null))
endif
ifneq ($(LINKER),)
  PD_ENV += CARGO_TARGET_AARCH64_SEL4_MICROKIT_LINKER=$(LINKER)
endif

SDK_CONFIG_DIR := $(MICROKIT_SDK)/board/$(MICROKIT_BOARD)/$(MICROKIT_CONFIG)
OUT := $(BUILD_DIR)/$(MICROKIT_BOARD)-$(MICROKIT_CONFIG)
PD_TARGET_DIR := $(abspath $(OUT))/pds
PD_ELF_DIR := $(PD_TARGET_DIR)/aarch64-sel4-microkit/release
COMPOSE := tools/compose/target/release/capbuf-compose
IMAGE := $(OUT)/loader.img
PD_FLAGS := -Z build-std=core,alloc,compiler_builtins -Z build-std-features=compiler-builtins-mem \
            -Z unstable-options -Z json-target-spec --target support/aarch64-sel4-microkit.json --release

.PHONY: all test host-test bench header image run qemu-test qemu-bench compose-test pds compose check-sdk clean
all: host-test

host-test:
	$(CARGO) test --workspace --release

bench:
	$(CARGO) run --release -p capbuf-bench

header:
	CAPBUF_UPDATE_HEADER=1 $(CARGO) build

test: host-test
	@if [ -d "$(SDK_CONFIG_DIR)" ]; then \
		$(MAKE) --no-print-directory compose-test qemu-test; \
	else \
		echo; \
		echo "=================================================================="; \
		echo "SKIPPED: no Microkit SDK at $(MICROKIT_SDK) (board $(MICROKIT_BOARD), config $(MICROKIT_CONFIG))."; \
		echo "         The QEMU system test did not run. Set MICROKIT_SDK to run it."; \
		echo "=================================================================="; \
	fi

check-sdk:
ifeq ($(wildcard $(MICROKIT_SDK)/VERSION),)
	$(error MICROKIT_SDK ($(MICROKIT_SDK)) is not a Microkit SDK; download microkit-sdk-2.3.0 and set MICROKIT_SDK)
endif
ifeq ($(wildcard $(SDK_CONFIG_DIR)),)
	$(error the SDK at $(MICROKIT_SDK) has no board '$(MICROKIT_BOARD)' with config '$(MICROKIT_CONFIG)')
endif
	@true

pds: check-sdk
	cd pds && env $(PD_ENV) SEL4_INCLUDE_DIRS=$(abspath $(SDK_CONFIG_DIR))/include \
		$(CARGO) build $(PD_FLAGS) --target-dir $(PD_TARGET_DIR)

compose:
	$(CARGO) build --release --manifest-path tools/compose/Cargo.toml

image: pds compose
	MICROKIT_SDK=$(MICROKIT_SDK) $(COMPOSE) --board $(MICROKIT_BOARD) --config $(MICROKIT_CONFIG) \
		--search-path $(PD_ELF_DIR) --output $(IMAGE) --report $(OUT)/report.txt system.xml

$(OUT)/bench.img: pds compose
	MICROKIT_SDK=$(MICROKIT_SDK) $(COMPOSE) --board $(MICROKIT_BOARD) --config $(MICROKIT_CONFIG) \
		--search-path $(PD_ELF_DIR) --output $@ --report $(OUT)/bench-report.txt bench/system.xml

qemu-bench: $(OUT)/bench.img
	QEMU=$(QEMU) TIMEOUT=$(QEMU_TIMEOUT) scripts/qemu-bench $< $(OUT)/bench.log

run: image
	$(QEMU) -machine virt,virtualization=on -cpu cortex-a53 -nographic -serial mon:stdio \
		-device loader,file=$(IMAGE),addr=0x70000000,cpu-num=0 -m size=2G

qemu-test: image
	QEMU=$(QEMU) TIMEOUT=$(QEMU_TIMEOUT) scripts/qemu-test $(IMAGE) $(OUT)/qemu.log

compose-test: pds compose
	MICROKIT_SDK=$(MICROKIT_SDK) scripts/compose-test $(COMPOSE) $(PD_ELF_DIR) $(MICROKIT_BOARD) $(MICROKIT_CONFIG)

clean:
	rm -rf $(BUILD_DIR) target pds/target tools/compose/target
