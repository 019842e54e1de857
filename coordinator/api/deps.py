"""FastAPI dependencies: settings and the service context."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from coordinator.context import Context
from coordinator.settings import Settings, get_settings

__all__ = ["ContextDep", "SettingsDep", "get_context"]


def get_context(request: Request) -> Context:
    """The service context ``create_app`` built."""
    ctx: Context = request.app.state.context
    return ctx


ContextDep = Annotated[Context, Depends(get_context)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
