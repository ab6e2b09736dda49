/* bounce_analyzer._normalize_c: the classification's normalized text of ASCII texts in C
 * (issue 14, the speed of `explain -`; docs/NATIVE.md).
 *
 * `grouped(texts)` takes a String column and returns one of the same length: for each ASCII
 * text, the text `normalize.normalized_for` gives it (lower-cased, the masks of
 * normalize._MASKS in order, the codes that start the lines of a multi-line reply taken out,
 * the ends stripped) with the digits of the answering host masked
 * (`normalize.numbered_hosts_alike`); for anything else (a null, a text with a character past
 * U+007F) a null, and the caller runs the polars expressions on those. `codes` (extract.py's
 * codes) is below. On ASCII text the
 * regexes' classes are simple: `\s` is tab, LF, VT, FF, CR and space, `\d` is 0-9, and a word
 * character (`\b`) is a lower-case letter, a digit or `_` once the text is lower-cased. Each
 * mask below quotes its regex and says how its leftmost-first matches are found; the
 * differential test (tests/test_native_normalize.py) holds the two paths to the same text.
 */
#define _GNU_SOURCE /* memmem */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "module.h"

typedef unsigned char uchar;

/* What each byte is, for the classes below: filled once (`fill_classes`). */
enum {
    C_SPACE = 1,    /* \s */
    C_DIGIT = 2,    /* \d */
    C_LETTER = 4,   /* [a-z_] */
    C_HEX = 8,      /* [0-9a-f] */
    C_ADDRESS = 16, /* [^\s<>()\[\]\"',;:] */
    C_PATH = 32,    /* [^\s?#] */
    C_QUERY = 64,   /* [^\s)\]>\"'] */
    C_V6 = 128,     /* [0-9a-f:]: where an IPv6 address may start */
    C_BEFORE = 256, /* [\s#(\[=\-\"':<;,]: what may stand before an enhanced code */
    C_OPEN = 512,   /* ["'(\[]: what may stand before a reply code */
    C_BREAK = 1024, /* [^\S ]: white space other than a space */
};
static uint16_t classes[256];

static void fill_classes(void) {
    for (int c = 0; c < 256; c++) {
        uint16_t k = 0;
        int space = c == ' ' || (c >= '\t' && c <= '\r');
        if (space) k |= C_SPACE;
        if (space && c != ' ') k |= C_BREAK;
        if (c >= '0' && c <= '9') k |= C_DIGIT | C_HEX;
        if ((c >= 'a' && c <= 'z') || c == '_') k |= C_LETTER;
        if (c >= 'a' && c <= 'f') k |= C_HEX;
        if (!space && !(c != 0 && strchr("<>()[]\"',;:", c))) k |= C_ADDRESS;
        if (!space && c != '?' && c != '#') k |= C_PATH;
        if (!space && !(c != 0 && strchr(")]>\"'", c))) k |= C_QUERY;
        if ((k & C_HEX) || c == ':') k |= C_V6;
        if (space || (c != 0 && strchr("#([=-\"':<;,", c))) k |= C_BEFORE;
        if (c != 0 && strchr("\"'([", c)) k |= C_OPEN;
        classes[c] = k;
    }
}

static inline int is_space(uchar c) { return classes[c] & C_SPACE; }
static inline int is_digit(uchar c) { return classes[c] & C_DIGIT; }
/* [a-z_] */
static inline int is_letter(uchar c) { return classes[c] & C_LETTER; }
/* a word character of lower-cased ASCII text: [a-z0-9_] */
static inline int is_word(uchar c) { return classes[c] & (C_LETTER | C_DIGIT); }
static inline int is_hex(uchar c) { return classes[c] & C_HEX; }
static inline int in_address(uchar c) { return classes[c] & C_ADDRESS; }
/* \b before position i of s[0..n) */
static inline int boundary(const uchar *s, size_t n, size_t i) {
    int before = i > 0 && is_word(s[i - 1]);
    int after = i < n && is_word(s[i]);
    return before != after;
}

/* Sixteen bytes (GCC's vectors: SSE2 on x86-64, the same code elsewhere; a comparison gives
 * -1 where it holds, 0 elsewhere), and whether any of them is not 0. */
typedef uchar v16 __attribute__((vector_size(16)));
static inline int any(v16 v) {
    uint64_t half[2];
    memcpy(half, &v, 16);
    return (half[0] | half[1]) != 0;
}

/* The first digit of in[p..n), or n: sixteen bytes at a time up to the sixteen that hold one. */
static inline size_t next_digit(const uchar *in, size_t n, size_t p) {
    for (; p + 16 <= n; p += 16) {
        v16 v;
        memcpy(&v, in + p, 16);
        if (any((v16)((v >= '0') & (v <= '9')))) break;
    }
    while (p < n && !is_digit(in[p])) p++;
    return p;
}

/* The masks: each reads in[0..n) and writes to out (room for 3n + 16 bytes: no mask more
 * than triples a text), returning the length written. */

/* [^\s<>()\[\]\"',;:]+@[^\s<>()\[\]\"',;:]+ -> <address>
 * Both sides are the same class, which holds `@`: the leftmost match starts where a run of the
 * class starts and takes the whole run, if the run has an `@` that is neither its first nor
 * its last character; else no match starts in the run. */
static size_t mask_address(const uchar *in, size_t n, uchar *out) {
    size_t o = 0, done = 0, from = 0;
    const uchar *at;
    while (from < n && (at = memchr(in + from, '@', n - from)) != NULL) {
        size_t p = (size_t)(at - in), start = p, end = p + 1;
        while (start > done && in_address(in[start - 1])) start--;
        while (end < n && in_address(in[end])) end++;
        int found = 0;
        for (size_t q = start + 1; q + 1 < end; q++) {
            if (in[q] == '@') {
                found = 1;
                break;
            }
        }
        if (found) {
            memcpy(out + o, in + done, start - done);
            o += start - done;
            memcpy(out + o, "<address>", 9);
            o += 9;
            done = end;
        }
        from = end;
    }
    memcpy(out + o, in + done, n - done);
    return o + n - done;
}

/* (https?://[^\s?#]*)[?#][^\s)\]>\"']* -> $1?
 * At each `http://` or `https://`: the path runs to the first white space, `?` or `#`; a match
 * when that is `?` or `#`, which then drops the rest up to white space or one of )]>"'. */
static size_t mask_url_query(const uchar *in, size_t n, uchar *out) {
    size_t o = 0, done = 0, from = 0;
    const uchar *found;
    while (from < n && (found = memmem(in + from, n - from, "://", 3)) != NULL) {
        size_t k = (size_t)(found - in), i = 0;
        int http = 0;
        if (k >= 5 && k - 5 >= done && memcmp(in + k - 5, "https", 5) == 0) {
            i = k - 5;
            http = 1;
        } else if (k >= 4 && k - 4 >= done && memcmp(in + k - 4, "http", 4) == 0) {
            i = k - 4;
            http = 1;
        }
        from = k + 1;
        if (!http) continue;
        size_t p = k + 3;
        while (p < n && (classes[in[p]] & C_PATH)) p++;
        if (p < n && (in[p] == '?' || in[p] == '#')) {
            memcpy(out + o, in + done, p - done);
            o += p - done;
            out[o++] = '?';
            size_t q = p + 1;
            while (q < n && (classes[in[q]] & C_QUERY)) q++;
            done = from = q;
        }
    }
    memcpy(out + o, in + done, n - done);
    return o + n - done;
}

/* `count` digits at in[p..]: whether they are there */
static inline int digits_at(const uchar *in, size_t n, size_t p, size_t count) {
    if (p + count > n) return 0;
    for (size_t q = p; q < p + count; q++)
        if (!is_digit(in[q])) return 0;
    return 1;
}

/* [245]\d\d followed by `after_a` or `after_b` at s[p..] */
static inline int line_code(const uchar *s, size_t n, size_t p, uchar after_a, uchar after_b) {
    return p + 4 <= n && s[p] >= '2' && s[p] <= '5' && s[p] != '3' && is_digit(s[p + 1]) &&
           is_digit(s[p + 2]) && (s[p + 3] == after_a || s[p + 3] == after_b);
}

/* \b\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:[Zz]|[+-]\d{2}:?\d{2})? -> <time>
 * (lower-cased: `t`, `z`). The end of a match at i, or 0. */
