"""Marketing segments as data: the one loader and validator the coordinator and the telco both run.

A segment file (``examples/segments/segments.yaml``) is versioned YAML::

    version: "2026-12-05.1"
    segments:
      - name: families_with_children
        title: Families with children
        rule: "has_children == 1 and age >= 25 and age <= 50"      # protocols.wire.filters grammar
      - name: app_prospects
        score: {model_job_id: 12, threshold: 0.6}                   # telco-alone score of a model
        rule: "bank_app_installed == 0"                             # optional together with a score

A segment is a rule over the telco's catalog fields (the conjunctive filter grammar of
:mod:`protocols.wire.filters`, so what the coordinator checked is exactly what the telco evaluates), a
model-score threshold (the telco's part of a ``train_propensity`` job's model scored alone,
:func:`protocols.vfl.standalone.score_standalone`, at least ``threshold`` in [0, 1]), or both (both must hold).

The job carries the file's text, its SHA-256 and its version in its params
(``segments``, ``segments_sha256``, ``segments_version``), so the signed terms bind exactly this file.

Errors: :class:`SegmentError` (a ``ValueError``) names the segment, the field and the fix. The loader
refuses malformed YAML, a missing or bad ``version``, unknown keys, duplicate or malformed names, rules
the filter grammar refuses, thresholds outside [0, 1]; :func:`check_fields` refuses fields the dataset
does not have, identifiers, labels and sensitive fields, fields whose purposes exclude the job's purpose,
and fields at or above a security level. Pure: no I/O.

What each party learns from this module: nothing; it only parses and checks text both already hold.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import yaml

from protocols.wire.control import FieldCategory, Purpose
from protocols.wire.filters import FILTER_HELP, FilterSyntaxError, Predicate, parse_filter

__all__ = ["MAX_SEGMENTS", "MAX_TEXT", "FieldLike", "ScoreRule", "Segment", "SegmentError", "SegmentSet",
           "check_fields", "parse_segments", "segment_params", "segments_sha256"]

MAX_SEGMENTS = 32
MAX_TEXT = 65_536
"""Longest segment file accepted (characters)."""
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_SEGMENT_KEYS = frozenset({"name", "title", "rule", "score"})
_SCORE_KEYS = frozenset({"model_job_id", "threshold"})
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class SegmentError(ValueError):
    """A segment file or segment the loader or validator refuses.

    Attributes:
        segment: The segment's name (or ``None`` for the file as a whole).
        field: What is wrong: a YAML key (``version``, ``segments[2].score.threshold``) or a dataset field.
        fix: How to fix it.
    """

    def __init__(self, segment: str | None, field: str, problem: str, fix: str) -> None:
        where = f"segment {segment!r}" if segment else "segment file"
        super().__init__(f"{where}: {field}: {problem}; {fix}")
        self.segment, self.field, self.problem, self.fix = segment, field, problem, fix


@dataclass(frozen=True)
class ScoreRule:
    """A model-score condition: the telco-alone score of ``model_job_id``'s model is at least ``threshold``."""

    model_job_id: int
    threshold: float


@dataclass(frozen=True)
class Segment:
    """One segment: a rule, a score condition, or both (both must hold)."""

    name: str
    title: str
    rule: str | None
    predicates: tuple[Predicate, ...]
    score: ScoreRule | None

    @property
    def fields(self) -> list[str]:
        """The dataset fields the rule reads, in order, without repeats."""
        return list(dict.fromkeys(p.field for p in self.predicates))


@dataclass(frozen=True)
class SegmentSet:
    """A parsed segment file."""

    version: str
    segments: tuple[Segment, ...]
    sha256: str

    @property
    def names(self) -> list[str]:
        """Segment names, in file order."""
        return [s.name for s in self.segments]

    @property
    def fields(self) -> list[str]:
        """Every dataset field any rule reads, in order, without repeats."""
        return list(dict.fromkeys(f for s in self.segments for f in s.fields))

    @property
    def model_job_ids(self) -> list[int]:
        """Every model job a score condition names, without repeats."""
        return list(dict.fromkeys(s.score.model_job_id for s in self.segments if s.score is not None))


