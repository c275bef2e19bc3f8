/*
 * container.h -- the .dsq container (docs/FORMAT.md): a reader that maps
 * the file and validates its structure (open, find, view, verify), and a
 * streaming writer that plans every array's place first, then takes the
 * arrays in any order (so routed experts arriving one by one land in their
 * stacked tensor) and writes the JSON sections and the header last.
 */
#ifndef DSQ_CONTAINER_H
#define DSQ_CONTAINER_H

#include "dsq.h"
#include "quant/quant.h"
#include "formats/writer.h"

#define DSQ_CTR_MAGIC "DSQ1\r\n\x1a\n"
#define DSQ_CTR_HEADER 128
#define DSQ_CTR_ALIGN 64
#define DSQ_CTR_DATA_OFFSET 4096

/* Arrays of a tensor.  COLSCALE (optional, f32 [cols] per matrix) is a
 * per-input-column multiplier applied after dequantization (activation-aware
 * scaling that could not be folded elsewhere). */
enum { DSQ_ARR_DATA = 0, DSQ_ARR_SCALE = 1, DSQ_ARR_ZERO = 2, DSQ_ARR_COLSCALE = 3, DSQ_ARR_N = 4 };

/* flags_required bits (docs/FORMAT.md section 2) */
#define DSQ_CTR_FLAG_COLSCALE 1ull
#define DSQ_CTR_FLAGS_KNOWN DSQ_CTR_FLAG_COLSCALE

/* ---- fixed header ---------------------------------------------------------
 * The 128 bytes at offset 0, field by field (docs/FORMAT.md section 2); all
 * little-endian.  dsq_ctr_header_encode / _decode are the only code that
 * knows where each field sits.
 *
 *   off  type    field
 *     0  u8[8]   magic            DSQ_CTR_MAGIC
 *     8  u16     version_major    1
 *    10  u16     version_minor    0 (higher minors are additions only)
 *    12  u32     header_size      128 (bytes beyond 128 are ignored)
 *    16  u64     flags_required   DSQ_CTR_FLAG_* a reader must understand
 *    24  u64     flags_optional   bits a reader may ignore
 *    32  u64     file_size        total bytes
 *    40  u64     data_offset      multiple of 64
 *    48  u64     data_size
 *    56  u64     meta_offset      metadata JSON
 *    64  u64     meta_size
 *    72  u64     dir_offset       directory JSON
 *    80  u64     dir_size
 *    88  u64     n_tensors        directory entries
 *    96  u64     meta_xxh3        of the metadata bytes
 *   104  u64     dir_xxh3         of the directory bytes
 *   112  u64     reserved         0
 *   120  u64     header_xxh3      of header bytes [0, DSQ_CTR_HEADER_HASHED)
 */
#define DSQ_CTR_HEADER_HASHED 120 /* bytes covered by header_xxh3, which follows them */

typedef struct dsq_ctr_header {
    uint8_t magic[8];
    uint16_t version_major, version_minor;
    uint32_t header_size;
    uint64_t flags_required, flags_optional;
    uint64_t file_size;
    uint64_t data_offset, data_size;  /* absolute offset, bytes */
    uint64_t meta_offset, meta_size;
    uint64_t dir_offset, dir_size;
    uint64_t n_tensors;
    uint64_t meta_xxh3, dir_xxh3;
    uint64_t reserved;
    uint64_t header_xxh3;
} dsq_ctr_header;

/* A header for this version: magic, version 1.0, header_size 128, every
 * other field 0. */
void dsq_ctr_header_init(dsq_ctr_header *h);
/* The 128 bytes of h.  Every field is written as it is, except header_xxh3,
 * which is computed over the bytes before it (h->header_xxh3 is ignored). */
void dsq_ctr_header_encode(const dsq_ctr_header *h, uint8_t out[DSQ_CTR_HEADER]);
/* Read the fields of the header `in` of a file of file_size bytes into *h
 * and check everything the header alone decides, in this order: magic,
 * major version, header_size, header_xxh3, flags_required, file_size, and
 * that the three sections lie inside the file, after the header, without
 * overlapping, with the data section 64-byte aligned.  The section
 * checksums need the sections and are the caller's.  path names the file in
 * messages.  *h is filled in even when a check fails, so a header can be
 * decoded, edited and encoded again (tests, the fuzz target).
 * @return DSQ_OK, DSQ_E_FORMAT, DSQ_E_UNSUPPORTED (version, flags) or
 *         DSQ_E_CHECKSUM. */
int dsq_ctr_header_decode(const uint8_t in[DSQ_CTR_HEADER], uint64_t file_size, dsq_ctr_header *h,
                          const char *path, dsq_err *err);

