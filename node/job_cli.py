"""Job commands for people: submit, list, show, results, cancel, retry; and a compliance officer's approval.

``job submit FILE [--dry-run] | list | show ID | results ID | cancel ID | retry ID``, and for a compliance
officer ``job auditor-key --out FILE`` and ``job approve ID --auditor-key FILE [--sign-only]`` (with
``--sign-only`` it prints the signature for the approval page, ``/console/jobs/ID``, and posts nothing).

Both nodes carry them (``tandem-bank job …``, ``tandem-telco job …``), and an analyst with no node uses
them with their own token. Where the commands connect:

* token: ``--token``, else ``TANDEM_API_TOKEN`` (an analyst's own), else the node's ``<PREFIX>API_TOKEN``;
* coordinator: ``--coordinator-url``, else ``TANDEM_COORDINATOR_URL``, else the node's
  ``<PREFIX>COORDINATOR_URL`` (default ``http://127.0.0.1:8600``); ``<PREFIX>COORDINATOR_CA`` verifies https.

A job file is YAML naming datasets by name (``examples/jobs/`` holds one per kind)::

    kind: audience_overlap
    purpose: app_promotion
    title: App promotion audience (count)
    inputs:
      - {dataset: bank_customers, key_fields: [id_number]}
      - {dataset: telco_subscribers, key_fields: [id_number], filter: "app_bank == 0"}
    params: {output_mode: count, epsilon: 0.5}

Names are resolved to ids through ``GET /api/v1/datasets`` (``party:`` on an input picks one when two
parties use the same name). The file is checked before anything is sent: an unknown field or a typo in a
kind is one line naming it and the likely fix (exit 2). These commands send only the job's terms and
read what the caller's role may read; they do not touch the node's state or its egress ledger.

A compliance officer's approval is signed here, on the officer's machine, with the officer's own
Ed25519 key (``auditor-key`` writes it, mode 0600, and prints the public key to register with
``tandem-coordinator user create --role auditor --signing-key``); like a node, the command recomputes
the digest from the terms it shows and refuses to sign when the coordinator's differs. The coordinator
never holds the key.
"""

from __future__ import annotations

import difflib
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
import yaml
from pydantic import BaseModel, SecretStr, TypeAdapter, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from node.approval import recompute_digest
from node.coordinator_client import (
    API_PREFIX,
    CoordinatorError,
    CoordinatorUnavailable,
    coordinator_tls_context,
    describe_transport_error,
    error_message,
)
from node.settings import DEFAULT_COORDINATOR_URL, check_coordinator_url
from protocols.crypto.signing import SigningKey
from protocols.wire.control import (
    ApprovalCreate,
    DatasetPublic,
    Decision,
    JobCreate,
    JobInput,
    JobParams,
    JobPublic,
    JobRetry,
    JobStatus,
)
from protocols.wire.errors import ConfigError

__all__ = ["DRY_RUN_PATH", "JobClient", "add_job_commands", "describe_job", "load_job_spec"]

DRY_RUN_PATH = "/jobs/dry-run"
"""``POST`` a ``JobCreate`` here for the policy ``Decision`` without storing a job (a 404/405 from a
coordinator without it is reported, never turned into a submission)."""

ANALYST_TOKEN_ENV, ANALYST_URL_ENV = "TANDEM_API_TOKEN", "TANDEM_COORDINATOR_URL"
FINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.REJECTED, JobStatus.CANCELLED})

