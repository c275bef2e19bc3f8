/*
 * test_tokenizer.c -- the byte-level BPE tokenizer (formats/tokenizer.c):
 * exact ids against the DeepSeek-V3 reference cases and the tiny model's
 * eval tokens (when ../shared is present), merge order against a naive BPE
 * written here, every Split behaviour, added-token options, round trips of
 * arbitrary bytes, one test per class of malformed tokenizer.json, the token
 * file reader, and the `dsq tokenize` / `dsq detokenize` commands.
 *
 * Small tokenizers are generated here as JSON: the 256 byte tokens (id =
 * byte value) plus merged tokens, spelled in the GPT-2 byte alphabet.
 */
#include "test.h"
#include "common.h"
#include "formats/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdlib.h>

/* ==== a growable string ================================================== */
typedef struct sb {
    char *p;
    size_t n, cap;
} sb;

static void sb_put(sb *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_printf(sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sb *b, const char *fmt, ...) {
    char tmp[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    sb_put(b, tmp, (size_t)n);
}

/* ==== generated tokenizers =============================================== */

/* The GPT-2 alphabet written from its definition in encoder.py: the bytes
 * '!'..'~', '¡'..'¬', '®'..'ÿ' keep their code point, the others get
 * 256, 257, ... in byte order. */
static unsigned bl_char(unsigned b) {
    static unsigned map[256];
    static int done;
    if (!done) {
        unsigned next = 256;
        for (unsigned i = 0; i < 256; i++) map[i] = 0;
        for (unsigned i = '!'; i <= '~'; i++) map[i] = i;
        for (unsigned i = 0xA1; i <= 0xAC; i++) map[i] = i;
        for (unsigned i = 0xAE; i <= 0xFF; i++) map[i] = i;
        for (unsigned i = 0; i < 256; i++)
            if (!map[i]) map[i] = next++;
        done = 1;
    }
    return map[b];
}

/* JSON string literal of raw bytes spelled in the byte alphabet. */
static void sb_bl_string(sb *b, const char *s, size_t n) {
    sb_put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned c = bl_char((unsigned char)s[i]);
        char u[4];
        if (c == '"' || c == '\\') {
            u[0] = '\\';
            u[1] = (char)c;
            sb_put(b, u, 2);
        } else if (c < 0x80) {
            u[0] = (char)c;
            sb_put(b, u, 1);
        } else {
            u[0] = (char)(0xC0 | (c >> 6));
            u[1] = (char)(0x80 | (c & 0x3F));
            sb_put(b, u, 2);
        }
    }
    sb_put(b, "\"", 1);
}

/* The test's own copy of the vocabulary: raw bytes per id. */
#define TV_MAX 4096
typedef struct tvocab {
    char *s[TV_MAX];
    size_t len[TV_MAX];
    int n;
} tvocab;

static int tv_id(const tvocab *v, const char *s, size_t n) {
    for (int i = 0; i < v->n; i++)
        if (v->len[i] == n && !memcmp(v->s[i], s, n)) return i;
    return -1;
}

static int tv_add(tvocab *v, const char *s, size_t n) {
    int id = tv_id(v, s, n);
    if (id >= 0) return id;
    v->s[v->n] = malloc(n + 1);
    memcpy(v->s[v->n], s, n);
    v->len[v->n] = n;
    return v->n++;
}

static void tv_free(tvocab *v) {
    for (int i = 0; i < v->n; i++) free(v->s[i]);
    v->n = 0;
}

typedef struct tspec {
    const char *pretok;      /* JSON of "pre_tokenizer"; NULL: plain ByteLevel, no regex */
    const char *added;       /* JSON array for "added_tokens"; NULL: none               */
    const char *model_extra; /* extra members of "model", with a trailing comma        */
    int pair_merges;         /* write merges as ["a","b"] instead of "a b"             */
} tspec;

/* tokenizer.json with the 256 byte tokens and `n` merges given as raw byte
 * strings (left0, right0, left1, right1, ...).  Fills v with the ids. */
static char *make_tok(tvocab *v, const char *const *m, size_t n, const tspec *ts) {
    sb b = {0};
    tv_free(v);
    for (int i = 0; i < 256; i++) {
        char c = (char)i;
        tv_add(v, &c, 1);
    }
    for (size_t i = 0; i < n; i++) {
        char cat[256];
        size_t la = strlen(m[2 * i]), lr = strlen(m[2 * i + 1]);
        memcpy(cat, m[2 * i], la);
        memcpy(cat + la, m[2 * i + 1], lr);
        tv_add(v, cat, la + lr);
    }
    sb_printf(&b, "{\"version\": \"1.0\", \"added_tokens\": %s, \"normalizer\": null,\n",
              ts && ts->added ? ts->added : "[]");
    sb_printf(&b, "\"pre_tokenizer\": %s,\n",
              ts && ts->pretok ? ts->pretok
                               : "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}");
    sb_printf(&b, "\"post_processor\": null, \"decoder\": {\"type\": \"ByteLevel\"},\n");
    sb_printf(&b, "\"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, %s\"vocab\": {",
              ts && ts->model_extra ? ts->model_extra : "");
    for (int i = 0; i < v->n; i++) {
        if (i) sb_put(&b, ",", 1);
        sb_bl_string(&b, v->s[i], v->len[i]);
        sb_printf(&b, ":%d", i);
    }
    sb_printf(&b, "},\n\"merges\": [");
    for (size_t i = 0; i < n; i++) {
        if (i) sb_put(&b, ",", 1);
        if (ts && ts->pair_merges) {
            sb_put(&b, "[", 1);
            sb_bl_string(&b, m[2 * i], strlen(m[2 * i]));
            sb_put(&b, ",", 1);
            sb_bl_string(&b, m[2 * i + 1], strlen(m[2 * i + 1]));
            sb_put(&b, "]", 1);
        } else {
            /* "a b": both strings without their closing/opening quotes */
            sb tmp = {0};
            sb_bl_string(&tmp, m[2 * i], strlen(m[2 * i]));
            tmp.p[--tmp.n] = 0;
            sb_put(&b, tmp.p, tmp.n);
            tmp.n = 0;
            sb_put(&b, " ", 1);
            sb_bl_string(&tmp, m[2 * i + 1], strlen(m[2 * i + 1]));
            sb_put(&b, tmp.p + 1, tmp.n - 1);
            free(tmp.p);
        }
    }
    sb_printf(&b, "]}}\n");
    return b.p;
}

static dsq_tok *load_json(const char *json, unsigned flags) {
    dsq_tok *t = NULL;
    dsq_err err = {0};
    if (dsq_tok_new_from_json_ex(&t, json, strlen(json), "gen.json", flags, &err) < 0) {
        fprintf(stderr, "  load failed: %s\n", err.msg);
        return NULL;
    }
    return t;
}

/* Encode and compare with the expected ids (terminated by -1). */
static int enc_is(const dsq_tok *t, const char *text, size_t len, const int *want) {
    int32_t *ids;
    size_t n, k = 0;
    dsq_err err = {0};
    if (dsq_tok_encode(t, text, len, &ids, &n, &err) < 0) {
        fprintf(stderr, "  encode failed: %s\n", err.msg);
        return 0;
    }
    while (want[k] >= 0) k++;
    int ok = n == k;
    for (size_t i = 0; ok && i < n; i++) ok = ids[i] == want[i];
    if (!ok) {
        fprintf(stderr, "  '%.*s': got", (int)len, text);
        for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, ", want");
        for (size_t i = 0; i < k; i++) fprintf(stderr, " %d", want[i]);
        fprintf(stderr, "\n");
    }
    free(ids);
    return ok;
}

