"""MySQL protocol numbers: capability flags, status flags, commands and column types (include/mysql_com.h)."""

from __future__ import annotations

from enum import IntEnum, IntFlag


class Capability(IntFlag):
    LONG_PASSWORD = 0x1  # also CLIENT_MYSQL: MariaDB reads extended caps only when this is clear
    FOUND_ROWS = 0x2  # affected rows = rows matched, not rows changed
    LONG_FLAG = 0x4
    CONNECT_WITH_DB = 0x8
    NO_SCHEMA = 0x10
    COMPRESS = 0x20
    ODBC = 0x40
    LOCAL_FILES = 0x80
    IGNORE_SPACE = 0x100
    PROTOCOL_41 = 0x200
    INTERACTIVE = 0x400
    SSL = 0x800
    IGNORE_SIGPIPE = 0x1000
    TRANSACTIONS = 0x2000
    RESERVED = 0x4000
    SECURE_CONNECTION = 0x8000
    MULTI_STATEMENTS = 1 << 16
    MULTI_RESULTS = 1 << 17
    PS_MULTI_RESULTS = 1 << 18
    PLUGIN_AUTH = 1 << 19
    CONNECT_ATTRS = 1 << 20
    PLUGIN_AUTH_LENENC_CLIENT_DATA = 1 << 21
    CAN_HANDLE_EXPIRED_PASSWORDS = 1 << 22
    SESSION_TRACK = 1 << 23
    DEPRECATE_EOF = 1 << 24
    OPTIONAL_RESULTSET_METADATA = 1 << 25
    ZSTD_COMPRESSION = 1 << 26
    QUERY_ATTRIBUTES = 1 << 27
    MULTI_FACTOR_AUTH = 1 << 28


# What dbmesh offers clients. Deliberately absent: COMPRESS/ZSTD, QUERY_ATTRIBUTES,
# OPTIONAL_RESULTSET_METADATA, MULTI_FACTOR_AUTH. LOCAL_FILES is offered: dbmesh relays (or, on sharded
# databases, splits) the file a client chose to send, and never reads one itself. SESSION_TRACK is offered because MariaDB writes the OK
# packet's info as a length-prefixed string whatever the client negotiated: a client without SESSION_TRACK
# would read the prefix as text. Session-state entries in an OK packet describe the statement it answers,
# which ran for this client; dbmesh's own replay statements are never forwarded.
SERVER_CAPABILITIES = (
    Capability.LONG_PASSWORD | Capability.FOUND_ROWS | Capability.LONG_FLAG | Capability.CONNECT_WITH_DB
    | Capability.ODBC | Capability.IGNORE_SPACE | Capability.PROTOCOL_41 | Capability.INTERACTIVE
    | Capability.IGNORE_SIGPIPE | Capability.TRANSACTIONS | Capability.RESERVED | Capability.SECURE_CONNECTION
    | Capability.MULTI_STATEMENTS | Capability.MULTI_RESULTS | Capability.PS_MULTI_RESULTS | Capability.PLUGIN_AUTH
    | Capability.CONNECT_ATTRS | Capability.PLUGIN_AUTH_LENENC_CLIENT_DATA | Capability.CAN_HANDLE_EXPIRED_PASSWORDS
    | Capability.DEPRECATE_EOF | Capability.SESSION_TRACK | Capability.LOCAL_FILES
)

# Client flags that change how a backend formats its replies: a backend connection serves only sessions whose
# flags agree on these, so its bytes can be forwarded unchanged (capabilities cannot change after the handshake).
# LOCAL_FILES is among them so that a data source asks for a LOAD DATA LOCAL file only on behalf of a client that
# negotiated it; any other client gets the server's own refusal.
BACKEND_SHAPING_CAPABILITIES = (
    Capability.FOUND_ROWS | Capability.MULTI_STATEMENTS | Capability.DEPRECATE_EOF | Capability.IGNORE_SPACE
    | Capability.ODBC | Capability.SESSION_TRACK | Capability.LOCAL_FILES
)
# Always requested from backends, whatever the client asked.
BACKEND_BASE_CAPABILITIES = (
    Capability.LONG_PASSWORD | Capability.LONG_FLAG | Capability.PROTOCOL_41 | Capability.TRANSACTIONS
    | Capability.SECURE_CONNECTION | Capability.MULTI_RESULTS | Capability.PS_MULTI_RESULTS | Capability.PLUGIN_AUTH
    | Capability.PLUGIN_AUTH_LENENC_CLIENT_DATA | Capability.CONNECT_ATTRS | Capability.CONNECT_WITH_DB
)


