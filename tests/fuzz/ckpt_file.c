/*
 * ckpt_file.c -- fuzz target: a single-file checkpoint (dsq_ckpt_open on a
 * model.safetensors beside a fixed, valid config.json of the fuzz shape,
 * fuzz.h), then every tensor widened to f32 with dsq_ckpt_rows_f32 and
 * streamed once with dsq_src_*.
 *
 * Input: the bytes of model.safetensors, except for one control bit.  The
 * top bit of byte 7 (the most significant byte of the u64 header length,
 * zero in any file the reader accepts) selects DSQ_OPEN_ALLOW_UNKNOWN and is
 * cleared before the file is written, so one corpus covers both modes.
 */
#include "fuzz.h"
#include "formats/formats_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ROWS_ELEMS (1 << 20) /* widen tensors up to 4 MiB of f32 */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *dir;
    if (!dir) {
        dir = fuzz_dir("ckpt_file");
        const char *cj = fuzz_shape_json();
        if (fuzz_write(fuzz_path(dir, "config.json"), cj, strlen(cj))) abort();
    }
    int flags = 0;
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    if (size >= 8 && (buf[7] & 0x80)) {
        buf[7] &= 0x7F;
        flags = DSQ_OPEN_ALLOW_UNKNOWN;
    }
    const char *path = fuzz_path(dir, "model.safetensors");
    int wrc = fuzz_write(path, buf, size);
    free(buf);
    if (wrc) abort();

    dsq_ckpt *ck = NULL;
    dsq_err err = {0};
    int rc = dsq_ckpt_open(&ck, path, flags, &err);
    if (rc != DSQ_OK) {
        FUZZ_CHECK(rc < 0 && ck == NULL && err.msg[0]);
        return 0;
    }
    int n = dsq_ckpt_n_tensors(ck);
    float *rows = NULL;
    for (int i = 0; i < n; i++) {
        const dsq_tinfo *t = dsq_ckpt_tensor(ck, i);
        FUZZ_CHECK(dsq_ckpt_find(ck, t->name) == i);
        int64_t sr, sc;
        const float *s = dsq_ckpt_scales(ck, i, &sr, &sc);
        if (s) {
            FUZZ_CHECK(t->dtype == DSQ_DT_F8_E4M3 && sr >= 0 && sc >= 0);
            for (int64_t k = 0; k < sr * sc; k++) FUZZ_CHECK(s[k] > 0);
        }
        if (t->numel > MAX_ROWS_ELEMS) continue;
        int64_t nrows = t->n_dims >= 2 ? t->shape[0] : 1;
        float *nb = realloc(rows, sizeof *rows * ((size_t)t->numel + 1));
        if (!nb) break;
        rows = nb;
        rc = dsq_ckpt_rows_f32(ck, i, 0, nrows, rows, &err);
        FUZZ_CHECK(rc == DSQ_OK || rc == DSQ_E_UNSUPPORTED);
        /* one row from the middle must read the same floats */
        if (rc == DSQ_OK && nrows > 1 && t->numel > 0) {
            int64_t cols = t->numel / nrows, r = nrows / 2;
            float *one = malloc(sizeof *one * ((size_t)cols + 1));
            FUZZ_CHECK(one != NULL);
            FUZZ_CHECK(dsq_ckpt_rows_f32(ck, i, r, r + 1, one, &err) == DSQ_OK);
            FUZZ_CHECK(!memcmp(one, rows + r * cols, sizeof *one * (size_t)cols));
            free(one);
        }
        FUZZ_CHECK(dsq_ckpt_rows_f32(ck, i, 0, nrows + 1, rows, &err) == DSQ_E_ARG);
    }
    free(rows);
    /* streaming visits every tensor once, in storage order */
    dsq_ckpt_stream *src = NULL;
    if (dsq_ckpt_stream_open(&src, ck, &err) == DSQ_OK) {
        int idx, k = 0;
        uint64_t last = 0;
        while ((rc = dsq_ckpt_stream_next(src, &idx, &err)) == DSQ_OK) {
            const dsq_tinfo *t = dsq_ckpt_tensor(ck, idx);
            FUZZ_CHECK(idx == k && t->offset >= last);
            last = t->offset;
            const void *p;
            FUZZ_CHECK(dsq_ckpt_stream_data(src, &p, &err) == DSQ_OK);
            if (t->nbytes) {
                const void *v;
                FUZZ_CHECK(dsq_ckpt_view(ck, idx, &v, &err) == DSQ_OK && v == p);
            }
            k++;
        }
        FUZZ_CHECK(rc == DSQ_EOF && k == n);
        dsq_ckpt_stream_close(src);
    }
    dsq_ckpt_close(ck);
    return 0;
}
