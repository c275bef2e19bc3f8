/*
 * hashfile.c -- XXH3-64 of a whole file, streamed through a fixed buffer
 * (so hashing a large shard does not grow resident memory).
 */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

int dsq_file_xxh3(const char *path, uint64_t *out, uint64_t *size, dsq_err *err) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return dsq_fail(err, DSQ_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return dsq_fail(err, DSQ_E_IO, "%s: not a regular file", path);
    }
    XXH3_state_t *s = XXH3_createState();
    uint8_t *buf = dsq_malloc(1u << 20);
    if (!s || !buf) {
        XXH3_freeState(s);
        free(buf);
        close(fd);
        return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    }
    XXH3_64bits_reset(s);
    uint64_t total = 0;
    for (;;) {
        ssize_t r = read(fd, buf, 1u << 20);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            XXH3_freeState(s);
            free(buf);
            close(fd);
            return dsq_fail(err, DSQ_E_IO, "%s: read failed: %s", path, strerror(errno));
        }
        if (r == 0) break;
        XXH3_64bits_update(s, buf, (size_t)r);
        total += (uint64_t)r;
    }
    *out = XXH3_64bits_digest(s);
    if (size) *size = total;
    XXH3_freeState(s);
    free(buf);
    close(fd);
    return DSQ_OK;
}
