#!/usr/bin/env bash
# Installs what chord needs to build and test, idempotently: Debian packages and the
# Python packages the tests use as oracles (never at run time).
set -euo pipefail
need_apt=()
for p in cmake ninja-build gcc g++ clang libclang-rt-14-dev python3 unzip; do
  dpkg -s "$p" >/dev/null 2>&1 || need_apt+=("$p")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi
py_missing=$(python3 - <<'PY'
import importlib.util
mods = {"gguf": "gguf", "numpy": "numpy", "tokenizers": "tokenizers", "jinja2": "Jinja2"}
print(" ".join(p for m, p in mods.items() if importlib.util.find_spec(m) is None))
PY
)
if [ -n "$py_missing" ]; then
  echo "setup: installing Python packages: $py_missing"
  python3 -m pip install -q $py_missing
fi
