/*
 * tokenizer.c -- byte-level BPE as the HuggingFace `tokenizers` library runs
 * it from a tokenizer.json (the format DeepSeek-V3-family checkpoints ship),
 * plus the reader of JSON token files used by `dsq tokenize` / `eval`.
 *
 * Encoding follows the library's pipeline step by step:
 *
 *   added tokens   AddedVocabulary::extract_and_normalize: tokens with
 *                  normalized=false are cut out of the raw text first, then
 *                  the normalized ones out of the remaining (normalized)
 *                  pieces; each pass is a leftmost-longest search (their
 *                  Aho-Corasick automaton, a byte trie here), with the
 *                  lstrip / rstrip / single_word options.
 *   normalizer     null or an empty Sequence; anything else is refused
 *                  (DSQ_E_UNSUPPORTED) rather than silently skipped.
 *   pre-tokenizer  Split steps (regex or literal, five delimiter behaviours,
 *                  invert) and one final ByteLevel step, which may prepend a
 *                  space and may split with the GPT-2 regex.  Regexes run in
 *                  PCRE2 with UTF + UCP (Unicode properties, look-ahead), JIT
 *                  compiled when the platform allows.  The library runs
 *                  Oniguruma with Ruby syntax, whose ^ and $ match at line
 *                  breaks, hence PCRE2_MULTILINE.  Matches are enumerated the
 *                  way rust-onig's find_iter does (an empty match right after
 *                  the previous match is skipped by one character).
 *   BPE            merges by rank on the GPT-2 bytes-to-unicode alphabet.  The
 *                  mapping is a bijection byte <-> character, so this file
 *                  stores every token as the raw bytes it stands for and
 *                  merges byte strings; the result is the same ids.  The merge
 *                  loop is the library's: a linked list of symbols and a
 *                  min-heap of (rank, position), stale entries skipped on pop.
 *                  Results are cached per pre-token (bounded table, emptied
 *                  when full).
 *
 * Decoding is the ByteLevel decoder: a token whose characters all belong to
 * the byte alphabet decodes to those bytes, any other token (special tokens
 * such as <｜end▁of▁sentence｜>) to its own UTF-8 text.
 *
 * Lookups use open-addressing hash tables: token bytes -> id (XXH3), and
 * (left id, right id) -> (rank, merged id).
 */
#include "formats/tokenizer.h"

#include "common.h"
#include "formats/json.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pcre2.h>
#include <pthread.h>
#include <stdio.h>
#include <xxhash.h>

/* ---- limits ------------------------------------------------------------- */
#define TOK_MAX_ID (1 << 22)          /* largest accepted token id + 1        */
#define TOK_MAX_MERGES (1 << 24)
#define TOK_MAX_STEPS 32              /* pre-tokenizer steps after flattening */
#define TOK_MAX_DEPTH 8               /* nesting of Sequence objects          */
#define TOK_MAX_ADDED (1 << 20)
#define TOK_JIT_STACK (1 << 20)       /* bytes; long whitespace runs backtrack */
#define CACHE_SLOTS (1u << 16)        /* word cache: power of two             */
#define CACHE_MAX_ENTRIES (CACHE_SLOTS / 2)
#define CACHE_MAX_WORD 255            /* longer pre-tokens are not cached     */
#define TOKFILE_MAX ((size_t)1 << 32) /* a token file larger than 4 GiB is refused */

/* The GPT-2 pre-tokenizer regex, as ByteLevel(use_regex=true) uses it
 * (tokenizers/src/pre_tokenizers/byte_level.rs). */
