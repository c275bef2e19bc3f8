/*
 * test_faults.c -- allocation failures injected at every allocation of
 * opening a checkpoint, converting it and opening the container, and of
 * building a forward pass: each run
 * must either succeed or fail with DSQ_E_NOMEM (or a clean error), never
 * crash or leak (the sanitizer build checks leaks), and a failed conversion
 * must leave no output file.
 */
#include "test.h"
#include "test_ckpt_util.h"
#include "pipeline/pipeline.h"
#include "formats/container.h"
#include "tmodel.h"
#include "verify/forward.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

TEST(test_faults_ckpt_open) {
    const char *d = t_path(t_tmpdir(), "m");
    CHECK(tu_gen_micro(d, 0, 2) == 0);
    int failures = 0, n;
    for (n = 0; n < 5000; n++) {
        dsq_ckpt *ck = NULL;
        dsq_err err = {0};
        dsq_fault_alloc_after(n);
        int rc = dsq_ckpt_open(&ck, d, 0, &err);
        dsq_fault_alloc_after(-1);
        if (rc == DSQ_OK) {
            dsq_ckpt_close(ck);
            break;
        }
        CHECKF(rc == DSQ_E_NOMEM || rc == DSQ_E_IO, "allocation %d: rc %d (%s)", n, rc, err.msg);
        failures++;
    }
    CHECKF(failures > 10 && n < 5000, "%d failures over %d allocations", failures, n);
}

TEST(test_faults_convert_and_read) {
    const char *d = t_path(t_tmpdir(), "m"), *o = t_path(t_tmpdir(), "o.dsq");
    CHECK(tu_gen_micro(d, 0, 2) == 0);
    dsq_recipe r;
    dsq_err err = {0};
    CHECK(dsq_recipe_preset(&r, "int4-experts", &err) == 0);
    int n, ok = 0;
    for (n = 0; n < 20000 && !ok; n += (n < 200 ? 1 : 37)) {
        dsq_pipe_opts op = {0};
        op.src = d;
        op.out = o;
        op.recipe = &r;
        op.threads = 1;
        op.force = 1;
        dsq_pipe_report rep;
        dsq_fault_alloc_after(n);
        int rc = dsq_pipeline_run(&op, &rep, &err);
        dsq_fault_alloc_after(-1);
        if (rc == DSQ_OK) {
            dsq_pipe_report_free(&rep);
            ok = 1;
            break;
        }
        CHECKF(!t_file_exists(o), "allocation %d: failed conversion left %s", n, o);
    }
    CHECK(ok);
    for (n = 0; n < 2000; n++) {
        dsq_ctr *c = NULL;
        dsq_fault_alloc_after(n);
        int rc = dsq_ctr_open(&c, o, &err);
        dsq_fault_alloc_after(-1);
        if (rc == DSQ_OK) {
            dsq_ctr_close(c);
            break;
        }
        CHECKF(rc == DSQ_E_NOMEM, "allocation %d: rc %d (%s)", n, rc, err.msg);
    }
    CHECK(n < 2000);
    dsq_recipe_deinit(&r);
}

static void ignore_input(void *arg, int layer, dsq_role role, int expert, const float *x, int n, int cols) {
    (void)arg; (void)layer; (void)role; (void)expert; (void)x; (void)n; (void)cols;
}

/* Every allocation of dsq_fwd_new (weights, RoPE tables, activations with
 * the traced and observed extras, workers) may fail: the constructor then
 * returns DSQ_E_NOMEM, frees what it had, and the pass built at the end
 * runs. */
TEST(test_faults_forward_new) {
    dsq_config c;
    tm_small_config(&c);
    tmodel m;
    CHECK(tm_build(&m, &c, 3) == 0);
    int n, failures = 0, ok = 0;
    for (n = 0; n < 2000 && !ok; n++) {
        dsq_fwd *f = NULL;
        dsq_err err = {0};
        dsq_fwd_opts o = {.max_tokens = 12, .n_threads = 2, .trace = DSQ_TRACE_TOPK, .observe = ignore_input};
        dsq_fault_alloc_after(n);
        int rc = dsq_fwd_new(&f, &m.w, &o, &err);
        dsq_fault_alloc_after(-1);
        if (rc == DSQ_OK) {
            int32_t tok[12];
            for (int t = 0; t < 12; t++) tok[t] = (t * 7) % c.vocab_size;
            rc = dsq_fwd_run(f, tok, 12, NULL, &err);
            dsq_fwd_free(f);
            CHECKF(rc == DSQ_OK, "%s", err.msg);
            ok = 1;
            break;
        }
        CHECKF(rc == DSQ_E_NOMEM && !f, "allocation %d: rc %d (%s)", n, rc, err.msg);
        failures++;
    }
    tm_free(&m);
    CHECKF(ok && failures > 40, "%d failures over %d allocations", failures, n);
}

/* A write error on standard output is a failure with one line naming it,
 * for a command's output (inspect, its --json form) and for --help. */
TEST(test_faults_stdout_full) {
    if (access("/dev/full", W_OK) != 0) SKIP("/dev/full absent");
    const char *d = t_tmpdir();
    char cmd[2048], m[1024];
    snprintf(m, sizeof m, "%s", t_path(d, "m"));
    snprintf(cmd, sizeof cmd, "%s gen-tiny '%s' --shards 1 --force > /dev/null 2>&1", t_dsq(), m);
    CHECK(t_run(cmd, NULL) == 0);
    const char *args[] = {"inspect '%s'", "inspect '%s' --json", "--version", "--help"};
    for (int i = 0; i < 4; i++) {
        char a[1200], *out = NULL;
        snprintf(a, sizeof a, args[i], m);
        snprintf(cmd, sizeof cmd, "{ %s %s >/dev/full; }", t_dsq(), a); /* t_run adds 2>&1 */
        int rc = t_run(cmd, &out);
        CHECKF(rc != 0 && out && strstr(out, "cannot write standard output") && !strchr(strchr(out, '\n') + 1, '\n'),
               "%s: rc %d, %s", a, rc, out ? out : "");
        free(out);
        /* the same command to a working stdout succeeds */
        snprintf(cmd, sizeof cmd, "%s %s > /dev/null 2>&1", t_dsq(), a);
        CHECKF(t_run(cmd, NULL) == 0, "%s", a);
    }
}
