"""Genomic modality: one single-sample VCF 4.2 per patient, and a ClinVar-style sites-only annotation VCF.

Sites come from three sources, merged and sorted by (contig, position) per patient:
- the shared population *site pool* (reference.GENE_REGIONS spans, allele frequencies from a rare/common
  mixture, ~4% multi-allelic, ~8% short indels), genotyped per patient under Hardy-Weinberg from each
  haplotype; a per-patient capture fraction makes record counts vary like different panels and kits;
- the *risk variants* the label model reads (reference.RISK_VARIANTS), always reported, 0/0 included,
  APOE phased from the patient's e2/e3/e4 haplotypes;
- a few dozen *private* rare heterozygous variants per patient, never seen in ClinVar.
Males are hemizygous on chrX (GT "1"). Records with QUAL < 50 get FILTER LowQual.
Text is compressed with htslib's BGZF (pysam), which writes no timestamps, so files are byte-stable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pysam

from mmpipe.synth.cohort import DELIVERY_DATE, Patient
from mmpipe.synth.reference import (
    ASSEMBLY,
    CONTIG_LENGTHS,
    CONTIG_ORDER,
    GENE_REGIONS,
    GENES_BY_SYMBOL,
    REFSEQ_ACCESSION,
    RISK_VARIANTS,
    GeneRegion,
    RiskVariant,
)
from mmpipe.synth.seeding import Stream, rng_for

POOL_SITES = 4500
BASES = ("A", "C", "G", "T")
LOW_QUAL = 50.0
CLINVAR_RELEASE = "2025-01-06"
CLINVAR_FILE = "clinvar_annotations.vcf.gz"
# Pool sites keep this distance from the risk variants so a risk site is never shadowed by a pool site.
RISK_SITE_MARGIN = 10


@dataclass(frozen=True)
class SitePool:
    """The population's variant sites, sorted by (contig, position); arrays are parallel."""

    chrom: list[str]
    pos: npt.NDArray[np.int64]
    ref: list[str]
    alts: list[tuple[str, ...]]
    rsid: list[str]  # "." when the site has no dbSNP id
    gene: list[str]
    alt_freq: npt.NDArray[np.float64]  # shape (sites, 2); column 1 is 0 for biallelic sites

    def __len__(self) -> int:
        return len(self.chrom)

    @property
    def sort_key(self) -> npt.NDArray[np.int64]:
        return _sort_keys(self.chrom, self.pos)


