/*
 * llama_util.c -- locating the real llama.cpp for the tests (llama_util.h).
 */
#include "llama_util.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *tl_llama_dir(int with_tools) {
    static char dir[1024];
    const char *e = getenv("DSQ_LLAMA");
    if (e && *e) snprintf(dir, sizeof dir, "%s", e);
    else {
        const char *bin = t_dsq(), *sl = strrchr(bin, '/');
        snprintf(dir, sizeof dir, "%.*s%sllama", sl ? (int)(sl - bin) : 0, bin, sl ? "/" : "");
    }
    char cmd[1200], *out = NULL;
    snprintf(cmd, sizeof cmd, "sh tests/llama/fetch.sh '%s'", dir);
    int rc = t_run(cmd, &out);
    if (rc == 77) {
        fprintf(stderr, "  %s", out ? out : "");
        free(out);
        t_skip("llama.cpp libraries not reachable through npm");
        return NULL;
    }
    if (rc != 0) {
        t_fail(__FILE__, __LINE__, "fetch.sh %s: status %d: %s", dir, rc, out ? out : "");
        free(out);
        return NULL;
    }
    free(out);
    if (with_tools && (!t_file_exists(t_path(dir, "ggml_gguf")) || !t_file_exists(t_path(dir, "llama_logits")))) {
        t_fail(__FILE__, __LINE__, "%s has no ggml_gguf / llama_logits: run `make llama`", dir);
        return NULL;
    }
    return dir;
}