static int roundtrip(const dsq_tok *t, const char *text, size_t len) {
    int32_t *ids;
    size_t n, dl;
    char *d;
    dsq_err err = {0};
    if (dsq_tok_encode(t, text, len, &ids, &n, &err) < 0) return 0;
    int ok = dsq_tok_decode(t, ids, n, &d, &dl, &err) == DSQ_OK && dl == len && !memcmp(d, text, len);
    if (ok) free(d);
    free(ids);
    return ok;
}

/* ==== BPE against a naive reference ====================================== */

/* Merge the lowest-ranked adjacent pair, leftmost on ties, until none is
 * left: the definition, in O(n^2).  Merge r joins ids ml[r] and mr[r] into
 * mo[r]. */
static int naive_bpe(const int *ml, const int *mr, const int *mo, int nm, const char *w, int n,
                     int *out) {
    int ns = 0;
    for (int i = 0; i < n; i++) out[ns++] = (unsigned char)w[i];
    for (;;) {
        int best = nm, at = -1;
        for (int i = 0; i + 1 < ns; i++)
            for (int r = 0; r < best; r++)
                if (ml[r] == out[i] && mr[r] == out[i + 1]) {
                    best = r;
                    at = i;
                }
        if (at < 0) return ns;
        out[at] = mo[best];
        memmove(out + at + 1, out + at + 2, (size_t)(ns - at - 2) * sizeof *out);
        ns--;
    }
}

TEST(test_tokenizer_bpe_matches_naive) {
    /* random merges over "abc", each joining two existing tokens */
    static char pool[200][64];
    const char *m[2 * 120];
    int npool = 3, nm = 0;
    strcpy(pool[0], "a");
    strcpy(pool[1], "b");
    strcpy(pool[2], "c");
    uint64_t s = 0x9E3779B97F4A7C15ull;
#define RND() (s ^= s << 13, s ^= s >> 7, s ^= s << 17, s)
    while (nm < 120) {
        int x = (int)(RND() % (uint64_t)npool), y = (int)(RND() % (uint64_t)npool);
        if (strlen(pool[x]) + strlen(pool[y]) >= 12) continue;
        int dup = 0;
        for (int i = 0; i < nm; i++) dup |= !strcmp(m[2 * i], pool[x]) && !strcmp(m[2 * i + 1], pool[y]);
        if (dup) continue;
        m[2 * nm] = pool[x];
        m[2 * nm + 1] = pool[y];
        nm++;
        char cat[64];
        snprintf(cat, sizeof cat, "%s%s", pool[x], pool[y]);
        int have = 0;
        for (int i = 0; i < npool; i++) have |= !strcmp(pool[i], cat);
        if (!have) strcpy(pool[npool++], cat);
    }
    static tvocab v;
    char *json = make_tok(&v, m, (size_t)nm, NULL);
    dsq_tok *t = load_json(json, 0);
    free(json);
    CHECK(t);
    int ml[120], mr[120], mo[120];
    for (int r = 0; r < nm; r++) {
        char cat[64];
        snprintf(cat, sizeof cat, "%s%s", m[2 * r], m[2 * r + 1]);
        ml[r] = tv_id(&v, m[2 * r], strlen(m[2 * r]));
        mr[r] = tv_id(&v, m[2 * r + 1], strlen(m[2 * r + 1]));
        mo[r] = tv_id(&v, cat, strlen(cat));
    }
    for (int iter = 0; iter < 300; iter++) {
        char w[64];
        int n = 1 + (int)(RND() % 40), want[65];
        for (int i = 0; i < n; i++) w[i] = "abc"[RND() % 3];
        int k = naive_bpe(ml, mr, mo, nm, w, n, want);
        want[k] = -1;
        if (!enc_is(t, w, (size_t)n, want)) {
            dsq_tok_free(t);
            tv_free(&v);
            CHECKF(0, "BPE differs from the naive merge loop on '%.*s'", n, w);
        }
    }
#undef RND
    dsq_tok_free(t);
    tv_free(&v);
}

TEST(test_tokenizer_merge_forms_and_ignore_merges) {
    /* "b c" ranks before "a b", so "abc" BPE-merges to [a][bc] and never to
     * "abc", which only ignore_merges can emit */
    const char *m[] = {"b", "c", "a", "b", "ab", "c"};
    static tvocab v;
    char *j1 = make_tok(&v, m, 3, NULL);
    tspec pairs = {.pair_merges = 1}, ign = {.model_extra = "\"ignore_merges\": true,"};
    char *j2 = make_tok(&v, m, 3, &pairs);
    char *j3 = make_tok(&v, m, 3, &ign);
    dsq_tok *t1 = load_json(j1, 0), *t2 = load_json(j2, 0), *t3 = load_json(j3, 0);
    free(j1);
    free(j2);
    free(j3);
    int a = tv_id(&v, "a", 1), bc = tv_id(&v, "bc", 2), abc = tv_id(&v, "abc", 3);
    int w1[] = {a, bc, -1}, w3[] = {abc, -1};
    int ok = t1 && t2 && t3 && enc_is(t1, "abc", 3, w1) && enc_is(t2, "abc", 3, w1) &&
             enc_is(t3, "abc", 3, w3);
    dsq_tok_free(t1);
    dsq_tok_free(t2);
    dsq_tok_free(t3);
    tv_free(&v);
    CHECK(ok);
}

/* ==== pre-tokenizer ====================================================== */

static const char *split_json(char *buf, size_t cap, const char *regex, const char *behavior,
                              int invert) {
    snprintf(buf, cap,
             "{\"type\": \"Sequence\", \"pretokenizers\": ["
             "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"%s\"}, \"behavior\": \"%s\", \"invert\": %s},"
             "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}]}",
             regex, behavior, invert ? "true" : "false");
    return buf;
}

