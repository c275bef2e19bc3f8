/*
 * ckpt_ct.c -- compressed-tensors checkpoints (../shared/spec/formats.md
 * Part C) in the checkpoint reader: the companions of each quantized module
 * (weight_packed / weight_scale / weight_zero_point / weight_shape; FP8 and
 * INT8 weight + weight_scale) are linked to one weight tensor named as
 * upstream ("P.weight"), given the dsq scheme that holds its codes exactly,
 * and shown to the rest of dsq as that scheme's quant view.
 *
 *   compressed-tensors                              dsq scheme
 *   pack-quantized int4 group 32/64/128 sym/asym   int4-g{G}-{sym,asym}, BF16 or F16
 *     (BF16 / F16 scales)                           scales as stored (-f16)
 *   pack-quantized int8 channel sym                 int8-channel (scale widened to f32)
 *   int-quantized int8 channel sym                  int8-channel
 *   float-quantized fp8 tensor / channel / block    fp8-tensor / -channel / -block
 *
 * INT4 codes are the same nibbles in the same order (LSB first in
 * little-endian int32 words = dsq's low nibble first), so the view points
 * into the file; only zero points (packed along the output dimension),
 * rows whose column count is not a multiple of 8 and INT8 codes (stored
 * offset by 128) are converted, into a buffer the caller frees.
 */
#include "formats_int.h"
#include "ckpt_int.h"
#include "formats/ctensors.h"
#include "quant/quant.h"

#include <math.h>
#include <stdio.h>
#include <unistd.h>

static const char *const g_sfx[] = {".weight_packed", ".weight_scale", ".weight_zero_point", ".weight_shape",
                                    ".weight_g_idx", ".input_scale", ".weight_global_scale", ".input_global_scale"};
enum { SFX_PACKED, SFX_SCALE, SFX_ZERO, SFX_SHAPE, SFX_GIDX, SFX_INPUT, SFX_GLOBAL, SFX_IGLOBAL, SFX_N };

/* Which suffix name ends with; the module (name without it) into mod. */
static int suffix_of(const char *name, char *mod, size_t cap) {
    size_t n = strlen(name);
    for (int k = 0; k < SFX_N; k++) {
        size_t L = strlen(g_sfx[k]);
        if (n > L && !strcmp(name + n - L, g_sfx[k]) && n - L < cap) {
            memcpy(mod, name, n - L);
            mod[n - L] = 0;
            return k;
        }
    }
    return -1;
}

/* The bytes of a small tensor (scales, shapes) into a malloc'd buffer. */
static int read_small(dsq_ckpt *ck, int i, uint8_t **out, dsq_err *err) {
    const dsq_tinfo *t = &ck->t[i];
    const ck_shard *sh = &ck->shards[t->shard];
    uint8_t *b = dsq_malloc(t->nbytes + 1);
    if (!b) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    if (sh->fd < 0 || pread(sh->fd, b, t->nbytes, (off_t)t->offset) != (ssize_t)t->nbytes) {
        free(b);
        return dsq_fail(err, DSQ_E_IO, "%s: tensor '%s': read failed", sh->path, t->name);
    }
    *out = b;
    return DSQ_OK;
}

static const char *file_of(const dsq_ckpt *ck, int i) { return ck->shards[ck->t[i].shard].path; }

/* f32 copies of a small scale tensor (any float dtype), checked finite and
 * positive. */
static int load_f32_scales(dsq_ckpt *ck, int w, int s, int64_t n, dsq_err *err) {
    const dsq_tinfo *st = &ck->t[s];
    if (st->dtype != DSQ_DT_F32 && st->dtype != DSQ_DT_BF16 && st->dtype != DSQ_DT_F16)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': dtype %s, expected F32, BF16 or F16", file_of(ck, s),
                        st->name, dsq_dtype_name(st->dtype));
    if (st->numel != n)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': %lld scales, expected %lld", file_of(ck, s), st->name,
                        (long long)st->numel, (long long)n);
    uint8_t *raw;
    int rc = read_small(ck, s, &raw, err);
    if (rc) return rc;
    float *v = dsq_malloc(sizeof *v * (size_t)(n + 1));
    if (!v) { free(raw); return dsq_fail(err, DSQ_E_NOMEM, "out of memory"); }
    dsq_to_f32(st->dtype, raw, v, n);
    free(raw);
    for (int64_t k = 0; k < n; k++)
        if (!isfinite(v[k]) || !(v[k] > 0)) {
            rc = dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': scale %lld is %g (must be finite and positive)",
                          file_of(ck, s), st->name, (long long)k, (double)v[k]);
            free(v);
            return rc;
        }
    ck->scales[w] = v;
    return DSQ_OK;
}

