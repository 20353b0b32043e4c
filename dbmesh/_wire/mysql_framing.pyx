# cython: language_level=3
"""MySQL packet framing in Cython: a packet reader, a response-boundary scanner and packet builders."""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from libc.string cimport memcpy

# One payload chunk carries at most 0xFFFFFF bytes; a chunk of exactly that size is continued by the next one.
DEF MAX_CHUNK = 0xFFFFFF
# Bytes of a packet's payload the scanner keeps to classify it: OK = 1 + 9 + 9 + 2 + 2; PREPARE_OK = 12.
DEF HEAD_KEEP = 32

MAX_PACKET_CHUNK = MAX_CHUNK

# Server status flags the scanner reads from terminators.
DEF SERVER_MORE_RESULTS_EXISTS = 0x0008
DEF SERVER_STATUS_CURSOR_EXISTS = 0x0040


class FramingError(ValueError):
    """The byte stream does not form valid MySQL packets (or breaks a configured limit)."""


cdef class PacketReader:
    """Queues incoming bytes and hands out whole logical packets, reassembling 16 MiB continuations.

    Guarantee: `read()` returns a payload only when every chunk of it has arrived; `seq` is the sequence id of
    its first chunk and `last_seq` of its last, so a reply can continue the numbering.
    """

    def __cinit__(self, Py_ssize_t max_payload=64 * 1024 * 1024):
        self._buf = bytearray()
        self._pos = 0
        self.max_payload = max_payload
        self.seq = 0
        self.last_seq = 0

    cpdef feed(self, bytes data):
        if self._pos and self._pos == len(self._buf):
            self._buf = bytearray(data)
            self._pos = 0
        else:
            self._buf += data

    cpdef Py_ssize_t buffered(self):
        return len(self._buf) - self._pos

    cpdef bint whole_command(self, bytes data):
        """True when nothing is buffered and `data` is exactly one packet that starts a command: one chunk (not
        continued), sequence id 0, a non-empty payload within max_payload. Such a read can skip the buffer."""
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(data)
        cdef Py_ssize_t length
        if n <= 4 or p[3] != 0 or len(self._buf) != self._pos:
            return False
        length = p[0] | (p[1] << 8) | (p[2] << 16)
        return length == n - 4 and length < MAX_CHUNK and length <= self.max_payload

    cpdef bytes take_buffered(self):
        """Remove and return the bytes not yet read (e.g. a TLS ClientHello that followed an SSLRequest)."""
        cdef bytes rest = bytes(self._buf[self._pos:])
        self._buf = bytearray()
        self._pos = 0
        return rest

    cpdef object read(self):
        """Next complete payload as bytes, or None when more bytes are needed."""
        cdef bytearray buf = self._buf
        cdef Py_ssize_t n = len(buf)
        cdef Py_ssize_t pos = self._pos
        cdef Py_ssize_t length, total = 0, scan = pos
        cdef unsigned char* p = <unsigned char*>(<char*>buf)
        cdef int first_seq = -1, seq = 0
        # First pass: find whether the whole logical packet is here, without copying.
        while True:
            if n - scan < 4:
                return None
            length = p[scan] | (p[scan + 1] << 8) | (p[scan + 2] << 16)
            seq = p[scan + 3]
            if first_seq < 0:
                first_seq = seq
            total += length
            if total > self.max_payload:
                self.seq = first_seq  # so an error reply can take the next sequence id
                self.last_seq = seq
                raise FramingError(f"packet of at least {total} bytes exceeds the limit of {self.max_payload}")
            if n - scan - 4 < length:
                return None
            scan += 4 + length
            if length < MAX_CHUNK:
                break
        cdef bytes payload
        cdef char* out
        if scan - pos == total + 4:  # one chunk: a single slice
            payload = PyBytes_FromStringAndSize(<char*>p + pos + 4, total)
        else:
            payload = PyBytes_FromStringAndSize(NULL, total)
            out = PyBytes_AS_STRING(payload)
            scan = pos
            while True:
                length = p[scan] | (p[scan + 1] << 8) | (p[scan + 2] << 16)
                memcpy(out, p + scan + 4, length)
                out += length
                scan += 4 + length
                if length < MAX_CHUNK:
                    break
        self.seq = first_seq
        self.last_seq = seq
        if scan == n:
            self._buf = bytearray()
            self._pos = 0
        elif scan > 65536 and scan * 2 > n:
            del self._buf[:scan]
            self._pos = 0
        else:
            self._pos = scan
        return payload