TEST(test_tokenizer_split_behaviors) {
    /* merges that reveal where pieces end: a piece "a," encodes to one id,
     * pieces "a" and "," to two */
    const char *m[] = {"a", ",", ",", "b", ",", ",", "a", "b"};
    static tvocab v;
    char pt[512];
    struct {
        const char *beh, *text;
        int invert;
        const char *want[5];
    } cases[] = {
        {"Isolated", "a,b", 0, {"a", ",", "b"}},
        {"Removed", "a,b", 0, {"a", "b"}},
        {"MergedWithPrevious", "a,b", 0, {"a,", "b"}},
        {"MergedWithNext", "a,b", 0, {"a", ",b"}},
        {"Contiguous", "a,,b", 0, {"a", ",,", "b"}},
        {"Isolated", "a,,b", 0, {"a", ",", ",", "b"}},
        {"MergedWithPrevious", "a,,b", 0, {"a,", ",", "b"}},
        {"MergedWithNext", "a,,b", 0, {"a", ",", ",b"}},
        {"Removed", "a,b", 1, {","}},
        {"MergedWithPrevious", "a,b", 1, {"a", ",b"}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        tspec ts = {.pretok = split_json(pt, sizeof pt, ",", cases[c].beh, cases[c].invert)};
        char *json = make_tok(&v, m, 4, &ts);
        dsq_tok *t = load_json(json, c & 1 ? DSQ_TOK_NO_JIT : 0);
        free(json);
        CHECK(t);
        int want[6], k = 0;
        for (; k < 5 && cases[c].want[k]; k++) want[k] = tv_id(&v, cases[c].want[k], strlen(cases[c].want[k]));
        want[k] = -1;
        int ok = enc_is(t, cases[c].text, strlen(cases[c].text), want);
        dsq_tok_free(t);
        if (!ok) tv_free(&v);
        CHECKF(ok, "behavior %s invert %d on '%s'", cases[c].beh, cases[c].invert, cases[c].text);
    }
    tv_free(&v);
}

TEST(test_tokenizer_regex_semantics) {
    static tvocab v;
    char pt[512];
    /* an empty-matching pattern still splits between characters and ends */
    const char *m1[] = {"a", "b"};
    tspec ts = {.pretok = split_json(pt, sizeof pt, "x*", "Isolated", 0)};
    char *json = make_tok(&v, m1, 1, &ts);
    dsq_tok *t = load_json(json, 0);
    free(json);
    CHECK(t);
    int w1[] = {'a', 'b', -1}, w1b[] = {'a', 'b', 'x', 'x', 'a', -1};
    int ok = enc_is(t, "ab", 2, w1) && enc_is(t, "abxxa", 5, w1b);
    int wxx[] = {'x', 'x', -1};
    ok = ok && enc_is(t, "xx", 2, wxx); /* "xx" is one piece: no merge for it */
    dsq_tok_free(t);
    tv_free(&v);
    CHECK(ok);

    /* the GPT-2 regex: \s+(?!\S) leaves the last space to the next word,
     * \p{L} takes the two-byte é as a letter, ByteLevel may add a space */
    const char *m2[] = {" ", " ", " ", "b", "\xc3", "\xa9", " ", "\xc3\xa9"};
    tspec g = {.pretok = "{\"type\": \"ByteLevel\", \"add_prefix_space\": false}"};
    json = make_tok(&v, m2, 4, &g);
    t = load_json(json, 0);
    free(json);
    CHECK(t);
    int sp2 = tv_id(&v, "  ", 2), spb = tv_id(&v, " b", 2), e = tv_id(&v, "\xc3\xa9", 2),
        spe = tv_id(&v, " \xc3\xa9", 3);
    int w2[] = {'a', sp2, spb, -1}, w3[] = {spe, '1', -1}, w4[] = {'a', ' ', -1}, w5[] = {e, -1};
    ok = enc_is(t, "a   b", 5, w2) && enc_is(t, " \xc3\xa9" "1", 4, w3) && enc_is(t, "a ", 2, w4) &&
         enc_is(t, "\xc3\xa9", 2, w5);
    dsq_tok_free(t);
    CHECK(ok);
    tspec g2 = {.pretok = "{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"use_regex\": true}"};
    json = make_tok(&v, m2, 4, &g2);
    t = load_json(json, 0);
    free(json);
    CHECK(t);
    int w6[] = {spe, -1}, w7[] = {spb, -1};
    ok = enc_is(t, "\xc3\xa9", 2, w6) && enc_is(t, " b", 2, w7);
    dsq_tok_free(t);
    tv_free(&v);
    CHECK(ok);
}

TEST(test_tokenizer_added_tokens) {
    static tvocab v;
    const char *m[] = {"a", "b"};
    /* ids 300.. for the added tokens; "<s>x" is longer than "<s>" */
    tspec ts = {.added = "["
                         "{\"id\": 300, \"content\": \"<s>\", \"special\": true, \"normalized\": false},"
                         "{\"id\": 301, \"content\": \"<s>x\", \"special\": true, \"normalized\": false},"
                         "{\"id\": 302, \"content\": \"<m>\", \"normalized\": true, \"lstrip\": true, \"rstrip\": true},"
                         "{\"id\": 303, \"content\": \"<w>\", \"normalized\": true, \"single_word\": true},"
                         "{\"id\": 304, \"content\": \"</s>\", \"special\": true, \"normalized\": false}]"};
    char *json = make_tok(&v, m, 1, &ts);
    dsq_tok *t = load_json(json, 0);
    free(json);
    CHECK(t);
    int ab = tv_id(&v, "ab", 2);
    int w1[] = {'a', 300, 'b', -1}, w2[] = {'a', 301, 'b', -1}, w3[] = {'a', 302, 'b', -1};
    int w4[] = {'a', '<', 'w', '>', 'b', -1}, w5[] = {'a', ' ', 303, ' ', 'b', -1};
    int w6[] = {ab, 304, 300, ab, -1}, w7[] = {'<', 's', -1};
    int ok = enc_is(t, "a<s>b", 5, w1) && enc_is(t, "a<s>xb", 6, w2) && enc_is(t, "a \t<m>  b", 9, w3) &&
             enc_is(t, "a<w>b", 5, w4) && enc_is(t, "a <w> b", 7, w5) && enc_is(t, "ab</s><s>ab", 11, w6) &&
             enc_is(t, "<s", 2, w7);
    /* decoding gives the added token's text back */
    int32_t ids[] = {300, 'a', 304};
    char *d = NULL;
    size_t dl;
    dsq_err err = {0};
    ok = ok && dsq_tok_decode(t, ids, 3, &d, &dl, &err) == DSQ_OK && dl == 8 && !memcmp(d, "<s>a</s>", 8);
    free(d);
    CHECK(dsq_tok_vocab_size(t) == 305);
    dsq_tok_free(t);
    tv_free(&v);
    CHECK(ok);
}

TEST(test_tokenizer_any_bytes_round_trip) {
    static tvocab v;
    const char *m[] = {"a", "b", "\xc3", "\xa9", " ", "ab"};
    tspec ts = {.pretok = "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}",
                .added = "[{\"id\": 300, \"content\": \"<s>\", \"special\": true, \"normalized\": false}]"};
    char *json = make_tok(&v, m, 3, &ts);
    dsq_tok *t = load_json(json, 0), *tn = load_json(json, DSQ_TOK_NO_JIT);
    free(json);
    CHECK(t && tn);
    int ok = roundtrip(t, "", 0) && roundtrip(t, "ab ab\xc3\xa9", 8);
    /* not UTF-8: lone continuation bytes, truncated sequences, surrogates */
    const char bad[] = "\xff\xfe ab \xc3 \xed\xa0\x80<s>\xe2\x82 \x80\x80x\xf4\x90\x80\x80";
    ok = ok && roundtrip(t, bad, sizeof bad - 1) && roundtrip(tn, bad, sizeof bad - 1);
    uint64_t s = 88172645463325252ull;
    char buf[300];
    for (int it = 0; ok && it < 200; it++) {
        size_t n = (size_t)(s % 300);
        for (size_t i = 0; i < n; i++) {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            buf[i] = (char)(s & 0xFF);
        }
        ok = roundtrip(t, buf, n) && roundtrip(tn, buf, n);
    }
    int32_t *ids;
    size_t n;
    dsq_err err = {0};
    ok = ok && dsq_tok_encode(t, "", 0, &ids, &n, &err) == DSQ_OK && n == 0;
    if (ok) free(ids);
    /* decoding an id outside the vocabulary names its position */
    int32_t badids[] = {'a', 999999};
    char *d = NULL;
    size_t dl;
    int rc = dsq_tok_decode(t, badids, 2, &d, &dl, &err);
    dsq_tok_free(t);
    dsq_tok_free(tn);
    tv_free(&v);
    CHECK(ok);
    CHECK(rc == DSQ_E_FORMAT && strstr(err.msg, "token 1") && strstr(err.msg, "999999"));
}

TEST(test_tokenizer_config) {
    static tvocab v;
    const char *m[] = {"a", "b"};
    tspec ts = {.added = "[{\"id\": 300, \"content\": \"<s>\", \"special\": true, \"normalized\": false},"
                         "{\"id\": 301, \"content\": \"</s>\", \"special\": true, \"normalized\": false}]"};
    char *json = make_tok(&v, m, 1, &ts);
    dsq_tok *t = load_json(json, 0);
    free(json);
    tv_free(&v);
    CHECK(t);
    CHECK(dsq_tok_bos_id(t) == -1 && dsq_tok_eos_id(t) == -1 && !dsq_tok_add_bos(t));
    dsq_err err = {0};
    const char *c1 = "{\"add_bos_token\": true, \"bos_token\": {\"__type\": \"AddedToken\", \"content\": \"<s>\"},"
                     " \"eos_token\": \"</s>\"}";
    int rc = dsq_tok_set_config(t, c1, strlen(c1), "cfg.json", &err);
    int ok = rc == DSQ_OK && dsq_tok_bos_id(t) == 300 && dsq_tok_eos_id(t) == 301 && dsq_tok_add_bos(t);
    const char *c2 = "{\"bos_token\": \"<nope>\"}", *c3 = "{\"bos_token\": ", *c4 = "{\"add_bos_token\": 1}";
    int r2 = dsq_tok_set_config(t, c2, strlen(c2), "cfg.json", &err);
    int m2 = r2 == DSQ_E_FORMAT && strstr(err.msg, "cfg.json: bos_token: '<nope>'") != NULL;
    int r3 = dsq_tok_set_config(t, c3, strlen(c3), "cfg.json", &err);
    int m3 = r3 == DSQ_E_FORMAT && strstr(err.msg, "cfg.json: invalid JSON near byte") != NULL;
    int r4 = dsq_tok_set_config(t, c4, strlen(c4), "cfg.json", &err);
    int m4 = r4 == DSQ_E_FORMAT && strstr(err.msg, "add_bos_token") != NULL;
    ok = ok && dsq_tok_bos_id(t) == 300; /* failed configs change nothing */
    dsq_tok_free(t);
    CHECK(ok && m2 && m3 && m4);
}

/* Every allocation failure is reported, never a crash or a leak (the
 * sanitizer build checks the leaks). */
TEST(test_tokenizer_alloc_failures) {
    static tvocab v;
    const char *m[] = {"a", "b", "ab", "c"};
    tspec ts = {.pretok = "{\"type\": \"ByteLevel\", \"add_prefix_space\": true}",
                .added = "[{\"id\": 300, \"content\": \"<s>\", \"special\": true, \"normalized\": false}]"};
    char *json = make_tok(&v, m, 2, &ts);
    tv_free(&v);
    int loaded = 0, encoded = 0;
    for (long k = 0; k < 400 && !(loaded && encoded); k++) {
        dsq_tok *t = NULL;
        dsq_err err = {0};
        dsq_fault_alloc_after(k);
        int rc = dsq_tok_new_from_json(&t, json, strlen(json), "gen.json", &err);
        if (rc == DSQ_OK) {
            loaded = 1;
            int32_t *ids = NULL;
            size_t n;
            rc = dsq_tok_encode(t, "abc <s> abc \xff", 13, &ids, &n, &err);
            if (rc == DSQ_OK) {
                encoded = 1;
                free(ids);
            }
            dsq_tok_free(t);
        }
        dsq_fault_alloc_after(-1);
        if (rc != DSQ_OK && rc != DSQ_E_NOMEM) {
            free(json);
            CHECKF(0, "allocation failure %ld gave %d: %s", k, rc, err.msg);
        }
    }
    free(json);
    CHECK(loaded && encoded);
}

/* ==== malformed tokenizer.json =========================================== */

/* Minimal valid pieces to build broken files from. */
#define V_OK "\"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}"
#define M_OK "\"merges\": [\"a b\"]"
#define PT_OK "\"pre_tokenizer\": {\"type\": \"ByteLevel\"}"
#define DEC_OK "\"decoder\": {\"type\": \"ByteLevel\"}"

static int tok_fails(const char *json, int code, const char *needle) {
    dsq_tok *t = NULL;
    dsq_err err = {0};
    int rc = dsq_tok_new_from_json(&t, json, strlen(json), "bad.json", &err);
    if (rc >= 0) {
        dsq_tok_free(t);
        fprintf(stderr, "  accepted: %s\n", json);
        return 0;
    }
    if (rc != code || !strstr(err.msg, needle) || strncmp(err.msg, "bad.json: ", 10) ||
        strchr(err.msg, '\n')) {
        fprintf(stderr, "  code %d, message '%s' lacks '%s'\n", rc, err.msg, needle);
        return 0;
    }
    return 1;
}

TEST(test_tokenizer_bad_json) {
    CHECK(tok_fails("{\"model\": {\"type\": \"BPE\",", DSQ_E_FORMAT, "invalid JSON near byte 24"));
    CHECK(tok_fails("{\"model\": {\"type\": \"BPE\", " V_OK "x}}", DSQ_E_FORMAT, "invalid JSON near byte 60"));
    CHECK(tok_fails("[1, 2]", DSQ_E_FORMAT, "top level is not a JSON object"));
    CHECK(tok_fails("", DSQ_E_FORMAT, "invalid JSON near byte 0"));
}

TEST(test_tokenizer_bad_model_type) {
    CHECK(tok_fails("{\"model\": {\"type\": \"WordPiece\", " V_OK ", " M_OK "}, " PT_OK ", " DEC_OK "}",
                    DSQ_E_UNSUPPORTED, "model.type: 'WordPiece' is not supported (only BPE)"));
    CHECK(tok_fails("{\"model\": {\"type\": 3, " V_OK ", " M_OK "}}", DSQ_E_FORMAT, "model.type"));
    CHECK(tok_fails("{\"version\": \"1.0\"}", DSQ_E_FORMAT, "model: missing"));
    CHECK(tok_fails("{\"model\": {\"type\": \"BPE\", " V_OK ", " M_OK ", \"dropout\": 0.1}, " PT_OK ", " DEC_OK "}",
                    DSQ_E_UNSUPPORTED, "model.dropout"));
    CHECK(tok_fails("{\"model\": {\"type\": \"BPE\", " V_OK ", " M_OK ", \"byte_fallback\": true}}",
                    DSQ_E_UNSUPPORTED, "model.byte_fallback"));
}

TEST(test_tokenizer_bad_missing_vocab) {
    CHECK(tok_fails("{\"model\": {\"type\": \"BPE\", " M_OK "}, " PT_OK ", " DEC_OK "}", DSQ_E_FORMAT,
                    "model.vocab: missing"));
    CHECK(tok_fails("{\"model\": {\"type\": \"BPE\", \"vocab\": [], " M_OK "}}", DSQ_E_FORMAT,
                    "model.vocab: expected an object"));
    CHECK(tok_fails("{\"model\": {\"type\": \"BPE\", " V_OK "}}", DSQ_E_FORMAT, "model.merges: missing"));
    CHECK(tok_fails("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}, \"merges\": []}}", DSQ_E_FORMAT,
                    "model.vocab['a']: id must be an integer"));
    CHECK(tok_fails("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 1.5}, \"merges\": []}}", DSQ_E_FORMAT,
                    "model.vocab['a']"));
    CHECK(tok_fails("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"a\": 1}, \"merges\": []}}",
                    DSQ_E_FORMAT, "duplicate key 'a'"));
    CHECK(tok_fails("{\"model\": {\"type\": \"BPE\", " V_OK ", " M_OK ", \"unk_token\": \"<unk>\"}}",
                    DSQ_E_FORMAT, "model.unk_token: '<unk>' is not in model.vocab"));
}

TEST(test_tokenizer_bad_merges) {
    CHECK(tok_fails("{\"model\": {\"type\": \"BPE\", " V_OK ", \"merges\": [\"a b\", \"a c\"]}}", DSQ_E_FORMAT,
                    "model.merges[1]: token 'c' is not in model.vocab"));
    CHECK(tok_fails("{\"model\": {\"type\": \"BPE\", " V_OK ", \"merges\": [[\"x\", \"a\"]]}}", DSQ_E_FORMAT,
                    "model.merges[0]: token 'x' is not in model.vocab"));
    CHECK(tok_fails("{\"model\": {\"type\": \"BPE\", " V_OK ", \"merges\": [\"b a\"]}}", DSQ_E_FORMAT,
                    "model.merges[0]: merged token 'ba'"));
    CHECK(tok_fails("{\"model\": {\"type\": \"BPE\", " V_OK ", \"merges\": [\"ab\"]}}", DSQ_E_FORMAT,
                    "model.merges[0]: expected two tokens separated by one space"));
    CHECK(tok_fails("{\"model\": {\"type\": \"BPE\", " V_OK ", \"merges\": [[\"a\"]]}}", DSQ_E_FORMAT,
                    "model.merges[0]: expected"));
    CHECK(tok_fails("{\"model\": {\"type\": \"BPE\", " V_OK ", \"merges\": {}}}", DSQ_E_FORMAT,
                    "model.merges: expected an array"));
}

#define MODEL_OK "\"model\": {\"type\": \"BPE\", " V_OK ", " M_OK "}"

TEST(test_tokenizer_bad_pretokenizer) {
    CHECK(tok_fails("{" MODEL_OK ", \"pre_tokenizer\": {\"type\": \"Metaspace\"}, " DEC_OK "}",
                    DSQ_E_UNSUPPORTED, "pre_tokenizer: pre-tokenizer type 'Metaspace' is not supported"));
    CHECK(tok_fails("{" MODEL_OK ", \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": "
                    "[{\"type\": \"ByteLevel\"}, {\"type\": \"Digits\"}]}, " DEC_OK "}",
                    DSQ_E_UNSUPPORTED, "pre_tokenizer.pretokenizers[1]: pre-tokenizer type 'Digits'"));
    CHECK(tok_fails("{" MODEL_OK ", \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": "
                    "[{\"type\": \"Split\", \"pattern\": {\"Regex\": \"a\"}, \"behavior\": \"Sideways\"}, "
                    "{\"type\": \"ByteLevel\"}]}, " DEC_OK "}",
                    DSQ_E_FORMAT, "pre_tokenizer.pretokenizers[0].behavior"));
    CHECK(tok_fails("{" MODEL_OK ", \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"a\"}, "
                    "\"behavior\": \"Isolated\"}, " DEC_OK "}",
                    DSQ_E_UNSUPPORTED, "pre_tokenizer: expected exactly one ByteLevel step"));
    CHECK(tok_fails("{" MODEL_OK ", " DEC_OK "}", DSQ_E_UNSUPPORTED, "pre_tokenizer: expected exactly one ByteLevel"));
    CHECK(tok_fails("{" MODEL_OK ", \"pre_tokenizer\": 7, " DEC_OK "}", DSQ_E_FORMAT,
                    "pre_tokenizer: expected an object"));
    CHECK(tok_fails("{" MODEL_OK ", " PT_OK ", \"decoder\": {\"type\": \"WordPiece\"}}", DSQ_E_UNSUPPORTED,
                    "decoder: decoder type 'WordPiece' is not supported"));
    CHECK(tok_fails("{" MODEL_OK ", " PT_OK "}", DSQ_E_UNSUPPORTED, "decoder: missing"));
}

TEST(test_tokenizer_bad_normalizer) {
    CHECK(tok_fails("{" MODEL_OK ", \"normalizer\": {\"type\": \"NFC\"}, " PT_OK ", " DEC_OK "}",
                    DSQ_E_UNSUPPORTED, "normalizer: normalizer type 'NFC' is not supported"));
    CHECK(tok_fails("{" MODEL_OK ", \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": "
                    "[{\"type\": \"Sequence\", \"normalizers\": []}, {\"type\": \"Lowercase\"}]}, " PT_OK ", " DEC_OK "}",
                    DSQ_E_UNSUPPORTED, "normalizer.normalizers[1]: normalizer type 'Lowercase'"));
    CHECK(tok_fails("{" MODEL_OK ", \"normalizer\": {\"normalizers\": []}, " PT_OK ", " DEC_OK "}",
                    DSQ_E_FORMAT, "normalizer: expected an object with a \"type\""));
    /* null and an empty Sequence are the identity */
    dsq_tok *t = NULL;
    dsq_err err = {0};
    const char *ok = "{" MODEL_OK ", \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": []}, " PT_OK ", " DEC_OK "}";
    CHECK(dsq_tok_new_from_json(&t, ok, strlen(ok), "ok.json", &err) == DSQ_OK);
    dsq_tok_free(t);
}

