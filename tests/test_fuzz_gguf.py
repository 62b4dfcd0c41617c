#!/usr/bin/env python3
"""Fuzzes the GGUF parser with libFuzzer for a short while.

Builds tests/fuzz/fuzz_gguf.c with clang (-fsanitize=fuzzer,address,undefined) together
with the parser sources, seeds a corpus from tests/fuzz/corpus plus small valid GGUF
files written here, runs for FUZZ_SECONDS (default 20) and fails if libFuzzer reports a
crash, a leak, a sanitizer error or a timeout. Without clang/libFuzzer it skips.

`python3 tests/test_fuzz_gguf.py --write-seeds DIR` (re)writes the committed seeds.
"""
import os
import shutil
import struct
import subprocess
import sys
import tempfile

SRC = os.environ.get("CHORD_SOURCE") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECONDS = int(os.environ.get("FUZZ_SECONDS", "20"))

# --------------------------------------------------------------- GGUF writer

U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
       BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}
F32_T, F16_T, Q8_0_T, Q4_K_T, I8_T = 0, 1, 8, 12, 24
TYPE_SIZE = {F32_T: (1, 4), F16_T: (1, 2), Q8_0_T: (32, 34), Q4_K_T: (256, 144), I8_T: (1, 1)}


def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def value(t, v):
    """Encodes a value of type t (no type id). Arrays: v = (elem_type, [elems])."""
    if t == STRING:
        return gstr(v)
    if t == ARRAY:
        et, elems = v
        return struct.pack("<IQ", et, len(elems)) + b"".join(value(et, e) for e in elems)
    return struct.pack(FMT[t], v)


def gguf(kvs, tensors, alignment=32, version=3):
    """kvs: [(key, type, value)]; tensors: [(name, ne list, type)] laid out in order."""
    out = bytearray(b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs)))
    for k, t, v in kvs:
        out += gstr(k) + struct.pack("<I", t) + value(t, v)
    off, datas = 0, []
    for name, ne, tt in tensors:
        bs, ts = TYPE_SIZE[tt]
        n = 1
        for x in ne:
            n *= x
        nbytes = n // bs * ts
        out += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", x) for x in ne)
        out += struct.pack("<IQ", tt, off)
        datas.append((off, bytes((i * 7 + 3) & 0xFF for i in range(nbytes))))
        off = (off + nbytes + alignment - 1) // alignment * alignment
    if tensors:
        out += b"\0" * (-len(out) % alignment)
        base = len(out)
        for o, d in datas:
            out += b"\0" * (base + o - len(out)) + d
    return bytes(out)


def seeds():
    arch = ("general.architecture", STRING, "llama")
    yield "empty", gguf([], [])
    yield "scalars", gguf([
        arch, ("a.u8", U8, 200), ("a.i8", I8, -3), ("a.u16", U16, 65535), ("a.i16", I16, -2),
        ("a.u32", U32, 7), ("a.i32", I32, -1), ("a.f32", F32, 0.5), ("a.bool", BOOL, True),
        ("a.u64", U64, 2**63), ("a.i64", I64, -2**40), ("a.f64", F64, 1e-5),
        ("a.str", STRING, "hello \"world\"\n"), ("a.empty", STRING, ""),
    ], [])
    yield "arrays", gguf([
        ("a.strs", ARRAY, (STRING, ["<unk>", "<s>", "", "\u0120the"])),
        ("a.f32s", ARRAY, (F32, [1.0, -2.0, 3.5])),
        ("a.i32s", ARRAY, (I32, [1, 2, 3, -4])),
        ("a.bools", ARRAY, (BOOL, [True, False])),
        ("a.none", ARRAY, (U8, [])),
        ("a.nested", ARRAY, (ARRAY, [(U8, [1, 2]), (STRING, ["x"]), (ARRAY, [(I16, [-1])])])),
    ], [])
    yield "one_tensor", gguf([arch, ("llama.embedding_length", U32, 8)],
                             [("token_embd.weight", [8, 2], F32_T)])
    yield "tensors_align64", gguf([arch, ("general.alignment", U32, 64)], [
        ("blk.0.attn_q.weight", [32, 2], Q8_0_T), ("output_norm.weight", [16], F16_T),
        ("output.weight", [256], Q4_K_T), ("x.4d", [1, 2, 1, 3], I8_T)], alignment=64)
    yield "vocab_v2", gguf([
        ("tokenizer.ggml.model", STRING, "llama"),
        ("tokenizer.ggml.tokens", ARRAY, (STRING, ["<unk>", "<s>", "</s>"] +
                                          ["<0x%02X>" % i for i in range(16)] + ["\u2581a"] * 2)),
        ("tokenizer.ggml.scores", ARRAY, (F32, [0.0] * 21)),
        ("tokenizer.ggml.token_type", ARRAY, (I32, [2, 3, 3] + [6] * 16 + [1, 1])),
        ("tokenizer.ggml.bos_token_id", U32, 1),
    ], [("t", [4], F32_T)], version=2)


