/* bounce_analyzer._postfix_c: the C tokenizer of the Postfix source (issue 18; docs/NATIVE.md).
 *
 * `tokenize(data, first_line, gaps)` cuts every line of one batch of a syslog file in one
 * pass, as the polars path's `_syslog_kinds` (sources/postfix.py) reads the common shape:
 *
 *     Nov 28 10:00:03 mx postfix/smtp[5]: 3F2A1B2C3D: to=<a@example.com>, relay=...
 *
 * Each line is one of three things:
 * - kept: a Postfix line with a queue id whose text after it (the body) may matter; its kind
 *   (recipient status line, expired, reject, qmgr from=, cleanup message-id=, removed, a
 *   damaged status line) and its fields are cut as Arrow string views into `data`;
 * - skipped: a blank line, or a line of the common shape that does not matter;
 * - not for the C path: every other line (another shape of stamp or prefix, a stamp in an
 *   hour the clocks skip, a byte that is not printable ASCII or a tab, a NUL, a stray CR).
 *   Those lines are handed back, their bytes as they were, for the polars path to read: the
 *   C path never has to agree with it on anything but the common shape.
 *
 * The kept lines go to three tables: events, made as the polars path's `_recipient_events`,
 * `_expired_events` and `_reject_events` make them (`keep`); malformed lines (damaged or
 * unreadable status lines, unknown statuses); and the state lines (qmgr from=, cleanup
 * message-id=, removed), which are also joined to the events of the same batch by queue id
 * (`join_state`: what `_join_open_ids` does within one batch; the map of ids carried from
 * earlier batches is joined in Python). Events get their recipient and the senders' domains
 * lower-cased too (`domain_of`, `put_lowered`).
 *
 * The kinds' numbers are the order of `_KIND` in sources/postfix.py. The GIL is released
 * while scanning; the outputs are bytearrays that Python wraps as Arrow buffers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lines.h"
#include "module.h"
#include "reuse.h"
#include "views.h"

enum {
    K_RECIPIENT = 0,
    K_EXPIRED = 1,
    K_REJECT = 2,
    K_FROM = 3,
    K_MESSAGE_ID = 4,
    K_REMOVED = 5,
    K_BAD = 6,
    K_BAD_STATUS = 7,
    K_SKIP = 8,
    K_OTHER = 9, /* not for the C path */
};

/* The fields a kept line is cut into (`line_fields.f`), as the polars path names them. */
enum {
    C_RAW,
    C_HOST,
    C_TRANSPORT,
    C_QID,
    C_BODY,
    /* a recipient status line's fields (`_RECIPIENT`); `rest`: the body after them */
    C_RECIPIENT,
    C_ORIGINAL_RECIPIENT,
    C_RELAY,
    C_DELAY,
    C_DSN,
    C_DSN_ALONE,
    C_STATUS,
    C_REST,
    C_RELAY_HOST,
    C_RELAY_IP,
    /* the text in the parentheses after the status, and the codes and host in it */
    C_DIAGNOSTIC,
    C_SAID_CODE,
    C_SAID_ENHANCED,
    C_LEADING_CODE,
    C_LEADING_ENHANCED,
    C_REMOTE_HOST,
    C_REMOTE_IP,
    /* a reject's fields (`_reject_fields`) */
    C_STAGE,
    C_CLIENT_HOST,
    C_CLIENT_IP,
    C_ENVELOPE_SENDER,
    C_ENVELOPE_RECIPIENT,
    /* qmgr's from=<...> and cleanup's message-id=<...> (`_state_fields`) */
    C_SENDER,
    C_MESSAGE_ID,
    N_FIELDS
};

/* The string views of an event row: the event's own columns as `_recipient_events`,
 * `_expired_events` and `_reject_events` give them, then its sender, the sender's domain and
 * its Message-ID as the batch's own state lines give them (`join_state`). `recipient`,
 * `recipient_domain` and `sender_domain` are lower-cased (views into the batch or into
 * `lower`). */
enum {
    O_RAW,
    O_HOST,
    O_TRANSPORT,
    O_MESSAGE_REF,
    O_RECIPIENT,
    O_RECIPIENT_DOMAIN,
    O_ORIGINAL_RECIPIENT,
    O_DIAGNOSTIC,
    O_RELAY_HOST,
    O_RELAY_IP,
    O_CLIENT_HOST,
    O_CLIENT_IP,
    O_ENHANCED_CODE,
    O_DELAY,
    O_SENDER,
    O_SENDER_DOMAIN,
    O_MESSAGE_ID,
    N_EVENT_VIEWS
};
static const char *const VIEW_NAMES[N_EVENT_VIEWS] = {
    "raw",         "host",          "transport",         "message_ref",
    "recipient",   "recipient_domain", "original_recipient", "diagnostic",
    "relay_host",  "relay_ip",      "client_host",       "client_ip",
    "enhanced_code", "delay",       "sender",            "sender_domain",
    "message_id",
};

/* The events, by their number in the `event` column (sources/postfix.py, `_NATIVE_EVENTS`). */
enum { EV_DELIVERED, EV_DEFERRED, EV_BOUNCED, EV_EXPIRED, EV_REJECTED };

/* Why a row of the table of malformed lines is there (`_NATIVE_REASONS`). */
enum { R_DAMAGED_STATUS, R_UNREADABLE, R_UNKNOWN_STATUS };

/* A field of a line: `s` NULL for none (a null). */
typedef struct {
    const char *s;
    int32_t len;
} field;

/* What a kept line gives. */
typedef struct {
    int kind;
    int32_t stamp; /* month, day and time of day as one number (`stamp_key`), events only */
    field f[N_FIELDS];
} line_fields;

static inline int is_digit(char c) { return c >= '0' && c <= '9'; }
static inline int is_space(char c) { return c == ' ' || c == '\t'; }
static inline int is_alnum(char c) {
    return is_digit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}
/* What a byte is, as the loops over a line's head ask it: one table lookup a byte, where each
 * loop compared it with two to six bytes or ranges (`classes_init` fills it). */
enum {
    CL_SPACE = 1,       /* a space or a tab (`is_space`) */
    CL_PROGRAM_END = 2, /* a space, a tab, `[`, `]` or `:`: what ends a program's name */
    CL_ALNUM = 4,       /* `is_alnum` */
    CL_DIGIT = 8,
    CL_HEX_UPPER = 16,  /* a digit or A-F */
    CL_ID_END = 32,     /* a space, a tab, `<` or `>`: what ends a bare Message-ID */
};
static uint8_t CLASS[256];

static void classes_init(void) {
    if (CLASS[' ']) return;
    for (int c = 0; c < 256; c++) {
        uint8_t k = 0;
        if (is_space((char)c)) k |= CL_SPACE | CL_PROGRAM_END | CL_ID_END;
        if (c == '[' || c == ']' || c == ':') k |= CL_PROGRAM_END;
        if (is_alnum((char)c)) k |= CL_ALNUM;
        if (is_digit((char)c)) k |= CL_DIGIT | CL_HEX_UPPER;
        if (c >= 'A' && c <= 'F') k |= CL_HEX_UPPER;
        if (c == '<' || c == '>') k |= CL_ID_END;
        CLASS[c] = k;
    }
}
#define CLASS_OF(c) CLASS[(unsigned char)(c)]

static inline int starts(const char *s, int64_t n, const char *lit, int64_t k) {
    return n >= k && memcmp(s, lit, (size_t)k) == 0;
}
#define STARTS(s, n, lit) starts((s), (n), (lit), (int64_t)(sizeof(lit) - 1))

