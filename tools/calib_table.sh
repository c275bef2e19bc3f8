#!/bin/sh
# make calib-table: rtn / mse / awq / gptq x {int4-experts, int4, int4-all}
# on the shared tiny-v32 model: calibrate on calib.txt, quantize, verify on
# eval.txt with KL over the second half of 256-token windows (as
# llama-perplexity scores it).  Writes docs/CALIB_RESULTS.md.
set -eu
DSQ=${1:-build/dsq}
M=${DSQ_SHARED:-../shared}/models/tiny-v32
OUT=$(dirname "$DSQ")/calib-table
SAMPLES=${SAMPLES:-64}
WINDOWS=${WINDOWS:-0}
[ -d "$M" ] || { echo "calib-table: $M not found"; exit 1; }
mkdir -p "$OUT"
R=tools/recipes
rows=""
for preset in int4-experts int4 int4-all; do
  for m in rtn mse awq gptq; do
    rec=$R/$preset-$m.json
    calib=""
    if [ "$m" != rtn ]; then
      "$DSQ" calib "$M" --text "$M/calib.txt" --samples "$SAMPLES" --recipe "$rec" -o "$OUT/$preset-$m.dsqcal" --force >/dev/null
      calib="--calib $OUT/$preset-$m.dsqcal"
    fi
    "$DSQ" quant "$M" -o "$OUT/$preset-$m.dsq" --recipe "$rec" $calib --force --json --no-error > "$OUT/$preset-$m.quant.json"
    mw=""
    [ "$WINDOWS" -gt 0 ] && mw="--max-windows $WINDOWS"
    "$DSQ" verify "$M" "$OUT/$preset-$m.dsq" --text "$M/eval.txt" --ctx 256 --score-from 128 --no-experts $mw \
        --json "$OUT/$preset-$m.verify.json" > /dev/null
    line=$(python3 - "$OUT/$preset-$m.quant.json" "$OUT/$preset-$m.verify.json" "$preset" "$m" <<'PY'
import json, sys
q = json.load(open(sys.argv[1])); v = json.load(open(sys.argv[2]))
o = v.get("overall", v)
def g(*ks):
    for k in ks:
        if k in o: return o[k]
    return float("nan")
print("| %s | %s | %.3f | %.3f | %.3f | %+.3f | %.5f | %.4f |" % (sys.argv[3], sys.argv[4], q["bits_per_weight"],
      g("ppl_ref"), g("ppl_cand"), g("ppl_cand") - g("ppl_ref"), g("kl_mean"), g("top1", "top1_agreement")))
PY
)
    echo "$line"
    rows="$rows$line
"
  done
done
{
  echo "# Calibrated 4-bit quantization of tiny-v32"
  echo
  echo "Produced by \`make calib-table\` (tools/calib_table.sh): calibration on the first $SAMPLES windows of 256 tokens"
  echo "of calib.txt, evaluation on eval.txt in non-overlapping 256-token windows, perplexity and"
  echo "KL(REF||CAND) over the second half of each window (positions 128..254, as llama-perplexity"
  echo "scores KL), REF the FP8 checkpoint dequantized to f32.  bpw counts every stored byte of every"
  echo "tensor (embedding and head included) over all parameters."
  echo
  echo "| preset | method | bpw | ppl REF | ppl CAND | delta ppl | mean KL | top-1 |"
  echo "|---|---|---|---|---|---|---|---|"
  printf "%s" "$rows"
  echo
  echo "Presets: int4-experts = routed experts int4-g128, other projections fp8-block (as stored);"
  echo "int4 = every projection int4-g128 (embedding/head bf16); int4-all = int4 plus embedding"
  echo "int4-g128 and head int8-channel-f16 (both clip-searched), router and norms kept as stored (bf16)."
  echo "gptq rows of int4 and int4-all use the recipes' \`ref_target\` 0.5 and \`refine\` 1 (docs/CALIB.md);"
  echo "int4-experts uses plain GPTQ (routed experts have no reference moment, and \`refine\` 1 there gave"
  echo "0.00102, not worth its cost on large experts)."
  echo "llama.cpp on the same model (its figures): IQ4_XS + imatrix 4.66 bpw KL 0.0076;"
  echo "Q4_0 + imatrix 4.81 bpw KL 0.0087; Q4_K_M + imatrix 5.48 bpw KL 0.0068."
} > docs/CALIB_RESULTS.md
echo "wrote docs/CALIB_RESULTS.md"
