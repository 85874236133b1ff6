/* Demo C client: the capbuf C library (include/capbuf_client.h) from a C
 * protection domain, sharing buffers with a Rust one (the producer) in both
 * directions. Started by the driver's notification when it is done:
 *   1. allocate a buffer, fill it, run the cache maintenance calls over it,
 *      grant it read-write to the producer, put its id in the shared mailbox
 *      and notify the producer;
 *   2. when the producer answers: check it wrote its mark into our buffer,
 *      attach the buffer it granted us read-only, check its pattern and INFO,
 *      and ask the producer to withdraw the grant;
 *   3. when it has: read the buffer again (the load faults; the supervisor,
 *      this PD's parent, steps over it), detach it (memsrv kept its window
 *      slot until then), free ours, and notify the producer that we are done. */
#include <stdint.h>
#include <microkit.h>
#include "capbuf_client.h"

#define MEMSRV 0
#define DRIVER 1
#define PRODUCER 2
#define PRODUCER_CLIENT_ID 1
#define SIZE (64 * 1024)
#define WORDS (SIZE / 8)

/* Shared with the producer: [0] our buffer's id, [1] the producer's. */
volatile uint64_t *mailbox;

static capbuf_t cb;
static capbuf_id_t mine;
static capbuf_view_t mine_view;
static int stage;

static void fail(const char *what, uint64_t err)
{
    microkit_dbg_puts("cdemo: FAIL: ");
    microkit_dbg_puts(what);
    microkit_dbg_puts(": ");
    microkit_dbg_puts(capbuf_error_name(err));
    microkit_dbg_puts("\n");
}

static void put_hex(uint64_t value)
{
    char text[19];
    text[0] = '0';
    text[1] = 'x';
    for (int i = 0; i < 16; i++) {
        text[2 + i] = "0123456789abcdef"[(value >> (60 - 4 * i)) & 0xf];
    }
    text[18] = 0;
    microkit_dbg_puts(text);
}

static void share_ours(void)
{
    uint64_t err;
    if ((err = capbuf_alloc(&cb, SIZE, 0, 0, 0, &mine)) != CAPBUF_OK) {
        fail("alloc", err);
        return;
    }
    if ((err = capbuf_attach(&cb, mine, CAPBUF_RIGHTS_READ_WRITE, &mine_view)) != CAPBUF_OK) {
        fail("attach", err);
        return;
    }
    volatile uint64_t *words = (volatile uint64_t *)mine_view.vaddr;
    for (uint64_t i = 0; i < WORDS; i++) {
        words[i] = 0xc0de000000000000ULL | i;
    }
    /* No device here: this shows the cache maintenance calls run at EL0 on
     * seL4 from C, and refuse a range past the buffer's end. */
    if ((err = capbuf_sync_for_device(&mine_view, 0, SIZE)) != CAPBUF_OK ||
        (err = capbuf_sync_for_cpu(&mine_view, 100, 1000)) != CAPBUF_OK) {
        fail("sync", err);
        return;
    }
    if ((err = capbuf_sync_for_device(&mine_view, SIZE - 8, 16)) != CAPBUF_CLIENT_ERR_RANGE) {
        fail("a sync past the end was not refused", err);
        return;
    }
    microkit_dbg_puts("cdemo: sync_for_device and sync_for_cpu ran from C (" CAPBUF_SYNC_INSTRUCTIONS "); past the end: ");
    microkit_dbg_puts(capbuf_error_name(err));
    microkit_dbg_puts("\n");
    if ((err = capbuf_grant(&cb, mine, PRODUCER_CLIENT_ID, CAPBUF_RIGHTS_READ_WRITE)) != CAPBUF_OK) {
        fail("grant", err);
        return;
    }
    mailbox[0] = mine;
    microkit_dbg_puts("cdemo: buffer ");
    put_hex(mine);
    microkit_dbg_puts(" (64 KiB) allocated, attached and filled from C, granted read-write to the producer\n");
    stage = 1;
    microkit_notify(PRODUCER);
}

/* What a probe reads when its load did not happen (the supervisor skipped it). */
#define NOT_READ 0xdead0000dead0000ULL

/* One load from `address`, in a single instruction the supervisor (this PD's
 * parent) steps over if it faults; NOT_READ then. */
static uint64_t probe(uintptr_t address)
{
    uint64_t value = NOT_READ;
#if defined(__aarch64__)
    __asm__ volatile("ldr %0, [%1]" : "+r"(value) : "r"(address) : "memory");
#elif defined(__riscv)
    /* Uncompressed: 4 bytes, as the supervisor steps (PROBE_LENGTH). */
    __asm__ volatile(".option push\n.option norvc\nld %0, 0(%1)\n.option pop" : "+r"(value) : "r"(address) : "memory");
#elif defined(__x86_64__)
    /* mov rax, [rcx] (48 8b 01): 3 bytes, as the supervisor steps (PROBE_LENGTH). */
    __asm__ volatile(".byte 0x48, 0x8b, 0x01" : "+a"(value) : "c"(address) : "memory");
#else
#error "no probe for this architecture"
#endif
    return value;
}

