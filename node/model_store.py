"""Model store: each party keeps only its own part of a federated model, with a model card.

Each node stores, under ``<state_dir>/models/<job_id>/``::

    card.json     ModelCard: job, algorithm, role, own feature names and their schema digest, label
                  (active party only), metrics, data digests, policy version, peer, fallback
    part.json     the party's own part (``save(card, dict)``), or
    part.bin      an opaque part (``save(card, bytes)``)

The parts and the card are :mod:`protocols.vfl.model_parts`. Writes are atomic: the card and the part
are written to a temporary directory beside the final one, flushed, and renamed into place, so a crash
leaves either no model or the whole model, never a part without its card. Nothing here leaves the node.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from protocols.vfl.model_parts import ModelCard
from protocols.wire.errors import ConfigError

__all__ = ["CARD_FILE", "ModelNotFound", "ModelStore"]

CARD_FILE = "card.json"
_PART_JSON, _PART_BIN = "part.json", "part.bin"
_MODELS_DIR = "models"

class ModelNotFound(ConfigError):
    """No model is stored for the requested job (or model id)."""

    status_hint = 404


# --- store -----------------------------------------------------------------------------------------


def _fsync_write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ModelStore:
    """The party's own model parts under ``<state_dir>/models/<job_id>/`` (see the module docstring).

    Args:
        state_dir: the node's state directory (``NodeSettings.state_path``).
    """

    _DIR_NAME = re.compile(r"^[0-9]{1,18}$")

    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / _MODELS_DIR
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _dir(self, job_id: int) -> Path:
        return self.root / str(int(job_id))

    def save(self, card: ModelCard, part: bytes | dict[str, Any] | BaseModel, *, replace: bool = False) -> Path:
        """Store ``card`` and this party's ``part`` atomically; return the model's directory.

        Args:
            card: the model card (``card.job_id`` names the model).
            part: the party's own part: a pydantic part model or dict (stored as JSON), or opaque bytes.
            replace: overwrite an existing model of the same job (otherwise refuse).

        Raises:
            ConfigError: a model of ``card.job_id`` exists and ``replace`` is False, or ``part`` is not
                JSON-serialisable.
        """
        final = self._dir(card.job_id)
        if final.exists() and not replace:
            raise ConfigError(f"a model of job {card.job_id} is already stored; pass replace=True to overwrite")
        tmp = self.root / f".tmp-{card.job_id}-{secrets.token_hex(6)}"
        tmp.mkdir(mode=0o700)
        try:
            _fsync_write(tmp / CARD_FILE, card.model_dump_json(indent=2).encode())
            self._write_part(tmp, part)
            _fsync_dir(tmp)
            self._swap_in(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    @staticmethod
    def _write_part(tmp: Path, part: bytes | dict[str, Any] | BaseModel) -> None:
        if isinstance(part, bytes):
            _fsync_write(tmp / _PART_BIN, part)
            return
        data = part.model_dump(mode="json") if isinstance(part, BaseModel) else part
        try:
            body = json.dumps(data, allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"model part is not JSON-serialisable: {exc}") from exc
        _fsync_write(tmp / _PART_JSON, body)

    def _swap_in(self, tmp: Path, final: Path) -> None:
        trash = None
        if final.exists():
            trash = self.root / f".old-{final.name}-{secrets.token_hex(6)}"
            final.rename(trash)
        tmp.rename(final)
        _fsync_dir(self.root)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)

    def load(self, job_id: int) -> tuple[ModelCard, bytes | dict[str, Any]]:
        """Return the card and the part of the model trained by ``job_id``.

        Raises:
            ModelNotFound: no model of ``job_id`` is stored here.
            ConfigError: the stored card or part is unreadable.
        """
        path = self._dir(job_id)
        card = self._read_card(path, job_id)
        if (path / _PART_JSON).exists():
            try:
                part: bytes | dict[str, Any] = json.loads((path / _PART_JSON).read_bytes())
            except ValueError as exc:
                raise ConfigError(f"model part of job {job_id} is not valid JSON") from exc
        else:
            part = (path / _PART_BIN).read_bytes()
        return card, part

    def _read_card(self, path: Path, job_id: int) -> ModelCard:
        if not (path / CARD_FILE).is_file():
            raise ModelNotFound(f"no model of job {job_id} is stored on this node")
        try:
            return ModelCard.model_validate_json((path / CARD_FILE).read_bytes())
        except ValidationError as exc:
            raise ConfigError(f"model card of job {job_id} is invalid: {exc.errors()[0]['msg']}") from exc

    def card(self, job_id: int) -> ModelCard:
        """The card alone of the model trained by ``job_id`` (raises ``ModelNotFound``)."""
        return self._read_card(self._dir(job_id), job_id)

    def find(self, model_id: str) -> ModelCard:
        """The card whose ``model_id`` is ``model_id``.

        Raises:
            ModelNotFound: no stored model has that id.
        """
        for card in self.list():
            if card.model_id == model_id:
                return card
        raise ModelNotFound(f"no model {model_id!r} is stored on this node")

    def list(self) -> list[ModelCard]:
        """Every stored model's card, by job id (temporary and unreadable entries are skipped)."""
        cards = []
        for path in sorted(self.root.iterdir(), key=lambda p: (len(p.name), p.name)):
            if self._DIR_NAME.match(path.name) and (path / CARD_FILE).is_file():
                try:
                    cards.append(self._read_card(path, int(path.name)))
                except ConfigError:
                    continue
        return cards

    def delete(self, job_id: int) -> None:
        """Remove the model of ``job_id`` (atomically: renamed away first, then deleted).

        Raises:
            ModelNotFound: no model of ``job_id`` is stored here.
        """
        path = self._dir(job_id)
        if not path.exists():
            raise ModelNotFound(f"no model of job {job_id} is stored on this node")
        trash = self.root / f".del-{job_id}-{secrets.token_hex(6)}"
        path.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
