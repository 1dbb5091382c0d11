"""Differential OData conformance check of GetItems against tests/odata/reference.py.

It generates a seeded data set, ingests it as the entity `Products` of a fresh instance, then
sends generated `$filter`/`$orderby`/`$select`/`$top`/`$skip`/`$count`/`$search` queries (plus
ill-typed and unsupported ones, and the OASIS ABNF test cases that apply to one flat entity) and
compares every answer with what the reference evaluator says the service must answer.

Run it through scripts/odata-conformance.sh, which starts the service in a loopback-only network
namespace. Exit status: 0 when everything agrees, 1 on any disagreement, 5xx or timeout.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import sys
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any, Optional

sys.dont_write_bytecode = True  # no __pycache__ next to the committed sources
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as ref  # noqa: E402  (a sibling module, not a package)

ENTITY = "Products"
KEY = "ID"
# The column types the generator writes; the service's inferred schema must say the same.
COLUMNS: dict[str, str] = {
    "ID": "str", "Name": "str", "Category": "str", "Rating": "int", "Price": "num",
    "Completed": "bool", "IsActive": "bool", "ReleaseDate": "date", "CreatedAt": "dto",
    "Code": "str",
}

# ---------------------------------------------------------------------------------------------
# Data


WORDS = ["apple", "Berry", "cherry pie", "O'Brien", "café", "Straße", "naïve", "Zeta", "alpha",
         "ALPHA", "mango", "kiwi fruit", "Ünïcode", "", " padded ", "dash-ed", "x", "Tool", "bolt",
         "nut's", "Éclair", "zebra", "Mañana", "tree house"]
CATEGORIES = ["Tools", "Toys", "Books", "Garden", "books"]
OFFSETS = [0, 0, 120, -330, 345, -480, 60, 0]  # minutes; 0 is written as Z or +00:00


def render_offset(off: int, zulu: bool = True) -> str:
    if off == 0 and zulu:
        return "Z"
    sign = "+" if off >= 0 else "-"
    return f"{sign}{abs(off) // 60:02d}:{abs(off) % 60:02d}"


def render_dto(ps: int, off: int, digits: int, zulu: bool = True, seconds: bool = True) -> str:
    """An instant written in the given offset with `digits` fractional digits."""
    local = ps + off * 60 * ref.PS
    days, tod = divmod(local, ref.DAY_PS)
    y, m, d = ref.civil_from_days(days)
    secs, frac = divmod(tod, ref.PS)
    text = f"{y:04d}-{m:02d}-{d:02d}T{secs // 3600:02d}:{secs // 60 % 60:02d}"
    if seconds:
        text += f":{secs % 60:02d}"
        if digits:
            text += "." + f"{frac:012d}"[:digits]
    return text + render_offset(off, zulu)


def render_date(days: int) -> str:
    y, m, d = ref.civil_from_days(days)
    return f"{y:04d}-{m:02d}-{d:02d}"


DAY_2015 = ref.days_from_civil(2015, 1, 1)
DAY_2026_END = ref.days_from_civil(2026, 12, 31)
DAY_2025_END = ref.days_from_civil(2025, 12, 31)


def generate_items(rng: random.Random, n: int = 300) -> list[dict]:
    items = []
    for i in range(1, n + 1):
        it: dict[str, Any] = {"ID": f"P{i:03d}"}
        it["Name"] = rng.choice(WORDS) if rng.random() < 0.7 else rng.choice(WORDS) + " " + rng.choice(WORDS)
        it["Category"] = rng.choice(CATEGORIES)
        it["Rating"] = rng.randint(-5, 10)
        if rng.random() < 0.25:  # integral prices, written as JSON integers or as 12.0
            whole = rng.randint(-20, 200)
            it["Price"] = whole if rng.random() < 0.5 else float(whole)
        else:
            it["Price"] = rng.randint(-5000, 50000) / 100
        it["Completed"] = rng.random() < 0.5
        it["IsActive"] = rng.random() < 0.6
        it["ReleaseDate"] = render_date(rng.randint(DAY_2015, DAY_2026_END))
        # CreatedAt stays in the past so that comparisons with now() are stable.
        ps = rng.randint(DAY_2015 * 86400, DAY_2025_END * 86400) * ref.PS
        if rng.random() < 0.1:
            ps = ps // ref.DAY_PS * ref.DAY_PS  # midnight UTC: equal to a date
        digits = rng.choice([0, 0, 3, 7])
        ps += rng.randint(0, 10**digits - 1) * 10 ** (12 - digits) if digits else 0
        it["CreatedAt"] = render_dto(ps, rng.choice(OFFSETS), digits, zulu=rng.random() < 0.8)
        code = str(rng.randint(0, 99999)).zfill(rng.choice([3, 4, 5]))
        it["Code"] = code
        for f in list(it):
            if f != KEY and rng.random() < 0.12:
                if rng.random() < 0.5:
                    del it[f]
                else:
                    it[f] = None
        items.append(it)
    return items


# ---------------------------------------------------------------------------------------------
# Query strings


def encode_options(options: list[tuple[str, str]]) -> str:
    return "&".join(urllib.parse.quote(n, safe="$") + "=" + urllib.parse.quote(v, safe="")
                    for n, v in options)


def encode_raw(text: str, keep: str) -> str:
    """Percent-encodes what a URL needs, keeping the characters in `keep` as they are."""
    out = []
    for ch in text:
        if ch.isascii() and (ch.isalnum() or ch in "-._~" or ch in keep):
            out.append(ch)
        else:
            out.append("".join(f"%{b:02X}" for b in ch.encode("utf-8")))
    return "".join(out)


def decode_query(qs: str) -> list[tuple[str, str]]:
    """Splits a query string the way the service must: at & and the first =, then %-decodes
    (no + as space: every + we send is %2B)."""
    if qs == "":
        return []
    out = []
    for part in qs.split("&"):
        name, _, value = part.partition("=")
        out.append((urllib.parse.unquote(name), urllib.parse.unquote(value)))
    return out


# ---------------------------------------------------------------------------------------------
# Expression generator


def kw(rng: random.Random, word: str) -> str:
    """Keywords and function names are case-insensitive: vary their spelling now and then."""
    r = rng.random()
    if r < 0.08:
        return word.upper()
    if r < 0.14:
        return word[0].upper() + word[1:]
    return word


def quote_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


class ExprGen:
    def __init__(self, rng: random.Random, items: list[dict]):
        self.rng = rng
        self.items = items
        self.values: dict[str, list] = {c: [it[c] for it in items if it.get(c) is not None] for c in COLUMNS}

    # -- literals
    def lit(self, t: str) -> str:
        r = self.rng
        if t == "int":
            v = r.choice([0, 1, 2, 3, 5, -1, -5, 7, 10, 11, 100])
            return ("+" + str(v)) if v > 0 and r.random() < 0.1 else str(v)
        if t == "num":
            choice = r.random()
            if choice < 0.4:
                v = r.choice(self.values["Price"])
                return repr(float(v)) if isinstance(v, float) else str(v)
            if choice < 0.6:
                return f"{r.randint(-50, 500)}.{r.randint(0, 99):02d}"
            if choice < 0.7:
                return f"{r.randint(1, 5)}e{r.randint(0, 2)}"
            if choice < 0.75:
                return r.choice(["INF", "-INF", "1.5E-3"])
            return self.safe_decimal()
        if t == "str":
            col = r.choice(["Name", "Category", "Code", "ID", "Name"])
            v = r.choice(self.values[col])
            if r.random() < 0.3 and v:
                a = r.randrange(len(v))
                v = v[a:a + r.randint(1, 4)]
            if r.random() < 0.1:
                v = v.upper() if r.random() < 0.5 else v.lower()
            return quote_str(v)
        if t == "bool":
            return kw(r, r.choice(["true", "false"]))
        if t == "date":
            if r.random() < 0.5:
                return r.choice(self.values["ReleaseDate"])
            return render_date(r.randint(DAY_2015, DAY_2026_END))
        if t == "dto":
            if r.random() < 0.5:  # a data instant, re-written in another offset
                v = ref.parse_dto_value(r.choice(self.values["CreatedAt"]))
                assert v is not None
                return render_dto(v.ps, r.choice(OFFSETS), 7, zulu=r.random() < 0.7)
            ps = r.randint(DAY_2015 * 86400, DAY_2025_END * 86400) * ref.PS
            form = r.random()
            if form < 0.2:
                return render_dto(ps, r.choice(OFFSETS), 0, seconds=False)
            if form < 0.3:
                return render_dto(ps + r.randint(0, 10**12 - 1), 0, 12)
            return render_dto(ps, r.choice(OFFSETS), r.choice([0, 3, 7]))
        if t == "time":
            text = f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}"
            if r.random() < 0.8:
                text += f":{r.randint(0, 59):02d}"
                if r.random() < 0.3:
                    text += f".{r.randint(0, 9999999):07d}"
            return text
        if t == "dur":
            return self.duration()
        if t == "guid":
            return str(uuid.UUID(int=r.getrandbits(128)))
        raise AssertionError(t)

    def safe_decimal(self) -> str:
        """A decimal with 3 digits ending in 5: never equal to a price (2 digits) nor to a price
        divided by 3 or 7, so float rounding cannot flip a comparison."""
        return f"{self.rng.randint(-60, 600)}.{self.rng.randint(0, 99):02d}5"

    def duration(self) -> str:
        r = self.rng
        body = "P"
        if r.random() < 0.7:
            body += f"{r.randint(0, 4000)}D"
        if r.random() < 0.7 or body == "P":
            body += "T" + f"{r.randint(0, 23)}H"
            if r.random() < 0.5:
                body += f"{r.randint(0, 59)}M"
            if r.random() < 0.3:
                body += f"{r.randint(0, 59)}.{r.randint(0, 9999):04d}S"
        if r.random() < 0.15:
            body = "-" + body
        return kw(r, "duration") + quote_str(body)

    # -- typed expressions; each returns (text, exact) where exact=False marks float results
    # that are only safe to compare by ordering against safe_decimal().
    def expr(self, t: str, depth: int) -> tuple[str, bool]:
        r = self.rng
        simple = depth <= 0 or r.random() < 0.45
        if t == "int":
            if simple:
                return ("Rating", True) if r.random() < 0.7 else (self.lit("int"), True)
            s = self.expr("str", depth - 1)[0]
            choices = [
                lambda: f"{kw(r, 'length')}({s})",
                lambda: f"{kw(r, 'indexof')}({s},{self.lit('str')})",
                lambda: f"{kw(r, r.choice(['year', 'month', 'day']))}({r.choice(['ReleaseDate', 'CreatedAt', 'date(CreatedAt)'])})",
                lambda: f"{kw(r, r.choice(['hour', 'minute', 'second']))}({r.choice(['CreatedAt', 'time(CreatedAt)'])})",
                lambda: f"{kw(r, 'totaloffsetminutes')}(CreatedAt)",
                lambda: f"Rating {kw(r, r.choice(['add', 'sub', 'mul']))} {self.expr('int', depth - 1)[0]}",
                lambda: f"Rating {kw(r, 'div')} {r.choice(['2', '3', '-2', '0', '(Rating sub 5)'])}",
                lambda: f"Rating {kw(r, 'mod')} {r.choice(['2', '3', '-3', '0'])}",
                lambda: f"-Rating" if r.random() < 0.5 else "-(Rating add 1)",
                lambda: f"{kw(r, 'round')}(Rating)",
                lambda: f"({self.expr('int', depth - 1)[0]}) {kw(r, 'add')} 1",
            ]
            return r.choice(choices)(), True
        if t == "num":
            if simple:
                return ("Price", True) if r.random() < 0.7 else (self.lit("num"), True)
            choices = [
                (lambda: f"{kw(r, r.choice(['round', 'floor', 'ceiling']))}(Price)", True),
                (lambda: f"Price {kw(r, 'add')} {r.randint(-20, 20)}.{r.randint(0, 99):02d}", False),
                (lambda: f"Price {kw(r, 'sub')} Rating", False),
                (lambda: f"Price {kw(r, 'mul')} {r.choice(['2', '-1', '3', '0'])}", False),
                (lambda: f"Price {kw(r, 'divby')} {r.choice(['3', '7'])}", False),
                (lambda: f"Price {kw(r, 'div')} {r.choice(['3', '7', '0'])}", False),
                (lambda: f"Rating {kw(r, 'divby')} 2", False),
                (lambda: f"Price {kw(r, 'mod')} {r.choice(['3', '7', '0'])}", False),
                (lambda: "-Price", True),
                (lambda: f"{kw(r, 'fractionalseconds')}(CreatedAt)", False),
            ]
            fn, exact = r.choice(choices)
            return fn(), exact
        if t == "str":
            if simple:
                return (r.choice(["Name", "Name", "Category", "Code", "ID"]), True) if r.random() < 0.75 \
                    else (self.lit("str"), True)
            s = self.expr("str", depth - 1)[0]
            choices = [
                lambda: f"{kw(r, r.choice(['tolower', 'toupper', 'trim']))}({s})",
                lambda: f"{kw(r, 'concat')}({s},{r.choice([self.lit('str'), 'Category', 'Code'])})",
                lambda: f"{kw(r, 'substring')}({s},{r.randint(-1, 6)})",
                lambda: f"{kw(r, 'substring')}({s}, {r.randint(-1, 6)}, {r.randint(-1, 4)})",
            ]
            return r.choice(choices)(), True
        if t == "date":
            if simple:
                return ("ReleaseDate", True) if r.random() < 0.7 else (self.lit("date"), True)
            return f"{kw(r, 'date')}(CreatedAt)", True
        if t == "dto":
            if simple:
                return ("CreatedAt", True) if r.random() < 0.7 else (self.lit("dto"), True)
            choices = [
                lambda: f"CreatedAt {kw(r, r.choice(['add', 'sub']))} {self.duration()}",
                lambda: f"{kw(r, r.choice(['mindatetime', 'maxdatetime']))}()",
            ]
            return r.choice(choices)(), True
        if t == "time":
            if simple and r.random() < 0.4:
                return self.lit("time"), True
            return f"{kw(r, 'time')}(CreatedAt)", True
        if t == "dur":
            choices = [
                lambda: f"CreatedAt {kw(r, 'sub')} {self.lit('dto')}",
                lambda: f"ReleaseDate {kw(r, 'sub')} {self.lit('date')}",
                lambda: self.duration(),
                lambda: f"-({self.duration()})",
                lambda: f"(CreatedAt sub {self.lit('dto')}) {kw(r, 'add')} {self.duration()}",
            ]
            return r.choice(choices)(), True
        if t == "guid":
            return (self.lit("guid") if r.random() < 0.5 else "Code"), True
        if t == "bool":
            return r.choice(["Completed", "IsActive", self.lit("bool")]), True
        raise AssertionError(t)

    def comparison(self, depth: int) -> str:
        r = self.rng
        t = r.choice(["int", "int", "num", "num", "str", "str", "bool", "date", "dto", "dto", "time",
                      "dur", "mixnum", "datedto", "guid", "null"])
        op = r.choice(["eq", "ne", "gt", "ge", "lt", "le"])
        if t == "null":
            col = r.choice(list(COLUMNS)[1:])
            left, right = col, kw(r, "null")
        elif t == "mixnum":  # integer and decimal operands mixed
            left = r.choice(["Rating", "Price"])
            right = r.choice(["Price", "Rating", self.lit("num"), self.lit("int"), f"{r.randint(-5, 10)}.0"])
        elif t == "datedto":  # a date counts as midnight UTC
            left = r.choice(["ReleaseDate", "date(CreatedAt)"])
            right = r.choice([self.lit("dto"), "CreatedAt", render_date(r.randint(DAY_2015, DAY_2026_END)) + "T00:00:00Z",
                              r.choice(self.values["ReleaseDate"]) + "T00:00:00Z"])
        elif t == "guid":
            left = r.choice(["Code", "Name", self.lit("guid")])
            right = self.lit("guid")
            op = r.choice(["eq", "ne"])
        else:
            left, exact = self.expr(t, depth)
            if not exact:
                op = r.choice(["gt", "ge", "lt", "le"])
                if "fractionalseconds" in left:
                    right = f"0.{r.randint(0, 9999999):07d}5"
                else:
                    right = self.safe_decimal()
            else:
                p = r.random()
                if p < 0.65:
                    right = self.lit(t)
                elif p < 0.8:
                    right = kw(r, "null")
                else:
                    right, exact2 = self.expr(t, depth - 1)
                    if not exact2:
                        right = self.safe_decimal()
        if r.random() < 0.2:
            left, right = right, left  # literal (or anything) on the left
        return f"{left} {kw(r, op)} {right}"

    def boolean(self, depth: int) -> str:
        r = self.rng
        p = r.random()
        if depth <= 0 or p < 0.35:
            return self.comparison(depth)
        if p < 0.45:
            fn = r.choice(["contains", "startswith", "endswith", "matchesPattern"])
            s = self.expr("str", depth - 1)[0]
            if fn == "matchesPattern":
                pat = r.choice(["^a", "e$", "[a-z]+", "^[A-Z]", "o.e", "an*", "^$", "é", "^P0[0-9]"])
                return f"{kw(r, fn)}({s},{quote_str(pat)})"
            return f"{kw(r, fn)}({s},{self.lit('str')})"
        if p < 0.52:
            b = r.choice(["Completed", "IsActive"])
            return r.choice([b, f"{kw(r, 'not')} {b}", f"{kw(r, 'not')} {b} {kw(r, 'eq')} {self.lit('bool')}",
                             f"{b} {kw(r, 'eq')} {r.choice(['IsActive', 'Completed', self.lit('bool')])}",
                             f"{b} {kw(r, r.choice(['gt', 'lt', 'ge', 'le']))} {self.lit('bool')}"])
        if p < 0.6:
            t = r.choice(["int", "str", "date", "num", "dto"])
            col = {"int": "Rating", "str": r.choice(["Name", "Category", "Code"]), "date": "ReleaseDate",
                   "num": "Price", "dto": "CreatedAt"}[t]
            items = [self.lit(t) for _ in range(r.randint(1, 4))]
            if r.random() < 0.2:
                items.append(kw(r, "null"))
            return f"{col} {kw(r, 'in')} ({', '.join(items) if r.random() < 0.5 else ','.join(items)})"
        if p < 0.68:
            return f"{kw(r, 'not')} ({self.boolean(depth - 1)})"
        if p < 0.72:
            return r.choice(["CreatedAt lt now()", "now() gt CreatedAt", "now() ge 2000-01-01T00:00:00Z",
                             "CreatedAt gt now()", f"{kw(r, 'true')}", f"{kw(r, 'false')}", "null",
                             "true and null", "false or null", "not null", "null eq null", "null ne null"])
        op = kw(r, r.choice(["and", "or"]))
        a, b = self.boolean(depth - 1), self.boolean(depth - 1)
        if r.random() < 0.6:
            a, b = f"({a})", f"({b})"
        elif r.random() < 0.5:  # precedence without parentheses: a or b and c
            c = self.boolean(0)
            return f"{a} {kw(r, 'or')} {b} {kw(r, 'and')} {c}"
        return f"{a} {op} {b}"

    def orderby(self) -> str:
        r = self.rng
        pool = ["Name", "Category", "Rating", "Price", "Completed", "IsActive", "ReleaseDate",
                "CreatedAt", "Code", "ID", "tolower(Name)", "length(Name)", "Price mul -1",
                "year(CreatedAt)", "Rating add Price", "date(CreatedAt)", "concat(Category,Name)",
                "Rating mod 3", "toupper(Category)", "time(CreatedAt)", "CreatedAt sub 2020-01-01T00:00:00Z"]
        keys = r.sample(pool, r.randint(1, 3))
        return ",".join(k + r.choice(["", " asc", " desc", " DESC", " Asc", " desc"]) for k in keys)


# ---------------------------------------------------------------------------------------------
# Cases


@dataclass
class Case:
    category: str
    query: str  # the encoded query string sent to the service
    mode: str = "reference"  # reference | refuse | abnf-positive | abnf-negative
    note: str = ""
    options: list[tuple[str, str]] = field(default_factory=list)


ILL_TYPED = [
    "Rating ne 'x'", "Name gt 5", "not Rating", "Rating and true", "Completed eq 1", "ReleaseDate eq 5",
    "CreatedAt gt 'x'", "contains(Rating,'a')", "length(Rating) eq 1", "Name add 1 eq 2", "Rating", "Name",
    "Price eq true", "year(Name) eq 1", "Completed add 1 eq 2", "'a' eq 1", "ReleaseDate gt 13:20:00",
    "time(CreatedAt) eq 2020-01-01", "Rating eq duration'P1D'", "Price eq 01234567-89ab-cdef-0123-456789abcdef",
    "substring(Name) eq 'a'", "contains(Name)", "tolower(Name,'x') eq 'a'", "Unknown eq 1", "Rating eq",
    "(Rating eq 5", "Rating eq 5)", "Name eq 'abc", "Rating == 5", "Rating eq 5 and", "not", "Name eq 'it's'",
    "ReleaseDate eq 2024-13-01", "ReleaseDate eq 2024-02-30", "CreatedAt eq 2024-01-01T25:00:00Z",
    "Rating in ()", "Rating in (1, 'a')", "concat(Name,1) eq 'x'", "not Rating eq 5", "round(Name) eq 1",
    "matchesPattern(Name,5)", "Rating mod 'a' eq 1", "hour(ReleaseDate) eq 1", "fractionalseconds(ReleaseDate) eq 0",
    "date(ReleaseDate) eq 2020-01-01", "Completed gt 1", "Rating eq 5 Rating", "Rating eq duration'P1Y'",
    "CreatedAt eq 2024-01-01T10:00:00.1234567890123Z", "Rating add", "Completed or Rating", "-Name eq 'a'",
    "Rating eq 5 or 'x'", "nosuchfunction(Name) eq 1", "Price mul 'a' gt 1", "CreatedAt add 5 gt CreatedAt",
    "ReleaseDate sub CreatedAt eq duration'P1D'", "trim() eq 'a'", "Rating eq 5 eq", "Name eq \"x\"",
]

# Valid OData outside the contract, over fields the entity has (so that "unknown field" is no
# excuse): the service must say "not supported".
UNSUPPORTED = [
    [("$filter", "Category/any(t:t eq 'a')")], [("$filter", "Category/all(t:t ne 'a')")],
    [("$filter", "Category/Name eq 'x'")], [("$filter", "Category has Sales.Color'Red'")],
    [("$filter", "geo.distance(Name,geography'SRID=4326;POINT(1 2)') lt 5")], [("$filter", "$it/Name eq 'x'")],
    [("$filter", "$root/Products/$count gt 1")], [("$filter", "Category eq Sales.Color'Red'")],
    [("$filter", "cast(Rating,Edm.String) eq '1'")], [("$filter", "isof(Name,Edm.String)")],
    [("$expand", "Category")], [("$apply", "groupby((Category))")], [("$compute", "Rating add 1 as R2")],
    [("$filter", "Name eq @x"), ("@x", "'a'")], [("$filter", "endswith($this,'.com')")],
    [("$filter", "geo.intersects(Name,Category)")], [("$orderby", "Category/Name")], [("$select", "Category/Name")],
]


def reference_outcome(entity: ref.Entity, options: list[tuple[str, str]]) -> Any:
    try:
        return entity.run(options)
    except ref.QueryError as e:
        return e


def build_cases(rng: random.Random, gen: ExprGen, count: int) -> list[Case]:
    cases: list[Case] = []

    def add(category: str, options: list[tuple[str, str]], mode: str = "reference", note: str = "") -> None:
        cases.append(Case(category, encode_options(options), mode, note, options))

    for _ in range(count):
        add("filter", [("$filter", gen.boolean(rng.choice([1, 2, 2, 3])))])
    for _ in range(40):
        opts = [("$orderby", gen.orderby())]
        if rng.random() < 0.4:
            opts.insert(0, ("$filter", gen.boolean(1)))
        if rng.random() < 0.3:
            opts.append(("$top", str(rng.choice([5, 50, 150]))))
        add("orderby", opts)
    fields = list(COLUMNS)
    for _ in range(25):
        sel = "*" if rng.random() < 0.15 else ",".join(rng.sample(fields, rng.randint(1, 4)))
        opts = [("$select", sel)]
        if rng.random() < 0.5:
            opts.append(("$filter", gen.boolean(1)))
        if rng.random() < 0.3:
            opts.append(("$orderby", gen.orderby()))
        add("select", opts)
    tops = [0, 1, 50, 99, 100, 101, 150, 299, 300, 301, 1000, 100000]
    skips = [None, 0, 1, 50, 100, 250, 299, 300, 301, 1000]
    for _ in range(40):
        opts = [("$top", str(rng.choice(tops)))] if rng.random() < 0.85 else []
        skip = rng.choice(skips)
        if skip is not None:
            opts.append(("$skip", str(skip)))
        if rng.random() < 0.3:
            opts.append(("$filter", gen.boolean(1)))
        if rng.random() < 0.3:
            opts.append(("$orderby", gen.orderby()))
        if rng.random() < 0.3:
            opts.append(("$count", "true"))
        add("paging", opts)
    for _ in range(20):
        opts = [("$count", "true"), ("$filter", gen.boolean(2))]
        if rng.random() < 0.4:
            opts.append(("$top", str(rng.choice([0, 3, 120]))))
        if rng.random() < 0.3:
            opts.append(("$skip", str(rng.choice([2, 200]))))
        add("count", opts)
    add("count", [("$count", "false")])
    add("count", [("$count", "true")])
    terms = ["apple", "BERRY", "cherry", "o'brien", "café", "straße", "zeta", "alpha", "kiwi", "tool",
             "books", "garden", "toys", "p00", "P1", "nut's", "éclair", "mañana", "e", "zz-none", "0812"]
    for _ in range(30):
        a, b, c = rng.sample(terms, 3)
        form = rng.choice([f"{a}", f"{a} {b}", f"{a} OR {b}", f"NOT {a}", f"{a} AND NOT {b}",
                           f"({a} OR {b}) AND {c}", f'"cherry pie"', f'"kiwi fruit" OR {a}',
                           f"{a} NOT {b}", f'"tree house" {b}', f"NOT ({a} OR {b})"])
        opts = [("$search", form)]
        if rng.random() < 0.3:
            opts.append(("$filter", gen.boolean(1)))
        add("search", opts)
    # Option names: case-insensitive, $ optional; unknown $-options, duplicates, empty $filter.
    spellings = [
        [("$Filter", "Rating gt 3")], [("filter", "Rating gt 3")], [("$FILTER", "Completed")],
        [("$OrderBy", "Name desc")], [("orderby", "Price")], [("SELECT", "Name,Rating")],
        [("Top", "7"), ("$SKIP", "3")], [("COUNT", "true"), ("$filter", "IsActive")], [("$Search", "apple")],
        [("select", "*"), ("top", "2")], [("$filter", "Rating gt 3"), ("$FILTER", "Rating lt 3")],
        [("$top", "1"), ("top", "2")], [("$foo", "1")], [("$filter", "")], [("$top", "-1")],
        [("$top", "abc")], [("$top", "100001")], [("$skip", "-1")], [("$count", "maybe")],
        [("$select", "Nope")], [("$orderby", "Nope")], [("$orderby", "Name sideways")],
        [("$orderby", "")], [("$select", "")], [("custom", "ignored"), ("$filter", "Rating eq 1")],
        [("$filter", "Rating eq 1"), ("$orderby", "Name"), ("$ORDERBY", "Price")], [("$top", "100000")],
    ]
    for opts in spellings:
        add("options", opts)
    for text in ILL_TYPED:
        add("ill-typed", [("$filter", text)], mode="refuse")
    for opts in UNSUPPORTED:
        add("unsupported", opts)
    return cases


# ---------------------------------------------------------------------------------------------
# OASIS ABNF test cases

QUERY_RULES = {"filter", "orderby", "orderBy", "select", "search", "queryOptions", "compute"}
EXPR_RULES = {"commonExpr", "firstMemberExpr", "propertyPathExpr"}
BOOL_RULES = {"boolCommonExpr", "notExpr", "isofExpr"}
# Literal rules written as in a URL (%-escapes are part of the input) and payload-value rules
# (a % is a literal character, so it is sent %-encoded).
URL_LITERAL_RULES = {"primitiveLiteral", "stringLiteral", "durationLiteral", "decimalLiteral", "doubleLiteral",
                     "int64Literal", "timeOfDayLiteral", "dateTimeOffsetLiteral", "dateTimeOffsetValueInUrl",
                     "binaryLiteral", "boolean", "guid"}
VALUE_RULES = {"dateTimeOffsetValue", "date", "dateValue", "decimalValue", "doubleValue", "singleValue",
               "int64Value", "int32Value", "int16Value", "sbyteValue", "timeOfDayValue"}
# Query options a flat GetItems understands (or must call not supported).
OPTION_NAMES = {"filter", "orderby", "select", "top", "skip", "count", "search", "compute", "expand", "apply"}


# A literal rule's case is compared with a field of the rule's type, so that a negative case
# (INF is no date) stays invalid as a filter (`INF eq null` is a valid filter).
LITERAL_OPERANDS = {
    "date": "ReleaseDate", "dateValue": "ReleaseDate",
    "dateTimeOffsetValue": "CreatedAt", "dateTimeOffsetLiteral": "CreatedAt",
    "dateTimeOffsetValueInUrl": "CreatedAt", "boolean": "Completed", "stringLiteral": "Name",
    "decimalLiteral": "Price", "doubleLiteral": "Price", "int64Literal": "Price",
    "decimalValue": "Price", "doubleValue": "Price", "singleValue": "Price", "int64Value": "Price",
    "int32Value": "Price", "int16Value": "Price", "sbyteValue": "Price",
}


def literal_operand(rule: str) -> str:
    return LITERAL_OPERANDS.get(rule, "null")


def load_abnf_cases(path: str) -> list[Case]:
    import yaml  # from the venv (schemathesis depends on PyYAML)

    with open(path, encoding="utf-8") as f:
        text = f.read()
    # One plain scalar holds a tab, which PyYAML refuses: mask tabs, restore them afterwards.
    mask = "\ue000"
    doc = yaml.load(text.replace("\t", mask), Loader=yaml.BaseLoader)  # every scalar a string
    out: list[Case] = []
    for tc in doc["TestCases"]:
        rule, raw = tc["Rule"], tc["Input"].replace(mask, "\t")
        mode = "abnf-negative" if "FailAt" in tc else "abnf-positive"
        note = f"{tc['Name']} [{rule}{', FailAt ' + tc['FailAt'] if 'FailAt' in tc else ''}]"
        if rule in QUERY_RULES or (rule == "searchExpr"):
            if rule == "searchExpr":
                raw = "$search=" + raw
            names = [p.partition("=")[0] for p in raw.split("&")]
            if not all(n.lstrip("$").lower() in OPTION_NAMES or n.startswith("@") for n in names):
                continue  # $format, $index, custom options: outside GetItems' contract
            # A browser sends nothing after an unencoded #: it starts the fragment.
            query = encode_raw(raw.split("#")[0], keep="&=%$'(),;:@/!*?")
        elif rule in BOOL_RULES:
            query = "$filter=" + encode_raw(raw, keep="%$'(),;:@/!*?")
        elif rule in EXPR_RULES:
            query = "$filter=" + encode_raw(f"({raw}) eq null", keep="%$'(),;:@/!*?")
        elif rule in URL_LITERAL_RULES:
            query = "$filter=" + encode_raw(f"{literal_operand(rule)} eq {raw}", keep="%$'(),;:@/!*?")
        elif rule in VALUE_RULES:
            query = "$filter=" + encode_raw(f"{literal_operand(rule)} eq {raw}", keep="$'(),;:@/!*?")
        else:
            continue
        out.append(Case("abnf", query, mode, note))
    return out


# ---------------------------------------------------------------------------------------------
# HTTP


class Client:
    def __init__(self, base: str, key: str, timeout: float):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.key, self.timeout = key, timeout
        self.conn: Optional[http.client.HTTPConnection] = None

    def request(self, method: str, target: str, body: Any = None) -> tuple[int, dict, bytes]:
        if target.startswith("http"):
            u = urllib.parse.urlsplit(target)
            target = u.path + ("?" + u.query if u.query else "")
        headers = {"X-API-Key": self.key, "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, target, body=data, headers=headers)
                resp = self.conn.getresponse()
                payload = resp.read()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload
            except (ConnectionError, http.client.HTTPException) as e:
                self.conn.close()
                self.conn = None
                if attempt:
                    raise TransportError(str(e)) from e
        raise AssertionError("unreachable")


class TransportError(Exception):
    pass


@dataclass
class Answer:
    status: int
    keys: list[str] = field(default_factory=list)
    items: list[dict] = field(default_factory=list)
    count: Any = None
    detail: str = ""
    problem_json: bool = False
    error: str = ""


def items_path(instance: str) -> str:
    return f"/instances/{instance}/entities/{ENTITY}/items"


def get_items(client: Client, instance: str, query: str) -> Answer:
    target = items_path(instance) + ("?" + query if query else "")
    items: list[dict] = []
    count = None
    for page in range(2000):
        try:
            status, headers, body = client.request("GET", target)
        except (TransportError, TimeoutError, OSError) as e:
            return Answer(0, error=f"transport: {e}")
        if status != 200:
            ans = Answer(status)
            ans.problem_json = headers.get("content-type", "").startswith("application/problem+json")
            try:
                ans.detail = str(json.loads(body).get("detail", ""))
            except (ValueError, AttributeError):
                ans.detail = body[:300].decode("utf-8", "replace")
            if page:
                ans.error = f"status {status} on page {page + 1} (nextLink {target})"
            return ans
        doc = json.loads(body)
        if page == 0:
            count = doc.get("@odata.count")
        items.extend(doc.get("value", []))
        nxt = doc.get("nextLink") or doc.get("@odata.nextLink")
        if not nxt:
            return Answer(200, [it.get(KEY) for it in items], items, count)
        target = nxt
    return Answer(200, error="more than 2000 pages")


def setup(client: Client, items: list[dict]) -> str:
    def must(status: int, expected: int, what: str, body: bytes) -> Any:
        if status != expected:
            raise SystemExit(f"setup: {what} answered {status}: {body[:500]!r}")
        return json.loads(body) if body else None

    st, _, body = client.request("POST", "/instances", {"name": "OData conformance"})
    inst = must(st, 201, "POST /instances", body)
    iid = inst.get("id") or inst.get("instanceId")
    content = "".join(json.dumps(it, ensure_ascii=False) + "\n" for it in items)
    st, _, body = client.request("POST", f"/instances/{iid}/datasources", {
        "name": "Products", "entityName": ENTITY, "format": "jsonl", "keyField": KEY, "content": content})
    ds = must(st, 201, "POST datasources", body)
    dsid = ds.get("id") or ds.get("dataSourceId")
    st, headers, body = client.request("POST", f"/instances/{iid}/datasources/{dsid}/refresh")
    job = must(st, 202, "POST refresh", body)
    location = headers.get("location") or f"/instances/{iid}/jobs/{job['jobId']}"
    deadline = time.monotonic() + 120
    while True:
        st, _, body = client.request("GET", location)
        if st not in (200, 202):
            raise SystemExit(f"setup: polling the refresh job answered {st}: {body[:500]!r}")
        job = json.loads(body)
        if job.get("status") == "succeeded":
            return iid
        if job.get("status") == "failed":
            raise SystemExit(f"setup: the refresh job failed: {job.get('error')}")
        if time.monotonic() > deadline:
            raise SystemExit("setup: the refresh job did not finish in 120 s")
        time.sleep(0.1)


# ---------------------------------------------------------------------------------------------
# Judging


def same_json(a: Any, b: Any) -> bool:
    """JSON equality where 12 equals 12.0 (a number column may be re-serialised)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return a == b


