/*
 * cmd_gen_tiny.c -- `dsq gen-tiny OUT_DIR`: write a synthetic checkpoint in
 * the exact upstream layout (see synth/gen.h).
 */
#include "convert/cli.h"
#include "synth/gen.h"
#include "formats/writer.h"
#include "pipeline/pipeline.h"
#include "formats/formats_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Kimi-K2-Thinking's release: the routed experts INT4 (compressed-tensors
 * pack-quantized, symmetric, groups of 32, BF16 scales), the rest BF16. */
static const char g_kimi_recipe[] =
    "{\"name\":\"kimi-k2-int4\",\"default\":\"keep\",\"rules\":["
    "{\"roles\":[\"routed_experts\"],\"scheme\":\"int4-g32-sym\"},"
    "{\"roles\":[\"embed\",\"head\",\"final_norm\",\"input_norm\",\"post_attn_norm\",\"attn.q_a_norm\","
    "\"attn.kv_a_norm\",\"router\",\"router.bias\",\"mtp.*\"],\"scheme\":\"keep\"}]}";

/* The BF16 model generated beside out, then written to out in Kimi-K2's INT4 layout. */
static int gen_kimi(const char *out, const dsq_gen_opts *o, dsq_err *err) {
    char tmp[4096];
    size_t n = strlen(out);
    while (n > 1 && out[n - 1] == '/') n--;
    snprintf(tmp, sizeof tmp, "%.*s.bf16.XXXXXX", (int)n, out);
    if (!mkdtemp(tmp)) return dsq_fail(err, DSQ_E_IO, "%s: cannot create a temporary folder", tmp);
    dsq_gen_opts g = *o;
    g.force = 1;
    int rc = dsq_gen_ckpt(tmp, &g, err);
    dsq_recipe r;
    if (!rc) rc = dsq_recipe_parse(&r, g_kimi_recipe, sizeof g_kimi_recipe - 1, "kimi-k2", err);
    if (!rc) {
        dsq_pipe_opts po = {0};
        po.src = tmp;
        po.out = out;
        po.out_format = DSQ_OUT_CT;
        po.recipe = &r;
        po.force = o->force;
        dsq_pipe_report rep;
        rc = dsq_pipeline_run(&po, &rep, err);
        if (!rc) dsq_pipe_report_free(&rep);
        dsq_recipe_deinit(&r);
    }
    dsq_afile_remove_dir(tmp);
    return rc;
}

static int usage(FILE *to) {
    FILE *f = cli_usage_begin(to);
    fprintf(f, "usage: dsq gen-tiny OUT_DIR [--preset P] [--bf16] [--shards N]\n"
               "                    [--no-mtp] [--seed N] [--tokenizer DIR] [--force]\n\n"
               "Write a synthetic DeepSeek-V3.2 checkpoint (config.json, index, safetensors shards;\n"
               "FP8 E4M3 with 128x128 power-of-two block scales unless --bf16).\n\n"
               "  --preset P       tiny (default: the spec's test shape, with 1 MTP layer),\n"
               "                   tiny-nomtp, tiny-v3 (model_type deepseek_v3: no indexer),\n"
               "                   tiny-kimi-k2 (kimi_k2: routed experts INT4 as Kimi-K2-Thinking ships\n"
               "                   them, compressed-tensors pack-quantized groups of 32, the rest BF16),\n"
               "                   bench-1b (hidden 1024, 8 layers, 64 experts; ~1 GB)\n"
               "  --shards N       number of shards (default 3)\n"
               "  --no-mtp         leave the MTP layer out (config still declares it)\n"
               "  --tokenizer DIR  copy tokenizer.json and tokenizer_config.json from DIR\n"
               "  --force          write into a non-empty folder\n");
    return cli_usage_end(to, f);
}

int cmd_gen_tiny(int argc, char **argv) {
    const char *out = NULL, *preset = "tiny";
    dsq_gen_opts o = {0};
    int bf16 = 0;
    o.n_shards = 3;
    o.with_mtp = 1;
    o.seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is(a, "--help") || cli_is(a, "-h")) return usage(stdout);
        else if (cli_is(a, "--bf16")) bf16 = 1;
        else if (cli_is(a, "--no-mtp")) o.with_mtp = 0;
        else if (cli_is(a, "--force")) o.force = 1;
        else if (cli_is(a, "--preset") && i + 1 < argc) preset = argv[++i];
        else if (cli_is(a, "--shards") && i + 1 < argc) o.n_shards = atoi(argv[++i]);
        else if (cli_is(a, "--seed") && i + 1 < argc) o.seed = strtoull(argv[++i], NULL, 10);
        else if (cli_is(a, "--tokenizer") && i + 1 < argc) o.tokenizer_dir = argv[++i];
        else if (a[0] == '-') {
            fprintf(stderr, "dsq gen-tiny: unknown option '%s'\n", a);
            return usage(stderr);
        } else if (!out) out = a;
        else return usage(stderr);
    }
    if (!out) return usage(stderr);
    if (o.n_shards < 1 || o.n_shards > 64) {
        fprintf(stderr, "dsq gen-tiny: --shards must be in [1, 64]\n");
        return 2;
    }
    if (dsq_gen_preset(&o.cfg, preset)) {
        fprintf(stderr, "dsq gen-tiny: unknown preset '%s'\n", preset);
        return 2;
    }
    if (bf16) o.cfg.fp8 = 0;
    dsq_err err = {0};
    int kimi = !strcmp(preset, "tiny-kimi-k2");
    if (kimi && bf16) {
        fprintf(stderr, "dsq gen-tiny: tiny-kimi-k2 is INT4 experts by definition (for BF16 use tiny-v3)\n");
        return 2;
    }
    if (kimi ? gen_kimi(out, &o, &err) : dsq_gen_ckpt(out, &o, &err)) return cli_err("gen-tiny", &err);
    fprintf(stderr, "wrote %s (%s, %s)\n", out, preset, kimi ? "int4 experts, compressed-tensors" : o.cfg.fp8 ? "fp8" : "bf16");
    return 0;
}