def _sort_keys(chroms: Iterable[str], positions: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    ranks = np.fromiter((CONTIG_ORDER[c] for c in chroms), dtype=np.int64, count=len(positions))
    return ranks * 1_000_000_000 + positions


def _random_bases(rng: np.random.Generator, n: int) -> str:
    return "".join(BASES[int(i)] for i in rng.integers(0, 4, size=n))


def _draw_alleles(rng: np.random.Generator) -> tuple[str, tuple[str, ...]]:
    """REF and ALT(s) of one site: SNV, multi-allelic SNV, deletion or insertion (VCF-anchored)."""
    kind = rng.random()
    ref = BASES[int(rng.integers(0, 4))]
    others = [b for b in BASES if b != ref]
    if kind < 0.04:
        first, second = rng.choice(3, size=2, replace=False)
        return ref, (others[int(first)], others[int(second)])
    if kind < 0.08:
        return ref + _random_bases(rng, int(rng.integers(1, 4))), (ref,)
    if kind < 0.12:
        return ref, (ref + _random_bases(rng, int(rng.integers(1, 4))),)
    return ref, (others[int(rng.integers(0, 3))],)


def _draw_frequencies(rng: np.random.Generator, n_alts: int) -> tuple[float, float]:
    # A rare/common mixture: rare sites make per-patient differences, common ones make shared sites.
    first = rng.uniform(0.002, 0.03) if rng.random() < 0.45 else rng.uniform(0.03, 0.5)
    second = rng.uniform(0.01, 0.12) if n_alts == 2 else 0.0
    return float(first), float(second)


def _region_site_counts(total: int) -> list[int]:
    # sqrt(span) weighting: long genes get more sites, but short key genes are not starved.
    weights = np.sqrt([g.end - g.start for g in GENE_REGIONS])
    return [max(30, round(total * w / weights.sum())) for w in weights]


def _near_risk_site(chrom: str, pos: int) -> bool:
    return any(v.chrom == chrom and abs(v.pos - pos) <= RISK_SITE_MARGIN for v in RISK_VARIANTS)


def build_site_pool(seed: int, sites: int = POOL_SITES) -> SitePool:
    """The shared site pool of a cohort (a function of the seed only)."""
    rng = rng_for(seed, Stream.SITE_POOL)
    rows: list[tuple[str, int, str, tuple[str, ...], str, str, float, float]] = []
    for region, count in zip(GENE_REGIONS, _region_site_counts(sites), strict=True):
        positions = np.unique(rng.integers(region.start, region.end, size=count))
        last_end = 0
        for pos in positions.tolist():
            ref, alts = _draw_alleles(rng)
            first, second = _draw_frequencies(rng, len(alts))
            rsid = f"rs{int(rng.integers(1_000_000, 1_900_000_000))}" if rng.random() < 0.75 else "."
            # Sites may not overlap (a deletion's REF spans several bases) nor touch a risk variant.
            if pos <= last_end + 1 or _near_risk_site(region.chrom, pos):
                continue
            last_end = pos + len(ref) - 1
            rows.append((region.chrom, pos, ref, alts, rsid, region.symbol, first, second))
    rows.sort(key=lambda r: (CONTIG_ORDER[r[0]], r[1]))
    return SitePool(
        chrom=[r[0] for r in rows],
        pos=np.array([r[1] for r in rows], dtype=np.int64),
        ref=[r[2] for r in rows],
        alts=[r[3] for r in rows],
        rsid=[r[4] for r in rows],
        gene=[r[5] for r in rows],
        alt_freq=np.array([(r[6], r[7]) for r in rows], dtype=np.float64),
    )


# ---------------------------------------------------------------------------------------------------------
# Per-patient VCF
# ---------------------------------------------------------------------------------------------------------


def contigs_used() -> list[str]:
    used = {g.chrom for g in GENE_REGIONS} | {v.chrom for v in RISK_VARIANTS}
    return sorted(used, key=CONTIG_ORDER.__getitem__)


def sample_vcf_header(sample_id: str) -> str:
    lines = [
        "##fileformat=VCFv4.2",
        f"##fileDate={DELIVERY_DATE:%Y%m%d}",
        "##source=mmpipe.synth (synthetic cohort; not real patient data)",
        f"##reference={ASSEMBLY}",
        *(f"##contig=<ID={c},length={CONTIG_LENGTHS[c]},assembly={ASSEMBLY}>" for c in contigs_used()),
        '##INFO=<ID=AC,Number=A,Type=Integer,Description="Allele count in genotypes, for each ALT allele">',
        '##INFO=<ID=AF,Number=A,Type=Float,Description="Allele frequency, for each ALT allele">',
        '##INFO=<ID=AN,Number=1,Type=Integer,Description="Total number of alleles in called genotypes">',
        '##INFO=<ID=DP,Number=1,Type=Integer,Description="Approximate read depth">',
        '##FILTER=<ID=PASS,Description="All filters passed">',
        f'##FILTER=<ID=LowQual,Description="Low quality (QUAL < {LOW_QUAL:g})">',
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        '##FORMAT=<ID=AD,Number=R,Type=Integer,Description="Allelic depths for the ref and alt alleles">',
        '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Approximate read depth">',
        '##FORMAT=<ID=GQ,Number=1,Type=Integer,Description="Genotype Quality">',
        "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", sample_id]),
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class ReadEvidence:
    """Pre-drawn per-record read numbers, so formatting never calls the random generator per record."""

    depth: list[int]
    half: list[int]  # Binomial(depth, 0.5): reads on the second allele of a heterozygote
    errors: list[int]  # Binomial(depth, 0.01): reads on the other allele of a homozygote
    quality_noise: list[float]

    @classmethod
    def draw(cls, rng: np.random.Generator, n: int) -> ReadEvidence:
        depth = rng.poisson(34, size=n) + 6
        # ~2% of records are low-coverage: these become the LowQual records.
        low = rng.random(n) < 0.02
        depth[low] = rng.integers(3, 10, size=int(low.sum()))
        return cls(
            depth=depth.tolist(),
            half=rng.binomial(depth, 0.5).tolist(),
            errors=rng.binomial(depth, 0.01).tolist(),
            quality_noise=rng.uniform(0.8, 1.2, size=n).tolist(),
        )


