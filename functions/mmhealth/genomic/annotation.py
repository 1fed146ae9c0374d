"""Whether a VCF is a ClinVar-style annotation VCF rather than a callset, from its header alone.

Outside the mmhealth.genomic.vcf package (whose reader needs htslib, numpy and Arrow): the Trigger classifies
every delivered file with it and ships the core set only (functions/Makefile).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

ANNOTATION_INFO = re.compile(r"^##INFO=<(?:.*,)?ID=(?:CLNSIG|GENEINFO)[,>]")


def is_annotation_header(header_lines: Iterable[str]) -> bool:
    """True when the header declares INFO CLNSIG or GENEINFO (a ClinVar-style annotation VCF).

    Reads lines up to `#CHROM`; a partial last line (the caller passes the first few KB) is harmless.
    """
    for line in header_lines:
        if line.startswith("#CHROM") or not line.startswith("#"):
            return False
        if ANNOTATION_INFO.match(line):
            return True
    return False
