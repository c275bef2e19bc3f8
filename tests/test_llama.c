/*
 * test_llama.c -- dsq's GGUF files against the real llama.cpp: the prebuilt
 * libraries and their exact source from npm (tests/llama/fetch.sh), the
 * tools built against them by `make llama` (tests/llama/ggml_gguf.c,
 * tests/llama/llama_logits.c).  Skipped (and counted) when fetch.sh reports
 * npm unreachable (exit 77).
 *
 *   - ggml's own GGUF reader reads every record and payload of files dsq
 *     writes exactly as dsq's reader does, and dsq's reader reads a file
 *     ggml's writer made exactly as ggml does (line-for-line equal dumps,
 *     tests/gguf_util.h), and both read the vocabulary files llama.cpp's
 *     converter wrote for its tokenizer tests alike;
 *   - a tiny llama-architecture model written by dsq's writer loads in
 *     llama.cpp and its logits come out of the driver: with the attention
 *     and FFN outputs zeroed they must equal output * rmsnorm(embedding)
 *     computed here; with random weights they are finite, each window is
 *     independent, and attention carries context.
 *
 * The llama.cpp folder is $DSQ_LLAMA, else "llama" beside the dsq binary
 * under test (build/llama for `make test`).
 */
#include "test.h"
#include "gguf_util.h"
#include "common.h"
#include "formats/gguf.h"
#include "llama_util.h"
#include "quant/dtype.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>

static const char *llama_dir(void) { return tl_llama_dir(1); }

/* ggml's dump of path (malloc'd) or NULL. */
static char *ggml_dump(const char *dir, const char *path) {
    char cmd[2400], *out = NULL;
    snprintf(cmd, sizeof cmd, "'%s/ggml_gguf' dump '%s'", dir, path);
    int rc = t_run(cmd, &out);
    if (rc != 0) {
        fprintf(stderr, "  ggml_gguf dump %s: status %d: %s\n", path, rc, out ? out : "");
        free(out);
        return NULL;
    }
    return out;
}

static char *dsq_dump(const char *path) {
    dsq_gguf *g;
    dsq_err err = {0};
    if (dsq_gguf_open(&g, path, &err)) {
        fprintf(stderr, "  %s\n", err.msg);
        return NULL;
    }
    char *s = tg_dump(g);
    dsq_gguf_close(g);
    return s;
}

/* First differing line of two dumps, for the failure message. */
static const char *first_diff(const char *a, const char *b) {
    static char line[300];
    const char *la = a;
    while (*a && *a == *b) {
        if (*a == '\n') la = a + 1;
        a++;
        b++;
    }
    snprintf(line, sizeof line, "%.*s", (int)strcspn(la, "\n"), la);
    return line;
}

