"""Pass 2 for genotype VCFs: records -> `genomic.variants` rows, checked and expanded on whole chunks with
numpy (multi-allelic split, zygosity, AD of the carried ALT)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from mmhealth.errors import InvalidInputError
from mmhealth.genomic.vcf.format import (
    ALT_ALLELE,
    CHUNK_GENOTYPES,
    CHUNK_RECORDS,
    GT_MISSING,
    GT_PAD,
    HEMI,
    HET,
    HOM,
    INT32_VECTOR_END,
    REF_ALLELE,
    ZYGOSITIES,
)
from mmhealth.genomic.vcf.htslib import HtslibLog, records
from mmhealth.genomic.vcf.layout import VcfLayout
from mmhealth.lakehouse.schemas import GENOMIC_VARIANTS, Lineage

if TYPE_CHECKING:
    from cyvcf2 import VCF


# ---------------------------------------------------------------------- pass 2: genotypes -> rows


def constant(value: str, rows: int) -> pa.Array:
    return pa.array([value], type=pa.string()).take(pa.array(np.zeros(rows, dtype=np.int32)))


_NUMERIC_TYPES = {"Integer", "Float"}
_NO_LIMIT = 2**62  # contig without a declared length


def wanted_format_fields(layout: VcfLayout) -> tuple[str, ...]:
    """AD, DP, GQ when declared numeric: an undeclared tag is parsed by htslib as a string."""
    return tuple(tag for tag in ("AD", "DP", "GQ") if layout.format_types.get(tag) in _NUMERIC_TYPES)


def genotype_batches(
    vcf: VCF, layout: VcfLayout, wanted: tuple[str, ...], lineage: Lineage, htslib: HtslibLog
) -> Iterator[pa.RecordBatch]:
    samples = len(layout.samples)
    per_chunk = max(1, min(CHUNK_RECORDS, CHUNK_GENOTYPES // samples))
    validator = RecordValidator(layout)
    chunk = _GenotypeChunk(layout, wanted, start=0)

    def check_earlier_records() -> None:
        chunk.check(validator)

    for index, record in records(vcf, layout, htslib, check_earlier_records):
        chunk.add(record)
        if len(chunk.sites.pos) >= per_chunk:
            chunk.check(validator)
            yield chunk.to_batch(lineage)
            chunk = _GenotypeChunk(layout, wanted, start=index + 1)
    chunk.check(validator)
    if chunk.sites.pos:
        yield chunk.to_batch(lineage)


@dataclass
class Sites:
    """Per-record columns of a chunk of records (one entry per record, ALTs flattened)."""

    start: int  # index of the chunk's first record in the file
    chrom: list[str] = field(default_factory=list)
    pos: list[int] = field(default_factory=list)
    ids: list[str | None] = field(default_factory=list)
    ref: list[str] = field(default_factory=list)
    qual: list[float | None] = field(default_factory=list)
    filters: list[str] = field(default_factory=list)
    alts: list[str] = field(default_factory=list)  # every record's ALTs, concatenated
    alt_counts: list[int] = field(default_factory=list)

    def add(self, record: Any) -> None:
        self.chrom.append(record.CHROM)
        self.pos.append(record.POS)
        self.ids.append(record.ID)
        self.ref.append(record.REF)
        self.qual.append(record.QUAL)
        filters = record.FILTER
        self.filters.append("PASS" if filters is None else filters)  # cyvcf2: None for PASS and '.'
        alts = record.ALT
        self.alts.extend(alts)
        self.alt_counts.append(len(alts))


class RecordValidator:
    """What htslib accepts without complaint but the lakehouse must not: checked per chunk."""

    def __init__(self, layout: VcfLayout) -> None:
        self._layout = layout
        self._good_refs: set[str] = set()
        self._good_alts: set[str] = set()

    def check(self, sites: Sites, alleles: npt.NDArray[np.int32] | None = None) -> None:
        """Raise vcf-record for the earliest offending record of the chunk, if any.

        `alleles` are the chunk's genotypes, (records, samples, ploidy) as `_stack_genotypes` makes them.
        """
        checks = (
            self._pos(sites),
            self._contig(sites),
            self._beyond_contig(sites),
            self._alleles(sites),
            _allele_index(sites, alleles),
        )
        found = [problem for problem in checks if problem is not None]
        if found:
            index, detail = min(found)
            raise InvalidInputError("vcf-record", detail, line=self._layout.first_record_line + index)

    def _pos(self, sites: Sites) -> tuple[int, str] | None:
        if not sites.pos or min(sites.pos) >= 1:
            return None
        index = next(i for i, pos in enumerate(sites.pos) if pos < 1)
        return sites.start + index, f"POS {sites.pos[index]} is not a 1-based position"

    def _contig(self, sites: Sites) -> tuple[int, str] | None:
        undeclared = set(sites.chrom) - self._layout.contigs if self._layout.contigs else set()
        if not undeclared:
            return None
        index = min(sites.chrom.index(name) for name in undeclared)
        return sites.start + index, f"contig {sites.chrom[index]!r} is not declared in the header"

    def _beyond_contig(self, sites: Sites) -> tuple[int, str] | None:
        """POS past the declared contig length (+1, for telomeric breakends). A POS beyond 2**31 wraps in
        cyvcf2's 32-bit POS: caught only when it lands outside [1, length]."""
        lengths = self._layout.contig_lengths
        shortest = min((lengths.get(chrom, _NO_LIMIT) for chrom in set(sites.chrom)), default=_NO_LIMIT)
        if not sites.pos or max(sites.pos) <= shortest + 1:  # the usual case, without a per-record loop
            return None
        limit = np.array([lengths.get(chrom, _NO_LIMIT) for chrom in sites.chrom], dtype=np.int64) + 1
        beyond = np.flatnonzero(np.asarray(sites.pos, dtype=np.int64) > limit)
        if not len(beyond):
            return None
        index = int(beyond[0])
        return sites.start + index, f"POS is beyond the declared length of contig {sites.chrom[index]!r}"

    def _alleles(self, sites: Sites) -> tuple[int, str] | None:
        bad_refs = {r for r in set(sites.ref) - self._good_refs if not REF_ALLELE.fullmatch(r)}
        bad_alts = {a for a in set(sites.alts) - self._good_alts if not ALT_ALLELE.fullmatch(a)}
        self._good_refs.update(set(sites.ref) - bad_refs)
        self._good_alts.update(set(sites.alts) - bad_alts)
        found: list[tuple[int, str]] = []
        if bad_refs:
            index = min(sites.ref.index(r) for r in bad_refs)
            found.append((sites.start + index, "invalid REF allele (expected nucleotide letters)"))
        if bad_alts:
            alt_index = min(sites.alts.index(a) for a in bad_alts)
            index = int(np.searchsorted(np.cumsum(sites.alt_counts), alt_index, side="right"))
            found.append((sites.start + index, "invalid ALT allele"))
        return min(found) if found else None


