/*
 * container.c -- reader and streaming writer of the .dsq container; the
 * format is specified in docs/FORMAT.md (fixed 128-byte header, 64-byte
 * aligned data section, metadata and directory as JSON written last).
 *
 * The reader treats the file as hostile: it checks the header checksum,
 * version and flags, the exact file size, section bounds and checksums,
 * every directory entry (known scheme, shape, exact array sizes, alignment,
 * bounds) and that no two arrays overlap, before any data is used in place.
 */
#include "formats/container.h"
#include "formats_int.h"
#include "formats/json.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>
#include <zlib.h>

static const char *const g_arr_names[DSQ_ARR_N] = {"data", "scale", "zero", "colscale"};

/* ========================================================================
 * Fixed header
 * ======================================================================== */

void dsq_ctr_header_init(dsq_ctr_header *h) {
    memset(h, 0, sizeof *h);
    memcpy(h->magic, DSQ_CTR_MAGIC, 8);
    h->version_major = 1;
    h->version_minor = 0;
    h->header_size = DSQ_CTR_HEADER;
}

void dsq_ctr_header_encode(const dsq_ctr_header *h, uint8_t out[DSQ_CTR_HEADER]) {
    memcpy(out, h->magic, 8);
    dsq_st16(out + 8, h->version_major);
    dsq_st16(out + 10, h->version_minor);
    dsq_st32(out + 12, h->header_size);
    dsq_st64(out + 16, h->flags_required);
    dsq_st64(out + 24, h->flags_optional);
    dsq_st64(out + 32, h->file_size);
    dsq_st64(out + 40, h->data_offset);
    dsq_st64(out + 48, h->data_size);
    dsq_st64(out + 56, h->meta_offset);
    dsq_st64(out + 64, h->meta_size);
    dsq_st64(out + 72, h->dir_offset);
    dsq_st64(out + 80, h->dir_size);
    dsq_st64(out + 88, h->n_tensors);
    dsq_st64(out + 96, h->meta_xxh3);
    dsq_st64(out + 104, h->dir_xxh3);
    dsq_st64(out + 112, h->reserved);
    dsq_st64(out + DSQ_CTR_HEADER_HASHED, XXH3_64bits(out, DSQ_CTR_HEADER_HASHED));
}

int dsq_ctr_header_decode(const uint8_t in[DSQ_CTR_HEADER], uint64_t file_size, dsq_ctr_header *h,
                          const char *path, dsq_err *err) {
    memcpy(h->magic, in, 8);
    h->version_major = dsq_le16(in + 8);
    h->version_minor = dsq_le16(in + 10);
    h->header_size = dsq_le32(in + 12);
    h->flags_required = dsq_le64(in + 16);
    h->flags_optional = dsq_le64(in + 24);
    h->file_size = dsq_le64(in + 32);
    h->data_offset = dsq_le64(in + 40);
    h->data_size = dsq_le64(in + 48);
    h->meta_offset = dsq_le64(in + 56);
    h->meta_size = dsq_le64(in + 64);
    h->dir_offset = dsq_le64(in + 72);
    h->dir_size = dsq_le64(in + 80);
    h->n_tensors = dsq_le64(in + 88);
    h->meta_xxh3 = dsq_le64(in + 96);
    h->dir_xxh3 = dsq_le64(in + 104);
    h->reserved = dsq_le64(in + 112);
    h->header_xxh3 = dsq_le64(in + DSQ_CTR_HEADER_HASHED);

    /* The major version before the checksum: a file of another major
     * version is named as such whatever its checksum looks like. */
    if (memcmp(h->magic, DSQ_CTR_MAGIC, 8))
        return dsq_fail(err, DSQ_E_FORMAT, "%s: not a .dsq container (bad magic)", path);
    if (h->version_major != 1)
        return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: container major version %u (this dsq reads 1)", path,
                        h->version_major);
    if (h->header_size < DSQ_CTR_HEADER) return dsq_fail(err, DSQ_E_FORMAT, "%s: header_size below 128", path);
    if (XXH3_64bits(in, DSQ_CTR_HEADER_HASHED) != h->header_xxh3)
        return dsq_fail(err, DSQ_E_CHECKSUM, "%s: header checksum mismatch", path);
    if (h->flags_required & ~DSQ_CTR_FLAGS_KNOWN)
        return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: requires features this dsq lacks (flags 0x%llx)", path,
                        (unsigned long long)h->flags_required);
    if (h->file_size != file_size)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: truncated or extended: header says %llu bytes, file has %llu", path,
                        (unsigned long long)h->file_size, (unsigned long long)file_size);
    const uint64_t s_off[3] = {h->data_offset, h->meta_offset, h->dir_offset};
    const uint64_t s_len[3] = {h->data_size, h->meta_size, h->dir_size};
    static const char *const sn[3] = {"data", "metadata", "directory"};
    for (int i = 0; i < 3; i++) {
        if (s_off[i] < DSQ_CTR_HEADER || s_off[i] > file_size || s_len[i] > file_size - s_off[i])
            return dsq_fail(err, DSQ_E_FORMAT, "%s: %s section [%llu, +%llu) outside the file", path, sn[i],
                            (unsigned long long)s_off[i], (unsigned long long)s_len[i]);
        for (int j = 0; j < i; j++)
            if (s_off[i] < s_off[j] + s_len[j] && s_off[j] < s_off[i] + s_len[i])
                return dsq_fail(err, DSQ_E_FORMAT, "%s: %s and %s sections overlap", path, sn[i], sn[j]);
    }
    if (h->data_offset % DSQ_CTR_ALIGN) return dsq_fail(err, DSQ_E_FORMAT, "%s: data section not aligned", path);
    return DSQ_OK;
}

