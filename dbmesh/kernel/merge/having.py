"""HAVING over merged rows: a small SQL evaluator with three-valued logic for the planner's rewritten expression.

Supported: comparisons (=, <>, <, <=, >, >=), AND/OR/NOT, + - * /, unary minus, IS [NOT] NULL, [NOT] IN (list),
[NOT] BETWEEN, number/string/NULL/TRUE/FALSE literals, parentheses, and column references named by
`having_column_name(i)`. `check_having` refuses anything else at planning time.

Values follow the server: numbers compare by value; a string literal compared with a column is read as that
column's type and compared by the column's collation; division is DECIMAL with 4 more decimals (MySQL, NULL on
division by zero) or PostgreSQL's (integer division of integers, numeric division scale).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from sqlglot import exp

from dbmesh.kernel.merge.base import Fields, RowCodec, unsupported
from dbmesh.kernel.merge.numeric import EXACT, divide, pg_div_scale, scale_of
from dbmesh.kernel.plan import HAVING_COLUMN_PREFIX

Dialect = Literal["mysql", "postgres"]
_COMPARISONS: dict[type[exp.Expression], Callable[[Any, Any], bool]] = {
    exp.EQ: lambda a, b: bool(a == b),
    exp.NEQ: lambda a, b: bool(a != b),
    exp.LT: lambda a, b: bool(a < b),
    exp.LTE: lambda a, b: bool(a <= b),
    exp.GT: lambda a, b: bool(a > b),
    exp.GTE: lambda a, b: bool(a >= b),
}
_ARITHMETIC = (exp.Add, exp.Sub, exp.Mul, exp.Div)
# MySQL's div_precision_increment default: a quotient has the dividend's scale plus 4 decimals.
MYSQL_DIV_PRECISION_INCREMENT = 4


def _column_index(node: exp.Column) -> int | None:
    name = node.name
    if node.table or not name.startswith(HAVING_COLUMN_PREFIX):
        return None
    suffix = name[len(HAVING_COLUMN_PREFIX):]
    return int(suffix) if suffix.isdigit() else None


def _construct(node: exp.Expr) -> str:
    return f"{node.key.upper()} in HAVING ({node.sql()[:60]})"


def check_having(expression: exp.Expression) -> None:
    """Raises STATEMENT_UNSUPPORTED naming the first construct the merger cannot evaluate."""
    for node in expression.walk():
        if isinstance(node, exp.Identifier) and isinstance(node.parent, exp.Column):
            continue
        if isinstance(node, exp.Column):
            if _column_index(node) is None:
                raise unsupported(f"column {node.sql()} in HAVING",
                                  "HAVING may refer only to the select list, GROUP BY keys and aggregates")
            continue
        if isinstance(node, exp.In) and (node.args.get("query") is not None or node.args.get("unnest") is not None
                                         or node.args.get("field") is not None):
            raise unsupported(_construct(node), "only IN with a list of values is supported")
        if isinstance(node, exp.Is) and not isinstance(node.expression, exp.Null):
            raise unsupported(_construct(node), "only IS [NOT] NULL is supported")
        if isinstance(node, exp.Between) and node.args.get("symmetric"):
            raise unsupported(_construct(node), "BETWEEN SYMMETRIC is not supported")
        if isinstance(node, exp.Literal) and not node.is_string:
            _number(node.this, "postgres")
        if not isinstance(node, (*_COMPARISONS, *_ARITHMETIC, exp.And, exp.Or, exp.Not, exp.Neg, exp.Is, exp.In,
                                 exp.Between, exp.Literal, exp.Null, exp.Boolean, exp.Paren)):
            raise unsupported(_construct(node), "the merger evaluates only comparisons, AND/OR/NOT, arithmetic, "
                              "IS [NOT] NULL, IN, BETWEEN and literals")


def _number(text: str, dialect: Dialect) -> int | Decimal | float:
    try:
        if "e" in text.lower():
            return float(text) if dialect == "mysql" else Decimal(text)
        return Decimal(text) if "." in text else int(text)
    except (ValueError, InvalidOperation):
        raise unsupported(f"literal {text!r} in HAVING", "not a number") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, Decimal, float)) and not isinstance(value, bool)


def _truth(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if _is_number(value):
        return bool(value != 0)
    raise unsupported("a non-boolean condition in HAVING", f"cannot take the truth of {value!r}")


Evaluator = Callable[[Fields], Any]


class _Compiler:
    def __init__(self, codec: RowCodec, dialect: Dialect) -> None:
        self.codec = codec
        self.dialect = dialect

    def compile(self, node: exp.Expression) -> tuple[Evaluator, int | None]:
        """An evaluator of `node` and, when it is a bare column reference, that column's index."""
        if isinstance(node, exp.Paren):
            return self.compile(node.this)
        if isinstance(node, exp.Column):
            index = _column_index(node)
            assert index is not None
            decode = self.codec.decode
            return (lambda fields: decode(index, fields[index])), index
        if isinstance(node, exp.Literal):
            value: Any = node.this if node.is_string else _number(node.this, self.dialect)
            return (lambda fields: value), None
        if isinstance(node, exp.Null):
            return (lambda fields: None), None
        if isinstance(node, exp.Boolean):
            flag = bool(node.this)
            return (lambda fields: flag), None
        return self._compound(node), None

    def _compound(self, node: exp.Expression) -> Evaluator:
        kind = type(node)
        if kind in _COMPARISONS:
            return self._comparison(node.this, node.expression, _COMPARISONS[kind])
        if isinstance(node, (exp.And, exp.Or)):
            left, _ = self.compile(node.this)
            right, _ = self.compile(node.expression)
            return _and(left, right) if isinstance(node, exp.And) else _or(left, right)
        if isinstance(node, exp.Not):
            operand, _ = self.compile(node.this)

            def negate(fields: Fields) -> bool | None:
                truth = _truth(operand(fields))
                return None if truth is None else not truth

            return negate
        if isinstance(node, exp.Neg):
            operand, _ = self.compile(node.this)
            return lambda fields: _negate(operand(fields))
        if isinstance(node, exp.Is):
            operand, _ = self.compile(node.this)
            if node.args.get("negate"):
                return lambda fields: operand(fields) is not None
            return lambda fields: operand(fields) is None
        if isinstance(node, exp.In):
            equals = [self._comparison(node.this, item, _COMPARISONS[exp.EQ]) for item in node.expressions]
            return _or_all(equals)
        if isinstance(node, exp.Between):
            low = self._comparison(node.this, node.args["low"], _COMPARISONS[exp.GTE])
            high = self._comparison(node.this, node.args["high"], _COMPARISONS[exp.LTE])
            return _and(low, high)
        if isinstance(node, _ARITHMETIC):
            return self._arithmetic(node)
        raise unsupported(_construct(node), "not evaluable by the merger")

    def _comparison(self, left_node: exp.Expression, right_node: exp.Expression,
                    compare: Callable[[Any, Any], bool]) -> Evaluator:
        left, left_column = self.compile(left_node)
        right, right_column = self.compile(right_node)
        column = left_column if left_column is not None else right_column
        codec = self.codec

        def evaluate(fields: Fields) -> bool | None:
            a = left(fields)
            b = right(fields)
            if a is None or b is None:
                return None
            if _is_number(a) and _is_number(b):
                return compare(a, b)
            if column is None:
                if type(a) is type(b):
                    return compare(a, b)
                raise unsupported("comparing values of different types in HAVING", f"{a!r} and {b!r}")
            # A string literal compared with a column is read as a value of that column's type.
            if isinstance(a, str):
                a = _as_column_value(codec, column, a)
            if isinstance(b, str):
                b = _as_column_value(codec, column, b)
            if _is_number(a) != _is_number(b):
                raise unsupported("comparing a number with a non-number in HAVING", f"{a!r} and {b!r}")
            if _is_number(a):
                return compare(a, b)
            return compare(codec.sort_key(column, a), codec.sort_key(column, b))

        return evaluate

    def _arithmetic(self, node: exp.Expression) -> Evaluator:
        left, _ = self.compile(node.this)
        right, _ = self.compile(node.expression)
        operation = type(node)
        dialect = self.dialect

        def evaluate(fields: Fields) -> Any:
            a = left(fields)
            b = right(fields)
            if a is None or b is None:
                return None
            if not (_is_number(a) and _is_number(b)):
                raise unsupported("arithmetic on a non-number in HAVING", f"{a!r} and {b!r}")
            return _arithmetic(operation, a, b, dialect)

        return evaluate


