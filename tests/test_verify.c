/*
 * test_verify.c -- drift reports (verify/drift.h): a model against itself
 * shows no drift at all; a model with a single perturbed expert shows drift
 * exactly downstream of that expert, the per-expert table names only that
 * expert and attribution blames only that (layer, part); `dsq verify` on
 * generated checkpoints writes a table, JSON and SVG.
 */
#include "test.h"
#include "test_ckpt_util.h"
#include "tmodel.h"
#include "verify/drift.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>

static void tokens(int32_t *tok, int n, int V, uint64_t seed) {
    for (int i = 0; i < n; i++) tok[i] = (int32_t)((tm_rand(&seed) + 1) * 0.5f * (V - 1));
}

TEST(test_verify_self_is_zero) {
    dsq_config c;
    tmodel m;
    tm_small_config(&c);
    CHECK(tm_build(&m, &c, 21) == 0);
    int32_t tok[60];
    tokens(tok, 60, c.vocab_size, 4);
    dsq_drift_opts o = {.ctx = 20, .n_threads = 2, .experts = 1, .attribution = 1};
    dsq_drift_report *r = NULL;
    dsq_err err;
    CHECKF(dsq_drift_run(&m.w, &m.w, tok, 60, &o, &r, &err) == 0, "%s", err.msg);
    CHECK(r->n_windows == 3 && r->n_positions == 57 && r->ctx == 20 && r->n_layers == 3);
    for (int l = 0; l < 3; l++) {
        const dsq_drift_layer *d = &r->layers[l];
        CHECK(d->resid_relerr == 0 && d->attn_relerr == 0 && d->ffn_relerr == 0);
        CHECK(fabs(d->resid_cos - 1) < 1e-12);
        CHECK(d->idx_recall == 1 && d->idx_queries == 3 * (20 - c.index_topk));
        CHECK(d->moe == (l >= 1));
        if (l >= 1) CHECK(d->route_same == 1 && d->route_overlap == 1 && d->route_werr == 0);
        else CHECK(isnan(d->route_same));
    }
    CHECK(r->n_experts > 0);
    for (int i = 0; i < r->n_experts; i++) CHECK(r->experts[i].relerr == 0);
    CHECK(r->kl_mean == 0 && r->kl_p99 == 0 && r->top1 == 1 && r->ppl_ref == r->ppl_cand);
    CHECK(r->n_parts == 1 * 2 + 2 * 3); /* dense: attn, ffn; MoE: attn, shared, routed */
    for (int i = 0; i < r->n_parts; i++) CHECK(r->parts[i].dppl == 0 && r->parts[i].kl_mean == 0);
    dsq_drift_free(r);
    tm_free(&m);
}

TEST(test_verify_pins_a_perturbed_expert) {
    dsq_config c;
    tmodel a, b;
    tm_small_config(&c);
    CHECK(tm_build(&a, &c, 33) == 0 && tm_build(&b, &c, 33) == 0);
    tm_tensor *t = tm_find(&b, "model.layers.2.mlp.experts.3.up_proj.weight");
    CHECK(t);
    uint64_t s = 1;
    for (int64_t i = 0; i < t->shape[0] * t->shape[1]; i++) t->data[i] *= 1 + 0.2f * tm_rand(&s);
    enum { N = 80 };
    int32_t tok[N];
    tokens(tok, N, c.vocab_size, 5);
    dsq_drift_opts o = {.ctx = 40, .n_threads = 2, .experts = 1, .attribution = 1};
    dsq_drift_report *r = NULL;
    dsq_err err;
    CHECKF(dsq_drift_run(&a.w, &b.w, tok, N, &o, &r, &err) == 0, "%s", err.msg);
    for (int l = 0; l < 2; l++) CHECK(r->layers[l].resid_relerr == 0 && r->layers[l].idx_recall == 1);
    CHECK(r->layers[2].attn_relerr == 0 && r->layers[2].ffn_relerr > 0 && r->layers[2].resid_relerr > 0);
    int found = 0;
    for (int i = 0; i < r->n_experts; i++) {
        const dsq_drift_expert *e = &r->experts[i];
        if (e->layer == 2 && e->expert == 3) {
            found = 1;
            CHECK(e->relerr > 1e-3 && e->tokens > 0);
        } else {
            CHECKF(e->relerr == 0, "layer %d expert %d: %g", e->layer, e->expert, e->relerr);
        }
    }
    CHECK(found);
    CHECK(r->kl_mean > 0 && r->kl_p99 >= 0);
    int blamed = 0;
    for (int i = 0; i < r->n_parts; i++) {
        const dsq_drift_part *p = &r->parts[i];
        if (p->layer == 2 && p->part == DSQ_PART_ROUTED) {
            blamed = 1;
            /* only that part differs, so the swap reproduces CAND exactly */
            CHECK(p->kl_mean > 0 && fabs(p->kl_mean - r->kl_mean) < 1e-12);
            CHECK(fabs(p->ppl - r->ppl_cand) < 1e-9 * r->ppl_cand);
        } else {
            CHECKF(p->kl_mean == 0 && p->dppl == 0, "layer %d %s", p->layer, dsq_drift_part_name(p->part));
        }
    }
    CHECK(blamed);
    dsq_drift_free(r);
    /* shapes must agree */
    b.cfg.n_heads = 3;
    CHECK(dsq_drift_run(&a.w, &b.w, tok, N, &o, &r, &err) == DSQ_E_CONFIG && r == NULL);
    CHECKF(strstr(err.msg, "n_heads") != NULL, "%s", err.msg);
    tm_free(&a);
    tm_free(&b);
}

