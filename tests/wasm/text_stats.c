/* A trio_pipe WASM worker in C: the "text-stats" task.
 *
 * The contract: the whole Task JSON arrives on stdin; the result payload JSON goes to
 * stdout; exiting non-zero (with a reason on stderr) fails the task.
 *
 * Input:  {"id": ..., "taskType": "text-stats", "payload": {"text": "..."}, ...}
 * Output: {"upper": "<text, ASCII letters upper-cased>", "words": <count of runs of
 *          non-whitespace>, "fnv1a": <32-bit FNV-1a of the text's UTF-8 bytes>}
 *
 * Build: clang --target=wasm32-wasi -O2 -Wl,--strip-all -o text_stats.wasm text_stats.c
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64

static void fail(const char *why) {
    fprintf(stderr, "text-stats: %s\n", why);
    exit(2);
}

/* ---- reading stdin ---------------------------------------------------------------- */

static char *read_all(size_t *length) {
    size_t size = 0, capacity = 4096;
    char *data = malloc(capacity + 1);
    if (!data) fail("out of memory");
    for (;;) {
        size_t got = fread(data + size, 1, capacity - size, stdin);
        size += got;
        if (got == 0) break;
        if (size == capacity) {
            capacity *= 2;
            data = realloc(data, capacity + 1);
            if (!data) fail("out of memory");
        }
    }
    data[size] = '\0';
    *length = size;
    return data;
}

/* ---- a small JSON reader: just enough to find payload.text ------------------------ */

typedef struct {
    const char *at;
    const char *end;
} Cursor;

static void skip_space(Cursor *c) {
    while (c->at < c->end && (*c->at == ' ' || *c->at == '\t' || *c->at == '\n' || *c->at == '\r'))
        c->at++;
}

static int expect(Cursor *c, char ch) {
    skip_space(c);
    if (c->at < c->end && *c->at == ch) {
        c->at++;
        return 1;
    }
    return 0;
}

static int hex_digit(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

static int read_hex4(Cursor *c, uint32_t *out) {
    if (c->end - c->at < 4) return 0;
    uint32_t value = 0;
    for (int i = 0; i < 4; i++) {
        int digit = hex_digit(c->at[i]);
        if (digit < 0) return 0;
        value = value * 16 + (uint32_t)digit;
    }
    c->at += 4;
    *out = value;
    return 1;
}

static size_t put_utf8(char *out, uint32_t cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Read a JSON string at the cursor. With out != NULL, decode it there (the decoded
 * form is never longer than the encoded one) and set *length. */
static int read_string(Cursor *c, char *out, size_t *length) {
    if (!expect(c, '"')) return 0;
    size_t n = 0;
    while (c->at < c->end) {
        char ch = *c->at++;
        if (ch == '"') {
            if (length) *length = n;
            return 1;
        }
        if ((unsigned char)ch < 0x20) return 0;
        if (ch != '\\') {
            if (out) out[n] = ch;
            n++;
            continue;
        }
        if (c->at >= c->end) return 0;
        char escape = *c->at++;
        char simple = 0;
        switch (escape) {
            case '"': simple = '"'; break;
            case '\\': simple = '\\'; break;
            case '/': simple = '/'; break;
            case 'b': simple = '\b'; break;
            case 'f': simple = '\f'; break;
            case 'n': simple = '\n'; break;
            case 'r': simple = '\r'; break;
            case 't': simple = '\t'; break;
            case 'u': break;
            default: return 0;
        }
        if (simple) {
            if (out) out[n] = simple;
            n++;
            continue;
        }
        uint32_t cp;
        if (!read_hex4(c, &cp)) return 0;
        if (cp >= 0xD800 && cp < 0xDC00) { /* a high surrogate: a low one must follow */
            uint32_t low;
            if (c->end - c->at < 2 || c->at[0] != '\\' || c->at[1] != 'u') return 0;
            c->at += 2;
            if (!read_hex4(c, &low) || low < 0xDC00 || low > 0xDFFF) return 0;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        } else if (cp >= 0xDC00 && cp < 0xE000) {
            return 0;
        }
        char buffer[4];
        size_t used = put_utf8(buffer, cp);
        if (out) memcpy(out + n, buffer, used);
        n += used;
    }
    return 0;
}

static int skip_value(Cursor *c, int depth);

static int skip_members(Cursor *c, char close, int depth) {
    if (expect(c, close)) return 1;
    for (;;) {
        if (close == '}') {
            if (!read_string(c, NULL, NULL) || !expect(c, ':')) return 0;
        }
        if (!skip_value(c, depth + 1)) return 0;
        if (expect(c, ',')) continue;
        return expect(c, close);
    }
}

static int skip_value(Cursor *c, int depth) {
    if (depth > MAX_DEPTH) return 0;
    skip_space(c);
    if (c->at >= c->end) return 0;
    char ch = *c->at;
    if (ch == '"') return read_string(c, NULL, NULL);
    if (ch == '{' || ch == '[') {
        c->at++;
        return skip_members(c, ch == '{' ? '}' : ']', depth);
    }
    /* numbers and the literals true, false, null */
    const char *start = c->at;
    while (c->at < c->end && *c->at && strchr("+-.0123456789eEtruefalsn", *c->at)) c->at++;
    return c->at > start;
}

/* With the cursor on an object, move it to the value of member `key`. */
static int find_member(Cursor *c, const char *key) {
    if (!expect(c, '{')) return 0;
    if (expect(c, '}')) return 0;
    size_t key_length = strlen(key);
    for (;;) {
        Cursor name = *c;
        size_t length;
        if (!read_string(c, NULL, &length) || !expect(c, ':')) return 0;
        skip_space(&name);
        /* An escaped key never equals our plain ASCII keys unless it decodes to them:
         * compare the raw text, which is exact for keys written without escapes. */
        if (length == key_length && strncmp(name.at + 1, key, key_length) == 0) return 1;
        if (!skip_value(c, 1)) return 0;
        if (!expect(c, ',')) return 0;
    }
}

/* ---- the work ----------------------------------------------------------------------- */

static void put_json_string(const char *text, size_t length) {
    putchar('"');
    for (size_t i = 0; i < length; i++) {
        unsigned char ch = (unsigned char)text[i];
        if (ch == '"' || ch == '\\') {
            putchar('\\');
            putchar(ch);
        } else if (ch < 0x20) {
            printf("\\u%04x", ch);
        } else {
            putchar(ch >= 'a' && ch <= 'z' ? ch - 'a' + 'A' : ch);
        }
    }
    putchar('"');
}

int main(void) {
    size_t input_length;
    char *input = read_all(&input_length);
    Cursor c = {input, input + input_length};
    if (!find_member(&c, "payload")) fail("the task has no payload object");
    if (!find_member(&c, "text")) fail("payload.text is missing");
    skip_space(&c);
    char *text = malloc(input_length + 1);
    size_t length;
    if (!text) fail("out of memory");
    if (!read_string(&c, text, &length)) fail("payload.text must be a string");

    uint32_t hash = 2166136261u;
    unsigned words = 0;
    int in_word = 0;
    for (size_t i = 0; i < length; i++) {
        unsigned char ch = (unsigned char)text[i];
        hash = (hash ^ ch) * 16777619u;
        int space = ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
        if (!space && !in_word) words++;
        in_word = !space;
    }
    fputs("{\"upper\":", stdout);
    put_json_string(text, length);
    printf(",\"words\":%u,\"fnv1a\":%u}\n", words, (unsigned)hash);
    return 0;
}
