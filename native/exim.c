/* bounce_analyzer._exim_c: the C tokenizer of the Exim source (issue 18; docs/NATIVE.md).
 *
 * `cut(data)` reads one batch (whole lines, as reading.Batch holds them) in one pass: it cuts
 * each line into its stamp, message id and text, tells its kind, and cuts the delivery lines
 * (`=>`, `->`, `**`, `==`) of the usual shape into the fields sources/exim.py's polars path
 * extracts from them. It claims a line only where it gives exactly what the polars path gives
 * (the reference); any other line is of kind FALLBACK and the polars path reads it. It answers
 * None for a batch it does not cut at all (a NUL byte, a `\r`, or bytes that are not UTF-8:
 * the polars path reads lines there in its own ways).
 *
 * Fields are Arrow string views into the batch (views.h). Lines it claims are printable ASCII,
 * so that byte offsets are character offsets and no regular expression's Unicode classes
 * differ from the byte tests made here.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lines.h"
#include "module.h"
#include "reuse.h"
#include "views.h"

/* Line kinds (sources/exim.py has the same numbers). */
enum {
    K_FALLBACK = 0,  /* the polars path reads the line */
    K_UNDATED = 1,   /* no `2026-11-28 10:00:00 ` at the start */
    K_ARRIVAL = 2,   /* <= sender ... */
    K_COMPLETED = 3, /* Completed */
    K_DELIVERY = 4,  /* =>, ->, ** or == the polars path cuts (not of the usual shape) */
    K_CUT = 5,       /* a delivery cut here: a row of the delivery columns */
    K_CLIENT = 6,    /* H=... rejected RCPT <a> / H=... rejected after DATA */
    K_SKIP = 7,      /* anything else with a stamp (and `== ... retry time not reached`) */
    K_ARRIVED = 8,   /* an arrival cut here: a row of the cut columns */
    K_REJECTED = 9,  /* a client reject cut here (`rejected RCPT`, `rejected after DATA`) */
};

/* What a row of the event columns is: the event of a delivery (sources/exim.py has the same
 * names in this order), or a client's reject (its envelope sender in `sender`). Arrivals
 * have columns of their own. */
enum { E_DELIVERED = 0, E_BOUNCED = 1, E_DEFERRED = 2, E_EXPIRED = 3, E_REJECTED = 4 };

typedef struct {
    const char *s;
    int64_t n;
} span;

static const span NONE = {NULL, -1};

static inline int has(span x) { return x.n >= 0; }
static inline int is_digit(char c) { return c >= '0' && c <= '9'; }
/* 0-9, A-Z, a-z: a bit a byte value (one test a byte, in the loops over message ids) */
static inline int alnum(char c) {
    static const uint64_t bits[2] = {0x03FF000000000000ULL, 0x07FFFFFE07FFFFFEULL};
    const unsigned char u = (unsigned char)c;
    return u < 128 && ((bits[u >> 6] >> (u & 63)) & 1);
}

/* The first `needle` (of two bytes or more) in `hay` (its offset), or -1. A needle that
 * starts with a space (` H=`, ` QT=`) is looked for by its second byte, rarer in text. */
static inline int64_t find(span hay, const char *needle) {
    size_t k = strlen(needle);
    if (hay.n < (int64_t)k) return -1;
    const char *end = hay.s + hay.n - k;
    if (needle[0] == ' ') {
        for (const char *p = hay.s + 1; p <= end + 1; p++) {
            p = memchr(p, needle[1], (size_t)(end + 1 - p + 1));
            if (p == NULL) return -1;
            if (p[-1] == ' ' && memcmp(p + 1, needle + 2, k - 2) == 0) return p - 1 - hay.s;
        }
        return -1;
    }
    for (const char *p = hay.s; p <= end; p++) {
        p = memchr(p, needle[0], (size_t)(end - p + 1));
        if (p == NULL) return -1;
        /* (the second byte first: most candidates fail there, without a call) */
        if (p[1] == needle[1] && memcmp(p + 2, needle + 2, k - 2) == 0) return p - hay.s;
    }
    return -1;
}

/* The first space in `hay`, or -1. */
static inline int64_t find_space(span hay) {
    const char *p = memchr(hay.s, ' ', (size_t)hay.n);
    return p == NULL ? -1 : p - hay.s;
}

static inline span from(span x, int64_t at) { return (span){x.s + at, x.n - at}; }
static inline span upto(span x, int64_t n) { return (span){x.s, n}; }

static int starts(span x, const char *prefix) {
    size_t k = strlen(prefix);
    return x.n >= (int64_t)k && memcmp(x.s, prefix, k) == 0;
}

/* Case-insensitive (ASCII) prefix test. */
static int starts_nocase(span x, const char *prefix) {
    size_t k = strlen(prefix);
    if (x.n < (int64_t)k) return 0;
    for (size_t i = 0; i < k; i++) {
        char c = x.s[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c != prefix[i]) return 0;
    }
    return 1;
}

/* The run of alphanumerics at `at` in `x`: its length, up to `most` + 1 at most. */
static inline int64_t alnum_run(span x, int64_t at, int64_t most) {
    int64_t i = at;
    while (i < x.n && i - at <= most && alnum(x.s[i])) i++;
    return i - at;
}

/* Which of the 8 bytes at `s` are alphanumerics (bit `k`: byte `k`), 8 at a time: a byte
 * from 0x80 up is none; below, none carries into the next as the ranges are tested. */
static inline uint32_t alnum_bits(const char *s) {
    const uint64_t ones = 0x0101010101010101ULL, highs = ones * 0x80;
    uint64_t w;
    memcpy(&w, s, 8);
    const uint64_t low = w & ~highs, letter = low | ones * 0x20; /* (a letter lower-cased) */
    const uint64_t digit = (low + ones * (0x80 - '0')) & ~(low + ones * (0x80 - ':'));
    const uint64_t alpha = (letter + ones * (0x80 - 'a')) & ~(letter + ones * (0x80 - '{'));
    const uint64_t hits = (digit | alpha) & ~w & highs;
    return (uint32_t)(((hits >> 7) * 0x0102040810204080ULL) >> 56); /* (byte k's bit to bit k) */
}

/* The length of an Exim message id (_ID: 6-11-4, 6-10-4 or 6-6-2 alphanumerics) at `s`
 * followed by a space, or 0. Each part is followed by a byte that is no alphanumeric (`-`, a
 * space), so each is the whole run of alphanumerics where it starts: each run is read once,
 * and its length says which shape it can be (from a bit a byte of the first 24 bytes, where
 * there are 24: the longest id and its space). */
static int message_id(span x) {
    if (x.n >= 24) {
        const uint32_t bits = alnum_bits(x.s) | alnum_bits(x.s + 8) << 8 |
                              alnum_bits(x.s + 16) << 16;
        if ((bits & 0x7F) != 0x3F || x.s[6] != '-') return 0;
        const int second = __builtin_ctz(~(bits >> 7)); /* (at most 17: bit 24 on is 0) */
        if (!(second == 11 || second == 10 || second == 6) || x.s[7 + second] != '-') return 0;
        const int third = __builtin_ctz(~(bits >> (8 + second)));
        if (third != (second == 6 ? 2 : 4)) return 0;
        const int at = 8 + second + third;
        return x.s[at] == ' ' ? at : 0;
    }
    if (alnum_run(x, 0, 6) != 6 || x.n <= 6 || x.s[6] != '-') return 0;
    const int64_t second = alnum_run(x, 7, 11);
    if (!(second == 11 || second == 10 || second == 6)) return 0;
    int64_t at = 7 + second;
    if (at >= x.n || x.s[at] != '-') return 0;
    const int64_t third = alnum_run(x, at + 1, 4);
    if (third != (second == 6 ? 2 : 4)) return 0;
    at += 1 + third;
    return at < x.n && x.s[at] == ' ' ? (int)at : 0;
}