TEST(test_verify_cli) {
    const char *d = t_tmpdir();
    char fp8[700], bf16[700], toks[700], cmd[4000], *out = NULL;
    snprintf(fp8, sizeof fp8, "%s", t_path(d, "fp8"));
    snprintf(bf16, sizeof bf16, "%s", t_path(d, "bf16"));
    CHECK(tu_gen_micro(fp8, 0, 2) == 0 && tu_gen_micro(bf16, 1, 1) == 0);
    snprintf(toks, sizeof toks, "%s", t_path(d, "t.json"));
    char js[2000];
    int k = snprintf(js, sizeof js, "[0");
    for (int i = 1; i < 70; i++) k += snprintf(js + k, sizeof js - (size_t)k, ", %d", (i * 53) % 300);
    snprintf(js + k, sizeof js - (size_t)k, "]");
    CHECK(t_write_file(toks, js, strlen(js)) == 0);
    snprintf(cmd, sizeof cmd,
             "%s verify %s %s --tokens %s --ctx 32 --threads 2 --attribution --json %s --svg %s",
             t_dsq(), bf16, fp8, toks, t_path(d, "r.json"), t_path(d, "r.svg"));
    int rc = t_run(cmd, &out);
    CHECKF(rc == 0, "%s", out);
    CHECKF(strstr(out, "resid_err") && strstr(out, "perplexity") && strstr(out, "attribution"), "%s", out);
    free(out);
    char *text = t_read_file(t_path(d, "r.json"), NULL);
    CHECK(text);
    cJSON *j = cJSON_Parse(text);
    free(text);
    CHECK(j);
    CHECK(cJSON_GetObjectItem(j, "windows")->valuedouble == 2);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(j, "layers")) == 2);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(j, "attribution")) == 5);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(j, "experts")) >= 2);
    CHECK(cJSON_IsNumber(cJSON_GetObjectItem(j, "kl_p99")));
    cJSON *l0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "layers"), 0);
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(l0, "route_same"))); /* dense layer */
    cJSON_Delete(j);
    text = t_read_file(t_path(d, "r.svg"), NULL);
    CHECK(text && !strncmp(text, "<svg", 4) && strstr(text, "</svg>") && strstr(text, "polyline"));
    free(text);
    /* different shapes are refused */
    snprintf(cmd, sizeof cmd, "%s verify %s %s --tokens %s", t_dsq(), fp8, t_shared_model("tiny-v32") ? t_shared_model("tiny-v32") : "/nonexistent", toks);
    CHECK(t_run(cmd, NULL) == 1);
    snprintf(cmd, sizeof cmd, "%s verify %s --tokens %s", t_dsq(), fp8, toks);
    CHECK(t_run(cmd, NULL) == 2);
}
