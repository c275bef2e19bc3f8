/*
 * cmd_export.c -- `dsq export SRC -o OUT.gguf [--type T]` or `-o DIR/ --to
 * compressed-tensors | hf`: any model dsq reads, written as files another
 * runtime serves (GGUF for llama.cpp; Hugging Face folders for vLLM and
 * SGLang).
 */
#include "convert/cli.h"
#include "common.h"
#include "pipeline/pipeline.h"
#include "formats/writer.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int usage(FILE *to) {
    FILE *f = cli_usage_begin(to);
    fprintf(f, "usage: dsq export SRC -o OUT.gguf [--type T] [--requantize] [--drop-mtp] [--threads N]\n"
               "       dsq export SRC -o DIR/ --to compressed-tensors|hf [--shard-size S] [...]\n"
               "                  [--force] [--quiet] [--json] [--verbose] [--report FILE]\n\n"
               "Write any model dsq reads (checkpoint folder or archive, .dsq container, GGUF) as files another\n"
               "runtime serves.  Streams tensor by tensor; OUT appears complete or not at all.  The report says\n"
               "how each tensor was stored and what re-rounding cost.\n\n"
               "GGUF (llama.cpp): architecture deepseek32 when the model has the lightning indexer, else\n"
               "deepseek2, in the MLA layout (kv_b_proj split into attn_k_b and attn_v_b); metadata from\n"
               "config.json, the tokenizer from tokenizer.json.  Norms, biases, the router and the\n"
               "indexer's weights_proj are stored f32, as llama.cpp requires; every other tensor at --type\n"
               "(default bf16), except those whose stored scheme GGUF holds exactly: ggml block types are\n"
               "copied bit for bit, int4 groups of 32 (symmetric) become Q4_0 without changing a value.  For\n"
               "llama.cpp's mixed file types see dsq quant --preset.\n\n"
               "compressed-tensors (vLLM, SGLang; llm-compressor's format): every tensor as stored where the\n"
               "format holds it (int4 groups with bf16 scales are pack-quantized W4A16, fp8 schemes\n"
               "float-quantized, int8-channel-bf16 W8A16, floats dense and in the ignore list); other\n"
               "schemes are converted to the nearest it holds, losslessly when the values allow, and reported.\n\n"
               "hf (DeepSeek's own FP8 release format): every projection E4M3 with power-of-two 128x128 block\n"
               "scales (weight_scale_inv, scale_fmt ue8m0), the rest as stored; an FP8 source with\n"
               "power-of-two scales is copied value for value.  For activation-chosen scales, quantize with\n"
               "dsq calib --quant-out DIR/ --to hf.\n\n"
               "  -o OUT         output: OUT.gguf, or a folder (DIR/) for the Hugging Face formats\n"
               "  --to F         gguf, compressed-tensors (ct) or hf (default: gguf for *.gguf,\n"
               "                 compressed-tensors for a name ending in /)\n"
               "  --type T       GGUF: f32, f16, bf16 or a ggml block type: q8_0, q6_k, q5_k, q5_1, q5_0,\n"
               "                 q4_k, q4_1, q4_0, iq4_xs, iq4_nl, q3_k, q2_k (rows that do not fit its\n"
               "                 blocks fall back as llama.cpp's do, reported)\n"
               "  --requantize   GGUF: convert exactly-held tensors to --type too\n"
               "  --shard-size S folders: bytes per safetensors shard (default 5G; K, M, G suffixes)\n"
               "  --allow-nonfinite  copy NaN / infinite weights of tensors kept as stored (default:\n"
               "                 refuse them; converting one is always refused)\n"
               "  --drop-mtp     leave the multi-token-prediction layer out\n"
               "  --threads N    worker threads (default: all cores)\n"
               "  --force        overwrite OUT if it exists (a folder only if it holds nothing but model files)\n"
               "  --quiet        no progress line\n"
               "  --json         print the full report as JSON on stdout (default: a summary)\n"
               "  --verbose      print every tensor's row, not only the summary\n"
               "  --report FILE  write the full report to FILE too (JSON when it ends in .json)\n");
    return cli_usage_end(to, f);
}

