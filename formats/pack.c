/*
 * pack.c -- packaging a .dsq container for distribution and reassembling it
 * (docs/PACKAGING.md describes the archive layout, the manifest and the
 * verification rules).
 *
 * pack:   pass 1 reads the container once with a fixed buffer, checking every
 *         array and side-file checksum of its directory and computing the
 *         xxh3-64 of each part and of the whole file; the manifest and the
 *         model card (its text comes from the caller's callback: the card's
 *         contents are pipeline/card.c's, only its place in the archive is
 *         this file's) are then written first, and pass 2 streams the parts
 *         into tar entries (hashing them again, so a container changed
 *         between the passes is caught).  libarchive writes through our own
 *         callback into the atomic-file layer, which owns the output file.
 * unpack: reads the archive forward, refuses any entry that is not a regular
 *         file with a plain name, checks each part's size and checksum as it
 *         streams into a temporary file in DIR, then the whole-file checksum,
 *         then opens the temporary file as a container and checks every array
 *         checksum; only then is it renamed into place.
 *
 * Entry names are compared with the manifest, never used as paths: the only
 * path written is DIR/<container name>, and that name must be plain.
 */
#include "formats/pack.h"
#include "formats/container.h"
#include "formats_int.h"
#include "formats/json.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#define PK_CHUNK (4u << 20)          /* read size of both passes */
#define PK_MANIFEST_CAP (16u << 20)  /* 99999 parts need about 10 MiB */
#define PK_NAME_CAP DSQ_PACK_NAME_CAP
#define PK_MAX_INT (1ull << 53)      /* sizes and offsets: exact as cJSON's doubles */
#define PK_MANIFEST "manifest.json"
#define PK_CARD "MODEL_CARD.md"
#define PK_FORMAT "dsq-pack"

typedef dsq_pack_part pk_part;

/* The manifest as parsed (unpack, check) or planned (pack). */
typedef struct pk_man {
    char name[PK_NAME_CAP];  /* container file name */
    uint64_t size, xxh3, part_size;
    pk_part *p;              /* from malloc */
    int n;
    int has_card;
    uint64_t card_size, card_xxh3;
} pk_man;

/* ========================================================================
 * Small helpers
 * ======================================================================== */

/* NULL if s is a plain file name we may create or expect, else what is wrong
 * with it (for "entry 'x' has <problem>: refused"). */
static const char *name_problem(const char *s) {
    size_t n = strlen(s);
    if (!n) return "an empty name";
    if (s[0] == '/') return "an absolute path";
    if (!strcmp(s, "..") || !strncmp(s, "../", 3) || strstr(s, "/../") || (n >= 3 && !strcmp(s + n - 3, "/..")))
        return "a path leading outside the output folder";
    if (!strcmp(s, ".")) return "the name '.'";
    if (strchr(s, '/')) return "a path into a subfolder";
    if (strchr(s, '\\')) return "a backslash in its name";
    if (n >= PK_NAME_CAP) return "a name too long";
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return "control characters in its name";
    return NULL;
}

