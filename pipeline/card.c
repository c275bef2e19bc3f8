/*
 * card.c -- the model card (MODEL_CARD.md) that `dsq pack` puts beside the
 * container's parts (docs/PACKAGING.md section 3): Markdown generated from
 * the container's configuration, directory and metadata (recipe,
 * provenance), the pack's parts and checksums, and optionally the drift
 * results of a `dsq verify --json` report.
 *
 * formats/pack.c owns the archive and the manifest and asks for the card's
 * text through its card callback once the first pass has computed every
 * checksum; this file owns what the card says.  Text taken from files we did
 * not write (recipe names, report keys and strings) is escaped so it cannot
 * change the card's Markdown structure or inject HTML.
 */
#include "pipeline/card.h"
#include "common.h"
#include "formats/container.h"
#include "formats/json.h"
#include "quant/quant.h"

#include <stdarg.h>
#include <stdio.h>

#define CARD_REPORT_CAP (64u << 20)

_Static_assert(DSQ_Q_COUNT <= 64, "scheme bitmask");

struct dsq_card {
    cJSON *report;       /* parsed verify report, or NULL */
    char *report_name;   /* its file name, for the card; from malloc */
};

/* ========================================================================
 * Text helpers
 * ======================================================================== */

/* Copy a string for a cell: control characters become '?', long strings are cut. */
static void shown(char *dst, size_t cap, const char *s) {
    size_t i = 0;
    for (; s[i] && i + 4 < cap; i++) dst[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    if (s[i]) memcpy(dst + (i > cap - 4 ? cap - 4 : i), "...", 4);
    else dst[i] = 0;
}

/* A growing text buffer; out-of-memory is sticky. */
typedef struct sb {
    char *s;   /* from malloc */
    size_t n, cap;
    int oom;
} sb;

static void sb_add(sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sb *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) { b->oom = 1; return; }
        if (b->s && b->n + (size_t)k < b->cap) { b->n += (size_t)k; return; }
        size_t nc = (b->cap ? b->cap * 2 : 8192) + (size_t)k;
        char *ns = dsq_realloc(b->s, nc);
        if (!ns) { b->oom = 1; return; }
        b->s = ns;
        b->cap = nc;
    }
}

/* Text from a file we did not write (recipe names, report keys) placed in a
 * Markdown table cell or line: no line breaks, no cell separators, no HTML. */
static void sb_md(sb *b, const char *s) {
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '|') sb_add(b, "\\|");
        else if (ch == '<') sb_add(b, "&lt;");
        else if (ch == '>') sb_add(b, "&gt;");
        else if (ch == '`') sb_add(b, "'");
        else if (ch < 0x20 || ch == 0x7f) sb_add(b, " ");
        else sb_add(b, "%c", ch);
    }
}

static const char *human(char *buf, size_t cap, uint64_t n) {
    if (n >= (1ull << 30)) snprintf(buf, cap, "%.2f GiB", (double)n / (double)(1ull << 30));
    else if (n >= (1ull << 20)) snprintf(buf, cap, "%.2f MiB", (double)n / (double)(1ull << 20));
    else if (n >= 1024) snprintf(buf, cap, "%.1f KiB", (double)n / 1024.0);
    else snprintf(buf, cap, "%llu bytes", (unsigned long long)n);
    return buf;
}

/* ========================================================================
 * Sections
 * ======================================================================== */

/* Parameters and stored bytes by role ([0] ordinary layers, [1] MTP). */
typedef struct role_sums {
    int64_t params[2][DSQ_R_COUNT], n[2][DSQ_R_COUNT];
    uint64_t bytes[2][DSQ_R_COUNT], schemes[2][DSQ_R_COUNT];
    int64_t params_all;
    uint64_t bytes_all;
} role_sums;

