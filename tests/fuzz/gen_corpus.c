/*
 * gen_corpus.c -- writes the seed files of tests/fuzz/corpus/<target>/
 * (`make fuzz-corpus`).  Seeds are small valid inputs and near misses:
 * headers, indexes, archives and containers of synthetic checkpoints of the
 * fuzz shape (fuzz.h), the shared tiny model's config and a trimmed copy of
 * its tokenizer when ../shared is present, GGUF files from the GGUF writer,
 * and handcrafted variants that
 * each break one rule.  Every seed is named "seed-*"; files the fuzzer
 * found ("crash-*", ...) are left alone.  Output is deterministic.
 *
 * usage: gen_corpus OUT_DIR   (DSQ_SHARED names the shared folder)
 */
#include "fuzz.h"
#include "synth/gen.h"
#include "pipeline/pipeline.h"
#include "pipeline/recipe.h"
#include "formats/container.h"
#include "formats/formats_int.h"
#include "formats/gguf.h"
#include "quant/dtype.h"
#include "quant/quant.h"

#include <archive.h>
#include <archive_entry.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

static const char *g_out;
static int g_n;
static size_t g_bytes;

static void *slurp(const char *path, size_t *n) {
    char *s;
    dsq_err err = {0};
    if (dsq_read_file(path, 64u << 20, &s, n, &err)) {
        fprintf(stderr, "gen_corpus: %s\n", err.msg);
        exit(1);
    }
    return s;
}

static void seed(const char *target, const char *name, const void *data, size_t n) {
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s/%s", g_out, target);
    mkdir(g_out, 0755);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/seed-%s", dir, name);
    if (fuzz_write(path, data, n)) {
        fprintf(stderr, "gen_corpus: cannot write %s\n", path);
        exit(1);
    }
    g_n++;
    g_bytes += n;
}
static void seed_str(const char *target, const char *name, const char *s) {
    seed(target, name, s, strlen(s));
}

/* Replace the first `from` in s by `to` (new malloc'd string; exits if absent). */
static char *subst(const char *s, const char *from, const char *to) {
    const char *p = strstr(s, from);
    if (!p) {
        fprintf(stderr, "gen_corpus: '%s' not found\n", from);
        exit(1);
    }
    size_t a = (size_t)(p - s), fl = strlen(from), tl = strlen(to), n = strlen(s);
    char *o = malloc(n - fl + tl + 1);
    memcpy(o, s, a);
    memcpy(o + a, to, tl);
    memcpy(o + a + tl, p + fl, n - a - fl + 1);
    return o;
}

/* ---- safetensors headers ------------------------------------------------ */

/* st_header input: u64 data size, then the JSON header of the file. */
static void st_seed_from_file(const char *name, const char *path) {
    size_t n;
    uint8_t *f = slurp(path, &n);
    uint64_t hl = dsq_le64(f);
    uint8_t *o = malloc(8 + hl);
    dsq_st64(o, n - 8 - hl);
    memcpy(o + 8, f + 8, hl);
    seed("st_header", name, o, 8 + hl);
    free(o);
    free(f);
}

static void st_seed_json(const char *name, uint64_t data_size, const char *json) {
    size_t n = strlen(json);
    uint8_t *o = malloc(8 + n);
    dsq_st64(o, data_size);
    memcpy(o + 8, json, n);
    seed("st_header", name, o, 8 + n);
    free(o);
}

static void st_header_seeds(const char *ck1, const char *ck2) {
    st_seed_from_file("fp8-single", fuzz_path(ck1, "model-00001-of-000001.safetensors"));
    st_seed_from_file("fp8-shard2", fuzz_path(ck2, "model-00002-of-000002.safetensors"));
    static const struct { const char *name; uint64_t ds; const char *json; } v[] = {
        {"small", 24, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                      "\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[16,24]},"
                      "\"__metadata__\":{\"format\":\"pt\"}}"},
        {"all-dtypes", 46, "{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]},"
                           "\"b\":{\"dtype\":\"F8_E5M2\",\"shape\":[],\"data_offsets\":[2,3]},"
                           "\"c\":{\"dtype\":\"F8_E8M0\",\"shape\":[1,1,1,1],\"data_offsets\":[3,4]},"
                           "\"d\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[4,12]},"
                           "\"e\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[12,28]},"
                           "\"f\":{\"dtype\":\"U16\",\"shape\":[3],\"data_offsets\":[28,34]},"
                           "\"g\":{\"dtype\":\"I32\",\"shape\":[3],\"data_offsets\":[34,46]},"
                           "\"h\":{\"dtype\":\"BOOL\",\"shape\":[0],\"data_offsets\":[46,46]}}"},
        {"empty", 0, "{}"},
        {"gap", 20, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[8,20]}}"},
        {"overlap", 16, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                        "\"b\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[4,16]}}"},
        {"dup-name", 8, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                        "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}"},
        {"shape-overflow", 8, "{\"a\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296,4],"
                              "\"data_offsets\":[0,8]}}"},
        {"five-dims", 4, "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,2,2],\"data_offsets\":[0,4]}}"},
        {"float-shape", 4, "{\"a\":{\"dtype\":\"U8\",\"shape\":[2.5],\"data_offsets\":[0,4]}}"},
        {"big-offsets", 8, "{\"a\":{\"dtype\":\"U8\",\"shape\":[8],"
                           "\"data_offsets\":[9007199254740992,9007199254740999]}}"},
        {"bad-meta", 4, "{\"__metadata__\":{\"k\":1},\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}"},
        {"trailing", 9, "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}   "},
        {"truncated", 4, "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offs"},
        {"not-object", 0, "[1, 2, 3]"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) st_seed_json(v[i].name, v[i].ds, v[i].json);
}

