"""Every name in ``protocols.node.__all__`` exists, and the package exports the runtime's public API."""

from __future__ import annotations

import protocols.node


def test_all_names_exist_and_are_sorted_uniquely():
    names = protocols.node.__all__
    assert len(names) == len(set(names))
    for name in names:
        assert hasattr(protocols.node, name), name