/* ========================================================================
 * Reader
 * ======================================================================== */

typedef struct cfile {
    char *name;
    uint64_t offset, size, raw_size, xxh3;
    int zlib;
} cfile;

struct dsq_ctr {
    char *path;
    int fd;
    uint8_t *map;
    uint64_t size;
    dsq_config cfg;
    char *meta;           /* NUL-terminated copy */
    char *config_json;    /* the metadata's config_json text; from malloc */
    dsq_ctensor *t;
    int n;
    cfile *files;
    int n_files;
    int *ht;
    size_t ht_cap;
};

static uint64_t fnv(const char *s) {
    uint64_t h = 1469598103934665603ull;
    while (*s) h = (h ^ (uint8_t)*s++) * 1099511628211ull;
    return h;
}

int dsq_ctr_sniff(const char *path) {
    uint8_t b[8];
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return 0;
    struct stat st;
    int ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && read(fd, b, 8) == 8 &&
             !memcmp(b, DSQ_CTR_MAGIC, 8);
    close(fd);
    return ok;
}

void dsq_ctr_close(dsq_ctr *c) {
    if (!c) return;
    for (int i = 0; i < c->n; i++) {
        free((char *)c->t[i].name);
        free((char *)c->t[i].recipe);
        for (int k = 0; k < DSQ_ARR_N; k++) free(c->t[i].arr[k].xxh3);
    }
    free(c->t);
    for (int i = 0; i < c->n_files; i++) free(c->files[i].name);
    free(c->files);
    free(c->ht);
    free(c->meta);
    free(c->config_json);
    if (c->map) munmap(c->map, c->size);
    if (c->fd >= 0) close(c->fd);
    free(c->path);
    free(c);
}

const dsq_config *dsq_ctr_config(const dsq_ctr *c) { return &c->cfg; }
int dsq_ctr_n_tensors(const dsq_ctr *c) { return c->n; }
const dsq_ctensor *dsq_ctr_tensor(const dsq_ctr *c, int i) { return &c->t[i]; }
const char *dsq_ctr_meta(const dsq_ctr *c) { return c->meta; }
const char *dsq_ctr_config_json(const dsq_ctr *c) { return c->config_json; }
uint64_t dsq_ctr_file_size(const dsq_ctr *c) { return c->size; }
const char *dsq_ctr_path(const dsq_ctr *c) { return c->path; }

int dsq_ctr_find(const dsq_ctr *c, const char *name) {
    if (!c->ht) return -1;
    size_t k = fnv(name) & (c->ht_cap - 1);
    while (c->ht[k] >= 0) {
        if (!strcmp(c->t[c->ht[k]].name, name)) return c->ht[k];
        k = (k + 1) & (c->ht_cap - 1);
    }
    return -1;
}

typedef struct { uint64_t b, e; int t; int a; } span;
static int cmp_span(const void *x, const void *y) {
    const span *a = x, *b = y;
    return a->b < b->b ? -1 : a->b > b->b;
}

static int parse_array(dsq_ctr *c, dsq_ctensor *t, int k, const cJSON *o, uint64_t want,
                       dsq_err *err) {
    const char *an = g_arr_names[k];
    if (!o) {
        if (want == 0) return DSQ_OK;
        return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': missing '%s' array", c->path, t->name, an);
    }
    if (want == 0)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': scheme %s has no '%s' array", c->path,
                        t->name, dsq_q_scheme(t->scheme)->name, an);
    int64_t off, size;
    if (!cJSON_IsObject(o) || !dsq_json_key_int(o, "offset", 0, INT64_MAX, &off) || !dsq_json_key_int(o, "size", 0, INT64_MAX, &size))
        return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': '%s' needs integer offset and size",
                        c->path, t->name, an);
    if ((uint64_t)size != want)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': '%s' is %lld bytes, scheme %s needs %llu",
                        c->path, t->name, an, (long long)size, dsq_q_scheme(t->scheme)->name,
                        (unsigned long long)want);
    if (off % DSQ_CTR_ALIGN)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': '%s' offset %lld is not 64-byte aligned",
                        c->path, t->name, an, (long long)off);
    const cJSON *h = dsq_json_get(o, "xxh3");
    int nh = t->experts ? t->experts : 1;
    if (!cJSON_IsArray(h) || cJSON_GetArraySize(h) != nh)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': '%s' needs %d checksums", c->path,
                        t->name, an, nh);
    dsq_carray *a = &t->arr[k];
    a->offset = (uint64_t)off;
    a->size = (uint64_t)size;
    a->n_hash = nh;
    a->xxh3 = dsq_calloc((size_t)nh, sizeof *a->xxh3);
    if (!a->xxh3) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    int j = 0;
    for (const cJSON *it = h->child; it; it = it->next, j++)
        if (!dsq_json_hex64(it, &a->xxh3[j]))
            return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': bad checksum in '%s'", c->path, t->name, an);
    return DSQ_OK;
}