@dataclass(frozen=True)
class Call:
    chrom: str
    pos: int
    rsid: str
    ref: str
    alts: tuple[str, ...]
    alleles: tuple[int, ...]  # () for a no-call, one allele for hemizygous, two otherwise
    phased: bool

    @property
    def carries_alt(self) -> bool:
        return any(a > 0 for a in self.alleles)


def format_call(call: Call, depth: int, half: int, errors: int, noise: float) -> str:
    """One VCF data line with GT:AD:DP:GQ and consistent INFO/QUAL/FILTER."""
    fixed = f"{call.chrom}\t{call.pos}\t{call.rsid}\t{call.ref}\t{','.join(call.alts)}"
    if not call.alleles:
        return f"{fixed}\t.\t.\tDP={depth}\tGT:AD:DP:GQ\t./.:.:{depth}:."
    n_alleles = len(call.alts) + 1
    reads = [0] * n_alleles
    first = call.alleles[0]
    second = call.alleles[1] if len(call.alleles) == 2 else first
    if first == second:
        reads[first] += depth - errors
        reads[0 if first else 1] += errors
    else:
        reads[first] += depth - half
        reads[second] += half
    alt_reads = depth - reads[0]
    ploidy = len(call.alleles)
    counts = [call.alleles.count(i) for i in range(1, n_alleles)]
    separator = "|" if call.phased else "/"
    genotype = separator.join(str(a) for a in call.alleles)
    genotype_quality = min(99, int(depth * (3.0 if first == second else 2.6) * noise))
    ad = ",".join(str(r) for r in reads)
    if not call.carries_alt:
        info = (
            f"AC={','.join('0' for _ in counts)};AF={','.join('0.00' for _ in counts)};AN={ploidy};DP={depth}"
        )
        return f"{fixed}\t.\tPASS\t{info}\tGT:AD:DP:GQ\t{genotype}:{ad}:{depth}:{genotype_quality}"
    qual = alt_reads * (28.0 if first == second else 12.0) * noise
    filters = "PASS" if qual >= LOW_QUAL else "LowQual"
    ac = ",".join(str(c) for c in counts)
    af = ",".join(f"{c / ploidy:.2f}" for c in counts)
    info = f"AC={ac};AF={af};AN={ploidy};DP={depth}"
    return f"{fixed}\t{qual:.2f}\t{filters}\t{info}\tGT:AD:DP:GQ\t{genotype}:{ad}:{depth}:{genotype_quality}"


def _pool_calls(pool: SitePool, rng: np.random.Generator, male: bool) -> list[Call]:
    n = len(pool)
    # Per-patient capture: a 35-100% subset of the pool is assayed, like different panels/exome kits.
    covered = rng.random(n) < rng.uniform(0.35, 1.0)
    draws = rng.random((n, 2))
    p1, p2 = pool.alt_freq[:, 0], pool.alt_freq[:, 1]
    q0 = 1.0 - p1 - p2
    alleles = (draws >= q0[:, None]).astype(np.int64) + (draws >= (q0 + p1)[:, None])
    hemizygous = np.array([male and c == "chrX" for c in pool.chrom], dtype=bool)
    carried = covered & ((alleles[:, 0] > 0) | ((alleles[:, 1] > 0) & ~hemizygous))
    no_call = covered & ~carried & (rng.random(n) < 0.004)
    phased = (rng.random(n) < 0.1).tolist()
    calls: list[Call] = []
    for i in np.flatnonzero(carried | no_call).tolist():
        if no_call[i]:
            chosen: tuple[int, ...] = ()
        elif hemizygous[i]:
            chosen = (int(alleles[i, 0]),)
        else:
            chosen = tuple(sorted((int(alleles[i, 0]), int(alleles[i, 1]))))
            if phased[i]:
                chosen = (int(alleles[i, 0]), int(alleles[i, 1]))
        calls.append(
            Call(pool.chrom[i], int(pool.pos[i]), pool.rsid[i], pool.ref[i], pool.alts[i], chosen, phased[i])
        )
    return calls


