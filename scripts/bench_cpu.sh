#!/usr/bin/env bash
# Builds TinyLlama-1.1B-shaped random-weight models (once) and runs `chord bench` on
# them: the CPU table of docs/PERFORMANCE.md. Usage: scripts/bench_cpu.sh [BUILD] [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
DIR=${2:-bench-models}
TYPES=${TYPES:-"Q4_K_M Q5_K_M Q6_K Q8_0 Q4_0 F16"}
THREADS=${THREADS:-2}
VOCAB=${CHORD_SHARED:-../shared}/vocab/ggml-vocab-llama-spm.gguf
mkdir -p "$DIR"
models=()
for t in $TYPES; do
  f="$DIR/tinyllama-$t.gguf"
  [ -f "$f" ] || "$BUILD/chord" genmodel tinyllama-1.1b "$t" "$f" --vocab "$VOCAB" >/dev/null
  models+=("$f")
done
echo "# $(date -u +%F) $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
"$BUILD/chord" bench -m "$(IFS=,; echo "${models[*]}")" -p "${PP:-512}" -n "${TG:-128}" -t "$THREADS" -r "${REPS:-3}" -ngl 0
"$BUILD/chord" bench --kernels -t "$THREADS"