static size_t time_at(const uchar *in, size_t n, size_t i) {
    if (!boundary(in, n, i) || n - i < 19) return 0;
    const uchar *s = in + i;
    if (!(digits_at(in, n, i, 4) && s[4] == '-' && digits_at(in, n, i + 5, 2) && s[7] == '-' &&
          digits_at(in, n, i + 8, 2) && (s[10] == 't' || s[10] == ' ') &&
          digits_at(in, n, i + 11, 2) && s[13] == ':' && digits_at(in, n, i + 14, 2) &&
          s[16] == ':' && digits_at(in, n, i + 17, 2)))
        return 0;
    size_t p = i + 19;
    if (p + 1 < n && (in[p] == '.' || in[p] == ',') && is_digit(in[p + 1])) {
        p += 1;
        while (p < n && is_digit(in[p])) p++;
    }
    if (p < n && in[p] == 'z') {
        p += 1;
    } else if (p < n && (in[p] == '+' || in[p] == '-') && digits_at(in, n, p + 1, 2)) {
        if (p + 3 < n && in[p + 3] == ':' && digits_at(in, n, p + 4, 2)) p += 6;
        else if (digits_at(in, n, p + 3, 2)) p += 5;
    }
    return p;
}

/* \b\d{1,3}(?:\.\d{1,3}){3}\b -> <ip>: the groups of digits tried longest first, as the
 * greedy quantifiers backtrack. The end of a match of the groups from `group` on at p, or 0. */
static size_t ipv4_from(const uchar *in, size_t n, size_t p, int group) {
    if (group > 0) {
        if (p >= n || in[p] != '.') return 0;
        p += 1;
    }
    size_t run = 0;
    while (run < 3 && p + run < n && is_digit(in[p + run])) run++;
    for (size_t take = run; take >= 1; take--) {
        size_t end = p + take;
        if (group == 3) {
            if (boundary(in, n, end)) return end;
        } else {
            size_t found = ipv4_from(in, n, end, group + 1);
            if (found) return found;
        }
    }
    return 0;
}

/* \b(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{1,4}\b -> <ip>. A group takes the whole run of hex
 * digits before its `:` (the colon must follow the digits), so only the number of groups
 * backtracks: as many as there are, then fewer. The end of a match at i, or 0. */
static size_t hex_run(const uchar *in, size_t n, size_t p) {
    size_t q = p;
    while (q < n && is_hex(in[q])) q++;
    return q - p;
}
static size_t ipv6_from(const uchar *in, size_t n, size_t p, int groups) {
    size_t run = hex_run(in, n, p);
    if (groups < 7 && run <= 4 && p + run < n && in[p + run] == ':') {
        size_t found = ipv6_from(in, n, p + run + 1, groups + 1);
        if (found) return found;
    }
    if (groups >= 2 && run >= 1) {
        /* [0-9a-f]{1,4}\b: within a longer run no boundary follows */
        size_t take = run < 4 ? run : 4;
        if (boundary(in, n, p + take)) return p + take;
    }
    return 0;
}

/* \b\d{4}-\d{2}-\d{2}\b -> <date> */
static size_t date_at(const uchar *in, size_t n, size_t i) {
    if (!boundary(in, n, i) || n - i < 10) return 0;
    if (digits_at(in, n, i, 4) && in[i + 4] == '-' && digits_at(in, n, i + 5, 2) &&
        in[i + 7] == '-' && digits_at(in, n, i + 8, 2) && boundary(in, n, i + 10))
        return i + 10;
    return 0;
}

typedef size_t (*match_at)(const uchar *in, size_t n, size_t i);

static size_t ipv4_at(const uchar *in, size_t n, size_t i) {
    if (!boundary(in, n, i)) return 0;
    return ipv4_from(in, n, i, 0);
}
static size_t ipv6_at(const uchar *in, size_t n, size_t i) {
    if (!boundary(in, n, i)) return 0;
    return ipv6_from(in, n, i, 0);
}

/* Every leftmost-first match of `at` replaced by `with`. */
static size_t mask_matches(const uchar *in, size_t n, uchar *out, match_at at, uint16_t first,
                           const char *with) {
    size_t o = 0, i = 0, w = strlen(with);
    while (i < n) {
        size_t gap = i;
        if (first == C_DIGIT) gap = next_digit(in, n, i);
        while (gap < n && !(classes[in[gap]] & first)) gap++;
        memcpy(out + o, in + i, gap - i);
        o += gap - i;
        i = gap;
        if (i == n) break;
        size_t end = at(in, n, i);
        if (end > i) {
            memcpy(out + o, with, w);
            o += w;
            i = end;
        } else {
            out[o++] = in[i++];
        }
    }
    return o;
}

/* normalize._LONG_MIXED_WORD: a word (w[0..len), [a-z0-9_]) that the alternation matches
 * whole. k: its leading [a-z_]; m: the digits after them. */
static int long_mixed(const uchar *w, size_t len) {
    size_t k = 0, m = 0;
    while (k < len && is_letter(w[k])) k++;
    while (k + m < len && is_digit(w[k + m])) m++;
    /* [a-z_]{6,}\d[a-z0-9_]+ */
    if (k >= 6 && m >= 1 && len >= k + 2) return 1;
    /* [a-z_]{7,}\d */
    if (k >= 7 && m == 1 && len == k + 1) return 1;
    /* [a-z_]\d{5,}[a-z0-9_]{2,} ; [a-z_]{2}\d{5,}[a-z0-9_]+ */
    if ((k == 1 || k == 2) && m >= 5 && len >= 8) return 1;
    /* [a-z_]{3,5}\d{5,}[a-z0-9_]* */
    if (k >= 3 && k <= 5 && m >= 5) return 1;
    /* [a-z_]{k}\d{m}[a-z_][a-z0-9_]{max(0, 7 - k - m),} for k 1-5, m 1-4 */
    if (k >= 1 && k <= 5 && m >= 1 && m <= 4 && k + m < len && is_letter(w[k + m])) {
        size_t rest = k + m >= 7 ? 0 : 7 - k - m;
        if (len >= k + m + 1 + rest) return 1;
    }
    return 0;
}

/* normalize._DIGIT_WORD: a word that the alternation matches whole. */
static int digit_word(const uchar *w, size_t len) {
    if (len < 5) return 0;
    /* [1-9][a-z0-9_]{4,} */
    if (w[0] >= '1' && w[0] <= '9') return 1;
    if (w[0] != '0') return 0;
    /* 0[1-9a-z_][a-z0-9_]{3,} */
    if (w[1] != '0') return is_letter(w[1]) || is_digit(w[1]);
    /* 00[a-z0-9_]{3,5} ; 00[a-z0-9_]{7,} */
    if (len <= 7 || len >= 9) return 1;
    /* 00[g-z_][a-z0-9_]{2,} */
    if (!is_hex(w[2])) return 1;
    /* 00[0-9a-f][g-z_][a-z0-9_]+ */
    if (!is_hex(w[3])) return 1;
    /* 00[0-9a-f]{2,}[g-z_][a-z0-9_]*: the first character past the hex digits is g-z or _ */
    size_t p = 2;
    while (p < len && is_hex(w[p])) p++;
    return p < len;
}

/* The two masks of ids, `(?:_LONG_MIXED_WORD)(?:-[a-z0-9_]+)*\b -> <id>` and then
 * `(?:_DIGIT_WORD)(?:-[a-z0-9_]+)*\b -> <id>`, in one pass. A mask's alternation must match a
 * word to its end (a boundary follows the match, and within a word none does), then the
 * hyphenated words after it go with it; words start where \b does. In one pass the second
 * mask's word stops before a hyphenated word the first mask takes: the first pass would have
 * made that `<id>`, where a hyphen is not followed by a word character. */
static size_t word_end(const uchar *in, size_t n, size_t j, int *digit) {
    while (j < n && is_word(in[j])) *digit |= is_digit(in[j++]);
    return j;
}
static size_t mask_ids(const uchar *in, size_t n, uchar *out) {
    size_t o = 0, i = 0;
    while (i < n) {
        /* (every word either mask takes holds a digit: the words before the word of the next
         * digit are copied as they are; i is never inside a word) */
        size_t gap = next_digit(in, n, i);
        while (gap > i && is_word(in[gap - 1])) gap--;
        memcpy(out + o, in + i, gap - i);
        o += gap - i;
        i = gap;
        if (i == n) break;
        int digit = 0;
        size_t j = word_end(in, n, i, &digit);
        /* (every word either mask takes holds a digit) */
        int mixed = digit && long_mixed(in + i, j - i);
        if (mixed || (digit && digit_word(in + i, j - i))) {
            while (j + 1 < n && in[j] == '-' && is_word(in[j + 1])) {
                int more = 0;
                size_t next = word_end(in, n, j + 1, &more);
                if (!mixed && more && long_mixed(in + j + 1, next - j - 1)) break;
                j = next;
            }
            memcpy(out + o, "<id>", 4);
            o += 4;
        } else {
            memcpy(out + o, in + i, j - i);
            o += j - i;
        }
        i = j;
    }
    return o;
}