/* `\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}` at the start. */
static int stamp(span x) {
    static const char shape[] = "dddd-dd-dd dd:dd:dd";
    if (x.n < 19) return 0;
    for (int i = 0; i < 19; i++) {
        if (shape[i] == 'd' ? !is_digit(x.s[i]) : x.s[i] != shape[i]) return 0;
    }
    return 1;
}

/* A completion reply (`[245][0-5][0-9]`, then ` 5.1.1` or `-5.1.1` optionally, then a space,
 * a `-` or the end) at `at` in `x`, as _CODES reads it: 1 and the code and enhanced code. */
static int reply_at(span x, int64_t at, int *code, span *enhanced) {
    const char *s = x.s + at;
    int64_t n = x.n - at;
    if (n < 3 || !(s[0] == '2' || s[0] == '4' || s[0] == '5') || !(s[1] >= '0' && s[1] <= '5') ||
        !is_digit(s[2]))
        return 0;
    int value = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
    /* (?:[ -]([245]\.\d{1,3}\.\d{1,3}))? then (?:[ -]|$) */
    if (n > 4 && (s[3] == ' ' || s[3] == '-') && (s[4] == '2' || s[4] == '4' || s[4] == '5')) {
        int64_t i = 5;
        if (i < n && s[i] == '.') {
            i++;
            int64_t first = i;
            while (i < n && is_digit(s[i]) && i - first < 4) i++;
            int64_t run = i - first;
            if (run >= 1 && run <= 3 && i < n && s[i] == '.') {
                i++;
                int64_t second = i;
                while (i < n && is_digit(s[i]) && i - second < 4) i++;
                run = i - second;
                if (run >= 1 && run <= 3 && (i == n || s[i] == ' ' || s[i] == '-')) {
                    *code = value;
                    *enhanced = (span){s + 4, i - 4};
                    return 1;
                }
            }
        }
    }
    if (n == 3 || s[3] == ' ' || s[3] == '-') {
        *code = value;
        *enhanced = NONE;
        return 1;
    }
    return 0;
}

/* The first reply _REPLY finds in `x` (`(?:^|: )` then a reply). */
static void first_reply(span x, int *code, span *enhanced) {
    *code = -1;
    *enhanced = NONE;
    if (reply_at(x, 0, code, enhanced)) return;
    for (int64_t p = 0; p + 2 <= x.n; p++) {
        const char *c = memchr(x.s + p, ':', (size_t)(x.n - p));
        if (c == NULL) break;
        p = c - x.s;
        if (p + 1 < x.n && x.s[p + 1] == ' ' && reply_at(x, p + 2, code, enhanced)) return;
    }
    *code = -1;
    *enhanced = NONE;
}

/* A run of digits at `at` (at most `most`; 0 when longer, as a fallback). */
static int64_t digit_run(span x, int64_t at, int64_t most, int *too_long) {
    int64_t i = at;
    while (i < x.n && is_digit(x.s[i])) i++;
    if (i - at > most) *too_long = 1;
    return i - at;
}

static double number(const char *s, int64_t n) {
    char buffer[32];
    memcpy(buffer, s, (size_t)n);
    buffer[n] = '\0';
    return strtod(buffer, NULL);
}

/* `QT=1h2m3s` read as _QT_VALUE reads it, in seconds: 1 with `*seconds`, 0 without any part,
 * -1 where the polars path should decide (long numbers; a fraction beside other parts, whose
 * sum polars may round in another order). */
static int queue_time(span x, double *seconds) {
    static const char units[3] = {'d', 'h', 'm'};
    static const double factors[3] = {86400.0, 3600.0, 60.0};
    int64_t at = 0;
    int parts = 0, too_long = 0;
    double total = 0.0;
    for (int u = 0; u < 3; u++) {
        int64_t run = digit_run(x, at, 9, &too_long);
        if (run >= 1 && at + run < x.n && x.s[at + run] == units[u]) {
            if (too_long) return -1;
            total += number(x.s + at, run) * factors[u];
            at += run + 1;
            parts++;
        }
        too_long = 0;
    }
    int64_t run = digit_run(x, at, 9, &too_long);
    if (run >= 1) {
        int64_t end = at + run;
        int fraction = 0;
        if (end + 1 < x.n && x.s[end] == '.' && is_digit(x.s[end + 1])) {
            int64_t more = digit_run(x, end + 1, 9, &too_long);
            if (end + 1 + more < x.n && x.s[end + 1 + more] == 's') {
                end = end + 1 + more;
                fraction = 1;
            }
        }
        if (end < x.n && x.s[end] == 's') {
            if (too_long || (fraction && parts)) return -1;
            total += number(x.s + at, end - at);
            parts++;
        }
    }
    if (!parts) return 0;
    *seconds = total;
    return 1;
}

/* `^R=(router)(?: T=(transport))?` in `x` (`[^\s:]+` names): the transport, else the router. */
static span drivers(span x) {
    if (!starts(x, "R=")) return NONE;
    int64_t i = 2;
    while (i < x.n && x.s[i] != ' ' && x.s[i] != ':') i++;
    if (i == 2) return NONE;
    span router = {x.s + 2, i - 2};
    if (i + 3 < x.n && x.s[i] == ' ' && x.s[i + 1] == 'T' && x.s[i + 2] == '=') {
        int64_t j = i + 3;
        while (j < x.n && x.s[j] != ' ' && x.s[j] != ':') j++;
        if (j > i + 3) return (span){x.s + i + 3, j - i - 3};
    }
    return router;
}

/* One cut delivery. */
typedef struct {
    int event;
    span address, diagnostic, relay_host, relay_ip, transport, enhanced;
    int code; /* -1: none */
    int has_delay;
    double delay;
} delivery;

/* A delivery's text (`=> a@b R=... H=... C="..."`, `body`) cut as _deliveries' literal path
 * cuts lines of the usual shape: 1 (a `delivery`), 0 (skipped: no attempt was made), or -1
 * (the polars path reads the line). */
