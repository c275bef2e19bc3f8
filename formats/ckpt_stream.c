/*
 * src.c -- streaming a checkpoint's tensors in storage order (shard by
 * shard, by data offset), never seeking back.
 *
 * Folders: data pointers come straight from the shard mappings, and pages of
 * a tensor already streamed are dropped (MADV_DONTNEED) so resident memory
 * stays near one tensor however large the model.  Archives: the archive is
 * reopened and read forward once; each tensor is copied into one reusable
 * buffer, so peak memory is the largest tensor.
 */
#include "ckpt_int.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

struct dsq_ckpt_stream {
    dsq_ckpt *ck;
    int cur;              /* current tensor, -1 before the first */
    /* archive state */
    struct archive *a;
    int ar_shard;         /* shard whose entry is open, -1 if none */
    uint64_t ar_pos;      /* bytes of that entry's data section consumed */
    uint8_t *buf;         /* from malloc */
    size_t cap;
    int have;             /* current tensor already read into buf */
    /* folder state: mapped pages released up to drop_pos of drop_shard */
    int drop_shard;
    uint64_t drop_pos;
};

int dsq_ckpt_stream_open(dsq_ckpt_stream **out, dsq_ckpt *ck, dsq_err *err) {
    *out = NULL;
    dsq_ckpt_stream *s = dsq_calloc(1, sizeof *s);
    if (!s) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    s->ck = ck;
    s->cur = -1;
    s->ar_shard = -1;
    s->drop_shard = -1;
    if (ck->archive) {
        s->a = dsq_ar_open(ck->path, err);
        if (!s->a) {
            free(s);
            return err->code;
        }
    }
    *out = s;
    return DSQ_OK;
}

/* Let the kernel drop the mapped pages of everything streamed so far in
 * this shard, in steps of at least 8 MiB to keep madvise calls rare. */
static void drop_pages(dsq_ckpt_stream *s, int i, int final) {
    const dsq_tinfo *t = &s->ck->t[i];
    const ck_shard *sh = &s->ck->shards[t->shard];
    if (!sh->map) return;
    if (s->drop_shard != t->shard) {
        s->drop_shard = t->shard;
        s->drop_pos = 0;
    }
    long pg = sysconf(_SC_PAGESIZE);
    uint64_t end = final ? sh->size : t->offset + t->nbytes;
    end &= ~(uint64_t)(pg - 1);
    if (end <= s->drop_pos || (!final && end - s->drop_pos < (8u << 20))) return;
    madvise(sh->map + s->drop_pos, end - s->drop_pos, MADV_DONTNEED);
    s->drop_pos = end;
}

int dsq_ckpt_stream_next(dsq_ckpt_stream *s, int *idx, dsq_err *err) {
    (void)err;
    if (s->cur >= 0 && !s->ck->archive) {
        int last = s->cur + 1 >= s->ck->n || s->ck->t[s->cur + 1].shard != s->ck->t[s->cur].shard;
        drop_pages(s, s->cur, last);
    }
    if (s->cur + 1 >= s->ck->n) return DSQ_EOF;
    s->cur++;
    s->have = 0;
    *idx = s->cur;
    return DSQ_OK;
}

/* Advance the archive to the entry of shard k and past its header. */
static int ar_enter_shard(dsq_ckpt_stream *s, int k, dsq_err *err) {
    const ck_shard *sh = &s->ck->shards[k];
    struct archive_entry *ent;
    char what[1200];
    snprintf(what, sizeof what, "%s:%s", s->ck->path, sh->path);
    for (;;) {
        int r = archive_read_next_header(s->a, &ent);
        if (r == ARCHIVE_EOF)
            return dsq_fail(err, DSQ_E_FORMAT, "%s: entry not found on the second pass (archive changed?)", what);
        if (r < ARCHIVE_WARN)
            return dsq_fail(err, DSQ_E_FORMAT, "%s: damaged archive: %s", s->ck->path,
                            archive_error_string(s->a) ? archive_error_string(s->a) : "bad entry header");
        const char *p = archive_entry_pathname(ent);
        if (p && archive_entry_filetype(ent) == AE_IFREG && !strcmp(dsq_ar_norm(p), sh->path)) break;
    }
    uint8_t len8[8];
    int rc = dsq_ar_read(s->a, len8, 8, what, err);
    if (rc) return rc;
    if (dsq_le64(len8) != sh->h.header_len)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: header changed since the archive was opened", what);
    if ((rc = dsq_ar_skip(s->a, sh->h.header_len, what, err))) return rc;
    s->ar_shard = k;
    s->ar_pos = 0;
    return DSQ_OK;
}

int dsq_ckpt_stream_data(dsq_ckpt_stream *s, const void **data, dsq_err *err) {
    if (s->cur < 0) return dsq_fail(err, DSQ_E_ARG, "dsq_ckpt_stream_data before dsq_ckpt_stream_next");
    const dsq_ckpt *ck = s->ck;
    const dsq_tinfo *t = &ck->t[s->cur];
    if (!ck->archive) return dsq_ckpt_view(ck, s->cur, data, err);
    if (s->have) {
        *data = s->buf;
        return DSQ_OK;
    }
    int rc;
    if (s->ar_shard != t->shard && (rc = ar_enter_shard(s, t->shard, err))) return rc;
    const ck_shard *sh = &ck->shards[t->shard];
    uint64_t begin = t->offset - sh->h.data_start;
    char what[1200];
    snprintf(what, sizeof what, "%s:%s: tensor '%s'", ck->path, sh->path, t->name);
    if (begin < s->ar_pos) return dsq_fail(err, DSQ_E_ARG, "%s: stream already past this tensor", what);
    if ((rc = dsq_ar_skip(s->a, begin - s->ar_pos, what, err))) return rc;
    if (t->nbytes + 1 > s->cap) {
        uint8_t *nb = dsq_realloc(s->buf, t->nbytes + 1);
        if (!nb) return dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", what);
        s->buf = nb;
        s->cap = t->nbytes + 1;
    }
    if ((rc = dsq_ar_read(s->a, s->buf, t->nbytes, what, err))) return rc;
    s->ar_pos = begin + t->nbytes;
    s->have = 1;
    *data = s->buf;
    return DSQ_OK;
}

void dsq_ckpt_stream_close(dsq_ckpt_stream *s) {
    if (!s) return;
    if (s->a) archive_read_free(s->a);
    free(s->buf);
    free(s);
}
