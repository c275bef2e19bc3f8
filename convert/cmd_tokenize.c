/*
 * cmd_tokenize.c -- `dsq tokenize` (text -> token ids) and `dsq detokenize`
 * (token ids -> text) with the byte-level BPE tokenizer of a checkpoint
 * (formats/tokenizer.h).  Token files are JSON arrays of integers or ids
 * separated by white space (tokenize's plain output): both are what eval,
 * verify and detokenize read back with dsq_tokens_load_json().
 */
#include "convert/cli.h"
#include "pipeline/model.h"
#include "common.h"
#include "formats/tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define TOK_JSON_MAX ((size_t)1 << 30) /* tokenizer.json: the real one is ~8 MB */
#define TEXT_MAX ((size_t)1 << 34)     /* input text                           */

/* Read a whole file, or standard input for "-".  *out from malloc. */
static int read_input(const char *path, char **out, size_t *len, dsq_err *err) {
    if (strcmp(path, "-")) return dsq_read_file(path, TEXT_MAX, out, len, err);
    size_t cap = 1 << 16, n = 0;
    char *buf = dsq_malloc(cap);
    if (!buf) return dsq_fail(err, DSQ_E_NOMEM, "stdin: out of memory");
    for (;;) {
        if (cap - n < 2) {
            char *p = dsq_realloc(buf, cap *= 2);
            if (!p) {
                free(buf);
                return dsq_fail(err, DSQ_E_NOMEM, "stdin: out of memory");
            }
            buf = p;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, stdin);
        n += r;
        if (r == 0) break;
    }
    if (ferror(stdin)) {
        free(buf);
        return dsq_fail(err, DSQ_E_IO, "stdin: read failed");
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return DSQ_OK;
}




/* MODEL: a checkpoint folder or archive, a .dsq container or a tokenizer.json. */
static int load_tokenizer(const char *model, dsq_tok **out, dsq_err *err) {
    return dsq_model_tokenizer(model, out, err);
}

/* Write ids as "a b c\n" or as one JSON array "[a,b,c]\n", buffered. */
static int write_ids(FILE *f, const int32_t *ids, size_t n, int json) {
    char buf[1 << 16];
    size_t o = 0;
    if (json) buf[o++] = '[';
    for (size_t i = 0; i < n; i++) {
        if (o > sizeof buf - 32) {
            if (fwrite(buf, 1, o, f) != o) return -1;
            o = 0;
        }
        if (i) buf[o++] = json ? ',' : ' ';
        o += (size_t)snprintf(buf + o, sizeof buf - o, "%ld", (long)ids[i]);
    }
    if (json) buf[o++] = ']';
    buf[o++] = '\n';
    if (fwrite(buf, 1, o, f) != o) return -1;
    return fflush(f) == 0 ? 0 : -1;
}

static void tokenize_usage(FILE *f) {
    fprintf(f,
            "usage: dsq tokenize MODEL --text FILE [--json] [--bos]\n\n"
            "Encode FILE ('-' for standard input) with the tokenizer of MODEL, a checkpoint\n"
            "folder or a tokenizer.json.  Prints the ids space-separated on one line and a\n"
            "summary (tokens, bytes, MB/s) on standard error.  eval, verify, calib and\n"
            "detokenize --tokens read that form as they read a JSON array.\n\n"
            "  --text FILE  text to encode, taken byte for byte\n"
            "  --json       print exactly one JSON array of ids instead\n"
            "  --bos        put the BOS token (tokenizer_config.json bos_token) first\n"
            "  --help       this text\n");
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *text_path = NULL;
    int json = 0, bos = 0, rc = 1;
    dsq_err err = {0};
    dsq_tok *tok = NULL;
    char *text = NULL;
    int32_t *ids = NULL;
    size_t len = 0, n = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_is(argv[i], "--help") || cli_is(argv[i], "-h")) {
            tokenize_usage(stdout);
            return 0;
        } else if (cli_is(argv[i], "--text") && i + 1 < argc) {
            text_path = argv[++i];
        } else if (cli_is(argv[i], "--json")) {
            json = 1;
        } else if (cli_is(argv[i], "--bos")) {
            bos = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "dsq tokenize: unknown or incomplete option '%s'\n", argv[i]);
            tokenize_usage(stderr);
            return 2;
        } else if (!model) {
            model = argv[i];
        } else {
            fprintf(stderr, "dsq tokenize: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!model || !text_path) {
        tokenize_usage(stderr);
        return 2;
    }
    if (load_tokenizer(model, &tok, &err) < 0) return cli_err("tokenize", &err);
    if (read_input(text_path, &text, &len, &err) < 0) {
        rc = cli_err("tokenize", &err);
        goto done;
    }
    /* the summary's MB/s covers encoding only, not loading or printing */
    double t0 = dsq_now();
    if (dsq_tok_encode(tok, text, len, &ids, &n, &err) < 0) {
        rc = cli_err("tokenize", &err);
        goto done;
    }
    double dt = dsq_now() - t0;
    if (bos) {
        int32_t b = dsq_tok_bos_id(tok);
        if (b < 0) {
            fprintf(stderr, "dsq tokenize: %s: no BOS token known (no bos_token in tokenizer_config.json)\n",
                    model);
            goto done;
        }
        /* encode never adds BOS; the caller asked for it here */
        int32_t *p = dsq_realloc(ids, (n + 1) * sizeof *ids);
        if (!p) {
            fprintf(stderr, "dsq tokenize: out of memory\n");
            goto done;
        }
        ids = p;
        memmove(ids + 1, ids, n * sizeof *ids);
        ids[0] = b;
        n++;
    }
    if (write_ids(stdout, ids, n, json) < 0) {
        fprintf(stderr, "dsq tokenize: writing standard output failed: %s\n", strerror(errno));
        goto done;
    }
    /* with --json, stdout is the array alone and stderr stays quiet, so the
     * output can be piped straight into a JSON reader */
    if (!json)
        fprintf(stderr, "%zu tokens, %zu bytes, %.1f MB/s\n", n, len,
                dt > 0 ? (double)len / dt / 1e6 : 0.0);
    rc = 0;
done:
    free(ids);
    free(text);
    dsq_tok_free(tok);
    return rc;
}