TEST(test_llama_gguf_ggml) {
    const char *dir = llama_dir();
    if (!dir) return;
    const char *d = t_tmpdir();
    dsq_err err = {0};
    /* dsq writes, ggml reads: default alignment, 64, and payloads out of order */
    for (int v = 0; v < 3; v++) {
        const char *p = t_path(d, "dsq.gguf");
        CHECKF(tg_write_sample(p, v == 2 ? 2 : 0, v == 1 ? 64 : 0, &err) == 0, "%s", err.msg);
        char *a = ggml_dump(dir, p), *b = dsq_dump(p);
        CHECKF(a && b, "variant %d: a reader refused the file", v);
        CHECKF(!strcmp(a, b), "variant %d: ggml and dsq read different records, first at '%s'", v, first_diff(a, b));
        CHECK(strstr(a, "n_tensors 6\n") && strstr(a, "kv tokenizer.ggml.tokens 9 8 4 68656c6c6f - "));
        free(a);
        free(b);
    }
    /* ggml writes, dsq reads */
    const char *p = t_path(d, "ggml.gguf");
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "'%s/ggml_gguf' write '%s'", dir, p);
    CHECK(t_run(cmd, NULL) == 0);
    char *a = ggml_dump(dir, p), *b = dsq_dump(p);
    CHECKF(a && b, "a reader refused ggml's file");
    CHECKF(!strcmp(a, b), "ggml and dsq read different records, first at '%s'", first_diff(a, b));
    free(a);
    free(b);
    /* and the values are the ones ggml_gguf.c wrote */
    dsq_gguf *g;
    CHECKF(dsq_gguf_open(&g, p, &err) == 0, "%s", err.msg);
    uint64_t u64;
    int64_t i64;
    float f;
    uint8_t bo;
    CHECK(dsq_gguf_get_u64(g, "s.u64", &u64, &err) == 0 && u64 == 0xfedcba9876543210ull);
    CHECK(dsq_gguf_get_i64(g, "s.i64", &i64, &err) == 0 && i64 == INT64_MIN);
    CHECK(dsq_gguf_get_f32(g, "s.f32", &f, &err) == 0 && f == -0.25f);
    CHECK(dsq_gguf_get_bool(g, "s.bool", &bo, &err) == 0 && bo == 1);
    const dsq_gguf_kv *kv;
    CHECK(dsq_gguf_get_arr(g, "a.str", DSQ_GGUF_STRING, &kv, &err) == 0 && kv->n == 4);
    const char *s;
    uint64_t n;
    dsq_gguf_kv_str(kv, 3, &s, &n);
    CHECK(n == 7 && !memcmp(s, "\xc4\xa0hello", 7));
    CHECK(dsq_gguf_get_arr(g, "a.bool", DSQ_GGUF_BOOL, &kv, &err) == 0 && kv->n == 4 && dsq_gguf_kv_int(kv, 3) == 1);
    CHECK(dsq_gguf_n_tensors(g) == 5);
    for (int i = 0; i < 5; i++) {
        const dsq_gguf_tensor *t = dsq_gguf_tensor_at(g, i);
        for (uint64_t k = 0; k < t->nbytes; k++)
            CHECKF(t->data[k] == (uint8_t)((k * 29 + (uint64_t)i) & 255), "tensor %s byte %llu", t->name, (unsigned long long)k);
    }
    const dsq_gguf_tensor *t = dsq_gguf_tensor_at(g, dsq_gguf_find_tensor(g, "w.iq4_xs"));
    CHECK(t && t->type == DSQ_GGML_IQ4_XS && t->nbytes == 136 && t->n_dims == 1);
    dsq_gguf_close(g);
    /* files of llama.cpp's own converter (gguf-py): the vocabulary-only
     * models its tokenizer tests use, among them DeepSeek's */
    static const char *const vocab[] = {"deepseek-llm", "llama-spm", "bert-bge"};
    for (int i = 0; i < 3; i++) {
        char vp[1200];
        snprintf(vp, sizeof vp, "%s/llama.cpp/models/ggml-vocab-%s.gguf", dir, vocab[i]);
        a = ggml_dump(dir, vp);
        b = dsq_dump(vp);
        CHECKF(a && b, "%s: a reader refused the file", vp);
        CHECKF(!strcmp(a, b), "%s: ggml and dsq read different records, first at '%s'", vp, first_diff(a, b));
        CHECK(strstr(a, "kv tokenizer.ggml.tokens 9 8 "));
        free(a);
        free(b);
    }
}

/* ---- a tiny llama model ------------------------------------------------ */

enum { E = 64, NH = 4, NKV = 2, HD = E / NH, FF = 128, NL = 2, CTX = 32 };
#define NV (256 + 4)

static uint64_t g_rng;
static float rnd(void) { /* xorshift64, uniform in [-1, 1) */
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((g_rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

/* GPT-2's byte-to-unicode map, as UTF-8: the 188 printable bytes stand for
 * themselves, the others for U+0100 onwards. */
static void byte_token(int b, char out[4]) {
    int cp = b;
    if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))) {
        int k = 0;
        for (int c = 0; c < b; c++)
            if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255))) k++;
        cp = 256 + k;
    }
    if (cp < 0x80) { out[0] = (char)cp; out[1] = 0; }
    else { out[0] = (char)(0xc0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 63)); out[2] = 0; }
}

/* Payload of one tensor of the model: values in [-scale, scale) from the
 * generator, encoded as `type` (F32, F16, BF16, Q8_0, Q4_0); scale 0 gives
 * zeros.  Returns bytes written to buf. */
