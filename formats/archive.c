/*
 * archive.c -- a checkpoint folder read from inside a .tar / .tar.gz / .zip
 * (anything libarchive reads) without unpacking it to disk.
 *
 * Archives can only be read forward, so opening takes one pass: side files
 * (config.json, index, tokenizer) are kept in memory, every .safetensors
 * entry's header is parsed, and the bytes of the small *_scale_inv tensors
 * are copied so FP8 weights can be dequantized as they stream past later.
 * Streaming the tensors (src.c) reopens the archive and reads it forward
 * once more.  Entry names are only compared, never used as paths, so hostile
 * names cannot make us touch the file system.
 */
#include "ckpt_int.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdio.h>

typedef struct cand {
    char *path;       /* normalised entry path; from malloc */
    int kind;         /* 0 regular safetensors, 1 blob, 2 not a regular file, 3 bad shard */
    char *errmsg;     /* kind 3: why the shard could not be read; from malloc */
    int errcode;
    int blob;         /* blob index for kind 1 */
    char *data;       /* blob bytes */
    size_t len;
    ck_shard shard;   /* kind 0 */
    int order;        /* position in the archive */
} cand;

struct archive *dsq_ar_open(const char *path, dsq_err *err) {
    struct archive *a = archive_read_new();
    if (!a) {
        dsq_fail(err, DSQ_E_NOMEM, "out of memory");
        return NULL;
    }
    /* Only decompressors built into libarchive's libraries: with
     * archive_read_support_filter_all a hostile file can make libarchive run
     * external programs (lrzip, grzip, ...).  Formats: tar and zip. */
    archive_read_support_filter_gzip(a);
    archive_read_support_filter_bzip2(a);
    archive_read_support_filter_xz(a);
    archive_read_support_filter_lzma(a);
    archive_read_support_filter_zstd(a);
    archive_read_support_filter_lz4(a);
    archive_read_support_format_tar(a);
    archive_read_support_format_zip(a);
    if (archive_read_open_filename(a, path, 1 << 20) != ARCHIVE_OK) {
        dsq_fail(err, DSQ_E_FORMAT, "%s: not a checkpoint folder, safetensors file or readable archive (%s)",
                 path, archive_error_string(a) ? archive_error_string(a) : "unknown format");
        archive_read_free(a);
        return NULL;
    }
    return a;
}

/* Normalised entry path: no leading "./" or "/". */
const char *dsq_ar_norm(const char *p) {
    while (p[0] == '.' && p[1] == '/') p += 2;
    while (p[0] == '/') p++;
    return p;
}

int dsq_ar_read(struct archive *a, void *buf, size_t n, const char *what, dsq_err *err) {
    uint8_t *b = buf;
    while (n) {
        la_ssize_t r = archive_read_data(a, b, n);
        if (r < 0)
            return dsq_fail(err, DSQ_E_FORMAT, "%s: damaged archive: %s", what,
                            archive_error_string(a) ? archive_error_string(a) : "read error");
        if (r == 0) return dsq_fail(err, DSQ_E_FORMAT, "%s: truncated inside the archive", what);
        b += r;
        n -= (size_t)r;
    }
    return DSQ_OK;
}

int dsq_ar_skip(struct archive *a, uint64_t n, const char *what, dsq_err *err) {
    static uint8_t sink[1 << 16]; /* contents never read */
    while (n) {
        size_t k = n > sizeof sink ? sizeof sink : (size_t)n;
        int rc = dsq_ar_read(a, sink, k, what, err);
        if (rc) return rc;
        n -= k;
    }
    return DSQ_OK;
}

/* Read n bytes into a new buffer (from malloc, one spare byte), growing it
 * as the bytes arrive: n comes from the archive's own claims, and a few
 * hundred bytes of tar header must not make us allocate gigabytes before
 * the data turns out to be missing. */
static int read_grow(struct archive *a, uint64_t n, uint8_t **out, const char *what, dsq_err *err) {
    uint64_t have = 0, cap = n < (1u << 20) ? n : (1u << 20);
    uint8_t *b = dsq_malloc(cap + 1);
    *out = NULL;
    if (!b) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    while (have < n) {
        if (have == cap) {
            uint64_t nc = cap * 2 < n ? cap * 2 : n;
            uint8_t *nb = dsq_realloc(b, nc + 1);
            if (!nb) {
                free(b);
                return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
            }
            b = nb;
            cap = nc;
        }
        int rc = dsq_ar_read(a, b + have, cap - have, what, err);
        if (rc) {
            free(b);
            return rc;
        }
        have = cap;
    }
    *out = b;
    return DSQ_OK;
}

