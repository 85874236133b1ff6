/* The client of docs/integration.md: allocate a buffer, let memsrv map it,
 * use it, learn its physical address (this client has dma="true"), free it. */
#include <stdint.h>
#include <microkit.h>
#include "capbuf_client.h"

#define MEMSRV 0

static void say(const char *what, uint64_t err)
{
    microkit_dbg_puts("app: ");
    microkit_dbg_puts(what);
    microkit_dbg_puts(": ");
    microkit_dbg_puts(capbuf_error_name(err));
    microkit_dbg_puts("\n");
}

void init(void)
{
    capbuf_t cb;
    capbuf_id_t id;
    capbuf_view_t view;
    capbuf_info_t info;
    uint64_t err;
    if ((err = capbuf_connect(&cb, MEMSRV)) != CAPBUF_OK) {
        say("FAIL: connect", err);
        return;
    }
    if ((err = capbuf_alloc(&cb, 1 << 20, 16, 0, CAPBUF_FLAG_UNCACHED, &id)) != CAPBUF_OK) {
        say("FAIL: alloc", err);
        return;
    }
    if ((err = capbuf_attach(&cb, id, CAPBUF_RIGHTS_READ_WRITE, &view)) != CAPBUF_OK) {
        say("FAIL: attach", err);
        return;
    }
    volatile uint64_t *words = (volatile uint64_t *)view.vaddr;
    int zero = words[0] == 0 && words[view.size / 8 - 1] == 0;
    words[view.size / 8 - 1] = 0x1234;
    int written = words[view.size / 8 - 1] == 0x1234;
    if ((err = capbuf_info(&cb, id, &info)) != CAPBUF_OK) {
        say("FAIL: info", err);
        return;
    }
    int aligned = info.physical_address != CAPBUF_PADDR_HIDDEN && info.physical_address % (1 << 16) == 0;
    /* No device was given the address: say so, or FREE would quarantine the memory until then. */
    if ((err = capbuf_quiesce(&cb, id)) != CAPBUF_OK) {
        say("FAIL: quiesce", err);
        return;
    }
    if ((err = capbuf_free(&cb, id)) != CAPBUF_OK) {
        say("FAIL: free", err);
        return;
    }
    if (zero && written && aligned) {
        microkit_dbg_puts("app: 1 MiB buffer allocated zeroed, mapped uncached by memsrv, written, physical address "
                          "64 KiB aligned, freed\n");
        microkit_dbg_puts("CAPBUF INTEGRATION: PASSED\n");
    } else {
        microkit_dbg_puts("app: FAIL: wrong contents or address\n");
    }
}

void notified(microkit_channel channel)
{
    (void)channel;
}
