"""Iceberg commits: atomic per run, idempotent on replay, rows replaced by their owner."""

from __future__ import annotations

from types import SimpleNamespace

import pyarrow as pa

from mmhealth.genomic.tables import samples_of
from mmhealth.lakehouse.catalog import read_table, replace_rows
from mmhealth.lakehouse.schemas import GENOMIC_VARIANTS


def _variants(sample: str, n: int, run_id: str) -> pa.Table:
    rows = [
        {
            "sample_id": sample,
            "chrom": "chr1",
            "pos": 1000 + i,
            "ref": "A",
            "alt": "G",
            "variant_id": None,
            "qual": 50.0,
            "filter": "PASS",
            "genotype": "0/1",
            "zygosity": "heterozygous",
            "allele_depth": None,
            "read_depth": None,
            "genotype_quality": None,
            "source_key": f"incoming/d/{sample}.vcf.gz",
            "object_id": f"obj-{sample}",
            "run_id": run_id,
        }
        for i in range(n)
    ]
    return pa.Table.from_pylist(rows, schema=GENOMIC_VARIANTS)


def test_a_replayed_catalog_step_commits_nothing_twice(aws: SimpleNamespace) -> None:
    rows = _variants("P1", 5, "run-a")
    first = replace_rows("genomic.variants", rows, "run-a", samples_of)
    again = replace_rows("genomic.variants", rows, "run-a", samples_of)

    assert (first.rows_added, first.skipped) == (5, False)
    assert (again.skipped, again.snapshot_id) == (True, first.snapshot_id)
    assert read_table("genomic.variants").num_rows == 5


def test_a_redelivered_callset_replaces_the_samples_rows_and_keeps_the_others(aws: SimpleNamespace) -> None:
    replace_rows(
        "genomic.variants",
        pa.concat_tables([_variants("P1", 5, "r1"), _variants("P2", 3, "r1")]),
        "r1",
        samples_of,
    )

    commit = replace_rows("genomic.variants", _variants("P1", 4, "r2"), "r2", samples_of)

    table = read_table("genomic.variants")
    counts = {s: table.filter(pa.compute.equal(table["sample_id"], s)).num_rows for s in ("P1", "P2")}
    assert counts == {"P1": 4, "P2": 3}
    assert (commit.rows_added, commit.rows_removed) == (4, 5)


def test_a_missing_table_reads_as_none(aws: SimpleNamespace) -> None:
    assert read_table("genomic.clinvar") is None


def test_concurrent_runs_both_commit_without_losing_rows(aws: SimpleNamespace) -> None:
    # Given two runs whose catalog steps race on a table that does not exist yet
    from concurrent.futures import ThreadPoolExecutor

    runs = [(f"run-{i}", _variants(f"P{i}", 10 + i, f"run-{i}")) for i in range(4)]

    # When they commit at the same time
    with ThreadPoolExecutor(max_workers=4) as pool:
        commits = list(
            pool.map(lambda run: replace_rows("genomic.variants", run[1], run[0], samples_of), runs)
        )

    # Then every run's rows are there exactly once
    assert [c.rows_added for c in commits] == [10, 11, 12, 13]
    assert read_table("genomic.variants").num_rows == 46


def test_every_lakehouse_namespace_has_a_glue_database_the_commit_policy_grants() -> None:
    from cfnlint.decode import decode

    from mmhealth.lakehouse.catalog import NAMESPACES
    from tests.conftest import REPO

    template, _ = decode(str(REPO / "template.yaml"))
    resources = template["Resources"]
    databases = {
        name: r["Properties"]["DatabaseInput"]["Name"]["Fn::Sub"][0].removeprefix("${Prefix}")
        for name, r in resources.items()
        if r["Type"] == "AWS::Glue::Database"
    }
    assert sorted(databases.values()) == sorted(NAMESPACES)
    granted = str(resources["LakehouseCommitPolicy"]["Properties"]["PolicyDocument"])
    assert all(f"database/${{{logical}}}" in granted for logical in databases)
