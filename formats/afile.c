/*
 * afile.c -- the one place that creates output files.
 *
 * Bytes go to a temporary file beside the target ("<dir>/.<name>.tmp.XXXXXX");
 * commit flushes, fsyncs, renames it over the target and fsyncs the
 * directory, so a reader sees either the old file or the complete new one,
 * never a prefix.  Any failure (or abort, or a signal through
 * dsq_afile_cleanup_all) unlinks the temporary file.  Errors are sticky: the
 * first failed write is remembered, later writes do nothing, and commit
 * returns it.
 */
#include "formats_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define BUF_CAP (4u << 20)
#define MAX_OPEN 256 /* a sharded folder keeps every shard open until it commits */
#define MAX_DIRS 4

struct dsq_afile {
    int fd;
    int failed;          /* errno-style code of the first failure, 0 if none */
    int slot;            /* index in g_open, for signal cleanup */
    char path[PATH_MAX];
    char tmp[PATH_MAX + 32];
    uint8_t *buf;        /* write buffer, from malloc */
    size_t nbuf;
    uint64_t pos;        /* logical size written so far */
    XXH3_state_t *xx;    /* NULL unless DSQ_AFILE_HASH */
};

/* Temp paths still on disk; read by dsq_afile_cleanup_all from a signal
 * handler, so only plain stores and unlink(2) (async-signal-safe). */
static char g_open[MAX_OPEN][PATH_MAX + 32];
static volatile sig_atomic_t g_open_used[MAX_OPEN];

/* Temporary folders (dsq_afile_mkdtemp): emptied of their open temp files
 * above, then removed. */
static char g_dirs[MAX_DIRS][PATH_MAX + 32];
static volatile sig_atomic_t g_dirs_used[MAX_DIRS];

void dsq_afile_cleanup_all(void) {
    for (int i = 0; i < MAX_OPEN; i++)
        if (g_open_used[i]) {
            unlink(g_open[i]);
            g_open_used[i] = 0;
        }
    for (int i = 0; i < MAX_DIRS; i++)
        if (g_dirs_used[i]) {
            rmdir(g_dirs[i]);
            g_dirs_used[i] = 0;
        }
}

int dsq_afile_mkdtemp(const char *target, char *out, size_t cap, dsq_err *err) {
    const char *base = dsq_basename(target);
    int dirlen = (int)(base - target);
    if (strlen(target) >= PATH_MAX || cap < PATH_MAX + 32) return dsq_fail(err, DSQ_E_ARG, "output path too long");
    snprintf(out, cap, "%.*s.%s.tmp.XXXXXX", dirlen, target, base);
    if (!mkdtemp(out)) return dsq_fail(err, DSQ_E_IO, "%s: cannot create a temporary folder: %s", target, strerror(errno));
    mode_t um = umask(0);
    umask(um);
    if (chmod(out, 0777 & ~um) != 0) { /* not fatal: the folder stays private */ }
    for (int i = 0; i < MAX_DIRS; i++)
        if (!g_dirs_used[i]) {
            memcpy(g_dirs[i], out, strlen(out) + 1);
            g_dirs_used[i] = 1;
            break;
        }
    return DSQ_OK;
}

void dsq_afile_dir_done(const char *dir) {
    for (int i = 0; i < MAX_DIRS; i++)
        if (g_dirs_used[i] && !strcmp(g_dirs[i], dir)) g_dirs_used[i] = 0;
}

int dsq_afile_open(dsq_afile **out, const char *path, int flags, dsq_err *err) {
    *out = NULL;
    struct stat st;
    if (!(flags & DSQ_AFILE_FORCE) && lstat(path, &st) == 0)
        return dsq_fail(err, DSQ_E_EXISTS, "%s: already exists (use --force to overwrite)", path);
    if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return dsq_fail(err, DSQ_E_IO, "%s: is a directory", path);
    if (strlen(path) >= PATH_MAX) return dsq_fail(err, DSQ_E_ARG, "output path too long");
    dsq_afile *f = dsq_calloc(1, sizeof *f);
    if (!f) return dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", path);
    f->fd = -1;
    f->slot = -1;
    snprintf(f->path, sizeof f->path, "%s", path);
    const char *base = dsq_basename(path);
    int dirlen = (int)(base - path);
    snprintf(f->tmp, sizeof f->tmp, "%.*s.%s.tmp.XXXXXX", dirlen, path, base);
    f->buf = dsq_malloc(BUF_CAP);
    if (!f->buf) {
        free(f);
        return dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", path);
    }
    if (flags & DSQ_AFILE_HASH) {
        f->xx = XXH3_createState();
        if (!f->xx) {
            free(f->buf);
            free(f);
            return dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", path);
        }
        XXH3_64bits_reset(f->xx);
    }
    for (int i = 0; i < MAX_OPEN; i++)
        if (!g_open_used[i]) { f->slot = i; break; }
    f->fd = mkostemp(f->tmp, O_CLOEXEC);
    if (f->fd < 0) {
        int e = errno;
        if (f->xx) XXH3_freeState(f->xx);
        free(f->buf);
        free(f);
        return dsq_fail(err, DSQ_E_IO, "%s: cannot create temporary file: %s", path, strerror(e));
    }
    /* mkostemp creates 0600; give the file the mode open(2) would have */
    mode_t um = umask(0);
    umask(um);
    if (fchmod(f->fd, 0666 & ~um) != 0) { /* not fatal: the file stays private */ }
    if (f->slot >= 0) {
        memcpy(g_open[f->slot], f->tmp, sizeof g_open[0]);
        g_open_used[f->slot] = 1;
    }
    *out = f;
    return DSQ_OK;
}