def _allele_index(sites: Sites, alleles: npt.NDArray[np.int32] | None) -> tuple[int, str] | None:
    """A GT allele index beyond the record's ALTs, or an encoding that decodes below the padding."""
    if alleles is None or not alleles.size:
        return None
    highest = alleles.max(axis=(1, 2))
    lowest = alleles.min(axis=(1, 2))
    beyond = np.flatnonzero((highest > np.asarray(sites.alt_counts)) | (lowest < GT_PAD))
    if not len(beyond):
        return None
    index = int(beyond[0])
    if lowest[index] < GT_PAD:
        return sites.start + index, "GT allele index out of range"
    return (
        sites.start + index,
        f"GT refers to allele {int(highest[index])}; the record has {sites.alt_counts[index]} ALT(s)",
    )


class _GenotypeChunk:
    """Records of one chunk, kept as numpy arrays until `to_batch` expands them to rows."""

    def __init__(self, layout: VcfLayout, wanted: tuple[str, ...], start: int) -> None:
        self.sites = Sites(start=start)
        self._samples = layout.samples
        self._wanted = wanted
        self._gts: list[npt.NDArray[Any]] = []  # per record (samples, ploidy): BCF-encoded GT
        self._fields: dict[str, list[npt.NDArray[Any]]] = {tag: [] for tag in wanted}
        self._field_lists = [(tag, self._fields[tag]) for tag in wanted]
        self._stacked: tuple[npt.NDArray[np.int32], npt.NDArray[np.bool_]] | None = None
        # A record whose FORMAT has no GT (legal: a depth-only record) carries no calls: one missing allele.
        self._no_calls = np.zeros((len(self._samples), 1), dtype=np.int32)

    def add(self, record: Any) -> None:
        # The hot loop (once per record): cyvcf2 accessors cost ~0.5 us each, keep everything else lean.
        self.sites.add(record)
        # GT as htslib stores it, (allele + 1) << 1 | phased per copy: cheaper than record.genotype,
        # and it keeps the phase of every separator ("0|1/2"), which Genotypes.array() flattens to one.
        gts = record.format("GT", int)
        self._gts.append(self._no_calls if gts is None else gts)
        for tag, values in self._field_lists:
            array = record.format(tag)
            values.append(_ABSENT if array is None else array)
        self._stacked = None

    def check(self, validator: RecordValidator) -> None:
        """Validate the records added so far (raises vcf-record)."""
        alleles, _ = self._genotypes()
        validator.check(self.sites, alleles)

    def _genotypes(self) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.bool_]]:
        if self._stacked is None:
            self._stacked = _stack_genotypes(self._gts, len(self._samples))
        return self._stacked

    def to_batch(self, lineage: Lineage) -> pa.RecordBatch:
        """Expand to one row per record x sample x distinct ALT allele in the genotype."""
        alleles, phased = self._genotypes()
        rec, smp, copy = np.nonzero(_carried(alleles))
        allele = alleles[rec, smp, copy].astype(np.int64)
        rows = len(rec)
        sites = self.sites
        alt_start = np.concatenate([[0], np.cumsum(sites.alt_counts)[:-1]]).astype(np.int64)
        qual = pa.array(sites.qual, type=pa.float32())
        columns = [
            take_strings(self._samples, smp),
            take_strings(sites.chrom, rec),
            pa.array(np.asarray(sites.pos, dtype=np.int64)[rec]),
            take_strings(sites.ref, rec),
            take_strings(sites.alts, alt_start[rec] + allele - 1),
            take_strings(sites.ids, rec),
            qual.take(pa.array(rec)),
            take_strings(sites.filters, rec),
            _genotype_strings(alleles[rec, smp], phased[rec, smp]),
            _zygosities(alleles[rec, smp], allele),
            self._per_allele("AD", rec, smp, allele, rows),
            self._per_sample("DP", rec, smp, rows),
            self._per_sample("GQ", rec, smp, rows),
            *lineage.versioned_columns(rows),
        ]
        return pa.RecordBatch.from_arrays(columns, schema=GENOMIC_VARIANTS)

    def _per_sample(
        self, tag: str, rec: npt.NDArray[np.intp], smp: npt.NDArray[np.intp], rows: int
    ) -> pa.Array:
        """A Number=1 FORMAT field at each row's (record, sample); null when absent or '.'."""
        if tag not in self._fields:
            return pa.nulls(rows, pa.int32())
        field = _Ragged.of(self._fields[tag], len(self._samples))
        return _int32_or_null(*field.at(rec, smp, np.zeros(rows, dtype=np.int64)))

    def _per_allele(
        self,
        tag: str,
        rec: npt.NDArray[np.intp],
        smp: npt.NDArray[np.intp],
        allele: npt.NDArray[np.int64],
        rows: int,
    ) -> pa.Array:
        """A Number=R FORMAT field at each row's carried allele; null when absent, short or '.'."""
        if tag not in self._fields:
            return pa.nulls(rows, pa.int32())
        field = _Ragged.of(self._fields[tag], len(self._samples))
        return _int32_or_null(*field.at(rec, smp, allele))


