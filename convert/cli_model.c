/*
 * cli_model.c -- open whatever the user named as a model and hand back the
 * weight-access vtable the forward pass reads (verify/weights.h).  Today
 * that is an upstream checkpoint folder; the .dsq container reader will plug
 * in here behind the same dsq_weights.
 */
#include "convert/cli.h"
#include "common.h"

int cli_open_model(cli_model *m, const char *path, dsq_err *err) {
    memset(m, 0, sizeof *m);
    if (dsq_path_is_container(path))
        return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: .dsq containers cannot be evaluated yet", path);
    int rc = dsq_ckpt_open(&m->ck, path, 0, err);
    if (rc < 0) return rc;
    if (dsq_ckpt_is_archive(m->ck)) {
        dsq_ckpt_close(m->ck);
        m->ck = NULL;
        return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: the forward pass needs random access; "
                        "unpack the archive into a folder first", path);
    }
    dsq_weights_from_ckpt(&m->w, m->ck);
    return DSQ_OK;
}

void cli_close_model(cli_model *m) {
    dsq_ckpt_close(m->ck);
    memset(m, 0, sizeof *m);
}
