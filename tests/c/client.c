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
    printf("result pool_info %s %llu %llu %llu %llu\n", e, U(pool.total), U(pool.free), U(pool.largest_free),
           U(pool.lost));
    printf("result free %s\n", capbuf_error_name(capbuf_free(&cb, id)));
    e = capbuf_error_name(capbuf_detach(&cb, id));
    printf("result detach_kernel %s %llu %llu\n", e, U(cb.kernel_invocation), U(cb.kernel_error));
    printf("result attach_with_cap %s\n", capbuf_error_name(capbuf_attach(&cb, id, CAPBUF_RIGHTS_READ_ONLY, &view)));
    printf("result attach_short %s\n", capbuf_error_name(capbuf_attach(&cb, id, CAPBUF_RIGHTS_READ_ONLY, &view)));
    printf("result connect_old %s\n", capbuf_error_name(capbuf_connect(&cb, 3)));
    return 0;
}
