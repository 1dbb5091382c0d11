"""An OData 4.01 reference evaluator for one flat entity (the GetItems query options), written
from the contract the service implements; scripts/odata-conformance.sh runs it against the
service through tests/odata/differential.py.

It is deliberately independent of the Rust implementation: it parses `$filter`, `$orderby`,
`$select`, `$top`, `$skip`, `$count` and `$search` itself, type-checks expressions against the
column types, and evaluates them with OData's null semantics (eq/ne two-valued, and/or Kleene).

Errors:
  * `QueryError`   - the service must answer 400 (syntax or type error, bad option).
  * `Unsupported`  - a valid OData construct outside the contract; the service must answer 400
                     whose detail says "not supported".
  * `UnknownField` - a `QueryError` naming a field the entity does not have.

Values at run time: None (null), bool, int (Edm.Int64), float (decimal/double), str, Date,
DateTimeOffset, TimeOfDay, Duration, uuid.UUID. Date and time values are kept as integers
(days, picoseconds) so that any year and 12 fractional digits are exact.
"""

from __future__ import annotations

import functools
import math
import re
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Optional

# ---------------------------------------------------------------------------------------------
# Errors


class QueryError(Exception):
    """The query is invalid: the service must answer 400."""


class UnknownField(QueryError):
    def __init__(self, name: str):
        super().__init__(f"unknown field {name!r}")
        self.name = name


class TypeMismatch(QueryError):
    """A well-formed expression whose operand types do not fit (e.g. `Rating eq 'x'`)."""


class Unsupported(QueryError):
    """Valid OData, but outside the contract: 400 whose detail says 'not supported'."""


# ---------------------------------------------------------------------------------------------
# Temporal values (proleptic Gregorian, any year, picosecond precision)

PS = 10**12  # picoseconds per second
DAY_PS = 86400 * PS
I64_MIN, I64_MAX = -(2**63), 2**63 - 1


def days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 (H. Hinnant's algorithm, valid for every year incl. <= 0)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(z: int) -> tuple[int, int, int]:
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return (y + (m <= 2), m, d)


def days_in_month(y: int, m: int) -> int:
    if m == 2:
        return 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28
    return 30 if m in (4, 6, 9, 11) else 31


@dataclass(frozen=True)
class Date:
    days: int  # since 1970-01-01

    def __str__(self) -> str:
        y, m, d = civil_from_days(self.days)
        return f"{y:04d}-{m:02d}-{d:02d}"


@dataclass(frozen=True)
class DateTimeOffset:
    ps: int  # instant: picoseconds since 1970-01-01T00:00:00Z
    offset: int  # minutes east of UTC, as written

    def local(self) -> tuple[int, int]:
        """(days, picoseconds into the day) in the value's own offset."""
        loc = self.ps + self.offset * 60 * PS
        return loc // DAY_PS, loc % DAY_PS


@dataclass(frozen=True)
class TimeOfDay:
    ps: int


@dataclass(frozen=True)
class Duration:
    ps: int


def frac_ps(frac: Optional[str]) -> int:
    return int((frac or "").ljust(12, "0")[:12] or "0")


_DATE = r"(-?(?:[1-9][0-9]{4,}|[0-9]{4}))-([0-9]{2})-([0-9]{2})"
_TIME = r"([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,12}))?)?"
DATE_RE = re.compile(_DATE)
DTO_RE = re.compile(_DATE + r"[Tt]" + _TIME + r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))")
TIME_RE = re.compile(_TIME)
GUID_RE = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
NUMBER_RE = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")
DURATION_RE = re.compile(
    r"(-)?P(?:([0-9]+)D)?(?:T(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)(?:\.([0-9]{1,12}))?S)?)?\Z"
)


def make_date(y: str, m: str, d: str) -> Date:
    yi, mi, di = int(y), int(m), int(d)
    if not (1 <= mi <= 12 and 1 <= di <= days_in_month(yi, mi)):
        raise QueryError(f"invalid date {y}-{m}-{d}")
    return Date(days_from_civil(yi, mi, di))


def make_time_ps(h: str, mi: str, s: Optional[str], f: Optional[str]) -> int:
    hi, mii, si = int(h), int(mi), int(s or 0)
    # 60 seconds is accepted: the OASIS cases include the leap second 23:59:60.
    if hi > 23 or mii > 59 or si > 60:
        raise QueryError("invalid time of day")
    return ((hi * 60 + mii) * 60 + si) * PS + frac_ps(f)


