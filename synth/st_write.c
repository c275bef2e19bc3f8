/*
 * st_write.c -- a small safetensors writer for generated checkpoints and
 * tests.  Tensors are stored in the order added; the JSON header is padded
 * with spaces to a multiple of 8 bytes, as the reference writer does.  Data
 * is copied at add time (generated models are small or written shard by
 * shard).
 */
#include "synth/st_write.h"
#include "formats/formats_int.h"

#include <cjson/cJSON.h>

typedef struct {
    char *name;
    dsq_dtype dt;
    int n_dims;
    int64_t shape[4];
    uint8_t *data; /* from malloc */
    uint64_t nbytes;
} st_wt;

struct st_writer {
    st_wt *t;
    int n, cap;
    uint64_t data_size;
};

st_writer *st_writer_new(void) { return dsq_calloc(1, sizeof(st_writer)); }

void st_writer_free(st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    free(w->t);
    free(w);
}

uint64_t st_writer_data_size(const st_writer *w) { return w->data_size; }

int st_writer_add(st_writer *w, const char *name, dsq_dtype dt, int n_dims,
                  const int64_t *shape, const void *data, uint64_t nbytes) {
    if (n_dims < 0 || n_dims > 4) return DSQ_E_ARG;
    if (w->n == w->cap) {
        int nc = w->cap ? w->cap * 2 : 64;
        st_wt *nt = dsq_realloc(w->t, sizeof *nt * (size_t)nc);
        if (!nt) return DSQ_E_NOMEM;
        w->t = nt;
        w->cap = nc;
    }
    st_wt *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    t->name = dsq_strdup(name);
    t->data = dsq_malloc(nbytes);
    if (!t->name || !t->data) {
        free(t->name);
        free(t->data);
        return DSQ_E_NOMEM;
    }
    memcpy(t->data, data, nbytes);
    t->dt = dt;
    t->n_dims = n_dims;
    for (int i = 0; i < n_dims; i++) t->shape[i] = shape[i];
    t->nbytes = nbytes;
    w->data_size += nbytes;
    w->n++;
    return DSQ_OK;
}

int st_writer_save(st_writer *w, const char *path, int flags, dsq_err *err) {
    int rc = DSQ_OK;
    cJSON *root = cJSON_CreateObject();
    char *js = NULL;
    dsq_afile *f = NULL;
    if (!root) return dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", path);
    cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        st_wt *t = &w->t[i];
        cJSON *o = cJSON_AddObjectToObject(root, t->name);
        cJSON_AddStringToObject(o, "dtype", dsq_dtype_name(t->dt));
        cJSON *sh = cJSON_AddArrayToObject(o, "shape");
        for (int k = 0; k < t->n_dims; k++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[k]));
        cJSON *of = cJSON_AddArrayToObject(o, "data_offsets");
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)(off + t->nbytes)));
        off += t->nbytes;
    }
    js = cJSON_PrintUnformatted(root);
    if (!js) { rc = dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", path); goto out; }
    size_t jl = strlen(js), padded = (jl + 7) & ~(size_t)7;
    rc = dsq_afile_open(&f, path, flags, err);
    if (rc) goto out;
    uint8_t len8[8];
    dsq_st64(len8, padded);
    dsq_afile_write(f, len8, 8);
    dsq_afile_write(f, js, jl);
    for (size_t i = jl; i < padded; i++) dsq_afile_write(f, " ", 1);
    for (int i = 0; i < w->n; i++) dsq_afile_write(f, w->t[i].data, w->t[i].nbytes);
    rc = dsq_afile_commit(f, err);
    f = NULL;
out:
    dsq_afile_abort(f);
    free(js);
    cJSON_Delete(root);
    return rc;
}
