/*
 * linalg.h -- dense linear algebra in f64 for calib/ (GPTQ, its refinement,
 * the asymmetric target): symmetric positive definite (SPD) matrices only.
 * Matrices are [n x n] row-major doubles.  Every function computes each
 * element with exactly the operations of the textbook loops quoted in
 * linalg.c, in their order, so the results are the same bits with or
 * without SIMD and with any number of threads (pool may be NULL).
 * Returns 0, -1 if A is not positive definite (a pivot <= 0 or NaN), or
 * DSQ_E_NOMEM.
 */
#ifndef DSQ_CALIB_LINALG_H
#define DSQ_CALIB_LINALG_H

#include <stdint.h>

struct dsq_pool;

/* A = L L^T: the lower factor L in place (upper part zeroed). */
int dsq_spd_cholesky(double *A, int64_t n, struct dsq_pool *pool);

/* A^-1 (both triangles) in place, through L: A^-1 = L^-T L^-1.  tmp:
 * [n x n] scratch. */
int dsq_spd_inverse(double *A, int64_t n, double *tmp, struct dsq_pool *pool);

/* The lower Cholesky factor of A^-1, in place (upper part zeroed): the
 * transpose of the U through which GPTQ spreads each column's error.  tmp:
 * [n x n] scratch. */
int dsq_spd_inv_chol(double *A, int64_t n, double *tmp, struct dsq_pool *pool);

/* Solve A x = b by Cholesky, x into b; A is destroyed.  Single-threaded. */
int dsq_spd_solve(double *A, double *b, int64_t n);

#endif