TEST(test_tokenizer_bad_regex) {
    CHECK(tok_fails("{" MODEL_OK ", \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": "
                    "[{\"type\": \"Split\", \"pattern\": {\"Regex\": \"ab(c\"}, \"behavior\": \"Isolated\"}, "
                    "{\"type\": \"ByteLevel\"}]}, " DEC_OK "}",
                    DSQ_E_FORMAT,
                    "pre_tokenizer.pretokenizers[0].pattern.Regex: invalid regex at offset 4: missing closing parenthesis"));
    CHECK(tok_fails("{" MODEL_OK ", \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": "
                    "[{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\p{Nope}\"}, \"behavior\": \"Isolated\"}, "
                    "{\"type\": \"ByteLevel\"}]}, " DEC_OK "}",
                    DSQ_E_FORMAT, "pattern.Regex: invalid regex at offset"));
    CHECK(tok_fails("{" MODEL_OK ", \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": "
                    "[{\"type\": \"Split\", \"pattern\": {}, \"behavior\": \"Isolated\"}, "
                    "{\"type\": \"ByteLevel\"}]}, " DEC_OK "}",
                    DSQ_E_FORMAT, "pretokenizers[0].pattern: expected"));
    /* a literal String pattern is not a regex: "(" is fine */
    dsq_tok *t = NULL;
    dsq_err err = {0};
    const char *lit = "{" MODEL_OK ", \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": "
                      "[{\"type\": \"Split\", \"pattern\": {\"String\": \"(\"}, \"behavior\": \"Removed\"}, "
                      "{\"type\": \"ByteLevel\"}]}, " DEC_OK "}";
    CHECK(dsq_tok_new_from_json(&t, lit, strlen(lit), "ok.json", &err) == DSQ_OK);
    int want[] = {0, 1, -1}; /* "a(b" -> "a", "b" with "(" removed */
    int ok = enc_is(t, "a(b", 3, want);
    dsq_tok_free(t);
    CHECK(ok);
}

