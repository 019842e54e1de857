"""The node checks its own party's approval against its own key and its own digest of the terms."""

from __future__ import annotations

import pytest

from node.approval import ApprovalRefused, recompute_digest, sign_approval, verify_own_approval
from protocols.crypto.signing import SigningKey
from protocols.wire.control import ApprovalPublic, JobInput, JobParams, Purpose
from tests.support.fake_coordinator import NOW, make_job

BANK_KEY = SigningKey.generate()


def _with(job, *approvals):
    entries = [ApprovalPublic(approver=a.approver, signature=a.signature, signer_key="", user="u", created_at=NOW)
               for a in approvals]
    return job.model_copy(update={"approvals": entries})


def test_genuine_approval_is_accepted():
    job = make_job(1)
    signed = _with(job, sign_approval(job, BANK_KEY, "bank"))
    verify_own_approval(signed, "bank", BANK_KEY.public_hex)


def test_missing_approval_is_refused():
    with pytest.raises(ApprovalRefused, match="refused: approval signature for party:bank does not verify"):
        verify_own_approval(make_job(1), "bank", BANK_KEY.public_hex)


def test_signature_by_another_key_is_refused():
    job = make_job(1)
    forged = _with(job, sign_approval(job, SigningKey.generate(), "bank"))
    with pytest.raises(ApprovalRefused):
        verify_own_approval(forged, "bank", BANK_KEY.public_hex)


def test_signature_over_a_different_digest_is_refused():
    job = make_job(1)
    other = sign_approval(make_job(2), BANK_KEY, "bank")
    with pytest.raises(ApprovalRefused):
        verify_own_approval(_with(job, other), "bank", BANK_KEY.public_hex)


@pytest.mark.parametrize(
    "change",
    [
        {"purpose": Purpose.RECOVERY},
        {"title": "something else"},
        {"inputs": [JobInput(dataset_id=1, key_fields=["mobile"], output_fields=["name"]),
                    JobInput(dataset_id=2, key_fields=["msisdn"])]},
        {"params": JobParams(output_mode="reveal", match_cap=1_000_000)},
        {"policy_version": "v0"},
    ],
)
def test_terms_altered_after_signing_are_refused(change):
    job = make_job(1)
    signed = _with(job, sign_approval(job, BANK_KEY, "bank"))
    altered = signed.model_copy(update=change)  # the coordinator keeps the old digest field
    assert altered.digest == job.digest
    with pytest.raises(ApprovalRefused):
        verify_own_approval(altered, "bank", BANK_KEY.public_hex)


def test_another_partys_approval_does_not_count():
    job = make_job(1)
    telco_sig = sign_approval(job, BANK_KEY, "telco")  # right key, wrong approver name
    with pytest.raises(ApprovalRefused):
        verify_own_approval(_with(job, telco_sig), "bank", BANK_KEY.public_hex)


def test_digest_is_recomputed_not_trusted():
    job = make_job(1)
    lying = job.model_copy(update={"digest": "00" * 32})
    assert recompute_digest(lying) == job.digest
    verify_own_approval(_with(lying, sign_approval(lying, BANK_KEY, "bank")), "bank", BANK_KEY.public_hex)


def test_garbage_signature_is_refused():
    job = make_job(1)
    bad = ApprovalPublic(approver="party:bank", signature="zz" * 64, signer_key="", user="u", created_at=NOW)
    with pytest.raises(ApprovalRefused):
        verify_own_approval(job.model_copy(update={"approvals": [bad]}), "bank", BANK_KEY.public_hex)
