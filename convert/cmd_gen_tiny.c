/* cmd_gen_tiny.c -- placeholder. */
#include "convert/cli.h"
#include <stdio.h>
int cmd_gen_tiny(int argc, char **argv) { (void)argc; (void)argv; return 1; }
