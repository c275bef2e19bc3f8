/*
 * pool.c -- fixed-size thread pool with a bounded ring of jobs.
 * Workers sleep on a condition variable; join waits until the queue is empty
 * and no job is running.
 */
#include "pool.h"
#include "common.h"

#include <pthread.h>
#include <unistd.h>

#define QCAP 1024

typedef struct { dsq_job_fn fn; void *arg; } job;

struct dsq_pool {
    int n;
    pthread_t *th;
    pthread_mutex_t mu;
    pthread_cond_t has_job, has_room, idle;
    job q[QCAP];
    int head, count, running, stop;
};

static void *worker(void *vp) {
    dsq_pool *p = vp;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->count == 0 && !p->stop) pthread_cond_wait(&p->has_job, &p->mu);
        if (p->count == 0 && p->stop) break;
        job j = p->q[p->head];
        p->head = (p->head + 1) % QCAP;
        p->count--;
        p->running++;
        pthread_cond_signal(&p->has_room);
        pthread_mutex_unlock(&p->mu);
        j.fn(j.arg);
        pthread_mutex_lock(&p->mu);
        p->running--;
        if (p->count == 0 && p->running == 0) pthread_cond_broadcast(&p->idle);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

dsq_pool *dsq_pool_new(int n) {
    dsq_pool *p = dsq_calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n < 1 ? 1 : n;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->has_job, NULL);
    pthread_cond_init(&p->has_room, NULL);
    pthread_cond_init(&p->idle, NULL);
    if (p->n > 1) {
        p->th = dsq_calloc((size_t)p->n, sizeof *p->th);
        if (!p->th) { free(p); return NULL; }
        for (int i = 0; i < p->n; i++) {
            if (pthread_create(&p->th[i], NULL, worker, p) != 0) {
                p->n = i; /* run with what we have; 0 means inline */
                break;
            }
        }
        if (p->n <= 1) {
            /* keep semantics simple: if fewer than 2 workers started, go inline */
            if (p->n == 1) {
                pthread_mutex_lock(&p->mu);
                p->stop = 1;
                pthread_cond_broadcast(&p->has_job);
                pthread_mutex_unlock(&p->mu);
                pthread_join(p->th[0], NULL);
            }
            free(p->th);
            p->th = NULL;
            p->n = 1;
            p->stop = 0;
        }
    }
    return p;
}

int dsq_pool_size(const dsq_pool *p) { return p ? p->n : 1; }

void dsq_pool_add(dsq_pool *p, dsq_job_fn fn, void *arg) {
    if (!p || !p->th) { fn(arg); return; }
    pthread_mutex_lock(&p->mu);
    while (p->count == QCAP) pthread_cond_wait(&p->has_room, &p->mu);
    p->q[(p->head + p->count) % QCAP] = (job){fn, arg};
    p->count++;
    pthread_cond_signal(&p->has_job);
    pthread_mutex_unlock(&p->mu);
}

void dsq_pool_join(dsq_pool *p) {
    if (!p || !p->th) return;
    pthread_mutex_lock(&p->mu);
    while (p->count > 0 || p->running > 0) pthread_cond_wait(&p->idle, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void dsq_pool_free(dsq_pool *p) {
    if (!p) return;
    if (p->th) {
        dsq_pool_join(p);
        pthread_mutex_lock(&p->mu);
        p->stop = 1;
        pthread_cond_broadcast(&p->has_job);
        pthread_mutex_unlock(&p->mu);
        for (int i = 0; i < p->n; i++) pthread_join(p->th[i], NULL);
        free(p->th);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->has_job);
    pthread_cond_destroy(&p->has_room);
    pthread_cond_destroy(&p->idle);
    free(p);
}

void dsq_pool_for(dsq_pool *p, int n, dsq_job_fn fn, void *base, unsigned long stride) {
    for (int i = 0; i < n; i++) dsq_pool_add(p, fn, (char *)base + (unsigned long)i * stride);
    dsq_pool_join(p);
}

int dsq_default_threads(void) {
    const char *e = getenv("DSQ_THREADS");
    if (e && atoi(e) > 0) return atoi(e);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
