"""Typed client for the coordinator's control-plane API (prefix ``/api/v1``, bearer token).

Every request body that leaves the node is written to the egress ledger first (peer
``"coordinator"``, kind e.g. ``register_dataset``, size, SHA-256). Error responses become
``CoordinatorError`` carrying the coordinator's own message (which names the field to fix);
transport failures become ``CoordinatorUnavailable``. Inject ``transport`` (e.g.
``httpx.MockTransport``) to test without a server.
"""

from __future__ import annotations

from typing import Any, TypeVar

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
from protocols.wire.errors import ProtocolError, RemoteProtocolError

__all__ = ["API_PREFIX", "CoordinatorClient", "CoordinatorError", "CoordinatorUnavailable"]

API_PREFIX = "/api/v1"
_M = TypeVar("_M")


class CoordinatorError(ProtocolError):
    """The coordinator answered with an error; ``str(err)`` is its message (with field and fix if given)."""

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message, status_hint=status_code)
        self.status_code = status_code


class CoordinatorUnavailable(CoordinatorError):
    """The coordinator could not be reached."""


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
            loc = ".".join(str(p) for p in e.get("loc", []) if p != "body")
            parts.append(f"{loc}: {e.get('msg', '')}" if loc else str(e.get("msg", "")))
        return "; ".join(parts)
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

    def __init__(
        self,
        base_url: str,
        token: SecretStr | str,
        ledger: EgressLedger,
        *,
        verify: bool | str = True,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        secret = token.get_secret_value() if isinstance(token, SecretStr) else token
        self._ledger = ledger
        self._http = httpx.Client(
            base_url=base_url.rstrip("/") + API_PREFIX,
            headers={"Authorization": f"Bearer {secret}"},
            verify=verify,
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
            content = canonical_json(body.model_dump(mode="json"))
            headers["Content-Type"] = "application/json"
            self._ledger.record(peer=COORDINATOR_PEER, kind=kind, payload=content, job_id=job_id, ref=path)
        try:
            response = self._http.request(method, path, content=content, headers=headers, params=params)
        except httpx.TransportError as exc:
            raise CoordinatorUnavailable(
                f"cannot reach the coordinator at {self._http.base_url}: {type(exc).__name__}", status_code=503
            ) from exc
        if response.is_error:
            raise CoordinatorError(error_message(response), status_code=response.status_code)
        return response.json() if response.content else None

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