static void count_roles(const dsq_ctr *c, role_sums *r) {
    memset(r, 0, sizeof *r);
    for (int i = 0; i < dsq_ctr_n_tensors(c); i++) {
        const dsq_ctensor *t = dsq_ctr_tensor(c, i);
        int m = t->is_mtp ? 1 : 0, ro = t->role >= 0 && t->role < DSQ_R_COUNT ? (int)t->role : 0;
        int64_t np = t->rows * t->cols * (t->experts ? t->experts : 1);
        uint64_t nb = t->arr[0].size + t->arr[1].size + t->arr[2].size;
        r->params[m][ro] += np;
        r->bytes[m][ro] += nb;
        r->n[m][ro] += t->experts ? t->experts : 1;
        if (t->scheme >= 0 && t->scheme < DSQ_Q_COUNT) r->schemes[m][ro] |= 1ull << t->scheme;
        r->params_all += np;
        r->bytes_all += nb;
    }
}

static void card_config(sb *b, const dsq_config *g, const role_sums *r) {
    sb_add(b, "## Model\n\n| | |\n|---|---|\n");
    sb_add(b, "| architecture | ");
    sb_md(b, g->model_type);
    sb_add(b, "%s |\n", g->fp8 ? " (FP8 source checkpoint)" : "");
    int moe = 0;
    for (int l = 0; l < g->n_layers; l++) moe += dsq_config_is_moe_layer(g, l);
    sb_add(b, "| layers | %d (%d dense, %d MoE)%s |\n", g->n_layers, g->n_layers - moe, moe,
           g->n_mtp_layers ? " + multi-token prediction" : "");
    sb_add(b, "| hidden size | %d |\n", g->hidden_size);
    sb_add(b, "| attention | MLA, %d heads, q_lora_rank %d, kv_lora_rank %d, head dims %d nope + %d rope, v %d |\n",
           g->n_heads, g->q_lora_rank, g->kv_lora_rank, g->qk_nope_head_dim, g->qk_rope_head_dim, g->v_head_dim);
    if (g->has_indexer)
        sb_add(b, "| sparse attention (DSA indexer) | %d heads x %d, top-%d tokens |\n", g->index_n_heads,
               g->index_head_dim, g->index_topk);
    sb_add(b, "| experts | %d routed (%d per token, %d groups, top-%d groups) + %d shared, intermediate %d (dense %d) |\n",
           g->n_routed_experts, g->n_experts_per_tok, g->n_group, g->topk_group, g->n_shared_experts,
           g->moe_intermediate_size, g->intermediate_size);
    sb_add(b, "| vocabulary | %d |\n", g->vocab_size);
    sb_add(b, "| context | %d positions", g->max_position_embeddings);
    if (g->has_yarn) sb_add(b, " (YaRN factor %g over %d)", g->yarn_factor, g->yarn_original_max_pos);
    sb_add(b, " |\n| parameters | %lld (%.3f B) |\n", (long long)r->params_all, (double)r->params_all / 1e9);
    sb_add(b, "| stored tensor bytes | %llu (%.3f bits per weight) |\n\n", (unsigned long long)r->bytes_all,
           r->params_all ? 8.0 * (double)r->bytes_all / (double)r->params_all : 0.0);
}

static void card_roles(sb *b, const role_sums *r) {
    sb_add(b, "## Bits per weight by role\n\n"
              "Stored bytes (codes, scales and zero points) per parameter; routed experts count one\n"
              "matrix each.\n\n"
              "| role | scheme | matrices | parameters | bytes | bits/weight |\n|---|---|---:|---:|---:|---:|\n");
    for (int m = 0; m < 2; m++)
        for (int k = 0; k < DSQ_R_COUNT; k++) {
            if (!r->n[m][k]) continue;
            sb_add(b, "| %s%s | ", dsq_role_name((dsq_role)k), m ? " (MTP)" : "");
            int first = 1;
            for (int s = 0; s < DSQ_Q_COUNT; s++)
                if (r->schemes[m][k] >> s & 1) {
                    sb_add(b, "%s%s", first ? "" : ", ", dsq_q_scheme(s)->name);
                    first = 0;
                }
            sb_add(b, " | %lld | %lld | %llu | %.3f |\n", (long long)r->n[m][k], (long long)r->params[m][k],
                   (unsigned long long)r->bytes[m][k],
                   r->params[m][k] ? 8.0 * (double)r->bytes[m][k] / (double)r->params[m][k] : 0.0);
        }
    sb_add(b, "| **total** | | | %lld | %llu | %.3f |\n\n", (long long)r->params_all, (unsigned long long)r->bytes_all,
           r->params_all ? 8.0 * (double)r->bytes_all / (double)r->params_all : 0.0);
}

