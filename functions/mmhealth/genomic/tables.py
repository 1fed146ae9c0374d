"""The genomic tables and which existing rows a newly delivered file replaces (the Catalog's commit rule).

`genomic.variants` rows are owned by their sample: a newly delivered callset for a sample replaces that
sample's previous rows (so re-delivering a VCF never doubles them). `genomic.samples` records every sample
column of every genotype VCF, so a sample that carries no ALT allele (no variant row) is still known to have
been genotyped; it is owned by sample too. `genomic.clinvar` is a release: a new annotation VCF replaces
the table (the version rule picks the newest of two delivered together).

Apart from mmhealth.genomic.importer so that the Genomic Catalog function, which commits staged rows and
reads no VCF, ships without htslib (functions/Makefile).
"""

from __future__ import annotations

from mmhealth.lakehouse.versions import OwnedByKey
from mmhealth.modality import OwnedBy

VARIANTS = "genomic.variants"
SAMPLES = "genomic.samples"
CLINVAR = "genomic.clinvar"

# A sample's callset is one version: two VCFs of one sample (in one run or across runs) keep the newer.
samples_of = OwnedByKey("sample_id")
# A ClinVar release is one version of the whole table: the newest annotation file replaces it.
OWNERS: dict[str, OwnedBy] = {
    VARIANTS: samples_of,
    SAMPLES: samples_of,
    CLINVAR: OwnedByKey("annotation_set"),
}
