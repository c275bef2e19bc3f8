/*
 * ggml_quant.c -- the quantizers of the ggml block types (ggml_blocks.h):
 * the search, written once, over a small table of inner loops (scalar here,
 * AVX2 in ggml_avx2.c) that compute the same bits, so the bytes never depend
 * on the machine.
 *
 * Every block minimises E = sum imp[i] (x[i] - decode[i])^2 (imp = 1 when
 * absent) in three steps, the structure of ggml's quantizers in
 * ggml-quants.c (make_qx_quants, make_qkx3_quants, the IQ4 search of
 * quantize_row_iq4_nl_impl, make_qp_quants), with two differences that make
 * the result at least as good on E: each candidate is scored by E itself,
 * with the scales it would actually store (f16, 6-bit, ...), and the stored
 * scales are refined after the first choice.
 *
 *   1. Sub-block fit.  Symmetric grids (Q8_0, Q4_0, Q5_0, Q3_K, Q6_K, IQ4):
 *      inverse scales that put the largest |x| at either end of the grid
 *      (ext + k step, k = -ntry..ntry), codes rounded to the nearest grid
 *      point, the weighted least-squares scale for those codes, then Lloyd
 *      steps (codes again, least squares again) while E falls.  Affine grids
 *      (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K): inverse scales (nmax + rmin + k
 *      rdelta) / (max - min) over the range, codes, the weighted least-squares
 *      scale and offset (offset <= 0 for the K-quants, whose mins are
 *      unsigned), Lloyd steps.
 *   2. Stored scales.  One-level types: f16 of the fit and its two f16
 *      neighbours (each of scale and min for Q4_1 / Q5_1), each scored by E.
 *      Super-blocks: the super-scale that best represents the sub-block
 *      scales on their integer grid (weighted by how much each sub-block's E
 *      depends on its scale), stored as f16.
 *   3. Refinement (super-blocks).  For each sub-block, the integer scale (and
 *      min) codes within R of the ideal ones, scored by E with their codes;
 *      then the least-squares super-scales for the chosen integer codes,
 *      kept when E falls.
 *
 * All arithmetic happens on a copy of the block scaled by a power of two so
 * that max |x| is in [0.5, 1) and the largest weight in [1, 2): the scaling
 * is exact, so tiny, huge and subnormal inputs follow the same paths, and no
 * sum can overflow.  Non-finite inputs get weight 0 and value 0 in the
 * search; when codes are written NaN counts as 0 and +-inf as +-2^100, which
 * the code clamp sends to the extreme code in its direction.
 */
#include "ggml_blocks.h"
#include "dtype.h"

#include <float.h>
#include <math.h>
#include <string.h>

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF /* the scores must not depend on the compiler */
#endif

/* ---- scalar helpers --------------------------------------------------------- */

/* Round to nearest, ties to even, for |t| <= 2^22: adding 1.5 * 2^23 leaves
 * no fraction bits (ggml's nearest_int). */
static inline float rnef(float t) { return (t + 12582912.0f) - 12582912.0f; }
static inline float clampf(float t, float lo, float hi) { return t < lo ? lo : t > hi ? hi : t; }
static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }
/* Nearest integer in [lo, hi] to t (not NaN), as a float. */
static inline float ucode(float t, float lo, float hi) { return rnef(clampf(t, lo, hi)); }

/* Entry c + 256 is the index of the IQ4 grid value nearest to any t with
 * floor(2t) = c (ties to the upper value).  Generated: the number of i in
 * 0..14 with c >= grid[i] + grid[i + 1] (the midpoints are multiples of 1/2,
 * so one entry per half-unit cell is exact). */
static const uint8_t g_nl_idx[512] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5,
    5, 5, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 8, 8, 8, 8, 8, 8, 8, 8,
    8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
    9, 9, 9, 9, 9, 9, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 11,
    11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 12, 12, 12, 12, 12,
    12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13,
    13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 14, 14,
    14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14,
    14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,
};

/* ---- scalar search kernels (the definition; ggml_avx2.c repeats them) --------
 * Every sum over a sub-block runs in 8 lanes: lane k adds elements k, k + 8,
 * ... in order, and the lanes combine as ((0+1)+(2+3))+((4+5)+(6+7)).  This
 * order and the operation order inside each line are part of the definition
 * of the output bytes: the AVX2 kernels perform the same float operations,
 * lane for lane, so both produce the same bits.  No input is NaN or
 * infinite here (the drivers guarantee finite x, w, is, inv), which keeps
 * clamp-by-comparison and min/max instructions equal.  Each call scores m
 * candidates (ggml_blocks.h). */

