/* capbuf_client.h: the capbuf client library for C protection domains.
 *
 * Header-only (static inline): include it in any Microkit C PD, built with
 * the board's cross compiler against the SDK's microkit.h, with no library to
 * build per board and configuration. Every call is one PPC to memsrv on the
 * channel given to capbuf_connect; memsrv maps attachments itself, so there
 * is no capability to receive and nothing to map here.
 *
 *     capbuf_t cb;
 *     capbuf_view_t view;
 *     capbuf_id_t id;
 *     if (capbuf_connect(&cb, MEMSRV_CHANNEL) != CAPBUF_OK) ...;   // checks the version
 *     capbuf_alloc(&cb, 64 * 1024, 0, 0, 0, &id);
 *     capbuf_attach(&cb, id, CAPBUF_RIGHTS_READ_WRITE, &view);   // view.vaddr, view.size
 *     ((volatile uint64_t *)view.vaddr)[0] = 42;
 *     capbuf_grant(&cb, id, PEER_CLIENT_ID, CAPBUF_RIGHTS_READ_ONLY);
 *     capbuf_free(&cb, id);                                      // unmapped everywhere
 *
 * A buffer is physically contiguous: byte `offset` is at INFO's
 * physical_address + offset (dma="true" clients), whatever frames it is made
 * of. A driver DMAing to or from a cached buffer brackets each transfer with
 * capbuf_sync_for_device / capbuf_sync_for_cpu (at the end of this file);
 * UNCACHED buffers need neither.
 *
 * Every function returns CAPBUF_OK (0), a CAPBUF_ERR_* code from memsrv
 * (the reply's label, as memsrv sent it) or one of the library's own
 * CAPBUF_CLIENT_ERR_* codes below; capbuf_error_name names any of them.
 * Output parameters are written only on success. A reply memsrv would not
 * send (a success carrying a capability or the wrong number of registers, a
 * packed register with a bit set that no field uses, a KERNEL error without
 * its two) is CAPBUF_CLIENT_ERR_BAD_REPLY, never a memsrv code:
 * CAPBUF_ERR_WRONG_LENGTH and CAPBUF_ERR_UNEXPECTED_CAPS mean memsrv found
 * this library's request malformed. Field values are handed through as
 * memsrv sent them (the Rust library also checks that rights and flags are
 * defined values). Every register index is the generated CAPBUF_<OP>_MR_* /
 * CAPBUF_<OP>_REPLY_MR_* of capbuf.h, and every packed field is read with
 * its generated accessor, CAPBUF_<OP>_REPLY_<FIELD>(r): the structs below
 * hold every field whole, POOL_INFO's in bytes. Access attached
 * memory through volatile pointers: other PDs and devices may write it at
 * any time. */
#pragma once
#include <stdint.h>
#include <microkit.h>
#include "capbuf.h"

/* Client-side errors, in a range memsrv never replies with: memsrv speaks
 * another major protocol version; a range reaches past the end of a buffer;
 * the reply is not one memsrv sends (Rust: ClientError::BadReply). */
#define CAPBUF_CLIENT_ERR_VERSION 0xffffff00ULL
#define CAPBUF_CLIENT_ERR_RANGE 0xffffff01ULL
#define CAPBUF_CLIENT_ERR_BAD_REPLY 0xffffff02ULL

/* The name of any code a function here returns. */
static inline const char *capbuf_error_name(uint64_t code)
{
    if (code == CAPBUF_CLIENT_ERR_VERSION) {
        return "CLIENT_ERR_VERSION";
    }
    if (code == CAPBUF_CLIENT_ERR_RANGE) {
        return "CLIENT_ERR_RANGE";
    }
    if (code == CAPBUF_CLIENT_ERR_BAD_REPLY) {
        return "CLIENT_ERR_BAD_REPLY";
    }
    return capbuf_strerror(code);
}

/* One client's connection to memsrv. */
typedef struct {
    microkit_channel channel;
    uint64_t version;
    uint64_t client_id;
    uint64_t pools;
    uint64_t quota_bytes;
    uint64_t quota_buffers;
    uint64_t quota_attachments;
    /* After a CAPBUF_ERR_KERNEL reply: the invocation memsrv's kernel refused
     * (CAPBUF_INVOCATION_*) and the seL4 error number. */
    uint64_t kernel_invocation;
    uint64_t kernel_error;
} capbuf_t;