TEST(test_tokenizer_bad_added_tokens) {
    CHECK(tok_fails("{" MODEL_OK ", \"added_tokens\": [{\"id\": 5}], " PT_OK ", " DEC_OK "}", DSQ_E_FORMAT,
                    "added_tokens[0].content: missing"));
    CHECK(tok_fails("{" MODEL_OK ", \"added_tokens\": [{\"id\": 5, \"content\": \"x\"}, {\"id\": -2, \"content\": \"y\"}], "
                    PT_OK ", " DEC_OK "}",
                    DSQ_E_FORMAT, "added_tokens[1].id"));
    CHECK(tok_fails("{" MODEL_OK ", \"added_tokens\": [{\"id\": 5, \"content\": \"x\", \"special\": \"yes\"}], "
                    PT_OK ", " DEC_OK "}",
                    DSQ_E_FORMAT, "added_tokens[0].special: expected true or false"));
    CHECK(tok_fails("{" MODEL_OK ", \"added_tokens\": {}, " PT_OK ", " DEC_OK "}", DSQ_E_FORMAT,
                    "added_tokens: expected an array"));
}

/* ==== token files ======================================================== */

static int toks_parse(const char *s, size_t want_n, const int32_t *want) {
    int32_t *ids;
    size_t n;
    dsq_err err = {0};
    if (dsq_tokens_parse_json(s, strlen(s), "t.json", &ids, &n, &err) < 0) {
        fprintf(stderr, "  '%s': %s\n", s, err.msg);
        return 0;
    }
    int ok = n == want_n && (!n || !memcmp(ids, want, n * sizeof *ids));
    free(ids);
    return ok;
}

