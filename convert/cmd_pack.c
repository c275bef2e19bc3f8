/*
 * cmd_pack.c -- distributing containers (docs/PACKAGING.md):
 *   dsq pack FILE.dsq -o OUT.tar      manifest, model card and the container
 *                                     in parts, one tar (optionally compressed)
 *   dsq unpack OUT.tar -o DIR         reassemble and verify every checksum
 *   dsq check OUT.tar                 (through cmd_check) verify without writing
 */
#include "convert/cli.h"
#include "formats/source.h"
#include "common.h"
#include "common/pool.h"
#include "formats/pack.h"
#include "pipeline/card.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* "\rpack  42% (700 MiB of 1.6 GiB)" on stderr, redrawn when the percentage moves. */
typedef struct progress {
    const char *what;
    int last;
} progress;

static void on_progress(void *arg, uint64_t done, uint64_t total) {
    progress *p = arg;
    int pct = total ? (int)(100.0 * (double)done / (double)total) : 100;
    if (pct == p->last) return;
    p->last = pct;
    fprintf(stderr, "\r%s %3d%% (%.0f of %.0f MiB)", p->what, pct, (double)done / 1048576.0, (double)total / 1048576.0);
    if (done == total) fprintf(stderr, "\r%60s\r", "");
}

static int ends_with(const char *s, const char *sfx) {
    size_t a = strlen(s), b = strlen(sfx);
    return a >= b && !strcmp(s + a - b, sfx);
}

static int usage_pack(FILE *to) {
    FILE *f = cli_usage_begin(to);
    fprintf(f, "usage: dsq pack FILE.dsq -o OUT.tar [--part-size SIZE] [--compress zstd|gzip|none]\n"
               "                [--report VERIFY.json] [--threads N] [--force] [--quiet]\n\n"
               "Package a container for distribution: one tar archive holding manifest.json (sizes and\n"
               "xxh3-64 of every part and of the whole container), a generated MODEL_CARD.md and the\n"
               "container cut into parts named MODEL.dsq.part-0001-of-000N.  Every checksum of the\n"
               "container is verified first; a damaged container is refused.  Memory stays bounded\n"
               "whatever the container's size; OUT is written under a temporary name and renamed.\n\n"
               "  -o OUT.tar          the archive (.tar, .tar.zst or .tar.gz)\n"
               "  --part-size SIZE    largest part, e.g. 1900M or 4G (default 2000M, under the 2 GiB\n"
               "                      per-file cap of common hosting sites)\n"
               "  --compress C        zstd, gzip or none (default: from OUT's name, else none)\n"
               "  --report FILE       a `dsq verify --json` report whose drift figures go into the card\n"
               "  --threads N         zstd worker threads (default: all cores)\n"
               "  --force             overwrite OUT if it exists\n"
               "  --quiet             no progress line or summary\n");
    return cli_usage_end(to, f);
}

int cmd_pack(int argc, char **argv) {
    dsq_pack_opts o = {0};
    const char *comp = NULL, *report = NULL;
    int quiet = 0;
    o.threads = dsq_default_threads();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is(a, "--help") || cli_is(a, "-h")) return usage_pack(stdout);
        else if (cli_is(a, "-o") && i + 1 < argc) o.out = argv[++i];
        else if (cli_is(a, "--part-size") && i + 1 < argc) {
            long long v = cli_parse_size(argv[++i]);
            if (v < 1) {
                fprintf(stderr, "dsq pack: bad --part-size '%s' (a size like 1900M or 4G)\n", argv[i]);
                return 2;
            }
            o.part_size = (uint64_t)v;
        } else if (cli_is(a, "--compress") && i + 1 < argc) comp = argv[++i];
        else if (cli_is(a, "--report") && i + 1 < argc) report = argv[++i];
        else if (cli_is(a, "--threads") && i + 1 < argc) {
            long t = cli_parse_long(argv[++i], 1, 4096);
            if (t < 0) {
                fprintf(stderr, "dsq %s: --threads takes a number from 1 to 4096\n", "pack");
                return 2;
            }
            o.threads = (int)t;
        }
        else if (cli_is(a, "--force")) o.force = 1;
        else if (cli_is(a, "--quiet")) quiet = 1;
        else if (a[0] == '-') {
            fprintf(stderr, "dsq pack: unknown option '%s'\n", a);
            return usage_pack(stderr);
        } else if (!o.src) o.src = a;
        else return usage_pack(stderr);
    }
    if (!o.src || !o.out) return usage_pack(stderr);
    if (!comp) o.compress = ends_with(o.out, ".zst") || ends_with(o.out, ".tzst") ? DSQ_PACK_ZSTD
                          : ends_with(o.out, ".gz") || ends_with(o.out, ".tgz")   ? DSQ_PACK_GZIP
                                                                                  : DSQ_PACK_NONE;
    else if (cli_is(comp, "zstd")) o.compress = DSQ_PACK_ZSTD;
    else if (cli_is(comp, "gzip")) o.compress = DSQ_PACK_GZIP;
    else if (cli_is(comp, "none")) o.compress = DSQ_PACK_NONE;
    else {
        fprintf(stderr, "dsq pack: --compress takes zstd, gzip or none, not '%s'\n", comp);
        return 2;
    }
    progress pr = {"pack", -1};
    if (!quiet && isatty(2)) {
        o.progress = on_progress;
        o.progress_arg = &pr;
    }
    dsq_err err = {0};
    /* a pack holds a container's bytes; any other model says which command
     * makes one */
    dsq_src *src;
    if (dsq_src_open(&src, o.src, 0, &err)) return cli_err("pack", &err);
    int is_ctr = dsq_src_ctr(src) != NULL;
    const char *kind = dsq_src_kind(src);
    if (!is_ctr) {
        fprintf(stderr, "dsq pack: %s is a %s model, not a .dsq container: make one with dsq convert or dsq quant\n",
                o.src, kind);
        dsq_src_close(src);
        return 1;
    }
    dsq_src_close(src);
    cli_install_signals();
    dsq_pack_info info;
    double t0 = dsq_now();
    if (dsq_pack_with_card(&o, report, &info, &err)) return cli_err("pack", &err);
    double s = dsq_now() - t0;
    static const char *const cn[] = {"uncompressed", "gzip", "zstd"};
    if (!quiet)
        fprintf(stderr, "wrote %s: %s (%.2f MiB, %lld checksums verified) in %d part%s of at most %.2f MiB, %s, "
                        "%.2f MiB, in %.2f s (%.0f MiB/s)\n",
                o.out, info.name, (double)info.size / 1048576.0, (long long)info.n_checked, info.n_parts,
                info.n_parts == 1 ? "" : "s", (double)info.part_size / 1048576.0, cn[o.compress],
                (double)info.archive_bytes / 1048576.0, s, (double)info.size / 1048576.0 / (s > 0 ? s : 1));
    return 0;
}