def same_item(expected: dict, actual: dict, exact_fields: bool) -> bool:
    if exact_fields and set(expected) != set(actual):
        return False
    for k in set(expected) | set(actual):
        if not same_json(expected.get(k), actual.get(k)):
            return False
    return True


IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


UNKNOWN_WORDS = ("unknown", "no such", "not found", "not exist", "does not have", "has no", "not a field",
                 "not in the", "undefined", "not defined")


def unknown_identifier_named(raw_query: str, detail: str) -> bool:
    """Does the detail say that an identifier of the query is no field of the entity?"""
    decoded = urllib.parse.unquote(raw_query)
    if not any(w in detail.lower() for w in UNKNOWN_WORDS):
        return False
    for name in set(IDENT.findall(decoded)):
        if name not in COLUMNS and len(name) > 1 and re.search(rf"\b{re.escape(name)}\b", detail):
            return True
    return False


@dataclass
class Verdict:
    ok: bool
    reason: str = ""
    expected: Any = None
    server_error: bool = False


def describe_expected(outcome: Any) -> Any:
    if isinstance(outcome, ref.Result):
        return {"status": 200, "keys": outcome.keys, "count": outcome.count}
    kind = "unsupported" if isinstance(outcome, ref.Unsupported) else "refused"
    return {"status": 400, "kind": kind, "why": str(outcome)}


