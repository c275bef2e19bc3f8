/*
 * recipe.c -- fuzz target: recipe JSON (dsq_recipe_parse in
 * pipeline/recipe.c: roles, name patterns, layer ranges, schemes, methods).
 *
 * Input: the JSON text.  A recipe that parses must hold only valid fields
 * (scheme ids, clip settings, ordered layer ranges) and can be matched
 * against a few tensor names.
 */
#include "fuzz.h"
#include "pipeline/recipe.h"
#include "quant/quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct { const char *name; int layer; } g_names[] = {
    {"model.embed_tokens.weight", -1},
    {"model.layers.0.self_attn.q_a_proj.weight", 0},
    {"model.layers.1.mlp.experts.1.down_proj.weight", 1},
    {"model.layers.1.mlp.shared_experts.up_proj.weight", 1},
    {"model.layers.2.eh_proj.weight", 2},
    {"lm_head.weight", -1},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *json = malloc(size ? size : 1);
    if (!json) return 0;
    memcpy(json, data, size);
    dsq_recipe r;
    dsq_err err = {0};
    int rc = dsq_recipe_parse(&r, json, size, "fuzz/recipe.json", &err);
    free(json);
    if (rc != DSQ_OK) {
        FUZZ_CHECK(rc < 0 && err.msg[0]);
        return 0;
    }
    FUZZ_CHECK(r.json != NULL && strlen(r.json) <= size);
    FUZZ_CHECK(r.default_scheme >= -1 && r.default_scheme < DSQ_Q_COUNT);
    FUZZ_CHECK(r.n_rules >= 0 && r.n_rules <= DSQ_RECIPE_MAX_RULES);
    for (int i = 0; i < r.n_rules; i++) {
        const dsq_rule *u = &r.rules[i];
        FUZZ_CHECK(u->scheme >= -1 && u->scheme < DSQ_Q_COUNT);
        FUZZ_CHECK(u->clip_steps >= 0 && u->clip_steps <= 64);
        FUZZ_CHECK(u->clip_min >= 0 && u->clip_min < 1);
        FUZZ_CHECK((u->layer_lo < 0 && u->layer_hi < 0) || (u->layer_lo >= 0 && u->layer_hi >= u->layer_lo));
        FUZZ_CHECK(memchr(u->match, 0, sizeof u->match) && memchr(u->method, 0, sizeof u->method));
    }
    for (size_t k = 0; k < sizeof g_names / sizeof g_names[0]; k++) {
        int layer, expert;
        dsq_role role = dsq_classify(g_names[k].name, &layer, &expert);
        const dsq_rule *u = dsq_recipe_match(&r, g_names[k].name, role, g_names[k].layer);
        FUZZ_CHECK(!u || (u >= r.rules && u < r.rules + r.n_rules));
    }
    dsq_recipe_deinit(&r);
    return 0;
}
