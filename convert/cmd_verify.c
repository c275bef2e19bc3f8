/* cmd_verify.c -- placeholder */
#include "convert/cli.h"
int cmd_verify(int argc, char **argv) { (void)argc; (void)argv; return 1; }
