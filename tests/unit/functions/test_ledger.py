"""The ingest ledger: conditional claims, and take-over of claims whose run never started."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from mmhealth import ledger
from mmhealth.contracts import S3Object

OBJ = S3Object(bucket="landing", key="incoming/d/pt-1.vcf.gz", etag="abc", size=10)


def test_an_object_belongs_to_the_first_run_that_claims_it(aws: SimpleNamespace) -> None:
    assert ledger.claim(aws.ledger, OBJ, "run-a", lambda _: True)
    assert ledger.claim(aws.ledger, OBJ, "run-a", lambda _: True)  # the same run re-claims (a replay)
    assert not ledger.claim(aws.ledger, OBJ, "run-b", lambda _: False)  # too fresh to be stale


def test_a_stale_claim_whose_run_never_started_is_taken_over(
    aws: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    long_ago = time.time() - ledger.STALE_CLAIM_SECONDS - 60
    with monkeypatch.context() as patched:
        patched.setattr(ledger.time, "time", lambda: long_ago)
        assert ledger.claim(aws.ledger, OBJ, "run-crashed", lambda _: False)

    assert not ledger.claim(aws.ledger, OBJ, "run-b", lambda run: run == "run-crashed")  # its run exists
    assert ledger.claim(aws.ledger, OBJ, "run-b", lambda _: False)  # its run never started


def test_release_only_removes_the_runs_own_claims(aws: SimpleNamespace) -> None:
    ledger.claim(aws.ledger, OBJ, "run-a", lambda _: True)
    ledger.release(aws.ledger, [OBJ], "run-other")
    assert not ledger.claim(aws.ledger, OBJ, "run-b", lambda _: True)
    ledger.release(aws.ledger, [OBJ], "run-a")
    assert ledger.claim(aws.ledger, OBJ, "run-b", lambda _: True)
