"""A compose file read the way ``docker compose`` reads it, for the namespace harness (no Docker needed).

What it does, and nothing more:

- ``.env`` files: ``KEY=VALUE`` lines (comments, blank lines and surrounding quotes as compose treats them);
- interpolation of every string in the file: ``$$`` (a literal ``$``), ``$VAR``, ``${VAR}``, ``${VAR:-default}``,
  ``${VAR-default}``, ``${VAR:?error}`` and ``${VAR?error}`` (a missing required variable raises
  :class:`ComposeError` with compose's own message). Defaults are taken literally (no nested ``${}``);
- ``x-`` anchors and ``<<`` merges exactly as PyYAML's safe loader gives them;
- per service: ``entrypoint`` + ``command`` (lists, or strings split like a shell), ``environment`` (map or
  ``KEY=VALUE`` list), ``depends_on`` (list, or map with ``condition``), ``healthcheck``, ``volumes``
  (short ``SRC:TARGET[:ro]`` syntax), ``restart``, ``working_dir``, ``image``.

What each party learns: nothing; this module only reads files.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ComposeError", "ComposeProject", "Mount", "Service", "interpolate", "read_env_file"]

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_]\w*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_]\w*)")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
CONDITIONS = ("service_started", "service_healthy", "service_completed_successfully")


class ComposeError(ValueError):
    """The compose file or its environment cannot be used (the message names the field and the fix)."""


def read_env_file(path: Path) -> dict[str, str]:
    """The ``KEY=VALUE`` pairs of a compose ``.env`` file (an absent file has none)."""
    if not path.exists():
        return {}
    found: dict[str, str] = {}
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_]\w*", key.strip()):
            raise ComposeError(f"{path}:{n}: expected KEY=VALUE, got {line[:40]!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        found[key.strip()] = value
    return found


def interpolate(text: str, env: Mapping[str, str], where: str = "") -> str:
    """``text`` with compose variables substituted from ``env``.

    Raises:
        ComposeError: a ``${VAR:?msg}`` / ``${VAR?msg}`` variable is missing (or empty, with ``:``).
    """

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, arg = m.group(2), m.group(3) or ""
        value = env.get(name)
        unset_or_empty = value is None or (value == "" and op is not None and op.startswith(":"))
        if op in (":-", "-") and (value is None if op == "-" else unset_or_empty):
            return arg
        if op in (":?", "?") and (value is None if op == "?" else unset_or_empty):
            raise ComposeError(f"Missing mandatory value for {where or 'the file'}: {name}: {arg}")
        return value or ""

    return _VAR.sub(sub, text)


def _interpolate_tree(node: Any, env: Mapping[str, str], where: str) -> Any:
    if isinstance(node, str):
        return interpolate(node, env, where)
    if isinstance(node, list):
        return [_interpolate_tree(v, env, where) for v in node]
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, env, f"{where}.{k}" if where else str(k)) for k, v in node.items()}
    return node


def seconds(value: Any, default: float) -> float:
    """A compose duration (``"1m30s"``, ``"5s"``, ``10``) in seconds."""
    if value is None:
        return default
    if isinstance(value, int | float):
        return float(value)
    parts = _DURATION.findall(str(value))
    if not parts:
        raise ComposeError(f"not a duration: {value!r} (use e.g. 5s or 1m30s)")
    return sum(float(n) * _UNITS[u] for n, u in parts)


@dataclass(frozen=True)
class Mount:
    """One entry of a service's ``volumes``: a named volume or a bind mount, and where the image sees it."""

    source: str
    target: str
    read_only: bool

    @property
    def named(self) -> bool:
        """A named volume (not a host path)."""
        return not self.source.startswith((".", "/", "~"))