def judge(case: Case, outcome: Any, ans: Answer) -> Verdict:
    exp = describe_expected(outcome) if outcome is not None else None
    if ans.status == 0 or ans.status >= 500 or ans.error:
        return Verdict(False, ans.error or f"server error {ans.status}: {ans.detail}", exp, True)
    if ans.status == 400 and not ans.problem_json:
        return Verdict(False, "400 without application/problem+json", exp)
    if case.mode == "abnf-negative":
        return Verdict(ans.status == 400, "" if ans.status == 400 else f"a negative case answered {ans.status}", exp)
    if case.mode == "abnf-positive":
        if ans.status == 200:
            if isinstance(outcome, ref.Result):
                # A $select without the key gives items without it: compare the projections.
                got = ans.keys if all(k is not None for k in ans.keys) else ans.items
                want = outcome.keys if got is ans.keys else outcome.items
                if got != want:
                    return Verdict(False, "answer differs", exp)
            return Verdict(True)
        if ans.status == 400:
            d = ans.detail.lower()
            if "not supported" in d or unknown_identifier_named(case.query, ans.detail):
                return Verdict(True)
            if isinstance(outcome, ref.TypeMismatch):
                return Verdict(True)  # valid syntax, but ill-typed over this entity's columns
            return Verdict(False, f"a positive case was refused: {ans.detail}", exp)
        return Verdict(False, f"status {ans.status}", exp)
    if case.mode == "refuse" and isinstance(outcome, ref.Result):
        # The generator meant it to be invalid: a reference bug; say so rather than hide it.
        return Verdict(False, "REFERENCE accepted a case meant to be refused", exp)
    if isinstance(outcome, ref.QueryError):
        if ans.status != 400:
            return Verdict(False, f"expected 400, got {ans.status}", exp)
        if isinstance(outcome, ref.Unsupported) and "not supported" not in ans.detail.lower():
            return Verdict(False, f"400 detail does not say 'not supported': {ans.detail}", exp)
        return Verdict(True)
    assert isinstance(outcome, ref.Result)
    if ans.status != 200:
        return Verdict(False, f"expected 200, got {ans.status}: {ans.detail}", exp)
    selects = [v for n, v in case.options if n.lstrip("$").lower() == "select"]
    projected = bool(selects) and KEY not in selects[0].split(",") and selects[0] != "*"
    if projected:
        # Without the key in $select the items carry no ID: compare the projections in order.
        if len(ans.items) != len(outcome.items):
            return Verdict(False, f"{len(ans.items)} items, expected {len(outcome.items)}", exp)
    elif ans.keys != outcome.keys:
        return Verdict(False, "keys differ", exp)
    if outcome.count is not None and ans.count != outcome.count:
        return Verdict(False, f"@odata.count {ans.count!r}, expected {outcome.count}", exp)
    if outcome.count is None and ans.count is not None:
        return Verdict(False, f"@odata.count {ans.count!r} without $count=true", exp)
    if selects:
        star = selects[0] == "*"
        for e_item, a_item in zip(outcome.items, ans.items):
            if not same_item(e_item, a_item, exact_fields=not star):
                return Verdict(False, f"projected item differs: expected {e_item}, got {a_item}", exp)
    return Verdict(True)


