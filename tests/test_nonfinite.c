/*
 * test_nonfinite.c -- NaN and infinite weights are never used silently:
 *   - dsq_q_find_nonfinite finds the first one in every kind of scheme
 *     (float and FP8 by their bits, E4M3's 0x7F / 0xFF and E8M0's 0xFF
 *     included; integer groups and ggml blocks by their decoded values);
 *   - a checkpoint with one E4M3 NaN code is refused by convert, quant and
 *     export, naming the tensor and the element; --allow-nonfinite copies
 *     it unchanged (convert) but quantizing it is refused all the same;
 *   - eval of that model exits non-zero instead of printing perplexity nan.
 */
#include "test.h"
#include "common.h"
#include "quant/quant.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

TEST(test_nonfinite_find) {
    enum { R = 8, C = 256 };
    float *x = malloc(sizeof(float) * R * C);
    for (int i = 0; i < R * C; i++) x[i] = 0.01f * (float)((i * 37) % 101 - 50);
    static const int types[] = {DSQ_Q_F32, DSQ_Q_BF16, DSQ_Q_F16, DSQ_Q_FP8_BLOCK, DSQ_Q_FP8_CHANNEL_UE8M0,
                                DSQ_Q_INT4_G32_SYM, DSQ_Q_INT8_CHANNEL, DSQ_Q_GGML_Q4_K, DSQ_Q_GGML_Q8_0};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        int t = types[k];
        dsq_qsizes z;
        CHECK(dsq_q_sizes(t, R, C, &z, NULL) == 0);
        uint8_t *d = calloc(1, z.data + 1), *s = calloc(1, z.scale + 1), *zp = calloc(1, z.zero + 1);
        dsq_qmat f = {DSQ_Q_F32, R, C, x, NULL, NULL}, q = {t, R, C, d, z.scale ? s : NULL, z.zero ? zp : NULL};
        CHECK(dsq_q_quantize(&f, &q, 0, R, NULL, NULL) == 0);
        int64_t r, c;
        CHECKF(dsq_q_find_nonfinite(&q, &r, &c, NULL) == 0, "%s: finite data reported", dsq_q_scheme(t)->name);
        /* one bad value at [3, 5] (float kinds), or a bad scale */
        if (t == DSQ_Q_F32) x[3 * C + 5] = NAN, dsq_q_quantize(&f, &q, 0, R, NULL, NULL), x[3 * C + 5] = 0;
        else if (t == DSQ_Q_BF16 || t == DSQ_Q_F16) {
            uint16_t inf = t == DSQ_Q_BF16 ? 0x7F80 : 0x7C00;
            d[2 * (3 * C + 5)] = (uint8_t)inf;
            d[2 * (3 * C + 5) + 1] = (uint8_t)(inf >> 8);
        } else if (t == DSQ_Q_FP8_BLOCK) d[3 * C + 5] = 0xFF;               /* E4M3 -NaN */
        else if (t == DSQ_Q_FP8_CHANNEL_UE8M0) s[2] = 0xFF;                 /* E8M0 NaN scale */
        else if (t == DSQ_Q_INT4_G32_SYM) s[2 * (3 * 8)] = 0x80, s[2 * (3 * 8) + 1] = 0x7F; /* bf16 inf, row 3 */
        else if (t == DSQ_Q_INT8_CHANNEL) { float nan = NAN; memcpy(s + 4 * 3, &nan, 4); }
        else if (t == DSQ_Q_GGML_Q4_K) d[3 * 144] = 0x00, d[3 * 144 + 1] = 0x7C;  /* row 3's d = +inf */
        else d[3 * 8 * 34] = 0x00, d[3 * 8 * 34 + 1] = 0x7E;                      /* row 3's first d = NaN */
        int rc = dsq_q_find_nonfinite(&q, &r, &c, NULL);
        CHECKF(rc == 1, "%s: the bad value was not found", dsq_q_scheme(t)->name);
        if (t == DSQ_Q_F32 || t == DSQ_Q_BF16 || t == DSQ_Q_F16 || t == DSQ_Q_FP8_BLOCK)
            CHECKF(r == 3 && c == 5, "%s: found at [%lld, %lld]", dsq_q_scheme(t)->name, (long long)r, (long long)c);
        else if (t != DSQ_Q_FP8_CHANNEL_UE8M0)
            CHECKF(r == 3, "%s: found in row %lld", dsq_q_scheme(t)->name, (long long)r);
        free(d);
        free(s);
        free(zp);
    }
    free(x);
}