typedef struct dsq_carray {
    uint64_t offset, size; /* absolute; size 0 when absent */
    uint64_t *xxh3;        /* one per expert slice (or one); owned by the handle */
    int n_hash;
} dsq_carray;

typedef struct dsq_ctensor {
    const char *name;      /* owned by the handle */
    dsq_role role;
    int layer, is_mtp;
    int n_dims;
    int64_t shape[4];      /* logical shape ([experts, out, in] when stacked) */
    int experts;           /* 0: not stacked */
    int scheme;            /* dsq_qtype */
    int64_t rows, cols;    /* one (expert's) matrix; 1-D tensors are 1 x n */
    dsq_carray arr[DSQ_ARR_N];
    const char *recipe;    /* compact JSON of the recipe object, or "{}" */
} dsq_ctensor;

/* ---- reader ------------------------------------------------------------- */
typedef struct dsq_ctr dsq_ctr;

/* True if the file at path starts with the container magic. */
int dsq_ctr_sniff(const char *path);
int dsq_ctr_open(dsq_ctr **out, const char *path, dsq_err *err);
void dsq_ctr_close(dsq_ctr *c);
const dsq_config *dsq_ctr_config(const dsq_ctr *c);
int dsq_ctr_n_tensors(const dsq_ctr *c);
const dsq_ctensor *dsq_ctr_tensor(const dsq_ctr *c, int i);
int dsq_ctr_find(const dsq_ctr *c, const char *name); /* index or -1 */
/* The matrix of tensor i (expert e of a stacked tensor, else e = 0), with
 * pointers into the mapping. */
int dsq_ctr_qmat(const dsq_ctr *c, int i, int e, dsq_qmat *m, dsq_err *err);
/* Column multipliers of tensor i, expert e ([cols] f32, possibly
 * unaligned little-endian bytes), or NULL when the tensor has none. */
const void *dsq_ctr_colscale(const dsq_ctr *c, int i, int e);
/* Check every array's checksums; the message names the first bad tensor
 * (and expert).  *n_checked receives the number of arrays checked. */
int dsq_ctr_verify(const dsq_ctr *c, int64_t *n_checked, dsq_err *err);
/* A side file ("tokenizer.json"), decompressed into a malloc'd buffer
 * (NUL-terminated); DSQ_E_NOTFOUND if absent. */
int dsq_ctr_file(const dsq_ctr *c, const char *name, char **data, size_t *len, dsq_err *err);
/* The metadata JSON text (NUL-terminated copy owned by the handle). */
const char *dsq_ctr_meta(const dsq_ctr *c);
/* The source's config.json text, as the metadata keeps it. */
const char *dsq_ctr_config_json(const dsq_ctr *c);
uint64_t dsq_ctr_file_size(const dsq_ctr *c);
const char *dsq_ctr_path(const dsq_ctr *c);

/* ---- writer ------------------------------------------------------------- */
typedef struct dsq_ctrw dsq_ctrw;

/* A tensor to write: the model writer's descriptor (writer.h); a
 * container stores every tensor whole, so `part` is always DSQ_PART_WHOLE. */
typedef dsq_mw_tensor dsq_ctw_tensor;

int dsq_ctrw_open(dsq_ctrw **out, const char *path, int force, dsq_err *err);
/* Plan one tensor; returns its index (>= 0) or an error.  Before the
 * layout the tensor gets its place with the others; after it, it is
 * appended to the data section (for writers that learn their tensors as
 * they go: the directory stays in data-offset order either way). */
int dsq_ctrw_add_tensor(dsq_ctrw *w, const dsq_ctw_tensor *t, dsq_err *err);
/* A side file, stored zlib-compressed. */
int dsq_ctrw_add_file(dsq_ctrw *w, const char *name, const void *data, size_t len, dsq_err *err);
/* Fix the layout; after this no more side files: dsq_ctrw_write,
 * dsq_ctrw_add_tensor (appending) and dsq_ctrw_finish. */
int dsq_ctrw_layout(dsq_ctrw *w, dsq_err *err);
/* Bytes of array `which` of tensor i, expert e (0 when not stacked).  n must
 * be exactly the slice size; each slice is written once. */
int dsq_ctrw_write(dsq_ctrw *w, int i, int e, int which, const void *p, uint64_t n, dsq_err *err);
/* Size of one slice of array `which` of tensor i. */
uint64_t dsq_ctrw_slice_size(const dsq_ctrw *w, int i, int which);
/* Write metadata (meta_json: a JSON object text; the writer adds "files",
 * "format" and "format_version"), directory and header; fsync and rename.
 * Frees w whatever the outcome. */
int dsq_ctrw_finish(dsq_ctrw *w, const char *meta_json, dsq_err *err);
void dsq_ctrw_abort(dsq_ctrw *w); /* NULL ok; removes the temporary file */


#endif
