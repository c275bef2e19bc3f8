/*
 * test_ckpt_bad.c -- one test per class of malformed input: each must give
 * a clear error naming the file and the tensor or field, never a crash.
 */
#include "test.h"
#include "test_ckpt_util.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- safetensors headers, parsed directly ------------------------------- */
static int header_fails(const char *json, uint64_t data_size, const char *needle) {
    st_header h;
    dsq_err err = {0};
    int rc = st_parse_header(&h, "x.safetensors", json, strlen(json), data_size, &err);
    if (rc >= 0) {
        st_header_free(&h);
        fprintf(stderr, "  accepted: %s\n", json);
        return 0;
    }
    if (!strstr(err.msg, needle) || !strstr(err.msg, "x.safetensors")) {
        fprintf(stderr, "  message '%s' lacks '%s'\n", err.msg, needle);
        return 0;
    }
    return 1;
}

TEST(test_bad_header_not_object) {
    CHECK(header_fails("[1, 2]", 0, "not a JSON object"));
    CHECK(header_fails("{\"a\": ", 0, "invalid near byte"));
    CHECK(header_fails("{\"a\": 5}", 0, "tensor 'a': entry is not an object"));
    CHECK(header_fails("{\"__metadata__\": {\"k\": 1}}", 0, "__metadata__ value 'k'"));
}

TEST(test_bad_header_dtype_and_shape) {
    CHECK(header_fails("{\"w\":{\"dtype\":\"F7\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2,
                       "tensor 'w': unknown dtype 'F7'"));
    CHECK(header_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 20,
                       "tensor 'w': 20 bytes in data_offsets but shape x dtype needs 24"));
    CHECK(header_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4,
                       "tensor 'w': shape overflows"));
    CHECK(header_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
                       "tensor 'w': shape[0]"));
    CHECK(header_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4,
                       "tensor 'w': shape[0]"));
    CHECK(header_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "tensor 'w': data_offsets"));
}

