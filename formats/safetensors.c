/*
 * safetensors.c -- the safetensors header (deepseek-v32.md section 1.7 and
 * formats.md part B): u64 LE header length, a JSON object mapping tensor names
 * to {dtype, shape, data_offsets}, an optional "__metadata__" object of string
 * values, then the data section.
 *
 * Every rule of the reference reader is enforced, each with its own message:
 * header length within the file, the header a JSON object, known dtypes,
 * integer shapes without overflow, END - BEGIN == numel * dtype size, spans
 * inside the data section, no overlaps, no gaps, no trailing bytes, no
 * duplicate names.
 */
#include "formats_int.h"
#include "formats/json.h"

static const struct { const char *name; dsq_dtype t; size_t size; } g_dtypes[] = {
    {"F32", DSQ_DT_F32, 4}, {"F16", DSQ_DT_F16, 2}, {"BF16", DSQ_DT_BF16, 2},
    {"F8_E4M3", DSQ_DT_F8_E4M3, 1}, {"F8_E5M2", DSQ_DT_F8_E5M2, 1},
    {"F8_E8M0", DSQ_DT_F8_E8M0, 1}, {"F64", DSQ_DT_F64, 8}, {"BOOL", DSQ_DT_BOOL, 1},
    {"U8", DSQ_DT_U8, 1}, {"I8", DSQ_DT_I8, 1}, {"U16", DSQ_DT_U16, 2},
    {"I16", DSQ_DT_I16, 2}, {"U32", DSQ_DT_U32, 4}, {"I32", DSQ_DT_I32, 4},
    {"U64", DSQ_DT_U64, 8}, {"I64", DSQ_DT_I64, 8},
};

const char *dsq_dtype_name(dsq_dtype t) {
    for (size_t i = 0; i < sizeof g_dtypes / sizeof g_dtypes[0]; i++)
        if (g_dtypes[i].t == t) return g_dtypes[i].name;
    return "INVALID";
}
dsq_dtype dsq_dtype_from_name(const char *name) {
    for (size_t i = 0; i < sizeof g_dtypes / sizeof g_dtypes[0]; i++)
        if (!strcmp(g_dtypes[i].name, name)) return g_dtypes[i].t;
    return DSQ_DT_INVALID;
}
size_t dsq_dtype_size(dsq_dtype t) {
    for (size_t i = 0; i < sizeof g_dtypes / sizeof g_dtypes[0]; i++)
        if (g_dtypes[i].t == t) return g_dtypes[i].size;
    return 0;
}

#define ST_MAX_INT (1ull << 53) /* integers above lose precision as cJSON's doubles */

static int cmp_begin(const void *a, const void *b) {
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}
static int cmp_name(const void *a, const void *b) {
    return strcmp((*(const st_entry *const *)a)->name, (*(const st_entry *const *)b)->name);
}

void st_header_free(st_header *h) {
    if (!h) return;
    for (int i = 0; i < h->n; i++) free(h->e[i].name);
    free(h->e);
    h->e = NULL;
    h->n = 0;
}