def _risk_calls(patient: Patient) -> list[Call]:
    """Every risk site is reported (0/0 included); APOE is phased from the e2/e3/e4 haplotypes."""
    calls = []
    for variant in RISK_VARIANTS:
        rsid = variant.rsid or "."
        if variant.gene == "APOE":
            defining = "e4" if variant.key == "APOE_rs429358" else "e2"
            alleles = tuple(int(h == defining) for h in patient.genome.apoe)
            calls.append(Call(variant.chrom, variant.pos, rsid, variant.ref, (variant.alt,), alleles, True))
            continue
        dosage = patient.genome.dosage(variant.key)
        alleles = (0, 0) if dosage == 0 else (0, 1) if dosage == 1 else (1, 1)
        calls.append(Call(variant.chrom, variant.pos, rsid, variant.ref, (variant.alt,), alleles, False))
    return calls


def _private_calls(rng: np.random.Generator, taken: set[tuple[str, int]], male: bool) -> list[Call]:
    """Rare heterozygous SNVs unique to the patient (no rsID, not in ClinVar); hemizygous on a male chrX."""
    spans = np.array([g.end - g.start for g in GENE_REGIONS], dtype=np.float64)
    count = int(rng.integers(10, 80))
    regions = rng.choice(len(GENE_REGIONS), size=count, p=spans / spans.sum())
    calls = []
    for region_index in regions.tolist():
        region = GENE_REGIONS[region_index]
        pos = int(rng.integers(region.start, region.end))
        ref, alt = rng.choice(4, size=2, replace=False).tolist()
        # A private site must not land on a pool or risk site (taken holds every base of their REFs).
        if (region.chrom, pos) in taken:
            continue
        taken.add((region.chrom, pos))
        alleles = (1,) if male and region.chrom == "chrX" else (0, 1)
        calls.append(Call(region.chrom, pos, ".", BASES[ref], (BASES[alt],), alleles, False))
    return calls


def patient_calls(
    pool: SitePool, patient: Patient, rng: np.random.Generator, taken: set[tuple[str, int]]
) -> list[Call]:
    """All records of one patient's VCF, sorted by contig then position."""
    male = patient.sex == "male"
    calls = _pool_calls(pool, rng, male)
    calls += _risk_calls(patient)
    calls += _private_calls(rng, set(taken), male)
    calls.sort(key=lambda c: (CONTIG_ORDER[c.chrom], c.pos))
    return calls


@dataclass(frozen=True)
class VcfStats:
    records: int
    non_reference: int


def write_patient_vcf(
    path: Path, pool: SitePool, patient: Patient, seed: int, taken: set[tuple[str, int]]
) -> VcfStats:
    rng = rng_for(seed, Stream.GENOME, patient.index)
    calls = patient_calls(pool, patient, rng, taken)
    evidence = ReadEvidence.draw(rng, len(calls))
    lines = [
        format_call(call, evidence.depth[i], evidence.half[i], evidence.errors[i], evidence.quality_noise[i])
        for i, call in enumerate(calls)
    ]
    _write_bgzf(path, sample_vcf_header(patient.id) + "\n".join(lines) + "\n")
    return VcfStats(records=len(calls), non_reference=sum(c.carries_alt for c in calls))


def occupied_positions(pool: SitePool) -> set[tuple[str, int]]:
    """Positions private variants must avoid: every base of every pool REF, and the risk sites."""
    taken = {(v.chrom, v.pos) for v in RISK_VARIANTS}
    for chrom, pos, ref in zip(pool.chrom, pool.pos.tolist(), pool.ref, strict=True):
        taken.update((chrom, pos + d) for d in range(len(ref)))
    return taken


