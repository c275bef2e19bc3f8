# tokenizer encode throughput, one core
make -s "$B/bench/tok_bench" >/dev/null
echo "== tokenizer"
"$B/bench/tok_bench"
