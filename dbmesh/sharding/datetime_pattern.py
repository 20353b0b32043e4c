"""The subset of Java `DateTimeFormatter.ofPattern` that interval sharding uses: numeric fields and literals.

>>> p = JavaDateTimePattern("yyyy-MM-dd HH:mm:ss")
>>> p.temporal
<Temporal.LOCAL_DATE_TIME: 1>
>>> v = p.parse("2024-02-29 13:05:00")
>>> v
datetime.datetime(2024, 2, 29, 13, 5)
>>> JavaDateTimePattern("yyyyMM").format(v)
'202402'
>>> add_units(dt.datetime(2024, 1, 31), 1, "MONTHS", Temporal.LOCAL_DATE_TIME)
datetime.datetime(2024, 2, 29, 0, 0)
"""

from __future__ import annotations

import calendar
import datetime as dt
import enum
import re
from dataclasses import dataclass

# Pattern letters dbmesh implements (numeric forms only), mapped to field names.
_FIELDS = {"y": "year", "u": "year", "M": "month", "L": "month", "d": "day", "H": "hour", "m": "minute",
           "s": "second", "S": "fraction"}


class Temporal(enum.Enum):
    """The java.time type a pattern's fields resolve to (what ShardingSphere's INTERVAL picks for `lower`)."""

    LOCAL_DATE_TIME = 1
    LOCAL_DATE = 2
    YEAR_MONTH = 3
    YEAR = 4


class PatternError(ValueError):
    """The pattern uses a letter or form outside the supported subset."""


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    width: int  # letters in the pattern


class JavaDateTimePattern:
    """A parsed pattern: formats `datetime` values and parses text strictly (SMART resolving of invalid dates
    such as Feb 30 is not modelled: such text is refused)."""

    def __init__(self, pattern: str, *, need_temporal: bool = True) -> None:
        self.pattern = pattern
        self.items: list[_Field | str] = _tokenize(pattern)
        fields = {i.name for i in self.items if isinstance(i, _Field)}
        self.fields = frozenset(fields)
        self.temporal: Temporal | None = None
        if {"year", "month", "day", "hour"} <= fields:
            self.temporal = Temporal.LOCAL_DATE_TIME
        elif {"year", "month", "day"} <= fields and not fields & {"minute", "second", "fraction"}:
            self.temporal = Temporal.LOCAL_DATE
        elif fields == {"year", "month"}:
            self.temporal = Temporal.YEAR_MONTH
        elif fields == {"year"}:
            self.temporal = Temporal.YEAR
        elif need_temporal:
            raise PatternError(f"pattern {pattern!r} does not resolve to LocalDateTime, LocalDate, YearMonth or "
                               "Year (Month, LocalTime and partial patterns are not supported)")
        self._regex = re.compile("".join(_regex_part(item, self.items, n) for n, item in enumerate(self.items)))

    def format(self, v: dt.datetime | dt.date) -> str:
        """Format like `DateTimeFormatter.format` (zero-padded to the letter count)."""
        out = []
        for item in self.items:
            if isinstance(item, str):
                out.append(item)
                continue
            if item.name == "fraction":
                micro = v.microsecond if isinstance(v, dt.datetime) else 0
                out.append(f"{micro:06d}{'0' * 3}"[: item.width])
                continue
            value = _field_of(v, item.name)
            if item.name == "year" and item.width == 2:
                out.append(f"{value % 100:02d}")
            else:
                out.append(f"{value:0{item.width}d}")
        return "".join(out)

    def parse(self, text: str, *, partial: bool = False) -> dt.datetime:
        """Parse the whole text. With `partial`, missing fields take their minimum (month 1, day 1, midnight)
        whatever the pattern's type needs; otherwise every field must be present."""
        if self.temporal is None and not partial:
            raise ValueError(f"pattern {self.pattern!r} cannot be parsed into a date/time")
        match = self._regex.fullmatch(text)
        if not match:
            raise ValueError(f"text {text!r} could not be parsed with pattern {self.pattern!r}")
        values: dict[str, int] = {}
        for name, raw in match.groupdict().items():
            if raw is None:
                continue
            field = name.rstrip("0123456789")
            if field == "fraction":
                number = int(raw.ljust(6, "0")[:6])  # nanoseconds beyond micro precision are dropped
            elif field == "year2":
                field, number = "year", 2000 + int(raw)
            else:
                number = int(raw)
            if field in values and values[field] != number:
                raise ValueError(f"text {text!r} gives two values for {field}")
            values[field] = number
        try:
            return dt.datetime(values.get("year", 1), values.get("month", 1), values.get("day", 1),
                               values.get("hour", 0), values.get("minute", 0), values.get("second", 0),
                               values.get("fraction", 0))
        except ValueError as exc:
            raise ValueError(f"text {text!r} is not a valid date/time for pattern {self.pattern!r}: {exc}") from exc


def _field_of(v: dt.datetime | dt.date, name: str) -> int:
    if name in ("hour", "minute", "second"):
        if not isinstance(v, dt.datetime):
            return 0
    return int(getattr(v, name))


