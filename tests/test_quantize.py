"""chord quantize / chord genmodel against llama.cpp's quantizations of the golden model.

For every type T, dev-F32.gguf is quantized by chord (--pure, as the golden files were,
except the Q4_K_M mix) and evaluated with `chord logits`; its logit error relative to
dev-F32.logits (||ours - f32|| / ||f32|| over [24][512]) must be at most 1.1x that of
llama.cpp's own dev-T.logits. When numpy and the `gguf` package are importable, the
weight error (relative RMSE over all matrices vs the F32 weights) is compared with the
golden dev-T.gguf's as well (at most 1.02x). Then `chord genmodel dev Q4_K_M` must
write a file that `chord info` and `chord logits` accept.
"""
import array
import math
import os
import subprocess
import sys
import tempfile
import time

BIN = os.environ.get("CHORD_BIN")
SHARED = os.environ.get("CHORD_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
GOLDEN = os.path.join(SHARED, "golden")
VOCAB = os.path.join(SHARED, "vocab", "ggml-vocab-llama-spm.gguf")
TYPES = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q4_K_M"]
MAX_RATIO = 1.1
MAX_WEIGHT_RATIO = 1.02


def run(args, timeout=120):
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return p.stdout


def read_f32(path):
    a = array.array("f")
    with open(path, "rb") as f:
        a.frombytes(f.read())
    if sys.byteorder != "little":
        a.byteswap()
    return a


def rel_err(a, ref):
    if len(a) != len(ref):
        raise RuntimeError(f"logit count {len(a)} != {len(ref)}")
    num = sum((x - y) * (x - y) for x, y in zip(a, ref))
    den = sum(y * y for y in ref)
    return math.sqrt(num / den)


def weight_errors():
    """{path: rel RMSE over 2-D tensors vs dev-F32} when numpy + gguf exist, else None."""
    try:
        import numpy as np
        import gguf
    except Exception:
        return None

    def mats(path):
        r = gguf.GGUFReader(path)
        out = {}
        for t in r.tensors:
            if len(t.shape) < 2:
                continue
            out[t.name] = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float64).reshape(-1)
        return out

    ref = mats(os.path.join(GOLDEN, "dev-F32.gguf"))

    def err(path):
        m = mats(path)
        num = sum(float(((m[k] - v) ** 2).sum()) for k, v in ref.items())
        den = sum(float((v**2).sum()) for v in ref.values())
        return math.sqrt(num / den)

    return err


def main():
    if not BIN or not os.path.exists(BIN):
        print("skipped: CHORD_BIN not set")
        return 0
    if not os.path.exists(os.path.join(GOLDEN, "dev-F32.gguf")):
        print(f"skipped: no golden models in {GOLDEN}")
        return 0
    t0 = time.time()
    tokens = os.path.join(GOLDEN, "tokens.txt")
    ref = read_f32(os.path.join(GOLDEN, "dev-F32.logits"))
    werr = weight_errors()
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'type':7} {'llama.cpp':>10} {'chord':>10} {'ratio':>6}   {'w llama.cpp':>11} {'w chord':>9} {'ratio':>6}")
        for t in TYPES:
            out = os.path.join(tmp, f"dev-{t}.gguf")
            args = [BIN, "quantize", os.path.join(GOLDEN, "dev-F32.gguf"), out, t, "-t", "2"]
            if t != "Q4_K_M":
                args.append("--pure")
            run(args)
            lg = os.path.join(tmp, f"dev-{t}.logits")
            run([BIN, "logits", "-m", out, "--tokens", tokens, "-o", lg, "-ngl", "0"])
            ours = rel_err(read_f32(lg), ref)
            theirs = rel_err(read_f32(os.path.join(GOLDEN, f"dev-{t}.logits")), ref)
            ratio = ours / theirs
            line = f"{t:7} {theirs:10.5f} {ours:10.5f} {ratio:6.3f}"
            if ratio > MAX_RATIO:
                failures.append(f"{t}: logit error {ours:.5f} is {ratio:.3f}x llama.cpp's {theirs:.5f}")
            if werr:
                wt = werr(os.path.join(GOLDEN, f"dev-{t}.gguf"))
                wo = werr(out)
                line += f"   {wt:11.5f} {wo:9.5f} {wo / wt:6.3f}"
                if wo / wt > MAX_WEIGHT_RATIO:
                    failures.append(f"{t}: weight error {wo:.5f} is {wo / wt:.3f}x llama.cpp's {wt:.5f}")
            print(line, flush=True)
            os.remove(out)

        # genmodel: the dev shape as Q4_K_M, readable by info and logits
        if os.path.exists(VOCAB):
            gm = os.path.join(tmp, "gen-dev-Q4_K_M.gguf")
            run([BIN, "genmodel", "dev", "Q4_K_M", gm, "--vocab", VOCAB, "--seed", "7", "-t", "2"])
            info = run([BIN, "info", gm])
            for want in ("llama", "32000 tokens", "Q4_K", "Q6_K", "n_layer        2"):
                if want not in info:
                    failures.append(f"genmodel: 'chord info' output lacks '{want}':\n{info}")
            lg = os.path.join(tmp, "gen.logits")
            run([BIN, "logits", "-m", gm, "--tokens", tokens, "-o", lg, "-ngl", "0"])
            vals = read_f32(lg)
            if len(vals) != 24 * 32000 or not all(math.isfinite(v) for v in vals[:32000 * 2]):
                failures.append(f"genmodel: logits of the generated model are not 24 x 32000 finite values")
            # deterministic: same seed, same bytes (with another thread count)
            gm2 = os.path.join(tmp, "gen2.gguf")
            run([BIN, "genmodel", "dev", "Q4_K_M", gm2, "--vocab", VOCAB, "--seed", "7", "-t", "1"])
            with open(gm, "rb") as a, open(gm2, "rb") as b:
                if a.read() != b.read():
                    failures.append("genmodel: same seed gave different files with -t 2 and -t 1")
            print("genmodel dev Q4_K_M: ok" if not any(f.startswith("genmodel") for f in failures) else "genmodel: FAILED")
        else:
            print(f"genmodel: skipped (no {VOCAB})")

    print(f"({time.time() - t0:.1f} s)")
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