LEARNS: dict[tuple[str, str | None], tuple[str, str, str]] = {
    ("audience_overlap", "count"): ("the (noised, k-suppressed) count", "the bank's set size", "the released count"),
    ("audience_overlap", "bank_ids"): ("which of its own customers matched", "the bank's set size", "the count"),
    ("recovery", "reveal"): ("current numbers of its matched, consenting customers (capped)",
                             "how many OPRF queries were made", "counts per key type"),
    ("recovery", "relay"): ("counts only", "which subscribers matched (it sends them the approved message)",
                            "counts"),
    ("train_risk", "model"): ("its own model part", "its own model part", "masked values only"),
    ("train_propensity", "model"): ("the tree structure and leaf weights, which split ids won",
                                    "the bank's encrypted gradients, which samples go left at its splits",
                                    "nothing but job status"),
    ("score", "scores"): ("the scores of its rows (kept on its node)",
                          "the requests and rows it answered, as in real-time scoring",
                          "counts and the score deciles"),
    ("site_selection", "count"): ("noised (ε-DP) aggregates per H3 cell of ≥ k people, its own ranked sites",
                                  "nothing of the branches or sites", "the ranked sites, coverage, k, ε, cell counts"),
}
"""What the bank, the telco and the coordinator learn, per (kind, output_mode) (README "Security model")."""


# ---------------------------------------------------------------- connection


class _Access(BaseSettings):
    """The node settings the job commands read (with the node's prefix), and nothing else."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    coordinator_url: str = DEFAULT_COORDINATOR_URL
    api_token: SecretStr | None = None
    coordinator_ca: Path | None = None


class JobClient:
    """A person's control-plane client for jobs and the dataset names they refer to."""

    def __init__(self, base_url: str, token: str, *, verify: bool | str = True,
                 transport: httpx.BaseTransport | None = None, ca_setting: str = "COORDINATOR_CA") -> None:
        """Bind to ``base_url``; ``verify`` is True (system store) or a CA bundle path, TLS 1.3 minimum either way."""
        self._url, self._ca = base_url.rstrip("/"), verify if isinstance(verify, str) else None
        self._prefix = ca_setting.removesuffix("COORDINATOR_CA")
        tls = verify if verify is False else coordinator_tls_context(self._ca, setting=ca_setting)
        self._http = httpx.Client(base_url=self._url + API_PREFIX, verify=tls, timeout=60.0,
                                  headers={"Authorization": f"Bearer {token}"}, transport=transport)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _call(self, method: str, path: str, body: BaseModel | None = None) -> httpx.Response:
        payload = body.model_dump(mode="json", exclude_none=True) if body is not None else None
        try:
            return self._http.request(method, path, json=payload)
        except httpx.TransportError as exc:
            message = describe_transport_error(exc, self._url, ca=self._ca, prefix=self._prefix)
            raise CoordinatorUnavailable(message.replace(f"(check {self._prefix}COORDINATOR_URL)",
                                                         f"(check --coordinator-url or {self._prefix}COORDINATOR_URL)"),
                                         status_code=503) from exc

    def _json(self, method: str, path: str, model: Any, body: BaseModel | None = None) -> Any:
        response = self._call(method, path, body)
        if response.is_error:
            raise CoordinatorError(error_message(response), status_code=response.status_code)
        return TypeAdapter(model).validate_python(response.json())

    def datasets(self) -> list[DatasetPublic]:
        """``GET /datasets``."""
        return list(self._json("GET", "/datasets", list[DatasetPublic]))

    def submit(self, job: JobCreate) -> JobPublic:
        """``POST /jobs``."""
        return self._json("POST", "/jobs", JobPublic, job)  # type: ignore[no-any-return]

    def dry_run(self, job: JobCreate) -> Decision:
        """``POST /jobs/dry-run``: the policy decision, nothing stored.

        Raises:
            ConfigError: the coordinator has no dry-run endpoint (nothing was submitted).
        """
        response = self._call("POST", DRY_RUN_PATH, job)
        if response.status_code in (404, 405):
            raise ConfigError(f"this coordinator has no dry-run endpoint (POST {API_PREFIX}{DRY_RUN_PATH}); "
                              "nothing was submitted. Fix: upgrade the coordinator, or submit without --dry-run")
        if response.is_error:
            raise CoordinatorError(error_message(response), status_code=response.status_code)
        return Decision.model_validate(response.json())

    def jobs(self) -> list[JobPublic]:
        """``GET /jobs``."""
        return list(self._json("GET", "/jobs", list[JobPublic]))

    def job(self, job_id: int) -> JobPublic:
        """``GET /jobs/{id}``."""
        return self._json("GET", f"/jobs/{job_id}", JobPublic)  # type: ignore[no-any-return]

    def cancel(self, job_id: int) -> JobPublic:
        """``POST /jobs/{id}/cancel``."""
        return self._json("POST", f"/jobs/{job_id}/cancel", JobPublic)  # type: ignore[no-any-return]

    def approve(self, job_id: int, approval: ApprovalCreate) -> JobPublic:
        """``POST /jobs/{id}/approvals``."""
        return self._json("POST", f"/jobs/{job_id}/approvals", JobPublic, approval)  # type: ignore[no-any-return]

    def retry(self, job_id: int, reason: str) -> JobPublic:
        """``POST /jobs/{id}/retry``."""
        return self._json("POST", f"/jobs/{job_id}/retry", JobPublic, JobRetry(reason=reason))  # type: ignore[no-any-return]