static int cut_delivery(span body, delivery *d) {
    char f0 = body.s[0], f1 = body.s[1];
    int delivered = (f0 == '=' || f0 == '-') && f1 == '>';
    span rest = from(body, 3);
    /* _SIMPLE_DELIVERY: `[!-9;-~]+` then `: `, or a space and no `(` or `<`, or the end */
    int64_t run = 0;
    while (run < rest.n && rest.s[run] != ' ' && rest.s[run] != ':') run++;
    if (run == 0) return -1;
    if (run < rest.n) {
        char next = rest.s[run];
        if (next == ':') {
            if (run + 1 >= rest.n || rest.s[run + 1] != ' ') return -1;
        } else if (run + 1 < rest.n && (rest.s[run + 1] == '(' || rest.s[run + 1] == '<')) {
            return -1;
        }
    }
    d->address = upto(rest, run);
    int64_t space_at = find_space(rest);
    int64_t host_at = find(rest, " H=");
    d->relay_host = d->relay_ip = NONE;
    if (host_at >= 0) {
        /* _SIMPLE_HOST: `[!-'\)-Z\\-~][!-~]* \[[^\]]+\]` */
        span h = from(rest, host_at + 3);
        if (h.n < 1 || h.s[0] == ' ' || h.s[0] == '(' || h.s[0] == '[') return -1;
        int64_t i = 1;
        while (i < h.n && h.s[i] != ' ') i++;
        if (i + 2 >= h.n || h.s[i + 1] != '[' || h.s[i + 2] == ']') return -1;
        const char *close = memchr(h.s + i + 2, ']', (size_t)(h.n - i - 2));
        if (close == NULL) return -1;
        d->relay_host = upto(h, i);
        d->relay_ip = (span){h.s + i + 2, close - (h.s + i + 2)};
    }
    /* QT= (the first ` QT=`) */
    d->has_delay = 0;
    int64_t qt = find(rest, " QT=");
    if (qt >= 0) {
        int found = queue_time(from(rest, qt + 4), &d->delay);
        if (found < 0) return -1;
        d->has_delay = found;
    }
    d->code = -1;
    d->enhanced = NONE;
    if (delivered) {
        d->event = E_DELIVERED;
        d->diagnostic = NONE;
        int64_t c = find(rest, " C=\"");
        if (c >= 0) {
            span quoted = from(rest, c + 4);
            const char *close = memchr(quoted.s, '"', (size_t)quoted.n);
            if (close == NULL) return -1;
            d->diagnostic = upto(quoted, close - quoted.s);
            if (memchr(d->diagnostic.s, '\\', (size_t)d->diagnostic.n) != NULL) return -1;
            /* _CODES_AT_START, else a text with `: ` goes to _CODES on the polars path */
            if (!reply_at(d->diagnostic, 0, &d->code, &d->enhanced)) {
                d->code = -1;
                d->enhanced = NONE;
                if (find(d->diagnostic, ": ") >= 0) return -1;
            }
        }
    } else {
        int64_t colon = find(rest, ": ");
        d->diagnostic = colon >= 0 ? from(rest, colon + 2) : NONE;
        int failed = f0 == '*';
        d->event = failed ? E_BOUNCED : E_DEFERRED;
        if (has(d->diagnostic)) {
            span t = d->diagnostic;
            if (!failed && (starts_nocase(t, "retry time not reached") ||
                            starts_nocase(t, "retry time not yet reached")))
                return 0;
            if (failed) {
                if (starts_nocase(t, "retry timeout exceeded") ||
                    starts_nocase(t, "retry time not reached for any host after a long failure "
                                     "period")) {
                    d->event = E_EXPIRED;
                } else if (starts_nocase(t, "all hosts for ")) {
                    int64_t i = 14;
                    while (i < t.n && t.s[i] != ' ') i++;
                    if (i > 14 && starts_nocase(from(t, i), " have been failing for a long time"))
                        d->event = E_EXPIRED;
                }
            }
            first_reply(t, &d->code, &d->enhanced);
        }
    }
    /* Exim < 4.8x names the host in the text (`: host name [ip]:`): the polars path reads it */
    if (host_at < 0 && has(d->diagnostic) && find(d->diagnostic, ": host ") >= 0) return -1;
    /* R=router T=transport: from after the address up to the H= (else 128 characters) */
    d->transport = NONE;
    if (space_at >= 0) {
        int64_t length = host_at >= 0 ? host_at - space_at - 1 : 128;
        if (length < 0) return -1;
        span window = from(rest, space_at + 1);
        if (window.n > length) window.n = length;
        d->transport = drivers(window);
    }
    return 1;
}

/* An arrival's text (`<= sender ... id=<message-id>`, `body`) cut as _arrivals' literal path
 * cuts it: 1 with the sender (NONE where empty) and Message-ID (NONE without ` id=`), or 0
 * (`id=<>` and the like: the polars path looks further). */
static int cut_arrival(span body, span *sender, span *message) {
    span rest = from(body, 3);
    int64_t space = find_space(rest);
    *sender = space >= 0 ? upto(rest, space) : rest;
    if (sender->n == 2 && memcmp(sender->s, "<>", 2) == 0)
        *sender = upto(rest, 0); /* the null sender: "" */
    else if (sender->n == 0)
        *sender = NONE;
    int64_t id = find(body, " id=");
    *message = NONE;
    if (id < 0) return 1;
    span after = from(body, id + 4);
    if (after.n > 0 && after.s[0] == '<') after = from(after, 1);
    int64_t end = 0;
    while (end < after.n && after.s[end] != ' ' && after.s[end] != '>') end++;
    *message = upto(after, end);
    return end > 0;
}

/* Names of the buffers `cut` returns, in the order of the tuple. */
enum {
    B_KIND,
    B_LINE,
    B_REF,
    B_REF_VALID,
    B_BODY,
    B_ROW,
    B_EVENT,
    B_SENDER,
    B_SENDER_VALID,
    B_DIAGNOSTIC,
    B_DIAGNOSTIC_VALID,
    B_RELAY_HOST,
    B_RELAY_IP,
    B_RELAY_VALID,
    B_TRANSPORT,
    B_TRANSPORT_VALID,
    B_ENHANCED,
    B_ENHANCED_VALID,
    B_CODE,
    B_CODE_VALID,
    B_DELAY,
    B_DELAY_VALID,
    B_ZONED,
    B_TIME,
    B_OFFSET,
    B_OFFSET_VALID,
    B_RECIPIENT,
    B_DOMAIN,
    B_DOMAIN_VALID,
    B_RECIPIENT_VALID,
    B_SENDER_DOMAIN,
    B_SENDER_DOMAIN_VALID,
    B_CLIENT_HOST,
    B_CLIENT_HOST_VALID,
    B_CLIENT_IP,
    B_CLIENT_IP_VALID,
    B_MESSAGE_ID,
    B_MESSAGE_ID_VALID,
    B_ARRIVED,
    B_ARRIVED_VALID,
    B_ARRIVAL_LINE,
    B_ARRIVAL_SENDER,
    B_ARRIVAL_SENDER_VALID,
    B_ARRIVAL_MESSAGE_ID,
    B_ARRIVAL_MESSAGE_ID_VALID,
    B_ARRIVAL_DOMAIN,
    B_ARRIVAL_DOMAIN_VALID,
    B_STAYS,
    B_RUN,
    B_RUN_START,
    B_COUNT
};

/* The bytes per row of each buffer: a view (0), a bit (BITS: validity), or a number. */
#define BITS (-1)
static const int WIDTH[B_COUNT] = {
    [B_KIND] = 1, [B_EVENT] = 1, [B_ZONED] = 1, [B_STAYS] = 1, [B_CODE] = 2, [B_ROW] = 4,
    [B_ARRIVAL_LINE] = 4, [B_RUN] = 4, [B_RUN_START] = 4, [B_DELAY] = 8,
    [B_REF_VALID] = BITS, [B_SENDER_VALID] = BITS, [B_DIAGNOSTIC_VALID] = BITS,
    [B_RELAY_VALID] = BITS, [B_TRANSPORT_VALID] = BITS, [B_ENHANCED_VALID] = BITS,
    [B_CODE_VALID] = BITS, [B_DELAY_VALID] = BITS, [B_OFFSET_VALID] = BITS,
    [B_DOMAIN_VALID] = BITS, [B_RECIPIENT_VALID] = BITS, [B_SENDER_DOMAIN_VALID] = BITS,
    [B_CLIENT_HOST_VALID] = BITS, [B_CLIENT_IP_VALID] = BITS, [B_MESSAGE_ID_VALID] = BITS,
    [B_ARRIVED_VALID] = BITS, [B_ARRIVAL_SENDER_VALID] = BITS,
    [B_ARRIVAL_MESSAGE_ID_VALID] = BITS, [B_ARRIVAL_DOMAIN_VALID] = BITS,
};

