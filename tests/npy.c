/*
 * npy.c -- .npy reader (see npy.h).  Layout: "\x93NUMPY", major, minor,
 * header length (u16 LE in v1, u32 LE in v2), an ASCII Python dict with
 * 'descr', 'fortran_order' and 'shape', padded with spaces to 16/64 bytes,
 * then the raw array.
 */
#include "npy.h"
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int bad(char *why, const char *msg) {
    snprintf(why, 128, "%s", msg);
    return -1;
}

int npy_load(npy *a, const char *path, char *why) {
    memset(a, 0, sizeof *a);
    FILE *f = fopen(path, "rb");
    if (!f) return bad(why, "cannot open");
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = sz > 12 ? malloc((size_t)sz + 1) : NULL;
    int ok = b && fread(b, 1, (size_t)sz, f) == (size_t)sz;
    fclose(f);
    if (!ok) { free(b); return bad(why, "short file"); }
    b[sz] = 0;
    if (memcmp(b, "\x93NUMPY", 6)) { free(b); return bad(why, "bad magic"); }
    long hl, h0;
    if (b[6] == 1) { hl = (long)dsq_le16(b + 8); h0 = 10; }
    else { hl = (long)dsq_le32(b + 8); h0 = 12; }
    if (h0 + hl > sz) { free(b); return bad(why, "header past end"); }
    char hdr[1024];
    snprintf(hdr, sizeof hdr, "%.*s", (int)(hl < 1023 ? hl : 1023), (char *)b + h0);
    const char *d = strstr(hdr, "'descr':"), *fo = strstr(hdr, "'fortran_order':"), *sh = strstr(hdr, "'shape':");
    if (!d || !fo || !sh) { free(b); return bad(why, "header keys missing"); }
    d = strchr(d + 8, '\'');
    if (!d || d[1] != '<' || (d[2] != 'f' && d[2] != 'i') || (d[3] != '4' && d[3] != '8')) {
        free(b);
        return bad(why, "unsupported dtype (want <f4, <i4, <i8)");
    }
    if (strncmp(strchr(fo, ':') + 1, " False", 6)) { free(b); return bad(why, "fortran order"); }
    a->kind = d[2];
    a->elsize = d[3] - '0';
    if (a->kind == 'f' && a->elsize != 4) { free(b); return bad(why, "f8 unsupported"); }
    const char *p = strchr(sh, '(');
    a->n = 1;
    while (p && *++p && *p != ')') {
        if (*p == ' ' || *p == ',') continue;
        if (a->nd == 4) { free(b); return bad(why, "more than 4 dims"); }
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p || v < 0) { free(b); return bad(why, "bad shape"); }
        a->shape[a->nd++] = v;
        a->n *= v;
        p = end - 1;
    }
    long data = h0 + hl;
    if (a->n < 0 || data + a->n * a->elsize != sz) { free(b); return bad(why, "size does not match shape"); }
    a->v = malloc(sizeof(double) * (size_t)(a->n ? a->n : 1));
    if (!a->v) { free(b); return bad(why, "out of memory"); }
    for (int64_t i = 0; i < a->n; i++) {
        const unsigned char *e = b + data + i * a->elsize;
        if (a->kind == 'f') a->v[i] = dsq_lef32(e);
        else if (a->elsize == 4) a->v[i] = (int32_t)dsq_le32(e);
        else a->v[i] = (double)(int64_t)dsq_le64(e);
    }
    free(b);
    return 0;
}

void npy_free(npy *a) {
    free(a->v);
    a->v = NULL;
}