/* Month number 1-12 of a three-letter name, with the days it may have; 0 if none. */
static int month_of(const char *s, int *days) {
    static const char names[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    static const int month_days[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    for (int m = 0; m < 12; m++) {
        if (memcmp(s, names + 3 * m, 3) == 0) {
            *days = month_days[m];
            return m + 1;
        }
    }
    return 0;
}

/* `Nov 28 10:00:03 ` (a classic stamp of a real day and time, 16 bytes with its space), as
 * `_FAST_START` reads it; -1 if it is not one, else its `stamp_key`. */
static int32_t classic_stamp(const char *s, int64_t n) {
    if (n < 16 || s[3] != ' ' || s[6] != ' ' || s[9] != ':' || s[12] != ':' || s[15] != ' ')
        return -1;
    int days;
    int month = month_of(s, &days);
    if (month == 0) return -1;
    int day;
    char d0 = s[4], d1 = s[5];
    if ((d0 == ' ' || d0 == '0') && d1 >= '1' && d1 <= '9')
        day = d1 - '0';
    else if ((d0 == '1' || d0 == '2') && is_digit(d1))
        day = (d0 - '0') * 10 + (d1 - '0');
    else if (d0 == '3' && (d1 == '0' || d1 == '1'))
        day = 30 + (d1 - '0');
    else
        return -1;
    if (day > days) return -1;
    if (!is_digit(s[7]) || !is_digit(s[8]) || !is_digit(s[10]) || !is_digit(s[11]) ||
        !is_digit(s[13]) || !is_digit(s[14]))
        return -1;
    int hour = (s[7] - '0') * 10 + (s[8] - '0');
    int minute = (s[10] - '0') * 10 + (s[11] - '0');
    int second = (s[13] - '0') * 10 + (s[14] - '0');
    if (hour > 23 || minute > 59 || second > 59) return -1;
    /* The key Python reads back (sources/postfix.py, `_stamp_text`). */
    return ((month * 32 + day) * 24 + hour) * 3600 + minute * 60 + second;
}

/* `_POSTFIX_PROGRAM`: postfix/smtp, postfix-out/smtp, or a custom syslog_name followed by a
 * Postfix service name. */
static int postfix_program(const char *p, int64_t n) {
    static const char *const services[] = {
        "smtp",  "lmtp",  "local", "virtual", "pipe",  "error",      "retry",
        "discard", "bounce", "defer", "trace", "qmgr",  "nqmgr",      "cleanup",
        "smtpd", "postscreen", "pickup", "verify", "anvil", "tlsproxy",
    };
    if (STARTS(p, n, "postfix")) {
        /* postfix[^/]*  then, if there is a "/", at least one byte after it */
        const char *slash = memchr(p + 7, '/', (size_t)(n - 7));
        if (slash == NULL || slash < p + n - 1) return 1;
    }
    for (size_t i = 0; i < sizeof(services) / sizeof(services[0]); i++) {
        int64_t k = (int64_t)strlen(services[i]);
        if (n > k + 1 && p[n - k - 1] == '/' && memcmp(p + n - k, services[i], (size_t)k) == 0)
            return 1;
    }
    return 0;
}

/* `_DAMAGED_STATUS`: `^\S+=<[^>]*>.*, status=[a-z]+` (a status line whose to=<...> is
 * damaged). The first "=<" in the leading word leaves the most text after its ">". */
static int damaged_status(const char *b, int64_t n) {
    int64_t word = 0;
    while (word < n && !is_space(b[word])) word++;
    int64_t eq = -1;
    for (int64_t i = 1; i + 1 < word; i++) {
        if (b[i] == '=' && b[i + 1] == '<') {
            eq = i;
            break;
        }
    }
    if (eq < 0) return 0;
    const char *close = memchr(b + eq + 2, '>', (size_t)(n - eq - 2));
    if (close == NULL) return 0;
    static const char needle[] = ", status=";
    const int64_t k = sizeof(needle) - 1;
    for (int64_t i = (close - b) + 1; i + k < n; i++) {
        if (b[i] == ',' && memcmp(b + i, needle, (size_t)k) == 0 && b[i + k] >= 'a' &&
            b[i + k] <= 'z')
            return 1;
    }
    return 0;
}

/* The kind a body says (`_BODY_START`, `_KIND_BY_END`, then `_DAMAGED_STATUS`). */
static int body_kind(const char *b, int64_t n) {
    /* 3F2A1B2C3D: to=<a@example.com>, relay=..., status=bounced (...) */
    if (STARTS(b, n, "to=<")) return K_RECIPIENT;
    if (STARTS(b, n, "from=<")) {
        const char *close = memchr(b + 6, '>', (size_t)(n - 6));
        if (close != NULL) {
            int64_t at = close - b + 1;
            /* 3F2A1B2C3D: from=<s@example.org>, status=expired, returned to sender */
            if (STARTS(b + at, n - at, ", status=expired")) return K_EXPIRED;
            /* 3F2A1B2C3D: from=<s@example.org>, size=4303, nrcpt=1 (queue active) */
            if (STARTS(b + at, n - at, ", size=")) return K_FROM;
        }
    }
    /* 3F2A1B2C3D: message-id=<20261128.abc@example.org> */
    if (STARTS(b, n, "message-id=")) return K_MESSAGE_ID;
    /* 3F2A1B2C3D: removed */
    if (n == 7 && memcmp(b, "removed", 7) == 0) return K_REMOVED;
    /* NOQUEUE: reject: RCPT from c.example[192.0.2.1]: 554 5.7.1 ... */
    if (STARTS(b, n, "reject: ") || STARTS(b, n, "milter-reject: ")) return K_REJECT;
    return damaged_status(b, n) ? K_BAD_STATUS : K_SKIP;
}

/* `[245]\.[0-9]{1,3}\.[0-9]{1,3}` (smtp.ENHANCED_CODE) at `b[i]`, followed by ", ": the
 * index after the code, or -1. */
static int64_t enhanced_code(const char *b, int64_t n, int64_t i) {
    if (i >= n || (b[i] != '2' && b[i] != '4' && b[i] != '5')) return -1;
    i++;
    for (int part = 0; part < 2; part++) {
        if (i >= n || b[i] != '.') return -1;
        i++;
        int64_t digits = i;
        while (i < n && is_digit(b[i]) && i - digits < 3) i++;
        if (i == digits) return -1;
    }
    return STARTS(b + i, n - i, ", ") ? i : -1;
}

/* `smtp.REPLY_CODE` ([2-5][0-5][0-9]) at `b[i]`. */
static int reply_code(const char *b, int64_t n, int64_t i) {
    return i + 3 <= n && b[i] >= '2' && b[i] <= '5' && b[i + 1] >= '0' && b[i + 1] <= '5' &&
           is_digit(b[i + 2]);
}

/* `smtp.ENHANCED_CODE` at `b[i]`, its digit runs as long as they go (up to 3): the index
 * after it, or -1. */
static int64_t enhanced_at(const char *b, int64_t n, int64_t i) {
    if (i >= n || (b[i] != '2' && b[i] != '4' && b[i] != '5')) return -1;
    i++;
    for (int part = 0; part < 2; part++) {
        if (i >= n || b[i] != '.') return -1;
        int64_t digits = ++i;
        while (i < n && is_digit(b[i]) && i - digits < 3) i++;
        if (i == digits) return -1;
    }
    return i;
}

/* The codes that lead a text `d` (`n` bytes): `_LEADING_CODES`,
 * `^(?P<code>reply)?[ -]?(?P<enhanced>enhanced)?(?:\s|$)`, each part there or not, the first
 * way that ends at a space or the end (the regex's order of trying: an enhanced code's digits
 * cannot back off to a shorter run, a digit is no space); `code` and `enhanced` are left as
 * they are where the way found has none. */
static void leading_codes(const char *d, int64_t n, field *code, field *enhanced_code) {
    for (int way = 0; way < 8; way++) {
        int with_code = !(way & 4), with_sep = !(way & 2), with_enhanced = !(way & 1);
        int64_t i = 0, enhanced = -1;
        if (with_code) {
            if (!reply_code(d, n, 0)) continue;
            i = 3;
        }
        if (with_sep) {
            if (i >= n || (d[i] != ' ' && d[i] != '-')) continue;
            i++;
        }
        if (with_enhanced) {
            int64_t end = enhanced_at(d, n, i);
            if (end < 0) continue;
            enhanced = i;
            i = end;
        }
        if (i < n && !is_space(d[i])) continue;
        if (with_code) *code = (field){d, 3};
        if (enhanced >= 0) *enhanced_code = (field){d + enhanced, (int32_t)(i - enhanced)};
        return;
    }
}

/* The fields `_recipient_fields` reads in the diagnostic: the text in the outer parentheses
 * after the status (`rest`), the codes that lead it (`_LEADING_CODES_SHAPE`), the codes a
 * server "said" (`_SAID`), and where there is no relay, the host of `_REMOTE`. */
static void diagnostic_fields(field *got) {
    const field rest = got[C_REST];
    if (rest.len < 2 || rest.s[0] != ' ' || rest.s[1] != '(') return;
    const char *d = rest.s + 2;
    int64_t n = rest.len - 2;
    if (n > 0 && d[n - 1] == ')') {
        n--;
    } else {
        /* (rare) the longest start that ends with ")", without it; else all of it */
        int64_t close = n - 1;
        while (close >= 0 && d[close] != ')') close--;
        if (close >= 0) n = close;
    }
    got[C_DIAGNOSTIC] = (field){d, (int32_t)n};
    leading_codes(d, n, &got[C_LEADING_CODE], &got[C_LEADING_ENHANCED]);
    /* `_SAID`: the first "said: " or "refused to talk to me: " followed by a code, found by
     * their colon (rarer than their first letters), the longer one first: of two that end at
     * two colons, the one that starts first ends first (neither holds the other's start) */
    for (const char *colon = memchr(d, ':', (size_t)n); colon != NULL;
         colon = memchr(colon + 1, ':', (size_t)(d + n - colon - 1))) {
        const int64_t c = colon - d;
        if (c + 2 > n || d[c + 1] != ' ') continue;
        int64_t after = c + 2;
        if (!(c >= 21 && memcmp(d + c - 21, "refused to talk to me", 21) == 0) &&
            !(c >= 4 && memcmp(d + c - 4, "said", 4) == 0))
            continue;
        if (!reply_code(d, n, after)) continue;
        got[C_SAID_CODE] = (field){d + after, 3};
        int64_t j = after + 3;
        if (j < n && (d[j] == ' ' || d[j] == '-')) {
            int64_t end = enhanced_at(d, n, j + 1);
            if (end >= 0) got[C_SAID_ENHANCED] = (field){d + j + 1, (int32_t)(end - j - 1)};
        }
        break;
    }
    /* `_REMOTE`, where the relay names no host: the first "host h[a]" or "connect to h[a]" */
    const field relay_host = got[C_RELAY_HOST];
    if (relay_host.s != NULL && !(relay_host.len == 4 && memcmp(relay_host.s, "none", 4) == 0))
        return;
    for (int64_t i = 0; i < n; i++) {
        int64_t j;
        if (d[i] == 'h' && starts(d + i, n - i, "host ", 5))
            j = i + 5;
        else if (d[i] == 'c' && starts(d + i, n - i, "connect to ", 11))
            j = i + 11;
        else
            continue;
        int64_t host = j;
        while (j < n && !is_space(d[j]) && d[j] != '[' && d[j] != ']') j++;
        if (j == host || j >= n || d[j] != '[') continue;
        const char *close = memchr(d + j + 1, ']', (size_t)(n - j - 1));
        if (close == NULL || close == d + j + 1) continue;
        got[C_REMOTE_HOST] = (field){d + host, (int32_t)(j - host)};
        got[C_REMOTE_IP] = (field){d + j + 1, (int32_t)(close - d - j - 1)};
        break;
    }
}

/* A recipient status line's fields, as `_RECIPIENT` cuts them (all null when it does not
 * match: the line is unreadable):
 * to=<a@example.com>, orig_to=<b@example.com>, relay=mx.example.com[192.0.2.7]:25,
 * conn_use=2, delay=1.2, delays=0.1/0/0.5/0.6, dsn=5.1.1, status=bounced (...) */
static void recipient_fields(const char *b, int64_t n, line_fields *out) {
    field *got = out->f; /* (scan_line zeroed them; on no match, those written are cleared) */
    int64_t i = 4;       /* after "to=<" */
    const char *close = memchr(b + i, '>', (size_t)(n - i));
    if (close == NULL) goto unreadable;
    got[C_RECIPIENT] = (field){b + i, (int32_t)(close - b - i)};
    i = close - b + 1;
    if (!STARTS(b + i, n - i, ", ")) goto unreadable;
    i += 2;
    if (STARTS(b + i, n - i, "orig_to=<")) {
        const char *end = memchr(b + i + 9, '>', (size_t)(n - i - 9));
        if (end == NULL) goto unreadable;
        got[C_ORIGINAL_RECIPIENT] = (field){b + i + 9, (int32_t)(end - b - i - 9)};
        i = end - b + 1;
        if (!STARTS(b + i, n - i, ", ")) goto unreadable;
        i += 2;
    }
    if (!STARTS(b + i, n - i, "relay=")) goto unreadable;
    i += 6;
    int64_t start = i;
    while (i < n && b[i] != ',' && !is_space(b[i])) i++;
    if (i == start || !STARTS(b + i, n - i, ", ")) goto unreadable;
    got[C_RELAY] = (field){b + start, (int32_t)(i - start)};
    i += 2;
    if (STARTS(b + i, n - i, "conn_use=")) {
        start = i += 9;
        while (i < n && is_digit(b[i])) i++;
        if (i == start || !STARTS(b + i, n - i, ", ")) goto unreadable;
        i += 2;
    }
    if (!STARTS(b + i, n - i, "delay=")) goto unreadable;
    start = i += 6;
    while (i < n && (is_digit(b[i]) || b[i] == '.')) i++;
    if (i == start || !STARTS(b + i, n - i, ", ")) goto unreadable;
    got[C_DELAY] = (field){b + start, (int32_t)(i - start)};
    i += 2;
    if (STARTS(b + i, n - i, "delays=")) {
        start = i += 7;
        while (i < n && (is_digit(b[i]) || b[i] == '.' || b[i] == '/')) i++;
        if (i == start || !STARTS(b + i, n - i, ", ")) goto unreadable;
        i += 2;
        if (STARTS(b + i, n - i, "dsn=")) {
            int64_t end = enhanced_code(b, n, i + 4);
            if (end < 0) goto unreadable;
            got[C_DSN] = (field){b + i + 4, (int32_t)(end - i - 4)};
            i = end + 2;
        }
    } else if (STARTS(b + i, n - i, "dsn=")) {
        int64_t end = enhanced_code(b, n, i + 4);
        if (end < 0) goto unreadable;
        got[C_DSN_ALONE] = (field){b + i + 4, (int32_t)(end - i - 4)};
        i = end + 2;
    }
    if (!STARTS(b + i, n - i, "status=")) goto unreadable;
    start = i += 7;
    while (i < n && b[i] >= 'a' && b[i] <= 'z') i++;
    if (i == start) goto unreadable;
    got[C_STATUS] = (field){b + start, (int32_t)(i - start)};
    got[C_REST] = (field){b + i, (int32_t)(n - i)};
    /* relay=mx.example.com[192.0.2.7]:25: the host `^[^\[\]:]+`, the address in the first
     * `\[[0-9A-Fa-f:.]+\]` */
    const field relay = got[C_RELAY];
    int32_t k = 0;
    while (k < relay.len && relay.s[k] != '[' && relay.s[k] != ']' && relay.s[k] != ':') k++;
    if (k > 0) got[C_RELAY_HOST] = (field){relay.s, k};
    for (int32_t open = 0; open < relay.len; open++) {
        if (relay.s[open] != '[') continue;
        int32_t j = open + 1;
        while (j < relay.len && (is_digit(relay.s[j]) || (relay.s[j] >= 'a' && relay.s[j] <= 'f') ||
                                 (relay.s[j] >= 'A' && relay.s[j] <= 'F') || relay.s[j] == ':' ||
                                 relay.s[j] == '.'))
            j++;
        if (j > open + 1 && j < relay.len && relay.s[j] == ']') {
            got[C_RELAY_IP] = (field){relay.s + open + 1, j - open - 1};
            break;
        }
    }
    diagnostic_fields(got);
    return;
unreadable:
    memset(&got[C_RECIPIENT], 0, (C_REMOTE_IP - C_RECIPIENT + 1) * sizeof(field));
}

/* The first `lit` (of `k` bytes) in `b[from, n)`: its index, or -1. */
static int64_t find(const char *b, int64_t n, int64_t from, const char *lit, int64_t k) {
    for (int64_t i = from; i + k <= n; i++) {
        const char *hit = memchr(b + i, lit[0], (size_t)(n - k + 1 - i));
        if (hit == NULL) return -1;
        i = hit - b;
        if (memcmp(hit, lit, (size_t)k) == 0) return i;
    }
    return -1;
}
#define FIND(b, n, from, lit) find((b), (n), (from), (lit), (int64_t)(sizeof(lit) - 1))

/* A reject's fields, as `_reject_fields` cuts them:
 * reject: RCPT from c.example[192.0.2.1]: 554 5.7.1 <a@example.com>: Relay access denied;
 *   from=<s@example.org> to=<a@example.com> proto=ESMTP helo=<c> */
static void reject_fields(const char *b, int64_t n, line_fields *out) {
    /* `_STAGE_REJECT`: (milter-)reject: STAGE from host[address](:port): , then the text up
     * to the first "; from=<", then up to the first "; proto=" */
    int64_t i = STARTS(b, n, "milter-reject: ") ? 15 : 8;
    int64_t start = i;
    while (i < n && ((b[i] >= 'A' && b[i] <= 'Z') || b[i] == '-')) i++;
    if (i > start && STARTS(b + i, n - i, " from ")) {
        i += 6;
        while (i < n && !is_space(b[i]) && b[i] != '[' && b[i] != ']') i++;
        const char *close = i < n && b[i] == '[' ? memchr(b + i, ']', (size_t)(n - i)) : NULL;
        if (close != NULL) {
            i = close - b + 1;
            if (i < n && b[i] == ':' && i + 1 < n && is_digit(b[i + 1])) {
                int64_t port = ++i;
                while (i < n && is_digit(b[i])) i++;
                if (!STARTS(b + i, n - i, ": ")) i = port - 1; /* `(?::\d+)?` left out */
            }
            if (STARTS(b + i, n - i, ": ")) {
                i += 2;
                int64_t end = FIND(b, n, i, "; from=<");
                if (end < 0) end = n;
                int64_t proto = FIND(b, end, i, "; proto=");
                if (proto >= 0) end = proto;
                out->f[C_STAGE] = (field){b + i, (int32_t)(end - i)};
            }
        }
    }
    /* `_CLIENT`: the first " from host[address]" */
    for (int64_t at = FIND(b, n, 0, " from "); at >= 0; at = FIND(b, n, at + 1, " from ")) {
        int64_t j = at + 6, host = j;
        while (j < n && !is_space(b[j]) && b[j] != '[' && b[j] != ']') j++;
        if (j >= n || b[j] != '[') continue;
        const char *close = memchr(b + j + 1, ']', (size_t)(n - j - 1));
        if (close == NULL || close == b + j + 1) continue;
        out->f[C_CLIENT_HOST] = (field){b + host, (int32_t)(j - host)};
        out->f[C_CLIENT_IP] = (field){b + j + 1, (int32_t)(close - b - j - 1)};
        break;
    }
    /* `_ENVELOPE`: the first "; from=<sender>" with a ">", then ",? to=<recipient>" */
    int64_t at = FIND(b, n, 0, "; from=<");
    if (at >= 0) {
        int64_t j = at + 8;
        const char *close = memchr(b + j, '>', (size_t)(n - j));
        if (close != NULL) {
            out->f[C_ENVELOPE_SENDER] = (field){b + j, (int32_t)(close - b - j)};
            j = close - b + 1;
            if (j < n && b[j] == ',') j++;
            if (STARTS(b + j, n - j, " to=<")) {
                const char *end = memchr(b + j + 5, '>', (size_t)(n - j - 5));
                if (end != NULL)
                    out->f[C_ENVELOPE_RECIPIENT] = (field){b + j + 5, (int32_t)(end - b - j - 5)};
            }
        }
    }
}

/* 1 when the `n` bytes at `s` are printable ASCII or tabs: the bytes the C path reads as
 * the polars path does (no NUL, which reading drops; no CR; nothing that regex `\s` or
 * UTF-8 decoding reads otherwise). Eight bytes at a time. */
static int plain_ascii(const char *s, int64_t n) {
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        /* a byte >= 0x80, < 0x20, or 0x7F (0x7F + 1 = 0x80) */
        uint64_t odd = (w | ((w - ones * 0x20) & ~w) | (w + ones)) & highs;
        if (odd) {
            for (int k = 0; k < 8; k++) {
                unsigned char c = (unsigned char)s[i + k];
                if ((c < 0x20 && c != '\t') || c > 0x7E) return 0;
            }
        }
    }
    for (; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c > 0x7E) return 0;
    }
    return 1;
}

