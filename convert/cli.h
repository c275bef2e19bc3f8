/*
 * cli.h -- shared pieces of the command-line front end: the subcommand
 * table entry, the command entry points and small option helpers.
 * Exit codes: 0 success, 1 failure (bad input, I/O), 2 usage error.
 */
#ifndef DSQ_CLI_H
#define DSQ_CLI_H

#include "dsq.h"

typedef struct dsq_cmd {
    const char *name, *help;
    int (*fn)(int argc, char **argv);
} dsq_cmd;

int cmd_inspect(int argc, char **argv);
int cmd_gen_tiny(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_quant(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_calib(int argc, char **argv);
/* pack archives (cmd_pack.c); `dsq check` hands non-containers to cmd_check_pack */
int cmd_pack(int argc, char **argv);
int cmd_unpack(int argc, char **argv);
int cmd_check_pack(const char *path, int quiet);
/* Remove temporary outputs on SIGINT / SIGTERM / SIGHUP. */
void cli_install_signals(void);

/* inspect on a .dsq container (lives with the container commands). */
struct dsq_ctr;
int cmd_inspect_container(const struct dsq_ctr *c, const char *path, int json);
int cmd_tokenize(int argc, char **argv);
int cmd_export(int argc, char **argv);
/* The per-tensor report of dsq quant / export: a table on stdout, or JSON. */
struct dsq_pipe_report;
/* The report of a convert / quant / export job on stdout: a summary
 * (DSQ_REPORT_SUMMARY: sizes, bits per weight by class and scheme, how
 * tensors were stored, fallbacks, the worst errors), every tensor
 * (DSQ_REPORT_FULL) or JSON (DSQ_REPORT_JSON); report_path (or NULL): the
 * full report also into that file, JSON when it ends in .json ("-":
 * stdout).  Returns 0, or 1 when the file cannot be written. */
enum { DSQ_REPORT_SUMMARY = 0, DSQ_REPORT_FULL, DSQ_REPORT_JSON };
int cli_print_pipe_report(const struct dsq_pipe_report *r, int mode, const char *out, const char *report_path);
/* Before the work: can the report file be written?  Creates it when absent
 * (*created = 1: remove it if the job fails); 1 after one line on stderr. */
int cli_check_report_path(const char *cmd, const char *path, int *created);
int cmd_detokenize(int argc, char **argv);

/* True if argv[i] equals opt; helpers for the hand-rolled parsers. */
int cli_is(const char *arg, const char *opt);
/* Print "dsq CMD: message" from an error and return 1. */
int cli_err(const char *cmd, const dsq_err *err);
/* A whole decimal number in [lo, hi], or -1. */
long cli_parse_long(const char *s, long lo, long hi);
/* The output format of --to NAME (dsq, gguf, compressed-tensors or ct, hf),
 * or from the output's name when to is NULL (formats/writer.h); -1 after
 * one line on stderr. */
int cli_out_format(const char *cmd, const char *to, const char *out);
/* --shard-size's value into *out (bytes); 0, or 2 after one line on stderr. */
int cli_shard_size(const char *cmd, const char *arg, uint64_t *out);

/* Options eval, verify and calib share: the token source (exactly one of
 * --tokens FILE.json, --text FILE, --random-tokens N) and the windowing. */
typedef struct cli_window {
    const char *tokens, *text;
    long n_random, ctx, threads, max_windows, score_from;
} cli_window;
/* If argv[*i] is one of those options, consume it and its value and return
 * 1; return 0 if it is not; -1 after printing "dsq CMD: bad value ...". */
int cli_window_opt(const char *cmd, int argc, char **argv, int *i, cli_window *w);
/* Exactly one token source given? */
int cli_window_source_ok(const cli_window *w);
/* The token ids (random ones from cfg's vocabulary, BOS first); *ids from
 * malloc.  Every id is checked against cfg->vocab_size. */
int cli_window_tokens(const cli_window *w, const char *model, const dsq_config *cfg, int32_t **ids,
                      size_t *n, dsq_err *err);

/* Progress of a library job drawn on stderr (a dsq_progress_fn; arg is a
 * cli_progress): quant/convert a bar with rate and ETA, at most every 0.2 s;
 * calib a line per layer.  Draws only when stderr is a terminal and
 * quiet is 0. */
/* Progress on stderr: redrawn in place on a terminal; on anything else (a
 * log, nohup) one plain line every CLI_LOG_SECONDS and at the end, so long
 * jobs are never silent. */
#include <stdio.h>

#define CLI_LOG_SECONDS 10.0

/* A command's help text goes to the stream cli_usage_begin(to) returns;
 * cli_usage_end(to, f) returns the exit status: 0 for stdout (--help), 2
 * for stderr, where only the synopsis line and "see dsq CMD --help" are
 * shown (the line before it says what was wrong). */
FILE *cli_usage_begin(FILE *to);
int cli_usage_end(FILE *to, FILE *f);
typedef struct cli_progress {
    int quiet, tty;
    double t0, last;
} cli_progress;
void cli_progress_init(cli_progress *p, int quiet);
void cli_progress_draw(void *arg, const dsq_progress *p);
/* Windows done of total (eval, verify), started at t0 (dsq_now); *last:
 * the caller's state, 0 at first. */
void cli_window_progress(const char *cmd, int tty, double t0, double *last, int64_t done, int64_t total);

/* Parse a size like 512, 64K, 2M, 1G (binary units).  -1 on error. */
long long cli_parse_size(const char *s);

#endif