/* A JSON value as one table cell. */
static void sb_val(sb *b, const cJSON *v) {
    if (cJSON_IsNumber(v)) sb_add(b, "%.6g", v->valuedouble);
    else if (cJSON_IsBool(v)) sb_add(b, "%s", cJSON_IsTrue(v) ? "true" : "false");
    else if (cJSON_IsString(v)) {
        char tmp[120];
        shown(tmp, sizeof tmp, v->valuestring);
        sb_md(b, tmp);
    } else sb_add(b, "-");
}

/* The drift results of a `dsq verify --json` report, read generically: the
 * known top-level metrics first, then every other scalar (one level of
 * nesting flattened as "a.b"), then a per-layer table when an array of
 * objects is present. */
static void card_report(sb *b, const cJSON *rep, const char *rname) {
    static const char *const known[][2] = {
        {"ppl_ref", "perplexity, reference"},   {"ppl_cand", "perplexity, this model"},
        {"delta_ppl", "perplexity change"},     {"kl_mean", "mean KL divergence, reference to this model"},
        {"top1_agreement", "top-1 token agreement"},
    };
    sb_add(b, "## Accuracy drift\n\nFrom `dsq verify --json` (");
    sb_md(b, rname);
    sb_add(b, "):\n\n| metric | value |\n|---|---:|\n");
    int rows = 0;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        const cJSON *v = dsq_json_get(rep, known[i][0]);
        if (!v) continue;
        sb_add(b, "| %s (`%s`) | ", known[i][1], known[i][0]);
        sb_val(b, v);
        sb_add(b, " |\n");
        rows++;
    }
    for (const cJSON *v = rep->child; v && rows < 200; v = v->next) {
        int skip = 0;
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) skip |= v->string && !strcmp(v->string, known[i][0]);
        if (skip || !v->string) continue;
        if (cJSON_IsNumber(v) || cJSON_IsBool(v) || (cJSON_IsString(v) && strlen(v->valuestring) < 100)) {
            sb_add(b, "| ");
            sb_md(b, v->string);
            sb_add(b, " | ");
            sb_val(b, v);
            sb_add(b, " |\n");
            rows++;
        } else if (cJSON_IsObject(v)) {
            for (const cJSON *w = v->child; w && rows < 200; w = w->next)
                if (w->string && (cJSON_IsNumber(w) || cJSON_IsBool(w))) {
                    sb_add(b, "| ");
                    sb_md(b, v->string);
                    sb_add(b, ".");
                    sb_md(b, w->string);
                    sb_add(b, " | ");
                    sb_val(b, w);
                    sb_add(b, " |\n");
                    rows++;
                }
        }
    }
    if (!rows) sb_add(b, "| (no scalar results in the report) | |\n");
    sb_add(b, "\n");
    /* per-layer table: "layers" / "per_layer" preferred, else the first array of objects */
    const cJSON *tab = NULL;
    static const char *const tk[] = {"layers", "per_layer", "layer"};
    for (size_t i = 0; i < 3 && !tab; i++) {
        const cJSON *v = dsq_json_get(rep, tk[i]);
        if (cJSON_IsArray(v) && cJSON_IsObject(v->child)) tab = v;
    }
    for (const cJSON *v = rep->child; v && !tab; v = v->next)
        if (cJSON_IsArray(v) && cJSON_IsObject(v->child)) tab = v;
    if (!tab) return;
    const char *cols[12];
    int nc = 0, nr = 0;
    for (const cJSON *row = tab->child; row && nr < 64; row = row->next, nr++)
        for (const cJSON *f = cJSON_IsObject(row) ? row->child : NULL; f && nc < 12; f = f->next) {
            if (!f->string || !(cJSON_IsNumber(f) || cJSON_IsString(f) || cJSON_IsBool(f))) continue;
            int seen = 0;
            for (int j = 0; j < nc; j++) seen |= !strcmp(cols[j], f->string);
            if (!seen) cols[nc++] = f->string;
        }
    if (!nc) return;
    sb_add(b, "The report's `");
    sb_md(b, tab->string ? tab->string : "?");
    sb_add(b, "` table:\n\n|");
    for (int j = 0; j < nc; j++) {
        sb_add(b, " ");
        sb_md(b, cols[j]);
        sb_add(b, " |");
    }
    sb_add(b, "\n|");
    for (int j = 0; j < nc; j++) sb_add(b, "---:|");
    sb_add(b, "\n");
    nr = 0;
    for (const cJSON *row = tab->child; row; row = row->next, nr++) {
        if (nr == 1000) {
            sb_add(b, "\n(%d more rows in the report)\n", cJSON_GetArraySize(tab) - nr);
            break;
        }
        sb_add(b, "|");
        for (int j = 0; j < nc; j++) {
            sb_add(b, " ");
            sb_val(b, cJSON_IsObject(row) ? dsq_json_get(row, cols[j]) : NULL);
            sb_add(b, " |");
        }
        sb_add(b, "\n");
    }
    sb_add(b, "\n");
}

