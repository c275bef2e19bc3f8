/*
 * gguf.h -- GGUF version 3, the file format of ggml and llama.cpp: a
 * validating reader over a read-only mapping and a streaming writer on top
 * of the atomic output file (formats_int.h).
 *
 * Layout (all little-endian, no padding anywhere in the header):
 *   1. magic "GGUF"                          4 bytes
 *   2. version                               u32, 3 (2 is read too: same layout)
 *   3. tensor_count                          u64
 *   4. kv_count                              u64
 *   5. kv_count records:    key (string), value type (i32), value
 *        string  = u64 byte length, the bytes (UTF-8, no NUL terminator)
 *        array   = element type (i32), u64 count, the elements back to back
 *   6. tensor_count infos:  name (string, < 64 bytes), n_dims (u32, <= 4),
 *        ne[n_dims] (i64 each, ne[0] the contiguous dimension), ggml type
 *        (i32), offset (u64, relative to the data section)
 *   7. zero padding to ALIGN = general.alignment (u32, a power of two) or 32
 *   8. the data section: each payload in info order at the running sum of
 *      the padded sizes before it, each padded with zeros to ALIGN (the
 *      reader lets the last padding be missing, as ggml does)
 *
 * Reading:
 *   1) dsq_gguf_open() maps the file and validates all of it before
 *      returning (see gguf.c for the list of checks; each failure is one
 *      line naming the file and the key or tensor);
 *   2) typed lookups by key (dsq_gguf_get_u32(), ...: a key stored with
 *      another type is an error, as in llama.cpp's loader) or the records in
 *      file order (dsq_gguf_kv_at());
 *   3) tensor infos with pointers into the mapping (dsq_gguf_tensor_at(),
 *      dsq_gguf_find_tensor());
 *   4) dsq_gguf_close().
 *
 * Writing:
 *   1) dsq_ggufw_open() (temp file beside the target);
 *   2) metadata with dsq_ggufw_set_*() and tensors with
 *      dsq_ggufw_add_tensor(), in the order they go into the file;
 *   3) dsq_ggufw_write() of payload bytes, whole tensors or pieces (rows,
 *      experts) at any offset and in any order: the first write fixes the
 *      layout and writes the header, so all metadata and tensors are declared
 *      before it.  Bytes written in file order are buffered; the rest go to
 *      their place with pwrite.  Nothing is held whole in memory;
 *   4) dsq_ggufw_finish() checks every payload byte was written exactly once,
 *      pads, fsyncs and renames into place (or dsq_ggufw_abort()).
 */
#ifndef DSQ_GGUF_H
#define DSQ_GGUF_H

#include "dsq.h"

#include <stdint.h>

#define DSQ_GGUF_MAGIC "GGUF"
#define DSQ_GGUF_VERSION 3
#define DSQ_GGUF_DEFAULT_ALIGN 32
#define DSQ_GGUF_MAX_NAME 63          /* tensor name bytes (ggml's GGML_MAX_NAME is 64 with the NUL) */
#define DSQ_GGUF_MAX_DIMS 4

/* Metadata value types (the i32 stored before each value). */
enum {
    DSQ_GGUF_U8 = 0, DSQ_GGUF_I8 = 1, DSQ_GGUF_U16 = 2, DSQ_GGUF_I16 = 3,
    DSQ_GGUF_U32 = 4, DSQ_GGUF_I32 = 5, DSQ_GGUF_F32 = 6, DSQ_GGUF_BOOL = 7,
    DSQ_GGUF_STRING = 8, DSQ_GGUF_ARRAY = 9, DSQ_GGUF_U64 = 10, DSQ_GGUF_I64 = 11,
    DSQ_GGUF_F64 = 12, DSQ_GGUF_N_VTYPES = 13
};

