"""Pure-Python twin of pg_framing.pyx: the same framing semantics, for fuzzing, debugging and cross-checking."""

from __future__ import annotations

MAX_STARTUP_PACKET = 10000
DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024
_STARTUP_MIN = 8
_ERROR_HEAD = 256
_TAG_HEAD = 65
_TAG_MAX = 64

_Z, _D, _E, _C, _G, _H, _W, _S, _A = (ord(c) for c in "ZDECGHWSA")
_Q, _B, _P = (ord(c) for c in "QBP")


class FramingError(ValueError):
    """The byte stream does not form valid PostgreSQL messages (or breaks a configured limit)."""


class MessageReader:
    """Queues incoming bytes and hands out whole messages: untyped startup packets, then typed messages."""

    def __init__(self, max_message: int = DEFAULT_MAX_MESSAGE) -> None:
        self._buf = bytearray()
        self._pos = 0
        self.max_message = max_message

    def feed(self, data: bytes) -> None:
        self._buf += data

    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def take_buffered(self) -> bytes:
        """Remove and return the bytes not yet read (bytes that followed an SSLRequest must be refused)."""
        rest = bytes(self._buf[self._pos:])
        self._buf = bytearray()
        self._pos = 0
        return rest

    def read_startup(self) -> bytes | None:
        """Next startup-phase packet body (after its int32 length), or None when more bytes are needed."""
        buf, pos = self._buf, self._pos
        if len(buf) - pos < 4:
            return None
        length = int.from_bytes(buf[pos:pos + 4], "big")
        if length < _STARTUP_MIN or length > MAX_STARTUP_PACKET:
            raise FramingError(f"invalid startup packet length {length}")
        if len(buf) - pos < length:
            return None
        body = bytes(buf[pos + 4:pos + length])
        del self._buf[:pos + length]
        self._pos = 0
        return body

    def read(self) -> tuple[int, bytes] | None:
        """Next typed message as (type byte, payload), or None when more bytes are needed."""
        buf, pos = self._buf, self._pos
        if len(buf) - pos < 5:
            return None
        length = int.from_bytes(buf[pos + 1:pos + 5], "big")
        if length < 4:
            raise FramingError(f"invalid message length {length}")
        if length - 4 > self.max_message:
            raise FramingError(f"message of {length - 4} bytes exceeds the limit of {self.max_message}")
        if len(buf) - pos - 1 < length:
            return None
        kind = buf[pos]
        payload = bytes(buf[pos + 5:pos + 1 + length])
        del self._buf[:pos + 1 + length]
        self._pos = 0
        return kind, payload

    def request_kind(self, data: bytes) -> int:
        """ord('Q') for exactly one Query message, ord('B') for exactly Bind, Describe (portal)/Execute messages
        (at least one), Sync, ord('P') for the same after a Parse; 0 for anything else or when bytes are buffered
        (see the Cython method)."""
        n = len(data)
        if self._pos != len(self._buf) or n < 5:
            return 0
        kind = data[0]
        length = int.from_bytes(data[1:5], "big")
        if length < 4 or length - 4 > self.max_message:
            return 0
        if kind == _Q:
            return _Q if length + 1 == n else 0
        pos = 0
        if kind == _P:
            pos = length + 1
            if n - pos < 5 or data[pos] != _B:
                return 0
            length = int.from_bytes(data[pos + 1:pos + 5], "big")
            if length < 4 or length - 4 > self.max_message:
                return 0
        elif kind != _B:
            return 0
        pos, middle = pos + length + 1, 0
        while n - pos >= 5:
            t = data[pos]
            length = int.from_bytes(data[pos + 1:pos + 5], "big")
            if length < 4 or length - 4 > self.max_message or n - pos - 1 < length:
                return 0
            if t == _S:
                return kind if middle and n - pos - 1 == length else 0
            if t == _E or (t == _D and length > 4 and data[pos + 5] == _P):
                middle += 1
            else:
                return 0
            pos += 1 + length
        return 0


