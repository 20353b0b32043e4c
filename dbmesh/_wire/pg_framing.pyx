# cython: language_level=3
"""PostgreSQL message framing in Cython: a message reader, a backend-stream scanner and message builders."""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from libc.string cimport memcpy

# The server refuses startup-phase packets longer than this (MAX_STARTUP_PACKET_LENGTH in pqcomm.h).
DEF STARTUP_MAX = 10000
# A startup packet holds at least its length and a 4-byte protocol version or request code.
DEF STARTUP_MIN = 8
# Bytes of an ErrorResponse the scanner keeps to find its SQLSTATE ('S', 'V' and 'C' come first in practice).
DEF ERROR_HEAD = 256
# CommandComplete tags the scanner keeps: 64 bytes of tag plus the terminating NUL.
DEF TAG_HEAD = 65
DEF TAG_MAX = 64

MAX_STARTUP_PACKET = STARTUP_MAX
DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024


class FramingError(ValueError):
    """The byte stream does not form valid PostgreSQL messages (or breaks a configured limit)."""


cdef enum BackendType:
    T_READY_FOR_QUERY = 0x5A      # 'Z'
    T_DATA_ROW = 0x44             # 'D'
    T_ERROR_RESPONSE = 0x45       # 'E'
    T_COMMAND_COMPLETE = 0x43     # 'C'
    T_COPY_IN_RESPONSE = 0x47     # 'G'
    T_COPY_OUT_RESPONSE = 0x48    # 'H'
    T_COPY_BOTH_RESPONSE = 0x57   # 'W'
    T_PARAMETER_STATUS = 0x53     # 'S'
    T_NOTIFICATION_RESPONSE = 0x41  # 'A'


cdef enum FrontendType:
    F_QUERY = 0x51                # 'Q'
    F_PARSE = 0x50                # 'P'
    F_BIND = 0x42                 # 'B'
    F_DESCRIBE = 0x44             # 'D'
    F_EXECUTE = 0x45              # 'E'
    F_SYNC = 0x53                 # 'S'
    F_PORTAL = 0x50               # 'P': what a Describe names (a portal, not a statement 'S')


cdef inline Py_ssize_t _be32(const unsigned char* p):
    return (<Py_ssize_t>p[0] << 24) | (<Py_ssize_t>p[1] << 16) | (<Py_ssize_t>p[2] << 8) | <Py_ssize_t>p[3]


