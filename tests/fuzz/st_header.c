/*
 * st_header.c -- fuzz target: the safetensors JSON header parser
 * (st_parse_header in formats/safetensors.c).
 *
 * Input: u64 LE size of the data section, then the header JSON (the bytes a
 * real file holds after its own length prefix).  The JSON is copied into a
 * buffer of exactly its length with no terminating NUL, as the mmap reader
 * passes it.  When the parse succeeds, every rule the parser promises is
 * checked on its output: spans sorted and tiling [0, data size) exactly,
 * sizes matching shape x dtype, at most 4 dimensions, unique non-empty names.
 */
#include "fuzz.h"
#include "formats/formats_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 8) return 0;
    uint64_t data_size = dsq_le64(data);
    size_t n = size - 8;
    char *json = malloc(n ? n : 1);
    if (!json) return 0;
    memcpy(json, data + 8, n);
    st_header h;
    dsq_err err = {0};
    int rc = st_parse_header(&h, "fuzz.safetensors", json, n, data_size, &err);
    if (rc != DSQ_OK) {
        FUZZ_CHECK(rc < 0 && err.code == rc && err.msg[0]);
        FUZZ_CHECK(h.e == NULL && h.n == 0); /* nothing left to free */
        free(json);
        return 0;
    }
    FUZZ_CHECK(h.header_len == n && h.data_start == 8 + n);
    uint64_t pos = 0;
    char **names = malloc(sizeof *names * ((size_t)h.n + 1));
    FUZZ_CHECK(names != NULL);
    for (int i = 0; i < h.n; i++) {
        const st_entry *e = &h.e[i];
        FUZZ_CHECK(e->name && e->name[0]);
        FUZZ_CHECK(e->dtype > DSQ_DT_INVALID && e->dtype < DSQ_DT_COUNT);
        FUZZ_CHECK(e->n_dims >= 0 && e->n_dims <= 4);
        uint64_t numel = 1;
        for (int k = 0; k < e->n_dims; k++) {
            FUZZ_CHECK(e->shape[k] >= 0);
            FUZZ_CHECK(!dsq_mul_ovf(numel, (uint64_t)e->shape[k], &numel));
        }
        FUZZ_CHECK((int64_t)numel == e->numel);
        FUZZ_CHECK(e->begin == pos && e->end >= e->begin);
        FUZZ_CHECK(e->end - e->begin == numel * dsq_dtype_size(e->dtype));
        pos = e->end;
        names[i] = e->name;
    }
    FUZZ_CHECK(pos == data_size);
    qsort(names, (size_t)h.n, sizeof *names, cmp_str);
    for (int i = 1; i < h.n; i++) FUZZ_CHECK(strcmp(names[i - 1], names[i]) != 0);
    free(names);
    st_header_free(&h);
    free(json);
    return 0;
}