/* A message id as a slot holds it, and its hash. */
typedef struct {
    uint64_t id[3];
    uint64_t hash;
} key;

/* The columns being filled: per line, and per line cut whole (`row`: its line). */
typedef struct {
    const char *base;
    /* per line with a message id: its key (`message_key`), made while the line is read, so
     * that the join's passes read keys in order rather than each line's id again */
    key *keys;
    int64_t lines, zoned_lines, deliveries, arrivals; /* (deliveries: every event row) */
    int64_t runs; /* of equal stamps */
    const char *last_stamp; /* the last line `stamp` took, or NULL */
    /* the lower-cased copies of addresses with a capital letter (the views' buffer 1) */
    char *lowered;
    int64_t lowered_size, lowered_capacity;
    int out_of_memory;
    union {
        struct { /* (in the order of the buffers) */
            uint8_t *kind, *line, *ref, *ref_valid, *body;
            uint8_t *row, *event, *sender, *sender_valid, *diagnostic, *diagnostic_valid;
            uint8_t *relay_host, *relay_ip, *relay_valid, *transport, *transport_valid;
            uint8_t *enhanced, *enhanced_valid, *code, *code_valid, *delay, *delay_valid;
            uint8_t *zoned, *time, *offset, *offset_valid; /* _LINE's heads */
            uint8_t *recipient, *domain, *domain_valid;     /* lower-cased, of deliveries */
            uint8_t *recipient_valid, *sender_domain, *sender_domain_valid; /* and rejects */
            uint8_t *client_host, *client_host_valid, *client_ip, *client_ip_valid;
            uint8_t *message_id, *message_id_valid, *arrived, *arrived_valid; /* the join */
            /* the arrivals' own columns: their line, sender, Message-ID, sender's domain */
            uint8_t *arrival_line, *arrival_sender, *arrival_sender_valid;
            uint8_t *arrival_message_id, *arrival_message_id_valid;
            uint8_t *arrival_domain, *arrival_domain_valid, *stays;
            uint8_t *run, *run_start; /* each line's run of equal stamps; each run's first line */
        };
        uint8_t *buffer[B_COUNT];
    };
} columns;

_Static_assert(offsetof(columns, run_start) == offsetof(columns, buffer[B_RUN_START]),
               "the named buffers are in the order of the tuple");

/* The key of a message id (`message_id`: 16, 22 or 23 bytes at `id`): its bytes, zero-padded,
 * its length in the last byte, and their hash. */
static void message_key(const char *id, int64_t length, key *k) {
    memcpy(&k->id[0], id, 8);
    memcpy(&k->id[1], id + 8, 8);
    k->id[2] = 0;
    if (length == 23)
        memcpy(&k->id[2], id + 16, 7);
    else if (length == 22)
        memcpy(&k->id[2], id + 16, 6);
    k->id[2] |= (uint64_t)length << 56;
    uint64_t hash = (k->id[0] * 0x9e3779b97f4a7c15ULL) ^ (k->id[1] * 0xc2b2ae3d27d4eb4fULL) ^
                    (k->id[2] * 0x165667b19e3779f9ULL);
    hash ^= hash >> 29;
    hash *= 0xbf58476d1ce4e5b9ULL;
    k->hash = hash ^ (hash >> 32);
}

/* Row `i` of a validity bitmap. */
static inline int valid_get(const uint8_t *bitmap, int64_t i) { return (bitmap[i >> 3] >> (i & 7)) & 1; }

/* Fixed-width values at row `k` (the buffers of a bytearray need no alignment here). */
static inline void put_row(uint8_t *b, int64_t k, uint32_t v) { memcpy(b + 4 * k, &v, 4); }
static inline void put_code(uint8_t *b, int64_t k, int16_t v) { memcpy(b + 2 * k, &v, 2); }
static inline void put_delay(uint8_t *b, int64_t k, double v) { memcpy(b + 8 * k, &v, 8); }

/* The view of `len` bytes at `s`, which are at `offset` in data buffer `buffer` (views.h's
 * `view_set` points into buffer 0, the batch; buffer 1 holds the lower-cased addresses). */
static void view_in(uint8_t *view, int32_t buffer, int64_t offset, const char *s, int32_t len) {
    memcpy(view, &len, 4);
    if (len <= 12) {
        memset(view + 4, 0, 12);
        if (len > 0) memcpy(view + 4, s, (size_t)len);
    } else {
        const int32_t at = (int32_t)offset;
        memcpy(view + 4, s, 4);
        memcpy(view + 8, &buffer, 4);
        memcpy(view + 12, &at, 4);
    }
}

/* The domain `smtp.domain_of` finds in the `n` bytes at `s` (printable ASCII, the only white
 * space a space): `@[^@\s>]+\s*>?\s*$`, less its `@`: what follows the last `@` up to a space
 * or `>`, where only spaces, one `>` and spaces follow to the end. 1 with its offset and
 * length, or 0 (null). */
static int domain_in(const char *s, int64_t n, int64_t *start, int64_t *len) {
    int64_t at = n - 1;
    while (at >= 0 && s[at] != '@') at--;
    if (at < 0) return 0;
    int64_t i = at + 1;
    while (i < n && s[i] != ' ' && s[i] != '>') i++;
    if (i == at + 1) return 0;
    int64_t j = i;
    while (j < n && s[j] == ' ') j++;
    if (j < n && s[j] == '>') j++;
    while (j < n && s[j] == ' ') j++;
    if (j != n) return 0;
    *start = at + 1;
    *len = i - at - 1;
    return 1;
}

/* `x` lower-cased (ASCII): where it has a capital letter, a copy in the batch's lowered
 * addresses (data buffer 1; `*buffer` 1 and `*offset` there), else `x` itself in the batch
 * (buffer 0). The text to point at, or NULL when memory ran out. */
static const char *lowered(columns *c, span x, int32_t *buffer, int64_t *offset) {
    if (!has_capital(x.s, x.n)) {
        *buffer = 0;
        *offset = x.s - c->base;
        return x.s;
    }
    if (c->lowered_size + x.n > c->lowered_capacity) {
        int64_t capacity = 2 * c->lowered_capacity + x.n + 4096;
        char *grown = realloc(c->lowered, (size_t)capacity);
        if (grown == NULL) {
            c->out_of_memory = 1;
            return NULL;
        }
        c->lowered = grown;
        c->lowered_capacity = capacity;
    }
    char *copy = c->lowered + c->lowered_size;
    for (int64_t j = 0; j < x.n; j++) {
        char ch = x.s[j];
        copy[j] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
    }
    *buffer = 1;
    *offset = c->lowered_size;
    c->lowered_size += x.n;
    return copy;
}

/* Row `k`'s lower-cased domain of `address` (`smtp.domain_of`) in `views` and `valid`. */
static void put_domain(columns *c, uint8_t *views, uint8_t *valid, int64_t k, span address) {
    int64_t start = 0, n = 0;
    int found = has(address) && domain_in(address.s, address.n, &start, &n);
    int32_t buffer = 0;
    int64_t offset = 0;
    const char *text = "";
    if (found) {
        text = lowered(c, (span){address.s + start, n}, &buffer, &offset);
        if (text == NULL) found = 0;
    }
    view_in(views + k * VIEW_SIZE, buffer, found ? offset : 0, found ? text : "",
            found ? (int32_t)n : 0);
    valid_set(valid, k, found);
}

