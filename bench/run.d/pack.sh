# pack / unpack / check of a pack archive (packaging issue): the bench-1b
# BF16 checkpoint stored losslessly in one container (~1.66 GB), kept in
# $DATA between runs
make -s "$B/bench/pack_bench" >/dev/null
if [ ! -f "$DATA/bench-1b-bf16.dsq" ]; then
  "$DSQ" convert "$DATA/bench-1b-bf16" -o "$DATA/bench-1b-bf16.dsq" --quiet --force
fi
echo "== pack / unpack (bench-1b bf16 container, plain tar and zstd)"
"$B/bench/pack_bench" "$DATA/bench-1b-bf16.dsq" "$DATA"
