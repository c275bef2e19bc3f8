/*
 * test_hf_formats.c -- the Hugging Face layouts vLLM and SGLang serve, out
 * of dsq and back in (formats/wr_hf.c, formats/ckpt_ct.c):
 *   - dsq quant --preset int4-experts then dsq export --to
 *     compressed-tensors: every tensor of the folder decodes, through dsq's
 *     reader, to exactly the floats q.dsq stores, and verify finds KL 0;
 *     the same folder decoded by tests/ct_ref.py (a reader written from
 *     ../shared/spec/formats.md Part C alone; skipped, counted, without
 *     python3) gives the same floats bit for bit;
 *   - quantization_config: the int4 experts in a pack-quantized group, FP8
 *     blocks float-quantized, router / weights_proj / lm_head ignored;
 *   - every CT preset (w4a16, w4a16-g32, w4a16-asym, w8a16, fp8-block)
 *     round trips value for value;
 *   - dsq export --to hf: from the FP8 release every projection is
 *     transcoded (same values, powers of two), from BF16 every scale is a
 *     power of two and the folder has the release's dtypes;
 *   - sharding (--shard-size) gives several shards and the same values;
 *     --force replaces a model folder but not a folder of other things;
 *     damaged companions are refused naming the tensor.
 */
#include "test.h"
#include "formats/source.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* Every tensor of a decodes to the same floats in b (same names). */
static int same_values(const char *a, const char *b, char *why, size_t cap) {
    dsq_src *sa = NULL, *sb = NULL;
    dsq_err err = {0};
    int bad = 0;
    if (dsq_src_open(&sa, a, 0, &err) || dsq_src_open(&sb, b, 0, &err)) {
        snprintf(why, cap, "open: %s", err.msg);
        dsq_src_close(sa);
        return 0;
    }
    if (dsq_src_n_tensors(sa) != dsq_src_n_tensors(sb)) {
        snprintf(why, cap, "%d vs %d tensors", dsq_src_n_tensors(sa), dsq_src_n_tensors(sb));
        bad = 1;
    }
    for (int i = 0; i < dsq_src_n_tensors(sa) && !bad; i++) {
        const dsq_stensor *t = dsq_src_tensor(sa, i);
        int j = dsq_src_find(sb, t->name);
        if (j < 0) { snprintf(why, cap, "%s missing", t->name); bad = 1; break; }
        const dsq_stensor *u = dsq_src_tensor(sb, j);
        if (u->rows != t->rows || u->cols != t->cols) { snprintf(why, cap, "%s: shape", t->name); bad = 1; break; }
        size_t n = (size_t)(t->rows * t->cols);
        float *x = malloc(n * 4 + 4), *y = malloc(n * 4 + 4);
        if (!x || !y || dsq_src_rows_f32(sa, i, 0, t->rows, x, &err) || dsq_src_rows_f32(sb, j, 0, u->rows, y, &err)) {
            snprintf(why, cap, "%s: read: %s", t->name, err.msg);
            bad = 1;
        } else if (memcmp(x, y, n * 4)) {
            size_t k = 0;
            while (k < n && !memcmp(x + k, y + k, 4)) k++;
            snprintf(why, cap, "%s: element %zu: %.9g vs %.9g", t->name, k, (double)x[k], (double)y[k]);
            bad = 1;
        }
        free(x);
        free(y);
    }
    dsq_src_close(sa);
    dsq_src_close(sb);
    return !bad;
}

static cJSON *read_json(const char *path) {
    size_t n;
    char *b = t_read_file(path, &n);
    cJSON *j = b ? cJSON_ParseWithLength(b, n) : NULL;
    free(b);
    return j;
}

/* The independent reader can run: python3 and tests/ct_ref.py. */
static int has_python(void) {
    return t_file_exists("tests/ct_ref.py") && t_run("python3 -c 'import json, struct' >/dev/null 2>&1", NULL) == 0;
}

