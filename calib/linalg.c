/*
 * linalg.c -- the dense f64 linear algebra of calib/ (see linalg.h):
 * Cholesky factorisation, the inverse of a symmetric positive definite
 * matrix through it, the lower factor of that inverse (GPTQ's U^T) and the
 * SPD solve of the refinement's normal equations.  Blocked for the cache and
 * split over a pool, with every element still computed by the operations of
 * the textbook loops in their order, so the results are the same bits with
 * or without SIMD and with any number of threads.
 */
#include "calib/linalg.h"
#include "common.h"
#include "common/pool.h"
#include "quant/quant_int.h"

#include <math.h>
#include <string.h>

/* ---- blocking ------------------------------------------------------------------
 *
 * The two factorisations GPTQ needs, blocked for the cache.  Every element
 * still gets exactly the operations of the textbook loops quoted in each
 * comment, in the same order (sums from 0 over k ascending, a product then a
 * subtraction or addition): blocking only changes which element is worked on
 * when, and the vector kernels are element-wise (no reassociated sums, no
 * fused multiply-add), so the factors are bit-identical to the textbook
 * loops with or without SIMD (tests/test_calib_methods.c checks it).  The
 * vector kernels are entries of the library's kernel table
 * (quant/quant_int.h: sub_many, add_many). */

#define LA_PANEL 16  /* Cholesky columns applied per pass over the trailing rows */
#define LA_ROWS 4    /* rows of L^-1 / L^-T L^-1 computed per pass over the others */

/* Jobs split over the pool.  Each one owns whole elements (rows of the
 * trailing update, columns of L^-1, rows of A^-1), so any split gives the
 * same bits; the splits balance the triangular amounts of work. */
#define LA_JOBS 16

typedef struct la_job {
    const dsq_qkern *K;
    double *A, *X, *buf;
    const double *lk;
    int64_t n, k0, k1, a0, a1; /* a0..a1: rows or columns of this job */
} la_job;

static void la_run(dsq_pool *pool, void (*fn)(void *), la_job *jobs, int nj) {
    for (int j = 0; j < nj; j++) {
        if (jobs[j].a0 >= jobs[j].a1) continue;
        if (pool) dsq_pool_add(pool, fn, &jobs[j]);
        else fn(&jobs[j]);
    }
    if (pool) dsq_pool_join(pool);
}

/* Split [lo, hi) into nj parts of equal sum of w(i), i in a part. */
static void la_split(la_job *jobs, int nj, int64_t lo, int64_t hi, double (*w)(int64_t i, int64_t lo, int64_t n),
                     int64_t n) {
    double total = 0;
    for (int64_t i = lo; i < hi; i++) total += w(i, lo, n);
    double acc = 0;
    int j = 0;
    jobs[0].a0 = lo;
    for (int64_t i = lo; i < hi && j < nj - 1; i++) {
        acc += w(i, lo, n);
        if (acc >= total * (j + 1) / nj) {
            jobs[j].a1 = i + 1;
            jobs[++j].a0 = i + 1;
        }
    }
    jobs[j].a1 = hi;
    for (int k = j + 1; k < nj; k++) jobs[k].a0 = jobs[k].a1 = hi;
}

static double w_flat(int64_t i, int64_t lo, int64_t n) { (void)i; (void)lo; (void)n; return 1; }
static double w_trail(int64_t i, int64_t lo, int64_t n) { (void)n; return (double)(i - lo + 1); }
static double w_col(int64_t j, int64_t lo, int64_t n) { (void)lo; return (double)(n - j) * (double)(n - j); }
static double w_row(int64_t i, int64_t lo, int64_t n) { (void)lo; return (double)(i + 1) * (double)(n - i); }

/* Cholesky, rows a0..a1 below the panel's diagonal block: their panel
 * columns (the block is final), copied to lk column-wise for the trailing
 * update. */
static void chol_panel_rows(void *arg) {
    la_job *j = arg;
    double *A = j->A, *lk = (double *)j->lk;
    int64_t n = j->n, k0 = j->k0, k1 = j->k1;
    for (int64_t i = j->a0; i < j->a1; i++) {
        double *ai = A + i * n;
        for (int64_t k = k0; k < k1; k++) {
            ai[k] /= A[k * n + k];
            for (int64_t c = k + 1; c < k1; c++) ai[c] -= ai[k] * A[c * n + k];
        }
        for (int64_t p = 0; p < k1 - k0; p++) lk[p * n + i] = ai[k0 + p];
    }
}