/* The last classic stamp read: its 16 bytes (with the space after it), its `stamp_key`,
 * and whether it is in an hour the clocks skip. Most lines follow a line of the same
 * second: their stamp is not parsed again. */
typedef struct {
    char bytes[16];
    int32_t key; /* -1: none yet */
    int gap;
} stamp_cache;

/* One line (without its newline and the CR of a CRLF end); `odd`: `line_end` found a byte
 * in it that is not printable ASCII (a tab, say: `plain_ascii` decides). */
static int scan_line(const char *s, int64_t n, int odd, const char *gaps, Py_ssize_t gaps_len,
                     stamp_cache *last, line_fields *out) {
    if (n == 0) return K_SKIP;
    if (odd && !plain_ascii(s, n)) return K_OTHER;
    /* _FAST_ANY: stamp, host, program[pid]: */
    int32_t stamp;
    if (n >= 16 && last->key >= 0 && memcmp(s, last->bytes, 16) == 0) {
        stamp = last->key; /* (`classic_stamp` reads those 16 bytes only) */
    } else {
        stamp = classic_stamp(s, n);
        if (stamp < 0) {
            for (int64_t i = 0; i < n; i++)
                if (!is_space(s[i])) return K_OTHER;
            return K_SKIP; /* spaces only: read and skipped, as the polars path does */
        }
        memcpy(last->bytes, s, 16);
        last->key = stamp;
        last->gap = 0;
        for (int64_t g = 0; g + 10 <= gaps_len; g += 10)
            if (memcmp(s, gaps + g, 10) == 0) last->gap = 1;
    }
    /* A stamp in an hour the clocks skip: the polars path says it is invalid. (Every line
     * with a classic stamp that is not cut below is the polars path's too: it may be looked
     * at first.) */
    if (last->gap) return K_OTHER;
    int64_t p = 16;
    const int64_t host = p;
    while (p < n && !(CLASS_OF(s[p]) & CL_SPACE)) p++;
    if (p == host || p >= n || s[p] != ' ') return K_OTHER;
    const int64_t host_end = p++;
    const int64_t program = p;
    while (p < n && !(CLASS_OF(s[p]) & CL_PROGRAM_END)) p++;
    if (p == program || p >= n) return K_OTHER;
    if (s[p] == ':' && p + 1 < n && s[p + 1] == ' ') {
        /* Nov 28 10:00:13 mx dovecot: lmtp(a@example.com)<53706><PLel2i>: saved mail to INBOX
         * (no pid: the polars path reads another program's line as skipped; a Postfix one
         * is left to it) */
        return postfix_program(s + program, p - program) ? K_OTHER : K_SKIP;
    }
    if (s[p] != '[') return K_OTHER;
    const int64_t program_end = p++;
    const int64_t pid = p;
    while (p < n && is_digit(s[p])) p++;
    if (p == pid || p + 2 >= n || s[p] != ']' || s[p + 1] != ':' || s[p + 2] != ' ')
        return K_OTHER;
    /* _FAST_QUEUED: a Postfix program, then `<queue id>: ` */
    if (!postfix_program(s + program, program_end - program)) return K_SKIP;
    p += 2;
    while (p < n && s[p] == ' ') p++;
    const int64_t qid = p;
    uint8_t any = 0, all = CL_HEX_UPPER; /* (a digit in it; all digits or A-F) */
    for (uint8_t k; p < n && ((k = CLASS_OF(s[p])) & CL_ALNUM); p++) {
        any |= k;
        all &= k;
    }
    const int digit = (any & CL_DIGIT) != 0, upper_hex = (all & CL_HEX_UPPER) != 0;
    const int64_t qid_len = p - qid;
    if (qid_len == 0 || p + 1 >= n || s[p] != ':' || s[p + 1] != ' ') return K_SKIP;
    if (!digit && !(upper_hex && qid_len >= 5) &&
        !(qid_len == 7 && memcmp(s + qid, "NOQUEUE", 7) == 0))
        return K_SKIP;
    const char *body = s + p + 2;
    const int64_t body_len = n - p - 2;
    const int kind = body_kind(body, body_len);
    if (kind == K_SKIP) return K_SKIP;
    if (kind == K_RECIPIENT || kind == K_EXPIRED || kind == K_REJECT) {
        memset(out, 0, sizeof *out);
    } else {
        /* (a state line or a damaged one: `keep` reads no other field) */
        out->f[C_SENDER] = out->f[C_MESSAGE_ID] = (field){NULL, 0};
    }
    out->kind = kind;
    out->f[C_RAW] = (field){s, (int32_t)n};
    out->f[C_QID] = (field){s + qid, (int32_t)qid_len};
    out->f[C_BODY] = (field){body, (int32_t)body_len};
    out->stamp = -1;
    if (kind == K_RECIPIENT || kind == K_EXPIRED || kind == K_REJECT) {
        /* Only events need a time, a host and a transport (the service: the program's last
         * part, `_service`). */
        out->stamp = stamp;
        out->f[C_HOST] = (field){s + host, (int32_t)(host_end - host)};
        int64_t last = program_end;
        while (last > program && s[last - 1] != '/') last--;
        if (last > program && last < program_end)
            out->f[C_TRANSPORT] = (field){s + last, (int32_t)(program_end - last)};
    }
    if (kind == K_RECIPIENT) recipient_fields(body, body_len, out);
    if (kind == K_REJECT) {
        reject_fields(body, body_len, out);
        /* ...cleanup[8]: 3F2A1B2C3D: reject: header Subject: win from c[192.0.2.1]; ...: 5.7.1
         * (no stage text: the diagnostic is `_CONTENT_REJECT`'s or all after "reject: ",
         * which the polars path reads; rare) */
        if (out->f[C_STAGE].s == NULL) return K_OTHER;
    }
    if (kind == K_FROM) {
        /* from=<s@example.org>, size=4303, ...: `^from=<[^>]*` (body_kind found the ">") */
        const char *close = memchr(body + 6, '>', (size_t)(body_len - 6));
        out->f[C_SENDER] = (field){body + 6, (int32_t)(close - body - 6)};
    }
    if (kind == K_MESSAGE_ID) {
        /* message-id=<20261128.abc@example.org>: `^message-id=<?[^<>\s]*`, null when empty */
        int64_t i = 11, start;
        if (i < body_len && body[i] == '<') i++;
        start = i;
        while (i < body_len && !(CLASS_OF(body[i]) & CL_ID_END)) i++;
        if (i > start) out->f[C_MESSAGE_ID] = (field){body + start, (int32_t)(i - start)};
    }
    return kind;
}