TEST(test_hf_ct_int4_experts_round_trip) {
    const char *m = t_shared_model("tiny-v32");
    if (!m) SKIP("../shared/models/tiny-v32 absent");
    const char *d = t_tmpdir();
    char cmd[4096], q[1024], ct[1024], why[512];
    snprintf(q, sizeof q, "%s", t_path(d, "q.dsq"));
    snprintf(ct, sizeof ct, "%s", t_path(d, "ct"));
    snprintf(cmd, sizeof cmd, "%s quant '%s' --preset int4-experts -o '%s' --quiet >/dev/null", t_dsq(), m, q);
    CHECK(t_run(cmd, NULL) == 0);
    snprintf(cmd, sizeof cmd, "%s export '%s' -o '%s/' --to compressed-tensors --quiet >/dev/null", t_dsq(), q, ct);
    CHECK(t_run(cmd, NULL) == 0);
    CHECKF(same_values(q, ct, why, sizeof why), "%s", why);
    /* the config vLLM reads */
    cJSON *cfg = read_json(t_path(ct, "config.json"));
    CHECK(cfg);
    const cJSON *qc = cJSON_GetObjectItemCaseSensitive(cfg, "quantization_config");
    CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(qc, "quant_method")), "compressed-tensors"));
    CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(qc, "format")), "mixed-precision"));
    char *txt = cJSON_PrintUnformatted(qc);
    CHECK(strstr(txt, "mlp\\\\.experts\\\\.\\\\d+\\\\.gate_proj$") && strstr(txt, "\"pack-quantized\"") &&
          strstr(txt, "\"float-quantized\"") && strstr(txt, "\"group_size\":128"));
    const cJSON *ig = cJSON_GetObjectItemCaseSensitive(qc, "ignore");
    char *igs = cJSON_PrintUnformatted(ig);
    CHECKF(strstr(igs, "\"lm_head\"") && strstr(igs, "weights_proj$") && strstr(igs, "mlp\\\\.gate$"), "ignore: %s", igs);
    free(igs);
    free(txt);
    cJSON_Delete(cfg);
    /* the index names every file tensor; experts are stored packed */
    cJSON *idx = read_json(t_path(ct, "model.safetensors.index.json"));
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(idx, "weight_map");
    CHECK(cJSON_GetObjectItemCaseSensitive(wm, "model.layers.1.mlp.experts.3.up_proj.weight_packed"));
    CHECK(cJSON_GetObjectItemCaseSensitive(wm, "model.layers.1.mlp.experts.3.up_proj.weight_shape"));
    CHECK(cJSON_GetObjectItemCaseSensitive(wm, "model.layers.1.self_attn.o_proj.weight_scale"));
    CHECK(!cJSON_GetObjectItemCaseSensitive(wm, "model.layers.1.mlp.experts.3.up_proj.weight"));
    cJSON_Delete(idx);
    /* eval: identical logits (KL exactly 0, same perplexity) */
    char *out = NULL;
    snprintf(cmd, sizeof cmd, "%s verify '%s' '%s' --tokens '%s' --max-windows 3 --no-experts --json - 2>/dev/null", t_dsq(), q,
             ct, t_path(m, "eval.tokens.json"));
    CHECK(t_run(cmd, &out) == 0);
    cJSON *v = out ? cJSON_Parse(strchr(out, '{')) : NULL;
    free(out);
    CHECK(v && cJSON_GetObjectItemCaseSensitive(v, "kl_mean")->valuedouble == 0.0);
    cJSON_Delete(v);
    /* an independent reader written from the spec agrees bit for bit */
    if (!has_python()) SKIP("python3 (or tests/ct_ref.py) absent: the independent compressed-tensors reader is not run");
    char dec[1024];
    snprintf(dec, sizeof dec, "%s", t_path(d, "dec"));
    snprintf(cmd, sizeof cmd, "python3 tests/ct_ref.py decode '%s' '%s' 2>&1", ct, dec);
    out = NULL;
    int rc = t_run(cmd, &out);
    CHECKF(rc == 0, "ct_ref.py decode: %s", out ? out : "");
    free(out);
    CHECKF(same_values(q, dec, why, sizeof why), "independent reader: %s", why);
}

