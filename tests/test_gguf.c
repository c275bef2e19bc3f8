/*
 * test_gguf.c -- the GGUF reader and writer (formats/gguf.c): every value
 * type and tensor shape read back exactly, the same bytes whatever order the
 * payloads are written in, the file layout against bytes assembled by hand,
 * writer misuse refused, allocation failures, and one handcrafted bad file
 * per failure mode of the reader (as llama.cpp's tests/test-gguf.cpp does),
 * each refused with its own message naming the file and the key or tensor.
 */
#include "test.h"
#include "gguf_util.h"
#include "common.h"
#include "formats/gguf.h"

#include <math.h>
#include <stdlib.h>
#include <unistd.h>

static uint64_t pad32(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

/* ---- the sample file, read back ------------------------------------------ */

static void check_sample(const char *path, uint32_t align) {
    dsq_gguf *g;
    dsq_err err = {0};
    CHECKF(dsq_gguf_open(&g, path, &err) == 0, "%s", err.msg);
    CHECK(dsq_gguf_version(g) == 3);
    CHECK(dsq_gguf_alignment(g) == (align ? align : 32));
    CHECK(dsq_gguf_n_tensors(g) == TG_N_TENSORS);
    CHECK(dsq_gguf_n_kv(g) == 32 + (align != 0));
    CHECK(!strcmp(dsq_gguf_kv_at(g, 0)->key, "general.architecture"));
    uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32; uint64_t u64; int64_t i64;
    float f; double d; uint8_t b;
    CHECK(dsq_gguf_get_u8(g, "test.u8", &u8, &err) == 0 && u8 == 200);
    CHECK(dsq_gguf_get_i8(g, "test.i8", &i8, &err) == 0 && i8 == -100);
    CHECK(dsq_gguf_get_u16(g, "test.u16", &u16, &err) == 0 && u16 == 60000);
    CHECK(dsq_gguf_get_i16(g, "test.i16", &i16, &err) == 0 && i16 == -30000);
    CHECK(dsq_gguf_get_u32(g, "test.u32", &u32, &err) == 0 && u32 == 4000000000u);
    CHECK(dsq_gguf_get_i32(g, "test.i32", &i32, &err) == 0 && i32 == -2000000000);
    CHECK(dsq_gguf_get_f32(g, "test.f32", &f, &err) == 0 && f == 0.1f);
    CHECK(dsq_gguf_get_bool(g, "test.bool", &b, &err) == 0 && b == 1);
    CHECK(dsq_gguf_get_bool(g, "test.bool_false", &b, &err) == 0 && b == 0);
    CHECK(dsq_gguf_get_u64(g, "test.u64", &u64, &err) == 0 && u64 == 18000000000000000000ull);
    CHECK(dsq_gguf_get_i64(g, "test.i64", &i64, &err) == 0 && i64 == -9000000000000000000ll);
    CHECK(dsq_gguf_get_f64(g, "test.f64", &d, &err) == 0 && d == 3.141592653589793);
    CHECK(dsq_gguf_get_f32(g, "test.f32_nan", &f, &err) == 0 && isnan(f));
    CHECK(dsq_gguf_get_f64(g, "test.f64_inf", &d, &err) == 0 && d == -INFINITY);
    CHECK(dsq_gguf_get_u32(g, "general.quantization_version", &u32, &err) == 0 && u32 == 2);
    const char *s;
    uint64_t n;
    CHECK(dsq_gguf_get_str(g, "test.string", &s, &n, &err) == 0 && n == 7 && !memcmp(s, "dsq \xe2\x9c\x93", 7));
    CHECK(dsq_gguf_get_str(g, "test.empty_string", &s, &n, &err) == 0 && n == 0);
    char cs[16];
    CHECK(dsq_gguf_get_cstr(g, "general.architecture", cs, sizeof cs, &err) == 0 && !strcmp(cs, "llama"));
    CHECK(dsq_gguf_get_int(g, "test.u16", &i64, &err) == 0 && i64 == 60000);
    CHECK(dsq_gguf_get_int(g, "test.i8", &i64, &err) == 0 && i64 == -100);
    CHECK(dsq_gguf_get_int(g, "test.bool", &i64, &err) == 0 && i64 == 1);
    CHECK(dsq_gguf_get_int(g, "test.u64", &i64, &err) == DSQ_E_FORMAT); /* above INT64_MAX */

    const dsq_gguf_kv *kv;
    CHECK(dsq_gguf_get_arr(g, "test.arr.u8", DSQ_GGUF_U8, &kv, &err) == 0 && kv->n == 3);
    CHECK(dsq_gguf_kv_int(kv, 0) == 0 && dsq_gguf_kv_int(kv, 2) == 255);
    CHECK(dsq_gguf_get_arr(g, "test.arr.i8", DSQ_GGUF_I8, &kv, &err) == 0 && dsq_gguf_kv_int(kv, 0) == -128);
    CHECK(dsq_gguf_get_arr(g, "test.arr.u16", DSQ_GGUF_U16, &kv, &err) == 0 && dsq_gguf_kv_int(kv, 1) == 65535);
    CHECK(dsq_gguf_get_arr(g, "test.arr.i16", DSQ_GGUF_I16, &kv, &err) == 0 && dsq_gguf_kv_int(kv, 0) == -32768);
    CHECK(dsq_gguf_get_arr(g, "test.arr.u32", DSQ_GGUF_U32, &kv, &err) == 0 && dsq_gguf_kv_int(kv, 1) == 4294967295ll);
    CHECK(dsq_gguf_get_arr(g, "test.arr.i32", DSQ_GGUF_I32, &kv, &err) == 0 && dsq_gguf_kv_int(kv, 0) == INT32_MIN);
    CHECK(dsq_gguf_get_arr(g, "test.arr.f32", DSQ_GGUF_F32, &kv, &err) == 0 && dsq_gguf_kv_f64(kv, 0) == 1.5);
    CHECK(signbit(dsq_gguf_kv_f64(kv, 1)) && dsq_gguf_kv_f64(kv, 2) == (double)3.4028235e38f);
    CHECK(dsq_gguf_get_arr(g, "test.arr.bool", DSQ_GGUF_BOOL, &kv, &err) == 0 && dsq_gguf_kv_int(kv, 1) == 0 &&
          dsq_gguf_kv_int(kv, 2) == 1);
    CHECK(dsq_gguf_get_arr(g, "test.arr.u64", DSQ_GGUF_U64, &kv, &err) == 0 && dsq_le64(kv->data + 8) == UINT64_MAX);
    CHECK(dsq_gguf_get_arr(g, "test.arr.i64", DSQ_GGUF_I64, &kv, &err) == 0 && dsq_gguf_kv_int(kv, 0) == INT64_MIN);
    CHECK(dsq_gguf_get_arr(g, "test.arr.f64", DSQ_GGUF_F64, &kv, &err) == 0 && dsq_gguf_kv_f64(kv, 1) == -2.5e-300);
    CHECK(dsq_gguf_get_arr(g, "test.arr.empty", DSQ_GGUF_I32, &kv, &err) == 0 && kv->n == 0);
    CHECK(dsq_gguf_get_arr(g, "test.arr.str_empty", DSQ_GGUF_STRING, &kv, &err) == 0 && kv->n == 0);
    CHECK(dsq_gguf_get_arr(g, "tokenizer.ggml.tokens", DSQ_GGUF_STRING, &kv, &err) == 0 && kv->n == 4);
    dsq_gguf_kv_str(kv, 0, &s, &n);
    CHECK(n == 5 && !memcmp(s, "hello", 5));
    dsq_gguf_kv_str(kv, 1, &s, &n);
    CHECK(n == 0);
    dsq_gguf_kv_str(kv, 3, &s, &n);
    CHECK(n == 29 && !memcmp(s, "<\xef\xbd\x9c" "begin", 8));

    uint64_t expect_off = 0, al = align ? align : 32;
    CHECK(dsq_gguf_data_offset(g) % al == 0);
    for (int i = 0; i < TG_N_TENSORS; i++) {
        const dsq_gguf_tensor *t = dsq_gguf_tensor_at(g, i);
        const tg_tensor *e = &tg_tensors[i];
        CHECKF(!strcmp(t->name, e->name) && t->type == e->type, "tensor %d", i);
        CHECK(dsq_gguf_find_tensor(g, e->name) == i);
        CHECK(!memcmp(t->ne, e->ne, sizeof t->ne));
        uint64_t nb;
        CHECK(dsq_ggml_nbytes(e->type, e->ne, &nb) == 0 && nb == t->nbytes);
        CHECK(t->offset == expect_off);
        expect_off += pad32(t->nbytes, al);
        for (uint64_t k = 0; k < t->nbytes; k++) CHECKF(t->data[k] == tg_byte(i, k), "tensor %d byte %llu", i, (unsigned long long)k);
    }
    /* trailing dimensions of 1 are not stored; a zero-element tensor keeps its shape */
    CHECK(dsq_gguf_tensor_at(g, 1)->n_dims == 1 && dsq_gguf_tensor_at(g, 2)->n_dims == 3);
    CHECK(dsq_gguf_tensor_at(g, 4)->n_dims == 4 && dsq_gguf_tensor_at(g, 5)->n_dims == 2);
    CHECK(dsq_gguf_tensor_at(g, 5)->nbytes == 0);
    CHECK(dsq_gguf_file_size(g) == dsq_gguf_data_offset(g) + expect_off);
    CHECK(dsq_gguf_find_key(g, "no.such.key") == -1 && dsq_gguf_find_tensor(g, "nope") == -1);
    CHECK(dsq_gguf_kv_at(g, -1) == NULL && dsq_gguf_tensor_at(g, TG_N_TENSORS) == NULL);
    dsq_gguf_close(g);
}

TEST(test_gguf_round_trip) {
    const char *p = t_path(t_tmpdir(), "s.gguf");
    dsq_err err = {0};
    CHECKF(tg_write_sample(p, 0, 0, &err) == 0, "%s", err.msg);
    check_sample(p, 0);
    if (t_failed()) return;
    size_t n;
    uint8_t *b = t_read_file(p, &n);
    CHECK(b && n > 24);
    CHECK(!memcmp(b, "GGUF", 4) && dsq_le32(b + 4) == 3 && dsq_le64(b + 8) == TG_N_TENSORS && dsq_le64(b + 16) == 32);
    free(b);
    /* 64-byte alignment, and 1 (every offset is then the plain sum) */
    CHECKF(tg_write_sample(p, 0, 64, &err) == 0, "%s", err.msg);
    check_sample(p, 64);
    CHECKF(tg_write_sample(p, 0, 1, &err) == 0, "%s", err.msg);
    check_sample(p, 1);
}

/* Payloads in reverse order, in pieces back to front, or interleaved: the
 * same bytes as in declared order. */
TEST(test_gguf_write_orders) {
    const char *d = t_tmpdir();
    dsq_err err = {0};
    for (int align = 0; align <= 64; align += 64) {
        size_t n0, n;
        CHECKF(tg_write_sample(t_path(d, "o0.gguf"), 0, (uint32_t)align, &err) == 0, "%s", err.msg);
        uint8_t *ref = t_read_file(t_path(d, "o0.gguf"), &n0);
        CHECK(ref);
        for (int order = 1; order <= 2; order++) {
            CHECKF(tg_write_sample(t_path(d, "o.gguf"), order, (uint32_t)align, &err) == 0, "%s", err.msg);
            uint8_t *b = t_read_file(t_path(d, "o.gguf"), &n);
            CHECKF(b && n == n0 && !memcmp(b, ref, n), "order %d, alignment %d: bytes differ", order, align);
            free(b);
            check_sample(t_path(d, "o.gguf"), (uint32_t)align);
        }
        free(ref);
    }
}

/* ---- hand-assembled files ---------------------------------------------- */

typedef struct hb {
    uint8_t b[16384];
    size_t n;
} hb;
static void p8(hb *h, uint8_t v) { h->b[h->n++] = v; }
static void p32(hb *h, uint32_t v) { dsq_st32(h->b + h->n, v); h->n += 4; }
static void p64(hb *h, uint64_t v) { dsq_st64(h->b + h->n, v); h->n += 8; }
static void pbytes(hb *h, const void *p, size_t n) { memcpy(h->b + h->n, p, n); h->n += n; }
static void pstr(hb *h, const char *s) { p64(h, strlen(s)); pbytes(h, s, strlen(s)); }
static void ppad(hb *h, size_t a) { while (h->n % a) p8(h, 0); }

/* One u32 key and one f32 tensor of two elements, as GGUF v3 lays them out
 * (formats.md A.1-A.5), against the writer. */
TEST(test_gguf_layout_bytes) {
    hb h = {{0}, 0};
    pbytes(&h, "GGUF", 4);
    p32(&h, 3);
    p64(&h, 1);          /* tensor_count */
    p64(&h, 1);          /* kv_count */
    pstr(&h, "a.b");
    p32(&h, DSQ_GGUF_U32);
    p32(&h, 7);
    pstr(&h, "t");
    p32(&h, 1);          /* n_dims */
    p64(&h, 2);          /* ne0 */
    p32(&h, DSQ_GGML_F32);
    p64(&h, 0);          /* offset */
    ppad(&h, 32);
    CHECK(h.n == 96);
    float v[2] = {1.0f, -2.0f};
    pbytes(&h, v, 8);
    ppad(&h, 32);

    const char *p = t_path(t_tmpdir(), "l.gguf");
    dsq_ggufw *w;
    dsq_err err = {0};
    CHECK(dsq_ggufw_open(&w, p, 0, &err) == 0);
    CHECK(dsq_ggufw_set_u32(w, "a.b", 7, &err) == 0);
    int64_t ne[2] = {2, 1};
    CHECK(dsq_ggufw_add_tensor(w, "t", DSQ_GGML_F32, 2, ne, &err) == 0);
    CHECK(dsq_ggufw_nbytes(w, 0) == 8);
    CHECK(dsq_ggufw_write(w, 0, 0, v, 8, &err) == 0);
    CHECKF(dsq_ggufw_finish(w, &err) == 0, "%s", err.msg);
    size_t n;
    uint8_t *b = t_read_file(p, &n);
    CHECKF(b && n == h.n && !memcmp(b, h.b, n), "writer output differs from the hand-assembled file (%zu vs %zu bytes)", n, h.n);
    free(b);

    /* no tensors: the file ends after the last key, without padding */
    CHECK(dsq_ggufw_open(&w, p, 1, &err) == 0);
    CHECK(dsq_ggufw_set_str(w, "k", "v", &err) == 0);
    CHECKF(dsq_ggufw_finish(w, &err) == 0, "%s", err.msg);
    b = t_read_file(p, &n);
    CHECK(b && n == 24 + 8 + 1 + 4 + 8 + 1);
    free(b);
    dsq_gguf *g;
    CHECKF(dsq_gguf_open(&g, p, &err) == 0, "%s", err.msg);
    CHECK(dsq_gguf_n_tensors(g) == 0 && dsq_gguf_data_offset(g) == n);
    dsq_gguf_close(g);
}

/* ---- writer misuse ------------------------------------------------------- */

TEST(test_gguf_writer_errors) {
    const char *d = t_tmpdir(), *p = t_path(d, "w.gguf");
    dsq_ggufw *w;
    dsq_err err = {0};
    CHECK(dsq_ggufw_open(&w, p, 0, &err) == 0);
    CHECK(dsq_ggufw_set_u32(w, "a", 1, &err) == 0);
    CHECK(dsq_ggufw_set_i32(w, "a", 1, &err) == DSQ_E_ARG && strstr(err.msg, "duplicate key 'a'"));
    CHECK(dsq_ggufw_set_u32(w, "", 1, &err) == DSQ_E_ARG && strstr(err.msg, "empty key"));
    CHECK(dsq_ggufw_set_i32(w, "general.alignment", 32, &err) == DSQ_E_ARG && strstr(err.msg, "must be u32"));
    CHECK(dsq_ggufw_set_u32(w, "general.alignment", 48, &err) == DSQ_E_ARG && strstr(err.msg, "power of two"));
    CHECK(dsq_ggufw_set_u32(w, "general.alignment", 0, &err) == DSQ_E_ARG);
    CHECK(dsq_ggufw_set_str(w, "general.quantization_version", "2", &err) == DSQ_E_ARG);
    uint8_t bad_bool[2] = {0, 2};
    CHECK(dsq_ggufw_set_arr(w, "bools", DSQ_GGUF_BOOL, bad_bool, 2, &err) == DSQ_E_ARG && strstr(err.msg, "bool element 1"));
    CHECK(dsq_ggufw_set_arr(w, "nested", DSQ_GGUF_ARRAY, bad_bool, 1, &err) == DSQ_E_ARG);
    CHECK(dsq_ggufw_set_arr(w, "strs", DSQ_GGUF_STRING, bad_bool, 1, &err) == DSQ_E_ARG);
    CHECK(dsq_ggufw_set(w, "x", 13, bad_bool, &err) == DSQ_E_ARG);
    char long_key[70000];
    memset(long_key, 'k', sizeof long_key - 1);
    long_key[sizeof long_key - 1] = 0;
    CHECK(dsq_ggufw_set_u8(w, long_key, 1, &err) == DSQ_E_ARG);
    int64_t ne[4] = {32, 2, 1, 1}, bad_ne[2] = {33, 2}, neg[2] = {-1, 2};
    CHECK(dsq_ggufw_add_tensor(w, "", DSQ_GGML_F32, 2, ne, &err) == DSQ_E_ARG);
    CHECK(dsq_ggufw_add_tensor(w, "n123456789012345678901234567890123456789012345678901234567890123", DSQ_GGML_F32, 2,
                               ne, &err) == DSQ_E_ARG && strstr(err.msg, "at most 63"));
    CHECK(dsq_ggufw_add_tensor(w, "t0", DSQ_GGML_F32, 0, ne, &err) == DSQ_E_ARG);
    CHECK(dsq_ggufw_add_tensor(w, "t0", DSQ_GGML_F32, 5, ne, &err) == DSQ_E_ARG);
    CHECK(dsq_ggufw_add_tensor(w, "t0", 4, 2, ne, &err) == DSQ_E_ARG && strstr(err.msg, "unknown ggml type 4"));
    CHECK(dsq_ggufw_add_tensor(w, "t0", DSQ_GGML_Q8_0, 2, bad_ne, &err) == DSQ_E_ARG && strstr(err.msg, "multiple of 32"));
    CHECK(dsq_ggufw_add_tensor(w, "t0", DSQ_GGML_F32, 2, neg, &err) == DSQ_E_ARG);
    int64_t huge[4] = {INT64_MAX / 2, 4, 1, 1};
    CHECK(dsq_ggufw_add_tensor(w, "t0", DSQ_GGML_F32, 2, huge, &err) == DSQ_E_ARG);
    CHECK(dsq_ggufw_add_tensor(w, "t0", DSQ_GGML_Q8_0, 2, ne, &err) == 0);
    CHECK(dsq_ggufw_add_tensor(w, "t0", DSQ_GGML_F32, 2, ne, &err) == DSQ_E_ARG && strstr(err.msg, "duplicate tensor 't0'"));
    CHECK(dsq_ggufw_add_tensor(w, "t1", DSQ_GGML_F32, 2, ne, &err) == 1);
    /* quantized tensor without general.quantization_version */
    uint8_t buf[256] = {0};
    CHECK(dsq_ggufw_write(w, 0, 0, buf, 68, &err) == DSQ_E_ARG && strstr(err.msg, "quantization_version"));
    CHECK(dsq_ggufw_set_u32(w, "general.quantization_version", 2, &err) == 0);
    CHECK(dsq_ggufw_nbytes(w, 0) == 68 && dsq_ggufw_nbytes(w, 1) == 256);
    CHECK(dsq_ggufw_write(w, 0, 0, buf, 30, &err) == 0);
    CHECK(dsq_ggufw_set_u32(w, "late", 1, &err) == DSQ_E_ARG && strstr(err.msg, "after the header"));
    CHECK(dsq_ggufw_add_tensor(w, "late", DSQ_GGML_F32, 2, ne, &err) == DSQ_E_ARG);
    CHECK(dsq_ggufw_write(w, 0, 29, buf, 2, &err) == DSQ_E_ARG && strstr(err.msg, "written twice"));
    CHECK(dsq_ggufw_write(w, 0, 60, buf, 9, &err) == DSQ_E_ARG && strstr(err.msg, "past its 68 bytes"));
    CHECK(dsq_ggufw_write(w, 2, 0, buf, 1, &err) == DSQ_E_ARG);
    CHECK(dsq_ggufw_write(w, 0, 40, buf, 28, &err) == 0);
    CHECK(dsq_ggufw_write(w, 0, 35, buf, 6, &err) == DSQ_E_ARG); /* overlaps [40, 68) */
    CHECK(dsq_ggufw_write(w, 1, 0, buf, 256, &err) == 0);
    CHECK(dsq_ggufw_finish(w, &err) == DSQ_E_ARG && strstr(err.msg, "'t0': 58 of 68 bytes written"));
    CHECK(!t_file_exists(p));
    /* an existing file is kept unless forced */
    CHECK(t_write_file(p, "x", 1) == 0);
    CHECK(dsq_ggufw_open(&w, p, 0, &err) == DSQ_E_EXISTS);
    CHECK(dsq_ggufw_open(&w, p, 1, &err) == 0);
    CHECK(dsq_ggufw_set_u32(w, "a", 1, &err) == 0);
    dsq_ggufw_abort(w);
    size_t n;
    char *b = t_read_file(p, &n);
    CHECK(b && n == 1);
    free(b);
    dsq_ggufw_abort(NULL);
    dsq_gguf_close(NULL);
}

/* ---- typed access errors ------------------------------------------------- */

TEST(test_gguf_typed_errors) {
    const char *p = t_path(t_tmpdir(), "s.gguf");
    dsq_err err = {0};
    CHECKF(tg_write_sample(p, 0, 0, &err) == 0, "%s", err.msg);
    dsq_gguf *g;
    CHECK(dsq_gguf_open(&g, p, &err) == 0);
    uint32_t u;
    int32_t i;
    CHECK(dsq_gguf_get_u32(g, "missing.key", &u, &err) == DSQ_E_NOTFOUND && strstr(err.msg, "no key 'missing.key'") &&
          strstr(err.msg, p));
    CHECK(dsq_gguf_get_i32(g, "test.u32", &i, &err) == DSQ_E_FORMAT && strstr(err.msg, "'test.u32' is u32, expected i32"));
    CHECK(dsq_gguf_get_u32(g, "test.arr.u32", &u, &err) == DSQ_E_FORMAT && strstr(err.msg, "is array of u32"));
    const char *s;
    uint64_t n;
    CHECK(dsq_gguf_get_str(g, "test.u8", &s, &n, &err) == DSQ_E_FORMAT);
    char small[4];
    CHECK(dsq_gguf_get_cstr(g, "general.architecture", small, sizeof small, &err) == DSQ_E_FORMAT);
    const dsq_gguf_kv *kv;
    CHECK(dsq_gguf_get_arr(g, "test.arr.u32", DSQ_GGUF_I32, &kv, &err) == DSQ_E_FORMAT);
    CHECK(dsq_gguf_get_arr(g, "test.u32", -1, &kv, &err) == DSQ_E_FORMAT);
    CHECK(dsq_gguf_get_arr(g, "test.arr.u32", -1, &kv, &err) == 0);
    int64_t v;
    CHECK(dsq_gguf_get_int(g, "test.f32", &v, &err) == DSQ_E_FORMAT);
    CHECK(dsq_gguf_get(g, "test.string", DSQ_GGUF_STRING, &v, &err) == DSQ_E_ARG);
    dsq_gguf_close(g);
    /* type table */
    CHECK(!strcmp(dsq_ggml_type_name(DSQ_GGML_Q4_K), "q4_K") && dsq_ggml_type_name(4) == NULL &&
          dsq_ggml_type_name(43) == NULL && dsq_ggml_type_name(-1) == NULL);
    int bl, by;
    CHECK(dsq_ggml_type_block(DSQ_GGML_IQ4_XS, &bl, &by) && bl == 256 && by == 136);
    CHECK(dsq_ggml_type_block(DSQ_GGML_NVFP4, &bl, &by) && bl == 64 && by == 36);
    CHECK(!dsq_ggml_type_block(33, &bl, &by));
    CHECK(dsq_ggml_type_is_quantized(DSQ_GGML_Q8_0) && !dsq_ggml_type_is_quantized(DSQ_GGML_BF16));
    CHECK(!strcmp(dsq_gguf_vtype_name(DSQ_GGUF_F64), "f64") && !strcmp(dsq_gguf_vtype_name(99), "?"));
}

/* ---- one handcrafted file per failure mode ---------------------------- */

enum {
    M_OK, M_VERSION2, M_SHORT, M_MAGIC, M_VERSION0, M_VERSION1, M_VERSION4, M_BYTESWAPPED, M_N_TENSORS, M_N_KV,
    M_KEY_TRUNC, M_KEY_EMPTY, M_KEY_LONG, M_KEY_PAST_END, M_KEY_NUL, M_KEY_DUP, M_VTYPE, M_VTYPE_TRUNC,
    M_ARR_NESTED, M_ARR_ELEM, M_ARR_TOO_MANY, M_ARR_PAST_END, M_STR_TOO_LONG, M_STR_PAST_END, M_BOOL,
    M_BOOL_ARR, M_ALIGN_TYPE, M_ALIGN_NPOT, M_ALIGN_ZERO, M_NAME_TRUNC, M_NAME_EMPTY, M_NAME_LONG,
    M_NAME_NUL, M_NAME_DUP, M_NAME_PAST_END, M_NDIMS, M_NE_NEG, M_NE_OVERFLOW, M_TYPE_UNKNOWN, M_TYPE_REMOVED,
    M_NE0_BLOCK, M_INFO_TRUNC, M_OFF_MISALIGNED, M_OFF_OVERLAP, M_OFF_GAP, M_DATA_PAST_END, M_DATA_START,
    M_TRAILING, M_NO_TENSORS_TRAILING, M_NO_FINAL_PAD, M_N
};

/* The base file: 4 keys (a string, a u32, an array of strings, a bool) and
 * two tensors (f32 {4, 2}, q8_0 {32}), with one rule broken per mode. */
static void craft(int mode, hb *h) {
    h->n = 0;
    pbytes(h, mode == M_MAGIC ? "GGUG" : "GGUF", 4);
    uint32_t ver = mode == M_VERSION2 ? 2 : mode == M_VERSION0 ? 0 : mode == M_VERSION1 ? 1 : mode == M_VERSION4 ? 4 : 3;
    p32(h, mode == M_BYTESWAPPED ? 0x03000000u : ver);
    int n_t = mode == M_NO_TENSORS_TRAILING ? 0 : 2;
    p64(h, mode == M_N_TENSORS ? (1ull << 40) : (uint64_t)n_t);
    p64(h, mode == M_N_KV ? 0xffffffffffffffffull : 4);
    if (mode == M_SHORT) { h->n = 20; return; }
    /* key 0 */
    if (mode == M_KEY_TRUNC) { p32(h, 5); return; }
    if (mode == M_KEY_EMPTY) p64(h, 0);
    else if (mode == M_KEY_LONG) p64(h, 70000);
    else if (mode == M_KEY_PAST_END) { p64(h, 1000); pbytes(h, "general", 7); return; }
    else if (mode == M_KEY_NUL) { p64(h, 7); pbytes(h, "gen\0ral", 7); }
    else pstr(h, "general.architecture");
    p32(h, mode == M_VTYPE ? 13 : DSQ_GGUF_STRING);
    if (mode == M_STR_TOO_LONG) p64(h, (1ull << 30) + 1);
    else if (mode == M_STR_PAST_END) { p64(h, 100000); return; }
    else pstr(h, "llama-test-arch");
    /* key 1 */
    if (mode == M_ALIGN_TYPE || mode == M_ALIGN_NPOT || mode == M_ALIGN_ZERO) {
        pstr(h, "general.alignment");
        p32(h, mode == M_ALIGN_TYPE ? DSQ_GGUF_I32 : DSQ_GGUF_U32);
        p32(h, mode == M_ALIGN_NPOT ? 48 : mode == M_ALIGN_ZERO ? 0 : 32);
    } else {
        pstr(h, mode == M_KEY_DUP ? "general.architecture" : "test.n");
        if (mode == M_VTYPE_TRUNC) { p8(h, DSQ_GGUF_U32); return; }
        p32(h, DSQ_GGUF_U32);
        p32(h, 7);
    }
    /* key 2: array of strings */
    pstr(h, "tokenizer.ggml.tokens");
    p32(h, DSQ_GGUF_ARRAY);
    p32(h, mode == M_ARR_NESTED ? DSQ_GGUF_ARRAY : mode == M_ARR_ELEM ? 77 : DSQ_GGUF_STRING);
    if (mode == M_ARR_TOO_MANY) p64(h, (1ull << 30) + 1);
    else if (mode == M_ARR_PAST_END) p64(h, 1000000);
    else p64(h, 2);
    pstr(h, "a");
    pstr(h, "bc");
    /* key 3: bool (or array of bools) */
    pstr(h, "test.flag");
    if (mode == M_BOOL_ARR) {
        p32(h, DSQ_GGUF_ARRAY);
        p32(h, DSQ_GGUF_BOOL);
        p64(h, 3);
        p8(h, 1);
        p8(h, 0);
        p8(h, 255);
    } else {
        p32(h, DSQ_GGUF_BOOL);
        p8(h, mode == M_BOOL ? 2 : 1);
    }
    if (mode == M_NO_TENSORS_TRAILING) { p8(h, 0); return; }
    /* tensor 0: f32 {4, 2} */
    if (mode == M_NAME_TRUNC) { p8(h, 3); return; }
    if (mode == M_NAME_EMPTY) p64(h, 0);
    else if (mode == M_NAME_LONG) pstr(h, "a234567890123456789012345678901234567890123456789012345678901234");
    else if (mode == M_NAME_NUL) { p64(h, 3); pbytes(h, "a\0b", 3); }
    else if (mode == M_NAME_PAST_END) { p64(h, 5000); return; }
    else pstr(h, "a.weight");
    p32(h, mode == M_NDIMS ? 5 : 2);
    p64(h, 4);
    p64(h, mode == M_NE_NEG ? (uint64_t)-2 : mode == M_NE_OVERFLOW ? (1ull << 62) : 2);
    p32(h, mode == M_TYPE_UNKNOWN ? 43 : mode == M_TYPE_REMOVED ? 31 : DSQ_GGML_F32);
    p64(h, 0);
    /* tensor 1: q8_0 {32} */
    pstr(h, mode == M_NAME_DUP ? "a.weight" : "b.weight");
    p32(h, 1);
    p64(h, mode == M_NE0_BLOCK ? 48 : 32);
    if (mode == M_INFO_TRUNC) { p32(h, DSQ_GGML_Q8_0); return; }
    p32(h, DSQ_GGML_Q8_0);
    p64(h, mode == M_OFF_MISALIGNED ? 40 : mode == M_OFF_OVERLAP ? 0 : mode == M_OFF_GAP ? 64 : 32);
    if (mode == M_DATA_START) { p8(h, 0); return; }
    ppad(h, 32);
    for (int k = 0; k < 32; k++) p8(h, (uint8_t)k);          /* tensor 0 */
    for (int k = 0; k < 34; k++) p8(h, (uint8_t)(k * 3));    /* tensor 1 */
    if (mode == M_DATA_PAST_END) { h->n -= 2; return; }
    if (mode == M_NO_FINAL_PAD) return;
    ppad(h, 32);
    if (mode == M_TRAILING) pbytes(h, "tail", 4);
}

TEST(test_gguf_bad_files) {
    static const struct { int mode, rc; const char *msg; } cases[] = {
        {M_SHORT, DSQ_E_FORMAT, "truncated: 20 bytes"},
        {M_MAGIC, DSQ_E_FORMAT, "not a GGUF file (magic 'GGUG')"},
        {M_VERSION0, DSQ_E_UNSUPPORTED, "GGUF version 0"},
        {M_VERSION1, DSQ_E_UNSUPPORTED, "GGUF version 1 "},
        {M_VERSION4, DSQ_E_UNSUPPORTED, "GGUF version 4"},
        {M_BYTESWAPPED, DSQ_E_UNSUPPORTED, "big-endian"},
        {M_N_TENSORS, DSQ_E_FORMAT, "1099511627776 tensors claimed"},
        {M_N_KV, DSQ_E_FORMAT, "18446744073709551615 keys claimed"},
        {M_KEY_TRUNC, DSQ_E_FORMAT, "key 0 truncated at byte 24"},
        {M_KEY_EMPTY, DSQ_E_FORMAT, "key 0 is empty"},
        {M_KEY_LONG, DSQ_E_FORMAT, "key 0 claims 70000 bytes"},
        {M_KEY_PAST_END, DSQ_E_FORMAT, "key 0 of 1000 bytes runs past the end"},
        {M_KEY_NUL, DSQ_E_FORMAT, "key 0 'gen?ral' holds a NUL byte"},
        {M_KEY_DUP, DSQ_E_FORMAT, "duplicate key 'general.architecture'"},
        {M_VTYPE, DSQ_E_FORMAT, "key 'general.architecture': unknown value type 13"},
        {M_VTYPE_TRUNC, DSQ_E_FORMAT, "key 'test.n': type truncated"},
        {M_ARR_NESTED, DSQ_E_FORMAT, "key 'tokenizer.ggml.tokens': nested arrays"},
        {M_ARR_ELEM, DSQ_E_FORMAT, "key 'tokenizer.ggml.tokens': unknown array element type 77"},
        {M_ARR_TOO_MANY, DSQ_E_FORMAT, "key 'tokenizer.ggml.tokens': array of 1073741825 elements"},
        {M_ARR_PAST_END, DSQ_E_FORMAT, "key 'tokenizer.ggml.tokens': array of 1000000 string runs past the end"},
        {M_STR_TOO_LONG, DSQ_E_FORMAT, "key 'general.architecture': string 0 claims 1073741825 bytes"},
        {M_STR_PAST_END, DSQ_E_FORMAT, "key 'general.architecture': string 0 of 100000 bytes runs past the end"},
        {M_BOOL, DSQ_E_FORMAT, "key 'test.flag': bool 0 is 2"},
        {M_BOOL_ARR, DSQ_E_FORMAT, "key 'test.flag': bool 2 is 255"},
        {M_ALIGN_TYPE, DSQ_E_FORMAT, "'general.alignment' is i32 (must be u32)"},
        {M_ALIGN_NPOT, DSQ_E_FORMAT, "'general.alignment' = 48 is not a power of two"},
        {M_ALIGN_ZERO, DSQ_E_FORMAT, "'general.alignment' = 0 is not a power of two"},
        {M_NAME_TRUNC, DSQ_E_FORMAT, "tensor 0 truncated"},
        {M_NAME_EMPTY, DSQ_E_FORMAT, "tensor 0 has an empty name"},
        {M_NAME_LONG, DSQ_E_FORMAT, "tensor 0 'a234567890123456789012345678901234567890123456789012345678901234': name of 64 bytes"},
        {M_NAME_NUL, DSQ_E_FORMAT, "tensor 0 'a?b': name holds a NUL byte"},
        {M_NAME_DUP, DSQ_E_FORMAT, "duplicate tensor name 'a.weight'"},
        {M_NAME_PAST_END, DSQ_E_FORMAT, "tensor 0: name of 5000 bytes runs past the end"},
        {M_NDIMS, DSQ_E_FORMAT, "tensor 'a.weight': 5 dimensions"},
        {M_NE_NEG, DSQ_E_FORMAT, "tensor 'a.weight': ne[1] = -2 is negative"},
        {M_NE_OVERFLOW, DSQ_E_FORMAT, "tensor 'a.weight': shape {4, 4611686018427387904, 1, 1} overflows"},
        {M_TYPE_UNKNOWN, DSQ_E_UNSUPPORTED, "tensor 'a.weight': unknown or removed ggml type 43"},
        {M_TYPE_REMOVED, DSQ_E_UNSUPPORTED, "tensor 'a.weight': unknown or removed ggml type 31"},
        {M_NE0_BLOCK, DSQ_E_FORMAT, "tensor 'b.weight': ne[0] = 48 is not a multiple of the q8_0 block (32)"},
        {M_INFO_TRUNC, DSQ_E_FORMAT, "tensor 'b.weight': info truncated"},
        {M_OFF_MISALIGNED, DSQ_E_FORMAT, "tensor 'b.weight': offset 40 is not a multiple of the alignment 32"},
        {M_OFF_OVERLAP, DSQ_E_FORMAT, "tensor 'b.weight': data at offset 0 overlaps tensor 'a.weight'"},
        {M_OFF_GAP, DSQ_E_FORMAT, "tensor 'b.weight': offset 64 leaves a gap (data must follow at 32)"},
        {M_DATA_PAST_END, DSQ_E_FORMAT, "tensor 'b.weight': data ["},
        {M_DATA_START, DSQ_E_FORMAT, "truncated: the data section would start at byte"},
        {M_TRAILING, DSQ_E_FORMAT, "4 bytes after the data section"},
        {M_NO_TENSORS_TRAILING, DSQ_E_FORMAT, "1 bytes after the last key"},
    };
    const char *p = t_path(t_tmpdir(), "bad.gguf");
    hb *h = malloc(sizeof *h);
    CHECK(h);
    int seen[M_N] = {0};
    /* the base file, its version-2 twin and a copy without the last
     * payload's padding are fine */
    static const int good[] = {M_OK, M_VERSION2, M_NO_FINAL_PAD};
    for (int gi = 0; gi < 3; gi++) {
        int mode = good[gi];
        craft(mode, h);
        CHECK(t_write_file(p, h->b, h->n) == 0);
        dsq_gguf *g;
        dsq_err err = {0};
        CHECKF(dsq_gguf_open(&g, p, &err) == 0, "mode %d: %s", mode, err.msg);
        CHECK(dsq_gguf_n_tensors(g) == 2 && dsq_gguf_n_kv(g) == 4);
        CHECK(dsq_gguf_tensor_at(g, 1)->data[33] == 99 && dsq_gguf_tensor_at(g, 1)->offset == 32);
        CHECK(dsq_gguf_version(g) == (mode == M_VERSION2 ? 2u : 3u));
        /* the data section starts after padding (M_DATA_START relies on it) */
        CHECK(dsq_gguf_data_offset(g) % 32 == 0 && dsq_gguf_data_offset(g) > 0);
        dsq_gguf_close(g);
        seen[mode] = 1;
    }
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        craft(cases[i].mode, h);
        CHECK(t_write_file(p, h->b, h->n) == 0);
        dsq_gguf *g = (dsq_gguf *)1;
        dsq_err err = {0};
        int rc = dsq_gguf_open(&g, p, &err);
        CHECKF(rc == cases[i].rc && g == NULL, "mode %d: rc %d (%s)", cases[i].mode, rc, err.msg);
        CHECKF(strstr(err.msg, cases[i].msg) && !strncmp(err.msg, p, strlen(p)) && !strchr(err.msg, '\n'),
               "mode %d: message '%s', expected '%s'", cases[i].mode, err.msg, cases[i].msg);
        seen[cases[i].mode] = 1;
    }
    for (int m = 0; m < M_N; m++) CHECKF(seen[m], "failure mode %d has no case", m);
    free(h);
    /* not a file */
    dsq_gguf *g;
    dsq_err err = {0};
    CHECK(dsq_gguf_open(&g, t_tmpdir(), &err) == DSQ_E_IO);
    CHECK(dsq_gguf_open(&g, t_path(t_tmpdir(), "missing.gguf"), &err) == DSQ_E_IO && strstr(err.msg, "missing.gguf"));
}

