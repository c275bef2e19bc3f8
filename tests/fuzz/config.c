/*
 * config.c -- fuzz target: config.json (dsq_config_parse in
 * formats/config.c).
 *
 * Input: the JSON text, not NUL-terminated.  A configuration that parses
 * must satisfy the cross-field rules the parser enforces, give sane role
 * shapes, and survive a trip through dsq_config_to_json (synth/gen.h)
 * with every shape field unchanged.
 */
#include "fuzz.h"
#include "synth/gen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The integer fields that decide tensor shapes. */
static int same_shape_fields(const dsq_config *a, const dsq_config *b) {
    return a->vocab_size == b->vocab_size && a->hidden_size == b->hidden_size &&
           a->intermediate_size == b->intermediate_size &&
           a->moe_intermediate_size == b->moe_intermediate_size && a->n_layers == b->n_layers &&
           a->n_mtp_layers == b->n_mtp_layers && a->first_k_dense == b->first_k_dense &&
           a->n_heads == b->n_heads && a->q_lora_rank == b->q_lora_rank &&
           a->kv_lora_rank == b->kv_lora_rank && a->qk_nope_head_dim == b->qk_nope_head_dim &&
           a->qk_rope_head_dim == b->qk_rope_head_dim && a->v_head_dim == b->v_head_dim &&
           a->n_routed_experts == b->n_routed_experts && a->n_shared_experts == b->n_shared_experts &&
           a->n_experts_per_tok == b->n_experts_per_tok && a->n_group == b->n_group &&
           a->topk_group == b->topk_group && a->has_indexer == b->has_indexer &&
           (!a->has_indexer || (a->index_n_heads == b->index_n_heads &&
                                a->index_head_dim == b->index_head_dim &&
                                a->index_topk == b->index_topk)) &&
           a->fp8 == b->fp8 && (!a->fp8 || (a->block_rows == b->block_rows &&
                                            a->block_cols == b->block_cols));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *json = malloc(size ? size : 1);
    if (!json) return 0;
    memcpy(json, data, size);
    dsq_config c;
    dsq_err err = {0};
    int rc = dsq_config_parse(&c, json, size, "fuzz/config.json", &err);
    free(json);
    if (rc != DSQ_OK) {
        FUZZ_CHECK(rc < 0 && err.msg[0]);
        return 0;
    }
    FUZZ_CHECK(c.n_group >= 1 && c.n_routed_experts % c.n_group == 0);
    FUZZ_CHECK(c.topk_group <= c.n_group);
    FUZZ_CHECK(c.first_k_dense <= c.n_layers);
    FUZZ_CHECK(c.qk_rope_head_dim % 2 == 0);
    FUZZ_CHECK(c.block_rows >= 1 && c.block_cols >= 1);
    FUZZ_CHECK(!strcmp(c.model_type, "deepseek_v32") || !strcmp(c.model_type, "deepseek_v3"));
    for (int r = 0; r < DSQ_R_COUNT; r++)
        for (int l = -1; l <= c.n_layers + c.n_mtp_layers && l < 8; l++) {
            int64_t s[4] = {0};
            int nd = dsq_config_role_shape(&c, (dsq_role)r, l, s);
            FUZZ_CHECK(nd >= 0 && nd <= 2);
            for (int k = 0; k < nd; k++) FUZZ_CHECK(s[k] >= 0);
        }
    char *again = dsq_config_to_json(&c);
    FUZZ_CHECK(again != NULL);
    dsq_config c2;
    rc = dsq_config_parse(&c2, again, strlen(again), "fuzz/regenerated", &err);
    free(again);
    FUZZ_CHECK(rc == DSQ_OK);
    FUZZ_CHECK(same_shape_fields(&c, &c2));
    return 0;
}
