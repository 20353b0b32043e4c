"""Pure-Python twin of mysql_framing.pyx: the same framing semantics, for fuzzing, debugging and cross-checking."""

from __future__ import annotations

MAX_PACKET_CHUNK = 0xFFFFFF
_HEAD_KEEP = 32
_MORE_RESULTS = 0x0008
_CURSOR_EXISTS = 0x0040

RESPONSE_RESULT = 0
RESPONSE_PREPARE = 1
RESPONSE_SIMPLE = 2
RESPONSE_ROWS = 3
RESPONSE_FIELD_LIST = 4
RESPONSE_ONE_PACKET = 5

(S_FIRST, S_COLDEFS, S_COLDEF_EOF, S_ROWS, S_PREP_PARAMS, S_PREP_PARAMS_EOF, S_PREP_COLS, S_PREP_COLS_EOF,
 S_DONE, S_INFILE) = range(10)
K_OTHER, K_OK, K_ERR, K_EOF, K_INFILE = range(5)


class FramingError(ValueError):
    """The byte stream does not form valid MySQL packets (or breaks a configured limit)."""


class PacketReader:
    """Queues incoming bytes and hands out whole logical packets, reassembling 16 MiB continuations."""

    def __init__(self, max_payload: int = 64 * 1024 * 1024) -> None:
        self._buf = bytearray()
        self._pos = 0
        self.max_payload = max_payload
        self.seq = 0
        self.last_seq = 0

    def feed(self, data: bytes) -> None:
        self._buf += data

    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def whole_command(self, data: bytes) -> bool:
        """True when nothing is buffered and `data` is exactly one packet that starts a command: one chunk (not
        continued), sequence id 0, a non-empty payload within max_payload. Such a read can skip the buffer."""
        n = len(data)
        if n <= 4 or data[3] != 0 or self.buffered():
            return False
        length = int.from_bytes(data[:3], "little")
        return length == n - 4 and length < MAX_PACKET_CHUNK and length <= self.max_payload

    def take_buffered(self) -> bytes:
        """Remove and return the bytes not yet read (e.g. a TLS ClientHello that followed an SSLRequest)."""
        rest = bytes(self._buf[self._pos:])
        self._buf = bytearray()
        self._pos = 0
        return rest

    def read(self) -> bytes | None:
        buf, pos = self._buf, self._pos
        scan, total, first_seq, seq = pos, 0, -1, 0
        parts: list[bytes] = []
        while True:
            if len(buf) - scan < 4:
                return None
            length = int.from_bytes(buf[scan:scan + 3], "little")
            seq = buf[scan + 3]
            if first_seq < 0:
                first_seq = seq
            total += length
            if total > self.max_payload:
                self.seq, self.last_seq = first_seq, seq  # so an error reply can take the next sequence id
                raise FramingError(f"packet of at least {total} bytes exceeds the limit of {self.max_payload}")
            if len(buf) - scan - 4 < length:
                return None
            parts.append(bytes(buf[scan + 4:scan + 4 + length]))
            scan += 4 + length
            if length < MAX_PACKET_CHUNK:
                break
        self.seq, self.last_seq = first_seq, seq
        del self._buf[:scan]
        self._pos = 0
        return b"".join(parts)


def build_packet(payload: bytes, seq: int) -> bytes:
    """Frame a payload, splitting it into 0xFFFFFF chunks (plus an empty one on an exact multiple)."""
    out = bytearray()
    off, i = 0, 0
    while True:
        chunk = payload[off:off + MAX_PACKET_CHUNK]
        out += len(chunk).to_bytes(3, "little") + bytes(((seq + i) & 0xFF,)) + chunk
        off += len(chunk)
        i += 1
        if len(chunk) < MAX_PACKET_CHUNK:
            return bytes(out)


def packet_count(payload_length: int) -> int:
    """How many chunks (sequence ids) a payload of this length takes on the wire."""
    return payload_length // MAX_PACKET_CHUNK + 1


def _lenenc(data: bytes | bytearray | memoryview, pos: int) -> tuple[int, int] | None:
    if pos >= len(data):
        return None
    b = data[pos]
    if b < 0xFB:
        return b, pos + 1
    size = {0xFC: 2, 0xFD: 3, 0xFE: 8}.get(b)
    if size is None or pos + 1 + size > len(data):
        return None
    return int.from_bytes(data[pos + 1:pos + 1 + size], "little"), pos + 1 + size


