/*
 * cmd_inspect.c -- `dsq inspect PATH [--json]`: what a checkpoint (folder,
 * safetensors file or archive) holds: its configuration, tensor counts,
 * parameters and bytes by class, dtypes, FP8 scale statistics and every
 * inconsistency noticed while reading it.
 */
#include "convert/cli.h"
#include "formats/source.h"
#include "quant/quant.h"
#include "common.h"
#include "synth/gen.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>

typedef struct {
    int64_t tensors, params;
    uint64_t bytes;
} cls_stat;

typedef struct {
    cls_stat cls[DSQ_C_COUNT];
    int64_t n_tensors, n_scales, n_mtp_tensors;
    int64_t params_total, params_main;
    uint64_t bytes_total;
    int64_t dtype_count[DSQ_DT_COUNT];
    /* FP8 block scales */
    int64_t n_scale_vals, n_pow2;
    double log2_min, log2_max, log2_sum;
} summary;

static void summarize(const dsq_ckpt *ck, summary *s) {
    memset(s, 0, sizeof *s);
    s->log2_min = INFINITY;
    s->log2_max = -INFINITY;
    int n = dsq_ckpt_n_tensors(ck);
    for (int i = 0; i < n; i++) {
        const dsq_tinfo *t = dsq_ckpt_tensor(ck, i);
        s->n_tensors++;
        s->bytes_total += t->nbytes;
        s->dtype_count[t->dtype]++;
        if (t->role == DSQ_R_SCALE) {
            s->n_scales++;
            /* scale bytes are accounted to the class of their weight */
            const dsq_tinfo *w = dsq_ckpt_tensor(ck, t->weight_idx);
            dsq_class c = w->is_mtp ? DSQ_C_MTP : dsq_role_class(w->role);
            s->cls[c].bytes += t->nbytes;
            continue;
        }
        dsq_class c = t->is_mtp ? DSQ_C_MTP : dsq_role_class(t->role);
        if (t->role == DSQ_R_UNKNOWN) c = DSQ_C_NORM;
        if (t->is_mtp) s->n_mtp_tensors++;
        s->cls[c].tensors++;
        s->cls[c].params += t->numel;
        s->cls[c].bytes += t->nbytes;
        s->params_total += t->numel;
        if (!t->is_mtp) s->params_main += t->numel;
        int64_t sr, sc;
        const float *sv = dsq_ckpt_scales(ck, i, &sr, &sc);
        for (int64_t k = 0; sv && k < sr * sc; k++) {
            int e;
            double f = frexp(sv[k], &e);
            double l2 = log2(sv[k]);
            s->n_scale_vals++;
            s->n_pow2 += f == 0.5;
            s->log2_sum += l2;
            if (l2 < s->log2_min) s->log2_min = l2;
            if (l2 > s->log2_max) s->log2_max = l2;
        }
    }
}

/* The configuration as dsq normalises it (the HF key names), as JSON. */
static cJSON *config_json(const dsq_config *c) {
    char *s = dsq_config_to_json(c);
    cJSON *o = s ? cJSON_Parse(s) : NULL;
    free(s);
    return o ? o : cJSON_CreateObject();
}

static void print_config(const dsq_config *c) {
    printf("model      %s%s, %d layers (%d dense) + %d MTP, hidden %d, vocab %d\n", c->model_type,
           c->fp8 ? " fp8" : c->ctensors ? " compressed-tensors" : "", c->n_layers, c->first_k_dense, c->n_mtp_layers, c->hidden_size,
           c->vocab_size);
    printf("attention  %d heads, q_lora %d, kv_lora %d, nope %d, rope %d, v %d%s\n", c->n_heads,
           c->q_lora_rank, c->kv_lora_rank, c->qk_nope_head_dim, c->qk_rope_head_dim,
           c->v_head_dim, c->has_yarn ? ", YaRN" : "");
    if (c->has_indexer)
        printf("indexer    %d heads x %d, top-k %d\n", c->index_n_heads, c->index_head_dim, c->index_topk);
    printf("moe        %d routed x %d + %d shared, top-%d of %d groups keep %d, scale %.3g\n",
           c->n_routed_experts, c->moe_intermediate_size, c->n_shared_experts,
           c->n_experts_per_tok, c->n_group, c->topk_group, c->routed_scaling_factor);
}

/* Any other source (a GGUF file): configuration, and parameters and bytes
 * by storage scheme, from the source's own tensor list. */
