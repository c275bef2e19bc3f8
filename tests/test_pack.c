/*
 * test_pack.c -- `dsq pack` / `dsq unpack` (formats/pack.c,
 * docs/PACKAGING.md): bit-identical round trips (plain, zstd, gzip, from a
 * folder of extracted parts), the manifest and model card, and every failure
 * class -- a flipped byte in a part, a missing part, reordered parts, a
 * truncated archive, a consistent manifest over damaged data, hostile entry
 * names and types, SIGTERM half-way -- each with its message and with
 * nothing left behind.
 * Damaged archives are made by reading a good one with libarchive and
 * writing it back changed.
 */
#include "test.h"
#include "test_ckpt_util.h"
#include "pipeline/pipeline.h"
#include "formats/pack.h"
#include "pipeline/card.h"

#include <archive.h>
#include <archive_entry.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

/* ---- helpers -------------------------------------------------------------- */

typedef struct ent {
    char name[300], link[300];
    int type;      /* AE_IFREG, AE_IFLNK, AE_IFDIR, AE_IFCHR */
    int hard;      /* a hard link to `link` */
    uint8_t *data; /* from malloc */
    size_t n;
} ent;

typedef struct ents {
    ent e[32];
    int n;
} ents;

static void ents_free(ents *es) {
    for (int i = 0; i < es->n; i++) free(es->e[i].data);
    es->n = 0;
}

/* Every entry of an archive, in order. */
static int load(const char *path, ents *es) {
    memset(es, 0, sizeof *es);
    struct archive *a = archive_read_new();
    archive_read_support_format_tar(a);
    archive_read_support_filter_all(a);
    if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) return -1;
    struct archive_entry *e;
    while (archive_read_next_header(a, &e) == ARCHIVE_OK && es->n < 32) {
        ent *x = &es->e[es->n++];
        snprintf(x->name, sizeof x->name, "%s", archive_entry_pathname(e));
        x->type = AE_IFREG;
        x->n = (size_t)archive_entry_size(e);
        x->data = malloc(x->n + 1);
        if (archive_read_data(a, x->data, x->n) != (la_ssize_t)x->n) return -1;
        x->data[x->n] = 0; /* manifest and card are read as text */
    }
    archive_read_free(a);
    return 0;
}

static int save(const char *path, const ents *es, int zstd) {
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    if (zstd) archive_write_add_filter_zstd(a);
    if (archive_write_open_filename(a, path) != ARCHIVE_OK) return -1;
    for (int i = 0; i < es->n; i++) {
        const ent *x = &es->e[i];
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, x->name);
        archive_entry_set_perm(e, 0644);
        if (x->hard) {
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_hardlink(e, x->link);
            archive_entry_set_size(e, 0);
        } else if (x->type == AE_IFLNK) {
            archive_entry_set_filetype(e, AE_IFLNK);
            archive_entry_set_symlink(e, x->link);
        } else if (x->type == AE_IFCHR) {
            archive_entry_set_filetype(e, AE_IFCHR);
            archive_entry_set_rdev(e, 0x0103);
        } else if (x->type == AE_IFDIR) {
            archive_entry_set_filetype(e, AE_IFDIR);
        } else {
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_size(e, (la_int64_t)x->n);
        }
        if (archive_write_header(a, e) != ARCHIVE_OK) return -1;
        if (x->type == AE_IFREG && !x->hard && x->n && archive_write_data(a, x->data, x->n) != (la_ssize_t)x->n)
            return -1;
        archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
    return 0;
}

/* A path under this test's folder in the caller's storage (t_path's
 * buffers rotate, and these names live through many calls). */
typedef struct tpath {
    char s[1024];
} tpath;
static tpath tp(const char *name) {
    tpath p;
    snprintf(p.s, sizeof p.s, "%s/%s", t_tmpdir(), name);
    return p;
}

/* Entries in dir (not counting . and ..), or -1 if dir does not exist. */
static int n_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) n++;
    closedir(d);
    return n;
}

static int convert(const char *src, const char *out) {
    dsq_recipe r;
    dsq_err err = {0};
    if (dsq_recipe_preset(&r, "lossless", &err)) return -1;
    dsq_pipe_opts o = {0};
    o.src = src;
    o.out = out;
    o.recipe = &r;
    o.threads = 1;
    dsq_pipe_report rep;
    int rc = dsq_pipeline_run(&o, &rep, &err);
    if (rc) fprintf(stderr, "  convert: %s\n", err.msg);
    else dsq_pipe_report_free(&rep);
    dsq_recipe_deinit(&r);
    return rc;
}

