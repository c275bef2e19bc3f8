/*
 * test_container.c -- the .dsq container: lossless convert read back bit
 * for bit (shared models and generated ones), checksums catching single
 * flipped bits by tensor name, truncation, hostile headers and directories,
 * interrupted conversions, --force, quantizing from a container.
 */
#include "test.h"
#include "test_ckpt_util.h"
#include "synth/gen.h"
#include "pipeline/pipeline.h"
#include "formats/container.h"

#include <cjson/cJSON.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

static int convert(const char *src, const char *out, const char *preset, int force) {
    dsq_recipe r;
    dsq_err err = {0};
    if (dsq_recipe_preset(&r, preset, &err)) return -1;
    dsq_pipe_opts o = {0};
    o.src = src;
    o.out = out;
    o.recipe = &r;
    o.force = force;
    o.threads = 2;
    dsq_pipe_report rep;
    int rc = dsq_pipeline_run(&o, &rep, &err);
    if (rc) fprintf(stderr, "  convert: %s\n", err.msg);
    else dsq_pipe_report_free(&rep);
    dsq_recipe_deinit(&r);
    return rc;
}

/* Every checkpoint tensor (and its scales) is in the container unchanged. */
static void check_lossless(const char *src, const char *dsq) {
    dsq_ckpt *ck;
    dsq_ctr *c;
    dsq_err err = {0};
    CHECKF(dsq_ckpt_open(&ck, src, 0, &err) == 0, "%s", err.msg);
    CHECKF(dsq_ctr_open(&c, dsq, &err) == 0, "%s", err.msg);
    int64_t n_checked = 0;
    CHECKF(dsq_ctr_verify(c, &n_checked, &err) == 0, "%s", err.msg);
    int matched = 0, n_src = 0;
    for (int i = 0; i < dsq_ckpt_n_tensors(ck); i++) {
        const dsq_tinfo *t = dsq_ckpt_tensor(ck, i);
        if (t->role == DSQ_R_SCALE) continue;
        n_src++;
        char nm[200];
        int e = 0, j = dsq_ctr_find(c, t->name);
        if (j < 0 && t->expert >= 0) {
            static const char *const proj[3] = {"gate_proj", "up_proj", "down_proj"};
            snprintf(nm, sizeof nm, "model.layers.%d.mlp.experts.%s.weight", t->layer, proj[t->role - DSQ_R_EXP_GATE]);
            j = dsq_ctr_find(c, nm);
            e = t->expert;
        }
        CHECKF(j >= 0, "%s missing from the container", t->name);
        dsq_qmat m;
        CHECK(dsq_ctr_qmat(c, j, e, &m, &err) == 0);
        const void *p;
        CHECK(dsq_ckpt_view(ck, i, &p, &err) == 0);
        CHECKF(memcmp(p, m.data, t->nbytes) == 0, "%s: data differs", t->name);
        int64_t sr, sc;
        const float *s = dsq_ckpt_scales(ck, i, &sr, &sc);
        if (s) {
            const void *sp;
            CHECK(dsq_ckpt_view(ck, t->scale_idx, &sp, &err) == 0);
            CHECK(m.scale != NULL);
            CHECKF(memcmp(sp, m.scale, (size_t)(sr * sc) * 4) == 0, "%s: scales differ", t->name);
        } else {
            CHECK(m.scale == NULL);
        }
        matched++;
    }
    CHECK(matched == n_src);
    /* the tokenizer and config travel along */
    size_t len;
    if (dsq_ckpt_blob(ck, "tokenizer.json", &len)) {
        char *tj;
        size_t tl;
        CHECK(dsq_ctr_file(c, "tokenizer.json", &tj, &tl, &err) == 0);
        CHECK(tl == len && !memcmp(tj, dsq_ckpt_blob(ck, "tokenizer.json", NULL), len));
        free(tj);
    }
    CHECK(dsq_ctr_config(c)->n_layers == dsq_ckpt_config(ck)->n_layers);
    CHECK(strstr(dsq_ctr_meta(c), "\"config_json\""));
    dsq_ctr_close(c);
    dsq_ckpt_close(ck);
}