/* An attachment: memsrv mapped the buffer at vaddr in this PD. */
typedef struct {
    capbuf_id_t id;
    uintptr_t vaddr;
    uint64_t size;
    uint64_t page_bits;
    uint64_t rights;
    uint64_t flags;
} capbuf_view_t;

typedef struct {
    uint64_t size;
    uint64_t physical_address; /* CAPBUF_PADDR_HIDDEN unless this client has dma="true"; for an io_space client, the
                                  I/O address its device uses, while attached (CAPBUF_PADDR_HIDDEN otherwise) */
    uint64_t page_bits;
    uint64_t rights;
    uint64_t attachments;
    uint64_t flags;
    uint64_t pool;
    uint64_t owner;
} capbuf_info_t;

typedef struct {
    uint64_t total;
    uint64_t free;
    uint64_t largest_free;
    uint64_t lost;        /* bytes memsrv could not get back after a kernel failure */
    uint64_t quarantined; /* bytes of freed buffers a device may still write, until QUIESCE */
} capbuf_pool_info_t;

/* One request: `request_words` registers out, `reply_words` registers back
 * into `reply` (which may be NULL when none are expected). */
static inline uint64_t capbuf_call(capbuf_t *cb, uint64_t op, const uint64_t *request,
                                   unsigned request_words, uint64_t *reply, unsigned reply_words)
{
    for (unsigned i = 0; i < request_words; i++) {
        microkit_mr_set(i, request[i]);
    }
    microkit_msginfo info = microkit_ppcall(cb->channel, microkit_msginfo_new(op, request_words));
    uint64_t label = microkit_msginfo_get_label(info);
    if (label == CAPBUF_ERR_KERNEL) {
        if (seL4_MessageInfo_get_length(info) != CAPBUF_ERR_KERNEL_REPLY_WORDS) {
            return CAPBUF_CLIENT_ERR_BAD_REPLY;
        }
        cb->kernel_invocation = microkit_mr_get(CAPBUF_ERR_KERNEL_REPLY_MR_INVOCATION);
        cb->kernel_error = microkit_mr_get(CAPBUF_ERR_KERNEL_REPLY_MR_CODE);
    }
    if (label != CAPBUF_OK) {
        return label;
    }
    if (seL4_MessageInfo_get_extraCaps(info) != 0 || seL4_MessageInfo_get_length(info) != reply_words) {
        return CAPBUF_CLIENT_ERR_BAD_REPLY;
    }
    for (unsigned i = 0; i < reply_words; i++) {
        reply[i] = microkit_mr_get(i);
    }
    return CAPBUF_OK;
}

/* The ops whose request is one buffer id and whose reply is empty (DETACH,
 * FREE, QUIESCE): their layout, checked at compile time. */
_Static_assert(CAPBUF_DETACH_REQUEST_WORDS == 1 && CAPBUF_DETACH_MR_ID == 0 && CAPBUF_DETACH_REPLY_WORDS == 0,
               "DETACH: an id in, nothing out");
_Static_assert(CAPBUF_FREE_REQUEST_WORDS == 1 && CAPBUF_FREE_MR_ID == 0 && CAPBUF_FREE_REPLY_WORDS == 0,
               "FREE: an id in, nothing out");
_Static_assert(CAPBUF_QUIESCE_REQUEST_WORDS == 1 && CAPBUF_QUIESCE_MR_ID == 0 && CAPBUF_QUIESCE_REPLY_WORDS == 0,
               "QUIESCE: an id in, nothing out");
static inline uint64_t capbuf_call_id(capbuf_t *cb, uint64_t op, capbuf_id_t id)
{
    return capbuf_call(cb, op, &id, 1, 0, 0);
}

