/*
 * ckpt_int.h -- layout of the checkpoint handle, shared by ckpt.c (folders),
 * archive.c (tar/zip through libarchive) and src.c (streaming).
 */
#ifndef DSQ_CKPT_INT_H
#define DSQ_CKPT_INT_H

#include "formats_int.h"
#include "quant/quant.h"

#define CK_BLOB_CAP (256u << 20) /* largest side file we accept (tokenizer.json) */

enum { CK_CONFIG, CK_INDEX, CK_TOKENIZER, CK_TOKCFG, CK_GENCFG, CK_N_BLOBS };
extern const char *const ck_blob_names[CK_N_BLOBS];

typedef struct ck_shard {
    char *name;       /* file name as the index spells it; from malloc */
    char *path;       /* folder: full path; archive: entry path.  From malloc */
    int fd;           /* folder only, else -1 */
    uint8_t *map;     /* folder: whole-file read-only mapping */
    uint64_t size;    /* file (or archive entry) size in bytes */
    st_header h;      /* entries sorted by data offset */
    uint8_t **edata;  /* archive: copies of the scale tensors' bytes (others NULL) */
} ck_shard;

/* A compressed-tensors module (ckpt_ct.c): the scheme of a weight and its
 * companion tensors, or (link >= 0) a companion itself. */
enum { CKQ_INT8U = 1, CKQ_COMPACT = 2, CKQ_ZP = 4 }; /* conversions into dsq's layout */
typedef struct ck_q {
    int scheme;                      /* dsq_qtype of a quantized weight, else -1 */
    int scale, zero, shape, gidx, global; /* companion tensor indices, or -1 */
    int link;                        /* a companion: the weight it belongs to */
    int packed;                      /* stored as weight_packed */
    int conv;                        /* CKQ_* */
} ck_q;

struct dsq_ct_config;

struct dsq_ckpt {
    char *path;
    int archive;
    dsq_config cfg;
    char *blob[CK_N_BLOBS];   /* side files, NUL-terminated; from malloc */
    size_t blob_len[CK_N_BLOBS];
    ck_shard *shards;
    int n_shards;
    dsq_tinfo *t;             /* shard order, then data offset: the stream order */
    int *t_entry;             /* header entry index of each tensor in its shard */
    int n;
    float **scales;           /* [tensor] f32 block scales of FP8 weights; from malloc */
    int *ht;                  /* open-addressing name index */
    size_t ht_cap;
    char *warn[64];
    int n_warn;
    struct dsq_ct_config *ct;  /* compressed-tensors quantization_config, or NULL */
    ck_q *q;                   /* [tensor], compressed-tensors checkpoints only */
    char **own;                /* [tensor] names given by the reader (P.weight of weight_packed) */
};

int ck_finish(dsq_ckpt *ck, int flags, dsq_err *err);
int ck_index_shards(dsq_ckpt *ck, char ***names, int *n, dsq_err *err);
struct archive;
struct archive *dsq_ar_open(const char *path, dsq_err *err);
const char *dsq_ar_norm(const char *p);
int dsq_ar_read(struct archive *a, void *buf, size_t n, const char *what, dsq_err *err);
int dsq_ar_skip(struct archive *a, uint64_t n, const char *what, dsq_err *err);
int ck_open_archive(dsq_ckpt *ck, int flags, dsq_err *err);
void ck_warn(dsq_ckpt *ck, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* compressed-tensors (ckpt_ct.c): link the companions of every quantized
 * module when config.json says compressed-tensors (rebuild: the name index,
 * after weight_packed tensors take their weight's name). */
int ck_ct_link(dsq_ckpt *ck, int (*rebuild)(dsq_ckpt *), dsq_err *err);
int ck_is_companion(const dsq_ckpt *ck, int i);
/* The dsq scheme of a compressed-tensors weight, else -1 (by dtype). */
int dsq_ckpt_scheme(const dsq_ckpt *ck, int i);
/* Bytes of tensor i with its companions. */
uint64_t dsq_ckpt_stored_bytes(const dsq_ckpt *ck, int i);
/* The quant view of compressed-tensors weight i whose bytes are data;
 * *tmp (free it after use) holds what had to be converted. */
int dsq_ckpt_qmat(const dsq_ckpt *ck, int i, const void *data, dsq_qmat *m, void **tmp, dsq_err *err);

int dsq_ckpt_n_warnings(const dsq_ckpt *ck);
const char *dsq_ckpt_warning(const dsq_ckpt *ck, int i);

#endif