static size_t encode(int type, int64_t n, float scale, uint8_t *buf) {
    size_t o = 0;
    for (int64_t i = 0; i < n;) {
        if (type == DSQ_GGML_F32) { float v = scale * rnd(); memcpy(buf + o, &v, 4); o += 4; i++; }
        else if (type == DSQ_GGML_F16) { dsq_st16(buf + o, dsq_f32_to_f16(scale * rnd())); o += 2; i++; }
        else if (type == DSQ_GGML_BF16) { dsq_st16(buf + o, dsq_f32_to_bf16(scale * rnd())); o += 2; i++; }
        else if (type == DSQ_GGML_Q8_0) { /* d (f16), 32 x int8 */
            dsq_st16(buf + o, dsq_f32_to_f16(scale / 127));
            for (int k = 0; k < 32; k++) buf[o + 2 + k] = (uint8_t)(int8_t)(scale ? (int)(127 * rnd()) : 0);
            o += 34; i += 32;
        } else { /* Q4_0: d (f16), 16 bytes of nibbles */
            dsq_st16(buf + o, dsq_f32_to_f16(scale / 8));
            for (int k = 0; k < 16; k++) {
                int lo = (int)((rnd() + 1) * 8) & 15, hi = (int)((rnd() + 1) * 8) & 15;
                buf[o + 2 + k] = scale ? (uint8_t)(lo | hi << 4) : 0x88; /* 8 = zero */
            }
            o += 18; i += 32;
        }
    }
    return o;
}

typedef struct mt { const char *name; int type; int64_t ne0, ne1; float scale; } mt;

/* Write the model; zero_out: attention output and FFN down projections are
 * zero, so every layer passes its input through unchanged.  The embedding
 * (F16), output norm and output matrix (F32) are returned decoded for the
 * expected logits. */
static int write_model(const char *path, int zero_out, float *emb, float *onorm, float *out, dsq_err *err) {
    dsq_ggufw *w;
    int rc = dsq_ggufw_open(&w, path, 1, err);
    if (rc) return rc;
    char toks[NV][8];
    const char *tp[NV];
    int32_t ttype[NV];
    for (int b = 0; b < 256; b++) { byte_token(b, toks[b]); ttype[b] = 1; }
    snprintf(toks[256], 8, "\xc4\xa0t");  /* " t" */
    snprintf(toks[257], 8, "he");
    snprintf(toks[258], 8, "\xc4\xa0the");
    snprintf(toks[259], 8, "<s>");
    ttype[256] = ttype[257] = ttype[258] = 1;
    ttype[259] = 3;
    for (int i = 0; i < NV; i++) tp[i] = toks[i];
    const char *merges[] = {"\xc4\xa0 t", "h e", "\xc4\xa0t he"};
    if ((rc = dsq_ggufw_set_str(w, "general.architecture", "llama", err)) ||
        (rc = dsq_ggufw_set_str(w, "general.name", "dsq tiny llama", err)) ||
        (rc = dsq_ggufw_set_u32(w, "general.file_type", 7, err)) ||
        (rc = dsq_ggufw_set_u32(w, "general.quantization_version", 2, err)) ||
        (rc = dsq_ggufw_set_u32(w, "llama.context_length", 256, err)) ||
        (rc = dsq_ggufw_set_u32(w, "llama.embedding_length", E, err)) ||
        (rc = dsq_ggufw_set_u32(w, "llama.block_count", NL, err)) ||
        (rc = dsq_ggufw_set_u32(w, "llama.feed_forward_length", FF, err)) ||
        (rc = dsq_ggufw_set_u32(w, "llama.attention.head_count", NH, err)) ||
        (rc = dsq_ggufw_set_u32(w, "llama.attention.head_count_kv", NKV, err)) ||
        (rc = dsq_ggufw_set_u32(w, "llama.rope.dimension_count", HD, err)) ||
        (rc = dsq_ggufw_set_f32(w, "llama.rope.freq_base", 10000.0f, err)) ||
        (rc = dsq_ggufw_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f, err)) ||
        (rc = dsq_ggufw_set_str(w, "tokenizer.ggml.model", "gpt2", err)) ||
        (rc = dsq_ggufw_set_str(w, "tokenizer.ggml.pre", "default", err)) ||
        (rc = dsq_ggufw_set_arr_str(w, "tokenizer.ggml.tokens", tp, NULL, NV, err)) ||
        (rc = dsq_ggufw_set_arr(w, "tokenizer.ggml.token_type", DSQ_GGUF_I32, ttype, NV, err)) ||
        (rc = dsq_ggufw_set_arr_str(w, "tokenizer.ggml.merges", merges, NULL, 3, err)) ||
        (rc = dsq_ggufw_set_u32(w, "tokenizer.ggml.bos_token_id", 259, err)) ||
        (rc = dsq_ggufw_set_u32(w, "tokenizer.ggml.eos_token_id", 259, err)) ||
        (rc = dsq_ggufw_set_bool(w, "tokenizer.ggml.add_bos_token", 0, err)))
        goto fail;
    mt t[3 + 9 * NL];
    int n = 0;
    t[n++] = (mt){"token_embd.weight", DSQ_GGML_F16, E, NV, 1.0f};
    t[n++] = (mt){"output_norm.weight", DSQ_GGML_F32, E, 1, 1.0f};
    t[n++] = (mt){"output.weight", DSQ_GGML_F32, E, NV, 0.2f};
    static char names[9 * NL][48];
    static const struct { const char *s; int type, ne0, ne1; } lt[9] = {
        {"attn_norm", DSQ_GGML_F32, E, 1},    {"attn_q", DSQ_GGML_Q8_0, E, E},       {"attn_k", DSQ_GGML_BF16, E, NKV * HD},
        {"attn_v", DSQ_GGML_Q4_0, E, NKV * HD}, {"attn_output", DSQ_GGML_F16, E, E}, {"ffn_norm", DSQ_GGML_F32, E, 1},
        {"ffn_gate", DSQ_GGML_Q8_0, E, FF},   {"ffn_up", DSQ_GGML_F16, E, FF},       {"ffn_down", DSQ_GGML_BF16, FF, E},
    };
    for (int l = 0; l < NL; l++)
        for (int k = 0; k < 9; k++) {
            snprintf(names[l * 9 + k], 48, "blk.%d.%s.weight", l, lt[k].s);
            int zero = zero_out && (k == 4 || k == 8);
            t[n++] = (mt){names[l * 9 + k], lt[k].type, lt[k].ne0, lt[k].ne1, zero ? 0.0f : k == 0 || k == 5 ? 1.0f : 0.3f};
        }
    for (int i = 0; i < n; i++) {
        int64_t ne[2] = {t[i].ne0, t[i].ne1};
        if ((rc = dsq_ggufw_add_tensor(w, t[i].name, t[i].type, t[i].ne1 > 1 ? 2 : 1, ne, err)) != i) goto fail;
    }
    uint8_t *buf = malloc(4 * E * NV);
    if (!buf) { rc = DSQ_E_NOMEM; goto fail; }
    g_rng = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < n; i++) {
        size_t nb = encode(t[i].type, t[i].ne0 * t[i].ne1, t[i].scale, buf);
        if (i == 0)
            for (int k = 0; k < E * NV; k++) emb[k] = dsq_f16_to_f32(dsq_le16(buf + 2 * k));
        if (i == 1) memcpy(onorm, buf, 4 * E);
        if (i == 2) memcpy(out, buf, 4 * (size_t)E * NV);
        if ((rc = dsq_ggufw_write(w, i, 0, buf, nb, err))) { free(buf); goto fail; }
    }
    free(buf);
    return dsq_ggufw_finish(w, err);