/* What a mask's every match holds, looked for before a pass: \d{4}-\d{2}-\d{2} (times,
 * dates); \d\.\d (IPv4); :[0-9a-f]{0,4}: (IPv6); [245]\d\d- (the codes of joined lines). */
static int has_dated(const uchar *in, size_t n) {
    for (const uchar *at = in; (at = memchr(at, '-', (size_t)(in + n - at))) != NULL; at++) {
        size_t p = (size_t)(at - in);
        if (p >= 4 && digits_at(in, n, p - 4, 4) && digits_at(in, n, p + 1, 2) && p + 3 < n &&
            in[p + 3] == '-' && digits_at(in, n, p + 4, 2))
            return 1;
    }
    return 0;
}
static int has_dotted(const uchar *in, size_t n) {
    for (const uchar *at = in; (at = memchr(at, '.', (size_t)(in + n - at))) != NULL; at++) {
        size_t p = (size_t)(at - in);
        if (p >= 1 && p + 1 < n && is_digit(in[p - 1]) && is_digit(in[p + 1])) return 1;
    }
    return 0;
}
static int has_colons(const uchar *in, size_t n) {
    for (const uchar *at = in; (at = memchr(at, ':', (size_t)(in + n - at))) != NULL; at++) {
        size_t p = (size_t)(at - in) + 1, run = 0;
        while (run < 4 && p + run < n && is_hex(in[p + run])) run++;
        if (p + run < n && in[p + run] == ':') return 1;
    }
    return 0;
}
static int has_line_code(const uchar *in, size_t n) {
    for (const uchar *at = in; (at = memchr(at, '-', (size_t)(in + n - at))) != NULL; at++) {
        size_t p = (size_t)(at - in);
        if (p >= 3 && line_code(in, n, p - 3, '-', '-')) return 1;
    }
    return 0;
}

/* \s{2,}|[^\S ] -> " ": every run of white space becomes one space */
static size_t mask_spaces(const uchar *in, size_t n, uchar *out) {
    size_t o = 0, i = 0;
    while (i < n) {
        size_t gap = i;
        /* a single space is left as it is */
        while (gap < n && (!is_space(in[gap]) ||
                           (in[gap] == ' ' && (gap + 1 == n || !is_space(in[gap + 1])))))
            gap++;
        memcpy(out + o, in + i, gap - i);
        o += gap - i;
        i = gap;
        if (i == n) break;
        while (i < n && is_space(in[i])) i++;
        out[o++] = ' ';
    }
    return o;
}

/* normalize.joined_lines, first: \\n([245]\d\d[ -]) -> " $1" (the matches cannot overlap:
 * the four characters after `\n` hold no backslash) */
static size_t join_escaped(const uchar *in, size_t n, uchar *out) {
    size_t o = 0, i = 0;
    while (i < n) {
        if (in[i] == '\\' && i + 1 < n && in[i + 1] == 'n' && line_code(in, n, i + 2, ' ', '-')) {
            out[o++] = ' ';
            i += 2;
        } else {
            out[o++] = in[i++];
        }
    }
    return o;
}

/* normalize.joined_lines, then: (^|\s)[245]\d\d-(?:[245]\.\d{1,3}\.\d{1,3}(?:\s|$))? -> $1.
 * The end of the optional part at p (after its white space), or 0. */
static size_t enhanced_tail(const uchar *in, size_t n, size_t p) {
    if (!(p + 2 <= n && in[p] >= '2' && in[p] <= '5' && in[p] != '3' && in[p + 1] == '.'))
        return 0;
    p += 2;
    size_t run = 0;
    while (p + run < n && is_digit(in[p + run])) run++;
    if (run < 1 || run > 3 || p + run >= n || in[p + run] != '.') return 0;
    p += run + 1;
    run = 0;
    while (p + run < n && is_digit(in[p + run])) run++;
    if (run < 1 || run > 3) return 0;
    p += run;
    if (p == n) return p;
    return is_space(in[p]) ? p + 1 : 0;
}
static size_t drop_line_codes(const uchar *in, size_t n, uchar *out) {
    size_t o = 0, i = 0;
    /* ^ first (at the start only), then \s: a code's dash is found (memchr), and the code
     * before it is one where white space stands before that (kept) at i or later */
    if (line_code(in, n, 0, '-', '-')) {
        size_t tail = enhanced_tail(in, n, 4);
        i = tail ? tail : 4;
    }
    size_t look = i + 4;
    const uchar *dash;
    while (look < n && (dash = memchr(in + look, '-', n - look)) != NULL) {
        size_t code = (size_t)(dash - in) - 3;
        if (is_space(in[code - 1]) && line_code(in, n, code, '-', '-')) {
            memcpy(out + o, in + i, code - i);
            o += code - i;
            size_t tail = enhanced_tail(in, n, code + 4);
            i = tail ? tail : code + 4;
            look = i + 4;
        } else {
            look = (size_t)(dash - in) + 1;
        }
    }
    memcpy(out + o, in + i, n - i);
    return o + n - i;
}

/* The normalized text of s[0..n) (ASCII) into *out (grown as needed); its length, or -1 when
 * memory runs out. */
typedef struct {
    uchar *a, *b;
    size_t size;
} buffers;

static Py_ssize_t normalized(const char *s, size_t n, buffers *work, uchar **result) {
    size_t need = 3 * n + 16;
    if (need > work->size) {
        uchar *a = realloc(work->a, need), *b = NULL;
        if (a != NULL) work->a = a;
        b = realloc(work->b, need);
        if (b != NULL) work->b = b;
        if (a == NULL || b == NULL) return -1;
        work->size = need;
    }
    uchar *x = work->a, *y = work->b, *t;
    /* lower-cased, noting the classes of its characters and whether two spaces follow each
     * other */
    unsigned seen = 0, doubled = 0;
    uchar before = 0;
    size_t i = 0;
    /* sixteen bytes at a time (`v16`); the pairs of spaces read the next byte too */
    v16 digit = {0}, breaks = {0}, pairs = {0};
    for (; i + 17 <= n; i += 16) {
        v16 v, next;
        memcpy(&v, s + i, 16);
        memcpy(&next, s + i + 1, 16);
        v += (v16)((v >= 'A') & (v <= 'Z')) & 32;
        memcpy(x + i, &v, 16);
        digit |= (v16)((v >= '0') & (v <= '9'));
        breaks |= (v16)((v >= '\t') & (v <= '\r'));
        pairs |= (v16)((v == ' ') & (next == ' '));
    }
    if (any(digit)) seen |= C_DIGIT;
    if (any(breaks)) seen |= C_BREAK;
    doubled = any(pairs);
    if (i > 0) before = x[i - 1];
    for (; i < n; i++) {
        uchar c = (uchar)s[i];
        c = (c >= 'A' && c <= 'Z') ? (uchar)(c + 32) : c;
        x[i] = c;
        seen |= classes[c];
        doubled |= (c == ' ') & (before == ' ');
        before = c;
    }
    size_t len = n;
#define PASS(call)        \
    do {                  \
        len = (call);     \
        t = x;            \
        x = y;            \
        y = t;            \
    } while (0)
    /* a pass runs where the text holds what each of its matches holds (in order: no mask
     * writes one of those characters but `<address>`'s `d`s and the spaces) */
    int digits = (seen & C_DIGIT) != 0;
    /* the spaces' pass where there is white space to rewrite (a run of two, or any but a
     * space): the masks before it make none (each match becomes a word, whatever white space
     * it held) */
    int spaced = (seen & C_BREAK) || doubled;
    if (memchr(x, '@', len)) PASS(mask_address(x, len, y));
    if (memchr(x, '/', len)) PASS(mask_url_query(x, len, y));
    if (digits && has_dated(x, len)) PASS(mask_matches(x, len, y, time_at, C_DIGIT, "<time>"));
    if (digits && has_dotted(x, len)) PASS(mask_matches(x, len, y, ipv4_at, C_DIGIT, "<ip>"));
    if (has_colons(x, len)) PASS(mask_matches(x, len, y, ipv6_at, C_V6, "<ip>"));
    if (digits && has_dated(x, len)) PASS(mask_matches(x, len, y, date_at, C_DIGIT, "<date>"));
    if (digits) PASS(mask_ids(x, len, y));
    if (spaced) PASS(mask_spaces(x, len, y));
    if (memchr(x, '\\', len)) PASS(join_escaped(x, len, y));
    if (digits && has_line_code(x, len)) PASS(drop_line_codes(x, len, y));
#undef PASS
    size_t start = 0;
    while (start < len && is_space(x[start])) start++;
    while (len > start && is_space(x[len - 1])) len--;
    *result = x + start;
    return (Py_ssize_t)(len - start);
}