/* HELLO: greet memsrv on `channel` and check its major protocol version. */
static inline uint64_t capbuf_connect(capbuf_t *cb, microkit_channel channel)
{
    uint64_t r[CAPBUF_HELLO_REPLY_WORDS];
    cb->channel = channel;
    uint64_t err = capbuf_call(cb, CAPBUF_OP_HELLO, 0, 0, r, CAPBUF_HELLO_REPLY_WORDS);
    if (err != CAPBUF_OK) {
        return err;
    }
    if (r[CAPBUF_HELLO_REPLY_MR_VERSION] >> CAPBUF_VERSION_MAJOR_SHIFT !=
        CAPBUF_PROTOCOL_VERSION >> CAPBUF_VERSION_MAJOR_SHIFT) {
        return CAPBUF_CLIENT_ERR_VERSION;
    }
    if (!CAPBUF_HELLO_REPLY_UNUSED_CLEAR(r)) {
        return CAPBUF_CLIENT_ERR_BAD_REPLY;
    }
    cb->version = r[CAPBUF_HELLO_REPLY_MR_VERSION];
    cb->client_id = r[CAPBUF_HELLO_REPLY_MR_CLIENT_ID];
    cb->pools = CAPBUF_HELLO_REPLY_POOLS(r);
    cb->quota_bytes = r[CAPBUF_HELLO_REPLY_MR_QUOTA_BYTES];
    cb->quota_buffers = CAPBUF_HELLO_REPLY_QUOTA_BUFFERS(r);
    cb->quota_attachments = CAPBUF_HELLO_REPLY_QUOTA_ATTACHMENTS(r);
    return CAPBUF_OK;
}

/* ALLOC: a zeroed buffer of at least `size` bytes (whole pages), aligned to
 * 2^align_bits bytes (0: a page), from pool `pool`, CAPBUF_FLAG_* `flags`.
 * With CAPBUF_FLAG_WAIT, a request the pool's memory or this client's quota
 * cannot serve yet is registered and answered CAPBUF_ERR_WAITING at once:
 * memsrv then notifies this PD on its channel to memsrv (notified(channel))
 * when a free may have made room, first registered first, and the PD calls
 * capbuf_alloc again (it may be answered WAITING again: nothing is held for
 * it). One request per client waits; another replaces it, keeping its place. */
static inline uint64_t capbuf_alloc(capbuf_t *cb, uint64_t size, uint64_t align_bits, uint64_t pool,
                                    uint64_t flags, capbuf_id_t *id)
{
    uint64_t q[CAPBUF_ALLOC_REQUEST_WORDS];
    uint64_t r[CAPBUF_ALLOC_REPLY_WORDS];
    q[CAPBUF_ALLOC_MR_SIZE] = size;
    q[CAPBUF_ALLOC_MR_ALIGN_BITS] = align_bits;
    q[CAPBUF_ALLOC_MR_POOL] = pool;
    q[CAPBUF_ALLOC_MR_FLAGS] = flags;
    uint64_t err = capbuf_call(cb, CAPBUF_OP_ALLOC, q, CAPBUF_ALLOC_REQUEST_WORDS, r, CAPBUF_ALLOC_REPLY_WORDS);
    if (err == CAPBUF_OK) {
        *id = r[CAPBUF_ALLOC_REPLY_MR_ID];
    }
    return err;
}

/* ATTACH: memsrv maps buffer `id` into this PD with `rights`; `view` says where. */
static inline uint64_t capbuf_attach(capbuf_t *cb, capbuf_id_t id, uint64_t rights, capbuf_view_t *view)
{
    uint64_t q[CAPBUF_ATTACH_REQUEST_WORDS];
    uint64_t r[CAPBUF_ATTACH_REPLY_WORDS];
    q[CAPBUF_ATTACH_MR_ID] = id;
    q[CAPBUF_ATTACH_MR_RIGHTS] = rights;
    uint64_t err = capbuf_call(cb, CAPBUF_OP_ATTACH, q, CAPBUF_ATTACH_REQUEST_WORDS, r, CAPBUF_ATTACH_REPLY_WORDS);
    if (err == CAPBUF_OK && !CAPBUF_ATTACH_REPLY_UNUSED_CLEAR(r)) {
        err = CAPBUF_CLIENT_ERR_BAD_REPLY;
    }
    if (err == CAPBUF_OK) {
        view->id = id;
        view->vaddr = (uintptr_t)r[CAPBUF_ATTACH_REPLY_MR_VADDR];
        view->size = r[CAPBUF_ATTACH_REPLY_MR_SIZE];
        view->page_bits = CAPBUF_ATTACH_REPLY_PAGE_BITS(r);
        view->rights = CAPBUF_ATTACH_REPLY_RIGHTS(r);
        view->flags = CAPBUF_ATTACH_REPLY_FLAGS(r);
    }
    return err;
}

/* GRANT: client `grantee` (its id in system.xml) may attach `id` with at most `rights`. */
static inline uint64_t capbuf_grant(capbuf_t *cb, capbuf_id_t id, uint64_t grantee, uint64_t rights)
{
    uint64_t q[CAPBUF_GRANT_REQUEST_WORDS];
    q[CAPBUF_GRANT_MR_ID] = id;
    q[CAPBUF_GRANT_MR_GRANTEE] = grantee;
    q[CAPBUF_GRANT_MR_RIGHTS] = rights;
    return capbuf_call(cb, CAPBUF_OP_GRANT, q, CAPBUF_GRANT_REQUEST_WORDS, 0, CAPBUF_GRANT_REPLY_WORDS);
}