/* A queue id the batch names, with what its state lines say of it (`_join_open_ids` within
 * one batch: the last sender, the last Message-ID, the last line that gave one, the last
 * `removed`). */
typedef struct {
    const char *qid;
    int32_t qid_len;
    uint64_t hash;
    field sender, message_id; /* the last of each in line order (s NULL: none) */
    int64_t seq;              /* the line number of its last from= or message-id= line, -1 */
    int64_t removed;          /* the line number of its last `removed`, -1 */
    uint8_t state;            /* 1 when a state line names it */
    /* the views of the id, its sender, the sender's domain (lower-cased) and its Message-ID,
     * made when the line that gives them is read: written into the events and the table of
     * ids without reading their bytes again, far back in the batch and out of the caches */
    uint8_t domain_valid;
    uint8_t qid_view[VIEW_SIZE], sender_view[VIEW_SIZE], domain_view[VIEW_SIZE];
    uint8_t message_id_view[VIEW_SIZE];
} queue_id;

/* The queue ids of a batch: open addressing over `slots` (indices into `ids`, -1 empty),
 * `ids` in the order the batch first names them (room for one a line). */
typedef struct {
    const char *base; /* the batch */
    queue_id *ids;
    int64_t count;
    int32_t *slots;
    uint64_t mask;
    size_t slots_size; /* bytes of `slots` (a block of reuse.h's `kept_scratch`) */
    int failed;        /* 1: out of memory to grow `slots` */
} id_table;

/* The slots of a table that starts small: a batch names a tenth as many ids as it has lines
 * (105,719 in the 1M lines of bench's Postfix log), and a table sized for a line each (1 MiB
 * for 100k lines) was read at random, out of the caches, and cleared for every batch. */
#define ID_SLOTS_FIRST 16384

/* `t`'s slots doubled, its ids placed again (GIL released: PyMem_Raw). 0 when out of memory
 * (the table is left as it was). */
static int id_table_grow(id_table *t) {
    const uint64_t slots = 2 * (t->mask + 1);
    int32_t *grown = PyMem_RawMalloc(slots * sizeof(int32_t));
    if (grown == NULL) return 0;
    memset(grown, 0xFF, slots * sizeof(int32_t));
    for (int64_t i = 0; i < t->count; i++) {
        uint64_t slot = t->ids[i].hash & (slots - 1);
        while (grown[slot] >= 0) slot = (slot + 1) & (slots - 1);
        grown[slot] = (int32_t)i;
    }
    PyMem_RawFree(t->slots);
    t->slots = grown;
    t->slots_size = slots * sizeof(int32_t);
    t->mask = slots - 1;
    return 1;
}

/* The index of queue id `q` (`n` bytes) in `t`, added if new; -1 when out of memory. The
 * slots are at most half full: they grow before. */
static int64_t id_index(id_table *t, const char *q, int32_t n) {
    /* (its first and last 8 bytes, or its bytes, mixed: ids are compared byte for byte) */
    uint64_t a = 0, b = (uint64_t)n;
    if (n >= 8) {
        memcpy(&a, q, 8);
        memcpy(&b, q + n - 8, 8);
    } else {
        for (int32_t i = 0; i < n; i++) a = (a << 8) | (unsigned char)q[i];
    }
    uint64_t h = (a * 0x9e3779b97f4a7c15ULL) ^ (b * 0xc2b2ae3d27d4eb4fULL) ^ (uint64_t)n;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 32;
    for (uint64_t slot = h & t->mask;; slot = (slot + 1) & t->mask) {
        int32_t at = t->slots[slot];
        if (at < 0) {
            if ((uint64_t)(t->count + 1) * 2 > t->mask + 1) {
                if (!id_table_grow(t)) {
                    t->failed = 1;
                    return -1;
                }
                return id_index(t, q, n); /* (its slot in the grown table) */
            }
            queue_id *id = &t->ids[t->count];
            memset(id, 0, sizeof *id);
            id->qid = q;
            id->qid_len = n;
            view_set(id->qid_view, t->base, q, n);
            id->hash = h;
            id->seq = id->removed = -1;
            t->slots[slot] = (int32_t)t->count;
            return t->count++;
        }
        const queue_id *id = &t->ids[at];
        /* (an id of 12 bytes or less is in its view: the batch is not read again) */
        if (id->hash == h && id->qid_len == n &&
            memcmp(n <= 12 ? (const char *)id->qid_view + 4 : id->qid, q, (size_t)n) == 0)
            return at;
    }
}

/* The output columns, in four tables: the events (E), the malformed lines (B: damaged and
 * unreadable status lines, unknown statuses), the state lines (S: qmgr from=, cleanup
 * message-id=, removed), the queue ids (Q). */
