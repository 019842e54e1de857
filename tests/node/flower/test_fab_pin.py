"""The runner's FAB pin, case by case (no processes): Tandem's own FAB passes, every departure is refused."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pytest
from flwr.cli.build import build_fab_from_disk

from coordinator.flower.superlink import APP_DIR
from node.flower.warm_clientapp import FabRefusedError, PinnedApp, check_fab

PIN = PinnedApp()


def _fab(tmp_path: Path, replace: tuple[str, str] | None = None, extra: dict[str, str] | None = None) -> bytes:
    app = tmp_path / "app"
    app.mkdir()
    text = (APP_DIR / "pyproject.toml").read_text()
    (app / "pyproject.toml").write_text(text.replace(*replace) if replace else text)
    for name, body in (extra or {}).items():
        (app / name).parent.mkdir(parents=True, exist_ok=True)
        (app / name).write_text(body)
    return build_fab_from_disk(app)


def test_tandems_own_fab_passes() -> None:
    check_fab(build_fab_from_disk(APP_DIR), PIN)


@pytest.mark.parametrize(
    ("replace", "extra", "refusal"),
    [
        (("node.flower.client_app:app", "evil.client:app"), None, "names 'evil.client:app'"),
        (('publisher = "tandem"', 'publisher = "mallory"'), None, "the run's FAB is mallory/tandem-flower"),
        (('name = "tandem-flower"', 'name = "tandem-flower2"'), None, "the run's FAB is tandem/tandem-flower2"),
        (None, {"node/flower/client_app.py": "app = None\n"}, "carries 1 other file(s)"),
        (None, {"README.md": "hello\n"}, "carries 1 other file(s), e.g. ['README.md']"),
    ],
)
def test_a_departing_fab_is_refused(tmp_path: Path, replace: tuple[str, str] | None, extra: dict[str, str] | None,
                                    refusal: str) -> None:
    with pytest.raises(FabRefusedError, match=re.escape(refusal)):
        check_fab(_fab(tmp_path, replace, extra), PIN)


def test_an_unreadable_fab_is_refused() -> None:
    with pytest.raises(FabRefusedError, match="unreadable"):
        check_fab(b"not a zip", PIN)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("other.txt", "no manifest")
    with pytest.raises(FabRefusedError, match="unreadable"):
        check_fab(archive.getvalue(), PIN)
