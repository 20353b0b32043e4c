"""Inline expressions (dbmesh.sharding.inline, .values): spec cases from a fixture, Java semantics, hostile input."""

from __future__ import annotations

import doctest
import importlib
import itertools
import random
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from dbmesh.sharding import values as jv
from dbmesh.sharding.errors import InlineExpressionError, ShardingError
from dbmesh.sharding.inline import (
    InlineLimits,
    compile_algorithm_expression,
    expand_data_nodes,
    split_pieces,
)
from dbmesh.sharding.values import JNumber, Kind

FIXTURE = yaml.safe_load((Path(__file__).parents[1] / "fixtures" / "sharding" / "inline.yaml").read_text())


def typed(v: Any) -> Any:
    """Fixture values: {Long: -7} etc. become JNumbers; bare YAML values pass through (typed as SQL literals)."""
    if isinstance(v, dict):
        ((kind, raw),) = v.items()
        return {"Integer": jv.integer, "Long": jv.long, "BigInteger": jv.big_integer,
                "BigDecimal": lambda r: jv.big_decimal(str(r)), "Double": jv.double}[kind](raw)
    return v


@pytest.mark.parametrize("case", FIXTURE["data_nodes"], ids=[c["comment"] for c in FIXTURE["data_nodes"]])
def test_data_nodes_fixture(case: dict[str, Any]) -> None:
    if "error" in case:
        with pytest.raises(InlineExpressionError, match=re.escape(case["error"])):
            expand_data_nodes(case["expr"])
    else:
        assert expand_data_nodes(case["expr"]) == case["nodes"]


@pytest.mark.parametrize("case", FIXTURE["algorithm"], ids=[c["comment"] for c in FIXTURE["algorithm"]])
def test_algorithm_expression_fixture(case: dict[str, Any]) -> None:
    variables = {k: typed(v) for k, v in case["vars"].items()}
    if "error" in case:
        with pytest.raises(ShardingError, match=re.escape(case["error"])):
            compile_algorithm_expression(case["expr"])(variables)
    else:
        assert compile_algorithm_expression(case["expr"])(variables) == case["result"]


# -- splitting -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "pieces"), [
    ("a, b", ["a", "b"]),
    ("ds_${[0,1]}.t, x", ["ds_${[0,1]}.t", "x"]),
    ("${a}}, b", ["${a}}", "b"]),  # a stray '}' at depth 0 does not go negative
    ("a,", ["a"]),
])
def test_split_pieces(text: str, pieces: list[str]) -> None:
    assert split_pieces(text) == pieces


# -- Java values ---------------------------------------------------------------------------------------------

def ref_string_hash(s: str) -> int:
    """String.hashCode by its definition: s[0]*31^(n-1) + ... + s[n-1] over UTF-16 units, as a 32-bit int."""
    units = [int.from_bytes(s.encode("utf-16-be", "surrogatepass")[i:i + 2], "big")
             for i in range(0, len(s.encode("utf-16-be", "surrogatepass")), 2)]
    n = len(units)
    total: int = sum(u * pow(31, n - 1 - i) for i, u in enumerate(units)) % 2**32
    return total - 2**32 if total >= 2**31 else total


def ref_long_hash(v: int) -> int:
    """Long.hashCode: (int)(value ^ (value >>> 32))."""
    unsigned = v % 2**64
    x = (unsigned ^ (unsigned >> 32)) % 2**32
    return x - 2**32 if x >= 2**31 else x


