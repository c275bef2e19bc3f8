/*
 * weights_overlay.h -- a dsq_weights that serves some tensors from
 * quantized matrices held in memory and every other tensor from a base
 * dsq_weights.  Calibration uses it to run a layer with its freshly
 * quantized weights before the next layer is calibrated.
 */
#ifndef DSQ_WEIGHTS_OVERLAY_H
#define DSQ_WEIGHTS_OVERLAY_H

#include "quant/quant.h"
#include "verify/weights.h"

typedef struct dsq_woverlay dsq_woverlay;

dsq_woverlay *dsq_woverlay_new(const dsq_weights *base);
void dsq_woverlay_free(dsq_woverlay *o);
/* The weights view (valid while o lives). */
const dsq_weights *dsq_woverlay_weights(dsq_woverlay *o);
/* Serve `name` from m (whose arrays the overlay takes over: they must come
 * from malloc, one block starting at m->data) and colscale (malloc'd [cols]
 * or NULL, also taken over).  Replaces an earlier entry of the same name.
 * DSQ_E_NOTFOUND if the base has no such tensor, DSQ_E_ARG if the shape
 * differs (the caller keeps ownership then). */
int dsq_woverlay_put(dsq_woverlay *o, const char *name, dsq_qmat m, float *colscale);
/* Drop every entry. */
void dsq_woverlay_clear(dsq_woverlay *o);

#endif