_ABSENT = np.empty(0, dtype=np.int32)  # a FORMAT field the record does not carry


@dataclass(frozen=True)
class _Ragged:
    """Per-record (samples, width) arrays of varying width, flattened into one array.

    Widths vary with the number of ALTs (AD) and the ploidy (GT). numpy's per-array overhead dominates
    on thousands of tiny arrays: joining their bytes is ~4x faster than np.concatenate (and ~6x faster
    than np.stack per width). One field has one dtype (its header Type), so the bytes are homogeneous.
    """

    values: npt.NDArray[Any]
    offsets: npt.NDArray[np.int64]
    widths: npt.NDArray[np.int64]

    @classmethod
    def of(cls, arrays: list[npt.NDArray[Any]], samples: int) -> _Ragged:
        dtype = next((a.dtype for a in arrays if a.size), _ABSENT.dtype)
        raw = [a.tobytes() for a in arrays]
        sizes = np.fromiter(map(len, raw), dtype=np.int64, count=len(raw)) // dtype.itemsize
        offsets = np.zeros(len(arrays), dtype=np.int64)
        np.cumsum(sizes[:-1], out=offsets[1:])
        return cls(np.frombuffer(b"".join(raw), dtype=dtype), offsets, sizes // samples)

    def at(
        self, rec: npt.NDArray[np.intp], smp: npt.NDArray[np.intp], slot: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[Any], npt.NDArray[np.bool_]]:
        """Values at (record, sample, slot), and where the slot exists (elsewhere the value is junk)."""
        width = self.widths[rec]
        inside = slot < width
        index = np.where(inside, self.offsets[rec] + smp * width + slot, 0)
        return (self.values[index] if len(self.values) else np.zeros(len(rec), dtype=np.int32)), inside


def _stack_genotypes(
    gts: list[npt.NDArray[Any]], samples: int
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.bool_]]:
    """Decode BCF-encoded GTs to (records, samples, max ploidy) alleles (-1 missing, -2 padding) and the
    phase bit of each copy (whether the separator before it is '|')."""
    ragged = _Ragged.of(gts, samples)
    rec = np.repeat(np.arange(len(gts)), samples)
    smp = np.tile(np.arange(samples), len(gts))
    ploidy = int(ragged.widths.max(initial=1))
    alleles = np.full((len(rec), ploidy), GT_PAD, dtype=np.int32)
    phased = np.zeros((len(rec), ploidy), dtype=np.bool_)
    for copy in range(ploidy):
        encoded, inside = ragged.at(rec, smp, np.full(len(rec), copy, dtype=np.int64))
        present = inside & (encoded != INT32_VECTOR_END)
        alleles[:, copy] = np.where(present, (encoded >> 1) - 1, GT_PAD)  # 0 and 1 decode to -1: '.'
        phased[:, copy] = present & (encoded & 1 == 1)
    return alleles.reshape(len(gts), samples, ploidy), phased.reshape(len(gts), samples, ploidy)


