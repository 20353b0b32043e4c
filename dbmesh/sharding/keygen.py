"""Key generators: SNOWFLAKE (ShardingSphere's 41/10/12-bit layout and 2016-11-01 epoch) and UUID.

>>> ticks = iter([UTC_EPOCH_MS + 5, UTC_EPOCH_MS + 5, UTC_EPOCH_MS + 6])
>>> gen = SnowflakeKeyGenerator({"worker-id": 3}, clock_ms=lambda: next(ticks), epoch_ms=UTC_EPOCH_MS)
>>> [k.value for k in (gen.generate_key(), gen.generate_key(), gen.generate_key())]
[20983808, 20983809, 25178113]
>>> len(UuidKeyGenerator({}).generate_key())
32
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from dbmesh.sharding import values as jv
from dbmesh.sharding.base import Props
from dbmesh.sharding.errors import KeyGenerateError
from dbmesh.sharding.values import JNumber

UTC_EPOCH_MS = 1_477_958_400_000  # 2016-11-01T00:00:00Z
WORKER_ID_BITS = 10
SEQUENCE_BITS = 12
SEQUENCE_MASK = (1 << SEQUENCE_BITS) - 1
MAX_WORKER_ID = (1 << WORKER_ID_BITS) - 1
TIMESTAMP_SHIFT = WORKER_ID_BITS + SEQUENCE_BITS


def jvm_epoch_ms(tz: dt.tzinfo | None = None) -> int:
    """ShardingSphere's EPOCH: 2016-11-01 00:00 in the JVM's zone, using the zone's offset at start-up (UTC gives
    1477958400000, UTC+8 1477929600000). `tz` None means this process's local zone."""
    now = dt.datetime.now(tz).astimezone(tz)
    offset = now.utcoffset() or dt.timedelta(0)
    return UTC_EPOCH_MS - int(offset.total_seconds() * 1000)


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


# The worker id the registry reserved for this process (Cluster mode), None otherwise. ShardingSphere's cluster mode
# takes a Snowflake generator's worker id from the registry the same way, so that no two live instances share one.
_instance_worker_id: int | None = None


def set_instance_worker_id(worker_id: int | None) -> None:
    """Make every SNOWFLAKE generator use `worker_id` instead of its `worker-id` prop (None: the prop again).

    Called by the cluster governor on the event loop thread with the id it reserved in the registry.
    """
    global _instance_worker_id
    if worker_id is not None and not 0 <= worker_id <= MAX_WORKER_ID:
        raise ValueError(f"worker id {worker_id} is outside 0..{MAX_WORKER_ID}")
    _instance_worker_id = worker_id


def instance_worker_id() -> int | None:
    """The worker id set by `set_instance_worker_id`, if any."""
    return _instance_worker_id


class KeyGenerator:
    """Root of the key generators; `TYPE` is ShardingSphere's type name."""

    TYPE: ClassVar[str] = ""
    PROPS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, props: Mapping[str, Any], *, file: str = "<config>", path: str = "props") -> None:
        self.props = Props(self.TYPE, props, self.PROPS, file=file, path=path)

    def generate_key(self) -> JNumber | str:
        raise NotImplementedError


class SnowflakeKeyGenerator(KeyGenerator):
    """SNOWFLAKE: `(ms - EPOCH) << 22 | worker-id << 12 | sequence`, a Java Long, strictly increasing within a
    generator. Keys must match ShardingSphere's, so pass `epoch_ms` when ShardingSphere ran in another zone.

    Not thread-safe: dbmesh calls it from its event loop. A clock that moves back by less than
    `max-tolerate-time-difference-milliseconds` is waited out with a (blocking, at most that long) sleep."""

    TYPE = "SNOWFLAKE"
    PROPS = ("worker-id", "max-vibration-offset", "max-tolerate-time-difference-milliseconds")

    def __init__(self, props: Mapping[str, Any], *, file: str = "<config>", path: str = "props",
                 clock_ms: Callable[[], int] = _wall_clock_ms, sleep: Callable[[float], None] = time.sleep,
                 epoch_ms: int | None = None) -> None:
        super().__init__(props, file=file, path=path)
        self.configured_worker_id = self.props.integer("worker-id", 0, bits=64, minimum=0, maximum=MAX_WORKER_ID)
        self.max_vibration_offset = self.props.integer("max-vibration-offset", 1, minimum=0, maximum=SEQUENCE_MASK)
        self.max_tolerate_ms = self.props.integer("max-tolerate-time-difference-milliseconds", 10, minimum=0)
        self.epoch_ms = jvm_epoch_ms() if epoch_ms is None else epoch_ms
        self._clock = clock_ms
        self._sleep = sleep
        self._last_ms = -1
        self._sequence = 0
        self._sequence_offset = -1  # the first new millisecond starts at offset 0

    @property
    def worker_id(self) -> int:
        """The registry's worker id for this process when there is one, else the `worker-id` prop."""
        return self.configured_worker_id if _instance_worker_id is None else _instance_worker_id

    def generate_key(self) -> JNumber:
        now = self._clock()
        if now < self._last_ms:
            gap = self._last_ms - now
            if gap >= self.max_tolerate_ms:
                raise KeyGenerateError("SNOWFLAKE key generation", f"the clock moved back {gap} ms (last key at "
                                       f"{self._last_ms}, now {now}); tolerated: less than {self.max_tolerate_ms} ms")
            self._sleep(gap / 1000)
            now = max(self._clock(), self._last_ms)
        if now == self._last_ms:
            self._sequence = (self._sequence + 1) & SEQUENCE_MASK
            if self._sequence == 0:
                while now <= self._last_ms:  # 4096 keys in this millisecond: wait for the next one
                    now = self._clock()
        else:
            # New millisecond: start from an offset cycling 0..max-vibration-offset, so that low-traffic keys
            # do not all end in 0 (which would skew MOD sharding on the key).
            self._sequence_offset = 0 if self._sequence_offset >= self.max_vibration_offset else (
                self._sequence_offset + 1)
            self._sequence = self._sequence_offset
        self._last_ms = now
        elapsed = now - self.epoch_ms
        if not 0 <= elapsed < (1 << (63 - TIMESTAMP_SHIFT)):
            raise KeyGenerateError("SNOWFLAKE key generation", f"clock {now} ms is outside the 41-bit range after "
                                   f"the epoch {self.epoch_ms}")
        return jv.long((elapsed << TIMESTAMP_SHIFT) | (self.worker_id << SEQUENCE_BITS) | self._sequence)


class UuidKeyGenerator(KeyGenerator):
    """UUID: 128 random bits as 32 lower-case hex digits, no hyphens, version and variant bits not set (as
    ShardingSphere renders two random longs)."""

    TYPE = "UUID"

    def generate_key(self) -> str:
        return f"{secrets.randbits(128):032x}"


class _CaseInsensitive(dict[str, type[KeyGenerator]]):
    def __getitem__(self, key: str) -> type[KeyGenerator]:
        return super().__getitem__(key.upper())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.upper())

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.upper(), default)


KEY_GENERATORS: dict[str, type[KeyGenerator]] = _CaseInsensitive(
    (cls.TYPE, cls) for cls in (SnowflakeKeyGenerator, UuidKeyGenerator))
