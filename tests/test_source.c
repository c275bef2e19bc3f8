/*
 * test_source.c -- the model-source interface (formats/source.h) and the
 * model writer (formats/writer.h): a checkpoint folder, a tar archive of it
 * and the .dsq container converted from it are three sources of one model,
 * so they must list the same tensors (upstream names, routed experts one by
 * one, no scale companions) with the same values, whichever way they are
 * read; bidding picks the backend from the bytes, not the name.
 */
#include "test.h"
#include "test_ckpt_util.h"
#include "formats/source.h"
#include "formats/writer.h"
#include "pipeline/pipeline.h"

#include <stdio.h>
#include <stdlib.h>

/* The micro model as a folder, a tar of that folder and a lossless .dsq. */
static const char *make_three(const char **folder, const char **tar, const char **dsq) {
    static char f[1024], t[1024], d[1024];
    const char *dir = t_tmpdir();
    snprintf(f, sizeof f, "%s", t_path(dir, "m"));
    snprintf(t, sizeof t, "%s", t_path(dir, "m.tar"));
    snprintf(d, sizeof d, "%s", t_path(dir, "m.dsq"));
    if (tu_gen_micro(f, 0, 2)) return "generate";
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "tar cf '%s' -C '%s' m", t, dir);
    if (t_run(cmd, NULL)) return "tar";
    snprintf(cmd, sizeof cmd, "%s convert '%s' -o '%s' --quiet", t_dsq(), f, d);
    if (t_run(cmd, NULL)) return "convert";
    *folder = f;
    *tar = t;
    *dsq = d;
    return NULL;
}

/* Same tensors; in the same order unless any_order (an archive's storage
 * order is its entries' order). */
static int same_list(const dsq_src *a, const dsq_src *b, int any_order) {
    if (dsq_src_n_tensors(a) != dsq_src_n_tensors(b)) return 0;
    for (int i = 0; i < dsq_src_n_tensors(a); i++) {
        const dsq_stensor *x = dsq_src_tensor(a, i);
        int j = any_order ? dsq_src_find(b, x->name) : i;
        if (j < 0) return 0;
        const dsq_stensor *y = dsq_src_tensor(b, j);
        if (strcmp(x->name, y->name) || x->role != y->role || x->layer != y->layer || x->expert != y->expert ||
            x->is_mtp != y->is_mtp || x->rows != y->rows || x->cols != y->cols || x->scheme != y->scheme ||
            x->n_dims != y->n_dims || x->nbytes != y->nbytes) {
            fprintf(stderr, "  tensor %d: %s vs %s\n", i, x->name, y->name);
            return 0;
        }
    }
    return 1;
}

TEST(test_source_three_backends_one_model) {
    const char *f, *t, *d, *why = make_three(&f, &t, &d);
    CHECKF(!why, "%s failed", why);
    dsq_err err = {0};
    dsq_src *sf, *st, *sd;
    CHECKF(dsq_src_open(&sf, f, 0, &err) == 0, "%s", err.msg);
    CHECKF(dsq_src_open(&st, t, 0, &err) == 0, "%s", err.msg);
    CHECKF(dsq_src_open(&sd, d, 0, &err) == 0, "%s", err.msg);
    CHECK(!strcmp(dsq_src_kind(sf), "folder") && !strcmp(dsq_src_kind(st), "archive") && !strcmp(dsq_src_kind(sd), "dsq"));
    CHECK(dsq_src_ckpt(sf) && !dsq_src_ctr(sf) && dsq_src_ctr(sd) && !dsq_src_ckpt(sd));
    CHECK(dsq_src_random_access(sf) && !dsq_src_random_access(st) && dsq_src_random_access(sd));
    CHECK(same_list(sf, st, 1));
    CHECK(same_list(sf, sd, 1)); /* a container stores each projection's experts together */
    /* the config.json text travels verbatim */
    size_t la, lb;
    const char *ca = dsq_src_config_json(sf, &la), *cb = dsq_src_config_json(sd, &lb);
    CHECK(la == lb && la > 0 && !memcmp(ca, cb, la));
    /* no scale companions; routed experts by their upstream names */
    int n_exp = 0;
    for (int i = 0; i < dsq_src_n_tensors(sd); i++) {
        const dsq_stensor *x = dsq_src_tensor(sd, i);
        CHECK(x->role != DSQ_R_SCALE);
        if (x->expert >= 0) {
            n_exp++;
            char nm[160];
            dsq_expert_name(nm, sizeof nm, x->layer, x->expert, x->role);
            CHECK(!strcmp(nm, x->name) && dsq_src_find(sd, nm) == i && dsq_src_find(sf, nm) >= 0);
        }
    }
    CHECK(n_exp > 0);
    CHECK(dsq_src_find(sd, "model.layers.1.mlp.experts.up_proj.weight") < 0); /* stacked names are the file's */
    /* values: f32 rows from the folder and the container, and the archive's
     * stream dequantized, are the same bits */
    int n = dsq_src_n_tensors(sf), bad = 0, seen = 0, idx;
    while (!bad && dsq_src_next(st, &idx, &err) == DSQ_OK) {
        const dsq_stensor *x = dsq_src_tensor(st, idx);
        if (idx % 3) continue; /* data never asked for: skipped */
        int k = dsq_src_find(sf, x->name), kd = dsq_src_find(sd, x->name);
        size_t cnt = (size_t)(x->rows * x->cols);
        float *a = malloc(cnt * 4 + 4), *b = malloc(cnt * 4 + 4), *c = malloc(cnt * 4 + 4);
        dsq_qmat m;
        const void *cs;
        bad = dsq_src_data(st, &m, &cs, &err) || dsq_q_dequantize(&m, 0, x->rows, c, &err) ||
              dsq_src_rows_f32(sf, k, 0, x->rows, a, &err) || dsq_src_rows_f32(sd, kd, 0, x->rows, b, &err) ||
              memcmp(a, b, cnt * 4) || memcmp(a, c, cnt * 4);
        if (bad) fprintf(stderr, "  %s differs: %s\n", x->name, err.msg);
        seen++;
        free(a);
        free(b);
        free(c);
    }
    CHECK(!bad && seen == (n + 2) / 3);
    CHECK(dsq_src_next(st, &idx, &err) == DSQ_EOF);
    /* an archive cannot be read at random, and says so */
    dsq_qmat m;
    CHECK(dsq_src_qmat(st, 0, &m, NULL, &err) == DSQ_E_UNSUPPORTED);
    /* provenance parts: an archive and a container are one file, a folder its files */
    char p[4096];
    CHECK(dsq_src_part(sd, 0, p, sizeof p) == DSQ_OK && !strcmp(p, d) && dsq_src_part(sd, 1, p, sizeof p) == DSQ_EOF);
    int parts = 0;
    while (dsq_src_part(sf, parts, p, sizeof p) == DSQ_OK) parts++;
    CHECK(parts == 2 + 2); /* config.json, the index, two shards */
    dsq_src_close(sf);
    dsq_src_close(st);
    dsq_src_close(sd);
}

