/*
 * test_calib_stats.c -- activation statistics: accumulation against a
 * direct computation, starved-expert pooling, the .dsqcal round trip and bad
 * .dsqcal files.
 */
#include "test.h"
#include "calib/stats.h"
#include "synth/gen.h"
#include "formats/container.h"

#include <math.h>
#include <stdlib.h>

static char *cfg_json(void) {
    dsq_config c;
    dsq_gen_preset(&c, "tiny");
    return dsq_config_to_json(&c);
}

TEST(test_calib_stats_accumulate) {
    dsq_cstats *cs = dsq_cstats_new();
    dsq_cstat *s = dsq_cstats_get(cs, "model.layers.0.self_attn.q_a_proj.weight", 5, 1);
    CHECK(s);
    float x[3 * 5] = {1, -2, 3, 0, 0.5f, -1, 1, 1, 2, -0.5f, 4, 0, -3, 1, 0};
    dsq_cstat_add(s, x, 2);
    dsq_cstat_add(s, x + 10, 1);
    CHECK(s->count == 3);
    float ms[5], ma[5];
    dsq_cstat_mean_sq(s, ms);
    dsq_cstat_mean_abs(s, ma);
    double H[25];
    CHECK(dsq_cstat_hessian(s, H) == 0);
    for (int j = 0; j < 5; j++) {
        double a = 0, b = 0, m = 0;
        for (int t = 0; t < 3; t++) {
            a += x[t * 5 + j] * x[t * 5 + j];
            b += fabs(x[t * 5 + j]);
            m = fmax(m, fabs(x[t * 5 + j]));
        }
        CHECK(fabs(ms[j] - a / 3) < 1e-6 && fabs(ma[j] - b / 3) < 1e-6 && s->max_abs[j] == (float)m);
        for (int i = 0; i < 5; i++) {
            double h = 0;
            for (int t = 0; t < 3; t++) h += x[t * 5 + i] * x[t * 5 + j];
            CHECK(fabs(H[i * 5 + j] - h / 3) < 1e-9);
        }
    }
    CHECK(dsq_cstats_alias(cs, "model.layers.0.self_attn.kv_a_proj_with_mqa.weight", s->name) == 0);
    CHECK(dsq_cstats_find(cs, "model.layers.0.self_attn.kv_a_proj_with_mqa.weight") == s);
    CHECK(dsq_cstats_get(cs, s->name, 6, 0) == NULL); /* column count mismatch */
    dsq_cstats_free(cs);
}

TEST(test_calib_stats_starved_pooling) {
    dsq_cstats *cs = dsq_cstats_new();
    char nm[128];
    float x[4] = {1, 2, 3, 4};
    for (int e = 0; e < 4; e++) {
        snprintf(nm, sizeof nm, "model.layers.1.mlp.experts.%d.up_proj.weight", e);
        dsq_cstat *s = dsq_cstats_get(cs, nm, 4, 0);
        for (int k = 0; k < (e == 2 ? 1 : 20); k++) dsq_cstat_add(s, x, 1);
    }
    /* another layer's experts do not pool with layer 1 */
    dsq_cstat *o = dsq_cstats_get(cs, "model.layers.2.mlp.experts.0.up_proj.weight", 4, 0);
    for (int k = 0; k < 100; k++) dsq_cstat_add(o, x, 1);
    CHECK(dsq_cstats_pool_starved(cs, 8) == 1);
    const dsq_cstat *s2 = dsq_cstats_find(cs, "model.layers.1.mlp.experts.2.up_proj.weight");
    CHECK(s2->fallback && s2->count == 61);
    CHECK(!dsq_cstats_find(cs, "model.layers.1.mlp.experts.0.up_proj.weight")->fallback);
    dsq_cstats_free(cs);
}

