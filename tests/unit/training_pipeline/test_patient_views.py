"""The report's patient view: header, timeline, vitals and labs, variants, radiomics and its pictures."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace

import pyarrow as pa

from mmhealth.identity.resolve import from_links
from mmhealth.training.patient_views import MEASUREMENT_POINTS, patient_views
from tests.unit.training_pipeline.lake_rows import commit
from tests.unit.training_pipeline.test_population import at


def test_a_patient_view_has_the_header_measurements_and_pictures(aws: SimpleNamespace) -> None:
    commit(
        "features.labels",
        pa.table(
            {
                "patient_id": ["p1"],
                "index_date": [date(2018, 1, 1)],
                "stroke": pa.array([1], pa.int32()),
                "stroke_onset": [date(2019, 5, 1)],
            }
        ),
    )
    clinical = {
        "patient_id": ["p1"],
        "index_date": [date(2018, 1, 1)],
        "age_at_index_years": [71.2],
        "sex": ["female"],
    }
    commit("features.clinical", pa.table(clinical))
    # Systolic BP twice (once void), an LDL in mmol/L, a code no measurement uses
    commit(
        "clinical.observation",
        pa.table(
            {
                "resource_id": ["o1", "o2", "o3", "o4"],
                "patient_id": ["p1"] * 4,
                "status": ["final", "entered-in-error", "final", "final"],
                "code_code": ["8480-6", "8480-6", "18262-6", "12345-6"],
                "value_quantity": [142.0, 300.0, 3.0, 1.0],
                "value_unit": ["mm[Hg]", "mm[Hg]", "mmol/L", "x"],
                "effective_at": [at("2017-06-01"), at("2017-06-02"), at("2016-01-01"), at("2017-01-01")],
            }
        ),
    )
    commit(
        "clinical.condition",
        pa.table({"resource_id": ["c1"], "patient_id": ["p1"], "code_code": ["44054006"],
                  "code_display": ["Diabetes"], "onset_at": [at("2015-02-03")]}),
    )  # fmt: skip
    commit(
        "features.imaging",
        pa.table({"patient_id": ["p1"], "index_date": [date(2018, 1, 1)], "series_uid": ["1.2.3"],
                  "lesion_volume_ml": [4.5]}),
    )  # fmt: skip
    aws.s3.put_object(
        Bucket=aws.lake, Key="radiomics/r/output/features/1.2.3/overlay.png", Body=b"\x89PNG overlay"
    )
    commit(
        "features.radiomics",
        pa.table({"series_uid": ["1.2.3"], "patient_id": ["p1"], "region_label": pa.array([1], pa.int32()),
                  "region": ["lesion"], "overlay_key": ["radiomics/r/output/features/1.2.3/overlay.png"]}),
    )  # fmt: skip

    [view] = patient_views(["p1"], from_links(None), "ds1")

    assert view["header"] == {
        "age": 71.2,
        "sex": "female",
        "index_date": "2018-01-01",
        "labels": {"stroke": {"label": 1, "onset": "2019-05-01"}},
    }
    assert view["measurements"] == {
        "systolic_mmhg": [["2017-06-01", 142.0]],  # the void entry is left out
        "ldl_mg_dl": [["2016-01-01", 116.01]],  # 3 mmol/L in mg/dL
    }
    assert view["timeline"] == [
        {"date": "2015-02-03", "kind": "condition", "code": "44054006", "display": "Diabetes"}
    ]
    assert view["radiomics"]["lesion"]["volume_ml"] == 4.5
    assert view["images"] == {"series_uid": "1.2.3", "overlay": "images/1.2.3/overlay.png"}
    copied = aws.s3.get_object(Bucket=aws.lake, Key="datasets/ds1/images/1.2.3/overlay.png")["Body"].read()
    assert copied == b"\x89PNG overlay"
    assert MEASUREMENT_POINTS >= 50