static int parse_dir(dsq_ctr *c, const char *js, size_t len, uint64_t n_expect, uint64_t d0,
                     uint64_t d1, dsq_err *err) {
    long at;
    int rc = DSQ_E_FORMAT;
    span *sp = NULL;
    cJSON *root = dsq_json_parse(js, len, &at);
    if (!root) return dsq_fail(err, DSQ_E_FORMAT, "%s: directory JSON invalid near byte %ld (%s)", c->path, at, dsq_json_why());
    const cJSON *arr = dsq_json_get(root, "tensors");
    if (!cJSON_IsArray(arr) || (uint64_t)cJSON_GetArraySize(arr) != n_expect) {
        dsq_fail(err, DSQ_E_FORMAT, "%s: directory must list %llu tensors", c->path, (unsigned long long)n_expect);
        goto fail;
    }
    c->t = dsq_calloc(n_expect + 1, sizeof *c->t);
    sp = dsq_calloc(n_expect * DSQ_ARR_N + (size_t)c->n_files + 1, sizeof *sp);
    if (!c->t || !sp) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto fail; }
    int ns = 0;
    for (const cJSON *e = arr->child; e; e = e->next) {
        dsq_ctensor *t = &c->t[c->n];
        const char *nm = dsq_json_str(dsq_json_get(e, "name"));
        if (!cJSON_IsObject(e) || !nm || !*nm) {
            dsq_fail(err, DSQ_E_FORMAT, "%s: directory entry %d has no name", c->path, c->n);
            goto fail;
        }
        t->name = dsq_strdup(nm);
        c->n++;
        if (!t->name) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto fail; }
        const char *ro = dsq_json_str(dsq_json_get(e, "role"));
        t->role = ro ? dsq_role_from_name(ro) : DSQ_R_UNKNOWN;
        int64_t v;
        t->layer = dsq_json_key_int(e, "layer", -1, 1 << 20, &v) ? (int)v : -1;
        t->is_mtp = cJSON_IsTrue(dsq_json_get(e, "mtp"));
        t->experts = dsq_json_key_int(e, "experts", 0, 1 << 20, &v) ? (int)v : -1;
        const char *sc = dsq_json_str(dsq_json_get(e, "scheme"));
        t->scheme = sc ? dsq_q_from_name(sc) : -1;
        if (t->scheme < 0) {
            dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: tensor '%s': unknown storage scheme '%.40s'",
                     c->path, t->name, sc ? sc : "?");
            rc = DSQ_E_UNSUPPORTED;
            goto fail;
        }
        const cJSON *sh = dsq_json_get(e, "shape");
        int nd = cJSON_IsArray(sh) ? cJSON_GetArraySize(sh) : -1;
        if (nd < 1 || nd > 3 || t->experts < 0 || (t->experts > 0) != (nd == 3)) {
            dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': bad shape or experts", c->path, t->name);
            goto fail;
        }
        t->n_dims = nd;
        int k = dsq_json_ints(sh, 0, 1ll << 40, t->shape, nd);
        if (k < nd) {
            dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': shape[%d] invalid", c->path, t->name, k);
            goto fail;
        }
        if (nd == 3 && t->shape[0] != t->experts) {
            dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': shape[0] != experts", c->path, t->name);
            goto fail;
        }
        t->rows = nd == 1 ? 1 : t->shape[nd - 2];
        t->cols = t->shape[nd - 1];
        dsq_qsizes qs;
        if (dsq_q_sizes(t->scheme, t->rows, t->cols, &qs, err)) {
            dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': shape too large for its scheme", c->path, t->name);
            goto fail;
        }
        uint64_t mult = t->experts ? (uint64_t)t->experts : 1, want[DSQ_ARR_N];
        uint64_t cs = dsq_json_get(e, "colscale") ? (uint64_t)t->cols * 4 : 0;
        if (dsq_mul_ovf(qs.data, mult, &want[0]) || dsq_mul_ovf(qs.scale, mult, &want[1]) ||
            dsq_mul_ovf(qs.zero, mult, &want[2]) || dsq_mul_ovf(cs, mult, &want[3])) {
            dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': size overflows", c->path, t->name);
            goto fail;
        }
        for (int a = 0; a < DSQ_ARR_N; a++) {
            if ((rc = parse_array(c, t, a, dsq_json_get(e, g_arr_names[a]), want[a], err)))
                goto fail;
            rc = DSQ_E_FORMAT;
            dsq_carray *ar = &t->arr[a];
            if (!ar->size) continue;
            if (ar->offset < d0 || ar->offset > d1 || ar->size > d1 - ar->offset) {
                dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': '%s' [%llu, +%llu) outside the data section",
                         c->path, t->name, g_arr_names[a], (unsigned long long)ar->offset,
                         (unsigned long long)ar->size);
                goto fail;
            }
            sp[ns++] = (span){ar->offset, ar->offset + ar->size, c->n - 1, a};
        }
        const cJSON *re = dsq_json_get(e, "recipe");
        char *rs = re ? cJSON_PrintUnformatted(re) : NULL;
        t->recipe = rs ? rs : dsq_strdup("{}");
        if (!t->recipe) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto fail; }
    }
    for (int f = 0; f < c->n_files; f++) {
        cfile *cf = &c->files[f];
        if (cf->offset < d0 || cf->offset > d1 || cf->size > d1 - cf->offset) {
            dsq_fail(err, DSQ_E_FORMAT, "%s: file '%s' outside the data section", c->path, cf->name);
            goto fail;
        }
        sp[ns++] = (span){cf->offset, cf->offset + cf->size, -1 - f, 0};
    }
    qsort(sp, (size_t)ns, sizeof *sp, cmp_span);
    for (int i = 1; i < ns; i++)
        if (sp[i].b < sp[i - 1].e) {
            const char *a = sp[i].t >= 0 ? c->t[sp[i].t].name : c->files[-1 - sp[i].t].name;
            const char *b = sp[i - 1].t >= 0 ? c->t[sp[i - 1].t].name : c->files[-1 - sp[i - 1].t].name;
            dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': data overlaps '%s'", c->path, a, b);
            goto fail;
        }
    /* name index */
    size_t cap = 16;
    while (cap < (size_t)c->n * 2) cap <<= 1;
    c->ht = dsq_malloc(cap * sizeof *c->ht);
    if (!c->ht) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto fail; }
    c->ht_cap = cap;
    for (size_t i = 0; i < cap; i++) c->ht[i] = -1;
    for (int i = 0; i < c->n; i++) {
        if (dsq_ctr_find(c, c->t[i].name) >= 0) {
            dsq_fail(err, DSQ_E_FORMAT, "%s: duplicate tensor name '%s'", c->path, c->t[i].name);
            goto fail;
        }
        size_t k = fnv(c->t[i].name) & (cap - 1);
        while (c->ht[k] >= 0) k = (k + 1) & (cap - 1);
        c->ht[k] = i;
    }
    free(sp);
    cJSON_Delete(root);
    return DSQ_OK;