/* normalize.numbered_hosts_alike: in a text that starts `^((?:<?<address>>?: )?host [^\s\[]+) ?\[`
 * (and holds no line break), each run of digits of that start (the name of the host that
 * answered) becomes `#`. The length of the start, or 0 when the text does not start so. */
static size_t answering_host(const uchar *s, size_t n) {
    static const char *prefixes[] = {"<<address>>: ", "<<address>: ", "<address>>: ", "<address>: "};
    /* `<?` and `>?` are greedy: the prefixes in the order the regex tries them, then none */
    for (int tried = 0; tried <= 4; tried++) {
        size_t p = 0;
        if (tried < 4) {
            size_t len = strlen(prefixes[tried]);
            if (n < len || memcmp(s, prefixes[tried], len) != 0) continue;
            p = len;
        }
        if (n - p < 5 || memcmp(s + p, "host ", 5) != 0) continue;
        size_t end = p + 5;
        while (end < n && !is_space(s[end]) && s[end] != '[') end++;
        if (end == p + 5) continue;
        size_t q = end;
        if (q < n && s[q] == ' ') q++;
        if (q < n && s[q] == '[') return end;
    }
    return 0;
}

/* --- columns handed to polars as Arrow arrays (no Python object per text) ------------------ */

/* The Arrow C data interface's structs (arrow.apache.org/docs/format/CDataInterface.html). */
struct ArrowSchema {
    const char *format;
    const char *name;
    const char *metadata;
    int64_t flags;
    int64_t n_children;
    struct ArrowSchema **children;
    struct ArrowSchema *dictionary;
    void (*release)(struct ArrowSchema *);
    void *private_data;
};
struct ArrowArray {
    int64_t length;
    int64_t null_count;
    int64_t offset;
    int64_t n_buffers;
    int64_t n_children;
    const void **buffers;
    struct ArrowArray **children;
    struct ArrowArray *dictionary;
    void (*release)(struct ArrowArray *);
    void *private_data;
};

static inline void valid_bit_set(uint8_t *bitmap, int64_t i) {
    bitmap[i >> 3] |= (uint8_t)(1u << (i & 7));
}

/* A column of large strings (Arrow's `U`: int64 offsets) being written, row after row. */
typedef struct {
    uint8_t *validity; /* a bit a row, 1: a value */
    int64_t *offsets;  /* rows + 1 */
    uchar *data;
    size_t size, room; /* of data */
    int64_t rows, nulls;
    const void *buffers[3]; /* (when handed over) */
} column;

static int column_start(column *c, Py_ssize_t rows) {
    memset(c, 0, sizeof *c);
    c->validity = calloc((size_t)rows / 8 + 1, 1);
    c->offsets = malloc(((size_t)rows + 1) * sizeof(int64_t));
    c->room = 1 << 16;
    c->data = malloc(c->room);
    if (c->validity == NULL || c->offsets == NULL || c->data == NULL) return -1;
    c->offsets[0] = 0;
    return 0;
}
static void column_free(column *c) {
    free(c->validity);
    free(c->offsets);
    free(c->data);
    c->validity = NULL;
    c->offsets = NULL;
    c->data = NULL;
}
/* Room for `more` bytes at the end of the data; -1 when memory runs out. */
static int column_room(column *c, size_t more) {
    if (c->size + more <= c->room) return 0;
    size_t room = c->room;
    while (room < c->size + more) room *= 2;
    uchar *grown = realloc(c->data, room);
    if (grown == NULL) return -1;
    c->data = grown;
    c->room = room;
    return 0;
}
/* The next row: the `len` bytes written at the end of the data (`column_room` first). */
static void column_end_row(column *c, size_t len) {
    c->size += len;
    valid_bit_set(c->validity, c->rows);
    c->offsets[++c->rows] = (int64_t)c->size;
}
static void column_null(column *c) {
    c->nulls++;
    c->offsets[c->rows + 1] = c->offsets[c->rows];
    c->rows++;
}

static void schema_release(struct ArrowSchema *schema) { schema->release = NULL; }
static void array_release(struct ArrowArray *array) {
    column *c = array->private_data;
    column_free(c);
    free(c);
    array->release = NULL;
}
/* (a capsule whose struct polars did not take releases it itself) */
static void schema_capsule_free(PyObject *capsule) {
    struct ArrowSchema *schema = PyCapsule_GetPointer(capsule, "arrow_schema");
    if (schema == NULL) return;
    if (schema->release != NULL) schema->release(schema);
    free(schema);
}
static void array_capsule_free(PyObject *capsule) {
    struct ArrowArray *array = PyCapsule_GetPointer(capsule, "arrow_array");
    if (array == NULL) return;
    if (array->release != NULL) array->release(array);
    free(array);
}

/* (schema capsule, array capsule) of `c` as Arrow's `format`: `U` (large strings: validity,
 * offsets, data) or a fixed width (`s`: int16, `i`: int32; validity, then the values in
 * `data`). `c`
 * hands its buffers over (the array releases them); NULL when memory runs out (`c` is then
 * freed). */
static PyObject *arrow_capsules(column *c, const char *format) {
    int strings = strcmp(format, "U") == 0;
    struct ArrowSchema *schema = calloc(1, sizeof *schema);
    struct ArrowArray *array = calloc(1, sizeof *array);
    column *owned = malloc(sizeof *owned);
    PyObject *schema_capsule = NULL, *array_capsule = NULL, *pair = NULL;
    if (schema == NULL || array == NULL || owned == NULL) {
        free(schema);
        free(array);
        free(owned);
        column_free(c);
        return PyErr_NoMemory();
    }
    *owned = *c;
    owned->buffers[0] = owned->nulls ? owned->validity : NULL;
    owned->buffers[1] = strings ? (const void *)owned->offsets : owned->data;
    owned->buffers[2] = owned->data;
    schema->format = format;
    schema->name = "";
    schema->flags = 2; /* ARROW_FLAG_NULLABLE */
    schema->release = schema_release;
    array->length = owned->rows;
    array->null_count = owned->nulls;
    array->n_buffers = strings ? 3 : 2;
    array->buffers = owned->buffers;
    array->release = array_release;
    array->private_data = owned;
    schema_capsule = PyCapsule_New(schema, "arrow_schema", schema_capsule_free);
    if (schema_capsule == NULL) free(schema);
    else array_capsule = PyCapsule_New(array, "arrow_array", array_capsule_free);
    if (array_capsule == NULL) { /* (the schema's capsule, if made, frees the schema) */
        array_release(array);
        free(array);
        Py_XDECREF(schema_capsule);
        return NULL;
    }
    pair = PyTuple_Pack(2, schema_capsule, array_capsule);
    Py_DECREF(schema_capsule);
    Py_DECREF(array_capsule);
    return pair;
}

/* The normalized text s[0..n) with the digits of its answering host masked, as the next row of
 * `c`; -1 when memory runs out. */
static int push_hosts_masked(column *c, const uchar *s, size_t n) {
    size_t start = memchr(s, '\n', n) ? 0 : answering_host(s, n);
    if (column_room(c, n) < 0) return -1;
    uchar *out = c->data + c->size;
    size_t o = 0;
    for (size_t p = 0; p < start; p++) {
        if (!is_digit(s[p])) out[o++] = s[p];
        else if (p == 0 || !is_digit(s[p - 1])) out[o++] = '#';
    }
    memcpy(out + o, s + start, n - start);
    column_end_row(c, o + n - start);
    return 0;
}

struct ArrowArrayStream {
    int (*get_schema)(struct ArrowArrayStream *, struct ArrowSchema *);
    int (*get_next)(struct ArrowArrayStream *, struct ArrowArray *);
    const char *(*get_last_error)(struct ArrowArrayStream *);
    void (*release)(struct ArrowArrayStream *);
    void *private_data;
};

/* Whether s[0..n) is ASCII: sixteen bytes at a time. */
static int ascii(const uchar *s, size_t n) {
    size_t i = 0;
    v16 high = {0};
    for (; i + 16 <= n; i += 16) {
        v16 v;
        memcpy(&v, s + i, 16);
        high |= v;
    }
    for (; i < n; i++) high[0] |= s[i];
    return !any(high & 0x80);
}

/* What is done with each text of a column: s[0..n), or s NULL for a null or a text that is
 * not ASCII (the caller's polars path). -1 when memory runs out. */
typedef int (*each_text)(void *state, const uchar *s, size_t n);

/* `each` on the texts of `texts`, in order: a polars String column of `expected` rows, read
 * through the Arrow C stream it exports (its string views; no Python object a text), with the
 * byte classes filled on the first call. `each` runs without the interpreter's lock (it calls
 * no Python API: the state it writes is its caller's alone). 0, or -1 with an exception set. */
