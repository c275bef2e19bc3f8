/* cmd_inspect.c -- `dsq inspect` (placeholder until the reader lands). */
#include "convert/cli.h"
#include <stdio.h>
int cmd_inspect(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "dsq inspect: not yet\n"); return 1; }