TEST(test_bad_header_spans) {
    CHECK(header_fails("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                       "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}", 6, "overlaps"));
    CHECK(header_fails("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 2,
                       "tensor 'a': data_offsets [0, 4) beyond the data section"));
    CHECK(header_fails("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}", 6, "gap"));
    CHECK(header_fails("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 8, "trailing bytes"));
    CHECK(header_fails("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,0]}}", 4, "end < begin"));
}

TEST(test_bad_header_duplicates) {
    CHECK(header_fails("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                       "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2,
                       "duplicate key 'a'"));
}

/* ---- whole checkpoints -------------------------------------------------- */
static const char *micro(void) {
    const char *d = t_path(t_tmpdir(), "m");
    if (tu_gen_micro(d, 0, 2) != 0) return NULL;
    return d;
}
#define SHARD1 "model-00001-of-000002.safetensors"
#define SHARD2 "model-00002-of-000002.safetensors"

TEST(test_bad_truncated_shard) {
    const char *d = micro();
    CHECK(d);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "truncate -s 4 %s/" SHARD1, d);
    CHECK(t_run(cmd, NULL) == 0);
    CHECK(tu_open_fails(d, SHARD1 ": truncated"));
    /* cut in the data section: the last tensor no longer fits */
    d = micro();
    snprintf(cmd, sizeof cmd, "truncate -s -100 %s/" SHARD2, d);
    CHECK(t_run(cmd, NULL) == 0);
    CHECK(tu_open_fails(d, SHARD2 ": tensor '"));
    CHECK(tu_open_fails(d, "beyond the data section"));
}

TEST(test_bad_header_length) {
    const char *d = micro();
    CHECK(d);
    const char *p = t_path(d, SHARD1);
    size_t n;
    uint8_t *b = t_read_file(p, &n);
    CHECK(b);
    dsq_st64(b, n * 2);
    CHECK(t_write_file(p, b, n) == 0);
    CHECK(tu_open_fails(d, "beyond the end of the file"));
    dsq_st64(b, 200000000);
    CHECK(t_write_file(p, b, n) == 0);
    CHECK(tu_open_fails(d, "exceeds the 100000000-byte limit"));
    free(b);
    /* the CLI prints one line and exits 1 */
    char cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s inspect %s", t_dsq(), d);
    CHECK(t_run(cmd, &out) == 1);
    CHECKF(strchr(out, '\n') == out + strlen(out) - 1, "%s", out);
    free(out);
}

TEST(test_bad_missing_shard_and_index_names) {
    const char *d = micro();
    CHECK(d);
    CHECK(unlink(t_path(d, SHARD2)) == 0);
    CHECK(tu_open_fails(d, SHARD2 ": missing shard"));
    d = micro();
    CHECK(tu_file_replace(t_path(d, "model.safetensors.index.json"), "\"" SHARD2 "\"", "\"../" SHARD2 "\"") == 0);
    CHECK(tu_open_fails(d, "outside the folder"));
    d = micro();
    CHECK(tu_file_replace(t_path(d, "model.safetensors.index.json"), "\"" SHARD2 "\"", "\"/etc/passwd\"") == 0);
    CHECK(tu_open_fails(d, "absolute shard path"));
}

TEST(test_bad_tensor_not_in_named_shard) {
    const char *d = micro();
    CHECK(d);
    /* the index says lm_head lives in shard 1; rename it in the index */
    CHECK(tu_file_replace(t_path(d, "model.safetensors.index.json"), "\"lm_head.weight\"", "\"lm_headX.weight\"") == 0);
    CHECK(tu_open_fails(d, "'lm_headX.weight' is absent from shard"));
    d = micro();
    /* point one weight at the other shard */
    const char *ip = t_path(d, "model.safetensors.index.json");
    size_t n;
    char *s = t_read_file(ip, &n);
    CHECK(s);
    char *p = strstr(s, "\"model.norm.weight\":");
    CHECK(p);
    char *q = strstr(p, "-of-");
    CHECK(q);
    q[-1] = q[-1] == '1' ? '2' : '1';
    CHECK(t_write_file(ip, s, n) == 0);
    free(s);
    CHECK(tu_open_fails(d, "model.norm.weight"));
}

TEST(test_bad_scales) {
    const char *d = micro();
    CHECK(d);
    /* rename a scale in both index and shard header: the weight loses its companion */
    const char *nm = "model.layers.0.self_attn.o_proj.weight_scale_inv";
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cd %s && grep -l -a '%s' *.safetensors | head -1", d, nm);
    char *shard = NULL;
    CHECK(t_run(cmd, &shard) == 0 && shard && *shard);
    shard[strcspn(shard, "\n")] = 0;
    CHECK(tu_file_replace(t_path(d, shard), nm, "model.layers.0.self_attn.o_proj.weight_scale_inX") == 0);
    CHECK(tu_file_replace(t_path(d, "model.safetensors.index.json"), nm, "model.layers.0.self_attn.o_proj.weight_scale_inX") == 0);
    CHECK(tu_open_fails(d, "unknown name"));
    free(shard);

    /* NaN scale: overwrite the first scale value of some FP8 weight */
    d = micro();
    dsq_ckpt *ck;
    dsq_err err = {0};
    CHECK(dsq_ckpt_open(&ck, d, 0, &err) == 0);
    int si = dsq_ckpt_find(ck, nm);
    CHECK(si >= 0);
    const dsq_tinfo *t = dsq_ckpt_tensor(ck, si);
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", d, dsq_ckpt_shard_name(ck, t->shard));
    uint64_t off = t->offset;
    dsq_ckpt_close(ck);
    size_t n;
    uint8_t *b = t_read_file(path, &n);
    CHECK(b);
    dsq_st32(b + off, 0x7FC00000u);
    CHECK(t_write_file(path, b, n) == 0);
    CHECK(tu_open_fails(d, "o_proj.weight_scale_inv': scale [0, 0] is nan"));
    dsq_st32(b + off, 0x7F800000u);
    CHECK(t_write_file(path, b, n) == 0);
    CHECK(tu_open_fails(d, "is inf"));
    free(b);
}

TEST(test_bad_scale_shape) {
    /* a handcrafted single-file checkpoint whose scale has the wrong shape */
    const char *d = micro();
    CHECK(d);
    const char *nm = "model.layers.0.self_attn.q_a_proj.weight_scale_inv";
    dsq_ckpt *ck;
    dsq_err err = {0};
    CHECK(dsq_ckpt_open(&ck, d, 0, &err) == 0);
    const dsq_tinfo *t = dsq_ckpt_tensor(ck, dsq_ckpt_find(ck, nm));
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", d, dsq_ckpt_shard_name(ck, t->shard));
    CHECK(t->shape[0] == 1 && t->shape[1] == 2);
    dsq_ckpt_close(ck);
    /* [1, 2] -> [2, 1]: same byte size, wrong grid; header length unchanged */
    size_t n;
    char *s = t_read_file(path, &n);
    char *p = memmem(s, n, nm, strlen(nm));
    CHECK(p);
    char *sh = strstr(p, "\"shape\":[1,2]");
    CHECK(sh);
    memcpy(sh, "\"shape\":[2,1]", 13);
    CHECK(t_write_file(path, s, n) == 0);
    free(s);
    CHECK(tu_open_fails(d, "q_a_proj.weight_scale_inv': shape [2, 1], expected [1, 2]"));
}

TEST(test_bad_config) {
    const char *d = micro();
    CHECK(d);
    CHECK(tu_file_replace(t_path(d, "config.json"), "\"kv_lora_rank\"", "\"kv_lora_rankX\"") == 0);
    CHECK(tu_open_fails(d, "config.json: missing key 'kv_lora_rank'"));
    d = micro();
    CHECK(tu_file_replace(t_path(d, "config.json"), "\"q_lora_rank\":\t48", "\"q_lora_rank\":\t64") == 0);
    CHECK(tu_open_fails(d, "config.json implies"));
    d = micro();
    CHECK(tu_file_replace(t_path(d, "config.json"), "\"num_hidden_layers\":\t2", "\"num_hidden_layers\":\t3") == 0);
    CHECK(tu_open_fails(d, "MTP-only tensor in a main layer"));
    d = micro();
    CHECK(unlink(t_path(d, "config.json")) == 0);
    CHECK(tu_open_fails(d, "missing config.json"));
    d = micro();
    CHECK(tu_file_replace(t_path(d, "config.json"), "\"n_group\":\t2", "\"n_group\":\t3") == 0);
    CHECK(tu_open_fails(d, "not a multiple of n_group"));
}

TEST(test_bad_unknown_names) {
    const char *d = micro();
    CHECK(d);
    CHECK(tu_file_replace(t_path(d, SHARD1), "model.norm.weight", "model.norm.weighz") == 0 ||
          tu_file_replace(t_path(d, SHARD2), "model.norm.weight", "model.norm.weighz") == 0);
    CHECK(tu_file_replace(t_path(d, "model.safetensors.index.json"), "model.norm.weight", "model.norm.weighz") == 0);
    CHECK(tu_open_fails(d, "tensor 'model.norm.weighz': unknown name"));
    /* with --allow-unknown the unknown tensor is kept, but the final norm is missing */
    dsq_ckpt *ck;
    dsq_err err = {0};
    CHECK(dsq_ckpt_open(&ck, d, DSQ_OPEN_ALLOW_UNKNOWN, &err) < 0);
    CHECK(strstr(err.msg, "missing tensor 'model.norm.weight'"));
}

TEST(test_bad_links_dirs_fifos) {
    const char *d = micro();
    CHECK(d);
    const char *p = t_path(d, SHARD2);
    CHECK(unlink(p) == 0);
    CHECK(symlink("nowhere.safetensors", p) == 0);
    CHECK(tu_open_fails(d, "dangling symbolic link"));
    CHECK(unlink(p) == 0);
    CHECK(symlink(SHARD2, p) == 0); /* points at itself */
    CHECK(tu_open_fails(d, "symbolic link loop"));
    CHECK(unlink(p) == 0);
    CHECK(mkdir(p, 0755) == 0);
    CHECK(tu_open_fails(d, "shard is a directory"));
    CHECK(rmdir(p) == 0);
    CHECK(mkfifo(p, 0644) == 0);
    CHECK(tu_open_fails(d, "shard is a FIFO"));
}
