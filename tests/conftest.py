"""How ``make test`` shares the suite between its two pytest-xdist workers (``-n 2 --dist loadfile
--no-loadscope-reorder``, in the Makefile).

Much of the suite waits on other processes (coordinators, nodes, Flower SuperLinks and SuperNodes,
Spark JVMs, Chromium), so a second worker uses the second core while the first waits.

- Each test file runs whole on one worker, so its module fixtures are built once.
- Files that share a session fixture or a machine-wide resource run together on one worker
  (``SHARED``).
- The longest groups are handed out first, so that neither worker is left with a long tail.

Without xdist (``pytest tests/x.py``) nothing here changes anything.
"""

from __future__ import annotations

from typing import Any

import pytest

SHARED: dict[str, str] = {
    "tests/deploy/": "deploy",  # fixed network namespace names (tandem-bank, ...) and veth addresses
    "tests/demo/": "demo",  # the session fixtures demo_run and synthetic_population
    "tests/node/jobs/scoring/": "scoring",  # the session fixtures pop, trained_lr and trained_sb
    "tests/test_readme_path.py": "readme",  # fixed ports 8600, 8443 and 8444 on loopback
}
FIRST = ("deploy", "demo", "tests/bench/test_spark_bench.py", "readme", "tests/bench/test_train_bench.py")
"""Groups known to take minutes, longest first: they start before the many short files."""


def group_of(nodeid: str) -> str:
    """The xdist group of the test ``nodeid``: its ``SHARED`` group, else its file."""
    path = nodeid.split("::", 1)[0]
    return next((group for prefix, group in SHARED.items() if path.startswith(prefix)), path)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In an xdist worker: the minutes-long groups first (the controller hands groups out in this order)."""
    if hasattr(config, "workerinput"):  # not in a run without xdist: its order stays the files' order
        rank = {group: i for i, group in enumerate(FIRST)}
        items.sort(key=lambda item: rank.get(group_of(item.nodeid), len(FIRST)))  # stable: file order kept


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile``, with the ``SHARED`` files merged into one unit each.

    (xdist's own ``loadgroup`` marks do not group anything under pytest 9.2, whose test ids no longer
    read the attribute xdist rewrites; this scheduler groups by ``group_of`` alone.)
    """
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SharedFileScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    return SharedFileScheduling(config, log)
