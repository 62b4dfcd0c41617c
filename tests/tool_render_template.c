/* Renders a chat template over a conversation, for test_chat_template_jinja.py.
 *
 *   tool_render_template TEMPLATE_FILE MESSAGES_FILE
 *   tool_render_template --builtin NAME MESSAGES_FILE
 *
 * MESSAGES_FILE is a sequence of records, each a header line and raw bytes:
 *   bos LEN\n<LEN bytes>\n      bos_token (absent: undefined)
 *   eos LEN\n<LEN bytes>\n      eos_token
 *   gen 0|1\n                   add_generation_prompt
 *   msg RLEN CLEN\n<RLEN bytes><CLEN bytes>\n   a message; a length of -1 means None
 * Writes the rendering to stdout and exits 0, or writes "error <status>: <message>" to
 * stderr and exits 2. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat.h"

static char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    size_t r;
    while (buf && (r = fread(buf + len, 1, cap - len, f)) > 0) {
        len += r;
        if (len == cap) {
            cap *= 2;
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
        }
    }
    fclose(f);
    if (buf) buf[len] = 0;
    if (n) *n = len;
    return buf;
}

/* Copies len bytes at *p (bounds-checked) into a new string; len -1: NULL. */
static bool take(char **p, const char *end, long len, char **out) {
    if (len < 0) {
        *out = NULL;
        return true;
    }
    if (end - *p < len) return false;
    *out = malloc((size_t)len + 1);
    if (!*out) return false;
    memcpy(*out, *p, (size_t)len);
    (*out)[len] = 0;
    *p += len;
    return true;
}

int main(int argc, char **argv) {
    const char *builtin = NULL, *tmpl_path = NULL, *msgs_path;
    if (argc == 4 && !strcmp(argv[1], "--builtin")) {
        builtin = argv[2];
        msgs_path = argv[3];
    } else if (argc == 3) {
        tmpl_path = argv[1];
        msgs_path = argv[2];
    } else {
        fprintf(stderr, "usage: %s (TEMPLATE_FILE | --builtin NAME) MESSAGES_FILE\n", argv[0]);
        return 64;
    }
    char *tmpl = NULL;
    if (tmpl_path && !(tmpl = read_all(tmpl_path, NULL))) {
        fprintf(stderr, "cannot read %s\n", tmpl_path);
        return 66;
    }
    size_t n;
    char *data = read_all(msgs_path, &n);
    if (!data) {
        fprintf(stderr, "cannot read %s\n", msgs_path);
        return 66;
    }
    jinja_vars vars = {0};
    char *bos = NULL, *eos = NULL;
    jinja_message *msgs = NULL;
    size_t n_msgs = 0, cap = 0;
    char *p = data, *end = data + n;
    bool ok = true;
    while (ok && p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) {
            ok = false;
            break;
        }
        *nl = 0;
        char kind[8];
        long a = 0, b = 0;
        int got = sscanf(p, "%7s %ld %ld", kind, &a, &b);
        p = nl + 1;
        if (got >= 2 && !strcmp(kind, "bos"))
            ok = take(&p, end, a, &bos);
        else if (got >= 2 && !strcmp(kind, "eos"))
            ok = take(&p, end, a, &eos);
        else if (got >= 2 && !strcmp(kind, "gen"))
            vars.add_generation_prompt = a != 0;
        else if (got == 3 && !strcmp(kind, "msg")) {
            if (n_msgs == cap) {
                cap = cap ? cap * 2 : 8;
                jinja_message *nm = realloc(msgs, cap * sizeof *nm);
                if (!nm) {
                    ok = false;
                    break;
                }
                msgs = nm;
            }
            char *role = NULL, *content = NULL;
            ok = take(&p, end, a, &role) && take(&p, end, b, &content);
            msgs[n_msgs].role = role;
            msgs[n_msgs].content = content;
            n_msgs++;
        } else
            ok = false;
        if (ok && kind[0] != 'g') {
            if (p >= end || *p != '\n')
                ok = false;
            else
                p++;
        }
    }
    int rc = 0;
    if (!ok) {
        fprintf(stderr, "malformed messages file %s\n", msgs_path);
        rc = 65;
    } else {
        vars.bos_token = bos;
        vars.eos_token = eos;
        char *out = NULL;
        chord_error err = {0};
        chord_status st = chat_render(tmpl, builtin, msgs, n_msgs, &vars, &out, &err);
        if (st == CHORD_OK) {
            fwrite(out, 1, strlen(out), stdout);
        } else {
            fprintf(stderr, "error %d: %s\n", (int)st, err.message);
            rc = 2;
        }
        free(out);
    }
    for (size_t i = 0; i < n_msgs; i++) {
        free((char *)msgs[i].role);
        free((char *)msgs[i].content);
    }
    free(msgs);
    free(bos);
    free(eos);
    free(tmpl);
    free(data);
    return rc;
}
