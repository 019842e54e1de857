"""Free-form JSON from another party is bounded in depth and size before anything recurses over it."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from protocols.wire.canonical import check_json_bounds, json_depth
from protocols.wire.control import MAX_OUTPUTS_BYTES, MAX_OUTPUTS_DEPTH, JobResultReport


def _nested(depth: int) -> list:
    return json.loads("[" * depth + "]" * depth)  # json.loads is what the API runs on a body


@pytest.mark.parametrize(("value", "depth"), [(1, 0), ("x", 0), ([], 1), ({}, 1), ({"a": [1, {"b": []}]}, 4)])
def test_depth_counts_lists_and_objects(value, depth):
    assert json_depth(value, stop_after=10) == depth


def test_depth_of_a_hostile_value_is_counted_without_recursion():
    assert json_depth(_nested(900), stop_after=MAX_OUTPUTS_DEPTH) == MAX_OUTPUTS_DEPTH + 1


def test_bounds_name_the_limit():
    assert check_json_bounds({"n": [1, 2]}, max_depth=2, max_bytes=100) == len(b'{"n":[1,2]}')
    with pytest.raises(ValueError, match="more than 2 levels"):
        check_json_bounds({"n": [[1]]}, max_depth=2, max_bytes=100)
    with pytest.raises(ValueError, match="limit of 10"):
        check_json_bounds({"n": "x" * 20}, max_depth=2, max_bytes=10)


@pytest.mark.parametrize(("outputs", "needle"), [
    ({"x": _nested(500)}, f"more than {MAX_OUTPUTS_DEPTH} levels"),
    ({"x": "a" * (MAX_OUTPUTS_BYTES + 1)}, f"limit of {MAX_OUTPUTS_BYTES}"),
])
def test_result_reports_refuse_deep_or_large_outputs(outputs, needle):
    with pytest.raises(ValidationError) as err:
        JobResultReport(status="succeeded", outputs=outputs)
    (error,) = err.value.errors()
    assert error["loc"] == ("outputs",) and needle in error["msg"]


def test_result_reports_keep_ordinary_aggregates():
    outputs = {"matched": 120, "cells": [{"h3": "88", "count": 60}], "nested": _nested(MAX_OUTPUTS_DEPTH - 1)}
    assert JobResultReport(status="succeeded", outputs=outputs).outputs == outputs