/* The micro model as tmp/m.dsq, packed into tmp/m.tar in 4 parts. */
static int make_pack(uint64_t *part) {
    tpath d_ = tp("src"), o_ = tp("m.dsq");
    const char *d = d_.s, *o = o_.s;
    if (tu_gen_micro(d, 0, 2) || convert(d, o)) return -1;
    struct stat st;
    if (stat(o, &st)) return -1;
    dsq_pack_opts po = {0};
    po.src = o;
    po.out = t_path(t_tmpdir(), "m.tar");
    po.part_size = (uint64_t)st.st_size / 4 + 1;
    dsq_pack_info info;
    dsq_err err = {0};
    if (dsq_pack_with_card(&po, NULL, &info, &err)) {
        fprintf(stderr, "  pack: %s\n", err.msg);
        return -1;
    }
    if (part) *part = po.part_size;
    return info.n_parts == 4 ? 0 : -1;
}

static int same_file(const char *a, const char *b) {
    size_t na, nb;
    void *x = t_read_file(a, &na), *y = t_read_file(b, &nb);
    int same = x && y && na == nb && !memcmp(x, y, na);
    free(x);
    free(y);
    return same;
}

/* dsq_unpack of src into out_dir must fail with `needle` in the message and
 * leave out_dir absent (it did not exist before) -- and dsq_pack_check must
 * fail too unless only the final array check can see the damage. */
static int unpack_fails(const char *src, const char *needle, int check_too) {
    tpath dir_ = tp("out");
    const char *dir = dir_.s;
    dsq_pack_info info;
    dsq_err err = {0};
    int rc = dsq_unpack(src, dir, 0, NULL, NULL, &info, &err);
    if (rc >= 0 || !strstr(err.msg, needle)) {
        fprintf(stderr, "  unpack of %s: rc %d, '%s' (wanted '%s')\n", src, rc, err.msg, needle);
        return 0;
    }
    if (n_files(dir) != -1) {
        fprintf(stderr, "  %s left behind after '%s'\n", dir, err.msg);
        return 0;
    }
    /* an existing empty folder stays empty */
    mkdir(dir, 0755);
    rc = dsq_unpack(src, dir, 0, NULL, NULL, &info, &err);
    int left = n_files(dir);
    rmdir(dir);
    if (rc >= 0 || left != 0) {
        fprintf(stderr, "  into an existing folder: rc %d, %d files left\n", rc, left);
        return 0;
    }
    if (check_too) {
        dsq_err e2 = {0};
        rc = dsq_pack_check(src, &info, &e2);
        if (rc >= 0 || !strstr(e2.msg, needle)) {
            fprintf(stderr, "  check of %s: rc %d, '%s' (wanted '%s')\n", src, rc, e2.msg, needle);
            return 0;
        }
    }
    return 1;
}

/* ---- round trips ---------------------------------------------------------- */

