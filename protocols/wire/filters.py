"""Job filters: the one safe grammar for ``JobInput.filter``, shared by the coordinator and the nodes.

The coordinator parses a filter to check it against policy (which fields, which purposes); the node
that owns the dataset parses the same text to apply it to its rows. Both use :func:`parse_filter`,
so what was approved is exactly what runs.

Grammar: conjunctions (``and``, any case) of ``<field> <op> <number | quoted string>``, with ``op``
one of ``== != < <= > >=``. Anything else (``or``, ``not``, parentheses, calls, unquoted words as
values) is refused with :class:`FilterSyntaxError` naming the offending token.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import NamedTuple

__all__ = ["FILTER_HELP", "FILTER_OPS", "FilterSyntaxError", "Predicate", "parse_filter"]


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


def _literal(kind: str, tok: str) -> int | float | str:
    if kind == "str":
        return tok[1:-1]
    return float(tok) if "." in tok else int(tok)


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
