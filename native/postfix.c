/* bounce_analyzer._postfix_c: the C tokenizer of the Postfix source (issue 18; docs/NATIVE.md).
 *
 * A skeleton: the module imports and says its interface version. The tokenizer itself comes
 * with issue 18's work; until then the polars path runs for Postfix.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "bounce_analyzer._postfix_c",
    .m_doc = "The C tokenizer of the Postfix source (optional; the polars path is the reference).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__postfix_c(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    /* 0: no tokenizer yet (native.module() then answers None and the polars path runs). */
    if (PyModule_AddIntConstant(m, "ABI_VERSION", 0) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
