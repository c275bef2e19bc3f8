/*
 * source_int.h -- what a model-source backend implements (source.h): a bid
 * on a path, an open that fills the common part of the handle (config,
 * config.json text, the tensor list), and the operations below.
 */
#ifndef DSQ_SOURCE_INT_H
#define DSQ_SOURCE_INT_H

#include "formats/source.h"
#include "common.h"

typedef struct src_ops {
    void (*close)(dsq_src *s);  /* frees the backend state */
    int (*qmat)(const dsq_src *s, int i, dsq_qmat *m, const void **colscale, dsq_err *err);
    int (*rows_f32)(const dsq_src *s, int i, int64_t r0, int64_t r1, float *dst, dsq_err *err);
    int (*next)(dsq_src *s, int *i, dsq_err *err);
    int (*data)(dsq_src *s, dsq_qmat *m, const void **colscale, dsq_err *err);
    const void *(*file)(dsq_src *s, const char *name, size_t *len, dsq_err *err);
    int (*part)(const dsq_src *s, int i, char *path, size_t cap);
} src_ops;

typedef struct src_backend {
    const char *name;
    /* How well this backend reads path (0: not at all; the highest bid
     * opens it).  head: the first n bytes of a regular file (n may be 0);
     * is_dir: path is a folder. */
    int (*bid)(const char *path, int is_dir, const uint8_t *head, size_t n);
    int (*open)(dsq_src *s, const char *path, int flags, dsq_err *err);
} src_backend;

struct dsq_src {
    const src_ops *ops;
    const char *kind;          /* static string */
    char *path;                /* from malloc */
    const dsq_config *cfg;     /* owned by the backend */
    const char *config_json;   /* owned by the backend */
    size_t config_len;
    dsq_stensor *t;            /* from malloc; names owned by the backend */
    int n;
    int random_access;
    int *ht;                   /* open-addressing index of t[].name; from malloc */
    size_t ht_cap;
    void *be;                  /* backend state */
};

extern const src_backend dsq_src_backend_ckpt, dsq_src_backend_dsq, dsq_src_backend_gguf;

#endif