DICT = [b"GGUF", b"general.alignment", b"general.architecture", b"tokenizer.ggml.tokens",
        b"\x03\x00\x00\x00", b"\x02\x00\x00\x00", b"\x09\x00\x00\x00", b"\x08\x00\x00\x00",
        b"\x00\x00\x00\x00\x00\x00\x00\x80", b"\xff\xff\xff\xff\xff\xff\xff\xff",
        b"\x20\x00\x00\x00", b"\x0c\x00\x00\x00"]


def write_seeds(d):
    os.makedirs(d, exist_ok=True)
    for name, data in seeds():
        with open(os.path.join(d, name + ".gguf"), "wb") as f:
            f.write(data)


# ------------------------------------------------------------------ the run

def find_clang():
    for c in ("clang", "clang-14", "clang-15", "clang-16", "clang-17", "clang-18"):
        p = shutil.which(c)
        if p:
            return p
    return None


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--write-seeds":
        write_seeds(sys.argv[2])
        return 0
    clang = find_clang()
    if not clang:
        print("skipped: clang/libFuzzer not available")
        return 0
    tmp = tempfile.mkdtemp(prefix="chord_fuzz_gguf_")
    try:
        probe = os.path.join(tmp, "probe.c")
        with open(probe, "w") as f:
            f.write("#include <stddef.h>\n#include <stdint.h>\n"
                    "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)"
                    " { (void)d; (void)n; return 0; }\n")
        r = subprocess.run([clang, "-fsanitize=fuzzer,address,undefined", probe, "-o",
                            os.path.join(tmp, "probe")], capture_output=True, text=True)
        if r.returncode != 0:
            print("skipped: clang/libFuzzer not available (%s)" % r.stderr.strip()[:200])
            return 0

        exe = os.path.join(tmp, "fuzz_gguf")
        srcs = [os.path.join(SRC, p) for p in ("tests/fuzz/fuzz_gguf.c", "src/gguf.c",
                                                "src/error.c", "src/quant/types.c",
                                                "src/quant/ref.c", "src/quant/quantize_legacy.c",
                                                "src/quant/quantize_k.c")]
        cmd = [clang, "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=undefined",
               "-g", "-O1", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter",
               "-I" + os.path.join(SRC, "include"), "-I" + os.path.join(SRC, "src")] + srcs + [
               "-lm", "-o", exe]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            print("FAIL: building the fuzzer failed:\n" + " ".join(cmd) + "\n" + r.stderr)
            return 1

        corpus = os.path.join(tmp, "corpus")
        os.makedirs(corpus)
        committed = os.path.join(SRC, "tests/fuzz/corpus")
        n_seeds = 0
        if os.path.isdir(committed):
            for name in os.listdir(committed):
                shutil.copy(os.path.join(committed, name), corpus)
                n_seeds += 1
        for name, data in seeds():
            with open(os.path.join(corpus, "gen_" + name), "wb") as f:
                f.write(data)
            n_seeds += 1
        dict_path = os.path.join(tmp, "gguf.dict")
        with open(dict_path, "w") as f:
            for i, tok in enumerate(DICT):
                f.write('kw%d="%s"\n' % (i, "".join("\\x%02x" % b for b in tok)))

        args = [exe, corpus, "-max_total_time=%d" % SECONDS, "-rss_limit_mb=2048",
                "-timeout=10", "-max_len=8192", "-dict=" + dict_path,
                "-artifact_prefix=" + tmp + "/", "-print_final_stats=1"]
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
                   UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
        r = subprocess.run(args, capture_output=True, text=True, env=env,
                           timeout=SECONDS + 120)
        out = r.stdout + r.stderr
        bad = [m for m in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                           "ERROR: libFuzzer", "SUMMARY: ", "deadly signal") if m in out]
        stats = [l for l in out.splitlines() if l.startswith("stat::number_of_executed_units")]
        if r.returncode != 0 or bad:
            print(out[-8000:])
            crashes = [n for n in os.listdir(tmp) if n.startswith(("crash-", "leak-",
                                                                     "timeout-", "oom-"))]
            print("FAIL: libFuzzer exit %d, %s; artifacts: %s (in %s)" %
                  (r.returncode, bad, crashes, tmp))
            tmp = None  # keep the artifacts
            return 1
        print("fuzz_gguf: %d seeds, %ds, %s: no crash" %
              (n_seeds, SECONDS, stats[0] if stats else "?"))
        return 0
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
