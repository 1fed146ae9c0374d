"""summarise_series: synthetic axial and oblique series summarised from their files in any order, every
inconsistency found and located, duplicates counted once, and thousands of series at once."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pydicom import dcmread

from mmhealth.imaging.series import SeriesProblem, latest_instances, series_object_id, summarise_series
from mmhealth.lakehouse.imaging_tables import FLOAT_LIST, IMAGING_INSTANCES, IMAGING_SERIES
from tests.unit.imaging.dicom_files import (
    DELIVERY,
    PERSONAL_VALUES,
    RUN_ID,
    SERIES_UID,
    SyntheticSeries,
    axial_positions,
    index_files,
    instance_dataset,
    object_id_of,
    write_instance,
    write_stack,
    write_synthetic_series,
)


@pytest.fixture(scope="module")
def axial(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSeries:
    return write_synthetic_series(tmp_path_factory.mktemp("axial"), tilted=False)


@pytest.fixture(scope="module")
def oblique(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSeries:
    return write_synthetic_series(tmp_path_factory.mktemp("oblique"), tilted=True)


@pytest.fixture(scope="module")
def indexed(axial: SyntheticSeries, oblique: SyntheticSeries) -> pa.Table:
    """Both synthetic series' instances, in file-name order (a shuffled slice order)."""
    return index_files([*axial.files, *oblique.files])


def only_problem(instances: pa.Table) -> SeriesProblem:
    summary = summarise_series(instances, run_id=RUN_ID)
    assert summary.series.num_rows == 0
    assert len(summary.problems) == 1
    return summary.problems[0]


def rewrite(path: Path, **values: object) -> None:
    ds = dcmread(path)
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)


# ----------------------------------------------------------------------------------- consistent series


@pytest.mark.parametrize("which", ["axial", "oblique"])
def test_a_synthetic_series_is_summarised_with_the_plans_geometry(
    which: str, axial: SyntheticSeries, oblique: SyntheticSeries, indexed: pa.Table
) -> None:
    # Given the indexed instances of a synthetic axial and a synthetic oblique MR series
    synthetic = axial if which == "axial" else oblique
    plan = synthetic.plan

    # When the run's instances are summarised
    summary = summarise_series(indexed, run_id=RUN_ID)

    # Then each series has one row with the plan's slice count, spacing, normal and end positions
    assert summary.problems == []
    assert summary.series.schema == IMAGING_SERIES
    rows = {r["series_uid"]: r for r in summary.series.to_pylist()}
    row = rows[plan.series_uid]
    assert row["slice_count"] == plan.slices
    assert row["slice_spacing"] == pytest.approx(plan.slice_spacing, abs=1e-4)
    assert row["normal"] == pytest.approx(list(plan.normal), abs=1e-6)
    assert row["image_orientation"] == pytest.approx([*plan.row_direction, *plan.column_direction], abs=1e-6)
    assert row["first_position"] == pytest.approx(list(plan.image_position(0)), abs=1e-5)
    assert row["last_position"] == pytest.approx(list(plan.image_position(plan.slices - 1)), abs=1e-5)
    assert row["pixel_spacing"] == [plan.pixel_spacing, plan.pixel_spacing]
    assert (row["rows"], row["columns"], row["slice_thickness"]) == (64, 64, plan.slice_thickness)
    assert (row["patient_id"], row["study_uid"], row["modality"]) == (plan.patient_id, plan.study_uid, "MR")
    assert (row["study_date"], row["body_part"]) == (plan.study_date, "BRAIN")
    assert row["frame_of_reference_uid"] == plan.frame_of_reference_uid
    assert (row["transfer_syntaxes"], row["image_set_id"]) == ("1.2.840.10008.1.2.1", None)
    # what the geometry rule accepted is recorded: only the rounding of the written DS values
    assert 0.0 <= row["stack_drift_mm"] < 1e-3
    assert 0.0 <= row["slice_spacing_deviation"] < 1e-5
    # lineage: the first slice's key, a stable id of the series, this run
    first_key = DELIVERY + synthetic.file_of_slice(0).name
    assert (row["source_key"], row["object_id"], row["run_id"]) == (
        first_key,
        series_object_id(plan.series_uid),
        RUN_ID,
    )
    assert (which == "oblique") == (abs(row["normal"][2]) < 0.999)