/* The backend is chosen from the bytes: a container under any name opens
 * as a container, damaged it gives the container's error; anything else is
 * the checkpoint reader's. */
TEST(test_source_bidding) {
    const char *f, *t, *d, *why = make_three(&f, &t, &d);
    CHECKF(!why, "%s failed", why);
    dsq_err err = {0};
    dsq_src *s;
    const char *odd = t_path(t_tmpdir(), "model.safetensors");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", d, odd);
    CHECK(t_run(cmd, NULL) == 0);
    CHECKF(dsq_src_open(&s, odd, 0, &err) == 0 && !strcmp(dsq_src_kind(s), "dsq"), "%s", err.msg);
    dsq_src_close(s);
    size_t n;
    uint8_t *b = t_read_file(d, &n);
    CHECK(b && n > 200);
    const char *cut = t_path(t_tmpdir(), "cut.dsq");
    CHECK(t_write_file(cut, b, 200) == 0);
    free(b);
    CHECK(dsq_src_open(&s, cut, 0, &err) < 0 && s == NULL && strstr(err.msg, "cut.dsq"));
    CHECK(dsq_src_open(&s, t_path(t_tmpdir(), "absent"), 0, &err) == DSQ_E_IO && strstr(err.msg, "absent"));
}

/* The writer takes slices in any order, refuses one written twice or of
 * the wrong shape, and a model with a slice missing never appears. */
TEST(test_writer_order_and_refusals) {
    const char *out = t_path(t_tmpdir(), "w.dsq");
    dsq_err err = {0};
    dsq_mwriter *w;
    CHECKF(dsq_mwriter_open(&w, out, DSQ_OUT_AUTO, NULL, 0, &err) == 0, "%s", err.msg);
    dsq_mw_tensor t = {"model.layers.1.mlp.experts.up_proj.weight", DSQ_R_EXP_UP, 1, 0, 3, {2, 4, 8, 0}, 2,
                       DSQ_Q_F32, 4, 8, 0, NULL, DSQ_PART_WHOLE};
    int i = dsq_mwriter_add_tensor(w, &t, &err);
    CHECK(i >= 0);
    CHECK(dsq_mwriter_layout(w, &err) == 0);
    CHECK(dsq_mwriter_slice_bytes(w, i) == 4 * 8 * 4);
    float v[32] = {0};
    dsq_qmat m = {DSQ_Q_F32, 4, 8, v, NULL, NULL};
    CHECK(dsq_mwriter_put(w, i, 1, &m, NULL, &err) == 0);
    CHECK(dsq_mwriter_put(w, i, 1, &m, NULL, &err) < 0);
    CHECK(dsq_mwriter_finish(w, "{\"config_json\":\"{}\"}", NULL, &err) < 0); /* expert 0 never written */
    CHECK(!t_file_exists(out));
}