/* ---- config.json -------------------------------------------------------- */

static void config_seeds(const char *shared) {
    const char *fc = fuzz_shape_json();
    seed_str("config", "fuzz-shape", fc);
    dsq_config c;
    dsq_gen_preset(&c, "tiny");
    char *t = dsq_config_to_json(&c);
    seed_str("config", "tiny", t);
    char *v3 = subst(fc, "\"deepseek_v32\"", "\"deepseek_v3\"");
    seed_str("config", "v3-no-indexer", v3);
    char *bf = subst(fc, "\"quant_method\":", "\"quant_method_off\":");
    seed_str("config", "bad-quant-method", bf);
    char *ng = subst(fc, "\"n_group\":\t1", "\"n_group\":\t3");
    seed_str("config", "n-group-mismatch", ng);
    char *rs = subst(t, "\"yarn\"", "\"linear\"");
    seed_str("config", "rope-linear", rs);
    seed_str("config", "minimal",
             "{\"model_type\":\"deepseek_v3\",\"vocab_size\":8,\"hidden_size\":4,\"intermediate_size\":4,"
             "\"moe_intermediate_size\":2,\"num_hidden_layers\":1,\"first_k_dense_replace\":1,"
             "\"num_attention_heads\":1,\"q_lora_rank\":2,\"kv_lora_rank\":2,\"qk_nope_head_dim\":2,"
             "\"qk_rope_head_dim\":2,\"v_head_dim\":2,\"n_routed_experts\":1,\"n_shared_experts\":0,"
             "\"num_experts_per_tok\":1,\"rope_scaling\":null,\"quantization_config\":null}");
    if (shared) {
        size_t n;
        void *s = slurp(fuzz_path(shared, "models/tiny-v32/config.json"), &n);
        seed("config", "shared-tiny-v32", s, n);
        free(s);
    }
    free(t);
    free(v3);
    free(bf);
    free(ng);
    free(rs);
}

/* ---- checkpoints -------------------------------------------------------- */

static void ckpt_file_seeds(const char *ck1, const char *ck1b) {
    size_t n;
    uint8_t *f = slurp(fuzz_path(ck1, "model-00001-of-000001.safetensors"), &n);
    seed("ckpt_file", "fp8", f, n);
    f[7] |= 0x80; /* the target's DSQ_OPEN_ALLOW_UNKNOWN bit */
    seed("ckpt_file", "fp8-allow-unknown", f, n);
    f[7] &= 0x7F;
    uint64_t hl = dsq_le64(f);
    seed("ckpt_file", "cut-in-header", f, 8 + hl / 2);
    seed("ckpt_file", "cut-in-data", f, 8 + hl + (n - 8 - hl) / 2);
    /* a weight renamed outside the naming grammar */
    char *h = malloc(hl + 1);
    memcpy(h, f + 8, hl);
    h[hl] = 0;
    char *p = strstr(h, "model.norm.weight");
    if (p) {
        memcpy(p, "model.norx", 10);
        memcpy(f + 8, h, hl);
        seed("ckpt_file", "unknown-name", f, n);
        f[7] |= 0x80;
        seed("ckpt_file", "unknown-name-allowed", f, n);
    }
    free(h);
    free(f);
    f = slurp(fuzz_path(ck1b, "model-00001-of-000001.safetensors"), &n);
    seed("ckpt_file", "bf16", f, n);
    free(f);
}

static void ckpt_index_seeds(const char *ck2) {
    size_t n;
    char *ix = slurp(fuzz_path(ck2, "model.safetensors.index.json"), &n);
    seed("ckpt_index", "valid", ix, n);
    char *a = subst(ix, "\"model.norm.weight\":", "\"model.norm.weight.x\":");
    seed_str("ckpt_index", "unknown-entry", a);
    char *b = subst(ix, "-00002-of-000002", "-00001-of-000002");
    seed_str("ckpt_index", "wrong-shard", b);
    char *c = subst(ix, "\"model-00002-of-000002.safetensors\"", "\"../model-00002-of-000002.safetensors\"");
    seed_str("ckpt_index", "outside-folder", c);
    char *d = subst(ix, "\"total_size\":", "\"total_size\": 1, \"x\":");
    seed_str("ckpt_index", "total-size", d);
    char *e = subst(ix, "\"model-00001-of-000002.safetensors\"", "\"config.json\"");
    seed_str("ckpt_index", "config-as-shard", e);
    seed_str("ckpt_index", "empty-map", "{\"weight_map\": {}}");
    seed_str("ckpt_index", "map-not-object", "{\"metadata\": {}, \"weight_map\": [\"a\"]}");
    seed_str("ckpt_index", "absolute", "{\"weight_map\": {\"lm_head.weight\": \"/model.safetensors\"}}");
    free(ix);
    free(a);
    free(b);
    free(c);
    free(d);
    free(e);
}

