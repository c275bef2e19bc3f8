/*
 * test_ggml_ref.c -- the ggml block schemes against llama.cpp's own library:
 * libggml-base.so from npm's @node-llama-cpp/linux-x64@3.22.1 (fetched once
 * by tests/llama/fetch.sh into <build>/llama; skipped, and counted so, when
 * npm cannot be reached).
 *
 *   - Decoding: ggml's to_float (ggml_get_type_traits(type)->to_float, the
 *     dequantize_row_* of ggml-quants.c) and dsq_q_dequantize (fast and
 *     reference paths) give the same bits on random and adversarial blocks
 *     (NaN / inf / subnormal f16 fields, extreme codes and scales), and on
 *     the blocks dsq's quantizers write.
 *   - Encoding: ggml_quantize_chunk (llama.cpp's quantizer, with and without
 *     an importance matrix) against dsq_q_quantize on weight-like matrices,
 *     both decoded by ggml: dsq's importance-weighted squared error must not
 *     be larger.  The figures are printed.
 *
 * The struct below is ggml_type_traits from include/ggml.h of the same
 * llama.cpp commit (de3ff815ea7d).
 */
#include "test.h"
#include "llama_util.h"
#include "quant/quant.h"
#include "quant/ggml_blocks.h"
#include "common.h"

#include <dlfcn.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <strings.h>

typedef void (*gg_to_float_t)(const void *x, float *y, int64_t k);
struct gg_type_traits {
    const char *type_name;
    int64_t blck_size;
    int64_t blck_size_interleave;
    size_t type_size;
    bool is_quantized;
    gg_to_float_t to_float;
    void *from_float_ref;
};
typedef const struct gg_type_traits *(*gg_traits_fn)(int type);
typedef size_t (*gg_quantize_chunk_fn)(int type, const float *src, void *dst, int64_t start, int64_t nrows,
                                       int64_t n_per_row, const float *imatrix);

typedef struct ggml_lib {
    void *h;
    gg_traits_fn traits;
    gg_quantize_chunk_fn quantize_chunk;
} ggml_lib;

/* Fetch (once) and open libggml-base.so.  Returns 1 with *lib filled, 0
 * after SKIP or a failure was recorded. */
static int ggml_open(ggml_lib *lib) {
    static char so[1200];
    const char *dir = tl_llama_dir(0);
    if (!dir) return 0;
    snprintf(so, sizeof so, "%s/bins/linux-x64/libggml-base.so", dir);
    lib->h = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    if (!lib->h) {
        t_fail(__FILE__, __LINE__, "dlopen %s: %s", so, dlerror());
        return 0;
    }
    /* POSIX guarantees dlsym's object pointer converts to a function pointer;
     * ISO C does not, so copy the bits */
    void *p1 = dlsym(lib->h, "ggml_get_type_traits"), *p2 = dlsym(lib->h, "ggml_quantize_chunk");
    memcpy(&lib->traits, &p1, sizeof p1);
    memcpy(&lib->quantize_chunk, &p2, sizeof p2);
    if (!lib->traits || !lib->quantize_chunk) {
        t_fail(__FILE__, __LINE__, "%s lacks ggml_get_type_traits / ggml_quantize_chunk", so);
        dlclose(lib->h);
        return 0;
    }
    return 1;
}

static uint64_t g_rng;
static uint32_t rnd(void) {
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return (uint32_t)((g_rng * 0x2545F4914F6CDD1DULL) >> 32);
}
static double urand(void) { return (rnd() + 0.5) / 4294967296.0; }
static double gauss(void) { return sqrt(-2 * log(urand())) * cos(6.283185307179586 * urand()); }

