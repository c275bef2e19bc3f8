/*
 * config.c -- config.json of DeepSeek-V3 / V3.2 checkpoints
 * (deepseek-v32.md section 1.2) into a validated dsq_config, and the tensor
 * shapes each role must have under that config (section 2).
 */
#include "common.h"
#include "formats/json.h"

#include <stdio.h>

#define MAX_DIM (1 << 24) /* generous bound on any size in a config */

/* Thin adapters over formats/json.h for int fields; 1 on success, 0 after
 * the message is recorded. */
static int get_int(const dsq_json_ctx *c, const cJSON *obj, const char *key, int required, int def, int lo, int hi,
                   int *out) {
    int64_t v;
    int rc = dsq_json_field_int(c, obj, key, required ? DSQ_JSON_REQUIRED : 0, def, lo, hi, &v);
    *out = (int)v;
    return rc == DSQ_OK;
}
static int get_num(const dsq_json_ctx *c, const cJSON *obj, const char *key, int required, double def, double lo,
                   double hi, double *out) {
    return dsq_json_field_num(c, obj, key, required ? DSQ_JSON_REQUIRED : 0, def, lo, hi, out) == DSQ_OK;
}
static int get_bool(const dsq_json_ctx *c, const cJSON *obj, const char *key, int def, int *out) {
    return dsq_json_field_bool(c, obj, key, 0, def, out) == DSQ_OK;
}