/* Archive every regular file of dir under prefix, sorted; fmt "tar", "tgz"
 * or "zip".  skip: a file name to leave out, or NULL. */
static void archive_seed(const char *name, const char *dir, const char *fmt, const char *prefix,
                         const char *skip, size_t cut) {
    char path[1024];
    snprintf(path, sizeof path, "%s", fuzz_path(fuzz_dir("gen"), "a.out"));
    struct archive *a = archive_write_new();
    if (!strcmp(fmt, "zip")) archive_write_set_format_zip(a);
    else archive_write_set_format_pax_restricted(a);
    if (!strcmp(fmt, "tgz")) {
        archive_write_add_filter_gzip(a);
        archive_write_set_filter_option(a, "gzip", "timestamp", NULL); /* reproducible */
    }
    if (archive_write_open_filename(a, path) != ARCHIVE_OK) exit(1);
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort);
    for (int i = 0; i < n; i++) {
        const char *fn = names[i]->d_name;
        char ep[1024];
        snprintf(ep, sizeof ep, "%s%s", prefix, fn);
        struct stat st;
        if (fn[0] != '.' && !(skip && !strcmp(fn, skip)) && stat(fuzz_path(dir, fn), &st) == 0 &&
            S_ISREG(st.st_mode)) {
            size_t len;
            void *data = slurp(fuzz_path(dir, fn), &len);
            struct archive_entry *e = archive_entry_new();
            archive_entry_set_pathname(e, ep);
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_perm(e, 0644);
            archive_entry_set_size(e, (la_int64_t)len);
            archive_entry_set_mtime(e, 0, 0); /* reproducible bytes */
            archive_write_header(a, e);
            archive_write_data(a, data, len);
            archive_entry_free(e);
            free(data);
        }
        free(names[i]);
    }
    free(names);
    archive_write_close(a);
    archive_write_free(a);
    size_t len;
    void *data = slurp(path, &len);
    seed("archive", name, data, cut && cut < len ? cut : len);
    free(data);
}

static void archive_seeds(const char *ck1, const char *ck2) {
    archive_seed("tar", ck1, "tar", "", NULL, 0);
    archive_seed("tgz-prefix", ck1, "tgz", "./model/", NULL, 0);
    archive_seed("zip", ck1, "zip", "", NULL, 0);
    archive_seed("tar-2-shards", ck2, "tar", "ckpt/", NULL, 0);
    archive_seed("tgz-2-shards", ck2, "tgz", "", NULL, 0);
    archive_seed("tar-no-config", ck1, "tar", "", "config.json", 0);
    archive_seed("tar-cut", ck1, "tar", "", NULL, 6000);
    archive_seed("zip-cut", ck2, "zip", "", NULL, 7000);
}

/* ---- containers --------------------------------------------------------- */

static void container_from_ckpt(const char *name, const char *ck, const char *recipe_json,
                                const char *tok) {
    char out[1024];
    snprintf(out, sizeof out, "%s", fuzz_path(fuzz_dir("gen"), "c.dsq"));
    if (tok) {
        /* a small side file, stored compressed */
        if (fuzz_write(fuzz_path(ck, "tokenizer.json"), tok, strlen(tok))) exit(1);
    }
    dsq_recipe r;
    dsq_err err = {0};
    if (dsq_recipe_parse(&r, recipe_json, strlen(recipe_json), name, &err)) {
        fprintf(stderr, "gen_corpus: %s\n", err.msg);
        exit(1);
    }
    dsq_pipe_opts o;
    memset(&o, 0, sizeof o);
    o.src = ck;
    o.out = out;
    o.recipe = &r;
    o.force = 1;
    o.threads = 1;
    dsq_pipe_report rep;
    memset(&rep, 0, sizeof rep);
    if (dsq_pipeline_run(&o, &rep, &err)) {
        fprintf(stderr, "gen_corpus: %s\n", err.msg);
        exit(1);
    }
    dsq_pipe_report_free(&rep);
    dsq_recipe_deinit(&r);
    if (tok) remove(fuzz_path(ck, "tokenizer.json"));
    size_t n;
    uint8_t *data = slurp(out, &n);
    /* a fixed "created" time (same length), checksums recomputed, so
     * regenerating the corpus gives the same bytes */
    dsq_ctr_header hd;
    if (dsq_ctr_header_decode(data, n, &hd, out, &err)) {
        fprintf(stderr, "gen_corpus: %s\n", err.msg);
        exit(1);
    }
    char *c = memmem(data + hd.meta_offset, hd.meta_size, "\"created\":\"", 11);
    if (c) {
        memcpy(c + 11, "2000-01-01T00:00:00Z", 20);
        hd.meta_xxh3 = XXH3_64bits(data + hd.meta_offset, hd.meta_size);
        dsq_ctr_header_encode(&hd, data);
    }
    seed("container", name, data, n);
    free(data);
}

/* A container with a handful of small tensors, written with dsq_ctrw_*:
 * the short directory keeps mutations on the JSON. */