fail:
    free(sp);
    cJSON_Delete(root);
    return rc;
}

static int parse_meta(dsq_ctr *c, const char *js, size_t len, dsq_err *err) {
    long at;
    int rc = DSQ_E_FORMAT;
    cJSON *root = dsq_json_parse(js, len, &at);
    if (!root) return dsq_fail(err, DSQ_E_FORMAT, "%s: metadata JSON invalid near byte %ld (%s)", c->path, at, dsq_json_why());
    const char *cj = dsq_json_str(dsq_json_get(root, "config_json"));
    if (!cJSON_IsObject(root) || !cj) {
        dsq_fail(err, DSQ_E_FORMAT, "%s: metadata lacks 'config_json'", c->path);
        goto fail;
    }
    char what[1200];
    snprintf(what, sizeof what, "%s: config_json", c->path);
    if ((rc = dsq_config_parse(&c->cfg, cj, strlen(cj), what, err))) goto fail;
    if (!(c->config_json = dsq_strdup(cj))) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto fail; }
    rc = DSQ_E_FORMAT;
    const cJSON *fs = dsq_json_get(root, "files");
    if (fs && !cJSON_IsArray(fs)) {
        dsq_fail(err, DSQ_E_FORMAT, "%s: metadata 'files' is not an array", c->path);
        goto fail;
    }
    int nf = fs ? cJSON_GetArraySize(fs) : 0;
    c->files = dsq_calloc((size_t)nf + 1, sizeof *c->files);
    if (!c->files) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto fail; }
    for (const cJSON *f = fs ? fs->child : NULL; f; f = f->next) {
        cfile *cf = &c->files[c->n_files];
        const char *nm = dsq_json_str(dsq_json_get(f, "name"));
        const char *cp = dsq_json_str(dsq_json_get(f, "compression"));
        int64_t off, size, raw;
        if (!nm || !dsq_json_key_int(f, "offset", 0, INT64_MAX, &off) ||
            !dsq_json_key_int(f, "size", 0, INT64_MAX, &size) || !dsq_json_key_int(f, "raw_size", 0, 1 << 30, &raw) ||
            !dsq_json_hex64(dsq_json_get(f, "xxh3"), &cf->xxh3) || !cp || (strcmp(cp, "zlib") && strcmp(cp, "none"))) {
            dsq_fail(err, DSQ_E_FORMAT, "%s: metadata file entry %d is malformed", c->path, c->n_files);
            goto fail;
        }
        cf->name = dsq_strdup(nm);
        if (!cf->name) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto fail; }
        cf->offset = (uint64_t)off;
        cf->size = (uint64_t)size;
        cf->raw_size = (uint64_t)raw;
        cf->zlib = !strcmp(cp, "zlib");
        c->n_files++;
    }
    cJSON_Delete(root);
    return DSQ_OK;
fail:
    cJSON_Delete(root);
    return rc;
}