def _as_column_value(codec: RowCodec, column: int, text: str) -> Any:
    try:
        return codec.decode(column, text.encode())
    except (ValueError, InvalidOperation, UnicodeError):
        raise unsupported("a string literal in HAVING", f"{text!r} is not a value of column {column}'s type") \
            from None


def _negate(value: Any) -> Any:
    if value is None:
        return None
    if not _is_number(value):
        raise unsupported("unary minus on a non-number in HAVING", repr(value))
    return -value


def _arithmetic(operation: type[exp.Expression], a: Any, b: Any, dialect: Dialect) -> Any:
    if isinstance(a, float) or isinstance(b, float):
        x, y = float(a), float(b)
        if operation is exp.Div:
            return _division_by_zero(dialect) if y == 0 else x / y
        return x + y if operation is exp.Add else x - y if operation is exp.Sub else x * y
    if operation is exp.Div:
        if b == 0:
            return _division_by_zero(dialect)
        if dialect == "postgres" and isinstance(a, int) and isinstance(b, int):
            quotient = abs(a) // abs(b)  # integer division truncates toward zero
            return quotient if (a >= 0) == (b >= 0) else -quotient
        dividend, divisor = EXACT.create_decimal(a), EXACT.create_decimal(b)
        scale = pg_div_scale(dividend, divisor) if dialect == "postgres" else \
            scale_of(dividend) + MYSQL_DIV_PRECISION_INCREMENT
        return divide(dividend, divisor, scale)
    if isinstance(a, int) and isinstance(b, int):
        return a + b if operation is exp.Add else a - b if operation is exp.Sub else a * b
    p, q = EXACT.create_decimal(a), EXACT.create_decimal(b)
    if operation is exp.Add:
        return EXACT.add(p, q)
    if operation is exp.Sub:
        return EXACT.subtract(p, q)
    return EXACT.multiply(p, q)