/* Byte offsets of the f16 fields of block type i. */
static int f16_fields(int i, int *off) {
    switch (i) {
    case DSQ_GB_Q4_1:
    case DSQ_GB_Q5_1:
    case DSQ_GB_Q4_K:
    case DSQ_GB_Q5_K: off[0] = 0; off[1] = 2; return 2;
    case DSQ_GB_Q2_K: off[0] = 80; off[1] = 82; return 2;
    case DSQ_GB_Q3_K: off[0] = 108; return 1;
    case DSQ_GB_Q6_K: off[0] = 208; return 1;
    default: off[0] = 0; return 1;
    }
}

/* ggml and dsq decode n blocks of type i to the same bits (fast and ref). */
static int same_decode(const ggml_lib *lib, int i, const uint8_t *blocks, int64_t nb, float *a, float *b, float *c) {
    const dsq_gbtype *g = dsq_gb_type(i);
    lib->traits(g->ggml_type)->to_float(blocks, a, nb * g->blck);
    dsq_qmat m = {DSQ_Q_GGML_Q8_0 + i, nb, g->blck, (void *)blocks, NULL, NULL};
    if (dsq_q_dequantize(&m, 0, nb, b, NULL) != DSQ_OK || dsq_q_dequantize_ref(&m, 0, nb, c, NULL) != DSQ_OK)
        return 0;
    size_t n = sizeof(float) * (size_t)(nb * g->blck);
    return memcmp(a, b, n) == 0 && memcmp(a, c, n) == 0;
}

TEST(test_ggml_ref_dequant) {
    ggml_lib lib;
    if (!ggml_open(&lib)) return;
    enum { NB = 512 };
    uint8_t *blocks = malloc(NB * 210);
    float *a = malloc(sizeof(float) * NB * 256), *b = malloc(sizeof(float) * NB * 256),
          *c = malloc(sizeof(float) * NB * 256);
    static const uint16_t special[] = {0x7C00, 0xFC00, 0x7E00, 0x7D01, 0xFE55, 0x0001, 0x8001, 0x03FF,
                                       0x7BFF, 0xFBFF, 0x0000, 0x8000, 0x3C00, 0x0400};
    g_rng = 1234;
    for (int i = 0; i < DSQ_GB_COUNT; i++) {
        const dsq_gbtype *g = dsq_gb_type(i);
        const struct gg_type_traits *tt = lib.traits(g->ggml_type);
        CHECKF(tt && tt->to_float && tt->blck_size == g->blck && (int)tt->type_size == g->bytes,
               "%s: ggml traits %s %lld %zu", g->name, tt && tt->type_name ? tt->type_name : "?",
               tt ? (long long)tt->blck_size : -1LL, tt ? tt->type_size : 0);
        CHECKF(!strcasecmp(tt->type_name, g->name), "ggml names type %d %s, dsq %s", g->ggml_type, tt->type_name, g->name);
        for (int rep = 0; rep < 8; rep++) {
            for (int k = 0; k < NB * g->bytes; k++) blocks[k] = (uint8_t)rnd();
            int off[2], nf = f16_fields(i, off);
            for (int bl = 0; bl < NB; bl++) {
                uint8_t *p = blocks + bl * g->bytes;
                if (rep & 1) /* special f16 fields */
                    for (int f = 0; f < nf; f++) {
                        uint16_t h = special[rnd() % (sizeof special / sizeof special[0])];
                        p[off[f]] = (uint8_t)h;
                        p[off[f] + 1] = (uint8_t)(h >> 8);
                    }
                else if (rep == 2) /* finite, moderate f16 fields */
                    for (int f = 0; f < nf; f++) p[off[f] + 1] = (uint8_t)((p[off[f] + 1] & 0x83) | 0x30);
                if (rep == 4 && bl % 2) memset(p, bl % 4 == 1 ? 0xFF : 0x00, (size_t)g->bytes);
            }
            CHECKF(same_decode(&lib, i, blocks, NB, a, b, c), "%s: decoding differs from ggml (set %d)", g->name, rep);
        }
        /* and the blocks dsq writes (with specials in the input) */
        float *x = malloc(sizeof(float) * NB * 256);
        for (int64_t k = 0; k < (int64_t)NB * g->blck; k++) {
            x[k] = (float)(gauss() * 0.05);
            if (k % 101 == 7) x[k] = k % 2 ? NAN : (k % 3 ? INFINITY : 1e35f);
        }
        dsq_qmat src = {DSQ_Q_F32, NB, g->blck, x, NULL, NULL}, dst = {DSQ_Q_GGML_Q8_0 + i, NB, g->blck, blocks, NULL, NULL};
        CHECK(dsq_q_quantize(&src, &dst, 0, NB, NULL, NULL) == DSQ_OK);
        CHECKF(same_decode(&lib, i, blocks, NB, a, b, c), "%s: ggml decodes dsq's blocks differently", g->name);
        free(x);
    }
    free(blocks);
    free(a);
    free(b);
    free(c);
    dlclose(lib.h);
}

