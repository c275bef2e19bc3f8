/*
 * llama_logits.c -- runs a GGUF model through the real llama.cpp (the
 * prebuilt libraries tests/llama/fetch.sh unpacks) and reports what it
 * computes: the logits of every position and the perplexity, over
 * non-overlapping windows of a token file.
 *
 * usage: llama_logits MODEL.gguf TOKENS [options]
 *   TOKENS            a JSON array of token ids, or raw little-endian int32
 *                     (any file whose first non-blank byte is not '[')
 *   --ctx N           window length (default 256); a trailing partial window
 *                     is dropped, as dsq eval does (verify/eval.h)
 *   --max-windows K   score at most K windows (default all)
 *   --logits OUT      logits of every position of every window, raw
 *                     little-endian f32 [windows][ctx][n_vocab]
 *   --kl REF          REF: logits in the --logits layout of the same tokens;
 *                     adds mean KL(REF || this model) and top-1 agreement
 *   --score-from K    score (perplexity and KL) only predictions made at
 *                     positions >= K of each window (default 0: all ctx-1)
 *   --threads N       (default 1)
 *   --verbose         llama.cpp's own log on stderr
 * Prints one JSON object on stdout:
 *   {"windows":..,"ctx":..,"n_vocab":..,"n_predicted":..,"nll":..,"ppl":..
 *    [,"kl":..,"top1":..]}
 * Exit status 0, or 1 with one line on stderr.
 *
 * Settings chosen for exact comparisons: memory-mapped weights, no weight
 * repacking (use_extra_bufts = false: on CPUs with AMX the repacked buffer
 * types abort context creation for quantized DeepSeek files), flash
 * attention off, F32 K and V caches, every position an output, one batch per
 * window (n_ctx = n_batch = n_ubatch = window), the cache cleared between
 * windows.  Written against llama.h of llama.cpp de3ff815ea7d.
 */
#include "llama.h"
#include "ggml-backend.h"

#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
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
    fprintf(stderr, "llama_logits: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    if (!b || fread(b, 1, (size_t)sz, f) != (size_t)sz) die("cannot read %s", path);
    fclose(f);
    b[sz] = 0;
    *n = (size_t)sz;
    return b;
}

