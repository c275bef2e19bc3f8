/*
 * npy.h -- a tiny reader for numpy .npy files (format versions 1 and 2),
 * enough for reference data: little-endian f4, i4 or i8, C order, up to 4
 * dimensions.  Everything is widened to double for easy comparison.
 */
#ifndef DSQ_NPY_H
#define DSQ_NPY_H

#include <stdint.h>

typedef struct npy {
    char kind;        /* 'f' or 'i' */
    int elsize;       /* 4 or 8 */
    int nd;
    int64_t shape[4];
    int64_t n;        /* product of shape */
    double *v;        /* [n] values, from malloc */
} npy;

/* 0 on success; -1 (with a reason in why[128]) otherwise. */
int npy_load(npy *a, const char *path, char *why);
void npy_free(npy *a);

#endif
