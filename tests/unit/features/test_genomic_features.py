"""features.genomic: P/LP alleles per gene, risk-allele dosages, APOE; zeros with a VCF, no row without one."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from mmhealth import modality
from mmhealth.contracts import ManifestFile, S3Object
from mmhealth.features.genomic import (
    GenomicFeatureConfig,
    features_schema,
    gene_column,
    genomic_features,
    is_pathogenic,
)
from mmhealth.genomic.importer import convert_vcf
from mmhealth.genomic.tables import CLINVAR, OWNERS, SAMPLES, VARIANTS
from mmhealth.lakehouse.catalog import read_table, replace_rows
from mmhealth.lakehouse.clinical_tables import CLINICAL_TABLES
from mmhealth.lakehouse.schemas import GENOMIC_CLINVAR, GENOMIC_SAMPLES, GENOMIC_VARIANTS
from mmhealth.lakehouse.versions import OwnedByKey
from mmhealth.training import featurize
from mmpipe.synth import generate_cohort
from tests.unit.genomic.vcf_files import genotype_vcf, write_vcf_file

LINEAGE = {"source_key": "incoming/d1/x.vcf.gz", "object_id": "0123456789abcdef", "run_id": "run-1"}
PATHOGENIC_COLUMNS = ("pathogenic_burden", "pathogenic_genes", "ldlr_pathogenic_alleles")


def call(
    sample: str, chrom: str, pos: int, ref: str, alt: str, zygosity: str = "heterozygous", **extra: Any
) -> dict[str, Any]:
    genotype = {"heterozygous": "0/1", "homozygous": "1/1", "hemizygous": "1"}[zygosity]
    row = {"sample_id": sample, "chrom": chrom, "pos": pos, "ref": ref, "alt": alt, "variant_id": None}
    row |= {"filter": "PASS", "genotype": genotype, "zygosity": zygosity, **LINEAGE}
    return row | extra


def annotation(
    chrom: str, pos: int, ref: str, alt: str, gene: str | None, significance: str
) -> dict[str, Any]:
    return {
        "chrom": chrom, "pos": pos, "ref": ref, "alt": alt, "variation_id": "1", "gene": gene,
        "clinical_significance": significance, "review_status": "criteria_provided,_single_submitter",
        **LINEAGE,
    }  # fmt: skip


def variants(*rows: dict[str, Any]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=GENOMIC_VARIANTS)


def clinvar(*rows: dict[str, Any]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=GENOMIC_CLINVAR)


def samples(*ids: str) -> pa.Table:
    rows = [{"sample_id": s, "vcf_records": 10, "variant_rows": 0, **LINEAGE} for s in ids]
    return pa.Table.from_pylist(rows, schema=GENOMIC_SAMPLES)


def by_patient(table: pa.Table) -> dict[str, dict[str, Any]]:
    return {row["patient_id"]: row for row in table.to_pylist()}


# ClinVar-style annotations: LDLR and GLA (chrX) pathogenic, PCSK9 conflicting, a two-gene P allele, and a
# LP allele without a gene
LDLR_P = annotation("chr19", 11_113_410, "G", "A", "LDLR", "Pathogenic")
LDLR_LP = annotation("chr19", 11_113_500, "C", "T", "LDLR", "Likely_pathogenic")
GLA_P = annotation("chrX", 101_400_000, "G", "A", "GLA", "Pathogenic/Likely_pathogenic")
PCSK9_CONFLICT = annotation(
    "chr1", 55_051_215, "A", "T", "PCSK9", "Conflicting_classifications_of_pathogenicity"
)
TWO_GENES_P = annotation("chr17", 43_045_705, "T", "C", "BRCA1|NBR2", "Pathogenic")
NO_GENE_LP = annotation("chr2", 2_000, "G", "T", None, "Likely_pathogenic")
ANNOTATIONS = clinvar(LDLR_P, LDLR_LP, GLA_P, PCSK9_CONFLICT, TWO_GENES_P, NO_GENE_LP)


def test_pathogenic_alleles_count_by_zygosity() -> None:
    # Given a heterozygote, a homozygote and a compound heterozygote of LDLR, a hemizygous GLA carrier, and a
    # carrier of an allele ClinVar gives two genes, and one of an allele it gives none
    table = variants(
        call("het", "chr19", 11_113_410, "G", "A"),
        call("hom", "chr19", 11_113_410, "G", "A", "homozygous"),
        call("compound", "chr19", 11_113_410, "G", "A"),
        call("compound", "chr19", 11_113_500, "C", "T"),
        call("hemi", "chrX", 101_400_000, "G", "A", "hemizygous"),
        call("two-genes", "chr17", 43_045_705, "T", "C"),
        call("no-gene", "chr2", 2_000, "G", "T"),
    )

    # When the features are computed
    rows = by_patient(genomic_features(table, ANNOTATIONS, samples("het", "hom", "compound", "hemi")))

    # Then homozygous counts 2, heterozygous and hemizygous 1; each gene of an allele is a gene hit
    # (the variant rows alone make two-genes and no-gene VCF samples)
    got = {
        p: (r["ldlr_pathogenic_alleles"], r["gla_pathogenic_alleles"], r["pathogenic_burden"])
        for p, r in rows.items()
    }
    assert got == {
        "het": (1, 0, 1),
        "hom": (2, 0, 2),
        "compound": (2, 0, 2),
        "hemi": (0, 1, 1),
        "two-genes": (0, 0, 1),
        "no-gene": (0, 0, 1),
    }
    assert {p: r["pathogenic_genes"] for p, r in rows.items()} == {
        "het": 1, "hom": 1, "compound": 1, "hemi": 1, "two-genes": 2, "no-gene": 0,
    }  # fmt: skip


def test_non_pass_calls_and_conflicting_or_benign_annotations_do_not_count() -> None:
    # Given LowQual calls of a pathogenic allele and of APOE e4, and PASS calls of a conflicting and a benign
    # allele ('.' is stored as PASS by the importer, so only real filter names fail)
    benign = annotation("chr19", 11_120_000, "A", "G", "LDLR", "Benign")
    table = variants(
        call("S1", "chr19", 11_113_410, "G", "A", "homozygous", filter="LowQual"),
        call("S1", "chr19", 44_908_684, "T", "C", variant_id="rs429358", filter="LowQual;q10"),
        call("S1", "chr1", 55_051_215, "A", "T"),
        call("S1", "chr19", 11_120_000, "A", "G", "homozygous"),
    )

    # When the features are computed
    (row,) = genomic_features(table, clinvar(*ANNOTATIONS.to_pylist(), benign), samples("S1")).to_pylist()

    # Then nothing counts
    assert (row["pathogenic_burden"], row["pathogenic_genes"], row["pcsk9_pathogenic_alleles"]) == (0, 0, 0)
    assert (row["ldlr_pathogenic_alleles"], row["apoe_e4_dosage"]) == (0, 0)


@pytest.mark.parametrize(
    ("significance", "counts"),
    [
        ("Pathogenic", True),
        ("Likely_pathogenic", True),
        ("Pathogenic/Likely_pathogenic", True),
        ("likely pathogenic", True),
        ("LIKELY_PATHOGENIC", True),
        ("Pathogenic|risk_factor", True),
        ("Pathogenic,_low_penetrance", True),
        ("Pathogenic/Likely_pathogenic/Pathogenic,_low_penetrance", True),
        ("Conflicting_classifications_of_pathogenicity", False),
        ("Conflicting_interpretations_of_pathogenicity", False),
        ("Pathogenic|Conflicting_classifications_of_pathogenicity", False),
        ("Benign/Likely_pathogenic", False),
        ("Uncertain_significance", False),
        ("Likely_benign", False),
        ("risk_factor", False),
        ("drug_response", False),
        ("", False),
    ],
)
def test_clinvar_significance_spellings(significance: str, counts: bool) -> None:
    assert is_pathogenic(significance) is counts


def test_apoe_dosages_from_rs429358_and_rs7412() -> None:
    # Given the five common APOE genotypes; the e2/e4 carrier's callset names chromosomes without "chr"
    # and the e4/e4 one is on GRCh37 coordinates (matched by rsID), the e3/e4 one has no rsIDs (by position)
    table = variants(
        call("e4/e4", "19", 45_411_941, "T", "C", "homozygous", variant_id="rs429358"),
        call("e3/e4", "chr19", 44_908_684, "T", "C"),
        call("e2/e4", "19", 44_908_684, "T", "C", variant_id="rs429358"),
        call("e2/e4", "19", 44_908_822, "C", "T", variant_id="rs7412"),
        call("e2/e3", "chr19", 44_908_822, "C", "T", variant_id="rs7412;COSV1"),
        # another ALT at the e4 site is not e4
        call("e3/e3", "chr19", 44_908_684, "T", "G", variant_id="rs429358"),
    )

    # When the features are computed
    rows = by_patient(genomic_features(table, ANNOTATIONS, samples("e3/e3")))

    # Then the dosages and genotype follow the haplotypes
    got = {
        p: (r["apoe_e4_dosage"], r["apoe_e2_dosage"], r["apoe_e4_carrier"], r["apoe_genotype"])
        for p, r in rows.items()
    }
    assert got == {
        "e4/e4": (2, 0, 1, "e4/e4"),
        "e3/e4": (1, 0, 1, "e3/e4"),
        "e2/e4": (1, 1, 1, "e2/e4"),
        "e2/e3": (0, 1, 0, "e2/e3"),
        "e3/e3": (0, 0, 0, "e3/e3"),
    }


def test_risk_alleles_by_rsid_or_position() -> None:
    # Given a factor V Leiden homozygote, 9p21 and LPA carriers, and a duplicate call from a second callset
    table = variants(
        call("S1", "chr1", 169_549_811, "C", "T", "homozygous", variant_id="rs6025"),
        call("S1", "chr9", 22_125_504, "C", "G"),
        call("S1", "chr9", 22_125_504, "C", "G", source_key="incoming/d2/again.vcf.gz"),
        call("S2", "chr6", 160_589_086, "A", "G", "homozygous", variant_id="rs10455872"),
        call("S2", "chr6", 41_161_514, "C", "T", variant_id="rs75932628"),
    )

    # When the features are computed
    rows = by_patient(genomic_features(table, None, samples("S1", "S2")))

    # Then each risk allele gets its dosage, the duplicate counts once, and carriers are flagged
    columns = ("f5_leiden_dosage", "f5_leiden_carrier", "chr9p21_rs1333049_dosage", "lpa_rs10455872_dosage")
    assert [rows[p][c] for p in ("S1", "S2") for c in columns] == [2, 1, 1, 0, 0, 0, 0, 2]
    assert (rows["S2"]["trem2_r47h_dosage"], rows["S2"]["trem2_r47h_carrier"]) == (1, 1)


def test_a_vcf_without_hits_gives_zeros_and_no_vcf_gives_no_row() -> None:
    # Given S0 genotyped with no ALT allele at all (a genomic.samples row, no variant row), S1 with only a
    # variant ClinVar does not know, and a patient without any VCF (in no genomic table)
    table = variants(call("S1", "chr2", 1_000, "A", "C"))

    # When the features are computed
    features = genomic_features(table, ANNOTATIONS, samples("S0", "S1"))

    # Then both VCF samples have zeros in every count (e3/e3 for APOE) and nobody else has a row
    assert features.schema == features_schema()
    assert features["patient_id"].to_pylist() == ["S0", "S1"]
    for row in features.to_pylist():
        counts = {k: v for k, v in row.items() if k not in ("patient_id", "apoe_genotype")}
        assert set(counts.values()) == {0}, row
        assert row["apoe_genotype"] == "e3/e3"


def test_samples_known_only_from_variant_rows_still_get_a_row() -> None:
    # Given a lakehouse loaded before genomic.samples existed (no samples table)
    table = variants(call("S1", "chr19", 11_113_410, "G", "A"))

    # When the features are computed, Then S1 (a VCF sample by its rows) has its row
    assert by_patient(genomic_features(table, ANNOTATIONS, None))["S1"]["ldlr_pathogenic_alleles"] == 1
    # And with no genomic data at all there are no rows
    assert genomic_features(None, None, None).num_rows == 0


def test_pathogenic_columns_are_missing_without_clinvar_but_risk_alleles_are_not() -> None:
    table = variants(call("S1", "chr19", 44_908_684, "T", "C", variant_id="rs429358"))

    (row,) = genomic_features(table, None, samples("S1")).to_pylist()

    assert [row[c] for c in PATHOGENIC_COLUMNS] == [None, None, None]
    assert row["apoe_e4_dosage"] == 1


def test_configured_genes_and_large_string_inputs() -> None:
    # Given a config naming a hyphenated gene, and inputs with large_string columns (as pyiceberg reads them)
    config = GenomicFeatureConfig(genes=("LDLR", "CDKN2B-AS1"), risk_alleles=())
    table = variants(call("S1", "chr19", 11_113_410, "G", "A", "homozygous"))
    large = pa.schema(
        [f.with_type(pa.large_string()) if f.type == pa.string() else f for f in GENOMIC_VARIANTS]
    )

    # When the features are computed
    features = genomic_features(table.cast(large), ANNOTATIONS, samples("S1"), config)

    # Then exactly the configured columns are there
    assert gene_column("CDKN2B-AS1") in features.column_names
    assert "f5_leiden_dosage" not in features.column_names
    assert features.to_pylist()[0]["ldlr_pathogenic_alleles"] == 2


def test_bad_config_and_inputs_are_rejected_with_the_reason() -> None:
    with pytest.raises(ValueError, match="same column twice"):
        GenomicFeatureConfig(genes=("LDLR", "ldlr"))
    with pytest.raises(ValueError, match=r"genomic\.variants: missing column\(s\) \['zygosity'\]"):
        genomic_features(variants().drop_columns(["zygosity"]), None, None)


def test_vcf_sample_without_alt_alleles_is_recorded_by_the_import_and_gets_zeros(tmp_path: Path) -> None:
    # Given a real 3-sample VCF: S1 carries the LDLR allele, S2 only reference calls, S3 only no-calls
    records = [
        "19\t11113410\t.\tG\tA\t50\tPASS\t.\tGT\t0/1\t0/0\t./.",
        "19\t44908684\trs429358\tT\tC\t50\tPASS\t.\tGT\t0/0\t0/0\t./.",
    ]
    text = genotype_vcf(records).replace(
        "##contig=<ID=1,", "##contig=<ID=19,length=58617616>\n##contig=<ID=1,"
    )
    path = write_vcf_file(tmp_path, text, "trio.vcf.gz")
    file = ManifestFile(
        object=S3Object(bucket="landing", key="incoming/d1/trio.vcf.gz", etag="e1"), kind="genomic"
    )

    # When the importer converts it and the features are computed
    tables = convert_vcf(file, path, "run-1").tables
    features = by_patient(genomic_features(tables[VARIANTS], ANNOTATIONS, tables[SAMPLES]))

    # Then genomic.samples names every sample with its variant rows, and all three have features
    assert tables[SAMPLES].select(["sample_id", "vcf_records", "variant_rows"]).to_pylist() == [
        {"sample_id": "S1", "vcf_records": 2, "variant_rows": 1},
        {"sample_id": "S2", "vcf_records": 2, "variant_rows": 0},
        {"sample_id": "S3", "vcf_records": 2, "variant_rows": 0},
    ]
    assert {p: r["ldlr_pathogenic_alleles"] for p, r in features.items()} == {"S1": 1, "S2": 0, "S3": 0}


# ---------------------------------------------------------------------------------------------------------
# A generated cohort, through the real VCF readers
# ---------------------------------------------------------------------------------------------------------

# 16 patients, seed 7: 14 VCFs (one e4/e4, one e2/e4, one e3/e4), 2 patients without a genome, every APOE
# call PASS (elsewhere ~4% of the generator's risk calls are LowQual, which the features rightly drop).
COHORT_PATIENTS, COHORT_SEED = 16, 7
PLANTED_PATHOGENIC = (
    "PSEN1_synthetic", "LDLR_synthetic", "PCSK9_synthetic_gof", "APOB_R3527Q", "F5_Leiden", "NOTCH3_synthetic",
    "HTRA1_synthetic",
)  # fmt: skip  # the risk variants the annotation VCF calls (Likely) Pathogenic; nothing else it calls so


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, pa.Table], dict[str, dict[str, Any]]]:
    out = tmp_path_factory.mktemp("genomic-cohort") / "delivery"
    generate_cohort(out, patients=COHORT_PATIENTS, seed=COHORT_SEED, modalities={"genomic"})
    parts: dict[str, list[pa.Table]] = {}
    for path in sorted((out / "genomic").glob("*.vcf.gz")):
        kind = "annotation" if path.name.startswith("clinvar") else "genomic"
        obj = S3Object(bucket="landing", key=f"incoming/d1/genomic/{path.name}", etag=path.stem)
        for name, table in convert_vcf(ManifestFile(object=obj, kind=kind), path, "run-1").tables.items():
            parts.setdefault(name, []).append(table)
    truth = json.loads((out / ".truth" / "truth.json").read_text(encoding="utf-8"))
    return {n: pa.concat_tables(t) for n, t in parts.items()}, {p["id"]: p for p in truth["patients"]}


def test_generated_cohort_recovers_the_planted_genotypes(
    cohort: tuple[dict[str, pa.Table], dict[str, dict[str, Any]]],
) -> None:
    tables, truth = cohort
    apoe = tables[VARIANTS].filter(pc.is_in(tables[VARIANTS]["variant_id"], pa.array(["rs429358", "rs7412"])))
    assert set(apoe["filter"].to_pylist()) == {"PASS"}  # the premise of an exact match

    features = by_patient(genomic_features(tables[VARIANTS], tables[CLINVAR], tables[SAMPLES]))

    with_genome = {p for p, t in truth.items() if t["genome"] is not None}
    assert set(features) == with_genome
    assert len(with_genome) < len(truth)  # and the patients without a VCF have no row
    for patient in with_genome:
        signals = truth[patient]["signals"]
        row = features[patient]
        assert row["apoe_e4_dosage"] == signals["apoe_e4_dosage"], patient
        assert row["apoe_e2_dosage"] == signals["apoe_e2_dosage"], patient
        assert row["apoe_genotype"] == signals["apoe_genotype"], patient
        dosages = signals["risk_variant_dosages"]
        assert row["pathogenic_burden"] == sum(dosages[k] for k in PLANTED_PATHOGENIC), patient
        assert row["f5_leiden_dosage"] == dosages["F5_Leiden"], patient
        assert row["lpa_rs10455872_dosage"] == dosages["LPA_rs10455872"], patient
        assert row["chr9p21_rs1333049_dosage"] == dosages["CDKN2B-AS1_rs1333049"], patient
    assert {r["apoe_e4_dosage"] for r in features.values()} == {0, 1, 2}
    assert any(r["pathogenic_burden"] for r in features.values())


def test_a_genomic_only_run_rebuilds_features_genomic_in_the_lakehouse(
    aws: SimpleNamespace, cohort: tuple[dict[str, pa.Table], dict[str, dict[str, Any]]]
) -> None:
    # Given a run that committed only the cohort's genomic tables (the Genomic Catalog step's commits)
    tables, truth = cohort
    commits = modality.commit_tables("run-g", "genomic", OWNERS, tables)
    branch = {"modality": "genomic", "commits": [c.model_dump() for c in commits]}
    assert {c.table for c in commits} == {VARIANTS, SAMPLES, CLINVAR}

    # When the Features step runs before any Patient resource arrived
    alone = featurize.rebuild_features("run-g", [branch])
    # Then every sample is listed as unlinked and gives no features (never guessed)
    samples = sorted(set(tables[SAMPLES]["sample_id"].to_pylist()))
    assert alone["genomic_patients"] == 0
    assert alone["unlinked"]["vcf_sample"]["count"] == len(samples)

    # When the samples' Patients (sample id = Patient.id, as the cohort writes them) are in the lake too
    patients = pa.Table.from_pylist(
        [{"resource_id": s, "patient_id": s, "source_position": 0, "source_key": "k", "object_id": "o",
          "run_id": "run-p"} for s in samples],
        schema=CLINICAL_TABLES["clinical.patient"],
    )  # fmt: skip
    replace_rows("clinical.patient", patients, "run-p", OwnedByKey("resource_id"))
    result = featurize.rebuild_features("run-g2", [branch])

    # Then it rebuilt features.genomic: one row per VCF sample, as the pure function computes it
    expected = genomic_features(tables[VARIANTS], tables[CLINVAR], tables[SAMPLES])
    assert (
        result["genomic_patients"]
        == expected.num_rows
        == sum(t["genome"] is not None for t in truth.values())
    )
    back = read_table("features.genomic")
    assert back is not None
    # (Iceberg has no int8: dosages and flags come back wider)
    assert back.select(expected.column_names).sort_by("patient_id").cast(expected.schema).equals(expected)
    # And a run whose genomic branch committed nothing does not rebuild
    assert featurize.rebuild_features("run-h", [{"modality": "genomic", "commits": []}])["skipped"]