static capbuf_id_t theirs;
static capbuf_view_t theirs_view;
static int data_ok;

static void use_theirs(void)
{
    uint64_t err;
    volatile uint64_t *words = (volatile uint64_t *)mine_view.vaddr;
    data_ok = words[0] == 0x9e7e000000000000ULL && words[WORDS - 1] == (0xc0de000000000000ULL | (WORDS - 1));
    theirs = mailbox[1];
    if ((err = capbuf_attach(&cb, theirs, CAPBUF_RIGHTS_READ_WRITE, &theirs_view)) != CAPBUF_ERR_RIGHTS_ESCALATION) {
        fail("a read-write attach of a read-only grant was not refused", err);
        return;
    }
    if ((err = capbuf_attach(&cb, theirs, CAPBUF_RIGHTS_READ_ONLY, &theirs_view)) != CAPBUF_OK) {
        fail("attach the producer's buffer", err);
        return;
    }
    volatile const uint64_t *theirs_words = (volatile const uint64_t *)theirs_view.vaddr;
    for (uint64_t i = 0; i < theirs_view.size / 8; i++) {
        data_ok &= theirs_words[i] == (0xcafe000000000000ULL | i);
    }
    capbuf_info_t info;
    if ((err = capbuf_info(&cb, theirs, &info)) != CAPBUF_OK) {
        fail("info", err);
        return;
    }
    data_ok &= info.rights == CAPBUF_RIGHTS_READ_ONLY && info.physical_address == CAPBUF_PADDR_HIDDEN &&
               info.owner == PRODUCER_CLIENT_ID && info.size == theirs_view.size;
    microkit_dbg_puts("cdemo: the producer's mark is in our buffer; its buffer read back from C (read-only, "
                      "physical address hidden); asking it to withdraw its grant\n");
    stage = 2;
    microkit_notify(PRODUCER);
}

/* The producer withdrew its grant while we are attached: our mapping is gone. */
static void after_ungrant(void)
{
    uint64_t err;
    uint64_t read = probe(theirs_view.vaddr);
    /* memsrv kept the mapping's window slot (a hole), so theirs_view.vaddr
     * faults rather than reach our next attachment: DETACH gives it back. */
    if ((err = capbuf_detach(&cb, theirs)) != CAPBUF_OK) {
        fail("detach after UNGRANT was not OK", err);
        return;
    }
    /* Then nothing of it is left for us, and the grant is gone: memsrv treats
     * us as an outsider to that buffer. */
    if ((err = capbuf_detach(&cb, theirs)) != CAPBUF_ERR_UNKNOWN_BUFFER) {
        fail("a second detach after UNGRANT was not UNKNOWN_BUFFER", err);
        return;
    }
    if ((err = capbuf_detach(&cb, mine)) != CAPBUF_OK) {
        fail("detach ours", err);
        return;
    }
    if ((err = capbuf_free(&cb, mine)) != CAPBUF_OK) {
        fail("free", err);
        return;
    }
    if ((err = capbuf_free(&cb, mine)) != CAPBUF_ERR_STALE_BUFFER) {
        fail("double free not refused with STALE_BUFFER", err);
        return;
    }
    if (!data_ok || read != NOT_READ) {
        microkit_dbg_puts(read != NOT_READ ? "cdemo: FAIL: read the buffer after UNGRANT\n"
                                           : "cdemo: FAIL: shared data wrong\n");
        return;
    }
    microkit_dbg_puts("cdemo: read after the producer's UNGRANT faulted; detach then said ");
    microkit_dbg_puts(capbuf_error_name(CAPBUF_OK));
    microkit_dbg_puts(" (its window slot given back), a second one ");
    microkit_dbg_puts(capbuf_error_name(CAPBUF_ERR_UNKNOWN_BUFFER));
    microkit_dbg_puts("; ours freed, double free refused with ");
    microkit_dbg_puts(capbuf_error_name(CAPBUF_ERR_STALE_BUFFER));
    microkit_dbg_puts("\n");
    stage = 3;
    microkit_notify(PRODUCER);
}

void init(void)
{
    uint64_t err = capbuf_connect(&cb, MEMSRV);
    if (err != CAPBUF_OK) {
        fail("connect", err);
        return;
    }
    microkit_dbg_puts("cdemo: connected from C, protocol ");
    put_hex(cb.version);
    microkit_dbg_puts("\n");
}

void notified(microkit_channel channel)
{
    if (channel == DRIVER && stage == 0) {
        share_ours();
    } else if (channel == PRODUCER && stage == 1) {
        use_theirs();
    } else if (channel == PRODUCER && stage == 2) {
        after_ungrant();
    } else {
        microkit_dbg_puts("cdemo: FAIL: unexpected notification\n");
    }
}
