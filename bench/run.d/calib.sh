# Sourced by bench/run.sh: calibration throughput (calibration issue) --
# tokens/s and seconds per layer of `dsq calib` with a GPTQ recipe for the
# routed experts (Hessians collected), on the shared tiny model (its
# calibration text) and on bench-1b (pseudo-random tokens).
echo "== calibration (int4-experts-gptq recipe)"
if [ -d "$SHARED" ]; then
  "$DSQ" calib "$SHARED" --text "$SHARED/calib.txt" --samples 16 --recipe tools/recipes/int4-experts-gptq.json \
      -o "$DATA/bench-tiny.dsqcal" --force | head -2
fi
"$DSQ" calib "$DATA/bench-1b" --random-tokens 4096 --ctx 512 --recipe tools/recipes/int4-experts-gptq.json \
    -o "$DATA/bench-1b.dsqcal" --force | head -2
