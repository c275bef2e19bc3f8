# quantization kernels against memcpy, 1 thread and all cores
make -s "$B/bench/quant_bench" >/dev/null
echo "== quantization kernels (bench-1b expert shapes)"
"$B/bench/quant_bench" 1
"$B/bench/quant_bench"