int dsq_config_parse(dsq_config *cfg, const char *json, size_t len, const char *what,
                     dsq_err *err) {
    memset(cfg, 0, sizeof *cfg);
    long at;
    cJSON *root = dsq_json_parse(json, len, &at);
    if (!root) return dsq_fail(err, DSQ_E_CONFIG, "%s: invalid JSON near byte %ld (%s)", what, at, dsq_json_why());
    const dsq_json_ctx jc = {what, err, DSQ_E_CONFIG}, *c = &jc;
    int rc = DSQ_E_CONFIG, ok = 1;
    if (!cJSON_IsObject(root)) {
        dsq_fail(err, DSQ_E_CONFIG, "%s: top level is not a JSON object", what);
        goto fail;
    }
    const char *mt = dsq_json_str(dsq_json_get(root, "model_type"));
    if (!mt) {
        dsq_fail(err, DSQ_E_CONFIG, "%s: missing key 'model_type'", what);
        goto fail;
    }
    /* kimi_k2 (Kimi-K2, K2-Thinking) is DeepSeek-V3's architecture and
     * modeling code under its own name */
    if (strcmp(mt, "deepseek_v32") && strcmp(mt, "deepseek_v3") && strcmp(mt, "kimi_k2")) {
        dsq_fail(err, DSQ_E_UNSUPPORTED,
                 "%s: model_type '%.40s' is not one dsq reads (deepseek_v3, deepseek_v32, kimi_k2)", what, mt);
        rc = DSQ_E_UNSUPPORTED;
        goto fail;
    }
    snprintf(cfg->model_type, sizeof cfg->model_type, "%s", mt);
    cfg->has_indexer = !strcmp(mt, "deepseek_v32");

    ok = ok && get_int(c, root, "vocab_size", 1, 0, 1, MAX_DIM, &cfg->vocab_size);
    ok = ok && get_int(c, root, "hidden_size", 1, 0, 1, MAX_DIM, &cfg->hidden_size);
    ok = ok && get_int(c, root, "intermediate_size", 1, 0, 1, MAX_DIM, &cfg->intermediate_size);
    ok = ok && get_int(c, root, "moe_intermediate_size", 1, 0, 1, MAX_DIM, &cfg->moe_intermediate_size);
    ok = ok && get_int(c, root, "num_hidden_layers", 1, 0, 1, 4096, &cfg->n_layers);
    ok = ok && get_int(c, root, "num_nextn_predict_layers", 0, 0, 0, 64, &cfg->n_mtp_layers);
    ok = ok && get_int(c, root, "first_k_dense_replace", 1, 0, 0, 4096, &cfg->first_k_dense);
    ok = ok && get_int(c, root, "moe_layer_freq", 0, 1, 1, 1, &cfg->moe_layer_freq);
    ok = ok && get_int(c, root, "num_attention_heads", 1, 0, 1, 65536, &cfg->n_heads);
    ok = ok && get_int(c, root, "q_lora_rank", 1, 0, 1, MAX_DIM, &cfg->q_lora_rank);
    ok = ok && get_int(c, root, "kv_lora_rank", 1, 0, 1, MAX_DIM, &cfg->kv_lora_rank);
    ok = ok && get_int(c, root, "qk_nope_head_dim", 1, 0, 1, 65536, &cfg->qk_nope_head_dim);
    ok = ok && get_int(c, root, "qk_rope_head_dim", 1, 0, 2, 65536, &cfg->qk_rope_head_dim);
    ok = ok && get_int(c, root, "v_head_dim", 1, 0, 1, 65536, &cfg->v_head_dim);
    ok = ok && get_int(c, root, "n_routed_experts", 1, 0, 1, 65536, &cfg->n_routed_experts);
    ok = ok && get_int(c, root, "n_shared_experts", 1, 0, 0, 64, &cfg->n_shared_experts);
    ok = ok && get_int(c, root, "num_experts_per_tok", 1, 0, 1, 65536, &cfg->n_experts_per_tok);
    ok = ok && get_int(c, root, "n_group", 0, 1, 1, 65536, &cfg->n_group);
    ok = ok && get_int(c, root, "topk_group", 0, 1, 1, 65536, &cfg->topk_group);
    ok = ok && get_bool(c, root, "norm_topk_prob", 0, &cfg->norm_topk_prob);
    ok = ok && get_num(c, root, "routed_scaling_factor", 0, 1.0, 0, 1e6, &cfg->routed_scaling_factor);
    ok = ok && get_num(c, root, "rms_norm_eps", 0, 1e-6, 0, 1, &cfg->rms_norm_eps);
    ok = ok && get_num(c, root, "rope_theta", 0, 10000.0, 1, 1e12, &cfg->rope_theta);
    ok = ok && get_int(c, root, "max_position_embeddings", 0, 4096, 1, 1 << 30, &cfg->max_position_embeddings);
    ok = ok && get_int(c, root, "bos_token_id", 0, 0, 0, MAX_DIM, &cfg->bos_token_id);
    ok = ok && get_int(c, root, "eos_token_id", 0, 1, 0, MAX_DIM, &cfg->eos_token_id);
    ok = ok && get_bool(c, root, "rope_interleave", 1, &cfg->rope_interleave);
    ok = ok && get_bool(c, root, "indexer_rope_interleave", 0, &cfg->indexer_rope_interleave);
    if (ok && cfg->has_indexer) {
        ok = ok && get_int(c, root, "index_n_heads", 1, 0, 1, 65536, &cfg->index_n_heads);
        ok = ok && get_int(c, root, "index_head_dim", 1, 0, 1, 65536, &cfg->index_head_dim);
        ok = ok && get_int(c, root, "index_topk", 1, 0, 1, 1 << 30, &cfg->index_topk);
    }
    if (!ok) goto fail;

    const cJSON *rs = dsq_json_get(root, "rope_scaling");
    if (!dsq_json_absent(rs)) {
        if (!cJSON_IsObject(rs)) {
            dsq_fail(err, DSQ_E_CONFIG, "%s: 'rope_scaling' must be an object or null", what);
            goto fail;
        }
        const cJSON *ty = dsq_json_get(rs, "type");
        if (!ty) ty = dsq_json_get(rs, "rope_type");
        if (!dsq_json_str(ty) || strcmp(ty->valuestring, "yarn")) {
            dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: rope_scaling.type must be \"yarn\"", what);
            rc = DSQ_E_UNSUPPORTED;
            goto fail;
        }
        ok = ok && get_num(c, rs, "factor", 1, 0, 1e-6, 1e6, &cfg->yarn_factor);
        ok = ok && get_int(c, rs, "original_max_position_embeddings", 1, 0, 1, 1 << 30,
                           &cfg->yarn_original_max_pos);
        ok = ok && get_num(c, rs, "beta_fast", 0, 32, 0, 1e6, &cfg->yarn_beta_fast);
        ok = ok && get_num(c, rs, "beta_slow", 0, 1, 0, 1e6, &cfg->yarn_beta_slow);
        ok = ok && get_num(c, rs, "mscale", 0, 1, 0, 1e6, &cfg->yarn_mscale);
        ok = ok && get_num(c, rs, "mscale_all_dim", 0, 1, 0, 1e6, &cfg->yarn_mscale_all_dim);
        if (!ok) goto fail;
        /* factor 1 leaves every frequency and the attention scale unchanged */
        cfg->has_yarn = cfg->yarn_factor > 1.0;
    }

    cfg->block_rows = cfg->block_cols = 128;
    const cJSON *qc = dsq_json_get(root, "quantization_config");
    if (!dsq_json_absent(qc)) {
        if (!cJSON_IsObject(qc)) {
            dsq_fail(err, DSQ_E_CONFIG, "%s: 'quantization_config' must be an object", what);
            goto fail;
        }
        const char *qm = dsq_json_key_str(qc, "quant_method", "");
        if (!strcmp(qm, "compressed-tensors")) {
            /* its groups belong to the tensors: formats/ctensors.c */
            cfg->ctensors = 1;
        } else if (strcmp(qm, "fp8")) {
            dsq_fail(err, DSQ_E_UNSUPPORTED,
                     "%s: quantization_config.quant_method \"%.40s\" is not supported (\"fp8\" or "
                     "\"compressed-tensors\")", what, qm);
            rc = DSQ_E_UNSUPPORTED;
            goto fail;
        }
    }
    if (cJSON_IsObject(qc) && !cfg->ctensors) {
        cfg->fp8 = 1;
        const cJSON *bs = dsq_json_get(qc, "weight_block_size");
        if (bs) {
            if (!cJSON_IsArray(bs) || cJSON_GetArraySize(bs) != 2) {
                dsq_fail(err, DSQ_E_CONFIG,
                         "%s: quantization_config.weight_block_size must be [rows, cols]", what);
                goto fail;
            }
            int64_t bsz[2];
            if (dsq_json_ints(bs, 1, 65536, bsz, 2) != 2) {
                dsq_fail(err, DSQ_E_CONFIG,
                         "%s: quantization_config.weight_block_size must hold two integers in [1, 65536]", what);
                goto fail;
            }
            cfg->block_rows = (int)bsz[0];
            cfg->block_cols = (int)bsz[1];
        }
        cfg->scale_ue8m0 = !strcmp(dsq_json_key_str(qc, "scale_fmt", ""), "ue8m0");
    }

    /* cross-field consistency */
    if (cfg->n_routed_experts % cfg->n_group) {
        dsq_fail(err, DSQ_E_CONFIG, "%s: n_routed_experts (%d) is not a multiple of n_group (%d)",
                 what, cfg->n_routed_experts, cfg->n_group);
        goto fail;
    }
    if (cfg->topk_group > cfg->n_group) {
        dsq_fail(err, DSQ_E_CONFIG, "%s: topk_group (%d) exceeds n_group (%d)", what,
                 cfg->topk_group, cfg->n_group);
        goto fail;
    }
    if (cfg->n_experts_per_tok > cfg->topk_group * (cfg->n_routed_experts / cfg->n_group)) {
        dsq_fail(err, DSQ_E_CONFIG,
                 "%s: num_experts_per_tok (%d) exceeds the experts in topk_group groups", what,
                 cfg->n_experts_per_tok);
        goto fail;
    }
    if (cfg->qk_rope_head_dim % 2) {
        dsq_fail(err, DSQ_E_CONFIG, "%s: qk_rope_head_dim must be even", what);
        goto fail;
    }
    if (cfg->first_k_dense > cfg->n_layers) {
        dsq_fail(err, DSQ_E_CONFIG, "%s: first_k_dense_replace exceeds num_hidden_layers", what);
        goto fail;
    }
    if (cfg->has_indexer && (cfg->index_head_dim < cfg->qk_rope_head_dim)) {
        dsq_fail(err, DSQ_E_CONFIG, "%s: index_head_dim (%d) is smaller than qk_rope_head_dim (%d)",
                 what, cfg->index_head_dim, cfg->qk_rope_head_dim);
        goto fail;
    }
    cJSON_Delete(root);
    return DSQ_OK;