fail:
    dsq_ggufw_abort(w);
    return rc < 0 ? rc : DSQ_E_ARG;
}

/* Run the driver over tok; the JSON result (cJSON, caller deletes) or NULL;
 * the logits file at logits_path. */
static cJSON *run_driver(const char *dir, const char *model, const char *tokens, const char *logits_path) {
    char cmd[4000], *out = NULL;
    snprintf(cmd, sizeof cmd, "'%s/llama_logits' '%s' '%s' --ctx %d --logits '%s' 2>&1", dir, model, tokens, CTX,
             logits_path);
    int rc = t_run(cmd, &out);
    cJSON *j = NULL;
    const char *brace = out ? strrchr(out, '{') : NULL;
    if (rc == 0 && brace) j = cJSON_Parse(brace);
    if (!j) fprintf(stderr, "  llama_logits: status %d: %s\n", rc, out ? out : "");
    free(out);
    return j;
}

TEST(test_llama_tiny_model) {
    const char *dir = llama_dir();
    if (!dir) return;
    const char *d = t_tmpdir();
    float *emb = malloc(sizeof *emb * E * NV), *onorm = malloc(sizeof *onorm * E), *ow = malloc(sizeof *ow * E * NV);
    int32_t tok[3 * CTX];
    CHECK(emb && onorm && ow);
    /* window 1 = window 0 but for its first token; window 2 = window 0 */
    g_rng = 12345;
    for (int i = 0; i < CTX; i++) tok[i] = tok[CTX + i] = tok[2 * CTX + i] = (int32_t)((rnd() + 1) * 0.5f * (NV - 1));
    tok[CTX] = (tok[0] + 1) % NV;
    char js[4096];
    size_t o = 0;
    for (int i = 0; i < 3 * CTX; i++) o += (size_t)snprintf(js + o, sizeof js - o, "%s%d", i ? ", " : "[", tok[i]);
    snprintf(js + o, sizeof js - o, "]\n");
    const char *tp = t_path(d, "tokens.json"), *mp = t_path(d, "tiny.gguf"), *lp = t_path(d, "logits.f32");
    CHECK(t_write_file(tp, js, strlen(js)) == 0);
    dsq_err err = {0};
    for (int zero_out = 1; zero_out >= 0; zero_out--) {
        CHECKF(write_model(mp, zero_out, emb, onorm, ow, &err) == 0, "%s", err.msg);
        cJSON *j = run_driver(dir, mp, tp, lp);
        CHECKF(j, "llama.cpp did not run the model (zero_out %d)", zero_out);
        const cJSON *nv = cJSON_GetObjectItem(j, "n_vocab"), *np = cJSON_GetObjectItem(j, "n_predicted"),
                    *ppl = cJSON_GetObjectItem(j, "ppl"), *nw = cJSON_GetObjectItem(j, "windows");
        CHECK(cJSON_IsNumber(nv) && nv->valueint == NV && cJSON_IsNumber(nw) && nw->valueint == 3);
        CHECK(cJSON_IsNumber(np) && np->valueint == 3 * (CTX - 1) && cJSON_IsNumber(ppl));
        double ppl_driver = ppl->valuedouble;
        cJSON_Delete(j);
        size_t nb;
        float *lg = t_read_file(lp, &nb);
        CHECKF(lg && nb == sizeof(float) * 3 * CTX * NV, "logits file of %zu bytes", nb);
        double nll = 0, max_err = 0, max_abs = 0;
        int n_finite = 0, ctx_effect = 0, same_windows = 1;
        for (int w = 0; w < 3; w++)
            for (int p = 0; p < CTX; p++) {
                const float *x = lg + ((size_t)w * CTX + p) * NV;
                double m = x[0], s = 0;
                for (int v = 0; v < NV; v++) { n_finite += isfinite(x[v]) != 0; m = x[v] > m ? x[v] : m; }
                for (int v = 0; v < NV; v++) s += exp(x[v] - m);
                if (p + 1 < CTX) nll += m + log(s) - x[tok[w * CTX + p + 1]];
                if (w == 1 && p > 0 && memcmp(x, lg + (size_t)p * NV, sizeof *x * NV)) ctx_effect = 1;
                if (w == 2 && memcmp(x, lg + (size_t)p * NV, sizeof *x * NV)) same_windows = 0;
                if (!zero_out) continue;
                /* logits = output * (rmsnorm(embedding) .* output_norm) */
                const float *e = emb + (size_t)tok[w * CTX + p] * E;
                double ss = 0, h[E];
                for (int k = 0; k < E; k++) ss += (double)e[k] * e[k];
                double r = 1.0 / sqrt(ss / E + 1e-5);
                for (int k = 0; k < E; k++) h[k] = e[k] * r * onorm[k];
                for (int v = 0; v < NV; v++) {
                    double y = 0;
                    for (int k = 0; k < E; k++) y += ow[(size_t)v * E + k] * h[k];
                    max_err = fmax(max_err, fabs(y - x[v]));
                    max_abs = fmax(max_abs, fabs(y));
                }
            }
        free(lg);
        CHECKF(n_finite == 3 * CTX * NV, "%d of %d logits finite", n_finite, 3 * CTX * NV);
        CHECKF(same_windows, "windows with the same tokens gave different logits (cache not cleared?)");
        double ppl_here = exp(nll / (3 * (CTX - 1)));
        CHECKF(fabs(ppl_here - ppl_driver) <= 1e-6 * ppl_here, "driver perplexity %.9g, from its logits %.9g",
               ppl_driver, ppl_here);
        if (zero_out) {
            CHECKF(max_err <= 1e-5 * max_abs, "pass-through model: logits off by %g (largest %g)", max_err, max_abs);
            CHECKF(!ctx_effect, "pass-through model: a position's logits depend on other tokens");
        } else {
            CHECKF(ctx_effect, "random model: the first token does not reach later positions");
        }
        fprintf(stderr, "  %s: ppl %.4f over %d predictions%s\n", zero_out ? "pass-through" : "random weights",
                ppl_driver, 3 * (CTX - 1), zero_out ? "; logits = output * rmsnorm(embedding)" : "");
    }
    free(emb);
    free(onorm);
    free(ow);
}
