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

/* .dsq containers (cmd_inspect_container lives with the container commands). */
int dsq_path_is_container(const char *path);
int cmd_inspect_container(const char *path, int json);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);

/* True if argv[i] equals opt; helpers for the hand-rolled parsers. */
int cli_is(const char *arg, const char *opt);
/* Print "dsq CMD: message" from an error and return 1. */
int cli_err(const char *cmd, const dsq_err *err);
/* Parse a size like 512, 64K, 2M, 1G (binary units).  -1 on error. */
long long cli_parse_size(const char *s);

#endif
