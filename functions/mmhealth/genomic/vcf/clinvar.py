"""Pass 2 for ClinVar-style annotation VCFs: records -> `genomic.clinvar` rows."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from mmhealth.genomic.vcf.genotypes import RecordValidator, Sites, constant, take_strings
from mmhealth.genomic.vcf.htslib import HtslibLog, records
from mmhealth.genomic.vcf.layout import VcfLayout
from mmhealth.lakehouse.schemas import GENOMIC_CLINVAR, Lineage

if TYPE_CHECKING:
    from cyvcf2 import VCF

ANNOTATION_SET = "clinvar"  # genomic.clinvar.annotation_set: the table holds one release of it


# ------------------------------------------------------------------------- pass 2: ClinVar -> rows


_CLINVAR_CHUNK_ROWS = 1 << 17


def clinvar_batches(
    vcf: VCF, layout: VcfLayout, lineage: Lineage, htslib: HtslibLog
) -> Iterator[pa.RecordBatch]:
    validator = RecordValidator(layout)
    chunk = _ClinVarChunk(start=0, release=layout.file_date)

    def check_earlier_records() -> None:
        validator.check(chunk.sites)

    for index, record in records(vcf, layout, htslib, check_earlier_records):
        chunk.add(record)
        if len(chunk.sites.alts) >= _CLINVAR_CHUNK_ROWS:
            validator.check(chunk.sites)
            yield chunk.to_batch(lineage)
            chunk = _ClinVarChunk(start=index + 1, release=layout.file_date)
    validator.check(chunk.sites)
    if chunk.sites.alts:
        yield chunk.to_batch(lineage)


class _ClinVarChunk:
    def __init__(self, start: int, release: str | None) -> None:
        self.sites = Sites(start=start)
        self._release = release
        self._info: dict[str, list[str | None]] = {
            k: [] for k in ("GENEINFO", "CLNSIG", "CLNDN", "CLNREVSTAT")
        }
        self._genes: dict[str, str] = {}

    def add(self, record: Any) -> None:
        self.sites.add(record)
        info = record.INFO
        for key, values in self._info.items():
            value = info.get(key)
            values.append(None if value is None else str(value))

    def to_batch(self, lineage: Lineage) -> pa.RecordBatch:
        sites = self.sites
        rec = np.repeat(np.arange(len(sites.pos)), sites.alt_counts)
        rows = len(rec)
        genes = [None if g is None else self._gene_symbols(g) for g in self._info["GENEINFO"]]
        diseases = [None if d is None else d.replace("_", " ") for d in self._info["CLNDN"]]
        columns = [
            take_strings(sites.chrom, rec),
            pa.array(np.asarray(sites.pos, dtype=np.int64)[rec]),
            take_strings(sites.ref, rec),
            pa.array(sites.alts, type=pa.string()),
            take_strings(sites.ids, rec),
            take_strings(genes, rec),
            take_strings(self._info["CLNSIG"], rec),
            take_strings(diseases, rec),
            take_strings(self._info["CLNREVSTAT"], rec),
            pa.nulls(rows, pa.string()) if self._release is None else constant(self._release, rows),
            constant(ANNOTATION_SET, rows),
            *lineage.versioned_columns(rows),
        ]
        return pa.RecordBatch.from_arrays(columns, schema=GENOMIC_CLINVAR)

    def _gene_symbols(self, geneinfo: str) -> str:
        """'BRCA1:672|NBR2:10230' -> 'BRCA1|NBR2' (cached: a release repeats the same genes a lot)."""
        symbols = self._genes.get(geneinfo)
        if symbols is None:
            symbols = "|".join(entry.split(":", 1)[0] for entry in geneinfo.split("|"))
            self._genes[geneinfo] = symbols
        return symbols
