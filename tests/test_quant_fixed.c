/*
 * test_quant_fixed.c -- dsq_q_params and dsq_qopts.fixed: quantizing with
 * parameters chosen by the caller reproduces the absmax result when given
 * absmax parameters, and encodes exactly-representable values exactly.
 */
#include "test.h"
#include "quant/quant.h"

#include <math.h>
#include <stdlib.h>

TEST(test_quant_fixed_matches_absmax) {
    const char *schemes[] = {"int4-g32-sym", "int4-g128-asym", "int8-channel", "fp8-block", "fp8-channel-ue8m0", "int4-g64-sym-f16"};
    int64_t rows = 130, cols = 300;
    float *x = malloc(sizeof *x * (size_t)(rows * cols));
    srand(5);
    for (int64_t i = 0; i < rows * cols; i++) x[i] = (float)(rand() % 2001 - 1000) / 317.0f;
    dsq_qmat src = {DSQ_Q_F32, rows, cols, x, NULL, NULL};
    for (size_t k = 0; k < sizeof schemes / sizeof schemes[0]; k++) {
        int t = dsq_q_from_name(schemes[k]);
        CHECK(t >= 0);
        dsq_qsizes z;
        CHECK(dsq_q_sizes(t, rows, cols, &z, NULL) == 0);
        uint8_t *a = calloc(1, z.data + z.scale + z.zero + 3), *b = calloc(1, z.data + z.scale + z.zero + 3);
        dsq_qmat da = {t, rows, cols, a, z.scale ? a + z.data : NULL, z.zero ? a + z.data + z.scale : NULL};
        dsq_qmat db = {t, rows, cols, b, z.scale ? b + z.data : NULL, z.zero ? b + z.data + z.scale : NULL};
        dsq_err err = {0};
        CHECK(dsq_q_quantize_pool(NULL, &src, &da, NULL, &err) == 0);
        /* copy only the parameters, then encode with them */
        memcpy(b + z.data, a + z.data, z.scale + z.zero);
        dsq_qopts o = {0};
        o.fixed = 1;
        CHECKF(dsq_q_quantize_pool(NULL, &src, &db, &o, &err) == 0, "%s", err.msg);
        CHECKF(!memcmp(a, b, z.data + z.scale + z.zero), "%s: fixed-parameter codes differ", schemes[k]);
        free(a);
        free(b);
    }
    free(x);
    float s;
    int zz;
    uint32_t code;
    CHECK(dsq_q_params(dsq_q_from_name("int4-g128-sym"), -3.0f, 1.0f, &s, &zz, &code) == 0);
    CHECK(s >= 3.0f / 7.5f && zz == 8);
    CHECK(dsq_q_params(dsq_q_from_name("int4-g128-asym"), -1.0f, 2.0f, &s, &zz, &code) == 0);
    CHECK(s >= 0.2f && zz == (int)rintf(1.0f / s));
    CHECK(dsq_q_params(dsq_q_from_name("bf16"), 0, 1, &s, &zz, &code) == DSQ_E_ARG);
}
