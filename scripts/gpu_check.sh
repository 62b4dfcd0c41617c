#!/usr/bin/env bash
# Builds chord with CUDA and runs every GPU check on a machine with an NVIDIA GPU:
#   ops        tests/test_gpu_ops (every backend op against the CPU backend)
#   golden     tests/test_gpu_golden.py (golden logits, all layers / -ngl 1, batch / step)
#   sanitizer  compute-sanitizer memcheck over `chord logits` on one small golden file
#   bench      tests/tool_gpu_bench (decode GB/s per type, prefill TFLOP/s, attention)
# Usage: scripts/gpu_check.sh [part...]   (default: all parts, in that order)
# Golden files: gpu_data/ (copied there from ../shared/golden, git-ignored) or
# $CHORD_SHARED/golden. Logs go to $OUT (or build-gpu/) when set.
set -u -o pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${BUILD:-build-gpu}
OUTDIR=${OUT:-$ROOT/$BUILD}
mkdir -p "$OUTDIR"
PARTS=${*:-ops golden sanitizer bench}
JOBS=$(nproc 2>/dev/null || echo 4)
status=0
summary=()

note() { echo "== $*"; }
result() { summary+=("$1: $2"); [ "$2" = ok ] || status=1; }

note "machine"
nvidia-smi -L || true
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv || true

note "build ($BUILD)"
t0=$(date +%s)
# Workarounds (reported): devices.c trips -Wformat-truncation with CUDA on, and
# CMakeLists.txt sets CMAKE_CUDA_ARCHITECTURES after creating the target (newer CMake
# then stops with "CUDA_ARCHITECTURES is empty"); the -gencode flags choose the targets.
if cmake -S . -B "$BUILD" -G Ninja -DCHORD_CUDA=ON -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_C_FLAGS=-Wno-error=format-truncation -DCMAKE_CUDA_ARCHITECTURES=OFF > "$OUTDIR/cmake.log" 2>&1 &&
    ninja -C "$BUILD" -j "$JOBS" chord_cli test_gpu_ops tool_gpu_bench 2>&1 | tail -n 30; then
    result build ok
else
    tail -n 40 "$OUTDIR/cmake.log"
    result build FAILED
    printf '%s\n' "${summary[@]}"
    exit 1
fi
echo "build took $(( $(date +%s) - t0 )) s"

export CHORD_BIN="$ROOT/$BUILD/chord" CHORD_BUILD="$ROOT/$BUILD" CHORD_SOURCE="$ROOT"
export CHORD_SHARED="${CHORD_SHARED:-$ROOT/../shared}"
export PYTHONUNBUFFERED=1

for part in $PARTS; do
    t0=$(date +%s)
    case $part in
    ops)
        note "test_gpu_ops"
        if timeout 300 "$BUILD/tests/test_gpu_ops"; then result ops ok; else result ops FAILED; fi
        ;;
    golden)
        note "test_gpu_golden.py"
        if timeout 300 python3 tests/test_gpu_golden.py; then result golden ok; else result golden FAILED; fi
        ;;
    sanitizer)
        note "compute-sanitizer memcheck"
        SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
        model=$(ls gpu_data/dev-Q4_K_M.gguf "$CHORD_SHARED"/golden/dev-Q4_K_M.gguf 2>/dev/null | head -n 1)
        if [ ! -x "$SAN" ] || [ -z "$model" ]; then
            echo "sanitizer or model missing"; result sanitizer FAILED
        else
            toks="$(dirname "$model")/tokens.txt"
            ok=1
            for extra in "" "--step" "-ngl 1"; do
                echo "-- chord logits $extra"
                # shellcheck disable=SC2086
                timeout 300 "$SAN" --tool memcheck --leak-check full --error-exitcode 9 \
                    "$CHORD_BIN" logits -m "$model" --tokens "$toks" -o "$OUTDIR/san.logits" $extra \
                    2>&1 | tail -n 15 || ok=0
            done
            if [ $ok = 1 ]; then result sanitizer ok; else result sanitizer FAILED; fi
        fi
        ;;
    bench)
        note "tool_gpu_bench"
        if timeout 400 "$BUILD/tests/tool_gpu_bench"; then result bench ok; else result bench FAILED; fi
        ;;
    *)
        echo "unknown part '$part'"; status=1
        ;;
    esac
    echo "($part took $(( $(date +%s) - t0 )) s)"
done

note "summary"
printf '%s\n' "${summary[@]}"
exit $status