def key_diff(expected: list[str], actual: list[Any]) -> str:
    actual = [str(k) for k in actual]
    es, as_ = set(expected), set(actual)
    missing, extra = sorted(es - as_), sorted(as_ - es)
    parts = []
    if missing:
        parts.append(f"missing {len(missing)}: {' '.join(missing[:15])}{' …' if len(missing) > 15 else ''}")
    if extra:
        parts.append(f"extra {len(extra)}: {' '.join(extra[:15])}{' …' if len(extra) > 15 else ''}")
    if not parts and expected != actual:
        first = next(i for i, (a, b) in enumerate(zip(expected, actual)) if a != b) if expected else 0
        parts.append(f"same keys, order differs from position {first}: expected {expected[first:first + 6]}, "
                     f"got {actual[first:first + 6]}")
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------
# Main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", default=os.environ.get("ODATA_BASE_URL", "http://127.0.0.1:18390"))
    ap.add_argument("--api-key", default=os.environ.get("ODATA_API_KEY", "odata-conformance-key-0123456789ab"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--count", type=int, default=600, help="generated $filter expressions")
    ap.add_argument("--abnf", default=os.environ.get("ODATA_ABNF_CASES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "abnf", "odata-abnf-testcases.yaml")),
                    help="the OASIS odata-abnf-testcases.yaml ('' to skip)")
    ap.add_argument("--report", help="write every disagreement as JSON to this file")
    ap.add_argument("--show", type=int, default=40, help="disagreements printed in full")
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args()

    rng = random.Random(args.seed)
    items = generate_items(rng)
    client = Client(args.base_url, args.api_key, args.timeout)
    instance = setup(client, items)

    disagreements: list[dict] = []
    stats: dict[str, dict[str, int]] = {}

    def tally(category: str, key: str) -> None:
        stats.setdefault(category, {"total": 0, "agree": 0, "disagree": 0, "refused": 0})[key] += 1

    # The inferred schema must give every column the type the data was written with.
    st, _, body = client.request("GET", f"/instances/{instance}/entities/{ENTITY}/schema")
    served: dict[str, str] = {}
    if st == 200:
        for name, prop in json.loads(body).get("properties", {}).items():
            try:
                served[name] = ref.column_type(prop)
            except ref.QueryError:
                served[name] = f"? {prop}"
    for col, typ in COLUMNS.items():
        tally("schema", "total")
        if served.get(col) == typ:
            tally("schema", "agree")
        else:
            tally("schema", "disagree")
            disagreements.append({"category": "schema", "query": f"schema of {col}", "reason":
                                  f"column {col}: expected {typ}, the service says {served.get(col, 'nothing')}"})

    # The reference evaluates with the generator's column types (the ground truth).
    now = ref.DateTimeOffset(int(time.time()) * ref.PS, 0)
    entity = ref.Entity(items, COLUMNS, KEY, now)
    cases = build_cases(rng, ExprGen(rng, items), args.count)
    if args.abnf:
        if not os.path.exists(args.abnf):
            print(f"error: the ABNF test cases are not at {args.abnf} (set ODATA_ABNF_CASES, or '' to skip)",
                  file=sys.stderr)
            return 2
        cases += load_abnf_cases(args.abnf)

    server_errors = 0
    started = time.monotonic()
    for case in cases:
        outcome = reference_outcome(entity, decode_query(case.query))
        ans = get_items(client, instance, case.query)
        v = judge(case, outcome, ans)
        tally(case.category, "total")
        tally(case.category, "agree" if v.ok else "disagree")
        if ans.status == 400:
            tally(case.category, "refused")
        if v.server_error:
            server_errors += 1
        if not v.ok:
            d = {"category": case.category, "query": urllib.parse.unquote(case.query), "sent": case.query,
                 "reason": v.reason, "expected": v.expected, "note": case.note,
                 "actual": {"status": ans.status, "keys": ans.keys if ans.status == 200 else None,
                            "count": ans.count, "detail": ans.detail}}
            if isinstance(outcome, ref.Result) and ans.status == 200 and v.reason == "keys differ":
                d["diff"] = key_diff(outcome.keys, ans.keys)
            disagreements.append(d)
    elapsed = time.monotonic() - started

    print(f"OData conformance: {len(cases)} queries in {elapsed:.1f} s (seed {args.seed}); "
          "refused = answered 400 (expected or not)")
    print(f"{'category':<12} {'total':>6} {'agree':>6} {'disagree':>9} {'refused':>8}")
    order = ["schema", "filter", "orderby", "select", "paging", "count", "search", "options", "ill-typed",
             "unsupported", "abnf"]
    for cat in order + sorted(set(stats) - set(order)):
        if cat in stats:
            s = stats[cat]
            print(f"{cat:<12} {s['total']:>6} {s['agree']:>6} {s['disagree']:>9} {s['refused']:>8}")
    tot = {k: sum(s[k] for s in stats.values()) for k in ("total", "agree", "disagree", "refused")}
    print(f"{'all':<12} {tot['total']:>6} {tot['agree']:>6} {tot['disagree']:>9} {tot['refused']:>8}")
    if server_errors:
        print(f"5xx / timeouts / transport errors: {server_errors}")

    for d in disagreements[: args.show]:
        print(f"\n--- [{d['category']}] {d['query']}")
        if d.get("note"):
            print(f"    case: {d['note']}")
        print(f"    {d['reason']}")
        if d.get("expected"):
            e = d["expected"]
            if e.get("status") == 200:
                print(f"    expected 200: {len(e['keys'])} keys {' '.join(e['keys'][:12])}{' …' if len(e['keys']) > 12 else ''}"
                      + (f", count {e['count']}" if e.get("count") is not None else ""))
            else:
                print(f"    expected 400 ({e.get('kind')}: {e.get('why')})")
        a = d.get("actual")
        if a:
            if a["status"] == 200:
                keys = a["keys"] or []
                print(f"    actual 200: {len(keys)} keys {' '.join(keys[:12])}{' …' if len(keys) > 12 else ''}")
            else:
                print(f"    actual {a['status']}: {a['detail']}")
        if d.get("diff"):
            print(f"    diff: {d['diff']}")
    if len(disagreements) > args.show:
        print(f"\n… and {len(disagreements) - args.show} more disagreements"
              + (f" (all in {args.report})" if args.report else " (use --report FILE for all)"))
    if args.report:
        with open(args.report, "w", encoding="utf-8") as f:
            json.dump({"seed": args.seed, "summary": stats, "disagreements": disagreements}, f, indent=1,
                      ensure_ascii=False)
    return 1 if disagreements or server_errors else 0


if __name__ == "__main__":
    sys.exit(main())