/* Token ids from a JSON array of integers or raw int32; *n ids, malloc'd. */
static int32_t *read_tokens(const char *path, int64_t *n) {
    size_t len;
    char *s = slurp(path, &len);
    size_t i = 0;
    while (i < len && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t')) i++;
    int32_t *t;
    if (i < len && s[i] == '[') {
        t = malloc(sizeof *t * (len / 2 + 1));
        int64_t k = 0;
        char *p = s + i + 1;
        for (;;) {
            while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t' || *p == ',') p++;
            if (*p == ']') break;
            char *e;
            errno = 0;
            long v = strtol(p, &e, 10);
            if (e == p || errno || v < 0 || v > INT32_MAX) die("%s: not a JSON array of token ids", path);
            t[k++] = (int32_t)v;
            p = e;
        }
        *n = k;
    } else {
        if (len % 4) die("%s: raw int32 token file with a partial id", path);
        t = malloc(len ? len : 1);
        for (size_t k = 0; k < len / 4; k++) {
            const uint8_t *b = (const uint8_t *)s + 4 * k;
            t[k] = (int32_t)((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24);
        }
        *n = (int64_t)(len / 4);
    }
    free(s);
    return t;
}

/* The folder of libllama, where the ggml CPU backend variants are. */
static void lib_dir(char *out, size_t cap) {
    Dl_info info;
    snprintf(out, cap, ".");
    if (dladdr((void *)llama_decode, &info) && info.dli_fname) {
        snprintf(out, cap, "%s", info.dli_fname);
        char *sl = strrchr(out, '/');
        if (sl) *sl = 0;
        else snprintf(out, cap, ".");
    }
}

/* log-sum-exp of x[0..n) in double */
static double lse(const float *x, int n) {
    double m = x[0];
    for (int i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
    double s = 0;
    for (int i = 0; i < n; i++) s += exp(x[i] - m);
    return m + log(s);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: llama_logits MODEL.gguf TOKENS [--ctx N] [--max-windows K] [--logits OUT] "
                        "[--kl REF] [--score-from K] [--threads N] [--verbose]\n");
        return 2;
    }
    const char *model_path = argv[1], *tok_path = argv[2], *out_path = NULL, *kl_path = NULL;
    int ctx_len = 256, threads = 1, score_from = 0;
    int64_t max_windows = 0;
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--verbose")) { g_verbose = 1; continue; }
        if (!v) die("%s needs a value", a);
        i++;
        if (!strcmp(a, "--ctx")) ctx_len = atoi(v);
        else if (!strcmp(a, "--max-windows")) max_windows = atoll(v);
        else if (!strcmp(a, "--logits")) out_path = v;
        else if (!strcmp(a, "--kl")) kl_path = v;
        else if (!strcmp(a, "--score-from")) score_from = atoi(v);
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else die("unknown option %s", a);
    }
    if (ctx_len < 2) die("--ctx %d: need at least 2", ctx_len);
    int64_t n_tok;
    int32_t *tok = read_tokens(tok_path, &n_tok);
    int64_t n_win = n_tok / ctx_len;
    if (max_windows > 0 && n_win > max_windows) n_win = max_windows;
    if (n_win < 1) die("%s: fewer tokens than one window", tok_path);

    llama_log_set(log_cb, NULL);
    char dir[4096];
    lib_dir(dir, sizeof dir);
    ggml_backend_load_all_from_path(dir);
    llama_backend_init();

    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    mp.load_mode = LLAMA_LOAD_MODE_MMAP;
    mp.use_extra_bufts = false;
    struct llama_model *model = llama_model_load_from_file(model_path, mp);
    if (!model) die("%s: llama.cpp cannot load the model", model_path);
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    int n_vocab = llama_vocab_n_tokens(vocab);
    for (int64_t k = 0; k < n_win * ctx_len; k++)
        if (tok[k] >= n_vocab) die("%s: token id outside the model's vocabulary", tok_path);

    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)ctx_len;
    cp.n_batch = (uint32_t)ctx_len;
    cp.n_ubatch = (uint32_t)ctx_len;
    cp.n_seq_max = 1;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.type_k = GGML_TYPE_F32;
    cp.type_v = GGML_TYPE_F32;
    cp.no_perf = true;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) die("%s: llama.cpp cannot create a context", model_path);

    FILE *out = out_path ? fopen(out_path, "wb") : NULL;
    if (out_path && !out) die("cannot create %s", out_path);
    FILE *ref = kl_path ? fopen(kl_path, "rb") : NULL;
    if (kl_path && !ref) die("cannot open %s", kl_path);
    float *rl = ref ? malloc(sizeof *rl * (size_t)n_vocab) : NULL;

    struct llama_batch b = llama_batch_init(ctx_len, 0, 1);
    double nll = 0, kl = 0;
    int64_t n_pred = 0, n_top1 = 0;
    for (int64_t w = 0; w < n_win; w++) {
        const int32_t *wt = tok + w * ctx_len;
        b.n_tokens = ctx_len;
        for (int i = 0; i < ctx_len; i++) {
            b.token[i] = wt[i];
            b.pos[i] = i;
            b.n_seq_id[i] = 1;
            b.seq_id[i][0] = 0;
            b.logits[i] = 1;
        }
        llama_memory_clear(llama_get_memory(ctx), true);
        int rc = llama_decode(ctx, b);
        if (rc) die("llama_decode failed on window %lld (status %d)", (long long)w, rc);
        for (int i = 0; i < ctx_len; i++) {
            const float *lg = llama_get_logits_ith(ctx, i);
            if (!lg) die("no logits for position %d", i);
            if (out && fwrite(lg, sizeof *lg, (size_t)n_vocab, out) != (size_t)n_vocab) die("cannot write %s", out_path);
            if (ref && fread(rl, sizeof *rl, (size_t)n_vocab, ref) != (size_t)n_vocab) die("%s: too short", kl_path);
            if (i + 1 >= ctx_len || i < score_from) continue;
            double z = lse(lg, n_vocab);
            nll += z - lg[wt[i + 1]];
            n_pred++;
            if (ref) {
                double zr = lse(rl, n_vocab), s = 0;
                int am = 0, ar = 0;
                for (int v = 0; v < n_vocab; v++) {
                    double pr = rl[v] - zr;
                    s += exp(pr) * (pr - (lg[v] - z));
                    if (lg[v] > lg[am]) am = v;
                    if (rl[v] > rl[ar]) ar = v;
                }
                kl += s;
                n_top1 += am == ar;
            }
        }
    }
    printf("{\"windows\":%lld,\"ctx\":%d,\"n_vocab\":%d,\"n_predicted\":%lld,\"nll\":%.10g,\"ppl\":%.10g",
           (long long)n_win, ctx_len, n_vocab, (long long)n_pred, n_pred ? nll / n_pred : 0.0,
           n_pred ? exp(nll / n_pred) : 0.0);
    if (ref) printf(",\"kl\":%.10g,\"top1\":%.10g", n_pred ? kl / n_pred : 0.0, n_pred ? (double)n_top1 / n_pred : 0.0);
    printf("}\n");
    if (out && fclose(out)) die("cannot write %s", out_path);
    if (ref) fclose(ref);
    free(rl);
    llama_batch_free(b);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    free(tok);
    return 0;
}
