/*
 * test_ckpt.c -- reading checkpoints: counts checked against formulas from
 * the config, FP8 dequantization against the BF16 twin, generated
 * checkpoints through random access and streaming, symlinked shards.
 */
#include "test.h"
#include "test_ckpt_util.h"
#include "quant/dtype.h"

#include <math.h>
#include <stdlib.h>
#include <unistd.h>

/* Parameters of the main model from the config alone (spec section 2). */
static int64_t expected_params(const dsq_config *c) {
    int64_t D = c->hidden_size, H = c->n_heads, dqk = c->qk_nope_head_dim + c->qk_rope_head_dim;
    int64_t attn = (int64_t)c->q_lora_rank * D + c->q_lora_rank + H * dqk * c->q_lora_rank +
                   (c->kv_lora_rank + c->qk_rope_head_dim) * D + c->kv_lora_rank +
                   H * (c->qk_nope_head_dim + c->v_head_dim) * c->kv_lora_rank + D * H * c->v_head_dim;
    int64_t idx = c->has_indexer ? (int64_t)c->index_n_heads * c->index_head_dim * c->q_lora_rank +
                                       (int64_t)c->index_head_dim * D + 2 * c->index_head_dim +
                                       (int64_t)c->index_n_heads * D : 0;
    int64_t dense = 3 * D * c->intermediate_size;
    int64_t fe = c->moe_intermediate_size;
    int64_t moe = (int64_t)c->n_routed_experts * D + c->n_routed_experts +
                  3 * D * fe * (c->n_routed_experts + c->n_shared_experts);
    int64_t per_layer = attn + idx + 2 * D;
    int64_t total = 2 * (int64_t)c->vocab_size * D + D;
    for (int l = 0; l < c->n_layers; l++) total += per_layer + (l < c->first_k_dense ? dense : moe);
    return total;
}

static void check_counts(const char *path) {
    dsq_ckpt *ck;
    dsq_err err = {0};
    CHECKF(dsq_ckpt_open(&ck, path, 0, &err) == 0, "%s", err.msg);
    const dsq_config *c = dsq_ckpt_config(ck);
    int64_t params = 0, n_fp8 = 0, n_scale = 0, main_tensors = 0;
    for (int i = 0; i < dsq_ckpt_n_tensors(ck); i++) {
        const dsq_tinfo *t = dsq_ckpt_tensor(ck, i);
        if (t->role == DSQ_R_SCALE) { n_scale += !t->is_mtp; continue; }
        if (t->is_mtp) continue;
        main_tensors++;
        params += t->numel;
        n_fp8 += t->dtype == DSQ_DT_F8_E4M3;
    }
    int64_t per_layer_t = 9 + (c->has_indexer ? 5 : 0);
    int64_t want_t = 3;
    for (int l = 0; l < c->n_layers; l++)
        want_t += per_layer_t + (l < c->first_k_dense ? 3 : 2 + 3 * (c->n_routed_experts + c->n_shared_experts));
    CHECKF(params == expected_params(c), "params %lld want %lld", (long long)params, (long long)expected_params(c));
    CHECKF(main_tensors == want_t, "tensors %lld want %lld", (long long)main_tensors, (long long)want_t);
    CHECK(n_scale == (c->fp8 ? n_fp8 : 0));
    dsq_ckpt_close(ck);
}

TEST(test_ckpt_shared_counts) {
    const char *fp8 = t_shared_model("tiny-v32"), *bf = t_shared_model("tiny-v32-bf16");
    if (!fp8 || !bf) SKIP("../shared/models absent");
    check_counts(fp8);
    if (t_failed()) return;
    check_counts(bf);
    if (t_failed()) return;
    /* the CLI reports the same parameter count */
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s inspect --json %s", t_dsq(), fp8);
    CHECK(t_run(cmd, &out) == 0);
    CHECKF(strstr(out, "\"params\":\t8277552") != NULL, "%s", out);
    free(out);
}

/* FP8 dequantized weights against the BF16 twin: equal within FP8 rounding
 * (half a step of E4M3 at that block scale) plus BF16 rounding. */