static int shape_is(const dsq_tinfo *t, int nd, int64_t a, int64_t b) {
    if (t->n_dims != nd) return 0;
    return (nd < 1 || t->shape[0] == a) && (nd < 2 || t->shape[1] == b);
}

/* The scheme of one quantized module (weight index w, its companions in q). */
static int link_one(dsq_ckpt *ck, int w, const dsq_ct_config *ct, dsq_err *err) {
    dsq_tinfo *t = &ck->t[w];
    ck_q *q = &ck->q[w];
    const char *f = file_of(ck, w);
    char mod[512];
    snprintf(mod, sizeof mod, "%.*s", (int)(strlen(t->name) - strlen(".weight")), t->name);
    const dsq_ct_args *a = dsq_ct_match(ct, mod, 1);
    if (q->gidx >= 0)
        return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: tensor '%s': weight_g_idx (GPTQ actorder \"group\") is not supported: "
                        "its columns are not grouped in order", f, ck->t[q->gidx].name);
    if (q->global >= 0)
        return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: tensor '%s': FP4 (nvfp4-pack-quantized) is not supported yet",
                        f, ck->t[q->global].name);
    if (q->scale < 0)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: module '%s': quantized tensors without '%s.weight_scale'", f, mod, mod);
    const dsq_tinfo *sc = &ck->t[q->scale];
    const char *sf = file_of(ck, q->scale);
    if (q->packed) {
        if (!a || a->fmt != DSQ_CT_PACK || a->is_float)
            return dsq_fail(err, DSQ_E_FORMAT, "%s: module '%s' is stored pack-quantized but no pack-quantized integer group "
                            "of quantization_config targets it", f, mod);
        if (a->num_bits != 4 && a->num_bits != 8)
            return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: module '%s': %d-bit pack-quantized weights are not supported "
                            "(4 or 8)", f, mod, a->num_bits);
        if (t->dtype != DSQ_DT_I32 || t->n_dims != 2)
            return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s.weight_packed': dtype %s with %d dims, expected 2-D I32",
                            f, mod, dsq_dtype_name(t->dtype), t->n_dims);
        if (q->shape < 0)
            return dsq_fail(err, DSQ_E_FORMAT, "%s: module '%s': no '%s.weight_shape'", f, mod, mod);
        const dsq_tinfo *ws = &ck->t[q->shape];
        if ((ws->dtype != DSQ_DT_I32 && ws->dtype != DSQ_DT_I64) || ws->numel != 2)
            return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': expected two I32 or I64 values", file_of(ck, q->shape), ws->name);
        uint8_t *raw;
        int rc = read_small(ck, q->shape, &raw, err);
        if (rc) return rc;
        int64_t out = ws->dtype == DSQ_DT_I64 ? (int64_t)dsq_le64(raw) : (int64_t)(int32_t)dsq_le32(raw);
        int64_t in = ws->dtype == DSQ_DT_I64 ? (int64_t)dsq_le64(raw + 8) : (int64_t)(int32_t)dsq_le32(raw + 4);
        free(raw);
        int p = 32 / a->num_bits;
        if (out < 1 || in < 1 || out > (1 << 30) || in > (1 << 30) || t->shape[0] != out || t->shape[1] != (in + p - 1) / p)
            return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s.weight_packed': shape [%lld, %lld] does not hold weight_shape "
                            "[%lld, %lld] at %d codes per word", f, mod, (long long)t->shape[0], (long long)t->shape[1],
                            (long long)out, (long long)in, p);
        int64_t G = a->strategy == DSQ_CT_S_GROUP ? a->group_size : a->strategy == DSQ_CT_S_CHANNEL ? in : 0;
        if (G <= 0)
            return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: module '%s': strategy \"%s\" of pack-quantized weights is not "
                            "supported (group or channel)", f, mod, a->strategy_name);
        int64_t ng = (in + G - 1) / G;
        if (!shape_is(sc, 2, out, ng))
            return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': shape [%lld, %lld], expected [%lld, %lld]", sf, sc->name,
                            (long long)sc->shape[0], (long long)(sc->n_dims > 1 ? sc->shape[1] : 0), (long long)out, (long long)ng);
        if (!a->sym != (q->zero >= 0))
            return dsq_fail(err, DSQ_E_FORMAT, "%s: module '%s': %s but %s weight_zero_point", f, mod,
                            a->sym ? "symmetric" : "asymmetric", q->zero >= 0 ? "has a" : "no");
        if (q->zero >= 0) {
            const dsq_tinfo *z = &ck->t[q->zero];
            if (z->dtype != DSQ_DT_I32 || !shape_is(z, 2, (out + p - 1) / p, ng))
                return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': %s [%lld, %lld], expected I32 [%lld, %lld]",
                                file_of(ck, q->zero), z->name, dsq_dtype_name(z->dtype), (long long)z->shape[0],
                                (long long)(z->n_dims > 1 ? z->shape[1] : 0), (long long)((out + p - 1) / p), (long long)ng);
        }
        t->shape[0] = out, t->shape[1] = in;
        t->numel = out * in;
        if (a->num_bits == 4) {
            if (G != 32 && G != 64 && G != 128)
                return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: module '%s': int4 group_size %lld (dsq holds 32, 64 and 128)", f,
                                mod, (long long)G);
            if (sc->dtype != DSQ_DT_BF16 && sc->dtype != DSQ_DT_F16)
                return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: tensor '%s': int4 scales in %s (dsq holds BF16 and F16)", sf,
                                sc->name, dsq_dtype_name(sc->dtype));
            q->scheme = dsq_q_find(DSQ_QK_INT4, DSQ_QG_GROUP, (int)G, a->sym, sc->dtype);
            q->conv = (in % 8 ? CKQ_COMPACT : 0) | (a->sym ? 0 : CKQ_ZP);
        } else {
            if (a->strategy != DSQ_CT_S_CHANNEL || !a->sym)
                return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: module '%s': int8 pack-quantized weights are supported per "
                                "channel and symmetric only", f, mod);
            q->scheme = DSQ_Q_INT8_CHANNEL;
            q->conv = CKQ_INT8U;
            if ((rc = load_f32_scales(ck, w, q->scale, out, err))) return rc;
        }
    } else if (t->dtype == DSQ_DT_F8_E4M3 || t->dtype == DSQ_DT_I8) {
        int fp8 = t->dtype == DSQ_DT_F8_E4M3;
        if (t->n_dims != 2)
            return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': quantized weight must be 2-D", f, t->name);
        if (q->zero >= 0)
            return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: module '%s': zero points of %s weights are not supported", f, mod,
                            fp8 ? "FP8" : "INT8");
        if (!a || a->fmt != (fp8 ? DSQ_CT_FLOAT : DSQ_CT_INT) || a->num_bits != 8 || a->is_float != fp8)
            return dsq_fail(err, DSQ_E_FORMAT, "%s: module '%s' is stored %s but no %s group of quantization_config targets it",
                            f, mod, fp8 ? "F8_E4M3" : "I8", fp8 ? "float-quantized 8-bit float" : "int-quantized 8-bit int");
        int64_t out = t->shape[0], in = t->shape[1], n;
        if (a->strategy == DSQ_CT_S_TENSOR) {
            n = 1;
            q->scheme = fp8 ? DSQ_Q_FP8_TENSOR : -1;
        } else if (a->strategy == DSQ_CT_S_CHANNEL) {
            n = out;
            if (!shape_is(sc, 2, out, 1) && !shape_is(sc, 1, out, 0))
                return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': expected shape [%lld, 1]", sf, sc->name, (long long)out);
            q->scheme = fp8 ? DSQ_Q_FP8_CHANNEL : DSQ_Q_INT8_CHANNEL;
        } else if (a->strategy == DSQ_CT_S_BLOCK && fp8 && a->block[0] == 128 && a->block[1] == 128) {
            int64_t er = (out + 127) / 128, ec = (in + 127) / 128;
            n = er * ec;
            if (!shape_is(sc, 2, er, ec))
                return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': expected shape [%lld, %lld] for 128x128 blocks", sf,
                                sc->name, (long long)er, (long long)ec);
            q->scheme = DSQ_Q_FP8_BLOCK;
        } else {
            q->scheme = -1;
            n = 0;
        }
        if (q->scheme < 0)
            return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: module '%s': %s weights with strategy \"%s\"%s are not supported",
                            f, mod, fp8 ? "FP8" : "INT8", a->strategy_name,
                            a->strategy == DSQ_CT_S_BLOCK ? " other than 128x128 blocks" : "");
        int rc = load_f32_scales(ck, w, q->scale, n, err);
        if (rc) return rc;
    } else {
        return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': dtype %s has a weight_scale but is not a quantized dtype", f,
                        t->name, dsq_dtype_name(t->dtype));
    }
    if (q->scheme < 0) return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: module '%s': no dsq scheme holds it", f, mod);
    t->scale_idx = q->scale;
    return DSQ_OK;
}

