/*
 * pool.h -- a tiny fixed-size thread pool (create, add, join, free), shaped
 * like zstd's POOL_*.  With n_threads <= 1 jobs run inline in dsq_pool_add, so
 * single-threaded builds and runs take exactly the same code path.
 *
 * A job's argument must stay alive until dsq_pool_join returns.
 */
#ifndef DSQ_POOL_H
#define DSQ_POOL_H

typedef struct dsq_pool dsq_pool;
typedef void (*dsq_job_fn)(void *arg);

dsq_pool *dsq_pool_new(int n_threads);   /* NULL on failure */
int dsq_pool_size(const dsq_pool *p);    /* worker count (>= 1) */
void dsq_pool_add(dsq_pool *p, dsq_job_fn fn, void *arg);
void dsq_pool_join(dsq_pool *p);         /* wait for every queued job */
void dsq_pool_free(dsq_pool *p);         /* joins first; NULL is a no-op */

/* Run fn(arg_i) for i in [0, n) split over the pool; args[i] = base + i*stride. */
void dsq_pool_for(dsq_pool *p, int n, dsq_job_fn fn, void *base, unsigned long stride);

/* Default worker count: DSQ_THREADS env var, else online CPUs. */
int dsq_default_threads(void);

#endif