enum { T_EVENTS, T_BAD, T_STATE, T_IDS, N_TABLES };
typedef struct {
    const char *name;
    int table;
    int width; /* bytes a row; 0: a validity bitmap (a bit a row) */
} column_spec;

/* Event rows: line_no, stamp, event, the views (each with its bitmap), smtp_code, the known
 * seq and removed line numbers (with bitmaps); malformed rows (B): line_no, raw, reason and
 * the status an unknown status line names. */
enum {
    E_LINE_NO,
    E_STAMP,
    E_EVENT,
    E_VIEWS,
    E_VALID = E_VIEWS + N_EVENT_VIEWS,
    E_SMTP_CODE = E_VALID + N_EVENT_VIEWS,
    E_SMTP_CODE_VALID,
    E_SENDER_OWN,
    E_SENDER_OPEN,
    E_MESSAGE_ID_OPEN,
    B_LINE_NO,
    B_RAW,
    B_REASON,
    B_STATUS,
    B_STATUS_VALID,
    S_LINE_NO,
    S_KIND,
    S_QID,
    S_SENDER,
    S_SENDER_VALID,
    S_MESSAGE_ID,
    S_MESSAGE_ID_VALID,
    Q_QID,
    Q_SENDER,
    Q_SENDER_VALID,
    Q_MESSAGE_ID,
    Q_MESSAGE_ID_VALID,
    Q_SEQ,
    Q_SEQ_VALID,
    Q_REMOVED,
    Q_REMOVED_VALID,
    Q_STATE,
    Q_OPEN,
    N_COLUMNS
};

static void column_specs(column_spec *c) {
    static char valid_names[N_EVENT_VIEWS][48];
    c[E_LINE_NO] = (column_spec){"line_no", T_EVENTS, 8};
    c[E_STAMP] = (column_spec){"stamp", T_EVENTS, 4};
    c[E_EVENT] = (column_spec){"event", T_EVENTS, 1};
    for (int v = 0; v < N_EVENT_VIEWS; v++) {
        snprintf(valid_names[v], sizeof valid_names[v], "%s_valid", VIEW_NAMES[v]);
        c[E_VIEWS + v] = (column_spec){VIEW_NAMES[v], T_EVENTS, VIEW_SIZE};
        c[E_VALID + v] = (column_spec){valid_names[v], T_EVENTS, 0};
    }
    c[E_SMTP_CODE] = (column_spec){"smtp_code", T_EVENTS, 2};
    c[E_SMTP_CODE_VALID] = (column_spec){"smtp_code_valid", T_EVENTS, 0};
    c[E_SENDER_OWN] = (column_spec){"sender_own", T_EVENTS, 1};
    c[E_SENDER_OPEN] = (column_spec){"sender_open", T_EVENTS, 1};
    c[E_MESSAGE_ID_OPEN] = (column_spec){"message_id_open", T_EVENTS, 1};
    c[B_LINE_NO] = (column_spec){"bad_line_no", T_BAD, 8};
    c[B_RAW] = (column_spec){"bad_raw", T_BAD, VIEW_SIZE};
    c[B_REASON] = (column_spec){"bad_reason", T_BAD, 1};
    c[B_STATUS] = (column_spec){"bad_status", T_BAD, VIEW_SIZE};
    c[B_STATUS_VALID] = (column_spec){"bad_status_valid", T_BAD, 0};
    c[S_LINE_NO] = (column_spec){"state_line_no", T_STATE, 8};
    c[S_KIND] = (column_spec){"state_kind", T_STATE, 1};
    c[S_QID] = (column_spec){"state_qid", T_STATE, VIEW_SIZE};
    c[S_SENDER] = (column_spec){"state_sender", T_STATE, VIEW_SIZE};
    c[S_SENDER_VALID] = (column_spec){"state_sender_valid", T_STATE, 0};
    c[S_MESSAGE_ID] = (column_spec){"state_message_id", T_STATE, VIEW_SIZE};
    c[S_MESSAGE_ID_VALID] = (column_spec){"state_message_id_valid", T_STATE, 0};
    c[Q_QID] = (column_spec){"id_qid", T_IDS, VIEW_SIZE};
    c[Q_SENDER] = (column_spec){"id_sender", T_IDS, VIEW_SIZE};
    c[Q_SENDER_VALID] = (column_spec){"id_sender_valid", T_IDS, 0};
    c[Q_MESSAGE_ID] = (column_spec){"id_message_id", T_IDS, VIEW_SIZE};
    c[Q_MESSAGE_ID_VALID] = (column_spec){"id_message_id_valid", T_IDS, 0};
    c[Q_SEQ] = (column_spec){"id_seq", T_IDS, 8};
    c[Q_SEQ_VALID] = (column_spec){"id_seq_valid", T_IDS, 0};
    c[Q_REMOVED] = (column_spec){"id_removed", T_IDS, 8};
    c[Q_REMOVED_VALID] = (column_spec){"id_removed_valid", T_IDS, 0};
    c[Q_STATE] = (column_spec){"id_state", T_IDS, 1};
    c[Q_OPEN] = (column_spec){"id_open", T_IDS, 1};
}

typedef struct {
    Py_buffer data;
    uint8_t *col[N_COLUMNS]; /* the outputs (bytearrays' bytes) */
    int64_t rows[N_TABLES];
    int64_t *event_id; /* per event row: its queue id's index in `ids`, -1: none */
    field *own_sender; /* per event row: the sender the line names itself (s NULL: none) */
    /* the lower-cased copies of strings with a capital letter (data buffer 1) */
    char *lower;
    int64_t lower_len, lower_capacity;
    int failed; /* 1: out of memory for `lower` */
    id_table ids;
    /* lines not for the C path: line numbers and [start, end) in data */
    int64_t *other_line_no;
    int64_t *other_span;
    int64_t others;
    int64_t other_bytes;
    int64_t lines;
    int64_t capacity; /* the lines the tables have a row for */
    int miscounted;   /* 1: the batch does not hold `capacity` lines */
} scan_state;

static inline void put_view(scan_state *st, int column, int64_t r, field x) {
    const char *base = (const char *)st->data.buf;
    view_set(st->col[column] + r * VIEW_SIZE, base, x.s ? x.s : base, x.s ? x.len : 0);
    valid_set(st->col[column + 1], r, x.s != NULL);
}

static inline void put_int64(scan_state *st, int column, int64_t r, int64_t value) {
    const int64_t stored = value >= 0 ? value : 0;
    memcpy(st->col[column] + r * 8, &stored, 8);
    valid_set(st->col[column + 1], r, value >= 0);
}

/* Row `r` of view column `column` (with its bitmap after it): the view made before, or null. */
static inline void put_copy(scan_state *st, int column, int64_t r, const uint8_t *view,
                            int valid) {
    if (valid)
        memcpy(st->col[column] + r * VIEW_SIZE, view, VIEW_SIZE);
    else
        memset(st->col[column] + r * VIEW_SIZE, 0, VIEW_SIZE);
    valid_set(st->col[column + 1], r, valid);
}

/* View `v` of event row `r`, the view made before, or null. */
static inline void put_event_copy(scan_state *st, int v, int64_t r, const uint8_t *view,
                                  int valid) {
    if (valid)
        memcpy(st->col[E_VIEWS + v] + r * VIEW_SIZE, view, VIEW_SIZE);
    else
        memset(st->col[E_VIEWS + v] + r * VIEW_SIZE, 0, VIEW_SIZE);
    valid_set(st->col[E_VALID + v], r, valid);
}

/* View `v` of event row `r` (its bitmap is among the event columns' bitmaps). */
static inline void put_event_view(scan_state *st, int v, int64_t r, field x) {
    const char *base = (const char *)st->data.buf;
    view_set(st->col[E_VIEWS + v] + r * VIEW_SIZE, base, x.s ? x.s : base, x.s ? x.len : 0);
    valid_set(st->col[E_VALID + v], r, x.s != NULL);
}

/* `smtp.domain_of` of the `n` bytes at `s` (which are printable ASCII or tabs): what follows
 * the last `@`, when it is a run of bytes that are not `@`, white space or `>`, followed by
 * nothing but white space and one `>` at most (`@[^@\s>]+\s*>?\s*$`); s NULL: none. Not yet
 * lower-cased. */
static field domain_of(const char *s, int32_t n) {
    const field none = {NULL, 0};
    int32_t at = n - 1;
    while (at >= 0 && s[at] != '@') at--;
    if (at < 0) return none;
    int32_t end = at + 1;
    while (end < n && s[end] != '@' && !is_space(s[end]) && s[end] != '>') end++;
    if (end == at + 1) return none;
    int32_t i = end;
    while (i < n && is_space(s[i])) i++;
    if (i < n && s[i] == '>') i++;
    while (i < n && is_space(s[i])) i++;
    return i == n ? (field){s + at + 1, end - at - 1} : none;
}

/* The view of the string `x` lower-cased (a copy in `lower` when it has a capital letter;
 * ASCII only, as every line the C path takes) written at `view`: 1, or 0 (an empty view)
 * when `x` is none or memory ran out. */
static int lowered_view(scan_state *st, uint8_t *view, field x) {
    const char *base = (const char *)st->data.buf;
    if (x.s == NULL) {
        view_set_in(view, base, 0, 0, 0);
        return 0;
    }
    if (!has_capital(x.s, x.len)) {
        view_set_in(view, x.s, x.len, 0, (int32_t)(x.s - base));
        return 1;
    }
    if (st->lower_len + x.len > st->lower_capacity) {
        int64_t capacity = 2 * st->lower_capacity + x.len + 4096;
        char *grown = PyMem_RawRealloc(st->lower, (size_t)capacity);
        if (grown == NULL || capacity >= INT32_MAX) {
            st->failed = 1;
            view_set_in(view, base, 0, 0, 0);
            return 0;
        }
        st->lower = grown;
        st->lower_capacity = capacity;
    }
    char *copy = st->lower + st->lower_len;
    for (int32_t i = 0; i < x.len; i++)
        copy[i] = (char)(x.s[i] >= 'A' && x.s[i] <= 'Z' ? x.s[i] + 32 : x.s[i]);
    view_set_in(view, copy, x.len, 1, (int32_t)st->lower_len);
    st->lower_len += x.len;
    return 1;
}