def test_the_file_order_does_not_matter(indexed: pa.Table) -> None:
    # Given the same instances in three different orders
    generator = np.random.default_rng(7)
    orders = [
        np.arange(indexed.num_rows),
        np.arange(indexed.num_rows)[::-1],
        generator.permutation(indexed.num_rows),
    ]

    # When each order is summarised
    tables = [summarise_series(indexed.take(pa.array(order)), run_id=RUN_ID).series for order in orders]

    # Then the series rows are identical
    assert tables[0].num_rows == 2
    assert all(t.equals(tables[0]) for t in tables[1:])


def test_the_series_object_id_is_stable_and_differs_between_series() -> None:
    # Given two series UIDs, When their object ids are taken twice, Then they are stable 16-hex ids
    ids = [series_object_id("1.2.3"), series_object_id("1.2.3"), series_object_id("1.2.4")]
    assert ids[0] == ids[1] != ids[2]
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids)


def test_a_single_slice_series_is_consistent_without_a_spacing(tmp_path: Path) -> None:
    # Given a series of one slice (a localizer, a single 2-D image)
    instances = index_files(write_stack(tmp_path, axial_positions(1, 5.0)), root=tmp_path)

    # When it is summarised
    summary = summarise_series(instances, run_id=RUN_ID)

    # Then it has a row with one slice, its normal, and no measurable spacing
    assert summary.problems == []
    row = summary.series.to_pylist()[0]
    assert (row["slice_count"], row["slice_spacing"], row["normal"]) == (1, None, [0.0, 0.0, 1.0])
    assert (row["stack_drift_mm"], row["slice_spacing_deviation"]) == (None, None)
    assert row["first_position"] == row["last_position"]


def test_no_instances_give_no_series() -> None:
    # Given an empty table, When it is summarised, Then there is nothing, under the series schema
    summary = summarise_series(IMAGING_INSTANCES.empty_table(), run_id=RUN_ID)
    assert (summary.series.num_rows, summary.series.schema, summary.problems) == (0, IMAGING_SERIES, [])


def test_distinct_transfer_syntaxes_are_listed_sorted(tmp_path: Path) -> None:
    # Given a series whose slices came in two encodings
    paths = write_stack(tmp_path, axial_positions(3, 2.0))
    ds = dcmread(paths[1])
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2"
    ds.save_as(paths[1], enforce_file_format=True, implicit_vr=True)

    # When it is summarised, Then both syntaxes are listed once each
    row = summarise_series(index_files(paths, root=tmp_path), run_id=RUN_ID).series.to_pylist()[0]
    assert row["transfer_syntaxes"] == "1.2.840.10008.1.2;1.2.840.10008.1.2.1"


# --------------------------------------------------------------------------------------- duplicates


def test_an_instance_delivered_twice_counts_once_and_the_later_delivery_wins(
    tmp_path: Path, axial: SyntheticSeries
) -> None:
    # Given the synthetic series delivered in d1, and its first slice again in d2 (another key, another object)
    first = axial.files[0]
    once = index_files(axial.files, delivery="incoming/d1/")
    again = index_files([first], delivery="incoming/d2/")

    # When both deliveries are summarised together, in either order
    summaries = [
        summarise_series(pa.concat_tables(tables), run_id=RUN_ID) for tables in ([once, again], [again, once])
    ]

    # Then the series has its true slice count, and the instance's row is d2's
    for summary in summaries:
        assert summary.problems == []
        assert summary.series["slice_count"].to_pylist() == [axial.plan.slices]
    latest = latest_instances(pa.concat_tables([once, again]), run_id=RUN_ID)
    assert latest.num_rows == axial.plan.slices
    sop = read_sop(first)
    kept = latest.filter(pc.equal(latest["sop_uid"], sop))
    assert kept["source_key"].to_pylist() == [f"incoming/d2/{first.name}"]