static int for_each_text(PyObject *texts, Py_ssize_t expected, const char *function,
                         each_text each, void *state) {
    static int ready = 0;
    if (!ready) {
        fill_classes();
        ready = 1;
    }
    PyObject *capsule = PyObject_CallMethod(texts, "__arrow_c_stream__", NULL);
    if (capsule == NULL) return -1;
    struct ArrowArrayStream *stream = PyCapsule_GetPointer(capsule, "arrow_array_stream");
    if (stream == NULL) {
        Py_DECREF(capsule);
        return -1;
    }
    Py_ssize_t count = 0;
    struct ArrowSchema schema;
    if (stream->get_schema(stream, &schema) != 0) {
        PyErr_Format(PyExc_ValueError, "%s(): no schema from the column", function);
        count = -1;
        goto done;
    }
    int views = strcmp(schema.format, "vu") == 0;
    if (schema.release != NULL) schema.release(&schema);
    if (!views) {
        PyErr_Format(PyExc_TypeError, "%s() takes a polars String column", function);
        count = -1;
        goto done;
    }
    for (;;) {
        struct ArrowArray array;
        if (stream->get_next(stream, &array) != 0) {
            PyErr_Format(PyExc_ValueError, "%s(): the column's stream failed", function);
            count = -1;
            goto done;
        }
        if (array.release == NULL) break; /* the end */
        const uint8_t *validity = array.buffers[0], *cells = array.buffers[1];
        int64_t data_buffers = array.n_buffers - 3;
        int failed = 0;
        /* the rows are read and written without the interpreter: another thread runs
         * meanwhile (classify.py works out what the texts name in one) */
        Py_BEGIN_ALLOW_THREADS
        for (int64_t i = 0; i < array.length && !failed; i++, count++) {
            int64_t j = i + array.offset;
            const uint8_t *view = cells + 16 * j;
            int32_t len, buffer, offset;
            memcpy(&len, view, 4);
            const uchar *text = view + 4;
            if (len > 12) {
                memcpy(&buffer, view + 8, 4);
                memcpy(&offset, view + 12, 4);
                text = buffer < data_buffers ? (const uchar *)array.buffers[2 + buffer] + offset
                                              : NULL;
            }
            int valid = validity == NULL || ((validity[j >> 3] >> (j & 7)) & 1);
            if (!valid || text == NULL || !ascii(text, (size_t)len)) text = NULL;
            if (each(state, text, text ? (size_t)len : 0) < 0) failed = 1;
        }
        Py_END_ALLOW_THREADS
        array.release(&array);
        if (failed) {
            PyErr_NoMemory();
            count = -1;
            goto done;
        }
    }
    if (count != expected) {
        PyErr_Format(PyExc_ValueError, "%s(): the column's length changed", function);
        count = -1;
    }
done:
    Py_DECREF(capsule); /* (its destructor releases the stream) */
    return count < 0 ? -1 : 0;
}

/* What `grouped` writes: the grouped texts' column, and the masks' buffers. */
typedef struct {
    column grouped;
    buffers work;
} normalizing;

static int normalize_one(void *state, const uchar *s, size_t n) {
    normalizing *to = state;
    if (s == NULL) {
        column_null(&to->grouped);
        return 0;
    }
    uchar *out = NULL;
    Py_ssize_t len = normalized((const char *)s, n, &to->work, &out);
    if (len < 0 || push_hosts_masked(&to->grouped, out, (size_t)len) < 0) return -1;
    return 0;
}

/* The classification's normalized text of each ASCII text with its answering host's digits
 * masked: the grouped texts' column, as its capsule pair. (The normalized texts alone, which
 * `normalize` wrote beside it until interface 6, served only tests.) */
static PyObject *grouped(PyObject *self, PyObject *texts) {
    (void)self;
    Py_ssize_t count = PyObject_Length(texts);
    if (count < 0) return NULL;
    normalizing to = {.work = {NULL, NULL, 0}};
    if (column_start(&to.grouped, count) != 0) {
        column_free(&to.grouped);
        return PyErr_NoMemory();
    }
    int failed = for_each_text(texts, count, "grouped", normalize_one, &to) < 0;
    free(to.work.a);
    free(to.work.b);
    if (failed) {
        column_free(&to.grouped);
        return NULL;
    }
    return arrow_capsules(&to.grouped, "U");
}

/* --- extract.py's codes, on the text as written (not lower-cased) ---------------------- */

/* [A-Za-z0-9_]: a word character of the text as written */
static inline int is_word_any_case(uchar c) {
    return is_word(c) || (c >= 'A' && c <= 'Z');
}
static inline uchar lower(uchar c) { return (c >= 'A' && c <= 'Z') ? (uchar)(c + 32) : c; }
static int starts_caseless(const uchar *s, size_t n, size_t p, const char *word) {
    size_t len = strlen(word);
    if (p + len > n) return 0;
    for (size_t q = 0; q < len; q++)
        if (lower(s[p + q]) != (uchar)word[q]) return 0;
    return 1;
}
static size_t skip_spaces(const uchar *s, size_t n, size_t p) {
    while (p < n && is_space(s[p])) p++;
    return p;
}

/* extract._VERSION: (?i)\b(?:version|release|ver\.?|v)\s*\d+(?:\.\d+)+ -> " ". After the word,
 * the digits must run to a dot (a shorter run leaves a digit next), so only the alternation
 * backtracks: each alternative in order, `ver.` before `ver`. The end of a match at i, or 0. */
static size_t version_rest(const uchar *s, size_t n, size_t p) {
    p = skip_spaces(s, n, p);
    if (p >= n || !is_digit(s[p])) return 0;
    while (p < n && is_digit(s[p])) p++;
    int groups = 0;
    while (p + 1 < n && s[p] == '.' && is_digit(s[p + 1])) {
        p += 1;
        while (p < n && is_digit(s[p])) p++;
        groups++;
    }
    return groups ? p : 0;
}
static size_t version_at(const uchar *s, size_t n, size_t i) {
    if (i > 0 && is_word_any_case(s[i - 1])) return 0;
    size_t end = 0;
    if (starts_caseless(s, n, i, "version") && (end = version_rest(s, n, i + 7))) return end;
    if (starts_caseless(s, n, i, "release") && (end = version_rest(s, n, i + 7))) return end;
    if (starts_caseless(s, n, i, "ver.") && (end = version_rest(s, n, i + 4))) return end;
    if (starts_caseless(s, n, i, "ver") && (end = version_rest(s, n, i + 3))) return end;
    if (starts_caseless(s, n, i, "v") && (end = version_rest(s, n, i + 1))) return end;
    return 0;
}
static size_t without_versions(const uchar *in, size_t n, uchar *out) {
    size_t o = 0, i = 0;
    while (i < n) {
        uchar c = lower(in[i]);
        size_t end = (c == 'v' || c == 'r') ? version_at(in, n, i) : 0;
        if (end > i) {
            out[o++] = ' ';
            i = end;
        } else {
            out[o++] = in[i++];
        }
    }
    return o;
}

/* extract._REPLY: (?:^\s*|said:\s*|:\s+|["'(\[]\s*)([245][0-5][0-9])(?:[\s\-]|$): the first
 * match's code, or -1. */
static int reply_code_at(const uchar *s, size_t n, size_t p) {
    if (p + 3 > n || !(s[p] == '2' || s[p] == '4' || s[p] == '5') || !(s[p + 1] >= '0' && s[p + 1] <= '5') ||
        !is_digit(s[p + 2]))
        return -1;
    if (p + 3 < n && !is_space(s[p + 3]) && s[p + 3] != '-') return -1;
    return (s[p] - '0') * 100 + (s[p + 1] - '0') * 10 + (s[p + 2] - '0');
}
static int reply_code(const uchar *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int code;
        if (i == 0 && (code = reply_code_at(s, n, skip_spaces(s, n, 0))) >= 0) return code;
        if (s[i] == 's' && n - i >= 5 && memcmp(s + i, "said:", 5) == 0 &&
            (code = reply_code_at(s, n, skip_spaces(s, n, i + 5))) >= 0)
            return code;
        if (s[i] == ':' && i + 1 < n && is_space(s[i + 1]) &&
            (code = reply_code_at(s, n, skip_spaces(s, n, i + 1))) >= 0)
            return code;
        if ((classes[s[i]] & C_OPEN) &&
            (code = reply_code_at(s, n, skip_spaces(s, n, i + 1))) >= 0)
            return code;
    }
    return -1;
}

