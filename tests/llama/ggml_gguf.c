/*
 * ggml_gguf.c -- ggml's own GGUF reader and writer (gguf.h of llama.cpp
 * de3ff815ea7d, in the prebuilt libggml-base.so), as a command for the
 * tests that hold dsq's GGUF code against them.
 *
 *   ggml_gguf dump FILE    every record as ggml reads it, in the dump format
 *                          of tests/gguf_util.h (dsq's reader prints the same
 *                          through tg_dump)
 *   ggml_gguf write FILE   a file written with gguf_set_* / gguf_add_tensor /
 *                          gguf_write_to_file: every value type as a scalar
 *                          and as an array, tensors of several types and
 *                          shapes, payload byte k of tensor i = (k*29 + i) & 255
 *
 * Exit status 0, or 1 when ggml refuses the file.
 */
#include "ggml.h"
#include "gguf.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t fnv(const void *p, uint64_t n) {
    const uint8_t *b = p;
    uint64_t h = 1469598103934665603ull;
    for (uint64_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static void hex(const char *s, size_t n) {
    putchar(' ');
    if (!n) putchar('-');
    for (size_t i = 0; i < n; i++) printf("%02x", (unsigned char)s[i]);
}

/* One element of a numeric type at p, as tests/gguf_util.c prints it. */
static void num(enum gguf_type t, const void *p) {
    uint32_t u32;
    uint64_t u64;
    switch (t) {
    case GGUF_TYPE_UINT8: printf(" %u", *(const uint8_t *)p); break;
    case GGUF_TYPE_INT8: printf(" %d", *(const int8_t *)p); break;
    case GGUF_TYPE_BOOL: printf(" %d", *(const int8_t *)p); break;
    case GGUF_TYPE_UINT16: printf(" %u", *(const uint16_t *)p); break;
    case GGUF_TYPE_INT16: printf(" %d", *(const int16_t *)p); break;
    case GGUF_TYPE_UINT32: printf(" %" PRIu32, *(const uint32_t *)p); break;
    case GGUF_TYPE_INT32: printf(" %" PRId32, *(const int32_t *)p); break;
    case GGUF_TYPE_UINT64: printf(" %" PRIu64, *(const uint64_t *)p); break;
    case GGUF_TYPE_INT64: printf(" %" PRId64, *(const int64_t *)p); break;
    case GGUF_TYPE_FLOAT32: memcpy(&u32, p, 4); printf(" 0x%08" PRIx32, u32); break;
    case GGUF_TYPE_FLOAT64: memcpy(&u64, p, 8); printf(" 0x%016" PRIx64, u64); break;
    default: printf(" ?"); break;
    }
}

static int dump(const char *path) {
    struct ggml_context *data = NULL;
    struct gguf_init_params ip = {false, &data};
    struct gguf_context *g = gguf_init_from_file(path, ip);
    if (!g) {
        fprintf(stderr, "ggml_gguf: ggml cannot read %s\n", path);
        return 1;
    }
    printf("version %u\nalignment %zu\ndata_offset %zu\nn_kv %" PRId64 "\n", gguf_get_version(g),
           gguf_get_alignment(g), gguf_get_data_offset(g), gguf_get_n_kv(g));
    for (int64_t i = 0; i < gguf_get_n_kv(g); i++) {
        enum gguf_type t = gguf_get_kv_type(g, i);
        printf("kv %s %d", gguf_get_key(g, i), (int)t);
        if (t == GGUF_TYPE_ARRAY) {
            enum gguf_type e = gguf_get_arr_type(g, i);
            size_t n = gguf_get_arr_n(g, i);
            printf(" %d %zu", (int)e, n);
            if (e == GGUF_TYPE_STRING) {
                for (size_t k = 0; k < n; k++) {
                    const char *s = gguf_get_arr_str(g, i, k);
                    hex(s, strlen(s));
                }
            } else {
                const char *p = gguf_get_arr_data(g, i);
                size_t sz = e == GGUF_TYPE_BOOL ? 1 : e == GGUF_TYPE_UINT8 || e == GGUF_TYPE_INT8 ? 1
                          : e == GGUF_TYPE_UINT16 || e == GGUF_TYPE_INT16 ? 2
                          : e == GGUF_TYPE_UINT64 || e == GGUF_TYPE_INT64 || e == GGUF_TYPE_FLOAT64 ? 8 : 4;
                for (size_t k = 0; k < n; k++) num(e, p + k * sz);
            }
        } else if (t == GGUF_TYPE_STRING) {
            const char *s = gguf_get_val_str(g, i);
            hex(s, strlen(s));
        } else {
            num(t, gguf_get_val_data(g, i));
        }
        putchar('\n');
    }
    printf("n_tensors %" PRId64 "\n", gguf_get_n_tensors(g));
    for (int64_t i = 0; i < gguf_get_n_tensors(g); i++) {
        const char *name = gguf_get_tensor_name(g, i);
        const int64_t *ne = gguf_get_tensor_ne(g, i);
        size_t nb = gguf_get_tensor_size(g, i);
        struct ggml_tensor *t = ggml_get_tensor(data, name);
        printf("tensor %s %d %" PRId64 " %" PRId64 " %" PRId64 " %" PRId64 " %zu %zu %016" PRIx64 "\n", name,
               (int)gguf_get_tensor_type(g, i), ne[0], ne[1], ne[2], ne[3], gguf_get_tensor_offset(g, i), nb,
               fnv(t ? t->data : NULL, t ? nb : 0));
    }
    gguf_free(g);
    ggml_free(data);
    return 0;
}

static int write_sample(const char *path) {
    struct gguf_context *g = gguf_init_empty();
    gguf_set_val_str(g, "general.architecture", "ggml-sample");
    /* no general.alignment: ggml's writer keeps laying out offsets and
     * padding for 32 when it is set, so the file it writes with 64 is one
     * its own reader refuses ("has offset 224, expected 256") */
    gguf_set_val_u8(g, "s.u8", 250);
    gguf_set_val_i8(g, "s.i8", -5);
    gguf_set_val_u16(g, "s.u16", 65000);
    gguf_set_val_i16(g, "s.i16", -32000);
    gguf_set_val_u32(g, "s.u32", 123456789u);
    gguf_set_val_i32(g, "s.i32", -123456789);
    gguf_set_val_f32(g, "s.f32", -0.25f);
    gguf_set_val_bool(g, "s.bool", true);
    gguf_set_val_str(g, "s.str", "ggml \xe2\x9c\x93");
    gguf_set_val_u64(g, "s.u64", 0xfedcba9876543210ull);
    gguf_set_val_i64(g, "s.i64", INT64_MIN);
    gguf_set_val_f64(g, "s.f64", 1.0 / 3.0);
    static const uint8_t bools[] = {1, 0, 0, 1};
    static const int16_t i16[] = {-1, 2, -3};
    static const uint32_t u32[] = {1, 2, 4000000000u};
    static const float f32[] = {1.0f, INFINITY};
    static const double f64[] = {-1e-310, 2.0};
    static const int64_t i64[] = {-2, INT64_MAX};
    gguf_set_arr_data(g, "a.bool", GGUF_TYPE_BOOL, bools, 4);
    gguf_set_arr_data(g, "a.i16", GGUF_TYPE_INT16, i16, 3);
    gguf_set_arr_data(g, "a.u32", GGUF_TYPE_UINT32, u32, 3);
    gguf_set_arr_data(g, "a.f32", GGUF_TYPE_FLOAT32, f32, 2);
    gguf_set_arr_data(g, "a.f64", GGUF_TYPE_FLOAT64, f64, 2);
    gguf_set_arr_data(g, "a.i64", GGUF_TYPE_INT64, i64, 2);
    const char *strs[] = {"x", "", "y z", "\xc4\xa0hello"};
    gguf_set_arr_str(g, "a.str", strs, 4);

    struct ggml_init_params p = {1 << 20, NULL, false};
    struct ggml_context *ctx = ggml_init(p);
    static const struct { const char *name; enum ggml_type type; int nd; int64_t ne[4]; } ts[] = {
        {"w.f32", GGML_TYPE_F32, 2, {3, 5, 1, 1}},
        {"w.q8_0", GGML_TYPE_Q8_0, 2, {64, 2, 1, 1}},
        {"w.q4_K", GGML_TYPE_Q4_K, 3, {256, 1, 2, 1}},
        {"w.bf16", GGML_TYPE_BF16, 4, {2, 3, 2, 2}},
        {"w.iq4_xs", GGML_TYPE_IQ4_XS, 1, {256, 1, 1, 1}},
    };
    for (int i = 0; i < (int)(sizeof ts / sizeof ts[0]); i++) {
        struct ggml_tensor *t = ggml_new_tensor(ctx, ts[i].type, ts[i].nd, ts[i].ne);
        ggml_set_name(t, ts[i].name);
        uint8_t *d = t->data;
        for (size_t k = 0; k < ggml_nbytes(t); k++) d[k] = (uint8_t)((k * 29 + (size_t)i) & 255);
        gguf_add_tensor(g, t);
    }
    int ok = gguf_write_to_file(g, path, false);
    gguf_free(g);
    ggml_free(ctx);
    if (!ok) fprintf(stderr, "ggml_gguf: gguf_write_to_file %s failed\n", path);
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "dump")) return dump(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "write")) return write_sample(argv[2]);
    fprintf(stderr, "usage: ggml_gguf dump|write FILE\n");
    return 2;
}