static long long fsize(const char *p) {
    struct stat st;
    return stat(p, &st) ? -1 : (long long)st.st_size;
}

/* Set byte `off` of tensor `name`'s data in a single-file safetensors shard. */
static int patch_tensor(const char *shard, const char *name, uint64_t off, uint8_t v) {
    FILE *f = fopen(shard, "r+b");
    if (!f) return -1;
    uint8_t lb[8];
    if (fread(lb, 1, 8, f) != 8) { fclose(f); return -1; }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | lb[i];
    char *h = malloc(n + 1);
    if (!h || fread(h, 1, n, f) != n) { free(h); fclose(f); return -1; }
    h[n] = 0;
    cJSON *j = cJSON_Parse(h);
    free(h);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, name);
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
    int rc = -1;
    if (cJSON_IsArray(o)) {
        long pos = (long)(8 + n + (uint64_t)cJSON_GetArrayItem(o, 0)->valuedouble + off);
        rc = fseek(f, pos, SEEK_SET) == 0 && fwrite(&v, 1, 1, f) == 1 ? 0 : -1;
    }
    cJSON_Delete(j);
    return fclose(f) || rc ? -1 : 0;
}

TEST(test_nonfinite_weights_refused) {
    char dir[1024], cmd[4096], out[1024], shard[1200], *msg = NULL;
    snprintf(dir, sizeof dir, "%s", t_path(t_tmpdir(), "nan-ckpt"));
    snprintf(out, sizeof out, "%s", t_path(t_tmpdir(), "nan.dsq"));
    snprintf(cmd, sizeof cmd, "%s gen-tiny '%s' --shards 1 --force > /dev/null 2>&1", t_dsq(), dir);
    CHECK(t_run(cmd, NULL) == 0);
    snprintf(shard, sizeof shard, "%s/model-00001-of-000001.safetensors", dir);
    CHECK(patch_tensor(shard, "model.layers.0.mlp.gate_proj.weight", 5, 0x7F) == 0); /* E4M3 NaN at [0, 5] */
    snprintf(cmd, sizeof cmd, "%s convert '%s' -o '%s' --force --quiet", t_dsq(), dir, out);
    CHECK(t_run(cmd, &msg) != 0);
    CHECKF(msg && strstr(msg, "model.layers.0.mlp.gate_proj.weight") && strstr(msg, "[0, 5]") && strstr(msg, "NaN"),
           "%s", msg ? msg : "");
    CHECK(fsize(out) < 0);
    free(msg);
    msg = NULL;
    /* copied unchanged when asked */
    snprintf(cmd, sizeof cmd, "%s convert '%s' -o '%s' --force --quiet --allow-nonfinite > /dev/null", t_dsq(), dir, out);
    CHECK(t_run(cmd, NULL) == 0);
    /* but never quantized into numbers */
    char q[1024];
    snprintf(q, sizeof q, "%s", t_path(t_tmpdir(), "nan-int4.dsq"));
    snprintf(cmd, sizeof cmd, "%s quant '%s' --preset int4 -o '%s' --force --quiet --allow-nonfinite", t_dsq(), out, q);
    CHECK(t_run(cmd, &msg) != 0);
    CHECKF(msg && strstr(msg, "gate_proj") && strstr(msg, "cannot be quantized"), "%s", msg ? msg : "");
    CHECK(fsize(q) < 0);
    free(msg);
    msg = NULL;
    /* and eval does not print a NaN perplexity with exit status 0 */
    snprintf(cmd, sizeof cmd, "%s eval '%s' --random-tokens 64 --ctx 32", t_dsq(), out);
    CHECK(t_run(cmd, &msg) != 0);
    CHECKF(msg && strstr(msg, "not finite"), "%s", msg ? msg : "");
    free(msg);
}