def ref_big_integer_hash(v: int) -> int:
    """BigInteger.hashCode: 31*h + word over big-endian 32-bit magnitude words, times signum, 32-bit."""
    magnitude = abs(v).to_bytes((abs(v).bit_length() + 31) // 32 * 4, "big")
    h = 0
    for i in range(0, len(magnitude), 4):
        h = (31 * h + int.from_bytes(magnitude[i:i + 4], "big")) % 2**32
    h = h - 2**32 if h >= 2**31 else h
    h = (h * (1 if v > 0 else -1 if v < 0 else 0)) % 2**32
    return h - 2**32 if h >= 2**31 else h


@pytest.mark.parametrize(("value", "expected"), [
    ("hello", 99162322),
    ("", 0),
    ("Aa", 2112),
    ("BB", 2112),
    ("polygenelubricants", -(2**31)),
    ("\U0001F600", 31 * 0xD83D + 0xDE00),  # a surrogate pair hashes as two UTF-16 units
    (jv.integer(-7), -7),
    (jv.long(-7), 6),
    (jv.long(-1), 0),
    (jv.long(2**32), 1),
    (jv.long(2**40 + 3), 259),
    (jv.big_integer(2**32), 31),
    (jv.big_integer(-1), -1),
    (jv.big_decimal("7"), 217),
    (jv.big_decimal("7.0"), 2171),
    (True, 1231),
    (False, 1237),
])
def test_java_hash_code_known_values(value: jv.Scalar, expected: int) -> None:
    assert jv.java_hash_code(value) == expected


@given(st.text(max_size=40))
def test_string_hash_matches_definition(s: str) -> None:
    assert jv.java_hash_code(s) == ref_string_hash(s)


@given(st.integers(min_value=jv.LONG_MIN, max_value=jv.LONG_MAX))
def test_long_hash_matches_definition(v: int) -> None:
    assert jv.java_hash_code(jv.long(v)) == ref_long_hash(v)


@given(st.integers(min_value=-(2**200), max_value=2**200))
def test_big_integer_hash_matches_definition(v: int) -> None:
    assert jv.java_hash_code(jv.big_integer(v)) == ref_big_integer_hash(v)


@given(st.integers(min_value=-(10**30), max_value=10**30), st.integers(min_value=0, max_value=20))
def test_big_decimal_hash_is_31_unscaled_plus_scale(unscaled: int, scale: int) -> None:
    value = jv.big_decimal(Decimal(f"{unscaled}E-{scale}"))  # exact: no context rounding
    assert jv.java_hash_code(value) == jv.wrap(31 * ref_big_integer_hash(unscaled) + scale, 32)


def test_literal_typing_and_equality() -> None:
    assert jv.from_python(1) == JNumber(Kind.INTEGER, 1)
    assert jv.from_python(2**31) == JNumber(Kind.LONG, 2**31)
    assert jv.from_python(2**63) == JNumber(Kind.BIG_INTEGER, 2**63)
    assert jv.from_python(Decimal("1.5")) == JNumber(Kind.BIG_DECIMAL, Decimal("1.5"))
    assert jv.integer(1) != jv.long(1)  # Java equals() compares types


@pytest.mark.parametrize(("a", "b", "kind"), [
    (jv.integer(1), jv.integer(1), Kind.INTEGER),
    (jv.integer(1), jv.long(1), Kind.LONG),
    (jv.long(1), jv.big_integer(1), Kind.BIG_INTEGER),
    (jv.big_integer(1), jv.big_decimal("1"), Kind.BIG_DECIMAL),
    (jv.big_decimal("1"), jv.double(1.0), Kind.DOUBLE),
    (JNumber(Kind.SHORT, 1), JNumber(Kind.BYTE, 1), Kind.INTEGER),
])
def test_promotion(a: JNumber, b: JNumber, kind: Kind) -> None:
    assert jv.promote(a, b) is kind
    total = jv.groovy_add(a, b)
    assert isinstance(total, JNumber) and total.kind is kind


@given(st.integers(min_value=jv.INT_MIN, max_value=jv.INT_MAX),
       st.integers(min_value=jv.INT_MIN, max_value=jv.INT_MAX).filter(lambda v: v != 0))
def test_integer_remainder_is_java(a: int, b: int) -> None:
    r = jv.groovy_mod(jv.integer(a), jv.integer(b))
    assert r.kind is Kind.INTEGER
    # Java: (a/b)*b + a%b == a with / truncating toward zero; the remainder takes the dividend's sign.
    q = abs(a) // abs(b) * (1 if (a >= 0) == (b >= 0) else -1)
    assert r.value == jv.wrap(a - q * b, 32)


@pytest.mark.parametrize(("value", "text"), [
    (jv.double(1.0), "1.0"), (jv.double(1e7), "1.0E7"), (jv.double(0.001), "0.001"), (jv.double(1e-4), "1.0E-4"),
    (jv.double(-0.0), "-0.0"), (jv.double(float("nan")), "NaN"), (jv.big_decimal("1E+3"), "1E+3"),
    (jv.big_decimal("0.0000001"), "1E-7"), (jv.big_decimal("0.000001"), "0.000001"), (None, "null"),
    ([jv.integer(1), "a"], "[1, a]"),
])
def test_java_to_string(value: jv.GValue, text: str) -> None:
    assert jv.java_str(value) == text


# -- ranges and products against a Python model ---------------------------------------------------------------

@given(st.integers(-30, 30), st.integers(-30, 30), st.booleans())
def test_ranges_match_groovy(a: int, b: int, exclusive: bool) -> None:
    op = "..<" if exclusive else ".."
    expr = f"t_${{({a}){op}({b})}}"
    step = 1 if b >= a else -1
    expected = list(range(a, b if exclusive else b + step, step))
    assert expand_data_nodes(expr) == [f"t_{v}" for v in expected]


@given(st.lists(st.integers(1, 4), min_size=1, max_size=3))
def test_cartesian_product_order(sizes: list[int]) -> None:
    expr = ".".join(f"p{i}_${{0..<{n}}}" for i, n in enumerate(sizes))
    expected = [".".join(f"p{i}_{v}" for i, v in enumerate(combo))
                for combo in itertools.product(*(range(n) for n in sizes))]
    assert expand_data_nodes(expr) == expected


# -- hostile and unsupported input ---------------------------------------------------------------------------

@pytest.mark.parametrize(("expr", "message"), [
    ("${__import__('os')}", "function call '__import__()'"),
    ("${__import__('os').system('true')}", "function call"),
    ("t_${x.__class__}", "property access"),
    ("t_${id.getClass()}", "method 'getClass()' is not supported"),
    ("t_${System.exit(0)}", "method 'exit()' is not supported"),
    ("t_${Runtime.getRuntime()}", "method 'getRuntime()' is not supported"),
    ("t_${Math.random()}", "static method 'Math.random()'"),
    ("t_${new File('x')}", "'new' is not supported"),
    ("t_${this}", "'this' is not supported"),
    ("t_${x?.y}", "'?.'"),
    ("t_${{ -> 1}}", "closures"),
    ("t_${a == 1 ? 0 : 1}", "'=='"),
    ("t_${1 ** 2}", "'**'"),
    ("t_${\"${1}\"}", "nested double-quoted"),
    ("t_${0..100000000}", "exceeds the limit of 100000"),
    ("t_${0..99999}.x_${0..99999}", "more than 1000000 names"),
    ("t_${" + "(" * 200 + "1" + ")" * 200 + "}", "nesting deeper than 32"),
    ("t_${" + "-" * 200 + "1}", "nesting deeper than 32"),
    ("t_${" + "[" * 200 + "1" + "]" * 200 + "}", "nesting deeper than 32"),
    ("t_${'a'.padLeft(100000000)}", "exceeds the string limit"),
    ("t_${String.format('%0999999999d', 1)}", "exceeds the string limit"),
    ("t_${1", "unterminated"),
    ("t_${}", "empty"),
    ("t_${'x'..'zz'}", "single-character bounds"),
    ("t_" + "a" * 20_000, "longer than 10000 characters"),
])
def test_hostile_expressions_are_refused(expr: str, message: str) -> None:
    with pytest.raises(InlineExpressionError, match=re.escape(message)):
        expand_data_nodes(expr)


def test_range_cap_is_configurable() -> None:
    limits = InlineLimits(max_range_size=10)
    assert len(expand_data_nodes("t_${0..9}", limits)) == 10
    with pytest.raises(InlineExpressionError, match="exceeds the limit of 10"):
        expand_data_nodes("t_${0..10}", limits)


def test_string_growth_is_capped() -> None:
    expr = compile_algorithm_expression("${x + x}", InlineLimits(max_string_length=10))
    assert expr({"x": "abcde"}) == "abcdeabcde"
    with pytest.raises(InlineExpressionError, match="longer than 10"):
        expr({"x": "abcdef"})


def test_algorithm_expression_reports_its_variables() -> None:
    expr = compile_algorithm_expression("ds_${user_id % 2}_${order_id}")
    assert expr.variables == {"user_id", "order_id"}
    assert expr.text == "ds_${user_id % 2}_${order_id}"


def test_module_doctests() -> None:
    for name in ("values", "inline", "datetime_pattern"):
        result = doctest.testmod(importlib.import_module(f"dbmesh.sharding.{name}"))
        assert result.attempted > 0 and result.failed == 0, name


def test_list_variables_are_typed_element_by_element() -> None:
    assert compile_algorithm_expression("t_${v}")({"v": [1, "a", None]}) == "t_[1, a, null]"


@pytest.mark.parametrize("expression", ["ds_${user_id % 2}", "t_order_${order_id % 16}", "${k % 7}",
                                        "t_${ id %3 }_x", "ds-${user_id % 999999937}"])
def test_modulo_fast_path_agrees_with_the_interpreter(expression: str) -> None:
    expr = compile_algorithm_expression(expression)
    assert expr._fast is not None
    column = expr._fast[0]
    rng = random.Random(7)
    values = [0, 1, -1, 2, -2, 2**31 - 1, -2**31, 2**31, -2**31 - 1, 2**63 - 1, -2**63]
    values += [rng.randint(-2**63, 2**63 - 1) for _ in range(300)] + [rng.randint(-10**6, 10**6) for _ in range(300)]
    for v in values:
        assert expr({column: v}) == expr.evaluate({column: v}), v


def test_modulo_fast_path_is_not_taken_for_other_shapes_or_values() -> None:
    assert compile_algorithm_expression("ds_${user_id % 2 + 1}")._fast is None
    assert compile_algorithm_expression("ds_${(user_id % 2)}")._fast is None
    expr = compile_algorithm_expression("ds_${user_id % 2}")
    # Beyond Java's long range the value is a BigInteger, and strings are not integers: the interpreter decides.
    for v in (2**63, -2**63 - 1, "7", True):
        try:
            expected: object = expr.evaluate({"user_id": v})
        except Exception as exc:  # the interpreter's own refusal must be what the caller sees too
            with pytest.raises(type(exc)):
                expr({"user_id": v})
        else:
            assert expr({"user_id": v}) == expected
