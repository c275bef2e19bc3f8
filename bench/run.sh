#!/bin/sh
# make bench: every benchmark on the shared tiny model (when ../shared is
# present) and on a generated "bench-1b" checkpoint (hidden 1024, 8 layers,
# 64 experts; ~1 GB FP8), kept in build/bench-data between runs.
# Figures are ratios to floors measured in the same run (cat, memcpy, FMA).
set -eu
DSQ=${1:-build/dsq}
B=$(dirname "$DSQ")
DATA=$B/bench-data
mkdir -p "$DATA"
SHARED=${DSQ_SHARED:-../shared}/models/tiny-v32
if [ ! -f "$DATA/bench-1b/config.json" ]; then
  echo "generating bench-1b checkpoint (once)..."
  "$DSQ" gen-tiny "$DATA/bench-1b" --preset bench-1b --shards 4 --force
fi
if [ ! -f "$DATA/bench-1b-bf16/config.json" ]; then
  "$DSQ" gen-tiny "$DATA/bench-1b-bf16" --preset bench-1b --bf16 --shards 4 --force
fi
make -s "$B/bench/read_bench" >/dev/null
echo "== read + FP8 dequant (issue: foundation)"
[ -d "$SHARED" ] && "$B/bench/read_bench" "$SHARED"
"$B/bench/read_bench" "$DATA/bench-1b"
"$B/bench/read_bench" "$DATA/bench-1b-bf16"
for extra in bench/run.d/*.sh; do
  [ -f "$extra" ] && . "$extra"
done
exit 0