@dataclass
class Service:
    """One service of a compose file, interpolated."""

    name: str
    spec: dict[str, Any]

    @property
    def argv(self) -> list[str]:
        """``entrypoint`` followed by ``command``, as the container would run them."""
        return [*self._words("entrypoint"), *self._words("command")]

    def _words(self, key: str) -> list[str]:
        value = self.spec.get(key)
        if value is None:
            return []
        return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]

    @property
    def environment(self) -> dict[str, str]:
        """The service's ``environment`` as strings (booleans and numbers the way compose writes them)."""
        env = self.spec.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
        return {str(k): ("" if v is None else str(v).lower() if isinstance(v, bool) else str(v))
                for k, v in env.items()}

    @property
    def depends_on(self) -> dict[str, str]:
        """Service -> condition (``service_started`` for the list form)."""
        deps = self.spec.get("depends_on") or {}
        if isinstance(deps, list):
            return dict.fromkeys(deps, "service_started")
        found = {}
        for dep, how in deps.items():
            condition = (how or {}).get("condition", "service_started")
            if condition not in CONDITIONS:
                raise ComposeError(f"services.{self.name}.depends_on.{dep}.condition: {condition!r} is not one of "
                                   f"{', '.join(CONDITIONS)}")
            found[dep] = condition
        return found

    @property
    def healthcheck(self) -> tuple[list[str], float, float] | None:
        """``(argv, interval, total wait)`` of the health check, or None.

        ``CMD`` runs the words as they are, ``CMD-SHELL`` and a plain string through ``sh -c``. The total
        wait is ``start_period + interval * retries`` (compose's defaults: 30 s, 3 retries).
        """
        check = self.spec.get("healthcheck")
        if not check or check.get("disable"):
            return None
        test = check.get("test")
        if isinstance(test, str):
            argv = ["sh", "-c", test]
        elif test and test[0] == "CMD":
            argv = [str(t) for t in test[1:]]
        elif test and test[0] == "CMD-SHELL":
            argv = ["sh", "-c", " ".join(str(t) for t in test[1:])]
        else:
            return None
        interval = seconds(check.get("interval"), 30.0)
        total = seconds(check.get("start_period"), 0.0) + interval * int(check.get("retries", 3))
        return argv, interval, total

    @property
    def mounts(self) -> list[Mount]:
        """The service's volumes (short syntax)."""
        found = []
        for item in self.spec.get("volumes") or []:
            if not isinstance(item, str):
                raise ComposeError(f"services.{self.name}.volumes: use the short SRC:TARGET[:ro] syntax")
            parts = item.split(":")
            if len(parts) not in (2, 3):
                raise ComposeError(f"services.{self.name}.volumes: {item!r} is not SRC:TARGET[:ro]")
            found.append(Mount(parts[0], parts[1], len(parts) == 3 and "ro" in parts[2].split(",")))
        return found

    @property
    def one_shot(self) -> bool:
        """An init step: ``restart: "no"`` (it runs once and exits)."""
        return str(self.spec.get("restart", "no")) == "no" and "healthcheck" not in self.spec

    @property
    def is_postgres(self) -> bool:
        """A PostgreSQL server from the ``postgres`` image (the harness maps it to the machine's PostgreSQL)."""
        return str(self.spec.get("image", "")).split(":")[0].split("/")[-1] == "postgres"


@dataclass
class ComposeProject:
    """An interpolated compose file: its services and named volumes."""

    path: Path
    project_dir: Path
    env: dict[str, str]
    services: dict[str, Service] = field(default_factory=dict)
    volumes: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path, project_dir: Path, environ: Mapping[str, str] | None = None) -> ComposeProject:
        """Read ``path`` with the variables of ``project_dir/.env`` (``environ`` wins, as the shell does).

        Raises:
            ComposeError: a required variable is missing, or a field the harness needs is malformed.
        """
        env = {**read_env_file(project_dir / ".env"), **(environ or {})}
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict) or not isinstance(raw.get("services"), dict):
            raise ComposeError(f"{path}: no services: mapping")
        raw = {k: v for k, v in raw.items() if not str(k).startswith("x-")}
        tree = _interpolate_tree(raw, env, "")
        project = cls(path, project_dir, env, {n: Service(n, s or {}) for n, s in tree["services"].items()},
                      list((tree.get("volumes") or {}).keys()))
        for svc in project.services.values():
            for dep in svc.depends_on:
                if dep not in project.services:
                    raise ComposeError(f"services.{svc.name}.depends_on: no service {dep!r} in {path}")
            for m in svc.mounts:
                if m.named and m.source not in project.volumes:
                    raise ComposeError(f"services.{svc.name}.volumes: named volume {m.source!r} is not declared "
                                       "under the top-level volumes:")
        return project

    def order(self, targets: list[str] | None = None) -> list[str]:
        """``targets`` (default: every service) and what they depend on, dependencies first."""
        done: list[str] = []

        def visit(name: str, path: tuple[str, ...]) -> None:
            if name in path:
                raise ComposeError(f"dependency cycle: {' -> '.join((*path, name))}")
            if name in done:
                return
            if name not in self.services:
                raise ComposeError(f"no service {name!r} in {self.path}")
            for dep in self.services[name].depends_on:
                visit(dep, (*path, name))
            done.append(name)

        for name in targets or list(self.services):
            visit(name, ())
        return done
