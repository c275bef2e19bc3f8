/*
 * formats_int.h -- internal layouts of the formats module: parsed
 * safetensors headers, the checkpoint handle, and the atomic output file.
 */
#ifndef DSQ_FORMATS_INT_H
#define DSQ_FORMATS_INT_H

#include "common.h"
#include <stdio.h>

/* ---- safetensors ---------------------------------------------------------
 * File: u64 LE header length N | N bytes of JSON | data section.
 * Offsets in the JSON are relative to the data section (8 + N). */
#define ST_MAX_HEADER 100000000ull /* the reference reader's cap */

typedef struct st_entry {
    char *name;            /* from malloc */
    dsq_dtype dtype;
    int n_dims;
    int64_t shape[4];
    int64_t numel;
    uint64_t begin, end;   /* relative to the data section */
} st_entry;

typedef struct st_header {
    st_entry *e;           /* from malloc, sorted by begin */
    int n;
    uint64_t header_len;   /* N */
    uint64_t data_start;   /* 8 + N */
} st_header;

/* Parse and validate the JSON header of a safetensors file whose data
 * section holds data_size bytes.  `what` names the file in messages. */
int st_parse_header(st_header *h, const char *what, const char *json, uint64_t n,
                    uint64_t data_size, dsq_err *err);
void st_header_free(st_header *h);

/* ---- atomic output file (afile.c) ---------------------------------------
 * Writes go to "<dir>/.<name>.tmp.XXXXXX"; commit() flushes, fsyncs, renames
 * over the target and fsyncs the directory.  Errors are sticky: after the
 * first failure every write is a no-op and commit returns that error.  An
 * optional XXH3-64 state sees every byte written. */
typedef struct dsq_afile dsq_afile;
enum { DSQ_AFILE_FORCE = 1, DSQ_AFILE_HASH = 2 };
int dsq_afile_open(dsq_afile **out, const char *path, int flags, dsq_err *err);
int dsq_afile_write(dsq_afile *f, const void *p, size_t n);
int dsq_afile_pad(dsq_afile *f, unsigned align); /* zero bytes up to a multiple */
int dsq_afile_pwrite(dsq_afile *f, const void *p, size_t n, uint64_t off); /* patch earlier bytes */
uint64_t dsq_afile_tell(const dsq_afile *f);
uint64_t dsq_afile_hash(const dsq_afile *f); /* xxh3 of bytes written via write/pad */
/* Push buffered bytes to the temporary file (no fsync), so the bytes written
 * so far can be read back from dsq_afile_tmp_path() and checked before
 * commit renames them into place. */
int dsq_afile_flush(dsq_afile *f);
const char *dsq_afile_tmp_path(const dsq_afile *f);
int dsq_afile_commit(dsq_afile *f, dsq_err *err); /* frees f */
void dsq_afile_abort(dsq_afile *f);               /* unlink temp, free; NULL ok */
/* Remove every temp file still open, and the temporary folders they were
 * in (signal handlers call this). */
void dsq_afile_cleanup_all(void);
/* A temporary folder beside target ("<dir>/.<name>.tmp.XXXXXX" into out, cap
 * >= PATH_MAX + 32), removed by dsq_afile_cleanup_all while registered;
 * dsq_afile_dir_done unregisters it (renamed into place, or removed). */
int dsq_afile_mkdtemp(const char *target, char *out, size_t cap, dsq_err *err);
void dsq_afile_dir_done(const char *dir);
/* Remove a folder of plain files (its files, then itself; unregistered). */
void dsq_afile_remove_dir(const char *dir);
/* fsync the folder holding path, so a rename into it is durable. */
void dsq_afile_sync_parent(const char *path);

#endif