static inline float lsum(const float *a) {
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

/* Index of the IQ4 grid value nearest t (not NaN). */
static inline int nlcode(float t) {
    t = clampf(t, -128.0f, 127.5f);
    return g_nl_idx[(int)(2.0f * t + 512.0f) - 256];
}

static void u_sums_ref(const float *x, const float *w, int n, float lo, float hi, const float *is, int m,
                       float *out) {
    for (int j = 0; j < m; j++) {
        float a[8] = {0}, b[8] = {0};
        for (int i = 0; i < n; i += 8)
            for (int k = 0; k < 8; k++) {
                float v = ucode(is[j] * x[i + k], lo, hi), wv = w[i + k] * v;
                a[k] += wv * x[i + k];
                b[k] += wv * v;
            }
        out[2 * j] = lsum(a);
        out[2 * j + 1] = lsum(b);
    }
}

static void nl_sums_ref(const float *x, const float *w, int n, const float *is, int m, float *out) {
    for (int j = 0; j < m; j++) {
        float a[8] = {0}, b[8] = {0};
        for (int i = 0; i < n; i += 8)
            for (int k = 0; k < 8; k++) {
                float v = (float)dsq_gb_iq4_grid[nlcode(is[j] * x[i + k])], wv = w[i + k] * v;
                a[k] += wv * x[i + k];
                b[k] += wv * v;
            }
        out[2 * j] = lsum(a);
        out[2 * j + 1] = lsum(b);
    }
}

static void u_err_ref(const float *x, const float *w, int n, float lo, float hi, const float *dl, const float *inv,
                      int m, float *out) {
    for (int j = 0; j < m; j++) {
        float a[8] = {0};
        for (int i = 0; i < n; i += 8)
            for (int k = 0; k < 8; k++) {
                float r = x[i + k] - dl[j] * ucode(x[i + k] * inv[j], lo, hi);
                a[k] += w[i + k] * r * r;
            }
        out[j] = lsum(a);
    }
}

static void nl_err_ref(const float *x, const float *w, int n, const float *dl, const float *inv, int m,
                       float *out) {
    for (int j = 0; j < m; j++) {
        float a[8] = {0};
        for (int i = 0; i < n; i += 8)
            for (int k = 0; k < 8; k++) {
                float r = x[i + k] - dl[j] * (float)dsq_gb_iq4_grid[nlcode(x[i + k] * inv[j])];
                a[k] += w[i + k] * r * r;
            }
        out[j] = lsum(a);
    }
}

static void a_sums_ref(const float *x, const float *w, int n, float nmax, const float *is, float off, int m,
                       float *out) {
    for (int j = 0; j < m; j++) {
        float a[8] = {0}, b[8] = {0}, c[8] = {0};
        for (int i = 0; i < n; i += 8)
            for (int k = 0; k < 8; k++) {
                float l = ucode(is[j] * (x[i + k] - off), 0.0f, nmax), wl = w[i + k] * l;
                a[k] += wl;
                b[k] += wl * l;
                c[k] += wl * x[i + k];
            }
        out[3 * j] = lsum(a);
        out[3 * j + 1] = lsum(b);
        out[3 * j + 2] = lsum(c);
    }
}

static void a_err_ref(const float *x, const float *w, int n, float nmax, const float *dl, const float *inv,
                      const float *c, int m, float *out) {
    for (int j = 0; j < m; j++) {
        float a[8] = {0};
        for (int i = 0; i < n; i += 8)
            for (int k = 0; k < 8; k++) {
                float l = ucode((x[i + k] - c[j]) * inv[j], 0.0f, nmax), r = x[i + k] - (dl[j] * l + c[j]);
                a[k] += w[i + k] * r * r;
            }
        out[j] = lsum(a);
    }
}

const dsq_gbsearch dsq_gbsearch_ref = {
    .u_sums = u_sums_ref,
    .nl_sums = nl_sums_ref,
    .u_err = u_err_ref,
    .nl_err = nl_err_ref,
    .a_sums = a_sums_ref,
    .a_err = a_err_ref,
};

/* ---- grids and stored scales ----------------------------------------------------- */

#define MAXC 48 /* candidates per kernel call */

/* A code grid: the integers lo..hi, or (nl) the 16 IQ4 values. */
typedef struct grid {
    int nl;
    float lo, hi; /* smallest and largest grid value */
} grid;

/* Scales below this (on the normalized block) count as 0, so every inverse
 * is finite and x * inv is never 0 * inf.  A saturated f16 scale of a block
 * near FLT_MAX is 2^-112 here and must stay usable. */
#define TINY 0x1p-126f
/* Sub-blocks whose largest |x| (or range) is below this are all zero. */
#define TINY_X 0x1p-60f

static inline float inv_of(float d) { return fabsf(d) >= TINY ? 1.0f / d : 0.0f; }

/* The stored code of grid value nearest t: integer grids v - lo, IQ4 the
 * index.  t may be +-inf (from the +-2^100 of an infinite input), not NaN. */
static inline uint8_t gcode(grid g, float t) {
    return g.nl ? (uint8_t)nlcode(t) : (uint8_t)((int)ucode(t, g.lo, g.hi) - (int)g.lo);
}

static inline void g_sums(const dsq_gbsearch *k, grid g, const float *x, const float *w, int n, const float *is,
                          int m, float *out) {
    if (g.nl) k->nl_sums(x, w, n, is, m, out);
    else k->u_sums(x, w, n, g.lo, g.hi, is, m, out);
}

/* E = sum w (x - dl v)^2 at each of m scales dl[], v the grid value nearest
 * x / dl (dl = 0: every v is the code nearest 0, times 0). */
static inline void g_err(const dsq_gbsearch *k, grid g, const float *x, const float *w, int n, const float *dl,
                         int m, float *out) {
    float inv[MAXC];
    for (int j = 0; j < m; j++) inv[j] = inv_of(dl[j]);
    if (g.nl) k->nl_err(x, w, n, dl, inv, m, out);
    else k->u_err(x, w, n, g.lo, g.hi, dl, inv, m, out);
}
static inline void g_codes(grid g, const float *x, int n, float dl, uint8_t *L) {
    float inv = inv_of(dl);
    for (int i = 0; i < n; i++) L[i] = gcode(g, x[i] * inv);
}

/* E of affine codes decoded dl * l + c (c = -dmin * mn for the K-quants,
 * +m for Q4_1 / Q5_1, whose "x0 * d + m" is the same float), m candidates. */
static inline void a_err(const dsq_gbsearch *k, const float *x, const float *w, int n, float nmax,
                         const float *dl, const float *c, int m, float *out) {
    float inv[MAXC];
    for (int j = 0; j < m; j++) inv[j] = inv_of(dl[j]);
    k->a_err(x, w, n, nmax, dl, inv, c, m, out);
}
static inline void a_codes(const float *x, int n, float nmax, float dl, float c, uint8_t *L) {
    float inv = inv_of(dl);
    for (int i = 0; i < n; i++) L[i] = (uint8_t)ucode((x[i] - c) * inv, 0.0f, nmax);
}

/* f16 of v (nearest even), saturating at +-65504 instead of overflowing. */
static uint16_t f16_sat(float v) {
    uint16_t h = dsq_f32_to_f16(v);
    if ((h & 0x7FFF) >= 0x7C00) h = (uint16_t)((h & 0x8000) | 0x7BFF);
    return h;
}
/* The f16 k steps of magnitude away from h, within [0, 65504], same sign. */
static uint16_t f16_step(uint16_t h, int k) {
    int m = clampi((h & 0x7FFF) + k, 0, 0x7BFF);
    return (uint16_t)((h & 0x8000) | m);
}
static inline void st16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* ---- the scaled working copy of one block ---------------------------------------- */

#define SUB_FLOOR 0x1p-20f /* weight given to a sub-block whose weights are all 0 */

typedef struct blk {
    int e;          /* x = input * 2^-e; stored scale = ldexpf(normalized, e)   */
    float x[256];   /* finite inputs scaled, non-finite ones 0                  */
    float xe[256];  /* what codes are written from: x, NaN 0, +-inf +-2^100     */
    float w[256];   /* weights, largest in [1, 2); 0 for non-finite inputs      */
} blk;

/* 2^k as a product p1 * p2 of two normal floats, for k in [-250, 250]. */
static inline float pow2_split(int k, float *p2) {
    *p2 = ldexpf(1.0f, k - k / 2);
    return ldexpf(1.0f, k / 2);
}

/* Fill b from n inputs (n <= 256, sub-blocks of `sub`).  Returns 0 when no
 * input is finite and non-zero (the caller stores the all-zero block; an
 * infinity in such a block decodes to 0). */
static int blk_load(blk *b, const float *x, const float *imp, int n, int sub) {
    float amax = 0;
    for (int i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        a = a < INFINITY ? a : 0.0f;
        amax = a > amax ? a : amax;
    }
    b->e = 0;
    if (amax == 0) {
        memset(b->x, 0, sizeof(float) * (size_t)n);
        return 0;
    }
    frexpf(amax, &b->e);
    float p2, p1 = pow2_split(-b->e, &p2);
    float wmax = 0, q1 = 1, q2 = 1;
    if (imp) {
        for (int i = 0; i < n; i++) {
            float v = imp[i] < INFINITY ? imp[i] : 0.0f;
            wmax = v > wmax ? v : wmax;
        }
        if (wmax > 0) {
            int ew;
            frexpf(wmax, &ew);
            q1 = pow2_split(1 - ew, &q2);
        }
    }
    for (int i = 0; i < n; i++) {
        int fin = fabsf(x[i]) < INFINITY;
        float v = fin ? x[i] * p1 * p2 : 0.0f;
        b->x[i] = v;
        b->xe[i] = fin ? v : x[i] == INFINITY ? 0x1p100f : x[i] == -INFINITY ? -0x1p100f : 0.0f;
        b->w[i] = !fin ? 0.0f : wmax > 0 ? (imp[i] >= 0 && imp[i] < INFINITY ? imp[i] * q1 * q2 : 0.0f) : 1.0f;
    }
    for (int j = 0; j < n; j += sub) {
        float s = 0;
        for (int i = j; i < j + sub; i++) s += b->w[i];
        if (s == 0)
            for (int i = j; i < j + sub; i++) b->w[i] = SUB_FLOOR;
    }
    return 1;
}

/* The normalized value of stored f16 h in block b. */
static inline float bscale(const blk *b, uint16_t h) { return ldexpf(dsq_f16_to_f32(h), -b->e); }
/* The f16 to store for normalized scale s. */
static inline uint16_t bstore(const blk *b, float s) { return f16_sat(ldexpf(s, b->e)); }

/* The first element of largest magnitude (0 for none), found without a
 * data-dependent branch per element. */
static float signed_max(const float *x, int n) {
    float amax = 0;
    for (int i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        amax = a > amax ? a : amax;
    }
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) == amax) return x[i];
    return 0;
}