cdef class MessageReader:
    """Queues incoming bytes and hands out whole messages: untyped startup packets, then typed messages.

    Guarantee: a message is returned only when all of it has arrived, as one slice of the buffer; a length that
    breaks a limit raises FramingError as soon as its header is here, before the body is buffered.
    """

    def __cinit__(self, Py_ssize_t max_message=DEFAULT_MAX_MESSAGE):
        self._buf = bytearray()
        self._pos = 0
        self.max_message = max_message

    cpdef feed(self, bytes data):
        if self._pos and self._pos == len(self._buf):
            self._buf = bytearray(data)
            self._pos = 0
        else:
            self._buf += data

    cpdef Py_ssize_t buffered(self):
        return len(self._buf) - self._pos

    cpdef bytes take_buffered(self):
        """Remove and return the bytes not yet read (bytes that followed an SSLRequest must be refused)."""
        cdef bytes rest = bytes(self._buf[self._pos:])
        self._buf = bytearray()
        self._pos = 0
        return rest

    cdef void _advance(self, Py_ssize_t scan):
        cdef Py_ssize_t n = len(self._buf)
        if scan == n:
            self._buf = bytearray()
            self._pos = 0
        elif scan > 65536 and scan * 2 > n:
            del self._buf[:scan]
            self._pos = 0
        else:
            self._pos = scan

    cpdef object read_startup(self):
        """Next startup-phase packet body (after its int32 length), or None when more bytes are needed."""
        cdef bytearray buf = self._buf
        cdef Py_ssize_t n = len(buf)
        cdef Py_ssize_t pos = self._pos
        cdef unsigned char* p = <unsigned char*>(<char*>buf)
        cdef Py_ssize_t length
        if n - pos < 4:
            return None
        length = _be32(p + pos)
        if length < STARTUP_MIN or length > STARTUP_MAX:
            raise FramingError(f"invalid startup packet length {length}")
        if n - pos < length:
            return None
        cdef bytes body = PyBytes_FromStringAndSize(<char*>p + pos + 4, length - 4)
        self._advance(pos + length)
        return body

    cpdef object read(self):
        """Next typed message as (type byte, payload), or None when more bytes are needed."""
        cdef bytearray buf = self._buf
        cdef Py_ssize_t n = len(buf)
        cdef Py_ssize_t pos = self._pos
        cdef unsigned char* p = <unsigned char*>(<char*>buf)
        cdef Py_ssize_t length
        if n - pos < 5:
            return None
        length = _be32(p + pos + 1)
        if length < 4:
            raise FramingError(f"invalid message length {length}")
        if length - 4 > self.max_message:
            raise FramingError(f"message of {length - 4} bytes exceeds the limit of {self.max_message}")
        if n - pos - 1 < length:
            return None
        cdef int kind = p[pos]
        cdef bytes payload = PyBytes_FromStringAndSize(<char*>p + pos + 5, length - 4)
        self._advance(pos + 1 + length)
        return (kind, payload)

    cpdef int request_kind(self, bytes data):
        """What `data` is when it is, alone, one whole request of the shapes a session relays as they came:
        ord('Q') for exactly one Query message; ord('B') for exactly a Bind, then Describe (portal) and Execute
        messages (at least one), then a Sync; ord('P') for the same after a Parse. 0 for anything else, and
        whenever bytes are buffered (they come first). Every length is checked as read() checks it; a message
        read() would refuse gives 0, so the caller's general path (feed, read) raises the FramingError.
        """
        cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(data)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        cdef Py_ssize_t pos = 0, length, middle = 0
        cdef int t, kind
        if self._pos != len(self._buf) or n < 5:
            return 0
        kind = p[0]
        length = _be32(p + 1)
        if length < 4 or length - 4 > self.max_message:
            return 0
        if kind == F_QUERY:
            return F_QUERY if length + 1 == n else 0
        if kind == F_PARSE:
            pos = length + 1
            if n - pos < 5 or p[pos] != F_BIND:
                return 0
            length = _be32(p + pos + 1)
            if length < 4 or length - 4 > self.max_message:
                return 0
        elif kind != F_BIND:
            return 0
        pos += length + 1
        while n - pos >= 5:
            t = p[pos]
            length = _be32(p + pos + 1)
            if length < 4 or length - 4 > self.max_message or n - pos - 1 < length:
                return 0
            if t == F_SYNC:
                return kind if middle and n - pos - 1 == length else 0
            if t == F_EXECUTE or (t == F_DESCRIBE and length > 4 and p[pos + 5] == F_PORTAL):
                middle += 1
            else:
                return 0
            pos += 1 + length
        return 0