/* UNGRANT: withdraw a grant; the grantee's mapping goes. */
static inline uint64_t capbuf_ungrant(capbuf_t *cb, capbuf_id_t id, uint64_t grantee)
{
    uint64_t q[CAPBUF_UNGRANT_REQUEST_WORDS];
    q[CAPBUF_UNGRANT_MR_ID] = id;
    q[CAPBUF_UNGRANT_MR_GRANTEE] = grantee;
    return capbuf_call(cb, CAPBUF_OP_UNGRANT, q, CAPBUF_UNGRANT_REQUEST_WORDS, 0, CAPBUF_UNGRANT_REPLY_WORDS);
}

/* INFO: size, physical address (dma clients only), rights, reference count, ... */
static inline uint64_t capbuf_info(capbuf_t *cb, capbuf_id_t id, capbuf_info_t *info)
{
    uint64_t q[CAPBUF_INFO_REQUEST_WORDS];
    uint64_t r[CAPBUF_INFO_REPLY_WORDS];
    q[CAPBUF_INFO_MR_ID] = id;
    uint64_t err = capbuf_call(cb, CAPBUF_OP_INFO, q, CAPBUF_INFO_REQUEST_WORDS, r, CAPBUF_INFO_REPLY_WORDS);
    if (err == CAPBUF_OK && !CAPBUF_INFO_REPLY_UNUSED_CLEAR(r)) {
        err = CAPBUF_CLIENT_ERR_BAD_REPLY;
    }
    if (err == CAPBUF_OK) {
        info->size = r[CAPBUF_INFO_REPLY_MR_SIZE];
        info->physical_address = r[CAPBUF_INFO_REPLY_MR_PADDR];
        info->page_bits = CAPBUF_INFO_REPLY_PAGE_BITS(r);
        info->rights = CAPBUF_INFO_REPLY_RIGHTS(r);
        info->attachments = CAPBUF_INFO_REPLY_ATTACHMENTS(r);
        info->flags = CAPBUF_INFO_REPLY_FLAGS(r);
        info->pool = CAPBUF_INFO_REPLY_POOL(r);
        info->owner = r[CAPBUF_INFO_REPLY_MR_OWNER];
    }
    return err;
}

/* DETACH: memsrv unmaps buffer `id` from this PD and gives its window slots
 * back; the view's address is not to be used again. If the owner freed the
 * buffer, or lowered or withdrew this PD's grant, the mapping went then (an
 * access faults) but memsrv kept the window slots, so that the old address
 * never reaches this PD's next attachment: DETACH gives them back and returns
 * CAPBUF_OK. Call it for every buffer you attached. With nothing of `id` left
 * for this PD it returns NOT_ATTACHED, STALE_BUFFER or UNKNOWN_BUFFER, as
 * other ops on the id do. */
static inline uint64_t capbuf_detach(capbuf_t *cb, capbuf_id_t id)
{
    return capbuf_call_id(cb, CAPBUF_OP_DETACH, id);
}

/* FREE (owner only): every attachment in every PD is revoked, then the memory is reused (after QUIESCE if a
 * dma client learnt its physical address). */
static inline uint64_t capbuf_free(capbuf_t *cb, capbuf_id_t id)
{
    return capbuf_call_id(cb, CAPBUF_OP_FREE, id);
}

/* POOL_INFO: total (less metadata reserves), free, largest free block, lost and quarantined bytes of
 * pool `pool`. */