/* ---- step 1: sub-block fits ---------------------------------------------------- */

/* Weighted least-squares scale s of x ~ s * v, v on grid g: candidates map
 * the largest |x| to ext + k step at both ends of the grid (k = -ntry..ntry),
 * then Lloyd steps.  *pa = sum w v^2 of the result (how strongly E depends on
 * s).  Returns 0 when x is (numerically) all zero.  The score of sums
 * (sx, s2) is sx^2 / s2 (E = sum w x^2 - sx^2 / s2), compared without
 * dividing. */
static float fit_sym(const dsq_gbsearch *ks, const float *x, const float *w, int n, grid g, int ntry, float step,
                     float *pa) {
    float m = signed_max(x, n);
    *pa = 0;
    if (!(fabsf(m) >= TINY_X)) return 0;
    float is[MAXC], s[2 * MAXC], im = 1.0f / m;
    int nc = 0;
    for (int side = 0; side < 2; side++)
        for (int k = -ntry; k <= ntry; k++) is[nc++] = ((side ? g.hi : g.lo) + step * (float)k) * im;
    g_sums(ks, g, x, w, n, is, nc, s);
    float bx = 0, b2 = 0; /* best sums; b2 = 0: none */
    for (int j = 0; j < nc; j++) {
        float sx = s[2 * j], s2 = s[2 * j + 1];
        if (s2 > 0 && (b2 == 0 || sx * sx * b2 > bx * bx * s2)) {
            bx = sx;
            b2 = s2;
        }
    }
    float bs = b2 > 0 ? bx / b2 : 0;
    for (int it = 0; it < 3 && fabsf(bs) >= TINY; it++) {
        float t = 1.0f / bs;
        g_sums(ks, g, x, w, n, &t, 1, s);
        if (!(s[1] > 0 && s[0] * s[0] * b2 > bx * bx * s[1])) break;
        bx = s[0];
        b2 = s[1];
        bs = bx / b2;
    }
    *pa = b2;
    return bs;
}

/* Weighted least squares of x ~ s l + b for the code sums a = {sum w l,
 * sum w l^2, sum w l x}, sw = sum w, sx = sum w x; neg keeps b <= 0.
 * Returns the part of E that depends on the codes, N / D with E = sum w x^2 -
 * N / D (the normal equations), as the pair (N, D), D > 0; D = 0 when the
 * system is degenerate or s is not a usable positive scale. */
typedef struct lsq {
    double N, D;
} lsq;

static lsq affine_score(const float *a, double sw, double sx, int neg) {
    lsq r = {0, 0};
    double l = a[0], l2 = a[1], xl = a[2], D = sw * l2 - l * l;
    if (!(D > 0)) return r;
    double sn = sw * xl - sx * l, bn = l2 * sx - l * xl; /* s = sn / D, b = bn / D */
    if (neg && bn > 0) {
        if (!(xl >= TINY * l2) || !(l2 > 0)) return r; /* b = 0, s = xl / l2 */
        r.N = xl * xl;
        r.D = l2;
        return r;
    }
    if (!(sn >= TINY * D)) return r;
    r.N = sn * xl + bn * sx;
    r.D = D;
    return r;
}

/* The (s, b) of a score from affine_score. */
static void affine_sol(const float *a, double sw, double sx, int neg, float *ps, float *pb) {
    double l = a[0], l2 = a[1], xl = a[2], D = sw * l2 - l * l;
    double sn = sw * xl - sx * l, bn = l2 * sx - l * xl;
    if (neg && bn > 0) {
        *ps = (float)(xl / l2);
        *pb = 0;
    } else {
        *ps = (float)(sn / D);
        *pb = (float)(bn / D);
    }
}

/* Affine fit x ~ s l + b, l = 0..nmax, s > 0 (b <= 0 when neg): rmin,
 * rdelta, nstep as ggml's make_qkx3_quants, every candidate scored by its
 * least-squares E, then Lloyd steps.  *pa = sum w l^2, *pw = sum w of the
 * result.  A (numerically) constant x gives s = 0 and b = its minimum (0
 * with neg when that is positive). */
static void fit_affine(const dsq_gbsearch *ks, const float *x, const float *w, int n, int nmax, int neg,
                       float rmin, float rdelta, int nstep, float *ps, float *pb, float *pa, float *pw) {
    float mn = x[0], mx = x[0];
    double sw = 0, sx = 0, sx2 = 0;
    for (int i = 0; i < n; i++) {
        mn = x[i] < mn ? x[i] : mn;
        mx = x[i] > mx ? x[i] : mx;
        sw += w[i];
        sx += (double)w[i] * x[i];
        sx2 += (double)w[i] * x[i] * x[i];
    }
    if (neg && mn > 0) mn = 0;
    *pw = (float)sw;
    *pa = 0;
    if (!(mx - mn >= TINY_X)) {
        *ps = 0;
        *pb = mn;
        return;
    }
    const float fn = (float)nmax, ir = 1.0f / (mx - mn);
    float is[MAXC], a[3 * MAXC], ba[3];
    int nc = 0;
    is[nc++] = fn * ir; /* the plain min / max codes */
    for (int k = 0; k <= nstep; k++) is[nc++] = (fn + rmin + rdelta * (float)k) * ir;
    ks->a_sums(x, w, n, fn, is, mn, nc, a);
    /* the baseline: min / max scale and offset, E computed directly */
    float bs = (mx - mn) / fn, bb = mn, e0, dl = bs, c = bb;
    a_err(ks, x, w, n, fn, &dl, &c, 1, &e0);
    lsq best = {sx2 - e0, 1}; /* as N / D */
    memcpy(ba, a, sizeof ba);
    int found = 0;
    for (int j = 0; j < nc; j++) {
        lsq r = affine_score(a + 3 * j, sw, sx, neg);
        if (r.D > 0 && r.N * best.D > best.N * r.D) {
            best = r;
            memcpy(ba, a + 3 * j, sizeof ba);
            found = 1;
        }
    }
    if (found) affine_sol(ba, sw, sx, neg, &bs, &bb);
    for (int it = 0; it < 3; it++) {
        float t = 1.0f / bs, a1[3];
        ks->a_sums(x, w, n, fn, &t, bb, 1, a1);
        lsq r = affine_score(a1, sw, sx, neg);
        if (!(r.D > 0 && r.N * best.D > best.N * r.D)) break;
        best = r;
        memcpy(ba, a1, sizeof ba);
        affine_sol(ba, sw, sx, neg, &bs, &bb);
    }
    *ps = bs;
    *pb = bb;
    *pa = ba[1];
}

/* ---- step 2: super-scales ----------------------------------------------------------- */

/* The scale d of integer codes q_j = clamp(rne(v_j / d), lo, hi) that
 * minimises sum a_j (v_j - d q_j)^2: candidates put the v of largest
 * magnitude at lo + 0.1 k or hi + 0.1 k (k = -4..4; an end at 0 is
 * skipped), each followed by the least-squares d for its codes.  0 when
 * every v is (numerically) 0. */