/* The card: config summary, recipe, bits per weight by role, drift results,
 * files and how to reassemble them, provenance.  *out from malloc. */
static int build_card(const dsq_ctr *c, const cJSON *meta, const dsq_pack_plan *m, const role_sums *r,
                      const cJSON *rep, const char *rname, char **out, dsq_err *err) {
    sb b = {0};
    char model[DSQ_PACK_NAME_CAP], h1[32], hx[17];
    snprintf(model, sizeof model, "%s", m->name);
    size_t ml = strlen(model);
    if (ml > 4 && !strcmp(model + ml - 4, ".dsq")) model[ml - 4] = 0;
    const cJSON *rec = dsq_json_get(meta, "recipe"), *pv = dsq_json_get(meta, "provenance");
    const char *rn = dsq_json_key_str(rec, "name", "unknown");
    sb_add(&b, "# ");
    sb_md(&b, model);
    sb_add(&b, "\n\nA DeepSeek-V3.2-family model stored in one dsq container (`");
    sb_md(&b, m->name);
    sb_add(&b, "`, %s), produced with the recipe **", human(h1, sizeof h1, m->size));
    sb_md(&b, rn);
    sb_add(&b, "** (%.3f bits per weight overall).\n\n",
           r->params_all ? 8.0 * (double)r->bytes_all / (double)r->params_all : 0.0);
    card_config(&b, dsq_ctr_config(c), r);
    sb_add(&b, "## Recipe\n\n`");
    sb_md(&b, rn);
    sb_add(&b, "`");
    const cJSON *rules = dsq_json_get(rec, "rules");
    char *rs = rules && (!cJSON_IsObject(rules) || rules->child) ? cJSON_Print(rules) : NULL;
    if (rs) {
        /* keep the fence intact whatever the rules contain */
        for (char *p = rs; (p = strstr(p, "```")); p++) p[1] = '\'';
        sb_add(&b, ", as given:\n\n```json\n%s\n```\n\n", rs);
        free(rs);
    } else {
        sb_add(&b, " (a preset; `dsq quant --help` describes it).\n\n");
    }
    card_roles(&b, r);
    if (rep) card_report(&b, rep, rname);
    sb_add(&b, "## Files\n\nThe container is cut into %d part%s of at most %llu bytes; `manifest.json` lists the\n"
               "xxh3-64 of each part and of the whole container (%s, ",
           m->n_parts, m->n_parts == 1 ? "" : "s", (unsigned long long)m->part_size, human(h1, sizeof h1, m->size));
    dsq_hex16(hx, m->xxh3);
    sb_add(&b, "xxh3 `%s`).\n\n| part | bytes | xxh3 |\n|---|---:|---|\n", hx);
    for (int i = 0; i < m->n_parts; i++) {
        dsq_hex16(hx, m->parts[i].xxh3);
        sb_add(&b, "| ");
        sb_md(&b, m->parts[i].name);
        sb_add(&b, " | %llu | `%s` |\n", (unsigned long long)m->parts[i].size, hx);
    }
    sb_add(&b, "\nTo reassemble, with every checksum verified before the container appears:\n\n"
               "    dsq unpack ARCHIVE.tar -o DIR     # or: dsq unpack FOLDER_WITH_THE_PARTS -o DIR\n\n"
               "Without dsq: concatenate the parts in order (`cat ");
    sb_md(&b, m->name);
    sb_add(&b, ".part-* > ");
    sb_md(&b, m->name);
    sb_add(&b, "`), then `dsq check ");
    sb_md(&b, m->name);
    sb_add(&b, "`.\n\n## Provenance\n\n");
    sb_add(&b, "- container written by dsq ");
    sb_md(&b, dsq_json_key_str(pv, "dsq_version", "?"));
    sb_add(&b, " on ");
    sb_md(&b, dsq_json_key_str(pv, "created", "?"));
    sb_add(&b, " from a ");
    sb_md(&b, dsq_json_key_str(pv, "source_kind", "?"));
    sb_add(&b, " source\n");
    const cJSON *srcs = dsq_json_get(pv, "sources");
    int ns = 0;
    for (const cJSON *s = cJSON_IsArray(srcs) ? srcs->child : NULL; s; s = s->next, ns++) {
        if (ns == 64) {
            sb_add(&b, "- ... %d more source files\n", cJSON_GetArraySize(srcs) - ns);
            break;
        }
        uint64_t sz = 0;
        sb_add(&b, "- source `");
        sb_md(&b, dsq_json_key_str(s, "name", "?"));
        sb_add(&b, "`");
        if (dsq_json_key_u64(s, "size", 0, 1ull << 53, &sz)) sb_add(&b, ", %llu bytes", (unsigned long long)sz);
        sb_add(&b, ", xxh3 `");
        sb_md(&b, dsq_json_key_str(s, "xxh3", "?"));
        sb_add(&b, "`\n");
    }
    sb_add(&b, "- packed by dsq %s\n", DSQ_VERSION_STRING);
    if (b.oom) {
        free(b.s);
        return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    }
    *out = b.s;
    return DSQ_OK;
}


