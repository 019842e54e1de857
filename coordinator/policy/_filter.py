"""Job input filters as policy sees them: the grammar of ``protocols.wire.filters``, with policy's error type.

Errors::

    PolicyError
    └── FilterSyntaxError     the filter parser refused a token (``token`` names it)
"""

from __future__ import annotations

from coordinator.policy._loader import PolicyError
from protocols.wire import filters as _filters
from protocols.wire.filters import Predicate

__all__ = ["FilterSyntaxError", "Predicate", "parse_filter"]


class FilterSyntaxError(PolicyError, _filters.FilterSyntaxError):
    """A ``JobInput.filter`` the safe parser refuses; ``token`` is the offending token."""


def parse_filter(text: str) -> list[Predicate]:
    """Parse a filter such as ``"age >= 25 and app_bank == 0"`` into its conjuncts (``protocols.wire.filters``).

    Only conjunctions (``and``) of ``<field> <op> <number | quoted string>`` are accepted; anything
    else (``or``, ``not``, parentheses, calls, unquoted words as values) is refused. The grammar lives
    in ``protocols.wire.filters`` so the node that applies a filter parses exactly what policy checked.

    Raises:
        FilterSyntaxError: naming the first token the grammar does not allow.
    """
    try:
        return _filters.parse_filter(text)
    except _filters.FilterSyntaxError as exc:
        raise FilterSyntaxError(str(exc), exc.token) from None
