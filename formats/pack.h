/*
 * pack.h -- packaging a .dsq container for distribution (docs/PACKAGING.md).
 *
 * A pack is one tar archive (plain, zstd or gzip compressed) whose entries,
 * in this order, are
 *   manifest.json                      parts, sizes, xxh3-64 of every part,
 *                                      of the card and of the whole container
 *   MODEL_CARD.md                      the model card, when the caller
 *                                      supplies one (pipeline/card.c)
 *   <model>.dsq.part-0001-of-000N ...  the container cut into parts of at
 *                                      most part_size bytes
 * The manifest comes first so an unpacker reading the archive forward knows
 * every expected size and checksum before the first part arrives.  Packing
 * reads the container twice (checksums, then the archive) with a fixed
 * buffer, so memory does not grow with the container.
 *
 * Outline:
 *   dsq_pack()        container -> archive, written to a temporary name and
 *                     renamed (formats/afile.c); refuses a damaged container
 *   dsq_unpack()      archive (or a folder holding the extracted entries) ->
 *                     DIR/<model>.dsq, renamed into place only after every
 *                     part checksum, the whole-file checksum and every array
 *                     checksum of the reassembled container matched
 *   dsq_pack_check()  the same checks without writing anything
 */
#ifndef DSQ_PACK_H
#define DSQ_PACK_H

#include "dsq.h"

enum { DSQ_PACK_NONE = 0, DSQ_PACK_GZIP = 1, DSQ_PACK_ZSTD = 2 };

/* Default part size: 2000 MiB, under the 2 GiB per-file caps of common
 * hosting sites (and FAT32's 4 GiB). */
#define DSQ_PACK_DEFAULT_PART (2000ull << 20)
#define DSQ_PACK_MAX_PARTS 99999
#define DSQ_PACK_NAME_CAP 240 /* longest container name; part names add 26 */

/* One part: its entry name, where it starts in the container, its bytes and
 * their xxh3-64. */
typedef struct dsq_pack_part {
    char name[DSQ_PACK_NAME_CAP + 40];
    uint64_t off, size, xxh3;
} dsq_pack_part;

/* The pack as planned once the first pass has read the whole container:
 * everything the manifest says about it, for the model card. */
typedef struct dsq_pack_plan {
    const char *name;            /* container file name ("model.dsq") */
    uint64_t size, xxh3;         /* container bytes and their xxh3-64 */
    uint64_t part_size;
    int n_parts;
    const dsq_pack_part *parts;  /* n_parts, in order */
} dsq_pack_plan;

/* Writes the model card: called once, after the first pass, with the open
 * container (formats/container.h) and the plan.  Returns DSQ_OK with *text
 * from malloc (NUL-terminated; dsq_pack frees it), or an error that fails
 * the pack. */
struct dsq_ctr;
typedef int (*dsq_pack_card_fn)(void *arg, const struct dsq_ctr *c, const dsq_pack_plan *plan, char **text,
                                dsq_err *err);

typedef struct dsq_pack_opts {
    const char *src;      /* the .dsq container */
    const char *out;      /* the archive to write */
    uint64_t part_size;   /* bytes per part, 0 = DSQ_PACK_DEFAULT_PART */
    int compress;         /* DSQ_PACK_NONE / _GZIP / _ZSTD */
    int threads;          /* zstd worker threads; <= 1 single-threaded */
    int force;            /* overwrite out */
    /* the model card (pipeline/card.h: dsq_card_text), or NULL for a pack
     * without MODEL_CARD.md (the manifest then has no "card") */
    dsq_pack_card_fn card;
    void *card_arg;
    /* called as bytes of the container are archived / reassembled (may be NULL) */
    void (*progress)(void *arg, uint64_t done, uint64_t total);
    void *progress_arg;
} dsq_pack_opts;

typedef struct dsq_pack_info {
    char name[256];          /* container file name ("model.dsq") */
    uint64_t size, xxh3;     /* container bytes and their xxh3-64 */
    int n_parts;
    uint64_t part_size;
    uint64_t archive_bytes;  /* archive file size (pack) or bytes read (unpack, check) */
    int64_t n_checked;       /* checksums verified: parts, card, whole file, arrays */
    int folder;              /* the source was a folder of extracted entries */
} dsq_pack_info;

/* Pack o->src into o->out.  Compression filters are looked up at run time;
 * DSQ_E_UNSUPPORTED names the missing one. */
int dsq_pack(const dsq_pack_opts *o, dsq_pack_info *info, dsq_err *err);

enum { DSQ_UNPACK_FORCE = 1 };
/* Reassemble the container of `src` (a pack archive, or a folder holding its
 * extracted manifest.json and parts) as DIR/<name from the manifest>.  DIR is
 * created if missing (its parent must exist) and removed again on failure if
 * it was created here.  Only that one file is written; entry names of the
 * archive are never used as paths. */
int dsq_unpack(const char *src, const char *dir, int flags,
               void (*progress)(void *arg, uint64_t done, uint64_t total), void *progress_arg,
               dsq_pack_info *info, dsq_err *err);

/* Verify a pack archive or folder in one forward pass without writing:
 * manifest, card, every part's size and xxh3, the whole-file xxh3 and the
 * container's fixed header.  Array checksums need the container's directory,
 * which sits at its end, so they are checked by dsq_unpack instead. */
int dsq_pack_check(const char *src, dsq_pack_info *info, dsq_err *err);

#endif