int ck_ct_link(dsq_ckpt *ck, int (*rebuild)(dsq_ckpt *), dsq_err *err) {
    const char *cj = ck->blob[CK_CONFIG];
    char what[600];
    snprintf(what, sizeof what, "%s/config.json", ck->path);
    int rc = dsq_ct_parse(&ck->ct, cj, ck->blob_len[CK_CONFIG], what, err);
    if (rc || !ck->ct) return rc;
    if (ck->archive)
        return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: compressed-tensors checkpoints are read from folders: extract the "
                        "archive first", ck->path);
    ck->scales = dsq_calloc((size_t)ck->n + 1, sizeof *ck->scales);
    ck->q = dsq_calloc((size_t)ck->n + 1, sizeof *ck->q);
    ck->own = dsq_calloc((size_t)ck->n + 1, sizeof *ck->own);
    if (!ck->scales || !ck->q || !ck->own) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    for (int i = 0; i < ck->n; i++) {
        ck_q *q = &ck->q[i];
        q->scheme = q->scale = q->zero = q->shape = q->gidx = q->global = q->link = -1;
    }
    /* weight_packed takes the weight's own name */
    char mod[512], nm[600];
    for (int i = 0; i < ck->n; i++) {
        if (suffix_of(ck->t[i].name, mod, sizeof mod) != SFX_PACKED) continue;
        snprintf(nm, sizeof nm, "%s.weight", mod);
        if (dsq_ckpt_find(ck, nm) >= 0)
            return dsq_fail(err, DSQ_E_FORMAT, "%s: module '%s' has both '%s' and '%s'", file_of(ck, i), mod, nm, ck->t[i].name);
        if (!(ck->own[i] = dsq_strdup(nm))) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
        ck->t[i].name = ck->own[i];
        ck->q[i].packed = 1;
    }
    if (rebuild(ck)) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    for (int i = 0; i < ck->n; i++) {
        int k = ck->q[i].packed ? -1 : suffix_of(ck->t[i].name, mod, sizeof mod);
        if (k < 0) continue;
        snprintf(nm, sizeof nm, "%s.weight", mod);
        int w = dsq_ckpt_find(ck, nm);
        if (w < 0)
            return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s' belongs to no weight '%s'", file_of(ck, i), ck->t[i].name, nm);
        ck_q *q = &ck->q[w];
        int *slot = k == SFX_SCALE ? &q->scale : k == SFX_ZERO ? &q->zero : k == SFX_SHAPE ? &q->shape
                  : k == SFX_GIDX ? &q->gidx : k == SFX_GLOBAL || k == SFX_IGLOBAL ? &q->global : NULL;
        if (slot) *slot = i;
        else ck_warn(ck, "%s: static activation scales are not used (dsq keeps activations unquantized)", ck->t[i].name);
        ck->q[i].link = w;
    }
    for (int w = 0; w < ck->n; w++) {
        ck_q *q = &ck->q[w];
        if (q->link >= 0 || (!q->packed && q->scale < 0 && q->zero < 0 && q->shape < 0 && q->gidx < 0 && q->global < 0)) {
            /* not quantized: a linear module the config means to quantize is
             * worth a warning (the stored values are used as they are) */
            size_t L = strlen(ck->t[w].name);
            if (q->link < 0 && L > 7 && !strcmp(ck->t[w].name + L - 7, ".weight") && ck->t[w].n_dims == 2 &&
                ck->t[w].dtype != DSQ_DT_F8_E4M3) {
                snprintf(mod, sizeof mod, "%.*s", (int)(L - 7), ck->t[w].name);
                if (strcmp(mod, "model.embed_tokens") && dsq_ct_match(ck->ct, mod, 1))
                    ck_warn(ck, "%s: quantization_config targets it but it is stored unquantized", mod);
            }
            continue;
        }
        if ((rc = link_one(ck, w, ck->ct, err))) return rc;
    }
    return DSQ_OK;
}