/* Event view `v` of row `r`: the string `x` lower-cased (a copy in `lower` when it has a
 * capital letter; ASCII only, as every line the C path takes), null when `x` is none. */
static void put_lowered(scan_state *st, int v, int64_t r, field x) {
    uint8_t *view = st->col[E_VIEWS + v] + r * VIEW_SIZE;
    valid_set(st->col[E_VALID + v], r, lowered_view(st, view, x));
}

/* 1 when `x` is the `k` bytes of `lit`. */
static inline int equals(field x, const char *lit, int32_t k) {
    return x.s != NULL && x.len == k && memcmp(x.s, lit, (size_t)k) == 0;
}
#define EQUALS(x, lit) equals((x), (lit), (int32_t)(sizeof(lit) - 1))

/* A row of the malformed lines. */
static void put_bad(scan_state *st, const line_fields *f, int reason, int64_t line_no) {
    const int64_t r = st->rows[T_BAD]++;
    const char *base = (const char *)st->data.buf;
    memcpy(st->col[B_LINE_NO] + r * 8, &line_no, 8);
    view_set(st->col[B_RAW] + r * VIEW_SIZE, base, f->f[C_RAW].s, f->f[C_RAW].len);
    st->col[B_REASON][r] = (uint8_t)reason;
    put_view(st, B_STATUS, r, reason == R_UNKNOWN_STATUS ? f->f[C_STATUS] : (field){NULL, 0});
}

/* `smtp_code` of event row `r`: the three digits of `code` (a `REPLY_CODE`), null if none. */
static inline void put_code(scan_state *st, int64_t r, field code) {
    int16_t value = 0;
    if (code.s != NULL)
        value = (int16_t)((code.s[0] - '0') * 100 + (code.s[1] - '0') * 10 + (code.s[2] - '0'));
    memcpy(st->col[E_SMTP_CODE] + r * 2, &value, 2);
    valid_set(st->col[E_SMTP_CODE_VALID], r, code.s != NULL);
}

static inline field first_of(field a, field b) { return a.s != NULL ? a : b; }

/* One line's outputs: an event (and its queue id), a malformed line, or a state line. The
 * event's columns are those the polars path's `_recipient_events`, `_expired_events` and
 * `_reject_events` give (sources/postfix.py). */
static void keep(scan_state *st, const line_fields *f, int kind, int64_t line_no) {
    const char *base = (const char *)st->data.buf;
    const field qid = f->f[C_QID];
    const field none = {NULL, 0};
    if (kind == K_FROM || kind == K_MESSAGE_ID || kind == K_REMOVED) {
        int64_t r = st->rows[T_STATE]++;
        memcpy(st->col[S_LINE_NO] + r * 8, &line_no, 8);
        st->col[S_KIND][r] = (uint8_t)kind;
        view_set(st->col[S_QID] + r * VIEW_SIZE, base, qid.s, qid.len);
        put_view(st, S_SENDER, r, f->f[C_SENDER]);
        put_view(st, S_MESSAGE_ID, r, f->f[C_MESSAGE_ID]);
        /* The batch's state lines in line order: the last of each wins. */
        const int64_t at = id_index(&st->ids, qid.s, qid.len);
        if (at < 0) return; /* (out of memory: tokenize fails) */
        queue_id *id = &st->ids.ids[at];
        id->state = 1;
        if (kind == K_REMOVED) {
            id->removed = line_no;
        } else {
            id->seq = line_no;
            if (kind == K_FROM) {
                const field sender = f->f[C_SENDER];
                id->sender = sender;
                view_set(id->sender_view, base, sender.s, sender.len);
                id->domain_valid =
                    (uint8_t)lowered_view(st, id->domain_view, domain_of(sender.s, sender.len));
            }
            if (f->f[C_MESSAGE_ID].s != NULL) {
                id->message_id = f->f[C_MESSAGE_ID];
                view_set(id->message_id_view, base, id->message_id.s, id->message_id.len);
            }
        }
        return;
    }
    /* ...smtp[5]: 3F2A1B2C3D: tox=<a@example.com>, relay=..., status=sent  (damaged) */
    if (kind == K_BAD_STATUS) {
        put_bad(st, f, R_DAMAGED_STATUS, line_no);
        return;
    }
    int event = EV_REJECTED;
    if (kind == K_EXPIRED) event = EV_EXPIRED;
    if (kind == K_RECIPIENT) {
        /* `_STATUS_EVENTS`; a probe's status=deliverable/undeliverable is skipped; any other
         * status, or none (the line did not read as `_RECIPIENT`), is malformed */
        const field status = f->f[C_STATUS];
        if (status.s == NULL) {
            put_bad(st, f, R_UNREADABLE, line_no);
            return;
        }
        if (EQUALS(status, "sent"))
            event = EV_DELIVERED;
        else if (EQUALS(status, "deferred"))
            event = EV_DEFERRED;
        else if (EQUALS(status, "bounced"))
            event = EV_BOUNCED;
        else if (EQUALS(status, "expired"))
            event = EV_EXPIRED;
        else if (EQUALS(status, "deliverable") || EQUALS(status, "undeliverable"))
            return;
        else {
            put_bad(st, f, R_UNKNOWN_STATUS, line_no);
            return;
        }
    }
    field out[N_EVENT_VIEWS];
    memset(out, 0, sizeof out);
    out[O_RAW] = f->f[C_RAW];
    out[O_HOST] = f->f[C_HOST];
    out[O_TRANSPORT] = f->f[C_TRANSPORT];
    out[O_MESSAGE_REF] = qid;
    field code = none, recipient = none, sender = none;
    if (kind == K_RECIPIENT) {
        recipient = f->f[C_RECIPIENT];
        out[O_ORIGINAL_RECIPIENT] = f->f[C_ORIGINAL_RECIPIENT];
        out[O_DIAGNOSTIC] = f->f[C_DIAGNOSTIC];
        /* relay=none: the host is in the text ("connect to mx.example.com[192.0.2.7]:25") */
        const field relay_host = f->f[C_RELAY_HOST];
        if (relay_host.s == NULL || EQUALS(relay_host, "none")) {
            out[O_RELAY_HOST] = f->f[C_REMOTE_HOST];
            out[O_RELAY_IP] = f->f[C_REMOTE_IP];
        } else {
            out[O_RELAY_HOST] = relay_host;
            out[O_RELAY_IP] = f->f[C_RELAY_IP];
        }
        code = first_of(f->f[C_SAID_CODE], f->f[C_LEADING_CODE]);
        /* the dsn first: the status Postfix recorded (see `_recipient_events`) */
        out[O_ENHANCED_CODE] =
            first_of(first_of(f->f[C_DSN], f->f[C_DSN_ALONE]),
                     first_of(f->f[C_SAID_ENHANCED], f->f[C_LEADING_ENHANCED]));
        out[O_DELAY] = f->f[C_DELAY];
    } else if (kind == K_EXPIRED) {
        /* ...qmgr[9]: 3F2A1B2C3D: from=<s@example.org>, status=expired, returned to sender
         * (body_kind found the ">"; the diagnostic: after the first ", status=expired, ") */
        const field body = f->f[C_BODY];
        const char *close = memchr(body.s + 6, '>', (size_t)(body.len - 6));
        sender = (field){body.s + 6, (int32_t)(close - body.s - 6)};
        int64_t at = FIND(body.s, body.len, 0, ", status=expired, ");
        if (at >= 0) out[O_DIAGNOSTIC] = (field){body.s + at + 18, (int32_t)(body.len - at - 18)};
    } else {
        /* a reject: its stage text (scan_line sent the others to the polars path), the codes
         * that lead it (`_LEADING_CODES`), the client, the envelope */
        const field stage = f->f[C_STAGE];
        out[O_DIAGNOSTIC] = stage;
        leading_codes(stage.s, stage.len, &code, &out[O_ENHANCED_CODE]);
        if (EQUALS(qid, "NOQUEUE")) out[O_MESSAGE_REF] = none;
        if (f->f[C_CLIENT_HOST].len > 0) out[O_CLIENT_HOST] = f->f[C_CLIENT_HOST];
        out[O_CLIENT_IP] = f->f[C_CLIENT_IP];
        recipient = f->f[C_ENVELOPE_RECIPIENT];
        sender = f->f[C_ENVELOPE_SENDER];
    }
    const int64_t r = st->rows[T_EVENTS]++;
    memcpy(st->col[E_LINE_NO] + r * 8, &line_no, 8);
    st->col[E_EVENT][r] = (uint8_t)event;
    memcpy(st->col[E_STAMP] + r * 4, &f->stamp, 4);
    put_code(st, r, code);
    for (int v = 0; v < O_RECIPIENT; v++) put_event_view(st, v, r, out[v]);
    for (int v = O_ORIGINAL_RECIPIENT; v < O_SENDER; v++) put_event_view(st, v, r, out[v]);
    /* The recipient an event names (`to=<...>`, a reject's envelope `to=<...>`) lower-cased,
     * null when empty, and its domain. */
    if (recipient.s != NULL && recipient.len == 0) recipient = none;
    put_lowered(st, O_RECIPIENT, r, recipient);
    put_lowered(st, O_RECIPIENT_DOMAIN, r,
                recipient.s ? domain_of(recipient.s, recipient.len) : none);
    st->own_sender[r] = sender;
    /* NOQUEUE: reject: ... names no queue id (its message_ref is null) */
    st->event_id[r] = out[O_MESSAGE_REF].s == NULL ? -1 : id_index(&st->ids, qid.s, qid.len);
}

/* Each event row with its sender, the sender's domain and its Message-ID as
 * `_join_open_ids` joins them from the batch's state lines (the map of open ids carried from
 * earlier batches left out), and whether the map's sender or Message-ID is to be taken where
 * it has the queue id; and the table of queue ids. */
