/*
 * gguf.c -- fuzz target: the GGUF reader (dsq_gguf_open and the typed
 * getters in formats/gguf.c), and for every file it accepts, a rewrite
 * through the GGUF writer that must read back the same.
 *
 * Input: the file itself.
 *
 * For a file that opens, the reader's promises (gguf.h) must hold: keys and
 * names find themselves, every scalar reads back with its own type and is
 * refused with any other, every string lies inside the file, every payload
 * sits at the running padded sum inside the file, and the file ends at the
 * padded end of the data section.  The rewrite copies every record and
 * payload; the result must hold the same values, shapes and payload bytes.
 * The writer refuses a quantized file without a u32
 * general.quantization_version, which the reader does not require: such
 * files skip the rewrite.
 */
#include "fuzz.h"
#include "common.h"
#include "formats/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check_kv(const dsq_gguf *g, int i, const uint8_t *lo, const uint8_t *hi) {
    const dsq_gguf_kv *kv = dsq_gguf_kv_at(g, i);
    dsq_err err = {0};
    uint8_t buf[8];
    FUZZ_CHECK(kv && kv->key[0] && dsq_gguf_find_key(g, kv->key) == i);
    FUZZ_CHECK(kv->data >= lo && kv->nbytes <= (uint64_t)(hi - kv->data));
    if (kv->type != DSQ_GGUF_ARRAY) {
        FUZZ_CHECK(kv->n == 1 && kv->elem == kv->type);
        for (int t = 0; t < DSQ_GGUF_N_VTYPES; t++) {
            if (!dsq_gguf_vtype_size(t)) continue;
            int rc = dsq_gguf_get(g, kv->key, t, buf, &err);
            FUZZ_CHECK(t == kv->type ? rc == DSQ_OK : rc == DSQ_E_FORMAT);
        }
        if (kv->type == DSQ_GGUF_BOOL) FUZZ_CHECK(kv->data[0] <= 1);
    } else {
        const dsq_gguf_kv *a = NULL;
        FUZZ_CHECK(dsq_gguf_get_arr(g, kv->key, kv->elem, &a, &err) == DSQ_OK && a == kv);
        FUZZ_CHECK(kv->elem != DSQ_GGUF_ARRAY);
        if (kv->elem != DSQ_GGUF_STRING) FUZZ_CHECK(kv->nbytes == kv->n * (uint64_t)dsq_gguf_vtype_size(kv->elem));
    }
    if (kv->elem == DSQ_GGUF_STRING)
        for (uint64_t e = 0; e < kv->n; e++) {
            const char *s;
            uint64_t n;
            dsq_gguf_kv_str(kv, e, &s, &n);
            FUZZ_CHECK((const uint8_t *)s >= lo && n <= (uint64_t)(hi - (const uint8_t *)s));
        }
}

/* The writer's copy of g at path; 1 if written, 0 if the writer refused it
 * for the one reason the reader does not share. */
static int rewrite(const dsq_gguf *g, const char *path) {
    dsq_ggufw *w;
    dsq_err err = {0};
    FUZZ_CHECK(dsq_ggufw_open(&w, path, 1, &err) == DSQ_OK);
    int rc = DSQ_OK;
    for (int i = 0; i < dsq_gguf_n_kv(g) && !rc; i++) {
        const dsq_gguf_kv *kv = dsq_gguf_kv_at(g, i);
        if (kv->type == DSQ_GGUF_STRING) {
            const char *s;
            uint64_t n;
            dsq_gguf_kv_str(kv, 0, &s, &n);
            rc = dsq_ggufw_set_strn(w, kv->key, s, n, &err);
        } else if (kv->type == DSQ_GGUF_ARRAY && kv->elem == DSQ_GGUF_STRING) {
            const char **s = malloc(sizeof *s * (kv->n + 1));
            uint64_t *len = malloc(sizeof *len * (kv->n + 1));
            FUZZ_CHECK(s && len);
            for (uint64_t e = 0; e < kv->n; e++) dsq_gguf_kv_str(kv, e, &s[e], &len[e]);
            rc = dsq_ggufw_set_arr_str(w, kv->key, s, len, kv->n, &err);
            free(s);
            free(len);
        } else if (kv->type == DSQ_GGUF_ARRAY) {
            /* the file's little-endian elements are the host's (x86, arm64) */
            rc = dsq_ggufw_set_arr(w, kv->key, kv->elem, kv->data, kv->n, &err);
        } else {
            uint8_t v[8];
            memcpy(v, kv->data, (size_t)dsq_gguf_vtype_size(kv->type));
            rc = dsq_ggufw_set(w, kv->key, kv->type, v, &err);
        }
        if (rc && !strcmp(kv->key, "general.quantization_version")) {
            dsq_ggufw_abort(w);
            return 0;
        }
        FUZZ_CHECK(rc == DSQ_OK);
    }
    for (int i = 0; i < dsq_gguf_n_tensors(g); i++) {
        const dsq_gguf_tensor *t = dsq_gguf_tensor_at(g, i);
        FUZZ_CHECK(dsq_ggufw_add_tensor(w, t->name, t->type, t->n_dims ? t->n_dims : 1, t->ne, &err) == i);
    }
    rc = dsq_ggufw_layout(w, &err);
    if (rc) {
        FUZZ_CHECK(rc == DSQ_E_ARG && strstr(err.msg, "quantization_version"));
        dsq_ggufw_abort(w);
        return 0;
    }
    /* back to front, in two pieces each: the out-of-order path */
    for (int i = dsq_gguf_n_tensors(g) - 1; i >= 0; i--) {
        const dsq_gguf_tensor *t = dsq_gguf_tensor_at(g, i);
        size_t h = (size_t)(t->nbytes / 2);
        FUZZ_CHECK(dsq_ggufw_write(w, i, h, t->data + h, (size_t)t->nbytes - h, &err) == DSQ_OK);
        FUZZ_CHECK(dsq_ggufw_write(w, i, 0, t->data, h, &err) == DSQ_OK);
    }
    FUZZ_CHECK(dsq_ggufw_finish(w, &err) == DSQ_OK);
    return 1;
}