fail:
    cJSON_Delete(root);
    return rc;
}

/* HF DeepseekV3DecoderLayer: the MoE FFN from first_k_dense_replace on,
 * every moe_layer_freq-th layer.  The parser accepts moe_layer_freq 1 only
 * and n_routed_experts >= 1; the other cases are for configurations built
 * in code (moe_layer_freq 0 and 1 both mean every layer). */
int dsq_config_is_moe_layer(const dsq_config *cfg, int layer) {
    if (cfg->n_routed_experts <= 0 || layer < cfg->first_k_dense) return 0;
    return cfg->moe_layer_freq <= 1 || layer % cfg->moe_layer_freq == 0;
}

int dsq_config_role_shape(const dsq_config *c, dsq_role r, int layer, int64_t s[4]) {
    int64_t D = c->hidden_size, H = c->n_heads, dqk = c->qk_nope_head_dim + c->qk_rope_head_dim;
    int64_t Fe = c->moe_intermediate_size, Fs = (int64_t)c->n_shared_experts * Fe;
    (void)layer;
#define S1(a) (s[0] = (a), 1)
#define S2(a, b) (s[0] = (a), s[1] = (b), 2)
    switch (r) {
    case DSQ_R_EMBED: case DSQ_R_HEAD: case DSQ_R_MTP_EMBED: case DSQ_R_MTP_HEAD:
        return S2(c->vocab_size, D);
    case DSQ_R_FINAL_NORM: case DSQ_R_INPUT_NORM: case DSQ_R_POST_ATTN_NORM:
    case DSQ_R_MTP_ENORM: case DSQ_R_MTP_HNORM: case DSQ_R_MTP_HEAD_NORM:
        return S1(D);
    case DSQ_R_ATTN_Q_A: return S2(c->q_lora_rank, D);
    case DSQ_R_ATTN_Q_A_NORM: return S1(c->q_lora_rank);
    case DSQ_R_ATTN_Q_B: return S2(H * dqk, c->q_lora_rank);
    case DSQ_R_ATTN_KV_A: return S2(c->kv_lora_rank + c->qk_rope_head_dim, D);
    case DSQ_R_ATTN_KV_A_NORM: return S1(c->kv_lora_rank);
    case DSQ_R_ATTN_KV_B: return S2(H * (c->qk_nope_head_dim + c->v_head_dim), c->kv_lora_rank);
    case DSQ_R_ATTN_O: return S2(D, H * c->v_head_dim);
    case DSQ_R_IDX_WQ_B: return S2((int64_t)c->index_n_heads * c->index_head_dim, c->q_lora_rank);
    case DSQ_R_IDX_WK: return S2(c->index_head_dim, D);
    case DSQ_R_IDX_K_NORM: case DSQ_R_IDX_K_NORM_BIAS: return S1(c->index_head_dim);
    case DSQ_R_IDX_WEIGHTS_PROJ: return S2(c->index_n_heads, D);
    case DSQ_R_DENSE_GATE: case DSQ_R_DENSE_UP: return S2(c->intermediate_size, D);
    case DSQ_R_DENSE_DOWN: return S2(D, c->intermediate_size);
    case DSQ_R_ROUTER: return S2(c->n_routed_experts, D);
    case DSQ_R_ROUTER_BIAS: return S1(c->n_routed_experts);
    case DSQ_R_SHEXP_GATE: case DSQ_R_SHEXP_UP: return S2(Fs, D);
    case DSQ_R_SHEXP_DOWN: return S2(D, Fs);
    case DSQ_R_EXP_GATE: case DSQ_R_EXP_UP: return S2(Fe, D);
    case DSQ_R_EXP_DOWN: return S2(D, Fe);
    case DSQ_R_MTP_EH_PROJ: return S2(D, 2 * D);
    default: return 0;
    }
#undef S1
#undef S2
}

