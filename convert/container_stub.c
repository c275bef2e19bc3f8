/* container_stub.c -- placeholder until the .dsq container lands. */
#include "convert/cli.h"
#include <stdio.h>
int dsq_path_is_container(const char *path) { (void)path; return 0; }
int cmd_inspect_container(const char *path, int json) { (void)path; (void)json; return 1; }
