/*
 * test_gemm.c -- the blocked f32 kernel of verify/gemm.c against an obvious
 * double-precision triple loop, on shapes that hit every edge (short row
 * groups, short panels, several k blocks), plus the promise that results do
 * not depend on how the output is split.
 */
#include "test.h"
#include "tmodel.h"
#include "verify/gemm.h"
#include "common.h"

#include <math.h>
#include <stdlib.h>

static void fill(float *a, int64_t n, uint64_t *rng) {
    for (int64_t i = 0; i < n; i++) a[i] = tm_rand(rng);
}

typedef void (*gemm_fn)(int, int, int, const float *, int64_t, const float *, int64_t, float *,
                        int64_t, int, float *);

static int check_shape(gemm_fn fn, int T, int N, int K, int acc, uint64_t seed) {
    uint64_t rng = seed;
    int64_t ldx = K + 3, ldw = K + 5, ldy = N + 7;
    float *X = malloc(sizeof(float) * (size_t)(T * ldx + 1));
    float *W = malloc(sizeof(float) * (size_t)(N * ldw + 1));
    float *Y = malloc(sizeof(float) * (size_t)(T * ldy + 1));
    float *Y0 = malloc(sizeof(float) * (size_t)(T * ldy + 1));
    float *pack = dsq_aalloc(DSQ_GEMM_PACK * sizeof(float));
    int ok = X && W && Y && Y0 && pack;
    if (ok) {
        fill(X, T * ldx, &rng);
        fill(W, N * ldw, &rng);
        fill(Y, T * ldy, &rng);
        memcpy(Y0, Y, sizeof(float) * (size_t)(T * ldy));
        fn(T, N, K, X, ldx, W, ldw, Y, ldy, acc, pack);
        for (int t = 0; t < T && ok; t++)
            for (int n = 0; n < N + 7 && ok; n++) {
                float got = Y[t * ldy + n];
                if (n >= N) { /* padding columns untouched */
                    ok = got == Y0[t * ldy + n];
                    continue;
                }
                double s = acc ? Y0[t * ldy + n] : 0, mag = fabs(s);
                for (int k = 0; k < K; k++) {
                    s += (double)X[t * ldx + k] * W[n * ldw + k];
                    mag += fabs((double)X[t * ldx + k] * W[n * ldw + k]);
                }
                ok = fabs(got - s) <= 1e-6 * (mag + 1e-30) * 4;
                if (!ok) fprintf(stderr, "  T=%d N=%d K=%d t=%d n=%d got %g want %g\n", T, N, K, t, n, got, s);
            }
    }
    free(X); free(W); free(Y); free(Y0); dsq_afree(pack);
    return ok;
}

TEST(test_gemm_matches_triple_loop) {
    /* T <= 64 takes the transposed path, larger T the packed-weight path */
    static const int shapes[][3] = {{1, 1, 1},     {6, 16, 8},   {7, 17, 9},    {5, 3, 300},
                                    {13, 40, 257}, {12, 16, 512}, {1, 33, 1000}, {20, 5, 0},
                                    {64, 70, 260}, {65, 33, 100}, {130, 17, 513}, {77, 1, 3}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int acc = 0; acc < 2; acc++) {
            CHECKF(check_shape(dsq_gemm_nt, shapes[i][0], shapes[i][1], shapes[i][2], acc, 11 + i),
                   "dispatch kernel (%s), shape %zu acc %d", dsq_gemm_kernel(), i, acc);
            CHECKF(check_shape(dsq_gemm_nt_scalar, shapes[i][0], shapes[i][1], shapes[i][2], acc, 11 + i),
                   "scalar kernel, shape %zu acc %d", i, acc);
        }
}

/* Splitting the output columns or rows must not change a single bit, and
 * both orientations of the kernel (many tokens: packed weights; few
 * tokens: packed tokens) give the same bits. */
TEST(test_gemm_split_invariant) {
    enum { T = 150, N = 150, K = 700 };
    uint64_t rng = 5;
    float *X = malloc(sizeof(float) * T * K), *W = malloc(sizeof(float) * N * K);
    float *A = malloc(sizeof(float) * T * N), *B = malloc(sizeof(float) * T * N);
    float *pack = dsq_aalloc(DSQ_GEMM_PACK * sizeof(float));
    CHECK(X && W && A && B && pack);
    fill(X, T * K, &rng);
    fill(W, N * K, &rng);
    dsq_gemm_nt(T, N, K, X, K, W, K, A, N, 0, pack);
    /* columns in uneven pieces, rows one by one */
    int cuts[] = {0, 3, 19, 20, 150};
    for (int c = 0; c < 4; c++)
        for (int t = 0; t < T; t++)
            dsq_gemm_nt(1, cuts[c + 1] - cuts[c], K, X + t * K, K, W + cuts[c] * K, K,
                        B + t * N + cuts[c], N, 0, pack);
    CHECK(memcmp(A, B, sizeof(float) * T * N) == 0);
    /* rows in blocks of 40 (transposed path) against all 150 at once */
    memset(B, 0, sizeof(float) * T * N);
    for (int t0 = 0; t0 < T; t0 += 40)
        dsq_gemm_nt(T - t0 < 40 ? T - t0 : 40, N, K, X + t0 * K, K, W, K, B + t0 * N, N, 0, pack);
    CHECK(memcmp(A, B, sizeof(float) * T * N) == 0);
    /* accumulate mode in both orientations */
    dsq_gemm_nt(T, N, K, X, K, W, K, A, N, 1, pack);
    for (int t0 = 0; t0 < T; t0 += 40)
        dsq_gemm_nt(T - t0 < 40 ? T - t0 : 40, N, K, X + t0 * K, K, W, K, B + t0 * N, N, 1, pack);
    CHECK(memcmp(A, B, sizeof(float) * T * N) == 0);
    free(X); free(W); free(A); free(B); dsq_afree(pack);
}