static const char GPT2_REGEX[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* Characters of the GPT-2 byte alphabet are all below U+0144 (256 + 67). */
#define BL_MAX_CP 0x144

/* ---- types -------------------------------------------------------------- */

/* One model.vocab entry. */
typedef struct tok_key {
    uint32_t orig_off, orig_len; /* key as written in the file, in strs      */
    uint32_t raw_off, raw_len;   /* bytes it stands for (== orig if not BL)  */
    int32_t id;
    int32_t byte_level; /* every character belongs to the byte alphabet     */
} tok_key;

/* Open-addressing string table: slot holds an index into keys[] or -1. */
typedef struct smap {
    int32_t *slot;
    uint32_t *hash; /* low 32 bits of the key's hash, to skip most memcmp    */
    size_t mask;
} smap;

typedef struct mrg_ent {
    uint64_t key; /* left id << 32 | right id; UINT64_MAX = empty            */
    uint32_t rank;
    int32_t id; /* merged token                                             */
} mrg_ent;

typedef struct tok_added {
    uint32_t off, len; /* content, in strs                                  */
    int32_t id;
    uint8_t special, normalized, lstrip, rstrip, single_word;
} tok_added;

typedef struct trie_node {
    int32_t child, sibling; /* first child / next sibling, -1 if none        */
    int32_t added;          /* index into added[] if a token ends here, -1   */
    uint8_t byte;
} trie_node;

enum { ST_SPLIT = 0, ST_BYTELEVEL = 1 };
enum { SB_REMOVED = 0, SB_ISOLATED, SB_MERGED_PREV, SB_MERGED_NEXT, SB_CONTIGUOUS };

typedef struct tok_step {
    int kind;
    int re;       /* index into re[], -1 for ByteLevel without regex          */
    int behavior; /* SB_*                                                      */
    int invert;
    int prefix_space; /* ByteLevel add_prefix_space                           */
} tok_step;

struct enc_state;
typedef struct tok_shared {
    pthread_mutex_t lock;  /* taken with trylock by an encode call          */
    struct enc_state *st;  /* reused scratch + word cache; NULL until needed */
} tok_shared;

struct dsq_tok {
    char *strs; /* every string of the tokenizer. From malloc().            */
    size_t strs_len, strs_cap;
    tok_key *keys; /* model.vocab entries. From malloc().                   */
    size_t n_keys;
    smap orig_map; /* key as written -> keys[] (merges, config lookups)     */
    smap raw_map;  /* raw bytes -> keys[], byte-level keys only (BPE)       */
    mrg_ent *mrg;
    size_t mrg_mask;
    int32_t n_ids;            /* largest id + 1                              */
    uint32_t *id_off, *id_len; /* decoded bytes of each id; off UINT32_MAX = hole */
    int32_t byte_id[256];     /* id of each single-byte token, -1 if absent  */
    int32_t unk_id;           /* -1 if none                                  */
    int fuse_unk, ignore_merges;
    tok_added *added;
    size_t n_added;
    trie_node *nodes;
    size_t n_nodes, cap_nodes;
    int32_t root[2][256]; /* per pass (0 raw, 1 normalized): first node per byte */
    int has_added[2];
    tok_step steps[TOK_MAX_STEPS];
    int n_steps;
    pcre2_code *re[TOK_MAX_STEPS + 1];
    int re_jit[TOK_MAX_STEPS + 1];
    int n_re;
    int re_word; /* `\w` for single_word added tokens, -1 if unused          */
    int16_t u2b[BL_MAX_CP]; /* byte-alphabet character -> byte, -1 if none  */
    uint16_t b2u[256];      /* byte -> byte-alphabet character              */
    int32_t bos_id, eos_id;
    int add_bos;
    unsigned flags;
    tok_shared *sh;
};

/* ---- UTF-8 -------------------------------------------------------------- */

/* Length of the valid UTF-8 character at p (1..4), or 0 if the bytes there
 * are not one (overlong, surrogate, > U+10FFFF, truncated).  *cp gets the
 * code point. */
static size_t u8_decode(const unsigned char *p, size_t n, uint32_t *cp) {
    unsigned c = p[0];
    if (c < 0x80) { *cp = c; return 1; }
    if (c < 0xC2 || c > 0xF4) return 0;
    if (c < 0xE0) {
        if (n < 2 || (p[1] & 0xC0) != 0x80) return 0;
        *cp = ((c & 0x1Fu) << 6) | (p[1] & 0x3Fu);
        return 2;
    }
    if (c < 0xF0) {
        if (n < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return 0;
        uint32_t v = ((c & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
        if (v < 0x800 || (v >= 0xD800 && v <= 0xDFFF)) return 0;
        *cp = v;
        return 3;
    }
    if (n < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
        return 0;
    uint32_t v = ((c & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) | ((p[2] & 0x3Fu) << 6) |
                 (p[3] & 0x3Fu);
    if (v < 0x10000 || v > 0x10FFFF) return 0;
    *cp = v;
    return 4;
}

/* Length of the longest valid UTF-8 prefix of p[0..n).  ASCII is checked
 * eight bytes at a time since most text is ASCII. */
static size_t u8_valid_prefix(const unsigned char *p, size_t n) {
    size_t i = 0;
    uint32_t cp;
    while (i < n) {
        if (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if (!(w & 0x8080808080808080ull)) { i += 8; continue; }
        }
        if (p[i] < 0x80) { i++; continue; }
        size_t k = u8_decode(p + i, n - i, &cp);
        if (!k) break;
        i += k;
    }
    return i;
}

/* Length of the run of bytes at p that do not start a valid character. */
static size_t u8_invalid_prefix(const unsigned char *p, size_t n) {
    size_t i = 0;
    uint32_t cp;
    while (i < n && !u8_decode(p + i, n - i, &cp)) i++;
    return i;
}

/* Unicode White_Space, what Rust's char::is_whitespace and the `\s` of the
 * library's lstrip/rstrip regexes accept. */
static int is_uspace(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

/* ---- the GPT-2 bytes-to-unicode map -------------------------------------- */
/* Printable Latin-1 bytes (33..126, 161..172, 174..255) stand for themselves;
 * the other 68 bytes, in increasing order, become U+0100, U+0101, ... so every
 * byte has a visible character (openai/gpt-2 encoder.py, bytes_to_unicode). */
static void bl_tables(uint16_t b2u[256], int16_t u2b[BL_MAX_CP]) {
    int n = 0;
    for (int i = 0; i < BL_MAX_CP; i++) u2b[i] = -1;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
        b2u[b] = (uint16_t)(keep ? b : 256 + n++);
        u2b[b2u[b]] = (int16_t)b;
    }
}

/* Raw bytes of a byte-alphabet string written into out (capacity >= n).
 * Returns the byte count, or -1 if some character is outside the alphabet. */
static long bl_to_raw(const dsq_tok *t, const char *s, size_t n, char *out) {
    size_t i = 0, o = 0;
    uint32_t cp;
    while (i < n) {
        size_t k = u8_decode((const unsigned char *)s + i, n - i, &cp);
        if (!k || cp >= BL_MAX_CP || t->u2b[cp] < 0) return -1;
        out[o++] = (char)t->u2b[cp];
        i += k;
    }
    return (long)o;
}

/* ---- string storage and hash tables ------------------------------------- */

static uint64_t hash_bytes(const char *s, size_t n) { return XXH3_64bits(s, n); }

/* Append bytes to t->strs; returns the offset or -1 when out of memory or
 * past the 4 GiB that 32-bit offsets can address. */
static long long strs_add(dsq_tok *t, const char *s, size_t n) {
    if (t->strs_len + n + 1 > UINT32_MAX) return -1;
    if (t->strs_len + n + 1 > t->strs_cap) {
        size_t cap = t->strs_cap ? t->strs_cap : 4096;
        while (cap < t->strs_len + n + 1) cap *= 2;
        char *p = dsq_realloc(t->strs, cap);
        if (!p) return -1;
        t->strs = p;
        t->strs_cap = cap;
    }
    size_t off = t->strs_len;
    if (n) memcpy(t->strs + off, s, n);
    t->strs[off + n] = 0;
    t->strs_len += n + 1;
    return (long long)off;
}

static int smap_init(smap *m, size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    m->slot = dsq_malloc(cap * sizeof *m->slot);
    m->hash = dsq_malloc(cap * sizeof *m->hash);
    if (!m->slot || !m->hash) return DSQ_E_NOMEM;
    memset(m->slot, 0xFF, cap * sizeof *m->slot);
    m->mask = cap - 1;
    return DSQ_OK;
}

static void smap_free(smap *m) {
    free(m->slot);
    free(m->hash);
}

/* Index of the key whose orig (raw == 0) or raw (raw == 1) string is s, or
 * -1.  With insert >= 0, adds that key when absent and returns -1; returns
 * the existing index when present. */
static int32_t smap_find(const dsq_tok *t, const smap *m, int raw, const char *s, size_t n,
                         int32_t insert) {
    uint64_t h = hash_bytes(s, n);
    size_t i = (size_t)h & m->mask;
    for (;;) {
        int32_t k = m->slot[i];
        if (k < 0) {
            if (insert >= 0) {
                m->slot[i] = insert;
                m->hash[i] = (uint32_t)h;
            }
            return -1;
        }
        if (m->hash[i] == (uint32_t)h) {
            const tok_key *e = &t->keys[k];
            uint32_t off = raw ? e->raw_off : e->orig_off, len = raw ? e->raw_len : e->orig_len;
            if (len == n && !memcmp(t->strs + off, s, n)) return k;
        }
        i = (i + 1) & m->mask;
    }
}

static inline uint64_t mix64(uint64_t x) {
    /* splitmix64 finaliser: consecutive ids spread over the whole table */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static inline const mrg_ent *mrg_find(const dsq_tok *t, int32_t a, int32_t b) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = (size_t)mix64(key) & t->mrg_mask;
    for (;;) {
        const mrg_ent *e = &t->mrg[i];
        if (e->key == key) return e;
        if (e->key == UINT64_MAX) return NULL;
        i = (i + 1) & t->mrg_mask;
    }
}

/* Insert or overwrite: the library keeps merges in a HashMap, so a pair
 * listed twice takes its later rank. */
static void mrg_put(dsq_tok *t, int32_t a, int32_t b, uint32_t rank, int32_t id) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = (size_t)mix64(key) & t->mrg_mask;
    while (t->mrg[i].key != UINT64_MAX && t->mrg[i].key != key) i = (i + 1) & t->mrg_mask;
    t->mrg[i].key = key;
    t->mrg[i].rank = rank;
    t->mrg[i].id = id;
}

/* ---- JSON helpers ------------------------------------------------------- */

/* Optional boolean: absent or null gives def.  The check is formats/json.h's;
 * the message follows this file's "<what>: <path>: expected ..." style. */
static int jbool(const cJSON *o, const char *k, int def, int *out, const char *what,
                 const char *path, dsq_err *err) {
    const cJSON *v = dsq_json_get(o, k);
    if (dsq_json_absent(v)) { *out = def; return DSQ_OK; }
    if (!dsq_json_bool(v, out))
        return dsq_fail(err, DSQ_E_FORMAT, "%s: %s%s%s: expected true or false", what, path,
                        path[0] ? "." : "", k);
    return DSQ_OK;
}

static const char *jtype(const cJSON *o) {
    const cJSON *v = dsq_json_get(o, "type");
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Short printable rendering of a token for messages. */
static const char *clip(const char *s, size_t n, char buf[64]) {
    size_t o = 0;
    for (size_t i = 0; i < n && o < 56; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7F) o += (size_t)snprintf(buf + o, 64 - o, "\\x%02x", c);
        else buf[o++] = (char)c;
    }
    if (o >= 56) { memcpy(buf + o, "...", 3); o += 3; }
    buf[o] = 0;
    return buf;
}

/* ---- loading: model ----------------------------------------------------- */

/* model.vocab: every key is stored twice, as written (merges and configs
 * name tokens that way) and as the raw bytes it stands for (what BPE works
 * on).  Keys with a character outside the byte alphabet (special tokens kept
 * in the vocabulary) cannot come out of BPE; they are only decoded. */
static int load_vocab(dsq_tok *t, const cJSON *vocab, const char *what, dsq_err *err) {
    int rc;
    char tmp[64];
    size_t n = (size_t)cJSON_GetArraySize(vocab);
    char *rawbuf = NULL;
    size_t rawcap = 0;
    t->keys = dsq_calloc(n ? n : 1, sizeof *t->keys);
    if (!t->keys || smap_init(&t->orig_map, n) < 0 || smap_init(&t->raw_map, n) < 0)
        return dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory for %zu tokens", what, n);
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        const char *s = it->string;
        size_t len = strlen(s);
        int64_t id;
        if (!dsq_json_int(it, 0, TOK_MAX_ID - 1, &id)) {
            rc = dsq_fail(err, DSQ_E_FORMAT, "%s: model.vocab['%s']: id must be an integer in [0, %d)",
                          what, clip(s, len, tmp), TOK_MAX_ID);
            goto fail;
        }
        if (len + 1 > rawcap) {
            rawcap = 2 * len + 64;
            char *p = dsq_realloc(rawbuf, rawcap);
            if (!p) goto nomem;
            rawbuf = p;
        }
        long rawn = bl_to_raw(t, s, len, rawbuf);
        tok_key *k = &t->keys[t->n_keys];
        long long o1 = strs_add(t, s, len);
        if (o1 < 0) goto nomem;
        k->orig_off = (uint32_t)o1;
        k->orig_len = (uint32_t)len;
        if (rawn >= 0) {
            long long o2 = strs_add(t, rawbuf, (size_t)rawn);
            if (o2 < 0) goto nomem;
            k->raw_off = (uint32_t)o2;
            k->raw_len = (uint32_t)rawn;
            k->byte_level = 1;
        } else {
            k->raw_off = k->orig_off;
            k->raw_len = k->orig_len;
        }
        k->id = (int32_t)id;
        if (smap_find(t, &t->orig_map, 0, s, len, (int32_t)t->n_keys) >= 0) {
            rc = dsq_fail(err, DSQ_E_FORMAT, "%s: model.vocab: token '%s' appears twice", what,
                          clip(s, len, tmp));
            goto fail;
        }
        /* Two spellings cannot stand for the same bytes: the alphabet is a
         * bijection and non-byte-level keys are not in raw_map. */
        if (k->byte_level) smap_find(t, &t->raw_map, 1, rawbuf, (size_t)rawn, (int32_t)t->n_keys);
        if ((int32_t)id >= t->n_ids) t->n_ids = (int32_t)id + 1;
        t->n_keys++;
    }
    free(rawbuf);
    return DSQ_OK;
nomem:
    rc = dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory reading model.vocab", what);
fail:
    free(rawbuf);
    return rc;
}

/* Look up a key as written; returns its id or -1. */
static int32_t vocab_id(const dsq_tok *t, const char *s, size_t n) {
    int32_t k = smap_find(t, &t->orig_map, 0, s, n, -1);
    return k < 0 ? -1 : t->keys[k].id;
}

/* model.merges, in rank order: merge r joins the pair (a, b) into the token
 * spelled a + b.  As in the library's BPE builder, a, b and a + b must all be
 * in the vocabulary; an unknown one is an error naming the merge. */
static int load_merges(dsq_tok *t, const cJSON *merges, const char *what, dsq_err *err) {
    int rc = DSQ_OK;
    char t1[64], t2[64], t3[64];
    size_t n = (size_t)cJSON_GetArraySize(merges);
    if (n > TOK_MAX_MERGES)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: model.merges: %zu merges (limit %d)", what, n,
                        TOK_MAX_MERGES);
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    t->mrg = dsq_malloc(cap * sizeof *t->mrg);
    if (!t->mrg) return dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", what);
    for (size_t i = 0; i < cap; i++) t->mrg[i].key = UINT64_MAX;
    t->mrg_mask = cap - 1;
    char *cat = NULL;
    size_t catcap = 0;
    size_t rank = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, merges) {
        const char *a, *b;
        size_t la, lb;
        if (cJSON_IsString(it)) {
            /* "a b": the two tokens around the only space (a byte-level token
             * never holds a space: the alphabet writes it as U+0120) */
            const char *s = it->valuestring, *sp = strchr(s, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                rc = dsq_fail(err, DSQ_E_FORMAT,
                              "%s: model.merges[%zu]: expected two tokens separated by one space, got '%s'",
                              what, rank, clip(s, strlen(s), t1));
                goto fail;
            }
            a = s; la = (size_t)(sp - s);
            b = sp + 1; lb = strlen(b);
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 &&
                   cJSON_IsString(cJSON_GetArrayItem(it, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(it, 1))) {
            a = cJSON_GetArrayItem(it, 0)->valuestring; la = strlen(a);
            b = cJSON_GetArrayItem(it, 1)->valuestring; lb = strlen(b);
        } else {
            rc = dsq_fail(err, DSQ_E_FORMAT,
                          "%s: model.merges[%zu]: expected \"a b\" or [\"a\", \"b\"]", what, rank);
            goto fail;
        }
        int32_t ia = vocab_id(t, a, la), ib = vocab_id(t, b, lb);
        if (ia < 0 || ib < 0) {
            const char *s = ia < 0 ? a : b;
            rc = dsq_fail(err, DSQ_E_FORMAT, "%s: model.merges[%zu]: token '%s' is not in model.vocab",
                          what, rank, clip(s, ia < 0 ? la : lb, t1));
            goto fail;
        }
        if (la + lb > catcap) {
            catcap = 2 * (la + lb) + 64;
            char *p = dsq_realloc(cat, catcap);
            if (!p) { rc = dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", what); goto fail; }
            cat = p;
        }
        memcpy(cat, a, la);
        memcpy(cat + la, b, lb);
        int32_t im = vocab_id(t, cat, la + lb);
        if (im < 0) {
            rc = dsq_fail(err, DSQ_E_FORMAT,
                          "%s: model.merges[%zu]: merged token '%s' (of '%s' + '%s') is not in model.vocab",
                          what, rank, clip(cat, la + lb, t2), clip(a, la, t1), clip(b, lb, t3));
            goto fail;
        }
        mrg_put(t, ia, ib, (uint32_t)rank, im);
        rank++;
    }
fail:
    free(cat);
    return rc;
}

static int load_model(dsq_tok *t, const cJSON *root, const char *what, dsq_err *err) {
    int rc;
    char tmp[64];
    const cJSON *m = dsq_json_get(root, "model");
    if (!cJSON_IsObject(m))
        return dsq_fail(err, DSQ_E_FORMAT, "%s: model: missing or not an object", what);
    const cJSON *ty = dsq_json_get(m, "type");
    if (ty && !(cJSON_IsString(ty) && !strcmp(ty->valuestring, "BPE"))) {
        if (cJSON_IsString(ty))
            return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: model.type: '%s' is not supported (only BPE)",
                            what, ty->valuestring);
        return dsq_fail(err, DSQ_E_FORMAT, "%s: model.type: expected a string", what);
    }
    const cJSON *vocab = dsq_json_get(m, "vocab"), *merges = dsq_json_get(m, "merges");
    if (!vocab) return dsq_fail(err, DSQ_E_FORMAT, "%s: model.vocab: missing", what);
    if (!cJSON_IsObject(vocab))
        return dsq_fail(err, DSQ_E_FORMAT, "%s: model.vocab: expected an object of token: id", what);
    if (!merges) return dsq_fail(err, DSQ_E_FORMAT, "%s: model.merges: missing", what);
    if (!cJSON_IsArray(merges))
        return dsq_fail(err, DSQ_E_FORMAT, "%s: model.merges: expected an array", what);

    /* Options that change what BPE computes and that a byte-level model never
     * sets: refuse them instead of computing something else. */
    const cJSON *v = dsq_json_get(m, "dropout");
    if (!dsq_json_absent(v) && !(cJSON_IsNumber(v) && v->valuedouble == 0.0))
        return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: model.dropout: only null or 0 is supported", what);
    static const char *const strs_off[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        v = dsq_json_get(m, strs_off[i]);
        if (!dsq_json_absent(v) && !(cJSON_IsString(v) && !v->valuestring[0]))
            return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: model.%s: only null is supported", what,
                            strs_off[i]);
    }
    int bf;
    DSQ_TRY(jbool(m, "byte_fallback", 0, &bf, what, "model", err));
    if (bf)
        return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: model.byte_fallback: true is not supported", what);
    DSQ_TRY(jbool(m, "fuse_unk", 0, &t->fuse_unk, what, "model", err));
    DSQ_TRY(jbool(m, "ignore_merges", 0, &t->ignore_merges, what, "model", err));

    DSQ_TRY(load_vocab(t, vocab, what, err));
    DSQ_TRY(load_merges(t, merges, what, err));

    t->unk_id = -1;
    v = dsq_json_get(m, "unk_token");
    if (!dsq_json_absent(v)) {
        if (!cJSON_IsString(v))
            return dsq_fail(err, DSQ_E_FORMAT, "%s: model.unk_token: expected a string", what);
        t->unk_id = vocab_id(t, v->valuestring, strlen(v->valuestring));
        if (t->unk_id < 0)
            return dsq_fail(err, DSQ_E_FORMAT, "%s: model.unk_token: '%s' is not in model.vocab",
                            what, clip(v->valuestring, strlen(v->valuestring), tmp));
    }
    return DSQ_OK;
fail:
    return rc;
}

/* ---- loading: added tokens ---------------------------------------------- */

static int grow_nodes(dsq_tok *t) {
    if (t->n_nodes < t->cap_nodes) return 0;
    size_t cap = t->cap_nodes ? 2 * t->cap_nodes : 256;
    trie_node *p = dsq_realloc(t->nodes, cap * sizeof *p);
    if (!p) return -1;
    t->nodes = p;
    t->cap_nodes = cap;
    return 0;
}

static int trie_add(dsq_tok *t, int pass, const char *s, size_t n, int32_t added) {
    int32_t parent = -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int32_t cur = parent < 0 ? t->root[pass][c] : t->nodes[parent].child;
        while (cur >= 0 && t->nodes[cur].byte != c) cur = t->nodes[cur].sibling;
        if (cur < 0) {
            if (grow_nodes(t) < 0) return DSQ_E_NOMEM;
            cur = (int32_t)t->n_nodes++;
            t->nodes[cur] = (trie_node){.child = -1, .sibling = -1, .added = -1, .byte = c};
            if (parent < 0) {
                t->root[pass][c] = cur; /* one root node per first byte */
            } else {
                t->nodes[cur].sibling = t->nodes[parent].child;
                t->nodes[parent].child = cur;
            }
        }
        parent = cur;
    }
    /* A content listed twice: the later entry wins, as in the library. */
    t->nodes[parent].added = added;
    return DSQ_OK;
}

/* added_tokens: each goes into the trie of its pass (normalized or not).
 * The file's id is taken as is; the library reassigns ids only when a token
 * is added at run time. */
static int load_added(dsq_tok *t, const cJSON *root, const char *what, dsq_err *err) {
    const cJSON *arr = dsq_json_get(root, "added_tokens");
    int rc;
    if (dsq_json_absent(arr)) return DSQ_OK;
    if (!cJSON_IsArray(arr)) return dsq_fail(err, DSQ_E_FORMAT, "%s: added_tokens: expected an array", what);
    size_t n = (size_t)cJSON_GetArraySize(arr);
    if (n > TOK_MAX_ADDED)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: added_tokens: %zu entries (limit %d)", what, n,
                        TOK_MAX_ADDED);
    t->added = dsq_calloc(n ? n : 1, sizeof *t->added);
    if (!t->added) return dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", what);
    for (int p = 0; p < 2; p++)
        for (int b = 0; b < 256; b++) t->root[p][b] = -1;
    const cJSON *it;
    size_t i = 0;
    cJSON_ArrayForEach(it, arr) {
        char path[64];
        snprintf(path, sizeof path, "added_tokens[%zu]", i);
        if (!cJSON_IsObject(it)) return dsq_fail(err, DSQ_E_FORMAT, "%s: %s: expected an object", what, path);
        const cJSON *c = dsq_json_get(it, "content");
        int64_t id;
        if (!cJSON_IsString(c))
            return dsq_fail(err, DSQ_E_FORMAT, "%s: %s.content: missing or not a string", what, path);
        if (!dsq_json_int(dsq_json_get(it, "id"), 0, TOK_MAX_ID - 1, &id))
            return dsq_fail(err, DSQ_E_FORMAT, "%s: %s.id: must be an integer in [0, %d)", what, path,
                            TOK_MAX_ID);
        int special, normalized, lstrip, rstrip, single_word;
        DSQ_TRY(jbool(it, "special", 0, &special, what, path, err));
        /* AddedToken's serde default is normalized = true */
        DSQ_TRY(jbool(it, "normalized", 1, &normalized, what, path, err));
        DSQ_TRY(jbool(it, "lstrip", 0, &lstrip, what, path, err));
        DSQ_TRY(jbool(it, "rstrip", 0, &rstrip, what, path, err));
        DSQ_TRY(jbool(it, "single_word", 0, &single_word, what, path, err));
        i++;
        size_t len = strlen(c->valuestring);
        if (!len) continue; /* the library ignores empty added tokens */
        long long off = strs_add(t, c->valuestring, len);
        if (off < 0) return dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", what);
        tok_added *a = &t->added[t->n_added];
        *a = (tok_added){(uint32_t)off, (uint32_t)len, (int32_t)id, (uint8_t)special,
                         (uint8_t)normalized, (uint8_t)lstrip, (uint8_t)rstrip, (uint8_t)single_word};
        if (trie_add(t, normalized, c->valuestring, len, (int32_t)t->n_added) < 0)
            return dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", what);
        t->has_added[normalized] = 1;
        if ((int32_t)id >= t->n_ids) t->n_ids = (int32_t)id + 1;
        t->n_added++;
    }
    return DSQ_OK;
fail:
    return rc;
}

