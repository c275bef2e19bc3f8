/*
 * test_archive.c -- checkpoints read from inside .tar, .tar.gz and .zip
 * archives (written here with libarchive), compared tensor by tensor with
 * the folder they came from; damaged and hostile archives.
 */
#include "test.h"
#include "test_ckpt_util.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>

/* Archive every file of dir under prefix/ (sorted names). fmt: "tar", "tgz", "zip".
 * extra: optional hostile entries. */
static int make_archive(const char *dir, const char *out, const char *fmt, const char *prefix, int hostile) {
    struct archive *a = archive_write_new();
    if (!strcmp(fmt, "zip")) archive_write_set_format_zip(a);
    else archive_write_set_format_pax_restricted(a);
    if (!strcmp(fmt, "tgz")) archive_write_add_filter_gzip(a);
    if (archive_write_open_filename(a, out) != ARCHIVE_OK) return -1;
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort);
    if (hostile) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, "../../evil.safetensors");
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_size(e, 5);
        archive_write_header(a, e);
        archive_write_data(a, "hello", 5);
        archive_entry_free(e);
    }
    for (int i = 0; i < n; i++) {
        if (names[i]->d_name[0] == '.') { free(names[i]); continue; }
        char p[2048], ep[2048];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]->d_name);
        snprintf(ep, sizeof ep, "%s%s", prefix, names[i]->d_name);
        struct stat st;
        if (stat(p, &st) != 0 || !S_ISREG(st.st_mode)) { free(names[i]); continue; }
        size_t len;
        void *data = t_read_file(p, &len);
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, ep);
        if (hostile == 2 && strstr(ep, "00002")) {
            archive_entry_set_filetype(e, AE_IFLNK);
            archive_entry_set_symlink(e, "/etc/passwd");
            archive_entry_set_perm(e, 0777);
            archive_write_header(a, e);
        } else {
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_perm(e, 0644);
            archive_entry_set_size(e, (la_int64_t)len);
            archive_write_header(a, e);
            archive_write_data(a, data, len);
        }
        archive_entry_free(e);
        free(data);
        free(names[i]);
    }
    free(names);
    archive_write_close(a);
    archive_write_free(a);
    return 0;
}

static void compare_with_folder(const char *dir, const char *ar) {
    dsq_ckpt *f, *a;
    dsq_err err = {0};
    CHECKF(dsq_ckpt_open(&f, dir, 0, &err) == 0, "%s", err.msg);
    CHECKF(dsq_ckpt_open(&a, ar, 0, &err) == 0, "%s", err.msg);
    CHECK(dsq_ckpt_is_archive(a));
    CHECK(dsq_ckpt_n_tensors(a) == dsq_ckpt_n_tensors(f));
    const void *p;
    CHECK(dsq_ckpt_view(a, 0, &p, &err) == DSQ_E_UNSUPPORTED);
    dsq_ckpt_stream *s;
    CHECKF(dsq_ckpt_stream_open(&s, a, &err) == 0, "%s", err.msg);
    int idx, n = 0, rc;
    while ((rc = dsq_ckpt_stream_next(s, &idx, &err)) == DSQ_OK) {
        const dsq_tinfo *t = dsq_ckpt_tensor(a, idx);
        if (n % 3 == 1) { n++; continue; } /* skipping data must work too */
        CHECKF(dsq_ckpt_stream_data(s, &p, &err) == 0, "%s", err.msg);
        int j = dsq_ckpt_find(f, t->name);
        const void *q;
        CHECK(j >= 0 && dsq_ckpt_view(f, j, &q, &err) == 0);
        CHECKF(memcmp(p, q, t->nbytes) == 0, "%s differs", t->name);
        int64_t r1, c1, r2, c2;
        const float *s1 = dsq_ckpt_scales(a, idx, &r1, &c1), *s2 = dsq_ckpt_scales(f, j, &r2, &c2);
        CHECK((s1 == NULL) == (s2 == NULL));
        if (s1) CHECK(r1 == r2 && c1 == c2 && !memcmp(s1, s2, sizeof *s1 * (size_t)(r1 * c1)));
        n++;
    }
    CHECKF(rc == DSQ_EOF, "%s", err.msg);
    CHECK(n == dsq_ckpt_n_tensors(a));
    dsq_ckpt_stream_close(s);
    dsq_ckpt_close(a);
    dsq_ckpt_close(f);
}

TEST(test_archive_tar_tgz_zip) {
    const char *d = t_path(t_tmpdir(), "m");
    CHECK(tu_gen_micro(d, 0, 3) == 0);
    const char *fmts[] = {"tar", "tgz", "zip"};
    for (int k = 0; k < 3; k++) {
        char out[1024];
        snprintf(out, sizeof out, "%s/ck.%s", t_tmpdir(), fmts[k]);
        CHECK(make_archive(d, out, fmts[k], k == 1 ? "./snap/" : "ckpt/", k == 2) == 0);
        compare_with_folder(d, out);
        if (t_failed()) return;
    }
    /* the CLI inspects archives too */
    char cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s inspect %s/ck.tar", t_dsq(), t_tmpdir());
    CHECK(t_run(cmd, &out) == 0);
    CHECKF(strstr(out, "(archive, 3 shards)") != NULL, "%s", out);
    free(out);
}

TEST(test_archive_shared_model) {
    const char *m = t_shared_model("tiny-v32");
    if (!m) SKIP("../shared/models absent");
    char out[1024];
    snprintf(out, sizeof out, "%s/tiny.tar", t_tmpdir());
    CHECK(make_archive(m, out, "tar", "tiny-v32/", 0) == 0);
    compare_with_folder(m, out);
}

TEST(test_archive_damaged) {
    const char *d = t_path(t_tmpdir(), "m");
    CHECK(tu_gen_micro(d, 0, 2) == 0);
    char out[1024], cmd[2048];
    snprintf(out, sizeof out, "%s/ck.tar", t_tmpdir());
    CHECK(make_archive(d, out, "tar", "", 0) == 0);
    snprintf(cmd, sizeof cmd, "truncate -s 60000 %s", out);
    CHECK(t_run(cmd, NULL) == 0);
    CHECK(tu_open_fails(out, "ck.tar"));
    /* not an archive at all */
    snprintf(out, sizeof out, "%s/garbage.bin", t_tmpdir());
    CHECK(t_write_file(out, "this is not an archive, just bytes", 34) == 0);
    CHECK(tu_open_fails(out, "garbage.bin"));
    /* gzip stream cut short */
    snprintf(out, sizeof out, "%s/ck.tgz", t_tmpdir());
    CHECK(make_archive(d, out, "tgz", "", 0) == 0);
    snprintf(cmd, sizeof cmd, "truncate -s 50000 %s", out);
    CHECK(t_run(cmd, NULL) == 0);
    CHECK(tu_open_fails(out, "ck.tgz"));
}

TEST(test_archive_hostile_entries) {
    const char *d = t_path(t_tmpdir(), "m");
    CHECK(tu_gen_micro(d, 0, 2) == 0);
    char out[1024];
    snprintf(out, sizeof out, "%s/sym.tar", t_tmpdir());
    CHECK(make_archive(d, out, "tar", "", 2) == 0);
    CHECK(tu_open_fails(out, "not a regular file inside the archive"));
}