/* Cholesky trailing rows a0..a1: columns k1..i, panel columns k0..k1 in order */
static void chol_trail(void *arg) {
    la_job *j = arg;
    int64_t n = j->n, k1 = j->k1;
    int m = (int)(k1 - j->k0);
    const double *x[LA_PANEL];
    double s[LA_PANEL];
    for (int p = 0; p < m; p++) x[p] = j->lk + p * n + k1;
    for (int64_t i = j->a0; i < j->a1; i++) {
        for (int p = 0; p < m; p++) s[p] = j->A[i * n + j->k0 + p];
        j->K->sub_many(j->A + i * n + k1, x, s, m, i - k1 + 1);
    }
}

/* Cholesky A = L L^T (lower, in place, upper part zeroed).  Textbook form:
 *     for j: s = A_jj - sum_{k<j} L_jk L_jk;  L_jj = sqrt(s)
 *            L_ij = (A_ij - sum_{k<j} L_ik L_jk) / L_jj      (i > j)
 * computed right-looking by panels of columns: once column k is final,
 * L_ik L_jk is subtracted from every later A_ij, so each element still sees
 * k = 0, 1, ... in order.  Per panel: its diagonal block, then the panel
 * columns of the rows below it, then the trailing rows, each trailing row
 * taking all the panel's columns in one pass while it sits in cache.
 * 0 on success, -1 if A is not positive definite, DSQ_E_NOMEM. */
static int cholesky(const dsq_qkern *K, double *A, int64_t n, dsq_pool *pool) {
    double *lk = dsq_malloc(sizeof *lk * (size_t)(LA_PANEL * n + 1));
    if (!lk) return DSQ_E_NOMEM;
    la_job jobs[LA_JOBS];
    int nj = pool ? dsq_pool_size(pool) * 2 : 1;
    if (nj > LA_JOBS) nj = LA_JOBS;
    dsq_pool *p = nj > 1 ? pool : NULL;
    for (int64_t k0 = 0; k0 < n; k0 += LA_PANEL) {
        int64_t k1 = k0 + LA_PANEL < n ? k0 + LA_PANEL : n;
        for (int64_t k = k0; k < k1; k++) {
            double s = A[k * n + k];
            if (!(s > 0)) {
                free(lk);
                return -1;
            }
            A[k * n + k] = sqrt(s);
            for (int64_t i = k + 1; i < k1; i++) {
                double *ai = A + i * n;
                ai[k] /= A[k * n + k];
                for (int64_t c = k + 1; c <= i; c++) ai[c] -= ai[k] * A[c * n + k];
            }
        }
        if (k1 == n) break;
        for (int j = 0; j < nj; j++) jobs[j] = (la_job){K, A, NULL, NULL, lk, n, k0, k1, 0, 0};
        la_split(jobs, nj, k1, n, w_flat, n);
        la_run(p, chol_panel_rows, jobs, nj);
        la_split(jobs, nj, k1, n, w_trail, n);
        la_run(p, chol_trail, jobs, nj);
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++) A[i * n + j] = 0;
    free(lk);
    return 0;
}

/* Columns a0..a1 of X = L^-1 (L in A; X zeroed), rows from a0 down, a few
 * at a time so that each row of X read serves all of them. */
static void inv_cols(void *arg) {
    la_job *jb = arg;
    const double *A = jb->A;
    double *X = jb->X, *acc[LA_ROWS], s[LA_ROWS];
    int64_t n = jb->n, j0 = jb->a0, j1 = jb->a1;
    for (int64_t i0 = j0; i0 < n; i0 += LA_ROWS) {
        int m = n - i0 < LA_ROWS ? (int)(n - i0) : LA_ROWS;
        for (int r = 0; r < m; r++) acc[r] = X + (i0 + r) * n + j0;
        /* sums over the rows k < i0, finished earlier; X_kj = 0 for j > k */
        for (int64_t k = j0; k < i0; k++) {
            for (int r = 0; r < m; r++) s[r] = A[(i0 + r) * n + k];
            jb->K->add_many(acc, s, m, X + k * n + j0, (k + 1 < j1 ? k + 1 : j1) - j0);
        }
        /* then the rows of this group, in order */
        for (int r = 0; r < m; r++) {
            int64_t i = i0 + r;
            for (int64_t k = i0; k < i; k++)
                jb->K->add_many(&acc[r], &A[i * n + k], 1, X + k * n + j0, (k + 1 < j1 ? k + 1 : j1) - j0);
            double d = A[i * n + i];
            for (int64_t j = j0; j < (i < j1 ? i : j1); j++) X[i * n + j] = -X[i * n + j] / d;
            if (i < j1) X[i * n + i] = 1.0 / d;
        }
    }
}

