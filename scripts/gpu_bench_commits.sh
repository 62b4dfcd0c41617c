#!/usr/bin/env bash
# Decode speed of several commits on one GPU machine, in one run (bisecting a regression
# needs them side by side: H100 machines differ by a few percent from one lease to the
# next).
#
# Here (where git is):   scripts/gpu_bench_commits.sh prepare SHA [SHA...]
#   writes gpu_commits/<sha>/ (git archive of each; git-ignored: name it in the device
#   run's carry list)
# On the device machine: scripts/gpu_bench_commits.sh run [MODEL...]
#   builds every gpu_commits/* (in parallel) and this tree, generates the models if missing
#   (default: llama2-7b Q4_K_M and tinyllama Q4_K_M; vocab from gpu_vocab/), then runs
#   `chord bench -m MODELS -p 0 -n 128 -r 3` twice per build, alternating builds.
set -u -o pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
mode=${1:-}
shift || true

case $mode in
prepare)
    [ $# -gt 0 ] || { echo "usage: $0 prepare SHA [SHA...]"; exit 2; }
    for c in "$@"; do
        sha=$(git rev-parse --short "$c") || exit 1
        rm -rf "gpu_commits/$sha"
        mkdir -p "gpu_commits/$sha"
        git archive "$sha" | tar -x -C "gpu_commits/$sha" || exit 1
        echo "gpu_commits/$sha"
    done
    ;;
run)
    JOBS=$(nproc 2>/dev/null || echo 8)
    MODELDIR=${MODELDIR:-/tmp/chord_models}
    mkdir -p "$MODELDIR"
    builds=()
    build_one() { # source dir, build dir, jobs; log in /tmp/<build dir name>.log
        local log="/tmp/$(basename "$2").log"
        cmake -S "$1" -B "$2" -G Ninja -DCHORD_CUDA=ON -DCMAKE_BUILD_TYPE=Release \
            -DCMAKE_C_FLAGS=-Wno-error=format-truncation -DCMAKE_CUDA_ARCHITECTURES=OFF \
            > "$log" 2>&1 && ninja -C "$2" -j "$3" chord_cli >> "$log" 2>&1
    }
    shopt -s nullglob
    n=$(ls -d gpu_commits/*/ 2>/dev/null | wc -l)
    per=$(( JOBS / (n + 1) )); [ "$per" -ge 2 ] || per=2
    pids=()
    for d in gpu_commits/*/; do
        sha=$(basename "$d")
        build_one "$d" "/tmp/build-$sha" "$per" & pids+=($!)
        builds+=("$sha:/tmp/build-$sha/chord")
    done
    build_one "$ROOT" "$ROOT/build-gpu" "$per" & pids+=($!)
    builds+=("this:$ROOT/build-gpu/chord")
    for p in "${pids[@]}"; do wait "$p" || echo "a build failed (see /tmp/build-*.log)"; done
    models=("$@")
    if [ ${#models[@]} -eq 0 ]; then
        VOCAB=$(ls gpu_vocab/ggml-vocab-llama-spm.gguf 2>/dev/null | head -n 1)
        gen=$ROOT/build-gpu/chord
        [ -s "$MODELDIR/llama2-7b-Q4_K_M.gguf" ] || "$gen" genmodel llama2-7b Q4_K_M \
            "$MODELDIR/llama2-7b-Q4_K_M.gguf" --vocab "$VOCAB" -t "$JOBS" > /dev/null
        [ -s "$MODELDIR/tinyllama-Q4_K_M.gguf" ] || "$gen" genmodel tinyllama-1.1b Q4_K_M \
            "$MODELDIR/tinyllama-Q4_K_M.gguf" --vocab "$VOCAB" -t "$JOBS" > /dev/null
        models=("$MODELDIR/llama2-7b-Q4_K_M.gguf" "$MODELDIR/tinyllama-Q4_K_M.gguf")
    fi
    list=$(IFS=,; echo "${models[*]}")
    for round in 1 2; do
        for b in "${builds[@]}"; do
            name=${b%%:*}; bin=${b#*:}
            [ -x "$bin" ] || { echo "$name: no binary"; continue; }
            echo "== $name (round $round)"
            "$bin" bench -m "$list" -p 0 -n 128 -r 3 2>&1 | grep tg128
        done
    done
    ;;
*)
    echo "usage: $0 prepare SHA [SHA...] | run [MODEL...]"
    exit 2
    ;;
esac
