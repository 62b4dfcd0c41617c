"""The chord CLI as a user meets it: good runs produce text, bad input gives one clear
line on stderr and a non-zero status, never a crash."""
import os
import subprocess
import sys
import tempfile

BIN = os.environ["CHORD_BIN"]
SHARED = os.environ["CHORD_SHARED"]
SOURCE = os.environ["CHORD_SOURCE"]
SMOL = os.path.join(SOURCE, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
DEV = os.path.join(SHARED, "golden", "dev-Q4_K.gguf")
results = []


def run(*args, input=None, timeout=120):
    return subprocess.run([BIN, *args], capture_output=True, text=True, input=input, timeout=timeout)


def check(name, ok, detail=""):
    results.append(ok)
    print(f"{'ok  ' if ok else 'FAIL'} {name}{'' if ok else ': ' + detail}")


def fails_cleanly(name, r, needle):
    ok = r.returncode not in (0,) and r.returncode > 0 and needle.lower() in r.stderr.lower()
    check(name, ok, f"rc={r.returncode} stderr={r.stderr.strip()[:300]!r}")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        r = run("info", DEV)
        check("info", r.returncode == 0 and "architecture:  llama" in r.stdout and "Q4_K" in r.stdout
              and "n_layer        2" in r.stdout, r.stdout + r.stderr)
        r = run("info", DEV, "--key", "llama.embedding_length")
        check("info --key", r.returncode == 0 and r.stdout.strip() == "512", r.stdout)
        fails_cleanly("info missing key", run("info", DEV, "--key", "nope"), "no metadata key")
        fails_cleanly("info missing file", run("info", os.path.join(tmp, "none.gguf")), "none.gguf")
        bad = os.path.join(tmp, "bad.gguf")
        with open(DEV, "rb") as f:
            data = bytearray(f.read())
        open(bad, "wb").write(b"GGUX" + data[4:])
        fails_cleanly("info bad magic", run("info", bad), "magic")
        open(bad, "wb").write(data[:5000])
        r = run("info", bad)
        check("info truncated", r.returncode == 1 and "chord:" in r.stderr and len(r.stderr.splitlines()) == 1,
              r.stderr)
        fails_cleanly("run truncated model", run("run", "-m", bad, "-p", "hi"), "bad.gguf")
        fails_cleanly("unknown command", run("frobnicate"), "unknown command")
        fails_cleanly("run no model", run("run", "-p", "hi"), "no model")
        fails_cleanly("run bad -n", run("run", "-m", DEV, "-p", "hi", "-n", "abc"), "-n expects")
        fails_cleanly("run bad --temp", run("run", "-m", DEV, "-p", "hi", "--temp", "-1"), "--temp expects")
        fails_cleanly("run bad -c", run("run", "-m", DEV, "-p", "hi", "-c", "1e9"), "-c expects")
        fails_cleanly("run unknown flag", run("run", "-m", DEV, "-p", "hi", "--bogus"), "unknown option")
        fails_cleanly("run prompt too long", run("run", "-m", DEV, "--raw", "-p", "word " * 600, "-c", "64"),
                      "context")
        fails_cleanly("run missing -f", run("run", "-m", DEV, "-f", os.path.join(tmp, "nope.txt")), "nope.txt")
        tok = os.path.join(tmp, "t.txt")
        open(tok, "w").write("1 2 x3")
        fails_cleanly("logits bad token file", run("logits", "-m", DEV, "--tokens", tok, "-o", os.path.join(tmp, "o")),
                      "not a token id")
        open(tok, "w").write("1 99999")
        fails_cleanly("logits token out of range", run("logits", "-m", DEV, "--tokens", tok, "-o", os.path.join(tmp, "o")),
                      "outside")
        r = run("run", "-m", DEV, "--raw", "-p", "hello", "-n", "5", "--temp", "0")
        check("run dev model", r.returncode == 0 and "generation" in r.stderr, r.stderr)
        r = run("--help")
        check("help lists commands", r.returncode == 0 and all(c in r.stdout for c in ("run", "chat", "info", "tokenize")))
        r = run("run", "--help")
        check("run --help documents flags", r.returncode == 0 and all(
            f in r.stdout for f in ("-ngl", "--repeat-penalty", "--min-p", "--seed", "--top-k")))

        if not os.path.exists(SMOL):
            print("skipped: SmolLM2 not fetched (scripts/fetch_model.sh)")
        else:
            r = run("tokenize", "-m", SMOL, "-p", "<|im_start|>user\nHello world<|im_end|>", "--ids")
            ids = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
            check("tokenize special", r.returncode == 0 and ids.startswith("[1, 4093, ") and ids.endswith(", 2]"),
                  ids)
            r = run("tokenize", "-m", SMOL, "-p", "<|im_start|>", "--ids", "--no-parse-special")
            check("tokenize no-parse-special", r.returncode == 0 and r.stdout.strip() != "[1]", r.stdout)
            r = run("run", "-m", SMOL, "-p", "What is the capital of France? Answer in one sentence.", "-n", "40", "--temp", "0")
            check("smollm2 answers", r.returncode == 0 and "Paris" in r.stdout, r.stdout + r.stderr)
            r = run("run", "-m", SMOL, "-p", "Count from one to five.", "-n", "30", "--temp", "0.7", "-s", "42")
            r2 = run("run", "-m", SMOL, "-p", "Count from one to five.", "-n", "30", "--temp", "0.7", "-s", "42")
            check("same seed same text", r.returncode == 0 and r.stdout == r2.stdout, r.stdout + "|" + r2.stdout)
            # the second answer can only name 42 if the first turn is still in the cache;
            # the same question alone is the control
            q = "What number did I ask you to remember?"
            r = run("chat", "-m", SMOL, "--temp", "0", "-n", "30",
                    input=f"Remember this number: 42.\n{q}\n/exit\n")
            alone = run("chat", "-m", SMOL, "--temp", "0", "-n", "30", input=f"{q}\n/exit\n")
            check("chat remembers across turns", r.returncode == 0 and alone.returncode == 0 and
                  "42" in r.stdout.strip().splitlines()[-1] and "42" not in alone.stdout,
                  r.stdout + "|" + alone.stdout + r.stderr)
            r = run("chat", "-m", SMOL, "--temp", "0", "-n", "60", "-c", "96",
                    input="Tell me a long story about a dragon.\nAnd another one about a cat.\n/exit\n")
            check("chat survives a full context", r.returncode == 0 and "context" in r.stderr, r.stderr)
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
