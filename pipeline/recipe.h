/*
 * recipe.h -- which storage scheme each tensor gets: a JSON recipe of rules
 * (roles, name patterns, layer ranges -> scheme and method) or a built-in
 * preset.  See docs/RECIPES.md.
 */
#ifndef DSQ_RECIPE_H
#define DSQ_RECIPE_H

#include "dsq.h"

#define DSQ_RECIPE_MAX_RULES 64

typedef struct dsq_rule {
    unsigned long long roles;  /* bit per dsq_role; 0 = any role */
    char match[256];           /* fnmatch pattern on the tensor name, "" = any */
    int layer_lo, layer_hi;    /* inclusive; -1/-1 = any */
    int scheme;                /* dsq_qtype, or -1 for "keep as stored" */
    int fallback;              /* ggml scheme when `scheme`'s block does not divide the rows
                                  (-1: dsq_ggml_fallback's, llama.cpp's) */
    int clip_steps;            /* 0 = absmax, >= 2 = MSE clip search */
    float clip_min;
    char method[16];           /* "absmax"/"rtn", "mse", "gptq", "awq" */
    double damp;               /* gptq: Hessian damping relative to its mean diagonal */
    int act_order;             /* gptq: columns by decreasing Hessian diagonal */
    int refine;                /* gptq: rounds of code / scale refinement after the pass */
    double ref_target;         /* gptq: 0..1, how far the target moves toward reproducing the
                                  reference model's outputs from quantized inputs (0: off) */
    int grid;                  /* awq: exponents tried in [0, 1] */
} dsq_rule;

/* Does the rule's method need calibration statistics (dsq quant --calib)? */
int dsq_rule_needs_calib(const dsq_rule *u);

typedef struct dsq_recipe {
    char name[64];
    dsq_rule rules[DSQ_RECIPE_MAX_RULES];
    int n_rules;
    int default_scheme;        /* for projections no rule matches; -1 keep */
    char *json;                /* the recipe as given (malloc'd), for provenance */
} dsq_recipe;

/* Built-in presets: "lossless" (every tensor as stored), "fp8", "int4-experts",
 * "int4", "int8", and llm-compressor's "w4a16" (int4 g128 symmetric),
 * "w4a16-g32", "w4a16-asym", "w8a16" (int8-channel-bf16), "fp8-block".
 * DSQ_E_ARG for an unknown name. */
int dsq_recipe_preset(dsq_recipe *r, const char *name, dsq_err *err);
/* The calibrated form of a built-in preset (what `--calib` turns on):
 * fp8 (routed experts' scales searched against the activations), int4-experts
 * and int4 (GPTQ with the settings of docs/CALIB.md), int8 (GPTQ);
 * DSQ_E_ARG for lossless, which has nothing to calibrate. */
int dsq_recipe_preset_calibrated(dsq_recipe *r, const char *name, dsq_err *err);
/* Does any rule use calibration statistics (a method other than absmax)? */
int dsq_recipe_uses_calib(const dsq_recipe *r);
/* Parse a recipe file (JSON).  Unknown roles, schemes or keys are errors. */
int dsq_recipe_load(dsq_recipe *r, const char *path, dsq_err *err);
int dsq_recipe_parse(dsq_recipe *r, const char *json, size_t len, const char *what, dsq_err *err);
void dsq_recipe_deinit(dsq_recipe *r);

/* The rule for one tensor, or NULL when none matches (the caller then
 * applies the defaults: embed/head bf16, norms/router f32, projections
 * default_scheme or as stored). */
const dsq_rule *dsq_recipe_match(const dsq_recipe *r, const char *name, dsq_role role, int layer);

/* Is the role one of the projection matrices a preset's "default" scheme
 * applies to?  The indexer's weights_proj and the MTP eh_proj are linear
 * weights too, but upstream keeps them BF16 (their outputs are not FP8
 * GEMMs), so presets leave them as stored unless a rule names them. */
int dsq_role_is_projection(dsq_role role);

/* The recipe of a GGUF export at one ggml type ("f32", "f16", "bf16",
 * "q8_0", ...): the tensors llama.cpp needs in f32 stay f32. */
int dsq_recipe_gguf(dsq_recipe *r, const char *type, dsq_err *err);

/* DeepSeek's FP8 release format (dsq export --to hf): every projection
 * fp8-block-ue8m0 (E4M3, power-of-two 128x128 block scales; an FP8 source
 * whose scales are powers of two is transcoded, not re-rounded), the rest
 * as stored. */
int dsq_recipe_hf_fp8(dsq_recipe *r, dsq_err *err);

/* GGUF presets named after llama.cpp's file types (q8_0, q6_k, q5_k_m,
 * q4_k_m, q4_0, iq4_xs, iq4_nl, q3_k_m, q2_k): llama.cpp's per-tensor policy
 * for these architectures (docs/RECIPES.md), which depends on the number of
 * layers and tensor shapes (src): dsq's variant of that policy, within the
 * bytes llama.cpp's gives the same tensors.  method: NULL or "" for the uncalibrated preset, else the
 * calibrated method every quantized tensor gets ("gptq", "mse").
 * dsq_recipe_gguf_presets: their names, for help texts. */
int dsq_recipe_is_gguf_preset(const char *name);
const char *dsq_recipe_gguf_presets(void);
struct dsq_src;
int dsq_recipe_gguf_preset(dsq_recipe *r, const char *name, const struct dsq_src *src, const char *method, dsq_err *err);

#endif