/* Every allocation of writing and reading the sample fails in turn: a clean
 * DSQ_E_NOMEM each time, no output file after a failed write, no leak (the
 * sanitizer build checks). */
TEST(test_gguf_faults) {
    const char *p = t_path(t_tmpdir(), "f.gguf");
    int n, ok = 0;
    for (n = 0; n < 2000 && !ok; n++) {
        dsq_err err = {0};
        unlink(p);
        dsq_fault_alloc_after(n);
        int rc = tg_write_sample(p, 2, 0, &err);
        dsq_fault_alloc_after(-1);
        if (rc == DSQ_OK) ok = 1;
        else {
            CHECKF(rc == DSQ_E_NOMEM, "allocation %d: rc %d (%s)", n, rc, err.msg);
            CHECKF(!t_file_exists(p), "allocation %d: failed write left %s", n, p);
        }
    }
    CHECKF(ok && n > 10, "%d allocations", n);
    for (n = 0; n < 2000; n++) {
        dsq_gguf *g = NULL;
        dsq_err err = {0};
        dsq_fault_alloc_after(n);
        int rc = dsq_gguf_open(&g, p, &err);
        dsq_fault_alloc_after(-1);
        if (rc == DSQ_OK) {
            dsq_gguf_close(g);
            break;
        }
        CHECKF(rc == DSQ_E_NOMEM && g == NULL, "allocation %d: rc %d (%s)", n, rc, err.msg);
    }
    CHECK(n > 10 && n < 2000);
    check_sample(p, 0);
}