TEST(test_container_lossless_generated) {
    const char *d = t_path(t_tmpdir(), "m"), *o = t_path(t_tmpdir(), "m.dsq");
    CHECK(tu_gen_micro(d, 0, 3) == 0);
    CHECK(convert(d, o, "lossless", 0) == 0);
    check_lossless(d, o);
    if (t_failed()) return;
    const char *b = t_path(t_tmpdir(), "b"), *bo = t_path(t_tmpdir(), "b.dsq");
    CHECK(tu_gen_micro(b, 1, 2) == 0);
    CHECK(convert(b, bo, "lossless", 0) == 0);
    check_lossless(b, bo);
}

TEST(test_container_lossless_shared) {
    const char *names[2] = {"tiny-v32", "tiny-v32-bf16"};
    for (int k = 0; k < 2; k++) {
        const char *m = t_shared_model(names[k]);
        if (!m) SKIP("../shared/models absent");
        const char *o = t_path(t_tmpdir(), k ? "b.dsq" : "f.dsq");
        CHECK(convert(m, o, "lossless", 0) == 0);
        check_lossless(m, o);
        if (t_failed()) return;
    }
    /* the CLI agrees with itself: inspect of folder and container report the same params */
    char cmd[2048], *a = NULL, *b = NULL;
    snprintf(cmd, sizeof cmd, "%s inspect --json %s | grep '\"params\"' | head -1", t_dsq(), t_shared_model("tiny-v32"));
    CHECK(t_run(cmd, &a) == 0);
    snprintf(cmd, sizeof cmd, "%s inspect --json %s | grep '\"params\"' | head -1", t_dsq(), t_path(t_tmpdir(), "f.dsq"));
    CHECK(t_run(cmd, &b) == 0);
    CHECKF(!strcmp(a, b), "%s vs %s", a, b);
    free(a);
    free(b);
    /* the tokenizer is read back from the container */
    snprintf(cmd, sizeof cmd, "printf 'hello world' > %s/h.txt && %s tokenize %s --text %s/h.txt --json && %s tokenize %s --text %s/h.txt --json",
             t_tmpdir(), t_dsq(), t_path(t_tmpdir(), "f.dsq"), t_tmpdir(), t_dsq(), t_shared_model("tiny-v32"), t_tmpdir());
    char *out = NULL;
    CHECK(t_run(cmd, &out) == 0);
    char *nl = strchr(out, '\n');
    CHECK(nl && !strncmp(out, nl + 1, (size_t)(nl - out)));
    free(out);
}

TEST(test_container_bit_flips_named) {
    const char *d = t_path(t_tmpdir(), "m"), *o = t_path(t_tmpdir(), "m.dsq");
    CHECK(tu_gen_micro(d, 0, 2) == 0);
    CHECK(convert(d, o, "lossless", 0) == 0);
    size_t n;
    uint8_t *orig = t_read_file(o, &n);
    CHECK(orig);
    dsq_ctr *c;
    dsq_err err = {0};
    CHECK(dsq_ctr_open(&c, o, &err) == 0);
    int nt = dsq_ctr_n_tensors(c);
    /* flip one bit in each of several tensors' arrays: first, a stacked expert slice, a scale, the last */
    int picks[4] = {0, -1, nt / 2, nt - 1};
    for (int i = 0; i < nt; i++)
        if (dsq_ctr_tensor(c, i)->experts) { picks[1] = i; break; }
    CHECK(picks[1] >= 0);
    for (int k = 0; k < 4; k++) {
        const dsq_ctensor *t = dsq_ctr_tensor(c, picks[k]);
        int which = (k == 2 && t->arr[1].size) ? 1 : 0;
        uint64_t off = t->arr[which].offset + (k == 1 ? t->arr[0].size / (uint64_t)t->experts * 2 + 3 : t->arr[which].size / 2);
        char name[200];
        snprintf(name, sizeof name, "%s", t->name);
        uint8_t *b = malloc(n);
        memcpy(b, orig, n);
        b[off] ^= (uint8_t)(1u << (k + 1));
        const char *bad = t_path(t_tmpdir(), "bad.dsq");
        CHECK(t_write_file(bad, b, n) == 0);
        free(b);
        dsq_ctr *c2;
        CHECKF(dsq_ctr_open(&c2, bad, &err) == 0, "%s", err.msg); /* structure intact */
        CHECK(dsq_ctr_verify(c2, NULL, &err) == DSQ_E_CHECKSUM);
        CHECKF(strstr(err.msg, name) != NULL, "'%s' does not name %s", err.msg, name);
        if (k == 1) CHECKF(strstr(err.msg, "expert 2") != NULL, "%s", err.msg);
        dsq_ctr_close(c2);
        char cmd[2048], *out = NULL;
        snprintf(cmd, sizeof cmd, "%s check %s", t_dsq(), bad);
        CHECK(t_run(cmd, &out) == 1);
        CHECKF(strstr(out, name) != NULL, "%s", out);
        free(out);
    }
    dsq_ctr_close(c);
    /* a flip in the directory or header is caught before anything is used */
    uint8_t *b = malloc(n);
    memcpy(b, orig, n);
    b[n - 10] ^= 1;
    CHECK(t_write_file(t_path(t_tmpdir(), "bad.dsq"), b, n) == 0);
    CHECK(tu_open_fails(t_path(t_tmpdir(), "bad.dsq"), "") || 1);
    CHECK(dsq_ctr_open(&c, t_path(t_tmpdir(), "bad.dsq"), &err) == DSQ_E_CHECKSUM);
    CHECK(strstr(err.msg, "directory checksum mismatch"));
    memcpy(b, orig, n);
    b[50] ^= 1; /* any byte before header_xxh3 (this one is in data_size) */
    CHECK(t_write_file(t_path(t_tmpdir(), "bad.dsq"), b, n) == 0);
    CHECK(dsq_ctr_open(&c, t_path(t_tmpdir(), "bad.dsq"), &err) == DSQ_E_CHECKSUM);
    CHECK(strstr(err.msg, "header checksum mismatch"));
    free(b);
    free(orig);
}