static int write_all(int fd, const uint8_t *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno ? errno : EIO;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int flush_buf(dsq_afile *f) {
    if (f->failed || !f->nbuf) return f->failed;
    int e = write_all(f->fd, f->buf, f->nbuf);
    f->nbuf = 0;
    if (e) f->failed = e;
    return e;
}

int dsq_afile_write(dsq_afile *f, const void *p, size_t n) {
    if (f->failed) return DSQ_E_IO;
    if (f->xx) XXH3_64bits_update(f->xx, p, n);
    f->pos += n;
    if (f->nbuf + n <= BUF_CAP) {
        memcpy(f->buf + f->nbuf, p, n);
        f->nbuf += n;
        return DSQ_OK;
    }
    if (flush_buf(f)) return DSQ_E_IO;
    if (n >= BUF_CAP) {
        int e = write_all(f->fd, p, n);
        if (e) { f->failed = e; return DSQ_E_IO; }
        return DSQ_OK;
    }
    memcpy(f->buf, p, n);
    f->nbuf = n;
    return DSQ_OK;
}

int dsq_afile_pad(dsq_afile *f, unsigned align) {
    static const uint8_t zeros[4096];
    uint64_t r = f->pos % align;
    if (!r) return f->failed ? DSQ_E_IO : DSQ_OK;
    uint64_t n = align - r;
    while (n) {
        size_t k = n > sizeof zeros ? sizeof zeros : (size_t)n;
        if (dsq_afile_write(f, zeros, k)) return DSQ_E_IO;
        n -= k;
    }
    return DSQ_OK;
}

int dsq_afile_pwrite(dsq_afile *f, const void *p, size_t n, uint64_t off) {
    if (f->failed || flush_buf(f)) return DSQ_E_IO;
    const uint8_t *b = p;
    while (n) {
        ssize_t w = pwrite(f->fd, b, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR) continue;
            f->failed = errno;
            return DSQ_E_IO;
        }
        b += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return DSQ_OK;
}

uint64_t dsq_afile_tell(const dsq_afile *f) { return f->pos; }
int dsq_afile_flush(dsq_afile *f) { return flush_buf(f) ? DSQ_E_IO : DSQ_OK; }
const char *dsq_afile_tmp_path(const dsq_afile *f) { return f->tmp; }
uint64_t dsq_afile_hash(const dsq_afile *f) { return f->xx ? XXH3_64bits_digest(f->xx) : 0; }

static void release(dsq_afile *f) {
    if (f->slot >= 0) g_open_used[f->slot] = 0;
    if (f->xx) XXH3_freeState(f->xx);
    free(f->buf);
    free(f);
}

void dsq_afile_abort(dsq_afile *f) {
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    unlink(f->tmp);
    release(f);
}

int dsq_afile_commit(dsq_afile *f, dsq_err *err) {
    int e = flush_buf(f);
    if (!e && fsync(f->fd) != 0) e = errno;
    if (close(f->fd) != 0 && !e) e = errno;
    f->fd = -1;
    if (!e && rename(f->tmp, f->path) != 0) e = errno;
    if (e) {
        int rc = dsq_fail(err, DSQ_E_IO, "%s: write failed: %s", f->path, strerror(e));
        unlink(f->tmp);
        release(f);
        return rc;
    }
    dsq_afile_sync_parent(f->path); /* make the rename itself durable */
    release(f);
    return DSQ_OK;
}

void dsq_afile_sync_parent(const char *path) {
    char dir[PATH_MAX];
    const char *base = dsq_basename(path);
    int dl = (int)(base - path);
    snprintf(dir, sizeof dir, "%.*s", dl ? dl : 1, dl ? path : ".");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
}

void dsq_afile_remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *de;
        char p[PATH_MAX + 300];
        while ((de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
    dsq_afile_dir_done(dir);
}