/* Row `k`'s recipient, the address lower-cased (`str.to_lowercase`, ASCII here; null for
 * NONE), and its domain (`put_domain`). */
static void put_recipient(columns *c, int64_t k, span address) {
    int32_t buffer = 0;
    int64_t offset = 0;
    const char *text = has(address) ? lowered(c, address, &buffer, &offset) : NULL;
    int valid = text != NULL;
    view_in(c->recipient + k * VIEW_SIZE, buffer, valid ? offset : 0, valid ? text : "",
            valid ? (int32_t)address.n : 0);
    valid_set(c->recipient_valid, k, valid);
    put_domain(c, c->domain, c->domain_valid, k, address);
}

static void set(uint8_t *views, int64_t i, const char *base, span x) {
    view_set(views + i * VIEW_SIZE, base, x.s, x.n < 0 ? 0 : (int32_t)x.n);
}

static void set_nullable(uint8_t *views, uint8_t *valid, int64_t i, const char *base, span x) {
    set(views, i, base, x);
    valid_set(valid, i, has(x));
}

/* The head of a line _PLAIN does not take, as _LINE reads it: the stamp, a fraction of a
 * second (`.123`), a zone offset (` +0100`) and a pid (` [4242]`, ` [4242:1]`), each where
 * it is followed by a space, then a space and a message id if one follows with its space.
 * 1 with `ref` and `body` (and the line's time and offset for its timestamp), or 0: the line
 * has no Exim head (undated). */
static int zoned_head(columns *c, int64_t i, span line, span *ref, span *body) {
    int64_t at = 19;
    if (at < line.n && line.s[at] == '.') {
        int64_t run = 0;
        while (at + 1 + run < line.n && is_digit(line.s[at + 1 + run])) run++;
        if (run < 1 || run > 9 || at + 1 + run >= line.n || line.s[at + 1 + run] != ' ')
            return 0;
        at += 1 + run;
    }
    if (at >= line.n || line.s[at] != ' ') return 0;
    span time = {line.s + 11, at - 11}, offset = NONE;
    /* ` +0100` then a space */
    if (at + 6 < line.n && (line.s[at + 1] == '+' || line.s[at + 1] == '-') &&
        is_digit(line.s[at + 2]) && is_digit(line.s[at + 3]) && is_digit(line.s[at + 4]) &&
        is_digit(line.s[at + 5]) && line.s[at + 6] == ' ') {
        offset = (span){line.s + at + 1, 5};
        at += 6;
    }
    /* ` [4242]` or ` [4242:1]` then a space */
    if (at + 1 < line.n && line.s[at + 1] == '[') {
        int64_t j = at + 2, start = j;
        while (j < line.n && is_digit(line.s[j])) j++;
        int ok = j > start;
        if (ok && j < line.n && line.s[j] == ':') {
            int64_t more = ++j;
            while (j < line.n && is_digit(line.s[j])) j++;
            ok = j > more;
        }
        if (ok && j + 1 < line.n && line.s[j] == ']' && line.s[j + 1] == ' ') at = j + 1;
    }
    at++; /* the space before the message id or the text */
    span after = from(line, at);
    int id = message_id(after);
    *ref = id ? upto(after, id) : NONE;
    *body = id ? from(after, id + 1) : after;
    if (c->zoned_lines++ == 0) {
        /* (the first such line: every line gets an empty time and offset, read or not) */
        memset(c->time, 0, (size_t)(c->lines * VIEW_SIZE));
        memset(c->offset, 0, (size_t)(c->lines * VIEW_SIZE));
    }
    c->zoned[i] = 1;
    set(c->time, i, c->base, time);
    set_nullable(c->offset, c->offset_valid, i, c->base, offset);
    return 1;
}

/* A new row `k` of the cut columns for line `i`, what it is `event`: every column null
 * (each view written) until the caller sets its own. A delivery's caller sets all but the
 * columns of a sender and a client, whatever it found: those alone are written here. */
static int64_t new_row(columns *c, int64_t i, uint8_t event) {
    int64_t k = c->deliveries++;
    const char *base = c->base;
    put_row(c->row, k, (uint32_t)i);
    c->event[k] = event;
    set_nullable(c->sender, c->sender_valid, k, base, NONE);
    set_nullable(c->message_id, c->message_id_valid, k, base, NONE);
    set_nullable(c->sender_domain, c->sender_domain_valid, k, base, NONE);
    set_nullable(c->client_host, c->client_host_valid, k, base, NONE);
    set_nullable(c->client_ip, c->client_ip_valid, k, base, NONE);
    if (event != E_REJECTED) return k;
    set_nullable(c->arrived, c->arrived_valid, k, base, NONE);
    set_nullable(c->diagnostic, c->diagnostic_valid, k, base, NONE);
    set_nullable(c->relay_host, c->relay_valid, k, base, NONE);
    set(c->relay_ip, k, base, NONE);
    set_nullable(c->transport, c->transport_valid, k, base, NONE);
    set_nullable(c->enhanced, c->enhanced_valid, k, base, NONE);
    set_nullable(c->recipient, c->recipient_valid, k, base, NONE);
    set_nullable(c->domain, c->domain_valid, k, base, NONE);
    put_code(c->code, k, 0);
    valid_set(c->code_valid, k, 0);
    put_delay(c->delay, k, 0.0);
    valid_set(c->delay_valid, k, 0);
    return k;
}

/* Row `k`'s reply code (-1: none) and enhanced code. */
static void put_codes(columns *c, int64_t k, int code, span enhanced) {
    set_nullable(c->enhanced, c->enhanced_valid, k, c->base, enhanced);
    put_code(c->code, k, (int16_t)(code < 0 ? 0 : code));
    valid_set(c->code_valid, k, code >= 0);
}

/* `\[([^\]]+)\]` at `at` in `x`: 1 with the text between the brackets. */
static int bracketed(span x, int64_t at, span *inside) {
    if (at >= x.n || x.s[at] != '[') return 0;
    const char *close = memchr(x.s + at + 1, ']', (size_t)(x.n - at - 1));
    if (close == NULL || close == x.s + at + 1) return 0;
    *inside = (span){x.s + at + 1, close - (x.s + at + 1)};
    return 1;
}

/* `(?:\([^)]*\) ?)?\[([^\]]+)\]` at `at` in `x` (the HELO name in parentheses, then the
 * address), as a backtracking engine tries it: with the parentheses and the space, with the
 * parentheses alone, without them. */
static int helo_then_ip(span x, int64_t at, span *ip) {
    if (at < x.n && x.s[at] == '(') {
        const char *close = memchr(x.s + at + 1, ')', (size_t)(x.n - at - 1));
        if (close != NULL) {
            int64_t after = close + 1 - x.s;
            if (after < x.n && x.s[after] == ' ' && bracketed(x, after + 1, ip)) return 1;
            if (bracketed(x, after, ip)) return 1;
        }
    }
    return bracketed(x, at, ip);
}

/* _HOST searched in `x` (printable ASCII: `\s` is a space, `\S` any other byte):
 * `(?:^|\s)H=(?:([^\s\[(]\S*) )?(?:\([^)]*\) ?)?\[([^\]]+)\]`, its first match from the left.
 * 1 with the host (NONE where the group did not take part) and the address, or 0. */