def read_lenenc(data: bytes | bytearray | memoryview, pos: int) -> tuple[int, int]:
    """Decode a length-encoded integer at pos: (value, next position). Raises FramingError when invalid."""
    if pos < 0 or pos > len(data):
        raise FramingError("length-encoded integer out of range")
    got = _lenenc(data, pos)
    if got is None:
        raise FramingError("invalid or truncated length-encoded integer")
    return got


def lenenc_int(v: int) -> bytes:
    """Encode an integer as a length-encoded integer."""
    if v < 0xFB:
        return bytes((v,))
    if v <= 0xFFFF:
        return b"\xfc" + v.to_bytes(2, "little")
    if v <= 0xFFFFFF:
        return b"\xfd" + v.to_bytes(3, "little")
    return b"\xfe" + v.to_bytes(8, "little")


class ResponseScanner:
    """Finds where one backend response ends in a stream of chunks (see the Cython class for the contract)."""

    def __init__(self) -> None:
        self.done = True
        self.kind = RESPONSE_RESULT
        self.deprecate_eof = False

    def start(self, kind: int, deprecate_eof: bool) -> None:
        self.kind, self.deprecate_eof, self.done = kind, deprecate_eof, False
        self.state = S_ROWS if kind in (RESPONSE_ROWS, RESPONSE_FIELD_LIST) else S_FIRST
        self._pending = bytearray()  # bytes of an incomplete packet
        self._continued = False
        self._pkt_len = 0
        self._head = b""
        self._countdown = 0
        self.status = self.warnings = self.affected_rows = self.last_insert_id = 0
        self.is_error = False
        self.error_code = self.rows = self.result_sets = self.last_seq = 0
        self.local_infile = False
        self.stmt_id = self.num_columns = self.num_params = self.packets = 0
        self.more_results_seen = False
        self.protocol_error: str | None = None

    def infile_sent(self, last_seq: int) -> None:
        """The file's packets (ended by an empty one, sequence id `last_seq`) went to the server: scan its answer."""
        if self.state != S_INFILE:
            raise ValueError("infile_sent() without a pending LOCAL INFILE request")
        self.local_infile = False
        self.done = False
        self.state = S_FIRST
        self.last_seq = last_seq & 0xFF

    def clean_status(self) -> int:
        """The final status flags when the response succeeded plainly (no ERR, no protocol error, no
        LAST_INSERT_ID), else -1: what a session reads once per statement instead of four attributes."""
        if self.is_error or self.protocol_error is not None or self.last_insert_id:
            return -1
        return self.status

    def mid_packet(self) -> bool:
        """True when the bytes consumed so far end inside a packet (a synthesized packet cannot follow)."""
        return bool(self._pending) or self._continued

    def feed(self, data: bytes) -> int:
        i = 0
        while i < len(data) and not self.done:
            # Gather one chunk's header.
            need_hdr = 4 - len(self._pending)
            if need_hdr > 0:
                take = min(need_hdr, len(data) - i)
                self._pending += data[i:i + take]
                i += take
                if len(self._pending) < 4:
                    break
                self.last_seq = self._pending[3]  # as the Cython scanner: known as soon as the header is
            length = int.from_bytes(self._pending[0:3], "little")
            have = len(self._pending) - 4
            take = min(length - have, len(data) - i)
            self._pending += data[i:i + take]
            i += take
            if len(self._pending) - 4 < length:
                break
            payload = bytes(self._pending[4:])
            self._pending = bytearray()
            if not self._continued:
                self._head = payload[:_HEAD_KEEP]
                self._pkt_len = length
            else:
                self._pkt_len += length
            if length == MAX_PACKET_CHUNK:
                self._continued = True
                continue
            self._continued = False
            self.packets += 1
            self._on_packet()
        return i

    def _classify(self) -> int:
        h = self._head
        if not h:
            return K_OTHER
        b = h[0]
        if b == 0x00 and self._pkt_len >= 7:
            return K_OK
        if b == 0xFF:
            return K_ERR
        if b == 0xFE and (self._pkt_len < 9 or (self.deprecate_eof and self._pkt_len < MAX_PACKET_CHUNK)):
            return K_EOF
        if b == 0xFB:
            return K_INFILE
        return K_OTHER

    def _read_ok(self, start: int) -> None:
        got = _lenenc(self._head, start)
        if got is None:
            return
        self.affected_rows, pos = got
        got = _lenenc(self._head, pos)
        if got is None:
            return
        self.last_insert_id, pos = got
        if len(self._head) - pos >= 4:
            self.status = int.from_bytes(self._head[pos:pos + 2], "little")
            self.warnings = int.from_bytes(self._head[pos + 2:pos + 4], "little")

    def _read_terminator(self) -> None:
        if self._pkt_len < 9 and not (self.deprecate_eof and self._pkt_len >= 7):
            if len(self._head) >= 5:
                self.warnings = int.from_bytes(self._head[1:3], "little")
                self.status = int.from_bytes(self._head[3:5], "little")
        else:
            self._read_ok(1)

    def _finish(self, error: str | None = None) -> None:
        if error is not None:
            self.protocol_error = error
        self.done = True
        self.state = S_DONE

    def _read_err(self) -> None:
        self.is_error = True
        if len(self._head) >= 3:
            self.error_code = int.from_bytes(self._head[1:3], "little")
        self._finish()

    def _end_of_result(self) -> None:
        self.result_sets += 1
        if self.status & _MORE_RESULTS:
            self.more_results_seen = True
            self.state = S_FIRST
        else:
            self._finish()

    def _on_packet(self) -> None:
        k = self._classify()
        st = self.state
        if self.kind == RESPONSE_ONE_PACKET:
            if k == K_ERR:
                return self._read_err()
            if k == K_EOF:
                self._read_terminator()
            return self._finish()
        if self.kind == RESPONSE_SIMPLE:
            if k == K_ERR:
                return self._read_err()
            if k == K_OK:
                self._read_ok(1)
                return self._finish()
            return self._finish("expected OK or ERR")
        if st == S_FIRST:
            if k == K_ERR:
                return self._read_err()
            if self.kind == RESPONSE_PREPARE:
                h = self._head
                if len(h) < 12 or h[0] != 0:
                    return self._finish("malformed COM_STMT_PREPARE response")
                self.stmt_id = int.from_bytes(h[1:5], "little")
                self.num_columns = int.from_bytes(h[5:7], "little")
                self.num_params = int.from_bytes(h[7:9], "little")
                self.warnings = int.from_bytes(h[10:12], "little")
                self._countdown = self.num_params
                self.state = S_PREP_PARAMS
                return self._prepare_advance()
            if k == K_OK:
                self._read_ok(1)
                return self._end_of_result()
            if k == K_INFILE:
                self.local_infile = True  # the server waits for the client's file: see infile_sent()
                self.done = True
                self.state = S_INFILE
                return None
            got = _lenenc(self._head, 0)
            if got is None or got[0] == 0:
                return self._finish("malformed column count")
            self.num_columns = self._countdown = got[0]
            self.state = S_COLDEFS
            return None
        if st == S_COLDEFS:
            self._countdown -= 1
            if self._countdown == 0:
                self.state = S_ROWS if self.deprecate_eof else S_COLDEF_EOF
            return None
        if st == S_COLDEF_EOF:
            if k != K_EOF:
                return self._finish("expected EOF after column definitions")
            self._read_terminator()
            if self.status & _CURSOR_EXISTS:
                self.result_sets += 1
                return self._finish()
            self.state = S_ROWS
            return None
        if st == S_ROWS:
            if k == K_ERR:
                return self._read_err()
            if k == K_EOF:
                self._read_terminator()
                if self.kind == RESPONSE_RESULT:
                    return self._end_of_result()
                return self._finish()
            self.rows += 1
            return None
        if st in (S_PREP_PARAMS, S_PREP_COLS):
            self._countdown -= 1
        elif st in (S_PREP_PARAMS_EOF, S_PREP_COLS_EOF):
            if k != K_EOF:
                return self._finish("expected EOF in COM_STMT_PREPARE response")
            self._countdown = -1
        else:
            return self._finish("packet after the end of the response")
        return self._prepare_advance()

    def _prepare_advance(self) -> None:
        while True:
            if self.state == S_PREP_PARAMS:
                if self._countdown > 0:
                    return
                if self.num_params and not self.deprecate_eof:
                    self.state, self._countdown = S_PREP_PARAMS_EOF, 0
                    return
                self.state, self._countdown = S_PREP_COLS, self.num_columns
                continue
            if self.state == S_PREP_PARAMS_EOF:
                if self._countdown == 0:
                    return
                self.state, self._countdown = S_PREP_COLS, self.num_columns
                continue
            if self.state == S_PREP_COLS:
                if self._countdown > 0:
                    return
                if self.num_columns and not self.deprecate_eof:
                    self.state, self._countdown = S_PREP_COLS_EOF, 0
                    return
                return self._finish()
            if self.state == S_PREP_COLS_EOF:
                if self._countdown == 0:
                    return
                return self._finish()
            return
