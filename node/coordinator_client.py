"""Typed client for the coordinator's control-plane API (prefix ``/api/v1``, bearer token).

Every request body that leaves the node is written to the egress ledger first (peer
``"coordinator"``, kind e.g. ``register_dataset``, size, SHA-256). Error responses become
``CoordinatorError`` carrying the coordinator's own message (which names the field to fix);
transport failures become ``CoordinatorUnavailable``. Inject ``transport`` (e.g.
``httpx.MockTransport``) to test without a server.

TLS: every call to an https coordinator goes through ``coordinator_tls_context``: TLS 1.3 minimum,
the certificate verified against the node's ``COORDINATOR_CA`` (or the system store) and the host
name checked. A failed handshake becomes one line naming the setting and the fix
(``describe_transport_error``), e.g. "coordinator certificate does not name <host>; issue it with
--name <host>". ``preflight`` is what a node checks at start, before it creates or serves anything:
that the URL answers as a Tandem coordinator, that its clock and ours agree within ``MAX_CLOCK_SKEW``,
that its audit key is the ``COORDINATOR_KEY`` the node expects (when set), that it knows the token
as this party's, and (``serve``) that its registry lists this node's own certificate.

What the coordinator learns from these checks: that the node called ``/healthz``, ``/users/me``,
``/audit/public-key`` and ``/parties/<party>`` (all GETs, nothing sent to the ledger).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, SecretStr, TypeAdapter, ValidationError

from node.ledger import COORDINATOR_PEER, EgressLedger
from protocols.wire.canonical import canonical_json
from protocols.wire.control import (
    ApprovalCreate,
    DatasetPublic,
    DatasetRegister,
    JobProgress,
    JobPublic,
    JobResultReport,
    JobRetry,
    PartyCreate,
    PartyPublic,
    UserPublic,
)
from protocols.wire.desensitise import Disclosure, ExportReceipt, ExportRecord
from protocols.wire.errors import ConfigError, ProtocolError, RemoteProtocolError

__all__ = ["API_PREFIX", "MIN_TLS_VERSION", "CoordinatorCheck", "CoordinatorClient", "CoordinatorError",
           "CoordinatorUnavailable", "coordinator_tls_context", "describe_transport_error"]

API_PREFIX = "/api/v1"
MIN_TLS_VERSION = ssl.TLSVersion.TLSv1_3
_M = TypeVar("_M")
# OpenSSL X509_V_ERR_* codes of a failed certificate check
_NOT_YET_VALID, _EXPIRED, _HOSTNAME_MISMATCH, _IP_MISMATCH = 9, 10, 62, 64
_UNTRUSTED = frozenset({2, 18, 19, 20, 21})


class CoordinatorError(ProtocolError):
    """The coordinator answered with an error; ``str(err)`` is its message (with field and fix if given)."""

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message, status_hint=status_code)
        self.status_code = status_code


class CoordinatorUnavailable(CoordinatorError):
    """The coordinator could not be reached, or answered 503 (its database restarting): worth retrying."""


def coordinator_tls_context(ca: str | Path | None, *, setting: str = "COORDINATOR_CA") -> ssl.SSLContext:
    """The client context for an https coordinator: TLS 1.3 minimum, certificate and host name verified.

    Args:
        ca: PEM bundle of the CA(s) that sign the coordinator's certificate; None trusts the system store.
        setting: the setting ``ca`` came from, named in errors.

    Raises:
        ConfigError: ``ca`` cannot be read or holds no certificate.
    """
    try:
        context = ssl.create_default_context(cafile=str(ca) if ca is not None else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{setting}: cannot load {ca} as a CA bundle ({getattr(exc, 'strerror', None) or exc}); "
                          "give the coordinator's CA certificate in PEM (ca.crt from tandem-coordinator certs init)"
                          ) from None
    context.minimum_version = MIN_TLS_VERSION
    return context


def _causes(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def describe_transport_error(exc: httpx.TransportError, url: str, *, ca: str | Path | None = None,
                             prefix: str = "") -> str:
    """One line for a failed call to the coordinator at ``url``: what went wrong, the setting and the fix."""
    host = urlsplit(url).hostname or url
    trusted = f"the CA in {prefix}COORDINATOR_CA ({ca})" if ca else f"the system store ({prefix}COORDINATOR_CA unset)"
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            code = cause.verify_code
            if code in (_HOSTNAME_MISMATCH, _IP_MISMATCH):
                return (f"coordinator certificate does not name {host}; issue it with --name {host} "
                        f"(tandem-coordinator certs issue ... --name {host}), or set {prefix}COORDINATOR_URL to a "
                        "name the certificate carries")
            if code == _EXPIRED:
                return (f"the coordinator's certificate at {url} has expired (or this machine's clock is wrong); its "
                        "operator must issue a new one (tandem-coordinator certs issue --force) and restart")
            if code == _NOT_YET_VALID:
                return (f"the coordinator's certificate at {url} is not valid yet: check this machine's clock (NTP), "
                        "or the clock of the machine that issued it")
            if code in _UNTRUSTED:
                return (f"the coordinator's certificate at {url} is not signed by {trusted}; set "
                        f"{prefix}COORDINATOR_CA to the coordinator's CA file (ca.crt), or check "
                        f"{prefix}COORDINATOR_URL points at your coordinator")
            return f"the coordinator's certificate at {url} was refused: {cause.verify_message}"
        if isinstance(cause, ssl.SSLError):
            reason = str(getattr(cause, "reason", "") or cause)
            if "WRONG_VERSION_NUMBER" in reason or "RECORD_LAYER_FAILURE" in reason:
                return (f"{url} does not speak TLS (a plain-http server?); serve the coordinator with "
                        "TANDEM_COORD_TLS_CERT/TANDEM_COORD_TLS_KEY, or use http:// on loopback only")
            if "PROTOCOL_VERSION" in reason or "UNSUPPORTED_PROTOCOL" in reason:
                return (f"the coordinator at {url} does not offer TLS 1.3 (the minimum the node accepts); serve "
                        "it with tandem-coordinator serve and TANDEM_COORD_TLS_CERT, or upgrade its TLS proxy")
            return f"TLS handshake with the coordinator at {url} failed: {reason}"
    return f"cannot reach the coordinator at {url}: {type(exc).__name__} (check {prefix}COORDINATOR_URL)"


@dataclass(frozen=True)
class CoordinatorCheck:
    """What ``CoordinatorClient.preflight`` found: the coordinator's policy version, clock offset and audit key."""

    policy_version: str
    clock_offset_s: float
    audit_key: str