static void container_small(void) {
    char out[1024];
    snprintf(out, sizeof out, "%s", fuzz_path(fuzz_dir("gen"), "s.dsq"));
    dsq_err err = {0};
    dsq_ctrw *w;
    if (dsq_ctrw_open(&w, out, 1, &err)) exit(1);
    static const struct { const char *name; int scheme, experts, nd; int64_t rows, cols; } t[] = {
        {"model.norm.weight", DSQ_Q_F32, 0, 1, 1, 5},
        {"model.layers.0.self_attn.o_proj.weight", DSQ_Q_FP8_BLOCK, 0, 2, 3, 130},
        {"model.layers.1.mlp.experts.up_proj.weight", DSQ_Q_INT4_G32_ASYM, 2, 3, 2, 70},
        {"model.layers.1.mlp.shared_experts.down_proj.weight", DSQ_Q_INT8_CHANNEL_F16, 0, 2, 2, 9},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        dsq_ctw_tensor d;
        memset(&d, 0, sizeof d);
        d.name = t[i].name;
        d.role = dsq_classify(t[i].name, &d.layer, &d.is_mtp);
        d.is_mtp = 0;
        d.scheme = t[i].scheme;
        d.experts = t[i].experts;
        d.n_dims = t[i].nd;
        d.rows = t[i].rows;
        d.cols = t[i].cols;
        if (t[i].nd == 1) d.shape[0] = t[i].cols;
        else if (t[i].nd == 2) { d.shape[0] = t[i].rows; d.shape[1] = t[i].cols; }
        else { d.shape[0] = t[i].experts; d.shape[1] = t[i].rows; d.shape[2] = t[i].cols; }
        if (dsq_ctrw_add_tensor(w, &d, &err) < 0) exit(1);
    }
    if (dsq_ctrw_add_file(w, "tokenizer.json", "{}", 2, &err)) exit(1);
    if (dsq_ctrw_layout(w, &err)) exit(1);
    float x[2 * 3 * 130];
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++) x[i] = (float)((int)(i * 37 % 101) - 50) / 8.0f;
    uint8_t q[3][4096];
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        dsq_qsizes sz;
        dsq_q_sizes(t[i].scheme, t[i].rows, t[i].cols, &sz, &err);
        dsq_qmat src = {DSQ_Q_F32, t[i].rows, t[i].cols, x, NULL, NULL};
        dsq_qmat dst = {t[i].scheme, t[i].rows, t[i].cols, q[0], q[1], q[2]};
        for (int e = 0; e < (t[i].experts ? t[i].experts : 1); e++) {
            src.data = x + e * 7;
            if (dsq_q_quantize_pool(NULL, &src, &dst, NULL, &err)) exit(1);
            uint64_t n[3] = {sz.data, sz.scale, sz.zero};
            for (int k = 0; k < 3; k++)
                if (n[k] && dsq_ctrw_write(w, (int)i, e, k, q[k], n[k], &err)) exit(1);
        }
    }
    cJSON *meta = cJSON_CreateObject();
    cJSON_AddStringToObject(meta, "config_json", fuzz_shape_json());
    char *ms = cJSON_PrintUnformatted(meta);
    cJSON_Delete(meta);
    if (dsq_ctrw_finish(w, ms, &err)) {
        fprintf(stderr, "gen_corpus: %s\n", err.msg);
        exit(1);
    }
    free(ms);
    size_t n;
    uint8_t *data = slurp(out, &n);
    seed("container", "small", data, n);
    /* near misses: the control bit that keeps checksums as they are, and a
     * truncated file */
    data[DSQ_CTR_HEADER_HASHED] |= 1;
    seed("container", "small-raw-checksums", data, n);
    seed("container", "small-cut", data, n - 100);
    free(data);
}

static void container_seeds(const char *ck1) {
    container_small();
    container_from_ckpt("lossless", ck1, "{\"name\":\"lossless\",\"rules\":[]}", "{\"model\": {}}");
    container_from_ckpt("mixed", ck1,
                        "{\"rules\":[{\"roles\":[\"routed_experts\"],\"scheme\":\"int4-g32-asym-f16\"},"
                        "{\"roles\":[\"attn.*\"],\"scheme\":\"int8-channel\"},"
                        "{\"roles\":[\"shared_experts\"],\"scheme\":\"fp8-channel-ue8m0\"}],"
                        "\"default\":\"fp8-tensor\"}",
                        NULL);
}

/* ---- tokenizers --------------------------------------------------------- */

/* The shared tokenizer cut to its first `keep` ids: the same
 * pre-tokenizer, added tokens, decoder and post-processor, with only the
 * merges whose three tokens survive. */
