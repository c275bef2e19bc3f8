/*
 * main.c -- the dsq command line: a table of subcommands, each implemented in
 * convert/cmd_<name>.c.  Only this file exits the process.
 */
#include "convert/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
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

/* GNU-style arguments, rewritten into the separate form every command
 * parses: --opt=value as --opt value, -oFILE as -o FILE, and after "--"
 * every argument is an operand (one starting with '-' is passed as ./-...,
 * the same file).  argv[0] is the command.  Returns the new count; *out
 * (from malloc) holds 2 * argc + 1 pointers into argv or to strings of its
 * own, which *own (from malloc, NULL-terminated) lists for free_args. */
static int gnu_args(int argc, char **argv, char ***out, char ***own) {
    char **v = malloc(sizeof *v * (size_t)(2 * argc + 1)), **mine = calloc((size_t)argc + 1, sizeof *mine);
    int nm = 0;
    *out = v;
    *own = mine;
    if (!v || !mine) return -1;
    int n = 0, operands = 0;
    v[n++] = argv[0];
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (operands) {
            if (a[0] == '-') {
                size_t len = strlen(a);
                char *p = malloc(len + 3);
                if (!p) return -1;
                mine[nm++] = p;
                memcpy(p, "./", 2);
                memcpy(p + 2, a, len + 1);
                a = p;
            }
            v[n++] = a;
        } else if (!strcmp(a, "--")) {
            operands = 1;
        } else if (a[0] == '-' && a[1] == '-' && strchr(a, '=')) {
            char *eq = strchr(a, '=');
            char *k = malloc((size_t)(eq - a) + 1);
            if (!k) return -1;
            mine[nm++] = k;
            memcpy(k, a, (size_t)(eq - a));
            k[eq - a] = 0;
            v[n++] = k;
            v[n++] = eq + 1;
        } else if (a[0] == '-' && a[1] == 'o' && a[2]) {
            v[n++] = "-o";
            v[n++] = a + 2;
        } else {
            v[n++] = a;
        }
    }
    v[n] = NULL;
    return n;
}

static void free_args(char **v, char **own) {
    for (int i = 0; own && own[i]; i++) free(own[i]);
    free(own);
    free(v);
}

/* A command's exit status once its standard output is flushed: a write
 * error there (a full disk, /dev/full, a closed pipe) is a failure, said in
 * one line, never exit 0 with the output lost. */
static int stdout_done(const char *cmd, int rc) {
    int bad = fflush(stdout) != 0 || ferror(stdout);
    int e = errno;
    if (fclose(stdout) != 0 && !bad && errno != EBADF) { /* EBADF: started with stdout closed */
        bad = 1;
        e = errno;
    }
    if (bad) {
        fprintf(stderr, "dsq%s%s: cannot write standard output: %s\n", cmd ? " " : "", cmd ? cmd : "",
                strerror(e));
        return rc ? rc : 1;
    }
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return stdout_done(NULL, 0);
    }
    if (!strcmp(argv[1], "--version")) {
        printf("dsq %s\n", DSQ_VERSION_STRING);
        return stdout_done(NULL, 0);
    }
    for (size_t i = 0; i < sizeof g_cmds / sizeof g_cmds[0]; i++)
        if (!strcmp(argv[1], g_cmds[i].name)) {
            char **v, **own;
            int n = gnu_args(argc - 1, argv + 1, &v, &own);
            if (n < 0) {
                free_args(v, own);
                fprintf(stderr, "dsq: out of memory\n");
                return 1;
            }
            int rc = g_cmds[i].fn(n, v);
            free_args(v, own);
            return stdout_done(g_cmds[i].name, rc);
        }
    fprintf(stderr, "dsq: unknown command '%s' (see dsq --help)\n", argv[1]);
    return 2;
}
