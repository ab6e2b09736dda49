/* Memory a C tokenizer keeps from one batch to the next (docs/NATIVE.md, "Memory kept across
 * batches"), shared by native/postfix.c and native/exim.c.
 *
 * A batch's tables (a view of 16 bytes, or a number, per line: 1-4 MiB each) and its working
 * arrays were allocated afresh for every batch; at glibc's mmap threshold of 1 MiB (the one
 * `parse` and `ingest` fix, startup.py) each is a mapping of its own, so every page the scan
 * writes was a page fault, and the mapping was undone when the batch's columns went. Kept,
 * the next batch writes into pages that are mapped already.
 *
 * - `kept_column`: the bytearrays handed to Python as a table's column. One is reused only when
 *   the keeper holds the one reference left (the frames, Arrow arrays and exported buffers
 *   made over it are gone: each holds a reference), so a column still read is never written.
 *   Up to KEPT_GENERATIONS per column, a new one made only while all are held (Exim's event
 *   columns live until their events are written: seven batches in flight), so the keeper
 *   holds no more than the batches in flight did; beyond that a column is made new and the
 *   keeper lets go of its oldest.
 * - `kept_scratch`: a working array used only within one call, handed back at its end.
 *
 * Both are taken and given back with the interpreter lock held (the scan itself runs without
 * it): two threads tokenizing at once never share one. `release` (each module's, called by
 * the pipeline at the end of a run) lets go of what is kept: a long-lived process (a worker
 * of a cluster) does not hold a run's tables until its next run.
 */
#ifndef BOUNCE_ANALYZER_REUSE_H
#define BOUNCE_ANALYZER_REUSE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define KEPT_GENERATIONS 8

typedef struct {
    PyObject *kept[KEPT_GENERATIONS]; /* bytearrays, or NULL */
    int next;                         /* the place a new one takes when none is empty */
} kept_column;

/* A bytearray of `size` bytes (its contents undefined): a kept one nothing else refers to,
 * else a new one, which the keeper keeps too. NULL with an exception set when out of memory. */
static PyObject *kept_column_take(kept_column *k, Py_ssize_t size) {
    for (int g = 0; g < KEPT_GENERATIONS; g++) {
        PyObject *array = k->kept[g];
        if (array == NULL || Py_REFCNT(array) != 1) continue;
        if (PyByteArray_Resize(array, size) < 0) { /* (out of memory: let it go) */
            PyErr_Clear();
            Py_CLEAR(k->kept[g]);
            continue;
        }
        Py_INCREF(array);
        return array;
    }
    PyObject *made = PyByteArray_FromStringAndSize(NULL, size);
    if (made == NULL) return NULL;
    int at = -1;
    for (int g = 0; g < KEPT_GENERATIONS && at < 0; g++)
        if (k->kept[g] == NULL) at = g;
    if (at < 0) {
        at = k->next;
        k->next = (k->next + 1) % KEPT_GENERATIONS;
    }
    Py_INCREF(made);
    Py_XSETREF(k->kept[at], made);
    return made;
}

typedef struct {
    void *block; /* NULL while a call uses it */
    size_t size;
} kept_scratch;

/* At least `size` bytes (contents undefined) for one call, which gives them back with
 * `kept_scratch_give`; NULL when out of memory. */
static void *kept_scratch_take(kept_scratch *k, size_t size, size_t *got) {
    if (k->block != NULL && k->size >= size) {
        void *block = k->block;
        *got = k->size;
        k->block = NULL;
        return block;
    }
    *got = size;
    return PyMem_RawMalloc(size ? size : 1);
}

/* `block` (of `size` bytes, from `kept_scratch_take`) kept for the next call, or freed when
 * a larger one is kept already. */
static void kept_scratch_give(kept_scratch *k, void *block, size_t size) {
    if (block == NULL) return;
    if (k->block == NULL || k->size < size) {
        PyMem_RawFree(k->block);
        k->block = block;
        k->size = size;
    } else {
        PyMem_RawFree(block);
    }
}

/* The keeper lets go of its columns (those still in use live on with their users). */
static void kept_column_release(kept_column *k) {
    for (int g = 0; g < KEPT_GENERATIONS; g++) Py_CLEAR(k->kept[g]);
    k->next = 0;
}

/* The block kept for the next call freed (one a call is using is given back later). */
static void kept_scratch_release(kept_scratch *k) {
    PyMem_RawFree(k->block);
    k->block = NULL;
    k->size = 0;
}

#endif