TEST(test_pack_roundtrip) {
    uint64_t part;
    CHECK(make_pack(&part) == 0);
    tpath dsq_ = tp("m.dsq"), tar_ = tp("m.tar");
    const char *dsq = dsq_.s, *tar = tar_.s;
    dsq_pack_info info;
    dsq_err err = {0};
    CHECKF(dsq_pack_check(tar, &info, &err) == 0, "%s", err.msg);
    CHECK(info.n_parts == 4 && info.n_checked == 4 + 2 && !strcmp(info.name, "m.dsq"));
    tpath out_ = tp("out");
    const char *out = out_.s;
    CHECKF(dsq_unpack(tar, out, 0, NULL, NULL, &info, &err) == 0, "%s", err.msg);
    CHECK(same_file(dsq, t_path(out, "m.dsq")));
    CHECK(n_files(out) == 1); /* only the container */
    CHECK(info.n_checked > 100); /* parts, card, whole file and every array */
    /* a second unpack refuses to overwrite, and --force replaces it */
    CHECK(dsq_unpack(tar, out, 0, NULL, NULL, &info, &err) == DSQ_E_EXISTS);
    CHECK(dsq_unpack(tar, out, DSQ_UNPACK_FORCE, NULL, NULL, &info, &err) == 0);
    CHECK(same_file(dsq, t_path(out, "m.dsq")) && n_files(out) == 1);

    /* the layout: manifest, card, parts in order, the parts concatenate to the container */
    ents es;
    CHECK(load(tar, &es) == 0);
    CHECK(es.n == 6 && !strcmp(es.e[0].name, "manifest.json") && !strcmp(es.e[1].name, "MODEL_CARD.md"));
    CHECK(!strcmp(es.e[2].name, "m.dsq.part-0001-of-0004") && !strcmp(es.e[5].name, "m.dsq.part-0004-of-0004"));
    size_t n;
    uint8_t *orig = t_read_file(dsq, &n);
    size_t off = 0;
    for (int i = 2; i < 6; i++) {
        CHECK(es.e[i].n <= part && off + es.e[i].n <= n && !memcmp(orig + off, es.e[i].data, es.e[i].n));
        off += es.e[i].n;
    }
    CHECK(off == n);
    cJSON *m = cJSON_Parse((const char *)es.e[0].data);
    CHECK(m);
    const cJSON *ct = cJSON_GetObjectItem(m, "container"), *parts = cJSON_GetObjectItem(m, "parts");
    char hx[17];
    snprintf(hx, sizeof hx, "%016llx", (unsigned long long)XXH3_64bits(orig, n));
    CHECK(!strcmp(cJSON_GetObjectItem(ct, "xxh3")->valuestring, hx));
    CHECK(cJSON_GetObjectItem(ct, "size")->valuedouble == (double)n);
    CHECK(cJSON_GetArraySize(parts) == 4);
    snprintf(hx, sizeof hx, "%016llx", (unsigned long long)XXH3_64bits(es.e[3].data, es.e[3].n));
    CHECK(!strcmp(cJSON_GetObjectItem(cJSON_GetArrayItem(parts, 1), "xxh3")->valuestring, hx));
    CHECK(!strcmp(cJSON_GetObjectItem(m, "dsq_version")->valuestring, DSQ_VERSION_STRING));
    const cJSON *md = cJSON_GetObjectItem(m, "model");
    CHECK(cJSON_GetObjectItem(md, "n_layers")->valueint == 2);
    CHECK(!strcmp(cJSON_GetObjectItem(md, "recipe")->valuestring, "lossless"));
    cJSON_Delete(m);
    /* the card: config, recipe, bits per weight by role, the parts */
    const char *card = (const char *)es.e[1].data;
    es.e[1].data[es.e[1].n] = 0;
    CHECK(strstr(card, "# m\n") && strstr(card, "recipe **lossless**"));
    CHECK(strstr(card, "## Bits per weight by role") && strstr(card, "| exp.gate | fp8-block | 4 | 25600 | 25632 | 8.010 |"));
    CHECK(strstr(card, "| layers | 2 (1 dense, 1 MoE) + multi-token prediction |"));
    CHECK(strstr(card, "m.dsq.part-0003-of-0004") && !strstr(card, "Accuracy drift"));

    /* unpack from a folder holding the extracted entries */
    tpath fo_ = tp("folder");
    const char *fo = fo_.s;
    mkdir(fo, 0755);
    for (int i = 0; i < es.n; i++) CHECK(t_write_file(t_path(fo, es.e[i].name), es.e[i].data, es.e[i].n) == 0);
    tpath out2_ = tp("out2");
    const char *out2 = out2_.s;
    CHECKF(dsq_unpack(fo, out2, 0, NULL, NULL, &info, &err) == 0, "%s", err.msg);
    CHECK(info.folder && same_file(dsq, t_path(out2, "m.dsq")));
    CHECKF(dsq_pack_check(fo, &info, &err) == 0, "%s", err.msg);
    /* ... where a missing part is named */
    unlink(t_path(fo, es.e[3].name));
    CHECK(dsq_pack_check(fo, &info, &err) < 0 && strstr(err.msg, "m.dsq.part-0002-of-0004: missing (part 2 of 4)"));
    ents_free(&es);
    free(orig);

    /* compressed packs, and packing is deterministic */
    static const int comp[2] = {DSQ_PACK_ZSTD, DSQ_PACK_GZIP};
    for (int k = 0; k < 2; k++) {
        dsq_pack_opts po = {0};
        po.src = dsq;
        po.out = t_path(t_tmpdir(), k ? "m.tar.gz" : "m.tar.zst");
        po.part_size = part;
        po.compress = comp[k];
        CHECKF(dsq_pack_with_card(&po, NULL, &info, &err) == 0, "%s", err.msg);
        void *a = t_read_file(po.out, &n);
        CHECK(a && n >= 4 && (k ? !memcmp(a, "\x1f\x8b", 2) : !memcmp(a, "\x28\xb5\x2f\xfd", 4)));
        po.out = t_path(t_tmpdir(), "again");
        po.force = 1;
        CHECK(dsq_pack_with_card(&po, NULL, &info, &err) == 0);
        CHECK(same_file(po.out, t_path(t_tmpdir(), k ? "m.tar.gz" : "m.tar.zst")));
        free(a);
        tpath o3_ = tp(k ? "o4" : "o3");
        const char *o3 = o3_.s;
        CHECKF(dsq_unpack(t_path(t_tmpdir(), k ? "m.tar.gz" : "m.tar.zst"), o3, 0, NULL, NULL, &info, &err) == 0,
               "%s", err.msg);
        CHECK(same_file(dsq, t_path(o3, "m.dsq")));
    }
    /* one part when it fits */
    dsq_pack_opts po = {0};
    po.src = dsq;
    po.out = t_path(t_tmpdir(), "one.tar");
    CHECK(dsq_pack_with_card(&po, NULL, &info, &err) == 0 && info.n_parts == 1);
    CHECK(dsq_unpack(po.out, t_path(t_tmpdir(), "o5"), 0, NULL, NULL, &info, &err) == 0);
    CHECK(same_file(dsq, t_path(t_path(t_tmpdir(), "o5"), "m.dsq")));
}