TEST(test_hf_ct_presets_round_trip) {
    const char *m = t_shared_model("tiny-v32-bf16");
    if (!m) SKIP("../shared/models/tiny-v32-bf16 absent");
    const char *d = t_tmpdir();
    static const char *const presets[] = {"w4a16", "w4a16-g32", "w4a16-asym", "w8a16", "fp8-block"};
    int py = has_python();
    char cmd[4096], q[1024], ct[1024], dec[1024], why[512];
    for (size_t k = 0; k < sizeof presets / sizeof presets[0]; k++) {
        snprintf(q, sizeof q, "%s/%s.dsq", d, presets[k]);
        snprintf(ct, sizeof ct, "%s/%s-ct", d, presets[k]);
        snprintf(cmd, sizeof cmd, "%s quant '%s' --preset %s -o '%s' --quiet --no-error >/dev/null", t_dsq(), m, presets[k], q);
        CHECKF(t_run(cmd, NULL) == 0, "quant %s", presets[k]);
        /* quant straight into a folder, and export of the container: the same values */
        snprintf(cmd, sizeof cmd, "%s quant '%s' --preset %s -o '%s/' --quiet --no-error >/dev/null", t_dsq(), m, presets[k], ct);
        CHECKF(t_run(cmd, NULL) == 0, "quant %s -o DIR/", presets[k]);
        CHECKF(same_values(q, ct, why, sizeof why), "%s: %s", presets[k], why);
        if (py) {
            snprintf(dec, sizeof dec, "%s/%s-dec", d, presets[k]);
            snprintf(cmd, sizeof cmd, "python3 tests/ct_ref.py decode '%s' '%s' >/dev/null 2>&1", ct, dec);
            CHECKF(t_run(cmd, NULL) == 0, "ct_ref.py decode %s", presets[k]);
            CHECKF(same_values(q, dec, why, sizeof why), "%s, independent reader: %s", presets[k], why);
        }
    }
    if (!py) SKIP("python3 (or tests/ct_ref.py) absent: the independent compressed-tensors reader is not run");
}

TEST(test_hf_fp8_release_format) {
    const char *m = t_shared_model("tiny-v32");
    const char *mb = t_shared_model("tiny-v32-bf16");
    if (!m || !mb) SKIP("../shared/models/tiny-v32 absent");
    const char *d = t_tmpdir();
    char cmd[4096], a[1024], b[1024], why[512];
    snprintf(a, sizeof a, "%s", t_path(d, "from-fp8"));
    snprintf(b, sizeof b, "%s", t_path(d, "from-bf16"));
    /* the FP8 release: every value kept (its scales are powers of two) */
    char *out = NULL;
    snprintf(cmd, sizeof cmd, "%s export '%s' -o '%s' --to hf --quiet 2>&1", t_dsq(), m, a);
    CHECK(t_run(cmd, &out) == 0);
    CHECKF(out && strstr(out, "0 quantized"), "%s", out ? out : "");
    free(out);
    CHECKF(same_values(m, a, why, sizeof why), "%s", why);
    cJSON *cfg = read_json(t_path(a, "config.json"));
    const cJSON *qc = cJSON_GetObjectItemCaseSensitive(cfg, "quantization_config");
    CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(qc, "quant_method")), "fp8"));
    CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(qc, "scale_fmt")), "ue8m0"));
    cJSON_Delete(cfg);
    /* from BF16: the release's dtypes, every scale a power of two */
    snprintf(cmd, sizeof cmd, "%s export '%s' -o '%s' --to hf --quiet >/dev/null 2>&1", t_dsq(), mb, b);
    CHECK(t_run(cmd, NULL) == 0);
    out = NULL;
    snprintf(cmd, sizeof cmd, "%s inspect '%s' 2>&1", t_dsq(), b);
    CHECK(t_run(cmd, &out) == 0);
    CHECKF(out && strstr(out, "F32:187 BF16:34 F8_E4M3:184") && strstr(out, "386 values, 386 powers of two"), "%s", out);
    free(out);
    /* the bar: mean KL to the BF16 model over the second halves of all eval
     * windows no worse than the released FP8 twin's (1.90e-3).  Two full
     * evaluations: a figure for the plain build to check (sanitized runs
     * have run the same export above). */
    if (getenv("ASAN_OPTIONS") || getenv("UBSAN_OPTIONS")) return;
    double kl[2];
    const char *cand[2] = {b, m};
    for (int i = 0; i < 2; i++) {
        out = NULL;
        snprintf(cmd, sizeof cmd, "%s verify '%s' '%s' --tokens '%s' --score-from 128 --no-experts --json - 2>/dev/null",
                 t_dsq(), mb, cand[i], t_path(mb, "eval.tokens.json"));
        CHECK(t_run(cmd, &out) == 0);
        cJSON *v = out ? cJSON_Parse(strchr(out, '{')) : NULL;
        free(out);
        const cJSON *k = v ? cJSON_GetObjectItemCaseSensitive(v, "kl_mean") : NULL;
        kl[i] = cJSON_IsNumber(k) ? k->valuedouble : 1e9;
        cJSON_Delete(v);
    }
    CHECKF(kl[0] <= kl[1] && kl[1] < 2.0e-3, "KL from BF16 %.4g, released twin %.4g", kl[0], kl[1]);
}

