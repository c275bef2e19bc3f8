#!/bin/sh
# fetch.sh DIR -- llama.cpp's prebuilt CPU libraries and the exact source
# they were built from, for the tests that check dsq's GGUF files against
# the real llama.cpp.
#
# Both come from npm, as node-llama-cpp ships them:
#   @node-llama-cpp/linux-x64@3.22.1  bins/linux-x64/libllama*.so, libggml*.so
#   node-llama-cpp@3.22.1             llama/gitRelease.bundle: a git bundle of
#                                     llama.cpp at commit de3ff815ea7d
# Leaves DIR/bins/linux-x64/*.so and DIR/llama.cpp/ (a clone of the bundle,
# for include/llama.h and ggml/include/*.h).
#
# Idempotent: a DIR that already holds both is left alone (exit 0 at once).
# Exit status: 0 ready, 77 npm or the packages cannot be reached (the
# tests that need them are then skipped), 1 anything else went wrong.
# An unreachable registry is remembered for an hour in DIR/.unreachable, so
# `make test` does not wait for npm's timeouts on every run; remove that file
# to try again sooner.
set -eu

VER=3.22.1
COMMIT=de3ff815ea7d

if [ $# -ne 1 ]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
DIR=$1

ready() {
    ls "$DIR"/bins/linux-x64/libllama*.so >/dev/null 2>&1 &&
        ls "$DIR"/bins/linux-x64/libggml-base*.so >/dev/null 2>&1 &&
        [ -f "$DIR/llama.cpp/include/llama.h" ] &&
        [ -f "$DIR/llama.cpp/ggml/include/gguf.h" ]
}
if ready; then exit 0; fi
if [ -n "$(find "$DIR/.unreachable" -mmin -60 2>/dev/null)" ]; then
    echo "fetch.sh: npm was unreachable at $(cat "$DIR/.unreachable"); remove $DIR/.unreachable to retry" >&2
    exit 77
fi

[ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] || { echo "fetch.sh: linux-x64 only" >&2; exit 77; }
command -v npm >/dev/null 2>&1 || { echo "fetch.sh: npm not found" >&2; exit 77; }
command -v git >/dev/null 2>&1 || { echo "fetch.sh: git not found" >&2; exit 77; }

mkdir -p "$DIR"
# Work in a scratch folder inside DIR and move the results into place last,
# so an interrupted run never leaves a half-unpacked DIR that looks ready.
tmp=$(mktemp -d "$DIR/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# One retry and a 2-minute cap per request: a machine without the registry
# gives up in minutes, not in npm's default quarter of an hour.
pack() { # pack SPEC -> tarball name on stdout; 77 when npm cannot reach it
    if ! (cd "$tmp" && npm pack --loglevel=error --fetch-retries=1 --fetch-retry-mintimeout=2000 \
              --fetch-retry-maxtimeout=10000 --fetch-timeout=120000 "$1" >npm.out 2>npm.err); then
        echo "fetch.sh: npm pack $1 failed:" >&2
        sed -n '1,5p' "$tmp/npm.err" >&2
        date >"$DIR/.unreachable"
        exit 77
    fi
    tail -n 1 "$tmp/npm.out"
}

bins=$(pack "@node-llama-cpp/linux-x64@$VER")
src=$(pack "node-llama-cpp@$VER")

mkdir "$tmp/bins" "$tmp/src"
tar -xzf "$tmp/$bins" -C "$tmp/bins"
tar -xzf "$tmp/$src" -C "$tmp/src" package/llama/gitRelease.bundle
ls "$tmp"/bins/package/bins/linux-x64/libllama*.so >/dev/null 2>&1 || {
    echo "fetch.sh: $bins has no bins/linux-x64/libllama*.so" >&2
    exit 1
}
git clone --quiet "$tmp/src/package/llama/gitRelease.bundle" "$tmp/llama.cpp" 2>"$tmp/git.err" || {
    cat "$tmp/git.err" >&2
    exit 1
}
head=$(git -C "$tmp/llama.cpp" rev-parse HEAD)
case $head in
    $COMMIT*) ;;
    *) echo "fetch.sh: bundle is at $head, expected $COMMIT" >&2; exit 1 ;;
esac

# another fetch into the same DIR may have finished meanwhile
if ready; then exit 0; fi
rm -rf "$DIR/bins" "$DIR/llama.cpp" "$DIR/.unreachable"
mkdir -p "$DIR/bins"
mv "$tmp/bins/package/bins/linux-x64" "$DIR/bins/linux-x64"
mv "$tmp/llama.cpp" "$DIR/llama.cpp"
ready || { echo "fetch.sh: $DIR incomplete after unpacking" >&2; exit 1; }
exit 0