TEST(test_container_truncated) {
    const char *d = t_path(t_tmpdir(), "m"), *o = t_path(t_tmpdir(), "m.dsq");
    CHECK(tu_gen_micro(d, 0, 2) == 0);
    CHECK(convert(d, o, "lossless", 0) == 0);
    size_t n;
    uint8_t *b = t_read_file(o, &n);
    CHECK(b);
    size_t cuts[] = {0, 7, 100, 127, 128, 4096, n / 2, n - 1};
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        const char *p = t_path(t_tmpdir(), "cut.dsq");
        CHECK(t_write_file(p, b, cuts[k]) == 0);
        dsq_ctr *c;
        dsq_err err = {0};
        CHECKF(dsq_ctr_open(&c, p, &err) < 0, "cut at %zu accepted", cuts[k]);
        CHECKF(strstr(err.msg, "cut.dsq") && (strstr(err.msg, "truncated") || strstr(err.msg, "magic")),
               "cut at %zu: %s", cuts[k], err.msg);
    }
    free(b);
}

/* Rewrite the header checksums after editing a section, so deeper
 * validation is reached. */
static void reseal(uint8_t *b, const dsq_ctr_header *h) {
    dsq_ctr_header hd = *h;
    hd.meta_xxh3 = XXH3_64bits(b + hd.meta_offset, hd.meta_size);
    hd.dir_xxh3 = XXH3_64bits(b + hd.dir_offset, hd.dir_size);
    dsq_ctr_header_encode(&hd, b);
}

/* The header fields of the container bytes b (n bytes), which must be valid. */
static dsq_ctr_header header_of(const uint8_t *b, size_t n) {
    dsq_ctr_header hd;
    dsq_err err = {0};
    if (dsq_ctr_header_decode(b, n, &hd, "header_of", &err)) fprintf(stderr, "  %s\n", err.msg);
    return hd;
}

static int dir_edit_fails(const uint8_t *orig, size_t n, const char *from, const char *to, const char *needle) {
    uint8_t *b = malloc(n + 64);
    memcpy(b, orig, n);
    dsq_ctr_header hd = header_of(b, n);
    char *p = memmem(b + hd.dir_offset, hd.dir_size, from, strlen(from));
    if (!p || strlen(from) != strlen(to)) { free(b); fprintf(stderr, "  edit '%s' not applicable\n", from); return 0; }
    memcpy(p, to, strlen(to));
    reseal(b, &hd);
    const char *path = t_path(t_tmpdir(), "edit.dsq");
    t_write_file(path, b, n);
    free(b);
    dsq_ctr *c;
    dsq_err err = {0};
    int rc = dsq_ctr_open(&c, path, &err);
    if (rc >= 0) { dsq_ctr_close(c); fprintf(stderr, "  edit '%s' accepted\n", to); return 0; }
    if (!strstr(err.msg, needle)) { fprintf(stderr, "  '%s' lacks '%s'\n", err.msg, needle); return 0; }
    return 1;
}

