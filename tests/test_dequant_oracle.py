"""Bit-exact check of chord's scalar reference dequantizers against the `gguf` Python
package (gguf-py, maintained with llama.cpp), on every golden dev-*.gguf model.

For each file: tests/tool_dequant writes every tensor as float32; gguf-py dequantizes
the same tensor; the float32 bit patterns must be identical (a NaN matches any NaN).
"""
import glob
import os
import subprocess
import sys
import tempfile
import time

try:
    import numpy as np
    from gguf import GGUFReader
    from gguf.quants import dequantize
except ImportError as e:  # the oracle is missing, not chord
    print(f"skipped: python package missing ({e})")
    sys.exit(0)


def check_file(tool, path):
    """Returns (n_tensors_ok, list of failure messages)."""
    failures = []
    with tempfile.TemporaryDirectory(prefix="chord_dequant_") as out:
        r = subprocess.run([tool, path, out], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            return 0, [f"tool_dequant exited {r.returncode}: {r.stderr.strip()}"]
        with open(os.path.join(out, "index.txt")) as f:
            index = [line.split() for line in f if line.strip()]
        reader = GGUFReader(path)
        if len(index) != len(reader.tensors):
            failures.append(f"{len(index)} tensors from chord, {len(reader.tensors)} from gguf-py")
        ok = 0
        for row, t in zip(index, reader.tensors):
            i, name, tname, ne0, ne1 = row[0], row[1], row[2], int(row[3]), int(row[4])
            if name != t.name or tname != t.tensor_type.name or ne0 != int(t.shape[0]):
                failures.append(f"tensor {i}: chord says {name} {tname} ne0={ne0}, "
                                f"gguf-py {t.name} {t.tensor_type.name} {list(t.shape)}")
                continue
            ours = np.fromfile(os.path.join(out, f"{i}.f32"), dtype="<f4")
            ref = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).ravel()
            if ours.size != ref.size:
                failures.append(f"{name}: {ours.size} values from chord, {ref.size} from gguf-py")
                continue
            a, b = ours.view(np.uint32), ref.view(np.uint32)
            diff = (a != b) & ~(np.isnan(ours) & np.isnan(ref))
            n_bad = int(diff.sum())
            if n_bad:
                j = int(np.argmax(diff))
                failures.append(f"{name} ({tname}): {n_bad}/{ours.size} values differ; "
                                f"first at {j}: chord {ours[j]!r} (0x{a[j]:08x}), "
                                f"gguf-py {ref[j]!r} (0x{b[j]:08x})")
            else:
                ok += 1
        return ok, failures


def main():
    shared = os.environ.get("CHORD_SHARED") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared")
    build = os.environ.get("CHORD_BUILD") or "build"
    tool = os.path.join(build, "tests", "tool_dequant")
    files = sorted(glob.glob(os.path.join(shared, "golden", "dev-*.gguf")))
    if not files:
        print(f"skipped: no golden models in {shared}/golden")
        return 0
    if not os.access(tool, os.X_OK):
        print(f"FAIL: {tool} not built")
        return 1

    t0 = time.time()
    passed = failed = 0
    for path in files:
        ok, failures = check_file(tool, path)
        base = os.path.basename(path)
        if failures:
            failed += 1
            print(f"FAIL {base}: {ok} tensors bit-exact, {len(failures)} problems")
            for msg in failures[:5]:
                print(f"    {msg}")
        else:
            passed += 1
            print(f"ok   {base}: {ok} tensors bit-exact")
    print(f"{passed} passed, {failed} failed ({time.time() - t0:.1f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
