/*
 * gguf_arch.c -- llama.cpp's tensor names for the DeepSeek architectures
 * (deepseek2, deepseek32; formats.md A.9.4), one table read both ways.
 */
#include "formats/gguf_arch.h"
#include "formats/writer.h"

#include <stdio.h>
#include <string.h>

/* GGUF name of a per-layer role ("attn_q_a.weight"), NULL if none. */
static const char *layer_suffix(dsq_role r, int part) {
    switch (r) {
    case DSQ_R_INPUT_NORM: return "attn_norm.weight";
    case DSQ_R_ATTN_Q_A: return "attn_q_a.weight";
    case DSQ_R_ATTN_Q_A_NORM: return "attn_q_a_norm.weight";
    case DSQ_R_ATTN_Q_B: return "attn_q_b.weight";
    case DSQ_R_ATTN_KV_A: return "attn_kv_a_mqa.weight";
    case DSQ_R_ATTN_KV_A_NORM: return "attn_kv_a_norm.weight";
    case DSQ_R_ATTN_KV_B: /* whole: the legacy layout, read only */
        return part == DSQ_PART_K_B ? "attn_k_b.weight" : part == DSQ_PART_V_B ? "attn_v_b.weight" : "attn_kv_b.weight";
    case DSQ_R_ATTN_O: return "attn_output.weight";
    case DSQ_R_POST_ATTN_NORM: return "ffn_norm.weight";
    case DSQ_R_IDX_WQ_B: return "indexer.attn_q_b.weight";
    case DSQ_R_IDX_WK: return "indexer.attn_k.weight";
    case DSQ_R_IDX_K_NORM: return "indexer.k_norm.weight";
    case DSQ_R_IDX_K_NORM_BIAS: return "indexer.k_norm.bias";
    case DSQ_R_IDX_WEIGHTS_PROJ: return "indexer.proj.weight";
    case DSQ_R_DENSE_GATE: return "ffn_gate.weight";
    case DSQ_R_DENSE_UP: return "ffn_up.weight";
    case DSQ_R_DENSE_DOWN: return "ffn_down.weight";
    case DSQ_R_ROUTER: return "ffn_gate_inp.weight";
    case DSQ_R_ROUTER_BIAS: return "exp_probs_b.bias";
    case DSQ_R_SHEXP_GATE: return "ffn_gate_shexp.weight";
    case DSQ_R_SHEXP_UP: return "ffn_up_shexp.weight";
    case DSQ_R_SHEXP_DOWN: return "ffn_down_shexp.weight";
    case DSQ_R_EXP_GATE: return "ffn_gate_exps.weight";
    case DSQ_R_EXP_UP: return "ffn_up_exps.weight";
    case DSQ_R_EXP_DOWN: return "ffn_down_exps.weight";
    case DSQ_R_MTP_EMBED: return "nextn.embed_tokens.weight";
    case DSQ_R_MTP_ENORM: return "nextn.enorm.weight";
    case DSQ_R_MTP_HNORM: return "nextn.hnorm.weight";
    case DSQ_R_MTP_EH_PROJ: return "nextn.eh_proj.weight";
    case DSQ_R_MTP_HEAD_NORM: return "nextn.shared_head_norm.weight";
    case DSQ_R_MTP_HEAD: return "nextn.shared_head_head.weight";
    default: return NULL;
    }
}

static const char *top_name(dsq_role r) {
    return r == DSQ_R_EMBED ? "token_embd.weight" : r == DSQ_R_FINAL_NORM ? "output_norm.weight"
         : r == DSQ_R_HEAD ? "output.weight" : NULL;
}

int dsq_gguf_tensor_name(dsq_role role, int layer, int part, char *out, size_t cap) {
    const char *top = top_name(role);
    if (top && layer < 0) return snprintf(out, cap, "%s", top) < (int)cap ? 0 : -1;
    const char *suf = layer_suffix(role, part);
    if (!suf || layer < 0) return -1;
    if ((role == DSQ_R_ATTN_KV_B) != (part != DSQ_PART_WHOLE)) return -1;
    return snprintf(out, cap, "blk.%d.%s", layer, suf) < (int)cap ? 0 : -1;
}

int dsq_gguf_parse_name(const char *name, dsq_role *role, int *layer, int *part) {
    *layer = -1;
    *part = DSQ_PART_WHOLE;
    for (int r = 0; r < DSQ_R_COUNT; r++)
        if (top_name((dsq_role)r) && !strcmp(name, top_name((dsq_role)r))) {
            *role = (dsq_role)r;
            return 0;
        }
    int l, n = 0;
    if (sscanf(name, "blk.%d.%n", &l, &n) != 1 || n == 0 || l < 0 || l > 1 << 20) return -1;
    for (int r = 0; r < DSQ_R_COUNT; r++)
        for (int pt = 0; pt < 3; pt++) {
            const char *suf = layer_suffix((dsq_role)r, pt);
            if (suf && !strcmp(name + n, suf)) {
                *role = (dsq_role)r;
                *layer = l;
                *part = pt;
                return 0;
            }
        }
    return -1;
}