def _carried(alleles: npt.NDArray[np.int32]) -> npt.NDArray[np.bool_]:
    """True at the first copy of each distinct ALT allele (index > 0) in a genotype."""
    carried = alleles > 0
    for copy in range(1, alleles.shape[2]):
        earlier = (alleles[:, :, :copy] == alleles[:, :, copy : copy + 1]).any(axis=2)
        carried[:, :, copy] &= ~earlier
    return carried


def _zygosities(genotypes: npt.NDArray[np.int32], allele: npt.NDArray[np.int64]) -> pa.Array:
    """hemizygous for a haploid call, homozygous when every called copy is the allele, else heterozygous."""
    copies = np.count_nonzero(genotypes != GT_PAD, axis=1)
    called = np.count_nonzero(genotypes >= 0, axis=1)
    matching = np.count_nonzero(genotypes == allele[:, None], axis=1)
    codes = np.where(copies == 1, HEMI, np.where(matching == called, HOM, HET)).astype(np.int8)
    return pa.array(ZYGOSITIES).take(pa.array(codes))


def _genotype_strings(genotypes: npt.NDArray[np.int32], phased: npt.NDArray[np.bool_]) -> pa.Array:
    """GT as written ("0|1", "1/2", "0|1/2", "1"): each distinct genotype is formatted once."""
    if not len(genotypes):
        return pa.array([], type=pa.string())
    keys = _genotype_keys(genotypes, phased)
    if keys.ndim == 1:  # packed: the first row of each distinct key stands for it
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    else:
        _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    texts = [_format_gt(genotypes[i].tolist(), phased[i].tolist()) for i in first]
    indices = pa.array(inverse.reshape(-1).astype(np.int32))
    return pa.array(texts, type=pa.string()).take(indices)


def _genotype_keys(genotypes: npt.NDArray[np.int32], phased: npt.NDArray[np.bool_]) -> npt.NDArray[Any]:
    """One int64 per genotype when it fits (a 1-D unique is ~50x faster than on rows), else the rows."""
    copies = genotypes.shape[1]
    base = int(genotypes.max()) + 3  # alleles are >= -2
    if base**copies * 2**copies >= 2**62:
        return np.concatenate([genotypes, phased.astype(np.int32)], axis=1)
    weights = base ** np.arange(copies, dtype=np.int64)
    bits = 2 ** np.arange(copies, dtype=np.int64)
    return ((genotypes + 2).astype(np.int64) @ weights) * 2**copies + phased.astype(np.int64) @ bits


def _format_gt(alleles: list[int], phased: list[bool]) -> str:
    text = ""
    for copy, (allele, bar) in enumerate(zip(alleles, phased, strict=True)):
        if allele == GT_PAD:
            break
        separator = ("|" if bar else "/") if copy else ""
        text += separator + ("." if allele == GT_MISSING else str(allele))
    return text


def take_strings(values: list[str] | list[str | None], indices: npt.NDArray[Any]) -> pa.Array:
    return pa.array(values, type=pa.string()).take(pa.array(indices))


def _int32_or_null(values: npt.NDArray[Any], present: npt.NDArray[np.bool_]) -> pa.Array:
    """int32 Arrow array, null where not `present` or where htslib left its missing/end sentinel."""
    if values.dtype.kind == "f":  # a field declared Float: NaN is htslib's missing value
        present = present & ~np.isnan(values)
        values = np.rint(np.where(present, values, 0))
    else:
        present = present & (values > INT32_VECTOR_END)
    return pa.array(np.where(present, values, 0).astype(np.int32), mask=~present)