/* ---- loading: regexes, normalizer, pre-tokenizer, decoder --------------- */

static int re_add(dsq_tok *t, const char *pat, size_t len, int literal, const char *what,
                  const char *path, int *idx, dsq_err *err) {
    int ec;
    PCRE2_SIZE eoff;
    if (t->n_re >= TOK_MAX_STEPS + 1)
        return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: %s: too many regexes", what, path);
    /* PCRE2_LITERAL allows neither UCP nor MULTILINE (nor needs them) */
    uint32_t opts = literal ? PCRE2_UTF | PCRE2_LITERAL : PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, len, opts, &ec, &eoff, NULL);
    if (!re) {
        PCRE2_UCHAR msg[160];
        if (pcre2_get_error_message(ec, msg, sizeof msg) < 0) snprintf((char *)msg, sizeof msg, "error %d", ec);
        if (ec == PCRE2_ERROR_NOMEMORY) return dsq_fail(err, DSQ_E_NOMEM, "%s: %s: out of memory", what, path);
        return dsq_fail(err, DSQ_E_FORMAT, "%s: %s: invalid regex at offset %zu: %s", what, path,
                        (size_t)eoff, (const char *)msg);
    }
    int k = t->n_re++;
    t->re[k] = re;
    /* The interpreter gives the same matches; JIT is only speed, so any JIT
     * failure (no JIT on this platform, no executable memory) falls back. */
    t->re_jit[k] = !(t->flags & DSQ_TOK_NO_JIT) && pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
    *idx = k;
    return DSQ_OK;
}

