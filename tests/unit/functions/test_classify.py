"""Classification of delivered objects by content, then by name."""

from __future__ import annotations

import gzip

import pytest

from mmhealth.classify import classify

VCF = b"##fileformat=VCFv4.2\n##contig=<ID=chr1,length=248956422>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
CLINVAR = (
    b"##fileformat=VCFv4.1\n"
    b'##INFO=<ID=CLNSIG,Number=.,Type=String,Description="Clinical significance">\n'
    b"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
)
DICOM = b"\x00" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00"


@pytest.mark.parametrize(
    ("key", "head", "kind"),
    [
        ("incoming/d1/p1.vcf", VCF, "genomic"),
        ("incoming/d1/p1.vcf.gz", gzip.compress(VCF), "genomic"),
        ("incoming/d1/renamed.txt", gzip.compress(VCF), "genomic"),  # content wins over the name
        ("incoming/d1/annotations.vcf.gz", gzip.compress(CLINVAR), "annotation"),  # by its INFO header
        ("incoming/d1/clinvar_2026.vcf.gz", gzip.compress(VCF), "annotation"),  # by its prefix
        ("incoming/d1/Patient.ndjson", b'{"resourceType":"Patient","id":"p1"}\n', "clinical"),
        ("incoming/d1/bundle.json", b'{\n  "resourceType": "Bundle",\n  "entry": [', "clinical"),
        ("incoming/d1/series/1.dcm", DICOM, "imaging"),
        ("incoming/d1/no-extension", DICOM, "imaging"),
    ],
)
def test_recognises_each_modality_by_content(key: str, head: bytes, kind: str) -> None:
    # Given the first bytes of an object / When it is classified / Then its kind follows the content
    assert classify(key, head, len(head) + 100).kind == kind


def test_truncated_gzip_vcf_is_still_genomic_so_the_importer_quarantines_it_with_the_reason() -> None:
    head = gzip.compress(VCF)[:12]
    assert classify("incoming/d1/p2.vcf.gz", head, 5000).kind == "genomic"


def test_a_zero_byte_file_of_known_name_goes_to_its_importer() -> None:
    assert classify("incoming/d1/p3.vcf.gz", b"", 0).kind == "genomic"


def test_unknown_content_and_name_is_unknown_with_a_reason() -> None:
    result = classify("incoming/d1/readme.docx", b"PK\x03\x04 binary office file", 4096)
    assert result.kind == "unknown"
    assert result.reason is not None
    assert result.reason.startswith("unrecognised-type")


def test_zero_byte_unknown_file_says_empty() -> None:
    result = classify("incoming/d1/notes", b"", 0)
    assert (result.kind, (result.reason or "").split(":")[0]) == ("unknown", "empty-file")


def test_a_partial_utf8_character_at_the_end_of_the_sniffed_window_is_tolerated() -> None:
    head = b'{"resourceType":"Patient","id":"p1","name":[{"family":"M\xc3\xbc'[:-1]
    assert classify("incoming/d1/x.unknownext", head, 10_000).kind == "clinical"
