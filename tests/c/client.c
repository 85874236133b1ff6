/* Drives every function of capbuf_client.h once (and its error paths)
 * against the fake microkit.h; prints what each returned. */
#include <stdio.h>
#include "capbuf_client.h"

#define U(x) ((unsigned long long)(x))

int main(void)
{
    capbuf_t cb = {0};
    capbuf_view_t view = {0};
    capbuf_info_t info = {0};
    capbuf_pool_info_t pool = {0};
    capbuf_id_t id = 0;
    const char *e;
    e = capbuf_error_name(capbuf_connect(&cb, 3));
    printf("result connect %s %llu %llu %llu %llu %llu %llu\n", e, U(cb.version), U(cb.client_id), U(cb.pools),
           U(cb.quota_bytes), U(cb.quota_buffers), U(cb.quota_attachments));
    e = capbuf_error_name(capbuf_alloc(&cb, 12288, 16, 1, CAPBUF_FLAG_UNCACHED, &id));
    printf("result alloc %s %llu\n", e, U(id));
    e = capbuf_error_name(capbuf_attach(&cb, id, CAPBUF_RIGHTS_READ_WRITE, &view));
    printf("result attach %s %llu %llu %llu %llu %llu %llu\n", e, U(view.id), U(view.vaddr), U(view.size),
           U(view.page_bits), U(view.rights), U(view.flags));
    printf("result grant %s\n", capbuf_error_name(capbuf_grant(&cb, id, 7, CAPBUF_RIGHTS_READ_ONLY)));
    e = capbuf_error_name(capbuf_info(&cb, id, &info));
    printf("result info %s %llu %llu %llu %llu %llu %llu %llu %llu\n", e, U(info.size), U(info.physical_address),
           U(info.page_bits), U(info.rights), U(info.attachments), U(info.flags), U(info.pool), U(info.owner));
    printf("result ungrant %s\n", capbuf_error_name(capbuf_ungrant(&cb, id, 7)));
    printf("result detach %s\n", capbuf_error_name(capbuf_detach(&cb, id)));
    e = capbuf_error_name(capbuf_pool_info(&cb, 1, &pool));
    printf("result pool_info %s %llu %llu %llu %llu %llu\n", e, U(pool.total), U(pool.free), U(pool.largest_free),
           U(pool.lost), U(pool.quarantined));
    printf("result free %s\n", capbuf_error_name(capbuf_free(&cb, id)));
    printf("result quiesce %s\n", capbuf_error_name(capbuf_quiesce(&cb, id)));
    printf("result quiesce_unknown %s\n", capbuf_error_name(capbuf_quiesce(&cb, id)));
    e = capbuf_error_name(capbuf_detach(&cb, id));
    printf("result detach_kernel %s %llu %llu\n", e, U(cb.kernel_invocation), U(cb.kernel_error));
    printf("result detach_kernel_short %s\n", capbuf_error_name(capbuf_detach(&cb, id)));
    printf("result attach_with_cap %s\n", capbuf_error_name(capbuf_attach(&cb, id, CAPBUF_RIGHTS_READ_ONLY, &view)));
    printf("result attach_short %s\n", capbuf_error_name(capbuf_attach(&cb, id, CAPBUF_RIGHTS_READ_ONLY, &view)));
    printf("result attach_unused %s\n", capbuf_error_name(capbuf_attach(&cb, id, CAPBUF_RIGHTS_READ_ONLY, &view)));
    printf("result pool_info_unused %s\n", capbuf_error_name(capbuf_pool_info(&cb, 1, &pool)));
    e = capbuf_error_name(capbuf_alloc(&cb, 8192, 0, 1, CAPBUF_FLAG_WAIT | CAPBUF_FLAG_UNCACHED, &id));
    printf("result alloc_wait %s %llu\n", e, U(id));
    uint64_t buffers = 0, bytes = 0, attachments = 0;
    e = capbuf_error_name(capbuf_reclaim(&cb, 9, &buffers, &bytes, &attachments));
    printf("result reclaim %s %llu %llu %llu\n", e, U(buffers), U(bytes), U(attachments));
    printf("result reclaim_refused %s\n", capbuf_error_name(capbuf_reclaim(&cb, 9, 0, 0, 0)));
    printf("result connect_unused %s\n", capbuf_error_name(capbuf_connect(&cb, 3)));
    printf("result connect_old %s\n", capbuf_error_name(capbuf_connect(&cb, 3)));

    /* Cache maintenance over memory of this process (on an AArch64 host the
     * instructions really run): whole, partial, and refused ranges. */
    static uint64_t memory[3 * 4096 / 8] __attribute__((aligned(4096)));
    capbuf_view_t local = {1, (uintptr_t)memory, sizeof memory, 12, CAPBUF_RIGHTS_READ_WRITE, 0};
    printf("result sync_device %s\n", capbuf_error_name(capbuf_sync_for_device(&local, 0, sizeof memory)));
    printf("result sync_cpu_partial %s\n", capbuf_error_name(capbuf_sync_for_cpu(&local, 4000, 200)));
    printf("result sync_empty_at_end %s\n", capbuf_error_name(capbuf_sync_for_cpu(&local, sizeof memory, 0)));
    printf("result sync_past_end %s\n", capbuf_error_name(capbuf_sync_for_device(&local, sizeof memory - 8, 16)));
    printf("result sync_wrapping %s\n", capbuf_error_name(capbuf_sync_for_cpu(&local, UINT64_MAX - 7, 16)));

    /* Then the cache lines of each case the test sends: vaddr size flags offset len line_size. */
    unsigned long long vaddr, size, flags, offset, len, line_size;
    while (scanf("%llu %llu %llu %llu %llu %llu", &vaddr, &size, &flags, &offset, &len, &line_size) == 6) {
        capbuf_view_t v = {0, (uintptr_t)vaddr, size, 12, CAPBUF_RIGHTS_READ_WRITE, flags};
        uintptr_t first = 0, end = 0;
        e = capbuf_error_name(capbuf_cache_lines(&v, offset, len, line_size, &first, &end));
        printf("lines %s %llu %llu\n", e, U(first), U(end));
    }
    return 0;
}
