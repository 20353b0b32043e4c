"""Key generators (dbmesh.sharding.keygen): SNOWFLAKE bit layout, epoch, sequence, vibration, clock skew; UUID."""

from __future__ import annotations

import datetime as dt
import doctest
import re
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dbmesh.errors import ConfigError
from dbmesh.sharding import keygen
from dbmesh.sharding.errors import KeyGenerateError
from dbmesh.sharding.keygen import (
    KEY_GENERATORS,
    UTC_EPOCH_MS,
    SnowflakeKeyGenerator,
    UuidKeyGenerator,
    jvm_epoch_ms,
)
from dbmesh.sharding.values import Kind


class FakeClock:
    """Millisecond readings from a script; sleeping advances the clock."""

    def __init__(self, readings: list[int]) -> None:
        self.readings: Iterator[int] = iter(readings)
        self.now = readings[0]
        self.slept: list[float] = []

    def __call__(self) -> int:
        self.now = next(self.readings, self.now)
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def split(key: int) -> tuple[int, int, int]:
    return key >> 22, (key >> 12) & 0x3FF, key & 0xFFF


def next_key(gen: SnowflakeKeyGenerator) -> int:
    value = gen.generate_key().value
    assert isinstance(value, int)
    return value


def make(readings: list[int], **props: object) -> tuple[SnowflakeKeyGenerator, FakeClock]:
    clock = FakeClock([UTC_EPOCH_MS + r for r in readings])
    return SnowflakeKeyGenerator(props, clock_ms=clock, sleep=clock.sleep, epoch_ms=UTC_EPOCH_MS), clock


def test_epoch_is_2016_11_01_in_the_zone() -> None:
    assert UTC_EPOCH_MS == int(dt.datetime(2016, 11, 1, tzinfo=dt.UTC).timestamp() * 1000)
    assert jvm_epoch_ms(dt.UTC) == 1477958400000
    assert jvm_epoch_ms(dt.timezone(dt.timedelta(hours=8))) == 1477929600000


def test_layout_worker_id_and_type() -> None:
    gen, _ = make([1000], **{"worker-id": 1023})
    key = gen.generate_key()
    assert key.kind is Kind.LONG  # SNOWFLAKE keys are Longs
    assert isinstance(key.value, int)
    assert split(key.value) == (1000, 1023, 0)
    assert key.value == (1000 << 22) | (1023 << 12)


def test_sequence_and_vibration() -> None:
    gen, _ = make([5, 5, 5, 6, 7, 8, 8])
    keys = [split(next_key(gen)) for _ in range(7)]
    # Same millisecond: +1. New millisecond: offset cycling 0..max-vibration-offset (default 1).
    assert keys == [(5, 0, 0), (5, 0, 1), (5, 0, 2), (6, 0, 1), (7, 0, 0), (8, 0, 1), (8, 0, 2)]


def test_vibration_offset_prop() -> None:
    gen, _ = make([1, 2, 3, 4, 5], **{"max-vibration-offset": 2})
    assert [split(next_key(gen))[2] for _ in range(5)] == [0, 1, 2, 0, 1]
    zero, _ = make([1, 2, 3], **{"max-vibration-offset": 0})
    assert [split(next_key(zero))[2] for _ in range(3)] == [0, 0, 0]


def test_sequence_wrap_waits_for_the_next_millisecond() -> None:
    gen, _ = make([9] * 4097 + [9, 9, 10])
    keys = [split(next_key(gen)) for _ in range(4097)]
    assert keys[0] == (9, 0, 0) and keys[4095] == (9, 0, 4095)
    assert keys[4096] == (10, 0, 0)  # wrapped to 0, spun until the clock moved on


def test_clock_back_within_tolerance_sleeps() -> None:
    gen, clock = make([100, 95, 100])
    first = next_key(gen)
    second = next_key(gen)
    assert clock.slept == [0.005]
    assert second > first
    assert split(second) == (100, 0, 1)


def test_clock_back_beyond_tolerance_fails() -> None:
    gen, _ = make([100, 90])  # a 10 ms gap: the tolerance (10) is strict
    gen.generate_key()
    with pytest.raises(KeyGenerateError, match="clock moved back 10 ms"):
        gen.generate_key()
    lenient, _ = make([100, 90], **{"max-tolerate-time-difference-milliseconds": 11})
    lenient.generate_key()
    assert split(next_key(lenient))[0] == 100


@given(st.lists(st.integers(-9, 3), min_size=1, max_size=300))
def test_keys_strictly_increase(steps: list[int]) -> None:
    readings = [1000]
    for step in steps:
        readings.append(readings[-1] + step)
    gen, _ = make(readings)
    last = -1
    for _ in readings:
        try:
            key = next_key(gen)
        except KeyGenerateError:
            continue
        assert key > last
        last = key


@pytest.mark.parametrize(("props", "key"), [
    ({"worker-id": 1024}, "props.worker-id"),
    ({"worker-id": -1}, "props.worker-id"),
    ({"max-vibration-offset": 4096}, "props.max-vibration-offset"),
    ({"max-tolerate-time-difference-milliseconds": "x"}, "props.max-tolerate-time-difference-milliseconds"),
    ({"worker_id": 1}, "props.worker_id"),
])
def test_bad_props(props: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        SnowflakeKeyGenerator(props)
    assert info.value.key == key


def test_real_clock_keys_increase() -> None:
    gen = SnowflakeKeyGenerator({"worker-id": 7})
    keys = [next_key(gen) for _ in range(5000)]
    assert keys == sorted(set(keys))
    assert all(split(k)[1] == 7 for k in keys)


def test_instance_worker_id_from_the_registry_wins_over_the_prop() -> None:
    gen, _ = make([5, 5, 6, 7], **{"worker-id": 3})
    try:
        keygen.set_instance_worker_id(517)
        assert keygen.instance_worker_id() == 517
        assert [split(next_key(gen))[1] for _ in range(2)] == [517, 517]  # also for generators made before
        other, _ = make([9], **{"worker-id": 1})
        assert split(next_key(other))[1] == 517
    finally:
        keygen.set_instance_worker_id(None)
    assert split(next_key(gen))[1] == 3 and gen.configured_worker_id == 3
    with pytest.raises(ValueError):
        keygen.set_instance_worker_id(1024)
    assert keygen.instance_worker_id() is None


def test_uuid_format() -> None:
    gen = UuidKeyGenerator({})
    keys = {gen.generate_key() for _ in range(1000)}
    assert len(keys) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{32}", k) for k in keys)
    # Version and variant bits are not set, so the version nibble varies.
    assert len({k[12] for k in keys}) > 1


def test_registry() -> None:
    assert KEY_GENERATORS["snowflake"] is SnowflakeKeyGenerator and KEY_GENERATORS["Uuid"] is UuidKeyGenerator


def test_module_doctests() -> None:
    result = doctest.testmod(keygen)
    assert result.attempted > 0 and result.failed == 0