static int toks_fails(const char *s, const char *needle) {
    int32_t *ids = NULL;
    size_t n;
    dsq_err err = {0};
    int rc = dsq_tokens_parse_json(s, strlen(s), "t.json", &ids, &n, &err);
    if (rc >= 0) {
        free(ids);
        fprintf(stderr, "  accepted: %s\n", s);
        return 0;
    }
    if (!strstr(err.msg, needle) || strncmp(err.msg, "t.json: ", 8)) {
        fprintf(stderr, "  message '%s' lacks '%s'\n", err.msg, needle);
        return 0;
    }
    return 1;
}

TEST(test_tokenizer_token_files) {
    int32_t w[] = {1, -2, 2147483647, -2147483647 - 1, 300, 5};
    CHECK(toks_parse("[]", 0, w));
    CHECK(toks_parse(" \n[ ]\n", 0, w));
    CHECK(toks_parse("[1,-2,2147483647,-2147483648, 3e2 ,5.0]\n", 6, w));
    CHECK(toks_fails("{\"ids\": [1]}", "expected a JSON array"));
    CHECK(toks_fails("[1, 2,, 3]", "element 2 (byte 6) is not an integer"));
    CHECK(toks_fails("[1, \"2\"]", "element 1 (byte 4) is not an integer"));
    CHECK(toks_fails("[1, [2]]", "element 1 (byte 4) is not an integer"));
    CHECK(toks_fails("[0, 1.5]", "element 1 (byte 4) is not an integer"));
    CHECK(toks_fails("[0, 2147483648]", "element 1 (byte 4) is outside the int32 range"));
    CHECK(toks_fails("[0, -2147483649]", "element 1 (byte 4) is outside the int32 range"));
    CHECK(toks_fails("[0, 99999999999999999999999]", "element 1 (byte 4) is outside the int32 range"));
    CHECK(toks_fails("[0, 1e10]", "element 1 (byte 4) is outside the int32 range"));
    CHECK(toks_fails("[01]", "element 0 (byte 1) is not an integer"));
    CHECK(toks_fails("[1 2]", "expected ',' or ']' after element 0 at byte 3"));
    CHECK(toks_fails("[1, 2", "expected ',' or ']' after element 1 at byte 5"));
    CHECK(toks_fails("[1] [2]", "unexpected data after the array at byte 4"));
    CHECK(toks_fails("", "expected a JSON array"));

    /* from a file: the path is the name in messages */
    const char *p = t_path(t_tmpdir(), "bad.tokens.json");
    CHECK(t_write_file(p, "[1, true]", 9) == 0);
    int32_t *ids = NULL;
    size_t n;
    dsq_err err = {0};
    CHECK(dsq_tokens_load_json(p, &ids, &n, &err) == DSQ_E_FORMAT);
    CHECK(strstr(err.msg, "bad.tokens.json: element 1") != NULL);
    CHECK(dsq_tokens_load_json(t_path(t_tmpdir(), "absent.json"), &ids, &n, &err) == DSQ_E_IO);
    CHECK(strstr(err.msg, "absent.json") != NULL);
}

/* ==== the shipped tokenizers (../shared) ================================= */