static int load_normalizer(const cJSON *n, const char *what, const char *path, int depth,
                           dsq_err *err) {
    if (dsq_json_absent(n)) return DSQ_OK;
    const char *ty = jtype(n);
    if (!ty) return dsq_fail(err, DSQ_E_FORMAT, "%s: %s: expected an object with a \"type\"", what, path);
    if (strcmp(ty, "Sequence"))
        return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: %s: normalizer type '%s' is not supported", what,
                        path, ty);
    const cJSON *arr = dsq_json_get(n, "normalizers");
    if (!cJSON_IsArray(arr))
        return dsq_fail(err, DSQ_E_FORMAT, "%s: %s.normalizers: expected an array", what, path);
    if (depth >= TOK_MAX_DEPTH) return dsq_fail(err, DSQ_E_FORMAT, "%s: %s: nested too deeply", what, path);
    const cJSON *it;
    int i = 0, rc;
    cJSON_ArrayForEach(it, arr) {
        char sub[256];
        snprintf(sub, sizeof sub, "%s.normalizers[%d]", path, i++);
        if (dsq_json_absent(it))
            return dsq_fail(err, DSQ_E_FORMAT, "%s: %s: expected an object with a \"type\"", what, sub);
        if ((rc = load_normalizer(it, what, sub, depth + 1, err)) < 0) return rc;
    }
    return DSQ_OK;
}

static int push_step(dsq_tok *t, tok_step s, const char *what, const char *path, dsq_err *err) {
    if (t->n_steps >= TOK_MAX_STEPS)
        return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: %s: more than %d pre-tokenizer steps", what, path,
                        TOK_MAX_STEPS);
    t->steps[t->n_steps++] = s;
    return DSQ_OK;
}

/* Flatten the pre-tokenizer into t->steps: nested Sequences disappear,
 * since a Sequence only applies its members one after the other to every
 * piece. */
static int load_pretok(dsq_tok *t, const cJSON *p, const char *what, const char *path, int depth,
                       dsq_err *err) {
    int rc;
    const char *ty = jtype(p);
    if (!ty) return dsq_fail(err, DSQ_E_FORMAT, "%s: %s: expected an object with a \"type\"", what, path);
    if (!strcmp(ty, "Sequence")) {
        const cJSON *arr = dsq_json_get(p, "pretokenizers");
        if (!cJSON_IsArray(arr))
            return dsq_fail(err, DSQ_E_FORMAT, "%s: %s.pretokenizers: expected an array", what, path);
        if (depth >= TOK_MAX_DEPTH)
            return dsq_fail(err, DSQ_E_FORMAT, "%s: %s: nested too deeply", what, path);
        const cJSON *it;
        int i = 0;
        cJSON_ArrayForEach(it, arr) {
            char sub[256];
            snprintf(sub, sizeof sub, "%s.pretokenizers[%d]", path, i++);
            DSQ_TRY(load_pretok(t, it, what, sub, depth + 1, err));
        }
        return DSQ_OK;
    }
    if (!strcmp(ty, "Split")) {
        tok_step s = {.kind = ST_SPLIT};
        const cJSON *pat = dsq_json_get(p, "pattern"), *re = dsq_json_get(pat, "Regex"), *lit = dsq_json_get(pat, "String");
        char sub[300];
        if (cJSON_IsString(re) == cJSON_IsString(lit))
            return dsq_fail(err, DSQ_E_FORMAT,
                            "%s: %s.pattern: expected {\"Regex\": \"...\"} or {\"String\": \"...\"}",
                            what, path);
        const cJSON *src = cJSON_IsString(re) ? re : lit;
        snprintf(sub, sizeof sub, "%s.pattern.%s", path, src == re ? "Regex" : "String");
        DSQ_TRY(re_add(t, src->valuestring, strlen(src->valuestring), src == lit, what, sub, &s.re, err));
        static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious",
                                            "MergedWithNext", "Contiguous"};
        const cJSON *b = dsq_json_get(p, "behavior");
        s.behavior = -1;
        for (int i = 0; i < 5 && cJSON_IsString(b); i++)
            if (!strcmp(b->valuestring, names[i])) s.behavior = i;
        if (s.behavior < 0)
            return dsq_fail(err, DSQ_E_FORMAT,
                            "%s: %s.behavior: expected Removed, Isolated, MergedWithPrevious, "
                            "MergedWithNext or Contiguous",
                            what, path);
        DSQ_TRY(jbool(p, "invert", 0, &s.invert, what, path, err));
        return push_step(t, s, what, path, err);
    }
    if (!strcmp(ty, "ByteLevel")) {
        tok_step s = {.kind = ST_BYTELEVEL, .re = -1, .behavior = SB_ISOLATED};
        int use_regex;
        /* serde defaults of the library's ByteLevel: both true */
        DSQ_TRY(jbool(p, "add_prefix_space", 1, &s.prefix_space, what, path, err));
        DSQ_TRY(jbool(p, "use_regex", 1, &use_regex, what, path, err));
        if (use_regex) {
            char sub[300];
            snprintf(sub, sizeof sub, "%s (GPT-2 regex)", path);
            DSQ_TRY(re_add(t, GPT2_REGEX, sizeof GPT2_REGEX - 1, 0, what, sub, &s.re, err));
        }
        return push_step(t, s, what, path, err);
    }
    return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: %s: pre-tokenizer type '%s' is not supported", what,
                    path, ty);
fail:
    return rc;
}

/* The decoder must be ByteLevel (alone or in a Sequence): decoding is done
 * from the per-id bytes built at load time, so nothing else is applied. */
static int load_decoder(const cJSON *d, const char *what, const char *path, int depth, int *n_bl,
                        dsq_err *err) {
    const char *ty = jtype(d);
    if (!ty) return dsq_fail(err, DSQ_E_FORMAT, "%s: %s: expected an object with a \"type\"", what, path);
    if (!strcmp(ty, "ByteLevel")) { (*n_bl)++; return DSQ_OK; }
    if (!strcmp(ty, "Sequence") && depth < TOK_MAX_DEPTH) {
        const cJSON *arr = dsq_json_get(d, "decoders"), *it;
        if (!cJSON_IsArray(arr))
            return dsq_fail(err, DSQ_E_FORMAT, "%s: %s.decoders: expected an array", what, path);
        int i = 0, rc;
        cJSON_ArrayForEach(it, arr) {
            char sub[256];
            snprintf(sub, sizeof sub, "%s.decoders[%d]", path, i++);
            if ((rc = load_decoder(it, what, sub, depth + 1, n_bl, err)) < 0) return rc;
        }
        return DSQ_OK;
    }
    return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: %s: decoder type '%s' is not supported (only ByteLevel)",
                    what, path, ty);
}

/* BOS from a TemplateProcessing post-processor whose single-sequence
 * template starts with a special token (the tiny models ship this).  Only a
 * default: tokenizer_config.json overrides it.  Anything unexpected is
 * ignored, since the post-processor does not change encode(). */
static void load_post(dsq_tok *t, const cJSON *pp) {
    if (!jtype(pp) || strcmp(jtype(pp), "TemplateProcessing")) return;
    const cJSON *single = dsq_json_get(pp, "single");
    const cJSON *first = cJSON_IsArray(single) ? cJSON_GetArrayItem(single, 0) : NULL;
    const cJSON *name = dsq_json_get(dsq_json_get(first, "SpecialToken"), "id");
    if (!cJSON_IsString(name)) return;
    const cJSON *ids = dsq_json_get(dsq_json_get(dsq_json_get(pp, "special_tokens"), name->valuestring), "ids");
    int64_t id;
    if (cJSON_IsArray(ids) && cJSON_GetArraySize(ids) == 1 && dsq_json_int(cJSON_GetArrayItem(ids, 0), 0, t->n_ids - 1, &id)) {
        t->bos_id = (int32_t)id;
        t->add_bos = 1;
    }
}

