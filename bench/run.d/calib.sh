# Sourced by bench/run.sh: calibration throughput (calibration issue) --
# tokens/s and seconds per layer of `dsq calib` (five true-sequential passes
# per layer): on the shared tiny model with the GPTQ recipe for the routed
# experts (Hessians collected), on bench-1b with the MSE recipe
# (pseudo-random tokens), and on bench-1b with the GPTQ recipe for the
# routed experts writing the quantized model in the same pass (--quant-out,
# no .dsqcal), with its peak RSS: statistics live one stage at a time, so
# memory stays near one layer's working set (its time is GPTQ's, which does
# not depend on the token count).
echo "== calibration"
if [ -d "$SHARED" ]; then
  "$DSQ" calib "$SHARED" --text "$SHARED/calib.txt" --samples 16 --recipe tools/recipes/int4-experts-gptq.json \
      -o "$DATA/bench-tiny.dsqcal" --force | head -2
  # every projection, GPTQ with the reference model run beside (ref_target) and refinement
  "$DSQ" calib "$SHARED" --text "$SHARED/calib.txt" --samples 16 --recipe tools/recipes/int4-gptq.json \
      -o "$DATA/bench-tiny-int4.dsqcal" --force | head -2
fi
"$DSQ" calib "$DATA/bench-1b" --random-tokens 2048 --ctx 512 --recipe tools/recipes/int4-experts-mse.json \
    -o "$DATA/bench-1b.dsqcal" --force | head -2
if [ -x /usr/bin/time ]; then
  /usr/bin/time -f "peak RSS %M KiB" -o "$DATA/bench-1b-gptq.rss" \
      "$DSQ" calib "$DATA/bench-1b" --random-tokens 512 --ctx 512 --recipe tools/recipes/int4-experts-gptq.json \
      --quant-out "$DATA/bench-1b-gptq.dsq" --force | head -2
  awk '{ printf "%s %s %.0f MiB\n", $1, $2, $3 / 1024 }' "$DATA/bench-1b-gptq.rss"
else
  "$DSQ" calib "$DATA/bench-1b" --random-tokens 512 --ctx 512 --recipe tools/recipes/int4-experts-gptq.json \
      --quant-out "$DATA/bench-1b-gptq.dsq" --force | head -2
fi