int dsq_ctr_open(dsq_ctr **out, const char *path, dsq_err *err) {
    *out = NULL;
    int rc = DSQ_E_FORMAT;
    dsq_ctr *c = dsq_calloc(1, sizeof *c);
    if (!c) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    c->fd = -1;
    c->path = dsq_strdup(path);
    if (!c->path) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto fail; }
    struct stat st;
    if (stat(path, &st) != 0) { rc = dsq_fail(err, DSQ_E_IO, "%s: %s", path, strerror(errno)); goto fail; }
    if (!S_ISREG(st.st_mode)) { rc = dsq_fail(err, DSQ_E_IO, "%s: not a regular file", path); goto fail; }
    c->fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (c->fd < 0 || fstat(c->fd, &st) != 0) {
        rc = dsq_fail(err, DSQ_E_IO, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    c->size = (uint64_t)st.st_size;
    if (c->size < DSQ_CTR_HEADER) {
        dsq_fail(err, DSQ_E_FORMAT, "%s: truncated (%llu bytes, header needs 128)", path, (unsigned long long)c->size);
        goto fail;
    }
    c->map = mmap(NULL, c->size, PROT_READ, MAP_PRIVATE, c->fd, 0);
    if (c->map == MAP_FAILED) {
        c->map = NULL;
        rc = dsq_fail(err, DSQ_E_IO, "%s: mmap failed: %s", path, strerror(errno));
        goto fail;
    }
    const uint8_t *h = c->map;
    dsq_ctr_header hd;
    if ((rc = dsq_ctr_header_decode(h, c->size, &hd, path, err))) goto fail;
    rc = DSQ_E_FORMAT;
    const uint64_t s_off[3] = {hd.data_offset, hd.meta_offset, hd.dir_offset};
    const uint64_t s_len[3] = {hd.data_size, hd.meta_size, hd.dir_size};
    static const char *const sn[3] = {"data", "metadata", "directory"};
    if (XXH3_64bits(h + s_off[1], s_len[1]) != hd.meta_xxh3) {
        rc = dsq_fail(err, DSQ_E_CHECKSUM, "%s: metadata checksum mismatch", path);
        goto fail;
    }
    if (XXH3_64bits(h + s_off[2], s_len[2]) != hd.dir_xxh3) {
        rc = dsq_fail(err, DSQ_E_CHECKSUM, "%s: directory checksum mismatch", path);
        goto fail;
    }
    /* With a length, cJSON skips NUL bytes as whitespace and keeps them
     * inside strings; the metadata is handed out as a C string and names are
     * used as C strings, so a NUL would silently cut them short. */
    for (int i = 1; i < 3; i++)
        if (memchr(h + s_off[i], 0, s_len[i])) {
            dsq_fail(err, DSQ_E_FORMAT, "%s: %s section holds a NUL byte", path, sn[i]);
            goto fail;
        }
    c->meta = dsq_malloc(s_len[1] + 1);
    if (!c->meta) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto fail; }
    memcpy(c->meta, h + s_off[1], s_len[1]);
    c->meta[s_len[1]] = 0;
    if ((rc = parse_meta(c, c->meta, s_len[1], err))) goto fail;
    uint64_t nt = hd.n_tensors;
    if (nt > (1u << 24)) { rc = dsq_fail(err, DSQ_E_FORMAT, "%s: %llu tensors is implausible", path, (unsigned long long)nt); goto fail; }
    if ((rc = parse_dir(c, (const char *)h + s_off[2], s_len[2], nt, s_off[0], s_off[0] + s_len[0], err))) goto fail;
    for (int i = 0; i < c->n; i++) {
        const dsq_carray *a = &c->t[i].arr[DSQ_ARR_COLSCALE];
        if (!a->size) continue;
        if (!(hd.flags_required & DSQ_CTR_FLAG_COLSCALE)) {
            dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s' has a colscale array but the header lacks its required flag",
                     path, c->t[i].name);
            goto fail;
        }
        for (uint64_t k = 0; k < a->size / 4; k++) {
            float v = dsq_lef32(c->map + a->offset + 4 * k);
            if (!(v > 0 && v < INFINITY)) {
                dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': colscale[%llu] is %g (must be finite and positive)",
                         path, c->t[i].name, (unsigned long long)k, (double)v);
                goto fail;
            }
        }
    }
    *out = c;
    return DSQ_OK;
fail:
    dsq_ctr_close(c);
    return rc < 0 ? rc : DSQ_E_FORMAT;
}

int dsq_ctr_qmat(const dsq_ctr *c, int i, int e, dsq_qmat *m, dsq_err *err) {
    const dsq_ctensor *t = &c->t[i];
    int ne = t->experts ? t->experts : 1;
    if (e < 0 || e >= ne) return dsq_fail(err, DSQ_E_ARG, "%s: expert %d out of range", t->name, e);
    m->type = t->scheme;
    m->rows = t->rows;
    m->cols = t->cols;
    void *p[DSQ_ARR_N];
    for (int k = 0; k < DSQ_ARR_N; k++) {
        uint64_t sl = t->arr[k].size / (uint64_t)ne;
        p[k] = t->arr[k].size ? (void *)(c->map + t->arr[k].offset + sl * (uint64_t)e) : NULL;
    }
    m->data = p[0];
    m->scale = p[1];
    m->zero = p[2];
    return DSQ_OK;
}

const void *dsq_ctr_colscale(const dsq_ctr *c, int i, int e) {
    const dsq_ctensor *t = &c->t[i];
    const dsq_carray *a = &t->arr[DSQ_ARR_COLSCALE];
    if (!a->size) return NULL;
    return c->map + a->offset + (uint64_t)t->cols * 4 * (uint64_t)e;
}

int dsq_ctr_verify(const dsq_ctr *c, int64_t *n_checked, dsq_err *err) {
    int64_t n = 0;
    for (int f = 0; f < c->n_files; f++, n++)
        if (XXH3_64bits(c->map + c->files[f].offset, c->files[f].size) != c->files[f].xxh3) {
            if (n_checked) *n_checked = n;
            return dsq_fail(err, DSQ_E_CHECKSUM, "%s: file '%s': checksum mismatch", c->path, c->files[f].name);
        }
    for (int i = 0; i < c->n; i++) {
        const dsq_ctensor *t = &c->t[i];
        for (int k = 0; k < DSQ_ARR_N; k++) {
            const dsq_carray *a = &t->arr[k];
            if (!a->size) continue;
            uint64_t sl = a->size / (uint64_t)a->n_hash;
            for (int e = 0; e < a->n_hash; e++, n++)
                if (XXH3_64bits(c->map + a->offset + sl * (uint64_t)e, sl) != a->xxh3[e]) {
                    if (n_checked) *n_checked = n;
                    if (t->experts)
                        return dsq_fail(err, DSQ_E_CHECKSUM, "%s: tensor '%s' expert %d: %s checksum mismatch",
                                        c->path, t->name, e, g_arr_names[k]);
                    return dsq_fail(err, DSQ_E_CHECKSUM, "%s: tensor '%s': %s checksum mismatch", c->path,
                                    t->name, g_arr_names[k]);
                }
        }
    }
    if (n_checked) *n_checked = n;
    return DSQ_OK;
}