int cmd_export(int argc, char **argv) {
    dsq_pipe_opts o = {0};
    const char *type = NULL, *to = NULL;
    int quiet = 0, json = 0, requantize = 0, verbose = 0, made_report = 0;
    const char *report = NULL;
    o.argc = argc;
    o.argv = argv;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is(a, "--help") || cli_is(a, "-h")) return usage(stdout);
        else if (cli_is(a, "-o") && i + 1 < argc) o.out = argv[++i];
        else if (cli_is(a, "--type") && i + 1 < argc) type = argv[++i];
        else if (cli_is(a, "--to") && i + 1 < argc) to = argv[++i];
        else if (cli_is(a, "--shard-size") && i + 1 < argc) {
            if (cli_shard_size("export", argv[++i], &o.shard_size)) return 2;
        }
        else if (cli_is(a, "--drop-mtp")) o.drop_mtp = 1;
        else if (cli_is(a, "--force")) o.force = 1;
        else if (cli_is(a, "--quiet")) quiet = 1;
        else if (cli_is(a, "--json")) json = 1;
        else if (cli_is(a, "--requantize")) requantize = 1;
        else if (cli_is(a, "--allow-nonfinite")) o.allow_nonfinite = 1;
        else if (cli_is(a, "--verbose")) verbose = 1;
        else if (cli_is(a, "--report") && i + 1 < argc) report = argv[++i];
        else if (cli_is(a, "--threads") && i + 1 < argc) {
            long t = cli_parse_long(argv[++i], 1, 4096);
            if (t < 0) {
                fprintf(stderr, "dsq export: --threads takes a number from 1 to 4096\n");
                return 2;
            }
            o.threads = (int)t;
        } else if (a[0] == '-') {
            fprintf(stderr, "dsq export: unknown option '%s'\n", a);
            return usage(stderr);
        } else if (!o.src) o.src = a;
        else return usage(stderr);
    }
    if (!o.src || !o.out) return usage(stderr);
    int fmt = cli_out_format("export", to, o.out);
    if (fmt < 0) return 2;
    if (fmt == DSQ_OUT_DSQ) {
        fprintf(stderr, "dsq export: %s: name the output OUT.gguf, or a folder DIR/ with --to compressed-tensors or "
                        "--to hf (for a .dsq container use dsq convert)\n", o.out);
        return 2;
    }
    if (fmt != DSQ_OUT_GGUF && (type || requantize)) {
        fprintf(stderr, "dsq export: --type and --requantize are GGUF options (for another scheme: dsq quant --preset)\n");
        return 2;
    }
    if (fmt == DSQ_OUT_GGUF && o.shard_size) {
        fprintf(stderr, "dsq export: --shard-size is for folder outputs (a GGUF is one file)\n");
        return 2;
    }
    o.out_format = fmt;
    if (report && cli_check_report_path("export", report, &made_report)) return 1;
    dsq_err err = {0};
    dsq_recipe r;
    int rc0 = fmt == DSQ_OUT_GGUF ? dsq_recipe_gguf(&r, type ? type : "bf16", &err)
            : fmt == DSQ_OUT_HF   ? dsq_recipe_hf_fp8(&r, &err)
                                  : dsq_recipe_preset(&r, "lossless", &err);
    if (rc0) {
        if (made_report) unlink(report);
        return cli_err("export", &err);
    }
    o.recipe = &r;
    o.measure_error = 1;
    o.keep_twins = fmt == DSQ_OUT_GGUF && !requantize;
    cli_progress pr;
    cli_progress_init(&pr, quiet);
    o.on_progress = cli_progress_draw;
    o.on_progress_arg = &pr;
    cli_install_signals();
    dsq_pipe_report rep;
    int rc = dsq_pipeline_run(&o, &rep, &err);
    dsq_recipe_deinit(&r);
    if (rc) {
        if (made_report) unlink(report);
        return cli_err("export", &err);
    }
    rc = cli_print_pipe_report(&rep, json ? DSQ_REPORT_JSON : verbose ? DSQ_REPORT_FULL : DSQ_REPORT_SUMMARY, o.out, report);
    dsq_pipe_report_free(&rep);
    return rc;
}