static void join_state(scan_state *st) {
    const field none = {NULL, 0};
    const int64_t rows = st->rows[T_EVENTS];
    for (int64_t r = 0; r < rows; r++) {
        /* (the ids are read at random: the one 8 rows on is fetched into the cache now) */
        if (r + 8 < rows && st->event_id[r + 8] >= 0)
            __builtin_prefetch(&st->ids.ids[st->event_id[r + 8]]);
        const queue_id *id = st->event_id[r] >= 0 ? &st->ids.ids[st->event_id[r]] : NULL;
        const field own = st->own_sender[r];
        const field known_sender = id ? id->sender : none;
        const field known_message_id = id ? id->message_id : none;
        const int64_t seq = id ? id->seq : -1, removed = id ? id->removed : -1;
        int64_t line_no;
        memcpy(&line_no, st->col[E_LINE_NO] + r * 8, 8);
        /* A line after qmgr's "removed" (and no newer from=/message-id=) gets nothing. (The
         * map's lines all come before the batch's: where the batch names no from= or
         * message-id= of the id, the map's cannot be newer than a `removed` of the batch.) */
        const int current = removed < 0 || line_no < removed || seq > removed;
        if (own.s != NULL) {
            put_event_view(st, O_SENDER, r, own);
            put_lowered(st, O_SENDER_DOMAIN, r, domain_of(own.s, own.len));
        } else if (current && known_sender.s != NULL) {
            put_event_copy(st, O_SENDER, r, id->sender_view, 1);
            put_event_copy(st, O_SENDER_DOMAIN, r, id->domain_view, id->domain_valid);
        } else {
            put_event_view(st, O_SENDER, r, none);
            put_lowered(st, O_SENDER_DOMAIN, r, none);
        }
        if (current && known_message_id.s != NULL)
            put_event_copy(st, O_MESSAGE_ID, r, id->message_id_view, 1);
        else
            put_event_view(st, O_MESSAGE_ID, r, none);
        st->col[E_SENDER_OWN][r] = (uint8_t)(own.s != NULL);
        st->col[E_SENDER_OPEN][r] = (uint8_t)(current && !own.s && !known_sender.s);
        st->col[E_MESSAGE_ID_OPEN][r] = (uint8_t)(current && !known_message_id.s);
    }
    for (int64_t i = 0; i < st->ids.count; i++) {
        const queue_id *id = &st->ids.ids[i];
        memcpy(st->col[Q_QID] + i * VIEW_SIZE, id->qid_view, VIEW_SIZE);
        put_copy(st, Q_SENDER, i, id->sender_view, id->sender.s != NULL);
        put_copy(st, Q_MESSAGE_ID, i, id->message_id_view, id->message_id.s != NULL);
        put_int64(st, Q_SEQ, i, id->seq);
        put_int64(st, Q_REMOVED, i, id->removed);
        st->col[Q_STATE][i] = id->state;
        /* a state line names it, and it is not `removed` after its last from=/message-id= */
        st->col[Q_OPEN][i] = (uint8_t)(id->state && (id->removed < 0 || id->removed < id->seq));
    }
    st->rows[T_IDS] = st->ids.count;
}

static void scan(scan_state *st, int64_t first_line, const char *gaps, Py_ssize_t gaps_len) {
    const char *base = (const char *)st->data.buf;
    const int64_t len = (int64_t)st->data.len;
    int64_t pos = 0, index = 0;
    stamp_cache last = {.key = -1};
    while (pos < len) {
        if (index == st->capacity) { /* (more lines than `newlines` said: no row for them) */
            st->miscounted = 1;
            return;
        }
        /* (the newline, and whether the line is all printable ASCII, in one pass: lines.h) */
        int odd;
        const int64_t end = line_end(base + pos, base + len, &odd) - base;
        int64_t n = end - pos;
        const char *s = base + pos;
        if (n > 0 && s[n - 1] == '\r') n--; /* CRLF */
        line_fields f;
        int kind = scan_line(s, n, odd, gaps, gaps_len, &last, &f);
        int64_t line_no = first_line + index;
        if (kind == K_OTHER) {
            st->other_line_no[st->others] = line_no;
            st->other_span[2 * st->others] = pos;
            st->other_span[2 * st->others + 1] = end;
            st->other_bytes += end - pos + 1;
            st->others++;
        } else if (kind != K_SKIP) {
            keep(st, &f, kind, line_no);
        }
        index++;
        pos = end + 1;
    }
    st->lines = index;
    st->miscounted = index != st->capacity;
    join_state(st);
}

static int set_item(PyObject *dict, const char *key, PyObject *value) {
    if (value == NULL) return -1;
    int rc = PyDict_SetItemString(dict, key, value);
    Py_DECREF(value);
    return rc;
}

PyDoc_STRVAR(tokenize_doc,
             "tokenize(data, first_line, gaps, newlines=-1) -> dict\n\n"
             "Cut the syslog lines of one batch (`data`: whole lines; `first_line`: the number "
             "of its first line; `gaps`: 10-byte stamp starts, `Mar 29 02:`, of hours the "
             "clocks skip; `newlines`: its newline bytes where the reader counted them, else "
             "counted here; ValueError if it is not that). Returns `lines` (read) and four tables of bytearray columns "
             "(string views: 16 bytes a row; bitmaps `<name>_valid`): `kept` events, in line "
             "order, with the columns the polars path's event builders give (`line_no`, "
             "`stamp`, `event`: the number of its name, `smtp_code` int16, and views: `raw`, "
             "`host`, `transport`, `message_ref`, `recipient` and `recipient_domain` "
             "lower-cased, `original_recipient`, `diagnostic`, `relay_host`, `relay_ip`, "
             "`client_host`, `client_ip`, `enhanced_code`, `delay`; `sender`, "
             "`sender_domain` and `message_id` as the batch's state lines give them, "
             "`sender_own`: 1 where the line names its sender itself, `sender_open` and "
             "`message_id_open`: 1 where the map of open ids is to give them); lower-cased "
             "views may point into `lower`, the lower-cased "
             "copies: data buffer 1; `bad` malformed lines (`bad_line_no`, `bad_raw`, "
             "`bad_reason`, `bad_status`); `state` rows of qmgr from=, "
             "cleanup message-id= and removed lines (`state_line_no`, `state_kind`, "
             "`state_qid`, `state_sender`, `state_message_id`); `ids` queue ids the batch "
             "names (`id_qid`, `id_sender`, `id_message_id`, `id_seq`, `id_removed`, "
             "`id_state`: 1 when a state line names it, `id_open`: 1 when it stays open); "
             "and the lines not for the C path: "
             "`others` (count), `other_line_no` (int64) and `other_data` (their bytes, each "
             "followed by a newline).");

/* The tables and working arrays of earlier batches, for the next (reuse.h). */
static kept_column kept_arrays[N_COLUMNS];
enum { S_SLOTS, S_IDS, S_EVENT_ID, S_OWN_SENDER, S_OTHER_LINE_NO, S_OTHER_SPAN, S_COUNT };
static kept_scratch kept[S_COUNT];