TEST(test_pack_report_card) {
    CHECK(make_pack(NULL) == 0);
    tpath rep_ = tp("verify.json");
    const char *rep = rep_.s;
    const char *js = "{\"ppl_ref\": 12.5, \"ppl_cand\": 12.75, \"delta_ppl\": 0.25, \"kl_mean\": 0.0123,"
                     " \"top1_agreement\": 0.975, \"tokens\": 4096, \"model\": \"m|<b>\","
                     " \"ref\": {\"seconds\": 1.5},"
                     " \"layers\": [{\"layer\": 0, \"kl\": 0.001, \"rel_err\": 0.01},"
                     "              {\"layer\": 1, \"kl\": 0.002, \"rel_err\": 0.02}]}";
    CHECK(t_write_file(rep, js, strlen(js)) == 0);
    dsq_pack_opts po = {0};
    tpath src_ = tp("m.dsq"), out_ = tp("r.tar"), out2_ = tp("r2.tar");
    po.src = src_.s;
    po.out = out_.s;
    dsq_pack_info info;
    dsq_err err = {0};
    CHECKF(dsq_pack_with_card(&po, rep, &info, &err) == 0, "%s", err.msg);
    ents es;
    CHECK(load(po.out, &es) == 0 && es.n == 3);
    char *card = (char *)es.e[1].data;
    card[es.e[1].n] = 0;
    CHECKF(strstr(card, "## Accuracy drift") && strstr(card, "| perplexity, reference (`ppl_ref`) | 12.5 |"), "%s", card);
    CHECK(strstr(card, "(`delta_ppl`) | 0.25 |") && strstr(card, "(`kl_mean`) | 0.0123 |"));
    CHECK(strstr(card, "(`top1_agreement`) | 0.975 |") && strstr(card, "| tokens | 4096 |"));
    CHECK(strstr(card, "| ref.seconds | 1.5 |"));
    CHECKF(strstr(card, "m\\|&lt;b&gt;") && !strstr(card, "<b>"), "report strings are escaped");
    CHECK(strstr(card, "| layer | kl | rel_err |") && strstr(card, "| 1 | 0.002 | 0.02 |"));
    ents_free(&es);
    /* a report that is not JSON fails before anything is written */
    CHECK(t_write_file(rep, "{\"ppl_ref\": 1,", 14) == 0);
    po.out = out2_.s;
    CHECK(dsq_pack_with_card(&po, rep, &info, &err) == DSQ_E_FORMAT && strstr(err.msg, "verify.json"));
    CHECK(!t_file_exists(po.out));
    CHECK(dsq_pack_with_card(&po, t_path(t_tmpdir(), "absent.json"), &info, &err) < 0 &&
          strstr(err.msg, "absent.json"));
}

/* dsq_pack without a card callback: no MODEL_CARD.md, no "card" in the
 * manifest, and the pack still checks and unpacks; with the callback the
 * card sits second and the rest of the archive is the same. */
TEST(test_pack_without_card) {
    CHECK(make_pack(NULL) == 0);
    tpath src_ = tp("m.dsq"), out_ = tp("nc.tar"), dir_ = tp("nc");
    dsq_pack_opts po = {0};
    po.src = src_.s;
    po.out = out_.s;
    dsq_pack_info info;
    dsq_err err = {0};
    CHECKF(dsq_pack(&po, &info, &err) == 0, "%s", err.msg);
    ents es, ec;
    CHECK(load(po.out, &es) == 0 && es.n == 2);
    CHECK(!strcmp(es.e[0].name, "manifest.json") && !strstr((char *)es.e[0].data, "\"card\""));
    CHECK(!strcmp(es.e[1].name, "m.dsq.part-0001-of-0001"));
    CHECKF(dsq_pack_check(po.out, &info, &err) == 0, "%s", err.msg);
    CHECKF(dsq_unpack(po.out, dir_.s, 0, NULL, NULL, &info, &err) == 0, "%s", err.msg);
    CHECK(same_file(src_.s, t_path(dir_.s, "m.dsq")));
    po.out = t_path(t_tmpdir(), "wc.tar");
    CHECKF(dsq_pack_with_card(&po, NULL, &info, &err) == 0, "%s", err.msg);
    CHECK(load(po.out, &ec) == 0 && ec.n == 3 && !strcmp(ec.e[1].name, "MODEL_CARD.md"));
    CHECK(!strcmp(ec.e[2].name, es.e[1].name) && ec.e[2].n == es.e[1].n && !memcmp(ec.e[2].data, es.e[1].data, es.e[1].n));
    CHECK(strstr((char *)ec.e[0].data, "\"card\""));
    ents_free(&es);
    ents_free(&ec);
}

/* ---- damaged archives ----------------------------------------------------- */

