"""The desensitisation rules: known answers, the clearance section, and the property over every output path.

The property: over generated outputs (field values planted at any depth among aggregates) and every
role, no role receives a value above its clearance: not through the coordinator's API JSON (``GET
/jobs`` and ``GET /jobs/{id}``), nor the job page's outputs table (``outputs_html``), nor the node's
CSV and JSONL exports and its ``psi-results`` listing; values within its clearance reach it unchanged.
"""

from __future__ import annotations

import csv
import html
import io
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h3
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from coordinator.api.audit_html import outputs_html
from coordinator.app import create_app
from coordinator.policy import load_policy
from coordinator.store import JobUpdate
from node.jobs.psi.results import RECOVERED_FILE, export_results, list_results, write_rows
from protocols.wire.control import DatasetPublic, Desensitisation, FieldSpec, JobInput
from protocols.wire.desensitise import (
    FieldRule,
    ValueKind,
    apply_rule,
    desensitise,
    generalise,
    job_field_rules,
    mask,
    parse_clearance,
)
from tests.support.coordinator import API, TestClient, World, app_settings, field

CLEARANCE = load_policy().clearance
ROLES = {"bank_admin": "admin", "bank_analyst": "analyst", "bank_op": "operator", "auditor": "auditor"}


# ---------------------------------------------------------------- known answers


@pytest.mark.parametrize(("value", "kind", "shown"), [
    ("13812345534", ValueKind.MOBILE, "138****5534"),
    ("110105199001011234", ValueKind.ID_NUMBER, "110105***********4"),
    ("11010519900101123X", ValueKind.ID_NUMBER, "110105***********X"),
    ("110105900101123", ValueKind.ID_NUMBER, "110105********3"),
    ("C000123456", ValueKind.IDENTIFIER, "C0******56"),
    ("1234567", ValueKind.MOBILE, "*******"),
])
def test_mask_known_answers(value: str, kind: ValueKind, shown: str) -> None:
    assert mask(value, kind) == shown


@pytest.mark.parametrize(("value", "kind", "shown"), [
    (37, ValueKind.AGE, "30-39"), (0, ValueKind.AGE, "0-9"), ("64", ValueKind.AGE, "60-69"),
    (1234.5, ValueKind.AMOUNT, "1,000-4,999"), (7000, ValueKind.AMOUNT, "5,000-9,999"),
    (10_000, ValueKind.AMOUNT, "10,000-49,999"), (-2500, ValueKind.AMOUNT, "-(1,000-4,999)"),
    (0.4, ValueKind.AMOUNT, "<1"), ("123_456", ValueKind.CELL, "120_450"), (31.2345, ValueKind.COORDINATE, "31.2"),
    ("female", ValueKind.TEXT, "fe****"),
])
def test_generalise_known_answers(value: object, kind: ValueKind, shown: str) -> None:
    assert generalise(value, kind) == shown


def test_an_h3_cell_generalises_to_its_parent_two_resolutions_coarser() -> None:
    cell = h3.latlng_to_cell(31.2304, 121.4737, 8)
    assert generalise(cell, ValueKind.CELL) == h3.cell_to_parent(cell, 6)


def test_drop_and_none_and_the_clearance_boundary() -> None:
    drop = FieldRule(2, Desensitisation.DROP, ValueKind.TEXT)
    loose = FieldRule(4, Desensitisation.NONE, ValueKind.MOBILE)
    assert desensitise({"a": "x", "note": "y"}, {"note": drop}, 4) == {"a": "x"}  # dropped below full clearance
    assert desensitise({"note": "y"}, {"note": drop}, 5) == {"note": "y"}
    assert apply_rule("13812345534", loose, 3) == "138****5534"  # an unruled field above clearance is masked
    assert apply_rule("13812345534", loose, 4) == "13812345534"


@pytest.mark.parametrize(("raw", "message"), [
    ({"levels": {"analyst": 9}}, "clearance.levels.analyst: 9 is not a level"),
    ({"levels": {"analyst": 3}, "grants": []}, "clearance.grants: unknown key"),
    ({"full_export": [{"role": "operator"}]}, "clearance.full_export.0"),
    ([], "clearance must be a mapping"),
])
def test_a_bad_clearance_section_names_the_key_and_the_fix(raw: object, message: str) -> None:
    with pytest.raises(ValueError, match="fix") as info:
        parse_clearance(raw)
    assert message in str(info.value)