/* Copy a name for messages: control characters become '?', long names are cut. */
static void shown(char *dst, size_t cap, const char *s) {
    size_t i = 0;
    for (; s[i] && i + 4 < cap; i++) dst[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    if (s[i]) memcpy(dst + (i > cap - 4 ? cap - 4 : i), "...", 4);
    else dst[i] = 0;
}

/* Replace every occurrence of `from` in err->msg by `to` (the temporary
 * file's name by the final one). */
static void msg_subst(dsq_err *err, const char *from, const char *to) {
    char out[sizeof err->msg];
    size_t o = 0, fl = strlen(from), tl = strlen(to);
    const char *p = err->msg;
    if (!fl) return;
    while (*p && o + 1 < sizeof out) {
        if (!strncmp(p, from, fl) && o + tl + 1 < sizeof out) {
            memcpy(out + o, to, tl);
            o += tl;
            p += fl;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = 0;
    memcpy(err->msg, out, o + 1);
}

static ssize_t read_full(int fd, uint8_t *b, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, b + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* ========================================================================
 * Checking a container in one forward pass
 *
 * The directory lists where every array (every expert slice of a stacked
 * one) and side file lives and its xxh3.  Sorted by offset they can all be
 * hashed while the file streams past once, alongside the part and
 * whole-file hashes, with one fixed buffer: no mapping grows with the file.
 * ======================================================================== */

typedef struct pk_span {
    uint64_t off, size, want;
    int t, k, e;        /* tensor, array, expert; t < 0: side file -1 - t */
} pk_span;

static int cmp_span(const void *x, const void *y) {
    const pk_span *a = x, *b = y;
    return a->off < b->off ? -1 : a->off > b->off;
}

typedef struct pk_files {
    cJSON *root;        /* parsed metadata; the names point into it */
    const char **name;  /* from malloc */
    int n;
} pk_files;

static const char *const g_arr[DSQ_ARR_N] = {"data", "scale", "zero"};

static void span_fail_msg(const dsq_ctr *c, const pk_files *fl, const pk_span *s, const char *path,
                          dsq_err *err) {
    if (s->t < 0) {
        dsq_fail(err, DSQ_E_CHECKSUM, "%s: file '%s': checksum mismatch", path, fl->name[-1 - s->t]);
        return;
    }
    const dsq_ctensor *t = dsq_ctr_tensor(c, s->t);
    if (t->experts)
        dsq_fail(err, DSQ_E_CHECKSUM, "%s: tensor '%s' expert %d: %s checksum mismatch", path, t->name, s->e,
                 g_arr[s->k]);
    else
        dsq_fail(err, DSQ_E_CHECKSUM, "%s: tensor '%s': %s checksum mismatch", path, t->name, g_arr[s->k]);
}

/* Stream the container file at `path` (opened as c) once.  Checks every
 * array and side-file checksum; fills parts[i].xxh3 for the given cut
 * (parts may be NULL) and *whole (may be NULL).  `label` names the file in
 * messages.  buf holds PK_CHUNK bytes. */
static int sweep(const dsq_ctr *c, const char *path, const char *label, pk_part *parts, int n_parts,
                 uint64_t *whole, int64_t *n_checked, uint8_t *buf, dsq_err *err) {
    int rc = DSQ_OK, fd = -1, ns = 0;
    pk_span *sp = NULL;
    pk_files fl = {0};
    XXH3_state_t *xw = XXH3_createState(), *xp = XXH3_createState(), *xs = XXH3_createState();
    uint64_t size = dsq_ctr_file_size(c);
    size_t cap = 16;
    if (!xw || !xp || !xs) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto fail; }
    for (int i = 0; i < dsq_ctr_n_tensors(c); i++)
        for (int k = 0; k < DSQ_ARR_N; k++) cap += (size_t)dsq_ctr_tensor(c, i)->arr[k].n_hash;
    /* side files: the metadata was validated by dsq_ctr_open */
    fl.root = dsq_json_parse(dsq_ctr_meta(c), strlen(dsq_ctr_meta(c)), NULL);
    const cJSON *fs = dsq_json_get(fl.root, "files");
    int nf = cJSON_IsArray(fs) ? cJSON_GetArraySize(fs) : 0;
    cap += (size_t)nf;
    sp = dsq_malloc(cap * sizeof *sp);
    fl.name = dsq_calloc((size_t)nf + 1, sizeof *fl.name);
    if (!fl.root || !sp || !fl.name) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto fail; }
    for (int i = 0; i < dsq_ctr_n_tensors(c); i++) {
        const dsq_ctensor *t = dsq_ctr_tensor(c, i);
        for (int k = 0; k < DSQ_ARR_N; k++) {
            const dsq_carray *a = &t->arr[k];
            if (!a->size || a->n_hash < 1) continue;
            uint64_t sl = a->size / (uint64_t)a->n_hash;
            for (int e = 0; e < a->n_hash; e++)
                sp[ns++] = (pk_span){a->offset + sl * (uint64_t)e, sl, a->xxh3[e], i, k, e};
        }
    }
    for (const cJSON *f = fs ? fs->child : NULL; f; f = f->next) {
        const char *nm = dsq_json_str(dsq_json_get(f, "name"));
        uint64_t off, sz, h;
        if (!nm || !dsq_json_key_u64(f, "offset", 0, PK_MAX_INT, &off) ||
            !dsq_json_key_u64(f, "size", 0, PK_MAX_INT, &sz) || !dsq_json_hex64(dsq_json_get(f, "xxh3"), &h) ||
            off > size || sz > size - off) {
            rc = dsq_fail(err, DSQ_E_FORMAT, "%s: metadata file entry %d is malformed", label, fl.n);
            goto fail;
        }
        fl.name[fl.n] = nm;
        sp[ns++] = (pk_span){off, sz, h, -1 - fl.n, 0, 0};
        fl.n++;
    }
    qsort(sp, (size_t)ns, sizeof *sp, cmp_span);
    int64_t n = 0;
    for (int i = 0; i < ns; i++) {
        if (i && sp[i].off < sp[i - 1].off + sp[i - 1].size) {
            rc = dsq_fail(err, DSQ_E_FORMAT, "%s: overlapping arrays in the directory", label);
            goto fail;
        }
        if (!sp[i].size && XXH3_64bits(NULL, 0) != sp[i].want) {
            span_fail_msg(c, &fl, &sp[i], label, err);
            rc = DSQ_E_CHECKSUM;
            goto fail;
        }
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        rc = dsq_fail(err, DSQ_E_IO, "%s: cannot open: %s", label, strerror(errno));
        goto fail;
    }
    if ((uint64_t)st.st_size != size) {
        rc = dsq_fail(err, DSQ_E_IO, "%s: changed while being read (%llu bytes, was %llu)", label,
                      (unsigned long long)st.st_size, (unsigned long long)size);
        goto fail;
    }
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    XXH3_64bits_reset(xw);
    XXH3_64bits_reset(xp);
    uint64_t pos = 0;
    int si = 0, in = 0, pi = 0;
    while (pos < size) {
        while (si < ns && !sp[si].size) si++, n++; /* empty spans were checked above */
        size_t want = size - pos < PK_CHUNK ? (size_t)(size - pos) : PK_CHUNK;
        if (read_full(fd, buf, want) != (ssize_t)want) {
            rc = dsq_fail(err, DSQ_E_IO, "%s: read failed or file shrank at byte %llu", label, (unsigned long long)pos);
            goto fail;
        }
        uint64_t end = pos + want, q;
        if (whole) XXH3_64bits_update(xw, buf, want);
        for (q = pos; parts && q < end && pi < n_parts;) {
            uint64_t pend = parts[pi].off + parts[pi].size;
            uint64_t take = (pend < end ? pend : end) - q;
            XXH3_64bits_update(xp, buf + (q - pos), (size_t)take);
            q += take;
            if (q == pend) {
                parts[pi++].xxh3 = XXH3_64bits_digest(xp);
                XXH3_64bits_reset(xp);
            }
        }
        for (q = pos; q < end;) {
            if (!in) {
                while (si < ns && !sp[si].size) si++, n++;
                if (si == ns || sp[si].off >= end) break;
                q = sp[si].off;
                XXH3_64bits_reset(xs);
                in = 1;
            }
            uint64_t send = sp[si].off + sp[si].size;
            uint64_t take = (send < end ? send : end) - q;
            XXH3_64bits_update(xs, buf + (q - pos), (size_t)take);
            q += take;
            if (q == send) {
                if (XXH3_64bits_digest(xs) != sp[si].want) {
                    span_fail_msg(c, &fl, &sp[si], label, err);
                    rc = DSQ_E_CHECKSUM;
                    goto fail;
                }
                n++;
                si++;
                in = 0;
            }
        }
        pos = end;
    }
    while (si < ns && !sp[si].size) si++, n++;
    if (si < ns) { /* cannot happen after dsq_ctr_open's bounds checks */
        rc = dsq_fail(err, DSQ_E_FORMAT, "%s: an array lies beyond the end of the file", label);
        goto fail;
    }
    if (whole) *whole = XXH3_64bits_digest(xw);
    if (n_checked) *n_checked = n;
fail:
    if (fd >= 0) close(fd);
    XXH3_freeState(xw);
    XXH3_freeState(xp);
    XXH3_freeState(xs);
    free(sp);
    free(fl.name);
    cJSON_Delete(fl.root);
    return rc;
}

/* ========================================================================
 * Manifest
 * ======================================================================== */

/* Parameters and stored bytes (codes, scales, zero points) of every tensor,
 * routed experts counted one matrix each. */
static void totals(const dsq_ctr *c, int64_t *params, uint64_t *bytes) {
    *params = 0;
    *bytes = 0;
    for (int i = 0; i < dsq_ctr_n_tensors(c); i++) {
        const dsq_ctensor *t = dsq_ctr_tensor(c, i);
        *params += t->rows * t->cols * (t->experts ? t->experts : 1);
        *bytes += t->arr[0].size + t->arr[1].size + t->arr[2].size;
    }
}

static char *build_manifest(const dsq_ctr *c, const cJSON *meta, const pk_man *m) {
    char hx[17];
    const dsq_config *g = dsq_ctr_config(c);
    int64_t params;
    uint64_t bytes;
    totals(c, &params, &bytes);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "format", PK_FORMAT);
    cJSON_AddStringToObject(o, "format_version", "1.0");
    cJSON_AddStringToObject(o, "dsq_version", DSQ_VERSION_STRING);
    cJSON *ct = cJSON_AddObjectToObject(o, "container");
    cJSON_AddStringToObject(ct, "name", m->name);
    cJSON_AddNumberToObject(ct, "size", (double)m->size);
    dsq_hex16(hx, m->xxh3);
    cJSON_AddStringToObject(ct, "xxh3", hx);
    cJSON_AddStringToObject(ct, "format_version", dsq_json_key_str(meta, "format_version", "1.0"));
    cJSON_AddNumberToObject(o, "part_size", (double)m->part_size);
    cJSON *pa = cJSON_AddArrayToObject(o, "parts");
    for (int i = 0; i < m->n; i++) {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "name", m->p[i].name);
        cJSON_AddNumberToObject(p, "offset", (double)m->p[i].off);
        cJSON_AddNumberToObject(p, "size", (double)m->p[i].size);
        dsq_hex16(hx, m->p[i].xxh3);
        cJSON_AddStringToObject(p, "xxh3", hx);
        cJSON_AddItemToArray(pa, p);
    }
    if (m->has_card) {
        cJSON *cd = cJSON_AddObjectToObject(o, "card");
        cJSON_AddStringToObject(cd, "name", PK_CARD);
        cJSON_AddNumberToObject(cd, "size", (double)m->card_size);
        dsq_hex16(hx, m->card_xxh3);
        cJSON_AddStringToObject(cd, "xxh3", hx);
    }
    cJSON *md = cJSON_AddObjectToObject(o, "model");
    cJSON_AddStringToObject(md, "model_type", g->model_type);
    cJSON_AddNumberToObject(md, "n_layers", g->n_layers);
    cJSON_AddNumberToObject(md, "n_mtp_layers", g->n_mtp_layers);
    cJSON_AddNumberToObject(md, "hidden_size", g->hidden_size);
    cJSON_AddNumberToObject(md, "vocab_size", g->vocab_size);
    cJSON_AddNumberToObject(md, "n_routed_experts", g->n_routed_experts);
    cJSON_AddNumberToObject(md, "tensors", dsq_ctr_n_tensors(c));
    cJSON_AddNumberToObject(md, "params", (double)params);
    cJSON_AddNumberToObject(md, "tensor_bytes", (double)bytes);
    cJSON_AddNumberToObject(md, "bits_per_weight", params ? 8.0 * (double)bytes / (double)params : 0.0);
    cJSON_AddStringToObject(md, "recipe", dsq_json_key_str(dsq_json_get(meta, "recipe"), "name", "unknown"));
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}