static float super_scale(const float *v, const float *a, int m, int lo, int hi) {
    float vm = signed_max(v, m);
    if (!(fabsf(vm) >= TINY_X * TINY_X)) return 0;
    float best = INFINITY, bd = 0, ivm = 1.0f / vm, bsq = 0, bsqq = 0;
    for (int side = 0; side < 2; side++) {
        float ext = side ? (float)hi : (float)lo;
        if (ext == 0) continue;
        for (int k = -4; k <= 4; k++) {
            float id = (ext + 0.1f * (float)k) * ivm, d = 1.0f / id, e = 0, sq = 0, sqq = 0;
            for (int j = 0; j < m; j++) {
                float q = ucode(v[j] * id, (float)lo, (float)hi), r = v[j] - d * q;
                e += a[j] * r * r;
                sq += a[j] * v[j] * q;
                sqq += a[j] * q * q;
            }
            if (e < best) {
                best = e;
                bd = d;
                bsq = sq;
                bsqq = sqq;
            }
        }
    }
    /* the least-squares d for the winner's codes, when it scores better */
    if (bsqq > 0 && fabsf(bsq) >= TINY_X * TINY_X * bsqq) {
        float d = bsq / bsqq, id = 1.0f / d, e = 0;
        for (int j = 0; j < m; j++) {
            float r = v[j] - d * ucode(v[j] * id, (float)lo, (float)hi);
            e += a[j] * r * r;
        }
        if (e < best) bd = d;
    }
    return bd;
}

/* ---- step 3: super-blocks ----------------------------------------------------------- */

/* A symmetric super-block: n_sub sub-blocks of `sub` elements on grid g,
 * integer scale codes slo..shi times an f16 d (Q3_K, Q6_K, IQ4_XS). */
typedef struct symk {
    int n_sub, sub;
    grid g;
    int slo, shi; /* scale code range */
    int ntry;     /* step 1 search half-width and step */
    float step;
    int R;        /* step 3 neighbourhood */
} symk;

/* Best scale code per sub-block at normalized super-scale d (codes within R
 * of rne(s_j / d)); total E, codes in sc[]. */
static float symk_codes(const dsq_gbsearch *ks, const blk *b, const symk *k, const float *s, float d, int *sc) {
    float tot = 0, id = inv_of(d);
    for (int j = 0; j < k->n_sub; j++) {
        int c0 = (int)ucode(s[j] * id, (float)k->slo, (float)k->shi), cs[8], nc = 0;
        float dl[8], e[8];
        for (int c = c0 - k->R; c <= c0 + k->R; c++)
            if (c >= k->slo && c <= k->shi) {
                cs[nc] = c;
                dl[nc++] = d * (float)c;
            }
        g_err(ks, k->g, b->x + j * k->sub, b->w + j * k->sub, k->sub, dl, nc, e);
        int bi = 0;
        for (int i = 1; i < nc; i++)
            if (e[i] < e[bi]) bi = i;
        sc[j] = cs[bi];
        tot += e[bi];
    }
    return tot;
}

/* Quantize one symmetric super-block: *hd the f16 super-scale, sc[] the
 * signed scale codes, L[] the element codes.  An all-zero block gives hd = 0,
 * sc = 0 and the codes of 0. */
static void symk_quant(const dsq_gbsearch *ks, const float *x, const float *imp, const symk *k, uint16_t *hd,
                       int *sc, uint8_t *L) {
    blk b;
    float s[16], a[16], dn;
    int n = k->n_sub * k->sub;
    *hd = 0;
    if (!blk_load(&b, x, imp, n, k->sub)) {
        for (int j = 0; j < k->n_sub; j++) sc[j] = 0;
        memset(L, gcode(k->g, 0), (size_t)n);
        return;
    }
    for (int j = 0; j < k->n_sub; j++)
        s[j] = fit_sym(ks, b.x + j * k->sub, b.w + j * k->sub, k->sub, k->g, k->ntry, k->step, &a[j]);
    uint16_t h = bstore(&b, super_scale(s, a, k->n_sub, k->slo, k->shi));
    int tsc[16];
    float best = symk_codes(ks, &b, k, s, bscale(&b, h), sc);
    /* the least-squares d for the chosen integer codes, x ~ d (sc v), kept
     * while E falls; sub-block sums of the codes at their scales come from
     * the search kernels */
    for (int it = 0; it < 2; it++) {
        double num = 0, den = 0;
        dn = bscale(&b, h);
        for (int j = 0; j < k->n_sub; j++) {
            float is = inv_of(dn * (float)sc[j]), sj[2];
            g_sums(ks, k->g, b.x + j * k->sub, b.w + j * k->sub, k->sub, &is, 1, sj);
            num += (double)sc[j] * sj[0];
            den += (double)sc[j] * sc[j] * sj[1];
        }
        if (!(den > 0)) break;
        uint16_t h2 = bstore(&b, (float)(num / den));
        if (h2 == h) break;
        float e = symk_codes(ks, &b, k, s, bscale(&b, h2), tsc);
        if (!(e < best)) break;
        best = e;
        h = h2;
        memcpy(sc, tsc, sizeof(int) * (size_t)k->n_sub);
    }
    *hd = h;
    dn = bscale(&b, h);
    for (int j = 0; j < k->n_sub; j++) g_codes(k->g, b.xe + j * k->sub, k->sub, dn * (float)sc[j], L + j * k->sub);
}

/* An affine super-block: n_sub sub-blocks of `sub`, codes 0..nmax, unsigned
 * scale and min codes 0..Q times f16 d and dmin (Q2_K, Q4_K, Q5_K). */
typedef struct affk {
    int n_sub, sub, nmax, Q, R;
    float rmin, rdelta;
    int nstep;
} affk;

/* Best (scale, min) codes per sub-block at normalized d, dmin (within R of
 * the nearest ones); total E. */
static float affk_codes(const dsq_gbsearch *ks, const blk *b, const affk *k, const float *s, const float *m,
                        float d, float dmin, int *sc, int *mn) {
    float tot = 0, fn = (float)k->nmax, fQ = (float)k->Q, id = inv_of(d), idm = inv_of(dmin);
    for (int j = 0; j < k->n_sub; j++) {
        int s0 = (int)ucode(s[j] * id, 0, fQ), m0 = (int)ucode(m[j] * idm, 0, fQ), cs[25], cm[25], nc = 0;
        float dl[25], c[25], e[25];
        for (int i = s0 - k->R; i <= s0 + k->R; i++) {
            if (i < 0 || i > k->Q) continue;
            for (int q = m0 - k->R; q <= m0 + k->R; q++) {
                if (q < 0 || q > k->Q) continue;
                cs[nc] = i;
                cm[nc] = q;
                dl[nc] = d * (float)i;
                c[nc++] = -(dmin * (float)q);
            }
        }
        a_err(ks, b->x + j * k->sub, b->w + j * k->sub, k->sub, fn, dl, c, nc, e);
        int bi = 0;
        for (int i = 1; i < nc; i++)
            if (e[i] < e[bi]) bi = i;
        sc[j] = cs[bi];
        mn[j] = cm[bi];
        tot += e[bi];
    }
    return tot;
}

/* Quantize one affine super-block into f16 d / dmin, codes sc[] / mn[] and
 * element codes L[]. */
