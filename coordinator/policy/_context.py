"""What the rules look at: a job's inputs joined with their catalog entries, the policy, and the ε spent."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from coordinator.policy._budget import BudgetPair
from coordinator.policy._filter import FilterSyntaxError, parse_filter
from coordinator.policy._loader import KindRule, Policy
from protocols.wire.control import DatasetPublic, FieldSpec, JobCreate, JobInput, JobKind, PartyKind

__all__ = ["EvalContext", "InputView", "build_context"]


@dataclass(frozen=True)
class InputView:
    """One job input whose dataset is in the catalog."""

    index: int
    spec: JobInput
    dataset: DatasetPublic
    party_kind: PartyKind | None
    fields: Mapping[str, FieldSpec]

    def qual(self, name: str) -> str:
        """``dataset.field``, as messages name fields."""
        return f"{self.dataset.name}.{name}"

    def named(self) -> list[tuple[str, str]]:
        """Every (field, role) the input names, except filter fields."""
        s = self.spec
        pairs = [(f, "key_fields") for f in s.key_fields] + [(f, "feature_fields") for f in s.feature_fields]
        pairs += [(f, "output_fields") for f in s.output_fields]
        pairs += [(f, role) for f, role in ((s.label_field, "label_field"), (s.consent_field, "consent_field")) if f]
        return pairs

    def used(self) -> list[tuple[FieldSpec, str]]:
        """Every existing field the input names, with its role (filter fields excluded)."""
        return [(self.fields[f], role) for f, role in self.named() if f in self.fields]

    def filter_fields(self) -> list[FieldSpec]:
        """Existing fields its filter names ([] if there is no filter or it does not parse)."""
        if not self.spec.filter:
            return []
        try:
            preds = parse_filter(self.spec.filter)
        except FilterSyntaxError:
            return []
        return [self.fields[p.field] for p in preds if p.field in self.fields]


@dataclass(frozen=True)
class EvalContext:
    """One evaluation: the job, the policy, its catalogued inputs, the missing ones and the ε spent per pair."""

    job: JobCreate
    policy: Policy
    inputs: tuple[InputView, ...]
    missing: tuple[tuple[int, int], ...]  # (input index, dataset id) not in the catalog
    budget_spent: Mapping[BudgetPair, float]

    @property
    def rule(self) -> KindRule:
        """What the policy lets the job's kind do."""
        return self.policy.kinds[self.job.kind]

    @property
    def mode(self) -> str | None:
        """``params.output_mode`` (None if unset)."""
        return self.job.params.output_mode

    @property
    def reveal(self) -> bool:
        """Whether the job is a reveal-mode recovery (or a win_back chaining one, under the same rules)."""
        return self.job.kind in (JobKind.RECOVERY, JobKind.WIN_BACK) and self.mode == "reveal"

    def of_kind(self, kind: PartyKind) -> list[InputView]:
        """The catalogued inputs of parties of ``kind``."""
        return [i for i in self.inputs if i.party_kind == kind]


def build_context(
    job: JobCreate, datasets: Mapping[int, DatasetPublic], party_kinds: Mapping[str, PartyKind], policy: Policy,
    budget_spent: Mapping[BudgetPair, float],
) -> EvalContext:
    """Join ``job``'s inputs with their catalog entries and owners' kinds (pure)."""
    inputs, missing = [], []
    for index, spec in enumerate(job.inputs):
        ds = datasets.get(spec.dataset_id)
        if ds is None:
            missing.append((index, spec.dataset_id))
            continue
        fields = MappingProxyType({f.name: f for f in ds.fields})
        inputs.append(InputView(index, spec, ds, party_kinds.get(ds.party), fields))
    return EvalContext(job, policy, tuple(inputs), tuple(missing), budget_spent)

