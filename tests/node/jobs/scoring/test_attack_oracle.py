"""Issue 9, attack 8: scoring as a membership oracle, performed against real nodes and the real API server.

A rogue bank asks the telco's ``score`` call (real mutual TLS) about far more pseudonyms than real-time
scoring needs, or keeps asking all day; a client of the bank's scoring API (real uvicorn on loopback)
guesses API keys or sends a huge body. Each test performs the attack and asserts the defence.
"""

from __future__ import annotations

import datetime as dt
import os
import socket

import httpx
import pytest
from pydantic import SecretStr

from node.jobs.scoring import DailyUsage, ScoringLimits, derive_pseudonym_key, load_limits
from node.jobs.scoring.api import ScoringApiServer, build_scoring_api, telco_scoring
from node.jobs.scoring.jobs import ROWS_CHANNEL, BatchPatience, TelcoBatchScoring
from node.peer import PeerError
from protocols.wire.errors import ConfigError
from protocols.wire.scoring import ScoreReply, ScoreRequest
from tests.support.world import ScoringWorld

API_KEY = "a-long-test-api-key-0123"
OTHER_CLIENT = "127.0.0.2"


class Clock:
    """A clock the test moves by hand (no test depends on real time passing)."""

    def __init__(self, start: float | dt.datetime) -> None:
        self.now = start

    def __call__(self):  # noqa: ANN204 - float for the guard, datetime for the quota
        return self.now


@pytest.fixture
def world(tmp_path, pop, trained_lr):
    w = ScoringWorld(tmp_path, pop, trained_lr)
    yield w
    w.telco_scoring.close()
    w.close()


def pseudonyms_of_subscribers(world, pop) -> list[bytes]:
    """What a bank can compute for any identifier it holds: the keyed pseudonym (here, of every subscriber)."""
    bank = world.runtimes["bank"]
    key = derive_pseudonym_key(bank.keys.sealing, world.runtimes["telco"].keys.sealing_public_hex, "m7")
    return [key.pseudonym(i) for i in pop.telco["id_number"]]


def ask(world, pseudonyms: list[bytes]) -> ScoreReply:
    """The rogue bank's ``score`` call over the real mutual-TLS data plane."""
    body = ScoreRequest(model_id="m7", pseudonyms=b"".join(pseudonyms)).model_dump_json().encode()
    raw = world.bank_scoring.caller("telco").call("score", body, kind="score_request")
    return ScoreReply.model_validate_json(raw)


def restart_telco(world, limits: ScoringLimits, clock: Clock) -> None:
    """Stop the telco node (server, runtime, scoring service) and start it again on the same state directory."""
    world.bank_scoring.close()  # drop the bank's kept-alive connection (and its caller of the old port)
    world.telco_scoring.close()
    node = world.nodes["telco"]
    node.server.stop()
    node.runtime.close()
    world._start("telco", 0.1)  # same state_dir: same keys and node.db, a new port in the registry
    for n in world.nodes.values():
        n.runtime.refresh_pins()
    world.telco_scoring = telco_scoring(world.runtimes["telco"], limits, clock=clock)


# --- the telco's row caps ------------------------------------------------------------------------


def test_a_call_over_the_per_call_cap_is_refused_at_the_telco_and_answers_nothing(world, pop) -> None:
    subscribers = pseudonyms_of_subscribers(world, pop)
    probe = subscribers + [os.urandom(16) for _ in range(10_001 - len(subscribers))]
    before = len(world.sent["telco"])

    with pytest.raises(PeerError) as refused:
        ask(world, probe)

    assert refused.value.http_status == 429
    assert "10001 rows exceed the telco's per-call cap of 10000 rows (TANDEM_SCORING_ROWS_PER_CALL)" in str(
        refused.value)
    telco_sent = world.sent["telco"][before:]
    assert len(telco_sent) == 1 and b"score_reply" not in telco_sent[0] and b"known" not in telco_sent[0]
    assert world.telco_scoring.quota.usage("m7") == DailyUsage(refused_calls=1, refused_rows=10_001)
    at_cap = ask(world, probe[:10_000])
    assert at_cap.n_rows == 10_000
    assert world.telco_scoring.quota.usage("m7") == DailyUsage(calls=1, rows=10_000, refused_calls=1,
                                                               refused_rows=10_001)
    print(f"\nper-call cap: 10001 pseudonyms -> HTTP {refused.value.http_status}, telco sent "
          f"{len(telco_sent)} body (the error); 10000 pseudonyms -> answered")


