"""Type stubs for the Cython MySQL framing layer."""

MAX_PACKET_CHUNK: int
RESPONSE_RESULT: int
RESPONSE_PREPARE: int
RESPONSE_SIMPLE: int
RESPONSE_ROWS: int
RESPONSE_FIELD_LIST: int
RESPONSE_ONE_PACKET: int

class FramingError(ValueError): ...

class PacketReader:
    max_payload: int
    seq: int
    last_seq: int
    def __init__(self, max_payload: int = ...) -> None: ...
    def feed(self, data: bytes) -> None: ...
    def buffered(self) -> int: ...
    def whole_command(self, data: bytes) -> bool: ...
    def take_buffered(self) -> bytes: ...
    def read(self) -> bytes | None: ...

class ResponseScanner:
    kind: int
    deprecate_eof: bool
    done: bool
    state: int
    status: int
    warnings: int
    affected_rows: int
    last_insert_id: int
    is_error: bool
    error_code: int
    rows: int
    result_sets: int
    last_seq: int
    local_infile: bool
    stmt_id: int
    num_columns: int
    num_params: int
    packets: int
    more_results_seen: bool
    protocol_error: str | None
    def __init__(self) -> None: ...
    def start(self, kind: int, deprecate_eof: bool) -> None: ...
    def infile_sent(self, last_seq: int) -> None: ...
    def mid_packet(self) -> bool: ...
    def feed(self, data: bytes) -> int: ...

def build_packet(payload: bytes, seq: int) -> bytes: ...
def packet_count(payload_length: int) -> int: ...
def read_lenenc(data: bytes | bytearray | memoryview, pos: int) -> tuple[int, int]: ...
def lenenc_int(v: int) -> bytes: ...