/* Decoded bytes of every id: vocab keys first, then added tokens (which the
 * library's id_to_token prefers). */
static int build_id_table(dsq_tok *t, const char *what, dsq_err *err) {
    size_t n = (size_t)t->n_ids;
    t->id_off = dsq_malloc((n ? n : 1) * sizeof *t->id_off);
    t->id_len = dsq_calloc(n ? n : 1, sizeof *t->id_len);
    if (!t->id_off || !t->id_len) return dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", what);
    memset(t->id_off, 0xFF, (n ? n : 1) * sizeof *t->id_off);
    for (size_t i = 0; i < t->n_keys; i++) {
        const tok_key *k = &t->keys[i];
        if (t->id_off[k->id] != UINT32_MAX) continue; /* same id twice: first key decodes */
        t->id_off[k->id] = k->raw_off;
        t->id_len[k->id] = k->raw_len;
    }
    char *buf = NULL;
    for (size_t i = 0; i < t->n_added; i++) {
        const tok_added *a = &t->added[i];
        char *p = dsq_realloc(buf, a->len + 1);
        if (!p) { free(buf); return dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", what); }
        buf = p;
        long rn = bl_to_raw(t, t->strs + a->off, a->len, buf);
        if (rn < 0) {
            t->id_off[a->id] = a->off;
            t->id_len[a->id] = a->len;
        } else {
            long long off = strs_add(t, buf, (size_t)rn);
            if (off < 0) { free(buf); return dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", what); }
            t->id_off[a->id] = (uint32_t)off;
            t->id_len[a->id] = (uint32_t)rn;
        }
    }
    free(buf);
    return DSQ_OK;
}

int dsq_tok_new_from_json_ex(dsq_tok **out, const char *json, size_t len, const char *what,
                             unsigned flags, dsq_err *err) {
    int rc;
    cJSON *root = NULL;
    dsq_tok *t = NULL;
    *out = NULL;
    if (!what) what = "tokenizer.json";
    long at;
    root = dsq_json_parse(json, len, &at);
    if (!root) return dsq_fail(err, DSQ_E_FORMAT, "%s: invalid JSON near byte %ld (%s)", what, at < 0 ? 0 : at, dsq_json_why());
    if (!cJSON_IsObject(root)) {
        rc = dsq_fail(err, DSQ_E_FORMAT, "%s: top level is not a JSON object", what);
        goto fail;
    }
    t = dsq_calloc(1, sizeof *t);
    if (!t) { rc = dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", what); goto fail; }
    t->flags = flags;
    t->bos_id = t->eos_id = -1;
    t->re_word = -1;
    bl_tables(t->b2u, t->u2b);
    for (int p = 0; p < 2; p++)
        for (int b = 0; b < 256; b++) t->root[p][b] = -1;

    DSQ_TRY(load_model(t, root, what, err));
    DSQ_TRY(load_added(t, root, what, err));
    DSQ_TRY(load_normalizer(dsq_json_get(root, "normalizer"), what, "normalizer", 0, err));

    const cJSON *pt = dsq_json_get(root, "pre_tokenizer");
    if (!dsq_json_absent(pt)) DSQ_TRY(load_pretok(t, pt, what, "pre_tokenizer", 0, err));
    /* The byte alphabet is applied by ByteLevel as a last rewriting of the
     * pieces; with any other layout the vocabulary would be looked up in a
     * different alphabet, which this reader does not do. */
    int n_bl = 0;
    for (int i = 0; i < t->n_steps; i++) n_bl += t->steps[i].kind == ST_BYTELEVEL;
    if (n_bl != 1 || t->steps[t->n_steps - 1].kind != ST_BYTELEVEL) {
        rc = dsq_fail(err, DSQ_E_UNSUPPORTED,
                      "%s: pre_tokenizer: expected exactly one ByteLevel step, as the last step "
                      "(only byte-level BPE is supported)",
                      what);
        goto fail;
    }
    const cJSON *dec = dsq_json_get(root, "decoder");
    if (dsq_json_absent(dec)) {
        rc = dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: decoder: missing (only ByteLevel is supported)", what);
        goto fail;
    }
    n_bl = 0;
    DSQ_TRY(load_decoder(dec, what, "decoder", 0, &n_bl, err));
    if (n_bl != 1) {
        rc = dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: decoder: expected one ByteLevel decoder", what);
        goto fail;
    }
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].single_word && t->re_word < 0) {
            /* the library tests `\w` next to the match with Rust's Unicode \w */
            DSQ_TRY(re_add(t, "\\w", 2, 0, what, "added_tokens (single_word)", &t->re_word, err));
        }

    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        int32_t k = smap_find(t, &t->raw_map, 1, &c, 1, -1);
        t->byte_id[b] = k < 0 ? -1 : t->keys[k].id;
    }
    DSQ_TRY(build_id_table(t, what, err));
    load_post(t, dsq_json_get(root, "post_processor"));

    t->sh = dsq_calloc(1, sizeof *t->sh);
    if (!t->sh || pthread_mutex_init(&t->sh->lock, NULL) != 0) {
        free(t->sh);
        t->sh = NULL;
        rc = dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", what);
        goto fail;
    }
    cJSON_Delete(root);
    *out = t;
    return DSQ_OK;
fail:
    cJSON_Delete(root);
    dsq_tok_free(t);
    return rc;
}

int dsq_tok_new_from_json(dsq_tok **out, const char *json, size_t len, const char *what,
                          dsq_err *err) {
    return dsq_tok_new_from_json_ex(out, json, len, what, 0, err);
}

static void state_free(struct enc_state *st);

void dsq_tok_free(dsq_tok *t) {
    if (!t) return;
    if (t->sh) {
        state_free(t->sh->st);
        pthread_mutex_destroy(&t->sh->lock);
        free(t->sh);
    }
    for (int i = 0; i < t->n_re; i++) pcre2_code_free(t->re[i]);
    free(t->strs);
    free(t->keys);
    smap_free(&t->orig_map);
    smap_free(&t->raw_map);
    free(t->mrg);
    free(t->id_off);
    free(t->id_len);
    free(t->added);
    free(t->nodes);
    free(t);
}

/* ---- tokenizer_config.json ---------------------------------------------- */

/* Id of a token named in the config: added tokens first, then the vocab. */
static int32_t token_by_content(const dsq_tok *t, const char *s, size_t n) {
    for (size_t i = t->n_added; i-- > 0;)
        if (t->added[i].len == n && !memcmp(t->strs + t->added[i].off, s, n)) return t->added[i].id;
    return vocab_id(t, s, n);
}

static int config_token(dsq_tok *t, const cJSON *root, const char *key, int32_t *id,
                        const char *what, dsq_err *err) {
    const cJSON *v = dsq_json_get(root, key);
    char tmp[64];
    if (!v) return DSQ_OK;
    if (cJSON_IsNull(v)) { *id = -1; return DSQ_OK; }
    const cJSON *c = cJSON_IsObject(v) ? dsq_json_get(v, "content") : v;
    if (!cJSON_IsString(c))
        return dsq_fail(err, DSQ_E_FORMAT, "%s: %s: expected a string or an object with \"content\"",
                        what, key);
    size_t n = strlen(c->valuestring);
    int32_t k = token_by_content(t, c->valuestring, n);
    if (k < 0)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: %s: '%s' is not a token of the tokenizer", what, key,
                        clip(c->valuestring, n, tmp));
    *id = k;
    return DSQ_OK;
}

int dsq_tok_set_config(dsq_tok *t, const char *json, size_t len, const char *what, dsq_err *err) {
    int rc;
    long at;
    if (!what) what = "tokenizer_config.json";
    cJSON *root = dsq_json_parse(json, len, &at);
    if (!root) return dsq_fail(err, DSQ_E_FORMAT, "%s: invalid JSON near byte %ld (%s)", what, at < 0 ? 0 : at, dsq_json_why());
    int32_t bos = t->bos_id, eos = t->eos_id;
    int add_bos = t->add_bos;
    if (!cJSON_IsObject(root)) {
        rc = dsq_fail(err, DSQ_E_FORMAT, "%s: top level is not a JSON object", what);
        goto fail;
    }
    DSQ_TRY(config_token(t, root, "bos_token", &bos, what, err));
    DSQ_TRY(config_token(t, root, "eos_token", &eos, what, err));
    DSQ_TRY(jbool(root, "add_bos_token", add_bos, &add_bos, what, "", err));
    /* all or nothing: a bad file leaves the handle as it was */
    t->bos_id = bos;
    t->eos_id = eos;
    t->add_bos = add_bos;
    rc = DSQ_OK;
fail:
    cJSON_Delete(root);
    return rc;
}

int32_t dsq_tok_bos_id(const dsq_tok *t) { return t->bos_id; }
int32_t dsq_tok_eos_id(const dsq_tok *t) { return t->eos_id; }
int dsq_tok_add_bos(const dsq_tok *t) { return t->add_bos && t->bos_id >= 0; }
int32_t dsq_tok_vocab_size(const dsq_tok *t) { return t->n_ids; }

int dsq_tok_uses_jit(const dsq_tok *t) {
    for (int i = 0; i < t->n_re; i++)
        if (!t->re_jit[i]) return 0;
    return t->n_re > 0;
}

const char *dsq_tok_token_bytes(const dsq_tok *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_ids || t->id_off[id] == UINT32_MAX) return NULL;
    if (len) *len = t->id_len[id];
    return t->strs + t->id_off[id];
}

/* ==== encoding =========================================================== */

typedef struct bsym {
    int32_t id;         /* -1 once merged into its left neighbour */
    int32_t prev, next; /* linked list over the word's symbols     */
} bsym;

typedef struct bheap {
    uint32_t rank;
    int32_t pos; /* index of the left symbol of the pair */
    int32_t id;  /* token the pair merges into           */
} bheap;

