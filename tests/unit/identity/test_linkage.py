"""Linkage files: read as identity.linkage rows, a bad row a problem with its line, a bad file rejected."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmhealth.classify import classify
from mmhealth.errors import InvalidInputError
from mmhealth.identity.linkage import TABLE, read_linkage
from mmhealth.lakehouse.schemas import IDENTITY_LINKAGE, Lineage

LINEAGE = Lineage("incoming/d/linkage.csv", "0123456789abcdef", "run-1", 1_700_000_000_000_000)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "linkage.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_rows_become_identity_linkage_and_bad_rows_problems_with_their_line(tmp_path: Path) -> None:
    text = (
        "\ufeffkind,value,patient_id\r\n"
        "vcf_sample,SYNTH_OC_0001,p1\r\n"
        "dicom_patient_id,,p1\r\n"  # no value
        "\r\n"
        "blood_group,A,p1\r\n"  # unknown kind
        'identifier,"urn:x|1,2",p2\r\n'  # a quoted comma is fine
        "identifier,no-bar,p2\r\n"  # not system|value
    )
    converted = read_linkage(write(tmp_path, text), LINEAGE)
    table = converted.tables[TABLE]
    assert table.schema.equals(IDENTITY_LINKAGE)
    assert table.select(["source", "patient_id", "source_position"]).to_pylist() == [
        {"source": "vcf_sample:SYNTH_OC_0001", "patient_id": "p1", "source_position": 0},
        {"source": "identifier:urn:x|1,2", "patient_id": "p2", "source_position": 4},
    ]
    assert [(p.line, p.reason) for p in converted.problems] == [
        (3, "linkage-row"),
        (5, "linkage-row"),
        (7, "linkage-row"),
    ]
    assert all("p1" not in p.detail and "A" not in p.detail.split()[0] for p in converted.problems)


@pytest.mark.parametrize(
    ("text", "reason"),
    [("", "empty-file"), ("sample,patient\nS1,p1\n", "linkage-header")],
)
def test_a_file_that_is_no_linkage_file_is_rejected_whole(tmp_path: Path, text: str, reason: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        read_linkage(write(tmp_path, text), LINEAGE)
    assert caught.value.reason == reason


def test_a_linkage_file_is_recognised_by_name_or_header() -> None:
    header = b"kind,value,patient_id\nvcf_sample,S1,p1\n"
    assert classify("incoming/d/site-a.linkage.csv", b"x", 1).kind == "linkage"
    assert classify("incoming/d/ids.csv", header, len(header)).kind == "linkage"
    assert classify("incoming/d/other.csv", b"a,b\n1,2\n", 8).kind == "unknown"