static void tokenizer_trimmed(const char *shared, int keep) {
    size_t n;
    char *s = slurp(fuzz_path(shared, "models/tiny-v32/tokenizer.json"), &n);
    cJSON *root = cJSON_ParseWithLength(s, n);
    free(s);
    if (!root) exit(1);
    cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    cJSON *nv = cJSON_CreateObject();
    for (cJSON *v = vocab ? vocab->child : NULL; v; v = v->next)
        if (cJSON_IsNumber(v) && v->valuedouble < keep) cJSON_AddNumberToObject(nv, v->string, v->valuedouble);
    cJSON *nm = cJSON_CreateArray();
    for (cJSON *m = merges ? merges->child : NULL; m; m = m->next) {
        char l[256], r[256], cat[512];
        if (cJSON_IsString(m)) {
            const char *sp = strchr(m->valuestring, ' ');
            if (!sp || sp - m->valuestring >= 255 || strlen(sp + 1) >= 255) continue;
            snprintf(l, sizeof l, "%.*s", (int)(sp - m->valuestring), m->valuestring);
            snprintf(r, sizeof r, "%s", sp + 1);
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2) {
            snprintf(l, sizeof l, "%s", cJSON_GetArrayItem(m, 0)->valuestring);
            snprintf(r, sizeof r, "%s", cJSON_GetArrayItem(m, 1)->valuestring);
        } else {
            continue;
        }
        snprintf(cat, sizeof cat, "%s%s", l, r);
        if (cJSON_GetObjectItemCaseSensitive(nv, l) && cJSON_GetObjectItemCaseSensitive(nv, r) &&
            cJSON_GetObjectItemCaseSensitive(nv, cat))
            cJSON_AddItemToArray(nm, cJSON_Duplicate(m, 1));
    }
    cJSON_ReplaceItemInObjectCaseSensitive(model, "vocab", nv);
    cJSON_ReplaceItemInObjectCaseSensitive(model, "merges", nm);
    char *out = cJSON_Print(root);
    char name[64];
    snprintf(name, sizeof name, "shared-first-%d", keep);
    seed_str("tokenizer", name, out);
    free(out);
    cJSON_Delete(root);
}

/* A tokenizer.json over the 256 byte tokens (GPT-2 byte alphabet) and a few
 * merges, with the given pre-tokenizer, added tokens and extras. */
static void tokenizer_synth(const char *name, const char *pretok, const char *added,
                            const char *model_extra, const char *post, const char *decoder) {
    /* GPT-2 bytes_to_unicode: printable bytes map to themselves, the rest
     * to U+0100 upward in byte order */
    char *buf = malloc(1 << 16);
    size_t o = 0;
    o += (size_t)sprintf(buf + o, "{\"version\":\"1.0\",\"added_tokens\":%s,\"normalizer\":null,"
                                  "\"pre_tokenizer\":%s,\"post_processor\":%s,\"decoder\":%s,"
                                  "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,%s"
                                  "\"vocab\":{",
                         added, pretok, post, decoder, model_extra);
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        unsigned cp = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174) ? (unsigned)b : 0;
        if (!cp) cp = 256 + (unsigned)extra++;
        char u[8];
        int ul;
        if (cp < 0x80) { u[0] = (char)cp; ul = 1; }
        else { u[0] = (char)(0xC0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 63)); ul = 2; }
        if (cp == '"' || cp == '\\') o += (size_t)sprintf(buf + o, "%s\"\\%c\":%d", b ? "," : "", (char)cp, b);
        else o += (size_t)sprintf(buf + o, "%s\"%.*s\":%d", b ? "," : "", ul, u, b);
    }
    o += (size_t)sprintf(buf + o, ",\"he\":256,\"ll\":257,\"hell\":258,\"hello\":259,\"\xc4\xa0w\":260,"
                                  "\"or\":261,\"\xc4\xa0wor\":262},"
                                  "\"merges\":[\"h e\",\"l l\",\"he ll\",\"hell o\",\"\xc4\xa0 w\",\"o r\","
                                  "\"\xc4\xa0w or\"]}}");
    seed("tokenizer", name, buf, o);
    free(buf);
}

static void tokenizer_seeds(const char *shared) {
    if (shared) {
        tokenizer_trimmed(shared, 300);
        tokenizer_trimmed(shared, 600);
    }
    const char *bl = "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true}";
    const char *dec = "{\"type\":\"ByteLevel\"}";
    tokenizer_synth("bytelevel-regex", bl, "[]", "", "null", dec);
    tokenizer_synth("split-sequence",
                    "{\"type\":\"Sequence\",\"pretokenizers\":["
                    "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\p{N}{1,3}\"},\"behavior\":\"Isolated\",\"invert\":false},"
                    "{\"type\":\"Split\",\"pattern\":{\"String\":\" \"},\"behavior\":\"MergedWithNext\",\"invert\":false},"
                    "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":false}]}",
                    "[]", "\"ignore_merges\":true,", "null",
                    "{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"ByteLevel\"}]}");
    tokenizer_synth("added-tokens", bl,
                    "[{\"id\":263,\"content\":\"<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>\","
                    "\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true},"
                    "{\"id\":264,\"content\":\"world\",\"single_word\":true,\"lstrip\":true,\"rstrip\":true,"
                    "\"normalized\":true,\"special\":false}]",
                    "", "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
                    "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[263],"
                    "\"tokens\":[\"<s>\"]}}}",
                    dec);
    tokenizer_synth("removed-contiguous",
                    "{\"type\":\"Sequence\",\"pretokenizers\":["
                    "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\s+\"},\"behavior\":\"Removed\",\"invert\":true},"
                    "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"[a-z]\"},\"behavior\":\"Contiguous\",\"invert\":false},"
                    "{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"use_regex\":false}]}",
                    "[]", "\"byte_fallback\":false,\"fuse_unk\":false,", "null", dec);
    tokenizer_synth("bad-regex",
                    "{\"type\":\"Sequence\",\"pretokenizers\":["
                    "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(a\"},\"behavior\":\"Isolated\",\"invert\":false},"
                    "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":false}]}",
                    "[]", "", "null", dec);
    tokenizer_synth("no-decoder", bl, "[]", "", "null", "null");
}