def read_sop(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def test_this_runs_row_wins_over_an_earlier_runs_row_of_the_same_instance(axial: SyntheticSeries) -> None:
    # Given a slice committed by an earlier run under a later-sorting key, and staged again by this run
    first = axial.files[0]
    earlier = index_files([first], run_id="zz-earlier-run", delivery="incoming/zz/")
    this_run = index_files([first], run_id=RUN_ID, delivery="incoming/aa/")

    # When the instances are deduplicated for this run, in either order
    kept = [
        latest_instances(pa.concat_tables(tables), run_id=RUN_ID)
        for tables in ([earlier, this_run], [this_run, earlier])
    ]

    # Then this run's row is kept
    assert [k["run_id"].to_pylist() for k in kept] == [[RUN_ID], [RUN_ID]]


# ------------------------------------------------------------------------------------------- problems


def test_a_series_with_a_slice_removed_is_missing_slice_naming_the_gap(axial: SyntheticSeries) -> None:
    # Given the synthetic series without its 6th slice (by position)
    plan = axial.plan
    gone = axial.file_of_slice(5)
    instances = index_files([f for f in axial.files if f != gone])

    # When it is summarised
    problem = only_problem(instances)

    # Then it is a missing slice, between slices 5 and 6 of what remains, at the plan's positions
    along = [float(np.dot(plan.image_position(k), plan.normal)) for k in (4, 6)]
    assert problem.reason == "series-missing-slice"
    assert problem.series_uid == plan.series_uid
    assert (
        f"{2 * plan.slice_spacing:.3f} mm between slices 5 and 6 (at {along[0]:.3f} and {along[1]:.3f} mm, "
        "about 1 missing)"
    ) in problem.detail
    assert f"median spacing {plan.slice_spacing:.3f} mm among {plan.slices - 1} slices" in problem.detail
    # every instance of the series is named, to be quarantined
    assert problem.object_ids == tuple(sorted(instances["object_id"].to_pylist()))


def test_an_oblique_series_with_a_slice_removed_is_found_along_its_tilted_normal(
    oblique: SyntheticSeries,
) -> None:
    # Given the oblique synthetic series without its 3rd slice (z alone would show a smaller gap)
    gone = oblique.file_of_slice(2)
    instances = index_files([f for f in oblique.files if f != gone])

    # When it is summarised, Then the gap is two spacings along the tilted normal
    problem = only_problem(instances)
    assert problem.reason == "series-missing-slice"
    assert f"{2 * oblique.plan.slice_spacing:.3f} mm between slices 2 and 3" in problem.detail


def test_a_slice_with_another_orientation_is_mixed_geometry(tmp_path: Path, oblique: SyntheticSeries) -> None:
    # Given the oblique series with one slice rewritten as axial
    copy = tmp_path / "series"
    shutil.copytree(oblique.files[0].parent, copy)
    changed = copy / oblique.file_of_slice(4).name
    rewrite(changed, ImageOrientationPatient=[1, 0, 0, 0, 1, 0])
    instances = index_files(sorted(copy.glob("*.dcm")))

    # When it is summarised
    problem = only_problem(instances)

    # Then the orientations are tallied
    column = [f"{v:.4f}".rstrip("0").rstrip(".") for v in oblique.plan.column_direction[1:]]
    tilted = f"[1, 0, 0, 0, {column[0]}, {column[1]}]"
    spread = max(abs(oblique.plan.column_direction[1] - 1), abs(oblique.plan.column_direction[2]))
    assert problem.reason == "series-mixed-geometry"
    assert problem.detail == (
        f"ImageOrientationPatient differs by up to {spread:.4g} in a direction cosine (tolerance 0.001): "
        f"{oblique.plan.slices - 1} x {tilted}, 1 x [1, 0, 0, 0, 1, 0]"
    )


def test_mixed_sizes_spacings_and_frames_of_reference_are_all_named(tmp_path: Path) -> None:
    # Given a stack whose 2nd slice has another pixel spacing, and 3rd another size and frame of reference
    paths = write_stack(tmp_path, axial_positions(4, 3.0))
    rewrite(paths[1], PixelSpacing=[0.6, 0.6])
    rewrite(paths[2], Rows=4, PixelData=bytes(4 * 8 * 2), FrameOfReferenceUID="1.2.826.0.1.3680043.8.498.77")

    # When it is summarised
    problem = only_problem(index_files(paths, root=tmp_path))

    # Then each difference is named in one detail
    assert problem.reason == "series-mixed-geometry"
    assert problem.detail.split("; ") == [
        "Rows x Columns differ: 3 x 8x8, 1 x 4x8",
        "PixelSpacing differs by up to 20.00% (tolerance 0.1%): 3 x [0.5, 0.5], 1 x [0.6, 0.6] (mm)",
        "FrameOfReferenceUID differs: 2 distinct values (an absent one counts) over 4 instances",
    ]


def test_two_instances_at_one_position_are_duplicate_position(tmp_path: Path) -> None:
    # Given a stack of 5 slices 2 mm apart and a 6th instance (another SOP) at the 3rd slice's position
    positions = axial_positions(5, 2.0)
    paths = write_stack(tmp_path, positions)
    extra = instance_dataset(number=6, position=positions[2])
    paths.append(write_instance(tmp_path / SERIES_UID / "extra.dcm", extra))

    # When it is summarised
    problem = only_problem(index_files(paths, root=tmp_path))

    # Then the pair is named by slice number and position, beside the tolerance (8 mm over 5 gaps)
    assert problem.reason == "series-duplicate-position"
    assert problem.detail == (
        "1 pair(s) of the 6 slices share a position along the normal [0, 0, 1] (at most 10% of the mean "
        "spacing 1.600 mm apart): slices 3 and 4 at -16.000 mm (0.000 mm apart)"
    )
    assert len(problem.object_ids) == 6


def test_a_sheared_stack_is_not_stacked(tmp_path: Path) -> None:
    # Given an axial stack whose slices drift 0.5 mm in x per slice (a gantry tilt)
    positions = [(x * 0.5, 0.0, z) for x, (_, _, z) in enumerate(axial_positions(6, 2.0))]

    # When it is summarised
    problem = only_problem(index_files(write_stack(tmp_path, positions), root=tmp_path))

    # Then the worst slice and its distance off the normal line are named
    assert problem.reason == "series-not-stacked"
    assert problem.detail.startswith("slice 6 of 6 lies 2.500 mm off the normal [0, 0, 1] through slice 1")


def test_irregular_but_not_missing_spacing_is_uneven(tmp_path: Path) -> None:
    # Given slices at 0, 2, 4, 6, 8.5, 10.5 mm (one gap 25% wider)
    positions = [(0.0, 0.0, z) for z in (0.0, 2.0, 4.0, 6.0, 8.5, 10.5)]

    # When it is summarised, Then the uneven gap is named
    problem = only_problem(index_files(write_stack(tmp_path, positions), root=tmp_path))
    assert (problem.reason, problem.detail) == (
        "series-uneven-spacing",
        "1 gap(s) off the median spacing 2.000 mm by more than 10%: 2.500 mm between slices 4 and 5 (+25.0%)",
    )


def test_a_multi_frame_instance_makes_the_series_unstackable(tmp_path: Path) -> None:
    # Given a series of one legacy multi-frame instance (4 frames) with top-level geometry
    ds = instance_dataset()
    ds.NumberOfFrames = 4
    ds.PixelData = bytes(8 * 8 * 2 * 4)

    # When it is summarised
    problem = only_problem(index_files([write_instance(tmp_path / "mf.dcm", ds)]))

    # Then it is multi-frame
    assert (problem.reason, problem.detail) == (
        "series-multi-frame",
        "1 of 1 instances hold several frames (up to 4): per-frame positions are not indexed, so the series "
        "cannot be stacked slice by slice",
    )


def test_instances_of_two_patients_in_one_series_are_mixed_identity_without_naming_them(
    tmp_path: Path,
) -> None:
    # Given a series whose last slice belongs to another patient
    paths = write_stack(tmp_path, axial_positions(3, 2.0))
    rewrite(paths[2], PatientID="PID-SECRET-0099", PatientName="Otherpersonzz^Quentinqq")

    # When it is summarised
    problem = only_problem(index_files(paths, root=tmp_path))

    # Then the identity mix is counted, and neither patient is named
    assert (problem.reason, problem.detail) == (
        "series-mixed-identity",
        "PatientID differs within the series: 2 distinct values over 3 instances",
    )
    assert not any(v in problem.detail for v in (*PERSONAL_VALUES, "PID-SECRET-0099", "Otherpersonzz"))


def test_problems_only_hold_back_their_own_series(tmp_path: Path, axial: SyntheticSeries) -> None:
    # Given a run with the consistent synthetic series and a stack with a missing slice
    broken_uid = "1.2.826.0.1.3680043.8.498.424242"
    broken = write_stack(tmp_path, [(0.0, 0.0, z) for z in (0.0, 2.0, 4.0, 8.0, 10.0)], series_uid=broken_uid)
    instances = pa.concat_tables([index_files(axial.files), index_files(broken, root=tmp_path)])

    # When it is summarised
    summary = summarise_series(instances, run_id=RUN_ID)

    # Then the consistent series has its row, the other one its problem with its own objects only
    assert summary.series["series_uid"].to_pylist() == [axial.plan.series_uid]
    assert [(p.series_uid, p.reason) for p in summary.problems] == [(broken_uid, "series-missing-slice")]
    broken_keys = [DELIVERY + str(p.relative_to(tmp_path)) for p in broken]
    assert summary.problems[0].object_ids == tuple(sorted(object_id_of(k) for k in broken_keys))


def test_a_problem_series_quarantines_every_delivery_of_its_instances(axial: SyntheticSeries) -> None:
    # Given a series with a slice missing, one of whose slices was delivered twice
    plan = axial.plan
    kept = [f for f in axial.files if f != axial.file_of_slice(5)]
    instances = pa.concat_tables(
        [index_files(kept, delivery="incoming/d1/"), index_files(kept[:1], delivery="incoming/d2/")]
    )

    # When it is summarised, Then both deliveries of the duplicated slice are named for quarantine
    problem = only_problem(instances)
    assert len(problem.object_ids) == plan.slices - 1 + 1
    assert object_id_of(f"incoming/d2/{kept[0].name}") in problem.object_ids


# ----------------------------------------------------------------------------------------------- scale


def synthetic_instances(series: int, slices: int) -> pa.Table:
    """IMAGING_INSTANCES rows of `series` consistent oblique series, built column-wise, rows shuffled."""
    n = series * slices
    s = np.repeat(np.arange(series), slices)
    k = np.tile(np.arange(slices), series)
    tilt = np.radians(np.repeat(np.linspace(-15.0, 15.0, series), slices))
    column = np.stack([np.zeros(n), np.cos(tilt), np.sin(tilt)], axis=1)
    row = np.tile([1.0, 0.0, 0.0], (n, 1))
    normal = np.cross(row, column)
    spacing = np.repeat(np.linspace(1.0, 5.0, series), slices)
    position = np.stack([-100.0 + s, -100.0 + 0 * s, -50.0 + 0 * s], axis=1) + normal * (k * spacing)[:, None]

    def lists(values: np.ndarray) -> pa.Array:
        offsets = pa.array(np.arange(0, values.size + 1, values.shape[1], dtype=np.int32))
        return pa.ListArray.from_arrays(offsets, pa.array(values.ravel()), type=FLOAT_LIST)

    def joined(*parts: pa.Array) -> pa.Array:
        return pc.binary_join_element_wise(*parts, "")

    of_series = pa.array(s)
    text = pa.array([f"1.2.826.0.1.3680043.8.498.9.{i}" for i in range(series)]).take(of_series)
    slice_text = pa.array(k.astype(str))
    dot, slash = pa.array(["."] * n), pa.array(["/"] * n)
    columns = {
        "patient_id": pa.array([f"P{i}" for i in range(series)]).take(of_series),
        "study_uid": text,
        "series_uid": text,
        "sop_uid": joined(text, dot, slice_text),
        "sop_class_uid": pa.array(["1.2.840.10008.5.1.4.1.1.4"] * n),
        "modality": pa.array(["MR"] * n),
        "body_part": pa.nulls(n, pa.string()),
        "study_date": pa.nulls(n, pa.date32()),
        "series_description": pa.nulls(n, pa.string()),
        "instance_number": pa.array(k + 1, pa.int32()),
        "rows": pa.array(np.full(n, 256), pa.int32()),
        "columns": pa.array(np.full(n, 256), pa.int32()),
        "number_of_frames": pa.array(np.ones(n), pa.int32()),
        "pixel_spacing": lists(np.full((n, 2), 0.9)),
        "slice_thickness": pa.array(spacing),
        "image_orientation": lists(np.concatenate([row, column], axis=1)),
        "image_position": lists(position),
        "frame_of_reference_uid": text,
        "transfer_syntax_uid": pa.array(["1.2.840.10008.1.2.1"] * n),
        "bits_allocated": pa.array(np.full(n, 16), pa.int32()),
        "photometric_interpretation": pa.array(["MONOCHROME2"] * n),
        "rescale_slope": pa.array(np.ones(n)),
        "rescale_intercept": pa.array(np.zeros(n)),
        "file_size": pa.array(np.full(n, 140_000), pa.int64()),
        "source_key": joined(pa.array(["incoming/d/"] * n), text, slash, slice_text),
        "object_id": joined(text, pa.array(["#"] * n), slice_text),
        "run_id": pa.array([RUN_ID] * n),
    }
    table = pa.Table.from_arrays([columns[f.name] for f in IMAGING_INSTANCES], schema=IMAGING_INSTANCES)
    return table.take(pa.array(np.random.default_rng(3).permutation(n)))


def test_thousands_of_series_are_summarised_in_well_under_seconds() -> None:
    # Given 2,000 oblique series of 50 slices (100,000 instances) in random order, 3 of them broken
    instances = synthetic_instances(2_000, 50)
    series_uid = instances["series_uid"]
    broken = [f"1.2.826.0.1.3680043.8.498.9.{i}" for i in (5, 500, 1500)]
    # drop one middle slice of each broken series
    middle = pc.and_(pc.is_in(series_uid, pa.array(broken)), pc.equal(instances["instance_number"], 25))
    instances = instances.filter(pc.invert(middle))

    # When it is summarised
    started = time.perf_counter()
    summary = summarise_series(instances, run_id=RUN_ID)
    elapsed = time.perf_counter() - started

    # Then every consistent series has its row, each broken one its problem, in well under the time budget
    assert summary.series.num_rows == 1_997
    assert sorted(p.series_uid for p in summary.problems) == sorted(broken)
    assert {p.reason for p in summary.problems} == {"series-missing-slice"}
    spacing = dict(
        zip(
            summary.series["series_uid"].to_pylist(), summary.series["slice_spacing"].to_pylist(), strict=True
        )
    )
    assert spacing["1.2.826.0.1.3680043.8.498.9.0"] == pytest.approx(1.0)
    assert spacing["1.2.826.0.1.3680043.8.498.9.1999"] == pytest.approx(5.0)
    assert elapsed < 5.0, f"{elapsed:.2f} s"
