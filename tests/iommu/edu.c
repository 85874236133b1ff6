/* A driver for QEMU's `edu` PCI device behind the IOMMU (make iommu-test):
 * the device's DMA engine copies between memory and a 4 KiB buffer of its
 * own, at addresses the driver programs. This driver is an io_space client
 * of memsrv: its buffers are mapped into the device's I/O address space
 * while attached, and INFO gives it their I/O addresses. It checks that the
 * device reaches an attached buffer through them, and nothing after DETACH
 * or outside the attached buffers. Registers: QEMU docs/specs/edu.rst. */
#include <stdint.h>
#include <microkit.h>
#include "capbuf_client.h"
#include "../print.h"

#define MEMSRV 0
#define PCI_CONFIG 0 /* <ioport id="0"> */
#define PAGE 4096ULL
#define EDU_BUFFER 0x40000ULL /* the device's own 4 KiB, in its address space */
/* Bytes per DMA: less than the device's 4 KiB, which QEMU 7.2's edu refuses
 * as out of bounds (its range check excludes the buffer's last byte). */
#define COPY 2048ULL

uintptr_t edu_regs; /* BAR 0, set by Microkit (setvar_vaddr) */

#define FAIL(what, err)  \
    do {                 \
        fail(what, err); \
        return;          \
    } while (0)

static void fail(const char *what, uint64_t err)
{
    microkit_dbg_puts("edu: FAIL: ");
    microkit_dbg_puts(what);
    microkit_dbg_puts(": ");
    microkit_dbg_puts(capbuf_error_name(err));
    microkit_dbg_puts("\n");
}

/* PCI configuration register `reg` of 00:04.0 (mechanism #1). */
static uint32_t config_read(uint32_t reg)
{
    microkit_x86_ioport_write_32(PCI_CONFIG, 0xcf8, 0x80000000u | (4u << 11) | reg);
    return microkit_x86_ioport_read_32(PCI_CONFIG, 0xcfc);
}

static void config_write(uint32_t reg, uint32_t value)
{
    microkit_x86_ioport_write_32(PCI_CONFIG, 0xcf8, 0x80000000u | (4u << 11) | reg);
    microkit_x86_ioport_write_32(PCI_CONFIG, 0xcfc, value);
}

static volatile uint64_t *reg64(uint64_t offset)
{
    return (volatile uint64_t *)(edu_regs + offset);
}

/* One DMA of `count` bytes: to the device's buffer from I/O address `io`
 * (to_ram 0), or from it to `io` (to_ram 1); waits for the engine. */
static void dma(uint64_t io, uint64_t count, int to_ram)
{
    *reg64(0x80) = to_ram ? EDU_BUFFER : io;
    *reg64(0x88) = to_ram ? io : EDU_BUFFER;
    *reg64(0x90) = count;
    *reg64(0x98) = 1 | (to_ram ? 2 : 0);
    while (*reg64(0x98) & 1) {
    }
}

static int page_is(volatile uint8_t *page, uint8_t seed)
{
    for (uint64_t i = 0; i < COPY; i++) {
        if (page[i] != (uint8_t)(seed + i * 7)) {
            return 0;
        }
    }
    return 1;
}

static int page_is_zero(volatile uint8_t *page)
{
    for (uint64_t i = 0; i < PAGE; i++) {
        if (page[i] != 0) {
            return 0;
        }
    }
    return 1;
}

