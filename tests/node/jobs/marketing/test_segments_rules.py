"""The segment loader and validator (protocols.wire.segments) and the release arithmetic (_segment_rules)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from demo.steps import GOVERNANCE
from node.governance import load_governance
from node.jobs.marketing._segment_rules import SUPPRESSED, SegmentJobError, check_segments_here, members, pad, release
from node.jobs.sites.demand import two_sided_geometric_noise
from protocols.wire.control import Purpose
from protocols.wire.segments import SegmentError, check_fields, parse_segments, segment_params, segments_sha256

ROOT = Path(__file__).resolve().parents[4]
EXAMPLE = ROOT / "examples" / "segments" / "segments.yaml"
TELCO = load_governance(GOVERNANCE / "telco_subscribers.yaml")
GOOD = 'version: "v1"\nsegments:\n  - name: kids\n    rule: "has_children == 1"\n'


def _error(text: str) -> SegmentError:
    with pytest.raises(SegmentError) as info:
        parse_segments(text)
    return info.value


def test_the_example_file_is_valid_for_marketing_and_the_demo_uses_the_same_file():
    text = EXAMPLE.read_text()
    parsed = parse_segments(text)
    assert parsed.version == "2026-12-05.1" and len(parsed.segments) == 9
    assert {"families_with_children", "business_people", "high_end_white_collar", "potential_car_buyers",
            "house_purchase", "fixed_term_wealth", "high_yield_wealth", "funds", "stocks"} == set(parsed.names)
    assert check_fields(parsed, TELCO.dataset, TELCO.fields, Purpose.MARKETING, 4) == []
    assert check_fields(parsed, TELCO.dataset, TELCO.fields, Purpose.APP_PROMOTION, 4) == []
    assert (ROOT / "demo" / "segments.yaml").read_text() == text
    assert parsed.sha256 == segments_sha256(text) == segment_params(text)["segments_sha256"]


@pytest.mark.parametrize(("text", "segment", "field", "words"), [
    ("version: [1\nsegments: []", None, "segments", "not valid YAML at line"),
    ("- just a list", None, "segments", "not a mapping"),
    ('segments:\n  - name: a\n    rule: "x == 1"\n', None, "version", "missing"),
    ('version: "v 1"\nsegments:\n  - {name: a, rule: "x == 1"}\n', None, "version", "'v 1'"),
    ('version: v1\nsegments: []\n', None, "segments", "list of 1 to"),
    ('version: v1\nsegmets: []\n', None, "segmets", "not a key"),
    ('version: v1\nsegments:\n  - {name: Bad Name, rule: "x == 1"}\n', None, "segments[0].name", "lower case"),
    ('version: v1\nsegments:\n  - {name: a, rule: "x == 1"}\n  - {name: a, rule: "y == 1"}\n', "a",
     "segments[1].name", "used twice"),
    ('version: v1\nsegments:\n  - {name: a, rules: "x == 1"}\n', "a", "segments[0].rules", "not a segment key"),
    ('version: v1\nsegments:\n  - {name: a}\n', "a", "segments[0]", "neither a rule nor a score"),
    ('version: v1\nsegments:\n  - {name: a, rule: "x == 1 or y == 2"}\n', "a", "segments[0].rule", "'or'"),
    ('version: v1\nsegments:\n  - {name: a, score: {model_job_id: 3, threshold: 1.5}}\n', "a",
     "segments[0].score.threshold", "outside [0, 1]"),
    ('version: v1\nsegments:\n  - {name: a, score: {model_job_id: 3, threshold: -0.1}}\n', "a",
     "segments[0].score.threshold", "outside [0, 1]"),
    ('version: v1\nsegments:\n  - {name: a, score: {model_job_id: x, threshold: 0.5}}\n', "a",
     "segments[0].score.model_job_id", "not a job id"),
    ('version: v1\nsegments:\n  - {name: a, score: {threshold: 0.5}}\n', "a", "segments[0].score", "exactly"),
])
def test_loader_errors_name_the_segment_the_key_and_a_fix(text, segment, field, words):
    error = _error(text)
    assert (error.segment, error.field) == (segment, field)
    assert words in str(error) and error.fix
    if segment:
        assert f"segment {segment!r}" in str(error)


def test_a_rule_and_a_score_together():
    parsed = parse_segments('version: 3\nsegments:\n  - name: prospects\n    rule: "bank_app_installed == 0"\n'
                            '    score: {model_job_id: 12, threshold: 0.6}\n')
    (seg,) = parsed.segments
    assert parsed.version == "3" and seg.fields == ["bank_app_installed"] and seg.score.threshold == 0.6
    assert parsed.model_job_ids == [12]


@pytest.mark.parametrize(("rule", "purpose", "words"), [
    ("kids == 1", Purpose.MARKETING, "is not a field of the dataset"),
    ("msisdn == '13800000000'", Purpose.MARKETING, "its category is identifier"),
    ("home_cell == 'G00010001'", Purpose.MARKETING, "its category is sensitive"),
    ("night_usage_ratio > 0.3", Purpose.MARKETING, "purposes exclude 'marketing'"),
    ("silent_days > 10", Purpose.MARKETING, "purposes exclude 'marketing'"),
    ("age >= 30", Purpose.MARKETING, "purposes exclude 'marketing'"),
])
def test_forbidden_and_unknown_fields_are_named_with_the_segment(rule, purpose, words):
    parsed = parse_segments(f'version: v1\nsegments:\n  - name: seg\n    rule: "has_children == 1 and {rule}"\n')
    (error,) = check_fields(parsed, TELCO.dataset, TELCO.fields, purpose, 4)
    field = rule.split()[0]
    assert error.segment == "seg" and error.field == f"telco_subscribers.{field}"
    assert words in str(error) and "use one of" in error.fix and "fund_interest" in error.fix


def test_fields_at_or_above_the_level_are_forbidden():
    parsed = parse_segments(GOOD)
    (error,) = check_fields(parsed, TELCO.dataset, TELCO.fields, Purpose.MARKETING, 3)  # has_children is level 3
    assert "security level 3 is at or above 3" in str(error)
    assert check_fields(parsed, TELCO.dataset, TELCO.fields, Purpose.MARKETING, 4) == []


def test_the_node_refuses_what_its_own_governance_forbids_and_score_segments():
    check_segments_here(parse_segments(GOOD), TELCO, Purpose.MARKETING)
    with pytest.raises(SegmentJobError, match="telco_subscribers.msisdn"):
        check_segments_here(parse_segments(GOOD.replace("has_children == 1", "msisdn == '1'")), TELCO,
                            Purpose.MARKETING)
    scored = GOOD + "  - name: s\n    score: {model_job_id: 4, threshold: 0.5}\n"
    with pytest.raises(SegmentJobError, match="'s': score"):
        check_segments_here(parse_segments(scored), TELCO, Purpose.MARKETING)


def test_members_evaluate_every_rule():
    frame = pd.DataFrame({"has_children": [1, 0, 1, None], "fund_interest": [0.7, 0.9, 0.2, 0.8]})
    parsed = parse_segments('version: v\nsegments:\n  - {name: a, rule: "has_children == 1"}\n'
                            '  - {name: b, rule: "fund_interest >= 0.6 and has_children != 1"}\n')
    got = members(frame, parsed.segments)
    assert got.tolist() == [[True, False], [False, True], [True, False], [False, False]]  # a missing cell: no


def test_pad_and_release():
    padded = pad(["a", "b"], 5)
    assert padded[:2] == ["a", "b"] and len(set(padded)) == 5 and all(p.startswith("~pad:") for p in padded[2:])
    with pytest.raises(ValueError):
        pad(["a", "b"], 1)
    assert release([100, 3, 50], 50, None, 3, np.random.default_rng(0)).values == [100, SUPPRESSED, 50]
    noised = release([100, 3, 50], 10, 1.0, 6, np.random.default_rng(1))
    noise = two_sided_geometric_noise(1.0, 3, np.random.default_rng(1), sensitivity=6)
    want = [max(v + int(z), 0) for v, z in zip([100, 3, 50], noise, strict=True)]
    assert noised.values == [v if v >= 10 else SUPPRESSED for v in want] and noised.sensitivity == 6