/* Weight-like matrices: 0 Gaussian with 1% outliers and per-row scales,
 * 1 Laplace, 2 a few outlier input columns (as LLM weights have); the
 * importance is log-normal per column and larger on the outlier columns. */
static void make_case(int kind, float *x, float *imp, int64_t rows, int64_t cols) {
    for (int64_t c = 0; c < cols; c++) {
        imp[c] = (float)exp(1.5 * gauss());
        if (kind == 2 && c % 97 == 5) imp[c] *= 30;
    }
    for (int64_t r = 0; r < rows; r++) {
        double s = 0.02 * exp(0.5 * gauss());
        for (int64_t c = 0; c < cols; c++) {
            double v;
            if (kind == 1) v = (urand() < 0.5 ? -1 : 1) * log(urand()) * 0.7;
            else v = gauss() * (urand() < 0.01 ? 6 : 1);
            if (kind == 2 && c % 97 == 5) v *= 8;
            x[r * cols + c] = (float)(v * s);
        }
    }
}

static double werr(const float *x, const float *y, const float *imp, int64_t rows, int64_t cols) {
    double e = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            double d = (double)x[r * cols + c] - y[r * cols + c];
            e += (imp ? imp[c] : 1.0) * d * d;
        }
    return e;
}

TEST(test_ggml_ref_quant_error) {
    ggml_lib lib;
    if (!ggml_open(&lib)) return;
    enum { R = 24, C = 2048, NCASE = 3 };
    float *x = malloc(sizeof(float) * R * C), *imp = malloc(sizeof(float) * C), *y = malloc(sizeof(float) * R * C);
    uint8_t *qg = malloc((size_t)R * C * 2), *qd = malloc((size_t)R * C * 2);
    g_rng = 99;
    fprintf(stderr, "  weighted squared error, dsq / llama.cpp (sum of %d matrices [%d, %d]):\n", NCASE, R, C);
    for (int i = 0; i < DSQ_GB_COUNT; i++) {
        const dsq_gbtype *g = dsq_gb_type(i);
        gg_to_float_t to_float = lib.traits(g->ggml_type)->to_float;
        double eg[2] = {0, 0}, ed[2] = {0, 0}, worst[2] = {0, 0};
        for (int k = 0; k < NCASE; k++) {
            make_case(k, x, imp, R, C);
            for (int wi = 0; wi < 2; wi++) {
                const float *im = wi ? imp : NULL;
                size_t nbytes = lib.quantize_chunk(g->ggml_type, x, qg, 0, R, C, im);
                CHECK(nbytes == (size_t)R * (C / g->blck) * (size_t)g->bytes);
                to_float(qg, y, (int64_t)R * C);
                double a = werr(x, y, im, R, C);
                dsq_qmat src = {DSQ_Q_F32, R, C, x, NULL, NULL}, dst = {DSQ_Q_GGML_Q8_0 + i, R, C, qd, NULL, NULL};
                dsq_qopts o = {im, 0, 0, 0};
                CHECK(dsq_q_quantize(&src, &dst, 0, R, &o, NULL) == DSQ_OK);
                to_float(qd, y, (int64_t)R * C); /* dsq's blocks as llama.cpp reads them */
                double b = werr(x, y, im, R, C);
                eg[wi] += a;
                ed[wi] += b;
                if (b / a > worst[wi]) worst[wi] = b / a;
            }
        }
        fprintf(stderr, "    %-7s no importance %.4f (worst matrix %.4f)   importance %.4f (worst %.4f)\n", g->name,
                ed[0] / eg[0], worst[0], ed[1] / eg[1], worst[1]);
        for (int wi = 0; wi < 2; wi++)
            CHECKF(ed[wi] <= eg[wi], "%s%s: dsq error %.6g above llama.cpp's %.6g", g->name,
                   wi ? " with importance" : "", ed[wi], eg[wi]);
    }
    free(x);
    free(imp);
    free(y);
    free(qg);
    free(qd);
    dlclose(lib.h);
}

