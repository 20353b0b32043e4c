"""Sharding values as ShardingSphere sees them: Java number types, Java toString/hashCode, Groovy arithmetic.

ShardingSphere's results depend on the *Java type* of a value, not only on its number: `Integer -7` and
`Long -7` hash differently, `Integer % ` keeps the sign of the dividend while `BigInteger %` never does, and
`7.0 % 2` renders as `1.0`. Python's `int` loses that distinction, so numbers travel as `JNumber(kind, value)`.

>>> a = from_python(-7)
>>> a
JNumber(kind=<Kind.INTEGER: 3>, value=-7)
>>> java_str(groovy_mod(a, from_python(2)))
'-1'
>>> java_str(groovy_mod(big_integer(-7), from_python(2)))
'1'
>>> java_hash_code("hello"), java_hash_code(long(-7)), java_hash_code(big_decimal("7.0"))
(99162322, 6, 2171)
>>> java_str(groovy_div(from_python(1), from_python(3)))
'0.3333333333'
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import math
import struct
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import TypeAlias

from dbmesh.sharding.errors import ShardingError

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1

# Enough digits that BigDecimal +, -, * and remainder are exact for any operand an expression can build
# (expressions are length-capped); Inexact is trapped so a silent rounding would surface as an error.
_EXACT = decimal.Context(prec=100_000, rounding=decimal.ROUND_HALF_UP, Emax=decimal.MAX_EMAX,
                         Emin=decimal.MIN_EMIN, traps=[decimal.Inexact, decimal.InvalidOperation,
                                                       decimal.DivisionByZero, decimal.Overflow])


class Kind(enum.Enum):
    """A Java numeric type, in Groovy's promotion order for the integral ones."""

    BYTE = 1
    SHORT = 2
    INTEGER = 3
    LONG = 4
    BIG_INTEGER = 5
    BIG_DECIMAL = 6
    FLOAT = 7
    DOUBLE = 8


_INTEGRAL = (Kind.BYTE, Kind.SHORT, Kind.INTEGER, Kind.LONG, Kind.BIG_INTEGER)
_BOUNDS = {Kind.BYTE: (-128, 127), Kind.SHORT: (-32768, 32767), Kind.INTEGER: (INT_MIN, INT_MAX),
           Kind.LONG: (LONG_MIN, LONG_MAX)}


class JavaArithmeticError(ShardingError):
    """A Java/Groovy operation failed (ArithmeticException, NumberFormatException, MissingMethodException)."""

    def __init__(self, detail: str) -> None:
        super().__init__("sharding value arithmetic", detail)


@dataclass(frozen=True, slots=True)
class JNumber:
    """A number with its Java type. Equality includes the type, as Java's `equals` does (`Integer 1 != Long 1`)."""

    kind: Kind
    value: int | float | Decimal

    def __post_init__(self) -> None:
        if self.kind in _BOUNDS:
            lo, hi = _BOUNDS[self.kind]
            if not isinstance(self.value, int) or isinstance(self.value, bool) or not lo <= self.value <= hi:
                raise ValueError(f"{self.value!r} is not a Java {self.kind.name}")
        elif self.kind is Kind.BIG_INTEGER:
            if not isinstance(self.value, int) or isinstance(self.value, bool):
                raise ValueError(f"{self.value!r} is not a BigInteger")
        elif self.kind is Kind.BIG_DECIMAL:
            if not isinstance(self.value, Decimal) or not self.value.is_finite():
                raise ValueError(f"{self.value!r} is not a BigDecimal")
        elif not isinstance(self.value, float):
            raise ValueError(f"{self.value!r} is not a Java {self.kind.name}")

    def __str__(self) -> str:
        return java_str(self)

    @property
    def is_integral(self) -> bool:
        return self.kind in _INTEGRAL


# A scalar sharding value: a Java number, String (str), Boolean (bool), null (None) or a date/time.
Scalar: TypeAlias = JNumber | str | bool | dt.datetime | dt.date | dt.time | None
# What an inline expression can compute: a scalar or a list (ranges and list literals).
GValue: TypeAlias = Scalar | list["GValue"]


