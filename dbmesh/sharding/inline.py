"""ShardingSphere inline expressions (`ds_${0..1}.t_${0..3}`), parsed and evaluated safely: no eval, a whitelist.

ShardingSphere runs these as Groovy GStrings. dbmesh implements the subset that sharding configurations use,
with Groovy's semantics for it, and refuses everything else with an error naming the construct.

>>> expand_data_nodes("ds_${0..1}.t_order_${0..1}")
['ds_0.t_order_0', 'ds_0.t_order_1', 'ds_1.t_order_0', 'ds_1.t_order_1']
>>> expand_data_nodes("ds_$->{['a','b']}.t, ds_x.t_${3..1}")
['ds_a.t', 'ds_b.t', 'ds_x.t_3', 'ds_x.t_2', 'ds_x.t_1']
>>> expand_data_nodes("<LITERAL>ds_0.t_${0..1}, ds_1.t")
['ds_0.t_${0..1}', 'ds_1.t']
>>> route = compile_algorithm_expression("t_order_${order_id % 2}")
>>> route({"order_id": 7}), route({"order_id": -7})
('t_order_1', 't_order_-1')
>>> compile_algorithm_expression("t_${Math.floorMod(Math.floorDiv(id.longValue(), 2L), 2L)}")({"id": 6})
't_1'
>>> compile_algorithm_expression("t_${id.toString().padLeft(3, '0')}")({"id": 7})
't_007'
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TypeAlias

from dbmesh.sharding import values as jv
from dbmesh.sharding.datetime_pattern import CHRONO_UNIT_DISPLAY, JavaDateTimePattern, add_units
from dbmesh.sharding.errors import InlineExpressionError, ShardingError
from dbmesh.sharding.values import GValue, JNumber, Kind


@dataclass(frozen=True, slots=True)
class InlineLimits:
    """Bounds that keep a hostile or mistaken expression from exhausting memory or the stack."""

    max_expression_length: int = 10_000
    max_depth: int = 32  # nesting of parentheses, lists, calls and unary operators
    max_range_size: int = 100_000  # elements of one range
    max_results: int = 1_000_000  # names one expression may expand to
    max_string_length: int = 10_000  # any string an expression computes


DEFAULT_LIMITS = InlineLimits()

# -- syntax tree ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Literal:
    value: GValue


@dataclass(frozen=True, slots=True)
class Var:
    name: str
    pos: int


@dataclass(frozen=True, slots=True)
class Neg:
    operand: Node


@dataclass(frozen=True, slots=True)
class BinOp:
    op: str
    left: Node
    right: Node
    pos: int


@dataclass(frozen=True, slots=True)
class RangeExpr:
    low: Node
    high: Node
    low_exclusive: bool
    high_exclusive: bool
    pos: int


@dataclass(frozen=True, slots=True)
class ListExpr:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class MethodCall:
    target: Node
    name: str
    args: tuple[Node, ...]
    pos: int


@dataclass(frozen=True, slots=True)
class StaticCall:
    cls: str
    name: str
    args: tuple[Node, ...]
    pos: int


Node: TypeAlias = Literal | Var | Neg | BinOp | RangeExpr | ListExpr | MethodCall | StaticCall


@dataclass(frozen=True, slots=True)
class GString:
    """A parsed GString: `strings` around `values`, len(strings) == len(values) + 1 (as Groovy's GString)."""

    strings: tuple[str, ...]
    values: tuple[Node, ...]
    variables: frozenset[str] = field(default=frozenset())


# -- tokenizer -----------------------------------------------------------------------------------------------

_OPERATORS = ("<..<", "<..", "..<", "..", "(", ")", "[", "]", ",", ".", "+", "-", "*", "/", "%")
_REFUSED_OPERATORS = ("?.", "*.", "**", "==", "!=", "<=>", "<=", ">=", "&&", "||", "->", "=~", "==~", "<<", ">>",
                      "?:", "<", ">", "?", ":", "!", "&", "|", "^", "~", "=", "@", "\\", "#", ";")
_STATIC_CLASSES = ("Math", "String", "Integer", "Long")
_NUMBER = re.compile(r"0[xX][0-9a-fA-F_]+[lLgGiI]?|\d[\d_]*(\.\d[\d_]*)?([eE][+-]?\d+)?[lLgGiIdDfF]?")


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "num", "str", "ident", "op", "end"
    text: str
    pos: int
    value: GValue = None


class _Tokenizer:
    """Tokens of one `${...}` placeholder, ending at its closing brace."""

    def __init__(self, source: str, start: int, expression: str) -> None:
        self.s = source
        self.i = start
        self.expression = expression

    def error(self, detail: str, pos: int) -> InlineExpressionError:
        return InlineExpressionError(self.expression, detail, pos)

    def tokens(self) -> list[Token]:
        out: list[Token] = []
        s = self.s
        while True:
            while self.i < len(s) and s[self.i] in " \t\r\n":
                self.i += 1
            if self.i >= len(s):
                raise self.error("unterminated ${...} placeholder", self.i)
            c, pos = s[self.i], self.i
            if c == "}":
                out.append(Token("end", "}", pos))
                self.i += 1
                return out
            if c == "{":
                raise self.error("closures ({ ... }) are not supported", pos)
            if c.isdigit():
                out.append(self._number(pos))
            elif c in "'\"":
                out.append(self._string(pos))
            elif c.isalpha() or c == "_":
                j = self.i
                while j < len(s) and (s[j].isalnum() or s[j] == "_"):
                    j += 1
                out.append(Token("ident", s[self.i:j], pos))
                self.i = j
            elif c == "$":
                raise self.error("nested '$' interpolation is not supported", pos)
            else:
                for op in _OPERATORS:
                    if s.startswith(op, self.i) and not any(
                            s.startswith(r, self.i) and len(r) > len(op) for r in _REFUSED_OPERATORS):
                        out.append(Token("op", op, pos))
                        self.i += len(op)
                        break
                else:
                    refused = next((r for r in _REFUSED_OPERATORS if s.startswith(r, self.i)), c)
                    raise self.error(f"operator {refused!r} is not supported", pos)

    def _number(self, pos: int) -> Token:
        m = _NUMBER.match(self.s, pos)
        assert m is not None
        text = m.group(0)
        # "1..3" is a range, not the decimal "1." followed by ".3": the regex needs a digit after the dot.
        self.i = m.end()
        if self.i < len(self.s) and (self.s[self.i].isalnum() or self.s[self.i] == "_"):
            raise self.error(f"malformed number {text + self.s[self.i]!r}", pos)
        return Token("num", text, pos, _number_value(text, lambda d: self.error(d, pos)))

    def _string(self, pos: int) -> Token:
        quote = self.s[pos]
        if self.s.startswith(quote * 3, pos):
            raise self.error("triple-quoted strings are not supported", pos)
        j = pos + 1
        out: list[str] = []
        while True:
            if j >= len(self.s):
                raise self.error("unterminated string literal", pos)
            c = self.s[j]
            if c == quote:
                break
            if c == "\\":
                text, j = _escape(self.s, j, lambda d, p: self.error(d, p))
                out.append(text)
                continue
            if c == "$" and quote == '"':
                raise self.error("interpolation inside a nested double-quoted string is not supported", j)
            out.append(c)
            j += 1
        self.i = j + 1
        return Token("str", "".join(out), pos, "".join(out))


_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", "s": " ", '"': '"', "'": "'", "\\": "\\", "$": "$"}


def _escape(s: str, j: int, error: Callable[[str, int], InlineExpressionError]) -> tuple[str, int]:
    """A Groovy string escape at s[j] == '\\'; returns its text and the index after it."""
    if j + 1 >= len(s):
        raise error("dangling backslash", j)
    c = s[j + 1]
    if c in _ESCAPES:
        return _ESCAPES[c], j + 2
    if c == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", s[j + 2:j + 6]):
        return chr(int(s[j + 2:j + 6], 16)), j + 6
    raise error(f"unsupported escape sequence '\\{c}'", j)


def _number_value(text: str, error: Callable[[str], InlineExpressionError]) -> JNumber:
    """Groovy literal typing: 7 Integer (Long/BigInteger when larger), 7L Long, 7G BigInteger, 7.5 BigDecimal,
    7.5d Double, 7.5f Float; a leading 0 means octal, 0x hexadecimal."""
    body = text.replace("_", "")
    hexadecimal = body.lower().startswith("0x")
    suffix = body[-1].lower() if body[-1].lower() in ("lgidf" if not hexadecimal else "lgi") else ""
    if suffix:
        body = body[:-1]
    is_decimal = "." in body or ("e" in body.lower() and not body.lower().startswith("0x"))
    if suffix in ("d", "f") or is_decimal:
        if body.lower().startswith("0x"):
            raise error(f"malformed number {text!r}")
        if suffix == "d":
            return jv.double(float(body))
        if suffix == "f":
            return JNumber(Kind.FLOAT, jv._float32(float(body)))
        if suffix in ("l", "i"):
            raise error(f"malformed number {text!r}")
        return JNumber(Kind.BIG_DECIMAL, Decimal(body))
    if body.lower().startswith("0x"):
        number = int(body[2:], 16)
    elif len(body) > 1 and body[0] == "0":
        if not body.isdigit() or set(body) & {"8", "9"}:
            raise error(f"invalid octal number {text!r} (a leading 0 makes a Groovy integer octal)")
        number = int(body, 8)
    else:
        number = int(body)
    if suffix == "g":
        return jv.big_integer(number)
    if suffix == "l":
        if number > jv.LONG_MAX:
            raise error(f"number {text!r} is too big for a Long")
        return jv.long(number)
    if suffix == "i":
        if number > jv.INT_MAX:
            raise error(f"number {text!r} is too big for an Integer")
        return jv.integer(number)
    return jv.integral_literal(number)


# -- parser --------------------------------------------------------------------------------------------------

class _Parser:
    """Recursive descent over one placeholder's tokens. Precedence, loosest first: range, + -, * / %, unary,
    postfix method calls."""

    def __init__(self, tokens: list[Token], expression: str, limits: InlineLimits) -> None:
        self.tokens = tokens
        self.n = 0
        self.expression = expression
        self.limits = limits
        self.depth = 0
        self.variables: set[str] = set()

    def error(self, detail: str, pos: int) -> InlineExpressionError:
        return InlineExpressionError(self.expression, detail, pos)

    def peek(self) -> Token:
        return self.tokens[self.n]

    def take(self) -> Token:
        t = self.tokens[self.n]
        self.n += 1
        return t

    def expect(self, text: str) -> Token:
        t = self.take()
        if t.text != text or t.kind not in ("op", "end"):
            raise self.error(f"expected {text!r}, found {t.text!r}", t.pos)
        return t

    def enter(self, pos: int) -> None:
        self.depth += 1
        if self.depth > self.limits.max_depth:
            raise self.error(f"nesting deeper than {self.limits.max_depth} levels", pos)

    def parse_placeholder(self) -> Node:
        if self.peek().kind == "end":
            raise self.error("empty ${} placeholder", self.peek().pos)
        node = self.expr()
        t = self.peek()
        if t.kind != "end":
            raise self.error(f"unexpected {t.text!r}", t.pos)
        return node

    def expr(self) -> Node:
        self.enter(self.peek().pos)
        left = self.additive()
        t = self.peek()
        if t.kind == "op" and t.text in ("..", "..<", "<..", "<..<"):
            self.take()
            right = self.additive()
            left = RangeExpr(left, right, t.text.startswith("<"), t.text.endswith("<"), t.pos)
        self.depth -= 1
        return left

    def additive(self) -> Node:
        left = self.multiplicative()
        while self.peek().kind == "op" and self.peek().text in "+-":
            t = self.take()
            left = BinOp(t.text, left, self.multiplicative(), t.pos)
        return left

    def multiplicative(self) -> Node:
        left = self.unary()
        while self.peek().kind == "op" and self.peek().text in ("*", "/", "%"):
            t = self.take()
            left = BinOp(t.text, left, self.unary(), t.pos)
        return left

    def unary(self) -> Node:
        t = self.peek()
        if t.kind == "op" and t.text in "+-":
            self.take()
            self.enter(t.pos)
            operand = self.unary()
            self.depth -= 1
            if t.text == "+":
                return operand
            if isinstance(operand, Literal) and isinstance(operand.value, JNumber):
                return Literal(jv.groovy_neg(operand.value))
            return Neg(operand)
        return self.postfix()

    def postfix(self) -> Node:
        node = self.primary()
        while self.peek().kind == "op" and self.peek().text == ".":
            dot = self.take()
            name = self.take()
            if name.kind != "ident":
                raise self.error(f"expected a method name after '.', found {name.text!r}", name.pos)
            if not (self.peek().kind == "op" and self.peek().text == "("):
                raise self.error(f"property access '.{name.text}' is not supported (only whitelisted method calls)",
                                 dot.pos)
            args = self.arguments()
            if name.text not in _METHODS:
                raise self.error(f"method '{name.text}()' is not supported", name.pos)
            node = MethodCall(node, name.text, args, name.pos)
        return node

    def arguments(self) -> tuple[Node, ...]:
        open_ = self.expect("(")
        self.enter(open_.pos)
        args: list[Node] = []
        if not (self.peek().kind == "op" and self.peek().text == ")"):
            while True:
                args.append(self.expr())
                if self.peek().kind == "op" and self.peek().text == ",":
                    self.take()
                    continue
                break
        self.expect(")")
        self.depth -= 1
        return tuple(args)

    def primary(self) -> Node:
        t = self.take()
        if t.kind in ("num", "str"):
            return Literal(t.value)
        if t.kind == "ident":
            if t.text in _STATIC_CLASSES and self.peek().kind == "op" and self.peek().text == ".":
                self.take()
                name = self.take()
                if name.kind != "ident" or not (self.peek().kind == "op" and self.peek().text == "("):
                    raise self.error(f"'{t.text}.{name.text}' is not supported (only whitelisted static calls)",
                                     name.pos)
                args = self.arguments()
                if (t.text, name.text) not in _STATIC:
                    raise self.error(f"static method '{t.text}.{name.text}()' is not supported", name.pos)
                return StaticCall(t.text, name.text, args, t.pos)
            if self.peek().kind == "op" and self.peek().text == "(":
                raise self.error(f"function call '{t.text}()' is not supported", t.pos)
            if t.text in ("true", "false", "null"):
                return Literal({"true": True, "false": False, "null": None}[t.text])
            if t.text in ("new", "this", "super", "class", "def", "it", "owner", "delegate") or t.text.startswith("__"):
                raise self.error(f"'{t.text}' is not supported", t.pos)
            self.variables.add(t.text)
            return Var(t.text, t.pos)
        if t.kind == "op" and t.text == "(":
            self.enter(t.pos)
            node = self.expr()
            self.expect(")")
            self.depth -= 1
            return node
        if t.kind == "op" and t.text == "[":
            self.enter(t.pos)
            items: list[Node] = []
            if not (self.peek().kind == "op" and self.peek().text == "]"):
                while True:
                    items.append(self.expr())
                    if self.peek().kind == "op" and self.peek().text == ",":
                        self.take()
                        if self.peek().kind == "op" and self.peek().text == "]":
                            break  # Groovy allows a trailing comma
                        continue
                    break
            self.expect("]")
            self.depth -= 1
            return ListExpr(tuple(items))
        if t.kind == "end":
            raise self.error("unexpected end of placeholder", t.pos)
        raise self.error(f"unexpected {t.text!r}", t.pos)


def parse_gstring(text: str, limits: InlineLimits = DEFAULT_LIMITS, expression: str | None = None) -> GString:
    """Parse one GString body (the text between Groovy's double quotes): literal text, `${expr}` and `$name`."""
    expression = text if expression is None else expression
    if len(text) > limits.max_expression_length:
        raise InlineExpressionError(expression[:80] + "...",
                                    f"longer than {limits.max_expression_length} characters")
    strings: list[str] = []
    values: list[Node] = []
    variables: set[str] = set()
    current: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            piece, i = _escape(text, i, lambda d, p: InlineExpressionError(expression, d, p))
            current.append(piece)
            continue
        if c == '"':
            raise InlineExpressionError(expression, 'a bare \'"\' ends the Groovy string (escape it as \\")', i)
        if c != "$":
            current.append(c)
            i += 1
            continue
        if text.startswith("${", i):
            tokens = (tok := _Tokenizer(text, i + 2, expression)).tokens()
            parser = _Parser(tokens, expression, limits)
            values.append(parser.parse_placeholder())
            variables |= parser.variables
            i = tok.i
        elif i + 1 < len(text) and (text[i + 1].isalpha() or text[i + 1] == "_"):
            j = i + 1
            while j < len(text) and (text[j].isalnum() or text[j] == "_"):
                j += 1
            if j + 1 < len(text) and text[j] == "." and (text[j + 1].isalpha() or text[j + 1] == "_"):
                raise InlineExpressionError(
                    expression, f"'${text[i + 1:j]}.{text[j + 1]}...' is a Groovy property access; write "
                    f"${{{text[i + 1:j]}}} or escape the '$'", i)
            name = text[i + 1:j]
            values.append(Var(name, i))
            variables.add(name)
            i = j
        else:
            raise InlineExpressionError(expression, "illegal string body character after dollar sign "
                                        "(escape a literal '$' as \\$)", i)
        strings.append("".join(current))
        current = []
    strings.append("".join(current))
    return GString(tuple(strings), tuple(values), frozenset(variables))


# -- evaluator -----------------------------------------------------------------------------------------------

_METHODS = frozenset({"hashCode", "toString", "intdiv", "abs", "padLeft", "padRight", "toLong", "toInteger",
                      "toBigInteger", "longValue", "intValue", "toUpperCase", "toLowerCase"})
_STATIC = frozenset({("Math", "abs"), ("Math", "floorMod"), ("Math", "floorDiv"), ("String", "format"),
                     ("String", "valueOf"), ("Integer", "valueOf"), ("Integer", "parseInt"), ("Long", "valueOf"),
                     ("Long", "parseLong")})


class _Evaluator:
    def __init__(self, expression: str, variables: Mapping[str, GValue] | None, limits: InlineLimits) -> None:
        self.expression = expression
        self.variables = variables  # None: no variables exist (data nodes are evaluated without bindings)
        self.limits = limits

    def error(self, detail: str, pos: int | None = None) -> InlineExpressionError:
        return InlineExpressionError(self.expression, detail, pos)

    def eval(self, node: Node) -> GValue:
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, Var):
            if self.variables is None:
                raise self.error(f"No such property: {node.name} (data node expressions have no variables)", node.pos)
            return self.variables.get(node.name)
        if isinstance(node, Neg):
            return jv.groovy_neg(self._scalar(self.eval(node.operand), "unary minus"))
        if isinstance(node, BinOp):
            return self._binop(node)
        if isinstance(node, RangeExpr):
            return self._range(node)
        if isinstance(node, ListExpr):
            return [self.eval(item) for item in node.items]
        if isinstance(node, MethodCall):
            return self._method(node)
        return self._static(node)

    def _scalar(self, v: GValue, what: str) -> jv.Scalar:
        if isinstance(v, list):
            raise self.error(f"{what} on a list is not supported")
        return v

    def _string(self, s: str) -> str:
        if len(s) > self.limits.max_string_length:
            raise self.error(f"a computed string is longer than {self.limits.max_string_length} characters")
        return s

    def _binop(self, node: BinOp) -> GValue:
        left, right = self.eval(node.left), self.eval(node.right)
        if isinstance(left, list) or isinstance(right, list):
            raise self.error(f"{node.op!r} on a list is not supported", node.pos)
        if node.op == "+":
            result = jv.groovy_add(left, right)
            return self._string(result) if isinstance(result, str) else result
        op = {"-": jv.groovy_sub, "*": jv.groovy_mul, "/": jv.groovy_div, "%": jv.groovy_mod}[node.op]
        return op(left, right)

    def _range(self, node: RangeExpr) -> list[GValue]:
        low, high = self.eval(node.low), self.eval(node.high)
        if isinstance(low, JNumber) and isinstance(high, JNumber) and low.is_integral and high.is_integral:
            lo, hi = int(low.value), int(high.value)
            kind = jv.promote(low, high)
            make: Callable[[int], GValue] = lambda v: JNumber(kind, v)  # noqa: E731
        elif isinstance(low, str) and isinstance(high, str) and len(low) == 1 and len(high) == 1:
            lo, hi = ord(low), ord(high)
            make = chr
        else:
            raise self.error(f"a range needs integer or single-character bounds, got {jv.java_str(low)!r}.."
                             f"{jv.java_str(high)!r}", node.pos)
        step = 1 if hi >= lo else -1
        if node.low_exclusive:
            lo += step
        stop = hi if node.high_exclusive else hi + step
        # Groovy: an exclusive end that crosses the start gives an empty range.
        size = max(0, (stop - lo) * step)
        if size > self.limits.max_range_size:
            raise self.error(f"range of {size} elements exceeds the limit of {self.limits.max_range_size}", node.pos)
        return [make(v) for v in range(lo, stop, step)]

    def _method(self, node: MethodCall) -> GValue:
        value = self.eval(node.target)
        if node.name == "toString" and isinstance(value, list) and not node.args:
            return self._string(jv.java_str(value))
        target = self._scalar(value, f"{node.name}()")
        args = [self.eval(a) for a in node.args]
        name = node.name
        arity = {"padLeft": (1, 2), "padRight": (1, 2), "intdiv": (1, 1)}.get(name, (0, 0))
        if not arity[0] <= len(args) <= arity[1]:
            raise self.error(f"{name}() takes {arity[0]}..{arity[1]} arguments, got {len(args)}", node.pos)
        if target is None:
            raise self.error(f"Cannot invoke method {name}() on null object", node.pos)
        if name == "hashCode":
            return jv.integer(jv.java_hash_code(target))
        if name == "toString":
            return self._string(jv.java_str(target))
        if name == "intdiv":
            return jv.groovy_intdiv(target, args[0])
        if name in ("padLeft", "padRight"):
            return self._pad(node, target, args)
        if name in ("toUpperCase", "toLowerCase"):
            if not isinstance(target, str):
                raise self._no_method(target, name, node)
            return target.upper() if name == "toUpperCase" else target.lower()
        if name in ("toLong", "toInteger", "toBigInteger"):
            if isinstance(target, str):
                text = target.strip()
                if name == "toLong":
                    return jv.long(jv.parse_long(text))
                if name == "toInteger":
                    return jv.integer(jv.parse_int(text))
                return jv.big_integer(jv.parse_java_integer(text))
            if not isinstance(target, JNumber):
                raise self._no_method(target, name, node)
            if name == "toBigInteger":
                if isinstance(target.value, float):
                    raise self._no_method(target, name, node)
                return jv.big_integer(int(target.value))
            return jv.long(jv.long_value(target)) if name == "toLong" else jv.integer(jv.int_value(target))
        if name in ("longValue", "intValue"):
            if not isinstance(target, JNumber):
                raise self._no_method(target, name, node)
            return jv.long(jv.long_value(target)) if name == "longValue" else jv.integer(jv.int_value(target))
        assert name == "abs"
        if not isinstance(target, JNumber):
            raise self._no_method(target, name, node)
        return _abs(target)

    def _no_method(self, target: GValue, name: str, node: MethodCall) -> InlineExpressionError:
        return self.error(f"No signature of method: {jv._groovy_type(target)}.{name}()", node.pos)

    def _pad(self, node: MethodCall, target: jv.Scalar, args: list[GValue]) -> str:
        if not isinstance(target, str):
            raise self._no_method(target, node.name, node)
        width_value = args[0]
        padding = args[1] if len(args) > 1 else " "
        if not isinstance(width_value, JNumber) or not isinstance(padding, str) or not padding:
            raise self.error(f"{node.name}(Number, non-empty String) expected", node.pos)
        width = jv.int_value(width_value)
        if width > self.limits.max_string_length:
            raise self.error(f"{node.name}({width}) exceeds the string limit of {self.limits.max_string_length}",
                             node.pos)
        if width <= len(target):
            return target
        fill = (padding * ((width - len(target)) // len(padding) + 1))[: width - len(target)]
        return fill + target if node.name == "padLeft" else target + fill

    def _static(self, node: StaticCall) -> GValue:
        args = [self.eval(a) for a in node.args]
        key = (node.cls, node.name)
        if key == ("String", "format"):
            if not args or not isinstance(args[0], str):
                raise self.error("String.format needs a format string first", node.pos)
            return self._string(java_format(args[0], args[1:], self.limits, self.error))
        if len(args) != (2 if node.name in ("floorMod", "floorDiv") else 1):
            raise self.error(f"{node.cls}.{node.name}() called with {len(args)} arguments", node.pos)
        if key == ("String", "valueOf"):
            return self._string(jv.java_str(args[0]))
        if key == ("Math", "abs"):
            arg = args[0]
            if not isinstance(arg, JNumber) or arg.kind in (Kind.BIG_INTEGER, Kind.BIG_DECIMAL):
                raise self.error(f"Math.abs({jv._groovy_type(arg)}) is not supported (Java has no such overload)",
                                 node.pos)
            return _abs(arg)
        if key in (("Math", "floorMod"), ("Math", "floorDiv")):
            a, b = args
            if not (isinstance(a, JNumber) and isinstance(b, JNumber)) or not {a.kind, b.kind} <= {
                    Kind.BYTE, Kind.SHORT, Kind.INTEGER, Kind.LONG}:
                raise self.error(f"Math.{node.name}({jv._groovy_type(a)}, {jv._groovy_type(b)}) is not supported "
                                 "(int and long arguments only)", node.pos)
            x, y = int(a.value), int(b.value)
            both_int = a.kind is not Kind.LONG and b.kind is not Kind.LONG
            if node.name == "floorMod":
                r = jv.java_floor_mod(x, y)
                # floorMod(long, int) returns int (JDK 9+); the result always fits the divisor's type.
                return jv.integer(r) if b.kind is not Kind.LONG else jv.long(r)
            q = jv.java_floor_div(x, y)
            return jv.integer(jv.wrap(q, 32)) if both_int else jv.long(jv.wrap(q, 64))
        # Integer.valueOf / parseInt, Long.valueOf / parseLong
        arg = args[0]
        is_int = node.cls == "Integer"
        if isinstance(arg, str):
            return jv.integer(jv.parse_int(arg)) if is_int else jv.long(jv.parse_long(arg))
        if isinstance(arg, JNumber) and arg.is_integral:
            v = int(arg.value)
            lo, hi = (jv.INT_MIN, jv.INT_MAX) if is_int else (jv.LONG_MIN, jv.LONG_MAX)
            if lo <= v <= hi:
                return jv.integer(v) if is_int else jv.long(v)
        raise self.error(f"{node.cls}.{node.name}({jv._groovy_type(arg)} {jv.java_str(arg)}) is not supported "
                         f"(a string or an integer within {node.cls}'s range)", node.pos)


def _abs(v: JNumber) -> JNumber:
    """Java/Groovy abs: Integer.MIN_VALUE and Long.MIN_VALUE stay negative."""
    if isinstance(v.value, float):
        return JNumber(v.kind, abs(v.value))
    if isinstance(v.value, Decimal):
        return JNumber(v.kind, abs(v.value))
    if v.kind is Kind.LONG:
        return jv.long(jv.wrap(abs(v.value), 64))
    if v.kind is Kind.BIG_INTEGER:
        return jv.big_integer(abs(v.value))
    return jv.integer(jv.wrap(abs(v.value), 32))


_FORMAT_SPEC = re.compile(r"%(?:(\d+)\$)?([-0+ ,(#]*)(\d+)?(?:\.(\d+))?([a-zA-Z%])")


def java_format(fmt: str, args: Sequence[GValue], limits: InlineLimits,
                error: Callable[[str], InlineExpressionError]) -> str:
    """The `String.format` subset: %s %S %d %x %X %o %% %n with flags '-' '0' '+', width and (for %s) precision."""
    out: list[str] = []
    pos = 0
    next_arg = 0
    for m in _FORMAT_SPEC.finditer(fmt):
        if "%" in fmt[pos:m.start()]:
            raise error(f"UnknownFormatConversionException in {fmt!r}")
        out.append(fmt[pos:m.start()])
        pos = m.end()
        index, flags, width_text, precision_text, conv = m.groups()
        if conv == "%":
            out.append("%")
            continue
        if conv == "n":
            out.append("\n")
            continue
        if set(flags) - set("-0+"):
            raise error(f"String.format flag(s) {flags!r} are not supported")
        width = int(width_text) if width_text else 0
        if width > limits.max_string_length:
            raise error(f"String.format width {width} exceeds the string limit")
        if index:
            arg_n = int(index) - 1
        else:
            arg_n, next_arg = next_arg, next_arg + 1
        if not 0 <= arg_n < len(args):
            raise error(f"MissingFormatArgumentException: Format specifier '{m.group(0)}'")
        arg = args[arg_n]
        if conv in "sS":
            text = jv.java_str(arg)
            if precision_text:
                text = text[: int(precision_text)]
            if conv == "S":
                text = text.upper()
            if "0" in flags or "+" in flags:
                raise error(f"FormatFlagsConversionMismatchException: {m.group(0)}")
        elif conv in "dxXo":
            if not isinstance(arg, JNumber) or not arg.is_integral or precision_text:
                raise error(f"IllegalFormatConversionException: {conv} != {jv._groovy_type(arg)}")
            v = int(arg.value)
            if conv == "d":
                text = str(v) if v < 0 or "+" not in flags else f"+{v}"
            else:
                if v < 0 and arg.kind is not Kind.BIG_INTEGER:
                    v &= (1 << (64 if arg.kind is Kind.LONG else 32)) - 1
                    if arg.kind in (Kind.BYTE, Kind.SHORT):
                        v &= (1 << (8 if arg.kind is Kind.BYTE else 16)) - 1
                text = format(v, "o" if conv == "o" else "x")
                text = text.upper() if conv == "X" else text
            if "0" in flags and "-" not in flags and len(text) < width:
                sign = text[0] if text[0] in "+-" else ""
                text = sign + text[len(sign):].rjust(width - len(sign), "0")
        else:
            raise error(f"String.format conversion '%{conv}' is not supported")
        out.append(text.ljust(width) if "-" in flags else text.rjust(width))
    if "%" in fmt[pos:]:
        raise error(f"UnknownFormatConversionException in {fmt!r}")
    out.append(fmt[pos:])
    return "".join(out)


# -- public API ----------------------------------------------------------------------------------------------

_ENGINE = re.compile(r"<([^>]*)>")


def split_engine(expression: str) -> tuple[str, str]:
    """Split a leading `<TYPE>` engine marker off (case-insensitive); without one the engine is GROOVY."""
    if expression.startswith("<"):
        m = _ENGINE.match(expression)
        if m is None:
            raise InlineExpressionError(expression, "unterminated <TYPE> engine marker", 0)
        engine = m.group(1).strip().upper()
        if engine not in ("GROOVY", "LITERAL", "INTERVAL", "ESPRESSO"):
            raise InlineExpressionError(expression, f"unknown inline expression type <{m.group(1)}> "
                                        "(GROOVY, LITERAL, INTERVAL or ESPRESSO)", 0)
        return engine, expression[m.end():]
    return "GROOVY", expression


def split_pieces(expression: str) -> list[str]:
    """Split on commas at brace depth 0, as ShardingSphere does before evaluating: `${` opens a level, any `}`
    closes one. Pieces are trimmed. (A `}` inside a string literal therefore breaks the split there too.)"""
    pieces: list[str] = []
    current: list[str] = []
    depth = 0
    for i, c in enumerate(expression):
        if c == "," and depth == 0:
            pieces.append("".join(current).strip())
            current = []
            continue
        if c == "$" and expression.startswith("${", i):
            depth += 1
        elif c == "}" and depth > 0:
            depth -= 1
        current.append(c)
    pieces.append("".join(current).strip())
    if len(pieces) > 1 and pieces[-1] == "":
        pieces.pop()  # a trailing comma adds nothing
    return pieces


def _expand_piece(piece: str, expression: str, limits: InlineLimits, budget: int) -> list[str]:
    gstring = parse_gstring(piece, limits, expression)
    evaluator = _Evaluator(expression, None, limits)
    sets: list[list[str]] = []
    for node in gstring.values:
        try:
            value = evaluator.eval(node)
        except InlineExpressionError:
            raise
        except ShardingError as exc:
            raise InlineExpressionError(expression, exc.detail) from exc
        if value is None:
            continue  # Groovy nulls are skipped, shifting later values left (ShardingSphere does the same)
        items = value if isinstance(value, list) else [value]
        seen: dict[str, None] = {}
        for item in items:
            seen[jv.java_str(item)] = None
        sets.append(list(seen))
    total = 1
    for s in sets:
        total *= len(s)
    if total > budget:
        raise InlineExpressionError(expression, f"expands to more than {limits.max_results} names")
    results: list[str] = []
    for combination in itertools.product(*sets):  # first placeholder outermost, like Guava's cartesianProduct
        parts: list[str] = []
        for i, literal in enumerate(gstring.strings):
            parts.append(literal)
            if i < len(combination):
                parts.append(combination[i])
        results.append("".join(parts))
    return results


def expand_data_nodes(expression: str, limits: InlineLimits = DEFAULT_LIMITS) -> list[str]:
    """Expand `actualDataNodes` / `actualDataSources` / read-write names into their ordered list.

    Comma-separated pieces are expanded in order and concatenated; duplicates across pieces are kept, within one
    placeholder's collection they are dropped (ShardingSphere turns each collection into a set)."""
    engine, body = split_engine(expression.replace("$->{", "${"))
    if len(body) > limits.max_expression_length:
        raise InlineExpressionError(expression[:80] + "...", f"longer than {limits.max_expression_length} characters")
    if engine == "LITERAL":
        return [piece.strip() for piece in body.split(",")]
    if engine == "INTERVAL":
        return expand_interval(body, limits, expression)
    results: list[str] = []
    for piece in split_pieces(body):
        if not piece:
            raise InlineExpressionError(expression, "empty item between commas")
        results.extend(_expand_piece(piece, expression, limits, limits.max_results - len(results)))
    return results


def expand_interval(body: str, limits: InlineLimits = DEFAULT_LIMITS, expression: str | None = None) -> list[str]:
    """The `<INTERVAL>` engine: `P=prefix;SP=suffixPattern;DIA=amount;DIU=unit;DL=lower;DU=upper[;C=chronology]`
    gives `P + format(t)` for t from DL to DU inclusive, stepping DIA units of DIU (a ChronoUnit display name)."""
    expression = body if expression is None else expression
    parts: dict[str, str] = {}
    for item in body.split(";"):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in ("P", "SP", "DIA", "DIU", "DL", "DU", "C"):
            raise InlineExpressionError(expression, f"unknown INTERVAL item {item.strip()!r}")
        parts[key] = value
    missing = [k for k in ("P", "SP", "DIA", "DIU", "DL", "DU") if k not in parts]
    if missing:
        raise InlineExpressionError(expression, f"INTERVAL expression lacks {', '.join(missing)}")
    if parts.get("C", "ISO").strip() not in ("ISO", "ISOChronology", ""):
        raise InlineExpressionError(expression, f"chronology {parts['C']!r} is not supported (ISO only)")
    if parts["DIU"] not in CHRONO_UNIT_DISPLAY:
        raise InlineExpressionError(expression, f"DIU={parts['DIU']!r} is not a ChronoUnit name "
                                    f"({', '.join(CHRONO_UNIT_DISPLAY)}; case matters)")
    unit = CHRONO_UNIT_DISPLAY[parts["DIU"]]
    try:
        amount = jv.parse_int(parts["DIA"])
        pattern = JavaDateTimePattern(parts["SP"])
        lower, upper = pattern.parse(parts["DL"]), pattern.parse(parts["DU"])
    except (ValueError, ShardingError) as exc:
        raise InlineExpressionError(expression, str(exc)) from exc
    if amount <= 0:
        raise InlineExpressionError(expression, f"DIA must be positive, got {amount}")
    results: list[str] = []
    t = lower
    while t <= upper:
        if len(results) >= limits.max_results:
            raise InlineExpressionError(expression, f"expands to more than {limits.max_results} names")
        results.append(parts["P"] + pattern.format(t))
        try:
            t = add_units(t, amount, unit, pattern.temporal)
        except ValueError as exc:
            raise InlineExpressionError(expression, str(exc)) from exc
        except OverflowError:
            break
    return results


_MOD_EXPRESSION = re.compile(r"^(?P<pre>[A-Za-z0-9_.\-]*)\$\{\s*(?P<var>[A-Za-z_][A-Za-z0-9_]*)\s*%\s*"
                             r"(?P<n>[1-9][0-9]{0,8})\s*\}(?P<post>[A-Za-z0-9_.\-]*)$")
_LONG_LIMIT = 1 << 63


class AlgorithmExpression:
    """A compiled `algorithm-expression`: call it with the variables (sharding column → value) to get a name.

    Missing variables read as null, as with ShardingSphere's Expando delegate; plain Python numbers are typed
    as SQL literals would be (`values.from_python`)."""

    def __init__(self, expression: str, limits: InlineLimits = DEFAULT_LIMITS) -> None:
        engine, body = split_engine(expression)
        if engine in ("LITERAL", "INTERVAL"):
            raise InlineExpressionError(expression, f"<{engine}> cannot be used as an algorithm-expression "
                                        "(ShardingSphere evaluates algorithm expressions with Groovy only)", 0)
        self.text = body.replace("$->{", "${")
        self.limits = limits
        self.gstring = parse_gstring(self.text, limits, expression)
        self.variables = self.gstring.variables
        # The most common expression, `prefix${column % n}suffix`, evaluated without the interpreter for plain
        # integers within Java's long range, where Groovy's `%` is Java's remainder (the sign of the dividend);
        # tests hold it to the interpreter's results.
        m = _MOD_EXPRESSION.match(self.text)
        self._fast: tuple[str, str, int, str] | None = (
            (m.group("var"), m.group("pre"), int(m.group("n")), m.group("post")) if m is not None else None)

    def __call__(self, variables: Mapping[str, object]) -> str:
        fast = self._fast
        if fast is not None and len(variables) == 1:
            v = variables.get(fast[0])
            if type(v) is int and -_LONG_LIMIT <= v < _LONG_LIMIT:
                r = abs(v) % fast[2]
                return f"{fast[1]}{-r if v < 0 else r}{fast[3]}"
        return self.evaluate(variables)

    def modulus(self, variable: str) -> int | None:
        """`n` when this expression is `prefix${variable % n}suffix`: its result for one variable that is a
        plain int in Java's long range then depends only on that value's Java remainder by `n` (the sign of the
        dividend, so -3 and 3 differ but -4 and 4 do not); None for any other expression.

        >>> expression = compile_algorithm_expression("ds_${id % 2}")
        >>> expression.modulus("id"), expression.modulus("k"), compile_algorithm_expression("ds_${id}").modulus("id")
        (2, None, None)
        """
        fast = self._fast
        return fast[2] if fast is not None and fast[0] == variable else None

    def evaluate(self, variables: Mapping[str, object]) -> str:
        """The interpreter's answer (the reference the fast path is tested against)."""
        bound: dict[str, GValue] = {k: _bind(v) for k, v in variables.items()}
        evaluator = _Evaluator(self.text, bound, self.limits)
        parts: list[str] = []
        try:
            for i, node in enumerate(self.gstring.values):
                parts.append(self.gstring.strings[i])
                parts.append(jv.java_str(evaluator.eval(node)))
        except InlineExpressionError:
            raise
        except ShardingError as exc:
            raise InlineExpressionError(self.text, exc.detail) from exc
        parts.append(self.gstring.strings[-1])
        return "".join(parts)

    def __repr__(self) -> str:
        return f"AlgorithmExpression({self.text!r})"


def _bind(v: object) -> GValue:
    if isinstance(v, (list, tuple)):
        return [_bind(e) for e in v]
    return jv.from_python(v)


def compile_algorithm_expression(expression: str, limits: InlineLimits = DEFAULT_LIMITS) -> AlgorithmExpression:
    """Compile an INLINE / COMPLEX_INLINE / HINT_INLINE `algorithm-expression` (the `<TYPE>` marker is removed
    and `$->{` becomes `${`; `<LITERAL>` and `<INTERVAL>` are refused, as ShardingSphere does)."""
    return AlgorithmExpression(expression, limits)


__all__ = ["DEFAULT_LIMITS", "AlgorithmExpression", "GString", "InlineLimits",
           "compile_algorithm_expression", "expand_data_nodes", "expand_interval", "parse_gstring", "split_engine",
           "split_pieces"]