/* extract._ENHANCED_CANDIDATE, found one after another (each match takes the character that
 * ends it): (?:^|[\s#(\[=\-"':<;,])([245]\.[0-7]\.[0-9]{1,3})(?:$|[^0-9.]|\.(?:$|[^0-9])).
 * The end of the code at p (its detail's digits must number one to three, a longer run leaves
 * a digit next), or 0; *end: where the match ends. */
static size_t enhanced_at(const uchar *s, size_t n, size_t p, size_t *end) {
    if (p + 5 > n || !(s[p] == '2' || s[p] == '4' || s[p] == '5') || s[p + 1] != '.' ||
        !(s[p + 2] >= '0' && s[p + 2] <= '7') || s[p + 3] != '.')
        return 0;
    size_t q = p + 4;
    while (q < n && is_digit(s[q])) q++;
    if (q == p + 4 || q - (p + 4) > 3) return 0;
    if (q == n) *end = q;
    else if (s[q] != '.') *end = q + 1;
    else if (q + 1 == n) *end = q + 1;
    else if (!is_digit(s[q + 1])) *end = q + 2;
    else return 0;
    return q;
}
static inline int enhanced_delimiter(uchar c) { return classes[c] & C_BEFORE; }

/* codes(texts) -> (reply codes, first enhanced code, first of class 2, of 4, of 5): for each
 * ASCII str, the reply code extract._reply_code finds in its text without versions (null if
 * none) and the first of extract._enhanced_candidates, of all and of each class; for
 * anything else -1 and nulls (the caller runs the polars expressions). Each an Arrow array
 * (int16, then large strings) as (schema capsule, array capsule). */
/* What `codes` writes: the reply codes (int16, in `reply`'s data) and the four columns of
 * enhanced codes, and the buffer of a text without versions. */
typedef struct {
    column reply, found[4];
    uchar *work;
    size_t size;
} coding;

static int codes_one(void *state, const uchar *s, size_t n) {
    coding *to = state;
    int16_t *replies = (int16_t *)to->reply.data;
    int64_t row = to->reply.rows++;
    if (s == NULL) {
        replies[row] = -1;
        valid_bit_set(to->reply.validity, row);
        for (int k = 0; k < 4; k++) column_null(&to->found[k]);
        return 0;
    }
    if (n + 1 > to->size) {
        uchar *grown = realloc(to->work, n + 1);
        if (grown == NULL) return -1;
        to->work = grown;
        to->size = n + 1;
    }
    /* (a copy only where a version is to be taken out) */
    const uchar *versionless = s;
    size_t length = n;
    for (size_t v = 0; v < n; v++) {
        uchar c = lower(s[v]);
        if ((c == 'v' || c == 'r') && version_at(s, n, v)) {
            length = without_versions(s, n, to->work);
            versionless = to->work;
            break;
        }
    }
    int code = reply_code(versionless, length);
    replies[row] = (int16_t)(code >= 0 ? code : 0);
    if (code >= 0) valid_bit_set(to->reply.validity, row);
    else to->reply.nulls++;
    /* the first candidate of all, then of classes 2, 4, 5 (found[0] to found[3]); the codes'
     * first dots, in order: a code at p is found where p is 0, or where a character that may
     * stand before one is at p - 1 and the match before ended there or earlier */
    size_t at[4] = {0, 0, 0, 0}, len[4] = {0, 0, 0, 0};
    int have[4] = {0, 0, 0, 0}, wanted = 4;
    size_t done = 0;
    const uchar *dot = versionless;
    while (wanted > 0 && (dot = memchr(dot, '.', (size_t)(versionless + length - dot))) != NULL) {
        size_t start = (size_t)(dot - versionless) - (dot > versionless ? 1 : 0), end = 0;
        dot++;
        if (dot - 1 == versionless) continue;
        if (!(start == 0 || (start - 1 >= done && enhanced_delimiter(versionless[start - 1]))))
            continue;
        size_t stop = enhanced_at(versionless, length, start, &end);
        if (!stop) continue;
        int slot = versionless[start] == '2' ? 1 : versionless[start] == '4' ? 2 : 3;
        for (int k = 0; k < 4; k++) {
            if ((k == 0 || k == slot) && !have[k]) {
                have[k] = 1;
                at[k] = start;
                len[k] = stop - start;
                wanted--;
            }
        }
        done = end;
        dot = versionless + end;
    }
    for (int k = 0; k < 4; k++) {
        if (!have[k]) {
            column_null(&to->found[k]);
            continue;
        }
        if (column_room(&to->found[k], len[k]) < 0) return -1;
        memcpy(to->found[k].data + to->found[k].size, versionless + at[k], len[k]);
        column_end_row(&to->found[k], len[k]);
    }
    return 0;
}

/* codes(texts) -> (reply codes, first enhanced code, first of class 2, of 4, of 5): for each
 * ASCII text of the String column `texts`, the reply code extract._reply_code finds in its
 * text without versions (null if none) and the first of extract._enhanced_candidates, of all
 * and of each class; for a null or a text that is not ASCII -1 and nulls (the caller runs the
 * polars expressions). Each an Arrow array (int16, then large strings) as (schema capsule,
 * array capsule). */
static PyObject *codes(PyObject *self, PyObject *texts) {
    (void)self;
    Py_ssize_t count = PyObject_Length(texts);
    if (count < 0) return NULL;
    coding to = {.work = NULL, .size = 0};
    PyObject *pairs[5] = {NULL, NULL, NULL, NULL, NULL}, *answer = NULL;
    int ready = column_start(&to.reply, count) == 0;
    for (int k = 0; k < 4; k++) ready = column_start(&to.found[k], count) == 0 && ready;
    /* the reply codes' column: two bytes a row in its data, no offsets */
    ready = ready && column_room(&to.reply, 2 * (size_t)count + 2) == 0;
    if (!ready) {
        PyErr_NoMemory();
        goto failed;
    }
    if (for_each_text(texts, count, "codes", codes_one, &to) < 0) goto failed;
    free(to.work);
    pairs[0] = arrow_capsules(&to.reply, "s");
    for (int k = 0; k < 4; k++) pairs[k + 1] = arrow_capsules(&to.found[k], "U");
    if (pairs[0] && pairs[1] && pairs[2] && pairs[3] && pairs[4])
        answer = PyTuple_Pack(5, pairs[0], pairs[1], pairs[2], pairs[3], pairs[4]);
    for (int k = 0; k < 5; k++) Py_XDECREF(pairs[k]);
    return answer;
failed:
    free(to.work);
    column_free(&to.reply);
    for (int k = 0; k < 4; k++) column_free(&to.found[k]);
    return NULL;
}


/* --- classify.py's prefilter: which patterns' literals each text holds ----------------- */

/* What `literal_pairs` looks for: the literals, by a hash of their first three bytes (each
 * hash's literals are `by_start[first[h]] .. by_start[first[h + 1]]`; `hashed`: a bit per hash
 * that starts one), with their first eight bytes (`heads`, zeros after a shorter one), and
 * the targets each literal stands for (`targets[owned[l]] .. targets[owned[l + 1]]`: the
 * patterns it is a literal of). Each (text, target) pair found is written once (`seen`: the
 * last row a literal, and a target, was found in). */
typedef struct {
    const uchar **literals;
    size_t *lengths;
    uint64_t *heads, *masks; /* masks: all ones over the bytes a head holds */
    Py_ssize_t count;
    int32_t *first, *by_start;
    uint8_t hashed[65536 / 8];
    int32_t *owned, *targets;
    int64_t *literal_seen, *target_seen;
    int64_t row;
    int32_t *rows, *found; /* the pairs */
    size_t pairs, room;
} literal_search;

static inline size_t start_hash(const uchar *s) {
    uint32_t three = (uint32_t)s[0] << 16 | (uint32_t)s[1] << 8 | s[2];
    return (size_t)((three * 2654435761u) >> 16);
}

/* The pairs of literal `l`'s targets not yet found in this row. -1 when memory runs out. */
static int literal_found(literal_search *in, int32_t l, int64_t row) {
    in->literal_seen[l] = row;
    for (int32_t k = in->owned[l]; k < in->owned[l + 1]; k++) {
        int32_t target = in->targets[k];
        if (in->target_seen[target] == row) continue;
        in->target_seen[target] = row;
        if (in->pairs == in->room) {
            size_t room = 2 * in->room;
            int32_t *rows = realloc(in->rows, room * sizeof *rows);
            if (rows == NULL) return -1;
            in->rows = rows;
            int32_t *found = realloc(in->found, room * sizeof *found);
            if (found == NULL) return -1;
            in->found = found;
            in->room = room;
        }
        in->rows[in->pairs] = (int32_t)row;
        in->found[in->pairs++] = target;
    }
    return 0;
}

