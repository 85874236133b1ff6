/* Demo worker (C): a client the supervisor reclaims and restarts, then one
 * that waits for memory.
 *
 * First life: allocate the whole small pool (pool 1, 32 KiB) as two 16 KiB
 * buffers, attach and fill both, then fault on purpose (a read of an
 * unmapped address). The supervisor, this PD's Microkit parent, gets the
 * fault; it RECLAIMs this client (memsrv frees both buffers and both
 * attachments) and restarts this PD at its entry point.
 *
 * Second life (statics survive a restart: only the registers are reset):
 * check memsrv kept nothing of the first life (its whole quota can be
 * allocated again), then ALLOC from the small pool with CAPBUF_FLAG_WAIT
 * while the supervisor holds part of it: memsrv answers WAITING. Ask the
 * supervisor to free its buffer; memsrv notifies this PD on its memsrv
 * channel, and the retry succeeds. Free everything and tell the supervisor. */
#include <stdint.h>
#include <microkit.h>
#include "capbuf_client.h"

#define MEMSRV 0
#define SUPERVISOR 1
#define MAIN_POOL 0
#define SMALL_POOL 1
#define HALF (16 * 1024)
#define WHOLE (32 * 1024)
/* Never mapped in this PD: the first life's deliberate fault (a volatile
 * variable, so the compiler does not reason about the address). */
static volatile uintptr_t nowhere = 0x8;

static int life;
static capbuf_t cb;
static int waiting;

static void fail(const char *what, uint64_t err)
{
    microkit_dbg_puts("worker: FAIL: ");
    microkit_dbg_puts(what);
    microkit_dbg_puts(": ");
    microkit_dbg_puts(capbuf_error_name(err));
    microkit_dbg_puts("\n");
}

static void put_dec(uint64_t value)
{
    char text[21];
    int i = 20;
    text[i] = 0;
    do {
        text[--i] = '0' + value % 10;
        value /= 10;
    } while (value);
    microkit_dbg_puts(&text[i]);
}

static void first_life(void)
{
    capbuf_id_t ids[2];
    capbuf_view_t views[2];
    uint64_t err;
    for (int i = 0; i < 2; i++) {
        if ((err = capbuf_alloc(&cb, HALF, 0, SMALL_POOL, 0, &ids[i])) != CAPBUF_OK ||
            (err = capbuf_attach(&cb, ids[i], CAPBUF_RIGHTS_READ_WRITE, &views[i])) != CAPBUF_OK) {
            fail("first life: alloc and attach", err);
            return;
        }
        ((volatile uint64_t *)views[i].vaddr)[0] = 0x3042;
    }
    microkit_dbg_puts("worker: holding the whole small pool (2 buffers, 32768 bytes) and 2 attachments; "
                      "now faulting on purpose\n");
    (void)*(volatile uint64_t *)nowhere;
    fail("the deliberate fault did not happen", 0);
}

static void second_life(void)
{
    capbuf_id_t ids[2];
    capbuf_id_t extra;
    uint64_t err;
    /* Were the first life's buffers still counted, the quota would refuse. */
    for (int i = 0; i < 2; i++) {
        if ((err = capbuf_alloc(&cb, HALF, 0, MAIN_POOL, 0, &ids[i])) != CAPBUF_OK) {
            fail("second life: the whole quota again", err);
            return;
        }
    }
    uint64_t third = capbuf_alloc(&cb, 4096, 0, MAIN_POOL, 0, &extra);
    for (int i = 0; i < 2; i++) {
        if ((err = capbuf_free(&cb, ids[i])) != CAPBUF_OK) {
            fail("second life: free", err);
            return;
        }
    }
    if (third != CAPBUF_ERR_QUOTA_BUFFERS) {
        fail("a third buffer was not refused with QUOTA_BUFFERS", third);
        return;
    }
    microkit_dbg_puts("worker: restarted clean: its whole quota (2 buffers, 32768 bytes) allocated again, "
                      "a third buffer refused with QUOTA_BUFFERS\n");
    err = capbuf_alloc(&cb, WHOLE, 0, SMALL_POOL, CAPBUF_FLAG_WAIT, &extra);
    if (err != CAPBUF_ERR_WAITING) {
        fail("ALLOC with WAIT while the supervisor holds part of the small pool", err);
        return;
    }
    waiting = 1;
    microkit_dbg_puts("worker: ALLOC of the whole small pool with WAIT: WAITING (registered); "
                      "asking the supervisor to free its buffer\n");
    microkit_notify(SUPERVISOR);
}

void init(void)
{
    life++;
    uint64_t err = capbuf_connect(&cb, MEMSRV);
    if (err != CAPBUF_OK) {
        fail("connect", err);
        return;
    }
    if (life == 1) {
        first_life();
    } else {
        second_life();
    }
}

void notified(microkit_channel channel)
{
    if (channel != MEMSRV || !waiting) {
        fail("unexpected notification", channel);
        return;
    }
    capbuf_id_t id;
    uint64_t err = capbuf_alloc(&cb, WHOLE, 0, SMALL_POOL, CAPBUF_FLAG_WAIT, &id);
    if (err == CAPBUF_ERR_WAITING) {
        /* Lost a race: registered again, notified again later. */
        return;
    }
    waiting = 0;
    if (err != CAPBUF_OK) {
        fail("retry after memsrv's notification", err);
        return;
    }
    microkit_dbg_puts("worker: notified by memsrv; the retry got the whole small pool (");
    put_dec(WHOLE);
    microkit_dbg_puts(" bytes); freeing it\n");
    if ((err = capbuf_free(&cb, id)) != CAPBUF_OK) {
        fail("free", err);
        return;
    }
    microkit_notify(SUPERVISOR);
}