class BackendScanner:
    """Follows a backend-to-client byte stream without keeping it (see the Cython class for the contract)."""

    def __init__(self) -> None:
        self.target = 0
        self.reset()

    def reset(self) -> None:
        self._hdr = bytearray()
        self._in_payload = False
        self._remaining = 0
        self._msg_len = 0
        self._head = bytearray()
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
        self.protocol_error: str | None = None

    def mid_message(self) -> bool:
        """True when the bytes consumed so far end inside a message (nothing may be injected here)."""
        return self._in_payload or bool(self._hdr)

    def feed(self, data: bytes) -> int:
        i, n = 0, len(data)
        while i < n:
            if self.protocol_error is not None:
                break
            if self.target > 0 and self.ready_count >= self.target:
                break
            if not self._in_payload:
                take = min(5 - len(self._hdr), n - i)
                self._hdr += data[i:i + take]
                i += take
                if len(self._hdr) < 5:
                    break
                t = self._hdr[0]
                length = int.from_bytes(self._hdr[1:5], "big")
                self._hdr = bytearray()
                self.last_type = t
                if length < 4:
                    self.protocol_error = f"invalid backend message length {length}"
                    break
                self._msg_len = self._remaining = length - 4
                self._head = bytearray()
                want = {_E: _ERROR_HEAD, _C: _TAG_HEAD, _Z: 1}.get(t, 0)
                self._head_want = min(want, self._remaining)
                self._in_payload = True
            if len(self._head) < self._head_want:
                take = min(self._head_want - len(self._head), n - i)
                self._head += data[i:i + take]
                self._remaining -= take
                i += take
                if len(self._head) < self._head_want:
                    break
            take = min(self._remaining, n - i)
            i += take
            self._remaining -= take
            if self._remaining:
                break
            self._in_payload = False
            self._on_message()
        return i

    def _on_message(self) -> None:
        t = self.last_type
        self.messages += 1
        if t == _D:
            self.rows += 1
        elif t == _Z:
            self.ready_count += 1
            self.tx_status = self._head[0] if self._head else 0
            self.copy_in = self.copy_out = self.copy_both = False
        elif t == _E:
            self.errors += 1
            self._read_error_sqlstate()
        elif t == _C:
            tag_len = self._msg_len
            if 0 < tag_len <= _TAG_HEAD and self._head[tag_len - 1] == 0:
                tag_len -= 1
            self.last_command_tag = bytes(self._head[:tag_len]) if tag_len <= _TAG_MAX else b""
        elif t == _G:
            self.copy_in = True
        elif t == _H:
            self.copy_out = True
        elif t == _W:
            self.copy_both = True
        elif t == _S:
            self.parameter_status_changed = True
        elif t == _A:
            self.notifications += 1

    def _read_error_sqlstate(self) -> None:
        head, pos = self._head, 0
        self.last_error_sqlstate = ""
        while pos < len(head):
            code = head[pos]
            if code == 0:
                return
            pos += 1
            end = head.find(b"\x00", pos)
            if end < 0:
                return
            if code == ord("C"):
                self.last_error_sqlstate = bytes(head[pos:end]).decode("ascii", "replace")
                return
            pos = end + 1


def build_message(type: int, payload: bytes) -> bytes:
    """Frame a typed message: type byte, int32 length (counting itself), payload."""
    if not 0 <= type <= 255:
        raise FramingError(f"message type {type} is not a byte")
    if len(payload) > 0x7FFFFFFF - 4:
        raise FramingError(f"message of {len(payload)} bytes is too large to frame")
    return bytes((type,)) + (len(payload) + 4).to_bytes(4, "big") + payload


def _bind_name(data: bytes) -> tuple[int, int] | None:
    """(start, end) of the statement name of the whole Bind message `data` starts with, or None."""
    if len(data) < 5 or data[0] != _B:
        return None
    end = 1 + int.from_bytes(data[1:5], "big")
    if end < 5 or end > len(data):
        return None
    portal_end = data.find(b"\x00", 5, end)
    if portal_end < 0:
        return None
    name_end = data.find(b"\x00", portal_end + 1, end)
    if name_end < 0:
        return None
    return portal_end + 1, name_end


def bind_statement(data: bytes) -> bytes | None:
    """The statement name of the Bind message `data` starts with, or None when it is not whole or malformed."""
    span = _bind_name(data)
    return None if span is None else data[span[0]:span[1]]


def rename_bind(data: bytes, name: bytes) -> bytes:
    """`data` with the statement name of the Bind message it starts with replaced by `name`, the rest unchanged."""
    span = _bind_name(data)
    if span is None:
        raise FramingError("not a whole Bind message with a statement name")
    start, end = span
    length = int.from_bytes(data[1:5], "big") - (end - start) + len(name)
    if length > 0x7FFFFFFF:
        raise FramingError(f"message of {length} bytes is too large to frame")
    return b"B" + length.to_bytes(4, "big") + data[5:start] + name + data[end:]


def build_startup(body: bytes) -> bytes:
    """Frame a startup-phase packet (StartupMessage, SSLRequest, ...): int32 length (counting itself), body."""
    n = len(body) + 4
    if n > MAX_STARTUP_PACKET or n < _STARTUP_MIN:
        raise FramingError(f"startup packet of {n} bytes is outside {_STARTUP_MIN}..{MAX_STARTUP_PACKET}")
    return n.to_bytes(4, "big") + body