typedef struct cslot {
    uint64_t h; /* 0 = empty */
    uint32_t koff, ioff;
    uint16_t klen, nids;
} cslot;

/* Scratch of one encoding thread.  Everything grows on demand and is kept
 * for the next call. */
typedef struct enc_state {
    pcre2_match_data *md[TOK_MAX_STEPS + 1];
    pcre2_match_context *mctx;
    pcre2_jit_stack *jstack;
    char *pbuf; /* a piece with the ByteLevel prefix space */
    size_t pcap;
    bsym *sym;
    size_t sym_cap;
    bheap *heap;
    size_t heap_cap;
    /* word cache: raw bytes of a pre-token -> its ids */
    cslot *slots;
    char *ckey;
    size_t ckey_len, ckey_cap;
    int32_t *cids;
    size_t cids_len, cids_cap;
    size_t c_entries;
} enc_state;

typedef struct enc {
    const dsq_tok *t;
    enc_state *st;
    int32_t *out; /* result, handed to the caller. From malloc(). */
    size_t n, cap;
    dsq_err *err;
} enc;

static void state_free(enc_state *st) {
    if (!st) return;
    for (int i = 0; i < TOK_MAX_STEPS + 1; i++) pcre2_match_data_free(st->md[i]);
    pcre2_match_context_free(st->mctx);
    pcre2_jit_stack_free(st->jstack);
    free(st->pbuf);
    free(st->sym);
    free(st->heap);
    free(st->slots);
    free(st->ckey);
    free(st->cids);
    free(st);
}

/* Match data is per thread (PCRE2 writes the ovector into it), which is
 * why it lives here and not in the read-only dsq_tok. */
static enc_state *state_new(const dsq_tok *t) {
    enc_state *st = dsq_calloc(1, sizeof *st);
    if (!st) return NULL;
    for (int i = 0; i < t->n_re; i++) {
        st->md[i] = pcre2_match_data_create_from_pattern(t->re[i], NULL);
        if (!st->md[i]) goto fail;
    }
    st->mctx = pcre2_match_context_create(NULL);
    if (!st->mctx) goto fail;
    int any_jit = 0;
    for (int i = 0; i < t->n_re; i++) any_jit |= t->re_jit[i];
    if (any_jit) {
        st->jstack = pcre2_jit_stack_create(32 * 1024, TOK_JIT_STACK, NULL);
        if (st->jstack) pcre2_jit_stack_assign(st->mctx, NULL, st->jstack);
    }
    return st;
fail:
    state_free(st);
    return NULL;
}

/* Grow *p to hold at least `need` elements (by half again, so appends are
 * amortised O(1)); -1 on allocation failure with *p untouched. */
static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) c += c / 2 + 16;
    void *q = dsq_realloc(*p, c * elem);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

static inline int emit(enc *e, int32_t id) {
    if (e->n == e->cap && grow((void **)&e->out, &e->cap, e->n + 1, sizeof *e->out) < 0)
        return dsq_fail(e->err, DSQ_E_NOMEM, "tokenize: out of memory");
    e->out[e->n++] = id;
    return DSQ_OK;
}

/* ---- word cache --------------------------------------------------------- */

static const cslot *cache_get(const enc_state *st, const char *w, size_t n, uint64_t h) {
    if (!st->slots) return NULL;
    size_t i = (size_t)h & (CACHE_SLOTS - 1);
    for (;;) {
        const cslot *s = &st->slots[i];
        if (!s->h) return NULL;
        if (s->h == h && s->klen == n && !memcmp(st->ckey + s->koff, w, n)) return s;
        i = (i + 1) & (CACHE_SLOTS - 1);
    }
}

/* Remember ids of a word.  Failing to allocate only means no caching. */
static void cache_put(enc_state *st, const char *w, size_t n, uint64_t h, const int32_t *ids,
                      size_t nids) {
    /* An empty piece (a regex that matches "") has nothing worth keeping, and
     * ckey / cids may still be NULL, where even a 0-byte copy is undefined. */
    if (n == 0 || nids == 0 || nids > 0xFFFF) return;
    if (!st->slots) {
        st->slots = dsq_calloc(CACHE_SLOTS, sizeof *st->slots);
        if (!st->slots) return;
    }
    if (st->c_entries >= CACHE_MAX_ENTRIES) {
        /* bounded: start over rather than track ages */
        memset(st->slots, 0, CACHE_SLOTS * sizeof *st->slots);
        st->c_entries = st->ckey_len = st->cids_len = 0;
    }
    if (grow((void **)&st->ckey, &st->ckey_cap, st->ckey_len + n, 1) < 0) return;
    if (grow((void **)&st->cids, &st->cids_cap, st->cids_len + nids, sizeof *st->cids) < 0) return;
    size_t i = (size_t)h & (CACHE_SLOTS - 1);
    while (st->slots[i].h) i = (i + 1) & (CACHE_SLOTS - 1);
    cslot *s = &st->slots[i];
    s->h = h;
    s->koff = (uint32_t)st->ckey_len;
    s->klen = (uint16_t)n;
    s->ioff = (uint32_t)st->cids_len;
    s->nids = (uint16_t)nids;
    memcpy(st->ckey + st->ckey_len, w, n);
    memcpy(st->cids + st->cids_len, ids, nids * sizeof *ids);
    st->ckey_len += n;
    st->cids_len += nids;
    st->c_entries++;
}

/* ---- BPE ---------------------------------------------------------------- */