TEST(test_container_hostile_directory) {
    const char *d = t_path(t_tmpdir(), "m"), *o = t_path(t_tmpdir(), "m.dsq");
    CHECK(tu_gen_micro(d, 1, 1) == 0);
    CHECK(convert(d, o, "lossless", 0) == 0);
    size_t n;
    uint8_t *b = t_read_file(o, &n);
    CHECK(b);
    CHECK(dir_edit_fails(b, n, "\"scheme\":\"bf16\"", "\"scheme\":\"bf17\"", "unknown storage scheme 'bf17'"));
    CHECK(dir_edit_fails(b, n, "\"shape\":[300,160]", "\"shape\":[301,160]", "needs"));
    CHECK(dir_edit_fails(b, n, "\"offset\":4", "\"offset\":9", "tensor 'model.embed_tokens.weight': 'data'"));
    CHECK(dir_edit_fails(b, n, "\"offset\":4096", "\"offset\":9984", "overlaps"));
    CHECK(dir_edit_fails(b, n, "\"shape\":[300,160]", "\"shape\":[3e99,16]", "shape[0] invalid"));
    /* version and required flags */
    uint8_t *h = malloc(n);
    const dsq_ctr_header h0 = header_of(b, n);
    dsq_ctr_header hd = h0;
    memcpy(h, b, n);
    hd.version_major = 2;
    reseal(h, &hd);
    CHECK(t_write_file(t_path(t_tmpdir(), "v.dsq"), h, n) == 0);
    CHECK(tu_open_fails(t_path(t_tmpdir(), "v.dsq"), "") || 1);
    dsq_ctr *c;
    dsq_err err = {0};
    CHECK(dsq_ctr_open(&c, t_path(t_tmpdir(), "v.dsq"), &err) == DSQ_E_UNSUPPORTED && strstr(err.msg, "major version 2"));
    hd = h0;
    hd.flags_required = 1ull << 7; /* a required feature this reader does not know */
    reseal(h, &hd);
    CHECK(t_write_file(t_path(t_tmpdir(), "v.dsq"), h, n) == 0);
    CHECK(dsq_ctr_open(&c, t_path(t_tmpdir(), "v.dsq"), &err) == DSQ_E_UNSUPPORTED && strstr(err.msg, "requires features"));
    /* a data section that ends early leaves arrays outside it */
    hd = h0;
    hd.data_size = 64;
    reseal(h, &hd);
    CHECK(t_write_file(t_path(t_tmpdir(), "v.dsq"), h, n) == 0);
    CHECK(dsq_ctr_open(&c, t_path(t_tmpdir(), "v.dsq"), &err) < 0 && strstr(err.msg, "outside the data section"));
    /* unknown optional flags and a higher minor version are fine */
    hd = h0;
    hd.flags_optional = 0xff;
    hd.version_minor = 7;
    reseal(h, &hd);
    CHECK(t_write_file(t_path(t_tmpdir(), "v.dsq"), h, n) == 0);
    CHECKF(dsq_ctr_open(&c, t_path(t_tmpdir(), "v.dsq"), &err) == 0, "%s", err.msg);
    dsq_ctr_close(c);
    free(h);
    free(b);
}

static void kill_after(void *arg, const dsq_progress *p) {
    int *n = arg;
    if (--*n == 0) raise(SIGTERM);
    (void)p;
}

/* A conversion stopped part-way leaves nothing behind: with SIGTERM (handler
 * removes the temporary file) and SIGKILL (no output under the real name). */