static int host_field(span x, span *host, span *ip) {
    for (int64_t p = 0; p + 1 < x.n; p++) {
        if (x.s[p] != 'H' || x.s[p + 1] != '=' || (p > 0 && x.s[p - 1] != ' ')) continue;
        int64_t q = p + 2;
        if (q < x.n && x.s[q] != ' ' && x.s[q] != '[' && x.s[q] != '(') {
            /* the name: its whole run of non-spaces (a shorter one is not followed by a space) */
            const char *space = memchr(x.s + q, ' ', (size_t)(x.n - q));
            if (space != NULL && helo_then_ip(x, space + 1 - x.s, ip)) {
                *host = (span){x.s + q, space - (x.s + q)};
                return 1;
            }
        }
        if (helo_then_ip(x, q, ip)) {
            *host = NONE;
            return 1;
        }
    }
    return 0;
}

/* The client and envelope sender of a reject's text (`body`, `H=client ... F=<sender> ...`)
 * where the client (up to the first ` F=<`) holds no `=` and not `phrase`: 1 with the client
 * (after `H=`, as `_client` reads it from `H=` and it), the sender and the text after its
 * `>` (`*after`), or 0. (Where the client holds no `=` nor the phrase that starts the text,
 * the patterns _REJECT and _DATA_REJECT can split the line nowhere before that ` F=<`: no
 * shorter client leaves a `key=value` field, an `F=<` or the phrase behind it.) */
static int client_and_sender(span body, const char *phrase, span *client, span *sender,
                             span *after) {
    int64_t at = find(body, " F=<");
    if (at < 0 || memchr(body.s + 2, '=', (size_t)(at - 2)) != NULL) return 0;
    if (find(upto(body, at), phrase) >= 0) return 0;
    span rest = from(body, at + 4);
    const char *gt = memchr(rest.s, '>', (size_t)rest.n);
    if (gt == NULL) return 0;
    *client = (span){body.s + 2, at - 2};
    *sender = upto(rest, gt - rest.s);
    *after = from(rest, gt + 1 - rest.s);
    return 1;
}

/* A client's reject (`body` starts with `H=` and names `rejected RCPT <` or `rejected after
 * DATA`) cut as `_rejects`' literal path cuts the usual `rejected RCPT` line, or as
 * _DATA_REJECT reads `H=client F=<sender> [temporarily ]rejected after DATA[: text]`: a row
 * of the cut columns and K_REJECTED, or K_CLIENT (the polars path reads it; also every line
 * that names both). */
static uint8_t cut_client(columns *c, int64_t i, span body) {
    int rcpt = find(body, " rejected RCPT <") >= 0, data = find(body, " rejected after DATA") >= 0;
    span client, sender, after, address = NONE, diagnostic;
    if (rcpt == data) return K_CLIENT;
    if (rcpt) {
        /* H=(helo.example.net) [192.0.2.9]:4711 F=<s@example.net> rejected RCPT <a@b>: text */
        if (!client_and_sender(body, "rejected RCPT <", &client, &sender, &after)) return K_CLIENT;
        if (!starts(after, " rejected RCPT <") && !starts(after, " temporarily rejected RCPT <"))
            return K_CLIENT;
        const char *lt = memchr(after.s, '<', (size_t)after.n);
        span rcpt_text = from(after, lt + 1 - after.s);
        const char *gt = memchr(rcpt_text.s, '>', (size_t)rcpt_text.n);
        if (gt == NULL) return K_CLIENT;
        address = upto(rcpt_text, gt - rcpt_text.s);
        diagnostic = from(after, 1);
    } else {
        /* H=(c.example) [192.0.2.88] F=<w@example.net> rejected after DATA: spam */
        if (!client_and_sender(body, "rejected after DATA", &client, &sender, &after))
            return K_CLIENT;
        if (!starts(after, " ")) return K_CLIENT;
        diagnostic = from(after, 1);
        span text = diagnostic;
        if (starts(text, "temporarily ")) text = from(text, 12);
        if (!starts(text, "rejected after DATA")) return K_CLIENT;
        span tail = from(text, 19);
        if (!(tail.n == 0 || tail.s[0] == ' ' || starts(tail, ": "))) return K_CLIENT;
    }
    const char *base = c->base;
    int64_t k = new_row(c, i, E_REJECTED);
    set_nullable(c->sender, c->sender_valid, k, base, sender);
    put_domain(c, c->sender_domain, c->sender_domain_valid, k, sender);
    if (has(address)) put_recipient(c, k, address);
    set_nullable(c->diagnostic, c->diagnostic_valid, k, base, diagnostic);
    span host = NONE, ip = NONE;
    if (host_field((span){body.s, client.s + client.n - body.s}, &host, &ip)) {
        set_nullable(c->client_host, c->client_host_valid, k, base, host);
        set_nullable(c->client_ip, c->client_ip_valid, k, base, ip);
    }
    int code;
    span enhanced;
    first_reply(diagnostic, &code, &enhanced);
    put_codes(c, k, code, enhanced);
    return K_REJECTED;
}

/* The kind and fields of line `i`, of printable ASCII. */
static void cut_fields(columns *c, int64_t i, span line) {
    const char *base = c->base;
    /* (the stamp of the last dated line, which most lines repeat, is not read again) */
    if (!(line.n >= 19 && c->last_stamp != NULL && memcmp(line.s, c->last_stamp, 19) == 0)) {
        if (!stamp(line)) {
            c->kind[i] = K_UNDATED;
            return;
        }
        c->last_stamp = line.s;
    }
    /* _PLAIN: the stamp, a space, then a message id and a space or one more character that
     * no zone or pid starts with */
    span ref = NONE, body = NONE;
    int id = line.n >= 21 && line.s[19] == ' ' ? message_id(from(line, 20)) : 0;
    if (id) {
        ref = (span){line.s + 20, id};
        body = from(line, 21 + id);
    } else if (line.n >= 21 && line.s[19] == ' ' && line.s[20] != '+' && line.s[20] != '-' &&
               line.s[20] != '[') {
        body = from(line, 20);
    } else if (!zoned_head(c, i, line, &ref, &body)) {
        c->kind[i] = K_UNDATED;
        return;
    }
    set_nullable(c->ref, c->ref_valid, i, base, ref);
    if (has(ref)) message_key(ref.s, ref.n, &c->keys[i]);
    set(c->body, i, base, body);
    int client = starts(body, "H=") &&
                 (find(body, " rejected RCPT <") >= 0 || find(body, " rejected after DATA") >= 0);
    if (!has(ref)) {
        c->kind[i] = client ? cut_client(c, i, body) : K_SKIP;
        return;
    }
    if (starts(body, "<= ")) {
        span sender, message;
        if (!cut_arrival(body, &sender, &message)) {
            c->kind[i] = K_ARRIVAL;
            return;
        }
        c->kind[i] = K_ARRIVED;
        int64_t k = c->arrivals++;
        put_row(c->arrival_line, k, (uint32_t)i);
        set_nullable(c->arrival_sender, c->arrival_sender_valid, k, base, sender);
        set_nullable(c->arrival_message_id, c->arrival_message_id_valid, k, base, message);
        put_domain(c, c->arrival_domain, c->arrival_domain_valid, k, sender);
        return;
    }
    if (starts(body, "Com")) {
        c->kind[i] = body.n == 9 && memcmp(body.s, "Completed", 9) == 0 ? K_COMPLETED : K_SKIP;
        return;
    }
    if (!(starts(body, "=> ") || starts(body, "-> ") || starts(body, "** ") ||
          starts(body, "== "))) {
        c->kind[i] = client ? cut_client(c, i, body) : K_SKIP;
        return;
    }
    delivery d;
    int cut = cut_delivery(body, &d);
    if (cut < 0) {
        c->kind[i] = K_DELIVERY;
        return;
    }
    if (cut == 0) {
        c->kind[i] = K_SKIP;
        return;
    }
    c->kind[i] = K_CUT;
    int64_t k = new_row(c, i, (uint8_t)d.event);
    set_nullable(c->arrived, c->arrived_valid, k, base, ref); /* (until joined in C) */
    put_recipient(c, k, d.address);
    set_nullable(c->diagnostic, c->diagnostic_valid, k, base, d.diagnostic);
    set_nullable(c->relay_host, c->relay_valid, k, base, d.relay_host);
    set(c->relay_ip, k, base, d.relay_ip);
    set_nullable(c->transport, c->transport_valid, k, base, d.transport);
    put_codes(c, k, d.code, d.enhanced);
    put_delay(c->delay, k, d.has_delay ? d.delay : 0.0);
    valid_set(c->delay_valid, k, d.has_delay);
}

