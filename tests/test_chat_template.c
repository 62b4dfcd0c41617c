/* Chat templates: each family's template over a system+user+assistant+user conversation,
 * template selection, and errors (syntax, raise_exception, unknown filter, limits). */
#include <stdlib.h>
#include <string.h>

#include "chat/chat.h"
#include "testutil.h"

static const jinja_message CONV[] = {
    {"system", "You are a helpful assistant."},
    {"user", "Hello!"},
    {"assistant", "Hi! How can I help?"},
    {"user", "What is the capital of France?"},
};
#define N_CONV (sizeof CONV / sizeof CONV[0])

static const jinja_vars S_TOKENS = {"<s>", "</s>", true};

/* Renders and compares; returns the status. */
static chord_status expect(const char *what, const char *model_tmpl, const char *override,
                           const jinja_message *msgs, size_t n, const jinja_vars *vars,
                           const char *want) {
    char *out = (char *)1;
    chord_error err = {0};
    chord_status st = chat_render(model_tmpl, override, msgs, n, vars, &out, &err);
    if (want) {
        CHECK(st == CHORD_OK, "%s: status %d: %s", what, (int)st, err.message);
        CHECK(out && strcmp(out, want) == 0, "%s:\n got: [%s]\nwant: [%s]", what,
              out ? out : "(null)", want);
    }
    if (st != CHORD_OK) CHECK(out == NULL, "%s: *out is NULL on failure", what);
    free(out);
    return st;
}

/* Renders expecting failure with `code` and a message containing `needle`. */
static void expect_error(const char *what, const char *tmpl, const jinja_message *msgs,
                         size_t n, chord_status code, const char *needle) {
    char *out = (char *)1;
    chord_error err = {0};
    chord_status st = chat_render(NULL, tmpl, msgs, n, &S_TOKENS, &out, &err);
    CHECK(st == code, "%s: status %d, want %d (%s)", what, (int)st, (int)code, err.message);
    CHECK(out == NULL, "%s: *out is NULL on failure", what);
    CHECK(err.code == code, "%s: err.code", what);
    CHECK(strstr(err.message, needle) != NULL, "%s: message [%s] lacks [%s]", what, err.message,
          needle);
    free(st == CHORD_OK ? out : NULL);
}

static char *read_fixture(const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/data/templates/%s.jinja", CHORD_SOURCE_DIR, name);
    char *t = test_read_file(path, NULL);
    CHECK(t != NULL, "cannot read %s", path);
    return t;
}