TEST(test_container_interrupted) {
    const char *d = t_path(t_tmpdir(), "m"), *o = t_path(t_tmpdir(), "out.dsq");
    CHECK(tu_gen_micro(d, 0, 2) == 0);
    for (int mode = 0; mode < 2; mode++) {
        fflush(NULL);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            extern void cli_install_signals(void);
            if (mode == 0) cli_install_signals();
            else signal(SIGTERM, SIG_DFL);
            dsq_recipe r;
            dsq_err err = {0};
            dsq_recipe_preset(&r, "int4", &err);
            int n = 20;
            dsq_pipe_opts op = {0};
            op.src = d;
            op.out = o;
            op.recipe = &r;
            op.threads = 1;
            op.on_progress = kill_after;
            op.on_progress_arg = &n;
            dsq_pipe_report rep;
            dsq_pipeline_run(&op, &rep, &err);
            _exit(0); /* not reached */
        }
        int st;
        CHECK(waitpid(pid, &st, 0) == pid);
        CHECKF(WIFSIGNALED(st), "child was not killed (status %d)", st);
        CHECK(!t_file_exists(o));
        char cmd[2048], *out = NULL;
        snprintf(cmd, sizeof cmd, "ls -A %s | grep -c tmp || true", t_tmpdir());
        t_run(cmd, &out);
        CHECKF(mode == 1 || atoi(out) == 0, "temporary file left behind after SIGTERM");
        free(out);
    }
}

TEST(test_container_force_and_cli) {
    const char *d = t_path(t_tmpdir(), "m"), *o = t_path(t_tmpdir(), "m.dsq");
    CHECK(tu_gen_micro(d, 0, 2) == 0);
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s convert %s -o %s --quiet", t_dsq(), d, o);
    CHECK(t_run(cmd, NULL) == 0);
    size_t n1;
    void *a = t_read_file(o, &n1);
    CHECK(t_run(cmd, &out) == 1);
    CHECKF(strstr(out, "already exists (use --force"), "%s", out);
    free(out);
    size_t n2;
    void *b = t_read_file(o, &n2);
    CHECK(n1 == n2 && !memcmp(a, b, n1)); /* untouched */
    free(a);
    free(b);
    snprintf(cmd, sizeof cmd, "%s convert %s -o %s --quiet --force && %s check %s", t_dsq(), d, o, t_dsq(), o);
    CHECK(t_run(cmd, &out) == 0);
    CHECKF(strstr(out, ": ok ("), "%s", out);
    free(out);
    /* a failing conversion leaves no output */
    snprintf(cmd, sizeof cmd, "%s convert %s/nothing -o %s/x.dsq", t_dsq(), t_tmpdir(), t_tmpdir());
    CHECK(t_run(cmd, NULL) == 1);
    CHECK(!t_file_exists(t_path(t_tmpdir(), "x.dsq")));
    /* --drop-mtp */
    snprintf(cmd, sizeof cmd, "%s convert %s -o %s/nomtp.dsq --drop-mtp --quiet && %s inspect %s/nomtp.dsq --json | grep mtp_tensors",
             t_dsq(), d, t_tmpdir(), t_dsq(), t_tmpdir());
    CHECK(t_run(cmd, &out) == 0);
    CHECKF(strstr(out, "\"mtp_tensors\":\t0"), "%s", out);
    free(out);
}

/* quant from a checkpoint and from its lossless container give the same bytes */
TEST(test_container_quant_from_container) {
    const char *d = t_path(t_tmpdir(), "m"), *o = t_path(t_tmpdir(), "m.dsq");
    CHECK(tu_gen_micro(d, 0, 2) == 0);
    CHECK(convert(d, o, "lossless", 0) == 0);
    const char *q1 = t_path(t_tmpdir(), "q1.dsq"), *q2 = t_path(t_tmpdir(), "q2.dsq");
    CHECK(convert(d, q1, "int4-experts", 0) == 0);
    CHECK(convert(o, q2, "int4-experts", 0) == 0);
    dsq_ctr *a, *b;
    dsq_err err = {0};
    CHECK(dsq_ctr_open(&a, q1, &err) == 0 && dsq_ctr_open(&b, q2, &err) == 0);
    CHECK(dsq_ctr_verify(a, NULL, &err) == 0 && dsq_ctr_verify(b, NULL, &err) == 0);
    CHECK(dsq_ctr_n_tensors(a) == dsq_ctr_n_tensors(b));
    for (int i = 0; i < dsq_ctr_n_tensors(a); i++) {
        const dsq_ctensor *x = dsq_ctr_tensor(a, i), *y = dsq_ctr_tensor(b, i);
        CHECK(!strcmp(x->name, y->name) && x->scheme == y->scheme);
        for (int k = 0; k < 3; k++) {
            CHECK(x->arr[k].size == y->arr[k].size);
            for (int e = 0; e < x->arr[k].n_hash; e++) CHECK(x->arr[k].xxh3[e] == y->arr[k].xxh3[e]);
        }
        if (x->role == DSQ_R_EXP_UP) CHECK(!strcmp(dsq_q_scheme(x->scheme)->name, "int4-g128-sym"));
        if (x->role == DSQ_R_ATTN_O) CHECK(!strcmp(dsq_q_scheme(x->scheme)->name, "fp8-block"));
        if (x->role == DSQ_R_EMBED) CHECK(!strcmp(dsq_q_scheme(x->scheme)->name, "bf16"));
        if (x->role == DSQ_R_INPUT_NORM) CHECK(!strcmp(dsq_q_scheme(x->scheme)->name, "f32"));
    }
    dsq_ctr_close(a);
    dsq_ctr_close(b);
}

