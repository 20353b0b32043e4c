"""Cython declarations of the MySQL framing layer (see mysql_framing.pyx)."""

cdef class PacketReader:
    cdef bytearray _buf
    cdef Py_ssize_t _pos
    cdef public Py_ssize_t max_payload
    cdef public int seq
    cdef public int last_seq

    cpdef feed(self, bytes data)
    cpdef Py_ssize_t buffered(self)
    cpdef bint whole_command(self, bytes data)
    cpdef bytes take_buffered(self)
    cpdef object read(self)


cdef class ResponseScanner:
    cdef public int kind
    cdef public bint deprecate_eof
    cdef public bint done
    cdef public int state
    cdef unsigned char _hdr[4]
    cdef int _hdr_have
    cdef Py_ssize_t _remaining
    cdef bint _in_payload
    cdef bint _continued
    cdef bint _chunk_full
    cdef Py_ssize_t _pkt_len
    cdef unsigned char _head[32]
    cdef Py_ssize_t _head_have
    cdef Py_ssize_t _head_want
    cdef int _kind_of_packet
    cdef long long _countdown
    cdef public int status
    cdef public int warnings
    cdef public unsigned long long affected_rows
    cdef public unsigned long long last_insert_id
    cdef public bint is_error
    cdef public int error_code
    cdef public long long rows
    cdef public int result_sets
    cdef public int last_seq
    cdef public bint local_infile
    cdef public unsigned int stmt_id
    cdef public unsigned long long num_columns
    cdef public int num_params
    cdef public long long packets
    cdef public bint more_results_seen
    cdef public object protocol_error

    cpdef start(self, int kind, bint deprecate_eof)
    cpdef infile_sent(self, int last_seq)
    cpdef int clean_status(self)
    cpdef bint mid_packet(self)
    cpdef Py_ssize_t feed(self, bytes data)
    cdef void _classify(self)
    cdef void _read_ok(self, Py_ssize_t start)
    cdef void _read_terminator(self)
    cdef void _read_err(self)
    cdef void _end_of_result(self)
    cdef void _on_packet(self)
    cdef void _prepare_advance(self)


cpdef bytes build_packet(bytes payload, int seq)
cpdef int packet_count(Py_ssize_t payload_length)
cpdef bytes lenenc_int(unsigned long long v)
