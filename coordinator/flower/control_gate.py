"""``flower-superlink`` with everything but its Fleet API closed to whoever lacks the coordinator's token.

Flower 1.42 serves the Fleet, Control and Runtime APIs on one port, and the open-source SuperLink has no
Control API authentication (account authentication is Flower Enterprise). Anyone who reached that port
and trusted the CA could register a SuperNode under a party's name or start a run of any FAB (whose
ServerApp the SuperLink would then execute). This launcher runs the stock ``flower-superlink`` entry point
with one ASGI middleware in front of Flower's own, which lets a request through only if

- its path is the Fleet API (``/v1/fleet/``, guarded by SuperNode authentication) or ``/health``;
- or its path is the Runtime API (``/v1/runtime/``, used by the SuperLink's own SuperExec and ServerApp
  processes) and it comes from a loopback address;
- or it carries the coordinator's Control token in :data:`HEADER` (compared in constant time).

Everything else (the Control API, the docs) answers 403 naming the header. The token is read once, at
start, from the file named by :data:`TOKEN_FILE_ENV` (mode 0600, written by
:class:`coordinator.flower.superlink.SuperLinkService`); the launcher refuses to start without it.

Usage: ``TANDEM_CONTROL_TOKEN_FILE=F python -m coordinator.flower.control_gate <flower-superlink arguments>``

What each party learns: nothing; an outsider learns only that the request was refused.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

__all__ = ["HEADER", "TOKEN_FILE_ENV", "ControlGate", "install", "main"]

HEADER = "X-Tandem-Control-Token"
TOKEN_FILE_ENV = "TANDEM_CONTROL_TOKEN_FILE"
_OPEN = ("/v1/fleet/",)
_LOOPBACK_ONLY = ("/v1/runtime/",)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


class ControlGate:
    """ASGI middleware: Fleet API and ``/health`` open, Runtime API from loopback, the rest needs the token."""

    def __init__(self, app: Asgi, token: bytes) -> None:
        if len(token) < 16:
            raise ValueError("the Control token must be at least 16 bytes")
        self.app, self.token = app, token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, or answer 403 without reading it."""
        if scope["type"] != "http" or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        body = f"refused: the SuperLink's Control API needs the coordinator's token in {HEADER}".encode()
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def _allowed(self, scope: Scope) -> bool:
        path = str(scope.get("path", ""))
        if path == "/health" or path.startswith(_OPEN):
            return True
        if path.startswith(_LOOPBACK_ONLY):
            return _loopback(scope.get("client"))
        given = [value for name, value in scope.get("headers", []) if name.lower() == HEADER.lower().encode()]
        return len(given) == 1 and hmac.compare_digest(given[0], self.token)


def _loopback(client: Any) -> bool:
    try:
        return ipaddress.ip_address(client[0]).is_loopback
    except (TypeError, IndexError, ValueError):
        return False


def install(token: bytes) -> None:
    """Make Flower's SuperLink app factory put :class:`ControlGate` in front of every request."""
    from flwr.superlink import main as superlink_main  # noqa: PLC0415

    create_app = superlink_main.create_app

    def gated_create_app(*args: Any, **kwargs: Any) -> Any:
        app = create_app(*args, **kwargs)
        app.add_middleware(ControlGate, token=token)  # added last = outermost: runs before Flower's own
        return app

    superlink_main.create_app = gated_create_app


def read_token(path: Path) -> bytes:
    """The Control token in ``path`` (stripped).

    Raises:
        SystemExit: The file is missing, empty or readable by others.
    """
    try:
        if path.stat().st_mode & 0o077:
            raise SystemExit(f"{TOKEN_FILE_ENV}: {path} is readable by others; chmod 600 it")
        token = path.read_bytes().strip()
    except OSError as err:
        raise SystemExit(f"{TOKEN_FILE_ENV}: cannot read {path}: {err.strerror}") from None
    if len(token) < 16:
        raise SystemExit(f"{TOKEN_FILE_ENV}: {path} must hold a token of at least 16 bytes")
    return token


def main() -> None:
    """Read the token, install the gate and hand over to the stock ``flower-superlink`` entry point."""
    path = os.environ.get(TOKEN_FILE_ENV)
    if not path:
        raise SystemExit(f"set {TOKEN_FILE_ENV} to the file holding the SuperLink's Control token")
    install(read_token(Path(path)))
    from flwr.superlink.cli import flower_superlink  # noqa: PLC0415

    sys.argv[0] = "flower-superlink"
    flower_superlink()


if __name__ == "__main__":
    main()