/* ggml tensor type ids this module names (the full table is in gguf.c). */
enum {
    DSQ_GGML_F32 = 0, DSQ_GGML_F16 = 1, DSQ_GGML_Q4_0 = 2, DSQ_GGML_Q4_1 = 3,
    DSQ_GGML_Q5_0 = 6, DSQ_GGML_Q5_1 = 7, DSQ_GGML_Q8_0 = 8, DSQ_GGML_Q2_K = 10,
    DSQ_GGML_Q3_K = 11, DSQ_GGML_Q4_K = 12, DSQ_GGML_Q5_K = 13, DSQ_GGML_Q6_K = 14,
    DSQ_GGML_Q8_K = 15, DSQ_GGML_IQ4_NL = 20, DSQ_GGML_IQ4_XS = 23, DSQ_GGML_I8 = 24,
    DSQ_GGML_I16 = 25, DSQ_GGML_I32 = 26, DSQ_GGML_I64 = 27, DSQ_GGML_F64 = 28,
    DSQ_GGML_BF16 = 30, DSQ_GGML_MXFP4 = 39, DSQ_GGML_NVFP4 = 40,
    DSQ_GGML_N_TYPES = 43            /* ids below this that are not removed are known */
};

/* "u32", "string", ...; "?" for an unknown id. */
const char *dsq_gguf_vtype_name(int vtype);
/* Bytes of one scalar of a numeric or bool type; 0 for string, array, unknown. */
int dsq_gguf_vtype_size(int vtype);
/* ggml's name of a type ("f32", "q4_K", "bf16"); NULL for unknown or removed ids. */
const char *dsq_ggml_type_name(int type);
/* 1 and the block geometry for a known type id, 0 otherwise. */
int dsq_ggml_type_block(int type, int *blck, int *bytes);
/* Payload bytes of a tensor: (ne0 / blck) * bytes * ne1 * ne2 * ne3.
 * DSQ_E_UNSUPPORTED (unknown type), DSQ_E_FORMAT (ne0 not a multiple of the
 * block, negative ne, or the size overflows 64 bits), else DSQ_OK. */
int dsq_ggml_nbytes(int type, const int64_t ne[DSQ_GGUF_MAX_DIMS], uint64_t *out);
/* True for the block-quantized types (general.quantization_version applies). */
int dsq_ggml_type_is_quantized(int type);

/* ========================================================================
 * Reader
 * ======================================================================== */
typedef struct dsq_gguf dsq_gguf;

typedef struct dsq_gguf_kv {
    const char *key;          /* NUL-terminated, owned by the handle */
    int type;                 /* DSQ_GGUF_*; DSQ_GGUF_ARRAY for arrays */
    int elem;                 /* element type of an array; == type for a scalar */
    uint64_t n;               /* elements (1 for a scalar) */
    const uint8_t *data;      /* the value bytes in the mapping (little-endian,
                                 unaligned); strings start with their u64 length */
    uint64_t nbytes;          /* bytes of the value (after the type / count) */
    const uint64_t *str_off;  /* string arrays: offset of element i's length
                                 field from data; owned by the handle; NULL
                                 otherwise (a string scalar starts at data) */
} dsq_gguf_kv;

typedef struct dsq_gguf_tensor {
    const char *name;         /* NUL-terminated, owned by the handle */
    int type;                 /* ggml type id */
    int n_dims;               /* as stored, 0..4 */
    int64_t ne[DSQ_GGUF_MAX_DIMS]; /* ne[0] contiguous; 1 past n_dims */
    uint64_t offset;          /* relative to the data section */
    uint64_t nbytes;
    const uint8_t *data;      /* into the mapping (ALIGN-aligned in the file) */
} dsq_gguf_tensor;

int dsq_gguf_open(dsq_gguf **out, const char *path, dsq_err *err);
void dsq_gguf_close(dsq_gguf *g);       /* NULL ok */

const char *dsq_gguf_path(const dsq_gguf *g);
uint32_t dsq_gguf_version(const dsq_gguf *g);
uint32_t dsq_gguf_alignment(const dsq_gguf *g);
uint64_t dsq_gguf_data_offset(const dsq_gguf *g); /* absolute; header end when no tensors */
uint64_t dsq_gguf_file_size(const dsq_gguf *g);
const uint8_t *dsq_gguf_bytes(const dsq_gguf *g); /* the whole mapped file */

int dsq_gguf_n_kv(const dsq_gguf *g);
const dsq_gguf_kv *dsq_gguf_kv_at(const dsq_gguf *g, int i);
int dsq_gguf_find_key(const dsq_gguf *g, const char *key); /* index or -1 */

