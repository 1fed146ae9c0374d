"""The clinical importer's use of the FHIR flattener: problems beyond the listed ones are still reported."""

from __future__ import annotations

import json
from pathlib import Path

from mmhealth.clinical.fhir import MAX_LISTED_PROBLEMS
from mmhealth.clinical.importer import convert_fhir
from mmhealth.contracts import ManifestFile, S3Object


def test_a_file_of_many_bad_lines_yields_the_listed_problems_plus_one_counted_record(tmp_path: Path) -> None:
    # Given an NDJSON file with one valid Patient and more bad lines than the flattener lists
    bad = MAX_LISTED_PROBLEMS + 5
    path = tmp_path / "Patient.ndjson"
    valid = json.dumps({"resourceType": "Patient", "id": "p1", "gender": "female"})
    path.write_text(valid + "\n" + "{broken\n" * bad)
    file = ManifestFile(
        object=S3Object(bucket="b", key="incoming/d/Patient.ndjson", etag="e"), kind="clinical"
    )

    # When it is converted
    converted = convert_fhir(file, path, "run-1")

    # Then the patient is kept, every listed problem has its line, and the rest are counted in one record
    assert converted.tables["clinical.patient"].num_rows == 1
    assert len(converted.problems) == MAX_LISTED_PROBLEMS + 1
    assert converted.problems[0].line == 2
    assert converted.problems[-1].reason == "more-problems"
    assert converted.problems[-1].detail.startswith("5 more rejected lines")
