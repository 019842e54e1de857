"""Every name in ``node.__all__`` exists, and the package exports the runtime's public API."""

from __future__ import annotations

import node


def test_all_names_exist_and_are_sorted_uniquely():
    names = node.__all__
    assert len(names) == len(set(names))
    for name in names:
        assert hasattr(node, name), name
