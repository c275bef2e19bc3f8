/*
 * test.h -- the test harness.  Each test is `TEST(test_foo) { ... }` in a
 * file tests/test_foo*.c; the Makefile greps every TEST(...) line into
 * build/.../tests_list.h, so adding a test needs no registration by hand.
 *
 * CHECK stops the current test on the first failure and prints file:line.
 * SKIP ends the test as skipped (e.g. when ../shared is absent).
 */
#ifndef DSQ_TEST_H
#define DSQ_TEST_H

#include <stdio.h>
#include <stdint.h>
#include <string.h>

#define TEST(name) void name(void)

void t_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void t_skip(const char *reason);
int t_failed(void);

#define CHECK(cond)                                              \
    do {                                                         \
        if (!(cond)) {                                           \
            t_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);      \
            return;                                              \
        }                                                        \
    } while (0)
#define CHECKF(cond, ...)                                        \
    do {                                                         \
        if (!(cond)) {                                           \
            t_fail(__FILE__, __LINE__, __VA_ARGS__);             \
            return;                                              \
        }                                                        \
    } while (0)
#define SKIP(reason) do { t_skip(reason); return; } while (0)

/* Path of a shared model folder ("tiny-v32"), or NULL when ../shared is
 * absent (the test should SKIP).  DSQ_SHARED overrides the location. */
const char *t_shared_model(const char *name);
const char *t_shared_root(void);
/* A fresh empty directory for this test (under build/); valid until the next
 * test starts. */
const char *t_tmpdir(void);
/* Join into a static rotating buffer: t_path(dir, "x.dsq"). */
const char *t_path(const char *dir, const char *name);
/* Run a shell command; returns its exit status (or -1) and, if out is not
 * NULL, the combined stdout+stderr (malloc'd, caller frees). */
int t_run(const char *cmd, char **out);
/* Path to the dsq binary under test (build dir chosen by the Makefile). */
const char *t_dsq(void);
int t_file_exists(const char *path);
/* Write bytes to a file (helper for corrupt-input tests). */
int t_write_file(const char *path, const void *data, size_t n);
/* Read a file fully (malloc'd). */
void *t_read_file(const char *path, size_t *n);

#endif