def segments_sha256(text: str) -> str:
    """SHA-256 (hex) of a segment file's UTF-8 text: what the job's ``segments_sha256`` must be."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def segment_params(text: str) -> dict[str, str]:
    """The job params that carry a segment file: its text, SHA-256 and version.

    Raises:
        SegmentError: The file does not parse (see :func:`parse_segments`).
    """
    parsed = parse_segments(text)
    return {"segments": text, "segments_sha256": parsed.sha256, "segments_version": parsed.version}


def _load_yaml(text: str) -> Any:
    if len(text) > MAX_TEXT:
        raise SegmentError(None, "segments", f"the file has {len(text)} characters, more than {MAX_TEXT}",
                           "split it or shorten the rules")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise SegmentError(None, "segments", f"is not valid YAML{where}",
                           "write a mapping with 'version' and a list 'segments' (see examples/segments)") from None


def _version(doc: Mapping[str, Any]) -> str:
    raw = doc.get("version")
    version = str(raw) if isinstance(raw, (str, int, float)) and not isinstance(raw, bool) else ""
    if not _VERSION.match(version):
        raise SegmentError(None, "version", f"is {'missing' if raw is None else repr(raw)}",
                           "give the file a version such as \"2026-12-05.1\" (letters, digits, '.', '_', '-')")
    return version


def _score(name: str, where: str, raw: Any) -> ScoreRule:
    if not isinstance(raw, Mapping) or set(raw) - _SCORE_KEYS or not _SCORE_KEYS <= set(raw):
        raise SegmentError(name, f"{where}.score", "must be a mapping with exactly model_job_id and threshold",
                           "write score: {model_job_id: <a train_propensity job id>, threshold: 0.6}")
    job, threshold = raw["model_job_id"], raw["threshold"]
    if not isinstance(job, int) or isinstance(job, bool) or job < 1:
        raise SegmentError(name, f"{where}.score.model_job_id", f"is {job!r}, not a job id",
                           "name the id of the train_propensity job whose model scores the segment")
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0.0 <= threshold <= 1.0:
        raise SegmentError(name, f"{where}.score.threshold", f"is {threshold!r}, outside [0, 1]",
                           "give a probability between 0 and 1, e.g. 0.6")
    return ScoreRule(int(job), float(threshold))


def _segment(index: int, raw: Any, seen: set[str]) -> Segment:
    where = f"segments[{index}]"
    if not isinstance(raw, Mapping):
        raise SegmentError(None, where, "is not a mapping", "write each segment as name, rule and/or score")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise SegmentError(None, f"{where}.name", f"is {name!r}",
                           "name the segment in lower case letters, digits and '_' (e.g. families_with_children)")
    if name in seen:
        raise SegmentError(name, f"{where}.name", "is used twice", "give every segment its own name")
    unknown = sorted(set(map(str, raw)) - _SEGMENT_KEYS)
    if unknown:
        raise SegmentError(name, f"{where}.{unknown[0]}", "is not a segment key",
                           f"use only {', '.join(sorted(_SEGMENT_KEYS))}")
    rule, score = raw.get("rule"), raw.get("score")
    if rule is None and score is None:
        raise SegmentError(name, where, "has neither a rule nor a score", "give a rule, a score condition, or both")
    predicates: tuple[Predicate, ...] = ()
    if rule is not None:
        if not isinstance(rule, str) or not rule.strip():
            raise SegmentError(name, f"{where}.rule", f"is {rule!r}, not a rule", FILTER_HELP)
        try:
            predicates = tuple(parse_filter(rule))
        except FilterSyntaxError as exc:
            raise SegmentError(name, f"{where}.rule", f"is refused at token {exc.token!r} ({exc})",
                               FILTER_HELP) from None
    title = raw.get("title", name)
    return Segment(name, str(title), rule, predicates, None if score is None else _score(name, where, score))


def parse_segments(text: str) -> SegmentSet:
    """Parse and check the shape of a segment file (fields are checked by :func:`check_fields`).

    Raises:
        SegmentError: naming the segment, the key and the fix.
    """
    doc = _load_yaml(text)
    if not isinstance(doc, Mapping):
        raise SegmentError(None, "segments", "the file is not a mapping",
                           "write a mapping with 'version' and a list 'segments' (see examples/segments)")
    unknown = sorted(set(map(str, doc)) - {"version", "segments", "description"})
    if unknown:
        raise SegmentError(None, unknown[0], "is not a key of a segment file", "use version, description, segments")
    version = _version(doc)
    raw = doc.get("segments")
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_SEGMENTS:
        raise SegmentError(None, "segments", f"must be a list of 1 to {MAX_SEGMENTS} segments",
                           "list the segments under 'segments:'")
    seen: set[str] = set()
    segments = []
    for index, item in enumerate(raw):
        segment = _segment(index, item, seen)
        seen.add(segment.name)
        segments.append(segment)
    return SegmentSet(version, tuple(segments), segments_sha256(text))


class FieldLike(Protocol):
    """What the validator needs of a catalog field (``FieldSpec`` and ``node.governance.FieldRule`` fit)."""

    @property
    def category(self) -> FieldCategory:
        """identifier, feature, label or sensitive."""
        ...

    @property
    def security_level(self) -> int:
        """JR/T 0197 level, 1 to 5."""
        ...

    @property
    def purposes(self) -> Sequence[Purpose]:
        """Purposes the field is approved for."""
        ...


def _field_error(segment: Segment, name: str, dataset: str, fields: Mapping[str, FieldLike], purpose: Purpose,
                 max_level: int) -> SegmentError | None:
    spec, qual = fields.get(name), f"{dataset}.{name}"
    usable = sorted(f for f, s in fields.items() if s.category == FieldCategory.FEATURE and purpose in s.purposes
                    and s.security_level < max_level)
    hint = f"use one of {', '.join(usable)}" if usable else "register feature fields for this purpose first"
    if spec is None:
        return SegmentError(segment.name, qual, "is not a field of the dataset", hint)
    if spec.category != FieldCategory.FEATURE:
        return SegmentError(segment.name, qual, f"is forbidden: its category is {spec.category.value}, and "
                            "segments may use feature fields only", hint)
    if purpose not in spec.purposes:
        return SegmentError(segment.name, qual, f"is forbidden: its purposes exclude '{purpose.value}'",
                            f"add '{purpose.value}' to its governance purposes, or {hint}")
    if spec.security_level >= max_level:
        return SegmentError(segment.name, qual, f"is forbidden: security level {spec.security_level} is at or "
                            f"above {max_level}", f"aggregate it into a lower-level field, or {hint}")
    return None


def check_fields(segments: SegmentSet | Iterable[Segment], dataset: str, fields: Mapping[str, FieldLike],
                 purpose: Purpose, max_level: int) -> list[SegmentError]:
    """Every problem with the fields the rules read, one error per (segment, field); ``[]`` if all are usable.

    Args:
        segments: The parsed segments.
        dataset: The dataset's name (errors name ``dataset.field``).
        fields: The dataset's catalog (field → category, level, purposes).
        purpose: The job's purpose.
        max_level: Fields at or above this security level are refused (the policy's auditor level).
    """
    items = segments.segments if isinstance(segments, SegmentSet) else tuple(segments)
    found = []
    for segment in items:
        for name in segment.fields:
            error = _field_error(segment, name, dataset, fields, purpose, max_level)
            if error is not None:
                found.append(error)
    return found
