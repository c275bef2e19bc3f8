/*
 * gguf_arch.h -- the DeepSeek architectures of llama.cpp in GGUF
 * (../shared/spec/formats.md A.9): tensor names of each role, both ways.
 * Shared by the GGUF writer (wr_gguf.c) and the GGUF model source
 * (src_gguf.c).
 */
#ifndef DSQ_GGUF_ARCH_H
#define DSQ_GGUF_ARCH_H

#include "dsq.h"
#include <stddef.h>

/* GGUF name of role in layer (-1 for the top-level tensors), part a
 * DSQ_PART_* of writer.h (kv_b_proj has only its two parts).  0, or -1 when
 * GGUF has no such tensor. */
int dsq_gguf_tensor_name(dsq_role role, int layer, int part, char *out, size_t cap);
/* The reverse: 0 with role, layer (-1 top-level) and part, or -1 for a name
 * outside the architecture. */
int dsq_gguf_parse_name(const char *name, dsq_role *role, int *layer, int *part);

#endif
