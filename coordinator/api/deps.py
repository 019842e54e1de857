"""FastAPI dependencies: settings, the service context, and the app's security state.

``install_state`` gives an app what lives beside its context for the lifetime of the process: its
settings, the failed-authentication log (``AuthFailureLog``) and the audit chain's verified prefix
(``VerifiedChain``). ``create_app`` calls it once.

These dependencies only read ``app.state``, so they are ``async``: FastAPI runs a sync dependency in its
thread pool, a hop that costs more than the lookup. The app's settings come from ``app.state`` rather than
from an entry in ``app.dependency_overrides``: while that mapping is non-empty, FastAPI re-analyses the
signature of every sub-dependency on every request (measured: about a third of a node poll's CPU).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from coordinator.audit.log import AuthFailureLog
from coordinator.audit.review import VerifiedChain
from coordinator.context import Context
from coordinator.settings import Settings, get_settings

__all__ = ["ContextDep", "FailuresDep", "SettingsDep", "VerifiedDep", "app_settings", "client_address",
           "get_context", "install_state"]


async def get_context(request: Request) -> Context:
    """The service context ``create_app`` built."""
    ctx: Context = request.app.state.context
    return ctx


def install_state(app: FastAPI, settings: Settings) -> None:
    """Give ``app`` its settings, failed-authentication log and verified-chain cache."""
    app.state.settings = settings
    app.state.auth_failures = AuthFailureLog(timedelta(seconds=settings.auth_failed_window_seconds))
    app.state.verified_chain = VerifiedChain()


async def app_settings(request: Request) -> Settings:
    """The settings ``create_app`` was given (an override of ``get_settings``, as tests set, wins)."""
    override = request.app.dependency_overrides.get(get_settings)
    if override is not None:
        return override()  # type: ignore[no-any-return]
    settings: Settings = request.app.state.settings
    return settings


async def get_failures(request: Request) -> AuthFailureLog:
    """The app's failed-authentication log."""
    failures: AuthFailureLog = request.app.state.auth_failures
    return failures


async def get_verified(request: Request) -> VerifiedChain:
    """The app's verified prefix of the audit chain."""
    verified: VerifiedChain = request.app.state.verified_chain
    return verified


def client_address(request: Request) -> str:
    """The caller's address as the server sees it (the TCP peer)."""
    return request.client.host if request.client else "unknown"


ContextDep = Annotated[Context, Depends(get_context)]
SettingsDep = Annotated[Settings, Depends(app_settings)]
FailuresDep = Annotated[AuthFailureLog, Depends(get_failures)]
VerifiedDep = Annotated[VerifiedChain, Depends(get_verified)]