TEST(test_hf_folder_sharding_and_force) {
    const char *m = t_shared_model("tiny-v32");
    if (!m) SKIP("../shared/models/tiny-v32 absent");
    const char *d = t_tmpdir();
    char cmd[4096], ct[1024], why[512];
    snprintf(ct, sizeof ct, "%s", t_path(d, "ct"));
    snprintf(cmd, sizeof cmd, "%s export '%s' -o '%s' --to ct --shard-size 2M --quiet >/dev/null", t_dsq(), m, ct);
    CHECK(t_run(cmd, NULL) == 0);
    CHECK(t_file_exists(t_path(ct, "model-00001-of-00007.safetensors")));
    CHECK(t_file_exists(t_path(ct, "model-00007-of-00007.safetensors")));
    CHECK(t_file_exists(t_path(ct, "tokenizer.json")));
    CHECKF(same_values(m, ct, why, sizeof why), "%s", why);
    /* an existing folder: refused, replaced with --force, never a folder of other things */
    char *out = NULL;
    snprintf(cmd, sizeof cmd, "%s export '%s' -o '%s' --to ct --quiet", t_dsq(), m, ct);
    int ok = t_run(cmd, &out) != 0 && out && strstr(out, "already exists");
    free(out);
    CHECK(ok);
    snprintf(cmd, sizeof cmd, "%s export '%s' -o '%s' --to ct --force --quiet >/dev/null", t_dsq(), m, ct);
    CHECK(t_run(cmd, NULL) == 0);
    CHECK(t_file_exists(t_path(ct, "model-00001-of-00001.safetensors")));
    CHECK(!t_file_exists(t_path(ct, "model-00001-of-00007.safetensors")));
    CHECK(t_write_file(t_path(ct, "notes.txt"), "mine", 4) == 0);
    out = NULL;
    snprintf(cmd, sizeof cmd, "%s export '%s' -o '%s' --to ct --force --quiet 2>&1", t_dsq(), m, ct);
    ok = t_run(cmd, &out) != 0 && out && strstr(out, "notes.txt");
    free(out);
    CHECK(ok);
    CHECK(t_file_exists(t_path(ct, "notes.txt")) && t_file_exists(t_path(ct, "config.json")));
    /* nothing temporary is left beside it */
    out = NULL;
    snprintf(cmd, sizeof cmd, "ls -a '%s'", d);
    CHECK(t_run(cmd, &out) == 0);
    CHECKF(out && !strstr(out, ".tmp."), "%s", out);
    free(out);
}