/* Line `i`: its kind, and its fields; `odd`: `line_end` found a byte in it that is not
 * printable ASCII. 0 where the batch is the polars path's (a NUL, a `\r`, bytes that are not
 * UTF-8), else 1. */
static int cut_line(columns *c, int64_t i, span line, int odd) {
    const char *base = c->base;
    set(c->line, i, base, line);
    set_nullable(c->ref, c->ref_valid, i, base, NONE);
    set(c->body, i, base, NONE);
    c->kind[i] = K_FALLBACK;
    if (odd) {
        return memchr(line.s, '\0', (size_t)line.n) == NULL &&
               memchr(line.s, '\r', (size_t)line.n) == NULL &&
               utf8_valid((const unsigned char *)line.s, line.n);
    }
    cut_fields(c, i, line);
    return 1;
}

/* Line `i`'s run of equal stamps (`_run_timestamps`: lines whose first 19 characters are
 * equal, parsed once): the run of the line `before` it where both are printable ASCII and
 * their first 19 bytes (or all, if shorter) are the same, else a new run. (Cutting runs where
 * the polars path would not is no harm: each run's lines have the same first characters.) */
static void stamp_run(columns *c, int64_t i, span line, span before) {
    int64_t n = line.n < 19 ? line.n : 19;
    int same = i > 0 && c->kind[i] != K_FALLBACK && c->kind[i - 1] != K_FALLBACK &&
               (before.n < 19 ? before.n : 19) == n && memcmp(line.s, before.s, (size_t)n) == 0;
    if (!same) put_row(c->run_start, c->runs++, (uint32_t)i);
    put_row(c->run, i, (uint32_t)(c->runs - 1));
}

/* The batch cut: 1, 0 where the polars path must read it whole, or -1 where it does not hold
 * `lines` lines (a count the caller gave that is not the batch's: the tables have a row for
 * each of `lines`, and no more is written). */
static int cut_batch(columns *c, const char *data, int64_t size, int64_t lines) {
    const char *p = data, *end = data + size;
    span before = NONE;
    for (int64_t i = 0; i < lines; i++) {
        if (p >= end) return -1; /* (each line starts before the end) */
        /* (the newline, and whether the line is all printable ASCII, in one pass: lines.h) */
        int odd;
        const char *stop = line_end(p, end, &odd);
        span line = {p, stop - p};
        if (!cut_line(c, i, line, odd)) return 0;
        stamp_run(c, i, line, before);
        before = line;
        p = stop + 1;
    }
    return p < end ? -1 : 1;
}

/* The message ids of the batch's arrivals, in an open-addressing table of 32-byte slots: per
 * id its bytes (a message id has 16, 22 or 23) and length, the number of its last arrival
 * among the arrivals, and whether a `Completed` line names it. */
typedef struct {
    uint64_t id[3];        /* the id's bytes, zero-padded, its length in the last byte */
    uint32_t last_arrival; /* | COMPLETED */
    uint32_t used;         /* 0: a free slot */
} message;

#define COMPLETED 0x80000000u /* a `Completed` line of the batch names the id */
#define AHEAD 8               /* how many lookups ahead a slot is fetched into the cache */

typedef struct {
    message *slots;
    uint64_t mask;
} messages;

/* The key of line `i`'s message id (`message_key`, made by `cut_line`). */
static inline void line_key(const columns *c, int64_t i, key *k) { *k = c->keys[i]; }

/* The slot of `k`: its own, or (`claim`) the free one it then takes, or NULL (linear
 * probing). */
static message *message_slot(messages *t, const key *k, int claim) {
    for (uint64_t at = k->hash & t->mask;; at = (at + 1) & t->mask) {
        message *m = &t->slots[at];
        if (!m->used) {
            if (!claim) return NULL;
            memcpy(m->id, k->id, sizeof m->id);
            m->used = 1;
            m->last_arrival = 0;
            return m;
        }
        if (m->id[0] == k->id[0] && m->id[1] == k->id[1] && m->id[2] == k->id[2]) return m;
    }
}

/* The line whose message id pass `pass` of `join_arrivals` looks up at its step `j`, or -1
 * (nothing to look up there). */
static int64_t pass_line(const columns *c, int pass, int64_t j) {
    uint32_t line;
    if (pass == 1) return c->kind[j] == K_COMPLETED ? j : -1;
    if (pass == 2) {
        if (c->event[j] > E_EXPIRED) return -1; /* (a reject: no sender to join) */
        memcpy(&line, c->row + 4 * j, 4);
        return line;
    }
    memcpy(&line, c->arrival_line + 4 * j, 4);
    return line;
}

/* What `Exim._outcomes` and `Exim._remember` need of the batch's own arrivals, where the
 * arrival columns hold every arrival of the batch (no line of it left to the polars path as
 * an arrival, or as a line of any kind the polars path might read as one): each delivery of
 * a message that arrived in the batch gets the sender, Message-ID and sender's domain of the
 * message's last arrival in it (which `_outcomes`' keep-last join takes over any carried
 * one) and no `arrived` (nothing left to join); and per arrival whether it stays open after
 * the batch (`stays`: the message's last arrival, and no `Completed` line for it). 1 where it
 * did that, 0 where the polars path must join the batch (a line left to it; no memory).
 *
 * The table is larger than the caches: each pass fetches the slot of the id AHEAD steps on
 * while it looks one up, so that the fetches overlap. */
static int join_arrivals(columns *c) {
    if (memchr(c->kind, K_FALLBACK, (size_t)c->lines) != NULL ||
        memchr(c->kind, K_ARRIVAL, (size_t)c->lines) != NULL)
        return 0;
    uint64_t capacity = 16;
    while (capacity < 2 * (uint64_t)c->arrivals) capacity <<= 1;
    messages t = {.slots = calloc(capacity, sizeof(message)), .mask = capacity - 1};
    if (t.slots == NULL) return 0;
    key ring[AHEAD];
    int64_t ring_line[AHEAD];
    /* the arrivals; the Completed lines; the deliveries; the arrivals again */
    for (int pass = 0; pass < 4; pass++) {
        int64_t n = pass == 1 ? c->lines : pass == 2 ? c->deliveries : c->arrivals;
        for (int64_t j = 0; j < n + AHEAD - 1; j++) {
            if (j < n) {
                int64_t line = pass_line(c, pass, j);
                ring_line[j % AHEAD] = line;
                if (line >= 0) {
                    line_key(c, line, &ring[j % AHEAD]);
                    __builtin_prefetch(&t.slots[ring[j % AHEAD].hash & t.mask]);
                }
            }
            int64_t at = j - AHEAD + 1; /* (the step whose slot was asked for AHEAD - 1 ago) */
            if (at < 0 || ring_line[at % AHEAD] < 0) continue;
            const key *k = &ring[at % AHEAD];
            message *m = message_slot(&t, k, pass == 0);
            if (pass == 0) {
                m->last_arrival = (uint32_t)at;
            } else if (pass == 1) {
                if (m != NULL) m->last_arrival |= COMPLETED;
            } else if (pass == 2) {
                if (m == NULL) continue;
                /* (the views and validity of the arrival's columns, copied) */
                int64_t a = m->last_arrival & ~COMPLETED;
                memcpy(c->sender + at * VIEW_SIZE, c->arrival_sender + a * VIEW_SIZE, VIEW_SIZE);
                valid_set(c->sender_valid, at, valid_get(c->arrival_sender_valid, a));
                memcpy(c->message_id + at * VIEW_SIZE, c->arrival_message_id + a * VIEW_SIZE,
                       VIEW_SIZE);
                valid_set(c->message_id_valid, at, valid_get(c->arrival_message_id_valid, a));
                memcpy(c->sender_domain + at * VIEW_SIZE, c->arrival_domain + a * VIEW_SIZE,
                       VIEW_SIZE);
                valid_set(c->sender_domain_valid, at, valid_get(c->arrival_domain_valid, a));
                set_nullable(c->arrived, c->arrived_valid, at, c->base, NONE);
            } else {
                c->stays[at] = m->last_arrival == (uint32_t)at; /* (and not COMPLETED) */
            }
        }
    }
    free(t.slots);
    return 1;
}

