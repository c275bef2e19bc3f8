/*
 * tmodel.h -- an in-memory dsq_weights for tests: every tensor of a
 * DeepSeek-V3.2 configuration with seeded random f32 values, reachable
 * through the same vtable the forward pass uses for checkpoints.
 */
#ifndef DSQ_TMODEL_H
#define DSQ_TMODEL_H

#include "dsq.h"
#include "verify/weights.h"

typedef struct tm_tensor {
    char name[96];
    int nd;
    int64_t shape[2];
    float *data; /* shape[0] * shape[1] floats (shape[1] = 1 for vectors) */
} tm_tensor;

typedef struct tmodel {
    dsq_config cfg;
    tm_tensor *t;
    int n, cap;
    int fail_id; /* rows_f32 on this tensor id fails (tests of error paths); -1 none */
    dsq_weights w;
} tmodel;

/* A small configuration exercising every feature: 3 layers (1 dense, 2 MoE),
 * 2 heads, YaRN factor 4, 8 experts in 4 groups keeping 2, top-2, shared
 * expert, indexer with top-k 5 (so windows longer than 5 are sparse). */
void tm_small_config(dsq_config *c);
/* Fill m with random weights for cfg (seeded); 0 or -1 on allocation failure. */
int tm_build(tmodel *m, const dsq_config *cfg, uint64_t seed);
void tm_free(tmodel *m);
/* Tensor data by printf-style name, or NULL. */
const float *tm_get(const tmodel *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
tm_tensor *tm_find(tmodel *m, const char *name);
/* Deterministic uniform random float in [-1, 1). */
float tm_rand(uint64_t *state);

#endif