def integer(v: int) -> JNumber:
    """A Java `Integer`."""
    return JNumber(Kind.INTEGER, v)


def long(v: int) -> JNumber:
    """A Java `Long`."""
    return JNumber(Kind.LONG, v)


def big_integer(v: int) -> JNumber:
    """A Java `BigInteger`."""
    return JNumber(Kind.BIG_INTEGER, v)


def big_decimal(v: str | int | Decimal) -> JNumber:
    """A Java `BigDecimal`, scale kept as written (`"7.0"` has scale 1)."""
    return JNumber(Kind.BIG_DECIMAL, Decimal(v))


def double(v: float) -> JNumber:
    """A Java `Double`."""
    return JNumber(Kind.DOUBLE, float(v))


def integral_literal(v: int) -> JNumber:
    """The type ShardingSphere's SQL parser gives an integer literal: Integer, else Long, else BigInteger."""
    if INT_MIN <= v <= INT_MAX:
        return integer(v)
    if LONG_MIN <= v <= LONG_MAX:
        return long(v)
    return big_integer(v)


def from_python(v: object) -> Scalar:
    """Convert a plain Python value to a sharding value: `int` is typed as a SQL literal would be,
    `Decimal` becomes BigDecimal, `float` Double; strings, booleans, None, dates and JNumbers pass through."""
    if v is None or isinstance(v, (JNumber, str, bool, dt.datetime, dt.date, dt.time)):
        return v
    if isinstance(v, int):
        return integral_literal(v)
    if isinstance(v, Decimal):
        return JNumber(Kind.BIG_DECIMAL, v)
    if isinstance(v, float):
        return double(v)
    raise JavaArithmeticError(f"unsupported sharding value type {type(v).__name__}")


def wrap(v: int, bits: int) -> int:
    """Two's-complement narrowing, as a Java cast to int (32) or long (64) does."""
    mask = (1 << bits) - 1
    v &= mask
    return v - (1 << bits) if v >> (bits - 1) else v


def _java_trunc_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _java_rem(a: int, b: int) -> int:
    return a - b * _java_trunc_div(a, b)


# -- toString ------------------------------------------------------------------------------------------------

def _java_float_text(x: float, digits: str, exponent: int) -> str:
    """Java Double/Float.toString given the shortest decimal digits and the decimal exponent of digits[0]."""
    sign = "-" if math.copysign(1.0, x) < 0 else ""
    if 1e-3 <= abs(x) < 1e7:
        if exponent >= 0:
            whole = digits[: exponent + 1].ljust(exponent + 1, "0")
            frac = digits[exponent + 1:] or "0"
        else:
            whole, frac = "0", "0" * (-exponent - 1) + digits
        return f"{sign}{whole}.{frac}"
    return f"{sign}{digits[0]}.{digits[1:] or '0'}E{exponent}"


def _shortest_digits(text: str) -> tuple[str, int]:
    t = Decimal(text).normalize().as_tuple()
    digits = "".join(map(str, t.digits))
    assert isinstance(t.exponent, int)
    return digits, t.exponent + len(digits) - 1