/* ========================================================================
 * Pack
 * ======================================================================== */

typedef struct pk_writer {
    dsq_afile *f;
    int eno;         /* errno of the first failed write */
} pk_writer;

/* libarchive's output callback: everything goes through the atomic file. */
static la_ssize_t pk_write_cb(struct archive *a, void *ud, const void *buf, size_t n) {
    pk_writer *w = ud;
    if (dsq_afile_write(w->f, buf, n)) {
        if (!w->eno) w->eno = errno ? errno : EIO;
        archive_set_error(a, w->eno, "%s", strerror(w->eno));
        return -1;
    }
    return (la_ssize_t)n;
}

static int ar_fail(struct archive *a, const pk_writer *w, const char *out, dsq_err *err) {
    if (w->eno) return dsq_fail(err, DSQ_E_IO, "%s: write failed: %s", out, strerror(w->eno));
    return dsq_fail(err, DSQ_E_IO, "%s: archive write failed: %s", out,
                    archive_error_string(a) ? archive_error_string(a) : "unknown error");
}

static int put_header(struct archive *a, const char *name, uint64_t size, time_t mtime) {
    struct archive_entry *e = archive_entry_new();
    if (!e) return ARCHIVE_FATAL;
    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, (la_int64_t)size);
    archive_entry_set_mtime(e, mtime, 0);
    int r = archive_write_header(a, e);
    archive_entry_free(e);
    return r;
}

