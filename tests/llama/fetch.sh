#!/bin/sh
# fetch.sh DIR -- llama.cpp's own prebuilt CPU libraries and the exact source
# they were built from, for the tests that compare dsq with llama.cpp.
#
#   DIR/bins/linux-x64/*.so   from npm @node-llama-cpp/linux-x64@3.22.1
#                             (libggml-base.so, libggml-cpu-*.so, libllama...)
#   DIR/llama.cpp/            a checkout of the one commit in
#                             node-llama-cpp@3.22.1's llama/gitRelease.bundle
#                             (llama.cpp "0.5.0-dev", commit de3ff815ea7d)
#
# Exit status: 0 when both are in place (at once if an earlier run finished),
# 77 when npm, git or the packages cannot be reached (callers count the test
# as skipped), 1 on any other failure.  DSQ_NO_NETWORK=1 forces 77 unless the
# files are already there.  Safe to run twice at once: each run works in its
# own temporary folder and the first to finish moves its result into place.
set -u
VER=3.22.1
COMMIT=de3ff815ea7d
dir=${1:?usage: fetch.sh DIR}
stamp="$dir/.fetched-$VER"

[ -f "$stamp" ] && exit 0
if [ "${DSQ_NO_NETWORK:-0}" = 1 ]; then
  echo "fetch.sh: DSQ_NO_NETWORK=1 and $dir is not populated" >&2
  exit 77
fi
for tool in npm tar git; do
  command -v "$tool" >/dev/null 2>&1 || { echo "fetch.sh: $tool not found" >&2; exit 77; }
done
mkdir -p "$dir" || exit 1
tmp=$(mktemp -d "$dir/.fetch.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM

# Short timeouts and one retry: an offline machine should skip quickly, not
# wait out npm's defaults.
if ! (cd "$tmp" && npm pack --fetch-retries=1 --fetch-timeout=60000 \
        "@node-llama-cpp/linux-x64@$VER" "node-llama-cpp@$VER") >"$tmp/npm.log" 2>&1; then
  echo "fetch.sh: npm pack failed (registry unreachable?):" >&2
  tail -n 3 "$tmp/npm.log" >&2
  exit 77
fi
bins_tgz="$tmp/node-llama-cpp-linux-x64-$VER.tgz"
src_tgz="$tmp/node-llama-cpp-$VER.tgz"
[ -f "$bins_tgz" ] && [ -f "$src_tgz" ] || { echo "fetch.sh: npm pack wrote no tarballs" >&2; exit 77; }

mkdir -p "$tmp/b" "$tmp/s" || exit 1
tar -xzf "$bins_tgz" -C "$tmp/b" package/bins/linux-x64 || { echo "fetch.sh: bad $bins_tgz" >&2; exit 1; }
tar -xzf "$src_tgz" -C "$tmp/s" package/llama/gitRelease.bundle || { echo "fetch.sh: bad $src_tgz" >&2; exit 1; }
[ -f "$tmp/b/package/bins/linux-x64/libggml-base.so" ] || { echo "fetch.sh: no libggml-base.so in the package" >&2; exit 1; }
git clone -q "$tmp/s/package/llama/gitRelease.bundle" "$tmp/llama.cpp" 2>"$tmp/git.log" || {
  echo "fetch.sh: git clone of the bundle failed:" >&2; tail -n 3 "$tmp/git.log" >&2; exit 1; }
head=$(git -C "$tmp/llama.cpp" rev-parse HEAD) || exit 1
case "$head" in
  "$COMMIT"*) ;;
  *) echo "fetch.sh: bundle commit is $head, expected $COMMIT" >&2; exit 1 ;;
esac

[ -f "$stamp" ] && exit 0 # another run finished meanwhile
rm -rf "$dir/bins" "$dir/llama.cpp"
mv "$tmp/b/package/bins" "$dir/bins" && mv "$tmp/llama.cpp" "$dir/llama.cpp" || exit 1
echo "$VER $head" >"$stamp" || exit 1
exit 0