def test_the_daily_cap_refuses_past_the_limit_and_survives_a_telco_restart(world, pop) -> None:
    clock = Clock(dt.datetime(2026, 12, 5, 10, 30, tzinfo=dt.UTC))
    limits = ScoringLimits(rows_per_call=100, rows_per_day=250)
    world.telco_scoring.close()
    world.telco_scoring = telco_scoring(world.runtimes["telco"], limits, clock=clock)
    probe = pseudonyms_of_subscribers(world, pop)[:100]

    answered = [ask(world, probe).n_rows, ask(world, probe).n_rows]
    with pytest.raises(PeerError) as over:
        ask(world, probe)
    answered.append(ask(world, probe[:50]).n_rows)  # exactly up to the cap is fine
    with pytest.raises(PeerError) as full:
        ask(world, probe[:1])

    assert answered == [100, 100, 50]
    assert over.value.http_status == full.value.http_status == 429
    assert ("model m7 has used 200 of its daily cap of 250 rows (TANDEM_SCORING_ROWS_PER_DAY) and this call "
            "asks for 100 more; the cap resets at 2026-12-06T00:00:00Z") in str(over.value)
    assert "has used 250 of its daily cap of 250 rows" in str(full.value)

    restart_telco(world, limits, clock)
    with pytest.raises(PeerError) as after_restart:
        ask(world, probe[:1])
    assert after_restart.value.http_status == 429 and "has used 250 of its daily cap" in str(after_restart.value)

    server = ScoringApiServer(build_scoring_api(world.bank_scoring, SecretStr(API_KEY)), "127.0.0.1", 0)
    server.start()
    try:
        customer = pop.aligned_bank["customer_id"].iloc[0]
        with httpx.Client(trust_env=False, headers={"Authorization": f"Bearer {API_KEY}"}) as http:
            via_api = http.post(f"http://127.0.0.1:{server.port}/score/v1/m7", json={"customer_id": customer})
    finally:
        server.stop()
    assert via_api.status_code == 429 and "resets at 2026-12-06T00:00:00Z" in via_api.json()["detail"]

    clock.now = dt.datetime(2026, 12, 6, 0, 0, 1, tzinfo=dt.UTC)
    assert ask(world, probe).n_rows == 100
    day1 = world.telco_scoring.quota.usage("m7", dt.date(2026, 12, 5))
    assert day1 == DailyUsage(calls=3, rows=250, refused_calls=4, refused_rows=103)
    print(f"\ndaily cap 250: answered {answered}, then HTTP 429; after a telco restart still 429 "
          f"(used {day1.rows}); bank API -> {via_api.status_code}; next UTC day -> answered 100")


def test_a_batch_job_answers_no_more_rows_than_the_banks_dataset_has(world, pop) -> None:
    probe = (pseudonyms_of_subscribers(world, pop) + [os.urandom(16) for _ in range(200)])[:200]  # bank has 160

    def rogue_bank(ctx) -> dict:  # noqa: ANN001 - the bank's job handler, replaced by the attacker's
        answered, refused = 0, None
        for seq in range(2):
            body = ScoreRequest(model_id="m7", pseudonyms=b"".join(probe[seq * 100:(seq + 1) * 100]))
            try:
                reply = ctx.peer("telco").exchange(ctx.job.id, ROWS_CHANNEL, seq, body.model_dump_json().encode())
            except PeerError as exc:
                refused = exc.http_status
                break
            answered += ScoreReply.model_validate_json(reply).n_rows
        return {"answered": answered, "refused": refused}

    world.submit_score(30)
    telco = TelcoBatchScoring(patience=BatchPatience(start=20.0, idle=10.0))
    outcomes = world.run({"bank": {"score": rogue_bank}, "telco": telco.handlers()})

    assert world.coordinator.results[30]["bank"].outputs == {"answered": 100, "refused": 429}
    assert outcomes["telco"][0].state == "failed"
    assert ("the bank asked about 200 rows, more than the 160 rows its input dataset has in the catalog"
            in outcomes["telco"][0].detail)
    print(f"\nbatch job over a 160-row dataset: 100 rows answered, the next 100 -> HTTP 429; telco job "
          f"{outcomes['telco'][0].state}")


# --- the bank's scoring API ----------------------------------------------------------------------


@pytest.fixture
def api(world):
    clock = Clock(1000.0)
    limits = ScoringLimits(api_requests_per_minute=1_000)
    server = ScoringApiServer(build_scoring_api(world.bank_scoring, SecretStr(API_KEY), limits, clock=clock),
                              "127.0.0.1", 0)
    server.start()
    yield server, clock
    server.stop()


def client(source: str = "127.0.0.1") -> httpx.Client:
    return httpx.Client(trust_env=False, transport=httpx.HTTPTransport(local_address=source))