def _write_bgzf(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with pysam.BGZFile(str(path), "wb", None) as handle:
        handle.write(text.encode("ascii"))


# ---------------------------------------------------------------------------------------------------------
# ClinVar-style annotation VCF
# ---------------------------------------------------------------------------------------------------------

CLINVAR_INFO_HEADERS = (
    '##INFO=<ID=ALLELEID,Number=1,Type=Integer,Description="the ClinVar Allele ID">',
    "##INFO=<ID=CLNDN,Number=.,Type=String,Description=\"ClinVar's preferred disease name for the concept "
    'specified by disease identifiers in CLNDISDB">',
    '##INFO=<ID=CLNHGVS,Number=.,Type=String,Description="Top-level (primary assembly, alt, or patch) HGVS '
    'expression.">',
    '##INFO=<ID=CLNREVSTAT,Number=.,Type=String,Description="ClinVar review status of germline '
    'classification for the Variation ID">',
    '##INFO=<ID=CLNSIG,Number=.,Type=String,Description="Aggregate germline classification for this single '
    'variant; multiple values are separated by a vertical bar">',
    '##INFO=<ID=CLNVC,Number=1,Type=String,Description="Variant type">',
    '##INFO=<ID=CLNVCSO,Number=1,Type=String,Description="Sequence Ontology id for variant type">',
    '##INFO=<ID=GENEINFO,Number=1,Type=String,Description="Gene(s) for the variant reported as gene '
    "symbol:gene id. The gene symbol and id are delimited by a colon (:) and each pair is delimited by a "
    'vertical bar (|)">',
    '##INFO=<ID=ORIGIN,Number=.,Type=String,Description="Allele origin. One or more of the following values '
    "may be added: 0 - unknown; 1 - germline; 2 - somatic; 4 - inherited; 8 - paternal; 16 - maternal; "
    "32 - de-novo; 64 - biparental; 128 - uniparental; 256 - not-tested; 512 - tested-inconclusive; "
    '1073741824 - other">',
    '##INFO=<ID=RS,Number=.,Type=String,Description="dbSNP ID (i.e. rs number)">',
)

REVIEW_EXPERT = "reviewed_by_expert_panel"
REVIEW_MULTIPLE = "criteria_provided,_multiple_submitters,_no_conflicts"
REVIEW_SINGLE = "criteria_provided,_single_submitter"
REVIEW_CONFLICTING = "criteria_provided,_conflicting_classifications"
REVIEW_NONE = "no_assertion_criteria_provided"


@dataclass(frozen=True)
class ClinVarRecord:
    chrom: str
    pos: int
    ref: str
    alt: str
    gene: GeneRegion
    significance: str
    review_status: str
    diseases: tuple[str, ...]
    rsid: str


def clinvar_header() -> str:
    lines = [
        "##fileformat=VCFv4.1",
        f"##fileDate={CLINVAR_RELEASE}",
        "##source=ClinVar (synthetic, mmpipe.synth)",
        f"##reference={ASSEMBLY}",
        '##ID=<Description="ClinVar Variation ID">',
        *CLINVAR_INFO_HEADERS,
        *(f"##contig=<ID={c},length={CONTIG_LENGTHS[c]},assembly={ASSEMBLY}>" for c in contigs_used()),
        "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO"]),
    ]
    return "\n".join(lines) + "\n"


def _variant_type(ref: str, alt: str) -> tuple[str, str]:
    if len(ref) == len(alt) == 1:
        return "single_nucleotide_variant", "SO:0001483"
    return ("Deletion", "SO:0000159") if len(ref) > len(alt) else ("Insertion", "SO:0000667")


def hgvs_genomic(chrom: str, pos: int, ref: str, alt: str) -> str:
    """Top-level genomic HGVS (VCF anchor base removed for indels)."""
    accession = REFSEQ_ACCESSION[chrom]
    if len(ref) == len(alt) == 1:
        return f"{accession}:g.{pos}{ref}>{alt}"
    if len(ref) > len(alt):
        first, last = pos + 1, pos + len(ref) - 1
        return f"{accession}:g.{first}del" if first == last else f"{accession}:g.{first}_{last}del"
    return f"{accession}:g.{pos}_{pos + 1}ins{alt[1:]}"


def _risk_clinvar_record(variant: RiskVariant) -> ClinVarRecord:
    gene = GENES_BY_SYMBOL[variant.gene]
    if variant.clinical_significance == "Pathogenic":
        review = REVIEW_EXPERT if variant.gene in {"F5", "LDLR", "APOB"} else REVIEW_MULTIPLE
    else:
        review = REVIEW_NONE if variant.clinical_significance == "risk_factor" else REVIEW_SINGLE
    return ClinVarRecord(
        variant.chrom,
        variant.pos,
        variant.ref,
        variant.alt,
        gene,
        variant.clinical_significance,
        review,
        gene.diseases,
        variant.rsid or ".",
    )


def _background_significance(rng: np.random.Generator, frequency: float) -> tuple[str, str, tuple[str, ...]]:
    """Common pool alleles are benign; rare ones are mostly VUS. Nothing in the pool is pathogenic, so the
    pathogenic annotations a patient carries are exactly the planted risk alleles."""
    draw = rng.random()
    unspecific = ("not_specified", "not_provided")
    if frequency >= 0.05:
        significance = "Benign" if draw < 0.7 else "Likely_benign"
        return significance, REVIEW_MULTIPLE if draw < 0.5 else REVIEW_SINGLE, unspecific
    if draw < 0.55:
        return "Uncertain_significance", REVIEW_SINGLE, ()
    if draw < 0.8:
        return "Likely_benign", REVIEW_SINGLE, unspecific
    if draw < 0.92:
        return "Conflicting_classifications_of_pathogenicity", REVIEW_CONFLICTING, ()
    return "Benign", REVIEW_MULTIPLE, unspecific


