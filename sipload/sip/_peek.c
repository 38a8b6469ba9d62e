/*
 * sipload.sip._peek: the Call-ID of raw message bytes in one pass of C.
 *
 * sipload.sip.peek is the only importer: it checks API and falls back to its
 * regular expression (the definition this follows) when the module is missing or
 * of another version.  call_id(data) gives what
 *
 *     m = re.search(rb"\n(?:call-id|i)[ \t]*:[ \t]*([^\r\n]*)", data, re.IGNORECASE)
 *
 * gives: the first match's value, stripped of ASCII whitespace and decoded as UTF-8
 * with surrogate escapes; None when there is no match, when the value is empty, or
 * when a blank line ("\r\n\r\n") ends at or before the match's "\n" (the match is in
 * the body).  The wire trace asks it for every message a worker reads or writes;
 * the expression's search tried every position of the header section case-folded.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define API_VERSION 1

static int lower_ascii(char c) {
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

static int is_space(char c) {  /* bytes.strip()'s ASCII whitespace */
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\x0b' || c == '\x0c';
}

/* Whether "\r\n\r\n" lies wholly within s[0:end]. */
static int has_blank_line(const char *s, Py_ssize_t end) {
    for (Py_ssize_t i = 3; i < end; i++) {
        if (s[i] == '\n' && s[i - 1] == '\r' && s[i - 2] == '\n' && s[i - 3] == '\r') {
            return 1;
        }
    }
    return 0;
}

static PyObject *call_id(PyObject *self, PyObject *arg) {
    (void)self;
    const char *s;
    Py_ssize_t n;
    if (PyBytes_Check(arg)) {
        s = PyBytes_AS_STRING(arg);
        n = PyBytes_GET_SIZE(arg);
    } else if (PyByteArray_Check(arg)) {
        s = PyByteArray_AS_STRING(arg);
        n = PyByteArray_GET_SIZE(arg);
    } else {
        PyErr_SetString(PyExc_TypeError, "call_id() takes bytes");
        return NULL;
    }
    const char *end = s + n;
    static const char name[] = "call-id";
    const char *p = s;
    while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        const char *q = p + 1;
        const char *after = NULL;
        if (end - q >= 7) {
            int i = 0;
            while (i < 7 && lower_ascii(q[i]) == name[i]) {
                i++;
            }
            if (i == 7) {
                after = q + 7;
            }
        }
        if (after == NULL && q < end && lower_ascii(*q) == 'i') {
            after = q + 1;
        }
        if (after != NULL) {
            const char *r = after;
            while (r < end && (*r == ' ' || *r == '\t')) {
                r++;
            }
            if (r < end && *r == ':') {
                if (has_blank_line(s, (p - s) + 1)) {
                    Py_RETURN_NONE;  /* the first match is in the body */
                }
                const char *v = r + 1;
                const char *e = v;
                while (e < end && *e != '\r' && *e != '\n') {
                    e++;
                }
                while (v < e && is_space(*v)) {
                    v++;
                }
                while (e > v && is_space(e[-1])) {
                    e--;
                }
                if (e == v) {
                    Py_RETURN_NONE;
                }
                return PyUnicode_DecodeUTF8(v, e - v, "surrogateescape");
            }
        }
        p = q;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"call_id", call_id, METH_O,
     "call_id(data: bytes) -> str | None: the first Call-ID of the header section."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "sipload.sip._peek",
    "The Call-ID of raw message bytes in one pass (see sipload.sip.peek).", -1, methods,
};

PyMODINIT_FUNC PyInit__peek(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "API", API_VERSION) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
