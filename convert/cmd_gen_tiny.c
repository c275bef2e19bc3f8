/*
 * cmd_gen_tiny.c -- `dsq gen-tiny OUT_DIR`: write a synthetic checkpoint in
 * the exact upstream layout (see synth/gen.h).
 */
#include "convert/cli.h"
#include "synth/gen.h"

#include <stdio.h>
#include <stdlib.h>

static int usage(FILE *to) {
    FILE *f = cli_usage_begin(to);
    fprintf(f, "usage: dsq gen-tiny OUT_DIR [--preset tiny|tiny-nomtp|bench-1b] [--bf16] [--shards N]\n"
               "                    [--no-mtp] [--seed N] [--tokenizer DIR] [--force]\n\n"
               "Write a synthetic DeepSeek-V3.2 checkpoint (config.json, index, safetensors shards;\n"
               "FP8 E4M3 with 128x128 power-of-two block scales unless --bf16).\n\n"
               "  --preset P       tiny (default: the spec's test shape, with 1 MTP layer),\n"
               "                   tiny-nomtp, bench-1b (hidden 1024, 8 layers, 64 experts; ~1 GB)\n"
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
    if (dsq_gen_ckpt(out, &o, &err)) return cli_err("gen-tiny", &err);
    fprintf(stderr, "wrote %s (%s, %s)\n", out, preset, o.cfg.fp8 ? "fp8" : "bf16");
    return 0;
}
