/*
 * gguf_util.c -- the GGUF sample file and the reader dump (gguf_util.h).
 */
#include "gguf_util.h"
#include "common.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const tg_tensor tg_tensors[TG_N_TENSORS] = {
    {"token_embd.weight", DSQ_GGML_F32, 2, {8, 3, 1, 1}},
    {"blk.0.attn_norm.weight", DSQ_GGML_F32, 1, {8, 1, 1, 1}},
    {"blk.0.ffn_up_exps.weight", DSQ_GGML_Q8_0, 3, {64, 2, 3, 1}},
    {"blk.0.ffn_down.weight", DSQ_GGML_Q4_K, 2, {256, 2, 1, 1}},
    {"blk.0.attn_k_b.weight", DSQ_GGML_BF16, 4, {5, 3, 2, 2}},
    {"blk.0.empty", DSQ_GGML_F16, 2, {0, 4, 1, 1}},
};

uint8_t tg_byte(int i, uint64_t k) { return (uint8_t)(k * 131 + (uint64_t)i * 17 + (k >> 8) + 1); }

uint64_t tg_fnv(const void *p, uint64_t n) {
    const uint8_t *b = p;
    uint64_t h = 1469598103934665603ull;
    for (uint64_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* Every value type once as a scalar and once as an array, including the
 * extremes of each integer type, a NaN and an infinity, the empty string and
 * non-ASCII UTF-8. */
static int sample_kvs(dsq_ggufw *w, uint32_t align, dsq_err *err) {
    int rc;
    static const uint8_t u8[] = {0, 1, 255};
    static const int8_t i8[] = {-128, 0, 127};
    static const uint16_t u16[] = {0, 65535};
    static const int16_t i16[] = {-32768, 32767};
    static const uint32_t u32[] = {0, 4294967295u, 7};
    static const int32_t i32[] = {INT32_MIN, -1, INT32_MAX};
    static const uint64_t u64[] = {0, UINT64_MAX};
    static const int64_t i64[] = {INT64_MIN, INT64_MAX};
    static const uint8_t bools[] = {1, 0, 1};
    static const char *const strs[] = {"hello", "", "\xc4\xa0t\xc4\xa0he", "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"};
    float f32[3] = {1.5f, -0.0f, 3.4028235e38f};
    double f64[2] = {0.1, -2.5e-300};
    if ((rc = dsq_ggufw_set_str(w, "general.architecture", "llama", err))) return rc;
    if (align && (rc = dsq_ggufw_set_u32(w, "general.alignment", align, err))) return rc;
    if ((rc = dsq_ggufw_set_u32(w, "general.quantization_version", 2, err))) return rc;
    if ((rc = dsq_ggufw_set_u8(w, "test.u8", 200, err)) || (rc = dsq_ggufw_set_i8(w, "test.i8", -100, err)) ||
        (rc = dsq_ggufw_set_u16(w, "test.u16", 60000, err)) || (rc = dsq_ggufw_set_i16(w, "test.i16", -30000, err)) ||
        (rc = dsq_ggufw_set_u32(w, "test.u32", 4000000000u, err)) ||
        (rc = dsq_ggufw_set_i32(w, "test.i32", -2000000000, err)) ||
        (rc = dsq_ggufw_set_f32(w, "test.f32", 0.1f, err)) || (rc = dsq_ggufw_set_bool(w, "test.bool", 1, err)) ||
        (rc = dsq_ggufw_set_bool(w, "test.bool_false", 0, err)) ||
        (rc = dsq_ggufw_set_str(w, "test.string", "dsq \xe2\x9c\x93", err)) ||
        (rc = dsq_ggufw_set_str(w, "test.empty_string", "", err)) ||
        (rc = dsq_ggufw_set_u64(w, "test.u64", 18000000000000000000ull, err)) ||
        (rc = dsq_ggufw_set_i64(w, "test.i64", -9000000000000000000ll, err)) ||
        (rc = dsq_ggufw_set_f64(w, "test.f64", 3.141592653589793, err)) ||
        (rc = dsq_ggufw_set_f32(w, "test.f32_nan", NAN, err)) ||
        (rc = dsq_ggufw_set_f64(w, "test.f64_inf", -INFINITY, err)))
        return rc;
    if ((rc = dsq_ggufw_set_arr(w, "test.arr.u8", DSQ_GGUF_U8, u8, 3, err)) ||
        (rc = dsq_ggufw_set_arr(w, "test.arr.i8", DSQ_GGUF_I8, i8, 3, err)) ||
        (rc = dsq_ggufw_set_arr(w, "test.arr.u16", DSQ_GGUF_U16, u16, 2, err)) ||
        (rc = dsq_ggufw_set_arr(w, "test.arr.i16", DSQ_GGUF_I16, i16, 2, err)) ||
        (rc = dsq_ggufw_set_arr(w, "test.arr.u32", DSQ_GGUF_U32, u32, 3, err)) ||
        (rc = dsq_ggufw_set_arr(w, "test.arr.i32", DSQ_GGUF_I32, i32, 3, err)) ||
        (rc = dsq_ggufw_set_arr(w, "test.arr.f32", DSQ_GGUF_F32, f32, 3, err)) ||
        (rc = dsq_ggufw_set_arr(w, "test.arr.bool", DSQ_GGUF_BOOL, bools, 3, err)) ||
        (rc = dsq_ggufw_set_arr(w, "test.arr.u64", DSQ_GGUF_U64, u64, 2, err)) ||
        (rc = dsq_ggufw_set_arr(w, "test.arr.i64", DSQ_GGUF_I64, i64, 2, err)) ||
        (rc = dsq_ggufw_set_arr(w, "test.arr.f64", DSQ_GGUF_F64, f64, 2, err)) ||
        (rc = dsq_ggufw_set_arr(w, "test.arr.empty", DSQ_GGUF_I32, NULL, 0, err)) ||
        (rc = dsq_ggufw_set_arr_str(w, "tokenizer.ggml.tokens", strs, NULL, 4, err)) ||
        (rc = dsq_ggufw_set_arr_str(w, "test.arr.str_empty", NULL, NULL, 0, err)))
        return rc;
    return DSQ_OK;
}

int tg_write_sample(const char *path, int order, uint32_t align, dsq_err *err) {
    dsq_ggufw *w;
    int rc = dsq_ggufw_open(&w, path, 1, err);
    if (rc) return rc;
    if ((rc = sample_kvs(w, align, err))) goto fail;
    for (int i = 0; i < TG_N_TENSORS; i++) {
        const tg_tensor *t = &tg_tensors[i];
        if ((rc = dsq_ggufw_add_tensor(w, t->name, t->type, t->n_dims, t->ne, err)) != i) goto fail;
    }
    uint8_t buf[4096];
    if (order == 0) {
        for (int i = 0; i < TG_N_TENSORS; i++) {
            uint64_t n = dsq_ggufw_nbytes(w, i);
            for (uint64_t k = 0; k < n; k++) buf[k] = tg_byte(i, k);
            if ((rc = dsq_ggufw_write(w, i, 0, buf, (size_t)n, err))) goto fail;
        }
    } else if (order == 1) {
        for (int i = TG_N_TENSORS - 1; i >= 0; i--) {
            uint64_t n = dsq_ggufw_nbytes(w, i);
            for (uint64_t end = n; end > 0;) {
                uint64_t b = end >= 7 ? end - 7 : 0;
                for (uint64_t k = b; k < end; k++) buf[k - b] = tg_byte(i, k);
                if ((rc = dsq_ggufw_write(w, i, b, buf, (size_t)(end - b), err))) goto fail;
                end = b;
            }
        }
    } else {
        uint64_t pos[TG_N_TENSORS] = {0};
        for (int left = 1; left;) {
            left = 0;
            for (int i = 0; i < TG_N_TENSORS; i++) {
                uint64_t n = dsq_ggufw_nbytes(w, i), k = pos[i], e = k + 5 + (uint64_t)i * 3;
                if (e > n) e = n;
                if (k >= n) continue;
                for (uint64_t j = k; j < e; j++) buf[j - k] = tg_byte(i, j);
                if ((rc = dsq_ggufw_write(w, i, k, buf, (size_t)(e - k), err))) goto fail;
                pos[i] = e;
                left = 1;
            }
        }
    }
    return dsq_ggufw_finish(w, err);
fail:
    dsq_ggufw_abort(w);
    return rc < 0 ? rc : DSQ_E_ARG;
}

/* ---- dump ---------------------------------------------------------------- */

typedef struct sbuf {
    char *s;
    size_t n, cap;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (b->n + (size_t)k + 1 > b->cap) {
        while (b->n + (size_t)k + 1 > b->cap) b->cap = b->cap ? b->cap * 2 : 4096;
        b->s = realloc(b->s, b->cap);
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

static void dump_elem(sbuf *b, const dsq_gguf_kv *kv, uint64_t i) {
    const uint8_t *p = kv->data + i * (uint64_t)dsq_gguf_vtype_size(kv->elem);
    switch (kv->elem) {
    case DSQ_GGUF_F32: sb_printf(b, " 0x%08x", dsq_le32(p)); break;
    case DSQ_GGUF_F64: sb_printf(b, " 0x%016llx", (unsigned long long)dsq_le64(p)); break;
    case DSQ_GGUF_U64: sb_printf(b, " %llu", (unsigned long long)dsq_le64(p)); break;
    case DSQ_GGUF_STRING: {
        const char *s;
        uint64_t n;
        dsq_gguf_kv_str(kv, i, &s, &n);
        sb_printf(b, " ");
        if (!n) sb_printf(b, "-");
        for (uint64_t k = 0; k < n; k++) sb_printf(b, "%02x", (uint8_t)s[k]);
        break;
    }
    default: sb_printf(b, " %lld", (long long)dsq_gguf_kv_int(kv, i)); break;
    }
}

char *tg_dump(const dsq_gguf *g) {
    sbuf b = {0};
    sb_printf(&b, "version %u\nalignment %u\ndata_offset %llu\nn_kv %d\n", dsq_gguf_version(g), dsq_gguf_alignment(g),
              (unsigned long long)dsq_gguf_data_offset(g), dsq_gguf_n_kv(g));
    for (int i = 0; i < dsq_gguf_n_kv(g); i++) {
        const dsq_gguf_kv *kv = dsq_gguf_kv_at(g, i);
        sb_printf(&b, "kv %s %d", kv->key, kv->type);
        if (kv->type == DSQ_GGUF_ARRAY) sb_printf(&b, " %d %llu", kv->elem, (unsigned long long)kv->n);
        for (uint64_t e = 0; e < kv->n; e++) dump_elem(&b, kv, e);
        sb_printf(&b, "\n");
    }
    sb_printf(&b, "n_tensors %d\n", dsq_gguf_n_tensors(g));
    for (int i = 0; i < dsq_gguf_n_tensors(g); i++) {
        const dsq_gguf_tensor *t = dsq_gguf_tensor_at(g, i);
        sb_printf(&b, "tensor %s %d %lld %lld %lld %lld %llu %llu %016llx\n", t->name, t->type, (long long)t->ne[0],
                  (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3], (unsigned long long)t->offset,
                  (unsigned long long)t->nbytes, (unsigned long long)tg_fnv(t->data, t->nbytes));
    }
    return b.s;
}
