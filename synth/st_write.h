/*
 * st_write.h -- a small safetensors writer for the synthetic checkpoint
 * generator and tests (real checkpoints are only ever read).
 */
#ifndef DSQ_ST_WRITE_H
#define DSQ_ST_WRITE_H

#include "dsq.h"

/* Tensors are added with their bytes, then the
   the file is written (header padded with spaces to a multiple of 8). */
typedef struct st_writer st_writer;
st_writer *st_writer_new(void);
int st_writer_add(st_writer *w, const char *name, dsq_dtype dt, int n_dims,
                  const int64_t *shape, const void *data, uint64_t nbytes);
/* Writes the file atomically; `meta_json` ("{...}") may be NULL. */
int st_writer_save(st_writer *w, const char *path, int flags, dsq_err *err);
uint64_t st_writer_data_size(const st_writer *w);
void st_writer_free(st_writer *w);

#endif