def dto_from_match(m: re.Match) -> DateTimeOffset:
    date = make_date(m.group(1), m.group(2), m.group(3))
    tod = make_time_ps(m.group(4), m.group(5), m.group(6), m.group(7))
    if m.group(8):
        off = 0
    else:
        oh, om = int(m.group(10)), int(m.group(11))
        if oh > 23 or om > 59:
            raise QueryError("invalid offset")
        off = (oh * 60 + om) * (1 if m.group(9) == "+" else -1)
    return DateTimeOffset(date.days * DAY_PS + tod - off * 60 * PS, off)


def parse_date_value(s: str) -> Optional[Date]:
    m = DATE_RE.fullmatch(s)
    try:
        return make_date(*m.groups()) if m else None
    except QueryError:
        return None


def parse_dto_value(s: str) -> Optional[DateTimeOffset]:
    m = DTO_RE.fullmatch(s)
    try:
        return dto_from_match(m) if m else None
    except QueryError:
        return None


def parse_duration(body: str) -> Duration:
    m = DURATION_RE.match(body)
    if not m or body in ("P", "-P") or body.endswith("T"):
        raise QueryError(f"invalid duration {body!r}")
    sign, d, h, mi, s, f = m.groups()
    ps = (((int(d or 0) * 24 + int(h or 0)) * 60 + int(mi or 0)) * 60 + int(s or 0)) * PS + frac_ps(f)
    return Duration(-ps if sign else ps)


MAX_DTO = DateTimeOffset(days_from_civil(9999, 12, 31) * DAY_PS + (86399 * PS) + 999_999_999_000, 0)
MIN_DTO = DateTimeOffset(days_from_civil(1, 1, 1) * DAY_PS, 0)

# ---------------------------------------------------------------------------------------------
# Types. Static type names: int num str bool date dto time dur guid null.

NUMERIC = ("int", "num")


def column_type(prop: dict) -> str:
    """The static type of a column from its JSON Schema property."""
    t = prop.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), "null")
    if t == "integer":
        return "int"
    if t == "number":
        return "num"
    if t == "boolean":
        return "bool"
    if t == "string":
        return {"date": "date", "date-time": "dto"}.get(prop.get("format", ""), "str")
    raise QueryError(f"unsupported column type {t!r}")