static void test_families(void) {
    expect("chatml", NULL, "chatml", CONV, N_CONV, &S_TOKENS,
           "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
           "<|im_start|>user\nHello!<|im_end|>\n"
           "<|im_start|>assistant\nHi! How can I help?<|im_end|>\n"
           "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
           "<|im_start|>assistant\n");

    expect("zephyr", NULL, "zephyr", CONV, N_CONV, &S_TOKENS,
           "<|system|>\nYou are a helpful assistant.</s>\n"
           "<|user|>\nHello!</s>\n"
           "<|assistant|>\nHi! How can I help?</s>\n"
           "<|user|>\nWhat is the capital of France?</s>\n"
           "<|assistant|>\n");

    expect("llama2", NULL, "llama2", CONV, N_CONV, &S_TOKENS,
           "<s>[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nHello! [/INST]"
           " Hi! How can I help? </s>"
           "<s>[INST] What is the capital of France? [/INST]");

    jinja_vars l3 = {"<|begin_of_text|>", "<|eot_id|>", true};
    expect(
        "llama3", NULL, "llama3", CONV, N_CONV, &l3,
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "You are a helpful assistant.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHi! How can I help?<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhat is the capital of France?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n");

    expect("mistral", NULL, "mistral", CONV, N_CONV, &S_TOKENS,
           "<s> [INST] You are a helpful assistant.\n\nHello! [/INST] Hi! How can I help?</s>"
           " [INST] What is the capital of France? [/INST]");

    jinja_vars gm = {"<bos>", "<eos>", true};
    expect("gemma", NULL, "gemma", CONV, N_CONV, &gm,
           "<bos><start_of_turn>user\nYou are a helpful assistant.\n\nHello!<end_of_turn>\n"
           "<start_of_turn>model\nHi! How can I help?<end_of_turn>\n"
           "<start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n"
           "<start_of_turn>model\n");

    /* SmolLM2's own template (from the model file) as the model template */
    char *smol = read_fixture("smollm2");
    if (smol) {
        expect("smollm2 with system", smol, NULL, CONV, N_CONV, &S_TOKENS,
               "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
               "<|im_start|>user\nHello!<|im_end|>\n"
               "<|im_start|>assistant\nHi! How can I help?<|im_end|>\n"
               "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
               "<|im_start|>assistant\n");
        expect("smollm2 default system prompt", smol, NULL, CONV + 1, N_CONV - 1, &S_TOKENS,
               "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
               "Hugging Face<|im_end|>\n"
               "<|im_start|>user\nHello!<|im_end|>\n"
               "<|im_start|>assistant\nHi! How can I help?<|im_end|>\n"
               "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
               "<|im_start|>assistant\n");
        jinja_vars nogen = {"<s>", "</s>", false};
        expect("smollm2 no generation prompt", smol, NULL, CONV + 1, 1, &nogen,
               "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
               "Hugging Face<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n");
    }
    free(smol);

    /* the built-in strings are the fixture files */
    for (size_t i = 0; i < CHAT_N_BUILTINS; i++) {
        char *f = read_fixture(CHAT_BUILTINS[i].name);
        if (!f) continue;
        CHECK(strcmp(f, CHAT_BUILTINS[i].tmpl) == 0, "built-in %s differs from its fixture",
              CHAT_BUILTINS[i].name);
        free(f);
    }
}

static void test_selection(void) {
    const jinja_message one[] = {{"user", "Hi"}};
    const char *chatml_hi = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
    expect("no template: ChatML", NULL, NULL, one, 1, &S_TOKENS, chatml_hi);
    expect("empty model template: ChatML", "", NULL, one, 1, &S_TOKENS, chatml_hi);
    expect("model template", "{{ messages[0].content }}!", NULL, one, 1, &S_TOKENS, "Hi!");
    expect("override text beats model", "{{ 'model' }}",
           "{% for m in messages %}"
           "[{{ m.role }}]{% endfor %}",
           one, 1, &S_TOKENS, "[user]");
    expect("override name beats model", "{{ 'model' }}", "ChatML", one, 1, &S_TOKENS,
           chatml_hi);
    expect("no messages", NULL, "chatml", NULL, 0, &S_TOKENS, "<|im_start|>assistant\n");
    expect("NULL vars", NULL, "{{ bos_token }}|{{ add_generation_prompt }}", one, 1, NULL,
           "|False");
    const jinja_message nulls[] = {{"user", NULL}, {NULL, "x"}};
    expect("NULL role/content are none", NULL,
           "{% for m in messages %}{{ m.role }}:{{ m.content is none }};{% endfor %}", nulls, 2,
           &S_TOKENS, "user:True;None:False;");

    char *out = NULL;
    chord_error err = {0};
    chord_status st = chat_render(NULL, "vicuna", one, 1, &S_TOKENS, &out, &err);
    CHECK(st == CHORD_E_INVALID_ARG && !out, "unknown name: %d", (int)st);
    CHECK(strstr(err.message, "vicuna") && strstr(err.message, "chatml") &&
              strstr(err.message, "llama2") && strstr(err.message, "llama3") &&
              strstr(err.message, "zephyr") && strstr(err.message, "mistral") &&
              strstr(err.message, "gemma"),
          "unknown name lists the names: %s", err.message);
    CHECK(chat_render(NULL, NULL, NULL, 1, &S_TOKENS, &out, &err) == CHORD_E_INVALID_ARG,
          "NULL messages with n > 0");
    CHECK(chat_render(NULL, NULL, one, 1, &S_TOKENS, NULL, &err) == CHORD_E_INVALID_ARG,
          "NULL out");
    CHECK(chat_builtin_template("GEMMA") != NULL && chat_builtin_template("nope") == NULL,
          "chat_builtin_template");
}