void init(void)
{
    uint32_t id = config_read(0x00);
    if (id != 0x11e81234u) {
        microkit_dbg_puts("edu: FAIL: no edu device at 00:04.0: ");
        put_hex(id);
        microkit_dbg_puts("\n");
        return;
    }
    config_write(0x04, config_read(0x04) | 0x6); /* memory space, bus master */
    uint32_t bar = config_read(0x10) & ~0xfu;
    if ((*(volatile uint32_t *)edu_regs & 0xffff) != 0x00ed) {
        microkit_dbg_puts("edu: FAIL: BAR 0 does not hold the edu registers\n");
        return;
    }
    microkit_dbg_puts("edu: device 1234:11e8 at 00:04.0, BAR 0 at ");
    microkit_dbg_puts(bar == 0xfea00000u ? "0xfea00000" : "an unexpected address");
    microkit_dbg_puts(", bus mastering on\n");

    capbuf_t cb;
    capbuf_id_t a, b;
    capbuf_view_t va, vb;
    capbuf_info_t info;
    uint64_t err;
    if ((err = capbuf_connect(&cb, MEMSRV)) != CAPBUF_OK) {
        FAIL("connect", err);
    }
    /* A: three pages; B: one page, attached after A (the next window slot). */
    if ((err = capbuf_alloc(&cb, 3 * PAGE, 0, 0, 0, &a)) != CAPBUF_OK ||
        (err = capbuf_alloc(&cb, PAGE, 0, 0, 0, &b)) != CAPBUF_OK) {
        FAIL("alloc", err);
    }
    if ((err = capbuf_info(&cb, a, &info)) != CAPBUF_OK || info.physical_address != CAPBUF_PADDR_HIDDEN) {
        FAIL("INFO before ATTACH gives no address", err);
    }
    if ((err = capbuf_attach(&cb, a, CAPBUF_RIGHTS_READ_WRITE, &va)) != CAPBUF_OK ||
        (err = capbuf_attach(&cb, b, CAPBUF_RIGHTS_READ_WRITE, &vb)) != CAPBUF_OK) {
        FAIL("attach", err);
    }
    uint64_t io_a, io_b;
    if ((err = capbuf_info(&cb, a, &info)) != CAPBUF_OK) {
        FAIL("info", err);
    }
    io_a = info.physical_address;
    if ((err = capbuf_info(&cb, b, &info)) != CAPBUF_OK) {
        FAIL("info", err);
    }
    io_b = info.physical_address;
    microkit_dbg_puts("edu: buffer attached; INFO gives I/O address ");
    put_hex(io_a);
    microkit_dbg_puts(" (the second buffer ");
    put_hex(io_b);
    microkit_dbg_puts(")\n");

    volatile uint8_t *pa = (volatile uint8_t *)va.vaddr;
    volatile uint8_t *pb = (volatile uint8_t *)vb.vaddr;
    for (uint64_t i = 0; i < PAGE; i++) {
        pa[i] = (uint8_t)(1 + i * 7);
    }
    /* x86-64: DMA snoops the caches; the fence orders the stores first. */
    __asm__ volatile("mfence" ::: "memory");
    dma(io_a, COPY, 0);        /* page 0 of A into the device */
    dma(io_a + PAGE, COPY, 1); /* and out again into page 1 */
    if (!page_is(pa + PAGE, 1) || !page_is_zero(pa + 2 * PAGE)) {
        microkit_dbg_puts("edu: FAIL: the device's copy did not arrive through the I/O address\n");
        return;
    }
    microkit_dbg_puts("edu: the device copied 2048 bytes through the buffer's I/O addresses\n");

    /* B detached: its I/O mapping went with it. The device's write to the old
     * address must not land; B, attached again, is still zero. */
    if ((err = capbuf_detach(&cb, b)) != CAPBUF_OK) {
        FAIL("detach", err);
    }
    dma(io_b, COPY, 1);
    if ((err = capbuf_attach(&cb, b, CAPBUF_RIGHTS_READ_WRITE, &vb)) != CAPBUF_OK) {
        FAIL("attach again", err);
    }
    pb = (volatile uint8_t *)vb.vaddr;
    if (!page_is_zero(pb)) {
        microkit_dbg_puts("edu: FAIL: the device wrote a detached buffer\n");
        return;
    }
    microkit_dbg_puts("edu: after DETACH the device's write to the old I/O address did not land\n");

    /* Past A's three pages, in its window slot: nothing is mapped there. */
    dma(io_a + 3 * PAGE, COPY, 1);
    if (!page_is(pa, 1) || !page_is(pa + PAGE, 1) || !page_is_zero(pa + 2 * PAGE) || !page_is_zero(pb)) {
        microkit_dbg_puts("edu: FAIL: a DMA outside the buffers changed them\n");
        return;
    }
    microkit_dbg_puts("edu: a DMA outside the attached buffers did not land\n");

    if ((err = capbuf_detach(&cb, a)) != CAPBUF_OK || (err = capbuf_detach(&cb, b)) != CAPBUF_OK ||
        (err = capbuf_free(&cb, a)) != CAPBUF_OK || (err = capbuf_free(&cb, b)) != CAPBUF_OK) {
        FAIL("detach and free", err);
    }
    capbuf_pool_info_t pool;
    if ((err = capbuf_pool_info(&cb, 0, &pool)) != CAPBUF_OK) {
        FAIL("pool info", err);
    }
    if (pool.free != pool.total || pool.quarantined != 0) {
        microkit_dbg_puts("edu: FAIL: the pool is not whole after FREE\n");
        return;
    }
    microkit_dbg_puts("edu: freed without QUIESCE: nothing quarantined, the pool is whole\n");
    microkit_dbg_puts("CAPBUF IOMMU: PASSED\n");
}

void notified(microkit_channel channel)
{
    (void)channel;
}