def test_the_shipped_policy_clears_analysts_below_real_name_identifiers_and_grants_recovery_exports() -> None:
    assert CLEARANCE.level("analyst") == 3 < 4 and CLEARANCE.level("auditor") == 5 and CLEARANCE.level("x") == 0
    assert CLEARANCE.may_export_full("operator", "recovery") and not CLEARANCE.may_export_full("analyst", "recovery")


# ---------------------------------------------------------------- generated outputs, every path


KINDS = {  # field suffix -> (field entry, a strategy of distinctive raw values)
    "mobile": ({"category": "identifier", "key_type": "mobile", "desensitisation": "mask"},
               st.integers(13_000_000_000, 13_999_999_999).map(str)),
    "idno": ({"category": "identifier", "key_type": "id_number", "desensitisation": "mask"},
             st.integers(10**17, 10**18 - 1).map(str)),
    "age": ({"category": "feature", "type": "integer", "key_type": None, "desensitisation": "generalise"},
            st.integers(18, 99)),
    "amount": ({"category": "feature", "type": "float", "key_type": None, "desensitisation": "generalise"},
               st.floats(1.0, 1e7).map(lambda x: round(x, 2) + 0.001)),
    "home_cell": ({"category": "sensitive", "key_type": None, "desensitisation": "generalise"},
                  st.tuples(st.floats(20, 40), st.floats(100, 120)).map(lambda p: h3.latlng_to_cell(*p, 8))),
    "note": ({"category": "feature", "key_type": None, "desensitisation": "drop"},
             st.text("abcdefghij", min_size=9, max_size=12).map(lambda s: "note-" + s)),
    "plain": ({"category": "feature", "key_type": None, "desensitisation": "none"},
              st.text("klmnopqrst", min_size=9, max_size=12).map(lambda s: "plain-" + s)),
}
NAMES = [f"l{level}_{kind}" for level in range(1, 6) for kind in KINDS]
FIELDS = [{**field(f"l{n[1]}_x"), "name": n, "security_level": int(n[1]), **KINDS[n.split("_", 1)[1]][0]}
          for n in NAMES]
SPECS = [FieldSpec.model_validate(f) for f in FIELDS]
RULES = job_field_rules([JobInput(dataset_id=1)], {1: DatasetPublic(
    id=1, party="bank", name="d", description="", row_count=1, fields=SPECS, schema_digest="0" * 64,
    created_at="2026-12-05T00:00:00Z")})
AGGREGATES = st.integers(-(10**9), -1)  # counts never collide with a planted value


@st.composite
def planted(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """Outputs of aggregates with field values planted at depth 0-2; and the planted name → value."""
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=8, unique=True))
    values = {n: draw(KINDS[n.split("_", 1)[1]][1]) for n in names}
    assume(len({str(v) for v in values.values()}) == len(values))  # a hidden value never equals a shown one
    outputs: dict[str, Any] = {f"count_{i}": draw(AGGREGATES) for i in range(draw(st.integers(0, 3)))}
    for name, value in values.items():
        depth = draw(st.integers(0, 2))
        target = outputs
        for d in range(depth):
            target = target.setdefault(f"part_{d}", {} if draw(st.booleans()) else {"n": draw(AGGREGATES)})
        target[name] = value if not draw(st.booleans()) else [value]
    return outputs, values


def _leaves(data: Any) -> Iterator[Any]:
    if isinstance(data, dict):
        for value in data.values():
            yield from _leaves(value)
    elif isinstance(data, list):
        for value in data:
            yield from _leaves(value)
    else:
        yield data


