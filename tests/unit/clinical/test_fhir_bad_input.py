"""Bad input: a bad line or Bundle entry is a LineProblem with its reason and line while the rest of the file
is flattened; a file that cannot be read at all raises InvalidInputError. Files are real, in tmp_path.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from mmhealth.clinical import fhir
from mmhealth.clinical.fhir import FlattenResult, LineProblem, flatten_fhir
from mmhealth.errors import InvalidInputError
from tests.unit.clinical.fhir_files import (
    LINEAGE,
    PERSONAL_STRINGS,
    bundle,
    condition,
    encounter,
    ndjson,
    observation,
    patient,
    pretty,
    write,
)


def flattened(path: Path, **options: Any) -> FlattenResult:
    return flatten_fhir(path, **LINEAGE, **options)


def rejected(path: Path) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as caught:
        flattened(path)
    return caught.value


def rows(result: FlattenResult) -> dict[str, int]:
    return {name: table.num_rows for name, table in result.tables.items()}


def only_problem(result: FlattenResult) -> LineProblem:
    assert len(result.problems) == 1, result.problems
    return result.problems[0]


def between_good_lines(
    tmp_path: Path, bad: str | bytes | dict[str, Any], compress: bool = False
) -> FlattenResult:
    """Given a bad line 3 between good ones (line 2 blank), when flattened, then the good ones all give rows."""
    data = ndjson([patient(), "", bad, observation(), condition()])
    result = flattened(write(tmp_path / "mixed.ndjson", data, compress=compress))
    assert rows(result) == {"clinical.condition": 1, "clinical.observation": 1, "clinical.patient": 1}
    return result


# ------------------------------------------------------------------------------------------- lines

BAD_LINES: dict[str, tuple[str | bytes | dict[str, Any], str]] = {
    "invalid-json": ('{"resourceType": "Observation", "id": "o9", ', "invalid-json"),
    "json-nan": ('{"resourceType":"Observation","id":"o9","valueQuantity":{"value":NaN}}', "invalid-json"),
    "json-array": ("[1, 2]", "invalid-resource"),
    "not-utf8": (b'{"resourceType":"Patient","id":"p9","gender":"\xff\xfemale"}', "not-utf8"),
    "latin1-text": (b'{"resourceType":"Patient","id":"p9","gender":"m\xe4le"}', "not-utf8"),
    "no-resource-type": ({"id": "x1", "status": "final"}, "missing-resource-type"),
    "unknown-type": ({"resourceType": "Patinet", "id": "x1"}, "unknown-resource-type"),
    "r5-only-type": ({"resourceType": "SubscriptionTopic", "id": "x1"}, "unknown-resource-type"),
    "abstract-type": ({"resourceType": "DomainResource", "id": "x1"}, "unknown-resource-type"),
    "type-not-string": ({"resourceType": {"a": 1}, "id": "x1"}, "unknown-resource-type"),
    "no-id": ({k: v for k, v in observation().items() if k != "id"}, "missing-id"),
    "id-bad-chars": (observation("a b/c"), "invalid-resource"),
    "id-too-long": (observation("x" * 65), "invalid-resource"),
    "no-subject": (observation("o9", subject=None), "missing-reference"),
    "subject-is-group": (observation("o9", subject="Group/g1"), "missing-reference"),
    "subject-contained": (observation("o9", subject="#p1"), "missing-reference"),
    "subject-identifier-only": (
        {**observation("o9", subject=None), "subject": {"identifier": {"value": "MRN-1"}}},
        "missing-reference",
    ),
    "condition-no-subject": (condition("c9", subject=None), "missing-reference"),
    "code-is-string": ({**observation("o9"), "code": "8867-4"}, "invalid-resource"),
    "coding-not-array": ({**observation("o9"), "code": {"coding": {"code": "x"}}}, "invalid-resource"),
    "impossible-date": ({**observation("o9"), "effectiveDateTime": "2019-13-45"}, "invalid-resource"),
    "not-a-date": ({**observation("o9"), "effectiveDateTime": "yesterday"}, "invalid-resource"),
    "value-not-number": ({**observation("o9"), "valueQuantity": {"value": "72"}}, "invalid-resource"),
    "reference-not-string": ({**observation("o9"), "subject": {"reference": 5}}, "invalid-resource"),
}


@pytest.mark.parametrize("case", list(BAD_LINES))
def test_a_bad_line_is_a_problem_with_its_reason_and_line_and_the_rest_is_flattened(
    tmp_path: Path, case: str
) -> None:
    bad, reason = BAD_LINES[case]
    result = between_good_lines(tmp_path, bad)
    problem = only_problem(result)
    assert (problem.reason, problem.line, problem.entry) == (reason, 3, None)
    assert result.problem_counts == {reason: 1}


NOT_UTF8_NAME = b'{"resourceType":"Patient","id":"p9","name":[{"family":"Peterqq\xff"}]}'


def test_problem_details_name_the_element_and_never_quote_values(tmp_path: Path) -> None:
    # Given lines whose bad values are personal strings
    bad = [
        {**observation("o1"), "effectiveDateTime": "Peterqq"},
        {**observation("o2"), "code": "Chalmerszz"},
        {"resourceType": "Chalmerszz", "id": "x"},
        NOT_UTF8_NAME,
        '{"resourceType":"Patient","id":"p9","name":[{"family":"Chalmerszz"}]',
    ]
    # When flattened
    result = flattened(write(tmp_path / "f.ndjson", ndjson(bad)))
    # Then each problem names where it is, and no personal string is repeated
    details = [p.detail for p in result.problems]
    assert [p.reason for p in result.problems] == [
        "invalid-resource",
        "invalid-resource",
        "unknown-resource-type",
        "not-utf8",
        "invalid-json",
    ]
    assert (
        details[0]
        == "Observation.effectiveDateTime: not a FHIR dateTime (YYYY, YYYY-MM, YYYY-MM-DD or with a time)"
    )
    assert details[1] == "Observation.code: expected an object, got a string"
    position = NOT_UTF8_NAME.index(b"\xff") + 1
    assert details[3] == f"byte {position} of the line is not valid UTF-8"
    for problem in result.problems:
        assert not any(s in problem.detail for s in ("Peterqq", "Chalmerszz")), problem


def test_a_line_over_16_mib_is_too_long_while_a_bundle_line_may_be_larger(tmp_path: Path) -> None:
    # Given a 17 MiB Observation line, then a 17 MiB Bundle line holding a Patient
    huge = "x" * (17 << 20)
    big_bundle = bundle([patient("pt-2", text={"status": "generated", "div": f"<div>{huge}</div>"})])
    data = ndjson([patient(), {**observation(), "valueString": huge}, big_bundle, condition()])
    # When flattened
    result = flattened(write(tmp_path / "huge.ndjson", data))
    # Then the Observation line alone is rejected, naming its line and identity
    problem = only_problem(result)
    assert (problem.reason, problem.line) == ("line-too-long", 2)
    assert (problem.resource_type, problem.resource_id) == ("Observation", "obs-1")
    assert rows(result) == {"clinical.condition": 1, "clinical.patient": 2}


def test_a_line_over_the_bundle_cap_is_skipped_without_being_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a cap of 4 KiB per line (the real one is 256 MiB) and a line of 40 KiB between good lines
    monkeypatch.setattr(fhir, "MAX_BUNDLE_BYTES", 4096)
    monkeypatch.setattr(fhir, "MAX_RESOURCE_BYTES", 2048)
    data = ndjson([patient(), {**observation(), "valueString": "y" * 40_000}, observation("obs-2")])
    # When flattened
    result = flattened(write(tmp_path / "f.ndjson", data))
    # Then that line is too long and the lines around it are kept
    assert (only_problem(result).reason, only_problem(result).line) == ("line-too-long", 2)
    assert rows(result) == {"clinical.observation": 1, "clinical.patient": 1}


def test_a_bad_first_line_does_not_hide_the_ndjson_behind_it(tmp_path: Path) -> None:
    result = flattened(write(tmp_path / "f.ndjson", ndjson(["not json at all", patient(), observation()])))
    assert (only_problem(result).reason, only_problem(result).line) == ("invalid-json", 1)
    assert rows(result) == {"clinical.observation": 1, "clinical.patient": 1}


def test_a_byte_order_mark_and_crlf_line_endings_are_accepted(tmp_path: Path) -> None:
    data = b"\xef\xbb\xbf" + ndjson([patient(), observation()]).replace(b"\n", b"\r\n")
    result = flattened(write(tmp_path / "f.ndjson", data))
    assert rows(result) == {"clinical.observation": 1, "clinical.patient": 1}
    assert result.problems == []


# ------------------------------------------------------------------------------------------- gzip


def test_gzip_ndjson_is_read_like_plain_ndjson(tmp_path: Path) -> None:
    # Given the same bad line between good ones, compressed (the name does not say so)
    result = between_good_lines(tmp_path, "{oops", compress=True)
    # Then the same problem on the same line
    assert (only_problem(result).reason, only_problem(result).line) == ("invalid-json", 3)


def test_a_truncated_gzip_file_is_rejected_whole(tmp_path: Path) -> None:
    data = gzip.compress(ndjson([patient(f"pt-{i}") for i in range(2000)]))
    error = rejected(write(tmp_path / "cut.ndjson.gz", data[: len(data) // 2]))
    assert error.reason == "truncated-gzip"


def test_a_corrupt_gzip_file_is_rejected_whole(tmp_path: Path) -> None:
    data = bytearray(gzip.compress(ndjson([patient(f"pt-{i}") for i in range(200)])))
    data[len(data) // 2] ^= 0xFF
    assert rejected(write(tmp_path / "bad.ndjson.gz", bytes(data))).reason == "truncated-gzip"


# ---------------------------------------------------------------------------------- whole files


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty-file"),
        (b"\n \n\t\r\n", "empty-file"),
        (gzip.compress(b""), "empty-file"),
        (b'<Bundle xmlns="http://hl7.org/fhir"><type value="collection"/></Bundle>', "fhir-not-json"),
        (b"id,resourceType\n1,Patient\n", "fhir-not-json"),
        (b'[{"resourceType": "Patient", "id": "p1"}]', "fhir-not-json"),
        (b'"just a string"', "fhir-not-json"),
    ],
    ids=["empty", "blank-lines", "empty-gzip", "xml", "csv", "json-array", "json-string"],
)
def test_a_file_that_is_not_fhir_json_is_rejected_whole(tmp_path: Path, content: bytes, reason: str) -> None:
    assert rejected(write(tmp_path / "f.ndjson", content)).reason == reason


def test_a_cut_bundle_file_is_invalid_json_at_its_last_line(tmp_path: Path) -> None:
    # Given a pretty-printed Bundle cut in the middle of its last entry
    text = pretty(bundle([patient(), observation(), condition()]))
    cut = text[: len(text) - 200]
    # When flattened, then the whole file is rejected, naming where the JSON stops
    error = rejected(write(tmp_path / "bundle.json", cut))
    assert error.reason == "invalid-json"
    assert error.line == cut.count(b"\n") + 1


def test_a_bundle_with_bytes_that_are_not_utf8_is_rejected_whole(tmp_path: Path) -> None:
    text = pretty(bundle([patient(), observation()])).replace(b'"male"', b'"m\xe4le"')
    error = rejected(write(tmp_path / "bundle.json", text))
    assert error.reason == "not-utf8"
    assert error.line == text[: text.index(b"\xe4")].count(b"\n") + 1


# ------------------------------------------------------------------------------------------ Bundles


def entry_start_lines(text: bytes) -> list[int]:
    """Independently of the code under test: in indent=2 JSON, each entry opens with a line '    {'."""
    lines = text.decode().split("\n")
    start = lines.index('  "entry": [')
    return [n + 1 for n, line in enumerate(lines) if n > start and line == "    {"]


def test_a_bundle_with_valid_and_invalid_entries_keeps_the_valid_ones(tmp_path: Path) -> None:
    # Given a pretty-printed transaction Bundle: 4 valid entries and 4 broken ones
    entries = [
        patient(),
        observation("o-bad-date", subject="urn:uuid:pt-1", effectiveDateTime="2019-02-30"),
        encounter(subject="urn:uuid:pt-1"),
        {"resourceType": "Observation", "status": "final"},  # no id (and no urn:uuid fullUrl below)
        condition(subject="urn:uuid:pt-1"),
        observation("o-no-subject", subject=None),
        {"resourceType": "Patinet", "id": "x"},
        observation(subject="urn:uuid:pt-1"),
    ]
    document = bundle(entries)
    document["entry"][3]["fullUrl"] = "http://example.org/fhir/Observation"  # a POST without a uuid
    document["entry"].append({"request": {"method": "DELETE", "url": "Patient/pt-0"}})
    text = pretty(document)
    # When flattened
    result = flattened(write(tmp_path / "bundle.json", text))
    # Then the valid entries give rows and each broken one is a problem at its entry and line
    assert rows(result) == {
        "clinical.condition": 1,
        "clinical.encounter": 1,
        "clinical.observation": 1,
        "clinical.patient": 1,
    }
    starts = entry_start_lines(text)
    found = [(p.entry, p.reason, p.line) for p in result.problems]
    assert found == [
        (1, "invalid-resource", starts[1]),
        (3, "missing-id", starts[3]),
        (5, "missing-reference", starts[5]),
        (6, "unknown-resource-type", starts[6]),
        (8, "missing-resource", starts[8]),
    ]
    assert result.problems[0].detail.startswith("Bundle entry 1: Observation.effectiveDateTime")
    assert "DELETE" in result.problems[-1].detail


def test_a_bundle_on_one_ndjson_line_puts_its_problems_on_that_line(tmp_path: Path) -> None:
    one_line_bundle = bundle([patient("pt-2"), observation("o1", subject=None)], "collection")
    result = flattened(write(tmp_path / "f.ndjson", ndjson([patient(), one_line_bundle])))
    assert [(p.line, p.entry, p.reason) for p in result.problems] == [(2, 1, "missing-reference")]
    assert rows(result) == {"clinical.patient": 2}


def test_a_bundle_whose_entry_is_not_an_array_is_one_problem(tmp_path: Path) -> None:
    document = {"resourceType": "Bundle", "type": "collection", "entry": {"resource": patient()}}
    result = flattened(write(tmp_path / "b.json", pretty(document)))
    assert (only_problem(result).reason, only_problem(result).line) == ("invalid-resource", 1)
    assert result.tables == {}


def test_a_file_of_one_pretty_printed_resource_is_flattened(tmp_path: Path) -> None:
    result = flattened(write(tmp_path / "patient.json", b"\n\n" + pretty(patient())))
    assert rows(result) == {"clinical.patient": 1}


# ------------------------------------------------------------------------------------- many problems


def test_problems_beyond_the_listed_cap_are_still_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fhir, "MAX_LISTED_PROBLEMS", 5)
    result = flattened(write(tmp_path / "f.ndjson", ndjson(["{"] * 12 + [patient()])))
    assert len(result.problems) == 5
    assert result.problem_counts == {"invalid-json": 12}
    assert rows(result) == {"clinical.patient": 1}


def test_no_problem_detail_repeats_a_personal_string(tmp_path: Path) -> None:
    # Given every kind of bad line, built from resources full of personal strings
    lines: list[str | bytes | dict[str, Any]] = [bad for bad, _ in BAD_LINES.values()]
    result = flattened(write(tmp_path / "f.ndjson", ndjson([patient(), *lines])))
    # Then no problem repeats one
    assert len(result.problems) == len(BAD_LINES)
    text = json.dumps([p.__dict__ for p in result.problems])
    assert not [s for s in PERSONAL_STRINGS if s in text]


def test_a_gzip_bundle_file_is_read_like_a_plain_one(tmp_path: Path) -> None:
    document = bundle([patient(), observation(subject="urn:uuid:pt-1")], "collection")
    result = flattened(write(tmp_path / "bundle.json.gz", pretty(document), compress=True))
    assert (rows(result), result.problems) == ({"clinical.observation": 1, "clinical.patient": 1}, [])


# ------------------------------------------------------------------------------------- strict mode


def test_strict_mode_rejects_what_only_the_r4_models_see_naming_the_path(tmp_path: Path) -> None:
    pytest.importorskip("fhirclient")
    # Given an element R4 does not define, and an Observation without its mandatory status
    unknown_element = {**observation("o1"), "bodyWeight": 80}
    no_status = {k: v for k, v in observation("o2").items() if k != "status"}
    data = ndjson([patient(), unknown_element, no_status, condition()])
    path = write(tmp_path / "f.ndjson", data)
    # When flattened by default, then both give rows: no column is wrong for them
    assert flattened(path).problems == []
    # When flattened strictly, then both are invalid-resource problems that name the element
    result = flattened(path, strict=True)
    assert [(p.line, p.reason, p.resource_id) for p in result.problems] == [
        (2, "invalid-resource", "o1"),
        (3, "invalid-resource", "o2"),
    ]
    assert result.problems[0].detail == 'Observation: Superfluous entry "bodyWeight" in data for Observation'
    assert (
        result.problems[1].detail == 'Observation: Non-optional property "status" on Observation is missing'
    )
    assert rows(result) == {"clinical.condition": 1, "clinical.patient": 1}


def test_strict_mode_names_nested_paths_without_quoting_values(tmp_path: Path) -> None:
    pytest.importorskip("fhirclient")
    bad = {**observation("o1"), "valueQuantity": {"value": "Peterqq"}}
    result = flattened(write(tmp_path / "f.ndjson", ndjson([patient(), bad])), strict=True)
    problem = only_problem(result)
    assert problem.detail.startswith("Observation.valueQuantity.value: Wrong type str")
    assert "Peterqq" not in problem.detail
    assert "0x" not in problem.detail


# ------------------------------------------------------------------------------------- value sets


@pytest.mark.parametrize(
    ("resource", "path"),
    [
        (patient("pt-9", gender="Smithson"), "Patient.gender"),
        (observation("o-9", status="finished"), "Observation.status"),
        ({**encounter(), "status": "done"}, "Encounter.status"),
        (
            condition(
                "c-9",
                clinicalStatus={
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "ok"}
                    ]
                },
            ),
            "Condition.clinicalStatus",
        ),
    ],
)
def test_a_code_outside_its_required_r4_value_set_rejects_the_resource_without_quoting_it(
    tmp_path: Path, resource: dict[str, Any], path: str
) -> None:
    # Given a resource whose coded element (a required binding in R4) holds a value outside its value set
    result = flattened(write(tmp_path / "f.ndjson", ndjson([resource, patient("pt-ok")])))
    # Then it is an invalid-resource problem naming the element and the value set, never the value
    problem = only_problem(result)
    assert problem.reason == "invalid-resource"
    assert problem.detail.startswith(f"{path}: not a code of the required R4 value set")
    assert "Smithson" not in problem.detail
    assert rows(result) == {"clinical.patient": 1}


def test_bundle_entries_sharing_a_full_url_are_quarantined_and_references_to_it_resolve_to_nothing(
    tmp_path: Path,
) -> None:
    # Given a Bundle where two Patients share one fullUrl and a Condition references that fullUrl
    document = bundle([patient("pt-a"), patient("pt-b"), condition(subject="urn:uuid:shared")])
    document["entry"][0]["fullUrl"] = document["entry"][1]["fullUrl"] = "urn:uuid:shared"
    result = flattened(write(tmp_path / "b.json", pretty(document)))
    # Then both ambiguous entries are problems, and the Condition is not attached to either Patient
    assert [(p.entry, p.reason) for p in result.problems] == [
        (0, "duplicate-full-url"),
        (1, "duplicate-full-url"),
        (2, "missing-reference"),
    ]
    assert "entry 1" in result.problems[0].detail
    assert result.tables == {}


def test_versions_of_one_resource_may_share_a_full_url(tmp_path: Path) -> None:
    # Given a history-like Bundle: two versions of Patient pt-1 under one fullUrl (allowed by R4's bdl-7)
    document = bundle([patient("pt-1"), patient("pt-1"), condition(subject="urn:uuid:same")], "collection")
    document["entry"][0]["fullUrl"] = document["entry"][1]["fullUrl"] = "urn:uuid:same"
    result = flattened(write(tmp_path / "b.json", pretty(document)))
    # Then nothing is ambiguous: both versions are rows (the lake keeps one) and the reference resolves
    assert result.problems == []
    assert rows(result) == {"clinical.condition": 1, "clinical.patient": 2}
    assert result.tables["clinical.condition"]["patient_id"].to_pylist() == ["pt-1"]


def test_a_conditional_create_keeps_its_if_none_exist_identifier_on_the_patient_row(tmp_path: Path) -> None:
    # Given a transaction POSTing an id-less Patient with ifNoneExist by identifier (as Synthea's packs do)
    document = bundle([patient("ignored")])
    del document["entry"][0]["resource"]["id"]
    document["entry"][0]["fullUrl"] = "urn:uuid:0f5e"
    document["entry"][0]["request"] = {"method": "POST", "url": "Patient",
                                       "ifNoneExist": "identifier=urn%3Amrn%3Ahosp|MRN-7"}  # fmt: skip
    result = flattened(write(tmp_path / "b.json", pretty(document)))
    # Then the row is the uuid's, with the criterion decoded
    row = result.tables["clinical.patient"].to_pylist()[0]
    assert (row["resource_id"], row["if_none_exist"]) == ("0f5e", "urn:mrn:hosp|MRN-7")
