/*
 * What gcc's unwinder needs from the C library, for static musl binaries.
 *
 * scripts/release builds the static Linux binaries with musl and gcc's
 * libgcc_eh.a as the unwinder Rust's std links (`-lunwind`): Debian's rustc
 * has no prebuilt musl std, and the std built from source (-Zbuild-std) has no
 * LLVM libunwind beside it. gcc 12's unwinder finds a frame's unwind tables with
 * glibc 2.35's _dl_find_object, which musl lacks; without it the link fails, and
 * a stub that finds nothing makes every backtrace abort the program. This is the
 * glibc function over dl_iterate_phdr, which musl has (static programs too):
 * the loaded object holding `pc`, the span of its PT_LOAD segments, and its
 * PT_GNU_EH_FRAME segment (.eh_frame_hdr). The struct is glibc's <dlfcn.h> for
 * x86_64 and aarch64: neither has dlfo_eh_dbase (DLFO_STRUCT_HAS_EH_DBASE is 1
 * on i386 only) nor dlfo_eh_count (32-bit arm only).
 *
 * The unwinder also calls pthread_once and pthread_mutex_lock/unlock through
 * weak references (gthr-posix.h), which a static link does not pull out of
 * musl's libc.a: they would be null and the first backtrace would jump to 0.
 * `keep` below references them strongly, so they are linked.
 */
#include <link.h>
#include <pthread.h>
#include <stdint.h>

struct dl_find_object {
    unsigned long long dlfo_flags;
    void *dlfo_map_start;
    void *dlfo_map_end;
    void *dlfo_link_map;
    void *dlfo_eh_frame;
    unsigned long long __dlfo_reserved[7];
};

__attribute__((used)) static void *const keep[] = {
    (void *)pthread_once,
    (void *)pthread_mutex_lock,
    (void *)pthread_mutex_unlock,
    (void *)pthread_key_create,
    (void *)pthread_getspecific,
    (void *)pthread_setspecific,
};

struct search {
    uintptr_t pc;
    struct dl_find_object *result;
    int found;
};

static int visit(struct dl_phdr_info *info, size_t size, void *data)
{
    struct search *s = data;
    uintptr_t start = UINTPTR_MAX, end = 0;
    const ElfW(Phdr) *eh = 0;
    int holds_pc = 0;
    (void)size;
    for (size_t i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *p = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + p->p_vaddr, hi = lo + p->p_memsz;
        if (p->p_type == PT_LOAD) {
            if (lo < start) start = lo;
            if (hi > end) end = hi;
            if (s->pc >= lo && s->pc < hi) holds_pc = 1;
        } else if (p->p_type == PT_GNU_EH_FRAME) {
            eh = p;
        }
    }
    if (!holds_pc)
        return 0;
    s->result->dlfo_flags = 0;
    s->result->dlfo_map_start = (void *)start;
    s->result->dlfo_map_end = (void *)end;
    s->result->dlfo_link_map = 0;
    s->result->dlfo_eh_frame = eh ? (void *)(info->dlpi_addr + eh->p_vaddr) : 0;
    s->found = 1;
    return 1;
}

int _dl_find_object(void *pc, struct dl_find_object *result)
{
    struct search s = { (uintptr_t)pc, result, 0 };
    dl_iterate_phdr(visit, &s);
    return s.found ? 0 : -1;
}