static int inspect_source(const dsq_src *src, const char *path, int json) {
    const dsq_config *c = dsq_src_config(src);
    int64_t params = 0, sp[DSQ_Q_COUNT] = {0};
    uint64_t bytes = 0, sb[DSQ_Q_COUNT] = {0};
    for (int i = 0; i < dsq_src_n_tensors(src); i++) {
        const dsq_stensor *t = dsq_src_tensor(src, i);
        params += t->rows * t->cols;
        bytes += t->nbytes;
        if (t->scheme >= 0 && t->scheme < DSQ_Q_COUNT) {
            sp[t->scheme] += t->rows * t->cols;
            sb[t->scheme] += t->nbytes;
        }
    }
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "path", path);
        cJSON_AddStringToObject(o, "source", dsq_src_kind(src));
        cJSON_AddItemToObject(o, "config", config_json(c));
        cJSON_AddNumberToObject(o, "tensors", dsq_src_n_tensors(src));
        cJSON_AddNumberToObject(o, "params", (double)params);
        cJSON_AddNumberToObject(o, "bytes", (double)bytes);
        cJSON *sc = cJSON_AddObjectToObject(o, "schemes");
        for (int k = 0; k < DSQ_Q_COUNT; k++)
            if (sp[k]) {
                cJSON *e = cJSON_AddObjectToObject(sc, dsq_q_scheme(k)->name);
                cJSON_AddNumberToObject(e, "params", (double)sp[k]);
                cJSON_AddNumberToObject(e, "bytes", (double)sb[k]);
            }
        char *js = cJSON_Print(o);
        if (js) puts(js);
        free(js);
        cJSON_Delete(o);
        return 0;
    }
    printf("%s (%s)\n", path, dsq_src_kind(src));
    print_config(c);
    printf("tensors    %d (routed experts one by one)\n", dsq_src_n_tensors(src));
    printf("params     %lld\n", (long long)params);
    printf("bytes      %llu (%.3f bits per weight)\n\n", (unsigned long long)bytes, params ? 8.0 * (double)bytes / (double)params : 0);
    printf("%-20s %16s %16s\n", "scheme", "params", "bytes");
    for (int k = 0; k < DSQ_Q_COUNT; k++)
        if (sp[k]) printf("%-20s %16lld %16llu\n", dsq_q_scheme(k)->name, (long long)sp[k], (unsigned long long)sb[k]);
    return 0;
}

static int usage(FILE *to) {
    FILE *f = cli_usage_begin(to);
    fprintf(f, "usage: dsq inspect PATH [--json] [--allow-unknown]\n\n"
               "Summarise a checkpoint folder, a .safetensors file or an archive (.tar, .tar.gz, .zip)\n"
               "of a checkpoint folder: model configuration, tensor counts, parameters and bytes by\n"
               "class, dtypes, FP8 scale statistics and inconsistencies.\n\n"
               "  --json            print one JSON object instead of the table\n"
               "  --allow-unknown   keep tensors whose names are outside the DeepSeek grammar\n");
    return cli_usage_end(to, f);
}

int cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    int json = 0, flags = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_is(argv[i], "--help") || cli_is(argv[i], "-h")) return usage(stdout);
        else if (cli_is(argv[i], "--json")) json = 1;
        else if (cli_is(argv[i], "--allow-unknown")) flags |= DSQ_SRC_ALLOW_UNKNOWN;
        else if (argv[i][0] == '-') {
            fprintf(stderr, "dsq inspect: unknown option '%s'\n", argv[i]);
            return usage(stderr);
        } else if (!path) path = argv[i];
        else return usage(stderr);
    }
    if (!path) return usage(stderr);
    dsq_err err = {0};
    dsq_src *src = NULL;
    if (dsq_src_open(&src, path, flags, &err)) return cli_err("inspect", &err);
    if (dsq_src_ctr(src)) {
        int rc = cmd_inspect_container(dsq_src_ctr(src), path, json);
        dsq_src_close(src);
        return rc;
    }
    if (!dsq_src_ckpt(src)) {
        int rc = inspect_source(src, path, json);
        dsq_src_close(src);
        return rc;
    }
    /* a checkpoint: what only its safetensors shards tell (scale
     * companions, dtypes, FP8 scale statistics, inconsistencies) */
    const dsq_ckpt *ck = dsq_src_ckpt(src);
    const dsq_config *c = dsq_ckpt_config(ck);
    summary s;
    summarize(ck, &s);
    /* the release format, and the dsq scheme each stored tensor is read as */
    const char *fmt = c->ctensors ? "compressed-tensors" : c->fp8 ? "deepseek-fp8" : "plain";
    int sn[DSQ_Q_COUNT] = {0};
    for (int i = 0; i < dsq_src_n_tensors(src); i++) {
        int k = dsq_src_tensor(src, i)->scheme;
        if (k >= 0 && k < DSQ_Q_COUNT) sn[k]++;
    }
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "path", path);
        cJSON_AddStringToObject(o, "source", dsq_ckpt_is_archive(ck) ? "archive" : "folder");
        cJSON_AddItemToObject(o, "config", config_json(c));
        cJSON_AddNumberToObject(o, "shards", dsq_ckpt_n_shards(ck));
        cJSON_AddStringToObject(o, "format", fmt);
        cJSON *scj = cJSON_AddObjectToObject(o, "schemes");
        for (int k = 0; k < DSQ_Q_COUNT; k++)
            if (sn[k]) cJSON_AddNumberToObject(scj, dsq_q_scheme(k)->name, sn[k]);
        cJSON_AddNumberToObject(o, "tensors", (double)s.n_tensors);
        cJSON_AddNumberToObject(o, "scale_tensors", (double)s.n_scales);
        cJSON_AddNumberToObject(o, "mtp_tensors", (double)s.n_mtp_tensors);
        cJSON_AddNumberToObject(o, "params", (double)s.params_total);
        cJSON_AddNumberToObject(o, "params_main", (double)s.params_main);
        cJSON_AddNumberToObject(o, "bytes", (double)s.bytes_total);
        cJSON *cl = cJSON_AddObjectToObject(o, "classes");
        for (int k = 0; k < DSQ_C_COUNT; k++) {
            if (k == DSQ_C_SCALE) continue;
            cJSON *e = cJSON_AddObjectToObject(cl, dsq_class_name((dsq_class)k));
            cJSON_AddNumberToObject(e, "tensors", (double)s.cls[k].tensors);
            cJSON_AddNumberToObject(e, "params", (double)s.cls[k].params);
            cJSON_AddNumberToObject(e, "bytes", (double)s.cls[k].bytes);
        }
        cJSON *dt = cJSON_AddObjectToObject(o, "dtypes");
        for (int k = 1; k < DSQ_DT_COUNT; k++)
            if (s.dtype_count[k]) cJSON_AddNumberToObject(dt, dsq_dtype_name((dsq_dtype)k), (double)s.dtype_count[k]);
        if (s.n_scale_vals) {
            cJSON *sc = cJSON_AddObjectToObject(o, "fp8_scales");
            cJSON_AddNumberToObject(sc, "count", (double)s.n_scale_vals);
            cJSON_AddNumberToObject(sc, "power_of_two", (double)s.n_pow2);
            cJSON_AddNumberToObject(sc, "log2_min", s.log2_min);
            cJSON_AddNumberToObject(sc, "log2_max", s.log2_max);
            cJSON_AddNumberToObject(sc, "log2_mean", s.log2_sum / (double)s.n_scale_vals);
        }
        cJSON *w = cJSON_AddArrayToObject(o, "warnings");
        for (int k = 0; k < dsq_ckpt_n_warnings(ck); k++)
            cJSON_AddItemToArray(w, cJSON_CreateString(dsq_ckpt_warning(ck, k)));
        char *js = cJSON_Print(o);
        if (js) puts(js);
        free(js);
        cJSON_Delete(o);
    } else {
        printf("%s (%s, %d shard%s)\n", path, dsq_ckpt_is_archive(ck) ? "archive" : "folder",
               dsq_ckpt_n_shards(ck), dsq_ckpt_n_shards(ck) == 1 ? "" : "s");
        print_config(c);
        printf("format     %s\n", c->ctensors ? "compressed-tensors (llm-compressor; vLLM, SGLang)"
                                   : c->fp8 ? "DeepSeek FP8 release (E4M3, 128x128 block scales)" : "plain floats");
        printf("tensors    %lld (%lld scale companions, %lld MTP)\n", (long long)s.n_tensors,
               (long long)s.n_scales, (long long)s.n_mtp_tensors);
        printf("params     %lld (main model %lld)\n", (long long)s.params_total, (long long)s.params_main);
        printf("bytes      %llu (%.2f MiB)\n\n", (unsigned long long)s.bytes_total,
               (double)s.bytes_total / 1048576.0);
        printf("%-16s %8s %16s %16s\n", "class", "tensors", "params", "bytes");
        for (int k = 0; k < DSQ_C_COUNT; k++) {
            if (k == DSQ_C_SCALE || !s.cls[k].tensors) continue;
            printf("%-16s %8lld %16lld %16llu\n", dsq_class_name((dsq_class)k), (long long)s.cls[k].tensors,
                   (long long)s.cls[k].params, (unsigned long long)s.cls[k].bytes);
        }
        printf("\ndtypes    ");
        for (int k = 1; k < DSQ_DT_COUNT; k++)
            if (s.dtype_count[k]) printf(" %s:%lld", dsq_dtype_name((dsq_dtype)k), (long long)s.dtype_count[k]);
        printf("\nschemes   ");
        for (int k = 0; k < DSQ_Q_COUNT; k++)
            if (sn[k]) printf(" %s:%d", dsq_q_scheme(k)->name, sn[k]);
        printf("\n");
        if (s.n_scale_vals)
            printf("fp8 scales %lld values, %lld powers of two, log2 range [%g, %g], mean %.2f\n",
                   (long long)s.n_scale_vals, (long long)s.n_pow2, s.log2_min, s.log2_max,
                   s.log2_sum / (double)s.n_scale_vals);
        for (int k = 0; k < dsq_ckpt_n_warnings(ck); k++) printf("warning: %s\n", dsq_ckpt_warning(ck, k));
        if (!dsq_ckpt_n_warnings(ck)) printf("no inconsistencies found\n");
    }
    dsq_src_close(src);
    return 0;
}