def _division_by_zero(dialect: Dialect) -> None:
    if dialect == "mysql":
        return None  # MySQL: x / 0 is NULL
    raise unsupported("division by zero in HAVING", "the data source raises an error for it")


def _and(left: Evaluator, right: Evaluator) -> Evaluator:
    def evaluate(fields: Fields) -> bool | None:
        a = _truth(left(fields))
        if a is False:
            return False
        b = _truth(right(fields))
        if b is False:
            return False
        return None if a is None or b is None else True

    return evaluate


def _or(left: Evaluator, right: Evaluator) -> Evaluator:
    return _or_all([left, right])


def _or_all(operands: list[Evaluator]) -> Evaluator:
    def evaluate(fields: Fields) -> bool | None:
        unknown = False
        for operand in operands:
            truth = _truth(operand(fields))
            if truth:
                return True
            if truth is None:
                unknown = True
        return None if unknown else False

    return evaluate


def compile_having(expression: exp.Expression, codec: RowCodec, dialect: Dialect) -> Callable[[Fields], bool]:
    """A predicate over merged rows: True when HAVING holds (NULL/unknown and false both drop the row)."""
    check_having(expression)
    evaluator, _ = _Compiler(codec, dialect).compile(expression)
    return lambda fields: _truth(evaluator(fields)) is True
