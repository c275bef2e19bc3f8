/*
 * gguf.c -- GGUF v3 reader and streaming writer (layout in gguf.h; the
 * format is ggml-org/ggml's docs/gguf.md, its reference code src/gguf.cpp).
 *
 * The reader treats the file as hostile.  It checks what ggml's gguf.cpp
 * checks -- magic, version, counts, string and array lengths against caps
 * and against the bytes left, known value types, no nested arrays, empty or
 * duplicate keys, general.alignment a u32 power of two, tensor names shorter
 * than 64 bytes and unique, n_dims <= 4, ne >= 0, element count and byte size
 * without overflow, known (not removed) ggml type, ne[0] a multiple of the
 * block, each offset equal to the running padded sum -- and more: NUL bytes
 * in keys and names, empty names, bool values other than 0 and 1, every
 * payload inside the file, nothing after the data section.  Counts are not
 * trusted for allocation: arrays grow as records are actually read.  Each
 * failure is one message naming the file and the key or tensor.
 *
 * The writer serializes metadata records as they are set (so the largest
 * thing it holds is the tokenizer's string arrays, in file form), plans the
 * tensor offsets when the first payload byte arrives, and hands bytes to the
 * atomic output file (afile.c): appended through its buffer when they land
 * at the end of what is written so far, with pwrite otherwise.
 */
#include "formats/gguf.h"
#include "formats_int.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Caps on what a file may claim.  ggml's own are 1 GiB strings and 1 Gi
 * array elements; keys and counts are far below anything real here
 * (DeepSeek-V3 files have ~60 keys and ~1,800 tensors). */
#define MAX_STRING (1ull << 30)
#define MAX_ARRAY (1ull << 30)
#define MAX_KEY 65535u
#define MAX_KV (1u << 20)
#define MAX_TENSORS (1u << 20)
#define HEADER_MIN 24 /* magic, version, two counts */

/* ========================================================================
 * Type tables
 * ======================================================================== */

