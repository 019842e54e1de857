"""The ε budget per (bank dataset, telco dataset) pair: spent and remaining."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from coordinator import budgets
from coordinator.accounts import Principal
from coordinator.api.access import required
from coordinator.api.deps import ContextDep
from coordinator.budgets import BudgetsPublic

router = APIRouter()


@router.get("/budgets", tags=["budgets"])
def list_budgets(ctx: ContextDep, actor: Annotated[Principal, Depends(required("list_budgets"))]) -> BudgetsPublic:
    """ε spent and remaining per dataset pair (an auditor sees all pairs, an admin those of their party)."""
    return budgets.list_budgets(ctx, actor)