TEST(test_pack_damage) {
    CHECK(make_pack(NULL) == 0);
    tpath tar_ = tp("m.tar"), bad_ = tp("bad.tar");
    const char *tar = tar_.s, *bad = bad_.s;
    ents es;
    CHECK(load(tar, &es) == 0 && es.n == 6);

    /* a flipped byte in part 2 */
    es.e[3].data[es.e[3].n / 3] ^= 0x10;
    CHECK(save(bad, &es, 0) == 0);
    CHECK(unpack_fails(bad, "part 2 of 4 ('m.dsq.part-0002-of-0004'): checksum mismatch", 1));
    es.e[3].data[es.e[3].n / 3] ^= 0x10;

    /* a missing part (the middle one, then the last one) */
    ents less = es;
    memmove(&less.e[3], &less.e[4], 2 * sizeof less.e[0]);
    less.n = 5;
    CHECK(save(bad, &less, 0) == 0);
    CHECK(unpack_fails(bad, "part 2 of 4 ('m.dsq.part-0002-of-0004') missing or out of order", 1));
    less = es;
    less.n = 5;
    CHECK(save(bad, &less, 0) == 0);
    CHECK(unpack_fails(bad, "part 4 of 4 ('m.dsq.part-0004-of-0004') missing: the archive ends", 1));

    /* reordered parts */
    ents sw = es;
    sw.e[3] = es.e[4];
    sw.e[4] = es.e[3];
    CHECK(save(bad, &sw, 0) == 0);
    CHECK(unpack_fails(bad, "out of order", 1));
    /* the card moved after the parts */
    sw = es;
    sw.e[1] = es.e[2];
    sw.e[2] = es.e[1];
    CHECK(save(bad, &sw, 0) == 0);
    CHECK(unpack_fails(bad, "where MODEL_CARD.md was expected", 1));
    /* the manifest not first: not a pack */
    sw = es;
    sw.e[0] = es.e[1];
    sw.e[1] = es.e[0];
    CHECK(save(bad, &sw, 0) == 0);
    CHECK(unpack_fails(bad, "first entry is 'MODEL_CARD.md', not manifest.json", 1));

    /* an extra entry after the last part */
    ents more = es;
    more.e[6] = es.e[1];
    snprintf(more.e[6].name, sizeof more.e[6].name, "README");
    more.n = 7;
    CHECK(save(bad, &more, 0) == 0);
    CHECK(unpack_fails(bad, "unexpected entry 'README' after the last part", 1));

    /* a truncated archive, plain and compressed, cut inside part 3 */
    size_t n;
    uint8_t *raw = t_read_file(tar, &n);
    CHECK(raw);
    CHECK(t_write_file(bad, raw, n * 2 / 3) == 0);
    CHECK(unpack_fails(bad, "truncated", 1));
    CHECK(t_write_file(bad, raw, 700) == 0); /* inside the manifest */
    CHECK(unpack_fails(bad, "truncated", 1));
    free(raw);
    tpath zbad_ = tp("bad.tar.zst");
    const char *zbad = zbad_.s;
    CHECK(save(zbad, &es, 1) == 0);
    raw = t_read_file(zbad, &n);
    CHECK(t_write_file(zbad, raw, n / 2) == 0);
    free(raw);
    CHECK(unpack_fails(zbad, "damaged or truncated archive", 1));

    /* the manifest's whole-file checksum disagrees with correct parts */
    ents mf = es;
    cJSON *m = cJSON_Parse((const char *)es.e[0].data);
    cJSON *ct = cJSON_GetObjectItem(m, "container");
    cJSON_ReplaceItemInObject(ct, "xxh3", cJSON_CreateString("0123456789abcdef"));
    char *s = cJSON_Print(m);
    mf.e[0].data = (uint8_t *)s;
    mf.e[0].n = strlen(s);
    CHECK(save(bad, &mf, 0) == 0);
    CHECK(unpack_fails(bad, "reassembled container checksum mismatch", 1));
    free(s);
    cJSON_Delete(m);

    /* damaged data under a manifest rewritten to match it: only the
     * container's own array checksums can tell, and unpack checks them */
    uint8_t *p2 = malloc(es.e[3].n);
    memcpy(p2, es.e[3].data, es.e[3].n);
    p2[es.e[3].n / 2] ^= 1;
    XXH3_state_t *x = XXH3_createState();
    XXH3_64bits_reset(x);
    for (int i = 2; i < 6; i++) XXH3_64bits_update(x, i == 3 ? p2 : es.e[i].data, es.e[i].n);
    char hw[17], hp[17];
    snprintf(hw, sizeof hw, "%016llx", (unsigned long long)XXH3_64bits_digest(x));
    snprintf(hp, sizeof hp, "%016llx", (unsigned long long)XXH3_64bits(p2, es.e[3].n));
    XXH3_freeState(x);
    m = cJSON_Parse((const char *)es.e[0].data);
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(m, "container"), "xxh3", cJSON_CreateString(hw));
    cJSON_ReplaceItemInObject(cJSON_GetArrayItem(cJSON_GetObjectItem(m, "parts"), 1), "xxh3", cJSON_CreateString(hp));
    s = cJSON_Print(m);
    mf = es;
    mf.e[0].data = (uint8_t *)s;
    mf.e[0].n = strlen(s);
    mf.e[3].data = p2;
    CHECK(save(bad, &mf, 0) == 0);
    dsq_pack_info info;
    dsq_err err = {0};
    CHECK(dsq_pack_check(bad, &info, &err) == 0); /* parts and whole agree with this manifest */
    CHECK(unpack_fails(bad, "reassembled container is damaged", 0));
    CHECK(unpack_fails(bad, "checksum mismatch", 0));
    free(s);
    free(p2);
    cJSON_Delete(m);

    /* hostile manifests */
    static const char *const hm[][2] = {
        {"{\"format\":\"dsq-pack\",\"format_version\":\"1.0\",\"container\":{\"name\":\"../evil.dsq\",\"size\":4096,"
         "\"xxh3\":\"0000000000000000\"},\"part_size\":4096,\"parts\":[]}",
         "container name '../evil.dsq' refused (a path leading outside the output folder)"},
        {"{\"format\":\"dsq-pack\",\"format_version\":\"1.0\",\"container\":{\"name\":\"/tmp/x.dsq\",\"size\":4096,"
         "\"xxh3\":\"0000000000000000\"},\"part_size\":4096,\"parts\":[]}",
         "refused (an absolute path)"},
        {"{\"format\":\"dsq-pack\",\"format_version\":\"1.0\",\"container\":{\"name\":\"x.dsq\",\"size\":4096,"
         "\"xxh3\":\"0000000000000000\"},\"part_size\":4096,\"parts\":[{\"name\":\"a/b\",\"offset\":0,\"size\":4096,"
         "\"xxh3\":\"0000000000000000\"}]}",
         "part 1 name 'a/b' refused"},
        {"{\"format\":\"dsq-pack\",\"format_version\":\"1.0\",\"container\":{\"name\":\"x.dsq\",\"size\":4096,"
         "\"xxh3\":\"0000000000000000\"},\"part_size\":4096,\"parts\":[{\"name\":\"a\",\"offset\":0,\"size\":4000,"
         "\"xxh3\":\"0000000000000000\"}]}",
         "parts add up to 4000 bytes, the container has 4096"},
        {"{\"format\":\"dsq-pack\",\"format_version\":\"1.0\",\"container\":{\"name\":\"x.dsq\",\"size\":4096,"
         "\"xxh3\":\"0000000000000000\"},\"part_size\":2048,\"parts\":[{\"name\":\"a\",\"offset\":0,\"size\":2048,"
         "\"xxh3\":\"0000000000000000\"},{\"name\":\"a\",\"offset\":2048,\"size\":2048,\"xxh3\":\"0000000000000000\"}]}",
         "two parts are named 'a'"},
        {"{\"format\":\"dsq-pack\",\"format_version\":\"2.0\"}", "pack format version '2.0'"},
        {"[1,2", "manifest.json: invalid JSON"},
    };
    for (size_t k = 0; k < sizeof hm / sizeof hm[0]; k++) {
        mf = es;
        mf.e[0].data = (uint8_t *)hm[k][0];
        mf.e[0].n = strlen(hm[k][0]);
        CHECK(save(bad, &mf, 0) == 0);
        CHECKF(unpack_fails(bad, hm[k][1], 1), "manifest %zu", k);
    }
    CHECK(t_write_file(bad, "not an archive at all", 21) == 0);
    CHECK(unpack_fails(bad, "not a .dsq container nor a pack archive", 1));
    ents_free(&es);
}

