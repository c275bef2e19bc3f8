/*
 * test_ckpt_util.c -- see test_ckpt_util.h.
 */
#include "test.h"
#include "test_ckpt_util.h"

#include <stdlib.h>

void tu_micro_config(dsq_config *c) {
    dsq_gen_preset(c, "tiny");
    c->vocab_size = 300;
    c->hidden_size = 160;     /* 2 column blocks, the second partial */
    c->intermediate_size = 136;
    c->moe_intermediate_size = 40;
    c->n_layers = 2;
    c->n_mtp_layers = 1;
    c->first_k_dense = 1;
    c->n_heads = 2;
    c->q_lora_rank = 48;
    c->kv_lora_rank = 32;
    c->qk_nope_head_dim = 16;
    c->qk_rope_head_dim = 16;
    c->v_head_dim = 16;
    c->n_routed_experts = 4;
    c->n_experts_per_tok = 2;
    c->n_group = 2;
    c->topk_group = 1;
    c->index_n_heads = 2;
    c->index_head_dim = 32;
    c->index_topk = 8;
}

int tu_gen_micro(const char *dir, int bf16, int n_shards) {
    dsq_gen_opts o = {0};
    tu_micro_config(&o.cfg);
    if (bf16) o.cfg.fp8 = 0;
    o.n_shards = n_shards;
    o.with_mtp = 1;
    o.seed = 7;
    o.force = 1;
    dsq_err err = {0};
    int rc = dsq_gen_ckpt(dir, &o, &err);
    if (rc) fprintf(stderr, "  gen: %s\n", err.msg);
    return rc;
}

int tu_write_st(const char *path, const char *json, const void *data, size_t n) {
    size_t jl = strlen(json);
    uint8_t *b = malloc(8 + jl + n + 1);
    if (!b) return -1;
    dsq_st64(b, jl);
    memcpy(b + 8, json, jl);
    if (n) memcpy(b + 8 + jl, data, n);
    int rc = t_write_file(path, b, 8 + jl + n);
    free(b);
    return rc;
}

int tu_file_replace(const char *path, const char *from, const char *to) {
    size_t n;
    char *s = t_read_file(path, &n);
    if (!s) return -1;
    char *p = memmem(s, n, from, strlen(from));
    if (!p) { free(s); return -1; }
    size_t fl = strlen(from), tl = strlen(to);
    char *o = malloc(n - fl + tl + 1);
    memcpy(o, s, (size_t)(p - s));
    memcpy(o + (p - s), to, tl);
    memcpy(o + (p - s) + tl, p + fl, n - (size_t)(p - s) - fl);
    int rc = t_write_file(path, o, n - fl + tl);
    free(s);
    free(o);
    return rc;
}

int tu_open_fails(const char *path, const char *needle) {
    dsq_ckpt *ck = NULL;
    dsq_err err = {0};
    int rc = dsq_ckpt_open(&ck, path, 0, &err);
    if (rc >= 0) {
        fprintf(stderr, "  expected failure, opened %s\n", path);
        dsq_ckpt_close(ck);
        return 0;
    }
    if (!strstr(err.msg, needle)) {
        fprintf(stderr, "  message '%s' lacks '%s'\n", err.msg, needle);
        return 0;
    }
    return 1;
}
