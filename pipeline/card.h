/*
 * card.h -- the model card (MODEL_CARD.md) of a pack (docs/PACKAGING.md
 * section 3).  formats/pack.c writes the archive and asks for the card's
 * text through dsq_pack_opts.card; this is the text.
 *
 * Outline:
 *   1) dsq_card_new(&k, report, &err)   reads the optional verify report now,
 *                                       so a bad one fails before the pack
 *   2) opts.card = dsq_card_text; opts.card_arg = k; dsq_pack(&opts, ...)
 *   3) dsq_card_free(k)
 * dsq_pack_with_card() does the three steps.
 */
#ifndef DSQ_CARD_H
#define DSQ_CARD_H

#include "dsq.h"
#include "formats/pack.h"

typedef struct dsq_card dsq_card;

/* report: path of a `dsq verify --json` report whose results go into the
 * card, or NULL.  Free with dsq_card_free. */
int dsq_card_new(dsq_card **out, const char *report, dsq_err *err);
void dsq_card_free(dsq_card *k); /* NULL ok */

/* A dsq_pack_card_fn; arg is a dsq_card (or NULL: no report).  The card:
 * configuration, recipe, bits per weight by role, drift results, the parts
 * and how to reassemble them, provenance.  *text from malloc. */
int dsq_card_text(void *arg, const struct dsq_ctr *c, const dsq_pack_plan *plan, char **text, dsq_err *err);

/* dsq_pack(o) with the card above (o->card is ignored); report as for
 * dsq_card_new. */
int dsq_pack_with_card(const dsq_pack_opts *o, const char *report, dsq_pack_info *info, dsq_err *err);

#endif
