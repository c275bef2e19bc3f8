/*
 * fuzz_util.c -- see fuzz.h: scratch folders, file writing and the fixed
 * model shape of the checkpoint targets.
 */
#include "fuzz.h"
#include "synth/gen.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void fuzz_fail(const char *file, int line, const char *what) {
    fprintf(stderr, "FUZZ_CHECK failed at %s:%d: %s\n", file, line, what);
    abort();
}

static char g_tmp[512];

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f) {
    (void)st; (void)flag; (void)f;
    remove(p); /* keep going whatever fails */
    return 0;
}

void fuzz_cleanup(void) {
    if (!g_tmp[0]) return;
    nftw(g_tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    g_tmp[0] = 0;
}

static int dir_ok(const char *d) {
    struct stat st;
    return d && *d && stat(d, &st) == 0 && S_ISDIR(st.st_mode) && access(d, W_OK | X_OK) == 0;
}

const char *fuzz_tmpdir(void) {
    static int registered;
    if (g_tmp[0]) return g_tmp;
    const char *base = getenv("DSQ_FUZZ_TMP");
    if (!dir_ok(base)) base = dir_ok("/dev/shm") ? "/dev/shm" : getenv("TMPDIR");
    if (!dir_ok(base)) base = "/tmp";
    snprintf(g_tmp, sizeof g_tmp, "%s/dsq-fuzz.XXXXXX", base);
    if (!mkdtemp(g_tmp)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    if (!registered) {
        atexit(fuzz_cleanup);
        registered = 1;
    }
    return g_tmp;
}

const char *fuzz_dir(const char *name) {
    /* one stable string per name: targets keep the pointer across calls */
    static struct { char name[64], path[600]; } dirs[32];
    static int n;
    const char *base = fuzz_tmpdir();
    int i = 0;
    while (i < n && strcmp(dirs[i].name, name)) i++;
    if (i == n) {
        if (n == 32) abort();
        snprintf(dirs[i].name, sizeof dirs[i].name, "%s", name);
        n++;
    }
    snprintf(dirs[i].path, sizeof dirs[i].path, "%s/%s", base, name);
    mkdir(dirs[i].path, 0700); /* EEXIST after the first call */
    return dirs[i].path;
}

const char *fuzz_path(const char *dir, const char *name) {
    static char buf[8][1024];
    static int k;
    char *b = buf[k++ & 7];
    snprintf(b, sizeof buf[0], "%s/%s", dir, name);
    return b;
}

int fuzz_write(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = n ? fwrite(data, 1, n, f) : 0;
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

void fuzz_shape_config(dsq_config *c) {
    dsq_gen_preset(c, "tiny");
    c->vocab_size = 16;
    c->hidden_size = 24;      /* two 16-column blocks, the second partial */
    c->intermediate_size = 20;
    c->moe_intermediate_size = 8;
    c->n_layers = 2;          /* layer 0 dense, layer 1 MoE */
    c->n_mtp_layers = 1;
    c->first_k_dense = 1;
    c->n_heads = 2;
    c->q_lora_rank = 16;
    c->kv_lora_rank = 8;
    c->qk_nope_head_dim = 4;
    c->qk_rope_head_dim = 4;
    c->v_head_dim = 4;
    c->n_routed_experts = 2;
    c->n_experts_per_tok = 1;
    c->n_group = 1;
    c->topk_group = 1;
    c->index_n_heads = 2;
    c->index_head_dim = 8;
    c->index_topk = 4;
    c->block_rows = c->block_cols = 16;
}

const char *fuzz_shape_json(void) {
    static char *json;
    if (!json) {
        dsq_config c;
        fuzz_shape_config(&c);
        json = dsq_config_to_json(&c);
        if (!json) abort();
    }
    return json;
}

int fuzz_gen_ckpt(const char *dir, int n_shards, int bf16) {
    dsq_gen_opts o;
    memset(&o, 0, sizeof o);
    fuzz_shape_config(&o.cfg);
    if (bf16) o.cfg.fp8 = 0;
    o.n_shards = n_shards;
    o.with_mtp = 1;
    o.seed = 11;
    o.force = 1;
    dsq_err err = {0};
    int rc = dsq_gen_ckpt(dir, &o, &err);
    if (rc) fprintf(stderr, "fuzz: gen: %s\n", err.msg);
    return rc;
}
