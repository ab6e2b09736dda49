/* Line ends, found and counted sixteen bytes at a time; shared by native/postfix.c and
 * native/exim.c (docs/NATIVE.md, "The tokenizers per byte").
 *
 * Both use GCC's vector extension (clang has it too): on x86-64 a vector of 16 bytes is an
 * SSE2 register, which every x86-64 CPU has; on another machine the compiler writes the
 * same operations with that machine's vectors or with plain code. No intrinsic, no flag the
 * build does not pass. Loads are `memcpy`s of 16 bytes that lie inside the buffer: nothing
 * is read past its end (a batch may be a `memoryview` of anything).
 *
 * - `count_newlines`: the newline bytes of a buffer (the number of lines a batch holds, less
 *   a last one without its newline). The reader counts each batch with it (reading.py,
 *   `native.count_newlines`), where `bytes.count` looked at one byte at a time, and so does
 *   each tokenizer before it sizes its tables.
 * - `line_end`: where a line ends, and whether it holds a byte that is not printable ASCII
 *   (below a space, or from DEL up: tabs, CRs, NULs and all of UTF-8 are among them), found in
 *   one pass: the tokenizers looked for the newline (`memchr`) and then read every byte of
 *   the line again to check it. A newline is itself such a byte, so the pass stops at the
 *   first byte of either kind; only a line that holds another (rare) is searched further.
 *
 * `newlines(data)` (the Python method both modules define with NEWLINES_METHOD) is the count.
 */
#ifndef BOUNCE_ANALYZER_LINES_H
#define BOUNCE_ANALYZER_LINES_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef unsigned char lines_u8x16 __attribute__((vector_size(16)));
typedef signed char lines_i8x16 __attribute__((vector_size(16)));

/* The sum of the 16 bytes of `v` (each at most 255). */
static inline int64_t lines_byte_sum(lines_u8x16 v) {
    uint64_t half[2];
    memcpy(half, &v, 16);
    const uint64_t bytes = 0x00FF00FF00FF00FFULL;
    uint64_t x = (half[0] & bytes) + ((half[0] >> 8) & bytes) + (half[1] & bytes) +
                 ((half[1] >> 8) & bytes); /* four sums of 16 bits, each at most 1020 */
    return (int64_t)((x * 0x0001000100010001ULL) >> 48);
}

/* The number of newline bytes in the `n` bytes at `s`. */
static int64_t count_newlines(const char *s, int64_t n) {
    const lines_u8x16 newline = (lines_u8x16){0} + '\n';
    int64_t total = 0, i = 0;
    while (n - i >= 16) {
        /* (each lane counts up to 255 before the lanes are summed) */
        int64_t stop = n - i >= 16 * 255 ? i + 16 * 255 : i + ((n - i) & ~(int64_t)15);
        lines_u8x16 lanes = {0};
        for (; i < stop; i += 16) {
            lines_u8x16 v;
            memcpy(&v, s + i, 16);
            lanes -= (lines_u8x16)(v == newline); /* (a lane that matches is all ones: -1) */
        }
        total += lines_byte_sum(lanes);
    }
    for (; i < n; i++) total += s[i] == '\n';
    return total;
}

/* The end of the line that starts at `s` (its newline, or `end` for a last line without
 * one), and in `*odd` whether the line holds a byte below a space or from DEL (0x7F) up. */
static inline const char *line_end(const char *s, const char *end, int *odd) {
    const lines_i8x16 space = (lines_i8x16){0} + ' ', del = (lines_i8x16){0} + 0x7F;
    const char *p = s;
    /* (signed bytes: 0x80 and above are negative, below a space; 32 bytes a step while none
     * is found, then the 16 where it is) */
    for (; end - p >= 32; p += 32) {
        lines_i8x16 v, w;
        memcpy(&v, p, 16);
        memcpy(&w, p + 16, 16);
        lines_i8x16 hit = (v < space) | (v == del) | (w < space) | (w == del);
        uint64_t half[2];
        memcpy(half, &hit, 16);
        if (half[0] | half[1]) break;
    }
    for (; end - p >= 16; p += 16) {
        lines_i8x16 v;
        memcpy(&v, p, 16);
        lines_i8x16 hit = (v < space) | (v == del);
        uint64_t half[2];
        memcpy(half, &hit, 16);
        if ((half[0] | half[1]) == 0) continue;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        /* (the first lane is the lowest byte of `half[0]`; on a big-endian machine the byte
         * loop below finds the byte instead) */
        int at = half[0] ? __builtin_ctzll(half[0]) / 8 : 8 + __builtin_ctzll(half[1]) / 8;
        p += at;
        if (*p == '\n') {
            *odd = 0;
            return p;
        }
#endif
        break;
    }
    for (; p < end; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '\n') {
            *odd = 0;
            return p;
        }
        if (c < 0x20 || c >= 0x7F) break;
    }
    if (p == end) {
        *odd = 0;
        return end;
    }
    *odd = 1; /* (rare: a tab, a CR, a NUL, a byte beyond ASCII; the newline further on) */
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    return nl != NULL ? nl : end;
}

/* newlines(data) -> int: the newline bytes of a buffer (bytes, bytearray, memoryview). */
static PyObject *newlines_method(PyObject *self, PyObject *arg) {
    (void)self;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    int64_t count;
    Py_BEGIN_ALLOW_THREADS;
    count = count_newlines((const char *)view.buf, (int64_t)view.len);
    Py_END_ALLOW_THREADS;
    PyBuffer_Release(&view);
    return PyLong_FromLongLong(count);
}

#define NEWLINES_METHOD                                                                   \
    {"newlines", newlines_method, METH_O,                                                 \
     "newlines(data) -> int\n\nThe newline bytes of a buffer, counted 16 bytes at a time " \
     "(reading.py counts each batch's lines with it)."}

#endif