static dsq_tok *load_file(const char *dir, const char *cfg, unsigned flags) {
    char *buf;
    size_t len;
    dsq_tok *t = NULL;
    dsq_err err = {0};
    const char *jp = t_path(dir, "tokenizer.json");
    if (dsq_read_file(jp, 1u << 30, &buf, &len, &err) < 0) {
        fprintf(stderr, "  %s\n", err.msg);
        return NULL;
    }
    int rc = dsq_tok_new_from_json_ex(&t, buf, len, jp, flags, &err);
    free(buf);
    if (rc < 0) {
        fprintf(stderr, "  %s\n", err.msg);
        return NULL;
    }
    if (cfg && dsq_read_file(t_path(dir, cfg), 1u << 30, &buf, &len, &err) == DSQ_OK) {
        rc = dsq_tok_set_config(t, buf, len, cfg, &err);
        free(buf);
        if (rc < 0) {
            fprintf(stderr, "  %s\n", err.msg);
            dsq_tok_free(t);
            return NULL;
        }
    }
    return t;
}

static const char *ds_dir(void) {
    static char buf[600];
    const char *root = t_shared_root();
    if (!root) return NULL;
    snprintf(buf, sizeof buf, "%s/tokenizers/deepseek-v3", root);
    return t_file_exists(t_path(buf, "tokenizer.json")) ? buf : NULL;
}

/* Encode a whole file and check decode(encode(x)) == x. */
static int file_round_trip(const dsq_tok *t, const char *path) {
    size_t len;
    char *text = t_read_file(path, &len);
    if (!text) return 0;
    int ok = roundtrip(t, text, len);
    if (!ok) fprintf(stderr, "  round trip of %s differs\n", path);
    free(text);
    return ok;
}

TEST(test_tokenizer_deepseek_cases) {
    const char *dir = ds_dir();
    if (!dir) SKIP("../shared/tokenizers/deepseek-v3 not present");
    dsq_tok *t = load_file(dir, "tokenizer_config.json", 0);
    CHECK(t);
    int ok = dsq_tok_bos_id(t) == 0 && dsq_tok_eos_id(t) == 1 && dsq_tok_vocab_size(t) == 128815;
    /* cases.json: ids with add_special_tokens false, so no BOS */
    size_t clen;
    char *cs = t_read_file(t_path(dir, "cases.json"), &clen);
    cJSON *cases = cs ? cJSON_ParseWithLength(cs, clen) : NULL;
    free(cs);
    int n_cases = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        const cJSON *text = cJSON_GetObjectItem(c, "text"), *want = cJSON_GetObjectItem(c, "ids");
        if (!cJSON_IsString(text) || !cJSON_IsArray(want)) { ok = 0; break; }
        int32_t *ids;
        size_t n;
        dsq_err err = {0};
        size_t tl = strlen(text->valuestring);
        if (dsq_tok_encode(t, text->valuestring, tl, &ids, &n, &err) < 0) { ok = 0; break; }
        int same = n == (size_t)cJSON_GetArraySize(want);
        for (size_t i = 0; same && i < n; i++) same = ids[i] == cJSON_GetArrayItem(want, (int)i)->valueint;
        if (!same) fprintf(stderr, "  case %d ('%.40s') differs\n", n_cases, text->valuestring);
        free(ids);
        ok = ok && same && roundtrip(t, text->valuestring, tl);
        n_cases++;
    }
    cJSON_Delete(cases);
    CHECKF(ok && n_cases >= 20, "%d cases", n_cases);
    /* the tiny model's texts go through the real tokenizer too */
    const char *tiny = t_shared_model("tiny-v32");
    if (tiny) {
        ok = file_round_trip(t, t_path(tiny, "eval.txt")) && file_round_trip(t, t_path(tiny, "calib.txt"));
    }
    dsq_tok_free(t);
    CHECK(ok);
}

TEST(test_tokenizer_tiny_eval_tokens) {
    const char *dir = t_shared_model("tiny-v32");
    if (!dir) SKIP("../shared/models/tiny-v32 not present");
    int32_t *want = NULL, *ids = NULL;
    size_t n_want, n, len;
    dsq_err err = {0};
    CHECK(dsq_tokens_load_json(t_path(dir, "eval.tokens.json"), &want, &n_want, &err) == DSQ_OK);
    char *text = t_read_file(t_path(dir, "eval.txt"), &len);
    int ok = text != NULL;
    /* the JIT and the interpreter must agree with the reference */
    for (int pass = 0; ok && pass < 2; pass++) {
        dsq_tok *t = load_file(dir, "tokenizer_config.json", pass ? DSQ_TOK_NO_JIT : 0);
        ok = t && dsq_tok_bos_id(t) == 0 && dsq_tok_add_bos(t) && dsq_tok_vocab_size(t) == 4096;
        ok = ok && dsq_tok_encode(t, text, len, &ids, &n, &err) == DSQ_OK;
        /* eval.tokens.json starts with BOS */
        ok = ok && n + 1 == n_want && want[0] == dsq_tok_bos_id(t) && !memcmp(ids, want + 1, n * sizeof *ids);
        if (ok) {
            char *d;
            size_t dl;
            ok = dsq_tok_decode(t, ids, n, &d, &dl, &err) == DSQ_OK && dl == len && !memcmp(d, text, len);
            free(d);
        }
        ok = ok && file_round_trip(t, t_path(dir, "calib.txt"));
        free(ids);
        ids = NULL;
        dsq_tok_free(t);
        if (!ok) fprintf(stderr, "  %s pass differs\n", pass ? "interpreter" : "JIT");
    }
    free(text);
    free(want);
    CHECK(ok);
}

/* ==== the commands ======================================================= */

/* A checkpoint-like folder with a generated tokenizer and its config. */
static const char *cli_fixture(tvocab *v) {
    const char *dir = t_tmpdir();
    const char *m[] = {"h", "e", "l", "l", "he", "ll", "hell", "o", " ", "w"};
    tspec ts = {.pretok = "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}",
                .added = "[{\"id\": 300, \"content\": \"<s>\", \"special\": true, \"normalized\": false},"
                         "{\"id\": 301, \"content\": \"</s>\", \"special\": true, \"normalized\": false}]"};
    char *json = make_tok(v, m, 5, &ts);
    const char *cfg = "{\"add_bos_token\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}";
    int ok = t_write_file(t_path(dir, "tokenizer.json"), json, strlen(json)) == 0 &&
             t_write_file(t_path(dir, "tokenizer_config.json"), cfg, strlen(cfg)) == 0;
    free(json);
    return ok ? dir : NULL;
}