TEST(test_calib_stats_file_round_trip) {
    dsq_cstats *cs = dsq_cstats_new();
    dsq_cstat *a = dsq_cstats_get(cs, "model.layers.0.mlp.gate_proj.weight", 3, 1);
    dsq_cstat *b = dsq_cstats_get(cs, "model.layers.1.mlp.experts.3.down_proj.weight", 2, 0);
    float x[6] = {1, -2, 0.25f, 3, 1, -1};
    dsq_cstat_add(a, x, 2);
    dsq_cstat_add(b, x, 3);
    b->fallback = 1;
    CHECK(dsq_cstats_alias(cs, "model.layers.0.mlp.up_proj.weight", a->name) == 0);
    char *cj = cfg_json();
    const char *p = t_path(t_tmpdir(), "c.dsqcal");
    dsq_err err = {0};
    CHECKF(dsq_cstats_save(cs, p, cj, "{\"tokens\":5}", 0, &err) == 0, "%s", err.msg);
    CHECK(dsq_cstats_save(cs, p, cj, NULL, 0, &err) == DSQ_E_EXISTS);
    dsq_cstats *r;
    CHECKF(dsq_cstats_load(&r, p, &err) == 0, "%s", err.msg);
    CHECK(dsq_cstats_count(r) == 2);
    const dsq_cstat *ra = dsq_cstats_find(r, "model.layers.0.mlp.up_proj.weight");
    CHECK(ra && ra->count == 2 && ra->hess);
    for (int j = 0; j < 3; j++) CHECK(fabs(ra->sum_sq[j] - a->sum_sq[j]) < 1e-5 && ra->max_abs[j] == a->max_abs[j]);
    const dsq_cstat *rb = dsq_cstats_find(r, b->name);
    CHECK(rb && rb->fallback && rb->count == 3 && !rb->hess);
    dsq_cstats_free(r);
    /* a plain model container is not a calibration file */
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s gen-tiny %s/m --preset tiny-nomtp --shards 1 >/dev/null 2>&1 && %s convert %s/m -o %s/m.dsq --quiet",
             t_dsq(), t_tmpdir(), t_dsq(), t_tmpdir(), t_tmpdir());
    CHECK(t_run(cmd, NULL) == 0);
    CHECK(dsq_cstats_load(&r, t_path(t_tmpdir(), "m.dsq"), &err) == DSQ_E_FORMAT && strstr(err.msg, "not a calibration file"));
    /* a flipped bit is caught by the container checksums */
    size_t n;
    uint8_t *bytes = t_read_file(p, &n);
    bytes[4096 + 2] ^= 0x10;
    CHECK(t_write_file(p, bytes, n) == 0);
    free(bytes);
    CHECK(dsq_cstats_load(&r, p, &err) == DSQ_E_CHECKSUM);
    CHECK(strstr(err.msg, "c.dsqcal"));
    free(cj);
    dsq_cstats_free(cs);
}

TEST(test_calib_stats_cross_moment) {
    /* E[r x^T] against a direct computation, kept by the .dsqcal round trip;
     * a file with a cross moment but no Hessian is refused */
    dsq_cstats *cs = dsq_cstats_new();
    dsq_cstat *s = dsq_cstats_get(cs, "model.layers.1.self_attn.o_proj.weight", 4, 1);
    dsq_cstat *nh = dsq_cstats_get(cs, "model.layers.1.mlp.down_proj.weight", 4, 0);
    CHECK(s && nh);
    float x[3 * 4] = {1, -2, 3, 0.5f, -1, 1, 2, -0.5f, 4, 0, -3, 1};
    float r[3 * 4] = {1.5f, -2, 2, 0.5f, -1, 0.75f, 2, 0, 4, 0.25f, -3, 1};
    dsq_cstat_add(s, x, 3);
    CHECK(dsq_cstat_add_ref(s, r, x, 3) == 0);
    CHECK(dsq_cstat_add_ref(nh, r, x, 3) == DSQ_E_ARG); /* needs a Hessian */
    double C[16];
    CHECK(dsq_cstat_xcov(s, C) == 0);
    CHECK(dsq_cstat_xcov(nh, C + 0) == DSQ_E_NOTFOUND);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            double c = 0;
            for (int t = 0; t < 3; t++) c += (double)r[t * 4 + i] * x[t * 4 + j];
            CHECK(fabs(C[i * 4 + j] - c / 3) < 1e-6 * (fabs(c) + 1)); /* as stored: f32 */
        }
    char *cj = cfg_json();
    const char *p = t_path(t_tmpdir(), "x.dsqcal");
    dsq_err err = {0};
    CHECKF(dsq_cstats_save(cs, p, cj, NULL, 1, &err) == 0, "%s", err.msg);
    dsq_cstats *rd;
    CHECKF(dsq_cstats_load(&rd, p, &err) == 0, "%s", err.msg);
    const dsq_cstat *rs = dsq_cstats_find(rd, s->name);
    CHECK(rs && rs->xcov && !dsq_cstats_find(rd, nh->name)->xcov);
    for (int k = 0; k < 16; k++) CHECK(fabs(rs->xcov[k] - s->xcov[k]) < 1e-5);
    dsq_cstats_free(rd);
    /* cross moment without a Hessian */
    nh->xcov = calloc(16, sizeof *nh->xcov);
    CHECKF(dsq_cstats_save(cs, p, cj, NULL, 1, &err) == 0, "%s", err.msg);
    CHECK(dsq_cstats_load(&rd, p, &err) == DSQ_E_FORMAT);
    CHECK(strstr(err.msg, "x.dsqcal") && strstr(err.msg, "down_proj") && strstr(err.msg, "cross moment"));
    free(cj);
    dsq_cstats_free(cs);
}