/* Rows a0..a1 of A^-1 = X^T X (both triangles), a few at a time. */
static void inv_rows(void *arg) {
    la_job *jb = arg;
    const double *X = jb->X;
    double *A = jb->A, *acc[LA_ROWS], s[LA_ROWS];
    int64_t n = jb->n;
    for (int64_t i0 = jb->a0; i0 < jb->a1; i0 += LA_ROWS) {
        int m = jb->a1 - i0 < LA_ROWS ? (int)(jb->a1 - i0) : LA_ROWS;
        int64_t w = i0 + m; /* columns j < w cover every row of the group */
        memset(jb->buf, 0, sizeof *jb->buf * (size_t)(LA_ROWS * n));
        for (int r = 0; r < m; r++) acc[r] = jb->buf + r * n;
        /* k from i upwards: first the group's own rows, then the later ones
         * together (columns j > i of row i collect terms never stored) */
        for (int r = 0; r < m; r++)
            for (int64_t k = i0 + r; k < w; k++) jb->K->add_many(&acc[r], &X[k * n + i0 + r], 1, X + k * n, i0 + r + 1);
        for (int64_t k = w; k < n; k++) {
            for (int r = 0; r < m; r++) s[r] = X[k * n + i0 + r];
            jb->K->add_many(acc, s, m, X + k * n, w);
        }
        for (int r = 0; r < m; r++) {
            int64_t i = i0 + r;
            for (int64_t j = 0; j <= i; j++) A[i * n + j] = A[j * n + i] = acc[r][j];
        }
    }
}

/* Inverse of an SPD matrix (both triangles), through its lower Cholesky
 * factor L: A^-1 = L^-T L^-1.  Textbook form, X = L^-1:
 *     X_jj = 1 / L_jj;  X_ij = -(sum_{k=j}^{i-1} L_ik X_kj) / L_ii      (i > j)
 *     A^-1_ij = sum_{k=i}^{n-1} X_ki X_kj                              (j <= i)
 * X is [n x n] scratch.  Returns as cholesky. */
static int spd_inverse(const dsq_qkern *K, double *A, int64_t n, double *X, dsq_pool *pool) {
    int rc = cholesky(K, A, n, pool);
    if (rc) return rc;
    memset(X, 0, sizeof *X * (size_t)(n * n));
    la_job jobs[LA_JOBS];
    int nj = pool ? dsq_pool_size(pool) * 2 : 1;
    if (nj > LA_JOBS) nj = LA_JOBS;
    for (int j = 0; j < nj; j++) jobs[j] = (la_job){K, A, X, NULL, NULL, n, 0, 0, 0, 0};
    la_split(jobs, nj, 0, n, w_col, n);
    la_run(nj > 1 ? pool : NULL, inv_cols, jobs, nj);
    /* A = X^T X, by rows; A (holding L) is no longer read */
    double *buf = dsq_malloc(sizeof *buf * (size_t)(nj * LA_ROWS * n + 1));
    if (!buf) return DSQ_E_NOMEM;
    for (int j = 0; j < nj; j++) jobs[j] = (la_job){K, A, X, buf + (int64_t)j * LA_ROWS * n, NULL, n, 0, 0, 0, 0};
    la_split(jobs, nj, 0, n, w_row, n);
    la_run(nj > 1 ? pool : NULL, inv_rows, jobs, nj);
    free(buf);
    return 0;
}

/* ---- entry points ------------------------------------------------------------ */

int dsq_spd_cholesky(double *A, int64_t n, struct dsq_pool *pool) { return cholesky(dsq_qkern_best(), A, n, pool); }

int dsq_spd_inverse(double *A, int64_t n, double *tmp, struct dsq_pool *pool) {
    return spd_inverse(dsq_qkern_best(), A, n, tmp, pool);
}

int dsq_spd_inv_chol(double *A, int64_t n, double *tmp, struct dsq_pool *pool) {
    const dsq_qkern *K = dsq_qkern_best();
    int rc = spd_inverse(K, A, n, tmp, pool);
    return rc ? rc : cholesky(K, A, n, pool);
}

/* L L^T x = b: L y = b forward, then L^T x = y backward, each sum in index
 * order. */
int dsq_spd_solve(double *A, double *b, int64_t n) {
    int rc = cholesky(dsq_qkern_best(), A, n, NULL);
    if (rc) return rc;
    for (int64_t i = 0; i < n; i++) {
        double t = b[i];
        for (int64_t k = 0; k < i; k++) t -= A[i * n + k] * b[k];
        b[i] = t / A[i * n + i];
    }
    for (int64_t i = n - 1; i >= 0; i--) {
        double t = b[i];
        for (int64_t k = i + 1; k < n; k++) t -= A[k * n + i] * b[k];
        b[i] = t / A[i * n + i];
    }
    return 0;
}