int dsq_ctr_file(const dsq_ctr *c, const char *name, char **data, size_t *len, dsq_err *err) {
    *data = NULL;
    for (int f = 0; f < c->n_files; f++) {
        const cfile *cf = &c->files[f];
        if (strcmp(cf->name, name)) continue;
        if (XXH3_64bits(c->map + cf->offset, cf->size) != cf->xxh3)
            return dsq_fail(err, DSQ_E_CHECKSUM, "%s: file '%s': checksum mismatch", c->path, name);
        char *b = dsq_malloc(cf->raw_size + 1);
        if (!b) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
        if (cf->zlib) {
            uLongf dl = (uLongf)cf->raw_size;
            if (uncompress((Bytef *)b, &dl, c->map + cf->offset, (uLong)cf->size) != Z_OK || dl != cf->raw_size) {
                free(b);
                return dsq_fail(err, DSQ_E_FORMAT, "%s: file '%s': bad zlib stream", c->path, name);
            }
        } else {
            if (cf->size != cf->raw_size) {
                free(b);
                return dsq_fail(err, DSQ_E_FORMAT, "%s: file '%s': size mismatch", c->path, name);
            }
            memcpy(b, c->map + cf->offset, cf->size);
        }
        b[cf->raw_size] = 0;
        *data = b;
        if (len) *len = cf->raw_size;
        return DSQ_OK;
    }
    return dsq_fail(err, DSQ_E_NOTFOUND, "%s: no file '%s' in the container", c->path, name);
}

/* ========================================================================
 * Writer
 * ======================================================================== */

typedef struct wt {
    dsq_ctw_tensor d;
    char *name, *recipe;       /* owned copies */
    uint64_t slice[DSQ_ARR_N]; /* bytes per expert slice */
    uint64_t off[DSQ_ARR_N];
    uint64_t *hash[DSQ_ARR_N]; /* per slice */
    uint8_t *done[DSQ_ARR_N];  /* per slice: written? */
} wt;

typedef struct wfile {
    char *name;
    uint8_t *z;                /* compressed bytes */
    uint64_t zsize, raw, off, xxh3;
} wfile;

struct dsq_ctrw {
    dsq_afile *f;
    char *path;
    wt *t;
    int n, cap;
    wfile *files;
    int n_files;
    uint64_t data_end;
    int laid_out;
};

int dsq_ctrw_open(dsq_ctrw **out, const char *path, int force, dsq_err *err) {
    *out = NULL;
    dsq_ctrw *w = dsq_calloc(1, sizeof *w);
    if (!w) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    w->path = dsq_strdup(path);
    int rc = w->path ? dsq_afile_open(&w->f, path, force ? DSQ_AFILE_FORCE : 0, err)
                     : dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    if (rc) {
        free(w->path);
        free(w);
        return rc;
    }
    *out = w;
    return DSQ_OK;
}

static void w_free(dsq_ctrw *w) {
    for (int i = 0; i < w->n; i++) {
        free(w->t[i].name);
        free(w->t[i].recipe);
        for (int k = 0; k < DSQ_ARR_N; k++) {
            free(w->t[i].hash[k]);
            free(w->t[i].done[k]);
        }
    }
    free(w->t);
    for (int i = 0; i < w->n_files; i++) {
        free(w->files[i].name);
        free(w->files[i].z);
    }
    free(w->files);
    free(w->path);
    free(w);
}

void dsq_ctrw_abort(dsq_ctrw *w) {
    if (!w) return;
    dsq_afile_abort(w->f);
    w_free(w);
}

static uint64_t align_up(uint64_t x) { return (x + DSQ_CTR_ALIGN - 1) & ~(uint64_t)(DSQ_CTR_ALIGN - 1); }

/* Give the arrays of t their places from *pos on. */
static int place(dsq_ctrw *w, wt *t, uint64_t *pos, dsq_err *err) {
    uint64_t ne = t->d.experts ? (uint64_t)t->d.experts : 1;
    for (int k = 0; k < DSQ_ARR_N; k++) {
        if (!t->slice[k]) continue;
        t->off[k] = *pos;
        uint64_t total;
        if (dsq_mul_ovf(t->slice[k], ne, &total) || dsq_add_ovf(*pos, total, pos))
            return dsq_fail(err, DSQ_E_ARG, "%s: container too large", t->name);
        *pos = align_up(*pos);
    }
    return DSQ_OK;
}