int dsq_ckpt_scheme(const dsq_ckpt *ck, int i) { return ck->q ? ck->q[i].scheme : -1; }
int ck_is_companion(const dsq_ckpt *ck, int i) { return ck->q && ck->q[i].link >= 0; }

uint64_t dsq_ckpt_stored_bytes(const dsq_ckpt *ck, int i) {
    uint64_t n = ck->t[i].nbytes;
    if (ck->q) {
        const ck_q *q = &ck->q[i];
        const int c[] = {q->scale, q->zero, q->shape};
        for (int k = 0; k < 3; k++)
            if (c[k] >= 0) n += ck->t[c[k]].nbytes;
        return n;
    }
    return n + (ck->t[i].scale_idx >= 0 ? ck->t[ck->t[i].scale_idx].nbytes : 0);
}

int dsq_ckpt_qmat(const dsq_ckpt *ck, int i, const void *data, dsq_qmat *m, void **tmp, dsq_err *err) {
    const dsq_tinfo *t = &ck->t[i];
    const ck_q *q = &ck->q[i];
    *tmp = NULL;
    int64_t rows = t->shape[0], cols = t->shape[1];
    *m = (dsq_qmat){q->scheme, rows, cols, (void *)data, ck->scales[i], NULL};
    if (dsq_q_scheme(q->scheme)->kind == DSQ_QK_INT4) {
        const void *s;
        int rc = dsq_ckpt_view(ck, q->scale, &s, err);
        if (rc) return rc;
        m->scale = (void *)s;
    }
    if (!q->conv) return DSQ_OK;
    dsq_qsizes sz;
    int rc = dsq_q_sizes(q->scheme, rows, cols, &sz, err);
    if (rc) return rc;
    uint8_t *b = dsq_malloc(sz.data + sz.zero + 1);
    if (!b) return dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", t->name);
    const uint8_t *src = data;
    if (q->conv & CKQ_INT8U) { /* 4 codes per word, LSB first = byte order; u = q + 128 */
        int64_t rb = (cols + 3) / 4 * 4;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) b[r * cols + c] = src[r * rb + c] ^ 0x80;
        m->data = b;
    } else if (q->conv & CKQ_COMPACT) { /* rows of ceil(cols/8) words into ceil(cols/2) bytes */
        int64_t rb = (cols + 7) / 8 * 4, ob = (cols + 1) / 2;
        for (int64_t r = 0; r < rows; r++) {
            memcpy(b + r * ob, src + r * rb, (size_t)ob);
            if (cols % 2) b[r * ob + ob - 1] &= 0x0F; /* the column past the end */
        }
        m->data = b;
    }
    if (q->conv & CKQ_ZP) { /* [ceil(rows/8), ng] words along the rows into [rows, ceil(ng/2)] bytes */
        const void *zv;
        if ((rc = dsq_ckpt_view(ck, q->zero, &zv, err))) { free(b); return rc; }
        const uint8_t *z = zv;
        int64_t ng = ck->t[q->scale].shape[1], zb = (ng + 1) / 2;
        uint8_t *zo = b + sz.data;
        memset(zo, 0, (size_t)sz.zero);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t g = 0; g < ng; g++) {
                uint32_t word = dsq_le32(z + 4 * ((r / 8) * ng + g));
                unsigned u = (word >> (4 * (r % 8))) & 15;
                zo[r * zb + g / 2] |= (uint8_t)(g % 2 ? u << 4 : u);
            }
        m->zero = zo;
    }
    *tmp = b;
    return DSQ_OK;
}