static int put_data(struct archive *a, const void *p, size_t n) {
    const uint8_t *b = p;
    while (n) {
        la_ssize_t w = archive_write_data(a, b, n);
        if (w <= 0) return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

int dsq_pack(const dsq_pack_opts *o, dsq_pack_info *info, dsq_err *err) {
    int rc = DSQ_OK, fd = -1;
    dsq_ctr *c = NULL;
    cJSON *meta = NULL;
    char *card = NULL, *man = NULL;
    uint8_t *buf = NULL;
    struct archive *a = NULL;
    XXH3_state_t *xp = NULL;
    pk_writer w = {0};
    pk_man m = {0};
    memset(info, 0, sizeof *info);
    m.part_size = o->part_size ? o->part_size : DSQ_PACK_DEFAULT_PART;
    if (o->compress < DSQ_PACK_NONE || o->compress > DSQ_PACK_ZSTD)
        return dsq_fail(err, DSQ_E_ARG, "pack: unknown compression %d", o->compress);
    const char *base = dsq_basename(o->src);
    const char *np = name_problem(base);
    if (np) return dsq_fail(err, DSQ_E_ARG, "%s: container file name has %s", o->src, np);
    snprintf(m.name, sizeof m.name, "%s", base);
    if ((rc = dsq_ctr_open(&c, o->src, err))) goto fail;
    m.size = dsq_ctr_file_size(c);
    uint64_t n_parts = (m.size + m.part_size - 1) / m.part_size;
    if (n_parts > DSQ_PACK_MAX_PARTS) {
        rc = dsq_fail(err, DSQ_E_ARG, "%s: part size %llu would make %llu parts (at most %d)", o->src,
                      (unsigned long long)m.part_size, (unsigned long long)n_parts, DSQ_PACK_MAX_PARTS);
        goto fail;
    }
    m.n = (int)n_parts;
    m.p = dsq_calloc((size_t)m.n, sizeof *m.p);
    buf = dsq_malloc(PK_CHUNK);
    meta = dsq_json_parse(dsq_ctr_meta(c), strlen(dsq_ctr_meta(c)), NULL);
    xp = XXH3_createState();
    if (!m.p || !buf || !meta || !xp) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto fail; }
    int width = m.n > 9999 ? 5 : 4;
    for (int i = 0; i < m.n; i++) {
        m.p[i].off = (uint64_t)i * m.part_size;
        m.p[i].size = i + 1 < m.n ? m.part_size : m.size - m.p[i].off;
        snprintf(m.p[i].name, sizeof m.p[i].name, "%s.part-%0*d-of-%0*d", m.name, width, i + 1, width, m.n);
    }
    /* pass 1: every checksum of the container, and those of the parts */
    if ((rc = sweep(c, o->src, o->src, m.p, m.n, &m.xxh3, &info->n_checked, buf, err))) {
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err->msg);
        rc = dsq_fail(err, rc, "%s (refusing to pack a damaged container)", why);
        goto fail;
    }
    /* the card may show every checksum, so it comes after pass 1 */
    if (o->card) {
        const dsq_pack_plan plan = {m.name, m.size, m.xxh3, m.part_size, m.n, m.p};
        if ((rc = o->card(o->card_arg, c, &plan, &card, err))) goto fail;
        m.has_card = 1;
        m.card_size = strlen(card);
        m.card_xxh3 = XXH3_64bits(card, m.card_size);
    }
    man = build_manifest(c, meta, &m);
    if (!man) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto fail; }

    /* pass 2: the archive */
    struct stat st;
    fd = open(o->src, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) { rc = dsq_fail(err, DSQ_E_IO, "%s: cannot open: %s", o->src, strerror(errno)); goto fail; }
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    if ((rc = dsq_afile_open(&w.f, o->out, o->force ? DSQ_AFILE_FORCE : 0, err))) goto fail;
    a = archive_write_new();
    if (!a) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto fail; }
    /* pax: ustar headers, with extended records only for long names or
     * parts over 8 GiB; readable by every tar since 2001 */
    archive_write_set_format_pax_restricted(a);
    if (o->compress == DSQ_PACK_ZSTD) {
        if (archive_write_add_filter_zstd(a) < ARCHIVE_WARN) {
            rc = dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: zstd compression is not available in this libarchive (%s); "
                          "use --compress gzip or none", o->out,
                          archive_error_string(a) ? archive_error_string(a) : "no zstd filter");
            goto fail;
        }
        if (o->threads > 1) {
            char t[16];
            snprintf(t, sizeof t, "%d", o->threads);
            archive_write_set_filter_option(a, "zstd", "threads", t); /* older libarchive: single-threaded */
        }
    } else if (o->compress == DSQ_PACK_GZIP) {
        if (archive_write_add_filter_gzip(a) < ARCHIVE_WARN) {
            rc = dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: gzip compression is not available in this libarchive (%s)",
                          o->out, archive_error_string(a) ? archive_error_string(a) : "no gzip filter");
            goto fail;
        }
        /* no timestamp in the gzip header: the same container packs to the same bytes */
        archive_write_set_filter_option(a, "gzip", "timestamp", NULL);
    }
    /* Large blocks cut the per-call overhead; the last one is not padded
     * beyond the tar end marker. */
    archive_write_set_bytes_per_block(a, 1 << 20);
    archive_write_set_bytes_in_last_block(a, 1);
    if (archive_write_open(a, &w, NULL, pk_write_cb, NULL) != ARCHIVE_OK) { rc = ar_fail(a, &w, o->out, err); goto fail; }
    /* entry times from the container, not the clock: packing the same
     * container twice gives the same archive */
    time_t mtime = st.st_mtime;
    if (put_header(a, PK_MANIFEST, strlen(man), mtime) < ARCHIVE_WARN || put_data(a, man, strlen(man)) ||
        (m.has_card &&
         (put_header(a, PK_CARD, m.card_size, mtime) < ARCHIVE_WARN || put_data(a, card, m.card_size)))) {
        rc = ar_fail(a, &w, o->out, err);
        goto fail;
    }
    uint64_t done = 0;
    for (int i = 0; i < m.n; i++) {
        if (put_header(a, m.p[i].name, m.p[i].size, mtime) < ARCHIVE_WARN) { rc = ar_fail(a, &w, o->out, err); goto fail; }
        XXH3_64bits_reset(xp);
        for (uint64_t left = m.p[i].size; left;) {
            size_t k = left < PK_CHUNK ? (size_t)left : PK_CHUNK;
            if (read_full(fd, buf, k) != (ssize_t)k) {
                rc = dsq_fail(err, DSQ_E_IO, "%s: read failed or file shrank while packing", o->src);
                goto fail;
            }
            XXH3_64bits_update(xp, buf, k);
            if (put_data(a, buf, k)) { rc = ar_fail(a, &w, o->out, err); goto fail; }
            left -= k;
            done += k;
            if (o->progress) o->progress(o->progress_arg, done, m.size);
        }
        if (XXH3_64bits_digest(xp) != m.p[i].xxh3) {
            rc = dsq_fail(err, DSQ_E_IO, "%s: changed while being packed (part %d differs from the first pass)",
                          o->src, i + 1);
            goto fail;
        }
    }
    if (archive_write_close(a) != ARCHIVE_OK) { rc = ar_fail(a, &w, o->out, err); goto fail; }
    archive_write_free(a);
    a = NULL;
    info->archive_bytes = dsq_afile_tell(w.f);
    rc = dsq_afile_commit(w.f, err);
    w.f = NULL;
    if (rc) goto fail;
    snprintf(info->name, sizeof info->name, "%s", m.name);
    info->size = m.size;
    info->xxh3 = m.xxh3;
    info->n_parts = m.n;
    info->part_size = m.part_size;
fail:
    if (a) archive_write_free(a);  /* closes first; our callbacks write into the temp file */
    if (w.f) dsq_afile_abort(w.f);
    if (fd >= 0) close(fd);
    XXH3_freeState(xp);
    dsq_ctr_close(c);
    cJSON_Delete(meta);
    free(card);
    free(man);
    free(buf);
    free(m.p);
    return rc;
}

/* ========================================================================
 * Reading a pack: an archive read forward, or a folder of its entries
 * ======================================================================== */

typedef struct pk_rd {
    const char *src;          /* archive or folder (messages) */
    struct archive *a;        /* archive source, or NULL for a folder */
    int dfd, fd;              /* folder source: the folder, the open entry */
    uint8_t *buf;             /* folder source: read buffer (PK_CHUNK), from malloc */
    char raw[PK_NAME_CAP];    /* current entry's name (validated plain) */
    char name[PK_NAME_CAP + 8];/* the same, safe to print */
    uint64_t size, pos;       /* declared size, bytes consumed */
} pk_rd;