static void test_errors(void) {
    const jinja_message one[] = {{"user", "Hi"}};
    expect_error("syntax error", "{% if %}x{% endif %}", one, 1, CHORD_E_TEMPLATE,
                 "line 1, column 7");
    expect_error("syntax error line 3", "a\nb\n  {{ 1 + }}", one, 1, CHORD_E_TEMPLATE,
                 "line 3, column 10");
    expect_error("unclosed block", "{% for m in messages %}x", one, 1, CHORD_E_TEMPLATE,
                 "expected 'endfor'");
    expect_error("stray end tag", "x{% endif %}", one, 1, CHORD_E_TEMPLATE,
                 "unexpected 'endif'");
    expect_error("unknown tag", "{% frobnicate %}", one, 1, CHORD_E_TEMPLATE,
                 "unknown tag 'frobnicate'");
    expect_error("unterminated string", "{{ 'abc }}", one, 1, CHORD_E_TEMPLATE,
                 "unterminated string");
    expect_error("unclosed tag", "{{ messages", one, 1, CHORD_E_TEMPLATE, "not closed");
    expect_error("unknown filter", "{{ messages | nosuch }}", one, 1, CHORD_E_TEMPLATE,
                 "no filter named 'nosuch'");
    expect_error("unknown filter in dead branch", "{% if false %}{{ 1 | nosuch }}{% endif %}",
                 one, 1, CHORD_E_TEMPLATE, "no filter named 'nosuch'");
    expect_error("unknown test", "{{ 1 is frob }}", one, 1, CHORD_E_TEMPLATE,
                 "no test named 'frob'");
    expect_error("type error", "{{ 'a' + 1 }}", one, 1, CHORD_E_TEMPLATE,
                 "unsupported operand types for +: 'str' and 'int'");
    expect_error("division by zero", "\n{{ 1 // 0 }}", one, 1, CHORD_E_TEMPLATE, "line 2");
    expect_error("not iterable", "{% for x in 3 %}{% endfor %}", one, 1, CHORD_E_TEMPLATE,
                 "not iterable");
    expect_error("call undefined", "{{ nothing() }}", one, 1, CHORD_E_TEMPLATE, "undefined");
    expect_error("break outside loop", "{% break %}", one, 1, CHORD_E_TEMPLATE,
                 "outside of a loop");
    expect_error("raise_exception", "{{ raise_exception('custom failure ' ~ 42) }}", one, 1,
                 CHORD_E_TEMPLATE, "custom failure 42");

    /* the families that insist on alternating roles */
    const jinja_message bad[] = {{"user", "a"}, {"user", "b"}};
    expect_error("llama2 alternation", "llama2", bad, 2, CHORD_E_TEMPLATE,
                 "Conversation roles must alternate user/assistant/user/assistant/...");
    expect_error("mistral alternation", "mistral", bad, 2, CHORD_E_TEMPLATE,
                 "conversation roles must alternate");
    const jinja_message tool[] = {{"user", "a"}, {"tool", "b"}};
    expect_error("mistral unknown role", "mistral", tool, 2, CHORD_E_TEMPLATE,
                 "Only user and assistant roles are supported");
    const jinja_message asst_first[] = {{"assistant", "a"}};
    expect_error("gemma alternation", "gemma", asst_first, 1, CHORD_E_TEMPLATE,
                 "Conversation roles must alternate");
}

