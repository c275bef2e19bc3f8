/*
 * common.h -- small helpers shared by every module of libdsq: error
 * reporting, little-endian loads and stores, allocation with a fault-injection
 * hook, and a few checked-arithmetic helpers.  Nothing here knows about
 * tensors or file formats.
 */
#ifndef DSQ_COMMON_H
#define DSQ_COMMON_H

#include "dsq.h"
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors ------------------------------------------------------------- */

/* Record an error in err (may be NULL) and return code, so callers can write
 * `return dsq_fail(err, DSQ_E_FORMAT, "%s: ...", path);`. */
int dsq_fail(dsq_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Forward a negative result to the caller's `fail:` label. */
#define DSQ_TRY(expr)                  \
    do {                               \
        rc = (expr);                   \
        if (rc < 0) goto fail;         \
    } while (0)

/* ---- little-endian access (never cast a struct onto bytes) --------------- */
static inline uint16_t dsq_le16(const void *p) {
    const uint8_t *b = (const uint8_t *)p;
    return (uint16_t)(b[0] | (b[1] << 8));
}
static inline uint32_t dsq_le32(const void *p) {
    const uint8_t *b = (const uint8_t *)p;
    return (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) |
           ((uint32_t)b[3] << 24);
}
static inline uint64_t dsq_le64(const void *p) {
    const uint8_t *b = (const uint8_t *)p;
    return (uint64_t)dsq_le32(b) | ((uint64_t)dsq_le32(b + 4) << 32);
}
static inline void dsq_st16(void *p, uint16_t v) {
    uint8_t *b = (uint8_t *)p;
    b[0] = (uint8_t)v; b[1] = (uint8_t)(v >> 8);
}
static inline void dsq_st32(void *p, uint32_t v) {
    uint8_t *b = (uint8_t *)p;
    b[0] = (uint8_t)v; b[1] = (uint8_t)(v >> 8);
    b[2] = (uint8_t)(v >> 16); b[3] = (uint8_t)(v >> 24);
}
static inline void dsq_st64(void *p, uint64_t v) {
    dsq_st32(p, (uint32_t)v);
    dsq_st32((uint8_t *)p + 4, (uint32_t)(v >> 32));
}
static inline float dsq_lef32(const void *p) {
    uint32_t u = dsq_le32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ---- allocation --------------------------------------------------------- */
/* malloc/calloc/realloc wrappers.  Tests can make the n-th call fail
 * (dsq_fault_alloc_after) so error paths get exercised. */
void *dsq_malloc(size_t n);
void *dsq_calloc(size_t n, size_t sz);
void *dsq_realloc(void *p, size_t n);
char *dsq_strdup(const char *s);
/* 64-byte aligned allocation; free with dsq_afree. */
void *dsq_aalloc(size_t n);
void dsq_afree(void *p);
/* Fault injection: after `n` more successful allocations, fail every one.
 * n < 0 disables.  Tests only; the count is shared by all threads, so with
 * several threads allocating, which allocation fails first depends on timing. */
void dsq_fault_alloc_after(long n);

/* ---- checked arithmetic ------------------------------------------------- */
static inline int dsq_mul_ovf(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_mul_overflow(a, b, out);
}
static inline int dsq_add_ovf(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_add_overflow(a, b, out);
}

/* ---- misc ----------------------------------------------------------------*/
/* 64-bit checksums as 16 lower-case hex digits (the JSON form of xxh3). */
void dsq_hex16(char out[17], uint64_t v);
int dsq_unhex16(const char *s, uint64_t *out); /* 1 if s is exactly 16 hex digits */
double dsq_now(void);                       /* monotonic seconds */
const char *dsq_basename(const char *path); /* pointer into path */
/* Read a whole (small) regular file; *out from malloc, NUL-terminated. */
int dsq_read_file(const char *path, size_t cap, char **out, size_t *len, dsq_err *err);

#endif
