/*
 * model.c -- a model's tokenizer and token ids (see model.h).
 */
#include "pipeline/model.h"
#include "common.h"
#include "formats/source.h"

#include <stdio.h>
#include <sys/stat.h>

#define TOK_JSON_MAX (256u << 20)

int dsq_model_open(dsq_src **src, dsq_weights *w, const char *path, dsq_err *err) {
    int rc = dsq_src_open(src, path, 0, err);
    if (!rc && (rc = dsq_weights_from_src(w, *src, err))) {
        dsq_src_close(*src);
        *src = NULL;
    }
    return rc;
}

static int tok_from_bufs(const char *js, size_t jl, const char *cfg, size_t cl, const char *what,
                         dsq_tok **out, dsq_err *err) {
    dsq_tok *tok = NULL;
    char w2[1100];
    snprintf(w2, sizeof w2, "%s/tokenizer.json", what);
    int rc = dsq_tok_new_from_json(&tok, js, jl, w2, err);
    if (rc < 0) return rc;
    if (cfg) {
        snprintf(w2, sizeof w2, "%s/tokenizer_config.json", what);
        if ((rc = dsq_tok_set_config(tok, cfg, cl, w2, err)) < 0) {
            dsq_tok_free(tok);
            return rc;
        }
    }
    *out = tok;
    return DSQ_OK;
}

int dsq_model_tokenizer(const char *path, dsq_tok **out, dsq_err *err) {
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0) return dsq_fail(err, DSQ_E_IO, "%s: no such file or folder", path);
    int rc;
    char *js = NULL, *cfg = NULL;
    size_t jl = 0, cl = 0;
    if (S_ISDIR(st.st_mode)) {
        char p[4096];
        snprintf(p, sizeof p, "%s/tokenizer.json", path);
        if (stat(p, &st) != 0) return dsq_fail(err, DSQ_E_NOTFOUND, "%s: no tokenizer.json in this folder", path);
        if ((rc = dsq_read_file(p, TOK_JSON_MAX, &js, &jl, err))) return rc;
        snprintf(p, sizeof p, "%s/tokenizer_config.json", path);
        if (stat(p, &st) == 0 && (rc = dsq_read_file(p, TOK_JSON_MAX, &cfg, &cl, err))) goto out;
    } else {
        size_t n = strlen(path);
        if (n >= 5 && !strcmp(path + n - 5, ".json")) {
            if ((rc = dsq_read_file(path, TOK_JSON_MAX, &js, &jl, err))) return rc;
            char p[4096];
            const char *b = dsq_basename(path);
            snprintf(p, sizeof p, "%.*stokenizer_config.json", (int)(b - path), path);
            if (stat(p, &st) == 0 && (rc = dsq_read_file(p, TOK_JSON_MAX, &cfg, &cl, err))) goto out;
            rc = dsq_tok_new_from_json(out, js, jl, path, err);
            if (!rc && cfg && (rc = dsq_tok_set_config(*out, cfg, cl, p, err)) < 0) {
                dsq_tok_free(*out);
                *out = NULL;
            }
            goto out;
        }
        /* a container, an archive or a single .safetensors: the source has the side files */
        dsq_src *src;
        if ((rc = dsq_src_open(&src, path, 0, err))) return rc;
        dsq_err e2 = {0};
        const char *j = dsq_src_file(src, "tokenizer.json", &jl, &e2);
        const char *k = j ? dsq_src_file(src, "tokenizer_config.json", &cl, NULL) : NULL;
        if (j) rc = tok_from_bufs(j, jl, k, cl, path, out, err);
        else if (e2.code) rc = dsq_fail(err, e2.code, "%s", e2.msg);
        else rc = dsq_fail(err, DSQ_E_NOTFOUND, dsq_src_ctr(src) ? "%s: the container holds no tokenizer.json"
                                                                 : "%s: no tokenizer.json beside the checkpoint", path);
        dsq_src_close(src);
        return rc;
    }
    rc = tok_from_bufs(js, jl, cfg, cl, path, out, err);
out:
    free(js);
    free(cfg);
    return rc;
}

int dsq_model_load_tokens(const char *model, const char *tokens_path, const char *text_path,
                          int force_bos, int32_t **ids, size_t *n, dsq_err *err) {
    *ids = NULL;
    *n = 0;
    if (tokens_path) return dsq_tokens_load_json(tokens_path, ids, n, err);
    if (!text_path) return dsq_fail(err, DSQ_E_ARG, "give --tokens FILE.json or --text FILE");
    dsq_tok *tok;
    int rc = dsq_model_tokenizer(model, &tok, err);
    if (rc) return rc;
    char *text;
    size_t len;
    if ((rc = dsq_read_file(text_path, 1u << 30, &text, &len, err))) {
        dsq_tok_free(tok);
        return rc;
    }
    int32_t *v = NULL;
    size_t k = 0;
    rc = dsq_tok_encode(tok, text, len, &v, &k, err);
    free(text);
    if (rc >= 0 && (force_bos || dsq_tok_add_bos(tok)) && dsq_tok_bos_id(tok) >= 0) {
        int32_t *p = dsq_realloc(v, (k + 1) * sizeof *p);
        if (!p) rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory");
        else {
            v = p;
            memmove(v + 1, v, k * sizeof *v);
            v[0] = dsq_tok_bos_id(tok);
            k++;
        }
    }
    dsq_tok_free(tok);
    if (rc < 0) {
        free(v);
        return rc;
    }
    *ids = v;
    *n = k;
    return DSQ_OK;
}
