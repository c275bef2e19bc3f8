# Hugging Face folder outputs (compressed-tensors, DeepSeek's FP8) on
# bench-1b: wall time against cp -r of the source folder (the I/O floor)
# and peak RSS, for the three jobs people run: the FP8 checkpoint
# re-expressed as compressed-tensors (a copy), W4A16 of every projection
# into a folder, and the BF16 twin into DeepSeek's FP8 layout; then the
# compressed-tensors folder read back (dsq convert to .dsq).
[ -x /usr/bin/time ] || { echo "== hf: /usr/bin/time absent, skipped"; return 0 2>/dev/null || exit 0; }
echo "== Hugging Face folders, bench-1b (2 threads)"
rm -rf "$DATA/hf-floor"
cat "$DATA"/bench-1b/*.safetensors > /dev/null
t0=$(date +%s.%N); cp -r "$DATA/bench-1b" "$DATA/hf-floor"; sync; t1=$(date +%s.%N)
awk -v a="$t0" -v b="$t1" 'BEGIN { printf "cp -r of the FP8 folder (floor): %.2f s\n", b - a }'
rm -rf "$DATA/hf-floor"
/usr/bin/time -f "export --to compressed-tensors (FP8 blocks copied): %e s, peak RSS %M KiB" \
    "$DSQ" export "$DATA/bench-1b" -o "$DATA/hf-ct" --to ct --threads 2 --force --quiet > /dev/null
/usr/bin/time -f "quant --preset w4a16 -o DIR/: %e s, peak RSS %M KiB" \
    "$DSQ" quant "$DATA/bench-1b" --preset w4a16 -o "$DATA/hf-w4a16/" --threads 2 --force --no-error --quiet > /dev/null
/usr/bin/time -f "export BF16 --to hf (power-of-two FP8 blocks): %e s, peak RSS %M KiB" \
    "$DSQ" export "$DATA/bench-1b-bf16" -o "$DATA/hf-fp8" --to hf --threads 2 --force --quiet > /dev/null
/usr/bin/time -f "convert of the W4A16 folder to .dsq (reading compressed-tensors): %e s, peak RSS %M KiB" \
    "$DSQ" convert "$DATA/hf-w4a16" -o "$DATA/hf-w4a16.dsq" --threads 2 --force --quiet > /dev/null
du -sh "$DATA/bench-1b" "$DATA/hf-ct" "$DATA/hf-w4a16" "$DATA/hf-fp8" | awk '{print $1, $2}'
rm -rf "$DATA/hf-ct" "$DATA/hf-w4a16" "$DATA/hf-fp8" "$DATA/hf-w4a16.dsq"
