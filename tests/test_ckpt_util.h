/*
 * test_ckpt_util.h -- helpers shared by the checkpoint tests: a micro model
 * configuration (fast to generate) and raw safetensors writing for
 * handcrafted corrupt files.
 */
#ifndef DSQ_TEST_CKPT_UTIL_H
#define DSQ_TEST_CKPT_UTIL_H

#include "synth/gen.h"
#include "formats/formats_int.h"

/* A very small DeepSeek-V3.2 shape: every role present, partial FP8 blocks
 * in both dimensions, one MTP layer. */
void tu_micro_config(dsq_config *c);
/* Generate the micro checkpoint into dir (FP8 unless bf16); returns 0 on success. */
int tu_gen_micro(const char *dir, int bf16, int n_shards);
/* Write "<u64 len><json><data>" to path. */
int tu_write_st(const char *path, const char *json, const void *data, size_t n);
/* Replace a string inside a file once; returns 0 if found. */
int tu_file_replace(const char *path, const char *from, const char *to);
/* Open a checkpoint expecting failure; returns 1 if it failed and the
 * message contains `needle`. Prints the message otherwise. */
int tu_open_fails(const char *path, const char *needle);

#endif