static inline int heap_less(const bheap *a, const bheap *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(bheap *h, size_t *n, bheap v) {
    size_t i = (*n)++;
    while (i) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&v, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static bheap heap_pop(bheap *h, size_t *n) {
    bheap top = h[0], last = h[--(*n)];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && heap_less(&h[c + 1], &h[c])) c++;
        if (!heap_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (m) h[i] = last;
    return top;
}

/* BPE one pre-token of raw bytes and append its ids (BPE::merge_word and
 * Word::merge_all of the library). */
static int bpe_word(enc *e, const char *w, size_t n) {
    const dsq_tok *t = e->t;
    enc_state *st = e->st;
    if (grow((void **)&st->sym, &st->sym_cap, n, sizeof *st->sym) < 0 ||
        grow((void **)&st->heap, &st->heap_cap, 3 * n + 1, sizeof *st->heap) < 0)
        return dsq_fail(e->err, DSQ_E_NOMEM, "tokenize: out of memory");
    bsym *s = st->sym;
    size_t ns = 0;
    int prev_unk = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[(unsigned char)w[i]];
        if (id < 0) {
            /* a byte without a token: unk (fused if asked), else dropped,
             * as the library does */
            if (t->unk_id < 0) continue;
            if (t->fuse_unk && prev_unk) continue;
            id = t->unk_id;
            prev_unk = 1;
        } else {
            prev_unk = 0;
        }
        s[ns] = (bsym){id, (int32_t)ns - 1, (int32_t)ns + 1};
        ns++;
    }
    if (!ns) return DSQ_OK;
    s[ns - 1].next = -1;

    /* every adjacent pair that has a merge, keyed by (rank, position) so the
     * lowest rank merges first and ties go to the leftmost pair */
    bheap *h = st->heap;
    size_t nh = 0;
    for (size_t i = 0; i + 1 < ns; i++) {
        const mrg_ent *m = mrg_find(t, s[i].id, s[i + 1].id);
        if (m) heap_push(h, &nh, (bheap){m->rank, (int32_t)i, m->id});
    }
    while (nh) {
        bheap top = heap_pop(h, &nh);
        bsym *a = &s[top.pos];
        if (a->id < 0 || a->next < 0) continue;
        bsym *b = &s[a->next];
        const mrg_ent *m = mrg_find(t, a->id, b->id);
        if (!m || m->id != top.id) continue; /* stale: a neighbour changed */
        /* merge b into a, then offer the two new pairs around a */
        a->id = top.id;
        b->id = -1;
        a->next = b->next;
        if (a->next >= 0) s[a->next].prev = top.pos;
        if (a->prev >= 0) {
            m = mrg_find(t, s[a->prev].id, a->id);
            if (m) heap_push(h, &nh, (bheap){m->rank, a->prev, m->id});
        }
        if (a->next >= 0) {
            m = mrg_find(t, a->id, s[a->next].id);
            if (m) heap_push(h, &nh, (bheap){m->rank, top.pos, m->id});
        }
    }
    for (int32_t i = 0; i >= 0; i = s[i].next) {
        int rc = emit(e, s[i].id);
        if (rc < 0) return rc;
    }
    return DSQ_OK;
}

/* One pre-token: ignore_merges lookup, cache, BPE. */
static int emit_word(enc *e, const char *w, size_t n) {
    const dsq_tok *t = e->t;
    if (n == 1 && t->byte_id[(unsigned char)w[0]] >= 0) return emit(e, t->byte_id[(unsigned char)w[0]]);
    if (t->ignore_merges) {
        int32_t k = smap_find(t, &t->raw_map, 1, w, n, -1);
        if (k >= 0) return emit(e, t->keys[k].id);
    }
    /* long pre-tokens are rare and would crowd the cache out */
    if (n > CACHE_MAX_WORD) return bpe_word(e, w, n);
    uint64_t h = hash_bytes(w, n) | 1;
    const cslot *c = cache_get(e->st, w, n, h);
    if (c) {
        if (grow((void **)&e->out, &e->cap, e->n + c->nids, sizeof *e->out) < 0)
            return dsq_fail(e->err, DSQ_E_NOMEM, "tokenize: out of memory");
        memcpy(e->out + e->n, e->st->cids + c->ioff, c->nids * sizeof *e->out);
        e->n += c->nids;
        return DSQ_OK;
    }
    size_t n0 = e->n;
    int rc = bpe_word(e, w, n);
    if (rc < 0) return rc;
    cache_put(e->st, w, n, h, e->out + n0, e->n - n0);
    return DSQ_OK;
}

/* ---- pre-tokenizer ------------------------------------------------------ */

static int run_step(enc *e, int k, const char *p, size_t n);

/* Run regex `re` from byte `pos` of subject p[0..n).  The subject is valid
 * UTF-8 (checked once per segment), so no per-call UTF check is needed. */
static int re_match(enc *e, int re, const char *p, size_t n, size_t pos, uint32_t opts) {
    const dsq_tok *t = e->t;
    if (t->re_jit[re])
        return pcre2_jit_match(t->re[re], (PCRE2_SPTR)p, n, pos, opts, e->st->md[re], e->st->mctx);
    return pcre2_match(t->re[re], (PCRE2_SPTR)p, n, pos, opts | PCRE2_NO_UTF_CHECK, e->st->md[re],
                       e->st->mctx);
}

static int re_fail(enc *e, int rc) {
    PCRE2_UCHAR msg[160];
    if (pcre2_get_error_message(rc, msg, sizeof msg) < 0) snprintf((char *)msg, sizeof msg, "error %d", rc);
    return dsq_fail(e->err, rc == PCRE2_ERROR_NOMEMORY ? DSQ_E_NOMEM : DSQ_E_UNSUPPORTED,
                    "tokenize: pre-tokenizer regex failed: %s", (const char *)msg);
}

/* Pieces of one Split step, folded by the delimiter behaviour the way
 * NormalizedString::split does, with one piece held back. */
typedef struct split_acc {
    int beh;
    int have;       /* a piece is held                                   */
    size_t s, e;    /* the held piece                                    */
    int prev_match; /* previous raw piece was a match (Contiguous, MergedWithPrevious) */
    int lone_match; /* held piece is one unmerged match (MergedWithNext) */
} split_acc;

static int acc_flush(enc *e, int k, const char *p, split_acc *a) {
    int rc = DSQ_OK;
    if (a->have && a->e > a->s) rc = run_step(e, k + 1, p + a->s, a->e - a->s);
    a->have = 0;
    return rc;
}

static int acc_feed(enc *e, int k, const char *p, split_acc *a, size_t s, size_t en, int is_match) {
    int rc = DSQ_OK, merge = 0;
    switch (a->beh) {
    case SB_ISOLATED:
        return en > s ? run_step(e, k + 1, p + s, en - s) : DSQ_OK;
    case SB_REMOVED:
        return !is_match && en > s ? run_step(e, k + 1, p + s, en - s) : DSQ_OK;
    case SB_CONTIGUOUS:
        merge = a->have && is_match == a->prev_match;
        a->prev_match = is_match;
        break;
    case SB_MERGED_PREV:
        merge = a->have && is_match && !a->prev_match;
        a->prev_match = is_match;
        break;
    case SB_MERGED_NEXT:
        /* the library folds from the right: a match joins the piece after
         * it when that piece is not a match */
        merge = a->have && a->lone_match && !is_match;
        a->lone_match = merge ? 0 : is_match;
        break;
    }
    if (merge) {
        a->e = en;
        return DSQ_OK;
    }
    if ((rc = acc_flush(e, k, p, a)) < 0) return rc;
    a->have = 1;
    a->s = s;
    a->e = en;
    return DSQ_OK;
}

static int split_piece(enc *e, int k, const char *p, size_t n, int re, int beh, int invert) {
    pcre2_match_data *md = e->st->md[re];
    const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    split_acc a = {.beh = beh};
    size_t pos = 0, prev = 0, last_end = SIZE_MAX;
    int rc;
    /* PCRE2 stops a match after 10M backtracking steps by default; a long
     * run of spaces costs one step per character for `\s*[\r\n]+`, so the
     * budget grows with the piece instead of failing on long input. */
    uint64_t lim = 10000000u + 64u * (uint64_t)n;
    pcre2_set_match_limit(e->st->mctx, lim > UINT32_MAX ? UINT32_MAX : (uint32_t)lim);
    while (pos <= n) {
        int m = re_match(e, re, p, n, pos, 0);
        if (m == PCRE2_ERROR_NOMATCH) break;
        if (m < 0) return re_fail(e, m);
        size_t s = ov[0], en = ov[1];
        if (s == en && en == last_end) {
            /* rust-onig's find_iter: skip an empty match that touches the
             * previous match, one character on */
            uint32_t cp;
            size_t cl = en < n ? u8_decode((const unsigned char *)p + en, n - en, &cp) : 1;
            pos = en + (cl ? cl : 1);
            continue;
        }
        pos = last_end = en;
        if (s > prev && (rc = acc_feed(e, k, p, &a, prev, s, invert)) < 0) return rc;
        if ((rc = acc_feed(e, k, p, &a, s, en, !invert)) < 0) return rc;
        prev = en;
    }
    if (prev < n && (rc = acc_feed(e, k, p, &a, prev, n, invert)) < 0) return rc;
    return acc_flush(e, k, p, &a);
}

/* Step k of the pre-tokenizer on one piece; past the last step, BPE. */
static int run_step(enc *e, int k, const char *p, size_t n) {
    const dsq_tok *t = e->t;
    if (n == 0) return DSQ_OK;
    if (k == t->n_steps) return emit_word(e, p, n);
    const tok_step *s = &t->steps[k];
    if (s->kind == ST_BYTELEVEL) {
        if (s->prefix_space && p[0] != ' ') {
            /* ByteLevel is the last step, so nothing below reuses pbuf */
            if (grow((void **)&e->st->pbuf, &e->st->pcap, n + 1, 1) < 0)
                return dsq_fail(e->err, DSQ_E_NOMEM, "tokenize: out of memory");
            e->st->pbuf[0] = ' ';
            memcpy(e->st->pbuf + 1, p, n);
            p = e->st->pbuf;
            n++;
        }
        if (s->re < 0) return run_step(e, k + 1, p, n);
    }
    return split_piece(e, k, p, n, s->re, s->behavior, s->invert);
}

/* A piece between added tokens.  The library only takes valid UTF-8; here
 * invalid bytes are split off and BPE-encoded as bytes of their own, which
 * keeps the regexes on valid input and every input round-trippable. */
static int pretok_segment(enc *e, const char *p, size_t n) {
    int rc;
    while (n) {
        size_t v = u8_valid_prefix((const unsigned char *)p, n);
        if (v && (rc = run_step(e, 0, p, v)) < 0) return rc;
        p += v;
        n -= v;
        if (!n) break;
        size_t iv = u8_invalid_prefix((const unsigned char *)p, n);
        if ((rc = emit_word(e, p, iv)) < 0) return rc;
        p += iv;
        n -= iv;
    }
    return DSQ_OK;
}

/* ---- added tokens ------------------------------------------------------- */

/* Longest added token of `pass` starting at p; its index in *added, length
 * returned (0 if none). */
static size_t trie_match(const dsq_tok *t, int pass, const char *p, size_t n, int32_t *added) {
    int32_t node = t->root[pass][(unsigned char)p[0]];
    size_t best = 0;
    for (size_t i = 0; node >= 0;) {
        if (t->nodes[node].added >= 0) {
            best = i + 1;
            *added = t->nodes[node].added;
        }
        if (++i >= n) break;
        unsigned char c = (unsigned char)p[i];
        node = t->nodes[node].child;
        while (node >= 0 && t->nodes[node].byte != c) node = t->nodes[node].sibling;
    }
    return best;
}

/* Does the character at p[0..n) (one valid character) match `\w`? */
static int is_word_char(enc *e, const char *p, size_t n) {
    /* the subject is that one character, so no anchoring is needed */
    return re_match(e, e->t->re_word, p, n, 0, 0) >= 0;
}

/* single_word: the library's regexes \w$ before and ^\w after the match. */
static int single_word_ok(enc *e, const char *p, size_t n, size_t ms, size_t me) {
    uint32_t cp;
    if (ms > 0) {
        size_t b = ms - 1;
        while (b > 0 && ((unsigned char)p[b] & 0xC0) == 0x80 && ms - b < 4) b--;
        size_t cl = u8_decode((const unsigned char *)p + b, ms - b, &cp);
        if (cl == ms - b && is_word_char(e, p + b, cl)) return 0;
    }
    if (me < n) {
        size_t cl = u8_decode((const unsigned char *)p + me, n - me, &cp);
        if (cl && is_word_char(e, p + me, cl)) return 0;
    }
    return 1;
}

/* Start of the run of whitespace characters that ends at `end`, not before
 * `lo`. */
static size_t space_run_before(const char *p, size_t lo, size_t end) {
    uint32_t cp;
    while (end > lo) {
        size_t b = end - 1;
        while (b > lo && ((unsigned char)p[b] & 0xC0) == 0x80 && end - b < 4) b--;
        size_t cl = u8_decode((const unsigned char *)p + b, end - b, &cp);
        if (cl != end - b || !is_uspace(cp)) break;
        end = b;
    }
    return end;
}

static size_t space_run_after(const char *p, size_t n, size_t i) {
    uint32_t cp;
    while (i < n) {
        size_t cl = u8_decode((const unsigned char *)p + i, n - i, &cp);
        if (!cl || !is_uspace(cp)) break;
        i += cl;
    }
    return i;
}

/* Pass 0 cuts tokens with normalized=false out of the raw text, pass 1 the
 * normalized ones out of what is left (the normalizer being the identity);
 * the rest goes to the pre-tokenizer. */
static int added_pass(enc *e, int pass, const char *p, size_t n) {
    const dsq_tok *t = e->t;
    int rc;
    if (!t->has_added[pass]) return pass == 0 ? added_pass(e, 1, p, n) : pretok_segment(e, p, n);
    /* seg: start of the text not yet handed on; i: where to look next */
    size_t i = 0, seg = 0;
    while (i < n) {
        int32_t ai;
        size_t len = t->root[pass][(unsigned char)p[i]] >= 0 ? trie_match(t, pass, p + i, n - i, &ai) : 0;
        if (!len) { i++; continue; }
        const tok_added *a = &t->added[ai];
        size_t ms = i, me = i + len;
        /* a rejected match still consumes its bytes, as the automaton's
         * iterator does */
        if (a->single_word && !single_word_ok(e, p, n, ms, me)) { i = me; continue; }
        if (a->lstrip) ms = space_run_before(p, seg, ms);
        if (a->rstrip) me = space_run_after(p, n, me);
        if (ms > seg) {
            rc = pass == 0 ? added_pass(e, 1, p + seg, ms - seg) : pretok_segment(e, p + seg, ms - seg);
            if (rc < 0) return rc;
        }
        if ((rc = emit(e, a->id)) < 0) return rc;
        seg = i = me;
    }
    if (seg < n) return pass == 0 ? added_pass(e, 1, p + seg, n - seg) : pretok_segment(e, p + seg, n - seg);
    return DSQ_OK;
}

int dsq_tok_encode(const dsq_tok *t, const char *text, size_t len, int32_t **ids, size_t *n,
                   dsq_err *err) {
    int rc;
    enc e = {.t = t, .err = err};
    int locked = 0;
    *ids = NULL;
    *n = 0;
    if (!text && len) return dsq_fail(err, DSQ_E_ARG, "tokenize: NULL text");
    /* The handle's scratch and cache if no other thread holds them, else a
     * private set for this call. */
    if (pthread_mutex_trylock(&t->sh->lock) == 0) {
        locked = 1;
        if (!t->sh->st) t->sh->st = state_new(t);
        e.st = t->sh->st;
    } else {
        e.st = state_new(t);
    }
    if (!e.st) { rc = dsq_fail(err, DSQ_E_NOMEM, "tokenize: out of memory"); goto fail; }
    if (grow((void **)&e.out, &e.cap, len / 4 + 16, sizeof *e.out) < 0) {
        rc = dsq_fail(err, DSQ_E_NOMEM, "tokenize: out of memory");
        goto fail;
    }
    DSQ_TRY(added_pass(&e, 0, text, len));
    *ids = e.out;
    *n = e.n;
    e.out = NULL;
    rc = DSQ_OK;
fail:
    free(e.out);
    if (locked) pthread_mutex_unlock(&t->sh->lock);
    else state_free(e.st);
    return rc;
}

/* ==== decoding =========================================================== */

/* Two passes: validate every id and size the output, then copy; a bad id
 * anywhere leaves nothing allocated. */
int dsq_tok_decode(const dsq_tok *t, const int32_t *ids, size_t n, char **text, size_t *len,
                   dsq_err *err) {
    *text = NULL;
    if (len) *len = 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_ids || t->id_off[id] == UINT32_MAX)
            return dsq_fail(err, DSQ_E_FORMAT, "token %zu: id %ld is not in the vocabulary (size %ld)", i,
                            (long)id, (long)t->n_ids);
        total += t->id_len[id];
    }
    char *out = dsq_malloc(total + 1);
    if (!out) return dsq_fail(err, DSQ_E_NOMEM, "decode: out of memory (%zu bytes)", total + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(out + o, t->strs + t->id_off[ids[i]], t->id_len[ids[i]]);
        o += t->id_len[ids[i]];
    }
    out[o] = 0;
    *text = out;
    if (len) *len = o;
    return DSQ_OK;
}