/* A damaged companion: one line naming the tensor, non-zero exit. */
TEST(test_hf_ct_damaged_refused) {
    const char *m = t_shared_model("tiny-v32");
    if (!m) SKIP("../shared/models/tiny-v32 absent");
    const char *d = t_tmpdir();
    char cmd[4096], ct[1024];
    snprintf(ct, sizeof ct, "%s", t_path(d, "ct"));
    snprintf(cmd, sizeof cmd, "%s quant '%s' --preset w4a16 -o '%s/' --quiet --no-error >/dev/null", t_dsq(), m, ct);
    CHECK(t_run(cmd, NULL) == 0);
    /* weight_shape of one module says another width */
    size_t n;
    uint8_t *b = t_read_file(t_path(ct, "model-00001-of-00001.safetensors"), &n);
    CHECK(b && n > 8);
    uint64_t hl = 0;
    for (int k = 0; k < 8; k++) hl |= (uint64_t)b[k] << (8 * k);
    cJSON *h = cJSON_ParseWithLength((const char *)b + 8, (size_t)hl);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(h, "model.layers.0.self_attn.o_proj.weight_shape");
    CHECK(e);
    int64_t off = (int64_t)cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(e, "data_offsets"), 0)->valuedouble;
    b[8 + hl + (uint64_t)off + 8] ^= 0x40; /* the in-dimension */
    cJSON_Delete(h);
    CHECK(t_write_file(t_path(ct, "model-00001-of-00001.safetensors"), b, n) == 0);
    free(b);
    char *out = NULL;
    snprintf(cmd, sizeof cmd, "%s inspect '%s' 2>&1", t_dsq(), ct);
    CHECK(t_run(cmd, &out) != 0);
    CHECKF(out && strstr(out, "o_proj") && strstr(out, "weight_shape"), "%s", out ? out : "");
    free(out);
}

/* Kimi-K2-Thinking's layout (dsq gen-tiny --preset tiny-kimi-k2): routed
 * experts INT4 in compressed-tensors, read natively, kept bit for bit in a
 * .dsq (same size) and as Q4_0 in GGUF (every value unchanged). */
TEST(test_hf_kimi_k2_int4_native) {
    const char *d = t_tmpdir();
    char cmd[4096], k[1024], q[1024], g[1024], why[512];
    snprintf(k, sizeof k, "%s", t_path(d, "kimi"));
    snprintf(q, sizeof q, "%s", t_path(d, "kimi.dsq"));
    snprintf(g, sizeof g, "%s", t_path(d, "kimi.gguf"));
    snprintf(cmd, sizeof cmd, "%s gen-tiny '%s' --preset tiny-kimi-k2 2>/dev/null", t_dsq(), k);
    CHECK(t_run(cmd, NULL) == 0);
    char *out = NULL;
    snprintf(cmd, sizeof cmd, "%s inspect '%s'", t_dsq(), k);
    CHECK(t_run(cmd, &out) == 0);
    CHECKF(out && strstr(out, "kimi_k2 compressed-tensors") && strstr(out, "int4-g32-sym:144") && !strstr(out, "indexer"),
           "%s", out ? out : "");
    free(out);
    cJSON *cfg = read_json(t_path(k, "config.json"));
    CHECK(cfg && !strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cfg, "model_type")), "kimi_k2"));
    CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(cfg, "architectures"), 0)),
                  "DeepseekV3ForCausalLM"));
    cJSON_Delete(cfg);
    snprintf(cmd, sizeof cmd, "%s convert '%s' -o '%s' --quiet 2>/dev/null", t_dsq(), k, q);
    CHECK(t_run(cmd, NULL) == 0);
    CHECKF(same_values(k, q, why, sizeof why), "%s", why);
    out = NULL;
    snprintf(cmd, sizeof cmd, "du -sb '%s' '%s'", k, q);
    CHECK(t_run(cmd, &out) == 0 && out);
    long long a = atoll(out), b = atoll(strchr(out, '\n') + 1);
    free(out);
    CHECKF(b <= a * 11 / 10 && b >= a * 9 / 10, "folder %lld bytes, .dsq %lld", a, b);
    snprintf(cmd, sizeof cmd, "%s export '%s' -o '%s' --quiet >/dev/null 2>&1", t_dsq(), k, g);
    CHECK(t_run(cmd, NULL) == 0);
    CHECKF(same_values(k, g, why, sizeof why), "GGUF: %s", why);
    dsq_src *s;
    dsq_err err = {0};
    CHECK(dsq_src_open(&s, g, 0, &err) == 0);
    int i = dsq_src_find(s, "model.layers.1.mlp.experts.5.down_proj.weight");
    CHECK(i >= 0 && dsq_src_tensor(s, i)->scheme == DSQ_Q_GGML_Q4_0);
    dsq_src_close(s);
}