cpdef bytes build_packet(bytes payload, int seq):
    """Frame a payload, splitting it into 0xFFFFFF chunks (plus an empty one on an exact multiple)."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(payload)
    cdef Py_ssize_t chunks, i, off = 0, length
    cdef bytes out
    cdef unsigned char* o
    cdef const unsigned char* src = <const unsigned char*>PyBytes_AS_STRING(payload)
    if n < MAX_CHUNK:
        out = PyBytes_FromStringAndSize(NULL, n + 4)
        o = <unsigned char*>PyBytes_AS_STRING(out)
        o[0] = n & 0xFF
        o[1] = (n >> 8) & 0xFF
        o[2] = (n >> 16) & 0xFF
        o[3] = seq & 0xFF
        memcpy(o + 4, src, n)
        return out
    chunks = n // MAX_CHUNK + 1
    out = PyBytes_FromStringAndSize(NULL, n + 4 * chunks)
    o = <unsigned char*>PyBytes_AS_STRING(out)
    for i in range(chunks):
        length = n - off
        if length > MAX_CHUNK:
            length = MAX_CHUNK
        o[0] = length & 0xFF
        o[1] = (length >> 8) & 0xFF
        o[2] = (length >> 16) & 0xFF
        o[3] = (seq + i) & 0xFF
        memcpy(o + 4, src + off, length)
        o += 4 + length
        off += length
    return out


cpdef int packet_count(Py_ssize_t payload_length):
    """How many chunks (sequence ids) a payload of this length takes on the wire."""
    return <int>(payload_length // MAX_CHUNK + 1)


cdef inline unsigned long long _lenenc(const unsigned char* p, Py_ssize_t avail, Py_ssize_t* used):
    cdef unsigned char b
    if avail < 1:
        used[0] = -1
        return 0
    b = p[0]
    if b < 0xFB:
        used[0] = 1
        return b
    if b == 0xFC:
        if avail < 3:
            used[0] = -1
            return 0
        used[0] = 3
        return p[1] | (p[2] << 8)
    if b == 0xFD:
        if avail < 4:
            used[0] = -1
            return 0
        used[0] = 4
        return p[1] | (p[2] << 8) | (<unsigned long long>p[3] << 16)
    if b == 0xFE:
        if avail < 9:
            used[0] = -1
            return 0
        used[0] = 9
        return (p[1] | (p[2] << 8) | (<unsigned long long>p[3] << 16) | (<unsigned long long>p[4] << 24)
                | (<unsigned long long>p[5] << 32) | (<unsigned long long>p[6] << 40)
                | (<unsigned long long>p[7] << 48) | (<unsigned long long>p[8] << 56))
    used[0] = -1  # 0xFB (NULL) and 0xFF are not integers
    return 0


def read_lenenc(const unsigned char[:] data, Py_ssize_t pos):
    """Decode a length-encoded integer at pos: (value, next position). Raises FramingError when invalid."""
    cdef Py_ssize_t used = 0
    if pos < 0 or pos > data.shape[0]:
        raise FramingError("length-encoded integer out of range")
    if pos == data.shape[0]:
        raise FramingError("truncated length-encoded integer")
    cdef unsigned long long v = _lenenc(&data[pos], data.shape[0] - pos, &used)
    if used < 0:
        raise FramingError("invalid or truncated length-encoded integer")
    return v, pos + used


cpdef bytes lenenc_int(unsigned long long v):
    """Encode an integer as a length-encoded integer."""
    if v < 0xFB:
        return bytes((v,))
    if v <= 0xFFFF:
        return b"\xfc" + v.to_bytes(2, "little")
    if v <= 0xFFFFFF:
        return b"\xfd" + v.to_bytes(3, "little")
    return b"\xfe" + v.to_bytes(8, "little")


# Response kinds: what command the response answers decides its grammar.
RESPONSE_RESULT = 0      # COM_QUERY, COM_STMT_EXECUTE: OK | ERR | LOCAL INFILE | result set(s), MORE_RESULTS chains
RESPONSE_PREPARE = 1     # COM_STMT_PREPARE: PREPARE_OK + param defs [+EOF] + column defs [+EOF] | ERR
RESPONSE_SIMPLE = 2      # PING, INIT_DB, STMT_RESET, RESET_CONNECTION...: one OK | ERR
RESPONSE_ROWS = 3        # COM_STMT_FETCH: rows then a terminator | ERR
RESPONSE_FIELD_LIST = 4  # COM_FIELD_LIST: column definitions then a terminator | ERR
RESPONSE_ONE_PACKET = 5  # COM_STATISTICS (a bare string), COM_SET_OPTION (EOF | ERR)

cdef enum ScanState:
    S_FIRST = 0        # first packet of a (next) result
    S_COLDEFS = 1      # column definitions of a result set
    S_COLDEF_EOF = 2   # EOF after the column definitions (when DEPRECATE_EOF is off)
    S_ROWS = 3         # rows, until a terminator
    S_PREP_PARAMS = 4  # parameter definitions of a prepared statement
    S_PREP_PARAMS_EOF = 5
    S_PREP_COLS = 6
    S_PREP_COLS_EOF = 7
    S_DONE = 8
    S_INFILE = 9       # the server sent a LOCAL INFILE request and waits for the client's file (see infile_sent)

cdef enum PacketKind:
    K_OTHER = 0
    K_OK = 1
    K_ERR = 2
    K_EOF = 3       # a terminator starting 0xFE (EOF, or OK-with-0xFE under DEPRECATE_EOF)
    K_INFILE = 4


cdef class ResponseScanner:
    """Finds where one backend response ends in a stream of chunks, without copying the rows.

    Fed the bytes that follow a command, `feed()` returns how many of them belong to the response; `done` turns
    true on the packet that ends it. Only the first 32 payload bytes of each packet are looked at: enough for
    OK/EOF/ERR fields and the column count; rows are skipped by length. The caller forwards the consumed bytes
    untouched (frames are forwarded, not re-encoded).

    A LOCAL INFILE request (LOAD DATA LOCAL) also turns `done` true, with `local_infile` set: the server's turn has
    ended and it now waits for the client's file; once that has been sent, `infile_sent()` resumes the scan for
    the server's final answer.
    """

    def __cinit__(self):
        self.done = True

    cpdef start(self, int kind, bint deprecate_eof):
        self.kind = kind
        self.deprecate_eof = deprecate_eof
        self.done = False
        self.state = S_ROWS if kind in (RESPONSE_ROWS, RESPONSE_FIELD_LIST) else (S_FIRST if kind != RESPONSE_PREPARE else S_FIRST)
        self._hdr_have = 0
        self._remaining = 0
        self._in_payload = False
        self._continued = False
        self._head_have = 0
        self._head_want = 0
        self._kind_of_packet = K_OTHER
        self._countdown = 0
        self.status = 0
        self.warnings = 0
        self.affected_rows = 0
        self.last_insert_id = 0
        self.is_error = False
        self.error_code = 0
        self.rows = 0
        self.result_sets = 0
        self.last_seq = 0
        self.local_infile = False
        self.stmt_id = 0
        self.num_columns = 0
        self.num_params = 0
        self.packets = 0
        self.more_results_seen = False
        self.protocol_error = None

    cpdef infile_sent(self, int last_seq):
        """The file's packets (ended by an empty one, sequence id `last_seq`) went to the server after its LOCAL
        INFILE request: scan on for the server's answer to them (OK/ERR, possibly chaining MORE_RESULTS)."""
        if self.state != S_INFILE:
            raise ValueError("infile_sent() without a pending LOCAL INFILE request")
        self.local_infile = False
        self.done = False
        self.state = S_FIRST
        self.last_seq = last_seq & 0xFF

    cpdef int clean_status(self):
        """The final status flags when the response succeeded plainly (no ERR, no protocol error, no
        LAST_INSERT_ID), else -1: what a session reads once per statement instead of four attributes."""
        if self.is_error or self.protocol_error is not None or self.last_insert_id:
            return -1
        return self.status

    cpdef bint mid_packet(self):
        """True when the bytes consumed so far end inside a packet (a synthesized packet cannot follow)."""
        return self._in_payload or self._hdr_have > 0 or self._continued

    cpdef Py_ssize_t feed(self, bytes data):
        cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(data)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        cdef Py_ssize_t i = 0, take
        cdef Py_ssize_t length
        while i < n and not self.done:
            if not self._in_payload:
                # Header bytes may straddle chunks.
                while self._hdr_have < 4 and i < n:
                    self._hdr[self._hdr_have] = p[i]
                    self._hdr_have += 1
                    i += 1
                if self._hdr_have < 4:
                    break
                self._hdr_have = 0
                length = self._hdr[0] | (self._hdr[1] << 8) | (self._hdr[2] << 16)
                self.last_seq = self._hdr[3]
                self._remaining = length
                self._in_payload = True
                if not self._continued:
                    self._pkt_len = length
                    self._head_have = 0
                    self._head_want = length if length < HEAD_KEEP else HEAD_KEEP
                else:
                    self._pkt_len += length
                self._chunk_full = length == MAX_CHUNK
            # Keep the head of a fresh logical packet for classification.
            if not self._continued and self._head_have < self._head_want:
                take = self._head_want - self._head_have
                if take > n - i:
                    take = n - i
                memcpy(&self._head[self._head_have], p + i, take)
                self._head_have += take
                self._remaining -= take
                i += take
                if self._head_have < self._head_want:
                    break
            # Skip the rest of the payload by length.
            take = self._remaining
            if take > n - i:
                take = n - i
            i += take
            self._remaining -= take
            if self._remaining:
                break
            self._in_payload = False
            if self._chunk_full:
                self._continued = True  # the next chunk continues this logical packet
                continue
            self._continued = False
            self.packets += 1
            self._on_packet()
        return i

    cdef void _classify(self):
        cdef unsigned char b
        if self._head_have == 0:
            self._kind_of_packet = K_OTHER
            return
        b = self._head[0]
        if b == 0x00 and self._pkt_len >= 7:
            self._kind_of_packet = K_OK
        elif b == 0xFF:
            self._kind_of_packet = K_ERR
        elif b == 0xFE and (self._pkt_len < 9 or (self.deprecate_eof and self._pkt_len < MAX_CHUNK)):
            self._kind_of_packet = K_EOF
        elif b == 0xFB:
            self._kind_of_packet = K_INFILE
        else:
            self._kind_of_packet = K_OTHER

    cdef void _read_ok(self, Py_ssize_t start):
        # OK (or 0xFE-headed OK): header, lenenc affected rows, lenenc last insert id, int2 status, int2 warnings.
        cdef Py_ssize_t pos = start, used = 0
        cdef unsigned long long v
        v = _lenenc(&self._head[pos], self._head_have - pos, &used)
        if used < 0:
            return
        self.affected_rows = v
        pos += used
        v = _lenenc(&self._head[pos], self._head_have - pos, &used)
        if used < 0:
            return
        self.last_insert_id = v
        pos += used
        if self._head_have - pos >= 4:
            self.status = self._head[pos] | (self._head[pos + 1] << 8)
            self.warnings = self._head[pos + 2] | (self._head[pos + 3] << 8)

    cdef void _read_terminator(self):
        if self._pkt_len < 9 and not (self.deprecate_eof and self._pkt_len >= 7):
            # Classic EOF: 0xFE, int2 warnings, int2 status.
            if self._head_have >= 5:
                self.warnings = self._head[1] | (self._head[2] << 8)
                self.status = self._head[3] | (self._head[4] << 8)
        else:
            self._read_ok(1)

    cdef void _read_err(self):
        self.is_error = True
        if self._head_have >= 3:
            self.error_code = self._head[1] | (self._head[2] << 8)
        self.done = True
        self.state = S_DONE

    cdef void _end_of_result(self):
        self.result_sets += 1
        if self.status & SERVER_MORE_RESULTS_EXISTS:
            self.more_results_seen = True
            self.state = S_FIRST
        else:
            self.done = True
            self.state = S_DONE

    cdef void _on_packet(self):
        cdef Py_ssize_t used = 0
        cdef unsigned long long v
        self._classify()
        cdef int k = self._kind_of_packet
        cdef int st = self.state
        if self.kind == RESPONSE_ONE_PACKET:
            if k == K_ERR:
                self._read_err()
                return
            if k == K_EOF:
                self._read_terminator()
            self.done = True
            self.state = S_DONE
            return
        if self.kind == RESPONSE_SIMPLE:
            if k == K_ERR:
                self._read_err()
                return
            if k == K_OK:
                self._read_ok(1)
            else:
                self.protocol_error = "expected OK or ERR"
            self.done = True
            self.state = S_DONE
            return
        if st == S_FIRST:
            if k == K_ERR:
                self._read_err()
                return
            if self.kind == RESPONSE_PREPARE:
                if self._head[0] != 0x00 or self._head_have < 12:
                    self.protocol_error = "malformed COM_STMT_PREPARE response"
                    self.done = True
                    self.state = S_DONE
                    return
                self.stmt_id = (self._head[1] | (self._head[2] << 8) | (self._head[3] << 16)
                                | (<unsigned int>self._head[4] << 24))
                self.num_columns = self._head[5] | (self._head[6] << 8)
                self.num_params = self._head[7] | (self._head[8] << 8)
                self.warnings = self._head[10] | (self._head[11] << 8)
                self._countdown = self.num_params
                self.state = S_PREP_PARAMS
                self._prepare_advance()
                return
            if k == K_OK:
                self._read_ok(1)
                self._end_of_result()
                return
            if k == K_INFILE:
                # LOAD DATA LOCAL: 0xFB + file name. The server's turn ends here; it reads the file's packets (ended
                # by an empty one) and only then answers OK/ERR, which infile_sent() lets the scanner follow.
                self.local_infile = True
                self.done = True
                self.state = S_INFILE
                return
            v = _lenenc(&self._head[0], self._head_have, &used)
            if used < 0 or v == 0:
                self.protocol_error = "malformed column count"
                self.done = True
                self.state = S_DONE
                return
            self.num_columns = v
            self._countdown = v
            self.state = S_COLDEFS
            return
        if st == S_COLDEFS:
            self._countdown -= 1
            if self._countdown == 0:
                self.state = S_ROWS if self.deprecate_eof else S_COLDEF_EOF
            return
        if st == S_COLDEF_EOF:
            if k != K_EOF:
                self.protocol_error = "expected EOF after column definitions"
                self.done = True
                self.state = S_DONE
                return
            self._read_terminator()
            if self.status & SERVER_STATUS_CURSOR_EXISTS:
                # COM_STMT_EXECUTE opened a cursor: rows come later through COM_STMT_FETCH.
                self.result_sets += 1
                self.done = True
                self.state = S_DONE
                return
            self.state = S_ROWS
            return
        if st == S_ROWS:
            if k == K_ERR:
                self._read_err()
                return
            if k == K_EOF:
                self._read_terminator()
                if self.kind == RESPONSE_RESULT:
                    self._end_of_result()
                else:
                    self.done = True
                    self.state = S_DONE
                return
            self.rows += 1
            return
        if st == S_PREP_PARAMS or st == S_PREP_PARAMS_EOF or st == S_PREP_COLS or st == S_PREP_COLS_EOF:
            if st == S_PREP_PARAMS or st == S_PREP_COLS:
                self._countdown -= 1
            elif k != K_EOF:
                self.protocol_error = "expected EOF in COM_STMT_PREPARE response"
                self.done = True
                self.state = S_DONE
                return
            else:
                self._countdown = -1  # consumed the EOF
            self._prepare_advance()
            return
        self.protocol_error = "packet after the end of the response"
        self.done = True
        self.state = S_DONE

    cdef void _prepare_advance(self):
        # Walk PREPARE_OK's sections, skipping empty ones, until a packet is expected or the response ends.
        while True:
            if self.state == S_PREP_PARAMS:
                if self._countdown > 0:
                    return
                if self.num_params and not self.deprecate_eof:
                    self.state = S_PREP_PARAMS_EOF
                    self._countdown = 0
                    return
                self.state = S_PREP_COLS
                self._countdown = self.num_columns
                continue
            if self.state == S_PREP_PARAMS_EOF:
                if self._countdown == 0:
                    return
                self.state = S_PREP_COLS
                self._countdown = self.num_columns
                continue
            if self.state == S_PREP_COLS:
                if self._countdown > 0:
                    return
                if self.num_columns and not self.deprecate_eof:
                    self.state = S_PREP_COLS_EOF
                    self._countdown = 0
                    return
                self.done = True
                self.state = S_DONE
                return
            if self.state == S_PREP_COLS_EOF:
                if self._countdown == 0:
                    return
                self.done = True
                self.state = S_DONE
                return
            return