static const char *const g_vtype_names[DSQ_GGUF_N_VTYPES] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};
static const int g_vtype_size[DSQ_GGUF_N_VTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *dsq_gguf_vtype_name(int t) { return t >= 0 && t < DSQ_GGUF_N_VTYPES ? g_vtype_names[t] : "?"; }
int dsq_gguf_vtype_size(int t) { return t >= 0 && t < DSQ_GGUF_N_VTYPES ? g_vtype_size[t] : 0; }

/* ggml's type_traits (src/ggml.c at llama.cpp de3ff815ea7d): name, block
 * elements, block bytes, quantized.  Removed ids (4, 5, 31-33, 36-38) have
 * no entry, as they have block size 0 there. */
static const struct { const char *name; int blck, bytes, quant; } g_types[DSQ_GGML_N_TYPES] = {
    [0] = {"f32", 1, 4, 0},        [1] = {"f16", 1, 2, 0},
    [2] = {"q4_0", 32, 18, 1},     [3] = {"q4_1", 32, 20, 1},
    [6] = {"q5_0", 32, 22, 1},     [7] = {"q5_1", 32, 24, 1},
    [8] = {"q8_0", 32, 34, 1},     [9] = {"q8_1", 32, 36, 1},
    [10] = {"q2_K", 256, 84, 1},   [11] = {"q3_K", 256, 110, 1},
    [12] = {"q4_K", 256, 144, 1},  [13] = {"q5_K", 256, 176, 1},
    [14] = {"q6_K", 256, 210, 1},  [15] = {"q8_K", 256, 292, 1},
    [16] = {"iq2_xxs", 256, 66, 1}, [17] = {"iq2_xs", 256, 74, 1},
    [18] = {"iq3_xxs", 256, 98, 1}, [19] = {"iq1_s", 256, 50, 1},
    [20] = {"iq4_nl", 32, 18, 1},  [21] = {"iq3_s", 256, 110, 1},
    [22] = {"iq2_s", 256, 82, 1},  [23] = {"iq4_xs", 256, 136, 1},
    [24] = {"i8", 1, 1, 0},        [25] = {"i16", 1, 2, 0},
    [26] = {"i32", 1, 4, 0},       [27] = {"i64", 1, 8, 0},
    [28] = {"f64", 1, 8, 0},       [29] = {"iq1_m", 256, 56, 1},
    [30] = {"bf16", 1, 2, 0},      [34] = {"tq1_0", 256, 54, 1},
    [35] = {"tq2_0", 256, 66, 1},  [39] = {"mxfp4", 32, 17, 1},
    [40] = {"nvfp4", 64, 36, 1},   [41] = {"q1_0", 128, 18, 1},
    [42] = {"q2_0", 64, 18, 1},
};

static int known_type(int t) { return t >= 0 && t < DSQ_GGML_N_TYPES && g_types[t].blck; }
const char *dsq_ggml_type_name(int t) { return known_type(t) ? g_types[t].name : NULL; }
int dsq_ggml_type_is_quantized(int t) { return known_type(t) && g_types[t].quant; }

int dsq_ggml_type_block(int t, int *blck, int *bytes) {
    if (!known_type(t)) return 0;
    if (blck) *blck = g_types[t].blck;
    if (bytes) *bytes = g_types[t].bytes;
    return 1;
}

int dsq_ggml_nbytes(int t, const int64_t ne[DSQ_GGUF_MAX_DIMS], uint64_t *out) {
    *out = 0;
    if (!known_type(t)) return DSQ_E_UNSUPPORTED;
    for (int k = 0; k < DSQ_GGUF_MAX_DIMS; k++)
        if (ne[k] < 0) return DSQ_E_FORMAT;
    if (ne[0] % g_types[t].blck) return DSQ_E_FORMAT;
    /* the element count must fit int64_t (ggml keeps it signed), and so must
     * the byte size */
    uint64_t n = 1, b;
    if (dsq_mul_ovf((uint64_t)(ne[0] / g_types[t].blck), (uint64_t)g_types[t].bytes, &b)) return DSQ_E_FORMAT;
    for (int k = 0; k < DSQ_GGUF_MAX_DIMS; k++)
        if (dsq_mul_ovf(n, (uint64_t)ne[k], &n) || n > INT64_MAX) return DSQ_E_FORMAT;
    for (int k = 1; k < DSQ_GGUF_MAX_DIMS; k++)
        if (dsq_mul_ovf(b, (uint64_t)ne[k], &b) || b > INT64_MAX) return DSQ_E_FORMAT;
    *out = b;
    return DSQ_OK;
}

static int is_pow2(uint64_t a) { return a && !(a & (a - 1)); }
/* x rounded up to a multiple of a (a power of two); 0 on overflow */
static int pad_up(uint64_t x, uint64_t a, uint64_t *out) {
    if (x > UINT64_MAX - (a - 1)) return 0;
    *out = (x + a - 1) & ~(a - 1);
    return 1;
}

/* ---- string set: open addressing over caller-owned strings ------------- */
typedef struct strtab {
    const char **s;   /* NULL = empty slot; pointers owned elsewhere */
    int *idx;         /* the caller's index of each entry */
    size_t cap, n;
} strtab;

static uint64_t fnv(const char *s) {
    uint64_t h = 1469598103934665603ull;
    while (*s) h = (h ^ (uint8_t)*s++) * 1099511628211ull;
    return h;
}

static int strtab_find(const strtab *t, const char *s) {
    if (!t->cap) return -1;
    for (size_t k = fnv(s) & (t->cap - 1);; k = (k + 1) & (t->cap - 1)) {
        if (!t->s[k]) return -1;
        if (!strcmp(t->s[k], s)) return t->idx[k];
    }
}

/* Add s (not present) with index i; DSQ_E_NOMEM or DSQ_OK. */
static int strtab_add(strtab *t, const char *s, int i) {
    if (2 * (t->n + 1) > t->cap) {
        size_t nc = t->cap ? 2 * t->cap : 64;
        const char **ns = dsq_calloc(nc, sizeof *ns);
        int *ni = dsq_calloc(nc, sizeof *ni);
        if (!ns || !ni) {
            free(ns);
            free(ni);
            return DSQ_E_NOMEM;
        }
        for (size_t k = 0; k < t->cap; k++) {
            if (!t->s[k]) continue;
            size_t j = fnv(t->s[k]) & (nc - 1);
            while (ns[j]) j = (j + 1) & (nc - 1);
            ns[j] = t->s[k];
            ni[j] = t->idx[k];
        }
        free(t->s);
        free(t->idx);
        t->s = ns;
        t->idx = ni;
        t->cap = nc;
    }
    size_t k = fnv(s) & (t->cap - 1);
    while (t->s[k]) k = (k + 1) & (t->cap - 1);
    t->s[k] = s;
    t->idx[k] = i;
    t->n++;
    return DSQ_OK;
}

static void strtab_free(strtab *t) {
    free(t->s);
    free(t->idx);
    memset(t, 0, sizeof *t);
}

/* Printable form of a hostile key or name for messages: up to 64 bytes,
 * anything but printable ASCII (and the quote) shown as '?', so a message
 * stays one line whatever the file holds. */
#define SHOWN_CAP 72
static const char *shown(const uint8_t *p, uint64_t n, char buf[SHOWN_CAP]) {
    size_t k = 0;
    for (uint64_t i = 0; i < n && k < 64; i++) buf[k++] = p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\'' ? (char)p[i] : '?';
    if (n > 64) { buf[k++] = '.'; buf[k++] = '.'; buf[k++] = '.'; }
    buf[k] = 0;
    return buf;
}
static const char *pr(const char *s, char buf[SHOWN_CAP]) { return shown((const uint8_t *)s, strlen(s), buf); }

/* ========================================================================
 * Reader
 * ======================================================================== */

struct dsq_gguf {
    char *path;
    int fd;
    uint8_t *map;
    uint64_t size;
    uint32_t version, align;
    uint64_t data_start;
    dsq_gguf_kv *kv;
    int n_kv;
    dsq_gguf_tensor *t;
    int n_t;
    strtab keys, names;
};

const char *dsq_gguf_path(const dsq_gguf *g) { return g->path; }
uint32_t dsq_gguf_version(const dsq_gguf *g) { return g->version; }
uint32_t dsq_gguf_alignment(const dsq_gguf *g) { return g->align; }
uint64_t dsq_gguf_data_offset(const dsq_gguf *g) { return g->data_start; }
uint64_t dsq_gguf_file_size(const dsq_gguf *g) { return g->size; }
const uint8_t *dsq_gguf_bytes(const dsq_gguf *g) { return g->map; }
int dsq_gguf_n_kv(const dsq_gguf *g) { return g->n_kv; }
const dsq_gguf_kv *dsq_gguf_kv_at(const dsq_gguf *g, int i) { return i >= 0 && i < g->n_kv ? &g->kv[i] : NULL; }
int dsq_gguf_find_key(const dsq_gguf *g, const char *key) { return strtab_find(&g->keys, key); }
int dsq_gguf_n_tensors(const dsq_gguf *g) { return g->n_t; }
const dsq_gguf_tensor *dsq_gguf_tensor_at(const dsq_gguf *g, int i) { return i >= 0 && i < g->n_t ? &g->t[i] : NULL; }
int dsq_gguf_find_tensor(const dsq_gguf *g, const char *name) { return strtab_find(&g->names, name); }

void dsq_gguf_close(dsq_gguf *g) {
    if (!g) return;
    for (int i = 0; i < g->n_kv; i++) {
        free((char *)g->kv[i].key);
        free((uint64_t *)g->kv[i].str_off);
    }
    free(g->kv);
    for (int i = 0; i < g->n_t; i++) free((char *)g->t[i].name);
    free(g->t);
    strtab_free(&g->keys);
    strtab_free(&g->names);
    if (g->map) munmap(g->map, g->size);
    if (g->fd >= 0) close(g->fd);
    free(g->path);
    free(g);
}

/* Bounds-checked cursor over the mapping. */
typedef struct cur {
    const uint8_t *p;
    uint64_t pos, size;
} cur;

static int need(const cur *c, uint64_t n) { return n <= c->size - c->pos; }
static int rd_u32(cur *c, uint32_t *v) {
    if (!need(c, 4)) return 0;
    *v = dsq_le32(c->p + c->pos);
    c->pos += 4;
    return 1;
}
static int rd_u64(cur *c, uint64_t *v) {
    if (!need(c, 8)) return 0;
    *v = dsq_le64(c->p + c->pos);
    c->pos += 8;
    return 1;
}

/* Grow a reader array by one element (counts are not trusted up front). */
static void *grow(void *arr, int n, int *cap, size_t sz) {
    if (n < *cap) return arr;
    int nc = *cap ? *cap * 2 : 16;
    void *na = dsq_realloc(arr, (size_t)nc * sz);
    if (na) *cap = nc;
    return na;
}

/* A copy of a key or name as a C string; refuses NUL bytes (a C consumer
 * would see a shorter, possibly duplicate, name).  NULL + *nul set on NUL. */
static char *dup_name(const uint8_t *p, uint64_t n, int *nul) {
    *nul = memchr(p, 0, n) != NULL;
    if (*nul) return NULL;
    char *s = dsq_malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = 0;
    }
    return s;
}

/* Step over one value of type `vt` (a scalar or array element `elem`) at
 * the cursor, checking it fits the file; bools must be 0 or 1.  `key` is the
 * key as messages show it. */
static int rd_value(cur *c, int vt, const char *path, const char *key, uint64_t elem, dsq_err *err) {
    if (vt == DSQ_GGUF_STRING) {
        uint64_t len;
        uint64_t at = c->pos;
        if (!rd_u64(c, &len))
            return dsq_fail(err, DSQ_E_FORMAT, "%s: key '%s': string %llu truncated at byte %llu", path, key,
                            (unsigned long long)elem, (unsigned long long)at);
        if (len > MAX_STRING)
            return dsq_fail(err, DSQ_E_FORMAT, "%s: key '%s': string %llu claims %llu bytes (cap %llu)", path, key,
                            (unsigned long long)elem, (unsigned long long)len, (unsigned long long)MAX_STRING);
        if (!need(c, len))
            return dsq_fail(err, DSQ_E_FORMAT, "%s: key '%s': string %llu of %llu bytes runs past the end of the file",
                            path, key, (unsigned long long)elem, (unsigned long long)len);
        c->pos += len;
        return DSQ_OK;
    }
    int sz = g_vtype_size[vt];
    if (!need(c, (uint64_t)sz))
        return dsq_fail(err, DSQ_E_FORMAT, "%s: key '%s': value truncated at byte %llu", path, key,
                        (unsigned long long)c->pos);
    if (vt == DSQ_GGUF_BOOL && c->p[c->pos] > 1)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: key '%s': bool %llu is %u (must be 0 or 1)", path, key,
                        (unsigned long long)elem, c->p[c->pos]);
    c->pos += (uint64_t)sz;
    return DSQ_OK;
}