static inline uint64_t capbuf_pool_info(capbuf_t *cb, uint64_t pool, capbuf_pool_info_t *info)
{
    uint64_t q[CAPBUF_POOL_INFO_REQUEST_WORDS];
    uint64_t r[CAPBUF_POOL_INFO_REPLY_WORDS];
    q[CAPBUF_POOL_INFO_MR_POOL] = pool;
    uint64_t err =
        capbuf_call(cb, CAPBUF_OP_POOL_INFO, q, CAPBUF_POOL_INFO_REQUEST_WORDS, r, CAPBUF_POOL_INFO_REPLY_WORDS);
    if (err == CAPBUF_OK && !CAPBUF_POOL_INFO_REPLY_UNUSED_CLEAR(r)) {
        err = CAPBUF_CLIENT_ERR_BAD_REPLY;
    }
    if (err == CAPBUF_OK) {
        /* Page counts on the wire; bytes here, as the accessors give them. */
        info->total = CAPBUF_POOL_INFO_REPLY_TOTAL(r);
        info->free = CAPBUF_POOL_INFO_REPLY_FREE(r);
        info->largest_free = CAPBUF_POOL_INFO_REPLY_LARGEST_FREE(r);
        info->lost = CAPBUF_POOL_INFO_REPLY_LOST(r);
        info->quarantined = CAPBUF_POOL_INFO_REPLY_QUARANTINED(r);
    }
    return err;
}

/* RECLAIM: only a client's supervisor in system.xml (<client supervisor="...">) may call it, with the
 * client's id; memsrv frees its buffers, withdraws its grants, removes its attachments, exports and holes,
 * cancels its wait and zeroes its usage, so the client starts clean when restarted. `buffers`, `bytes`
 * and `attachments` (may be 0) receive what went. CAPBUF_ERR_NOT_SUPERVISOR for anyone else or an unknown
 * id; after CAPBUF_ERR_KERNEL, what was reclaimed stays reclaimed: call again to finish. */
static inline uint64_t capbuf_reclaim(capbuf_t *cb, uint64_t client_id, uint64_t *buffers, uint64_t *bytes,
                                      uint64_t *attachments)
{
    uint64_t q[CAPBUF_RECLAIM_REQUEST_WORDS];
    uint64_t r[CAPBUF_RECLAIM_REPLY_WORDS];
    q[CAPBUF_RECLAIM_MR_CLIENT] = client_id;
    uint64_t err = capbuf_call(cb, CAPBUF_OP_RECLAIM, q, CAPBUF_RECLAIM_REQUEST_WORDS, r, CAPBUF_RECLAIM_REPLY_WORDS);
    if (err == CAPBUF_OK) {
        if (buffers) {
            *buffers = r[CAPBUF_RECLAIM_REPLY_MR_BUFFERS];
        }
        if (bytes) {
            *bytes = r[CAPBUF_RECLAIM_REPLY_MR_BYTES];
        }
        if (attachments) {
            *attachments = r[CAPBUF_RECLAIM_REPLY_MR_ATTACHMENTS];
        }
    }
    return err;
}

/* QUIESCE (dma clients): this PD's device no longer uses buffer `id`, live or freed. A freed buffer
 * whose physical address a dma client learnt from INFO stays out of the pool (quarantined) until every
 * such client has called this; CAPBUF_ERR_UNKNOWN_BUFFER if there is nothing to confirm. */
static inline uint64_t capbuf_quiesce(capbuf_t *cb, capbuf_id_t id)
{
    return capbuf_call_id(cb, CAPBUF_OP_QUIESCE, id);
}

/* Cache maintenance for DMA on cached buffers (Linux's dma_sync_single_for_*).
 *
 * A cached buffer (the default) is not coherent with a device that does not
 * snoop the CPU's caches. Call capbuf_sync_for_device after the CPU wrote data
 * a device will read, before telling the device, and before giving the device
 * a range to write (so no dirty line is later evicted over its data). Call
 * capbuf_sync_for_cpu after the device wrote a range, before the CPU reads it.
 * Both check that `len` bytes at `offset` lie inside `view`
 * (CAPBUF_CLIENT_ERR_RANGE otherwise), run, on AArch64, the instruction on each
 * cache line of the range (dc cvac: clean; dc civac: clean and invalidate;
 * user mode may run them as the SDK's kernels are built with
 * KernelAArch64UserCacheEnable), then dsb sy. dc ivac is not allowed at EL0,
 * so do not write a device-written range, nor other bytes in its first and
 * last lines, while the device owns it: keep such ranges line-aligned. On an
 * UNCACHED view no line is touched, only the barrier runs. QEMU's TCG models
 * no caches, so a missing call shows only on hardware. On RISC-V and x86-64,
 * whose DMA is coherent, and on hosts (where this header is tested) only the
 * barrier runs; CAPBUF_SYNC_INSTRUCTIONS names what runs. */

/* The cache lines [*first, *end) covering `len` bytes at `offset` of `view`,
 * for lines of `line_size` bytes (a power of two); none (first == end) for
 * len 0 or an UNCACHED view. */