static void detokenize_usage(FILE *f) {
    fprintf(f,
            "usage: dsq detokenize MODEL --tokens FILE.json\n\n"
            "Decode a JSON array of token ids ('-' for standard input) with the tokenizer of\n"
            "MODEL, a checkpoint folder or a tokenizer.json, and write the bytes to standard\n"
            "output exactly (no newline added, no replacement of invalid UTF-8).\n\n"
            "  --tokens FILE  token ids, e.g. the output of 'dsq tokenize --json'\n"
            "  --help         this text\n");
}

int cmd_detokenize(int argc, char **argv) {
    const char *model = NULL, *tok_path = NULL;
    int rc = 1;
    dsq_err err = {0};
    dsq_tok *tok = NULL;
    int32_t *ids = NULL;
    char *text = NULL, *buf = NULL;
    size_t n = 0, len = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_is(argv[i], "--help") || cli_is(argv[i], "-h")) {
            detokenize_usage(stdout);
            return 0;
        } else if (cli_is(argv[i], "--tokens") && i + 1 < argc) {
            tok_path = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "dsq detokenize: unknown or incomplete option '%s'\n", argv[i]);
            detokenize_usage(stderr);
            return 2;
        } else if (!model) {
            model = argv[i];
        } else {
            fprintf(stderr, "dsq detokenize: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!model || !tok_path) {
        detokenize_usage(stderr);
        return 2;
    }
    if (load_tokenizer(model, &tok, &err) < 0) return cli_err("detokenize", &err);
    /* standard input has no path for dsq_tokens_load_json; parse the buffer */
    if (!strcmp(tok_path, "-")) {
        if (read_input("-", &buf, &len, &err) < 0 ||
            dsq_tokens_parse_json(buf, len, "stdin", &ids, &n, &err) < 0) {
            rc = cli_err("detokenize", &err);
            goto done;
        }
    } else if (dsq_tokens_load_json(tok_path, &ids, &n, &err) < 0) {
        rc = cli_err("detokenize", &err);
        goto done;
    }
    if (dsq_tok_decode(tok, ids, n, &text, &len, &err) < 0) {
        /* the message names the index; add the file */
        fprintf(stderr, "dsq detokenize: %s: %s\n", tok_path, err.msg);
        goto done;
    }
    if (fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0) {
        fprintf(stderr, "dsq detokenize: writing standard output failed: %s\n", strerror(errno));
        goto done;
    }
    rc = 0;
done:
    free(buf);
    free(text);
    free(ids);
    dsq_tok_free(tok);
    return rc;
}