static int read_kv(dsq_gguf *g, cur *c, int i, dsq_err *err) {
    const char *path = g->path;
    uint64_t klen, at = c->pos;
    char sb[SHOWN_CAP];
    if (!rd_u64(c, &klen))
        return dsq_fail(err, DSQ_E_FORMAT, "%s: key %d truncated at byte %llu", path, i, (unsigned long long)at);
    if (klen == 0) return dsq_fail(err, DSQ_E_FORMAT, "%s: key %d is empty", path, i);
    if (klen > MAX_KEY)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: key %d claims %llu bytes (cap %u)", path, i, (unsigned long long)klen, MAX_KEY);
    if (!need(c, klen))
        return dsq_fail(err, DSQ_E_FORMAT, "%s: key %d of %llu bytes runs past the end of the file", path, i,
                        (unsigned long long)klen);
    int nul;
    char *key = dup_name(c->p + c->pos, klen, &nul);
    if (nul)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: key %d '%s' holds a NUL byte", path, i, shown(c->p + c->pos, klen, sb));
    if (!key) return dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", path);
    char kb[SHOWN_CAP];
    const char *ks = shown(c->p + c->pos, klen, kb); /* the key as messages show it */
    c->pos += klen;
    dsq_gguf_kv *kv = &g->kv[i];
    memset(kv, 0, sizeof *kv);
    kv->key = key;
    g->n_kv = i + 1; /* owns key from here: close() frees it */
    if (strtab_find(&g->keys, key) >= 0)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: duplicate key '%s'", path, ks);
    if (strtab_add(&g->keys, key, i)) return dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", path);
    uint32_t vt;
    if (!rd_u32(c, &vt)) return dsq_fail(err, DSQ_E_FORMAT, "%s: key '%s': type truncated", path, ks);
    if (vt >= DSQ_GGUF_N_VTYPES)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: key '%s': unknown value type %d", path, ks, (int32_t)vt);
    kv->type = kv->elem = (int)vt;
    kv->n = 1;
    if (vt == DSQ_GGUF_ARRAY) {
        uint32_t et;
        uint64_t n;
        if (!rd_u32(c, &et) || !rd_u64(c, &n))
            return dsq_fail(err, DSQ_E_FORMAT, "%s: key '%s': array header truncated", path, ks);
        if (et == DSQ_GGUF_ARRAY)
            return dsq_fail(err, DSQ_E_FORMAT, "%s: key '%s': nested arrays are not supported", path, ks);
        if (et >= DSQ_GGUF_N_VTYPES)
            return dsq_fail(err, DSQ_E_FORMAT, "%s: key '%s': unknown array element type %d", path, ks, (int32_t)et);
        if (n > MAX_ARRAY)
            return dsq_fail(err, DSQ_E_FORMAT, "%s: key '%s': array of %llu elements (cap %llu)", path, ks,
                            (unsigned long long)n, (unsigned long long)MAX_ARRAY);
        /* every element takes at least its size (strings: the u64 length) */
        uint64_t min = n * (uint64_t)(et == DSQ_GGUF_STRING ? 8 : g_vtype_size[et]);
        if (!need(c, min))
            return dsq_fail(err, DSQ_E_FORMAT, "%s: key '%s': array of %llu %s runs past the end of the file", path,
                            ks, (unsigned long long)n, g_vtype_names[et]);
        kv->elem = (int)et;
        kv->n = n;
    }
    kv->data = c->p + c->pos;
    uint64_t start = c->pos;
    if (kv->elem == DSQ_GGUF_STRING && kv->type == DSQ_GGUF_ARRAY) {
        /* bounded by the check above: n * 8 bytes are in the file */
        uint64_t *off = dsq_malloc((size_t)(kv->n ? kv->n : 1) * sizeof *off);
        if (!off) return dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", path);
        kv->str_off = off;
        for (uint64_t e = 0; e < kv->n; e++) {
            off[e] = c->pos - start;
            int rc = rd_value(c, DSQ_GGUF_STRING, path, ks, e, err);
            if (rc) return rc;
        }
    } else if (kv->type == DSQ_GGUF_ARRAY && kv->elem != DSQ_GGUF_BOOL) {
        c->pos += kv->n * (uint64_t)g_vtype_size[kv->elem]; /* checked by need() above */
    } else {
        for (uint64_t e = 0; e < kv->n; e++) {
            int rc = rd_value(c, kv->elem, path, ks, e, err);
            if (rc) return rc;
        }
    }
    kv->nbytes = c->pos - start;
    return DSQ_OK;
}

static int read_tensor_info(dsq_gguf *g, cur *c, int i, dsq_err *err) {
    const char *path = g->path;
    uint64_t nlen, at = c->pos;
    char sb[SHOWN_CAP];
    if (!rd_u64(c, &nlen))
        return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor %d truncated at byte %llu", path, i, (unsigned long long)at);
    if (nlen == 0) return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor %d has an empty name", path, i);
    if (!need(c, nlen))
        return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor %d: name of %llu bytes runs past the end of the file", path, i,
                        (unsigned long long)nlen);
    if (nlen > DSQ_GGUF_MAX_NAME)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor %d '%s': name of %llu bytes (at most %d)", path, i,
                        shown(c->p + c->pos, nlen, sb), (unsigned long long)nlen, DSQ_GGUF_MAX_NAME);
    int nul;
    char *name = dup_name(c->p + c->pos, nlen, &nul);
    if (nul)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor %d '%s': name holds a NUL byte", path, i,
                        shown(c->p + c->pos, nlen, sb));
    if (!name) return dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", path);
    char nb[SHOWN_CAP];
    const char *ns = shown(c->p + c->pos, nlen, nb); /* the name as messages show it */
    c->pos += nlen;
    dsq_gguf_tensor *t = &g->t[i];
    memset(t, 0, sizeof *t);
    t->name = name;
    g->n_t = i + 1;
    if (strtab_find(&g->names, name) >= 0)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: duplicate tensor name '%s'", path, ns);
    if (strtab_add(&g->names, name, i)) return dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", path);
    uint32_t nd;
    if (!rd_u32(c, &nd)) return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': info truncated", path, ns);
    if (nd > DSQ_GGUF_MAX_DIMS)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': %u dimensions (at most %d)", path, ns, nd, DSQ_GGUF_MAX_DIMS);
    t->n_dims = (int)nd;
    for (int k = 0; k < DSQ_GGUF_MAX_DIMS; k++) {
        uint64_t v = 1;
        if (k < (int)nd && !rd_u64(c, &v)) return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': info truncated", path, ns);
        t->ne[k] = (int64_t)v;
        if (t->ne[k] < 0)
            return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': ne[%d] = %lld is negative", path, ns, k,
                            (long long)t->ne[k]);
    }
    uint32_t ty;
    uint64_t off;
    if (!rd_u32(c, &ty) || !rd_u64(c, &off)) return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': info truncated", path, ns);
    t->type = (int32_t)ty;
    t->offset = off;
    if (!known_type(t->type))
        return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: tensor '%s': unknown or removed ggml type %d", path, ns, t->type);
    int rc = dsq_ggml_nbytes(t->type, t->ne, &t->nbytes);
    if (rc && t->ne[0] % g_types[t->type].blck)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': ne[0] = %lld is not a multiple of the %s block (%d)", path,
                        ns, (long long)t->ne[0], g_types[t->type].name, g_types[t->type].blck);
    if (rc)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': shape {%lld, %lld, %lld, %lld} overflows 64 bits", path,
                        ns, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3]);
    return DSQ_OK;
}