def test_wrong_api_keys_lock_the_client_address_out(api, pop) -> None:
    api, clock = api
    url = f"http://127.0.0.1:{api.port}/score/v1/m7"
    customer = {"customer_id": pop.aligned_bank["customer_id"].iloc[0]}
    good = {"Authorization": f"Bearer {API_KEY}"}
    with client() as attacker, client(OTHER_CLIENT) as other:
        guesses = [attacker.post(url, json=customer, headers={"Authorization": f"Bearer guess-{i:04d}"})
                   for i in range(300)]
        right_key_while_locked = attacker.post(url, json=customer, headers=good)
        other_client = other.post(url, json=customer, headers=good)
        clock.now += 301.0
        after_lockout = attacker.post(url, json=customer, headers=good)

    statuses = [r.status_code for r in guesses]
    assert statuses[:10] == [401] * 10 and statuses[10:] == [429] * 290
    assert 1 <= int(guesses[-1].headers["Retry-After"]) <= 300
    assert "locked out" in guesses[-1].json()["detail"]
    assert right_key_while_locked.status_code == 429 and "Retry-After" in right_key_while_locked.headers
    assert other_client.status_code == 200 and other_client.json()["outcome"] == "scored"
    assert after_lockout.status_code == 200
    print(f"\n300 wrong keys: {statuses.count(401)} x 401 then {statuses.count(429)} x 429 "
          f"(Retry-After {guesses[-1].headers['Retry-After']} s); right key from the locked address -> "
          f"{right_key_while_locked.status_code}; other address -> {other_client.status_code}")


def test_requests_over_the_rate_limit_get_429_per_client(world, pop) -> None:
    clock = Clock(1000.0)
    limits = ScoringLimits(api_requests_per_minute=5)
    server = ScoringApiServer(build_scoring_api(world.bank_scoring, SecretStr(API_KEY), limits, clock=clock),
                              "127.0.0.1", 0)
    server.start()
    url = f"http://127.0.0.1:{server.port}/score/v1/m7"
    body = {"customer_id": pop.aligned_bank["customer_id"].iloc[0]}
    good = {"Authorization": f"Bearer {API_KEY}"}
    try:
        with client() as busy, client(OTHER_CLIENT) as other:
            burst = [busy.post(url, json=body, headers=good) for _ in range(7)]
            from_other = other.post(url, json=body, headers=good)
            clock.now += 60.0
            next_minute = busy.post(url, json=body, headers=good)
    finally:
        server.stop()
    assert [r.status_code for r in burst] == [200] * 5 + [429] * 2
    assert burst[-1].headers["Retry-After"] == "60" and "5 requests per minute" in burst[-1].json()["detail"]
    assert from_other.status_code == 200 and next_minute.status_code == 200


def raw_post(port: int, head: bytes, body: bytes = b"") -> bytes:
    """Send ``head`` (request line and headers) and ``body`` on a raw socket; return what the server answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + body)
        return sock.recv(65536)


def test_a_huge_body_is_refused_before_it_is_read(api) -> None:
    api, _ = api
    head = (b"POST /score/v1/m7 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + API_KEY.encode() + b"\r\n")

    declared = raw_post(api.port, head + b"Content-Length: 10485760\r\n\r\n", b'{"customer_id": "')
    wrong_key = raw_post(api.port, head.replace(API_KEY.encode(), b"guess") + b"Content-Length: 10485760\r\n\r\n")
    chunk = b"%x\r\n" % 65536 + b"x" * 65536 + b"\r\n"
    chunked = raw_post(api.port, head + b"Transfer-Encoding: chunked\r\n\r\n", chunk * 17)

    # 10 MB declared, 17 bytes sent: the answer came without the server waiting for (or reading) the rest;
    # the chunked body is cut off after 1 MiB + 64 KiB, its end never sent.
    for answer in (declared, chunked):
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"request body larger than 1048576 bytes (TANDEM_SCORING_API_MAX_BODY_BYTES)" in answer
    assert wrong_key.startswith(b"HTTP/1.1 401")  # the key is checked before any byte of the body is read
    first_lines = [answer.split(b"\r\n")[0].decode() for answer in (declared, chunked)]
    print(f"\n10 MB Content-Length, 17 bytes sent -> {first_lines[0]}; chunked 1.06 MiB without an end -> "
          f"{first_lines[1]}")


def test_malformed_limits_name_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("TANDEM_SCORING_ROWS_PER_CALL", "lots")
    with pytest.raises(ConfigError, match="setting TANDEM_SCORING_ROWS_PER_CALL: Input should be a valid integer"):
        load_limits()
    monkeypatch.setenv("TANDEM_SCORING_ROWS_PER_CALL", "500")
    monkeypatch.setenv("TANDEM_SCORING_ROWS_PER_DAY", "100")
    with pytest.raises(ConfigError, match="TANDEM_SCORING_ROWS_PER_CALL must not exceed TANDEM_SCORING_ROWS_PER_DAY"):
        load_limits()
