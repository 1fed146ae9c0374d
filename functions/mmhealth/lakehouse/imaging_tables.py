"""Arrow schemas of the imaging lakehouse tables (`imaging.instances`, `imaging.series`).

Conventions:
- Geometry is DICOM patient geometry (LPS, millimetres) as written: `image_orientation` is
  ImageOrientationPatient (row direction cosines, then column direction cosines), `image_position` is
  ImagePositionPatient (centre of the first transmitted pixel), `pixel_spacing` is PixelSpacing
  ([row spacing, column spacing]: between rows, then between columns).
- The S3 key of an instance is its lineage `source_key`; a series row's `source_key` is the key of its
  first slice by position along the normal and its `object_id` is `series_object_id(series_uid)`.
- No names, birth dates or other personal attributes are indexed; `patient_id` is the DICOM PatientID,
  the key that links imaging to the FHIR Patient and the VCF sample.
"""

from __future__ import annotations

import pyarrow as pa

from mmhealth.lakehouse.schemas import LINEAGE

# Iceberg names a list's element "element" and it is always present here (a required Iceberg element).
FLOAT_LIST = pa.list_(pa.field("element", pa.float64(), nullable=False))

IMAGING_INSTANCES = pa.schema(
    [
        pa.field("patient_id", pa.string(), nullable=False),
        pa.field("study_uid", pa.string(), nullable=False),
        pa.field("series_uid", pa.string(), nullable=False),
        pa.field("sop_uid", pa.string(), nullable=False),
        pa.field("sop_class_uid", pa.string(), nullable=False),
        pa.field("modality", pa.string(), nullable=False),
        pa.field("body_part", pa.string()),  # BodyPartExamined
        pa.field("study_date", pa.date32()),  # null when absent or not a valid DA
        pa.field("series_description", pa.string()),
        pa.field("instance_number", pa.int32()),  # null when absent or not a valid IS
        pa.field("rows", pa.int32(), nullable=False),
        pa.field("columns", pa.int32(), nullable=False),
        pa.field("number_of_frames", pa.int32(), nullable=False),  # 1 when NumberOfFrames is absent
        pa.field("pixel_spacing", FLOAT_LIST, nullable=False),  # [row, column] spacing in mm
        pa.field("slice_thickness", pa.float64()),  # mm; null when absent or not positive
        pa.field("image_orientation", FLOAT_LIST, nullable=False),  # 6 direction cosines
        pa.field("image_position", FLOAT_LIST, nullable=False),  # 3 coordinates, mm
        pa.field("frame_of_reference_uid", pa.string()),
        pa.field("transfer_syntax_uid", pa.string(), nullable=False),
        pa.field("bits_allocated", pa.int32(), nullable=False),
        pa.field("photometric_interpretation", pa.string(), nullable=False),
        pa.field("rescale_slope", pa.float64(), nullable=False),  # 1 when absent
        pa.field("rescale_intercept", pa.float64(), nullable=False),  # 0 when absent
        pa.field("file_size", pa.int64(), nullable=False),  # bytes
        *LINEAGE,
    ]
)

IMAGING_SERIES = pa.schema(
    [
        pa.field("series_uid", pa.string(), nullable=False),
        pa.field("patient_id", pa.string(), nullable=False),
        pa.field("study_uid", pa.string(), nullable=False),
        pa.field("modality", pa.string(), nullable=False),
        pa.field("body_part", pa.string()),  # of the first slice
        pa.field("study_date", pa.date32()),  # of the first slice
        pa.field("series_description", pa.string()),  # of the first slice
        pa.field("slice_count", pa.int32(), nullable=False),
        pa.field("rows", pa.int32(), nullable=False),
        pa.field("columns", pa.int32(), nullable=False),
        pa.field("pixel_spacing", FLOAT_LIST, nullable=False),  # [row, column] spacing in mm
        # Median distance between neighbouring slices along the normal (mm); null for a single slice.
        pa.field("slice_spacing", pa.float64()),
        # The imprecision the geometry rule (imaging/series.py) accepted, rounded to 6 decimals; null for a
        # single slice, and in rows written before these columns existed (added to an existing table on the
        # next commit, as every nullable column is: catalog.ensure_table):
        # - the largest distance (mm) of a slice's ImagePositionPatient from the line along the normal
        #   through the first slice (gantry tilt, shear, rounding); at most 0.5 x the smaller pixel spacing
        pa.field("stack_drift_mm", pa.float64()),
        # - the largest |gap / slice_spacing - 1| over the gaps between neighbouring slices (a fraction,
        #   0.014 = 1.4%); at most 0.1
        pa.field("slice_spacing_deviation", pa.float64()),
        pa.field("slice_thickness", pa.float64()),  # SliceThickness of the first slice
        pa.field("image_orientation", FLOAT_LIST, nullable=False),  # of the first slice
        pa.field("normal", FLOAT_LIST, nullable=False),  # unit row x column direction, the stacking axis
        pa.field("first_position", FLOAT_LIST, nullable=False),  # ImagePositionPatient, lowest along normal
        pa.field("last_position", FLOAT_LIST, nullable=False),  # ImagePositionPatient, highest along normal
        pa.field("frame_of_reference_uid", pa.string()),
        pa.field("transfer_syntaxes", pa.string(), nullable=False),  # distinct UIDs, sorted, ";"-joined
        pa.field("image_set_id", pa.string()),  # AWS HealthImaging image set, filled when that backend runs
        # sha256 (32 hex) of the series' (SOP instance UID, object id) pairs: which files this row describes.
        # features.radiomics rows carry the digest they were computed on, so a result for an older version
        # of a series (fewer slices, a re-delivered file) is never committed over the current one.
        pa.field("instances_digest", pa.string()),
        *LINEAGE,
    ]
)

IMAGING_TABLES: dict[str, pa.Schema] = {
    "imaging.instances": IMAGING_INSTANCES,
    "imaging.series": IMAGING_SERIES,
}