/* The buffers and keys of earlier batches, for the next (reuse.h). */
static kept_column kept_buffers[B_COUNT];
static kept_scratch kept_keys;

static PyObject *cut(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *arg;
    long long newlines = -1;
    if (!PyArg_ParseTuple(args, "O|L:cut", &arg, &newlines)) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    const char *data = view.buf;
    int64_t size = view.len;
    if (size >= INT32_MAX) {
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    /* Lines: the newlines (as the reader counted them, else counted here), plus a last line
     * without one. */
    int64_t lines = newlines >= 0 ? (int64_t)newlines : count_newlines(data, size);
    if (size > 0 && data[size - 1] != '\n') lines++;
    if (lines > size) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "cut: `newlines` is not the batch's count");
        return NULL;
    }
    int64_t bitmap = (lines + 7) / 8;
    Py_ssize_t sizes[B_COUNT];
    for (int b = 0; b < B_COUNT; b++)
        sizes[b] = WIDTH[b] == BITS ? bitmap : lines * (WIDTH[b] ? WIDTH[b] : VIEW_SIZE);
    PyObject *buffers[B_COUNT] = {NULL};
    for (int b = 0; b < B_COUNT; b++) {
        /* (kept from an earlier batch where nothing reads it any more: reuse.h) */
        buffers[b] = kept_column_take(&kept_buffers[b], sizes[b]);
        if (buffers[b] == NULL) goto fail;
        /* (bitmaps start cleared; every other row is written whole before it is read) */
        if (sizes[b] && (WIDTH[b] == BITS || b == B_ZONED))
            memset(PyByteArray_AS_STRING(buffers[b]), 0, (size_t)sizes[b]);
    }
    columns c = {.base = data, .lines = lines, .lowered = NULL};
    size_t keys_size;
    c.keys = kept_scratch_take(&kept_keys, (size_t)(lines + 1) * sizeof(key), &keys_size);
    if (c.keys == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    for (int b = 0; b < B_COUNT; b++) c.buffer[b] = (uint8_t *)PyByteArray_AS_STRING(buffers[b]);
    int done, joined = 0;
    Py_BEGIN_ALLOW_THREADS;
    done = cut_batch(&c, data, size, lines);
    if (done > 0) joined = join_arrivals(&c);
    Py_END_ALLOW_THREADS;
    kept_scratch_give(&kept_keys, c.keys, keys_size);
    PyBuffer_Release(&view);
    PyObject *lowered = NULL;
    if (done > 0 && !c.out_of_memory)
        lowered = PyBytes_FromStringAndSize(c.lowered != NULL ? c.lowered : "",
                                            (Py_ssize_t)c.lowered_size);
    free(c.lowered);
    if (done <= 0 || lowered == NULL) {
        for (int b = 0; b < B_COUNT; b++) Py_DECREF(buffers[b]);
        if (done < 0) {
            PyErr_SetString(PyExc_ValueError, "cut: `newlines` is not the batch's count");
            return NULL;
        }
        if (!done) Py_RETURN_NONE;
        return c.out_of_memory ? PyErr_NoMemory() : NULL;
    }
    PyObject *result = PyTuple_New(B_COUNT + 7);
    if (result == NULL) {
        Py_DECREF(lowered);
        goto fail_released;
    }
    PyTuple_SET_ITEM(result, 0, PyLong_FromLongLong(lines));
    PyTuple_SET_ITEM(result, 1, PyLong_FromLongLong(c.deliveries));
    PyTuple_SET_ITEM(result, 2, PyLong_FromLongLong(c.zoned_lines));
    for (int b = 0; b < B_COUNT; b++) PyTuple_SET_ITEM(result, b + 3, buffers[b]);
    PyTuple_SET_ITEM(result, B_COUNT + 3, lowered);
    PyTuple_SET_ITEM(result, B_COUNT + 4, PyBool_FromLong(joined));
    PyTuple_SET_ITEM(result, B_COUNT + 5, PyLong_FromLongLong(c.arrivals));
    PyTuple_SET_ITEM(result, B_COUNT + 6, PyLong_FromLongLong(c.runs));
    for (int b = 0; b < B_COUNT + 7; b++)
        if (PyTuple_GET_ITEM(result, b) == NULL) {
            Py_DECREF(result);
            return NULL;
        }
    return result;
fail:
    PyBuffer_Release(&view);
fail_released:
    for (int b = 0; b < B_COUNT; b++) Py_XDECREF(buffers[b]);
    return NULL;
}

static PyObject *release(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    for (int b = 0; b < B_COUNT; b++) kept_column_release(&kept_buffers[b]);
    kept_scratch_release(&kept_keys);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    NEWLINES_METHOD,
    {"release", release, METH_NOARGS,
     "release() -> None\n\nLet go of the tables and working arrays kept for the next batch "
     "(native/reuse.h): at the end of a run."},
    {"cut", cut, METH_VARARGS,
     "cut(data, newlines=-1) -> (lines, event rows, zoned lines, *buffers, lowered, joined, arrivals, runs) "
     "or "
     "None.\n\n"
     "One batch's lines cut in one pass (docs/NATIVE.md, Exim): per line its kind and views of "
     "the line, message id and text (and, for a head with a fraction, zone or pid, its time and "
     "offset); per event cut (deliveries, rejects) its line and fields; per arrival cut its "
     "line, sender, Message-ID and sender's domain. The buffers are in the order of the "
     "B_... names (sources/exim.py, _BUFFERS); `lowered` holds lower-cased copies (data "
     "buffer 1 of the views that may point there); `joined`: the senders of the messages that "
     "arrived in the batch are joined on (every arrival cut). None: the batch has a NUL, a "
     "carriage return or bytes that are not UTF-8 (the polars path reads it). `newlines`: the "
     "batch's newline bytes where the reader counted them (ValueError if it is not that)."},
    {NULL, NULL, 0, NULL},
};

/* ABI_VERSION 3: `newlines` (2: a table per kind of row, events and arrivals, the batch join,
 * stamp runs; 1: one table of kept lines). */
TOKENIZER_MODULE(_exim_c, "The C tokenizer of the Exim source (optional; the polars path is the reference).", methods, 3)