static void test_limits(void) {
    const jinja_message one[] = {{"user", "Hi"}};
    expect_error("runaway loops",
                 "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
                 "{% endfor %}",
                 one, 1, CHORD_E_TEMPLATE, "too long");
    expect_error("runaway memory",
                 "{% set ns = namespace(s='x') %}{% for i in range(64) %}"
                 "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
                 one, 1, CHORD_E_TEMPLATE, "MiB");
    expect_error("runaway output", "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
                 one, 1, CHORD_E_TEMPLATE, "output exceeds");
    expect_error("huge repetition", "{{ 'abc' * 1000000000000 }}", one, 1, CHORD_E_TEMPLATE,
                 "too large");
    expect_error("huge range", "{{ range(1000000000000) | length }}", one, 1, CHORD_E_TEMPLATE,
                 "range too large");
    expect_error("infinite recursion", "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
                 one, 1, CHORD_E_TEMPLATE, "nested too deeply");
    expect_error("integer overflow", "{{ 9223372036854775807 + 1 }}", one, 1, CHORD_E_TEMPLATE,
                 "overflow");

    /* pathological nesting in the source: errors, never a stack overflow */
    size_t n = 100000;
    char *deep = malloc(2 * n + 16);
    strcpy(deep, "{{ ");
    size_t k = 3;
    for (size_t i = 0; i < n / 10; i++)
        deep[k++] = '(';
    deep[k++] = '1';
    for (size_t i = 0; i < n / 10; i++)
        deep[k++] = ')';
    strcpy(deep + k, " }}");
    expect_error("deep parentheses", deep, one, 1, CHORD_E_TEMPLATE, "nested too deeply");
    k = 3;
    for (size_t i = 0; i < n / 4; i++) {
        memcpy(deep + k, "not ", 4);
        k += 4;
    }
    strcpy(deep + k, "1 }}");
    expect_error("deep not", deep, one, 1, CHORD_E_TEMPLATE, "nested too deeply");
    k = 3;
    for (size_t i = 0; i < n / 2; i++) {
        memcpy(deep + k, "1+", 2);
        k += 2;
    }
    strcpy(deep + k, "1 }}");
    expect_error("long operator chain", deep, one, 1, CHORD_E_TEMPLATE, "nested too deeply");
    strcpy(deep, "{% filter trim");
    k = strlen(deep);
    for (size_t i = 0; i < n / 6; i++) {
        memcpy(deep + k, "|trim", 5);
        k += 5;
    }
    strcpy(deep + k, " %}x{% endfilter %}");
    expect_error("long filter-block chain", deep, one, 1, CHORD_E_TEMPLATE,
                 "nested too deeply");
    k = 0;
    for (size_t i = 0; i < 2000; i++) {
        memcpy(deep + k, "{% if 1 %}", 10);
        k += 10;
    }
    deep[k] = 0;
    expect_error("deep blocks", deep, one, 1, CHORD_E_TEMPLATE, "nested too deeply");
    free(deep);
    expect_error("deep runtime value",
                 "{% set ns = namespace(l=[]) %}{% for i in range(5000) %}"
                 "{% set ns.l = [ns.l] %}{% endfor %}{{ ns.l }}",
                 one, 1, CHORD_E_TEMPLATE, "nested too deeply");

    /* binary junk: an error or a rendering, never a crash */
    char junk[512];
    uint32_t x = 12345;
    int errors = 0;
    for (int round = 0; round < 300; round++) {
        for (size_t i = 0; i + 1 < sizeof junk; i++) {
            x = x * 1103515245u + 12345u;
            static const char alphabet[] = "{}%#-+()[]'\" .|~abcifnorsetdm0123456789\n=,:*/";
            junk[i] = alphabet[(x >> 16) % (sizeof alphabet - 1)];
        }
        junk[sizeof junk - 1] = 0;
        if (round % 2) memcpy(junk, round % 4 == 1 ? "{{ " : "{% ", 3);
        char *out = NULL;
        chord_error err = {0};
        if (chat_render(NULL, junk, one, 1, &S_TOKENS, &out, &err) != CHORD_OK) errors++;
        free(out);
    }
    CHECK(errors > 0, "junk templates fail cleanly (%d errors)", errors);
}

int main(void) {
    test_families();
    test_selection();
    test_errors();
    test_limits();
    return test_summary("test_chat_template");
}
