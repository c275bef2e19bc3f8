/*
 * llama_util.h -- where the tests find the real llama.cpp: the prebuilt
 * libraries and their source that tests/llama/fetch.sh unpacks, and the
 * tools `make llama` builds beside them (llama_logits, ggml_gguf).
 */
#ifndef DSQ_TESTS_LLAMA_UTIL_H
#define DSQ_TESTS_LLAMA_UTIL_H

/* The llama.cpp folder ($DSQ_LLAMA, else "llama" beside the dsq binary
 * under test), fetched if need be; NULL after a SKIP (npm unreachable) or a
 * failure was recorded.  with_tools: the built tools must be there too. */
const char *tl_llama_dir(int with_tools);

#endif