static void rd_close(pk_rd *r) {
    if (r->a) archive_read_free(r->a);
    if (r->fd >= 0) close(r->fd);
    if (r->dfd >= 0) close(r->dfd);
    free(r->buf);
    r->a = NULL;
    r->fd = r->dfd = -1;
    r->buf = NULL;
}

static int rd_open(pk_rd *r, const char *src, dsq_err *err) {
    memset(r, 0, sizeof *r);
    r->src = src;
    r->fd = r->dfd = -1;
    struct stat st;
    if (stat(src, &st) != 0) return dsq_fail(err, DSQ_E_IO, "%s: %s", src, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        r->dfd = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        r->buf = dsq_malloc(PK_CHUNK);
        if (r->dfd < 0) return dsq_fail(err, DSQ_E_IO, "%s: cannot open: %s", src, strerror(errno));
        if (!r->buf) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
        return DSQ_OK;
    }
    r->a = archive_read_new();
    if (!r->a) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    /* tar only, and only the compressions a pack may carry: hostile input
     * should not reach every decoder libarchive has */
    archive_read_support_format_tar(r->a);
    archive_read_support_filter_gzip(r->a);
    archive_read_support_filter_zstd(r->a);
    archive_read_support_filter_xz(r->a);
    archive_read_support_filter_bzip2(r->a);
    if (archive_read_open_filename(r->a, src, 1 << 20) != ARCHIVE_OK)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: not a .dsq container nor a pack archive (%s)", src,
                        archive_error_string(r->a) ? archive_error_string(r->a) : "unknown format");
    return DSQ_OK;
}

/* Next entry.  Archive: the next one in the archive, whatever `want` says;
 * DSQ_EOF at the end.  Folder: the file `want` in the folder; DSQ_EOF if it
 * does not exist.  Any entry that is not a regular file with a plain name is
 * refused here, before anything looks at its contents. */
static int rd_next(pk_rd *r, const char *want, dsq_err *err) {
    r->pos = 0;
    if (!r->a) {
        if (r->fd >= 0) close(r->fd);
        snprintf(r->raw, sizeof r->raw, "%s", want);
        shown(r->name, sizeof r->name, want);
        r->fd = openat(r->dfd, want, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (r->fd < 0 && errno == ENOENT) return DSQ_EOF;
        if (r->fd < 0 && errno == ELOOP)
            return dsq_fail(err, DSQ_E_FORMAT, "%s/%s: is a symbolic link: refused", r->src, r->name);
        struct stat st;
        if (r->fd < 0 || fstat(r->fd, &st) != 0)
            return dsq_fail(err, DSQ_E_IO, "%s/%s: cannot open: %s", r->src, r->name, strerror(errno));
        if (!S_ISREG(st.st_mode)) return dsq_fail(err, DSQ_E_FORMAT, "%s/%s: not a regular file: refused", r->src, r->name);
        r->size = (uint64_t)st.st_size;
        return DSQ_OK;
    }
    struct archive_entry *e;
    int x = archive_read_next_header(r->a, &e);
    if (x == ARCHIVE_EOF) return DSQ_EOF;
    if (x < ARCHIVE_WARN)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: damaged or truncated archive: %s", r->src,
                        archive_error_string(r->a) ? archive_error_string(r->a) : "bad entry header");
    const char *p = archive_entry_pathname(e);
    if (!p) return dsq_fail(err, DSQ_E_FORMAT, "%s: entry without a readable name: refused", r->src);
    while (p[0] == '.' && p[1] == '/') p += 2;
    shown(r->name, sizeof r->name, p);
    char tgt[200];
    if (archive_entry_hardlink(e)) {
        shown(tgt, sizeof tgt, archive_entry_hardlink(e));
        return dsq_fail(err, DSQ_E_FORMAT, "%s: entry '%s' is a hard link (to '%s'): refused", r->src, r->name, tgt);
    }
    switch (archive_entry_filetype(e)) {
    case AE_IFREG: break;
    case AE_IFLNK:
        shown(tgt, sizeof tgt, archive_entry_symlink(e) ? archive_entry_symlink(e) : "?");
        return dsq_fail(err, DSQ_E_FORMAT, "%s: entry '%s' is a symbolic link (to '%s'): refused", r->src, r->name, tgt);
    case AE_IFDIR:
        return dsq_fail(err, DSQ_E_FORMAT, "%s: entry '%s' is a folder: refused (a pack holds plain files only)",
                        r->src, r->name);
    default:
        return dsq_fail(err, DSQ_E_FORMAT, "%s: entry '%s' is a device or special file: refused", r->src, r->name);
    }
    const char *why = name_problem(p);
    if (why) return dsq_fail(err, DSQ_E_FORMAT, "%s: entry '%s' has %s: refused", r->src, r->name, why);
    snprintf(r->raw, sizeof r->raw, "%s", p);
    if (!archive_entry_size_is_set(e) || archive_entry_size(e) < 0)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: entry '%s' has no size", r->src, r->name);
    r->size = (uint64_t)archive_entry_size(e);
    return DSQ_OK;
}

