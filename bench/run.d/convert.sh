# convert / quant end to end (container issue, quantization issue)
make -s "$B/bench/convert_bench" >/dev/null
echo "== convert and quant, end to end (2 threads)"
[ -d "$SHARED" ] && "$B/bench/convert_bench" "$SHARED" "$DATA"
"$B/bench/convert_bench" "$DATA/bench-1b" "$DATA"