static int literal_pairs_one(void *state, const uchar *s, size_t n) {
    literal_search *in = state;
    int64_t row = in->row++;
    if (s == NULL) return 0;
    for (size_t i = 0; i + 3 <= n; i++) {
        size_t h = start_hash(s + i);
        if (!((in->hashed[h >> 3] >> (h & 7)) & 1)) continue;
        /* the text's next eight bytes (fewer at its end, zeros after) against the heads, the
         * bytes past a shorter literal masked out */
        uint64_t next = 0;
        memcpy(&next, s + i, n - i < 8 ? n - i : 8);
        for (int32_t k = in->first[h]; k < in->first[h + 1]; k++) {
            int32_t l = in->by_start[k];
            size_t len = in->lengths[l];
            if (in->literal_seen[l] == row || len > n - i) continue;
            if (((next & in->masks[l]) ^ in->heads[l]) != 0 ||
                (len > 8 && memcmp(s + i + 8, in->literals[l] + 8, len - 8) != 0))
                continue;
            if (literal_found(in, l, row) < 0) return -1;
        }
    }
    return 0;
}

/* A column of the `count` int32 values of `values`, which it owns from then on, no nulls; -1
 * when memory runs out (`values` is then still the caller's). */
static int int32_column(column *c, int32_t *values, size_t count) {
    memset(c, 0, sizeof *c);
    c->validity = calloc(1, 1);
    c->offsets = calloc(1, sizeof *c->offsets);
    if (c->validity == NULL || c->offsets == NULL) {
        column_free(c);
        return -1;
    }
    c->data = (uchar *)values;
    c->rows = (int64_t)count;
    return 0;
}

/* Reads `literals` (bytes of three bytes or more) and `targets` (for each literal, a list of
 * ints from 0 to `target_count` - 1) into `in`; -1 with an exception set. */
static int literal_search_start(literal_search *in, PyObject *literals, PyObject *targets,
                                Py_ssize_t target_count) {
    size_t slots = (size_t)in->count + 1;
    in->literals = calloc(slots, sizeof *in->literals);
    in->lengths = calloc(slots, sizeof *in->lengths);
    in->heads = calloc(slots, sizeof *in->heads);
    in->masks = calloc(slots, sizeof *in->masks);
    in->by_start = calloc(slots, sizeof *in->by_start);
    in->owned = calloc(slots, sizeof *in->owned);
    in->literal_seen = malloc(slots * sizeof *in->literal_seen);
    in->target_seen = malloc(((size_t)target_count + 1) * sizeof *in->target_seen);
    in->first = calloc(65537, sizeof *in->first);
    in->room = 4096;
    in->rows = malloc(in->room * sizeof *in->rows);
    in->found = malloc(in->room * sizeof *in->found);
    if (!in->literals || !in->lengths || !in->heads || !in->masks || !in->by_start ||
        !in->owned || !in->literal_seen || !in->target_seen || !in->first || !in->rows ||
        !in->found) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t t = 0; t < target_count; t++) in->target_seen[t] = -1;
    size_t owners = 0;
    for (Py_ssize_t l = 0; l < in->count; l++) {
        PyObject *literal = PyList_GET_ITEM(literals, l), *mine = PyList_GET_ITEM(targets, l);
        if (!PyBytes_Check(literal) || PyBytes_GET_SIZE(literal) < 3 || !PyList_Check(mine)) {
            PyErr_SetString(PyExc_TypeError, "literal_pairs() takes a list of bytes of three "
                                             "bytes or more and a list of lists of targets");
            return -1;
        }
        in->literals[l] = (const uchar *)PyBytes_AS_STRING(literal);
        in->lengths[l] = (size_t)PyBytes_GET_SIZE(literal);
        in->literal_seen[l] = -1;
        /* (byte by byte in memory, so that any byte order compares the same bytes) */
        size_t held = in->lengths[l] < 8 ? in->lengths[l] : 8;
        memcpy(&in->heads[l], in->literals[l], held);
        memset(&in->masks[l], 0xff, held);
        size_t h = start_hash(in->literals[l]);
        in->hashed[h >> 3] |= (uint8_t)(1u << (h & 7));
        in->first[h + 1]++;
        owners += (size_t)PyList_GET_SIZE(mine);
    }
    in->targets = malloc((owners + 1) * sizeof *in->targets);
    int32_t *placed = malloc(65536 * sizeof *placed);
    if (in->targets == NULL || placed == NULL) {
        free(placed);
        PyErr_NoMemory();
        return -1;
    }
    for (size_t h = 0; h < 65536; h++) in->first[h + 1] += in->first[h];
    memcpy(placed, in->first, 65536 * sizeof *placed);
    size_t at = 0;
    for (Py_ssize_t l = 0; l < in->count; l++) {
        in->by_start[placed[start_hash(in->literals[l])]++] = (int32_t)l;
        PyObject *mine = PyList_GET_ITEM(targets, l);
        in->owned[l] = (int32_t)at;
        for (Py_ssize_t k = 0; k < PyList_GET_SIZE(mine); k++) {
            long target = PyLong_AsLong(PyList_GET_ITEM(mine, k));
            if (target < 0 || target >= target_count) {
                free(placed);
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_ValueError, "literal_pairs(): a target out of range");
                return -1;
            }
            in->targets[at++] = (int32_t)target;
        }
    }
    in->owned[in->count] = (int32_t)at;
    free(placed);
    return 0;
}

static void literal_search_free(literal_search *in) {
    void *held[] = {in->literals, in->lengths,      in->heads,       in->masks,
                    in->by_start, in->owned,        in->targets,     in->literal_seen,
                    in->target_seen, in->first,     in->rows,        in->found};
    for (size_t k = 0; k < sizeof held / sizeof *held; k++) free(held[k]);
}

/* literal_pairs(texts, literals, targets, target_count) -> (rows, found): each (row, target)
 * such that the ASCII text at that row of the String column `texts` holds, byte for byte, a
 * literal of `literals` (bytes of three bytes or more) that `targets` (for each literal, a
 * list of ints from 0 to `target_count` - 1) gives that target, once, in the order of the
 * rows (a null or a text that is not ASCII holds none); each an Arrow int32 array as (schema
 * capsule, array capsule). */
