"""Exact number arithmetic and the servers' own number formats (MariaDB doubles and decimals, PostgreSQL floats
and numeric, text and binary)."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from decimal import Context, Decimal


@dataclass(frozen=True, slots=True)
class Quotient:
    """AVG's value before the server's division: each codec divides and rounds as its server would."""

    dividend: int | Decimal | float
    divisor: int


# Additions and quantizations of DECIMAL/numeric values are exact under this context (no rounding by precision).
EXACT = Context(prec=999_999_999, Emax=999_999_999, Emin=-999_999_999)

# PostgreSQL's numeric.c constants.
PG_DEC_DIGITS = 4  # decimal digits per base-10000 digit
PG_NUMERIC_MIN_SIG_DIGITS = 16
PG_NUMERIC_MAX_DISPLAY_SCALE = 1000


def scale_of(value: Decimal) -> int:
    """Digits after the decimal point as written (the display scale of a DECIMAL/numeric text)."""
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def round_half_away(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded to an integer, ties away from zero (both servers' decimal rounding)."""
    if denominator < 0:
        numerator, denominator = -numerator, -denominator
    quotient, remainder = divmod(abs(numerator), denominator)
    if 2 * remainder >= denominator:
        quotient += 1
    return quotient if numerator >= 0 else -quotient


def _mantissa(value: Decimal) -> tuple[int, int]:
    """(integer mantissa, exponent) of a finite Decimal: value = mantissa * 10**exponent."""
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    mantissa = int("".join(map(str, digits)) or "0")
    return (-mantissa if sign else mantissa), exponent


def divide(dividend: Decimal, divisor: int | Decimal, scale: int) -> Decimal:
    """dividend / divisor, exactly rounded half away from zero to `scale` decimal places."""
    m1, e1 = _mantissa(dividend)
    m2, e2 = _mantissa(divisor) if isinstance(divisor, Decimal) else (divisor, 0)
    shift = e1 - e2 + scale  # result * 10**scale = m1 * 10**shift / m2
    if shift >= 0:
        quotient = round_half_away(m1 * 10**shift, m2)
    else:
        quotient = round_half_away(m1, m2 * 10**-shift)
    return Decimal(quotient).scaleb(-scale, EXACT)


def pg_div_scale(dividend: Decimal, divisor: Decimal) -> int:
    """The result scale PostgreSQL's numeric division picks (numeric.c select_div_scale).

    The quotient gets at least NUMERIC_MIN_SIG_DIGITS significant digits, estimated from the base-10000 weights
    and first digits of the operands, and at least each operand's display scale."""
    weight1, first1 = _pg_weight(dividend)
    weight2, first2 = _pg_weight(divisor)
    qweight = weight1 - weight2
    if first1 <= first2:
        qweight -= 1
    rscale = PG_NUMERIC_MIN_SIG_DIGITS - qweight * PG_DEC_DIGITS
    rscale = max(rscale, scale_of(dividend), scale_of(divisor), 0)
    return min(rscale, PG_NUMERIC_MAX_DISPLAY_SCALE)


def _pg_weight(value: Decimal) -> tuple[int, int]:
    """(weight, first digit) of a value's normalized base-10000 representation; (0, 0) for zero."""
    if value == 0:
        return 0, 0
    magnitude = abs(value)
    # Base-10000 digits are aligned on the decimal point: the weight is floor(log10000(|v|)).
    adjusted = magnitude.adjusted()  # floor(log10(|v|))
    weight = adjusted // PG_DEC_DIGITS
    first = int(magnitude.scaleb(-weight * PG_DEC_DIGITS, EXACT).to_integral_value(rounding="ROUND_FLOOR"))
    return weight, first


def mysql_decimal_text(value: Decimal, scale: int) -> str:
    """A DECIMAL value as MariaDB writes it with `scale` decimals (rounded half up; no negative zero)."""
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    mantissa = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
    shift = exponent + scale
    scaled = mantissa * 10**shift if shift >= 0 else round_half_away(mantissa, 10**-shift)
    return _fixed(scaled, scale)


def _fixed(scaled: int, scale: int) -> str:
    """The text of scaled / 10**scale with exactly `scale` decimals."""
    text = str(abs(scaled)).rjust(scale + 1, "0")
    body = f"{text[:-scale]}.{text[-scale:]}" if scale > 0 else text
    return f"-{body}" if scaled < 0 else body


def pg_numeric_text(value: Decimal) -> str:
    """A numeric value as PostgreSQL writes it: plain digits, as many decimals as its display scale."""
    if value.is_nan():
        return "NaN"
    if value.is_infinite():
        return "-Infinity" if value < 0 else "Infinity"
    scale = scale_of(value)
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    mantissa = int("".join(map(str, digits)) or "0") * 10 ** (exponent + scale)
    return _fixed(-mantissa if sign and mantissa else mantissa, scale)