/* Next block of the current entry: DSQ_OK with *n > 0, or DSQ_EOF. */
static int rd_block(pk_rd *r, const uint8_t **p, size_t *n, dsq_err *err) {
    if (!r->a) {
        ssize_t k;
        do k = read(r->fd, r->buf, PK_CHUNK);
        while (k < 0 && errno == EINTR);
        if (k < 0) return dsq_fail(err, DSQ_E_IO, "%s/%s: read failed: %s", r->src, r->name, strerror(errno));
        if (k == 0) return DSQ_EOF;
        *p = r->buf;
        *n = (size_t)k;
        r->pos += (uint64_t)k;
        return DSQ_OK;
    }
    for (;;) {
        const void *b;
        size_t k;
        la_int64_t off;
        int x = archive_read_data_block(r->a, &b, &k, &off);
        if (x == ARCHIVE_EOF) return DSQ_EOF;
        if (x < ARCHIVE_WARN)
            return dsq_fail(err, DSQ_E_FORMAT, "%s: damaged or truncated archive in entry '%s': %s", r->src, r->name,
                            archive_error_string(r->a) ? archive_error_string(r->a) : "read error");
        if (off < 0 || (uint64_t)off != r->pos)
            return dsq_fail(err, DSQ_E_FORMAT, "%s: entry '%s' is sparse (has holes): refused", r->src, r->name);
        if (!k) continue;
        *p = b;
        *n = k;
        r->pos += k;
        return DSQ_OK;
    }
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* manifest.json, the first entry.  Everything after it is checked against
 * it, so every field that later decides a size, a name or the output path
 * is bounded here, and names are held to the same plain-name rule as the
 * archive's entries. */
static int rd_manifest(pk_rd *r, pk_man *m, dsq_err *err) {
    int rc = rd_next(r, PK_MANIFEST, err);
    if (rc == DSQ_EOF)
        return dsq_fail(err, DSQ_E_FORMAT, r->a ? "%s: empty archive: not a dsq pack" : "%s: no manifest.json in the folder",
                        r->src);
    if (rc) return rc;
    if (strcmp(r->raw, PK_MANIFEST))
        return dsq_fail(err, DSQ_E_FORMAT, "%s: first entry is '%s', not manifest.json: not a dsq pack", r->src, r->name);
    if (r->size > PK_MANIFEST_CAP)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: manifest.json is %llu bytes (limit %u)", r->src,
                        (unsigned long long)r->size, PK_MANIFEST_CAP);
    char *js = dsq_malloc(r->size + 1);
    if (!js) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    cJSON *root = NULL;
    const char **sorted = NULL;
    const uint8_t *p;
    size_t n, got = 0;
    while ((rc = rd_block(r, &p, &n, err)) == DSQ_OK) {
        if (n > r->size - got) { rc = dsq_fail(err, DSQ_E_FORMAT, "%s: manifest.json longer than declared", r->src); goto fail; }
        memcpy(js + got, p, n);
        got += n;
    }
    if (rc < 0) goto fail;
    if (got != r->size) { rc = dsq_fail(err, DSQ_E_FORMAT, "%s: manifest.json is truncated", r->src); goto fail; }
    js[got] = 0;
    long at;
    root = dsq_json_parse(js, got, &at);
    rc = DSQ_E_FORMAT;
    if (!cJSON_IsObject(root)) {
        dsq_fail(err, DSQ_E_FORMAT, "%s: manifest.json: invalid JSON near byte %ld (%s)", r->src, at, dsq_json_why());
        goto fail;
    }
    const char *fmt = dsq_json_key_str(root, "format", ""), *ver = dsq_json_key_str(root, "format_version", "");
    if (strcmp(fmt, PK_FORMAT)) {
        dsq_fail(err, DSQ_E_FORMAT, "%s: manifest.json: format is not \"%s\"", r->src, PK_FORMAT);
        goto fail;
    }
    if (strncmp(ver, "1.", 2)) {
        char v[40];
        shown(v, sizeof v, ver);
        rc = dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: manifest.json: pack format version '%s' (this dsq reads 1.x)", r->src, v);
        goto fail;
    }
    const cJSON *ct = dsq_json_get(root, "container"), *parts = dsq_json_get(root, "parts"), *cd = dsq_json_get(root, "card");
    const char *cn = dsq_json_key_str(ct, "name", "");
    const char *why = name_problem(cn);
    if (why || !strcmp(cn, PK_MANIFEST) || !strcmp(cn, PK_CARD)) {
        char v[80];
        shown(v, sizeof v, cn);
        dsq_fail(err, DSQ_E_FORMAT, "%s: manifest.json: container name '%s' refused (%s)", r->src, v,
                 why ? why : "reserved name");
        goto fail;
    }
    snprintf(m->name, sizeof m->name, "%s", cn);
    if (!dsq_json_key_u64(ct, "size", DSQ_CTR_HEADER, PK_MAX_INT, &m->size) || !dsq_json_hex64(dsq_json_get(ct, "xxh3"), &m->xxh3) ||
        !dsq_json_key_u64(root, "part_size", 1, PK_MAX_INT, &m->part_size)) {
        dsq_fail(err, DSQ_E_FORMAT, "%s: manifest.json: container size, xxh3 or part_size missing or invalid", r->src);
        goto fail;
    }
    int np = cJSON_IsArray(parts) ? cJSON_GetArraySize(parts) : 0;
    if (np < 1 || np > DSQ_PACK_MAX_PARTS) {
        dsq_fail(err, DSQ_E_FORMAT, "%s: manifest.json: needs 1 to %d parts", r->src, DSQ_PACK_MAX_PARTS);
        goto fail;
    }
    m->p = dsq_calloc((size_t)np, sizeof *m->p);
    if (!m->p) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto fail; }
    uint64_t off = 0;
    for (const cJSON *e = parts->child; e; e = e->next, m->n++) {
        pk_part *pp = &m->p[m->n];
        const char *pn = dsq_json_key_str(e, "name", "");
        uint64_t poff;
        if ((why = name_problem(pn)) || !strcmp(pn, PK_MANIFEST) || !strcmp(pn, PK_CARD)) {
            char v[80];
            shown(v, sizeof v, pn);
            dsq_fail(err, DSQ_E_FORMAT, "%s: manifest.json: part %d name '%s' refused (%s)", r->src, m->n + 1, v,
                     why ? why : "reserved name");
            goto fail;
        }
        snprintf(pp->name, sizeof pp->name, "%s", pn);
        if (!dsq_json_key_u64(e, "offset", 0, PK_MAX_INT, &poff) || !dsq_json_key_u64(e, "size", 1, m->part_size, &pp->size) ||
            !dsq_json_hex64(dsq_json_get(e, "xxh3"), &pp->xxh3)) {
            dsq_fail(err, DSQ_E_FORMAT, "%s: manifest.json: part %d needs offset, size (1 to part_size) and xxh3",
                     r->src, m->n + 1);
            goto fail;
        }
        if (poff != off || pp->size > m->size - off) {
            dsq_fail(err, DSQ_E_FORMAT, "%s: manifest.json: part %d at offset %llu does not continue part %d", r->src,
                     m->n + 1, (unsigned long long)poff, m->n);
            goto fail;
        }
        pp->off = off;
        off += pp->size;
    }
    /* unique names: in a folder source two parts must not be one file */
    sorted = dsq_malloc((size_t)m->n * sizeof *sorted);
    if (!sorted) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto fail; }
    for (int i = 0; i < m->n; i++) sorted[i] = m->p[i].name;
    qsort(sorted, (size_t)m->n, sizeof *sorted, cmp_str);
    for (int i = 1; i < m->n; i++)
        if (!strcmp(sorted[i - 1], sorted[i])) {
            char v[80];
            shown(v, sizeof v, sorted[i]);
            dsq_fail(err, DSQ_E_FORMAT, "%s: manifest.json: two parts are named '%s'", r->src, v);
            goto fail;
        }
    if (off != m->size) {
        dsq_fail(err, DSQ_E_FORMAT, "%s: manifest.json: parts add up to %llu bytes, the container has %llu", r->src,
                 (unsigned long long)off, (unsigned long long)m->size);
        goto fail;
    }
    if (cd) {
        if (strcmp(dsq_json_key_str(cd, "name", ""), PK_CARD) || !dsq_json_key_u64(cd, "size", 0, PK_MAX_INT, &m->card_size) ||
            !dsq_json_hex64(dsq_json_get(cd, "xxh3"), &m->card_xxh3)) {
            dsq_fail(err, DSQ_E_FORMAT, "%s: manifest.json: card entry invalid", r->src);
            goto fail;
        }
        m->has_card = 1;
    }
    rc = DSQ_OK;
