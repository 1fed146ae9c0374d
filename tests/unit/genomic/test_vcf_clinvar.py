"""read_clinvar and is_annotation_header: the ClinVar-style annotation VCF (Given / When / Then)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mmhealth.errors import InvalidInputError
from mmhealth.genomic.vcf import is_annotation_header, read_clinvar
from mmhealth.lakehouse.schemas import GENOMIC_CLINVAR
from tests.unit.genomic.vcf_files import LINEAGE, genotype_vcf, write_vcf_file

# Shaped like NCBI's clinvar.vcf.gz: no ##contig lines, sites only, INFO tags it does not all declare.
CLINVAR_HEADER = """##fileformat=VCFv4.1
##fileDate=2025-01-06
##source=ClinVar
##reference=GRCh38
##ID=<Description="ClinVar Variation ID">
##INFO=<ID=ALLELEID,Number=1,Type=Integer,Description="the ClinVar Allele ID">
##INFO=<ID=CLNDN,Number=.,Type=String,Description="ClinVar's preferred disease name">
##INFO=<ID=CLNREVSTAT,Number=.,Type=String,Description="ClinVar review status">
##INFO=<ID=CLNSIG,Number=.,Type=String,Description="Aggregate germline classification">
##INFO=<ID=CLNSIGINCL,Number=.,Type=String,Description="Classification for a haplotype or genotype">
##INFO=<ID=GENEINFO,Number=1,Type=String,Description="Gene(s) for the variant reported as symbol:id">
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO
"""
CLINVAR_RECORDS = [
    "1\t69134\t2205837\tA\tG\t.\t.\tALLELEID=2193183;CLNDN=Inborn_genetic_diseases;"
    "CLNREVSTAT=criteria_provided,_single_submitter;CLNSIG=Likely_benign;GENEINFO=OR4F5:79501;ORIGIN=1",
    "17\t43045705\t55601\tT\tC,G\t.\t.\tALLELEID=70123;"
    "CLNDN=Hereditary_breast_ovarian_cancer_syndrome|not_provided;"
    "CLNREVSTAT=reviewed_by_expert_panel;CLNSIG=Pathogenic;GENEINFO=BRCA1:672|NBR2:10230",
    "19\t44908684\t17864\tT\t.\t.\t.\tALLELEID=32903;CLNSIG=risk_factor;GENEINFO=APOE:348",
    "MT\t3243\t9595\tA\tG\t.\t.\tALLELEID=24634;CLNSIGINCL=9596:Pathogenic",
]


def clinvar_text(records: list[str] = CLINVAR_RECORDS, header: str = CLINVAR_HEADER) -> str:
    return header + "".join(f"{record}\n" for record in records)


def test_one_row_per_site_and_alt_with_annotations(tmp_path: Path) -> None:
    # Given a ClinVar-style release with a two-ALT site, an ALT "." site and a site without CLNSIG
    path = write_vcf_file(tmp_path, clinvar_text(), "clinvar.vcf.gz")

    # When it is read
    table = read_clinvar(path, **LINEAGE)

    # Then each ALT is a row, genes are symbols only, disease names have spaces, review status kept
    assert table.schema.equals(GENOMIC_CLINVAR)
    assert set(table["annotation_set"].to_pylist()) == {
        "clinvar"
    }  # one owner: the release replaces the table
    lineage = {*LINEAGE, "delivered_at", "annotation_set"}
    rows = [{k: v for k, v in row.items() if k not in lineage} for row in table.to_pylist()]
    brca1 = {
        "chrom": "17",
        "pos": 43045705,
        "ref": "T",
        "variation_id": "55601",
        "gene": "BRCA1|NBR2",
        "clinical_significance": "Pathogenic",
        "disease_names": "Hereditary breast ovarian cancer syndrome|not provided",
        "review_status": "reviewed_by_expert_panel",
        "release": "2025-01-06",
    }
    assert rows == [
        {
            "chrom": "1",
            "pos": 69134,
            "ref": "A",
            "alt": "G",
            "variation_id": "2205837",
            "gene": "OR4F5",
            "clinical_significance": "Likely_benign",
            "disease_names": "Inborn genetic diseases",
            "review_status": "criteria_provided,_single_submitter",
            "release": "2025-01-06",
        },
        {**brca1, "alt": "C"},
        {**brca1, "alt": "G"},
        {
            "chrom": "MT",
            "pos": 3243,
            "ref": "A",
            "alt": "G",
            "variation_id": "9595",
            "gene": None,
            "clinical_significance": None,
            "disease_names": None,
            "review_status": None,
            "release": "2025-01-06",
        },
    ]
    assert table["source_key"].unique().to_pylist() == [LINEAGE["source_key"]]


def test_crlf_and_plain_text_releases_read_alike(tmp_path: Path) -> None:
    bgzf = read_clinvar(write_vcf_file(tmp_path, clinvar_text(), "a.vcf.gz"), **LINEAGE)

    crlf = read_clinvar(write_vcf_file(tmp_path, clinvar_text(), "b.vcf", crlf=True), **LINEAGE)

    assert crlf.to_pylist() == bgzf.to_pylist()
    assert crlf["review_status"][0].as_py() == "criteria_provided,_single_submitter"


def test_release_is_null_without_a_file_date(tmp_path: Path) -> None:
    header = CLINVAR_HEADER.replace("##fileDate=2025-01-06\n", "")

    table = read_clinvar(write_vcf_file(tmp_path, clinvar_text(header=header)), **LINEAGE)

    assert table["release"].null_count == table.num_rows == 4


def test_undeclared_info_tags_are_logged_not_fatal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Given a release using INFO/ORIGIN without declaring it (htslib warns on stderr)
    path = write_vcf_file(tmp_path, clinvar_text())

    # When it is read
    with caplog.at_level(logging.WARNING, logger="mmhealth.genomic.vcf"):
        table = read_clinvar(path, **LINEAGE)

    # Then the rows are there and the warning went to the log, naming the file
    assert table.num_rows == 4
    assert "INFO 'ORIGIN' is not defined in the header" in caplog.text
    assert LINEAGE["source_key"] in caplog.text


def test_a_broken_annotation_record_rejects_the_release(tmp_path: Path) -> None:
    records = [CLINVAR_RECORDS[0], CLINVAR_RECORDS[1].replace("43045705", "43O45705"), CLINVAR_RECORDS[2]]

    with pytest.raises(InvalidInputError) as caught:
        read_clinvar(write_vcf_file(tmp_path, clinvar_text(records)), **LINEAGE)

    assert (caught.value.reason, caught.value.line) == ("vcf-record", 14)


def test_a_genotype_vcf_is_not_an_annotation_release(tmp_path: Path) -> None:
    path = write_vcf_file(tmp_path, genotype_vcf(["1\t100\t.\tA\tG\t50\tPASS\t.\tGT\t0/1\t0/1\t0/1"]))

    with pytest.raises(InvalidInputError) as caught:
        read_clinvar(path, **LINEAGE)

    assert caught.value.reason == "vcf-header"
    assert "CLNSIG" in caught.value.detail


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (CLINVAR_HEADER.splitlines(), True),
        (CLINVAR_HEADER.splitlines(keepends=True), True),
        (CLINVAR_HEADER.replace("\n", "\r\n").splitlines(keepends=True), True),
        (["##fileformat=VCFv4.2", '##INFO=<ID=GENEINFO,Number=1,Type=String,Description="g">'], True),
        (["##fileformat=VCFv4.2", '##INFO=<Number=.,ID=CLNSIG,Type=String,Description="s">'], True),
        (genotype_vcf([]).splitlines(), False),
        (["##fileformat=VCFv4.2", '##INFO=<ID=CLNSIGINCL,Number=.,Type=String,Description="x">'], False),
        (["##fileformat=VCFv4.2", '##FORMAT=<ID=CLNSIG,Number=1,Type=String,Description="x">'], False),
        # the trigger passes the first few KB: a cut last line, records after #CHROM are not header
        ([*CLINVAR_HEADER.splitlines()[:3], "##INFO=<ID=CLN"], False),
        (["#CHROM\tPOS", '##INFO=<ID=CLNSIG,Number=.,Type=String,Description="x">'], False),
        ([], False),
    ],
)
def test_is_annotation_header(lines: list[str], expected: bool) -> None:
    assert is_annotation_header(lines) is expected