static void tokens_seeds(const char *shared) {
    seed_str("tokens", "simple", "[0, 1, 2, 300]");
    seed_str("tokens", "empty", " [ ] \n");
    seed_str("tokens", "limits", "[-2147483648,2147483647]");
    seed_str("tokens", "exponent", "[1e2, 3.0, 2E+1, 4.00e-0]");
    seed_str("tokens", "fraction", "[2.5]");
    seed_str("tokens", "overflow", "[2147483648]");
    seed_str("tokens", "leading-zero", "[01]");
    seed_str("tokens", "trailing", "[1] x");
    seed_str("tokens", "long-number", "[0.00000000000000000000000000000000000000000000000000000000000000005e63]");
    if (shared) {
        size_t n;
        char *s = slurp(fuzz_path(shared, "models/tiny-v32/eval.tokens.json"), &n);
        size_t cut = n < 2000 ? n : 2000;
        while (cut > 0 && s[cut - 1] != ',') cut--;
        if (cut > 1) {
            s[cut - 1] = ']';
            seed("tokens", "shared-eval-head", s, cut);
        }
        free(s);
    }
}

static void recipe_seeds(void) {
    seed_str("recipe", "lossless", "{\"name\":\"lossless\",\"rules\":[]}");
    seed_str("recipe", "int4-experts",
             "{\"name\":\"int4-experts\",\"rules\":[{\"roles\":[\"routed_experts\"],\"scheme\":\"int4-g128-sym\"}],"
             "\"default\":\"fp8-block\"}");
    seed_str("recipe", "full",
             "{\"name\": \"mine\", \"description\": \"every key\", \"default\": \"keep\",\n"
             " \"rules\": [\n"
             "  {\"roles\": [\"exp.gate\", \"exp.up\", \"exp.down\"], \"scheme\": \"int4-g128-sym\",\n"
             "   \"method\": \"mse\", \"clip_steps\": 20, \"clip_min\": 0.6},\n"
             "  {\"roles\": [\"attn.*\"], \"layers\": [0, 2], \"scheme\": \"bf16\"},\n"
             "  {\"match\": \"model.layers.*.self_attn.o_proj.weight\", \"scheme\": \"int8-channel\", \"method\": \"rtn\"},\n"
             "  {\"roles\": [\"embed\", \"head\"], \"scheme\": \"keep\"}]}");
    seed_str("recipe", "bad-role", "{\"rules\":[{\"roles\":[\"nope\"],\"scheme\":\"f32\"}]}");
    seed_str("recipe", "bad-layers", "{\"rules\":[{\"layers\":[3,1],\"scheme\":\"f32\"}]}");
    seed_str("recipe", "huge-layers", "{\"rules\":[{\"layers\":[1,1e300],\"scheme\":\"f16\"}]}");
    seed_str("recipe", "unknown-key", "{\"rulez\":[]}");
}

/* round_trip: 6 header bytes, then values. */
static void rt_seed(const char *name, int scheme, int rows, int cols, int flags, int b5, int nvals,
                    uint64_t seed_v) {
    uint8_t buf[6 + 4 * 256];
    buf[0] = (uint8_t)scheme;
    buf[1] = (uint8_t)rows;
    dsq_st16(buf + 2, (uint16_t)cols);
    buf[4] = (uint8_t)flags;
    buf[5] = (uint8_t)b5;
    uint64_t s = seed_v * 0x9E3779B97F4A7C15ull + 1;
    int w = (flags & 16) ? 2 : 4;
    for (int i = 0; i < nvals; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        /* a rough bell curve with a few outliers, like weights */
        float v = ((float)(s % 2001) - 1000.0f) / 1000.0f;
        v = v * v * v * (i % 17 == 0 ? 40.0f : 1.0f);
        if (w == 2) dsq_st16(buf + 6 + 2 * i, dsq_f32_to_bf16(v));
        else {
            uint32_t u;
            memcpy(&u, &v, 4);
            dsq_st32(buf + 6 + 4 * i, u);
        }
    }
    seed("round_trip", name, buf, 6 + (size_t)(w * nvals));
}