TEST(test_ckpt_fp8_matches_bf16_twin) {
    const char *fp8 = t_shared_model("tiny-v32"), *bf = t_shared_model("tiny-v32-bf16");
    if (!fp8 || !bf) SKIP("../shared/models absent");
    dsq_ckpt *a, *b;
    dsq_err err = {0};
    CHECKF(dsq_ckpt_open(&a, fp8, 0, &err) == 0, "%s", err.msg);
    CHECKF(dsq_ckpt_open(&b, bf, 0, &err) == 0, "%s", err.msg);
    int n_checked = 0;
    double worst = 0;
    for (int i = 0; i < dsq_ckpt_n_tensors(a); i++) {
        const dsq_tinfo *t = dsq_ckpt_tensor(a, i);
        if (t->role == DSQ_R_SCALE) continue;
        int j = dsq_ckpt_find(b, t->name);
        CHECKF(j >= 0, "%s missing in bf16 twin", t->name);
        int64_t rows = t->n_dims == 2 ? t->shape[0] : 1, cols = t->numel / rows;
        float *x = malloc(sizeof *x * (size_t)t->numel), *y = malloc(sizeof *y * (size_t)t->numel);
        CHECK(dsq_ckpt_rows_f32(a, i, 0, rows, x, &err) == 0);
        CHECK(dsq_ckpt_rows_f32(b, j, 0, rows, y, &err) == 0);
        int64_t sr, sc;
        const float *s = dsq_ckpt_scales(a, i, &sr, &sc);
        for (int64_t k = 0; k < t->numel; k++) {
            double tol;
            if (s) {
                double bs = s[(k / cols) / 128 * sc + (k % cols) / 128];
                /* step of E4M3 around |y|/bs: 2^(e-3) for normals, 2^-9 below 2^-6 */
                double v = fabs(y[k]) / bs;
                double step = v < 0.015625 ? 0.001953125 : ldexp(1.0, ilogb(v) - 3);
                tol = (0.5 * step * bs) * 1.0001 + fabs(y[k]) * 0.00390625;
            } else {
                tol = 0; /* BF16/F32 tensors are identical */
            }
            double d = fabs((double)x[k] - y[k]);
            if (d > tol) {
                t_fail(__FILE__, __LINE__, "%s[%lld]: fp8 %g bf16 %g", t->name, (long long)k, x[k], y[k]);
                free(x); free(y);
                return;
            }
            if (y[k] != 0 && d / fabs(y[k]) > worst) worst = d / fabs(y[k]);
        }
        free(x);
        free(y);
        n_checked++;
    }
    CHECK(n_checked == 221);
    dsq_ckpt_close(a);
    dsq_ckpt_close(b);
}

TEST(test_ckpt_generated_matches_spec_totals) {
    /* the spec's tiny configuration: 536 tensors, 10,553,472 parameters,
     * 14,918,080 payload bytes (deepseek-v32.md section 6.2) */
    const char *d = t_path(t_tmpdir(), "tiny");
    dsq_gen_opts o = {0};
    dsq_gen_preset(&o.cfg, "tiny");
    o.n_shards = 3;
    o.with_mtp = 1;
    o.seed = 1;
    dsq_err err = {0};
    CHECKF(dsq_gen_ckpt(d, &o, &err) == 0, "%s", err.msg);
    dsq_ckpt *ck;
    CHECKF(dsq_ckpt_open(&ck, d, 0, &err) == 0, "%s", err.msg);
    int64_t params = 0, bytes = 0, n_mtp = 0;
    for (int i = 0; i < dsq_ckpt_n_tensors(ck); i++) {
        const dsq_tinfo *t = dsq_ckpt_tensor(ck, i);
        bytes += (int64_t)t->nbytes;
        if (t->role != DSQ_R_SCALE) params += t->numel;
        n_mtp += t->is_mtp;
    }
    CHECK(dsq_ckpt_n_tensors(ck) == 536);
    CHECK(params == 10553472);
    CHECK(bytes == 14918080);
    CHECK(n_mtp == 131);
    /* partial blocks: kv_a rows 0..95 use scale row 0; gate_proj rows 256..319 scale row 2 */
    int i = dsq_ckpt_find(ck, "model.layers.0.mlp.gate_proj.weight");
    CHECK(i >= 0);
    int64_t sr, sc;
    const float *s = dsq_ckpt_scales(ck, i, &sr, &sc);
    CHECK(s && sr == 3 && sc == 2);
    const void *raw;
    CHECK(dsq_ckpt_view(ck, i, &raw, &err) == 0);
    float row[256];
    CHECK(dsq_ckpt_rows_f32(ck, i, 300, 301, row, &err) == 0);
    dsq_codecs_init();
    for (int j = 0; j < 256; j++)
        CHECK(row[j] == dsq_e4m3_to_f32(((const uint8_t *)raw)[300 * 256 + j]) * s[2 * 2 + j / 128]);
    dsq_ckpt_close(ck);
    check_counts(d);
}

