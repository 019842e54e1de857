"""What the PSI job handlers take from the node runtime: inputs, rows, the peer link, progress."""

from __future__ import annotations

from collections.abc import Callable

from node.governance import Governance
from node.runner import JobContext
from protocols.wire.control import JobInput, JobParams, KeyType
from protocols.wire.errors import ConfigError
from protocols.wire.filters import parse_filter

from ._link import PeerFrameTransport, SessionLink
from ._rows import KeyColumn, PartyRows, party_rows

__all__ = ["ONE_INPUT", "k_of", "key_columns", "link_to_peer", "load_rows", "progress_of"]

ONE_INPUT = "job {job} has {count} inputs on this node; a PSI job takes exactly one"
"""What a PSI job refuses when not exactly one of its inputs lives on this node (``JobContext.own_input``)."""


def k_of(params: JobParams) -> int:
    """The suppression threshold of a job: ``min_cell`` as the signed terms carry it.

    The coordinator writes the policy's ``k_min_cell`` there when a job does not ask for more, and both
    parties sign it, so a change of k in ``coordinator/policy.yaml`` reaches the nodes with the next job;
    the node keeps no copy of the policy.

    Raises:
        ConfigError: The terms carry no ``min_cell`` (a coordinator that does not fill it in).
    """
    if params.min_cell is None:
        raise ConfigError("the signed terms carry no params.min_cell; the coordinator fills in the policy's "
                          "k_min_cell at submission, so resubmit the job through an up-to-date coordinator")
    return params.min_cell


def link_to_peer(ctx: JobContext, *, ready_timeout: float = 600.0) -> SessionLink:
    """A session link to the peer's node over the mutual-TLS data plane.

    While it waits for the peer to open its side, it asks the coordinator every few seconds whether the
    job is still on (:meth:`JobContext.check_current`): a peer that refused the job ends the wait.
    """
    client = ctx.peer(ctx.peer_party())
    transport = PeerFrameTransport(client, ctx.job.id, ready_timeout=ready_timeout, still_running=ctx.check_current)
    return SessionLink(transport, str(ctx.job.id))


def key_columns(governance: Governance, fields: list[str]) -> list[KeyColumn]:
    """The key columns of an input, with the key types its governance file declares.

    Raises:
        ConfigError: If a key field is not an identifier with a ``key_type``.
    """
    out = []
    for name in fields:
        rule = governance.fields.get(name)
        if rule is None or rule.key_type is None:
            raise ConfigError(f"key field {name!r} of {governance.dataset} has no key_type in its governance file")
        out.append(KeyColumn(name, rule.key_type))
    return out


def _field_of_kind(governance: Governance, key_type: KeyType, exclude: list[str]) -> str | None:
    for name, rule in governance.fields.items():
        if rule.key_type == key_type and name not in exclude:
            return name
    return None


def load_rows(ctx: JobContext, inp: JobInput, *, label_field: str | None = None,
              want_label: KeyType | None = None) -> PartyRows:
    """Read this node's rows for ``inp``: key columns, own record ids, label, after filter and consent.

    Args:
        ctx: The job context.
        inp: This node's input.
        label_field: Column to carry as the label.
        want_label: Otherwise, the first column of this key type (e.g. the telco's msisdn for relay).
    """
    source, governance = ctx.open_dataset(inp.dataset_id)
    keys = key_columns(governance, list(inp.key_fields))
    id_field = _field_of_kind(governance, KeyType.CUSTOMER_ID, list(inp.key_fields))
    if label_field is None and want_label is not None:
        label_field = _field_of_kind(governance, want_label, [])
        if label_field is None:
            raise ConfigError(f"{governance.dataset} has no {want_label} field to use as the label")
    wanted = [k.field for k in keys] + [f for f in (id_field, label_field, inp.consent_field) if f]
    wanted += [p.field for p in parse_filter(inp.filter)] if inp.filter else []
    with source:
        frame = source.read(list(dict.fromkeys(wanted)))
    return party_rows(frame, keys, id_field=id_field, label_field=label_field, filter_text=inp.filter,
                      consent_field=inp.consent_field)


def progress_of(ctx: JobContext, prefix: str) -> Callable[[str, float], None]:
    """A progress reporter that names the job kind's stage (what the runner reports on failure)."""

    def report(stage: str, fraction: float) -> None:
        ctx.progress(f"{prefix}: {stage}", fraction)

    return report