static PyObject *tokenize(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *source;
    long long first_line, newlines = -1;
    const char *gaps;
    Py_ssize_t gaps_len;
    if (!PyArg_ParseTuple(args, "OLy#|L:tokenize", &source, &first_line, &gaps, &gaps_len,
                          &newlines))
        return NULL;
    scan_state st;
    memset(&st, 0, sizeof st);
    if (PyObject_GetBuffer(source, &st.data, PyBUF_SIMPLE) < 0) return NULL;
    classes_init(); /* (once; with the interpreter lock held) */
    PyObject *result = NULL, *arrays[N_COLUMNS] = {NULL};
    PyObject *other_data = NULL, *other_line_no = NULL, *lower = NULL;
    void *scratch[S_COUNT] = {NULL};
    size_t scratch_size[S_COUNT] = {0};
    column_spec spec[N_COLUMNS];
    column_specs(spec);
    if (st.data.len >= INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "a batch must be under 2 GiB");
        goto done;
    }
    /* Lines: the newlines (as the reader counted them, else counted here), plus a last line
     * without one. */
    const char *base = (const char *)st.data.buf;
    int64_t capacity = newlines >= 0 ? (int64_t)newlines : count_newlines(base, st.data.len);
    if (st.data.len > 0 && base[st.data.len - 1] != '\n') capacity++;
    if (capacity > st.data.len) {
        PyErr_SetString(PyExc_ValueError, "tokenize: `newlines` is not the batch's count");
        goto done;
    }
    st.capacity = capacity;
    /* Every table has room for a row a line. Not zeroed: the scan writes every byte of the
     * rows it keeps (bitmaps excepted, which are cleared), and the arrays are cut to those
     * rows; pages it never reaches are never touched. */
    for (int c = 0; c < N_COLUMNS; c++) {
        Py_ssize_t size = spec[c].width ? capacity * spec[c].width : (capacity + 7) / 8;
        arrays[c] = kept_column_take(&kept_arrays[c], size); /* (reuse.h) */
        if (arrays[c] == NULL) goto done;
        st.col[c] = (uint8_t *)PyByteArray_AS_STRING(arrays[c]);
        if (!spec[c].width) memset(st.col[c], 0, (size_t)size);
    }
    uint64_t slots = 16; /* (to grow as the batch names more ids: `id_table_grow`) */
    while (slots < 2 * (uint64_t)capacity && slots < ID_SLOTS_FIRST) slots <<= 1;
    /* (the working arrays of the last batch, where large enough: reuse.h) */
    const size_t wanted[S_COUNT] = {
        [S_SLOTS] = slots * sizeof(int32_t),
        [S_IDS] = (size_t)(capacity + 1) * sizeof(queue_id),
        [S_EVENT_ID] = (size_t)(capacity + 1) * 8,
        [S_OWN_SENDER] = (size_t)(capacity + 1) * sizeof(field),
        [S_OTHER_LINE_NO] = (size_t)(capacity + 1) * 8,
        [S_OTHER_SPAN] = (size_t)(capacity + 1) * 16,
    };
    for (int k = 0; k < S_COUNT; k++) scratch[k] = kept_scratch_take(&kept[k], wanted[k], &scratch_size[k]);
    while (slots * 2 * sizeof(int32_t) <= scratch_size[S_SLOTS]) slots <<= 1; /* (grown before) */
    st.ids.base = base;
    st.ids.slots = scratch[S_SLOTS];
    st.ids.slots_size = scratch_size[S_SLOTS];
    st.ids.mask = slots - 1;
    st.ids.ids = scratch[S_IDS];
    st.event_id = scratch[S_EVENT_ID];
    st.own_sender = scratch[S_OWN_SENDER];
    st.other_line_no = scratch[S_OTHER_LINE_NO];
    st.other_span = scratch[S_OTHER_SPAN];
    if (st.other_line_no == NULL || st.other_span == NULL || st.ids.slots == NULL ||
        st.ids.ids == NULL || st.event_id == NULL || st.own_sender == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    memset(st.ids.slots, 0xFF, slots * sizeof(int32_t));
    Py_BEGIN_ALLOW_THREADS scan(&st, (int64_t)first_line, gaps, gaps_len);
    Py_END_ALLOW_THREADS
    scratch[S_SLOTS] = st.ids.slots; /* (grown, maybe: kept for the next batch) */
    scratch_size[S_SLOTS] = st.ids.slots_size;

    /* The lines not for the C path, each with its newline. */
    other_data = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)st.other_bytes);
    if (other_data == NULL) goto done;
    char *out = PyBytes_AS_STRING(other_data);
    for (int64_t i = 0; i < st.others; i++) {
        int64_t start = st.other_span[2 * i], end = st.other_span[2 * i + 1];
        memcpy(out, base + start, (size_t)(end - start));
        out += end - start;
        *out++ = '\n';
    }
    other_line_no = PyByteArray_FromStringAndSize((const char *)st.other_line_no,
                                                  (Py_ssize_t)(st.others * 8));
    if (other_line_no == NULL) goto done;
    if (st.failed || st.ids.failed) {
        PyErr_NoMemory();
        goto done;
    }
    if (st.miscounted) {
        PyErr_SetString(PyExc_ValueError, "tokenize: `newlines` is not the batch's count");
        goto done;
    }
    lower = PyBytes_FromStringAndSize(st.lower ? st.lower : "", (Py_ssize_t)st.lower_len);
    if (lower == NULL) goto done;
    for (int c = 0; c < N_COLUMNS; c++) {
        int64_t rows = st.rows[spec[c].table];
        if (spec[c].width && PyByteArray_Resize(arrays[c], rows * spec[c].width) < 0) goto done;
    }
    result = PyDict_New();
    if (result == NULL) goto done;
    if (set_item(result, "lines", PyLong_FromLongLong(st.lines)) < 0 ||
        set_item(result, "kept", PyLong_FromLongLong(st.rows[T_EVENTS])) < 0 ||
        set_item(result, "bad", PyLong_FromLongLong(st.rows[T_BAD])) < 0 ||
        set_item(result, "state", PyLong_FromLongLong(st.rows[T_STATE])) < 0 ||
        set_item(result, "ids", PyLong_FromLongLong(st.rows[T_IDS])) < 0 ||
        set_item(result, "others", PyLong_FromLongLong(st.others)) < 0 ||
        PyDict_SetItemString(result, "other_data", other_data) < 0 ||
        PyDict_SetItemString(result, "other_line_no", other_line_no) < 0 ||
        PyDict_SetItemString(result, "lower", lower) < 0)
        goto fail;
    for (int c = 0; c < N_COLUMNS; c++)
        if (PyDict_SetItemString(result, spec[c].name, arrays[c]) < 0) goto fail;
    goto done;
fail:
    Py_CLEAR(result);
done:
    for (int c = 0; c < N_COLUMNS; c++) Py_XDECREF(arrays[c]);
    Py_XDECREF(other_data);
    Py_XDECREF(other_line_no);
    Py_XDECREF(lower);
    PyMem_RawFree(st.lower);
    for (int k = 0; k < S_COUNT; k++) kept_scratch_give(&kept[k], scratch[k], scratch_size[k]);
    PyBuffer_Release(&st.data);
    return result;
}

/* compact(views, count, offset, validity, buffers, out_views, out_data) -> bytes written: the
 * `count` string views of an Arrow string_view array (from row `offset` of `views` and of the
 * `validity` bitmap, None: no nulls), whose data lie in the `buffers` (its data buffers, in
 * order), laid over one data buffer that holds only their bytes, in row order: the views are
 * written to `out_views` (16 bytes a row), the bytes to `out_data` (pipeline.own_texts; the
 * caller allocates both, from its own memory pool). Views of 12 bytes or less hold their bytes
 * and are kept; a null row's view is zeroed. A view that points outside its buffer, or output
 * buffers too small, raise ValueError: nothing is read or written out of bounds. */
static PyObject *compact(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer views = {0}, validity = {0}, out_views = {0}, out_data = {0};
    PyObject *validity_obj, *buffer_list, *result = NULL;
    Py_ssize_t count, offset, n_buffers = 0, got = 0;
    Py_buffer *buffers = NULL;
    if (!PyArg_ParseTuple(args, "y*nnOOw*w*", &views, &count, &offset, &validity_obj,
                          &buffer_list, &out_views, &out_data))
        return NULL;
    if (count < 0 || offset < 0 || views.len / VIEW_SIZE < offset ||
        views.len / VIEW_SIZE - offset < count) {
        PyErr_SetString(PyExc_ValueError, "compact: fewer views than rows");
        goto done;
    }
    if (validity_obj != Py_None) {
        if (PyObject_GetBuffer(validity_obj, &validity, PyBUF_SIMPLE) < 0) goto done;
        if (count && validity.len * 8 < offset + count) {
            PyErr_SetString(PyExc_ValueError, "compact: a validity bitmap shorter than the rows");
            goto done;
        }
    }
    n_buffers = PySequence_Length(buffer_list);
    if (n_buffers < 0) goto done;
    buffers = PyMem_Calloc((size_t)(n_buffers ? n_buffers : 1), sizeof(Py_buffer));
    if (buffers == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (; got < n_buffers; got++) {
        PyObject *item = PySequence_GetItem(buffer_list, got);
        if (item == NULL) goto done;
        int failed = PyObject_GetBuffer(item, &buffers[got], PyBUF_SIMPLE);
        Py_DECREF(item);
        if (failed < 0) goto done;
    }
    const uint8_t *in = (const uint8_t *)views.buf + offset * VIEW_SIZE;
    const uint8_t *bits = validity.buf;
    int64_t total = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (bits && !(bits[(offset + i) >> 3] & (1u << ((offset + i) & 7)))) continue;
        int32_t len, index, at;
        memcpy(&len, in + i * VIEW_SIZE, 4);
        if (len <= 12) {
            if (len < 0) goto bad;
            continue;
        }
        memcpy(&index, in + i * VIEW_SIZE + 8, 4);
        memcpy(&at, in + i * VIEW_SIZE + 12, 4);
        if (index < 0 || index >= n_buffers || at < 0 || (int64_t)at + len > buffers[index].len)
            goto bad;
        total += len;
    }
    if (total > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "compact: more than 2 GiB of text");
        goto done;
    }
    if (out_views.len / VIEW_SIZE < count || out_data.len < total) {
        PyErr_SetString(PyExc_ValueError, "compact: output buffers too small");
        goto done;
    }
    uint8_t *out = (uint8_t *)out_views.buf;
    char *data = (char *)out_data.buf;
    Py_BEGIN_ALLOW_THREADS;
    int32_t written = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        const uint8_t *view = in + i * VIEW_SIZE;
        uint8_t *to = out + i * VIEW_SIZE;
        int32_t len, index, at;
        memcpy(&len, view, 4);
        if (bits && !(bits[(offset + i) >> 3] & (1u << ((offset + i) & 7)))) {
            memset(to, 0, VIEW_SIZE);
        } else if (len <= 12) {
            memcpy(to, view, VIEW_SIZE);
        } else {
            memcpy(&index, view + 8, 4);
            memcpy(&at, view + 12, 4);
            memcpy(data + written, (const char *)buffers[index].buf + at, (size_t)len);
            view_set_in(to, data + written, len, 0, written);
            written += len;
        }
    }
    Py_END_ALLOW_THREADS;
    result = PyLong_FromLongLong(total);
    goto done;
bad:
    PyErr_SetString(PyExc_ValueError, "compact: a view outside its data buffer");
done:
    for (Py_ssize_t b = 0; b < got; b++) PyBuffer_Release(&buffers[b]);
    PyMem_Free(buffers);
    if (validity.obj != NULL) PyBuffer_Release(&validity);
    PyBuffer_Release(&views);
    PyBuffer_Release(&out_views);
    PyBuffer_Release(&out_data);
    return result;
}

static PyObject *release(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    for (int c = 0; c < N_COLUMNS; c++) kept_column_release(&kept_arrays[c]);
    for (int k = 0; k < S_COUNT; k++) kept_scratch_release(&kept[k]);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"tokenize", tokenize, METH_VARARGS, tokenize_doc},
    {"release", release, METH_NOARGS,
     "release() -> None\n\nLet go of the tables and working arrays kept for the next batch "
     "(native/reuse.h): at the end of a run."},
    NEWLINES_METHOD,
    {"compact", compact, METH_VARARGS,
     "compact(views, count, offset, validity, buffers, out_views, out_data) -> bytes written\n\n"
     "A string_view array's texts copied into one data buffer of their own, in row order."},
    {NULL, NULL, 0, NULL},
};

/* ABI_VERSION 4: `newlines` (3: final event columns, and a table of malformed lines; 2: the
 * fields of the kept lines, and tables of state lines and queue ids; 1: one table of kept
 * lines). */
TOKENIZER_MODULE(_postfix_c, "The C tokenizer of the Postfix source (optional; the polars path is the reference).", methods, 4)