def _tokenize(pattern: str) -> list[_Field | str]:
    items: list[_Field | str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "'":
            end = i + 1
            text = []
            while True:
                if end >= len(pattern):
                    raise PatternError(f"pattern {pattern!r}: unterminated quote")
                if pattern[end] == "'":
                    if end + 1 < len(pattern) and pattern[end + 1] == "'":
                        text.append("'")
                        end += 2
                        continue
                    break
                text.append(pattern[end])
                end += 1
            items.append("".join(text) if text or end > i + 1 else "'")
            i = end + 1
            continue
        if c.isascii() and c.isalpha():
            j = i
            while j < len(pattern) and pattern[j] == c:
                j += 1
            width = j - i
            if c not in _FIELDS:
                raise PatternError(f"pattern {pattern!r}: letter {c!r} is not supported (only y u M d H m s S)")
            if c in "ML" and width > 2:
                raise PatternError(f"pattern {pattern!r}: month names ({c * width}) are not supported")
            if c in "yu" and width not in (2, 4):
                raise PatternError(f"pattern {pattern!r}: {c * width} is not supported (use {c * 4} or {c * 2})")
            if c in "dHms" and width > 2:
                raise PatternError(f"pattern {pattern!r}: too many pattern letters: {c * width}")
            if c == "S" and width > 9:
                raise PatternError(f"pattern {pattern!r}: too many pattern letters: {c * width}")
            items.append(_Field(_FIELDS[c], width))
            i = j
            continue
        if c in "[]{}#":
            raise PatternError(f"pattern {pattern!r}: {c!r} is reserved")
        items.append(c)
        i += 1
    return items


def _regex_part(item: _Field | str, items: list[_Field | str], n: int) -> str:
    if isinstance(item, str):
        return re.escape(item)
    name = f"{item.name}{n}"
    if item.name == "year":
        if item.width == 2:
            return f"(?P<year2{n}>\\d{{2}})"
        return f"(?P<{name}>\\d{{4}})"
    if item.name == "fraction" or item.width == 2:
        return f"(?P<{name}>\\d{{{item.width}}})"
    # One letter: one or two digits, unless the next item is a number too (adjacent value parsing).
    following = items[n + 1] if n + 1 < len(items) else None
    return f"(?P<{name}>\\d)" if isinstance(following, _Field) else f"(?P<{name}>\\d{{1,2}})"


# ChronoUnit names (ShardingSphere's INTERVAL algorithm takes them case-insensitively).
_FIXED = {"NANOS": dt.timedelta(microseconds=0.001), "MICROS": dt.timedelta(microseconds=1),
          "MILLIS": dt.timedelta(milliseconds=1), "SECONDS": dt.timedelta(seconds=1),
          "MINUTES": dt.timedelta(minutes=1), "HOURS": dt.timedelta(hours=1), "HALF_DAYS": dt.timedelta(hours=12),
          "DAYS": dt.timedelta(days=1), "WEEKS": dt.timedelta(weeks=1)}
_MONTHS = {"MONTHS": 1, "YEARS": 12, "DECADES": 120, "CENTURIES": 1200, "MILLENNIA": 12000}
CHRONO_UNITS = (*_FIXED, *_MONTHS)
# ChronoUnit.toString() spellings (the INTERVAL *expression* requires these exactly).
CHRONO_UNIT_DISPLAY = {"Nanos": "NANOS", "Micros": "MICROS", "Millis": "MILLIS", "Seconds": "SECONDS",
                       "Minutes": "MINUTES", "Hours": "HOURS", "HalfDays": "HALF_DAYS", "Days": "DAYS",
                       "Weeks": "WEEKS", "Months": "MONTHS", "Years": "YEARS", "Decades": "DECADES",
                       "Centuries": "CENTURIES", "Millennia": "MILLENNIA"}
_SUPPORTED = {Temporal.LOCAL_DATE_TIME: set(CHRONO_UNITS) - {"NANOS"},
              Temporal.LOCAL_DATE: {"DAYS", "WEEKS", *_MONTHS},
              Temporal.YEAR_MONTH: set(_MONTHS),
              Temporal.YEAR: set(_MONTHS) - {"MONTHS"}}


def check_unit(unit: str, temporal: Temporal | None) -> None:
    """Raise ValueError when java.time would refuse `temporal.plus(n, unit)` (or dbmesh cannot model it)."""
    if unit not in CHRONO_UNITS:
        raise ValueError(f"unknown or unsupported time unit {unit!r} (one of {', '.join(CHRONO_UNITS)})")
    if temporal is None or unit not in _SUPPORTED[temporal]:
        raise ValueError(f"Unsupported unit: {unit} for a {temporal.name if temporal else 'partial'} value")


def add_units(v: dt.datetime, amount: int, unit: str, temporal: Temporal | None) -> dt.datetime:
    """`temporal.plus(amount, unit)`: month arithmetic clamps the day to the month's end, as java.time does."""
    check_unit(unit, temporal)
    if unit in _FIXED:
        return v + _FIXED[unit] * amount
    months = v.year * 12 + (v.month - 1) + amount * _MONTHS[unit]
    year, month = divmod(months, 12)
    if not 1 <= year <= 9999:
        raise OverflowError(f"year {year} is out of range")
    day = min(v.day, calendar.monthrange(year, month + 1)[1])
    return v.replace(year=year, month=month + 1, day=day)
