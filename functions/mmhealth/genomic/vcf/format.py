"""What the VCF format and htslib say that the reader needs: fixed columns, allele grammar, sentinels."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    pass


FIXED_COLUMNS = ("#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO")
ZYGOSITIES = ("heterozygous", "homozygous", "hemizygous")
HET, HOM, HEMI = 0, 1, 2

# htslib's int32 sentinels: INT32_MIN is a missing value ('.'), the next one pads a short vector.
INT32_VECTOR_END = np.int32(-(2**31) + 1)
# Decoded GT alleles: -1 for a missing allele ('.'), -2 for the padding after a lower ploidy's last copy.
GT_MISSING, GT_PAD = -1, -2

TAB, LF, CR = 9, 10, 13
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
READ_SIZE = 1 << 20
# A chunk of records becomes one RecordBatch: bounds memory on large multi-sample files.
CHUNK_GENOTYPES = 1 << 20
CHUNK_RECORDS = 1 << 16

UNDECLARED_CONTIG = re.compile(r"Contig '.*' is not defined in the header")
META_LINE = re.compile(r"##([A-Za-z0-9_.\-]+)=(.*)")
STRUCTURED_ID = re.compile(r"[<,]ID=([^,>]+)")
# REF: the spec's A/C/G/T/N plus the IUPAC codes that reference assemblies themselves contain.
REF_ALLELE = re.compile(r"[ACGTNRYKMSWBDHVacgtnrykmswbdhv]+")
# ALT: bases, the '*' overlapping deletion, a symbolic <ID>, or a breakend (paired or single).
ALT_ALLELE = re.compile(
    r"[ACGTNacgtn]+|\*|<[^<>,\s]+>"
    r"|[ACGTNacgtn]*[\[\]][^\[\]:\s]+:\d+[\[\]][ACGTNacgtn]*"
    r"|\.[ACGTNacgtn]+|[ACGTNacgtn]+\."
)
