"""Test helpers of the coordinator tests: sample wire objects and a populated API 'world'."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from typing import Any

with warnings.catch_warnings():
    # starlette 1.3 warns that TestClient over httpx is deprecated (UserWarning subclass; pytest makes it an
    # error). httpx2 is not installed; the warning says nothing about our code.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from coordinator.settings import Settings
from coordinator.store import SqlStore, init_schema, make_engine
from protocols.crypto.signing import SigningKey, job_digest
from protocols.wire.control import DatasetRegister, FieldSpec, JobCreate, JobInput, PartyCreate, job_terms

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
BOOT = "bootstrap-test-token-0123456789abcdef"
API = "/api/v1"


def party_create(name: str, kind: str = "bank", key: SigningKey | None = None) -> PartyCreate:
    signing = (key or SigningKey.generate()).public_hex
    return PartyCreate(name=name, kind=kind, signing_key=signing, sealing_key="b" * 64,
                       tls_fingerprint="c" * 64, node_url=f"https://{name}.example:8443")


def dataset_register(name: str = "customers", rows: int = 1000) -> DatasetRegister:
    return DatasetRegister(name=name, row_count=rows, fields=[
        FieldSpec(name="mobile", type="string", category="identifier", security_level=3, key_type="mobile",
                  purposes=["marketing", "recovery", "risk"]),
        FieldSpec(name="age", type="integer", category="feature", security_level=2,
                  purposes=["marketing", "risk", "propensity"]),
    ])


def job_create(*dataset_ids: int, kind: str = "audience_overlap", purpose: str = "marketing") -> JobCreate:
    return JobCreate(kind=kind, purpose=purpose, title="overlap",
                     inputs=[JobInput(dataset_id=d, key_fields=["mobile"]) for d in dataset_ids],
                     params={"output_mode": "count"})


def field(name: str, category: str = "identifier", level: int = 3, key_type: str | None = "mobile") -> dict[str, Any]:
    return {"name": name, "type": "string", "category": category, "security_level": level,
            "key_type": key_type, "purposes": ["marketing", "app_promotion"]}


class World:
    """Two registered parties (bank, telco), one user per role, one dataset each, over a TestClient."""

    USERS = {
        "bank_admin": ("admin", "bank"), "bank_analyst": ("analyst", "bank"),
        "telco_admin": ("admin", "telco"), "telco_op": ("operator", "telco"), "auditor": ("auditor", None),
    }

    def __init__(self, client: TestClient) -> None:
        self.c = client
        self.keys = {"bank": SigningKey.generate(), "telco": SigningKey.generate()}
        self.auditor_key = SigningKey.generate()
        self.tokens: dict[str, str] = {"bootstrap": BOOT}
        self.datasets: dict[str, int] = {}

    def h(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def add_user(self, name: str, role: str, party: str | None) -> str:
        body: dict[str, Any] = {"name": name, "role": role, "party": party}
        if role == "auditor":
            body["signing_key"] = self.auditor_key.public_hex
        r = self.c.post(f"{API}/users", json=body, headers=self.h("bootstrap"))
        assert r.status_code == 201, r.text
        self.tokens[name] = r.json()["token"]
        return self.tokens[name]

    def populate(self) -> World:
        for name, (role, party) in self.USERS.items():
            self.add_user(name, role, party)
        for party, kind in (("bank", "bank"), ("telco", "telco")):
            body = party_create(party, kind, self.keys[party]).model_dump(mode="json")
            assert self.c.post(f"{API}/parties", json=body, headers=self.h(f"{party}_admin")).status_code == 200
        self.register("bank", "customers", [field("mobile"), field("id_number", level=4, key_type="id_number"),
                                             field("age", "feature", 2, None)])
        self.register("telco", "subscribers", [field("msisdn"), field("arpu", "feature", 2, None)])
        return self

    def register(self, party: str, name: str, fields: list[dict[str, Any]]) -> dict[str, Any]:
        body = {"name": name, "row_count": 5000, "fields": fields}
        r = self.c.post(f"{API}/datasets", json=body, headers=self.h(f"{party}_admin"))
        assert r.status_code == 200, r.text
        self.datasets[party] = r.json()["id"]
        return r.json()

    def job_body(self, purpose: str = "marketing", bank_key: str = "mobile", telco_key: str = "msisdn") -> dict:
        return {"kind": "audience_overlap", "purpose": purpose, "title": "overlap of customers and subscribers",
                "inputs": [{"dataset_id": self.datasets["bank"], "key_fields": [bank_key]},
                           {"dataset_id": self.datasets["telco"], "key_fields": [telco_key]}],
                "params": {"output_mode": "count"}}

    def submit(self, who: str = "bank_analyst", **kw: str) -> dict[str, Any]:
        r = self.c.post(f"{API}/jobs", json=self.job_body(**kw), headers=self.h(who))
        assert r.status_code == 201, r.text
        return r.json()

    def approve(self, job: dict[str, Any], approver: str, who: str, key: SigningKey | None = None) -> Any:
        if key is None:
            key = self.auditor_key if approver == "auditor" else self.keys[approver.removeprefix("party:")]
        body = {"approver": approver, "signature": key.sign_approval(job["digest"])}
        return self.c.post(f"{API}/jobs/{job['id']}/approvals", json=body, headers=self.h(who))

    def approved_job(self) -> dict[str, Any]:
        job = self.submit()
        self.approve(job, "party:bank", "bank_admin")
        r = self.approve(job, "party:telco", "telco_admin")
        assert r.json()["status"] == "approved", r.text
        return r.json()

    def events(self, who: str = "auditor") -> list[dict[str, Any]]:
        return self.c.get(f"{API}/audit/events", params={"limit": 1000}, headers=self.h(who)).json()


def expected_digest(job: dict[str, Any]) -> str:
    from protocols.wire.control import JobParams

    terms = job_terms(job["id"], job["kind"], job["purpose"], job["title"],
                      [JobInput.model_validate(i) for i in job["inputs"]], JobParams.model_validate(job["params"]),
                      job["policy_version"], attempt=job.get("attempt", 1))
    return job_digest(terms)


def pg_store(schema: str) -> SqlStore:
    engine = make_engine(PG_URL, schema=schema)
    init_schema(engine)
    return SqlStore(engine)


def app_settings(tmp_path, **overrides: Any) -> Settings:
    values = {"database_url": "sqlite://", "signing_key_path": tmp_path / "coordinator.key", "bootstrap_token": BOOT}
    return Settings(**{**values, **overrides})
