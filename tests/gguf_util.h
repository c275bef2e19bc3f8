/*
 * gguf_util.h -- code shared by the GGUF tests (test_gguf.c, test_llama.c): a
 * sample file with every kind of metadata value, and a text dump of a GGUF
 * file in the format tests/llama/ggml_gguf.c prints from ggml's own reader,
 * so the two readers can be compared line for line.
 *
 * Dump format, one record per line:
 *   version V / alignment A / data_offset D / n_kv N
 *   kv KEY TYPE VALUE                  scalar (TYPE: value type id)
 *   kv KEY 9 ELEM N V1 V2 ...          array
 *     integers and bools in decimal, f32 / f64 as the hex of their bits,
 *     strings as the hex of their bytes ("-" when empty)
 *   n_tensors N
 *   tensor NAME TYPE NE0 NE1 NE2 NE3 OFFSET NBYTES FNV1A64-OF-DATA
 */
#ifndef DSQ_TESTS_GGUF_UTIL_H
#define DSQ_TESTS_GGUF_UTIL_H

#include "dsq.h"
#include "formats/gguf.h"

#include <stdint.h>

/* Tensors of the sample file. */
#define TG_N_TENSORS 6
typedef struct tg_tensor {
    const char *name;
    int type, n_dims;
    int64_t ne[4];
} tg_tensor;
extern const tg_tensor tg_tensors[TG_N_TENSORS];

/* Byte k of the payload of sample tensor i. */
uint8_t tg_byte(int i, uint64_t k);

/* Write the sample file.  order 0: tensors in declared order, whole;
 * 1: in reverse order, each in pieces of 7 bytes back to front; 2: pieces of
 * every tensor interleaved.  align 0 leaves general.alignment out. */
int tg_write_sample(const char *path, int order, uint32_t align, dsq_err *err);

/* The dump text of g (malloc'd, NUL-terminated). */
char *tg_dump(const dsq_gguf *g);

uint64_t tg_fnv(const void *p, uint64_t n);

#endif