/* Offsets: each must be the running padded sum (ggml requires exactly this),
 * reported as misaligned, overlapping or leaving a gap; payloads inside the
 * file; nothing after the padded data section.  The last payload's padding
 * may be missing: ggml and llama.cpp only check the payloads themselves, and
 * some writers stop there. */
static int check_layout(dsq_gguf *g, uint64_t header_end, dsq_err *err) {
    const char *path = g->path;
    if (g->n_t == 0) {
        g->data_start = header_end;
        if (g->size > header_end)
            return dsq_fail(err, DSQ_E_FORMAT, "%s: %llu bytes after the last key (a file without tensors ends there)",
                            path, (unsigned long long)(g->size - header_end));
        return DSQ_OK;
    }
    if (!pad_up(header_end, g->align, &g->data_start) || g->data_start > g->size)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: truncated: the data section would start at byte %llu, the file has %llu",
                        path, (unsigned long long)g->data_start, (unsigned long long)g->size);
    uint64_t expect = 0, room = g->size - g->data_start;
    for (int i = 0; i < g->n_t; i++) {
        dsq_gguf_tensor *t = &g->t[i];
        char nb[SHOWN_CAP], pb[SHOWN_CAP];
        const char *ns = pr(t->name, nb);
        if (t->offset % g->align)
            return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': offset %llu is not a multiple of the alignment %u", path,
                            ns, (unsigned long long)t->offset, g->align);
        if (t->offset < expect)
            return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': data at offset %llu overlaps tensor '%s' (ends at %llu)",
                            path, ns, (unsigned long long)t->offset, pr(g->t[i - 1].name, pb), (unsigned long long)expect);
        if (t->offset > expect)
            return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': offset %llu leaves a gap (data must follow at %llu)", path,
                            ns, (unsigned long long)t->offset, (unsigned long long)expect);
        if (t->nbytes > room || t->offset > room - t->nbytes)
            return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': data [%llu, +%llu) runs past the end of the file", path,
                            ns, (unsigned long long)(g->data_start + t->offset), (unsigned long long)t->nbytes);
        t->data = g->map + g->data_start + t->offset;
        uint64_t padded;
        if (!pad_up(t->nbytes, g->align, &padded) || dsq_add_ovf(expect, padded, &expect))
            return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': data section size overflows", path, ns);
    }
    if (room > expect)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: %llu bytes after the data section", path,
                        (unsigned long long)(room - expect));
    return DSQ_OK;
}

