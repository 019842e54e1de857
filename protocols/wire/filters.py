"""Job filters: the one safe grammar for ``JobInput.filter``, shared by the coordinator and the nodes.

The coordinator parses a filter to check it against policy (which fields, which purposes); the node
that owns the dataset parses the same text to apply it to its rows. Both use :func:`parse_filter`,
so what was approved is exactly what runs.

Grammar: conjunctions (``and``, any case) of ``<field> <op> <number | quoted string>``, with ``op``
one of ``== != < <= > >=``. Anything else (``or``, ``not``, parentheses, calls, unquoted words as
values) is refused with :class:`FilterSyntaxError` naming the offending token.

Numbers are decimal literals of at most ``MAX_NUMBER_DIGITS`` significant digits (and at most
``MAX_NUMBER_CHARS`` characters), so every accepted literal fits a 64-bit integer or is a finite double
on every party: a 490-digit literal is refused at submission, not discovered as an overflow at the node.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import NamedTuple

__all__ = ["FILTER_HELP", "FILTER_OPS", "MAX_NUMBER_CHARS", "MAX_NUMBER_DIGITS", "FilterSyntaxError", "Predicate",
           "parse_filter"]


class FilterSyntaxError(ValueError):
    """A filter the safe parser refuses; ``token`` is the offending token."""

    def __init__(self, message: str, token: str) -> None:
        super().__init__(message)
        self.token = token


class Predicate(NamedTuple):
    """One conjunct of a filter: ``field op value``."""

    field: str
    op: str
    value: int | float | str


FILTER_OPS = ("==", "!=", "<=", ">=", "<", ">")
_MAX_PREDICATES = 32
MAX_NUMBER_DIGITS = 18
"""Significant digits a numeric literal may have: every 18-digit integer fits a signed 64-bit integer."""
MAX_NUMBER_CHARS = 40
"""Characters a numeric literal may have (sign, leading zeros and decimal point included)."""
_TOKEN = re.compile(
    r"""(?P<num>-?\d+(?:\.\d+)?)(?![A-Za-z0-9_.])
      | (?P<str>"[^"\\\n]*"|'[^'\\\n]*')
      | (?P<op>==|!=|<=|>=|<|>)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)""",
    re.VERBOSE,
)
_BAD_TOKEN = re.compile(r"\w+|\S")
FILTER_HELP = (
    "write conditions joined by 'and', each <field> <op> <value> with op one of == != < <= > >= "
    "and value a number or a quoted string, e.g. \"age >= 25 and app_bank == 0\""
)


def _tokens(text: str) -> Iterator[tuple[str, str]]:
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            return
        match = _TOKEN.match(text, pos)
        if match is None or match.lastgroup is None:
            bad_match = _BAD_TOKEN.match(text, pos)
            bad = bad_match.group() if bad_match else text[pos:]
            raise FilterSyntaxError(f"unexpected token {bad!r} at position {pos}", bad)
        yield match.lastgroup, match.group()
        pos = match.end()


def _significant_digits(tok: str) -> int:
    whole, _, fraction = tok.lstrip("-").partition(".")
    whole, fraction = whole.lstrip("0"), fraction.rstrip("0")
    return len(whole) + len(fraction) if whole else len(fraction.lstrip("0"))


def _number(tok: str) -> int | float:
    """The value of a numeric literal, refused unless it fits an int64 or is a finite double."""
    digits = _significant_digits(tok)
    if digits > MAX_NUMBER_DIGITS or len(tok) > MAX_NUMBER_CHARS:
        shown = tok if len(tok) <= 24 else f"{tok[:12]}...{tok[-6:]}"
        raise FilterSyntaxError(
            f"number {shown} has {digits} significant digits and {len(tok)} characters; a filter number may have "
            f"at most {MAX_NUMBER_DIGITS} significant digits and {MAX_NUMBER_CHARS} characters (so that it fits a "
            "64-bit integer or a double on every node): use a shorter number", shown)
    return float(tok) if "." in tok else int(tok)


def _literal(kind: str, tok: str) -> int | float | str:
    return tok[1:-1] if kind == "str" else _number(tok)


def _expect(got: tuple[str, str] | None, kinds: Sequence[str], what: str) -> tuple[str, str]:
    if got is None:
        raise FilterSyntaxError(f"filter ends where {what} was expected", "<end of filter>")
    if got[0] not in kinds or got[1].lower() == "and":
        raise FilterSyntaxError(f"unexpected token {got[1]!r}; expected {what}", got[1])
    return got


def parse_filter(text: str) -> list[Predicate]:
    """Parse a filter such as ``"age >= 25 and app_bank == 0"`` into its conjuncts.

    Raises:
        FilterSyntaxError: naming the first token the grammar does not allow.
    """
    toks = _tokens(text)
    out: list[Predicate] = []
    while True:
        name = _expect(next(toks, None), ("name",), "a field name")
        op = _expect(next(toks, None), ("op",), f"an operator ({' '.join(FILTER_OPS)})")
        kind, tok = _expect(next(toks, None), ("num", "str"), "a number or a quoted string")
        out.append(Predicate(name[1], op[1], _literal(kind, tok)))
        if len(out) > _MAX_PREDICATES:
            raise FilterSyntaxError(f"more than {_MAX_PREDICATES} conditions", name[1])
        joiner = next(toks, None)
        if joiner is None:
            return out
        if joiner[1].lower() != "and":
            raise FilterSyntaxError(f"unexpected token {joiner[1]!r}; expected 'and' or the end", joiner[1])
