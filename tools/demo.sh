#!/bin/sh
# make demo: the main job end to end on an embedded default model -- a
# synthetic checkpoint in the upstream FP8 layout generated on the spot.
# Each capability adds its step here.
set -eu
DSQ=${1:-build/dsq}
OUT=$(dirname "$DSQ")/demo
rm -rf "$OUT"
mkdir -p "$OUT"
echo "== 1. generate a tiny DeepSeek-V3.2 checkpoint (FP8 block-scaled, 3 shards)"
"$DSQ" gen-tiny "$OUT/tiny" --preset tiny --shards 3
echo
echo "== 2. inspect it"
"$DSQ" inspect "$OUT/tiny"
if "$DSQ" --help | grep -q '^  convert'; then
  echo
  echo "== 3. convert it losslessly to one .dsq container, then check and inspect it"
  "$DSQ" convert "$OUT/tiny" -o "$OUT/tiny.dsq" --force
  "$DSQ" check "$OUT/tiny.dsq"
  "$DSQ" inspect "$OUT/tiny.dsq"
fi
if "$DSQ" --help | grep -q '^  quant'; then
  echo
  echo "== 4. quantize: routed experts to int4 (group 128), the rest fp8"
  "$DSQ" quant "$OUT/tiny" -o "$OUT/tiny-int4.dsq" --preset int4-experts --force
fi
if "$DSQ" --help | grep -q '^  verify' && [ -f "$OUT/tiny-int4.dsq" ]; then
  echo
  echo "== 5. verify the quantized model against the original: drift per layer"
  "$DSQ" gen-tokens 2>/dev/null || true
  "$DSQ" verify "$OUT/tiny" "$OUT/tiny-int4.dsq" --random-tokens 512 --ctx 256
fi
if "$DSQ" --help | grep -q '^  export'; then
  echo
  echo "== 6. export the original and the quantized model to GGUF (q8_0) for llama.cpp, and read one back"
  "$DSQ" export "$OUT/tiny" -o "$OUT/tiny-q8_0.gguf" --type q8_0 --force --quiet | tail -n 1
  "$DSQ" inspect "$OUT/tiny-q8_0.gguf"
  "$DSQ" verify "$OUT/tiny" "$OUT/tiny-q8_0.gguf" --random-tokens 256 --ctx 256 | tail -n 4
fi