fail:
    cJSON_Delete(root);
    free(js);
    free(sorted);
    return rc;
}

/* Hash the current entry (the card), checking its size. */
static int rd_hash_entry(pk_rd *r, uint64_t size, uint64_t xxh3, dsq_err *err) {
    if (r->size != size)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: %s is %llu bytes, the manifest says %llu", r->src, r->name,
                        (unsigned long long)r->size, (unsigned long long)size);
    XXH3_state_t *x = XXH3_createState();
    if (!x) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    XXH3_64bits_reset(x);
    const uint8_t *p;
    size_t n;
    int rc;
    while ((rc = rd_block(r, &p, &n, err)) == DSQ_OK) XXH3_64bits_update(x, p, n);
    uint64_t h = XXH3_64bits_digest(x);
    XXH3_freeState(x);
    if (rc < 0) return rc;
    if (r->pos != size)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: %s is truncated (%llu of %llu bytes)", r->src, r->name,
                        (unsigned long long)r->pos, (unsigned long long)size);
    if (h != xxh3) return dsq_fail(err, DSQ_E_CHECKSUM, "%s: %s: checksum mismatch", r->src, r->name);
    return DSQ_OK;
}

/* Everything after the manifest: the card, then every part in order,
 * streamed into out (may be NULL) while their checksums and the whole-file
 * checksum are computed; then the archive must end. */
static int rd_body(pk_rd *r, const pk_man *m, dsq_afile *out,
                   void (*progress)(void *, uint64_t, uint64_t), void *parg, dsq_pack_info *info, dsq_err *err) {
    int rc;
    uint8_t head[DSQ_CTR_HEADER] = {0};
    uint64_t done = 0;
    if (m->has_card) {
        rc = rd_next(r, PK_CARD, err);
        if (rc < 0) return rc;
        if (rc == DSQ_OK && strcmp(r->raw, PK_CARD))
            return dsq_fail(err, DSQ_E_FORMAT, "%s: entry '%s' found where MODEL_CARD.md was expected", r->src, r->name);
        if (rc == DSQ_EOF && r->a) return dsq_fail(err, DSQ_E_FORMAT, "%s: MODEL_CARD.md missing", r->src);
        if (rc == DSQ_OK) {
            if ((rc = rd_hash_entry(r, m->card_size, m->card_xxh3, err))) return rc;
            info->n_checked++;
        }
    }
    XXH3_state_t *xw = XXH3_createState(), *xp = XXH3_createState();
    if (!xw || !xp) {
        XXH3_freeState(xw);
        XXH3_freeState(xp);
        return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    }
    XXH3_64bits_reset(xw);
    /* Parts are matched by position as well as by name: concatenated in
     * another order, intact parts would make a different file, and a
     * message naming the misplaced part beats a whole-file mismatch at the
     * end. */
    for (int k = 0; k < m->n; k++) {
        const pk_part *p = &m->p[k];
        char pn[PK_NAME_CAP + 48];
        shown(pn, sizeof pn, p->name);
        rc = rd_next(r, p->name, err);
        if (rc < 0) goto fail;
        if (rc == DSQ_EOF) {
            if (r->a)
                rc = k ? dsq_fail(err, DSQ_E_FORMAT, "%s: part %d of %d ('%s') missing: the archive ends after part %d",
                                  r->src, k + 1, m->n, pn, k)
                       : dsq_fail(err, DSQ_E_FORMAT, "%s: part 1 of %d ('%s') missing: the archive ends before it",
                                  r->src, m->n, pn);
            else
                rc = dsq_fail(err, DSQ_E_FORMAT, "%s/%s: missing (part %d of %d)", r->src, pn, k + 1, m->n);
            goto fail;
        }
        if (strcmp(r->raw, p->name)) {
            int j = -1;
            for (int i = 0; i < m->n && j < 0; i++)
                if (!strcmp(r->raw, m->p[i].name)) j = i;
            if (j > k)
                rc = dsq_fail(err, DSQ_E_FORMAT, "%s: part %d of %d ('%s') missing or out of order: found part %d ('%s') in its place",
                              r->src, k + 1, m->n, pn, j + 1, r->name);
            else if (j >= 0)
                rc = dsq_fail(err, DSQ_E_FORMAT, "%s: parts out of order: part %d ('%s') appears again after part %d",
                              r->src, j + 1, r->name, k);
            else
                rc = dsq_fail(err, DSQ_E_FORMAT, "%s: unexpected entry '%s' where part %d of %d ('%s') was expected",
                              r->src, r->name, k + 1, m->n, pn);
            goto fail;
        }
        /* the declared size first: no use streaming a part that cannot match */
        if (r->size != p->size) {
            rc = dsq_fail(err, DSQ_E_FORMAT, "%s: part %d of %d ('%s') is %llu bytes, the manifest says %llu", r->src,
                          k + 1, m->n, pn, (unsigned long long)r->size, (unsigned long long)p->size);
            goto fail;
        }
        XXH3_64bits_reset(xp);
        const uint8_t *b;
        size_t n;
        while ((rc = rd_block(r, &b, &n, err)) == DSQ_OK) {
            if (r->pos > p->size) {
                rc = dsq_fail(err, DSQ_E_FORMAT, "%s: part %d of %d ('%s') is longer than the manifest says", r->src,
                              k + 1, m->n, pn);
                goto fail;
            }
            uint64_t at = p->off + r->pos - n; /* container offset of b[0] */
            if (at < DSQ_CTR_HEADER) memcpy(head + at, b, (size_t)(DSQ_CTR_HEADER - at < n ? DSQ_CTR_HEADER - at : n));
            XXH3_64bits_update(xp, b, n);
            XXH3_64bits_update(xw, b, n);
            if (out && dsq_afile_write(out, b, n)) {
                rc = dsq_fail(err, DSQ_E_IO, "%s: write failed: %s", m->name, strerror(errno));
                goto fail;
            }
            done += n;
            if (progress) progress(parg, done, m->size);
        }
        if (rc < 0) goto fail;
        if (r->pos != p->size) {
            rc = dsq_fail(err, DSQ_E_FORMAT, "%s: part %d of %d ('%s') is truncated (%llu of %llu bytes)", r->src, k + 1,
                          m->n, pn, (unsigned long long)r->pos, (unsigned long long)p->size);
            goto fail;
        }
        if (XXH3_64bits_digest(xp) != p->xxh3) {
            rc = dsq_fail(err, DSQ_E_CHECKSUM, "%s: part %d of %d ('%s'): checksum mismatch (damaged copy)", r->src,
                          k + 1, m->n, pn);
            goto fail;
        }
        info->n_checked++;
    }
    /* nothing may follow the parts: an archive holding more than the
     * manifest describes is not the pack it claims to be */
    if (r->a) {
        rc = rd_next(r, NULL, err);
        if (rc < 0) goto fail;
        if (rc == DSQ_OK) {
            rc = dsq_fail(err, DSQ_E_FORMAT, "%s: unexpected entry '%s' after the last part: refused", r->src, r->name);
            goto fail;
        }
    }
    uint64_t whole = XXH3_64bits_digest(xw);
    if (whole != m->xxh3) {
        char a[17], b[17];
        dsq_hex16(a, whole);
        dsq_hex16(b, m->xxh3);
        rc = dsq_fail(err, DSQ_E_CHECKSUM, "%s: reassembled container checksum mismatch (xxh3 %s, the manifest says %s)",
                      r->src, a, b);
        goto fail;
    }
    info->n_checked++;
    /* the container's own fixed header holds together and agrees with the
     * manifest's size: the checks dsq_ctr_open makes of the header alone */
    dsq_ctr_header hd;
    char what[PK_NAME_CAP + 300];
    snprintf(what, sizeof what, "%s: reassembled %s", r->src, m->name);
    if ((rc = dsq_ctr_header_decode(head, m->size, &hd, what, err))) goto fail;
    rc = DSQ_OK;
fail:
    XXH3_freeState(xw);
    XXH3_freeState(xp);
    return rc;
}

