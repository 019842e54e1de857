"""The rooms and the one direction imports flow between them (DESIGN.md §3).

protocols.wire ← protocols.crypto ← {psi, protocols.vfl} ← node ← {bank_node, telco_node};
the coordinator imports protocols and psi, never node; demo and bench sit on top. Every import in
every module is checked, including imports inside functions and relative imports.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

WIRE, CRYPTO, VFL = "protocols.wire", "protocols.crypto", "protocols.vfl"
PROCESSES = "protocols.flower_processes"  # the one impure module of protocols: no pure room may import it
MARKETING = "protocols.marketing"  # pure cores of the marketing loop (uplift statistics, churn bands)
_PURE = {WIRE, CRYPTO, VFL, "psi", MARKETING}
_SERVICE = _PURE | {PROCESSES}
ALLOWED: dict[str, set[str]] = {
    WIRE: {WIRE},
    PROCESSES: {PROCESSES},
    CRYPTO: {WIRE, CRYPTO},
    "psi": {WIRE, "psi"},
    VFL: {WIRE, CRYPTO, VFL},
    MARKETING: {MARKETING},
    "node": _SERVICE | {"node"},
    "coordinator": _SERVICE | {"coordinator"},
    "bank_node": _SERVICE | {"node", "bank_node"},
    "telco_node": _SERVICE | {"node", "telco_node"},
    "demo": _SERVICE | {"node", "coordinator", "bank_node", "telco_node", "demo"},
    "bench": _SERVICE | {"node", "coordinator", "bank_node", "telco_node", "demo", "bench"},
}
ROOMS = sorted(ALLOWED, key=len, reverse=True)  # most specific first


def room_of(module: str) -> str | None:
    """The room a dotted module name belongs to, or None for a third-party module."""
    for room in ROOMS:
        if module == room or module.startswith(room + "."):
            return room
    if module == "protocols":
        return "protocols"
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """Every module ``path`` imports, resolved to absolute dotted names, with its line."""
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base
            for alias in node.names:  # ``from protocols import wire`` names a module
                yield node.lineno, f"{base}.{alias.name}"


def sources() -> list[Path]:
    return sorted(p for room in ("protocols", "psi", "node", "coordinator", "bank_node", "telco_node", "demo",
                                 "bench") for p in (ROOT / room).rglob("*.py"))


def violations(path: Path) -> list[str]:
    own = room_of(module_name(path))
    found = []
    for line, target in imports(path):
        room = room_of(target)
        if room is None or (room == "protocols" and target == "protocols"):
            continue
        if own is None or room not in ALLOWED[own]:
            found.append(f"{path.relative_to(ROOT)}:{line} ({own}) imports {target} ({room})")
    return sorted(set(found))


def test_every_source_file_belongs_to_a_room() -> None:
    homeless = [str(p.relative_to(ROOT)) for p in sources() if room_of(module_name(p)) is None]
    assert homeless == []


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_flow_one_way(path: Path) -> None:
    assert violations(path) == []


def test_the_walk_catches_an_upward_import(tmp_path: Path) -> None:
    # Prepare: a wire module that reaches up into the node runtime, once at top level, once lazily
    bad = ROOT / "protocols" / "wire" / "_layer_probe.py"
    bad.write_text("import json\nfrom node.runner import JobRunner\n\ndef f():\n    from coordinator import jobs\n")
    try:
        # Execute
        found = violations(bad)
    finally:
        bad.unlink()
    # Assert
    assert found == [
        "protocols/wire/_layer_probe.py:2 (protocols.wire) imports node.runner (node)",
        "protocols/wire/_layer_probe.py:2 (protocols.wire) imports node.runner.JobRunner (node)",
        "protocols/wire/_layer_probe.py:5 (protocols.wire) imports coordinator (coordinator)",
        "protocols/wire/_layer_probe.py:5 (protocols.wire) imports coordinator.jobs (coordinator)",
    ]