static void affk_quant(const dsq_gbsearch *ks, const float *x, const float *imp, const affk *k, uint16_t *hd,
                       uint16_t *hm, int *sc, int *mn, uint8_t *L) {
    blk b;
    float s[16], m[16], a[16], ww[16];
    double wx[16];
    int n = k->n_sub * k->sub;
    *hd = *hm = 0;
    if (!blk_load(&b, x, imp, n, k->sub)) {
        for (int j = 0; j < k->n_sub; j++) sc[j] = mn[j] = 0;
        memset(L, 0, (size_t)n);
        return;
    }
    for (int j = 0; j < k->n_sub; j++) {
        float bb;
        fit_affine(ks, b.x + j * k->sub, b.w + j * k->sub, k->sub, k->nmax, 1, k->rmin, k->rdelta, k->nstep, &s[j],
                   &bb, &a[j], &ww[j]);
        m[j] = -bb;
        wx[j] = 0;
        for (int i = j * k->sub; i < (j + 1) * k->sub; i++) wx[j] += (double)b.w[i] * b.x[i];
    }
    uint16_t h = bstore(&b, super_scale(s, a, k->n_sub, 0, k->Q));
    uint16_t h2 = bstore(&b, super_scale(m, ww, k->n_sub, 0, k->Q));
    int tsc[16], tmn[16];
    float fn = (float)k->nmax, best = affk_codes(ks, &b, k, s, m, bscale(&b, h), bscale(&b, h2), sc, mn);
    /* the least-squares (d, dmin) for the chosen codes, x ~ d (sc l) - dmin mn,
     * kept while E falls; per sub-block {sum w l, sum w l^2, sum w l x} of the
     * codes at their parameters come from the search kernels */
    for (int it = 0; it < 2; it++) {
        double aa = 0, ac = 0, cc = 0, ax = 0, cx = 0;
        float d = bscale(&b, h), dmin = bscale(&b, h2);
        for (int j = 0; j < k->n_sub; j++) {
            float is = inv_of(d * (float)sc[j]), sj[3];
            ks->a_sums(b.x + j * k->sub, b.w + j * k->sub, k->sub, fn, &is, -(dmin * (float)mn[j]), 1, sj);
            double s = sc[j], c = -(double)mn[j];
            aa += s * s * sj[1];
            ac += s * c * sj[0];
            cc += c * c * ww[j];
            ax += s * sj[2];
            cx += c * wx[j];
        }
        double det = aa * cc - ac * ac, dd, dm;
        if (cc > 0 && det > 0) {
            dd = (ax * cc - cx * ac) / det;
            dm = (aa * cx - ac * ax) / det;
        } else if (aa > 0) {
            dd = ax / aa;
            dm = dmin;
        } else {
            break;
        }
        if (!(dd > 0) || !(dm >= 0)) break;
        uint16_t g1 = bstore(&b, (float)dd), g2 = bstore(&b, (float)dm);
        if (g1 == h && g2 == h2) break;
        float e = affk_codes(ks, &b, k, s, m, bscale(&b, g1), bscale(&b, g2), tsc, tmn);
        if (!(e < best)) break;
        best = e;
        h = g1;
        h2 = g2;
        memcpy(sc, tsc, sizeof(int) * (size_t)k->n_sub);
        memcpy(mn, tmn, sizeof(int) * (size_t)k->n_sub);
    }
    *hd = h;
    *hm = h2;
    float d = bscale(&b, h), dmin = bscale(&b, h2);
    for (int j = 0; j < k->n_sub; j++)
        a_codes(b.xe + j * k->sub, k->sub, fn, d * (float)sc[j], -(dmin * (float)mn[j]), L + j * k->sub);
}

/* ---- one-level blocks ----------------------------------------------------------------- */

/* A 32-element block on grid g with one f16 scale (Q8_0, Q4_0, Q5_0,
 * IQ4_NL): f16 of the fit and its two neighbours, scored by E. */
static uint16_t sym1_quant(const dsq_gbsearch *ks, const float *x, const float *imp, grid g, int ntry, float step,
                           uint8_t *L) {
    blk b;
    if (!blk_load(&b, x, imp, 32, 32)) {
        memset(L, gcode(g, 0), 32);
        return 0;
    }
    float a, s = fit_sym(ks, b.x, b.w, 32, g, ntry, step, &a), dl[3], e[3];
    uint16_t h0 = bstore(&b, s), h[3];
    for (int k = 0; k < 3; k++) {
        h[k] = f16_step(h0, k - 1);
        dl[k] = bscale(&b, h[k]);
    }
    g_err(ks, g, b.x, b.w, 32, dl, 3, e);
    int bi = 1; /* ties keep the nearest f16 */
    if (e[0] < e[bi]) bi = 0;
    if (e[2] < e[bi]) bi = 2;
    g_codes(g, b.xe, 32, dl[bi], L);
    return h[bi];
}

/* A 32-element block with f16 scale and f16 min, codes 0..nmax, decoded
 * l * d + m (Q4_1, Q5_1): the f16 of the fit and the neighbours of both. */
static void aff1_quant(const dsq_gbsearch *ks, const float *x, const float *imp, int nmax, uint16_t *hd,
                       uint16_t *hm, uint8_t *L) {
    blk b;
    *hd = *hm = 0;
    if (!blk_load(&b, x, imp, 32, 32)) {
        memset(L, 0, 32);
        return;
    }
    float s, bb, a, sw, fn = (float)nmax, dl[9], c[9], e[9];
    uint16_t hs[9], hb[9];
    fit_affine(ks, b.x, b.w, 32, nmax, 0, -0.9f, 0.05f, 36, &s, &bb, &a, &sw);
    uint16_t d0 = bstore(&b, s), m0 = bstore(&b, bb);
    for (int i = 0; i < 9; i++) {
        hs[i] = f16_step(d0, i / 3 - 1);
        hb[i] = f16_step(m0, i % 3 - 1);
        dl[i] = bscale(&b, hs[i]);
        c[i] = bscale(&b, hb[i]);
    }
    a_err(ks, b.x, b.w, 32, fn, dl, c, 9, e);
    int bi = 4;
    for (int i = 0; i < 9; i++)
        if (e[i] < e[bi]) bi = i;
    *hd = hs[bi];
    *hm = hb[bi];
    a_codes(b.xe, 32, fn, dl[bi], c[bi], L);
}

/* ---- the types ---------------------------------------------------------------------- */

static const grid G_Q8 = {0, -127, 127}, G_Q4 = {0, -8, 7}, G_Q5 = {0, -16, 15}, G_NL = {1, -127, 113};

/* Importance of the block at element off (NULL stays NULL). */
#define IMP(imp, off) ((imp) ? (imp) + (off) : NULL)

/* Codes 0..15 of elements j and j + 16 share byte j (Q4_0, Q4_1, IQ4_NL,
 * and the low nibbles of Q5_0 / Q5_1, IQ4_XS per 32). */
static void pack_nib32(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)((L[j] & 15) | (L[j + 16] & 15) << 4);
}
/* Bit 4 of code j at bit j of a little-endian u32. */
static void pack_qh32(const uint8_t *L, uint8_t *qh) {
    uint32_t h = 0;
    for (int j = 0; j < 32; j++) h |= (uint32_t)((L[j] >> 4) & 1) << j;
    for (int k = 0; k < 4; k++) qh[k] = (uint8_t)(h >> (8 * k));
}
/* 2-bit fields of Q2_K / Q3_K: element 128h + 32j + l at bits 2j..2j+1 of
 * qs[32h + l]. */