/* int4-g32-sym (bf16 and f16 scales) transcoded to Q4_0: libggml's own
 * Q4_0 decoder gives exactly the floats dsq decodes from the int4 matrix,
 * every code and sign of scale included; a bf16 scale f16 cannot hold is
 * refused (the pipeline then quantizes and reports it), a non-finite one
 * is an error. */
TEST(test_ggml_ref_transcode_int4_q4_0) {
    ggml_lib lib;
    if (!ggml_open(&lib)) return;
    enum { R = 48, C = 96 };
    float *x = malloc(sizeof(float) * R * C), *a = malloc(sizeof(float) * R * C), *b = malloc(sizeof(float) * R * C);
    g_rng = 0x7e57c0deULL;
    for (int i = 0; i < R * C; i++) x[i] = (float)(gauss() * (i % 7 == 0 ? 3.0 : 0.02));
    for (int k = 0; k < 2; k++) {
        int st = k ? DSQ_Q_INT4_G32_SYM_F16 : DSQ_Q_INT4_G32_SYM;
        dsq_qsizes zs, zd;
        CHECK(dsq_q_sizes(st, R, C, &zs, NULL) == 0 && dsq_q_sizes(DSQ_Q_GGML_Q4_0, R, C, &zd, NULL) == 0);
        uint8_t *d = malloc(zs.data), *s = malloc(zs.scale), *q = malloc(zd.data);
        dsq_qmat fm = {DSQ_Q_F32, R, C, x, NULL, NULL}, im = {st, R, C, d, s, NULL}, qm = {DSQ_Q_GGML_Q4_0, R, C, q, NULL, NULL};
        CHECK(dsq_q_quantize(&fm, &im, 0, R, NULL, NULL) == 0);
        CHECK(dsq_q_ggml_twin(st) == DSQ_Q_GGML_Q4_0);
        dsq_err err = {0};
        CHECKF(dsq_q_transcode(&im, &qm, &err) == 0, "%s", err.msg);
        CHECK(dsq_q_dequantize(&im, 0, R, a, NULL) == 0);
        lib.traits(2 /* GGML_TYPE_Q4_0 */)->to_float(q, b, (int64_t)R * C);
        CHECKF(memcmp(a, b, sizeof(float) * R * C) == 0, "%s: libggml decodes the q4_0 transcode differently",
               dsq_q_scheme(st)->name);
        if (!k) {
            s[0] = 0x00; s[1] = 0x30;  /* bf16 2^-31: below f16's smallest subnormal */
            CHECK(dsq_q_transcode(&im, &qm, &err) == DSQ_E_UNSUPPORTED);
            s[0] = 0xC0; s[1] = 0x7F;  /* bf16 NaN */
            CHECK(dsq_q_transcode(&im, &qm, &err) == DSQ_E_FORMAT);
        }
        free(d);
        free(s);
        free(q);
    }
    free(x);
    free(a);
    free(b);
}
