/*
 * cli.c -- option helpers shared by the subcommands.
 */
#include "convert/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_is(const char *arg, const char *opt) { return strcmp(arg, opt) == 0; }

int cli_err(const char *cmd, const dsq_err *err) {
    fprintf(stderr, "dsq %s: %s\n", cmd, err->msg[0] ? err->msg : dsq_strerror(err->code));
    return 1;
}

long long cli_parse_size(const char *s) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0) return -1;
    long long m = 1;
    switch (*end) {
    case 'k': case 'K': m = 1LL << 10; end++; break;
    case 'm': case 'M': m = 1LL << 20; end++; break;
    case 'g': case 'G': m = 1LL << 30; end++; break;
    case 0: break;
    default: return -1;
    }
    if (*end == 'i' || *end == 'B') end++;
    if (*end == 'B') end++;
    if (*end) return -1;
    return (long long)(v * (double)m);
}