class MariaDBCapability(IntFlag):
    """MariaDB's capability bits 32-63 (given here shifted down by 32, as they travel in their own 4 bytes)."""

    PROGRESS = 1 << 0  # ERR packets with code 0xFFFF report progress: never offered (they look like an end)
    COM_MULTI = 1 << 1
    STMT_BULK_OPERATIONS = 1 << 2
    EXTENDED_METADATA = 1 << 3  # column definitions carry a data type name / format (json, uuid, inet6 ...)
    CACHE_METADATA = 1 << 4  # result sets may omit column definitions: never offered (changes the grammar)


# MariaDB capabilities dbmesh passes through; they only add bytes inside column definitions, which are forwarded.
MARIADB_OFFERED = MariaDBCapability.EXTENDED_METADATA


class Status(IntFlag):
    IN_TRANS = 0x1
    AUTOCOMMIT = 0x2
    MORE_RESULTS_EXISTS = 0x8
    NO_GOOD_INDEX_USED = 0x10
    NO_INDEX_USED = 0x20
    CURSOR_EXISTS = 0x40
    LAST_ROW_SENT = 0x80
    DB_DROPPED = 0x100
    NO_BACKSLASH_ESCAPES = 0x200
    METADATA_CHANGED = 0x400
    QUERY_WAS_SLOW = 0x800
    PS_OUT_PARAMS = 0x1000
    IN_TRANS_READONLY = 0x2000
    SESSION_STATE_CHANGED = 0x4000


class Command(IntEnum):
    SLEEP = 0x00
    QUIT = 0x01
    INIT_DB = 0x02
    QUERY = 0x03
    FIELD_LIST = 0x04
    CREATE_DB = 0x05
    DROP_DB = 0x06
    REFRESH = 0x07
    SHUTDOWN = 0x08
    STATISTICS = 0x09
    PROCESS_INFO = 0x0A
    CONNECT = 0x0B
    PROCESS_KILL = 0x0C
    DEBUG = 0x0D
    PING = 0x0E
    TIME = 0x0F
    DELAYED_INSERT = 0x10
    CHANGE_USER = 0x11
    BINLOG_DUMP = 0x12
    TABLE_DUMP = 0x13
    CONNECT_OUT = 0x14
    REGISTER_SLAVE = 0x15
    STMT_PREPARE = 0x16
    STMT_EXECUTE = 0x17
    STMT_SEND_LONG_DATA = 0x18
    STMT_CLOSE = 0x19
    STMT_RESET = 0x1A
    SET_OPTION = 0x1B
    STMT_FETCH = 0x1C
    DAEMON = 0x1D
    BINLOG_DUMP_GTID = 0x1E
    RESET_CONNECTION = 0x1F
    STMT_BULK_EXECUTE = 0xFA  # MariaDB


class ColumnType(IntEnum):
    DECIMAL = 0x00
    TINY = 0x01
    SHORT = 0x02
    LONG = 0x03
    FLOAT = 0x04
    DOUBLE = 0x05
    NULL = 0x06
    TIMESTAMP = 0x07
    LONGLONG = 0x08
    INT24 = 0x09
    DATE = 0x0A
    TIME = 0x0B
    DATETIME = 0x0C
    YEAR = 0x0D
    VARCHAR = 0x0F
    BIT = 0x10
    JSON = 0xF5
    NEWDECIMAL = 0xF6
    ENUM = 0xF7
    SET = 0xF8
    TINY_BLOB = 0xF9
    MEDIUM_BLOB = 0xFA
    LONG_BLOB = 0xFB
    BLOB = 0xFC
    VAR_STRING = 0xFD
    STRING = 0xFE
    GEOMETRY = 0xFF


# Column definition flags used by locally generated result sets.
NOT_NULL_FLAG = 0x1
BINARY_FLAG = 0x80
NUM_FLAG = 0x8000
UNSIGNED_FLAG = 0x20

# Collation ids (utf8mb4_general_ci is what MariaDB 10.x greets with; 63 = binary).
UTF8MB4_GENERAL_CI = 45
BINARY_COLLATION = 63

NATIVE_PASSWORD = "mysql_native_password"
CACHING_SHA2_PASSWORD = "caching_sha2_password"
CLEAR_PASSWORD = "mysql_clear_password"
