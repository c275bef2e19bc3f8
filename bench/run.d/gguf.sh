# GGUF quantization on the real DeepSeek-V3.2 tensor shapes (GGUF issue):
# importance-weighted block search against memcpy, GPTQ on the block grids
# against an FMA loop, peak RSS
make -s "$B/bench/gguf_bench" >/dev/null
echo "== GGUF block quantization, real 671B shapes"
"$B/bench/gguf_bench"
