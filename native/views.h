/* Arrow string_view columns over a batch's bytes, shared by the C tokenizers (docs/NATIVE.md).
 *
 * A view is 16 bytes (Arrow's BinaryView layout, which polars' String is built on): the
 * length (int32), then either the bytes themselves when they fit in 12, or their first 4
 * bytes, the index of the data buffer (0: the batch, `view_set`; a tokenizer's own second
 * buffer, `view_set_in`) and their offset in it. Python makes the column with
 * `sources._views.string_column` (no copy of the batch's bytes; the column keeps the batch
 * alive). Offsets are int32: a batch must be under 2 GiB, which
 * reading.py's batches are by far.
 *
 * polars does not check UTF-8 when it imports views: a tokenizer only ever points a view at
 * bytes it has checked (ASCII, or valid UTF-8), and sends any other line down the polars path.
 */
#ifndef BOUNCE_ANALYZER_VIEWS_H
#define BOUNCE_ANALYZER_VIEWS_H

#include <stdint.h>
#include <string.h>

#define VIEW_SIZE 16

/* The view of `len` bytes at `s`, which lies inside the batch that starts at `base`. */
static inline void view_set(uint8_t *view, const char *base, const char *s, int32_t len) {
    memcpy(view, &len, 4);
    if (len <= 12) {
        memset(view + 4, 0, 12);
        if (len > 0) memcpy(view + 4, s, (size_t)len);
    } else {
        const int32_t buffer = 0;
        const int32_t offset = (int32_t)(s - base);
        memcpy(view + 4, s, 4);
        memcpy(view + 8, &buffer, 4);
        memcpy(view + 12, &offset, 4);
    }
}

/* The view of the `len` bytes at `s`, which lie at `offset` in data buffer `buffer` (0: the
 * batch; 1: a second buffer of bytes a tokenizer made, lower-cased copies say). `s` gives the
 * bytes a view holds itself (all of them up to 12, else the first 4). */
static inline void view_set_in(uint8_t *view, const char *s, int32_t len, int32_t buffer,
                               int32_t offset) {
    memcpy(view, &len, 4);
    if (len <= 12) {
        memset(view + 4, 0, 12);
        if (len > 0) memcpy(view + 4, s, (size_t)len);
    } else {
        memcpy(view + 4, s, 4);
        memcpy(view + 8, &buffer, 4);
        memcpy(view + 12, &offset, 4);
    }
}

/* Row `i` of a validity bitmap (one bit a row, least significant first) set or cleared. */
static inline void valid_set(uint8_t *bitmap, int64_t i, int valid) {
    if (valid)
        bitmap[i >> 3] |= (uint8_t)(1u << (i & 7));
    else
        bitmap[i >> 3] &= (uint8_t)~(1u << (i & 7));
}

/* 1 when one of the `n` ASCII bytes at `s` (none above 0x7F: the lines the tokenizers cut)
 * is a capital letter, A to Z; 8 bytes at a time. */
static inline int has_capital(const char *s, int64_t n) {
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        /* (a byte of 0x41 or more gets its high bit from + 0x3F, one of 0x5B or more from
         * + 0x25; no byte carries into the next, all being below 0x80) */
        if (((w + ones * 0x3F) & ~(w + ones * 0x25)) & highs) return 1;
    }
    for (; i < n; i++)
        if (s[i] >= 'A' && s[i] <= 'Z') return 1;
    return 0;
}

/* 1 when the `len` bytes at `s` are valid UTF-8 (no overlong forms, no surrogates, nothing
 * above U+10FFFF), 0 otherwise. ASCII is checked 8 bytes at a time. */
static inline int utf8_valid(const unsigned char *s, int64_t len) {
    int64_t i = 0;
    while (i < len) {
        if (i + 8 <= len) {
            uint64_t word;
            memcpy(&word, s + i, 8);
            if ((word & 0x8080808080808080ULL) == 0) {
                i += 8;
                continue;
            }
        }
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int need;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (i + need >= len) return 0; /* truncated sequence */
        for (int k = 1; k <= need; k++) {
            unsigned char d = s[i + k];
            if ((d & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (d & 0x3F);
        }
        if ((need == 2 && cp < 0x800) || (need == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += need + 1;
    }
    return 1;
}

#endif
