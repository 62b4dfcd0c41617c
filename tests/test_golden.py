"""Golden logits: every ../shared/golden model through `chord logits`, in one batch and
token by token through the KV cache, against llama.cpp's logits (tolerances from
shared/golden/README.md), for every CPU instruction set this machine has.

With CHORD_CPU_EXACT=1 (the exact kernels, llama.cpp's float order) it also holds the
bit-exact property: every quantized type gives llama.cpp's logits exactly (rel_l2 0), and
every instruction set gives the same bits as the first one run. Without it the kernels may
take a faster float order (AVX-512 Q8_0 prefill), held to the README's tolerances."""
import os
import subprocess
import sys
import tempfile

import numpy as np

BIN = os.environ["CHORD_BIN"]
GOLDEN = os.path.join(os.environ["CHORD_SHARED"], "golden")
TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
         "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q4_K_M"]
TOL = {"F32": 1e-4, "F16": 1e-3, "BF16": 5e-3}
# Known misses, reported on every run (not counted as passes). Remove an entry once the
# type matches: the test then holds it to the full check again.
KNOWN = {}
EXACT = os.environ.get("CHORD_CPU_EXACT", "") not in ("", "0")


def isas():
    """Instruction sets to force (CHORD_ISA); the kernels report what the CPU has."""
    out = subprocess.run([BIN, "bench", "--isa-list"], capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout.strip():
        return [None]
    names = out.stdout.split()
    # the sanitizer run checks memory safety of the best ISA only (time)
    return names[-1:] if os.environ.get("CHORD_TEST_QUICK") else names


def run(model, tokens, out, step, isa, extra=()):
    env = dict(os.environ)
    if isa:
        env["CHORD_ISA"] = isa
    cmd = [BIN, "logits", "-m", model, "--tokens", tokens, "-o", out, "-ngl", "0", *extra]
    if step:
        cmd.append("--step")
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr.strip()}")
    return np.fromfile(out, dtype=np.float32)


def main():
    tokens = os.path.join(GOLDEN, "tokens.txt")
    n_tok = len(open(tokens).read().split())
    passed = failed = xfail = 0
    first = {}  # (type, step) -> the first ISA's logits (exact mode)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.bin")
        for isa in isas():
            for t in TYPES:
                model = os.path.join(GOLDEN, f"dev-{t}.gguf")
                ref = np.fromfile(os.path.join(GOLDEN, f"dev-{t}.logits"), dtype=np.float32)
                ref = ref.reshape(n_tok, -1)
                for step in (False, True):
                    name = f"{isa or 'default'} {t} {'step' if step else 'batch'}"
                    try:
                        got = run(model, tokens, out, step, isa).reshape(n_tok, -1)
                    except RuntimeError as e:
                        print(f"FAIL {name}: {e}")
                        failed += 1
                        continue
                    err = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
                    tol = TOL.get(t, 1e-2)
                    agree = int((got.argmax(1) == ref.argmax(1)).sum())
                    ok = err <= tol and agree == n_tok
                    note = ""
                    if EXACT:
                        if t not in TOL and err != 0.0:
                            ok, note = False, "  [exact: not llama.cpp's bits]"
                        prev = first.setdefault((t, step), got)
                        if prev is not got and not np.array_equal(prev.view(np.uint32),
                                                                  got.view(np.uint32)):
                            ok, note = False, note + "  [exact: differs from the first ISA]"
                    known = not ok and t in KNOWN and err <= tol
                    tag = "ok  " if ok else ("XFAIL" if known else "FAIL")
                    print(f"{tag} {name:28s} rel_l2 {err:.2e} (tol {tol:.0e}) "
                          f"argmax {agree}/{n_tok}"
                          + (f"  [known: {KNOWN[t]}]" if known else "") + note)
                    if known:
                        xfail += 1
                    else:
                        passed += ok
                        failed += not ok
    if xfail:
        print(f"{xfail} known misses (XFAIL above) are not counted as passes")
    print(f"{passed} passed, {failed} failed" + (f", {xfail} skipped" if xfail else "")
          + (" (CHORD_CPU_EXACT: bit-exact)" if EXACT else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
