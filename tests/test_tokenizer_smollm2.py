#!/usr/bin/env python3
"""SmolLM2 tokenizer (GGUF pre-tokenizer "smollm") against Hugging Face `tokenizers`.

Goldens: Tokenizer.from_file(smollm2-tokenizer.json).encode(text,
add_special_tokens=False).ids for every case of ggml-vocab-gpt-2.gguf.inp, extra strings
(digits, unicode, emoji, code, runs of spaces/newlines), seeded random strings, and a few
strings with special tokens (compared with tool_tokenize --special). Ours: tool_tokenize
on models/SmolLM2-135M-Instruct.Q4_1.gguf."""
import os
import random
import subprocess
import sys
import tempfile

SEP = "\n__ggml_vocab_test__\n"

EXTRA = [
    "1234567890", "3.14159 and 2,718", "in 2024 there were 1,000,000 users", "x1y22z333",
    "\u0661\u0662\u0663 \u00bd \u2163 \u00b2",  # Arabic-Indic digits, 1/2, Roman four, superscript
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00fcber Stra\u00dfe",
    "\u4f60\u597d\uff0c\u4e16\u754c\uff01\u3053\u3093\u306b\u3061\u306f",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!  \u0393\u03b5\u03b9\u03ac",
    "\U0001f600\U0001f680\U0001f469\u200d\U0001f4bb \U0001f1fa\U0001f1f8 \u2764\ufe0f",
    "def f(x):\n    return x ** 2  # square\n\n\nprint(f(3))\n",
    "int main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
    "    four leading spaces", "trailing spaces    ", "a  b   c    d", "\n\n\n\nx", "x\n\n\n",
    " \n \n\t\t \r\n\r\n", "tabs\tand\ttabs\t\t", "\u00a0non-breaking\u00a0space\u3000ideographic",
    "I'm sure you'll see we've done it, haven't we? 'S 'Ll DON'T", "''''", "'s",
    "<html><body>Hello</body></html>", "https://example.com/path?q=1&r=2#frag",
    "email@example.com +1-555-0100", "$100.00 (USD) 50% off!!!", "...---...", "~`!@#$%^&*()_+",
    "a\u0301 e\u0300 combining", "\u200bzero\u200bwidth", "\ud7ff\ue000\uffff",
    "   ", "\t", "", "A" * 300, "ab" * 200, " " * 50 + "x", "9" * 100,
]

SPECIAL = [
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi 123<|im_end|>\n",
    "<|endoftext|>", "a<|im_end|>b", "<|im_start|><|im_end|>",
]


def random_cases(n, seed=1234):
    rng = random.Random(seed)
    pool = list("abcXYZ019 '\n\t\r.,!?-_\"(){}") + ["  ", "\u00e9", "\u4e2d", "\U0001f600",
                                                      "\u00bd", "\u0663", "\u00a0", "'s", "'LL"]
    return ["".join(rng.choice(pool) for _ in range(rng.randint(1, 40))) for _ in range(n)]


def run_tool(tool, model, cases, special):
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", newline="", suffix=".inp",
                                     delete=False) as f:
        for c in cases:
            f.write(c + SEP)
        path = f.name
    try:
        args = [tool, model, path] + (["--special"] if special else [])
        r = subprocess.run(args, capture_output=True)
    finally:
        os.unlink(path)
    if r.returncode != 0:
        print("tool_tokenize failed:", r.stderr.decode(errors="replace"))
        sys.exit(1)
    lines = r.stdout.decode().split("\n")
    return [[int(x) for x in line.split()] for line in lines[:len(cases)]]


def main():
    shared = os.environ.get("CHORD_SHARED", os.path.join(os.path.dirname(__file__), "../../shared"))
    source = os.environ.get("CHORD_SOURCE", os.path.join(os.path.dirname(__file__), ".."))
    build = os.environ.get("CHORD_BUILD", os.path.join(source, "build"))
    model = os.path.join(source, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not os.path.exists(model):
        print("skipped: model not fetched (scripts/fetch_model.sh)")
        return 0
    try:
        from tokenizers import Tokenizer
    except ImportError:
        print("skipped: python package 'tokenizers' not installed")
        return 0
    tool = os.path.join(build, "tests", "tool_tokenize")
    if not os.path.exists(tool):
        print("FAIL: %s not built" % tool)
        return 1
    hf = Tokenizer.from_file(os.path.join(shared, "vocab", "smollm2-tokenizer.json"))
    with open(os.path.join(shared, "vocab", "ggml-vocab-gpt-2.gguf.inp"), encoding="utf-8",
              newline="") as f:
        inp = f.read().split(SEP)[:-1]

    cases = [c for c in inp + EXTRA + random_cases(300) if SEP not in c]
    passed = failed = 0
    for special, group in ((False, cases), (True, SPECIAL)):
        ours = run_tool(tool, model, group, special)
        for text, got in zip(group, ours):
            want = hf.encode(text, add_special_tokens=False).ids
            if got == want:
                passed += 1
            else:
                failed += 1
                if failed <= 10:
                    print("MISMATCH%s %r\n  want %s\n  got  %s" %
                          (" (special)" if special else "", text, want, got))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