int dsq_gguf_open(dsq_gguf **out, const char *path, dsq_err *err) {
    *out = NULL;
    int rc = DSQ_E_FORMAT;
    dsq_gguf *g = dsq_calloc(1, sizeof *g);
    if (!g) return dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", path);
    g->fd = -1;
    g->path = dsq_strdup(path);
    if (!g->path) { rc = dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", path); goto fail; }
    struct stat st;
    g->fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (g->fd < 0 || fstat(g->fd, &st) != 0) {
        rc = dsq_fail(err, DSQ_E_IO, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) { rc = dsq_fail(err, DSQ_E_IO, "%s: not a regular file", path); goto fail; }
    g->size = (uint64_t)st.st_size;
    if (g->size < HEADER_MIN) {
        dsq_fail(err, DSQ_E_FORMAT, "%s: truncated: %llu bytes, a GGUF header needs %d", path,
                 (unsigned long long)g->size, HEADER_MIN);
        goto fail;
    }
    g->map = mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, g->fd, 0);
    if (g->map == MAP_FAILED) {
        g->map = NULL;
        rc = dsq_fail(err, DSQ_E_IO, "%s: mmap failed: %s", path, strerror(errno));
        goto fail;
    }
    cur c = {g->map, 0, g->size};
    char sb[SHOWN_CAP];
    if (memcmp(g->map, DSQ_GGUF_MAGIC, 4)) {
        dsq_fail(err, DSQ_E_FORMAT, "%s: not a GGUF file (magic '%s')", path, shown(g->map, 4, sb));
        goto fail;
    }
    c.pos = 4;
    uint64_t n_t, n_kv;
    rd_u32(&c, &g->version);
    rd_u64(&c, &n_t);
    rd_u64(&c, &n_kv);
    if ((g->version & 0xffffu) == 0 && g->version) {
        rc = dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: GGUF version 0x%08x: a big-endian (byte-swapped) file", path, g->version);
        goto fail;
    }
    if (g->version < 2 || g->version > DSQ_GGUF_VERSION) {
        rc = dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: GGUF version %u (this reader handles 2 and 3)", path, g->version);
        goto fail;
    }
    /* ggml reads both counts as int64_t and refuses negative values */
    if (n_t > MAX_TENSORS) {
        dsq_fail(err, DSQ_E_FORMAT, "%s: %llu tensors claimed (cap %u)", path, (unsigned long long)n_t, MAX_TENSORS);
        goto fail;
    }
    if (n_kv > MAX_KV) {
        dsq_fail(err, DSQ_E_FORMAT, "%s: %llu keys claimed (cap %u)", path, (unsigned long long)n_kv, MAX_KV);
        goto fail;
    }
    int cap = 0;
    for (int i = 0; i < (int)n_kv; i++) {
        dsq_gguf_kv *nk = grow(g->kv, i, &cap, sizeof *nk);
        if (!nk) { rc = dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", path); goto fail; }
        g->kv = nk;
        if ((rc = read_kv(g, &c, i, err))) goto fail;
    }
    g->align = DSQ_GGUF_DEFAULT_ALIGN;
    int ai = dsq_gguf_find_key(g, "general.alignment");
    if (ai >= 0) {
        const dsq_gguf_kv *a = &g->kv[ai];
        if (a->type != DSQ_GGUF_U32) {
            rc = dsq_fail(err, DSQ_E_FORMAT, "%s: key 'general.alignment' is %s (must be u32)", path,
                          g_vtype_names[a->type]);
            goto fail;
        }
        g->align = dsq_le32(a->data);
        if (!is_pow2(g->align)) {
            rc = dsq_fail(err, DSQ_E_FORMAT, "%s: key 'general.alignment' = %u is not a power of two", path, g->align);
            goto fail;
        }
    }
    cap = 0;
    for (int i = 0; i < (int)n_t; i++) {
        dsq_gguf_tensor *nt = grow(g->t, i, &cap, sizeof *nt);
        if (!nt) { rc = dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", path); goto fail; }
        g->t = nt;
        if ((rc = read_tensor_info(g, &c, i, err))) goto fail;
    }
    if ((rc = check_layout(g, c.pos, err))) goto fail;
    *out = g;
    return DSQ_OK;
fail:
    dsq_gguf_close(g);
    return rc < 0 ? rc : DSQ_E_FORMAT;
}

/* ---- typed access -------------------------------------------------------- */

static int find_kv(const dsq_gguf *g, const char *key, const dsq_gguf_kv **kv, dsq_err *err) {
    int i = dsq_gguf_find_key(g, key);
    if (i < 0) return dsq_fail(err, DSQ_E_NOTFOUND, "%s: no key '%s'", g->path, key);
    *kv = &g->kv[i];
    return DSQ_OK;
}

static const char *kv_type_str(const dsq_gguf_kv *kv, char buf[32]) {
    if (kv->type != DSQ_GGUF_ARRAY) return g_vtype_names[kv->type];
    snprintf(buf, 32, "array of %s", g_vtype_names[kv->elem]);
    return buf;
}

int dsq_gguf_get(const dsq_gguf *g, const char *key, int type, void *out, dsq_err *err) {
    const dsq_gguf_kv *kv = NULL;
    char tb[32];
    int rc = find_kv(g, key, &kv, err);
    if (rc) return rc;
    if (type < 0 || type >= DSQ_GGUF_N_VTYPES || !g_vtype_size[type])
        return dsq_fail(err, DSQ_E_ARG, "%s: key '%s': dsq_gguf_get of type %d", g->path, key, type);
    if (kv->type != type)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: key '%s' is %s, expected %s", g->path, key, kv_type_str(kv, tb),
                        g_vtype_names[type]);
    uint64_t v = 0;
    for (int k = 0; k < g_vtype_size[type]; k++) v |= (uint64_t)kv->data[k] << (8 * k);
    switch (g_vtype_size[type]) { /* little-endian bytes into the host value */
    case 1: { uint8_t x = (uint8_t)v; memcpy(out, &x, 1); break; }
    case 2: { uint16_t x = (uint16_t)v; memcpy(out, &x, 2); break; }
    case 4: { uint32_t x = (uint32_t)v; memcpy(out, &x, 4); break; }
    default: memcpy(out, &v, 8); break;
    }
    return DSQ_OK;
}

static int is_int_type(int t) {
    return t == DSQ_GGUF_U8 || t == DSQ_GGUF_I8 || t == DSQ_GGUF_U16 || t == DSQ_GGUF_I16 || t == DSQ_GGUF_U32 ||
           t == DSQ_GGUF_I32 || t == DSQ_GGUF_U64 || t == DSQ_GGUF_I64 || t == DSQ_GGUF_BOOL;
}

int dsq_gguf_get_int(const dsq_gguf *g, const char *key, int64_t *out, dsq_err *err) {
    const dsq_gguf_kv *kv = NULL;
    char tb[32];
    int rc = find_kv(g, key, &kv, err);
    if (rc) return rc;
    if (kv->type == DSQ_GGUF_ARRAY || !is_int_type(kv->type))
        return dsq_fail(err, DSQ_E_FORMAT, "%s: key '%s' is %s, expected an integer", g->path, key, kv_type_str(kv, tb));
    if (kv->type == DSQ_GGUF_U64 && dsq_le64(kv->data) > INT64_MAX)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: key '%s' = %llu does not fit int64", g->path, key,
                        (unsigned long long)dsq_le64(kv->data));
    *out = dsq_gguf_kv_int(kv, 0);
    return DSQ_OK;
}

int dsq_gguf_get_str(const dsq_gguf *g, const char *key, const char **p, uint64_t *len, dsq_err *err) {
    const dsq_gguf_kv *kv = NULL;
    char tb[32];
    int rc = find_kv(g, key, &kv, err);
    if (rc) return rc;
    if (kv->type != DSQ_GGUF_STRING)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: key '%s' is %s, expected string", g->path, key, kv_type_str(kv, tb));
    dsq_gguf_kv_str(kv, 0, p, len);
    return DSQ_OK;
}

int dsq_gguf_get_cstr(const dsq_gguf *g, const char *key, char *buf, size_t cap, dsq_err *err) {
    const char *p;
    uint64_t n;
    int rc = dsq_gguf_get_str(g, key, &p, &n, err);
    if (rc) return rc;
    if (n >= cap) return dsq_fail(err, DSQ_E_FORMAT, "%s: key '%s': string of %llu bytes is too long", g->path, key, (unsigned long long)n);
    if (memchr(p, 0, n)) return dsq_fail(err, DSQ_E_FORMAT, "%s: key '%s': string holds a NUL byte", g->path, key);
    memcpy(buf, p, n);
    buf[n] = 0;
    return DSQ_OK;
}

int dsq_gguf_get_arr(const dsq_gguf *g, const char *key, int elem, const dsq_gguf_kv **out, dsq_err *err) {
    const dsq_gguf_kv *kv = NULL;
    char tb[32];
    int rc = find_kv(g, key, &kv, err);
    if (rc) return rc;
    if (kv->type != DSQ_GGUF_ARRAY || (elem >= 0 && kv->elem != elem))
        return dsq_fail(err, DSQ_E_FORMAT, "%s: key '%s' is %s, expected array of %s", g->path, key,
                        kv_type_str(kv, tb), elem >= 0 ? dsq_gguf_vtype_name(elem) : "anything");
    *out = kv;
    return DSQ_OK;
}

int64_t dsq_gguf_kv_int(const dsq_gguf_kv *kv, uint64_t i) {
    const uint8_t *p = kv->data + i * (uint64_t)g_vtype_size[kv->elem];
    switch (kv->elem) {
    case DSQ_GGUF_U8: case DSQ_GGUF_BOOL: return p[0];
    case DSQ_GGUF_I8: return (int8_t)p[0];
    case DSQ_GGUF_U16: return dsq_le16(p);
    case DSQ_GGUF_I16: return (int16_t)dsq_le16(p);
    case DSQ_GGUF_U32: return dsq_le32(p);
    case DSQ_GGUF_I32: return (int32_t)dsq_le32(p);
    case DSQ_GGUF_U64: return dsq_le64(p) > INT64_MAX ? INT64_MAX : (int64_t)dsq_le64(p);
    case DSQ_GGUF_I64: return (int64_t)dsq_le64(p);
    case DSQ_GGUF_F32: return (int64_t)0;
    default: return 0;
    }
}

double dsq_gguf_kv_f64(const dsq_gguf_kv *kv, uint64_t i) {
    const uint8_t *p = kv->data + i * (uint64_t)g_vtype_size[kv->elem];
    if (kv->elem == DSQ_GGUF_F32) return dsq_lef32(p);
    if (kv->elem == DSQ_GGUF_F64) {
        uint64_t u = dsq_le64(p);
        double d;
        memcpy(&d, &u, 8);
        return d;
    }
    if (kv->elem == DSQ_GGUF_U64) return (double)dsq_le64(p);
    if (kv->elem == DSQ_GGUF_STRING) return NAN;
    return (double)dsq_gguf_kv_int(kv, i);
}

void dsq_gguf_kv_str(const dsq_gguf_kv *kv, uint64_t i, const char **p, uint64_t *len) {
    const uint8_t *s = kv->data + (kv->str_off ? kv->str_off[i] : 0);
    *len = dsq_le64(s);
    *p = (const char *)s + 8;
}

/* ========================================================================
 * Writer
 * ======================================================================== */

typedef struct span { uint64_t b, e; } span;

typedef struct wtensor {
    char *name;               /* owned */
    int type, n_dims;
    int64_t ne[DSQ_GGUF_MAX_DIMS];
    uint64_t nbytes, off;     /* off: relative to the data section */
    span *done;               /* written byte ranges, sorted, merged; from malloc */
    int n_done, cap_done;
} wtensor;

struct dsq_ggufw {
    dsq_afile *f;
    char *path;
    uint8_t *kv;              /* serialized KV records; from malloc, freed at layout */
    size_t kv_len, kv_cap;
    char **keys;              /* owned copies, for duplicate checks */
    int n_kv, cap_keys;
    strtab key_set, name_set;
    wtensor *t;
    int n_t, cap_t;
    uint32_t align;
    int have_qv, laid_out;
    int broken;               /* a record was cut short by a failed allocation */
    uint64_t data_start, data_size;
};

int dsq_ggufw_open(dsq_ggufw **out, const char *path, int force, dsq_err *err) {
    *out = NULL;
    dsq_ggufw *w = dsq_calloc(1, sizeof *w);
    if (!w) return dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", path);
    w->align = DSQ_GGUF_DEFAULT_ALIGN;
    w->path = dsq_strdup(path);
    int rc = w->path ? dsq_afile_open(&w->f, path, force ? DSQ_AFILE_FORCE : 0, err)
                     : dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", path);
    if (rc) {
        free(w->path);
        free(w);
        return rc;
    }
    *out = w;
    return DSQ_OK;
}

static void w_free(dsq_ggufw *w) {
    free(w->kv);
    for (int i = 0; i < w->n_kv; i++) free(w->keys[i]);
    free(w->keys);
    strtab_free(&w->key_set);
    strtab_free(&w->name_set);
    for (int i = 0; i < w->n_t; i++) {
        free(w->t[i].name);
        free(w->t[i].done);
    }
    free(w->t);
    free(w->path);
    free(w);
}

void dsq_ggufw_abort(dsq_ggufw *w) {
    if (!w) return;
    dsq_afile_abort(w->f);
    w_free(w);
}

/* ---- metadata ------------------------------------------------------------ */

static int kv_put(dsq_ggufw *w, const void *p, size_t n) {
    if (w->kv_len + n > w->kv_cap || !w->kv) {
        size_t nc = w->kv_cap ? w->kv_cap : 4096;
        while (nc < w->kv_len + n) nc *= 2;
        uint8_t *nb = dsq_realloc(w->kv, nc);
        if (!nb) return DSQ_E_NOMEM;
        w->kv = nb;
        w->kv_cap = nc;
    }
    if (n) memcpy(w->kv + w->kv_len, p, n);
    w->kv_len += n;
    return DSQ_OK;
}
static int kv_u32(dsq_ggufw *w, uint32_t v) { uint8_t b[4]; dsq_st32(b, v); return kv_put(w, b, 4); }
static int kv_u64(dsq_ggufw *w, uint64_t v) { uint8_t b[8]; dsq_st64(b, v); return kv_put(w, b, 8); }
static int kv_strn(dsq_ggufw *w, const char *s, uint64_t n) {
    int rc = kv_u64(w, n);
    return rc ? rc : kv_put(w, s, (size_t)n);
}
/* One scalar of numeric type t from host memory, little-endian. */
static int kv_scalar(dsq_ggufw *w, int t, const void *v) {
    uint8_t b[8];
    uint64_t u = 0;
    switch (g_vtype_size[t]) {
    case 1: { uint8_t x; memcpy(&x, v, 1); u = x; break; }
    case 2: { uint16_t x; memcpy(&x, v, 2); u = x; break; }
    case 4: { uint32_t x; memcpy(&x, v, 4); u = x; break; }
    default: memcpy(&u, v, 8); break;
    }
    for (int k = 0; k < g_vtype_size[t]; k++) b[k] = (uint8_t)(u >> (8 * k));
    return kv_put(w, b, (size_t)g_vtype_size[t]);
}

/* A record half written: the writer cannot produce a valid file any more. */
static int kv_nomem(dsq_ggufw *w, dsq_err *err) {
    w->broken = 1;
    return dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", w->path);
}

/* Common start of a record: checks the key, remembers it, writes key and type. */
static int kv_begin(dsq_ggufw *w, const char *key, int type, dsq_err *err) {
    if (w->laid_out) return dsq_fail(err, DSQ_E_ARG, "%s: key '%s' set after the header was written", w->path, key);
    if (w->broken) return dsq_fail(err, DSQ_E_NOMEM, "%s: an earlier allocation failed", w->path);
    size_t kl = strlen(key);
    if (kl == 0) return dsq_fail(err, DSQ_E_ARG, "%s: empty key", w->path);
    if (kl > MAX_KEY) return dsq_fail(err, DSQ_E_ARG, "%s: key of %zu bytes (at most %u)", w->path, kl, MAX_KEY);
    if (strtab_find(&w->key_set, key) >= 0) return dsq_fail(err, DSQ_E_ARG, "%s: duplicate key '%s'", w->path, key);
    if (w->n_kv >= (int)MAX_KV) return dsq_fail(err, DSQ_E_ARG, "%s: more than %u keys", w->path, MAX_KV);
    char **nk = grow(w->keys, w->n_kv, &w->cap_keys, sizeof *nk);
    if (!nk) return dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", w->path);
    w->keys = nk;
    char *k = dsq_strdup(key);
    if (!k || strtab_add(&w->key_set, k, w->n_kv)) {
        free(k);
        return dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", w->path);
    }
    w->keys[w->n_kv++] = k;
    if (kv_strn(w, key, kl) || kv_u32(w, (uint32_t)type)) return kv_nomem(w, err);
    return DSQ_OK;
}

/* Keys whose type ggml or llama.cpp check strictly; refused in any other type. */
static int key_rules(dsq_ggufw *w, const char *key, int type, const void *val, dsq_err *err) {
    int is_align = !strcmp(key, "general.alignment"), is_qv = !strcmp(key, "general.quantization_version");
    if (!is_align && !is_qv) return DSQ_OK;
    if (type != DSQ_GGUF_U32)
        return dsq_fail(err, DSQ_E_ARG, "%s: key '%s' must be u32, not %s", w->path, key, dsq_gguf_vtype_name(type));
    uint32_t v;
    memcpy(&v, val, 4);
    if (is_align && !is_pow2(v))
        return dsq_fail(err, DSQ_E_ARG, "%s: general.alignment = %u is not a power of two", w->path, v);
    return DSQ_OK;
}

int dsq_ggufw_set(dsq_ggufw *w, const char *key, int type, const void *val, dsq_err *err) {
    if (type < 0 || type >= DSQ_GGUF_N_VTYPES || !g_vtype_size[type])
        return dsq_fail(err, DSQ_E_ARG, "%s: key '%s': type %d is not a scalar type", w->path, key, type);
    if (type == DSQ_GGUF_BOOL && *(const uint8_t *)val > 1)
        return dsq_fail(err, DSQ_E_ARG, "%s: key '%s': bool value %u", w->path, key, *(const uint8_t *)val);
    int rc = key_rules(w, key, type, val, err);
    if (rc || (rc = kv_begin(w, key, type, err))) return rc;
    if (kv_scalar(w, type, val)) return kv_nomem(w, err);
    if (!strcmp(key, "general.alignment")) memcpy(&w->align, val, 4);
    if (!strcmp(key, "general.quantization_version")) w->have_qv = 1;
    return DSQ_OK;
}

int dsq_ggufw_set_u8(dsq_ggufw *w, const char *k, uint8_t v, dsq_err *e) { return dsq_ggufw_set(w, k, DSQ_GGUF_U8, &v, e); }
int dsq_ggufw_set_i8(dsq_ggufw *w, const char *k, int8_t v, dsq_err *e) { return dsq_ggufw_set(w, k, DSQ_GGUF_I8, &v, e); }
int dsq_ggufw_set_u16(dsq_ggufw *w, const char *k, uint16_t v, dsq_err *e) { return dsq_ggufw_set(w, k, DSQ_GGUF_U16, &v, e); }
int dsq_ggufw_set_i16(dsq_ggufw *w, const char *k, int16_t v, dsq_err *e) { return dsq_ggufw_set(w, k, DSQ_GGUF_I16, &v, e); }
int dsq_ggufw_set_u32(dsq_ggufw *w, const char *k, uint32_t v, dsq_err *e) { return dsq_ggufw_set(w, k, DSQ_GGUF_U32, &v, e); }
int dsq_ggufw_set_i32(dsq_ggufw *w, const char *k, int32_t v, dsq_err *e) { return dsq_ggufw_set(w, k, DSQ_GGUF_I32, &v, e); }
int dsq_ggufw_set_u64(dsq_ggufw *w, const char *k, uint64_t v, dsq_err *e) { return dsq_ggufw_set(w, k, DSQ_GGUF_U64, &v, e); }
int dsq_ggufw_set_i64(dsq_ggufw *w, const char *k, int64_t v, dsq_err *e) { return dsq_ggufw_set(w, k, DSQ_GGUF_I64, &v, e); }
int dsq_ggufw_set_f32(dsq_ggufw *w, const char *k, float v, dsq_err *e) { return dsq_ggufw_set(w, k, DSQ_GGUF_F32, &v, e); }
int dsq_ggufw_set_f64(dsq_ggufw *w, const char *k, double v, dsq_err *e) { return dsq_ggufw_set(w, k, DSQ_GGUF_F64, &v, e); }
int dsq_ggufw_set_bool(dsq_ggufw *w, const char *k, int v, dsq_err *e) {
    uint8_t b = v != 0;
    return dsq_ggufw_set(w, k, DSQ_GGUF_BOOL, &b, e);
}

int dsq_ggufw_set_strn(dsq_ggufw *w, const char *key, const char *v, uint64_t len, dsq_err *err) {
    if (len > MAX_STRING)
        return dsq_fail(err, DSQ_E_ARG, "%s: key '%s': string of %llu bytes", w->path, key, (unsigned long long)len);
    int rc = key_rules(w, key, DSQ_GGUF_STRING, NULL, err);
    if (rc || (rc = kv_begin(w, key, DSQ_GGUF_STRING, err))) return rc;
    if (kv_strn(w, v, len)) return kv_nomem(w, err);
    return DSQ_OK;
}
int dsq_ggufw_set_str(dsq_ggufw *w, const char *key, const char *v, dsq_err *err) {
    return dsq_ggufw_set_strn(w, key, v, strlen(v), err);
}

int dsq_ggufw_set_arr(dsq_ggufw *w, const char *key, int elem, const void *data, uint64_t n, dsq_err *err) {
    if (elem < 0 || elem >= DSQ_GGUF_N_VTYPES || !g_vtype_size[elem])
        return dsq_fail(err, DSQ_E_ARG, "%s: key '%s': array element type %d is not a scalar type", w->path, key, elem);
    if (n > MAX_ARRAY)
        return dsq_fail(err, DSQ_E_ARG, "%s: key '%s': array of %llu elements", w->path, key, (unsigned long long)n);
    const uint8_t *b = data;
    for (uint64_t i = 0; elem == DSQ_GGUF_BOOL && i < n; i++)
        if (b[i] > 1) return dsq_fail(err, DSQ_E_ARG, "%s: key '%s': bool element %llu is %u", w->path, key, (unsigned long long)i, b[i]);
    int rc = key_rules(w, key, DSQ_GGUF_ARRAY, NULL, err);
    if (rc || (rc = kv_begin(w, key, DSQ_GGUF_ARRAY, err))) return rc;
    int sz = g_vtype_size[elem];
    rc = kv_u32(w, (uint32_t)elem);
    if (!rc) rc = kv_u64(w, n);
    for (uint64_t i = 0; !rc && i < n; i++) rc = kv_scalar(w, elem, b + i * (uint64_t)sz);
    return rc ? kv_nomem(w, err) : DSQ_OK;
}

int dsq_ggufw_set_arr_str(dsq_ggufw *w, const char *key, const char *const *s, const uint64_t *len, uint64_t n,
                          dsq_err *err) {
    if (n > MAX_ARRAY)
        return dsq_fail(err, DSQ_E_ARG, "%s: key '%s': array of %llu strings", w->path, key, (unsigned long long)n);
    for (uint64_t i = 0; len && i < n; i++)
        if (len[i] > MAX_STRING)
            return dsq_fail(err, DSQ_E_ARG, "%s: key '%s': string %llu of %llu bytes", w->path, key,
                            (unsigned long long)i, (unsigned long long)len[i]);
    int rc = key_rules(w, key, DSQ_GGUF_ARRAY, NULL, err);
    if (rc || (rc = kv_begin(w, key, DSQ_GGUF_ARRAY, err))) return rc;
    rc = kv_u32(w, DSQ_GGUF_STRING);
    if (!rc) rc = kv_u64(w, n);
    for (uint64_t i = 0; !rc && i < n; i++) rc = kv_strn(w, s[i], len ? len[i] : strlen(s[i]));
    return rc ? kv_nomem(w, err) : DSQ_OK;
}

/* ---- tensors ------------------------------------------------------------- */

int dsq_ggufw_add_tensor(dsq_ggufw *w, const char *name, int type, int n_dims, const int64_t *ne, dsq_err *err) {
    if (w->laid_out) return dsq_fail(err, DSQ_E_ARG, "%s: tensor '%s' added after the header was written", w->path, name);
    size_t nl = strlen(name);
    if (nl == 0) return dsq_fail(err, DSQ_E_ARG, "%s: tensor with an empty name", w->path);
    if (nl > DSQ_GGUF_MAX_NAME)
        return dsq_fail(err, DSQ_E_ARG, "%s: tensor '%s': name of %zu bytes (at most %d)", w->path, name, nl, DSQ_GGUF_MAX_NAME);
    if (strtab_find(&w->name_set, name) >= 0) return dsq_fail(err, DSQ_E_ARG, "%s: duplicate tensor '%s'", w->path, name);
    if (n_dims < 1 || n_dims > DSQ_GGUF_MAX_DIMS)
        return dsq_fail(err, DSQ_E_ARG, "%s: tensor '%s': %d dimensions (1 to 4)", w->path, name, n_dims);
    if (!known_type(type)) return dsq_fail(err, DSQ_E_ARG, "%s: tensor '%s': unknown ggml type %d", w->path, name, type);
    if (w->n_t >= (int)MAX_TENSORS) return dsq_fail(err, DSQ_E_ARG, "%s: more than %u tensors", w->path, MAX_TENSORS);
    int64_t full[DSQ_GGUF_MAX_DIMS] = {1, 1, 1, 1};
    for (int k = 0; k < n_dims; k++) full[k] = ne[k];
    uint64_t nb;
    int rc = dsq_ggml_nbytes(type, full, &nb);
    if (rc)
        return dsq_fail(err, DSQ_E_ARG, "%s: tensor '%s': shape {%lld, %lld, %lld, %lld} is invalid for %s (ne[0] a "
                        "multiple of %d, no negative or overflowing sizes)", w->path, name, (long long)full[0],
                        (long long)full[1], (long long)full[2], (long long)full[3], g_types[type].name, g_types[type].blck);
    wtensor *nt = grow(w->t, w->n_t, &w->cap_t, sizeof *nt);
    if (!nt) return dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", w->path);
    w->t = nt;
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    t->name = dsq_strdup(name);
    if (!t->name || strtab_add(&w->name_set, t->name, w->n_t)) {
        free(t->name);
        return dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", w->path);
    }
    t->type = type;
    memcpy(t->ne, full, sizeof full);
    /* as ggml_n_dims: trailing dimensions of 1 are not stored (at least one is) */
    t->n_dims = n_dims;
    while (t->n_dims > 1 && t->ne[t->n_dims - 1] == 1) t->n_dims--;
    t->nbytes = nb;
    return w->n_t++;
}

uint64_t dsq_ggufw_nbytes(const dsq_ggufw *w, int i) { return i >= 0 && i < w->n_t ? w->t[i].nbytes : 0; }

int dsq_ggufw_layout(dsq_ggufw *w, dsq_err *err) {
    if (w->laid_out) return dsq_fail(err, DSQ_E_ARG, "%s: layout fixed twice", w->path);
    if (w->broken) return dsq_fail(err, DSQ_E_NOMEM, "%s: an earlier allocation failed", w->path);
    for (int i = 0; i < w->n_t && !w->have_qv; i++)
        if (g_types[w->t[i].type].quant)
            return dsq_fail(err, DSQ_E_ARG, "%s: tensor '%s' is %s but general.quantization_version is not set", w->path,
                            w->t[i].name, g_types[w->t[i].type].name);
    uint64_t pos = 0;
    for (int i = 0; i < w->n_t; i++) {
        uint64_t padded;
        w->t[i].off = pos;
        if (!pad_up(w->t[i].nbytes, w->align, &padded) || dsq_add_ovf(pos, padded, &pos))
            return dsq_fail(err, DSQ_E_ARG, "%s: data section too large", w->path);
    }
    w->data_size = pos;
    w->laid_out = 1;
    uint8_t h[24];
    memcpy(h, DSQ_GGUF_MAGIC, 4);
    dsq_st32(h + 4, DSQ_GGUF_VERSION);
    dsq_st64(h + 8, (uint64_t)w->n_t);
    dsq_st64(h + 16, (uint64_t)w->n_kv);
    dsq_afile_write(w->f, h, sizeof h);
    if (w->kv_len) dsq_afile_write(w->f, w->kv, w->kv_len);
    free(w->kv);
    w->kv = NULL;
    w->kv_len = w->kv_cap = 0;
    for (int i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        uint8_t b[8 + DSQ_GGUF_MAX_NAME + 4 + 8 * DSQ_GGUF_MAX_DIMS + 4 + 8];
        size_t nl = strlen(t->name), o = 0;
        dsq_st64(b, nl);
        memcpy(b + 8, t->name, nl);
        o = 8 + nl;
        dsq_st32(b + o, (uint32_t)t->n_dims);
        o += 4;
        for (int k = 0; k < t->n_dims; k++, o += 8) dsq_st64(b + o, (uint64_t)t->ne[k]);
        dsq_st32(b + o, (uint32_t)t->type);
        dsq_st64(b + o + 4, t->off);
        dsq_afile_write(w->f, b, o + 12);
    }
    if (w->n_t) dsq_afile_pad(w->f, w->align);
    w->data_start = dsq_afile_tell(w->f);
    if (dsq_afile_flush(w->f)) return dsq_fail(err, DSQ_E_IO, "%s: write failed: %s", w->path, strerror(errno));
    return DSQ_OK;
}

/* Record [b, e) as written in t; DSQ_E_ARG if any of it already was. */
static int mark_written(wtensor *t, uint64_t b, uint64_t e) {
    int k = 0;
    while (k < t->n_done && t->done[k].e < b) k++;
    /* t->done[k] is the first range ending at or after b */
    if (k < t->n_done && t->done[k].b < e && b < t->done[k].e) return DSQ_E_ARG;
    int join_prev = k < t->n_done && t->done[k].e == b;
    int nx = join_prev ? k + 1 : k;
    int join_next = nx < t->n_done && t->done[nx].b == e;
    if (nx < t->n_done && t->done[nx].b < e) return DSQ_E_ARG;
    if (join_prev && join_next) {
        t->done[k].e = t->done[nx].e;
        memmove(t->done + nx, t->done + nx + 1, sizeof *t->done * (size_t)(t->n_done - nx - 1));
        t->n_done--;
    } else if (join_prev) {
        t->done[k].e = e;
    } else if (join_next) {
        t->done[nx].b = b;
    } else {
        span *nd = grow(t->done, t->n_done, &t->cap_done, sizeof *nd);
        if (!nd) return DSQ_E_NOMEM;
        t->done = nd;
        memmove(t->done + nx + 1, t->done + nx, sizeof *t->done * (size_t)(t->n_done - nx));
        t->done[nx] = (span){b, e};
        t->n_done++;
    }
    return DSQ_OK;
}

static int complete(const wtensor *t) {
    return t->nbytes == 0 || (t->n_done == 1 && t->done[0].b == 0 && t->done[0].e == t->nbytes);
}

int dsq_ggufw_write(dsq_ggufw *w, int i, uint64_t off, const void *p, size_t n, dsq_err *err) {
    int rc;
    if (!w->laid_out && (rc = dsq_ggufw_layout(w, err))) return rc;
    if (i < 0 || i >= w->n_t) return dsq_fail(err, DSQ_E_ARG, "%s: no tensor %d", w->path, i);
    wtensor *t = &w->t[i];
    if (off > t->nbytes || n > t->nbytes - off)
        return dsq_fail(err, DSQ_E_ARG, "%s: tensor '%s': write [%llu, +%zu) past its %llu bytes", w->path, t->name,
                        (unsigned long long)off, n, (unsigned long long)t->nbytes);
    if (n == 0) return DSQ_OK;
    rc = mark_written(t, off, off + n);
    if (rc == DSQ_E_NOMEM) return dsq_fail(err, rc, "%s: out of memory", w->path);
    if (rc)
        return dsq_fail(err, DSQ_E_ARG, "%s: tensor '%s': bytes [%llu, +%zu) written twice", w->path, t->name,
                        (unsigned long long)off, n);
    uint64_t abs = w->data_start + t->off + off;
    if (abs == dsq_afile_tell(w->f)) {
        /* at the end of the file so far: buffered; a finished tensor gets its padding */
        if (dsq_afile_write(w->f, p, n) ||
            (abs + n == w->data_start + t->off + t->nbytes && dsq_afile_pad(w->f, w->align)))
            return dsq_fail(err, DSQ_E_IO, "%s: write failed: %s", w->path, strerror(errno));
    } else if (dsq_afile_pwrite(w->f, p, n, abs)) {
        return dsq_fail(err, DSQ_E_IO, "%s: write failed: %s", w->path, strerror(errno));
    }
    return DSQ_OK;
}

int dsq_ggufw_finish(dsq_ggufw *w, dsq_err *err) {
    int rc = DSQ_OK;
    if (!w->laid_out && (rc = dsq_ggufw_layout(w, err))) goto out;
    for (int i = 0; i < w->n_t; i++)
        if (!complete(&w->t[i])) {
            uint64_t got = 0;
            for (int k = 0; k < w->t[i].n_done; k++) got += w->t[i].done[k].e - w->t[i].done[k].b;
            rc = dsq_fail(err, DSQ_E_ARG, "%s: tensor '%s': %llu of %llu bytes written", w->path, w->t[i].name,
                          (unsigned long long)got, (unsigned long long)w->t[i].nbytes);
            goto out;
        }
    /* The file must end at the padded end of the last payload that has
     * bytes: write that padding where the end of the file is not already
     * there (payloads that came out of order leave holes, which read as
     * zeros). */
    uint64_t end = w->data_start + w->data_size;
    int last = w->n_t - 1;
    while (last >= 0 && !w->t[last].nbytes) last--;
    if (last >= 0 && dsq_afile_tell(w->f) < end) {
        static const uint8_t zeros[4096];
        uint64_t b = w->data_start + w->t[last].off + w->t[last].nbytes;
        while (b < end) {
            size_t k = end - b > sizeof zeros ? sizeof zeros : (size_t)(end - b);
            if (dsq_afile_pwrite(w->f, zeros, k, b)) break;
            b += k;
        }
    }
    rc = dsq_afile_commit(w->f, err);
    w->f = NULL;
out:
    if (w->f) dsq_afile_abort(w->f);
    w_free(w);
    return rc;
}