/* Entries that could write outside DIR, placed after part 1 so a temporary
 * file already holds data when they arrive. */
TEST(test_pack_hostile_entries) {
    CHECK(make_pack(NULL) == 0);
    tpath tar_ = tp("m.tar"), bad_ = tp("bad.tar");
    const char *tar = tar_.s, *bad = bad_.s;
    ents es;
    CHECK(load(tar, &es) == 0 && es.n == 6);
    static const struct { const char *name, *link; int type, hard; const char *msg; } hs[] = {
        {"../../evil", NULL, AE_IFREG, 0, "entry '../../evil' has a path leading outside the output folder: refused"},
        {"/etc/evil", NULL, AE_IFREG, 0, "entry '/etc/evil' has an absolute path: refused"},
        {"sub/../../x", NULL, AE_IFREG, 0, "entry 'sub/../../x' has a path leading outside the output folder: refused"},
        {"sub/m.dsq.part-0002-of-0004", NULL, AE_IFREG, 0, "has a path into a subfolder: refused"},
        {"m.dsq.part-0002-of-0004", "/etc/passwd", AE_IFLNK, 0,
         "entry 'm.dsq.part-0002-of-0004' is a symbolic link (to '/etc/passwd'): refused"},
        {"m.dsq.part-0002-of-0004", "m.dsq.part-0001-of-0004", AE_IFREG, 1,
         "entry 'm.dsq.part-0002-of-0004' is a hard link (to 'm.dsq.part-0001-of-0004'): refused"},
        {"m.dsq.part-0002-of-0004", NULL, AE_IFCHR, 0, "is a device or special file: refused"},
        {"sub/", NULL, AE_IFDIR, 0, "entry 'sub/' is a folder: refused"},
        {"bad\x01name", NULL, AE_IFREG, 0, "entry 'bad?name' has control characters in its name: refused"},
    };
    for (size_t k = 0; k < sizeof hs / sizeof hs[0]; k++) {
        ents h = es;
        memmove(&h.e[4], &h.e[3], 3 * sizeof h.e[0]);
        h.n = 7;
        ent *x = &h.e[3];
        memset(x, 0, sizeof *x);
        snprintf(x->name, sizeof x->name, "%s", hs[k].name);
        if (hs[k].link) snprintf(x->link, sizeof x->link, "%s", hs[k].link);
        x->type = hs[k].type;
        x->hard = hs[k].hard;
        x->data = (uint8_t *)"evil";
        x->n = x->type == AE_IFREG && !x->hard ? 4 : 0;
        CHECK(save(bad, &h, 0) == 0);
        CHECKF(unpack_fails(bad, hs[k].msg, 1), "hostile entry %zu", k);
    }
    /* nothing escaped into the test folder's parent */
    CHECK(!t_file_exists(t_path(t_tmpdir(), "../evil")) && !t_file_exists("/etc/evil"));
    /* a hostile first entry is refused before the manifest is even looked at */
    ents h = es;
    memset(&h.e[0], 0, sizeof h.e[0]);
    snprintf(h.e[0].name, sizeof h.e[0].name, "manifest.json");
    snprintf(h.e[0].link, sizeof h.e[0].link, "/etc/passwd");
    h.e[0].type = AE_IFLNK;
    CHECK(save(bad, &h, 0) == 0);
    CHECK(unpack_fails(bad, "entry 'manifest.json' is a symbolic link", 1));
    /* a symlinked part in a folder source */
    tpath fo_ = tp("folder");
    const char *fo = fo_.s;
    mkdir(fo, 0755);
    for (int i = 0; i < es.n; i++)
        if (i != 3) CHECK(t_write_file(t_path(fo, es.e[i].name), es.e[i].data, es.e[i].n) == 0);
    CHECK(symlink(t_path(t_tmpdir(), "m.dsq"), t_path(fo, es.e[3].name)) == 0);
    CHECK(unpack_fails(fo, "m.dsq.part-0002-of-0004: is a symbolic link: refused", 1));
    ents_free(&es);
}

