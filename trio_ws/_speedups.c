/* Optional C speedup for trio_ws.frames.apply_mask: XOR a buffer with a 4-byte key.
   Built by `pip install` where a compiler exists; trio_ws falls back to pure Python. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static PyObject *
apply_mask(PyObject *self, PyObject *args)
{
    Py_buffer data, mask;
    if (!PyArg_ParseTuple(args, "y*y*", &data, &mask)) {
        return NULL;
    }
    if (mask.len != 4) {
        PyBuffer_Release(&data);
        PyBuffer_Release(&mask);
        PyErr_SetString(PyExc_ValueError, "mask must be 4 bytes");
        return NULL;
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, data.len);
    if (result != NULL) {
        const unsigned char *in = data.buf;
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
        const unsigned char *key = mask.buf;
        Py_ssize_t i = 0;
        uint64_t key64;
        unsigned char key8[8];
        memcpy(key8, key, 4);
        memcpy(key8 + 4, key, 4);
        memcpy(&key64, key8, 8);
        for (; i + 8 <= data.len; i += 8) {
            uint64_t word;
            memcpy(&word, in + i, 8);
            word ^= key64;
            memcpy(out + i, &word, 8);
        }
        for (; i < data.len; i++) {
            out[i] = in[i] ^ key[i & 3];
        }
    }
    PyBuffer_Release(&data);
    PyBuffer_Release(&mask);
    return result;
}

static PyMethodDef methods[] = {
    {"apply_mask", apply_mask, METH_VARARGS, "XOR data with a 4-byte mask, repeated."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "trio_ws._speedups", NULL, -1, methods};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&module);
}