static void fill_info(dsq_pack_info *info, const pk_man *m, const pk_rd *r) {
    snprintf(info->name, sizeof info->name, "%s", m->name);
    info->size = m->size;
    info->xxh3 = m->xxh3;
    info->n_parts = m->n;
    info->part_size = m->part_size;
    info->folder = !r->a;
    info->archive_bytes = r->a ? (uint64_t)archive_filter_bytes(r->a, -1) : m->size;
}

int dsq_pack_check(const char *src, dsq_pack_info *info, dsq_err *err) {
    pk_rd r;
    pk_man m = {0};
    memset(info, 0, sizeof *info);
    int rc = rd_open(&r, src, err);
    if (!rc) rc = rd_manifest(&r, &m, err);
    if (!rc) rc = rd_body(&r, &m, NULL, NULL, NULL, info, err);
    if (!rc) fill_info(info, &m, &r);
    rd_close(&r);
    free(m.p);
    return rc;
}

int dsq_unpack(const char *src, const char *dir, int flags, void (*progress)(void *, uint64_t, uint64_t),
               void *parg, dsq_pack_info *info, dsq_err *err) {
    pk_rd r;
    pk_man m = {0};
    dsq_afile *f = NULL;
    dsq_ctr *c = NULL;
    uint8_t *buf = NULL;
    int created = 0;
    char out[4096];
    memset(info, 0, sizeof *info);
    int rc = rd_open(&r, src, err);
    if (!rc) rc = rd_manifest(&r, &m, err);
    if (rc) goto fail;
    if ((size_t)snprintf(out, sizeof out, "%s/%s", dir, m.name) >= sizeof out) {
        rc = dsq_fail(err, DSQ_E_ARG, "%s: output path too long", dir);
        goto fail;
    }
    /* Refuse an existing output before creating anything, so this failure
     * too leaves the file system as it was. */
    struct stat st;
    if (!(flags & DSQ_UNPACK_FORCE) && lstat(out, &st) == 0) {
        rc = dsq_fail(err, DSQ_E_EXISTS, "%s: already exists (use --force to overwrite)", out);
        goto fail;
    }
    if (stat(dir, &st) != 0) {
        if (errno != ENOENT || mkdir(dir, 0777) != 0) {
            rc = dsq_fail(err, DSQ_E_IO, "%s: cannot create the output folder: %s", dir, strerror(errno));
            goto fail;
        }
        created = 1;
    } else if (!S_ISDIR(st.st_mode)) {
        rc = dsq_fail(err, DSQ_E_IO, "%s: not a folder", dir);
        goto fail;
    }
    if ((rc = dsq_afile_open(&f, out, (flags & DSQ_UNPACK_FORCE) ? DSQ_AFILE_FORCE : 0, err))) goto fail;
    if ((rc = rd_body(&r, &m, f, progress, parg, info, err))) goto fail;
    /* the bytes match the manifest; now the container must hold together
     * and every array must match its own checksum, before the rename */
    if (dsq_afile_flush(f)) {
        rc = dsq_fail(err, DSQ_E_IO, "%s: write failed: %s", out, strerror(errno));
        goto fail;
    }
    const char *tmp = dsq_afile_tmp_path(f);
    buf = dsq_malloc(PK_CHUNK);
    if (!buf) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto fail; }
    int64_t n = 0;
    if ((rc = dsq_ctr_open(&c, tmp, err)) || (rc = sweep(c, tmp, out, NULL, 0, NULL, &n, buf, err))) {
        msg_subst(err, tmp, out);
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err->msg);
        rc = dsq_fail(err, rc, "%s: reassembled container is damaged: %s", src, why);
        goto fail;
    }
    info->n_checked += n;
    dsq_ctr_close(c);
    c = NULL;
    rc = dsq_afile_commit(f, err);
    f = NULL;
    if (rc) goto fail;
    fill_info(info, &m, &r);
fail:
    dsq_ctr_close(c);
    dsq_afile_abort(f);
    if (rc && created) rmdir(dir);
    rd_close(&r);
    free(buf);
    free(m.p);
    return rc;
}