static inline uint64_t capbuf_cache_lines(const capbuf_view_t *view, uint64_t offset, uint64_t len,
                                          uint64_t line_size, uintptr_t *first, uintptr_t *end)
{
    if (offset > view->size || len > view->size - offset) {
        return CAPBUF_CLIENT_ERR_RANGE;
    }
    if (len == 0 || (view->flags & CAPBUF_FLAG_UNCACHED)) {
        *first = *end = view->vaddr;
        return CAPBUF_OK;
    }
    uintptr_t mask = (uintptr_t)line_size - 1;
    *first = (view->vaddr + (uintptr_t)offset) & ~mask;
    *end = (view->vaddr + (uintptr_t)offset + (uintptr_t)len + mask) & ~mask;
    return CAPBUF_OK;
}

#if defined(__aarch64__)
/* The instructions, as the demo reports them. */
#define CAPBUF_SYNC_INSTRUCTIONS "dc cvac, dc civac"
/* Smallest data cache line, from CTR_EL0.DminLine (the kernel lets EL0 read it). */
static inline uint64_t capbuf_arch_line_size(void)
{
    uint64_t ctr;
    __asm__ volatile("mrs %0, ctr_el0" : "=r"(ctr));
    return 4ULL << ((ctr >> 16) & 0xf);
}
static inline void capbuf_arch_clean(uintptr_t line)
{
    __asm__ volatile("dc cvac, %0" : : "r"(line) : "memory");
}
static inline void capbuf_arch_clean_invalidate(uintptr_t line)
{
    __asm__ volatile("dc civac, %0" : : "r"(line) : "memory");
}
static inline void capbuf_arch_barrier(void)
{
    __asm__ volatile("dsb sy" : : : "memory");
}
#else
/* DMA is coherent with the CPU's caches on x86-64 (devices snoop them) and on
 * qemu_virt_riscv64 (the RISC-V platforms seL4 supports have coherent DMA; a
 * non-coherent one would need Zicbom's cbo.clean/cbo.flush, which user mode
 * may run only when the kernel sets senvcfg.CBCFE, and seL4 16.0.0 does
 * not). So no line is touched; the barrier orders the CPU's memory accesses
 * before the device register access that follows (RISC-V: fence iorw,iorw;
 * x86-64: mfence; a host build of the library: a full fence). */
#if defined(__riscv)
#define CAPBUF_SYNC_INSTRUCTIONS "coherent: fence iorw,iorw"
#elif defined(__x86_64__)
#define CAPBUF_SYNC_INSTRUCTIONS "coherent: mfence"
#else
#define CAPBUF_SYNC_INSTRUCTIONS "host: fence only"
#endif
static inline uint64_t capbuf_arch_line_size(void)
{
    return 64;
}
static inline void capbuf_arch_clean(uintptr_t line)
{
    (void)line;
}
static inline void capbuf_arch_clean_invalidate(uintptr_t line)
{
    (void)line;
}
static inline void capbuf_arch_barrier(void)
{
#if defined(__riscv)
    __asm__ volatile("fence iorw, iorw" : : : "memory");
#elif defined(__x86_64__)
    __asm__ volatile("mfence" : : : "memory");
#else
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
}
#endif

/* Apply `op` to every cache line of `len` bytes at `offset` of `view`, then
 * order those operations before what follows. */
static inline uint64_t capbuf_sync_lines(const capbuf_view_t *view, uint64_t offset, uint64_t len,
                                         void (*op)(uintptr_t line))
{
    uint64_t line_size = capbuf_arch_line_size();
    uintptr_t line, end;
    uint64_t err = capbuf_cache_lines(view, offset, len, line_size, &line, &end);
    if (err != CAPBUF_OK) {
        return err;
    }
    for (; line < end; line += line_size) {
        op(line);
    }
    capbuf_arch_barrier();
    return CAPBUF_OK;
}

/* Clean `len` bytes at `offset` of `view`: what the CPU wrote reaches memory. */
static inline uint64_t capbuf_sync_for_device(const capbuf_view_t *view, uint64_t offset, uint64_t len)
{
    return capbuf_sync_lines(view, offset, len, capbuf_arch_clean);
}

/* Clean and invalidate `len` bytes at `offset` of `view`: the CPU's next reads come from memory. */
static inline uint64_t capbuf_sync_for_cpu(const capbuf_view_t *view, uint64_t offset, uint64_t len)
{
    return capbuf_sync_lines(view, offset, len, capbuf_arch_clean_invalidate);
}