# ---------------------------------------------------------------- job files

_INPUT_FIELDS = sorted({*JobInput.model_fields, "dataset"} - {"dataset_id"})
_FIELDS_AT: dict[int, list[str]] = {0: sorted(JobCreate.model_fields), 2: _INPUT_FIELDS}


def _suggest(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""


def _allowed_at(loc: tuple[Any, ...]) -> list[str]:
    if loc[:1] == ("params",):
        return sorted(JobParams.model_fields)
    return _FIELDS_AT.get(len(loc) - 1 if loc[:1] == ("inputs",) else 0, [])


def _spec_error(path: Path, err: Mapping[str, Any]) -> ConfigError:
    """One line for the first problem pydantic found in a job file."""
    loc = tuple(err["loc"])
    where = ".".join(str(p) for p in loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        allowed = _allowed_at(loc)
        return ConfigError(f"job file {path}: unknown field {where}; {_suggest(str(loc[-1]), allowed)}"
                           f"fix: remove it or use one of {', '.join(allowed)}")
    if err["type"] == "enum":
        expected = str(err.get("ctx", {}).get("expected", ""))
        options = [o.strip(" '") for o in expected.replace(" or ", ",").split(",") if o.strip(" '")]
        return ConfigError(f"job file {path}: {where}: {err['input']!r} is not valid; "
                           f"{_suggest(str(err['input']), options)}fix: use one of {', '.join(options)}")
    return ConfigError(f"job file {path}: {where}: {str(err['msg']).removeprefix('Value error, ')}")


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read job file {path}: {exc.strerror} (fix: give the path of a job YAML, "
                          "e.g. examples/jobs/audience_overlap.yaml)") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"job file {path} is not valid YAML{where}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"job file {path}: expected a mapping with kind, purpose, title, inputs and params")
    return raw


def _validate(path: Path, raw: dict[str, Any], ids: Callable[[int, Mapping[str, Any]], int]) -> JobCreate:
    inputs = raw.get("inputs")
    body = dict(raw)
    if isinstance(inputs, list):
        body["inputs"] = [_input_body(i, inp, ids) if isinstance(inp, dict) else inp for i, inp in enumerate(inputs)]
    try:
        return JobCreate.model_validate(body)
    except ValidationError as exc:
        raise _spec_error(path, exc.errors()[0]) from None


def _input_body(i: int, inp: Mapping[str, Any], ids: Callable[[int, Mapping[str, Any]], int]) -> dict[str, Any]:
    out = {k: v for k, v in inp.items() if k != "dataset"}
    if "dataset_id" not in out:
        out["dataset_id"] = ids(i, inp)
    return out


def load_job_spec(path: Path, datasets: Callable[[], list[DatasetPublic]]) -> JobCreate:
    """Read a job file and resolve its dataset names to catalog ids.

    The file is checked once with placeholder ids before ``datasets`` (the catalog) is asked, so a
    typo is reported without a network call.

    Raises:
        ConfigError: naming the file, the field (e.g. ``inputs.1.dataset``) and the fix.
    """
    raw = _read_yaml(path)
    _validate(path, raw, lambda i, inp: 1)
    catalog = datasets()
    return _validate(path, raw, lambda i, inp: _resolve(path, i, inp, catalog))


def _resolve(path: Path, i: int, inp: Mapping[str, Any], catalog: list[DatasetPublic]) -> int:
    name = inp.get("dataset")
    if not isinstance(name, str):
        raise ConfigError(f"job file {path}: inputs.{i}.dataset: missing; fix: name a dataset of the catalog "
                          f"({', '.join(sorted({d.name for d in catalog})) or 'none registered yet'})")
    party = inp.get("party")
    found = [d for d in catalog if d.name == name and party in (None, d.party)]
    if not found:
        names = sorted({d.name for d in catalog})
        raise ConfigError(f"job file {path}: inputs.{i}.dataset: no dataset named {name!r}"
                          f"{f' of party {party!r}' if party else ''}; {_suggest(name, names)}"
                          f"fix: one of {', '.join(names) or 'none (register-dataset first)'}")
    if len(found) > 1:
        raise ConfigError(f"job file {path}: inputs.{i}.dataset: {name!r} is a dataset of parties "
                          f"{', '.join(d.party for d in found)}; fix: add party: <name> to the input")
    return found[0].id


# ---------------------------------------------------------------- the terms in words


def _dataset_label(ds: DatasetPublic | None, inp: JobInput) -> str:
    if ds is None:
        return f"{inp.party or '?'}/dataset #{inp.dataset_id}"
    return f"{ds.party}/{ds.name}"


def _fields(ds: DatasetPublic | None, names: Iterable[str]) -> str:
    levels = {f.name: f.security_level for f in ds.fields} if ds is not None else {}
    return ", ".join(f"{n} (level {levels[n]})" if n in levels else n for n in names)


def _input_lines(inp: JobInput, ds: DatasetPublic | None) -> list[str]:
    lines = [f"  {_dataset_label(ds, inp)}" + (f" ({ds.row_count:,} rows)" if ds is not None else "")]
    for label, names in (("match keys", inp.key_fields), ("features", inp.feature_fields),
                         ("label", [inp.label_field] if inp.label_field else []),
                         ("outputs", inp.output_fields), ("consent", [inp.consent_field] if inp.consent_field else [])):
        if names:
            lines.append(f"    {label}: {_fields(ds, names)}")
    if inp.filter:
        lines.append(f"    filter: {inp.filter}")
    return lines


def _param_lines(params: JobParams) -> list[str]:
    p = params
    lines = [f"  output: {p.output_mode or 'the kind default'}",
             f"  k (smallest released count): {p.min_cell if p.min_cell is not None else 'policy default'}",
             "  ε: " + (f"{p.epsilon} (noised release, charged to the dataset pair's budget)" if p.epsilon is not None
                        else "none (exact counts, k-suppressed; nothing charged)")]
    if p.match_cap is not None or p.output_mode in ("reveal", "relay"):
        lines.append(f"  match cap: {p.match_cap if p.match_cap is not None else 'none set (reveal mode refuses)'}")
    rest = p.model_dump(exclude_none=True, exclude={"output_mode", "min_cell", "epsilon", "match_cap"})
    lines += [f"  {k}: {v}" for k, v in sorted(rest.items())]
    return lines


def describe_job(job: JobPublic, datasets: Mapping[int, DatasetPublic]) -> list[str]:
    """A job's terms in words: parties, datasets by name, fields with their levels, parameters, who learns what."""
    parties = sorted({i.party for i in job.inputs if i.party})
    lines = [f"job {job.id}, attempt {job.attempt}: {job.title}",
             f"  kind {job.kind}, purpose {job.purpose}, parties {', '.join(parties) or '?'}, "
             f"policy {job.policy_version}, submitted by {job.created_by}",
             "inputs:"]
    for inp in job.inputs:
        lines += _input_lines(inp, datasets.get(inp.dataset_id))
    lines += ["parameters:", *_param_lines(job.params)]
    learns = LEARNS.get((job.kind.value, job.params.output_mode))
    if learns is not None:
        lines += ["what each party learns:", f"  bank: {learns[0]}", f"  telco: {learns[1]}",
                  f"  coordinator: {learns[2]}"]
    signed = {a.approver for a in job.approvals}
    lines.append("approvals: " + (", ".join(f"{a} ({'signed' if a in signed else 'waiting'})"
                                            for a in job.required_approvals) or "none required"))
    return lines


def _decision_lines(decision: Decision) -> list[str]:
    verdict = "ALLOWED" if decision.allowed else "DENIED"
    lines = [f"policy {decision.policy_version}: {verdict}"]
    for r in decision.rules:
        mark = "ok  " if r.allowed else "DENY"
        where = f" [{r.field}]" if r.field else ""
        message = r.message.removeprefix(f"{r.rule_id}: ")
        fix = f" (fix: {r.fix})" if r.fix and not r.allowed else ""
        lines.append(f"  {mark} {r.rule_id}{where}: {message}{fix}")
    if decision.allowed:
        lines.append("needs approval by: " + (", ".join(decision.required_approvals) or "nobody"))
    return lines


# ---------------------------------------------------------------- commands


class _JobCommands:
    def __init__(self, prefix: str, transport: httpx.BaseTransport | None) -> None:
        self.prefix, self.transport = prefix, transport
        self.token: str | None = None
        self.url: str | None = None

    def client(self) -> JobClient:
        access = _Access(_env_prefix=self.prefix)  # type: ignore[call-arg]
        token = self.token or (access.api_token.get_secret_value() if access.api_token else None)
        if not token:
            raise ConfigError(f"no API token: pass --token, or set {ANALYST_TOKEN_ENV} (your own) or "
                              f"{self.prefix}API_TOKEN (the node's)")
        url = self.url or access.coordinator_url
        try:
            check_coordinator_url(url)
        except ValueError as exc:
            raise ConfigError(f"--coordinator-url / {self.prefix}COORDINATOR_URL: {exc}") from None
        verify: bool | str = str(access.coordinator_ca) if access.coordinator_ca else True
        return JobClient(url, token, verify=verify, transport=self.transport, ca_setting=f"{self.prefix}COORDINATOR_CA")

    def names(self, client: JobClient) -> dict[int, DatasetPublic]:
        try:
            return {d.id: d for d in client.datasets()}
        except CoordinatorError as exc:
            if exc.status_code != 403:  # a node's operator token may not list the catalog
                raise
            return {}

    def submit(self, path: Path, dry_run: bool, quiet: bool = False) -> None:
        client = self.client()
        try:
            body = load_job_spec(path, client.datasets)
            if dry_run:
                decision = client.dry_run(body)
                typer.echo("\n".join([f"dry run of {path} (nothing submitted)", *_decision_lines(decision)]))
                raise typer.Exit(0 if decision.allowed else 1)
            job = client.submit(body)
        finally:
            client.close()
        if quiet and job.status != JobStatus.REJECTED:
            typer.echo(job.id)
            return
        typer.echo(f"job {job.id} submitted: {job.status}" + (f" ({job.status_detail})" if job.status_detail else ""))
        if job.status == JobStatus.REJECTED:
            typer.echo("\n".join(_decision_lines(job.decision)))
            raise typer.Exit(1)
        typer.echo(f"next: each of {', '.join(job.required_approvals)} approves it (tandem-<party> approve {job.id}); "
                   f"follow it with: job show {job.id}")

    def list(self) -> None:
        client = self.client()
        try:
            jobs, names = client.jobs(), self.names(client)
        finally:
            client.close()
        if not jobs:
            typer.echo("no jobs visible to this token; submit one with: job submit FILE")
        for job in jobs:
            sets = " + ".join(_dataset_label(names.get(i.dataset_id), i) for i in job.inputs)
            typer.echo(f"{job.id}\t{job.status}\t{job.kind}\t{job.title}\t{sets}")

    def show(self, job_id: int) -> None:
        client = self.client()
        try:
            job, names = client.job(job_id), self.names(client)
        finally:
            client.close()
        progress = f", stage {job.stage} {job.progress:.0%}" if job.status == JobStatus.RUNNING else ""
        lines = [f"status: {job.status}{progress}" + (f" ({job.status_detail})" if job.status_detail else ""),
                 *describe_job(job, names), *_decision_lines(job.decision), f"digest: {job.digest}"]
        typer.echo("\n".join(lines))

    def results(self, job_id: int, wait: float) -> None:
        client = self.client()
        try:
            job = client.job(job_id)
            deadline = time.monotonic() + wait
            while job.status not in FINAL and time.monotonic() < deadline:
                time.sleep(1.0)
                job = client.job(job_id)
        finally:
            client.close()
        if job.status != JobStatus.SUCCEEDED:
            hint = "" if job.status in FINAL else "; results once it has succeeded"
            typer.echo(f"job {job_id} is {job.status}" + (f" ({job.status_detail})" if job.status_detail else "")
                       + hint, err=True)
            raise typer.Exit(1)
        typer.echo("outputs of your own party, desensitised to your role's clearance (compliance reads every "
                   "party's)", err=True)
        typer.echo(yaml.safe_dump(json.loads(json.dumps(job.outputs, default=str)), sort_keys=True,
                                  allow_unicode=True).rstrip())

    def auditor_key(self, out: Path) -> None:
        try:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise ConfigError(f"{out} exists; auditor-key never overwrites a key (fix: choose another --out)") from None
        key = SigningKey.generate()
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(key.seed().hex() + "\n")
        typer.echo(key.public_hex)

    def approve(self, job_id: int, key_file: Path, yes: bool, sign_only: bool = False) -> None:
        key = _load_auditor_key(key_file)
        client = self.client()
        try:
            job, names = client.job(job_id), self.names(client)
            digest = recompute_digest(job)
            typer.echo("\n".join([*describe_job(job, names), f"digest (recomputed here from these terms): {digest}"]))
            if job.digest != digest:
                raise ConfigError(f"the coordinator's digest {job.digest[:16]}… differs from the terms' digest "
                                  f"{digest[:16]}…; do not approve, report it")
            if not yes and not typer.confirm(f"Approve job {job_id} as compliance (auditor)?"):
                raise ConfigError("not approved (answer yes, or pass --yes)")
            signature = key.sign_approval(digest)
            if sign_only:  # the officer pastes it into the approval page (/console/jobs/ID); nothing is posted
                typer.echo(f"signature (paste it into the approval page of job {job_id}): {signature}")
                return
            job = client.approve(job_id, ApprovalCreate(approver="auditor", signature=signature))
        finally:
            client.close()
        typer.echo(f"job {job_id} approved by auditor: {job.status}")

    def cancel(self, job_id: int) -> None:
        client = self.client()
        try:
            job = client.cancel(job_id)
        finally:
            client.close()
        typer.echo(f"job {job_id} {job.status}")

    def retry(self, job_id: int, reason: str) -> None:
        client = self.client()
        try:
            job = client.retry(job_id, reason)
        finally:
            client.close()
        typer.echo(f"job {job_id} retried as attempt {job.attempt}: {job.status}"
                   + (f" ({job.status_detail})" if job.status_detail else ""))
        if job.status == JobStatus.PENDING_APPROVAL:
            typer.echo(f"its terms changed (policy {job.policy_version}); approve it again: approve {job_id}")


def _load_auditor_key(path: Path) -> SigningKey:
    try:
        seed = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--auditor-key {path}: not a key file written by `job auditor-key` ({exc})") from None
    if len(seed) != 32:
        raise ConfigError(f"--auditor-key {path}: holds {len(seed)} bytes, not a 32-byte Ed25519 seed")
    return SigningKey.from_seed(seed)


def add_job_commands(app: typer.Typer, prefix: str, friendly: Callable[[Any], Any],
                     transport: httpx.BaseTransport | None = None) -> None:
    """Add the ``job`` command group to a node's command line.

    Args:
        app: the node's command line.
        prefix: the node's settings prefix (``TANDEM_BANK_``): where the token and URL default from.
        friendly: the node CLI's error wrapper (one line on stderr, exit 2).
        transport: httpx transport to the coordinator (tests).
    """
    cmd = _JobCommands(prefix, transport)
    jobs = typer.Typer(no_args_is_help=True, help=(
        f"Submit and follow jobs. Token: --token, {ANALYST_TOKEN_ENV} or {prefix}API_TOKEN; coordinator: "
        f"--coordinator-url, {ANALYST_URL_ENV} or {prefix}COORDINATOR_URL. Job files: examples/jobs/*.yaml."))
    app.add_typer(jobs, name="job")

    token_option = typer.Option(None, "--token", envvar=ANALYST_TOKEN_ENV, show_envvar=False,
                                help=f"API token, or {ANALYST_TOKEN_ENV}; default {prefix}API_TOKEN (the node's)")
    url_option = typer.Option(None, "--coordinator-url", envvar=ANALYST_URL_ENV, show_envvar=False,
                              help=f"coordinator base URL, or {ANALYST_URL_ENV}; default {prefix}COORDINATOR_URL")

    @jobs.callback()
    def connect(token: str | None = token_option, coordinator_url: str | None = url_option) -> None:
        cmd.token, cmd.url = token, coordinator_url

    @jobs.command("submit")
    @friendly
    def submit(file: Annotated[Path, typer.Argument(help="job YAML (datasets by name); see examples/jobs/")],
               dry_run: Annotated[bool, typer.Option("--dry-run", help=(
                   "print the policy decision (each rule, the fix for a denial) and submit nothing; "
                   "exit 1 if denied"))] = False,
               quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print only the new job's id")] = False,
               ) -> None:
        """Submit a job from a YAML file (exit 1 if the policy rejects it)."""
        cmd.submit(file, dry_run, quiet)

    @jobs.command("list")
    @friendly
    def list_() -> None:
        """List the jobs this token may see: id, status, kind, title, datasets."""
        cmd.list()

    @jobs.command("show")
    @friendly
    def show(job_id: int) -> None:
        """Show a job: status, terms in words, each policy rule, approvals, digest."""
        cmd.show(job_id)

    @jobs.command("results")
    @friendly
    def results(job_id: int, wait: Annotated[float, typer.Option(
            "--wait", min=0, help="seconds to wait for the job to finish")] = 0.0) -> None:
        """Print the results the coordinator holds for a job (exit 1 unless it has succeeded)."""
        cmd.results(job_id, wait)

    @jobs.command("cancel")
    @friendly
    def cancel(job_id: int) -> None:
        """Cancel a job that is not final (its creator or an admin of an involved party)."""
        cmd.cancel(job_id)

    @jobs.command("retry")
    @friendly
    def retry(job_id: int, reason: Annotated[str, typer.Option(
            "--reason", help="why (audited), e.g. the fixed cause")] = "") -> None:
        """Run a failed job again as a new attempt (training resumes from checkpoints)."""
        cmd.retry(job_id, reason)

    @jobs.command("auditor-key")
    @friendly
    def auditor_key(out: Annotated[Path, typer.Option("--out", help="key file to create (mode 0600)")]) -> None:
        """Create a compliance officer's Ed25519 key; prints the public key for user create --signing-key."""
        cmd.auditor_key(out)

    @jobs.command("approve")
    @friendly
    def approve(job_id: int,
                auditor_key: Annotated[Path, typer.Option("--auditor-key", help="the officer's key file")],
                yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
                sign_only: Annotated[bool, typer.Option(
                    "--sign-only", help="print the signature to paste into the approval page; post nothing")] = False,
                ) -> None:
        """Compliance: show a job's terms, recompute its digest and sign it as auditor (token: the auditor's)."""
        cmd.approve(job_id, auditor_key, yes, sign_only)

    epilog = (f"Settings read: the token (--token, {ANALYST_TOKEN_ENV}, else {prefix}API_TOKEN), the coordinator "
              f"(--coordinator-url, {ANALYST_URL_ENV}, else {prefix}COORDINATOR_URL, default "
              f"{DEFAULT_COORDINATOR_URL}) and {prefix}COORDINATOR_CA (CA bundle for an https coordinator).")
    for info in jobs.registered_commands:
        if info.name != "auditor-key":  # writes a local key file, reads no setting
            info.epilog = epilog