# PostgreSQL binary numeric: int16 ndigits, int16 weight, uint16 sign, int16 dscale, then base-10000 digits.
_PG_NUMERIC_POS = 0x0000
_PG_NUMERIC_NEG = 0x4000
_PG_NUMERIC_NAN = 0xC000
_PG_NUMERIC_PINF = 0xD000
_PG_NUMERIC_NINF = 0xF000


def pg_numeric_from_binary(data: bytes) -> Decimal:
    """A binary-format numeric value, keeping its display scale."""
    ndigits, weight, sign, dscale = struct.unpack_from("!hhHh", data)
    if sign == _PG_NUMERIC_NAN:
        return Decimal("NaN")
    if sign == _PG_NUMERIC_PINF:
        return Decimal("Infinity")
    if sign == _PG_NUMERIC_NINF:
        return Decimal("-Infinity")
    digits = struct.unpack_from(f"!{ndigits}H", data, 8)
    mantissa = 0
    for digit in digits:
        mantissa = mantissa * 10000 + digit
    # The last digit has weight (weight - ndigits + 1).
    value = Decimal(mantissa).scaleb((weight - ndigits + 1) * PG_DEC_DIGITS, EXACT)
    value = value.quantize(Decimal(1).scaleb(-dscale), context=EXACT)
    return -value if sign == _PG_NUMERIC_NEG else value


def pg_numeric_to_binary(value: Decimal) -> bytes:
    """A numeric value in binary format, with its display scale."""
    if value.is_nan():
        return struct.pack("!hhHh", 0, 0, _PG_NUMERIC_NAN, 0)
    if value.is_infinite():
        return struct.pack("!hhHh", 0, 0, _PG_NUMERIC_NINF if value < 0 else _PG_NUMERIC_PINF, 0)
    dscale = scale_of(value)
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    mantissa = int("".join(map(str, digits)) or "0")
    # Align on base-10000 digit boundaries: scale the mantissa so that its exponent is a multiple of 4.
    pad = exponent % PG_DEC_DIGITS
    mantissa *= 10**pad
    low_exponent = exponent - pad
    groups: list[int] = []
    while mantissa:
        mantissa, group = divmod(mantissa, 10000)
        groups.append(group)
    groups.reverse()
    # Strip leading and trailing zero digits; PostgreSQL never sends them.
    weight = low_exponent // PG_DEC_DIGITS + len(groups) - 1
    while groups and groups[-1] == 0:
        groups.pop()
    while groups and groups[0] == 0:
        groups.pop(0)
        weight -= 1
    if not groups:
        weight = 0
    return struct.pack(f"!hhHh{len(groups)}H", len(groups), weight, _PG_NUMERIC_NEG if sign and groups else
                       _PG_NUMERIC_POS, dscale, *groups)


def shortest_digits(value: float, single: bool = False) -> tuple[str, int]:
    """The shortest digit string that reads back as `value` (a float32 when `single`), and the position of the
    decimal point: value = 0.DIGITS * 10**decpt. Zero gives ("0", 1)."""
    magnitude = abs(value)
    if magnitude == 0:
        return "0", 1
    if single:
        for precision in range(1, 10):
            text = f"{magnitude:.{precision - 1}e}"
            if struct.unpack("!f", struct.pack("!f", float(text)))[0] == magnitude:
                break
    else:
        text = repr(magnitude)
    _, digit_tuple, exponent = Decimal(text).as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    exponent += len(digit_tuple) - len(digits)
    return digits, len(digits) + exponent


def mysql_double_text(value: float) -> str:
    """A DOUBLE as MariaDB's text protocol writes a computed value (my_gcvt: shortest round-trip digits; fixed
    notation unless the decimal point is more than 14 places left of the first digit, or the number is an integer
    of more than 15 digits; exponent without '+' or leading zeros)."""
    digits, decpt = shortest_digits(value)
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    length = len(digits)
    if decpt >= -14 and (decpt <= 15 or length > decpt):
        return sign + _fixed_digits(digits, decpt)
    mantissa = digits[0] + ("." + digits[1:] if length > 1 else "")
    return f"{sign}{mantissa}e{decpt - 1}"


def _fixed_digits(digits: str, decpt: int) -> str:
    if decpt <= 0:
        return "0." + "0" * -decpt + digits
    if decpt < len(digits):
        return digits[:decpt] + "." + digits[decpt:]
    return digits + "0" * (decpt - len(digits))


def pg_float_text(value: float, single: bool = False) -> str:
    """A float8 (float4 when `single`) as PostgreSQL writes it with the default extra_float_digits: shortest
    round-trip digits, fixed notation for decimal exponents from -4 up to 14 (float4: 5), else d.ddde+XX."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    digits, decpt = shortest_digits(value, single)
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    exponent = decpt - 1
    if -4 <= exponent < (6 if single else 15):
        return sign + _fixed_digits(digits, decpt)
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"


def to_float32(value: float) -> float:
    """`value` rounded to the nearest float32 (PostgreSQL float4 arithmetic)."""
    return float(struct.unpack("!f", struct.pack("!f", value))[0])
