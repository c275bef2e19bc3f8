/*
 * llama_quant.c -- llama.cpp's own quantizer (llama_model_quantize in the
 * prebuilt libllama), as a command, so dsq's GGUF presets can be compared
 * with the files llama.cpp itself makes from the same F32 GGUF.
 *
 *   llama_quant IN.gguf OUT.gguf TYPE [--imatrix FILE.gguf] [--threads N] [--verbose]
 *
 * TYPE is a llama.cpp file type: q8_0 q6_k q5_k_m q4_k_m q4_0 iq4_xs iq4_nl
 * q3_k_m q2_k.  --imatrix reads an importance matrix in llama.cpp's GGUF
 * imatrix format (for each weight W: tensors "W.in_sum2" [n_per_row x n_mat]
 * and "W.counts" [n_mat], as llama-imatrix writes them); the importance of
 * matrix m is in_sum2 / counts, as llama-quantize computes it.
 * Exit status 0, or 1 with one line on stderr.  Written against llama.h of
 * llama.cpp de3ff815ea7d.
 */
#include "llama.h"
#include "gguf.h"
#include "ggml.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_verbose;

static void log_cb(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (g_verbose || level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "llama_quant: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static const struct { const char *name; enum llama_ftype ftype; } k_types[] = {
    {"q8_0", LLAMA_FTYPE_MOSTLY_Q8_0},     {"q6_k", LLAMA_FTYPE_MOSTLY_Q6_K},
    {"q5_k_m", LLAMA_FTYPE_MOSTLY_Q5_K_M}, {"q4_k_m", LLAMA_FTYPE_MOSTLY_Q4_K_M},
    {"q4_0", LLAMA_FTYPE_MOSTLY_Q4_0},     {"iq4_xs", LLAMA_FTYPE_MOSTLY_IQ4_XS},
    {"iq4_nl", LLAMA_FTYPE_MOSTLY_IQ4_NL}, {"q3_k_m", LLAMA_FTYPE_MOSTLY_Q3_K_M},
    {"q2_k", LLAMA_FTYPE_MOSTLY_Q2_K},
};

/* The importance vectors of an imatrix GGUF, as llama_model_imatrix_data
 * entries (the list ends with a NULL name); freed at exit. */
static struct llama_model_imatrix_data *load_imatrix(const char *path) {
    struct ggml_context *ctx = NULL;
    struct gguf_init_params ip = {false, &ctx};
    struct gguf_context *g = gguf_init_from_file(path, ip);
    if (!g) die("%s: not a GGUF file ggml reads", path);
    int64_t n = gguf_get_n_tensors(g);
    struct llama_model_imatrix_data *out = calloc((size_t)n + 1, sizeof *out);
    if (!out) die("out of memory");
    int k = 0;
    for (int64_t i = 0; i < n; i++) {
        const char *name = gguf_get_tensor_name(g, i);
        size_t len = strlen(name);
        if (len < 9 || strcmp(name + len - 9, ".in_sum2")) continue;
        char base[512], cname[520];
        if (len - 9 >= sizeof base) die("%s: tensor name too long", path);
        memcpy(base, name, len - 9);
        base[len - 9] = 0;
        snprintf(cname, sizeof cname, "%s.counts", base);
        struct ggml_tensor *s2 = ggml_get_tensor(ctx, name), *ct = ggml_get_tensor(ctx, cname);
        if (!s2 || !ct || s2->type != GGML_TYPE_F32 || ct->type != GGML_TYPE_F32)
            die("%s: %s without an f32 %s", path, name, cname);
        int64_t per_row = s2->ne[0], n_mat = ggml_nelements(ct);
        if (ggml_nelements(s2) != per_row * n_mat) die("%s: %s is not [n_per_row x %lld]", path, name, (long long)n_mat);
        float *d = malloc(sizeof *d * (size_t)(per_row * n_mat));
        if (!d) die("out of memory");
        const float *src = s2->data, *cnt = ct->data;
        for (int64_t m = 0; m < n_mat; m++)
            for (int64_t j = 0; j < per_row; j++)
                d[m * per_row + j] = cnt[m] > 0 ? src[m * per_row + j] / cnt[m] : 1.0f;
        out[k].name = strdup(base);
        out[k].data = d;
        out[k].size = (size_t)(per_row * n_mat);
        k++;
    }
    if (!k) die("%s: no *.in_sum2 tensors", path);
    gguf_free(g); /* the data lives in ctx, copied above */
    ggml_free(ctx);
    return out;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: llama_quant IN.gguf OUT.gguf TYPE [--imatrix FILE.gguf] [--threads N] [--verbose]\n");
        return 2;
    }
    const char *in = argv[1], *out = argv[2], *type = argv[3], *imatrix = NULL;
    int threads = 1;
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--imatrix") && i + 1 < argc) imatrix = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--verbose")) g_verbose = 1;
        else die("unknown option '%s'", argv[i]);
    }
    int t = -1;
    for (size_t i = 0; i < sizeof k_types / sizeof k_types[0]; i++)
        if (!strcmp(k_types[i].name, type)) t = (int)i;
    if (t < 0) die("unknown type '%s'", type);
    llama_log_set(log_cb, NULL);
    llama_backend_init();
    struct llama_model_quantize_params p = llama_model_quantize_default_params();
    p.nthread = threads;
    p.ftype = k_types[t].ftype;
    if (imatrix) p.imatrix = load_imatrix(imatrix);
    uint32_t rc = llama_model_quantize(in, out, &p);
    llama_backend_free();
    if (rc) die("llama_model_quantize failed on %s (status %u)", in, rc);
    return 0;
}