cdef class BackendScanner:
    """Follows a backend-to-client byte stream without copying it, counting what the proxy must know.

    `feed()` returns how many of the bytes it accepted; the caller forwards exactly those, untouched. With
    `target > 0` it stops right after the ReadyForQuery that brings `ready_count` to `target`, so bytes after the
    last expected ReadyForQuery stay with the caller (they are stray: the backend must not be released with them).
    Only the heads of ErrorResponse (256 bytes), CommandComplete (65) and ReadyForQuery (1) are kept; every
    other message is skipped by length. Counters describe complete messages only. A length below 4 sets
    `protocol_error` and the scanner accepts nothing more until `reset()`.
    """

    def __cinit__(self):
        self.target = 0
        self.reset()

    cpdef reset(self):
        # `target` is deliberately kept: it describes what the caller waits for, not the stream seen so far.
        self._hdr_have = 0
        self._in_payload = False
        self._remaining = 0
        self._msg_len = 0
        self._head_have = 0
        self._head_want = 0
        self.ready_count = 0
        self.tx_status = 0
        self.rows = 0
        self.errors = 0
        self.last_error_sqlstate = ""
        self.copy_in = False
        self.copy_out = False
        self.copy_both = False
        self.parameter_status_changed = False
        self.notifications = 0
        self.messages = 0
        self.last_type = 0
        self.last_command_tag = b""
        self.protocol_error = None

    cpdef bint mid_message(self):
        """True when the bytes consumed so far end inside a message (nothing may be injected here)."""
        return self._in_payload or self._hdr_have > 0

    cpdef Py_ssize_t feed(self, bytes data):
        cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(data)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        cdef Py_ssize_t i = 0, take, length
        cdef int t
        while i < n:
            if self.protocol_error is not None:
                break
            if self.target > 0 and self.ready_count >= self.target:
                break
            if not self._in_payload:
                while self._hdr_have < 5 and i < n:
                    self._hdr[self._hdr_have] = p[i]
                    self._hdr_have += 1
                    i += 1
                if self._hdr_have < 5:
                    break
                self._hdr_have = 0
                t = self._hdr[0]
                self.last_type = t
                length = _be32(&self._hdr[1])
                if length < 4:
                    self.protocol_error = f"invalid backend message length {length}"
                    break
                self._msg_len = length - 4
                self._remaining = length - 4
                self._head_have = 0
                if t == T_ERROR_RESPONSE:
                    self._head_want = ERROR_HEAD
                elif t == T_COMMAND_COMPLETE:
                    self._head_want = TAG_HEAD
                elif t == T_READY_FOR_QUERY:
                    self._head_want = 1
                else:
                    self._head_want = 0
                if self._head_want > self._remaining:
                    self._head_want = self._remaining
                self._in_payload = True
            if self._head_have < self._head_want:
                take = self._head_want - self._head_have
                if take > n - i:
                    take = n - i
                memcpy(&self._head[self._head_have], p + i, take)
                self._head_have += take
                self._remaining -= take
                i += take
                if self._head_have < self._head_want:
                    break
            take = self._remaining
            if take > n - i:
                take = n - i
            i += take
            self._remaining -= take
            if self._remaining:
                break
            self._in_payload = False
            self._on_message()
        return i

    cdef void _on_message(self):
        cdef int t = self.last_type
        cdef Py_ssize_t tag_len
        self.messages += 1
        if t == T_DATA_ROW:
            self.rows += 1
        elif t == T_READY_FOR_QUERY:
            self.ready_count += 1
            self.tx_status = self._head[0] if self._head_have else 0
            self.copy_in = False
            self.copy_out = False
            self.copy_both = False
        elif t == T_ERROR_RESPONSE:
            self.errors += 1
            self._read_error_sqlstate()
        elif t == T_COMMAND_COMPLETE:
            tag_len = self._msg_len
            if tag_len <= TAG_HEAD and tag_len > 0 and self._head[tag_len - 1] == 0:
                tag_len -= 1
            if tag_len <= TAG_MAX:
                self.last_command_tag = PyBytes_FromStringAndSize(<char*>self._head, tag_len)
            else:
                self.last_command_tag = b""
        elif t == T_COPY_IN_RESPONSE:
            self.copy_in = True
        elif t == T_COPY_OUT_RESPONSE:
            self.copy_out = True
        elif t == T_COPY_BOTH_RESPONSE:
            self.copy_both = True
        elif t == T_PARAMETER_STATUS:
            self.parameter_status_changed = True
        elif t == T_NOTIFICATION_RESPONSE:
            self.notifications += 1

    cdef void _read_error_sqlstate(self):
        # Fields: a code byte and a NUL-terminated string each, ended by a zero code byte.
        cdef Py_ssize_t pos = 0, end
        cdef unsigned char code
        self.last_error_sqlstate = ""
        while pos < self._head_have:
            code = self._head[pos]
            if code == 0:
                return
            pos += 1
            end = pos
            while end < self._head_have and self._head[end] != 0:
                end += 1
            if end >= self._head_have:
                return
            if code == 0x43:  # 'C': SQLSTATE
                self.last_error_sqlstate = PyBytes_FromStringAndSize(
                    <char*>self._head + pos, end - pos).decode("ascii", "replace")
                return
            pos = end + 1