int dsq_ctrw_add_tensor(dsq_ctrw *w, const dsq_ctw_tensor *d, dsq_err *err) {
    dsq_qsizes qs;
    int rc = dsq_q_sizes(d->scheme, d->rows, d->cols, &qs, err);
    if (rc) return rc;
    if (w->n == w->cap) {
        int nc = w->cap ? w->cap * 2 : 256;
        wt *nt = dsq_realloc(w->t, sizeof *nt * (size_t)nc);
        if (!nt) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
        w->t = nt;
        w->cap = nc;
    }
    wt *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    t->d = *d;
    t->name = dsq_strdup(d->name);
    t->recipe = dsq_strdup(d->recipe ? d->recipe : "{}");
    t->slice[0] = qs.data;
    t->slice[1] = qs.scale;
    t->slice[2] = qs.zero;
    t->slice[3] = d->colscale ? (uint64_t)d->cols * 4 : 0;
    int ne = d->experts ? d->experts : 1;
    for (int k = 0; k < DSQ_ARR_N && t->name && t->recipe; k++) {
        t->hash[k] = dsq_calloc((size_t)ne, sizeof(uint64_t));
        t->done[k] = dsq_calloc((size_t)ne, 1);
        if (!t->hash[k] || !t->done[k]) break;
        if (k == DSQ_ARR_N - 1) {
            t->d.name = t->name;
            t->d.recipe = t->recipe;
            /* after the layout: appended to the data section */
            uint64_t end = w->data_end;
            if (w->laid_out && (rc = place(w, t, &end, err))) break;
            w->data_end = end;
            return w->n++;
        }
    }
    free(t->name);
    free(t->recipe);
    for (int k = 0; k < DSQ_ARR_N; k++) { free(t->hash[k]); free(t->done[k]); }
    return rc ? rc : dsq_fail(err, DSQ_E_NOMEM, "out of memory");
}

int dsq_ctrw_add_file(dsq_ctrw *w, const char *name, const void *data, size_t len, dsq_err *err) {
    if (w->laid_out) return dsq_fail(err, DSQ_E_ARG, "container: file added after layout");
    wfile *nf = dsq_realloc(w->files, sizeof *nf * (size_t)(w->n_files + 1));
    if (!nf) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    w->files = nf;
    wfile *f = &w->files[w->n_files];
    memset(f, 0, sizeof *f);
    uLongf zl = compressBound((uLong)len);
    f->z = dsq_malloc(zl);
    f->name = dsq_strdup(name);
    if (!f->z || !f->name || compress2(f->z, &zl, data, (uLong)len, 9) != Z_OK) {
        free(f->z);
        free(f->name);
        return dsq_fail(err, DSQ_E_NOMEM, "%s: cannot compress", name);
    }
    f->zsize = zl;
    f->raw = len;
    f->xxh3 = XXH3_64bits(f->z, zl);
    w->n_files++;
    return DSQ_OK;
}

int dsq_ctrw_layout(dsq_ctrw *w, dsq_err *err) {
    if (w->laid_out) return dsq_fail(err, DSQ_E_ARG, "container: laid out twice");
    uint64_t pos = DSQ_CTR_DATA_OFFSET;
    int rc;
    for (int i = 0; i < w->n_files; i++) {
        w->files[i].off = pos;
        pos = align_up(pos + w->files[i].zsize);
    }
    for (int i = 0; i < w->n; i++)
        if ((rc = place(w, &w->t[i], &pos, err))) return rc;
    w->data_end = pos;
    w->laid_out = 1;
    /* header placeholder and padding up to the data section, then the side files */
    static const uint8_t zeros[DSQ_CTR_DATA_OFFSET];
    dsq_afile_write(w->f, zeros, sizeof zeros);
    for (int i = 0; i < w->n_files; i++)
        if (dsq_afile_pwrite(w->f, w->files[i].z, w->files[i].zsize, w->files[i].off))
            return dsq_fail(err, DSQ_E_IO, "%s: write failed", w->path);
    return DSQ_OK;
}

uint64_t dsq_ctrw_slice_size(const dsq_ctrw *w, int i, int which) { return w->t[i].slice[which]; }

int dsq_ctrw_write(dsq_ctrw *w, int i, int e, int which, const void *p, uint64_t n, dsq_err *err) {
    if (!w->laid_out || i < 0 || i >= w->n || which < 0 || which >= DSQ_ARR_N)
        return dsq_fail(err, DSQ_E_ARG, "container: bad write");
    wt *t = &w->t[i];
    int ne = t->d.experts ? t->d.experts : 1;
    if (e < 0 || e >= ne) return dsq_fail(err, DSQ_E_ARG, "%s: expert %d out of range", t->name, e);
    if (n != t->slice[which])
        return dsq_fail(err, DSQ_E_ARG, "%s: %s slice is %llu bytes, got %llu", t->name, g_arr_names[which],
                        (unsigned long long)t->slice[which], (unsigned long long)n);
    if (t->done[which][e]) return dsq_fail(err, DSQ_E_ARG, "%s: %s slice %d written twice", t->name, g_arr_names[which], e);
    t->hash[which][e] = XXH3_64bits(p, n);
    if (n && dsq_afile_pwrite(w->f, p, n, t->off[which] + (uint64_t)e * n))
        return dsq_fail(err, DSQ_E_IO, "%s: write failed: %s", w->path, strerror(errno));
    t->done[which][e] = 1;
    return DSQ_OK;
}