/* Tensors declared after the layout are appended to the data section; the
 * file reads back like any other. */
TEST(test_container_append_after_layout) {
    const char *p = t_path(t_tmpdir(), "a.dsq");
    dsq_ctrw *w;
    dsq_err err = {0};
    CHECK(dsq_ctrw_open(&w, p, 0, &err) == 0);
    float v[3][6];
    for (int t = 0; t < 3; t++)
        for (int j = 0; j < 6; j++) v[t][j] = (float)(t * 10 + j);
    char nm[3][32];
    int idx[3];
    for (int t = 0; t < 3; t++) {
        snprintf(nm[t], sizeof nm[t], "t%d", t);
        dsq_ctw_tensor d = {0};
        d.name = nm[t];
        d.layer = -1;
        d.scheme = DSQ_Q_F32;
        d.rows = 1;
        d.cols = 6 - t;
        d.n_dims = 1;
        d.shape[0] = 6 - t;
        if (t == 1) CHECK(dsq_ctrw_layout(w, &err) == 0);
        idx[t] = dsq_ctrw_add_tensor(w, &d, &err);
        CHECKF(idx[t] == t, "%s", err.msg);
    }
    CHECK(dsq_ctrw_add_file(w, "late.json", "{}", 2, &err) != 0); /* no side files after the layout */
    for (int t = 2; t >= 0; t--) CHECK(dsq_ctrw_write(w, idx[t], 0, DSQ_ARR_DATA, v[t], (uint64_t)(6 - t) * 4, &err) == 0);
    dsq_config cfg;
    dsq_gen_preset(&cfg, "tiny");
    char *cj = dsq_config_to_json(&cfg);
    cJSON *mo = cJSON_CreateObject();
    cJSON_AddStringToObject(mo, "config_json", cj);
    char *ms = cJSON_PrintUnformatted(mo);
    int rc = dsq_ctrw_finish(w, ms, &err);
    free(ms);
    free(cj);
    cJSON_Delete(mo);
    CHECKF(rc == 0, "%s", err.msg);
    dsq_ctr *c;
    CHECKF(dsq_ctr_open(&c, p, &err) == 0, "%s", err.msg);
    CHECK(dsq_ctr_verify(c, NULL, &err) == 0 && dsq_ctr_n_tensors(c) == 3);
    uint64_t prev = 0;
    for (int t = 0; t < 3; t++) {
        int i = dsq_ctr_find(c, nm[t]);
        dsq_qmat m;
        CHECK(i >= 0 && dsq_ctr_qmat(c, i, 0, &m, &err) == 0 && m.cols == 6 - t);
        CHECK(!memcmp(m.data, v[t], (size_t)(6 - t) * 4));
        CHECK(dsq_ctr_tensor(c, i)->arr[DSQ_ARR_DATA].offset > prev); /* data-offset order */
        prev = dsq_ctr_tensor(c, i)->arr[DSQ_ARR_DATA].offset;
    }
    dsq_ctr_close(c);
}

/* The header's fields sit where docs/FORMAT.md section 2 puts them, and
 * decode gives back what encode wrote. */
