# GGUF quantization on the real DeepSeek-V3.2 tensor shapes (GGUF issue):
# importance-weighted block search against memcpy, GPTQ on the block grids
# against an FMA loop, peak RSS
make -s "$B/bench/gguf_bench" >/dev/null
echo "== GGUF block quantization, real 671B shapes"
"$B/bench/gguf_bench"
# The same job as llama.cpp's quantizer does it (when tests/llama/ fetched
# it): bench-1b as an F32 GGUF into q4_k_m, llama_model_quantize against
# dsq quant --preset q4_k_m on 2 threads, wall time and peak RSS, with the
# cat floor of the input file.
LL=$B/llama
if [ -x "$LL/llama_quant" ] && [ -x /usr/bin/time ]; then
  echo "== q4_k_m of bench-1b from its F32 GGUF: llama.cpp's quantizer and dsq's (2 threads)"
  [ -f "$DATA/bench-1b-f32.gguf" ] || "$DSQ" export "$DATA/bench-1b" -o "$DATA/bench-1b-f32.gguf" --type f32 --force --quiet > /dev/null
  cat "$DATA/bench-1b-f32.gguf" > /dev/null
  t0=$(date +%s.%N); cat "$DATA/bench-1b-f32.gguf" > /dev/null; t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "cat > /dev/null of the F32 GGUF: %.2f s\n", b - a }'
  /usr/bin/time -f "llama.cpp llama_model_quantize: %e s, peak RSS %M KiB" \
      "$LL/llama_quant" "$DATA/bench-1b-f32.gguf" "$DATA/bench-1b-llama-q4_k_m.gguf" q4_k_m --threads 2
  /usr/bin/time -f "dsq quant --preset q4_k_m: %e s, peak RSS %M KiB" \
      "$DSQ" quant "$DATA/bench-1b-f32.gguf" --preset q4_k_m -o "$DATA/bench-1b-dsq-q4_k_m.gguf" --threads 2 --force --no-error --quiet > /dev/null
  ls -l "$DATA/bench-1b-llama-q4_k_m.gguf" "$DATA/bench-1b-dsq-q4_k_m.gguf" | awk '{print $5, $9}'
  rm -f "$DATA/bench-1b-llama-q4_k_m.gguf" "$DATA/bench-1b-dsq-q4_k_m.gguf"
fi
