# C types for the compiled twin of _pure.py (compiled as _wbxml._codec).
cimport cython

@cython.locals(value=cython.ulonglong, start=Py_ssize_t, b=cython.int)
cdef tuple _read_mb(bytes data, Py_ssize_t pos, Py_ssize_t n)

cdef str _utf8(bytes raw, Py_ssize_t offset)

cdef _add_text(list contents, str text, Py_ssize_t pos)

@cython.locals(n=Py_ssize_t, pos=Py_ssize_t, depth=Py_ssize_t, b=cython.int, token=cython.int, p=cython.int,
               end=Py_ssize_t, start=Py_ssize_t, length=Py_ssize_t, offset=Py_ssize_t, tags=list, contents=list,
               names=tuple, text=str, strtbl=bytes)
cdef tuple _decode(bytes data)

@cython.locals(number=cython.int, token=cython.int)
cdef int _encode_element(bytearray out, object element, int page, int depth, list slots) except -1