def read_value(raw: Any, typ: str) -> Any:
    """A stored JSON value read as its column's type (missing/null/unreadable -> None)."""
    if raw is None:
        return None
    if typ == "int":
        return raw if isinstance(raw, int) and not isinstance(raw, bool) else None
    if typ == "num":
        return float(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else None
    if typ == "bool":
        return raw if isinstance(raw, bool) else None
    if typ == "date":
        return parse_date_value(raw) if isinstance(raw, str) else None
    if typ == "dto":
        return parse_dto_value(raw) if isinstance(raw, str) else None
    return raw if isinstance(raw, str) else None


def compatible(a: str, b: str) -> bool:
    if a == "null" or b == "null" or a == b:
        return True
    if a in NUMERIC and b in NUMERIC:
        return True
    pair = {a, b}
    return pair == {"date", "dto"} or pair == {"guid", "str"}


# ---------------------------------------------------------------------------------------------
# AST: tuples. ("lit", value, type) ("field", name) ("not", e) ("neg", e) ("bin", op, l, r)
# ("in", e, [items]) ("call", name, [args])


KEYWORD_OPS = {"and", "or", "eq", "ne", "gt", "ge", "lt", "le", "in", "has", "add", "sub", "mul",
               "div", "divby", "mod"}
# Standard OData functions outside the contract: valid OData, so "not supported".
UNSUPPORTED_FUNCS = {"cast", "isof", "hassubset", "hassubsequence", "totalseconds", "case", "any",
                     "all"}
FUNC_ARITY = {
    "contains": (2, 2), "startswith": (2, 2), "endswith": (2, 2), "length": (1, 1),
    "indexof": (2, 2), "substring": (2, 3), "tolower": (1, 1), "toupper": (1, 1), "trim": (1, 1),
    "concat": (2, 2), "matchespattern": (2, 2), "year": (1, 1), "month": (1, 1), "day": (1, 1),
    "hour": (1, 1), "minute": (1, 1), "second": (1, 1), "fractionalseconds": (1, 1),
    "date": (1, 1), "time": (1, 1), "totaloffsetminutes": (1, 1), "now": (0, 0),
    "maxdatetime": (0, 0), "mindatetime": (0, 0), "round": (1, 1), "floor": (1, 1),
    "ceiling": (1, 1),
}
IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
WS = " \t"


class Parser:
    """Recursive descent over the decoded expression text (scannerless, so that `-5`, dates and
    times need no separate lexer modes)."""

    def __init__(self, text: str):
        self.s = text
        self.i = 0

    # -- helpers
    def error(self, msg: str) -> QueryError:
        return QueryError(f"{msg} at position {self.i} in {self.s!r}")

    def ws(self) -> int:
        start = self.i
        while self.i < len(self.s) and self.s[self.i] in WS:
            self.i += 1
        return self.i - start

    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.s[j] if j < len(self.s) else ""

    def keyword_op(self, ops: set[str]) -> Optional[str]:
        """A binary keyword operator: RWS, the word, then RWS (BWS before '(' for `in`)."""
        save = self.i
        if self.ws() == 0:
            self.i = save
            return None
        m = IDENT_RE.match(self.s, self.i)
        if m and m.group(0).lower() in ops:
            word = m.group(0).lower()
            self.i = m.end()
            nxt = self.peek()
            if nxt in WS or (word == "in" and nxt in "(["):
                return word
        self.i = save
        return None

    # -- grammar, lowest precedence first
    def parse(self) -> tuple:
        if self.s == "":
            raise QueryError("empty expression")
        e = self.parse_or()
        if self.i != len(self.s):
            raise self.error("unexpected text")
        return e

    def binary_level(self, ops: set[str], nxt: Callable[[], tuple]) -> tuple:
        left = nxt()
        while True:
            op = self.keyword_op(ops)
            if op is None:
                return left
            self.ws()
            left = ("bin", op, left, nxt())

    def parse_or(self) -> tuple:
        return self.binary_level({"or"}, self.parse_and)

    def parse_and(self) -> tuple:
        return self.binary_level({"and"}, self.parse_eq)

    def parse_eq(self) -> tuple:
        return self.binary_level({"eq", "ne"}, self.parse_rel)

    def parse_rel(self) -> tuple:
        left = self.parse_add()
        while True:
            op = self.keyword_op({"gt", "ge", "lt", "le", "in", "has"})
            if op is None:
                return left
            self.ws()
            if op == "has":
                raise Unsupported("the has operator is not supported")
            if op == "in":
                left = ("in", left, self.parse_list())
            else:
                left = ("bin", op, left, self.parse_add())

    def parse_list(self) -> list:
        if self.peek() == "[":
            raise Unsupported("JSON array in lists are not supported")
        if self.peek() != "(":
            raise Unsupported("in with a collection expression is not supported")
        self.i += 1
        self.ws()
        items = [self.parse_or()]
        self.ws()
        while self.peek() == ",":
            self.i += 1
            self.ws()
            items.append(self.parse_or())
            self.ws()
        if self.peek() != ")":
            raise self.error("expected ) closing the list")
        self.i += 1
        return items

    def parse_add(self) -> tuple:
        return self.binary_level({"add", "sub"}, self.parse_mul)

    def parse_mul(self) -> tuple:
        return self.binary_level({"mul", "div", "divby", "mod"}, self.parse_unary)

    def parse_unary(self) -> tuple:
        if self.peek() == "-" and not (self.peek(1).isdigit() or self.s.startswith("INF", self.i + 1)):
            self.i += 1
            self.ws()
            return ("neg", self.parse_unary())
        m = IDENT_RE.match(self.s, self.i)
        if m and m.group(0).lower() == "not" and (self.s[m.end():m.end() + 1] in (" ", "\t", "(")):
            self.i = m.end()
            self.ws()
            return ("not", self.parse_unary())
        return self.parse_primary()

    def parse_primary(self) -> tuple:
        s, i = self.s, self.i
        c = self.peek()
        if c == "":
            raise self.error("expression expected")
        if c == "(":
            self.i += 1
            self.ws()
            e = self.parse_or()
            self.ws()
            if self.peek() == ",":
                raise self.error("a list is only allowed after in")
            if self.peek() != ")":
                raise self.error("expected )")
            self.i += 1
            return e
        if c == "'":
            return ("lit", self.string_literal(), "str")
        if c == "$":
            raise Unsupported("$it, $root, $this and other $ expressions are not supported")
        if c == "@":
            raise Unsupported("parameter aliases and annotations are not supported")
        if c in "{[":
            raise Unsupported("JSON literals are not supported")
        # Literals that start with a digit or a sign, longest forms first.
        for regex, kind in ((DTO_RE, "dto"), (DATE_RE, "date"), (GUID_RE, "guid"), (TIME_RE, "time")):
            m = regex.match(s, i)
            if m and not self.ident_char_at(m.end()):
                self.i = m.end()
                if kind == "dto":
                    return ("lit", dto_from_match(m), "dto")
                if kind == "date":
                    return ("lit", make_date(*m.groups()), "date")
                if kind == "guid":
                    return ("lit", uuid.UUID(m.group(0)), "guid")
                return ("lit", TimeOfDay(make_time_ps(*m.groups())), "time")
        if s.startswith("-INF", i) and not self.ident_char_at(i + 4):
            self.i += 4
            return ("lit", -math.inf, "num")
        m = NUMBER_RE.match(s, i)
        if m:
            if self.ident_char_at(m.end()) or self.peek_at(m.end()) == ".":
                raise self.error("malformed number")
            self.i = m.end()
            text = m.group(0)
            if m.group(1) is None and m.group(2) is None:
                v = int(text)
                return ("lit", v, "int") if I64_MIN <= v <= I64_MAX else ("lit", float(v), "num")
            return ("lit", float(text), "num")
        m = IDENT_RE.match(s, i)
        if not m:
            raise self.error("unexpected character")
        name = m.group(0)
        self.i = m.end()
        nxt = self.peek()
        if nxt == "'":
            if name.lower() == "duration":
                return ("lit", parse_duration(self.string_literal()), "dur")
            raise Unsupported(f"{name}'...' literals are not supported")
        if nxt == ".":
            raise Unsupported(f"qualified names ({name}.…) are not supported")
        if nxt == "/":
            raise Unsupported("paths with / are not supported")
        if nxt == "(":
            return self.call(name)
        low = name.lower()
        if low in ("true", "false"):
            return ("lit", low == "true", "bool")
        if low == "null":
            return ("lit", None, "null")
        if name == "INF":
            return ("lit", math.inf, "num")
        if name == "NaN":
            return ("lit", math.nan, "num")
        return ("field", name)

    def call(self, name: str) -> tuple:
        low = name.lower()
        if low in UNSUPPORTED_FUNCS or low.startswith("geo"):
            raise Unsupported(f"the function {name} is not supported")
        if low not in FUNC_ARITY:
            raise QueryError(f"unknown function {name}")
        self.i += 1  # (
        self.ws()
        args: list = []
        if self.peek() != ")":
            args.append(self.parse_or())
            self.ws()
            while self.peek() == ",":
                self.i += 1
                self.ws()
                args.append(self.parse_or())
                self.ws()
        if self.peek() != ")":
            raise self.error("expected ) after function arguments")
        self.i += 1
        lo, hi = FUNC_ARITY[low]
        if not lo <= len(args) <= hi:
            raise QueryError(f"{name} takes {lo}..{hi} arguments")
        return ("call", low, args)

    def string_literal(self) -> str:
        assert self.peek() == "'"
        self.i += 1
        out = []
        while True:
            if self.i >= len(self.s):
                raise self.error("unterminated string")
            ch = self.s[self.i]
            if ch == "'":
                if self.peek(1) == "'":
                    out.append("'")
                    self.i += 2
                    continue
                self.i += 1
                return "".join(out)
            out.append(ch)
            self.i += 1

    def ident_char_at(self, j: int) -> bool:
        return j < len(self.s) and (self.s[j].isalnum() or self.s[j] == "_")

    def peek_at(self, j: int) -> str:
        return self.s[j] if j < len(self.s) else ""


def parse_expression(text: str) -> tuple:
    return Parser(text).parse()


# ---------------------------------------------------------------------------------------------
# Static typing


class Typer:
    def __init__(self, columns: dict[str, str]):
        self.columns = columns

    def type(self, e: tuple) -> str:
        kind = e[0]
        if kind == "lit":
            return e[2]
        if kind == "field":
            if e[1] not in self.columns:
                raise UnknownField(e[1])
            return self.columns[e[1]]
        if kind == "not":
            t = self.type(e[1])
            if t not in ("bool", "null"):
                raise TypeMismatch("not needs a boolean")
            return "bool"
        if kind == "neg":
            t = self.type(e[1])
            if t not in ("int", "num", "dur", "null"):
                raise TypeMismatch("- needs a number or a duration")
            return t
        if kind == "in":
            t = self.type(e[1])
            for item in e[2]:
                if not compatible(t, self.type(item)):
                    raise TypeMismatch("in list item of an incompatible type")
            return "bool"
        if kind == "bin":
            return self.binary(e[1], self.type(e[2]), self.type(e[3]))
        if kind == "call":
            return self.call(e[1], [self.type(a) for a in e[2]])
        raise AssertionError(e)

    @staticmethod
    def binary(op: str, a: str, b: str) -> str:
        if op in ("and", "or"):
            if a not in ("bool", "null") or b not in ("bool", "null"):
                raise TypeMismatch(f"{op} needs booleans")
            return "bool"
        if op in ("eq", "ne", "gt", "ge", "lt", "le"):
            if not compatible(a, b):
                raise TypeMismatch(f"cannot compare {a} with {b}")
            return "bool"
        if a == "null" and b == "null":
            return "null"
        if op in ("add", "sub"):
            if a in NUMERIC + ("null",) and b in NUMERIC + ("null",):
                return "num" if "num" in (a, b) else "int"
            if a == "dto" and b in ("dur", "null"):
                return "dto"
            if op == "sub" and (a, b) in (("dto", "dto"), ("date", "date"), ("date", "null"),
                                          ("null", "dto"), ("null", "date")):
                return "dur"
            if a in ("dur", "null") and b in ("dur", "null"):
                return "dur"
            raise TypeMismatch(f"cannot {op} {a} and {b}")
        # mul div divby mod
        if a not in NUMERIC + ("null",) or b not in NUMERIC + ("null",):
            raise TypeMismatch(f"{op} needs numbers")
        if op == "divby":
            return "num"
        return "num" if "num" in (a, b) else "int"

    @staticmethod
    def call(name: str, args: list[str]) -> str:
        def need(i: int, *allowed: str) -> None:
            if args[i] != "null" and args[i] not in allowed:
                raise TypeMismatch(f"{name}: argument {i + 1} has type {args[i]}")

        if name in ("contains", "startswith", "endswith", "matchespattern"):
            need(0, "str")
            need(1, "str")
            return "bool"
        if name == "length":
            need(0, "str")
            return "int"
        if name == "indexof":
            need(0, "str")
            need(1, "str")
            return "int"
        if name == "substring":
            need(0, "str")
            for i in range(1, len(args)):
                need(i, "int")
            return "str"
        if name in ("tolower", "toupper", "trim"):
            need(0, "str")
            return "str"
        if name == "concat":
            need(0, "str")
            need(1, "str")
            return "str"
        if name in ("year", "month", "day"):
            need(0, "date", "dto")
            return "int"
        if name in ("hour", "minute", "second"):
            need(0, "dto", "time")
            return "int"
        if name == "fractionalseconds":
            need(0, "dto", "time")
            return "num"
        if name == "date":
            need(0, "dto")
            return "date"
        if name == "time":
            need(0, "dto")
            return "time"
        if name == "totaloffsetminutes":
            need(0, "dto")
            return "int"
        if name in ("now", "maxdatetime", "mindatetime"):
            return "dto"
        if name in ("round", "floor", "ceiling"):
            need(0, "int", "num")
            return "num" if args[0] == "null" else args[0]
        raise AssertionError(name)


# ---------------------------------------------------------------------------------------------
# Evaluation


def as_guid(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return uuid.UUID(v) if GUID_RE.fullmatch(v) else None
        except ValueError:
            return None
    return v


def normalize_pair(a: Any, b: Any) -> tuple[Any, Any]:
    """Brings two non-null compatible values to one comparable representation."""
    if isinstance(a, Date) and isinstance(b, DateTimeOffset):
        a = DateTimeOffset(a.days * DAY_PS, 0)
    elif isinstance(b, Date) and isinstance(a, DateTimeOffset):
        b = DateTimeOffset(b.days * DAY_PS, 0)
    if isinstance(a, uuid.UUID) or isinstance(b, uuid.UUID):
        a, b = as_guid(a), as_guid(b)
    return a, b


def sort_key(v: Any) -> Any:
    if isinstance(v, (Date,)):
        return v.days
    if isinstance(v, (DateTimeOffset, TimeOfDay, Duration)):
        return v.ps
    if isinstance(v, uuid.UUID):
        return v.int
    return v


def compare(a: Any, b: Any) -> Optional[int]:
    """-1/0/1 for two non-null values; None when unordered (NaN) or a side reads as null."""
    a, b = normalize_pair(a, b)
    if a is None or b is None:
        return None
    ka, kb = sort_key(a), sort_key(b)
    if isinstance(ka, float) and math.isnan(ka) or isinstance(kb, float) and math.isnan(kb):
        return None
    return (ka > kb) - (ka < kb)


def equals(a: Any, b: Any) -> bool:
    if a is None and b is None:
        return True
    if a is None or b is None:
        return False
    # A string that is no guid reads as null against a guid: null eq non-null is false, and
    # compare() answers None for it.
    return compare(a, b) == 0


def int_result(v: int) -> Any:
    return v if I64_MIN <= v <= I64_MAX else float(v)


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def arithmetic(op: str, a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    if op in ("add", "sub"):
        sign = 1 if op == "add" else -1
        if isinstance(a, DateTimeOffset) and isinstance(b, Duration):
            return DateTimeOffset(a.ps + sign * b.ps, a.offset)
        if isinstance(a, DateTimeOffset) and isinstance(b, DateTimeOffset):
            return Duration(a.ps - b.ps)
        if isinstance(a, Date) and isinstance(b, Date):
            return Duration((a.days - b.days) * DAY_PS)
        if isinstance(a, Duration) and isinstance(b, Duration):
            return Duration(a.ps + sign * b.ps)
        if is_int(a) and is_int(b):
            return int_result(a + sign * b)
        return float(a) + sign * float(b)
    if op == "mul":
        if is_int(a) and is_int(b):
            return int_result(a * b)
        return float(a) * float(b)
    if op == "divby":
        return None if b == 0 else float(a) / float(b)
    if op == "div":
        if b == 0:
            return None
        if is_int(a) and is_int(b):
            q = abs(a) // abs(b)
            return int_result(q if (a >= 0) == (b > 0) else -q)
        return float(a) / float(b)
    if op == "mod":
        if b == 0:
            return None
        if is_int(a) and is_int(b):
            r = abs(a) % abs(b)
            return r if a >= 0 else -r
        return math.fmod(float(a), float(b))
    raise AssertionError(op)


def round_half_away(x: float) -> float:
    if math.isnan(x) or math.isinf(x):
        return x
    r = math.floor(abs(x) + 0.5)
    return float(r if x >= 0 else -r)


def call_function(name: str, args: list[Any], now: DateTimeOffset) -> Any:
    if name == "now":
        return now
    if name == "maxdatetime":
        return MAX_DTO
    if name == "mindatetime":
        return MIN_DTO
    if any(a is None for a in args):
        return None
    a = args[0]
    if name == "contains":
        return args[1] in a
    if name == "startswith":
        return a.startswith(args[1])
    if name == "endswith":
        return a.endswith(args[1])
    if name == "length":
        return len(a)
    if name == "indexof":
        return a.find(args[1])
    if name == "substring":
        start = max(args[1], 0)
        if len(args) == 3:
            if args[2] < 0:
                return ""
            return a[start:start + args[2]]
        return a[start:]
    if name == "tolower":
        return a.lower()
    if name == "toupper":
        return a.upper()
    if name == "trim":
        return a.strip()
    if name == "concat":
        return a + args[1]
    if name == "matchespattern":
        return re.search(args[1], a) is not None
    if name in ("year", "month", "day"):
        days = a.days if isinstance(a, Date) else a.local()[0]
        y, m, d = civil_from_days(days)
        return {"year": y, "month": m, "day": d}[name]
    if name in ("hour", "minute", "second", "fractionalseconds"):
        tod = a.ps if isinstance(a, TimeOfDay) else a.local()[1]
        secs, frac = divmod(tod, PS)
        if name == "hour":
            return secs // 3600
        if name == "minute":
            return secs // 60 % 60
        if name == "second":
            return secs % 60
        return frac / PS
    if name == "date":
        return Date(a.local()[0])
    if name == "time":
        return TimeOfDay(a.local()[1])
    if name == "totaloffsetminutes":
        return a.offset
    if name == "round":
        return a if is_int(a) else round_half_away(a)
    if name == "floor":
        return a if is_int(a) else float(math.floor(a)) if math.isfinite(a) else a
    if name == "ceiling":
        return a if is_int(a) else float(math.ceil(a)) if math.isfinite(a) else a
    raise AssertionError(name)


class Evaluator:
    def __init__(self, columns: dict[str, str], now: DateTimeOffset):
        self.columns = columns
        self.now = now

    def eval(self, e: tuple, item: dict) -> Any:
        kind = e[0]
        if kind == "lit":
            return e[1]
        if kind == "field":
            return read_value(item.get(e[1]), self.columns[e[1]])
        if kind == "not":
            v = self.eval(e[1], item)
            return None if v is None else not v
        if kind == "neg":
            v = self.eval(e[1], item)
            if v is None:
                return None
            if isinstance(v, Duration):
                return Duration(-v.ps)
            return int_result(-v) if is_int(v) else -v
        if kind == "in":
            # x in (a, b) == x eq a or x eq b: eq is two-valued, so the result is too.
            x = self.eval(e[1], item)
            return any(equals(x, self.eval(i, item)) for i in e[2])
        if kind == "call":
            return call_function(e[1], [self.eval(a, item) for a in e[2]], self.now)
        op = e[1]
        if op == "and":
            a = self.eval(e[2], item)
            if a is False:
                return False
            b = self.eval(e[3], item)
            if b is False:
                return False
            return None if a is None or b is None else True
        if op == "or":
            a = self.eval(e[2], item)
            if a is True:
                return True
            b = self.eval(e[3], item)
            if b is True:
                return True
            return None if a is None or b is None else False
        a, b = self.eval(e[2], item), self.eval(e[3], item)
        if op == "eq":
            return equals(a, b)
        if op == "ne":
            return not equals(a, b)
        if op in ("gt", "lt"):
            c = None if a is None or b is None else compare(a, b)
            return c is not None and (c > 0 if op == "gt" else c < 0)
        if op in ("ge", "le"):
            if a is None and b is None:
                return True
            c = None if a is None or b is None else compare(a, b)
            return c is not None and (c >= 0 if op == "ge" else c <= 0)
        return arithmetic(op, a, b)


# ---------------------------------------------------------------------------------------------
# $search


class SearchParser:
    """searchExpr: OR / AND (also implicit) / NOT, parentheses, words and "phrases"."""

    TOKEN_RE = re.compile(r'\s*(\(|\)|"[^"]*"|[^\s()"]+)')

    def __init__(self, text: str):
        self.tokens: list[str] = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = self.TOKEN_RE.match(text, pos)
            if not m:
                raise QueryError("invalid $search")
            self.tokens.append(m.group(1))
            pos = m.end()
        self.k = 0

    def parse(self) -> tuple:
        if not self.tokens:
            raise QueryError("empty $search")
        e = self.or_expr()
        if self.k != len(self.tokens):
            raise QueryError("invalid $search")
        return e

    def peek(self) -> Optional[str]:
        return self.tokens[self.k] if self.k < len(self.tokens) else None

    def or_expr(self) -> tuple:
        left = self.and_expr()
        while self.peek() == "OR":
            self.k += 1
            left = ("or", left, self.and_expr())
        return left

    def and_expr(self) -> tuple:
        left = self.not_expr()
        while self.peek() not in (None, ")", "OR"):
            if self.peek() == "AND":
                self.k += 1
            left = ("and", left, self.not_expr())
        return left

    def not_expr(self) -> tuple:
        if self.peek() == "NOT":
            self.k += 1
            return ("not", self.not_expr())
        return self.primary()

    def primary(self) -> tuple:
        t = self.peek()
        if t is None or t in (")", "AND", "OR"):
            raise QueryError("invalid $search")
        self.k += 1
        if t == "(":
            e = self.or_expr()
            if self.peek() != ")":
                raise QueryError("invalid $search: missing )")
            self.k += 1
            return e
        if t.startswith('"'):
            if len(t) < 2 or not t.endswith('"') or len(t) == 2:
                raise QueryError("invalid $search phrase")
            return ("term", t[1:-1])
        return ("term", t)


def search_matches(e: tuple, texts: list[str]) -> bool:
    if e[0] == "term":
        needle = e[1].lower()
        return any(needle in t for t in texts)
    if e[0] == "not":
        return not search_matches(e[1], texts)
    if e[0] == "and":
        return search_matches(e[1], texts) and search_matches(e[2], texts)
    return search_matches(e[1], texts) or search_matches(e[2], texts)


# ---------------------------------------------------------------------------------------------
# A whole query

KNOWN_OPTIONS = {"filter", "orderby", "select", "top", "skip", "count", "search", "skiptoken"}
UNSUPPORTED_OPTIONS = {"expand", "apply", "compute"}
MAX_TOP = 100_000


@dataclass
class Result:
    keys: list[str]
    items: list[dict]  # projected as the service must return them
    count: Optional[int]  # @odata.count when $count=true


class Entity:
    def __init__(self, items: list[dict], columns: dict[str, str], key: str, now: DateTimeOffset):
        self.items = items
        self.columns = columns
        self.key = key
        self.typer = Typer(columns)
        self.evaluator = Evaluator(columns, now)

    def check_filter(self, text: str) -> tuple:
        e = parse_expression(text)
        t = self.typer.type(e)
        if t not in ("bool", "null"):
            raise TypeMismatch(f"$filter must be boolean, not {t}")
        return e

    def filter(self, text: str) -> list[dict]:
        e = self.check_filter(text)
        return [it for it in self.items if self.evaluator.eval(e, it) is True]

    def parse_orderby(self, text: str) -> list[tuple[tuple, bool]]:
        keys = []
        for part in split_top_level(text):
            m = re.search(r"[ \t]+(asc|desc)\Z", part, re.IGNORECASE)
            desc = False
            if m:
                desc = m.group(1).lower() == "desc"
                part = part[: m.start()]
            if part == "":
                raise QueryError("empty $orderby item")
            e = parse_expression(part)
            self.typer.type(e)
            keys.append((e, desc))
        return keys

    def order(self, items: list[dict], keys: list[tuple[tuple, bool]]) -> list[dict]:
        rows = [([self.evaluator.eval(e, it) for e, _ in keys], it) for it in items]

        def cmp(x: tuple, y: tuple) -> int:
            for (va, vb), (_, desc) in zip(zip(x[0], y[0]), keys):
                if va is None and vb is None:
                    c = 0
                elif va is None:
                    c = -1
                elif vb is None:
                    c = 1
                else:
                    c = compare(va, vb) or 0
                if c:
                    return -c if desc else c
            ka, kb = x[1][self.key], y[1][self.key]
            return (ka > kb) - (ka < kb)

        return [it for _, it in sorted(rows, key=functools.cmp_to_key(cmp))]

    def search(self, items: list[dict], text: str) -> list[dict]:
        e = SearchParser(text).parse()
        strings = [c for c, t in self.columns.items() if t == "str"]
        out = []
        for it in items:
            texts = [it[c].lower() for c in strings if isinstance(it.get(c), str)]
            if search_matches(e, texts):
                out.append(it)
        return out

    def run(self, options: list[tuple[str, str]]) -> Result:
        """Evaluates decoded (name, value) query options as the service must."""
        opts: dict[str, str] = {}
        for raw_name, value in options:
            if raw_name.startswith("@"):
                raise Unsupported("parameter aliases are not supported")
            name = raw_name[1:] if raw_name.startswith("$") else raw_name
            low = name.lower()
            if low in UNSUPPORTED_OPTIONS:
                raise Unsupported(f"${low} is not supported")
            if low not in KNOWN_OPTIONS:
                if raw_name.startswith("$"):
                    raise QueryError(f"unknown query option {raw_name}")
                continue  # a custom query option: ignored
            if low in opts:
                raise QueryError(f"${low} given twice")
            opts[low] = value
        items = self.items
        if "filter" in opts:
            if opts["filter"] == "":
                raise QueryError("empty $filter")
            items = self.filter(opts["filter"])
        if "search" in opts:
            items = self.search(items, opts["search"])
        keys = self.parse_orderby(opts["orderby"]) if "orderby" in opts else []
        items = self.order(items, keys)
        top = parse_count_value(opts.get("top"), "$top", MAX_TOP)
        skip = parse_count_value(opts.get("skip"), "$skip", None)
        count = None
        if "count" in opts:
            c = opts["count"].lower()
            if c not in ("true", "false"):
                raise QueryError("$count must be true or false")
            count = len(items) if c == "true" else None
        select = self.parse_select(opts["select"]) if "select" in opts else None
        page = items[skip or 0:]
        if top is not None:
            page = page[:top]
        projected = [it if select is None else {f: it.get(f) for f in select} for it in page]
        return Result([it[self.key] for it in page], projected, count)

    def parse_select(self, text: str) -> Optional[list[str]]:
        parts = text.split(",")
        if parts == ["*"]:
            return None
        out = []
        for p in parts:
            if p == "*":
                return None
            if "/" in p or "(" in p or "." in p or p.startswith("@"):
                raise Unsupported("select paths and options are not supported")
            if not IDENT_RE.fullmatch(p):
                raise QueryError(f"invalid $select item {p!r}")
            if p not in self.columns:
                raise UnknownField(p)
            if p not in out:
                out.append(p)
        return out


def parse_count_value(v: Optional[str], name: str, maximum: Optional[int]) -> Optional[int]:
    if v is None:
        return None
    if not re.fullmatch(r"[0-9]+", v):
        raise QueryError(f"{name} must be a non-negative integer")
    n = int(v)
    if maximum is not None and n > maximum:
        raise QueryError(f"{name} is at most {maximum}")
    return n


def split_top_level(text: str) -> list[str]:
    """Splits at commas outside parentheses and string literals."""
    parts, depth, quote, cur = [], 0, False, []
    for ch in text:
        if quote:
            cur.append(ch)
            if ch == "'":
                quote = False  # '' re-enters on the next quote
            continue
        if ch == "'":
            quote = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return parts
