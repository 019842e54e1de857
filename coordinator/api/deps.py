"""FastAPI dependencies: settings, the service context, and the app's security state.

``install_state`` gives an app what lives beside its context for the lifetime of the process: the
failed-authentication log (``AuthFailureLog``) and the audit chain's verified prefix
(``VerifiedChain``). ``create_app`` calls it once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from coordinator.audit.log import AuthFailureLog
from coordinator.audit.review import VerifiedChain
from coordinator.context import Context
from coordinator.settings import Settings, get_settings

__all__ = ["ContextDep", "FailuresDep", "SettingsDep", "VerifiedDep", "client_address", "get_context",
           "install_state"]


def get_context(request: Request) -> Context:
    """The service context ``create_app`` built."""
    ctx: Context = request.app.state.context
    return ctx


def install_state(app: FastAPI, settings: Settings) -> None:
    """Give ``app`` its failed-authentication log and verified-chain cache."""
    app.state.auth_failures = AuthFailureLog(timedelta(seconds=settings.auth_failed_window_seconds))
    app.state.verified_chain = VerifiedChain()


def get_failures(request: Request) -> AuthFailureLog:
    """The app's failed-authentication log."""
    failures: AuthFailureLog = request.app.state.auth_failures
    return failures


def get_verified(request: Request) -> VerifiedChain:
    """The app's verified prefix of the audit chain."""
    verified: VerifiedChain = request.app.state.verified_chain
    return verified


def client_address(request: Request) -> str:
    """The caller's address as the server sees it (the TCP peer)."""
    return request.client.host if request.client else "unknown"


ContextDep = Annotated[Context, Depends(get_context)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
FailuresDep = Annotated[AuthFailureLog, Depends(get_failures)]
VerifiedDep = Annotated[VerifiedChain, Depends(get_verified)]