static PyObject *literal_pairs(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *texts, *literals, *targets;
    Py_ssize_t target_count;
    if (!PyArg_ParseTuple(args, "OO!O!n", &texts, &PyList_Type, &literals, &PyList_Type,
                          &targets, &target_count))
        return NULL;
    Py_ssize_t count = PyObject_Length(texts);
    if (count < 0) return NULL;
    if (count >= INT32_MAX || PyList_GET_SIZE(literals) >= INT32_MAX || target_count < 0 ||
        target_count >= INT32_MAX || PyList_GET_SIZE(targets) != PyList_GET_SIZE(literals)) {
        PyErr_SetString(PyExc_ValueError, "literal_pairs(): bad sizes");
        return NULL;
    }
    literal_search in = {.count = PyList_GET_SIZE(literals)};
    PyObject *answer = NULL, *rows_pair = NULL, *found_pair = NULL;
    column rows, found;
    if (literal_search_start(&in, literals, targets, target_count) < 0) goto done;
    /* (the list holds the literals' bytes while the texts are read without the interpreter) */
    if (for_each_text(texts, count, "literal_pairs", literal_pairs_one, &in) < 0) goto done;
    if (int32_column(&rows, in.rows, in.pairs) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    in.rows = NULL;
    if (int32_column(&found, in.found, in.pairs) < 0) {
        column_free(&rows); /* (the pairs' rows with it) */
        PyErr_NoMemory();
        goto done;
    }
    in.found = NULL;
    rows_pair = arrow_capsules(&rows, "i");
    found_pair = arrow_capsules(&found, "i");
    if (rows_pair != NULL && found_pair != NULL) answer = PyTuple_Pack(2, rows_pair, found_pair);
    Py_XDECREF(rows_pair);
    Py_XDECREF(found_pair);
done:
    literal_search_free(&in);
    return answer;
}

/* --- explain.py's writer: answer lines from their input and the rest ----------------------- */

/* What JSON writes for each byte of a string (polars' writer, as serde_json): 0 the byte
 * itself, else the letter of a short escape (`\n`), or 'u' for `\u00XX`. */
static char json_escapes[256];

static void fill_json_escapes(void) {
    for (int c = 0; c < 0x20; c++) json_escapes[c] = 'u';
    json_escapes['\b'] = 'b';
    json_escapes['\t'] = 't';
    json_escapes['\n'] = 'n';
    json_escapes['\f'] = 'f';
    json_escapes['\r'] = 'r';
    json_escapes['"'] = '"';
    json_escapes['\\'] = '\\';
}

/* s[0..n) as the inside of a JSON string, at out (room for 6n bytes); the length written */
static size_t json_escaped(const uchar *s, size_t n, char *out) {
    static const char hex[] = "0123456789abcdef";
    size_t o = 0, i = 0;
    while (i < n) {
        size_t run = i;
        while (run < n && !json_escapes[s[run]]) run++;
        memcpy(out + o, s + i, run - i);
        o += run - i;
        i = run;
        if (i == n) break;
        char e = json_escapes[s[i]];
        out[o++] = '\\';
        if (e == 'u') {
            memcpy(out + o, "u00", 3);
            out[o + 3] = hex[s[i] >> 4];
            out[o + 4] = hex[s[i] & 15];
            o += 5;
        } else {
            out[o++] = e;
        }
        i++;
    }
    return o;
}

/* The one Arrow array of a polars column (`single_array`): its Arrow C stream's schema and
 * only chunk (none for an empty column), held until `single_array_done`. */
typedef struct {
    PyObject *capsule;
    struct ArrowSchema schema;
    struct ArrowArray array;
} single_array;

static void single_array_done(single_array *got) {
    if (got->array.release != NULL) got->array.release(&got->array);
    if (got->schema.release != NULL) got->schema.release(&got->schema);
    Py_XDECREF(got->capsule); /* (its destructor releases the stream) */
    got->capsule = NULL;
}

/* Reads `column` (a polars column of one chunk, of Arrow's `format`) into *got; -1 with an
 * exception (TypeError: not such a column) and nothing to release. */
static int single_array_of(PyObject *column, const char *format, single_array *got) {
    memset(got, 0, sizeof *got);
    if (!PyObject_HasAttrString(column, "__arrow_c_stream__")) {
        PyErr_Format(PyExc_TypeError, "answer_lines: a column of %s expected", format);
        return -1;
    }
    got->capsule = PyObject_CallMethod(column, "__arrow_c_stream__", NULL);
    if (got->capsule == NULL) return -1;
    struct ArrowArrayStream *stream = PyCapsule_GetPointer(got->capsule, "arrow_array_stream");
    if (stream == NULL) goto failed;
    if (stream->get_schema(stream, &got->schema) != 0) {
        PyErr_SetString(PyExc_ValueError, "answer_lines: no schema from a column");
        goto failed;
    }
    if (strcmp(got->schema.format, format) != 0) {
        PyErr_Format(PyExc_TypeError, "answer_lines: a column of %s expected, not %s", format,
                     got->schema.format);
        goto failed;
    }
    if (stream->get_next(stream, &got->array) != 0) {
        PyErr_SetString(PyExc_ValueError, "answer_lines: a column's stream failed");
        goto failed;
    }
    if (got->array.release != NULL) {
        struct ArrowArray more;
        if (stream->get_next(stream, &more) != 0 || more.release != NULL) {
            if (more.release != NULL) more.release(&more);
            PyErr_SetString(PyExc_ValueError, "answer_lines: a column of one chunk expected");
            goto failed;
        }
    }
    return 0;
failed:
    single_array_done(got);
    return -1;
}

/* answer_lines(inputs, rests, index, out, line) -> (written, line): the answer lines of
 * `explain -` from line `line` on, into the writable buffer `out`, as many whole ones as fit.
 * `inputs` is a polars String column of one chunk (read through the Arrow C stream it
 * exports: no Python string a line), `index` a UInt32 column of as many rows. Line i is
 * `{"input":"<inputs[i] as JSON>"` and then rests[index[i]]: a bytes object
 * `,"direction":...}\n`, the fields of an answer other than its input, which polars wrote once
 * per distinct combination of them (most of an answer's bytes are the texts of its rule and
 * category). Returns the bytes written and the next line (written 0: that line alone does not
 * fit). Each byte is written once, into a buffer the caller uses again, so the answers of a
 * chunk are never all in memory at once. */
static PyObject *answer_lines(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *inputs, *rests, *index;
    Py_buffer out;
    Py_ssize_t line;
    if (!PyArg_ParseTuple(args, "OO!Ow*n", &inputs, &PyList_Type, &rests, &index, &out, &line))
        return NULL;
    static int ready = 0;
    if (!ready) {
        fill_json_escapes();
        ready = 1;
    }
    static const char start[] = "{\"input\":\"";
    const Py_ssize_t start_len = (Py_ssize_t)sizeof start - 1;
    char *to = out.buf;
    Py_ssize_t room = out.len, written = 0, count = PyList_GET_SIZE(rests);
    PyObject *answer = NULL;
    single_array texts, which;
    if (single_array_of(inputs, "vu", &texts) < 0) goto released;
    if (single_array_of(index, "I", &which) < 0) {
        single_array_done(&texts);
        goto released;
    }
    Py_ssize_t lines = (Py_ssize_t)texts.array.length;
    if ((Py_ssize_t)which.array.length != lines || line < 0 || line > lines ||
        which.array.null_count != 0) {
        PyErr_SetString(PyExc_ValueError, "answer_lines: index or line out of range");
        goto done;
    }
    const uint8_t *cells = lines ? texts.array.buffers[1] : NULL;
    const uint8_t *valid = lines ? texts.array.buffers[0] : NULL;
    const uint32_t *rest_of = lines ? which.array.buffers[1] : NULL;
    int64_t data_buffers = texts.array.n_buffers - 3;
    for (; line < lines; line++) {
        int64_t j = line + texts.array.offset;
        Py_ssize_t rest_index = (Py_ssize_t)rest_of[line + which.array.offset];
        if (rest_index >= count || !PyBytes_Check(PyList_GET_ITEM(rests, rest_index))) {
            PyErr_Format(PyExc_ValueError, "answer_lines: no rest %zd for line %zd", rest_index,
                         line);
            goto done;
        }
        const uint8_t *view = cells + 16 * j;
        int32_t size, buffer, offset;
        memcpy(&size, view, 4);
        const char *bytes = (const char *)view + 4;
        if (size > 12) {
            memcpy(&buffer, view + 8, 4);
            memcpy(&offset, view + 12, 4);
            bytes = buffer < data_buffers ? (const char *)texts.array.buffers[2 + buffer] + offset
                                          : NULL;
        }
        if (bytes == NULL || (valid != NULL && !((valid[j >> 3] >> (j & 7)) & 1))) {
            PyErr_Format(PyExc_ValueError, "answer_lines: input %zd is null", line);
            goto done;
        }
        PyObject *rest = PyList_GET_ITEM(rests, rest_index);
        Py_ssize_t more = PyBytes_GET_SIZE(rest);
        /* (the escaped input takes at most six bytes a byte) */
        if (size > (PY_SSIZE_T_MAX - start_len - 1 - more) / 6 ||
            start_len + 6 * (Py_ssize_t)size + 1 + more > room - written)
            break;
        char *at = to + written;
        memcpy(at, start, (size_t)start_len);
        size_t o = (size_t)start_len + json_escaped((const uchar *)bytes, (size_t)size, at + start_len);
        at[o++] = '"';
        memcpy(at + o, PyBytes_AS_STRING(rest), (size_t)more);
        written += (Py_ssize_t)o + more;
    }
    answer = Py_BuildValue("nn", written, line);
done:
    single_array_done(&texts);
    single_array_done(&which);
released:
    PyBuffer_Release(&out);
    return answer;
}

static PyMethodDef methods[] = {
    {"grouped", grouped, METH_O,
     "grouped(texts: pl.Series) -> grouped: the normalized text of each ASCII text of a String "
     "column with its answering host's digits masked, else nulls: an Arrow array of large "
     "strings as (schema capsule, array capsule)"},
    {"codes", codes, METH_O,
     "codes(texts: pl.Series) -> (reply, enhanced, enhanced_2, enhanced_4, enhanced_5): the "
     "codes extract.py finds in each ASCII text of a String column (-1 and nulls for the "
     "others), each an Arrow array as (schema capsule, array capsule)"},
    {"literal_pairs", literal_pairs, METH_VARARGS,
     "literal_pairs(texts: pl.Series, literals: list[bytes], targets: list[list[int]], "
     "target_count: int) -> (rows, found): each (row, target) such that the ASCII text at the "
     "row holds a literal of that target, once; each an Arrow int32 array as (schema capsule, "
     "array capsule)"},
    {"answer_lines", answer_lines, METH_VARARGS,
     "answer_lines(inputs: pl.Series, rests: list, index: pl.Series, out, line) -> (written, "
     "line): explain's answer lines, each its input as JSON and the rest of its fields, into "
     "`out`"},
    {NULL, NULL, 0, NULL},
};

TOKENIZER_MODULE(_normalize_c, "The classification's normalized text of ASCII texts in C.",
                 methods, 6)
