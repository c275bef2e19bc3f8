# Sourced by bench/run.sh: speed of the reference forward pass -- the f32
# GEMM kernel against a same-run FMA peak, and eval tokens/s of prefill over
# 256-token windows on the shared tiny model and bench-1b, plus 512-token
# windows on bench-1b (the shape of llama.cpp's pp512 figure).
make -s "$B/bench/eval_bench" >/dev/null
echo "== forward pass: GEMM kernel and eval throughput (issue: reference forward)"
if [ -d "$SHARED" ]; then
  "$B/bench/eval_bench" --ctx 256 --windows 8 "$SHARED" "$DATA/bench-1b"
else
  "$B/bench/eval_bench" --ctx 256 --windows 8 "$DATA/bench-1b"
fi
"$B/bench/eval_bench" --no-gemm --ctx 512 --windows 4 "$DATA/bench-1b"
# the same shape stored int4 (every projection int4-g128), against llama.cpp's
# Q4_0 pp512 figure
if [ ! -f "$DATA/bench-1b-int4.dsq" ]; then
  "$DSQ" quant "$DATA/bench-1b" -o "$DATA/bench-1b-int4.dsq" --preset int4 --force --no-error > /dev/null
fi
"$B/bench/eval_bench" --no-gemm --ctx 512 --windows 4 "$DATA/bench-1b-int4.dsq"