static void pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++) {
            const uint8_t *p = L + 128 * h + l;
            qs[32 * h + l] = (uint8_t)((p[0] & 3) | (p[32] & 3) << 2 | (p[64] & 3) << 4 | (p[96] & 3) << 6);
        }
}
/* Scales and mins of Q4_K / Q5_K into the 12-byte packing (quant.h). */
static void pack_k4_scales(const int *sc, const int *mn, uint8_t *q) {
    for (int j = 0; j < 4; j++) {
        q[j] = (uint8_t)sc[j];
        q[j + 4] = (uint8_t)mn[j];
    }
    for (int j = 4; j < 8; j++) {
        q[j + 4] = (uint8_t)((sc[j] & 15) | (mn[j] & 15) << 4);
        q[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
        q[j] |= (uint8_t)((mn[j] >> 4) << 6);
    }
}

/* One bit field of a byte: the `width` bits at `shift` set to the low bits
 * of v, the others kept. */
static inline void put_bits(uint8_t *p, int shift, int width, int v) {
    unsigned m = ((1u << width) - 1u) << shift;
    *p = (uint8_t)((*p & ~m) | (((unsigned)v << shift) & m));
}

/* The code of one element at its place in the layouts packed above and
 * below (level l as ggml_blocks.h defines it), no other bit changed. */
void dsq_gb_code_put(int type, void *blk, int e, int l) {
    uint8_t *p = blk;
    int h = e / 128, k = (e / 32) % 4, i = e % 32;
    switch (type) {
    case DSQ_GB_Q8_0: ((dsq_blk_q8_0 *)blk)->qs[e] = (int8_t)(l - 127); break;
    case DSQ_GB_Q4_0: case DSQ_GB_IQ4_NL: put_bits(p + 2 + e % 16, 4 * (e / 16), 4, l); break;
    case DSQ_GB_Q4_1: put_bits(p + 4 + e % 16, 4 * (e / 16), 4, l); break;
    case DSQ_GB_Q5_0: case DSQ_GB_Q5_1: {
        int o = type == DSQ_GB_Q5_0 ? 2 : 4; /* qh[4], then qs[16] */
        put_bits(p + o + 4 + e % 16, 4 * (e / 16), 4, l);
        put_bits(p + o + e / 8, e % 8, 1, l >> 4);
        break;
    }
    case DSQ_GB_Q2_K: put_bits(((dsq_blk_q2_k *)blk)->qs + 32 * h + i, 2 * k, 2, l); break;
    case DSQ_GB_Q3_K: {
        dsq_blk_q3_k *b = blk;
        put_bits(b->qs + 32 * h + i, 2 * k, 2, l);
        put_bits(b->hmask + i, e / 32, 1, l >> 2);
        break;
    }
    case DSQ_GB_Q4_K: put_bits(((dsq_blk_q4_k *)blk)->qs + 32 * (e / 64) + i, 4 * ((e / 32) % 2), 4, l); break;
    case DSQ_GB_Q5_K: {
        dsq_blk_q5_k *b = blk;
        int c = e / 64, hi = (e / 32) % 2;
        put_bits(b->qs + 32 * c + i, 4 * hi, 4, l);
        put_bits(b->qh + i, 2 * c + hi, 1, l >> 4);
        break;
    }
    case DSQ_GB_Q6_K: {
        dsq_blk_q6_k *b = blk;
        put_bits(b->ql + 64 * h + i + 32 * (k & 1), 4 * (k >> 1), 4, l);
        put_bits(b->qh + 32 * h + i, 2 * k, 2, l >> 4);
        break;
    }
    case DSQ_GB_IQ4_XS:
        put_bits(((dsq_blk_iq4_xs *)blk)->qs + 16 * (e / 32) + e % 16, 4 * ((e % 32) / 16), 4, l);
        break;
    default: break;
    }
}

/* Q8_0: qs = code (-127..127, as ggml; 127 levels leave little to clip, so
 * a short search). */
static void q8_0_quant(const dsq_gbsearch *ks, const float *x, const float *imp, void *vy, int64_t n) {
    dsq_blk_q8_0 *y = vy;
    uint8_t L[32];
    for (int64_t i = 0; i < n / 32; i++) {
        st16(y[i].d, sym1_quant(ks, x + 32 * i, IMP(imp, 32 * i), G_Q8, 1, 0.5f, L));
        for (int j = 0; j < 32; j++) y[i].qs[j] = (int8_t)(L[j] - 127);
    }
}

static void q4_0_quant(const dsq_gbsearch *ks, const float *x, const float *imp, void *vy, int64_t n) {
    dsq_blk_q4_0 *y = vy;
    uint8_t L[32];
    for (int64_t i = 0; i < n / 32; i++) {
        st16(y[i].d, sym1_quant(ks, x + 32 * i, IMP(imp, 32 * i), G_Q4, 9, 0.1f, L));
        pack_nib32(L, y[i].qs);
    }
}

static void q5_0_quant(const dsq_gbsearch *ks, const float *x, const float *imp, void *vy, int64_t n) {
    dsq_blk_q5_0 *y = vy;
    uint8_t L[32];
    for (int64_t i = 0; i < n / 32; i++) {
        st16(y[i].d, sym1_quant(ks, x + 32 * i, IMP(imp, 32 * i), G_Q5, 9, 0.1f, L));
        pack_qh32(L, y[i].qh);
        pack_nib32(L, y[i].qs);
    }
}

static void iq4_nl_quant(const dsq_gbsearch *ks, const float *x, const float *imp, void *vy, int64_t n) {
    dsq_blk_iq4_nl *y = vy;
    uint8_t L[32];
    for (int64_t i = 0; i < n / 32; i++) {
        st16(y[i].d, sym1_quant(ks, x + 32 * i, IMP(imp, 32 * i), G_NL, 7, 1.0f, L));
        pack_nib32(L, y[i].qs);
    }
}

static void q4_1_quant(const dsq_gbsearch *ks, const float *x, const float *imp, void *vy, int64_t n) {
    dsq_blk_q4_1 *y = vy;
    uint8_t L[32];
    uint16_t d, m;
    for (int64_t i = 0; i < n / 32; i++) {
        aff1_quant(ks, x + 32 * i, IMP(imp, 32 * i), 15, &d, &m, L);
        st16(y[i].d, d);
        st16(y[i].m, m);
        pack_nib32(L, y[i].qs);
    }
}

static void q5_1_quant(const dsq_gbsearch *ks, const float *x, const float *imp, void *vy, int64_t n) {
    dsq_blk_q5_1 *y = vy;
    uint8_t L[32];
    uint16_t d, m;
    for (int64_t i = 0; i < n / 32; i++) {
        aff1_quant(ks, x + 32 * i, IMP(imp, 32 * i), 31, &d, &m, L);
        st16(y[i].d, d);
        st16(y[i].m, m);
        pack_qh32(L, y[i].qh);
        pack_nib32(L, y[i].qs);
    }
}

/* Q2_K: 16 x 16, codes 0..3, 4-bit scales and mins; the coarse scale codes
 * get a wider refinement (R = 2). */
static const affk K_Q2 = {16, 16, 3, 15, 2, -0.9f, 0.05f, 36};

static void q2_k_quant(const dsq_gbsearch *ks, const float *x, const float *imp, void *vy, int64_t n) {
    dsq_blk_q2_k *y = vy;
    uint8_t L[256];
    int sc[16], mn[16];
    uint16_t d, dm;
    for (int64_t i = 0; i < n / 256; i++) {
        affk_quant(ks, x + 256 * i, IMP(imp, 256 * i), &K_Q2, &d, &dm, sc, mn, L);
        for (int j = 0; j < 16; j++) y[i].scales[j] = (uint8_t)(sc[j] | mn[j] << 4);
        pack_2bit(L, y[i].qs);
        st16(y[i].d, d);
        st16(y[i].dmin, dm);
    }
}

/* Q3_K: 16 x 16, codes -4..3 (L = code + 4), 6-bit signed scales. */
static const symk K_Q3 = {16, 16, {0, -4, 3}, -32, 31, 9, 0.1f, 1};

static void q3_k_quant(const dsq_gbsearch *ks, const float *x, const float *imp, void *vy, int64_t n) {
    dsq_blk_q3_k *y = vy;
    uint8_t L[256];
    int sc[16];
    uint16_t d;
    for (int64_t i = 0; i < n / 256; i++) {
        symk_quant(ks, x + 256 * i, IMP(imp, 256 * i), &K_Q3, &d, sc, L);
        memset(y[i].scales, 0, 12);
        for (int j = 0; j < 16; j++) {
            int l = sc[j] + 32;
            if (j < 8) y[i].scales[j] = (uint8_t)(l & 15);
            else y[i].scales[j - 8] |= (uint8_t)((l & 15) << 4);
            y[i].scales[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
        }
        memset(y[i].hmask, 0, 32);
        for (int e = 0; e < 256; e++)
            if (L[e] > 3) {
                y[i].hmask[e % 32] |= (uint8_t)(1 << (e / 32));
                L[e] -= 4;
            }
        pack_2bit(L, y[i].qs);
        st16(y[i].d, d);
    }
}

static const affk K_Q4 = {8, 32, 15, 63, 1, -0.9f, 0.05f, 36};
static const affk K_Q5 = {8, 32, 31, 63, 1, -0.9f, 0.05f, 36};

static void q4_k_quant(const dsq_gbsearch *ks, const float *x, const float *imp, void *vy, int64_t n) {
    dsq_blk_q4_k *y = vy;
    uint8_t L[256];
    int sc[8], mn[8];
    uint16_t d, dm;
    for (int64_t i = 0; i < n / 256; i++) {
        affk_quant(ks, x + 256 * i, IMP(imp, 256 * i), &K_Q4, &d, &dm, sc, mn, L);
        st16(y[i].d, d);
        st16(y[i].dmin, dm);
        pack_k4_scales(sc, mn, y[i].scales);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                y[i].qs[32 * c + l] = (uint8_t)(L[64 * c + l] | L[64 * c + 32 + l] << 4);
    }
}

static void q5_k_quant(const dsq_gbsearch *ks, const float *x, const float *imp, void *vy, int64_t n) {
    dsq_blk_q5_k *y = vy;
    uint8_t L[256];
    int sc[8], mn[8];
    uint16_t d, dm;
    for (int64_t i = 0; i < n / 256; i++) {
        affk_quant(ks, x + 256 * i, IMP(imp, 256 * i), &K_Q5, &d, &dm, sc, mn, L);
        st16(y[i].d, d);
        st16(y[i].dmin, dm);
        pack_k4_scales(sc, mn, y[i].scales);
        memset(y[i].qh, 0, 32);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                int a = L[64 * c + l], b = L[64 * c + 32 + l];
                y[i].qs[32 * c + l] = (uint8_t)((a & 15) | (b & 15) << 4);
                y[i].qh[l] |= (uint8_t)((a >> 4) << (2 * c) | (b >> 4) << (2 * c + 1));
            }
    }
}

/* Q6_K: 16 x 16, codes -32..31 (L = code + 32), int8 scales. */
static const symk K_Q6 = {16, 16, {0, -32, 31}, -128, 127, 9, 0.1f, 1};

static void q6_k_quant(const dsq_gbsearch *ks, const float *x, const float *imp, void *vy, int64_t n) {
    dsq_blk_q6_k *y = vy;
    uint8_t L[256];
    int sc[16];
    uint16_t d;
    for (int64_t i = 0; i < n / 256; i++) {
        symk_quant(ks, x + 256 * i, IMP(imp, 256 * i), &K_Q6, &d, sc, L);
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l++) {
                const uint8_t *p = L + 128 * h + l;
                y[i].ql[64 * h + l] = (uint8_t)((p[0] & 15) | (p[64] & 15) << 4);
                y[i].ql[64 * h + l + 32] = (uint8_t)((p[32] & 15) | (p[96] & 15) << 4);
                y[i].qh[32 * h + l] = (uint8_t)(p[0] >> 4 | (p[32] >> 4) << 2 | (p[64] >> 4) << 4 | (p[96] >> 4) << 6);
            }
        for (int j = 0; j < 16; j++) y[i].scales[j] = (int8_t)sc[j];
        st16(y[i].d, d);
    }
}

