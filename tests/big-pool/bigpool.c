/* The 4 GiB pool's client (tests/big-pool/system.xml): a 1 GiB buffer, and
 * proof that memsrv zeroes device-untyped memory, which the kernel does not:
 * a buffer written, freed and allocated again at the same address reads
 * zero. QEMU's RAM starts zeroed, so only memory used before shows it. */
#include <stdint.h>
#include <microkit.h>
#include "capbuf_client.h"
#include "../print.h"

#define MEMSRV 0
#define BIG 0
#define PAGE 4096ULL
#define MIB (1ULL << 20)

static int fail(const char *what, uint64_t err)
{
    microkit_dbg_puts("bigpool: FAIL: ");
    microkit_dbg_puts(what);
    microkit_dbg_puts(": ");
    microkit_dbg_puts(capbuf_error_name(err));
    microkit_dbg_puts("\n");
    return 0;
}

/* Pages of the view whose first or last word is not zero. */
static uint64_t dirty_pages(const capbuf_view_t *view)
{
    uint64_t dirty = 0;
    for (uint64_t offset = 0; offset < view->size; offset += PAGE) {
        volatile uint64_t *page = (volatile uint64_t *)(view->vaddr + offset);
        if (page[0] != 0 || page[PAGE / 8 - 1] != 0) {
            dirty++;
        }
    }
    return dirty;
}

static void scribble(const capbuf_view_t *view)
{
    for (uint64_t offset = 0; offset < view->size; offset += PAGE) {
        volatile uint64_t *page = (volatile uint64_t *)(view->vaddr + offset);
        page[0] = 0x5ca1ab1e00000000ULL | offset;
        page[PAGE / 8 - 1] = ~offset;
    }
}

/* Allocate `size` bytes of the big pool, attach, count dirty pages, write
 * every page, detach, free. Returns the physical address, or 0. */
static uint64_t round_trip(capbuf_t *cb, uint64_t size, uint64_t flags, uint64_t *dirty)
{
    capbuf_id_t id;
    capbuf_view_t view;
    capbuf_info_t info;
    uint64_t err;
    if ((err = capbuf_alloc(cb, size, 12, BIG, flags, &id)) != CAPBUF_OK) {
        return fail("alloc", err);
    }
    if ((err = capbuf_attach(cb, id, CAPBUF_RIGHTS_READ_WRITE, &view)) != CAPBUF_OK) {
        return fail("attach", err);
    }
    *dirty = dirty_pages(&view);
    scribble(&view);
    if ((err = capbuf_info(cb, id, &info)) != CAPBUF_OK) {
        return fail("info", err);
    }
    if ((err = capbuf_detach(cb, id)) != CAPBUF_OK) {
        return fail("detach", err);
    }
    /* No device was given the address. */
    if ((err = capbuf_quiesce(cb, id)) != CAPBUF_OK || (err = capbuf_free(cb, id)) != CAPBUF_OK) {
        return fail("quiesce and free", err);
    }
    return info.physical_address;
}

static int run(void)
{
    capbuf_t cb;
    capbuf_id_t id;
    capbuf_view_t view;
    capbuf_info_t info;
    capbuf_pool_info_t pool;
    uint64_t err;
    if ((err = capbuf_connect(&cb, MEMSRV)) != CAPBUF_OK) {
        return fail("connect", err);
    }
    /* 1 GiB: 512 frames of 2 MiB, each zeroed by memsrv. */
    if ((err = capbuf_alloc(&cb, 1ULL << 30, 12, BIG, 0, &id)) != CAPBUF_OK) {
        return fail("alloc 1 GiB", err);
    }
    if ((err = capbuf_info(&cb, id, &info)) != CAPBUF_OK) {
        return fail("info", err);
    }
    if (info.size != 1ULL << 30 || info.physical_address < 0x100000000ULL ||
        info.physical_address + info.size > 0x200000000ULL) {
        microkit_dbg_puts("bigpool: FAIL: the 1 GiB buffer is not in the pool\n");
        return 0;
    }
    microkit_dbg_puts("bigpool: 1 GiB buffer allocated in the 4 GiB pool at physical ");
    put_hex(info.physical_address);
    microkit_dbg_puts("\n");
    err = capbuf_attach(&cb, id, CAPBUF_RIGHTS_READ_WRITE, &view);
    microkit_dbg_puts("bigpool: attaching 1 GiB (larger than the 512 MiB window): ");
    microkit_dbg_puts(capbuf_error_name(err));
    microkit_dbg_puts("\n");
    if (err != CAPBUF_ERR_WINDOW_FULL) {
        return 0;
    }
    if ((err = capbuf_quiesce(&cb, id)) != CAPBUF_OK || (err = capbuf_free(&cb, id)) != CAPBUF_OK) {
        return fail("quiesce and free 1 GiB", err);
    }

    /* 256 MiB written, freed, allocated again: memsrv zeroed it again. */
    uint64_t dirty_first, dirty_again;
    uint64_t first = round_trip(&cb, 256 * MIB, 0, &dirty_first);
    uint64_t again = round_trip(&cb, 256 * MIB, 0, &dirty_again);
    if (first == 0 || again == 0) {
        return 0;
    }
    if (first != again || dirty_first != 0 || dirty_again != 0) {
        microkit_dbg_puts("bigpool: FAIL: 256 MiB buffer: ");
        put_dec(dirty_first);
        microkit_dbg_puts(" then ");
        put_dec(dirty_again);
        microkit_dbg_puts(" dirty pages; at ");
        put_hex(first);
        microkit_dbg_puts(" then ");
        put_hex(again);
        microkit_dbg_puts("\n");
        return 0;
    }
    microkit_dbg_puts("bigpool: 256 MiB buffer: every page zero, written, freed; allocated again at the same "
                      "address: every page zero again\n");

    /* 4 KiB and 2 MiB frames, mapped uncached: memsrv's zeros reached memory
     * (it cleaned the cache), not only its cache. Twice, so the second one
     * reuses written memory. */
    uint64_t dirty_odd, dirty_odd_again;
    uint64_t odd = round_trip(&cb, 3 * MIB + 3 * PAGE, CAPBUF_FLAG_UNCACHED, &dirty_odd);
    uint64_t odd_again = round_trip(&cb, 3 * MIB + 3 * PAGE, CAPBUF_FLAG_UNCACHED, &dirty_odd_again);
    if (odd == 0 || odd != odd_again || dirty_odd != 0 || dirty_odd_again != 0) {
        microkit_dbg_puts("bigpool: FAIL: the uncached buffer was not zero\n");
        return 0;
    }
    microkit_dbg_puts("bigpool: 3 MiB + 12 KiB uncached buffer (4 KiB and 2 MiB frames): every page zero\n");

    if ((err = capbuf_pool_info(&cb, BIG, &pool)) != CAPBUF_OK) {
        return fail("pool info", err);
    }
    microkit_dbg_puts("bigpool: pool 0 whole: free ");
    put_dec(pool.free);
    microkit_dbg_puts(" of ");
    put_dec(pool.total);
    microkit_dbg_puts(" bytes\n");
    return pool.free == pool.total && pool.total == 1ULL << 32;
}

void init(void)
{
    if (run()) {
        microkit_dbg_puts("CAPBUF BIG POOL: PASSED\n");
    }
}

void notified(microkit_channel channel)
{
    (void)channel;
}
