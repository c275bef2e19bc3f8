/*
 * main.c -- the dsq command line: a table of subcommands, each implemented in
 * convert/cmd_<name>.c.  Only this file exits the process.
 */
#include "convert/cli.h"

#include <stdio.h>
#include <string.h>

static const dsq_cmd g_cmds[] = {
    {"inspect", "summarise a checkpoint, archive or .dsq container", cmd_inspect},
    {"convert", "store a checkpoint losslessly in one .dsq container", cmd_convert},
    {"quant", "quantize a checkpoint or container with a preset or recipe", cmd_quant},
    {"export", "write a model as a GGUF file llama.cpp runs", cmd_export},
    {"calib", "collect activation statistics for calibrated quantization", cmd_calib},
    {"check", "verify a .dsq container's structure and checksums", cmd_check},
    {"pack", "package a container for distribution: parts, manifest, model card", cmd_pack},
    {"unpack", "reassemble and verify a packed container", cmd_unpack},
    {"gen-tiny", "write a synthetic checkpoint in the upstream layout", cmd_gen_tiny},
    {"eval", "perplexity of a model over a token file", cmd_eval},
    {"verify", "per-layer drift of a candidate model against a reference", cmd_verify},
    {"tokenize", "encode text to token ids with a checkpoint's tokenizer", cmd_tokenize},
    {"detokenize", "decode token ids back to text", cmd_detokenize},
};

static void usage(FILE *f) {
    fprintf(f, "usage: dsq COMMAND [ARGS...]\n\n"
               "Convert, quantize and verify DeepSeek-V3.2-family checkpoints.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof g_cmds / sizeof g_cmds[0]; i++)
        fprintf(f, "  %-12s %s\n", g_cmds[i].name, g_cmds[i].help);
    fprintf(f, "\n'dsq COMMAND --help' describes one command; 'dsq --version' prints the version.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("dsq %s\n", DSQ_VERSION_STRING);
        return 0;
    }
    for (size_t i = 0; i < sizeof g_cmds / sizeof g_cmds[0]; i++)
        if (!strcmp(argv[1], g_cmds[i].name)) return g_cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "dsq: unknown command '%s' (see dsq --help)\n", argv[1]);
    return 2;
}