def _pool_clinvar_records(rng: np.random.Generator, pool: SitePool) -> list[ClinVarRecord]:
    records = []
    for i in range(len(pool)):
        for alt_index, alt in enumerate(pool.alts[i]):
            if rng.random() >= 0.55:
                continue
            gene = GENES_BY_SYMBOL[pool.gene[i]]
            significance, review, diseases = _background_significance(rng, float(pool.alt_freq[i, alt_index]))
            records.append(
                ClinVarRecord(
                    pool.chrom[i],
                    int(pool.pos[i]),
                    pool.ref[i],
                    alt,
                    gene,
                    significance,
                    review,
                    diseases or gene.diseases,
                    pool.rsid[i],
                )
            )
    return records


def _unobserved_clinvar_records(
    rng: np.random.Generator, taken: set[tuple[str, int]], count: int = 300
) -> list[ClinVarRecord]:
    """Submitted variants nobody in the cohort carries (a real ClinVar is mostly these)."""
    labels = [
        ("Pathogenic", REVIEW_MULTIPLE),
        ("Likely_pathogenic", REVIEW_SINGLE),
        ("Uncertain_significance", REVIEW_SINGLE),
        ("Likely_benign", REVIEW_SINGLE),
        ("Benign", REVIEW_MULTIPLE),
    ]
    records = []
    for _ in range(count):
        gene = GENE_REGIONS[int(rng.integers(0, len(GENE_REGIONS)))]
        pos = int(rng.integers(gene.start, gene.end))
        ref, alt = rng.choice(4, size=2, replace=False).tolist()
        significance, review = labels[int(rng.integers(0, len(labels)))]
        if (gene.chrom, pos) in taken:
            continue
        taken.add((gene.chrom, pos))
        records.append(
            ClinVarRecord(
                gene.chrom, pos, BASES[ref], BASES[alt], gene, significance, review, gene.diseases, "."
            )
        )
    return records


def format_clinvar_record(record: ClinVarRecord, variation_id: int) -> str:
    variant_class, sequence_ontology = _variant_type(record.ref, record.alt)
    info = [
        f"ALLELEID={variation_id + 15_000}",
        f"CLNDN={'|'.join(record.diseases)}",
        f"CLNHGVS={hgvs_genomic(record.chrom, record.pos, record.ref, record.alt)}",
        f"CLNREVSTAT={record.review_status}",
        f"CLNSIG={record.significance}",
        f"CLNVC={variant_class}",
        f"CLNVCSO={sequence_ontology}",
        f"GENEINFO={record.gene.symbol}:{record.gene.gene_id}",
        "ORIGIN=1",
    ]
    if record.rsid != ".":
        info.append(f"RS={record.rsid.removeprefix('rs')}")
    return "\t".join(
        [record.chrom, str(record.pos), str(variation_id), record.ref, record.alt, ".", ".", ";".join(info)]
    )


def write_clinvar_vcf(path: Path, pool: SitePool, seed: int) -> int:
    """The annotation VCF: every risk variant, ~55% of pool alleles and some unobserved submissions."""
    rng = rng_for(seed, Stream.CLINVAR)
    records = [_risk_clinvar_record(v) for v in RISK_VARIANTS]
    records += _pool_clinvar_records(rng, pool)
    records += _unobserved_clinvar_records(rng, occupied_positions(pool))
    records.sort(key=lambda r: (CONTIG_ORDER[r.chrom], r.pos, r.alt))
    # VariationIDs: unique, increasing with gaps like a real release, then shuffled over the records.
    variation_ids = (10_000 + np.cumsum(rng.integers(1, 400, size=len(records)))).tolist()
    order = rng.permutation(len(records)).tolist()
    lines = [format_clinvar_record(r, int(variation_ids[order[i]])) for i, r in enumerate(records)]
    _write_bgzf(path, clinvar_header() + "\n".join(lines) + "\n")
    return len(records)