int dsq_ctrw_finish(dsq_ctrw *w, const char *meta_json, dsq_err *err) {
    int rc = DSQ_OK;
    cJSON *meta = NULL, *dir = NULL;
    char *ms = NULL, *ds = NULL;
    char hx[17];
    if (!w->laid_out && (rc = dsq_ctrw_layout(w, err))) goto out;
    for (int i = 0; i < w->n; i++)
        for (int k = 0; k < DSQ_ARR_N; k++)
            for (int e = 0; w->t[i].slice[k] && e < (w->t[i].d.experts ? w->t[i].d.experts : 1); e++)
                if (!w->t[i].done[k][e]) {
                    rc = dsq_fail(err, DSQ_E_ARG, "%s: tensor '%s' %s slice %d never written", w->path,
                                  w->t[i].name, g_arr_names[k], e);
                    goto out;
                }
    meta = meta_json ? cJSON_Parse(meta_json) : cJSON_CreateObject();
    if (!cJSON_IsObject(meta)) { rc = dsq_fail(err, DSQ_E_ARG, "container: metadata is not a JSON object"); goto out; }
    cJSON_DeleteItemFromObject(meta, "format");
    cJSON_DeleteItemFromObject(meta, "format_version");
    cJSON_DeleteItemFromObject(meta, "files");
    cJSON_AddStringToObject(meta, "format", "dsq");
    cJSON_AddStringToObject(meta, "format_version", "1.0");
    cJSON *fa = cJSON_AddArrayToObject(meta, "files");
    for (int i = 0; i < w->n_files; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", w->files[i].name);
        cJSON_AddNumberToObject(o, "offset", (double)w->files[i].off);
        cJSON_AddNumberToObject(o, "size", (double)w->files[i].zsize);
        cJSON_AddNumberToObject(o, "raw_size", (double)w->files[i].raw);
        cJSON_AddStringToObject(o, "compression", "zlib");
        dsq_hex16(hx, w->files[i].xxh3);
        cJSON_AddStringToObject(o, "xxh3", hx);
        cJSON_AddItemToArray(fa, o);
    }
    dir = cJSON_CreateObject();
    cJSON *ta = cJSON_AddArrayToObject(dir, "tensors");
    for (int i = 0; i < w->n; i++) {
        wt *t = &w->t[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", t->name);
        cJSON_AddStringToObject(o, "role", dsq_role_name(t->d.role));
        cJSON_AddNumberToObject(o, "layer", t->d.layer);
        cJSON_AddBoolToObject(o, "mtp", t->d.is_mtp);
        cJSON *sh = cJSON_AddArrayToObject(o, "shape");
        for (int k = 0; k < t->d.n_dims; k++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->d.shape[k]));
        cJSON_AddNumberToObject(o, "experts", t->d.experts);
        cJSON_AddStringToObject(o, "scheme", dsq_q_scheme(t->d.scheme)->name);
        cJSON *re = cJSON_Parse(t->recipe);
        cJSON_AddItemToObject(o, "recipe", re ? re : cJSON_CreateObject());
        for (int k = 0; k < DSQ_ARR_N; k++) {
            if (!t->slice[k]) continue;
            cJSON *a = cJSON_AddObjectToObject(o, g_arr_names[k]);
            int ne = t->d.experts ? t->d.experts : 1;
            cJSON_AddNumberToObject(a, "offset", (double)t->off[k]);
            cJSON_AddNumberToObject(a, "size", (double)(t->slice[k] * (uint64_t)ne));
            cJSON *h = cJSON_AddArrayToObject(a, "xxh3");
            for (int e = 0; e < ne; e++) {
                dsq_hex16(hx, t->hash[k][e]);
                cJSON_AddItemToArray(h, cJSON_CreateString(hx));
            }
        }
        cJSON_AddItemToArray(ta, o);
    }
    ms = cJSON_PrintUnformatted(meta);
    ds = cJSON_PrintUnformatted(dir);
    if (!ms || !ds) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto out; }
    uint64_t ml = strlen(ms), dl = strlen(ds);
    uint64_t moff = w->data_end, doff = moff + ml, fsize = doff + dl;
    if (dsq_afile_pwrite(w->f, ms, ml, moff) || dsq_afile_pwrite(w->f, ds, dl, doff)) {
        rc = dsq_fail(err, DSQ_E_IO, "%s: write failed: %s", w->path, strerror(errno));
        goto out;
    }
    dsq_ctr_header hd;
    dsq_ctr_header_init(&hd);
    for (int i = 0; i < w->n; i++)
        if (w->t[i].slice[DSQ_ARR_COLSCALE]) hd.flags_required |= DSQ_CTR_FLAG_COLSCALE;
    hd.file_size = fsize;
    hd.data_offset = DSQ_CTR_DATA_OFFSET;
    hd.data_size = w->data_end - DSQ_CTR_DATA_OFFSET;
    hd.meta_offset = moff;
    hd.meta_size = ml;
    hd.dir_offset = doff;
    hd.dir_size = dl;
    hd.n_tensors = (uint64_t)w->n;
    hd.meta_xxh3 = XXH3_64bits(ms, ml);
    hd.dir_xxh3 = XXH3_64bits(ds, dl);
    uint8_t h[DSQ_CTR_HEADER];
    dsq_ctr_header_encode(&hd, h);
    if (dsq_afile_pwrite(w->f, h, sizeof h, 0)) {
        rc = dsq_fail(err, DSQ_E_IO, "%s: write failed: %s", w->path, strerror(errno));
        goto out;
    }
    rc = dsq_afile_commit(w->f, err);
    w->f = NULL;
out:
    free(ms);
    free(ds);
    cJSON_Delete(meta);
    cJSON_Delete(dir);
    if (w->f) dsq_afile_abort(w->f);
    w_free(w);
    return rc;
}
