/*
 * writer_int.h -- what an output-format backend implements (writer.h).
 * finish and abort release the backend state (not the handle).
 */
#ifndef DSQ_WRITER_INT_H
#define DSQ_WRITER_INT_H

#include "formats/writer.h"
#include "common.h"

typedef struct wr_ops {
    int format;         /* DSQ_OUT_* */
    int splits_kv_b;
    int (*open)(dsq_mwriter *w, const char *path, int force, dsq_err *err);
    int (*check)(const dsq_mwriter *w, const dsq_mw_tensor *t, dsq_err *err);
    int (*add_tensor)(dsq_mwriter *w, const dsq_mw_tensor *t, dsq_err *err);
    int (*add_file)(dsq_mwriter *w, const char *name, const void *data, size_t len, dsq_err *err);
    int (*layout)(dsq_mwriter *w, dsq_err *err);
    int (*put)(dsq_mwriter *w, int i, int e, const dsq_qmat *m, const void *colscale, dsq_err *err);
    uint64_t (*slice_bytes)(const dsq_mwriter *w, int i);
    int (*finish)(dsq_mwriter *w, const char *meta_json, dsq_err *err);
    void (*abort)(dsq_mwriter *w);
} wr_ops;

struct dsq_mwriter {
    const wr_ops *ops;
    char *path;   /* from malloc */
    const dsq_config *cfg;
    uint64_t shard_size; /* folder formats: bytes per shard file, 0 = the format's default */
    void *be;     /* backend state */
};

extern const wr_ops dsq_wr_ops_dsq, dsq_wr_ops_gguf, dsq_wr_ops_ct, dsq_wr_ops_hf;

#endif