int cmd_unpack(int argc, char **argv) {
    const char *src = NULL, *dir = NULL;
    int flags = 0, quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is(a, "--help") || cli_is(a, "-h")) {
            printf("usage: dsq unpack ARCHIVE.tar -o DIR [--force] [--quiet]\n"
                   "       dsq unpack FOLDER -o DIR      (a folder holding manifest.json and the parts)\n\n"
                   "Reassemble the container of a pack as DIR/MODEL.dsq.  Entries must be regular files with\n"
                   "plain names, in manifest order; each part's size and xxh3, the whole container's xxh3 and\n"
                   "every array checksum inside it are verified before the file is renamed into place, so a\n"
                   "damaged, incomplete or hostile pack leaves nothing behind.  DIR is created if missing.\n\n"
                   "  -o DIR      output folder (only the container is written there)\n"
                   "  --force     overwrite DIR/MODEL.dsq if it exists\n"
                   "  --quiet     no progress line or summary\n");
            return 0;
        } else if (cli_is(a, "-o") && i + 1 < argc) dir = argv[++i];
        else if (cli_is(a, "--force")) flags |= DSQ_UNPACK_FORCE;
        else if (cli_is(a, "--quiet")) quiet = 1;
        else if (a[0] == '-') {
            fprintf(stderr, "dsq unpack: unknown option '%s'\n", a);
            return 2;
        } else if (!src) src = a;
        else {
            fprintf(stderr, "usage: dsq unpack ARCHIVE.tar -o DIR\n");
            return 2;
        }
    }
    if (!src || !dir) {
        fprintf(stderr, "usage: dsq unpack ARCHIVE.tar -o DIR\n");
        return 2;
    }
    progress pr = {"unpack", -1};
    cli_install_signals();
    dsq_err err = {0};
    dsq_pack_info info;
    double t0 = dsq_now();
    if (dsq_unpack(src, dir, flags, !quiet && isatty(2) ? on_progress : NULL, &pr, &info, &err))
        return cli_err("unpack", &err);
    double s = dsq_now() - t0;
    if (!quiet)
        fprintf(stderr, "wrote %s/%s: %d part%s, %.2f MiB, %lld checksums verified, in %.2f s (%.0f MiB/s)\n", dir,
                info.name, info.n_parts, info.n_parts == 1 ? "" : "s", (double)info.size / 1048576.0,
                (long long)info.n_checked, s, (double)info.size / 1048576.0 / (s > 0 ? s : 1));
    return 0;
}

int cmd_check_pack(const char *path, int quiet) {
    dsq_err err = {0};
    dsq_pack_info info;
    if (dsq_pack_check(path, &info, &err)) return cli_err("check", &err);
    if (!quiet)
        printf("%s: ok (pack of %s: %d part%s, %.2f MiB; %lld checksums verified: parts, card, whole container; "
               "'dsq unpack' also checks every array)\n",
               path, info.name, info.n_parts, info.n_parts == 1 ? "" : "s", (double)info.size / 1048576.0,
               (long long)info.n_checked);
    return 0;
}