/* Parse one .safetensors entry: header, then copies of the scale tensors. */
static int read_shard_entry(struct archive *a, struct archive_entry *ent, cand *c,
                            const char *arpath, dsq_err *err) {
    char what[1200];
    snprintf(what, sizeof what, "%s:%s", arpath, c->path);
    ck_shard *s = &c->shard;
    s->fd = -1;
    if (!archive_entry_size_is_set(ent))
        return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: entry size unknown", what);
    s->size = (uint64_t)archive_entry_size(ent);
    if (s->size < 8)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: truncated (%llu bytes, no header length)", what,
                        (unsigned long long)s->size);
    uint8_t len8[8];
    int rc = dsq_ar_read(a, len8, 8, what, err);
    if (rc) return rc;
    uint64_t n = dsq_le64(len8);
    if (n > ST_MAX_HEADER)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: header length %llu exceeds the 100000000-byte limit",
                        what, (unsigned long long)n);
    if (n > s->size - 8)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: header length %llu beyond the end of the file (%llu bytes)",
                        what, (unsigned long long)n, (unsigned long long)s->size);
    uint8_t *hdr;
    rc = read_grow(a, n, &hdr, what, err);
    if (!rc) rc = st_parse_header(&s->h, what, (const char *)hdr, n, s->size - 8 - n, err);
    free(hdr);
    if (rc) return rc;
    s->edata = dsq_calloc((size_t)s->h.n + 1, sizeof *s->edata);
    if (!s->edata) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    int last = -1;
    static const char sfx[] = "_scale_inv";
    for (int k = 0; k < s->h.n; k++) {
        size_t L = strlen(s->h.e[k].name);
        if (L > sizeof sfx && !strcmp(s->h.e[k].name + L - (sizeof sfx - 1), sfx)) last = k;
    }
    uint64_t pos = 0;
    for (int k = 0; k <= last; k++) {
        const st_entry *e = &s->h.e[k];
        size_t L = strlen(e->name);
        if (!(L > sizeof sfx && !strcmp(e->name + L - (sizeof sfx - 1), sfx))) continue;
        if ((rc = dsq_ar_skip(a, e->begin - pos, what, err))) return rc;
        if ((rc = read_grow(a, e->end - e->begin, &s->edata[k], what, err))) return rc;
        pos = e->end;
    }
    return DSQ_OK;
}

static void cand_free(cand *c) {
    free(c->path);
    free(c->errmsg);
    free(c->data);
    ck_shard *s = &c->shard;
    if (s->edata) {
        for (int k = 0; k < s->h.n; k++) free(s->edata[k]);
        free(s->edata);
    }
    st_header_free(&s->h);
    free(s->name);
    free(s->path);
}

static int cmp_order(const void *a, const void *b) {
    return (*(cand *const *)a)->order - (*(cand *const *)b)->order;
}

