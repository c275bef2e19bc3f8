/*
 * container.c -- fuzz target: the .dsq container reader (dsq_ctr_open,
 * dsq_ctr_verify, dsq_ctr_qmat, dsq_ctr_file in formats/container.c), with a
 * few rows of every tensor (and expert) dequantized by dsq_q_dequantize.
 *
 * Input: the container file, with one control byte.  The reader checks
 * three checksums (header, metadata, directory) and the file size before it
 * parses anything, which random mutations almost never keep right.  So
 * unless bit 0 of the first byte of header_xxh3 (DSQ_CTR_HEADER_HASHED,
 * overwritten anyway) is set, the target rewrites the file_size field and
 * the three checksums to match the mutated bytes, and the fuzzer reaches
 * the JSON sections and the array checks behind them.
 *
 * For a container that opens: the fast and the reference dequantizers must
 * agree bit for bit (quant.h; NaN payloads aside), a column window must
 * equal the same columns of whole rows, and side files are decompressed when they claim at most
 * 16 MiB.
 */
#include "fuzz.h"
#include "common.h"
#include "formats/container.h"
#include "formats/formats_int.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define MAX_ROWS 4
#define MAX_EXPERTS 4
#define MAX_FLOATS (1 << 20)
#define MAX_FILE (16u << 20)

static void fix_header(uint8_t *h, size_t size) {
    dsq_ctr_header hd;
    dsq_ctr_header_decode(h, size, &hd, "input", NULL); /* fields only: the checks come later */
    hd.file_size = size;
    if (hd.meta_offset <= size && hd.meta_size <= size - hd.meta_offset)
        hd.meta_xxh3 = XXH3_64bits(h + hd.meta_offset, hd.meta_size);
    if (hd.dir_offset <= size && hd.dir_size <= size - hd.dir_offset)
        hd.dir_xxh3 = XXH3_64bits(h + hd.dir_offset, hd.dir_size);
    dsq_ctr_header_encode(&hd, h);
}

/* Equal floats, bit for bit, except that any two NaNs match: a NaN code
 * times a NaN scale (nothing checks scales in a hostile file) keeps the
 * payload of whichever operand the kernel put first. */
static int same_floats(const float *a, const float *b, int64_t n) {
    for (int64_t k = 0; k < n; k++)
        if (memcmp(a + k, b + k, sizeof *a) && !(isnan(a[k]) && isnan(b[k]))) return 0;
    return 1;
}

static void check_tensor(const dsq_ctr *c, int i) {
    const dsq_ctensor *t = dsq_ctr_tensor(c, i);
    dsq_err err = {0};
    FUZZ_CHECK(dsq_ctr_find(c, t->name) == i);
    int ne = t->experts ? t->experts : 1;
    int64_t nr = t->rows < MAX_ROWS ? t->rows : MAX_ROWS;
    if (t->cols > MAX_FLOATS / MAX_ROWS) return;
    size_t nf = (size_t)(nr * t->cols) + 1;
    float *a = malloc(sizeof *a * nf), *b = malloc(sizeof *b * nf);
    FUZZ_CHECK(a && b);
    for (int e = 0; e < ne && e < MAX_EXPERTS; e++) {
        dsq_qmat m;
        FUZZ_CHECK(dsq_ctr_qmat(c, i, e, &m, &err) == DSQ_OK);
        FUZZ_CHECK(m.type == t->scheme && m.rows == t->rows && m.cols == t->cols);
        int64_t r0 = t->rows - nr; /* the last rows: partial blocks and groups */
        FUZZ_CHECK(dsq_q_dequantize(&m, r0, t->rows, a, &err) == DSQ_OK);
        FUZZ_CHECK(dsq_q_dequantize_ref(&m, r0, t->rows, b, &err) == DSQ_OK);
        FUZZ_CHECK(same_floats(a, b, nr * t->cols));
        if (nr > 0 && t->cols > 2) {
            int64_t c0 = 1, c1 = t->cols - 1, w = c1 - c0;
            FUZZ_CHECK(dsq_q_dequantize_tile(&m, r0, t->rows, c0, c1, b, w, &err) == DSQ_OK);
            for (int64_t r = 0; r < nr; r++)
                FUZZ_CHECK(same_floats(a + r * t->cols + c0, b + r * w, w));
        }
    }
    dsq_qmat m;
    FUZZ_CHECK(dsq_ctr_qmat(c, i, ne, &m, &err) == DSQ_E_ARG);
    free(a);
    free(b);
}

/* Side files named in the metadata, when they claim a sane size. */
static void check_files(const dsq_ctr *c) {
    cJSON *meta = cJSON_Parse(dsq_ctr_meta(c));
    FUZZ_CHECK(meta != NULL);
    const cJSON *fs = cJSON_GetObjectItemCaseSensitive(meta, "files");
    for (const cJSON *f = fs ? fs->child : NULL; f; f = f->next) {
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(f, "name");
        const cJSON *raw = cJSON_GetObjectItemCaseSensitive(f, "raw_size");
        FUZZ_CHECK(cJSON_IsString(nm) && cJSON_IsNumber(raw));
        if (raw->valuedouble > MAX_FILE) continue;
        char *data = NULL;
        size_t len = 0;
        dsq_err err = {0};
        int rc = dsq_ctr_file(c, nm->valuestring, &data, &len, &err);
        if (rc == DSQ_OK) {
            FUZZ_CHECK(data != NULL && data[len] == 0);
            free(data);
        } else {
            FUZZ_CHECK(rc < 0 && data == NULL);
        }
    }
    cJSON_Delete(meta);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[700];
    if (!path[0]) snprintf(path, sizeof path, "%s", fuzz_path(fuzz_dir("container"), "input.dsq"));
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    if (size >= DSQ_CTR_HEADER && !(buf[DSQ_CTR_HEADER_HASHED] & 1)) fix_header(buf, size);
    int wrc = fuzz_write(path, buf, size);
    free(buf);
    if (wrc) abort();

    dsq_ctr *c = NULL;
    dsq_err err = {0};
    int rc = dsq_ctr_open(&c, path, &err);
    if (rc != DSQ_OK) {
        FUZZ_CHECK(rc < 0 && c == NULL && err.msg[0]);
        return 0;
    }
    int64_t n_checked = -1;
    rc = dsq_ctr_verify(c, &n_checked, &err);
    FUZZ_CHECK(rc == DSQ_OK || rc == DSQ_E_CHECKSUM);
    FUZZ_CHECK(n_checked >= 0);
    FUZZ_CHECK(dsq_ctr_file_size(c) == size);
    for (int i = 0; i < dsq_ctr_n_tensors(c); i++) check_tensor(c, i);
    check_files(c);
    dsq_ctr_close(c);
    return 0;
}