static void round_trip_seeds(void) {
    for (int t = 0; t < DSQ_Q_COUNT; t++) {
        char name[64];
        snprintf(name, sizeof name, "%s", dsq_q_scheme(t)->name);
        rt_seed(name, t, 3, 37, 32, 0, 128, (uint64_t)t);
    }
    rt_seed("fp8-block-130-rows", DSQ_Q_FP8_BLOCK, 130, 60, 0, 0, 256, 1);
    rt_seed("fp8-block-ue8m0-wide", DSQ_Q_FP8_BLOCK_UE8M0, 3, 260, 32, 0, 256, 7);
    rt_seed("int4-mse-imp", DSQ_Q_INT4_G32_ASYM, 4, 96, 2 | 4 | 8, 128, 200, 2);
    rt_seed("int4-experts", DSQ_Q_INT4_G64_SYM_F16, 2, 65, 32 | 64, 0, 100, 3);
    rt_seed("int8-bf16-values", DSQ_Q_INT8_CHANNEL, 5, 33, 16 | 1 | 2, 0, 100, 4);
    rt_seed("fp8-tensor-row", DSQ_Q_FP8_TENSOR_UE8M0, 1, 300, 32, 0, 64, 5);
    rt_seed("zero-rows", DSQ_Q_INT4_G128_ASYM, 0, 10, 32, 0, 8, 6);
    /* ggml block schemes on whole blocks: with importance, bf16 values, or
     * through a container (stacked as experts every other one) */
    for (int t = DSQ_Q_GGML_Q8_0; t <= DSQ_Q_GGML_IQ4_XS; t++) {
        char name[64];
        snprintf(name, sizeof name, "ggml-%s", dsq_q_scheme(t)->name);
        int flags = t % 3 == 0 ? 8 : t % 3 == 1 ? 16 | 32 : 8 | 32 | 64;
        rt_seed(name, t, 3, 512, flags, 0, 256, (uint64_t)t);
    }
    /* special values: NaN, +-inf, FLT_MAX, subnormals */
    uint8_t sp[6 + 4 * 8] = {DSQ_Q_INT4_G32_SYM, 2, 4, 0, 0, 0};
    const uint32_t bits[8] = {0x7FC00000u, 0x7F800000u, 0xFF800000u, 0x7F7FFFFFu,
                              0x00000001u, 0x80400000u, 0x3F800000u, 0xBF000000u};
    for (int i = 0; i < 8; i++) dsq_st32(sp + 6 + 4 * i, bits[i]);
    for (int t = 0; t < DSQ_Q_COUNT; t += 4) {
        char name[64];
        sp[0] = (uint8_t)t;
        snprintf(name, sizeof name, "special-%s", dsq_q_scheme(t)->name);
        seed("round_trip", name, sp, sizeof sp);
    }
}

/* ---- GGUF files --------------------------------------------------------- */

static void gguf_die(const dsq_err *err) {
    fprintf(stderr, "gen_corpus: gguf: %s\n", err->msg);
    exit(1);
}

/* A GGUF file written by dsq_ggufw_*: every value type (scalars and
 * arrays), a small tokenizer, tensors of plain and block types with 1 to 4
 * dimensions.  align 0: no general.alignment key. */
static uint8_t *gguf_write(uint32_t align, int with_tensors, size_t *n) {
    char out[1024];
    snprintf(out, sizeof out, "%s", fuzz_path(fuzz_dir("gen"), "s.gguf"));
    dsq_err err = {0};
    dsq_ggufw *w;
    if (dsq_ggufw_open(&w, out, 1, &err)) gguf_die(&err);
    static const char *const tok[] = {"<s>", "</s>", "a", "b", "ab", "\xc4\xa0", "\xc4\xa0" "ab", ""};
    static const char *const merges[] = {"a b", "\xc4\xa0 ab"};
    static const int32_t types[] = {3, 3, 1, 1, 1, 1, 1, 5};
    static const uint8_t u8[] = {0, 255}, bools[] = {0, 1};
    static const int64_t i64[] = {INT64_MIN, 5};
    static const double f64[] = {1e300, -0.0};
    float f32[] = {0.5f, -1.0f};
    if (dsq_ggufw_set_str(w, "general.architecture", "llama", &err) ||
        (align && dsq_ggufw_set_u32(w, "general.alignment", align, &err)) ||
        dsq_ggufw_set_u32(w, "general.quantization_version", 2, &err) ||
        dsq_ggufw_set_u8(w, "t.u8", 7, &err) || dsq_ggufw_set_i8(w, "t.i8", -7, &err) ||
        dsq_ggufw_set_u16(w, "t.u16", 700, &err) || dsq_ggufw_set_i16(w, "t.i16", -700, &err) ||
        dsq_ggufw_set_i32(w, "t.i32", -70000, &err) || dsq_ggufw_set_f32(w, "t.f32", 1e-3f, &err) ||
        dsq_ggufw_set_bool(w, "t.bool", 1, &err) || dsq_ggufw_set_u64(w, "t.u64", 1ull << 40, &err) ||
        dsq_ggufw_set_i64(w, "t.i64", -(1ll << 40), &err) || dsq_ggufw_set_f64(w, "t.f64", 2.5, &err) ||
        dsq_ggufw_set_str(w, "t.empty", "", &err) ||
        dsq_ggufw_set_arr(w, "t.a.u8", DSQ_GGUF_U8, u8, 2, &err) ||
        dsq_ggufw_set_arr(w, "t.a.bool", DSQ_GGUF_BOOL, bools, 2, &err) ||
        dsq_ggufw_set_arr(w, "t.a.i64", DSQ_GGUF_I64, i64, 2, &err) ||
        dsq_ggufw_set_arr(w, "t.a.f64", DSQ_GGUF_F64, f64, 2, &err) ||
        dsq_ggufw_set_arr(w, "t.a.f32", DSQ_GGUF_F32, f32, 2, &err) ||
        dsq_ggufw_set_str(w, "tokenizer.ggml.model", "gpt2", &err) ||
        dsq_ggufw_set_arr_str(w, "tokenizer.ggml.tokens", tok, NULL, 8, &err) ||
        dsq_ggufw_set_arr(w, "tokenizer.ggml.token_type", DSQ_GGUF_I32, types, 8, &err) ||
        dsq_ggufw_set_arr_str(w, "tokenizer.ggml.merges", merges, NULL, 2, &err) ||
        dsq_ggufw_set_u32(w, "tokenizer.ggml.bos_token_id", 0, &err))
        gguf_die(&err);
    static const struct { const char *name; int type, nd; int64_t ne[4]; } t[] = {
        {"output_norm.weight", DSQ_GGML_F32, 1, {6, 1, 1, 1}},
        {"blk.0.attn_q.weight", DSQ_GGML_Q8_0, 2, {32, 3, 1, 1}},
        {"blk.0.ffn_up_exps.weight", DSQ_GGML_Q4_K, 3, {256, 1, 2, 1}},
        {"blk.0.attn_k_b.weight", DSQ_GGML_BF16, 4, {3, 2, 2, 2}},
        {"blk.0.empty", DSQ_GGML_F16, 2, {0, 3, 1, 1}},
    };
    int nt = with_tensors ? (int)(sizeof t / sizeof t[0]) : 0;
    for (int i = 0; i < nt; i++)
        if (dsq_ggufw_add_tensor(w, t[i].name, t[i].type, t[i].nd, t[i].ne, &err) != i) gguf_die(&err);
    uint8_t buf[1024];
    for (int i = 0; i < nt; i++) {
        uint64_t nb = dsq_ggufw_nbytes(w, i);
        for (uint64_t k = 0; k < nb; k++) buf[k] = (uint8_t)(k * 7 + (uint64_t)i);
        if (dsq_ggufw_write(w, i, 0, buf, (size_t)nb, &err)) gguf_die(&err);
    }
    if (dsq_ggufw_finish(w, &err)) gguf_die(&err);
    return slurp(out, n);
}