def _check(shown: Any, values: dict[str, Any], clearance: int, path: str) -> None:
    """No planted value above ``clearance`` reaches the viewer; those within it arrive unchanged."""
    text, leaves = json.dumps(shown, ensure_ascii=False), list(_leaves(shown))
    for name, value in values.items():
        rule = RULES[name]
        hidden = rule.level > clearance or (rule.rule == Desensitisation.DROP and clearance < 5)
        raw = str(value)
        if hidden:
            assert value not in leaves and raw not in leaves, (path, name, value, clearance)
            assert not isinstance(value, str) or raw not in text, (path, name, value, clearance)  # nor masked in part
        else:
            assert value in leaves or raw in leaves, (path, name, value, clearance)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, int]]:
    tmp = tmp_path_factory.mktemp("coord")
    tmp.chmod(0o700)
    with TestClient(create_app(app_settings(tmp))) as client:
        world = World(client).populate()
        world.add_user("bank_op", "operator", "bank")
        world.register("bank", "generated", [field("mobile"), *FIELDS])
        job = world.submit()
        for approver, who in (("party:bank", "bank_admin"), ("party:telco", "telco_admin"), ("auditor", "auditor")):
            world.approve(job, approver, who)
        yield world, job["id"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=planted(), who=st.sampled_from(sorted(ROLES)))
def test_no_role_receives_a_value_above_its_clearance_from_the_api(served: tuple[World, int], case, who: str) -> None:
    # Prepare: the generated outputs stored as the bank's (and the telco's) report of the job
    world, job_id = served
    outputs, values = case
    ctx = world.c.app.state.context
    with ctx.store.write() as tx:
        tx.jobs.update_job(job_id, JobUpdate(outputs={"bank": outputs, "telco": outputs}), ctx.clock())

    # Execute
    one = world.c.get(f"{API}/jobs/{job_id}", headers=world.h(who)).json()["outputs"]
    listed = next(j for j in world.c.get(f"{API}/jobs", headers=world.h(who)).json() if j["id"] == job_id)["outputs"]

    # Assert
    clearance = CLEARANCE.level(ROLES[who])
    assert set(one) == ({"bank", "telco"} if who == "auditor" else {"bank"})
    _check(one, values, clearance, "GET /jobs/{id}")
    _check(listed, values, clearance, "GET /jobs")
    page = outputs_html(one)  # what a job page shows this viewer (coordinator/api/audit_html.py)
    for name, value in values.items():
        rule = RULES[name]
        if rule.level > clearance or (rule.rule == Desensitisation.DROP and clearance < 5):
            assert f"<td>{html.escape(str(value))}</td>" not in page, ("HTML", name, value, clearance)
        else:
            assert f"<td>{html.escape(str(value))}</td>" in page, ("HTML", name, value, clearance)


@settings(max_examples=60, deadline=None)
@given(case=planted(), role=st.sampled_from(sorted(ROLES.values())), fmt=st.sampled_from(["csv", "jsonl"]))
def test_no_role_receives_a_value_above_its_clearance_from_a_node_export_or_listing(case, role: str, fmt: str) -> None:
    # Prepare: the planted values as one row-level file
    _, values = case
    clearance = CLEARANCE.level(role)
    with tempfile.TemporaryDirectory() as tmp:
        job_dir = Path(tmp)
        write_rows(job_dir / RECOVERED_FILE, list(values), [[str(v) for v in values.values()]])

        # Execute
        export = export_results(job_dir, fmt, rules=RULES, clearance=clearance)  # type: ignore[arg-type]
        listing = "\n".join(list_results(job_dir, rules=RULES, clearance=clearance))

    # Assert: read back cell by cell
    text = export.content.decode()
    rows = ([json.loads(line) for line in text.splitlines()] if fmt == "jsonl"
            else list(csv.DictReader(io.StringIO(text))))
    listed = dict(pair.split("=", 1) for pair in listing.splitlines()[1].strip().split("  ") if pair)
    for name, value in values.items():
        rule = RULES[name]
        hidden = rule.level > clearance or (rule.rule == Desensitisation.DROP and clearance < 5)
        for shown, path in ((rows[0], fmt), (listed, "listing")):
            assert (shown.get(name) == str(value)) != hidden, (path, name, value, shown.get(name), clearance)
            assert not hidden or not isinstance(value, str) or str(value) not in json.dumps(shown), (path, name)
