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
 *   ggml_gguf legacy IN OUT  IN (an F32 deepseek2 / deepseek32 file in the MLA
 *                          layout) rewritten in the layout older converters
 *                          wrote and llama.cpp still loads: attn_k_b and
 *                          attn_v_b joined back into attn_kv_b
 *                          [H*(nope+v), kv_lora], attention.key_length /
 *                          value_length the per-head q/k and v sizes and no
 *                          *_mla keys; a deepseek32 file loses its indexer
 *                          and becomes deepseek2 (llama.cpp runs deepseek32
 *                          in the MLA layout only)
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

static int legacy(const char *in, const char *out) {
    struct ggml_context *src = NULL;
    struct gguf_init_params ip = {false, &src};
    struct gguf_context *g = gguf_init_from_file(in, ip);
    if (!g) return 1;
    const char *arch = gguf_get_val_str(g, gguf_find_key(g, "general.architecture"));
    char key[128];
    snprintf(key, sizeof key, "%s.attention.key_length_mla", arch);
    int64_t ik = gguf_find_key(g, key);
    snprintf(key, sizeof key, "%s.attention.value_length_mla", arch);
    int64_t iv = gguf_find_key(g, key);
    snprintf(key, sizeof key, "%s.attention.head_count", arch);
    int64_t ih = gguf_find_key(g, key);
    snprintf(key, sizeof key, "%s.attention.kv_lora_rank", arch);
    int64_t ir = gguf_find_key(g, key);
    if (ik < 0 || iv < 0 || ih < 0 || ir < 0) return 1;
    uint32_t kl = gguf_get_val_u32(g, ik), vl = gguf_get_val_u32(g, iv), H = gguf_get_val_u32(g, ih),
             R = gguf_get_val_u32(g, ir);
    snprintf(key, sizeof key, "%s.rope.dimension_count", arch);
    uint32_t rope = gguf_get_val_u32(g, gguf_find_key(g, key)), dn = kl - rope, dv = vl;
    struct gguf_context *o = gguf_init_empty();
    gguf_set_kv(o, g);
    int v32 = !strcmp(arch, "deepseek32");
    if (v32) {
        /* llama.cpp runs deepseek32 in the MLA layout only: the legacy file
         * is the same model without its indexer, as deepseek2 */
        gguf_set_val_str(o, "general.architecture", "deepseek2");
        for (int64_t i = 0; i < gguf_get_n_kv(g); i++) {
            const char *k = gguf_get_key(g, i);
            if (strncmp(k, "deepseek32.", 11)) continue;
            gguf_remove_key(o, k);
            if (strstr(k, ".indexer.")) continue;
            char nk[160];
            snprintf(nk, sizeof nk, "deepseek2.%s", k + 11);
            switch (gguf_get_kv_type(g, i)) {
            case GGUF_TYPE_UINT32: gguf_set_val_u32(o, nk, gguf_get_val_u32(g, i)); break;
            case GGUF_TYPE_INT32: gguf_set_val_i32(o, nk, gguf_get_val_i32(g, i)); break;
            case GGUF_TYPE_UINT64: gguf_set_val_u64(o, nk, gguf_get_val_u64(g, i)); break;
            case GGUF_TYPE_FLOAT32: gguf_set_val_f32(o, nk, gguf_get_val_f32(g, i)); break;
            case GGUF_TYPE_BOOL: gguf_set_val_bool(o, nk, gguf_get_val_bool(g, i)); break;
            case GGUF_TYPE_STRING: gguf_set_val_str(o, nk, gguf_get_val_str(g, i)); break;
            default: fprintf(stderr, "ggml_gguf legacy: key %s of an unexpected type\n", k); return 1;
            }
        }
        arch = "deepseek2";
    }
    snprintf(key, sizeof key, "%s.attention.key_length_mla", arch);
    gguf_remove_key(o, key);
    snprintf(key, sizeof key, "%s.attention.value_length_mla", arch);
    gguf_remove_key(o, key);
    snprintf(key, sizeof key, "%s.attention.key_length", arch);
    gguf_set_val_u32(o, key, kl);
    snprintf(key, sizeof key, "%s.attention.value_length", arch);
    gguf_set_val_u32(o, key, vl);
    snprintf(key, sizeof key, "%s.attention.head_count_kv", arch); /* a K/V cache per head */
    gguf_set_val_u32(o, key, H);
    struct ggml_init_params cp = {(size_t)1 << 30, NULL, false};
    struct ggml_context *dst = ggml_init(cp);
    for (int64_t i = 0; i < gguf_get_n_tensors(g); i++) {
        const char *name = gguf_get_tensor_name(g, i);
        struct ggml_tensor *t = ggml_get_tensor(src, name);
        const char *vb = strstr(name, "attn_v_b.weight");
        if (vb || (v32 && strstr(name, ".indexer."))) continue;
        const char *kb = strstr(name, "attn_k_b.weight");
        if (!kb) {
            gguf_add_tensor(o, t);
            continue;
        }
        /* kv_b[h*(dn+dv) + j][c] = k_b[h][c][j] (j < dn), v_b[h][j-dn][c] */
        char vname[128], kvname[128];
        snprintf(vname, sizeof vname, "%.*sattn_v_b.weight", (int)(kb - name), name);
        snprintf(kvname, sizeof kvname, "%.*sattn_kv_b.weight", (int)(kb - name), name);
        struct ggml_tensor *v = ggml_get_tensor(src, vname);
        if (!v || t->type != GGML_TYPE_F32 || v->type != GGML_TYPE_F32) return 1;
        struct ggml_tensor *kv = ggml_new_tensor_2d(dst, GGML_TYPE_F32, R, (int64_t)H * (dn + dv));
        ggml_set_name(kv, kvname);
        const float *k = t->data, *vv = v->data;
        float *d = kv->data;
        for (uint32_t h = 0; h < H; h++)
            for (uint32_t c = 0; c < R; c++) {
                for (uint32_t j = 0; j < dn; j++) d[((size_t)h * (dn + dv) + j) * R + c] = k[((size_t)h * R + c) * dn + j];
                for (uint32_t j = 0; j < dv; j++) d[((size_t)h * (dn + dv) + dn + j) * R + c] = vv[((size_t)h * dv + j) * R + c];
            }
        gguf_add_tensor(o, kv);
    }
    int ok = gguf_write_to_file(o, out, false);
    gguf_free(o);
    gguf_free(g);
    ggml_free(dst);
    ggml_free(src);
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "legacy")) return legacy(argv[2], argv[3]);
    if (argc == 3 && !strcmp(argv[1], "dump")) return dump(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "write")) return write_sample(argv[2]);
    fprintf(stderr, "usage: ggml_gguf dump|write FILE | legacy IN OUT\n");
    return 2;
}