/* The scalar under key, stored with exactly `type`, into *out (uint8_t for
 * bool; a string goes to dsq_gguf_get_str).  DSQ_E_NOTFOUND if absent,
 * DSQ_E_FORMAT if stored with another type; both name the file and key. */
int dsq_gguf_get(const dsq_gguf *g, const char *key, int type, void *out, dsq_err *err);
static inline int dsq_gguf_get_u8(const dsq_gguf *g, const char *k, uint8_t *v, dsq_err *e) { return dsq_gguf_get(g, k, DSQ_GGUF_U8, v, e); }
static inline int dsq_gguf_get_i8(const dsq_gguf *g, const char *k, int8_t *v, dsq_err *e) { return dsq_gguf_get(g, k, DSQ_GGUF_I8, v, e); }
static inline int dsq_gguf_get_u16(const dsq_gguf *g, const char *k, uint16_t *v, dsq_err *e) { return dsq_gguf_get(g, k, DSQ_GGUF_U16, v, e); }
static inline int dsq_gguf_get_i16(const dsq_gguf *g, const char *k, int16_t *v, dsq_err *e) { return dsq_gguf_get(g, k, DSQ_GGUF_I16, v, e); }
static inline int dsq_gguf_get_u32(const dsq_gguf *g, const char *k, uint32_t *v, dsq_err *e) { return dsq_gguf_get(g, k, DSQ_GGUF_U32, v, e); }
static inline int dsq_gguf_get_i32(const dsq_gguf *g, const char *k, int32_t *v, dsq_err *e) { return dsq_gguf_get(g, k, DSQ_GGUF_I32, v, e); }
static inline int dsq_gguf_get_u64(const dsq_gguf *g, const char *k, uint64_t *v, dsq_err *e) { return dsq_gguf_get(g, k, DSQ_GGUF_U64, v, e); }
static inline int dsq_gguf_get_i64(const dsq_gguf *g, const char *k, int64_t *v, dsq_err *e) { return dsq_gguf_get(g, k, DSQ_GGUF_I64, v, e); }
static inline int dsq_gguf_get_f32(const dsq_gguf *g, const char *k, float *v, dsq_err *e) { return dsq_gguf_get(g, k, DSQ_GGUF_F32, v, e); }
static inline int dsq_gguf_get_f64(const dsq_gguf *g, const char *k, double *v, dsq_err *e) { return dsq_gguf_get(g, k, DSQ_GGUF_F64, v, e); }
static inline int dsq_gguf_get_bool(const dsq_gguf *g, const char *k, uint8_t *v, dsq_err *e) { return dsq_gguf_get(g, k, DSQ_GGUF_BOOL, v, e); }
/* Any integer type (or bool) as int64_t; a u64 above INT64_MAX is DSQ_E_FORMAT. */
int dsq_gguf_get_int(const dsq_gguf *g, const char *key, int64_t *out, dsq_err *err);
/* A string value: *p points into the mapping, *len bytes, NOT NUL-terminated
 * (it may even hold NUL bytes). */
int dsq_gguf_get_str(const dsq_gguf *g, const char *key, const char **p, uint64_t *len, dsq_err *err);
/* A string copied into buf (cap bytes with the NUL); DSQ_E_FORMAT if it does
 * not fit or holds a NUL byte. */
int dsq_gguf_get_cstr(const dsq_gguf *g, const char *key, char *buf, size_t cap, dsq_err *err);
/* The array under key whose elements have type elem (-1: any). */
int dsq_gguf_get_arr(const dsq_gguf *g, const char *key, int elem, const dsq_gguf_kv **kv, dsq_err *err);

/* Element i (< kv->n) of a value, scalar or array.  _int: integer or bool
 * elements (a u64 above INT64_MAX reads as INT64_MAX); _f64: any numeric
 * element; _str: string elements (pointer into the mapping, not
 * NUL-terminated). */
int64_t dsq_gguf_kv_int(const dsq_gguf_kv *kv, uint64_t i);
double dsq_gguf_kv_f64(const dsq_gguf_kv *kv, uint64_t i);
void dsq_gguf_kv_str(const dsq_gguf_kv *kv, uint64_t i, const char **p, uint64_t *len);