def _join(message: str, field: Any, fix: Any) -> str:
    text = f"{field}: {message}" if field and str(field) not in message else message
    return f"{text} (fix: {fix})" if fix else text


def _from_mapping(d: dict[str, Any]) -> str | None:
    if isinstance(d.get("message"), str):
        return _join(d["message"], d.get("field"), d.get("fix"))
    for key in ("detail", "error"):
        if key in d:
            return _describe(d[key])
    return None


def _describe(detail: Any) -> str | None:
    """Turn FastAPI/coordinator error bodies into one line."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, dict):
        return _from_mapping(detail)
    if isinstance(detail, list) and detail and all(isinstance(e, dict) for e in detail):
        parts = []
        for e in detail[:5]:
            if isinstance(e.get("message"), str):  # the coordinator's own shape: field, message, fix
                parts.append(_join(e["message"], e.get("field"), e.get("fix")))
                continue
            loc = ".".join(str(p) for p in e.get("loc", []) if p != "body")
            parts.append(f"{loc}: {e.get('msg', '')}" if loc else str(e.get("msg", "")))
        return "; ".join(p for p in parts if p) or None
    return None


def error_message(response: httpx.Response) -> str:
    """One-line message from an error response."""
    try:
        text = _describe(response.json())
    except ValueError:
        text = None
    return text or f"HTTP {response.status_code}: {response.text[:200].strip() or response.reason_phrase}"


class CoordinatorClient:
    """The node's control-plane client."""

    def __init__(  # noqa: PLR0913
        self,
        base_url: str,
        token: SecretStr | str,
        ledger: EgressLedger | None,
        *,
        verify: bool | str = True,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        settings_prefix: str = "",
    ) -> None:
        """Bind to ``base_url`` with ``token``.

        Args:
            base_url: the coordinator's base URL (``COORDINATOR_URL``).
            token: this party's API token.
            ledger: the egress ledger every request body is recorded in first; None for a read-only client
                (start-up checks), which refuses to send a body.
            verify: True (system store) or the path of a CA bundle (``COORDINATOR_CA``); either way TLS 1.3
                minimum with the host name checked. False turns verification off: tests only, it lets anyone
                on the path read the token.
            timeout: seconds per request.
            transport: an injected transport (tests).
            settings_prefix: the node's settings prefix (``TANDEM_BANK_``), to name settings in errors.
        """
        secret = token.get_secret_value() if isinstance(token, SecretStr) else token
        self._ledger = ledger
        self._prefix = settings_prefix
        self._ca = verify if isinstance(verify, str) else None
        self._url = base_url.rstrip("/")
        tls: ssl.SSLContext | bool = verify if verify is False else coordinator_tls_context(
            self._ca, setting=f"{settings_prefix}COORDINATOR_CA")
        self._http = httpx.Client(
            base_url=self._url + API_PREFIX,
            headers={"Authorization": f"Bearer {secret}"},
            verify=tls,
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> CoordinatorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ plumbing

    def _request(
        self, method: str, path: str, *, body: BaseModel | None = None, kind: str = "", job_id: int | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        content = None
        headers = {}
        if body is not None:
            if self._ledger is None:
                raise ConfigError("a read-only coordinator client cannot send a body (no egress ledger)")
            content = canonical_json(body.model_dump(mode="json"))
            headers["Content-Type"] = "application/json"
            self._ledger.record(peer=COORDINATOR_PEER, kind=kind, payload=content, job_id=job_id, ref=path)
        response = self._send(method, path, content=content, headers=headers, params=params)
        if response.is_redirect:  # never followed (the token must not go elsewhere), never taken for success
            raise CoordinatorError(
                f"the coordinator at {self._url} answered {response.status_code} with a redirect to "
                f"{response.headers.get('location', '?')}; the node does not follow redirects: set "
                f"{self._prefix}COORDINATOR_URL to the coordinator's own https address", status_code=502)
        if response.status_code == 503:  # e.g. its database restarting: transient, like an unreachable coordinator
            raise CoordinatorUnavailable(error_message(response), status_code=503)
        if response.is_error:
            raise CoordinatorError(error_message(response), status_code=response.status_code)
        return response.json() if response.content else None

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            message = describe_transport_error(exc, self._url, ca=self._ca, prefix=self._prefix)
            raise CoordinatorUnavailable(message, status_code=503) from exc

    @staticmethod
    def _parse(model: type[_M] | Any, data: Any) -> _M:
        try:
            return TypeAdapter(model).validate_python(data)  # type: ignore[no-any-return]
        except ValidationError as exc:
            raise RemoteProtocolError(f"unexpected answer from the coordinator: {exc.errors()[0]['msg']}") from exc

    # ------------------------------------------------------------ API

    def healthz(self) -> dict[str, Any]:
        """``GET /healthz``."""
        return dict(self._request("GET", "/healthz") or {})

    def me(self) -> UserPublic:
        """``GET /users/me``: who the token belongs to."""
        return self._parse(UserPublic, self._request("GET", "/users/me"))

    def upsert_party(self, party: PartyCreate) -> PartyPublic:
        """``POST /parties``: register or update this node's party."""
        return self._parse(PartyPublic, self._request("POST", "/parties", body=party, kind="upsert_party"))

    def parties(self) -> list[PartyPublic]:
        """``GET /parties``."""
        return self._parse(list[PartyPublic], self._request("GET", "/parties"))

    def party(self, name: str) -> PartyPublic:
        """``GET /parties/{name}``."""
        return self._parse(PartyPublic, self._request("GET", f"/parties/{name}"))

    def register_dataset(self, dataset: DatasetRegister) -> DatasetPublic:
        """``POST /datasets``: catalogue a schema with coarse stats (never rows)."""
        return self._parse(DatasetPublic, self._request("POST", "/datasets", body=dataset, kind="register_dataset"))

    def dataset(self, dataset_id: int) -> DatasetPublic:
        """``GET /datasets/{id}``."""
        return self._parse(DatasetPublic, self._request("GET", f"/datasets/{dataset_id}"))

    def job(self, job_id: int) -> JobPublic:
        """``GET /jobs/{id}``."""
        return self._parse(JobPublic, self._request("GET", f"/jobs/{job_id}"))

    def disclosure(self, job_id: int) -> Disclosure:
        """``GET /jobs/{id}/disclosure``: this token's clearance for the job and each field's rule."""
        return self._parse(Disclosure, self._request("GET", f"/jobs/{job_id}/disclosure"))

    def record_export(self, job_id: int, record: ExportRecord) -> ExportReceipt:
        """``POST /jobs/{id}/exports``: have an export of row-level results audited (refused if not granted)."""
        return self._parse(ExportReceipt, self._request("POST", f"/jobs/{job_id}/exports", body=record,
                                                        kind="output_export", job_id=job_id))

    def approve(self, job_id: int, approval: ApprovalCreate) -> None:
        """``POST /jobs/{id}/approvals``."""
        self._request("POST", f"/jobs/{job_id}/approvals", body=approval, kind="approval", job_id=job_id)

    def retry(self, job_id: int, retry: JobRetry) -> JobPublic:
        """``POST /jobs/{id}/retry``: run a failed job again (the coordinator re-checks policy and approvals)."""
        return self._parse(JobPublic, self._request("POST", f"/jobs/{job_id}/retry", body=retry, kind="retry",
                                                    job_id=job_id))

    def node_jobs(self, status: str) -> list[JobPublic]:
        """``GET /nodes/jobs?status=...``: jobs in ``status`` that concern this node's party."""
        return self._parse(list[JobPublic], self._request("GET", "/nodes/jobs", params={"status": status}))

    def report_progress(self, job_id: int, progress: JobProgress) -> None:
        """``POST /jobs/{id}/progress``."""
        self._request("POST", f"/jobs/{job_id}/progress", body=progress, kind="progress", job_id=job_id)

    def report_result(self, job_id: int, result: JobResultReport) -> None:
        """``POST /jobs/{id}/result``."""
        self._request("POST", f"/jobs/{job_id}/result", body=result, kind="result", job_id=job_id)

    def audit_public_key(self) -> dict[str, Any]:
        """``GET /audit/public-key``."""
        data = self._request("GET", "/audit/public-key")
        return data if isinstance(data, dict) else {"public_key": data}

    # ------------------------------------------------------------ start-up checks

    def preflight(self, party: str, *, max_clock_skew: float, expected_key: str | None = None,
                  own_fingerprint: str | None = None,
                  clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> CoordinatorCheck:
        """Check, before the node creates or serves anything, that this is the coordinator it expects.

        Args:
            party: this node's party; the token must belong to one of its users.
            max_clock_skew: largest accepted difference, in seconds, between the coordinator's ``Date``
                header and ``clock`` (signatures, token expiry and certificates all read clocks).
            expected_key: the coordinator's audit public key (hex) the node was given out of band; None
                skips the check.
            own_fingerprint: this node's TLS fingerprint; when given, the coordinator's registry entry of
                ``party`` must carry it (``serve``, after ``init`` registered it).
            clock: this machine's clock (tests inject a skewed one).

        Raises:
            ConfigError: naming the setting and the fix; ``CoordinatorUnavailable`` when unreachable.
        """
        p = self._prefix
        before = clock()
        response = self._send("GET", "/healthz")
        after = clock()
        health = _health(response)
        if health is None:
            raise ConfigError(f"{p}COORDINATOR_URL: {self._url} is not a Tandem coordinator (GET {API_PREFIX}/healthz "
                              f"answered HTTP {response.status_code}); give the coordinator's base URL")
        offset = _clock_offset(response, before + (after - before) / 2)
        if abs(offset) > max_clock_skew:
            raise ConfigError(f"{p}MAX_CLOCK_SKEW: this machine's clock differs from the coordinator's by "
                              f"{abs(offset):.0f} s (more than {max_clock_skew:.0f} s); set the clock right (NTP) on "
                              "whichever machine is wrong, then start again")
        key = str((self._request("GET", "/audit/public-key") or {}).get("public_key", ""))
        if expected_key is not None and key != expected_key.lower():
            raise ConfigError(f"{p}COORDINATOR_KEY: the coordinator at {self._url} has audit key {key[:16]}…, not "
                              f"{expected_key[:16]}… this node expects: {p}COORDINATOR_URL points at another "
                              f"coordinator, or its key changed (then update {p}COORDINATOR_KEY out of band)")
        self._check_token(party)
        if own_fingerprint is not None:
            self._check_registered(party, own_fingerprint)
        return CoordinatorCheck(str(health["policy_version"]), offset, key)

    def _check_token(self, party: str) -> None:
        p = self._prefix
        try:
            me = self.me()
        except CoordinatorError as exc:
            if exc.status_code != 401:
                raise
            raise ConfigError(f"{p}API_TOKEN: the coordinator at {self._url} does not accept this token ({exc}); "
                              f"it was issued by another coordinator (check {p}COORDINATOR_URL) or it expired or was "
                              "revoked (ask for a new one: tandem-coordinator user create)") from None
        if me.party != party:
            raise ConfigError(f"{p}API_TOKEN: the token belongs to {me.name} of party {me.party} at {self._url}, not "
                              f"to party {party}; give this party's admin token, or check {p}PARTY")

    def _check_registered(self, party: str, fingerprint: str) -> None:
        p = self._prefix
        try:
            entry = self.party(party)
        except CoordinatorError as exc:
            if exc.status_code != 404:
                raise
            raise ConfigError(f"{p}COORDINATOR_URL: party {party} is not registered at {self._url}; run init first, "
                              "or check the URL names the coordinator this node registered with") from None
        if entry.tls_fingerprint != fingerprint:
            raise ConfigError(f"{p}COORDINATOR_URL: the coordinator at {self._url} lists party {party} with another "
                              f"TLS certificate ({entry.tls_fingerprint[:16]}…, this node's is {fingerprint[:16]}…): "
                              f"it is not the coordinator this node registered with, or {p}STATE_DIR is another "
                              "node's; check both, or run init to register this node's keys there")


def _health(response: httpx.Response) -> dict[str, Any] | None:
    """The ``/healthz`` body if it is a Tandem coordinator's, else None."""
    if response.status_code != 200:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    ok = isinstance(body, dict) and body.get("status") == "ok" and isinstance(body.get("policy_version"), str)
    return body if ok else None


def _clock_offset(response: httpx.Response, local: datetime) -> float:
    """Seconds the coordinator's ``Date`` header is ahead of ``local`` (0 without a usable header)."""
    try:
        remote = parsedate_to_datetime(response.headers.get("date", ""))
    except (TypeError, ValueError):
        return 0.0
    if remote.tzinfo is None:
        remote = remote.replace(tzinfo=UTC)
    return (remote - local).total_seconds()
