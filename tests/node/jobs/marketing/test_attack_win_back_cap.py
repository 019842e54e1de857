"""Attack on ``win_back``: a bank node that skips its own ranking and cap has the telco message everyone it lists.

The honest bank node refuses a win-back without ``params.match_cap`` and sends only its top-ranked lost
customers. A modified bank node (nodes trust nobody) runs the recovery receiver over its whole list
instead, under signed terms with no cap, in relay mode: without a check at the telco, the telco relays
the message to every listed person it knows (150 here). The telco now refuses the job itself, naming
``params.match_cap``, before any PSI work, and queues nothing. (Coordinator rule R13 also requires the cap
of a win_back in relay mode: ``tests/coordinator`` is not relied on here.)
"""

from __future__ import annotations

from typing import Any

import tests.node.jobs.marketing.test_retention as retention
from node.jobs.psi import OutboxChannel
from node.jobs.psi._node import ONE_INPUT, load_rows, progress_of
from node.jobs.psi.recovery import receive_recovery, recovery_terms
from node.node_db import NODE_DB
from node.runner import JobContext
from protocols.wire.control import JobInput, JobKind, JobParams, Purpose
from tests.support.world import World

world = retention.world  # the same two nodes, telco subscribers and lost-contact list


def _greedy_bank(ctx: JobContext) -> dict[str, Any]:
    """A bank node that sends its whole lost list (no ranking, no cap of its own)."""
    rows = load_rows(ctx, ctx.own_input(refusal=ONE_INPUT), label_field="propensity")
    terms = recovery_terms(str(ctx.job.id), tuple(rows.keys), ctx.job.params)
    return receive_recovery(ctx, rows, terms, progress_of(ctx, "win_back"), ready_timeout=10.0)


def test_attack_win_back_relay_without_a_cap_is_refused_by_the_telco(world: World) -> None:
    inputs = [JobInput(dataset_id=1, key_fields=["id_number"]),
              JobInput(dataset_id=3, key_fields=["id_number"], feature_fields=["propensity"], consent_field="consent")]
    params = JobParams(output_mode="relay", min_cell=retention.K, message_template="Come back to Example Bank: reply 1")
    world.submit(7, JobKind.WIN_BACK, Purpose.RECOVERY, inputs, params, title="win back everyone")
    world.run({"bank": {JobKind.WIN_BACK: _greedy_bank}, "telco": world.handlers["telco"]}, timeout=120)

    reports = world.coordinator.results[7]
    outbox = OutboxChannel(world.runtimes["telco"].settings.state_path / NODE_DB)
    try:
        queued = list(outbox.rows("7", limit=1000))
    finally:
        outbox.close()
    assert queued == [], f"the telco relayed to {len(queued)} people under terms with no cap"
    assert reports["telco"].status == "failed", reports["telco"].outputs
    assert "params.match_cap" in reports["telco"].detail and "is missing" in reports["telco"].detail
    assert reports["bank"].status == "failed"


def test_policy_r13_wants_a_win_back_cap_within_the_policy_cap_in_relay_mode_too() -> None:
    from coordinator.policy import load_policy  # noqa: PLC0415
    from tests.coordinator.test_policy import denials, reveal_job, run  # noqa: PLC0415

    policy = load_policy()

    def win_back(**params: Any) -> list[str]:
        job = reveal_job(telco={"output_fields": []}, output_mode="relay", message_template="Come back", **params)
        job = job.model_copy(update={"kind": JobKind.WIN_BACK})
        return [str(r.field) for r in denials(run(job, policy), "R13")]

    assert win_back(match_cap=None) == ["params.match_cap"]
    assert win_back(match_cap=policy.max_recovery_match_cap + 1) == ["params.match_cap"]
    assert win_back(match_cap=policy.max_recovery_match_cap) == []