def java_double_str(x: float) -> str:
    """`Double.toString` (the shortest round-trip digits, as JDK 19+ prints them; older JDKs sometimes print
    a longer form). Plain between 1e-3 and 1e7, otherwise `d.dddE<n>`."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    digits, exponent = _shortest_digits(repr(abs(x)))
    return _java_float_text(x, digits, exponent)


def _float32(x: float) -> float:
    return float(struct.unpack(">f", struct.pack(">f", x))[0])


def java_float_str(x: float) -> str:
    """`Float.toString` of a float32 value (shortest digits that round-trip through float32)."""
    if math.isnan(x) or math.isinf(x) or x == 0:
        return java_double_str(x)
    for precision in range(1, 10):
        text = f"{abs(x):.{precision}e}"
        if _float32(float(text)) == abs(x):
            break
    digits, exponent = _shortest_digits(text)
    return _java_float_text(x, digits, exponent)


def _timestamp_str(v: dt.datetime) -> str:
    # java.sql.Timestamp.toString: nanos with trailing zeros removed, at least one digit.
    frac = f"{v.microsecond:06d}".rstrip("0") or "0"
    return f"{v:%Y-%m-%d %H:%M:%S}.{frac}"


def java_str(v: GValue) -> str:
    """Java `toString()` of a value (Groovy's rendering for lists: `[a, b]`; null renders as `null`).

    BigDecimal uses Python's `str(Decimal)`, which follows the same General Decimal Arithmetic rule as Java's
    `BigDecimal.toString` (exponent form when the scale is negative or the adjusted exponent is below -6).
    Dates render as JDBC types: `datetime` as `java.sql.Timestamp`, `date` as `java.sql.Date`.
    """
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    if isinstance(v, list):
        return "[" + ", ".join(java_str(e) for e in v) + "]"
    if isinstance(v, dt.datetime):
        return _timestamp_str(v)
    if isinstance(v, (dt.date, dt.time)):
        return v.isoformat()
    if v.kind is Kind.DOUBLE:
        assert isinstance(v.value, float)
        return java_double_str(v.value)
    if v.kind is Kind.FLOAT:
        assert isinstance(v.value, float)
        return java_float_str(v.value)
    return str(v.value)


# -- hashCode ------------------------------------------------------------------------------------------------

def _long_hash(v: int) -> int:
    u = v & 0xFFFF_FFFF_FFFF_FFFF
    return wrap(u ^ (u >> 32), 32)


def _big_integer_hash(v: int) -> int:
    # 31*h + word over the magnitude's 32-bit words, most significant first, then times the signum.
    h = 0
    mag = abs(v)
    words = []
    while mag:
        words.append(mag & 0xFFFF_FFFF)
        mag >>= 32
    for word in reversed(words):
        h = wrap(31 * h + word, 32)
    return wrap(h * (1 if v > 0 else -1 if v < 0 else 0), 32)


def _string_hash(s: str) -> int:
    h = 0
    units = s.encode("utf-16-be", "surrogatepass")
    for i in range(0, len(units), 2):
        h = (31 * h + ((units[i] << 8) | units[i + 1])) & 0xFFFF_FFFF
    return wrap(h, 32)


def java_hash_code(v: Scalar) -> int:
    """Java `hashCode()` of the value's runtime type (the input of HASH_MOD and of `x.hashCode()`)."""
    if isinstance(v, bool):
        return 1231 if v else 1237
    if isinstance(v, str):
        return _string_hash(v)
    if isinstance(v, JNumber):
        if v.kind in (Kind.BYTE, Kind.SHORT, Kind.INTEGER):
            assert isinstance(v.value, int)
            return v.value
        if v.kind is Kind.LONG:
            assert isinstance(v.value, int)
            return _long_hash(v.value)
        if v.kind is Kind.BIG_INTEGER:
            assert isinstance(v.value, int)
            return _big_integer_hash(v.value)
        if v.kind is Kind.BIG_DECIMAL:
            assert isinstance(v.value, Decimal)
            sign, digits, exponent = v.value.as_tuple()
            assert isinstance(exponent, int)
            unscaled = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
            return wrap(31 * _big_integer_hash(unscaled) + (-exponent), 32)
        assert isinstance(v.value, float)
        if v.kind is Kind.DOUBLE:
            bits = 0x7FF8_0000_0000_0000 if math.isnan(v.value) else struct.unpack(">Q", struct.pack(">d", v.value))[0]
            return _long_hash(bits)
        bits32 = 0x7FC0_0000 if math.isnan(v.value) else struct.unpack(">I", struct.pack(">f", v.value))[0]
        return wrap(bits32, 32)
    raise JavaArithmeticError(f"hashCode() of a {type(v).__name__} value is not supported "
                              "(its Java hash depends on the JVM's time zone)")


# -- Java conversions ----------------------------------------------------------------------------------------

def long_value(v: JNumber) -> int:
    """`Number.longValue()`: decimals truncate toward zero, BigInteger wraps to 64 bits, doubles saturate."""
    if isinstance(v.value, float):
        if math.isnan(v.value):
            return 0
        return max(LONG_MIN, min(LONG_MAX, math.trunc(v.value))) if math.isfinite(v.value) else (
            LONG_MAX if v.value > 0 else LONG_MIN)
    return wrap(int(v.value), 64)  # int(Decimal) truncates toward zero


def int_value(v: JNumber) -> int:
    """`Number.intValue()`: as `longValue()` narrowed to 32 bits (doubles saturate at int bounds)."""
    if isinstance(v.value, float):
        if math.isnan(v.value):
            return 0
        return max(INT_MIN, min(INT_MAX, math.trunc(v.value))) if math.isfinite(v.value) else (
            INT_MAX if v.value > 0 else INT_MIN)
    return wrap(int(v.value), 32)


def parse_java_integer(text: str, what: str = "BigInteger") -> int:
    """`new BigInteger(text)` / `Long.parseLong`: an optional sign and ASCII digits, nothing else."""
    body = text[1:] if text[:1] in "+-" else text
    if not body or not body.isascii() or not body.isdigit():
        raise JavaArithmeticError(f'NumberFormatException: For input string: "{text}" (expected a {what})')
    return int(text)


def parse_long(text: str) -> int:
    """`Long.parseLong`: a signed decimal that fits in 64 bits."""
    v = parse_java_integer(text, "long")
    if not LONG_MIN <= v <= LONG_MAX:
        raise JavaArithmeticError(f'NumberFormatException: For input string: "{text}" (out of long range)')
    return v


def parse_int(text: str) -> int:
    """`Integer.parseInt`: a signed decimal that fits in 32 bits."""
    v = parse_java_integer(text, "int")
    if not INT_MIN <= v <= INT_MAX:
        raise JavaArithmeticError(f'NumberFormatException: For input string: "{text}" (out of int range)')
    return v


def to_decimal(v: JNumber) -> Decimal:
    """The operand as a BigDecimal (doubles by their exact binary value, like `new BigDecimal(double)`)."""
    if isinstance(v.value, Decimal):
        return v.value
    return Decimal(v.value)


# -- Groovy arithmetic (NumberMath) --------------------------------------------------------------------------

def promote(a: JNumber, b: JNumber) -> Kind:
    """Groovy's NumberMath choice: floating point → Double; else BigDecimal; else BigInteger; else Long; else
    Integer (Byte and Short compute as Integer)."""
    kinds = {a.kind, b.kind}
    if kinds & {Kind.FLOAT, Kind.DOUBLE}:
        return Kind.DOUBLE
    for kind in (Kind.BIG_DECIMAL, Kind.BIG_INTEGER, Kind.LONG):
        if kind in kinds:
            return kind
    return Kind.INTEGER


def _numbers(op: str, a: GValue, b: GValue) -> tuple[JNumber, JNumber]:
    if isinstance(a, JNumber) and isinstance(b, JNumber):
        return a, b
    raise JavaArithmeticError(
        f"No signature of method: {_groovy_type(a)}.{op}() is applicable for argument types: ({_groovy_type(b)})"
        " (Groovy MissingMethodException; ShardingSphere reports error 52)")


def _groovy_type(v: GValue) -> str:
    if v is None:
        return "null"
    if isinstance(v, JNumber):
        return {Kind.BIG_INTEGER: "BigInteger", Kind.BIG_DECIMAL: "BigDecimal"}.get(v.kind, v.kind.name.capitalize())
    if isinstance(v, str):
        return "String"
    if isinstance(v, bool):
        return "Boolean"
    if isinstance(v, list):
        return "List"
    return type(v).__name__


def _integral(kind: Kind, v: int) -> JNumber:
    if kind is Kind.INTEGER:
        return integer(wrap(v, 32))
    if kind is Kind.LONG:
        return long(wrap(v, 64))
    return big_integer(v)


def _exact(op: str, a: Decimal, b: Decimal) -> Decimal:
    try:
        if op == "+":
            return _EXACT.add(a, b)
        if op == "-":
            return _EXACT.subtract(a, b)
        if op == "*":
            return _EXACT.multiply(a, b)
        return _EXACT.remainder(a, b)
    except decimal.DivisionByZero as exc:
        raise JavaArithmeticError("ArithmeticException: Division by zero") from exc
    except decimal.DecimalException as exc:
        raise JavaArithmeticError(f"BigDecimal {op} failed: {exc!r}") from exc


def _binary(op: str, a: GValue, b: GValue) -> JNumber:
    x, y = _numbers({"+": "plus", "-": "minus", "*": "multiply", "%": "mod"}[op], a, b)
    kind = promote(x, y)
    if kind is Kind.DOUBLE:
        fx, fy = float(x.value), float(y.value)
        if op == "+":
            return double(fx + fy)
        if op == "-":
            return double(fx - fy)
        if op == "*":
            return double(fx * fy)
        return double(math.fmod(fx, fy) if fy != 0 and math.isfinite(fx) else math.nan)
    if kind is Kind.BIG_DECIMAL:
        return JNumber(Kind.BIG_DECIMAL, _exact(op, to_decimal(x), to_decimal(y)))
    ix, iy = _as_int(x), _as_int(y)
    if op == "+":
        return _integral(kind, ix + iy)
    if op == "-":
        return _integral(kind, ix - iy)
    if op == "*":
        return _integral(kind, ix * iy)
    if kind is Kind.BIG_INTEGER:
        if iy <= 0:
            raise JavaArithmeticError("ArithmeticException: BigInteger: modulus not positive")
        return big_integer(ix % iy)  # BigInteger.mod: never negative
    if iy == 0:
        raise JavaArithmeticError("ArithmeticException: / by zero")
    return _integral(kind, _java_rem(ix, iy))  # Java remainder: takes the dividend's sign


def _as_int(v: JNumber) -> int:
    assert isinstance(v.value, int)
    return v.value


def groovy_add(a: GValue, b: GValue) -> GValue:
    """Groovy `a + b`: string concatenation when either side is a String, else NumberMath addition."""
    if isinstance(a, str) or isinstance(b, str):
        return java_str(a) + java_str(b)  # String.plus(Object) / Number.plus(String); null renders "null"
    return _binary("+", a, b)


def groovy_sub(a: GValue, b: GValue) -> JNumber:
    """Groovy `a - b` on numbers."""
    return _binary("-", a, b)


def groovy_mul(a: GValue, b: GValue) -> JNumber:
    """Groovy `a * b` on numbers."""
    return _binary("*", a, b)


def groovy_mod(a: GValue, b: GValue) -> JNumber:
    """Groovy 4 `a % b` (NumberMath.mod): Java remainder for Integer/Long/double (`-7 % 2 == -1`),
    `BigInteger.mod` (never negative), BigDecimal remainder keeping the scale (`7.0 % 2 == 1.0`)."""
    return _binary("%", a, b)


# Groovy's BigDecimalMath: non-terminating quotients get max(precision)+10 digits, scale capped at 10, HALF_UP.
_DIVISION_EXTRA_PRECISION = 10
_DIVISION_MIN_SCALE = 10


def _scale(d: Decimal) -> int:
    exponent = d.as_tuple().exponent
    assert isinstance(exponent, int)
    return -exponent


def _precision(d: Decimal) -> int:
    return len(d.as_tuple().digits)


def _exact_quotient(a: Decimal, b: Decimal) -> Decimal | None:
    """`BigDecimal.divide(BigDecimal)`: the exact quotient at the smallest scale >= scale(a)-scale(b), or None
    when the decimal expansion does not terminate."""
    q = Fraction(a) / Fraction(b)
    den = q.denominator
    for p in (2, 5):
        while den % p == 0:
            den //= p
    if den != 1:
        return None
    preferred = _scale(a) - _scale(b)
    if q == 0:
        return Decimal(0).scaleb(-preferred)
    scale = preferred
    while (q * Fraction(10) ** scale).denominator != 1:
        scale += 1
    unscaled = q * Fraction(10) ** scale
    assert unscaled.denominator == 1
    return Decimal(unscaled.numerator).scaleb(-scale)


def groovy_div(a: GValue, b: GValue) -> JNumber:
    """Groovy `a / b`: double division for floating point, otherwise a BigDecimal quotient (so `7 / 2 == 3.5`
    and `1 / 3 == 0.3333333333`); use `intdiv()` for integer division."""
    x, y = _numbers("div", a, b)
    if promote(x, y) is Kind.DOUBLE:
        fx, fy = float(x.value), float(y.value)
        if fy == 0:
            return double(math.nan if fx == 0 or math.isnan(fx) else math.copysign(math.inf, fx) * math.copysign(1, fy))
        return double(fx / fy)
    dx, dy = to_decimal(x), to_decimal(y)
    if dy == 0:
        raise JavaArithmeticError("ArithmeticException: Division by zero")
    exact = _exact_quotient(dx, dy)
    if exact is not None:
        return JNumber(Kind.BIG_DECIMAL, exact)
    # ⚠ Read from Groovy's BigDecimalMath.divideImpl, not run against Groovy.
    precision = max(_precision(dx), _precision(dy)) + _DIVISION_EXTRA_PRECISION
    result = decimal.Context(prec=precision, rounding=decimal.ROUND_HALF_UP).divide(dx, dy)
    if max(_scale(result), _scale(dx), _scale(dy)) > _DIVISION_MIN_SCALE:
        result = result.quantize(Decimal(1).scaleb(-_DIVISION_MIN_SCALE), rounding=decimal.ROUND_HALF_UP,
                                 context=_EXACT_QUANTIZE)
    return JNumber(Kind.BIG_DECIMAL, result)


_EXACT_QUANTIZE = decimal.Context(prec=100_000, rounding=decimal.ROUND_HALF_UP)


def groovy_intdiv(a: GValue, b: GValue) -> JNumber:
    """Groovy `a.intdiv(b)`: truncating division for Integer/Long/BigInteger; other types are refused."""
    x, y = _numbers("intdiv", a, b)
    kind = promote(x, y)
    if kind in (Kind.DOUBLE, Kind.BIG_DECIMAL):
        raise JavaArithmeticError("UnsupportedOperationException: Cannot use intdiv() on this number type: "
                                  f"{_groovy_type(x)} with value [{java_str(x)}]")
    ix, iy = _as_int(x), _as_int(y)
    if iy == 0:
        raise JavaArithmeticError("ArithmeticException: / by zero")
    return _integral(kind, _java_trunc_div(ix, iy))


def groovy_neg(a: GValue) -> JNumber:
    """Groovy unary minus (Integer and Long wrap at their minimum, as Java negation does)."""
    if not isinstance(a, JNumber):
        raise JavaArithmeticError(f"No signature of method: {_groovy_type(a)}.negative()")
    if isinstance(a.value, float):
        return JNumber(a.kind, -a.value)
    if isinstance(a.value, Decimal):
        return JNumber(a.kind, _EXACT.minus(a.value))
    kind = Kind.INTEGER if a.kind in (Kind.BYTE, Kind.SHORT) else a.kind
    return _integral(kind, -a.value)


def java_floor_div(a: int, b: int) -> int:
    """`Math.floorDiv` on integers."""
    if b == 0:
        raise JavaArithmeticError("ArithmeticException: / by zero")
    return a // b


def java_floor_mod(a: int, b: int) -> int:
    """`Math.floorMod` on integers: takes the divisor's sign."""
    if b == 0:
        raise JavaArithmeticError("ArithmeticException: / by zero")
    return a % b