static void same(const dsq_gguf *a, const dsq_gguf *b) {
    FUZZ_CHECK(dsq_gguf_n_kv(a) == dsq_gguf_n_kv(b) && dsq_gguf_n_tensors(a) == dsq_gguf_n_tensors(b));
    FUZZ_CHECK(dsq_gguf_alignment(a) == dsq_gguf_alignment(b) && dsq_gguf_version(b) == 3);
    for (int i = 0; i < dsq_gguf_n_kv(a); i++) {
        const dsq_gguf_kv *x = dsq_gguf_kv_at(a, i), *y = dsq_gguf_kv_at(b, i);
        FUZZ_CHECK(!strcmp(x->key, y->key) && x->type == y->type && x->elem == y->elem && x->n == y->n);
        FUZZ_CHECK(x->nbytes == y->nbytes && !memcmp(x->data, y->data, (size_t)x->nbytes));
    }
    for (int i = 0; i < dsq_gguf_n_tensors(a); i++) {
        const dsq_gguf_tensor *x = dsq_gguf_tensor_at(a, i), *y = dsq_gguf_tensor_at(b, i);
        FUZZ_CHECK(!strcmp(x->name, y->name) && x->type == y->type && !memcmp(x->ne, y->ne, sizeof x->ne));
        FUZZ_CHECK(x->offset == y->offset && x->nbytes == y->nbytes && !memcmp(x->data, y->data, (size_t)x->nbytes));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char in[700], out[700];
    if (!in[0]) {
        snprintf(in, sizeof in, "%s", fuzz_path(fuzz_dir("gguf"), "input.gguf"));
        snprintf(out, sizeof out, "%s", fuzz_path(fuzz_dir("gguf"), "copy.gguf"));
    }
    if (fuzz_write(in, data, size)) abort();
    dsq_gguf *g = NULL;
    dsq_err err = {0};
    int rc = dsq_gguf_open(&g, in, &err);
    if (rc != DSQ_OK) {
        FUZZ_CHECK(rc < 0 && g == NULL && err.msg[0] && !strchr(err.msg, '\n'));
        return 0;
    }
    FUZZ_CHECK(dsq_gguf_file_size(g) == size);
    uint32_t al = dsq_gguf_alignment(g);
    FUZZ_CHECK(al && !(al & (al - 1)));
    const uint8_t *lo = dsq_gguf_bytes(g);
    FUZZ_CHECK(!memcmp(lo, data, size));
    for (int i = 0; i < dsq_gguf_n_kv(g); i++) check_kv(g, i, lo, lo + size);
    uint64_t expect = 0;
    for (int i = 0; i < dsq_gguf_n_tensors(g); i++) {
        const dsq_gguf_tensor *t = dsq_gguf_tensor_at(g, i);
        uint64_t nb;
        FUZZ_CHECK(dsq_gguf_find_tensor(g, t->name) == i && strlen(t->name) <= DSQ_GGUF_MAX_NAME);
        FUZZ_CHECK(dsq_ggml_nbytes(t->type, t->ne, &nb) == DSQ_OK && nb == t->nbytes);
        FUZZ_CHECK(t->offset == expect && t->data == lo + dsq_gguf_data_offset(g) + t->offset);
        FUZZ_CHECK(dsq_gguf_data_offset(g) + t->offset + t->nbytes <= size);
        expect += (t->nbytes + al - 1) / al * al;
    }
    FUZZ_CHECK(dsq_gguf_data_offset(g) + expect == size);
    if (rewrite(g, out)) {
        dsq_gguf *c = NULL;
        rc = dsq_gguf_open(&c, out, &err);
        FUZZ_CHECK(rc == DSQ_OK);
        same(g, c);
        dsq_gguf_close(c);
    }
    dsq_gguf_close(g);
    return 0;
}