/* A container that fails its own checksums is not packed. */
TEST(test_pack_refuses_damaged_container) {
    CHECK(make_pack(NULL) == 0);
    tpath dsq_ = tp("m.dsq");
    const char *dsq = dsq_.s;
    size_t n;
    uint8_t *b = t_read_file(dsq, &n);
    CHECK(b);
    b[4096 + 100] ^= 4; /* inside the first array */
    tpath dir_ = tp("d");
    const char *dir = dir_.s;
    mkdir(dir, 0755);
    CHECK(t_write_file(t_path(dir, "m.dsq"), b, n) == 0);
    free(b);
    dsq_pack_opts po = {0};
    po.src = t_path(dir, "m.dsq");
    po.out = t_path(dir, "m.tar");
    dsq_pack_info info;
    dsq_err err = {0};
    CHECK(dsq_pack_with_card(&po, NULL, &info, &err) == DSQ_E_CHECKSUM);
    CHECKF(strstr(err.msg, "checksum mismatch") && strstr(err.msg, "refusing to pack a damaged container"), "%s", err.msg);
    CHECK(n_files(dir) == 1);
    /* bad options */
    po.src = dsq;
    po.part_size = 1;
    CHECK(dsq_pack_with_card(&po, NULL, &info, &err) == DSQ_E_ARG && strstr(err.msg, "at most 99999"));
    CHECK(n_files(dir) == 1);
}

/* Out-of-memory at every allocation of an unpack: a clean error, nothing left. */
TEST(test_pack_alloc_faults) {
    CHECK(make_pack(NULL) == 0);
    tpath tar_ = tp("m.tar"), dir_ = tp("out");
    const char *tar = tar_.s, *dir = dir_.s;
    dsq_pack_info info;
    dsq_err err = {0};
    int ok = 0;
    for (long k = 0; k < 5000 && !ok; k++) {
        dsq_fault_alloc_after(k);
        int rc = dsq_unpack(tar, dir, 0, NULL, NULL, &info, &err);
        dsq_fault_alloc_after(-1);
        if (rc == 0) ok = 1;
        else CHECKF(n_files(dir) == -1, "allocation %ld: %s left behind", k, dir);
    }
    CHECK(ok);
    CHECK(same_file(t_path(t_tmpdir(), "m.dsq"), t_path(dir, "m.dsq")));
    ok = 0;
    for (long k = 0; k < 5000 && !ok; k++) {
        dsq_pack_opts po = {0};
        po.src = t_path(t_tmpdir(), "m.dsq");
        po.out = t_path(t_tmpdir(), "f.tar");
        dsq_fault_alloc_after(k);
        int rc = dsq_pack_with_card(&po, NULL, &info, &err);
        dsq_fault_alloc_after(-1);
        if (rc == 0) ok = 1;
        else CHECKF(!t_file_exists(po.out), "allocation %ld: output left behind", k);
    }
    CHECK(ok);
}

