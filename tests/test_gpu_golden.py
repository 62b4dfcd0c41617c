#!/usr/bin/env python3
"""Golden logits on the GPU: `chord logits` with every layer on the GPU (one batch and
token by token through the KV cache) and with only the first layer there (-ngl 1: the
residual stream moves to the CPU mid-model), for every dev-TYPE.gguf found in
$CHORD_SOURCE/gpu_data or $CHORD_SHARED/golden, compared with its .logits file:
relative L2 error under the type's tolerance and the same argmax in every row.
Without a CUDA device (or a CUDA build) it prints "skipped: ..." and passes."""
import array
import glob
import math
import os
import subprocess
import sys
import tempfile

TOL = {"F32": 1e-4, "F16": 1e-3, "BF16": 5e-3}  # every quantized type: 1e-2


def has_cuda_device():
    try:
        r = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0 and "GPU" in r.stdout


def built_with_cuda(build, source):
    try:
        with open(os.path.join(build, "CMakeCache.txt")) as f:
            cache = f.read()
    except OSError:
        return False
    return "CHORD_CUDA:BOOL=ON" in cache and glob.glob(os.path.join(source, "src", "cuda", "*.cu"))


def read_floats(path):
    a = array.array("f")
    with open(path, "rb") as f:
        a.frombytes(f.read())
    if sys.byteorder != "little":
        a.byteswap()
    return a


def compare(ours, ref, n_vocab):
    num = sum((x - y) * (x - y) for x, y in zip(ours, ref))
    den = sum(y * y for y in ref)
    err = math.sqrt(num / den) if den > 0 else math.sqrt(num)
    if any(math.isnan(x) for x in ours):
        err = float("inf")
    rows = len(ref) // n_vocab
    agree = 0
    for r in range(rows):
        o = ours[r * n_vocab:(r + 1) * n_vocab]
        g = ref[r * n_vocab:(r + 1) * n_vocab]
        agree += max(range(n_vocab), key=o.__getitem__) == max(range(n_vocab), key=g.__getitem__)
    return err, agree, rows


def main():
    if not has_cuda_device():
        print("skipped: no CUDA device")
        return 0
    chord = os.environ.get("CHORD_BIN", "")
    build = os.environ.get("CHORD_BUILD", "")
    source = os.environ.get("CHORD_SOURCE", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    shared = os.environ.get("CHORD_SHARED", os.path.join(source, "..", "shared"))
    if not chord or not os.path.exists(chord):
        print("FAIL: CHORD_BIN not set or missing")
        return 1
    if not built_with_cuda(build, source):
        print("skipped: chord built without CUDA")
        return 0
    tool = os.path.join(build, "tests", "tool_gpu_bench")

    models = {}
    for d in (os.path.join(source, "gpu_data"), os.path.join(shared, "golden")):
        for g in sorted(glob.glob(os.path.join(d, "dev-*.gguf"))):
            name = os.path.basename(g)[4:-5]
            logits = g[:-5] + ".logits"
            tokens = os.path.join(d, "tokens.txt")
            if name not in models and os.path.exists(logits) and os.path.exists(tokens):
                models[name] = (g, logits, tokens)
    if not models:
        print("skipped: no golden files (gpu_data/ or $CHORD_SHARED/golden)")
        return 0
    only = os.environ.get("CHORD_GOLDEN_ONLY")  # e.g. "Q4_K,F16"
    if only:
        models = {k: v for k, v in models.items() if k in only.split(",")}

    modes = [("gpu", []), ("gpu-step", ["--step"]), ("ngl1", ["-ngl", "1"]),
             ("ngl1-step", ["-ngl", "1", "--step"])]
    failures = 0
    tmp = tempfile.mkdtemp(prefix="chord_gpu_golden_")
    print(f"{'model':10} {'mode':10} {'rel err':>9} {'tol':>7} argmax")
    for name, (gguf, ref_path, tokens) in sorted(models.items()):
        ref = read_floats(ref_path)
        n_tok = len(open(tokens).read().split())
        n_vocab = len(ref) // n_tok
        tol = TOL.get(name, 1e-2)
        # the GPU must really run it
        for ngl, want in ((None, "cuda"), ("1", "1/")):
            args = [tool, "--backend", gguf] + ([ngl] if ngl else [])
            r = subprocess.run(args, capture_output=True, text=True)
            desc = r.stdout.strip().replace("\n", "; ")
            if r.returncode != 0 or "cuda" not in r.stdout or want not in r.stdout:
                print(f"FAIL {name}: -ngl {ngl or 'default'} does not run on the GPU: {desc} {r.stderr.strip()}")
                failures += 1
        for mode, extra in modes:
            out = os.path.join(tmp, f"{name}-{mode}.logits")
            cmd = [chord, "logits", "-m", gguf, "--tokens", tokens, "-o", out] + extra
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                print(f"FAIL {name} {mode}: exit {r.returncode}: {r.stderr.strip()[-400:]}")
                failures += 1
                continue
            ours = read_floats(out)
            if len(ours) != len(ref):
                print(f"FAIL {name} {mode}: {len(ours)} floats, expected {len(ref)}")
                failures += 1
                continue
            err, agree, rows = compare(ours, ref, n_vocab)
            ok = err < tol and agree == rows
            failures += not ok
            print(f"{name:10} {mode:10} {err:9.2e} {tol:7.0e} {agree}/{rows} {'ok' if ok else 'FAIL'}", flush=True)
    print(f"test_gpu_golden: {len(models)} models, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