/* ---- config.json text of a configuration ------------------------------ */
char *dsq_config_to_json(const dsq_config *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON *ar = cJSON_AddArrayToObject(o, "architectures");
    cJSON_AddItemToArray(ar, cJSON_CreateString(c->has_indexer ? "DeepseekV32ForCausalLM" : "DeepseekV3ForCausalLM"));
    cJSON_AddStringToObject(o, "model_type", c->model_type);
#define I(k, v) cJSON_AddNumberToObject(o, k, (double)(v))
    I("vocab_size", c->vocab_size); I("hidden_size", c->hidden_size);
    I("intermediate_size", c->intermediate_size); I("moe_intermediate_size", c->moe_intermediate_size);
    I("num_hidden_layers", c->n_layers); I("num_nextn_predict_layers", c->n_mtp_layers);
    I("first_k_dense_replace", c->first_k_dense); I("moe_layer_freq", 1);
    I("num_attention_heads", c->n_heads); I("num_key_value_heads", c->n_heads);
    I("q_lora_rank", c->q_lora_rank); I("kv_lora_rank", c->kv_lora_rank);
    I("qk_nope_head_dim", c->qk_nope_head_dim); I("qk_rope_head_dim", c->qk_rope_head_dim);
    I("v_head_dim", c->v_head_dim); I("n_routed_experts", c->n_routed_experts);
    I("n_shared_experts", c->n_shared_experts); I("num_experts_per_tok", c->n_experts_per_tok);
    I("n_group", c->n_group); I("topk_group", c->topk_group);
    cJSON_AddStringToObject(o, "topk_method", "noaux_tc");
    cJSON_AddStringToObject(o, "scoring_func", "sigmoid");
    cJSON_AddBoolToObject(o, "norm_topk_prob", c->norm_topk_prob);
    I("routed_scaling_factor", c->routed_scaling_factor);
    if (c->has_indexer) {
        I("index_n_heads", c->index_n_heads); I("index_head_dim", c->index_head_dim);
        I("index_topk", c->index_topk);
    }
    I("rms_norm_eps", c->rms_norm_eps); I("rope_theta", c->rope_theta);
    if (c->has_yarn) {
        cJSON *rs = cJSON_AddObjectToObject(o, "rope_scaling");
        cJSON_AddStringToObject(rs, "type", "yarn");
        cJSON_AddNumberToObject(rs, "factor", c->yarn_factor);
        cJSON_AddNumberToObject(rs, "original_max_position_embeddings", c->yarn_original_max_pos);
        cJSON_AddNumberToObject(rs, "beta_fast", c->yarn_beta_fast);
        cJSON_AddNumberToObject(rs, "beta_slow", c->yarn_beta_slow);
        cJSON_AddNumberToObject(rs, "mscale", c->yarn_mscale);
        cJSON_AddNumberToObject(rs, "mscale_all_dim", c->yarn_mscale_all_dim);
    }
    I("max_position_embeddings", c->max_position_embeddings);
    cJSON_AddStringToObject(o, "hidden_act", "silu");
    cJSON_AddBoolToObject(o, "attention_bias", 0);
    cJSON_AddBoolToObject(o, "tie_word_embeddings", 0);
    if (c->bos_token_id >= 0) I("bos_token_id", c->bos_token_id);
    if (c->eos_token_id >= 0) I("eos_token_id", c->eos_token_id);
    if (c->fp8) {
        cJSON *q = cJSON_AddObjectToObject(o, "quantization_config");
        cJSON_AddStringToObject(q, "quant_method", "fp8");
        cJSON_AddStringToObject(q, "fmt", "e4m3");
        cJSON *bs = cJSON_AddArrayToObject(q, "weight_block_size");
        cJSON_AddItemToArray(bs, cJSON_CreateNumber(c->block_rows));
        cJSON_AddItemToArray(bs, cJSON_CreateNumber(c->block_cols));
        cJSON_AddStringToObject(q, "activation_scheme", "dynamic");
        cJSON_AddStringToObject(q, "scale_fmt", "ue8m0");
    }
    cJSON_AddStringToObject(o, "torch_dtype", "bfloat16");
#undef I
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}
