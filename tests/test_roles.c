/*
 * test_roles.c -- the tensor names built from roles (formats/roles.c)
 * against names spelled out from spec section 2, every name read back by
 * dsq_classify, and the dense/MoE layer rule of dsq_config_is_moe_layer.
 */
#include "test.h"
#include "pipeline/recipe.h"
#include "dsq.h"

/* A few names written out by hand from the spec's tables: the builders
 * must spell them exactly so. */
TEST(test_roles_names_as_spec) {
    char nm[256];
    CHECK(dsq_layer_weight_name(nm, sizeof nm, 3, -1, DSQ_R_ATTN_KV_A) == 0);
    CHECK(!strcmp(nm, "model.layers.3.self_attn.kv_a_proj_with_mqa.weight"));
    CHECK(dsq_layer_weight_name(nm, sizeof nm, 0, 9, DSQ_R_IDX_K_NORM_BIAS) == 0);
    CHECK(!strcmp(nm, "model.layers.0.self_attn.indexer.k_norm.bias"));
    CHECK(dsq_layer_weight_name(nm, sizeof nm, 12, -1, DSQ_R_ROUTER_BIAS) == 0);
    CHECK(!strcmp(nm, "model.layers.12.mlp.gate.e_score_correction_bias"));
    CHECK(dsq_layer_weight_name(nm, sizeof nm, 60, -1, DSQ_R_SHEXP_DOWN) == 0);
    CHECK(!strcmp(nm, "model.layers.60.mlp.shared_experts.down_proj.weight"));
    CHECK(dsq_layer_weight_name(nm, sizeof nm, 4, 255, DSQ_R_EXP_UP) == 0);
    CHECK(!strcmp(nm, "model.layers.4.mlp.experts.255.up_proj.weight"));
    CHECK(dsq_layer_weight_name(nm, sizeof nm, 4, -1, DSQ_R_EXP_DOWN) == 0);
    CHECK(!strcmp(nm, "model.layers.4.mlp.experts.down_proj.weight"));
    CHECK(dsq_layer_weight_name(nm, sizeof nm, 61, -1, DSQ_R_MTP_EH_PROJ) == 0);
    CHECK(!strcmp(nm, "model.layers.61.eh_proj.weight"));
    CHECK(dsq_layer_weight_name(nm, sizeof nm, 61, -1, DSQ_R_MTP_HEAD) == 0);
    CHECK(!strcmp(nm, "model.layers.61.shared_head.head.weight"));
    CHECK(!strcmp(dsq_top_weight_name(DSQ_R_EMBED), "model.embed_tokens.weight"));
    CHECK(!strcmp(dsq_top_weight_name(DSQ_R_FINAL_NORM), "model.norm.weight"));
    CHECK(!strcmp(dsq_top_weight_name(DSQ_R_HEAD), "lm_head.weight"));
    dsq_scale_name(nm, sizeof nm, "model.layers.0.self_attn.o_proj.weight");
    CHECK(!strcmp(nm, "model.layers.0.self_attn.o_proj.weight_scale_inv"));
    /* roles without a name of that kind say so */
    CHECK(dsq_layer_weight_name(nm, sizeof nm, 0, -1, DSQ_R_HEAD) == -1);
    CHECK(dsq_layer_weight_name(nm, sizeof nm, 0, -1, DSQ_R_SCALE) == -1);
    CHECK(dsq_top_weight_name(DSQ_R_ATTN_O) == NULL);
}

/* Every role's name classifies back to that role, layer and expert. */
TEST(test_roles_names_classify_back) {
    char nm[256], sc[300];
    int n_layer = 0;
    for (int r = 1; r < DSQ_R_COUNT; r++) {
        int l, e;
        const char *top = dsq_top_weight_name((dsq_role)r);
        if (top) {
            CHECKF((int)dsq_classify(top, &l, &e) == r && l == -1 && e == -1, "%s", top);
            CHECK(dsq_layer_weight_name(nm, sizeof nm, 0, -1, (dsq_role)r) == -1);
            continue;
        }
        if (dsq_layer_weight_name(nm, sizeof nm, 7, 5, (dsq_role)r)) {
            CHECKF(r == DSQ_R_SCALE, "role %s has no name", dsq_role_name((dsq_role)r));
            continue;
        }
        n_layer++;
        int routed = dsq_role_class((dsq_role)r) == DSQ_C_ROUTED;
        CHECKF((int)dsq_classify(nm, &l, &e) == r && l == 7 && e == (routed ? 5 : -1), "%s", nm);
        dsq_scale_name(sc, sizeof sc, nm);
        CHECKF(dsq_classify(sc, &l, &e) == DSQ_R_SCALE && l == 7 && e == (routed ? 5 : -1), "%s", sc);
    }
    /* every role but UNKNOWN, the 3 top-level ones and SCALE */
    CHECKF(n_layer == DSQ_R_COUNT - 1 - 3 - 1, "%d per-layer roles", n_layer);
}