cpdef bytes build_message(int type, bytes payload):
    """Frame a typed message: type byte, int32 length (counting itself), payload."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(payload)
    if type < 0 or type > 255:
        raise FramingError(f"message type {type} is not a byte")
    if n > 0x7FFFFFFF - 4:
        raise FramingError(f"message of {n} bytes is too large to frame")
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n + 5)
    cdef unsigned char* o = <unsigned char*>PyBytes_AS_STRING(out)
    cdef Py_ssize_t length = n + 4
    o[0] = <unsigned char>type
    o[1] = (length >> 24) & 0xFF
    o[2] = (length >> 16) & 0xFF
    o[3] = (length >> 8) & 0xFF
    o[4] = length & 0xFF
    memcpy(o + 5, PyBytes_AS_STRING(payload), n)
    return out


cdef Py_ssize_t _bind_name_end(bytes data, Py_ssize_t* name_start) except -2:
    # data starts with a whole Bind message: portal name, NUL, statement name, NUL, the rest. The offset of the
    # statement name's NUL (its start in name_start), or -1 when the message does not hold both NULs.
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t end, i
    if n < 5 or p[0] != F_BIND:
        return -1
    end = 1 + _be32(p + 1)
    if end < 5 or end > n:
        return -1
    i = 5
    while i < end and p[i] != 0:
        i += 1
    i += 1
    name_start[0] = i
    while i < end and p[i] != 0:
        i += 1
    return i if i < end else -1


cpdef object bind_statement(bytes data):
    """The statement name of the Bind message `data` starts with (b"" for the unnamed statement), or None when
    that message is not whole or lacks the NULs ending its portal and statement names."""
    cdef Py_ssize_t start = 0
    cdef Py_ssize_t end = _bind_name_end(data, &start)
    if end < 0:
        return None
    return PyBytes_FromStringAndSize(PyBytes_AS_STRING(data) + start, end - start)


cpdef bytes rename_bind(bytes data, bytes name):
    """`data` with the statement name of the Bind message it starts with replaced by `name` (the Bind reframed);
    every other byte, of that Bind and of the messages after it, unchanged."""
    cdef Py_ssize_t start = 0
    cdef Py_ssize_t end = _bind_name_end(data, &start)
    if end < 0:
        raise FramingError("not a whole Bind message with a statement name")
    cdef const char* p = PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t k = PyBytes_GET_SIZE(name)
    cdef Py_ssize_t length = _be32(<const unsigned char*>p + 1) - (end - start) + k
    if length > 0x7FFFFFFF:
        raise FramingError(f"message of {length} bytes is too large to frame")
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n - (end - start) + k)
    cdef unsigned char* o = <unsigned char*>PyBytes_AS_STRING(out)
    o[0] = F_BIND
    o[1] = (length >> 24) & 0xFF
    o[2] = (length >> 16) & 0xFF
    o[3] = (length >> 8) & 0xFF
    o[4] = length & 0xFF
    memcpy(o + 5, p + 5, start - 5)
    memcpy(o + start, PyBytes_AS_STRING(name), k)
    memcpy(o + start + k, p + end, n - end)
    return out


cpdef bytes build_startup(bytes body):
    """Frame a startup-phase packet (StartupMessage, SSLRequest, ...): int32 length (counting itself), body."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(body)
    if n + 4 > STARTUP_MAX or n + 4 < STARTUP_MIN:
        raise FramingError(f"startup packet of {n + 4} bytes is outside {STARTUP_MIN}..{STARTUP_MAX}")
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n + 4)
    cdef unsigned char* o = <unsigned char*>PyBytes_AS_STRING(out)
    cdef Py_ssize_t length = n + 4
    o[0] = (length >> 24) & 0xFF
    o[1] = (length >> 16) & 0xFF
    o[2] = (length >> 8) & 0xFF
    o[3] = length & 0xFF
    memcpy(o + 4, PyBytes_AS_STRING(body), n)
    return out
