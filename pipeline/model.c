/*
 * model.c -- opening models and their tokenizers by path (see model.h).
 */
#include "pipeline/model.h"
#include "common.h"
#include "formats/container.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <sys/stat.h>

#define TOK_JSON_MAX (256u << 20)

int dsq_model_open(dsq_model *m, const char *path, dsq_err *err) {
    memset(m, 0, sizeof *m);
    int rc;
    if (dsq_ctr_sniff(path)) {
        if ((rc = dsq_ctr_open(&m->ctr, path, err))) return rc;
        dsq_weights_from_ctr(&m->w, m->ctr);
        return DSQ_OK;
    }
    if ((rc = dsq_ckpt_open(&m->ck, path, 0, err))) return rc;
    if (dsq_ckpt_is_archive(m->ck)) {
        dsq_ckpt_close(m->ck);
        m->ck = NULL;
        return dsq_fail(err, DSQ_E_UNSUPPORTED,
                        "%s: the forward pass needs random access: unpack the archive or convert it to .dsq", path);
    }
    dsq_weights_from_ckpt(&m->w, m->ck);
    return DSQ_OK;
}

void dsq_model_close(dsq_model *m) {
    dsq_ckpt_close(m->ck);
    dsq_ctr_close(m->ctr);
    memset(m, 0, sizeof *m);
}

char *dsq_config_json_of(const dsq_ckpt *ck, const struct dsq_ctr *ctr) {
    if (ck) {
        size_t len;
        const char *cj = dsq_ckpt_blob(ck, "config.json", &len);
        char *s = cj ? dsq_malloc(len + 1) : NULL;
        if (s) {
            memcpy(s, cj, len);
            s[len] = 0;
        }
        return s;
    }
    cJSON *mm = cJSON_Parse(dsq_ctr_meta(ctr));
    const cJSON *cj = cJSON_GetObjectItemCaseSensitive(mm, "config_json");
    char *s = cJSON_IsString(cj) ? dsq_strdup(cj->valuestring) : NULL;
    cJSON_Delete(mm);
    return s;
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
    } else if (dsq_ctr_sniff(path)) {
        dsq_ctr *c;
        if ((rc = dsq_ctr_open(&c, path, err))) return rc;
        rc = dsq_ctr_file(c, "tokenizer.json", &js, &jl, err);
        if (rc == DSQ_E_NOTFOUND) rc = dsq_fail(err, rc, "%s: the container holds no tokenizer.json", path);
        dsq_err e2 = {0};
        if (!rc) dsq_ctr_file(c, "tokenizer_config.json", &cfg, &cl, &e2);
        dsq_ctr_close(c);
        if (rc) goto out;
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
        /* an archive or a single .safetensors: the checkpoint reader has the side files */
        dsq_ckpt *ck;
        if ((rc = dsq_ckpt_open(&ck, path, 0, err))) return rc;
        const char *j = dsq_ckpt_blob(ck, "tokenizer.json", &jl);
        const char *k = dsq_ckpt_blob(ck, "tokenizer_config.json", &cl);
        rc = j ? tok_from_bufs(j, jl, k, cl, path, out, err)
               : dsq_fail(err, DSQ_E_NOTFOUND, "%s: no tokenizer.json beside the checkpoint", path);
        dsq_ckpt_close(ck);
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