/* Replace the first run of `from` in b[0..n) by `to` (same length). */
static void patch(uint8_t *b, size_t n, const char *from, const char *to) {
    size_t l = strlen(from);
    for (size_t i = 0; i + l <= n; i++)
        if (!memcmp(b + i, from, l)) {
            memcpy(b + i, to, l);
            return;
        }
    fprintf(stderr, "gen_corpus: '%s' not found\n", from);
    exit(1);
}

static void gguf_seeds(void) {
    size_t n;
    uint8_t *b = gguf_write(0, 1, &n);
    seed("gguf", "sample", b, n);
    seed("gguf", "cut-in-header", b, 200);
    seed("gguf", "cut-in-data", b, n - 40);
    b[4] = 2;
    seed("gguf", "version-2", b, n);
    b[4] = 3;
    /* readable, but the writer refuses to copy it: quantized tensors and no
     * general.quantization_version */
    patch(b, n, "general.quantization_version", "general.quantization_versioX");
    seed("gguf", "no-quantization-version", b, n);
    patch(b, n, "t.i16", "t.u16");
    seed("gguf", "duplicate-key", b, n);
    free(b);
    b = gguf_write(64, 1, &n);
    seed("gguf", "align-64", b, n);
    free(b);
    b = gguf_write(0, 0, &n);
    seed("gguf", "no-tensors", b, n);
    free(b);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: gen_corpus OUT_DIR\n");
        return 2;
    }
    g_out = argv[1];
    const char *sh = getenv("DSQ_SHARED");
    if (!sh || !*sh) sh = "../shared";
    struct stat st;
    const char *shared = stat(fuzz_path(sh, "models/tiny-v32/config.json"), &st) == 0 ? sh : NULL;
    char ck1[1024], ck1b[1024], ck2[1024];
    snprintf(ck1, sizeof ck1, "%s", fuzz_dir("ck1"));
    snprintf(ck1b, sizeof ck1b, "%s", fuzz_dir("ck1b"));
    snprintf(ck2, sizeof ck2, "%s", fuzz_dir("ck2"));
    if (fuzz_gen_ckpt(ck1, 1, 0) || fuzz_gen_ckpt(ck1b, 1, 1) || fuzz_gen_ckpt(ck2, 2, 0)) return 1;

    st_header_seeds(ck1, ck2);
    config_seeds(shared);
    ckpt_file_seeds(ck1, ck1b);
    ckpt_index_seeds(ck2);
    archive_seeds(ck1, ck2);
    container_seeds(ck1b); /* the pipeline reads FP8 with 128x128 blocks only */
    tokenizer_seeds(shared);
    tokens_seeds(shared);
    recipe_seeds();
    round_trip_seeds();
    gguf_seeds();
    printf("%d seed files, %zu bytes, in %s%s\n", g_n, g_bytes, g_out,
           shared ? "" : " (no shared models: tokenizer and config seeds are synthetic only)");
    return 0;
}