/* SIGTERM half-way through a pack and an unpack, with the command line's
 * handlers: the temporary file goes, nothing else appears. */
static void term_half_way(void *arg, uint64_t done, uint64_t total) {
    (void)arg;
    if (done * 2 >= total) raise(SIGTERM);
}

TEST(test_pack_interrupted) {
    CHECK(make_pack(NULL) == 0);
    tpath dsq_ = tp("m.dsq"), tar_ = tp("m.tar"), out_ = tp("i.tar"), dir_ = tp("idir");
    for (int mode = 0; mode < 2; mode++) {
        mkdir(dir_.s, 0755);
        fflush(NULL);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            extern void cli_install_signals(void);
            cli_install_signals();
            dsq_pack_info info;
            dsq_err err = {0};
            if (mode == 0) {
                dsq_pack_opts po = {0};
                po.src = dsq_.s;
                po.out = out_.s;
                po.part_size = 100000;
                po.progress = term_half_way;
                dsq_pack_with_card(&po, NULL, &info, &err);
            } else {
                dsq_unpack(tar_.s, dir_.s, 0, term_half_way, NULL, &info, &err);
            }
            _exit(0); /* not reached */
        }
        int st;
        CHECK(waitpid(pid, &st, 0) == pid);
        CHECKF(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM, "child was not killed (status %d)", st);
        CHECK(n_files(dir_.s) == 0);
        CHECK(!t_file_exists(out_.s));
        char cmd[2048], *out = NULL;
        snprintf(cmd, sizeof cmd, "ls -A %s | grep -c tmp || true", t_tmpdir());
        t_run(cmd, &out);
        CHECKF(atoi(out) == 0, "temporary file left behind after SIGTERM");
        free(out);
    }
}

/* ---- the command line ----------------------------------------------------- */

TEST(test_pack_cli) {
    CHECK(make_pack(NULL) == 0);
    const char *t = t_tmpdir();
    char cmd[4096], *out = NULL, dsq[4096];
    CHECK(realpath(t_dsq(), dsq)); /* the commands run inside the test folder */
    snprintf(cmd, sizeof cmd,
             "cd %s && %s pack m.dsq -o c.tar.zst --part-size 64K --quiet && %s check c.tar.zst && "
             "%s unpack c.tar.zst -o o --quiet && cmp m.dsq o/m.dsq && %s check o/m.dsq",
             t, dsq, dsq, dsq, dsq);
    CHECKF(t_run(cmd, &out) == 0, "%s", out);
    CHECKF(strstr(out, "c.tar.zst: ok (pack of m.dsq") && strstr(out, "o/m.dsq: ok"), "%s", out);
    free(out);
    /* the archive is an ordinary tar: its parts concatenate to the container */
    snprintf(cmd, sizeof cmd, "cd %s && mkdir x && tar -C x -xf m.tar && cat x/m.dsq.part-* | cmp - m.dsq && "
                              "%s check x --quiet", t, dsq);
    CHECKF(t_run(cmd, &out) == 0, "%s", out);
    free(out);
    /* damaged: exit 1 and the part named; output exists: refused */
    size_t n;
    uint8_t *b = t_read_file(t_path(t, "m.tar"), &n);
    b[n / 2] ^= 0x40;
    CHECK(t_write_file(t_path(t, "bad.tar"), b, n) == 0);
    free(b);
    snprintf(cmd, sizeof cmd, "cd %s && %s check bad.tar", t, dsq);
    CHECK(t_run(cmd, &out) == 1);
    CHECKF(strstr(out, "dsq check: bad.tar: part ") && strstr(out, "checksum mismatch"), "%s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "cd %s && %s unpack bad.tar -o bo", t, dsq);
    CHECK(t_run(cmd, &out) == 1);
    CHECKF(strstr(out, "checksum mismatch") && !t_file_exists(t_path(t, "bo")), "%s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "cd %s && %s unpack m.tar -o o", t, dsq);
    CHECK(t_run(cmd, &out) == 1);
    CHECKF(strstr(out, "o/m.dsq: already exists"), "%s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "cd %s && %s pack m.dsq -o m.tar", t, dsq);
    CHECK(t_run(cmd, &out) == 1);
    CHECKF(strstr(out, "m.tar: already exists"), "%s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "(cd %s && %s pack m.dsq -o z.tar --compress lz4; %s pack m.dsq -o z.tar --part-size 1Q)",
             t, dsq, dsq);
    CHECK(t_run(cmd, &out) == 2);
    CHECKF(strstr(out, "--compress takes zstd, gzip or none") && strstr(out, "bad --part-size"), "%s", out);
    free(out);
    CHECK(n_files(t) == 7); /* src m.dsq m.tar c.tar.zst o x bad.tar, nothing else */
}