/* Streaming yields every tensor once, in storage order, with the same bytes
 * as random access. */
TEST(test_ckpt_stream_folder) {
    const char *d = t_path(t_tmpdir(), "m");
    CHECK(tu_gen_micro(d, 0, 3) == 0);
    dsq_ckpt *ck;
    dsq_err err = {0};
    CHECKF(dsq_ckpt_open(&ck, d, 0, &err) == 0, "%s", err.msg);
    dsq_ckpt_stream *s;
    CHECK(dsq_ckpt_stream_open(&s, ck, &err) == 0);
    int idx, n = 0, rc;
    uint64_t last_off = 0;
    int last_shard = -1;
    while ((rc = dsq_ckpt_stream_next(s, &idx, &err)) == DSQ_OK) {
        const dsq_tinfo *t = dsq_ckpt_tensor(ck, idx);
        CHECK(idx == n);
        CHECK(t->shard > last_shard || (t->shard == last_shard && t->offset >= last_off));
        last_shard = t->shard;
        last_off = t->offset;
        const void *p, *q;
        CHECK(dsq_ckpt_stream_data(s, &p, &err) == 0);
        CHECK(dsq_ckpt_view(ck, idx, &q, &err) == 0);
        CHECK(memcmp(p, q, t->nbytes) == 0);
        n++;
    }
    CHECK(rc == DSQ_EOF);
    CHECK(n == dsq_ckpt_n_tensors(ck));
    dsq_ckpt_stream_close(s);
    dsq_ckpt_close(ck);
}

/* Hub-cache layout: shards are symlinks to blobs elsewhere. */
TEST(test_ckpt_symlinked_shards) {
    const char *base = t_tmpdir();
    char real[1024], snap[1024], cmd[4096];
    snprintf(real, sizeof real, "%s/blobs", base);
    snprintf(snap, sizeof snap, "%s/snap", base);
    CHECK(tu_gen_micro(real, 0, 2) == 0);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && for f in %s/*; do ln -s \"$(realpath $f)\" %s/$(basename $f); done",
             snap, real, snap);
    CHECK(t_run(cmd, NULL) == 0);
    dsq_ckpt *ck;
    dsq_err err = {0};
    CHECKF(dsq_ckpt_open(&ck, snap, 0, &err) == 0, "%s", err.msg);
    dsq_ckpt_close(ck);
}

TEST(test_ckpt_single_file_and_cli) {
    /* one model.safetensors without an index */
    const char *d = t_path(t_tmpdir(), "one");
    CHECK(tu_gen_micro(d, 1, 1) == 0);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cd %s && mv model-00001-of-000001.safetensors model.safetensors && rm model.safetensors.index.json", d);
    CHECK(t_run(cmd, NULL) == 0);
    dsq_ckpt *ck;
    dsq_err err = {0};
    CHECKF(dsq_ckpt_open(&ck, d, 0, &err) == 0, "%s", err.msg);
    CHECK(dsq_ckpt_n_shards(ck) == 1);
    dsq_ckpt_close(ck);
    CHECKF(dsq_ckpt_open(&ck, t_path(d, "model.safetensors"), 0, &err) == 0, "%s", err.msg);
    dsq_ckpt_close(ck);
    char *out = NULL;
    snprintf(cmd, sizeof cmd, "%s inspect %s", t_dsq(), d);
    CHECK(t_run(cmd, &out) == 0);
    CHECKF(strstr(out, "no inconsistencies") != NULL, "%s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s inspect --help", t_dsq());
    CHECK(t_run(cmd, NULL) == 0);
    snprintf(cmd, sizeof cmd, "%s --version", t_dsq());
    CHECK(t_run(cmd, NULL) == 0);
}
