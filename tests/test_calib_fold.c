/*
 * test_calib_fold.c -- the shared AWQ scale search of a group of consumers
 * (calib/fold.h): never worse than plain quantization on its objective,
 * alpha 0 gives unit scales, float members add no error, and folding the
 * scales into the norm leaves the group's outputs unchanged.
 */
#include "test.h"
#include "calib/fold.h"
#include "calib/methods.h"
#include "verify/forward.h"

#include <math.h>
#include <stdlib.h>

static uint64_t g_f = 777;
static float frand(void) {
    g_f = g_f * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((g_f >> 40) & 0xFFFFFF) / 16777216.0f - 0.5f;
}

TEST(test_calib_fold_search) {
    int64_t cols = 128;
    int64_t rows[3] = {48, 32, 16};
    float *W[3], mabs[128], msq[128], msq_b[128];
    for (int k = 0; k < 3; k++) {
        W[k] = malloc(sizeof(float) * (size_t)(rows[k] * cols));
        for (int64_t i = 0; i < rows[k] * cols; i++) W[k][i] = frand() * ((i % cols) % 29 == 5 ? 0.01f : 0.1f);
    }
    for (int64_t j = 0; j < cols; j++) {
        float a = (j % 29 == 5) ? 8.0f : 0.5f + frand() * 0.4f; /* outlier channels (small weights) */
        mabs[j] = a;
        msq[j] = a * a * 1.3f;
        msq_b[j] = msq[j] * (j % 2 ? 2.0f : 0.5f); /* a member with its own token subset */
    }
    int q4 = dsq_q_from_name("int4-g32-sym"), f32 = dsq_q_from_name("f32");
    dsq_fold_member m[3] = {{W[0], rows[0], NULL, q4, 0, 0}, {W[1], rows[1], msq_b, q4, 8, 0}, {W[2], rows[2], NULL, f32, 0, 0}};
    float s[128], alpha;
    double e;
    dsq_err err = {0};
    CHECKF(dsq_fold_search(m, 3, cols, mabs, msq, 20, s, &alpha, &e, &err) == 0, "%s", err.msg);
    /* equal channel magnitudes: every alpha gives unit scales, the plain
     * error, and the tie keeps alpha 0 */
    float ones[128], s0[128], a0;
    double e0;
    for (int64_t j = 0; j < cols; j++) ones[j] = 0.7f;
    CHECK(dsq_fold_search(m, 3, cols, ones, msq, 20, s0, &a0, &e0, &err) == 0);
    CHECK(a0 == 0);
    for (int64_t j = 0; j < cols; j++) CHECK(s0[j] == 1.0f);
    fprintf(stderr, "  shared alpha %.2f: weighted error %.4e (plain %.4e)\n", alpha, e, e0);
    CHECK(alpha > 0); /* outlier channels with small weights make scaling worthwhile */
    CHECK(e < e0);
    /* a group of float members only: nothing to gain, alpha 0 */
    dsq_fold_member fm = {W[2], rows[2], NULL, f32, 0, 0};
    CHECK(dsq_fold_search(&fm, 1, cols, mabs, msq, 20, s, &alpha, &e, &err) == 0);
    CHECK(alpha == 0 && e == 0);
    /* folding: rmsnorm(h) * (g / s) fed to W diag(s) gives W rmsnorm(h) * g */
    dsq_awq_scales(mabs, cols, 0.5f, s);
    float h[128], g[128], gs[128], x[128], xs[128];
    for (int64_t j = 0; j < cols; j++) {
        h[j] = frand();
        g[j] = 1 + frand();
        gs[j] = g[j] / s[j];
    }
    dsq_fwd_rmsnorm(h, g, (int)cols, 1e-6f, x);
    dsq_fwd_rmsnorm(h, gs, (int)cols, 1e-6f, xs);
    double worst = 0;
    for (int64_t r = 0; r < rows[0]; r++) {
        double a = 0, b = 0;
        for (int64_t j = 0; j < cols; j++) {
            a += (double)W[0][r * cols + j] * x[j];
            b += (double)(W[0][r * cols + j] * s[j]) * xs[j];
        }
        worst = fmax(worst, fabs(a - b));
    }
    CHECKF(worst < 1e-5, "folded output differs by %.3e", worst);
    for (int k = 0; k < 3; k++) free(W[k]);
}