/* IQ4_XS: 8 x 32 on the IQ4 grid, 6-bit signed scales. */
static const symk K_IQ4XS = {8, 32, {1, -127, 113}, -32, 31, 7, 1.0f, 1};

static void iq4_xs_quant(const dsq_gbsearch *ks, const float *x, const float *imp, void *vy, int64_t n) {
    dsq_blk_iq4_xs *y = vy;
    uint8_t L[256];
    int sc[8];
    uint16_t d;
    for (int64_t i = 0; i < n / 256; i++) {
        symk_quant(ks, x + 256 * i, IMP(imp, 256 * i), &K_IQ4XS, &d, sc, L);
        st16(y[i].d, d);
        unsigned sh = 0;
        memset(y[i].scales_l, 0, 4);
        for (int ib = 0; ib < 8; ib++) {
            int l = sc[ib] + 32;
            y[i].scales_l[ib / 2] |= (uint8_t)((l & 15) << (4 * (ib % 2)));
            sh |= (unsigned)(l >> 4) << (2 * ib);
            pack_nib32(L + 32 * ib, y[i].qs + 16 * ib);
        }
        st16(y[i].scales_h, (uint16_t)sh);
    }
}

/* ---- element access: nearest level, sub-block refit (ggml_blocks.h) ----------------- */

static inline float glevel(const dsq_gbtype *g, int l) {
    return g->nl ? (float)dsq_gb_iq4_grid[l] : (float)(g->g_lo + l);
}

int dsq_gb_nearest(int type, float a, float c, float w, float *v) {
    const dsq_gbtype *g = dsq_gb_type(type);
    int n = g->n_levels, l0;
    if (!(fabsf(a) > 0)) {
        /* every level decodes to -c: the one the quantizer writes for 0 */
        l0 = g->nl ? nlcode(0.0f) : clampi(-g->g_lo, 0, n - 1);
        *v = a * glevel(g, l0) - c;
        return l0;
    }
    float t = (w + c) / a;
    if (t != t) t = 0;
    l0 = g->nl ? nlcode(t) : (int)ucode(t, (float)g->g_lo, (float)(g->g_lo + n - 1)) - g->g_lo;
    /* the rounded quotient is within one level of the nearest value; the
     * neighbours decide, by the exact (double) distance to each f32 value */
    int best = l0;
    float bv = a * glevel(g, l0) - c;
    double bd = fabs((double)w - (double)bv);
    for (int l = l0 - 1; l <= l0 + 1; l += 2) {
        if (l < 0 || l >= n) continue;
        float x = a * glevel(g, l) - c;
        double dd = fabs((double)w - (double)x);
        if (dd < bd) {
            bd = dd;
            bv = x;
            best = l;
        }
    }
    *v = bv;
    return best;
}

static inline uint16_t ld16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* The integer scale code of sub-block j of a symmetric super-block at
 * super-scale hd, re-chosen for the block's values x (the current code cur
 * first among the candidates, so it wins ties). */
static int symk_refit(const dsq_gbsearch *ks, const symk *k, const float *x, const float *imp, uint16_t hd, int j,
                      int cur) {
    blk b;
    if (!blk_load(&b, x, imp, k->n_sub * k->sub, k->sub)) return cur;
    float dn = bscale(&b, hd), a, dl[MAXC], e[MAXC];
    if (!(fabsf(dn) >= TINY)) return cur; /* d = 0: every scale decodes to 0 */
    const float *xs = b.x + j * k->sub, *ws = b.w + j * k->sub;
    float s = fit_sym(ks, xs, ws, k->sub, k->g, k->ntry, k->step, &a);
    int c0 = (int)ucode(s * inv_of(dn), (float)k->slo, (float)k->shi), cs[MAXC], nc = 0;
    cs[nc] = cur;
    dl[nc++] = dn * (float)cur;
    for (int c = c0 - k->R; c <= c0 + k->R; c++)
        if (c >= k->slo && c <= k->shi && c != cur) {
            cs[nc] = c;
            dl[nc++] = dn * (float)c;
        }
    g_err(ks, k->g, xs, ws, k->sub, dl, nc, e);
    int bi = 0;
    for (int i = 1; i < nc; i++)
        if (e[i] < e[bi]) bi = i;
    return cs[bi];
}