int st_parse_header(st_header *h, const char *what, const char *json, uint64_t n,
                    uint64_t data_size, dsq_err *err) {
    memset(h, 0, sizeof *h);
    h->header_len = n;
    h->data_start = 8 + n;
    int rc = DSQ_E_FORMAT;
    cJSON *root = NULL;
    st_entry **byname = NULL;
    /* the header must start with '{' (newer reference readers enforce it) */
    if (n == 0 || json[0] != '{')
        return dsq_fail(err, DSQ_E_FORMAT, "%s: header is not a JSON object", what);
    long at;
    root = dsq_json_parse(json, (size_t)n, &at);
    if (!root) return dsq_fail(err, DSQ_E_FORMAT, "%s: header JSON is invalid near byte %ld (%s)", what, at, dsq_json_why());
    if (!cJSON_IsObject(root)) {
        dsq_fail(err, DSQ_E_FORMAT, "%s: header is not a JSON object", what);
        goto fail;
    }
    int cap = cJSON_GetArraySize(root);
    h->e = dsq_calloc((size_t)cap + 1, sizeof *h->e);
    if (!h->e) { rc = dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", what); goto fail; }
    int n_meta = 0;
    for (const cJSON *it = root->child; it; it = it->next) {
        const char *name = it->string;
        if (!name || !*name) {
            dsq_fail(err, DSQ_E_FORMAT, "%s: empty tensor name in header", what);
            goto fail;
        }
        if (!strcmp(name, "__metadata__")) {
            if (n_meta++) {
                dsq_fail(err, DSQ_E_FORMAT, "%s: duplicate __metadata__", what);
                goto fail;
            }
            if (!cJSON_IsObject(it)) {
                dsq_fail(err, DSQ_E_FORMAT, "%s: __metadata__ is not an object", what);
                goto fail;
            }
            for (const cJSON *m = it->child; m; m = m->next)
                if (!cJSON_IsString(m)) {
                    dsq_fail(err, DSQ_E_FORMAT, "%s: __metadata__ value '%.64s' is not a string",
                             what, m->string ? m->string : "");
                    goto fail;
                }
            continue;
        }
        if (!cJSON_IsObject(it)) {
            dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%.200s': entry is not an object", what, name);
            goto fail;
        }
        st_entry *e = &h->e[h->n];
        const cJSON *dt = dsq_json_get(it, "dtype");
        const cJSON *sh = dsq_json_get(it, "shape");
        const cJSON *off = dsq_json_get(it, "data_offsets");
        if (!cJSON_IsString(dt)) {
            dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%.200s': missing dtype", what, name);
            goto fail;
        }
        e->dtype = dsq_dtype_from_name(dt->valuestring);
        if (e->dtype == DSQ_DT_INVALID) {
            dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%.200s': unknown dtype '%.32s'", what, name,
                     dt->valuestring);
            goto fail;
        }
        if (!cJSON_IsArray(sh)) {
            dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%.200s': missing shape", what, name);
            goto fail;
        }
        int nd = cJSON_GetArraySize(sh);
        if (nd > 4) {
            dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: tensor '%.200s': %d dimensions (at most 4 supported)",
                     what, name, nd);
            rc = DSQ_E_UNSUPPORTED;
            goto fail;
        }
        uint64_t numel = 1;
        int k = 0;
        for (const cJSON *d = sh->child; d; d = d->next, k++) {
            uint64_t v;
            if (!dsq_json_u64(d, 0, ST_MAX_INT, &v)) {
                dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%.200s': shape[%d] is not a non-negative integer",
                         what, name, k);
                goto fail;
            }
            if (dsq_mul_ovf(numel, v, &numel) || numel > (1ull << 62)) {
                dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%.200s': shape overflows", what, name);
                goto fail;
            }
            e->shape[k] = (int64_t)v;
        }
        e->n_dims = nd;
        e->numel = (int64_t)numel;
        uint64_t nbytes;
        if (dsq_mul_ovf(numel, dsq_dtype_size(e->dtype), &nbytes)) {
            dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%.200s': byte size overflows", what, name);
            goto fail;
        }
        int64_t be[2];
        if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || dsq_json_ints(off, 0, ST_MAX_INT, be, 2) != 2) {
            dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%.200s': data_offsets must be [begin, end]",
                     what, name);
            goto fail;
        }
        e->begin = (uint64_t)be[0];
        e->end = (uint64_t)be[1];
        if (e->end < e->begin) {
            dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%.200s': data_offsets end < begin", what, name);
            goto fail;
        }
        if (e->end - e->begin != nbytes) {
            dsq_fail(err, DSQ_E_FORMAT,
                     "%s: tensor '%.200s': %llu bytes in data_offsets but shape x dtype needs %llu",
                     what, name, (unsigned long long)(e->end - e->begin), (unsigned long long)nbytes);
            goto fail;
        }
        if (e->end > data_size) {
            dsq_fail(err, DSQ_E_FORMAT,
                     "%s: tensor '%.200s': data_offsets [%llu, %llu) beyond the data section (%llu bytes)",
                     what, name, (unsigned long long)e->begin, (unsigned long long)e->end,
                     (unsigned long long)data_size);
            goto fail;
        }
        e->name = dsq_strdup(name);
        if (!e->name) { rc = dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", what); goto fail; }
        h->n++;
    }
    /* duplicate names (cJSON keeps both copies of a repeated key) */
    byname = dsq_malloc(sizeof *byname * ((size_t)h->n + 1));
    if (!byname) { rc = dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", what); goto fail; }
    for (int i = 0; i < h->n; i++) byname[i] = &h->e[i];
    qsort(byname, (size_t)h->n, sizeof *byname, cmp_name);
    for (int i = 1; i < h->n; i++)
        if (!strcmp(byname[i - 1]->name, byname[i]->name)) {
            dsq_fail(err, DSQ_E_FORMAT, "%s: duplicate tensor name '%.200s'", what, byname[i]->name);
            goto fail;
        }
    /* spans: sorted by begin they must tile the data section exactly */
    qsort(h->e, (size_t)h->n, sizeof *h->e, cmp_begin);
    uint64_t pos = 0;
    for (int i = 0; i < h->n; i++) {
        st_entry *e = &h->e[i];
        if (e->begin < pos) {
            dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%.200s': data overlaps tensor '%.200s'", what,
                     e->name, h->e[i - 1].name);
            goto fail;
        }
        if (e->begin > pos) {
            dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%.200s': gap of %llu bytes before its data",
                     what, e->name, (unsigned long long)(e->begin - pos));
            goto fail;
        }
        pos = e->end;
    }
    if (pos != data_size) {
        dsq_fail(err, DSQ_E_FORMAT, "%s: %llu trailing bytes after the last tensor", what,
                 (unsigned long long)(data_size - pos));
        goto fail;
    }
    free(byname);
    cJSON_Delete(root);
    return DSQ_OK;
fail:
    free(byname);
    cJSON_Delete(root);
    st_header_free(h);
    return rc;
}
