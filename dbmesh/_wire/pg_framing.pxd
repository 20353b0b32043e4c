"""Cython declarations of the PostgreSQL framing layer (see pg_framing.pyx)."""

cdef class MessageReader:
    cdef bytearray _buf
    cdef Py_ssize_t _pos
    cdef public Py_ssize_t max_message

    cpdef feed(self, bytes data)
    cpdef Py_ssize_t buffered(self)
    cpdef bytes take_buffered(self)
    cpdef object read_startup(self)
    cpdef object read(self)
    cpdef int request_kind(self, bytes data)
    cdef void _advance(self, Py_ssize_t scan)


cdef class BackendScanner:
    cdef unsigned char _hdr[5]
    cdef int _hdr_have
    cdef bint _in_payload
    cdef Py_ssize_t _remaining
    cdef Py_ssize_t _msg_len
    cdef unsigned char _head[256]
    cdef Py_ssize_t _head_have
    cdef Py_ssize_t _head_want
    cdef public long long target
    cdef public long long ready_count
    cdef public int tx_status
    cdef public long long rows
    cdef public long long errors
    cdef public str last_error_sqlstate
    cdef public bint copy_in
    cdef public bint copy_out
    cdef public bint copy_both
    cdef public bint parameter_status_changed
    cdef public long long notifications
    cdef public long long messages
    cdef public int last_type
    cdef public bytes last_command_tag
    cdef public object protocol_error

    cpdef reset(self)
    cpdef bint mid_message(self)
    cpdef Py_ssize_t feed(self, bytes data)
    cdef void _on_message(self)
    cdef void _read_error_sqlstate(self)


cpdef bytes build_message(int type, bytes payload)
cpdef object bind_statement(bytes data)
cpdef bytes rename_bind(bytes data, bytes name)
cpdef bytes build_startup(bytes body)