static int count_name(void *arg, const char *name) {
    int l, e;
    if (dsq_classify(name, &l, &e) == DSQ_R_UNKNOWN) return -1;
    ++*(int *)arg;
    return 0;
}

/* The layer rule, and the expected tensors following it (counts of spec
 * sections 2.3 to 2.6 for the 671B configuration). */
TEST(test_roles_moe_layer_rule) {
    dsq_config c;
    memset(&c, 0, sizeof c);
    c.n_layers = 61;
    c.first_k_dense = 3;
    c.moe_layer_freq = 1;
    c.n_routed_experts = 256;
    c.n_shared_experts = 1;
    c.has_indexer = 1;
    for (int l = 0; l < 62; l++) CHECKF(dsq_config_is_moe_layer(&c, l) == (l >= 3), "layer %d", l);
    int n = 0;
    CHECK(dsq_layer_tensor_names(&c, -1, count_name, &n) == 0 && n == 3);
    n = 0;
    CHECK(dsq_layer_tensor_names(&c, 0, count_name, &n) == 0);
    CHECKF(n == 14 + 3, "dense layer: %d weights", n);
    n = 0;
    CHECK(dsq_layer_tensor_names(&c, 3, count_name, &n) == 0);
    CHECKF(n == 14 + 2 + 3 * 256 + 3, "MoE layer: %d weights", n);
    n = 0;
    CHECK(dsq_layer_tensor_names(&c, 61, count_name, &n) == 0);
    CHECKF(n == 14 + 2 + 3 * 256 + 3 + 6, "MTP layer: %d weights", n);
    /* moe_layer_freq 0 means every layer, as 1 does; 2 every other one */
    c.moe_layer_freq = 0;
    for (int l = 0; l < 61; l++) CHECK(dsq_config_is_moe_layer(&c, l) == (l >= 3));
    c.moe_layer_freq = 2;
    for (int l = 0; l < 61; l++) CHECKF(dsq_config_is_moe_layer(&c, l) == (l >= 3 && l % 2 == 0), "layer %d", l);
    /* no routed experts: every layer is dense */
    c.moe_layer_freq = 1;
    c.n_routed_experts = 0;
    for (int l = 0; l < 61; l++) CHECK(!dsq_config_is_moe_layer(&c, l));
}

/* Recipe rules that would silently match more than they say are refused,
 * naming the rule: an empty "roles" list, layer bounds that are not
 * integers.  The same rules written properly load. */
TEST(test_recipe_rules_strict) {
    const char *bad[] = {
        "{\"default\": \"bf16\", \"rules\": [{\"roles\": [], \"scheme\": \"int4-g128-sym\"}]}",
        "{\"default\": \"bf16\", \"rules\": [{\"roles\": [\"attn.*\"], \"layers\": [0.5, 2], \"scheme\": \"bf16\"}]}",
        "{\"default\": \"bf16\", \"rules\": [{\"roles\": [\"attn.*\"], \"layers\": [0, 2.25], \"scheme\": \"bf16\"}]}",
    };
    const char *why[] = {"\"roles\" is empty", "\"layers\" must be", "\"layers\" must be"};
    for (int i = 0; i < 3; i++) {
        dsq_recipe r;
        dsq_err err = {0};
        int rc = dsq_recipe_parse(&r, bad[i], strlen(bad[i]), "r.json", &err);
        CHECKF(rc != 0 && strstr(err.msg, "r.json: rule 0: ") && strstr(err.msg, why[i]), "%d: rc %d '%s'", i, rc,
               err.msg);
        if (!rc) dsq_recipe_deinit(&r);
    }
    const char *good = "{\"default\": \"bf16\", \"rules\": [{\"roles\": [\"attn.*\"], \"layers\": [0, 2], \"scheme\": "
                       "\"bf16\"}, {\"scheme\": \"int4-g128-sym\"}]}";
    dsq_recipe r;
    dsq_err err = {0};
    CHECKF(dsq_recipe_parse(&r, good, strlen(good), "r.json", &err) == 0, "%s", err.msg);
    dsq_recipe_deinit(&r);
}
