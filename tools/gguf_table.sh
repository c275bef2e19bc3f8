#!/bin/sh
# make gguf-table: dsq's GGUF presets against llama.cpp's own files on the
# shared tiny-v32 model, every file measured by llama.cpp itself (the
# prebuilt libraries of tests/llama/): KL(F32 || file) over positions
# 128..254 of every 256-token window of eval.tokens.json, as llama-perplexity
# scores it, F32 being dsq's F32 export (which llama.cpp runs at the reference
# perplexity); bpw = whole file bytes x 8 / parameters.  llama.cpp's files
# come from llama_model_quantize on that F32 export, without an importance
# matrix.  dsq calibrates on the first SAMPLES windows of calib.txt.
# Writes docs/GGUF_RESULTS.md.
set -eu
DSQ=${1:-build/dsq}
LL=${2:-build/llama}
M=${DSQ_SHARED:-../shared}/models/tiny-v32
OUT=$(dirname "$DSQ")/gguf-table
SAMPLES=${SAMPLES:-64}
TYPES=${TYPES:-"q4_k_m iq4_xs q4_0 q8_0"}
[ -d "$M" ] || { echo "gguf-table: $M not found"; exit 1; }
[ -x "$LL/llama_logits" ] && [ -x "$LL/llama_quant" ] || { echo "gguf-table: llama.cpp tools not built (make llama)"; exit 1; }
mkdir -p "$OUT"
TOK=$M/eval.tokens.json
PARAMS=8277552
"$DSQ" export "$M" -o "$OUT/f32.gguf" --type f32 --quiet --force > /dev/null
"$LL/llama_logits" "$OUT/f32.gguf" "$TOK" --logits "$OUT/f32.logits" --threads 2 > "$OUT/f32.json"
row() { # name type file: one table row measured by llama.cpp
  j=$("$LL/llama_logits" "$3" "$TOK" --kl "$OUT/f32.logits" --score-from 128 --threads 2)
  python3 - "$1" "$2" "$3" "$j" "$PARAMS" <<'PY'
import json, os, sys
name, t, f, j, p = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), int(sys.argv[5])
b = os.path.getsize(f)
print("| %s | %s | %d | %.3f | %.4f | %.5f | %.4f |" % (t, name, b, b * 8 / p, j["ppl"], j["kl"], j["top1"]))
PY
}
rows=""
for t in $TYPES; do
  "$LL/llama_quant" "$OUT/f32.gguf" "$OUT/llama-$t.gguf" "$t"
  "$DSQ" quant "$M" --preset "$t" -o "$OUT/dsq-$t.gguf" --force --no-error > /dev/null
  for m in mse gptq; do
    "$DSQ" calib "$M" --text "$M/calib.txt" --samples "$SAMPLES" --preset "$t" --method $m -o "$OUT/$t-$m.dsqcal" --force > /dev/null 2>&1
    "$DSQ" quant "$M" --preset "$t" --calib "$OUT/$t-$m.dsqcal" --method $m -o "$OUT/dsq-$m-$t.gguf" --force --no-error > /dev/null
  done
  rows="$rows$(row "llama.cpp" "$t" "$OUT/llama-$t.gguf")
$(row "dsq preset" "$t" "$OUT/dsq-$t.gguf")
$(row "dsq preset, calibrated: mse" "$t" "$OUT/dsq-mse-$t.gguf")
$(row "dsq preset, calibrated: gptq" "$t" "$OUT/dsq-gptq-$t.gguf")
"
done
ref=$(python3 -c "import json;print('%.5f' % json.load(open('$OUT/f32.json'))['ppl'])")
cat > docs/GGUF_RESULTS.md <<MD
# GGUF files of tiny-v32: dsq's presets against llama.cpp's

Produced by \`make gguf-table\` (tools/gguf_table.sh).  Every file is run by llama.cpp's own
prebuilt CPU libraries (tests/llama/, llama.cpp de3ff815ea7d): KL(F32 || file) and top-1 agreement
over positions 128..254 of each of the 298 windows of 256 tokens of eval.tokens.json (as
llama-perplexity scores KL), perplexity over the same positions.  F32 is dsq's F32 export of the
FP8 checkpoint (perplexity $ref over all positions in llama.cpp, the reference's 50.984).  bpw =
whole file bytes x 8 / $PARAMS parameters.  llama.cpp's files are llama_model_quantize of that F32
export without an importance matrix; dsq's calibrated files use $SAMPLES windows of calib.txt
(\`dsq calib --preset T --method M\`, then \`dsq quant --preset T --calib CAL --method M\`).

| type | made by | bytes | bpw | ppl | mean KL | top-1 |
|---|---|---|---|---|---|---|
$rows
llama.cpp with an importance matrix, on the same model (its figures): Q4_K_M KL 0.00676 at 5.60 bpw,
IQ4_XS 0.00761 at 4.79 bpw.

What the presets do (docs/RECIPES.md): llama.cpp's per-tensor policy for these architectures,
plus the indexer's q_b and k at Q8_0 and its weights_proj in F32, the dense FFN layers one type
up, a Q6_K ffn_down whose rows are not 256-multiples at Q5_1 rather than Q8_0; the bits this costs
are paid by moving routed experts' gate, then up, of middle MoE layers one type down until the tensors
take no more bytes than llama.cpp's policy gives them.  Calibrated, per routed expert: mse weights
every block search by the input's per-channel mean square (what llama.cpp's importance matrix
does); gptq quantizes the columns in order on the block grids with the input's Hessian,
compensating each rounding error in the columns not yet quantized, each block's scales chosen
from the error-updated weights as its first column is reached.
MD
echo "wrote docs/GGUF_RESULTS.md"
