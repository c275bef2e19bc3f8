# Sourced by bench/run.sh: calibration throughput (calibration issue) --
# tokens/s and seconds per layer of `dsq calib` (five true-sequential passes
# per layer): on the shared tiny model with the GPTQ recipe for the routed
# experts (Hessians collected), on bench-1b with the MSE recipe
# (pseudo-random tokens; its Hessians would take minutes to collect).
echo "== calibration"
if [ -d "$SHARED" ]; then
  "$DSQ" calib "$SHARED" --text "$SHARED/calib.txt" --samples 16 --recipe tools/recipes/int4-experts-gptq.json \
      -o "$DATA/bench-tiny.dsqcal" --force | head -2
fi
"$DSQ" calib "$DATA/bench-1b" --random-tokens 2048 --ctx 512 --recipe tools/recipes/int4-experts-mse.json \
    -o "$DATA/bench-1b.dsqcal" --force | head -2
