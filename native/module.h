/* The extension module of a C tokenizer, shared by native/postfix.c and native/exim.c.
 *
 * TOKENIZER_MODULE(_postfix_c, doc, methods, 1) defines the module bounce_analyzer._postfix_c
 * with its methods and its interface version (ABI_VERSION), which native.py compares with the
 * one the Python side was written for: a module of another version is not used.
 */
#ifndef BOUNCE_ANALYZER_MODULE_H
#define BOUNCE_ANALYZER_MODULE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

static inline PyObject *module_with_abi(PyModuleDef *def, long abi) {
    PyObject *m = PyModule_Create(def);
    if (m == NULL) return NULL;
    if (PyModule_AddIntConstant(m, "ABI_VERSION", abi) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

#define TOKENIZER_MODULE(NAME, DOC, METHODS, ABI)                                  \
    static struct PyModuleDef module_definition = {                                \
        PyModuleDef_HEAD_INIT,                                                     \
        .m_name = "bounce_analyzer." #NAME,                                        \
        .m_doc = DOC,                                                              \
        .m_size = -1,                                                              \
        .m_methods = METHODS,                                                      \
    };                                                                             \
    PyMODINIT_FUNC PyInit_##NAME(void) { return module_with_abi(&module_definition, ABI); }

#endif
