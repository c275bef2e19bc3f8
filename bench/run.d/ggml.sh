# ggml block schemes (GGUF issue): quantize and dequantize against memcpy,
# 1 thread and all cores
make -s "$B/bench/ggml_bench" >/dev/null
echo "== ggml block schemes"
"$B/bench/ggml_bench"