TEST(test_tokenizer_cli) {
    static tvocab v;
    const char *dir = cli_fixture(&v);
    CHECK(dir);
    char cmd[4096], *out = NULL;
    const char text[] = "hello world</s>\n\xff";
    const char *tp = t_path(dir, "in.txt");
    CHECK(t_write_file(tp, text, sizeof text - 1) == 0);

    /* --json: exactly one array, nothing else on stdout or stderr */
    snprintf(cmd, sizeof cmd, "%s tokenize '%s' --text '%s' --json", t_dsq(), dir, tp);
    CHECK(t_run(cmd, &out) == 0);
    int32_t *ids = NULL;
    size_t n;
    dsq_err err = {0};
    int rc = dsq_tokens_parse_json(out, strlen(out), "stdout", &ids, &n, &err);
    int hello = tv_id(&v, "hello", 5);
    int ok = rc == DSQ_OK && n >= 3 && ids[0] == hello && out[strlen(out) - 1] == '\n';
    free(ids);
    if (!ok) fprintf(stderr, "  output: %s\n", out);
    free(out);
    CHECK(ok);

    /* --bos puts the configured BOS first; plain output plus a summary */
        /* t_run appends 2>&1; the subshell keeps stderr out */
    snprintf(cmd, sizeof cmd, "( %s tokenize '%s' --text '%s' --bos 2>/dev/null )", t_dsq(),
             t_path(dir, "tokenizer.json"), tp);
    CHECK(t_run(cmd, &out) == 0);
    ok = !strncmp(out, "300 ", 4) && strchr(out, '\n') == out + strlen(out) - 1;
    snprintf(cmd, sizeof cmd, "%d", hello);
    ok = ok && !strncmp(out + 4, cmd, strlen(cmd));
    if (!ok) fprintf(stderr, "  output: %s\n", out);
    free(out);
    CHECK(ok);
    snprintf(cmd, sizeof cmd, "( %s tokenize '%s' --text '%s' >/dev/null )", t_dsq(), dir, tp);
    CHECK(t_run(cmd, &out) == 0);
    ok = strstr(out, " tokens, 17 bytes, ") && strstr(out, "MB/s");
    free(out);
    CHECK(ok);

    /* detokenize gives the bytes back exactly */
    const char *jp = t_path(dir, "ids.json"), *op = t_path(dir, "out.bin");
    snprintf(cmd, sizeof cmd, "%s tokenize '%s' --text '%s' --json > '%s'", t_dsq(), dir, tp, jp);
    CHECK(t_run(cmd, NULL) == 0);
    snprintf(cmd, sizeof cmd, "%s detokenize '%s' --tokens '%s' > '%s'", t_dsq(), dir, jp, op);
    CHECK(t_run(cmd, NULL) == 0);
    size_t olen;
    char *back = t_read_file(op, &olen);
    ok = back && olen == sizeof text - 1 && !memcmp(back, text, olen);
    free(back);
    CHECK(ok);

    /* '-' reads standard input, for both commands */
    snprintf(cmd, sizeof cmd, "%s tokenize '%s' --text - --json < '%s' | %s detokenize '%s' --tokens - > '%s'",
             t_dsq(), dir, tp, t_dsq(), dir, op);
    CHECK(t_run(cmd, NULL) == 0);
    back = t_read_file(op, &olen);
    ok = back && olen == sizeof text - 1 && !memcmp(back, text, olen);
    free(back);
    CHECK(ok);
    tv_free(&v);
}

TEST(test_tokenizer_cli_errors) {
    static tvocab v;
    const char *dir = cli_fixture(&v);
    tv_free(&v);
    CHECK(dir);
    char cmd[4096], *out = NULL;
    const char *tp = t_path(dir, "in.txt");
    CHECK(t_write_file(tp, "hello", 5) == 0);
    struct {
        const char *args;
        int code;
        const char *needle;
    } cases[] = {
        {"tokenize --help", 0, "usage: dsq tokenize MODEL --text FILE"},
        {"detokenize --help", 0, "usage: dsq detokenize MODEL --tokens FILE.json"},
        {"tokenize", 2, "usage:"},
        {"tokenize DIR", 2, "usage:"},
        {"tokenize DIR --text", 2, "incomplete option '--text'"},
        {"tokenize DIR --text IN --frobnicate", 2, "unknown or incomplete option '--frobnicate'"},
        {"detokenize DIR", 2, "usage:"},
        {"tokenize DIR/none --text IN", 1, "none"},
        {"tokenize DIR --text DIR/none.txt", 1, "none.txt: cannot open"},
        {"tokenize model.dsq --text IN", 1, "model.dsq: no such file or folder"},
        {"detokenize DIR --tokens DIR/bad.json", 1, "bad.json: element 1 (byte 4) is not an integer"},
        {"detokenize DIR --tokens DIR/range.json", 1, "range.json: token 1: id 4000 is not in the vocabulary"},
        {"tokenize DIR/broken --text IN", 1, "broken/tokenizer.json: model.merges[0]: token 'x' is not in model.vocab"},
    };
    CHECK(t_write_file(t_path(dir, "bad.json"), "[1, x]", 6) == 0);
    CHECK(t_write_file(t_path(dir, "range.json"), "[1, 4000]", 9) == 0);
    char broken[700];
    snprintf(broken, sizeof broken, "%s/broken", dir);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", broken);
    CHECK(t_run(cmd, NULL) == 0);
    const char *bj = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"x a\"]}}";
    CHECK(t_write_file(t_path(broken, "tokenizer.json"), bj, strlen(bj)) == 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        /* substitute DIR and IN */
        char args[2048];
        size_t o = 0;
        for (const char *s = cases[i].args; *s && o < sizeof args - 700;) {
            if (!strncmp(s, "DIR", 3)) { o += (size_t)snprintf(args + o, sizeof args - o, "%s", dir); s += 3; }
            else if (!strncmp(s, "IN", 2)) { o += (size_t)snprintf(args + o, sizeof args - o, "%s", tp); s += 2; }
            else args[o++] = *s++;
        }
        args[o] = 0;
        snprintf(cmd, sizeof cmd, "%s %s", t_dsq(), args);
        int code = t_run(cmd, &out);
        int ok = code == cases[i].code && out && strstr(out, cases[i].needle);
        if (!ok) fprintf(stderr, "  '%s': exit %d, output: %s\n", cases[i].args, code, out ? out : "");
        free(out);
        CHECKF(ok, "case %zu", i);
    }
}

/* The command on the tiny model reproduces eval.tokens.json byte for byte
 * as JSON values. */
TEST(test_tokenizer_cli_tiny) {
    const char *dir = t_shared_model("tiny-v32");
    if (!dir) SKIP("../shared/models/tiny-v32 not present");
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s tokenize '%s' --text '%s' --json --bos", t_dsq(), dir, t_path(dir, "eval.txt"));
    CHECK(t_run(cmd, &out) == 0);
    int32_t *got = NULL, *want = NULL;
    size_t ng, nw;
    dsq_err err = {0};
    int ok = dsq_tokens_parse_json(out, strlen(out), "stdout", &got, &ng, &err) == DSQ_OK &&
             dsq_tokens_load_json(t_path(dir, "eval.tokens.json"), &want, &nw, &err) == DSQ_OK &&
             ng == nw && !memcmp(got, want, ng * sizeof *got);
    free(out);
    free(got);
    free(want);
    CHECK(ok);
}