/* deepseek_v3 (no indexer): generated, evaluated, round tripped. */
TEST(test_hf_deepseek_v3_preset) {
    const char *d = t_tmpdir();
    char cmd[4096], m[1024], ct[1024];
    snprintf(m, sizeof m, "%s", t_path(d, "v3"));
    snprintf(ct, sizeof ct, "%s", t_path(d, "v3-ct"));
    snprintf(cmd, sizeof cmd, "%s gen-tiny '%s' --preset tiny-v3 2>/dev/null && %s quant '%s' --preset w4a16 -o '%s/' --quiet "
             "--no-error >/dev/null && %s eval '%s' --random-tokens 300 --max-windows 1 >/dev/null 2>&1", t_dsq(), m, t_dsq(),
             m, ct, t_dsq(), ct);
    CHECK(t_run(cmd, NULL) == 0);
    char *out = NULL;
    snprintf(cmd, sizeof cmd, "%s inspect '%s'", t_dsq(), m);
    CHECK(t_run(cmd, &out) == 0);
    CHECKF(out && strstr(out, "model      deepseek_v3 fp8") && !strstr(out, "indexer"), "%s", out ? out : "");
    free(out);
}

/* dsq's reader against checkpoints another writer made: tests/ct_ref.py
 * encodes tiny-v32-bf16 in every compressed-tensors form (Kimi-K2-Thinking's
 * Linear + ignore layout, int4 with zero points, pack-quantized and
 * int-quantized int8, FP8 per tensor / channel / block, mixed groups) and
 * decodes them from the spec; dsq reads each to the same floats. */
TEST(test_hf_ct_reader_independent_files) {
    const char *m = t_shared_model("tiny-v32-bf16");
    if (!m) SKIP("../shared/models/tiny-v32-bf16 absent");
    if (!has_python()) SKIP("python3 (or tests/ct_ref.py) absent: no independently written checkpoints");
    const char *d = t_tmpdir();
    static const char *const schemes[] = {"kimi-int4", "w4a16-asym", "w8a16", "int8-int", "fp8-block", "fp8-channel",
                                          "fp8-tensor", "mixed"};
    char cmd[4096], enc[1024], dec[1024], why[512];
    for (size_t k = 0; k < sizeof schemes / sizeof schemes[0]; k++) {
        snprintf(enc, sizeof enc, "%s/%s", d, schemes[k]);
        snprintf(dec, sizeof dec, "%s/%s-dec", d, schemes[k]);
        snprintf(cmd, sizeof cmd, "python3 tests/ct_ref.py encode '%s' '%s' --scheme %s >/dev/null 2>&1 && "
                 "python3 tests/ct_ref.py decode '%s' '%s' >/dev/null 2>&1", m, enc, schemes[k], enc, dec);
        CHECKF(t_run(cmd, NULL) == 0, "ct_ref.py %s", schemes[k]);
        CHECKF(same_values(dec, enc, why, sizeof why), "%s: %s", schemes[k], why);
    }
}