TEST(test_calib_stats_fold_round_trip) {
    /* folded AWQ scales survive the .dsqcal round trip; a non-positive
     * scale is refused naming the file and the tensor */
    dsq_cstats *cs = dsq_cstats_new();
    dsq_cstat *s = dsq_cstats_get(cs, "model.layers.0.self_attn.q_a_proj.weight", 4, 0);
    float x[4] = {1, -2, 3, 0.5f};
    dsq_cstat_add(s, x, 1);
    s->fold = malloc(4 * sizeof *s->fold);
    for (int j = 0; j < 4; j++) s->fold[j] = 0.5f + (float)j;
    char *cj = cfg_json();
    const char *p = t_path(t_tmpdir(), "f.dsqcal");
    dsq_err err = {0};
    CHECKF(dsq_cstats_save(cs, p, cj, NULL, 1, &err) == 0, "%s", err.msg);
    dsq_cstats *rd;
    CHECKF(dsq_cstats_load(&rd, p, &err) == 0, "%s", err.msg);
    const dsq_cstat *r = dsq_cstats_find(rd, s->name);
    CHECK(r && r->fold && !memcmp(r->fold, s->fold, 4 * sizeof *s->fold));
    dsq_cstats_free(rd);
    s->fold[2] = -1;
    CHECKF(dsq_cstats_save(cs, p, cj, NULL, 1, &err) == 0, "%s", err.msg);
    CHECK(dsq_cstats_load(&rd, p, &err) == DSQ_E_FORMAT);
    CHECK(strstr(err.msg, "f.dsqcal") && strstr(err.msg, "q_a_proj.weight:fold"));
    free(cj);
    dsq_cstats_free(cs);
}

/* Finite but absurd statistics (a moment of 3e38, what no activation
 * gives) are refused on load, naming the record's tensor, before any scale
 * is made from them. */
TEST(test_calib_stats_absurd_values_refused) {
    dsq_cstats *cs = dsq_cstats_new();
    dsq_cstat *a = dsq_cstats_get(cs, "model.layers.0.mlp.gate_proj.weight", 3, 1);
    float x[6] = {1, -2, 0.25f, 3, 1, -1};
    dsq_cstat_add(a, x, 2);
    a->sum_sq[1] = 6e38; /* a mean of 3e38 */
    char *cj = cfg_json();
    const char *p = t_path(t_tmpdir(), "absurd.dsqcal");
    dsq_err err = {0};
    CHECKF(dsq_cstats_save(cs, p, cj, NULL, 1, &err) == 0, "%s", err.msg);
    dsq_cstats *r = NULL;
    CHECK(dsq_cstats_load(&r, p, &err) == DSQ_E_FORMAT);
    CHECKF(strstr(err.msg, "gate_proj.weight:mean_sq") && strstr(err.msg, "outside what activations give"), "%s", err.msg);
    dsq_cstats_free(r);
    dsq_cstats_free(cs);
    free(cj);
}
