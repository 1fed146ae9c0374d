"""Identity resolution (mmhealth.identity.resolve): each rule links what it should, and breaking it unlinks."""

from __future__ import annotations

import pyarrow as pa
import pytest

from mmhealth.identity.resolve import Identity, clinical_per_person, from_links, resolve

MRN = "http://hospital.example.org/mrn"
PACK = "urn:tietai:synthetic"


def patients(*rows: tuple[str, str | None]) -> pa.Table:
    return pa.table(
        {"resource_id": [r[0] for r in rows], "identifiers": [r[1] for r in rows]},
        schema=pa.schema([("resource_id", pa.string()), ("identifiers", pa.string())]),
    )


def linkage(*rows: tuple[str, str, str]) -> pa.Table:
    return pa.table(
        {"kind": [r[0] for r in rows], "value": [r[1] for r in rows], "patient_id": [r[2] for r in rows]}
    )


def link(identity: Identity, kind: str, value: str) -> tuple[str | None, str]:
    row = next(r for r in identity.rows if (r["source_kind"], r["source_value"]) == (kind, value))
    return row["person_id"], str(row["rule"])


def test_a_posted_patient_whose_identifier_names_an_existing_one_is_that_person() -> None:
    # Given the main Patient (MRN 42) and an id-less POSTed Patient (its id is its fullUrl uuid) that carries
    # the same MRN, as an ifNoneExist conditional create does
    identity = resolve(patients(("main-1", f"{MRN}|42"), ("uuid-posted", f"{MRN}|42 ; {PACK}|main-1")), [])
    # Then both Patients are one person, the smaller id, linked by the shared identifier
    assert link(identity, "patient_id", "uuid-posted") == ("main-1", "shared identifier")
    assert link(identity, "patient_id", "main-1") == ("main-1", "shared identifier")


def test_without_a_shared_identifier_a_linkage_identifier_row_joins_them() -> None:
    # Given a POSTed Patient whose only identifier is the pack's, which the main Patient does not carry
    rows = patients(("main-1", f"{MRN}|42"), ("uuid-posted", f"{PACK}|main-1"))
    apart = resolve(rows, [])
    assert link(apart, "patient_id", "uuid-posted") == ("uuid-posted", "patient resource")  # two persons
    # When the delivery's linkage file names the identifier's patient
    joined = resolve(rows, [], linkage(("identifier", f"{PACK}|main-1", "main-1")))
    # Then they are one person: the Patient the linkage names
    assert link(joined, "patient_id", "uuid-posted") == ("main-1", "linkage file")


def test_identifier_only_and_conditional_references_resolve_to_the_patient_carrying_it() -> None:
    identity = resolve(
        patients(("p1", f"{MRN}|42"), ("p2", f"{MRN}|43")),
        [f"identifier:{MRN}|42", f"identifier:{MRN}|99", "p-gone"],
    )
    assert link(identity, "identifier", f"{MRN}|42") == ("p1", "identifier")
    # What nothing resolves is unlinked, with why
    assert link(identity, "identifier", f"{MRN}|99")[0] is None
    assert link(identity, "patient_id", "p-gone") == (None, "unlinked")
    assert identity.unlinked("identifier") == [f"{MRN}|99"]


def test_an_identifier_two_persons_carry_is_ambiguous_never_guessed() -> None:
    # Given two Patients joined by nothing but both carrying the value "7" under different systems
    identity = resolve(patients(("p1", "sys-a|7"), ("p2", "sys-b|7")), [], dicom_patient_ids=["7"])
    person, rule = link(identity, "dicom_patient_id", "7")
    assert (person, rule) == (None, "unlinked")
    assert "ambiguous" in str(next(r["detail"] for r in identity.rows if r["source_value"] == "7"))


@pytest.mark.parametrize(
    ("linkage_rows", "expected"),
    [
        ((), (None, "unlinked")),
        ((("vcf_sample", "SYNTH_OC_0001", "p1"),), ("p1", "linkage file")),
        ((("vcf_sample", "SYNTH_OC_0001", "not-delivered"),), (None, "unlinked")),
    ],
)
def test_a_vcf_sample_links_through_the_linkage_file(
    linkage_rows: tuple[tuple[str, str, str], ...], expected: tuple[str | None, str]
) -> None:
    identity = resolve(
        patients(("p1", None)), [], linkage(*linkage_rows) if linkage_rows else None, ["SYNTH_OC_0001"]
    )
    assert link(identity, "vcf_sample", "SYNTH_OC_0001") == expected


def test_samples_and_dicom_ids_link_by_patient_id_or_identifier_value() -> None:
    identity = resolve(patients(("p1", f"{MRN}|MRN-1")), [], samples=["p1"], dicom_patient_ids=["MRN-1"])
    assert link(identity, "vcf_sample", "p1") == ("p1", "patient id")
    assert link(identity, "dicom_patient_id", "MRN-1") == ("p1", "identifier value")


def test_clinical_rows_move_to_their_person_and_the_links_table_round_trips() -> None:
    identity = resolve(
        patients(("main-1", f"{MRN}|42"), ("uuid-posted", f"{MRN}|42")), [f"identifier:{MRN}|42", "ghost"]
    )
    tables = {
        "clinical.patient": pa.table(
            {"patient_id": ["main-1", "uuid-posted"], "gender": ["female", "female"]}
        ),
        "clinical.condition": pa.table({"patient_id": ["uuid-posted", f"identifier:{MRN}|42", "ghost"]}),
    }
    per_person = clinical_per_person(tables, from_links(identity.links))
    # One Patient row per person (the person's own), every record under the person; the unresolved kept
    assert per_person["clinical.patient"]["patient_id"].to_pylist() == ["main-1"]
    assert per_person["clinical.condition"]["patient_id"].to_pylist() == ["main-1", "main-1", "ghost"]


def test_a_conditional_create_joins_the_patient_its_if_none_exist_identifier_names() -> None:
    # Given an id-less POSTed Patient that does not carry the MRN itself, only names it in ifNoneExist
    rows = patients(("main-1", f"{MRN}|42"), ("uuid-posted", None))
    conditional = rows.append_column("if_none_exist", pa.array([None, f"{MRN}|42"], pa.string()))
    # Then it is the main Patient's person; without the criterion it would be a person of its own
    assert link(resolve(conditional, []), "patient_id", "uuid-posted") == ("main-1", "ifNoneExist")
    assert link(resolve(rows, []), "patient_id", "uuid-posted") == ("uuid-posted", "patient resource")