/* ==== token files ======================================================== */

static size_t skip_ws(const char *b, size_t i, size_t n) {
    while (i < n && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r')) i++;
    return i;
}

/* A hand-written reader instead of cJSON: a token file of 100 M ids would
 * need gigabytes as a cJSON tree. */
/* The plain form `dsq tokenize` prints: decimal ids (0 .. INT32_MAX, no
 * sign, no leading zeros) separated by white space. */
static int parse_plain_ids(const char *b, size_t n, size_t i, const char *what, int32_t **ids, size_t *count,
                           dsq_err *err) {
    size_t cnt = 0, cap = 0;
    int32_t *out = NULL;
    while (i < n) {
        size_t st = i;
        long long v = 0;
        while (i < n && b[i] >= '0' && b[i] <= '9' && v <= INT32_MAX) v = v * 10 + (b[i++] - '0');
        if (i == st || (b[st] == '0' && i - st > 1) || v > INT32_MAX || (i < n && skip_ws(b, i, n) == i)) {
            free(out);
            return dsq_fail(err, DSQ_E_FORMAT, "%s: id %zu (byte %zu) is not a token id (a JSON array, or ids "
                            "separated by white space)", what, cnt, st);
        }
        if (cnt == cap) {
            size_t nc = cap ? cap * 2 : 1024;
            int32_t *p = dsq_realloc(out, sizeof *p * nc);
            if (!p) {
                free(out);
                return dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", what);
            }
            out = p;
            cap = nc;
        }
        out[cnt++] = (int32_t)v;
        i = skip_ws(b, i, n);
    }
    *ids = out;
    *count = cnt;
    return DSQ_OK;
}

int dsq_tokens_parse_json(const char *b, size_t n, const char *what, int32_t **ids, size_t *count,
                          dsq_err *err) {
    int32_t *out = NULL;
    size_t cnt = 0, cap = 0, i;
    int rc;
    *ids = NULL;
    *count = 0;
    i = skip_ws(b, 0, n);
    if (i < n && b[i] >= '0' && b[i] <= '9') return parse_plain_ids(b, n, i, what, ids, count, err);
    if (i >= n || b[i] != '[') {
        rc = dsq_fail(err, DSQ_E_FORMAT, "%s: expected a JSON array of token ids at byte %zu", what, i);
        goto fail;
    }
    i = skip_ws(b, i + 1, n);
    if (i < n && b[i] == ']') {
        i++;
    } else {
        for (;;) {
            size_t st = i;
            /* JSON number grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
            size_t j = i;
            int neg = 0, frac = 0;
            if (j < n && b[j] == '-') { neg = 1; j++; }
            size_t d0 = j;
            while (j < n && b[j] >= '0' && b[j] <= '9') j++;
            int ok = j > d0 && !(b[d0] == '0' && j - d0 > 1);
            if (ok && j < n && b[j] == '.') {
                size_t f0 = ++j;
                while (j < n && b[j] >= '0' && b[j] <= '9') j++;
                ok = j > f0;
                frac = 1;
            }
            if (ok && j < n && (b[j] == 'e' || b[j] == 'E')) {
                j++;
                if (j < n && (b[j] == '+' || b[j] == '-')) j++;
                size_t e0 = j;
                while (j < n && b[j] >= '0' && b[j] <= '9') j++;
                ok = j > e0;
                frac = 1;
            }
            if (!ok) {
                rc = dsq_fail(err, DSQ_E_FORMAT, "%s: element %zu (byte %zu) is not an integer", what,
                              cnt, st);
                goto fail;
            }
            long long v = 0;
            int range = 1;
            if (!frac) {
                for (size_t k = d0; k < j && range; k++) {
                    v = v * 10 + (b[k] - '0');
                    if (v > (long long)INT32_MAX + 1) range = 0;
                }
                if (neg) v = -v;
            } else {
                /* 3.0 or 1e2 are integers; 2.5 is not.  The whole number
                 * goes to strtod: cut short, "0.000...05e63" would read as 0 */
                char tmp[64], *num = tmp;
                size_t l = j - st;
                if (l >= sizeof tmp && !(num = dsq_malloc(l + 1))) {
                    rc = dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", what);
                    goto fail;
                }
                memcpy(num, b + st, l);
                num[l] = 0;
                double d = strtod(num, NULL);
                if (num != tmp) free(num);
                if (d != floor(d) || !isfinite(d)) {
                    rc = dsq_fail(err, DSQ_E_FORMAT, "%s: element %zu (byte %zu) is not an integer", what,
                                  cnt, st);
                    goto fail;
                }
                if (d < (double)INT32_MIN || d > (double)INT32_MAX) range = 0;
                else v = (long long)d;
            }
            if (!range || v < INT32_MIN || v > INT32_MAX) {
                rc = dsq_fail(err, DSQ_E_FORMAT, "%s: element %zu (byte %zu) is outside the int32 range",
                              what, cnt, st);
                goto fail;
            }
            if (cnt == cap && grow((void **)&out, &cap, cnt + 1, sizeof *out) < 0) {
                rc = dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", what);
                goto fail;
            }
            out[cnt++] = (int32_t)v;
            i = skip_ws(b, j, n);
            if (i < n && b[i] == ',') { i = skip_ws(b, i + 1, n); continue; }
            if (i < n && b[i] == ']') { i++; break; }
            rc = dsq_fail(err, DSQ_E_FORMAT, "%s: expected ',' or ']' after element %zu at byte %zu",
                          what, cnt - 1, i);
            goto fail;
        }
    }
    i = skip_ws(b, i, n);
    if (i != n) {
        rc = dsq_fail(err, DSQ_E_FORMAT, "%s: unexpected data after the array at byte %zu", what, i);
        goto fail;
    }
    if (!out && !(out = dsq_malloc(sizeof *out))) {
        rc = dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", what);
        goto fail;
    }
    *ids = out;
    *count = cnt;
    return DSQ_OK;
fail:
    free(out);
    return rc;
}

int dsq_tokens_load_json(const char *path, int32_t **ids, size_t *n, dsq_err *err) {
    char *buf;
    size_t len;
    *ids = NULL;
    *n = 0;
    int rc = dsq_read_file(path, TOKFILE_MAX, &buf, &len, err);
    if (rc < 0) return rc;
    rc = dsq_tokens_parse_json(buf, len, path, ids, n, err);
    free(buf);
    return rc;
}