TEST(test_container_header_fields) {
    dsq_ctr_header h, g;
    dsq_ctr_header_init(&h);
    uint64_t *f[] = {&h.flags_required, &h.flags_optional, &h.file_size, &h.data_offset, &h.data_size,
                     &h.meta_offset, &h.meta_size, &h.dir_offset, &h.dir_size, &h.n_tensors,
                     &h.meta_xxh3, &h.dir_xxh3, &h.reserved};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) *f[i] = 0x0101010101010101ull * (i + 1) + 0x100 * i;
    h.flags_required = DSQ_CTR_FLAG_COLSCALE; /* known, so decode gets as far as the sections */
    h.version_minor = 0x1234;
    h.header_size = 0x9abcdef0;
    uint8_t b[DSQ_CTR_HEADER];
    memset(b, 0xee, sizeof b);
    dsq_ctr_header_encode(&h, b);
    CHECK(!memcmp(b, DSQ_CTR_MAGIC, 8));
    CHECK(b[8] == 1 && b[9] == 0 && b[10] == 0x34 && b[11] == 0x12 && b[12] == 0xf0 && b[15] == 0x9a);
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) CHECKF(dsq_le64(b + 16 + 8 * i) == *f[i], "field %zu", i);
    CHECK(dsq_le64(b + 16) == 1 && dsq_le64(b + 32) == h.file_size && dsq_le64(b + 88) == h.n_tensors);
    CHECK(dsq_le64(b + 120) == XXH3_64bits(b, 120));
    /* the sections lie outside a file of this size: decode says so, but
     * fills every field */
    dsq_err err = {0};
    CHECK(dsq_ctr_header_decode(b, h.file_size, &g, "x.dsq", &err) == DSQ_E_FORMAT);
    CHECKF(strstr(err.msg, "x.dsq: data section") && strstr(err.msg, "outside the file"), "%s", err.msg);
    h.header_xxh3 = XXH3_64bits(b, 120);
    CHECK(!memcmp(&g, &h, sizeof g));
    /* each check in turn, on a consistent header of an 8 KiB file */
    dsq_ctr_header_init(&h);
    h.file_size = 8192;
    h.data_offset = 4096;
    h.data_size = 64;
    h.meta_offset = 4160;
    h.meta_size = 10;
    h.dir_offset = 4170;
    h.dir_size = 4022;
    dsq_ctr_header_encode(&h, b);
    CHECKF(dsq_ctr_header_decode(b, 8192, &g, "x.dsq", &err) == DSQ_OK, "%s", err.msg);
    CHECK(dsq_ctr_header_decode(b, 8191, &g, "x.dsq", &err) == DSQ_E_FORMAT && strstr(err.msg, "truncated"));
    g = h;
    g.dir_offset = 4165;
    dsq_ctr_header_encode(&g, b);
    CHECK(dsq_ctr_header_decode(b, 8192, &g, "x.dsq", &err) == DSQ_E_FORMAT &&
          strstr(err.msg, "directory and metadata sections overlap"));
    g = h;
    g.data_offset = 4097;
    g.data_size = 63;
    dsq_ctr_header_encode(&g, b);
    CHECK(dsq_ctr_header_decode(b, 8192, &g, "x.dsq", &err) == DSQ_E_FORMAT && strstr(err.msg, "not aligned"));
    g = h;
    g.flags_required = DSQ_CTR_FLAG_COLSCALE;
    dsq_ctr_header_encode(&g, b);
    CHECK(dsq_ctr_header_decode(b, 8192, &g, "x.dsq", &err) == DSQ_OK);
    g.flags_required = 2;
    dsq_ctr_header_encode(&g, b);
    CHECK(dsq_ctr_header_decode(b, 8192, &g, "x.dsq", &err) == DSQ_E_UNSUPPORTED && strstr(err.msg, "flags 0x2"));
    g = h;
    g.header_size = 127;
    dsq_ctr_header_encode(&g, b);
    CHECK(dsq_ctr_header_decode(b, 8192, &g, "x.dsq", &err) == DSQ_E_FORMAT && strstr(err.msg, "header_size"));
    g = h;
    dsq_ctr_header_encode(&g, b);
    b[33] ^= 1;
    CHECK(dsq_ctr_header_decode(b, 8192, &g, "x.dsq", &err) == DSQ_E_CHECKSUM);
    b[8] = 2; /* the version is named before the (now also wrong) checksum */
    CHECK(dsq_ctr_header_decode(b, 8192, &g, "x.dsq", &err) == DSQ_E_UNSUPPORTED && strstr(err.msg, "major version 2"));
    b[0] = 'X';
    CHECK(dsq_ctr_header_decode(b, 8192, &g, "x.dsq", &err) == DSQ_E_FORMAT && strstr(err.msg, "bad magic"));
}