int ck_open_archive(dsq_ckpt *ck, int flags, dsq_err *err) {
    int rc = DSQ_OK, n = 0, cap = 0;
    cand *cs = NULL;
    cand **pick = NULL;
    char **names = NULL;
    int n_names = 0;
    struct archive *a = dsq_ar_open(ck->path, err);
    if (!a) return err->code;
    struct archive_entry *ent;
    for (;;) {
        int r = archive_read_next_header(a, &ent);
        if (r == ARCHIVE_EOF) break;
        if (r < ARCHIVE_WARN) {
            rc = dsq_fail(err, DSQ_E_FORMAT, "%s: damaged archive: %s", ck->path,
                          archive_error_string(a) ? archive_error_string(a) : "bad entry header");
            goto out;
        }
        const char *p = archive_entry_pathname(ent);
        if (!p) continue;
        p = dsq_ar_norm(p);
        const char *base = dsq_basename(p);
        size_t bl = strlen(base);
        int is_st = bl > 12 && !strcmp(base + bl - 12, ".safetensors");
        int blob = -1;
        for (int b = 0; b < CK_N_BLOBS; b++)
            if (!strcmp(base, ck_blob_names[b])) blob = b;
        if (!is_st && blob < 0) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            cand *nc = dsq_realloc(cs, sizeof *nc * (size_t)cap);
            if (!nc) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto out; }
            cs = nc;
        }
        cand *c = &cs[n++];
        memset(c, 0, sizeof *c);
        c->order = n;
        c->shard.fd = -1;
        c->path = dsq_strdup(p);
        if (!c->path) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto out; }
        if (archive_entry_filetype(ent) != AE_IFREG) {
            c->kind = 2;
            continue;
        }
        if (blob >= 0) {
            c->kind = 1;
            c->blob = blob;
            if (!archive_entry_size_is_set(ent) || (uint64_t)archive_entry_size(ent) > CK_BLOB_CAP) {
                rc = dsq_fail(err, DSQ_E_FORMAT, "%s:%s: size unknown or too large", ck->path, p);
                goto out;
            }
            c->len = (size_t)archive_entry_size(ent);
            c->data = dsq_malloc(c->len + 1);
            if (!c->data) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto out; }
            char what[1200];
            snprintf(what, sizeof what, "%s:%s", ck->path, p);
            if ((rc = dsq_ar_read(a, c->data, c->len, what, err))) goto out;
            c->data[c->len] = 0;
            continue;
        }
        c->kind = 0;
        /* A bad .safetensors entry only matters if the checkpoint uses it:
         * archives may hold unrelated or hostile files beside it. */
        if ((rc = read_shard_entry(a, ent, c, ck->path, err))) {
            c->kind = 3;
            c->errcode = rc;
            c->errmsg = dsq_strdup(err->msg);
            rc = DSQ_OK;
        }
    }
    /* the folder is where config.json is */
    int cfg = -1;
    for (int i = 0; i < n; i++)
        if (cs[i].kind == 1 && cs[i].blob == CK_CONFIG) {
            if (cfg >= 0) {
                rc = dsq_fail(err, DSQ_E_FORMAT, "%s: several config.json in the archive ('%s', '%s')",
                              ck->path, cs[cfg].path, cs[i].path);
                goto out;
            }
            cfg = i;
        }
    if (cfg < 0) {
        rc = dsq_fail(err, DSQ_E_CONFIG, "%s: no config.json in the archive", ck->path);
        goto out;
    }
    int rootlen = (int)(dsq_basename(cs[cfg].path) - cs[cfg].path);
    const char *root = cs[cfg].path;
    for (int i = 0; i < n; i++)
        if (cs[i].kind == 1 && (int)(dsq_basename(cs[i].path) - cs[i].path) == rootlen &&
            !strncmp(cs[i].path, root, (size_t)rootlen)) {
            ck->blob[cs[i].blob] = cs[i].data;
            ck->blob_len[cs[i].blob] = cs[i].len;
            cs[i].data = NULL;
        }
    /* which shards: from the index, or the single model.safetensors */
    if (ck->blob[CK_INDEX]) {
        if ((rc = ck_index_shards(ck, &names, &n_names, err))) goto out;
    } else {
        names = dsq_malloc(sizeof *names);
        if (!names || !(names[0] = dsq_strdup("model.safetensors"))) {
            rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory");
            goto out;
        }
        n_names = 1;
    }
    pick = dsq_calloc((size_t)n_names, sizeof *pick);
    if (!pick) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto out; }
    for (int k = 0; k < n_names; k++) {
        cand *found = NULL;
        for (int i = 0; i < n && !found; i++)
            if ((int)(dsq_basename(cs[i].path) - cs[i].path) == rootlen &&
                !strncmp(cs[i].path, root, (size_t)rootlen) && !strcmp(cs[i].path + rootlen, names[k]))
                found = &cs[i];
        if (!found) {
            rc = dsq_fail(err, DSQ_E_IO, "%s:%.*s%s: missing shard", ck->path, rootlen, root, names[k]);
            goto out;
        }
        if (found->kind == 3) {
            rc = dsq_fail(err, found->errcode, "%s", found->errmsg ? found->errmsg : "bad shard");
            goto out;
        }
        if (found->kind != 0) {
            rc = dsq_fail(err, DSQ_E_IO, "%s:%s: shard is not a regular file inside the archive",
                          ck->path, found->path);
            goto out;
        }
        pick[k] = found;
    }
    qsort(pick, (size_t)n_names, sizeof *pick, cmp_order); /* archive order = stream order */
    ck->shards = dsq_calloc((size_t)n_names, sizeof *ck->shards);
    if (!ck->shards) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto out; }
    for (int k = 0; k < n_names; k++) {
        ck_shard *s = &ck->shards[ck->n_shards++];
        *s = pick[k]->shard;
        memset(&pick[k]->shard, 0, sizeof pick[k]->shard);
        s->path = pick[k]->path;
        pick[k]->path = NULL;
        s->name = dsq_strdup(dsq_basename(s->path));
        if (!s->name) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto out; }
    }
    rc = ck_finish(ck, flags, err);
out:
    for (int i = 0; i < n_names; i++) free(names[i]);
    free(names);
    free(pick);
    for (int i = 0; i < n; i++) cand_free(&cs[i]);
    free(cs);
    archive_read_free(a);
    return rc;
}