/* ========================================================================
 * Public
 * ======================================================================== */

int dsq_card_new(dsq_card **out, const char *report, dsq_err *err) {
    *out = NULL;
    dsq_card *k = dsq_calloc(1, sizeof *k);
    if (!k) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    if (report) {
        char *text = NULL;
        size_t len;
        int rc = dsq_read_file(report, CARD_REPORT_CAP, &text, &len, err);
        if (rc) {
            dsq_card_free(k);
            return rc;
        }
        long at;
        k->report = dsq_json_parse(text, len, &at);
        free(text);
        if (!cJSON_IsObject(k->report)) {
            dsq_card_free(k);
            return dsq_fail(err, DSQ_E_FORMAT, "%s: not a JSON object (verify report) near byte %ld (%s)", report, at, dsq_json_why());
        }
        k->report_name = dsq_strdup(dsq_basename(report));
        if (!k->report_name) {
            dsq_card_free(k);
            return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
        }
    }
    *out = k;
    return DSQ_OK;
}

void dsq_card_free(dsq_card *k) {
    if (!k) return;
    cJSON_Delete(k->report);
    free(k->report_name);
    free(k);
}

int dsq_card_text(void *arg, const struct dsq_ctr *c, const dsq_pack_plan *plan, char **text, dsq_err *err) {
    const dsq_card *k = arg;
    *text = NULL;
    role_sums *r = dsq_malloc(sizeof *r);
    cJSON *meta = dsq_json_parse(dsq_ctr_meta(c), strlen(dsq_ctr_meta(c)), NULL);
    int rc;
    if (!r || !meta) rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    else {
        count_roles(c, r);
        rc = build_card(c, meta, plan, r, k ? k->report : NULL, k && k->report_name ? k->report_name : "", text, err);
    }
    cJSON_Delete(meta);
    free(r);
    return rc;
}

int dsq_pack_with_card(const dsq_pack_opts *o, const char *report, dsq_pack_info *info, dsq_err *err) {
    memset(info, 0, sizeof *info);
    dsq_card *k;
    /* the report first: a bad --report fails before minutes of reading */
    int rc = dsq_card_new(&k, report, err);
    if (rc) return rc;
    dsq_pack_opts po = *o;
    po.card = dsq_card_text;
    po.card_arg = k;
    rc = dsq_pack(&po, info, err);
    dsq_card_free(k);
    return rc;
}