/* The same for the (scale, min) codes of an affine super-block at (hd, hm). */
static void affk_refit(const dsq_gbsearch *ks, const affk *k, const float *x, const float *imp, uint16_t hd,
                       uint16_t hm, int j, int *sc, int *mn) {
    blk b;
    if (!blk_load(&b, x, imp, k->n_sub * k->sub, k->sub)) return;
    float d = bscale(&b, hd), dmin = bscale(&b, hm), fn = (float)k->nmax, fQ = (float)k->Q;
    const float *xs = b.x + j * k->sub, *ws = b.w + j * k->sub;
    float s, bb, a, sw, dl[MAXC], c[MAXC], e[MAXC];
    fit_affine(ks, xs, ws, k->sub, k->nmax, 1, k->rmin, k->rdelta, k->nstep, &s, &bb, &a, &sw);
    int s0 = (int)ucode(s * inv_of(d), 0, fQ), m0 = (int)ucode(-bb * inv_of(dmin), 0, fQ);
    int cs[MAXC], cm[MAXC], nc = 0;
    cs[nc] = *sc;
    cm[nc] = *mn;
    dl[nc] = d * (float)*sc;
    c[nc++] = -(dmin * (float)*mn);
    for (int i = s0 - k->R; i <= s0 + k->R; i++) {
        if (i < 0 || i > k->Q) continue;
        for (int q = m0 - k->R; q <= m0 + k->R; q++) {
            if (q < 0 || q > k->Q || (i == *sc && q == *mn)) continue;
            cs[nc] = i;
            cm[nc] = q;
            dl[nc] = d * (float)i;
            c[nc++] = -(dmin * (float)q);
        }
    }
    a_err(ks, xs, ws, k->sub, fn, dl, c, nc, e);
    int bi = 0;
    for (int i = 1; i < nc; i++)
        if (e[i] < e[bi]) bi = i;
    *sc = cs[bi];
    *mn = cm[bi];
}

/* Scale and min of sub-block j of a Q4_K / Q5_K scales[12] (the packing of
 * pack_k4_scales), the other sub-blocks' bits kept. */
static void k4_put(uint8_t *q, int j, int sc, int mn) {
    if (j < 4) {
        put_bits(q + j, 0, 6, sc);
        put_bits(q + j + 4, 0, 6, mn);
    } else {
        q[j + 4] = (uint8_t)((sc & 15) | (mn & 15) << 4);
        put_bits(q + j - 4, 6, 2, sc >> 4);
        put_bits(q + j, 6, 2, mn >> 4);
    }
}

void dsq_gb_sub_refit(const dsq_gbsearch *ks, int type, void *blk, const float *x, const float *imp, int j) {
    switch (type) {
    case DSQ_GB_Q2_K: {
        dsq_blk_q2_k *b = blk;
        int sc = b->scales[j] & 15, mn = b->scales[j] >> 4;
        affk_refit(ks, &K_Q2, x, imp, ld16(b->d), ld16(b->dmin), j, &sc, &mn);
        b->scales[j] = (uint8_t)(sc | mn << 4);
        break;
    }
    case DSQ_GB_Q4_K: case DSQ_GB_Q5_K: {
        dsq_blk_q4_k *b = blk; /* d, dmin, scales[12] at the same offsets in both */
        int sc, mn;
        dsq_gb_k4_scale_min(j, b->scales, &sc, &mn);
        affk_refit(ks, type == DSQ_GB_Q4_K ? &K_Q4 : &K_Q5, x, imp, ld16(b->d), ld16(b->dmin), j, &sc, &mn);
        k4_put(b->scales, j, sc, mn);
        break;
    }
    case DSQ_GB_Q3_K: {
        dsq_blk_q3_k *b = blk;
        int l = symk_refit(ks, &K_Q3, x, imp, ld16(b->d), j, dsq_gb_k3_scale(j, b->scales) - 32) + 32;
        if (j < 8) put_bits(b->scales + j, 0, 4, l);
        else put_bits(b->scales + j - 8, 4, 4, l);
        put_bits(b->scales + 8 + j % 4, 2 * (j / 4), 2, l >> 4);
        break;
    }
    case DSQ_GB_Q6_K: {
        dsq_blk_q6_k *b = blk;
        b->scales[j] = (int8_t)symk_refit(ks, &K_Q6, x, imp, ld16(b->d), j, b->scales[j]);
        break;
    }
    case DSQ_GB_IQ4_XS: {
        dsq_blk_iq4_xs *b = blk;
        unsigned sh = ld16(b->scales_h);
        int cur = (((b->scales_l[j / 2] >> (4 * (j % 2))) & 15) | ((sh >> (2 * j)) & 3) << 4) - 32;
        int l = symk_refit(ks, &K_IQ4XS, x, imp, ld16(b->d), j, cur) + 32;
        put_bits(b->scales_l + j / 2, 4 * (j % 2), 4, l);
        sh = (sh & ~(3u << (2 * j))) | (unsigned)(l >> 4) << (2 * j);
        st16(b->scales_h, (uint16_t)sh);
        break;
    }
    default: break; /* one-level blocks: the block's parameters are all */
    }
}

/* ---- entry points -------------------------------------------------------------------- */

typedef void (*quant_fn)(const dsq_gbsearch *ks, const float *x, const float *imp, void *y, int64_t n);
static const quant_fn g_quant[DSQ_GB_COUNT] = {
    [DSQ_GB_Q8_0] = q8_0_quant,     [DSQ_GB_Q4_0] = q4_0_quant, [DSQ_GB_Q4_1] = q4_1_quant,
    [DSQ_GB_Q5_0] = q5_0_quant,     [DSQ_GB_Q5_1] = q5_1_quant, [DSQ_GB_Q2_K] = q2_k_quant,
    [DSQ_GB_Q3_K] = q3_k_quant,     [DSQ_GB_Q4_K] = q4_k_quant, [DSQ_GB_Q5_K] = q5_k_quant,
    [DSQ_GB_Q6_K] = q6_k_quant,     [DSQ_GB_IQ4_NL] = iq4_nl_quant, [DSQ_GB_IQ4_XS] = iq4_xs_quant,
};

void dsq_gb_quantize(const dsq_gbsearch *ks, int type, const float *x, const float *imp, void *y, int64_t n) {
    g_quant[type](ks, x, imp, y, n);
}

#define REF(t, T) \
    void dsq_##t##_quantize_ref(const float *x, const float *imp, void *y, int64_t n) { \
        t##_quant(&dsq_gbsearch_ref, x, imp, y, n);                                     \
    }
REF(q8_0, Q8_0)
REF(q4_0, Q4_0)
REF(q4_1, Q4_1)
REF(q5_0, Q5_0)
REF(q5_1, Q5_1)
REF(q2_k, Q2_K)
REF(q3_k, Q3_K)
REF(q4_k, Q4_K)
REF(q5_k, Q5_K)
REF(q6_k, Q6_K)
REF(iq4_nl, IQ4_NL)
REF(iq4_xs, IQ4_XS)
#undef REF