int dsq_gguf_n_tensors(const dsq_gguf *g);
const dsq_gguf_tensor *dsq_gguf_tensor_at(const dsq_gguf *g, int i);
int dsq_gguf_find_tensor(const dsq_gguf *g, const char *name); /* index or -1 */

/* ========================================================================
 * Writer
 * ======================================================================== */
typedef struct dsq_ggufw dsq_ggufw;

int dsq_ggufw_open(dsq_ggufw **out, const char *path, int force, dsq_err *err);

/* Metadata, in file order.  Keys are non-empty, at most 65535 bytes, without
 * NUL bytes and unique.  general.alignment must be a u32 power of two (it
 * sets ALIGN).  All fail with DSQ_E_ARG after the first payload write. */
int dsq_ggufw_set(dsq_ggufw *w, const char *key, int type, const void *val, dsq_err *err);
int dsq_ggufw_set_u8(dsq_ggufw *w, const char *key, uint8_t v, dsq_err *err);
int dsq_ggufw_set_i8(dsq_ggufw *w, const char *key, int8_t v, dsq_err *err);
int dsq_ggufw_set_u16(dsq_ggufw *w, const char *key, uint16_t v, dsq_err *err);
int dsq_ggufw_set_i16(dsq_ggufw *w, const char *key, int16_t v, dsq_err *err);
int dsq_ggufw_set_u32(dsq_ggufw *w, const char *key, uint32_t v, dsq_err *err);
int dsq_ggufw_set_i32(dsq_ggufw *w, const char *key, int32_t v, dsq_err *err);
int dsq_ggufw_set_u64(dsq_ggufw *w, const char *key, uint64_t v, dsq_err *err);
int dsq_ggufw_set_i64(dsq_ggufw *w, const char *key, int64_t v, dsq_err *err);
int dsq_ggufw_set_f32(dsq_ggufw *w, const char *key, float v, dsq_err *err);
int dsq_ggufw_set_f64(dsq_ggufw *w, const char *key, double v, dsq_err *err);
int dsq_ggufw_set_bool(dsq_ggufw *w, const char *key, int v, dsq_err *err);
int dsq_ggufw_set_str(dsq_ggufw *w, const char *key, const char *v, dsq_err *err);
int dsq_ggufw_set_strn(dsq_ggufw *w, const char *key, const char *v, uint64_t len, dsq_err *err);
/* An array of n numeric or bool elements (host values: uint8_t for bool). */
int dsq_ggufw_set_arr(dsq_ggufw *w, const char *key, int elem, const void *data, uint64_t n, dsq_err *err);
/* An array of n strings (NUL-terminated; len NULL) or of n strings of the given lengths. */
int dsq_ggufw_set_arr_str(dsq_ggufw *w, const char *key, const char *const *s, const uint64_t *len,
                          uint64_t n, dsq_err *err);

/* Declare a tensor: name (< 64 bytes, unique), ggml type, n_dims (1..4) and
 * ne[0..n_dims-1] (ne[0] contiguous, a multiple of the type's block).
 * Returns its index (>= 0) or an error. */
int dsq_ggufw_add_tensor(dsq_ggufw *w, const char *name, int type, int n_dims, const int64_t *ne,
                         dsq_err *err);
uint64_t dsq_ggufw_nbytes(const dsq_ggufw *w, int i);
/* Fix the layout and write the header (done by the first write if not
 * called).  Refuses a file with quantized tensors but no
 * general.quantization_version. */
int dsq_ggufw_layout(dsq_ggufw *w, dsq_err *err);
/* n payload bytes of tensor i at byte `off` of it; every byte once. */
int dsq_ggufw_write(dsq_ggufw *w, int i, uint64_t off, const void *p, size_t n, dsq_err *err);
/* Check, pad, fsync, rename; frees w whatever the outcome. */
int dsq_ggufw_finish(dsq_ggufw *w, dsq_err *err);
void dsq_ggufw_abort(dsq_ggufw *w);     /* NULL ok; removes the temporary file */

#endif
