/*
 * archive.c -- fuzz target: a checkpoint read from inside an archive
 * (formats/archive.c through libarchive, any format and filter it bids
 * for).  The input is written to a file and opened with dsq_ckpt_open; if
 * that succeeds every tensor is streamed with dsq_ckpt_stream_open / next / data,
 * which reopens the archive and reads it forward a second time.
 *
 * Input: the archive bytes (tar, zip, gzip-compressed tar, ...).  Its
 * config.json is part of the input too, so shapes are not bounded by the
 * fuzz shape; tensors above 16 MiB are passed over without reading them.
 */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_READ (16u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[700];
    if (!path[0]) snprintf(path, sizeof path, "%s", fuzz_path(fuzz_dir("archive"), "input.archive"));
    if (fuzz_write(path, data, size)) abort();
    dsq_ckpt *ck = NULL;
    dsq_err err = {0};
    int rc = dsq_ckpt_open(&ck, path, 0, &err);
    if (rc != DSQ_OK) {
        FUZZ_CHECK(rc < 0 && ck == NULL && err.msg[0]);
        return 0;
    }
    FUZZ_CHECK(dsq_ckpt_is_archive(ck));
    int n = dsq_ckpt_n_tensors(ck);
    for (int i = 0; i < n; i++) {
        const dsq_tinfo *t = dsq_ckpt_tensor(ck, i);
        const void *v;
        FUZZ_CHECK(dsq_ckpt_find(ck, t->name) == i);
        if (t->nbytes) FUZZ_CHECK(dsq_ckpt_view(ck, i, &v, &err) == DSQ_E_UNSUPPORTED);
        int64_t sr, sc;
        const float *s = dsq_ckpt_scales(ck, i, &sr, &sc);
        if (s)
            for (int64_t k = 0; k < sr * sc; k++) FUZZ_CHECK(s[k] > 0);
    }
    dsq_ckpt_stream *src = NULL;
    if (dsq_ckpt_stream_open(&src, ck, &err) == DSQ_OK) {
        int idx, k = 0;
        while ((rc = dsq_ckpt_stream_next(src, &idx, &err)) == DSQ_OK) {
            FUZZ_CHECK(idx == k++);
            const dsq_tinfo *t = dsq_ckpt_tensor(ck, idx);
            if (t->nbytes > MAX_READ) continue;
            const void *p;
            /* the archive was read once already, so its data is all there */
            rc = dsq_ckpt_stream_data(src, &p, &err);
            if (rc != DSQ_OK) break;
            /* a second call returns the same buffer without reading */
            const void *q;
            FUZZ_CHECK(dsq_ckpt_stream_data(src, &q, &err) == DSQ_OK && q == p);
        }
        FUZZ_CHECK(rc != DSQ_OK || k == n);
        dsq_ckpt_stream_close(src);
    }
    dsq_ckpt_close(ck);
    return 0;
}
