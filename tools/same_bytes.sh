#!/bin/sh
# tools/same_bytes.sh DSQ OUTDIR -- run a fixed set of jobs with the dsq
# binary DSQ into OUTDIR and print the sha256 of every file they write, one
# "hash  name" line each (sorted).  Two builds of dsq that print the same
# list wrote byte-identical files: refactors compare their outputs this way
#   sh tools/same_bytes.sh old/dsq A > a.txt; sh tools/same_bytes.sh build/dsq B > b.txt
#   diff a.txt b.txt
# Covers convert (folder, archive, container sources), quant with every
# preset, calib (gptq and awq recipes: .dsqcal and --quant-out), quant
# --calib and pack, on a generated model and on ../shared's tiny models when
# present.  Timestamps are fixed with SOURCE_DATE_EPOCH and touch; every
# command runs from OUTDIR with relative paths so the recorded command line
# is the same whatever the binary's location.
set -eu
DSQ=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
OUT=$2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${DSQ_SHARED:-$ROOT/../shared}
rm -rf "$OUT"
mkdir -p "$OUT"
cd "$OUT"
cp "$DSQ" ./dsq
cp "$ROOT"/tools/recipes/int4-gptq.json "$ROOT"/tools/recipes/int4-awq.json \
   "$ROOT"/tools/recipes/int4-experts-gptq.json .
export SOURCE_DATE_EPOCH=1700000000
q() { ./dsq "$@" --force --quiet >/dev/null; }

./dsq gen-tiny gen --preset tiny --shards 3 >/dev/null 2>&1
./dsq gen-tiny genbf --preset tiny --bf16 >/dev/null 2>&1
tar cf gen.tar --sort=name --mtime=@1700000000 --owner=0 --group=0 --numeric-owner gen
q convert gen -o gen.dsq
q convert gen.tar -o gen-tar.dsq
q convert genbf -o genbf.dsq
q convert gen.dsq -o gen-re.dsq
for p in lossless fp8 int4-experts int4 int8; do
  q quant gen -o gen-$p.dsq --preset $p
  q quant gen.dsq -o gen-dsq-$p.dsq --preset $p
  q quant genbf -o genbf-$p.dsq --preset $p
done
./dsq calib gen --random-tokens 600 --ctx 64 --recipe int4-gptq.json -o gen-gptq.dsqcal \
  --quant-out gen-gptq-q.dsq --force >/dev/null 2>&1
q quant gen -o gen-gptq-calq.dsq --recipe int4-gptq.json --calib gen-gptq.dsqcal
touch -d @1700000000 gen-int4.dsq
q pack gen-int4.dsq -o gen-int4.tar
q pack gen-int4.dsq -o gen-int4.tar.gz --part-size 64K

if [ -d "$SHARED/models/tiny-v32" ]; then
  ln -s "$SHARED/models/tiny-v32" tiny
  ln -s "$SHARED/models/tiny-v32-bf16" tinybf
  q convert tiny -o tiny.dsq
  q convert tinybf -o tinybf.dsq
  for p in fp8 int4-experts int4 int8; do q quant tiny -o tiny-$p.dsq --preset $p; done
  q quant tinybf -o tinybf-int4.dsq --preset int4
  for r in int4-gptq int4-awq int4-experts-gptq; do
    ./dsq calib tiny --text tiny/calib.txt --samples 6 --recipe $r.json -o tiny-$r.dsqcal \
      --quant-out tiny-$r-q.dsq --force >/dev/null 2>&1
    q quant tiny -o tiny-$r-calq.dsq --recipe $r.json --calib tiny-$r.dsqcal
  done
  ./dsq calib tiny.dsq --text tiny/calib.txt --samples 4 --recipe int4-gptq.json -o tinydsq-gptq.dsqcal \
    --quant-out tinydsq-gptq-q.dsq --force >/dev/null 2>&1
  touch -d @1700000000 tiny-int4.dsq
  q pack tiny-int4.dsq -o tiny-int4.tar.zst
fi
for f in $(ls | sort); do
  [ -f "$f" ] && [ ! -L "$f" ] && [ "$f" != dsq ] || continue
  case "$f" in *.json) continue ;; esac
  sha256sum "$f"
done
