"""Genomic features per patient (`features.genomic`): variants joined to the ClinVar-style annotations.

    table = genomic_features(variants, clinvar, samples)   # genomic.variants, genomic.clinvar and
                                                           # genomic.samples rows (any may be None)
    table = genomic_features(variants, clinvar, samples, GenomicFeatureConfig(genes=("LDLR", "APOB")))

Patients: one row per sample with a VCF (VCF sample id = FHIR Patient.id = patient_id): every sample of
genomic.samples (written for every sample column of every genotype VCF, so also for a sample that carries
no ALT allele and has no variant row), plus any sample with variant rows (a lakehouse loaded before
genomic.samples existed). A patient with a VCF and no hit gets zeros; a patient without a VCF gets no row,
so the training join leaves their genomic columns missing, not zero. A zero is also what a VCF that did not
assay a site gives: genomic.variants keeps carried ALT alleles only, so "not assayed" and "homozygous
reference" cannot be told apart (an APOE site missing from a panel reads as e3/e3).

Calls: only PASS calls count (FILTER PASS; the importer stores '.', no filters applied, as PASS too): a call
its own caller flagged (LowQual, ...) is not evidence. A call counts its alleles by zygosity: homozygous 2,
heterozygous 1, hemizygous 1 (a male's chrX). A sample's duplicate call of one allele (two VCFs of the same
sample in one run) counts once. Dosages of the risk alleles are capped at 2.

Matching: a call matches a ClinVar allele on (chrom, pos, ref, alt) with the contig's "chr" prefix ignored
(ClinVar writes "19", many callers "chr19"), alleles as the importer splits them (one ALT per row). Indels
are not left-normalised (that needs the reference FASTA): one written differently in the VCF and in ClinVar
is not matched. The risk alleles match by rsID (the VCF ID column, ";"-separated IDs allowed) or by GRCh38
position and REF, and in both cases by ALT, so a GRCh37 callset with rsIDs still matches.

Pathogenic: an allele whose CLNSIG, read case- and underscore-insensitively and split on "/" and "|", names
Pathogenic or Likely pathogenic (low penetrance included) and nothing benign, uncertain or conflicting:
"Pathogenic", "Likely_pathogenic", "Pathogenic/Likely_pathogenic", "Pathogenic|risk_factor" count;
"Conflicting_classifications_of_pathogenicity", "Benign/Likely_pathogenic", "risk_factor" do not. An allele
counts when any of its ClinVar rows qualifies; review status is not considered. Without any ClinVar rows the
pathogenic columns are null (unknown, not none); the risk-allele columns do not need ClinVar.

APOE: e4 = rs429358 C, e2 = rs7412 T; `apoe_genotype` puts e3 on the haplotypes that carry neither
("e3/e4"), and is null when the two dosages add up to more than 2 (an e1 haplotype, or a call error).

Leakage: the germline genome does not change with time, so no index-date rule applies; nothing here is
read from the records that define a label.

Columns (every one carries a `doc`): patient_id; pathogenic_burden (P/LP alleles in any gene);
pathogenic_genes (distinct genes with a P/LP allele); `<gene>_pathogenic_alleles` per
GenomicFeatureConfig.genes (default GENES_OF_INTEREST); apoe_e4_dosage, apoe_e2_dosage, apoe_e4_carrier,
apoe_genotype; `<name>_dosage` for every risk allele of GenomicFeatureConfig.risk_alleles (default
RISK_ALLELES) and `<name>_carrier` (0/1) for the Mendelian ones. Rows in patient_id order.

Engine: pyarrow compute and hash joins (DuckDB is not in the Lambda package, see features/clinical.py). The
whole PASS variant table is read into memory: fine for panels and exomes of a few thousand patients; at
whole-genome scale the join belongs in Athena.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, model_validator

from mmhealth.lakehouse.feature_tables import features_genomic_schema, gene_column

# The genes whose P/LP alleles get a column of their own: the Mendelian genes of the four outcomes.
GENES_OF_INTEREST: tuple[str, ...] = (
    # Alzheimer's disease
    "APOE", "APP", "PSEN1", "PSEN2", "TREM2", "SORL1",
    # coronary heart disease: familial hypercholesterolemia
    "LDLR", "APOB", "PCSK9",
    # stroke: small-vessel disease (CADASIL, CARASIL), thrombophilia, Fabry disease
    "NOTCH3", "HTRA1", "F5", "GLA",
)  # fmt: skip


class RiskAllele(BaseModel):
    """A well-known risk allele: `<name>_dosage` (0, 1, 2) and, when `carrier`, `<name>_carrier` (0/1)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str  # column prefix
    doc: str
    rsid: str | None  # matched in the VCF ID column; None: by position only
    chrom: str  # GRCh38, with or without "chr"
    pos: int
    ref: str
    alt: str  # the risk allele (plus strand)
    carrier: bool = False


APOE_E4 = RiskAllele(
    name="apoe_e4", doc="APOE e4-defining allele rs429358 C", rsid="rs429358",
    chrom="19", pos=44_908_684, ref="T", alt="C", carrier=True,
)  # fmt: skip
APOE_E2 = RiskAllele(
    name="apoe_e2", doc="APOE e2-defining allele rs7412 T", rsid="rs7412",
    chrom="19", pos=44_908_822, ref="C", alt="T",
)  # fmt: skip

# GRCh38 positions, plus-strand alleles (the ones the synthetic cohort plants, see mmpipe.synth.reference).
# fmt: off
RISK_ALLELES: tuple[RiskAllele, ...] = (
    RiskAllele(name="trem2_r47h", doc="TREM2 p.Arg47His, rs75932628 T (Alzheimer's)", rsid="rs75932628",
               chrom="6", pos=41_161_514, ref="C", alt="T", carrier=True),
    RiskAllele(name="f5_leiden", doc="factor V Leiden, F5 rs6025 T (thrombophilia)", rsid="rs6025",
               chrom="1", pos=169_549_811, ref="C", alt="T", carrier=True),
    RiskAllele(name="apob_r3527q", doc="familial defective APOB p.Arg3527Gln, rs5742904 T", rsid="rs5742904",
               chrom="2", pos=21_006_288, ref="C", alt="T", carrier=True),
    RiskAllele(name="lpa_rs10455872", doc="LPA rs10455872 G (raises lipoprotein(a))", rsid="rs10455872",
               chrom="6", pos=160_589_086, ref="A", alt="G"),
    RiskAllele(name="chr9p21_rs1333049", doc="9p21 coronary risk locus, CDKN2B-AS1 rs1333049 G",
               rsid="rs1333049", chrom="9", pos=22_125_504, ref="C", alt="G"),
    RiskAllele(name="agt_rs699", doc="AGT p.Met268Thr (M235T), rs699 G", rsid="rs699",
               chrom="1", pos=230_710_048, ref="A", alt="G"),
    RiskAllele(name="nos3_rs1799983", doc="NOS3 p.Glu298Asp, rs1799983 T", rsid="rs1799983",
               chrom="7", pos=150_999_023, ref="G", alt="T"),
    RiskAllele(name="agtr1_rs5186", doc="AGTR1 A1166C, rs5186 C", rsid="rs5186",
               chrom="3", pos=148_742_201, ref="A", alt="C"),
)
# fmt: on


class GenomicFeatureConfig(BaseModel):
    """Which genes get a P/LP column and which risk alleles a dosage; APOE e4/e2 are always there."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    genes: tuple[str, ...] = GENES_OF_INTEREST
    risk_alleles: tuple[RiskAllele, ...] = RISK_ALLELES

    @model_validator(mode="after")
    def _distinct_columns(self) -> GenomicFeatureConfig:
        names = features_genomic_schema(self.genes, self.risk_alleles).names
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"genes or risk alleles give the same column twice: {repeated}")
        return self


# The columns read from each input table (all else is ignored).
READ_COLUMNS: dict[str, tuple[str, ...]] = {
    "genomic.variants": ("sample_id", "chrom", "pos", "ref", "alt", "variant_id", "filter", "zygosity"),
    "genomic.clinvar": ("chrom", "pos", "ref", "alt", "gene", "clinical_significance"),
    "genomic.samples": ("sample_id",),
}
_TYPES = {"pos": pa.int64()}  # every other column read is a string

_ALLELE = ["chrom", "pos", "ref", "alt"]
_PATHOGENIC = {
    "pathogenic",
    "likely pathogenic",
    "pathogenic, low penetrance",
    "likely pathogenic, low penetrance",
}
_NOT_PATHOGENIC = {"benign", "likely benign", "uncertain significance"}  # and anything "conflicting..."

Ints = npt.NDArray[np.int64]


# ---------------------------------------------------------------------------------------------------------
# Output contract
# ---------------------------------------------------------------------------------------------------------


def features_schema(config: GenomicFeatureConfig | None = None) -> pa.Schema:
    """The `features.genomic` schema for `config` (default: DEFAULT_CONFIG)."""
    config = config or DEFAULT_CONFIG
    return features_genomic_schema(config.genes, config.risk_alleles)


DEFAULT_CONFIG = GenomicFeatureConfig()  # here: its validator needs the output contract above


# ---------------------------------------------------------------------------------------------------------
# The entry point
# ---------------------------------------------------------------------------------------------------------


def genomic_features(
    variants: pa.Table | None,
    clinvar: pa.Table | None,
    samples: pa.Table | None,
    config: GenomicFeatureConfig | None = None,
) -> pa.Table:
    """One row per sample with a VCF (see the module docstring), schema `features_schema(config)`.

    Deterministic for given rows, whatever their order. Raises ValueError naming the table when an input
    lacks a column this module reads or has one that does not cast to its type.
    """
    config = config or DEFAULT_CONFIG
    variants = _read(variants, "genomic.variants")
    patients = _patients(_read(samples, "genomic.samples"), variants)
    calls = _pass_calls(variants, (APOE_E4, APOE_E2, *config.risk_alleles))
    patient = np.asarray(pc.index_in(calls["sample_id"], value_set=patients), dtype=np.int64)
    alleles = calls["alleles"].to_numpy().astype(np.int64)
    risk = calls["risk"].to_numpy().astype(np.int64)

    count = len(patients)
    columns: dict[str, pa.Array] = {"patient_id": patients}
    columns |= _pathogenic_columns(
        calls, patients, _pathogenic_alleles(_read(clinvar, "genomic.clinvar")), config
    )
    dosages = _risk_dosages(patient, alleles, risk, count, 2 + len(config.risk_alleles))
    e4, e2 = dosages[:, 0], dosages[:, 1]
    columns |= {
        "apoe_e4_dosage": _int8(e4),
        "apoe_e2_dosage": _int8(e2),
        "apoe_e4_carrier": _int8(e4 > 0),
        "apoe_genotype": _apoe_genotypes(e4, e2),
    }
    for i, allele in enumerate(config.risk_alleles, start=2):
        columns[f"{allele.name}_dosage"] = _int8(dosages[:, i])
        if allele.carrier:
            columns[f"{allele.name}_carrier"] = _int8(dosages[:, i] > 0)
    schema = features_schema(config)
    return pa.table([columns[f.name] for f in schema], schema=schema)


def is_pathogenic(significance: str) -> bool:
    """Whether a CLNSIG value counts as pathogenic / likely pathogenic (rules in the module docstring)."""
    terms = [_term(t) for t in re.split(r"[/|]", significance)]
    if any(t.startswith("conflicting") or t in _NOT_PATHOGENIC for t in terms):
        return False
    return any(t in _PATHOGENIC for t in terms)


def _term(text: str) -> str:
    """'Pathogenic,_low_penetrance' -> 'pathogenic, low penetrance'."""
    spaced = " ".join(text.replace("_", " ").lower().split())
    return re.sub(r"\s*,\s*", ", ", spaced)


# ---------------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------------


def _read(table: pa.Table | None, name: str) -> pa.Table:
    """The columns this module reads from one input, cast to their types (empty when absent)."""
    target = pa.schema([pa.field(c, _TYPES.get(c, pa.string())) for c in READ_COLUMNS[name]])
    if table is None:
        return target.empty_table()
    missing = [c for c in target.names if c not in table.column_names]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}")
    try:
        # pyiceberg may hand over large_string columns: joins need one string type on both sides.
        return table.select(target.names).cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise ValueError(f"{name}: a column does not cast to its type: {exc}") from exc


def _patients(samples: pa.Table, variants: pa.Table) -> pa.Array:
    """Every sample id of genomic.samples and genomic.variants, sorted."""
    ids = pa.chunked_array([*samples["sample_id"].chunks, *variants["sample_id"].chunks], type=pa.string())
    unique = pc.unique(ids.drop_null())
    return unique.take(pc.sort_indices(unique))


def _contig(chrom: pa.ChunkedArray) -> pa.ChunkedArray:
    """'chr19' / 'CHR19' / '19' -> '19'; 'chrM' / 'MT' -> 'm' (as `_bare_contig`, on a column)."""
    bare = pc.replace_substring_regex(pc.utf8_lower(chrom), pattern="^chr", replacement="")
    return pc.replace_substring_regex(bare, pattern="^mt$", replacement="m")


def _bare_contig(chrom: str) -> str:
    bare = chrom.lower().removeprefix("chr")
    return "m" if bare == "mt" else bare


def _pass_calls(variants: pa.Table, risk_alleles: Sequence[RiskAllele]) -> pa.Table:
    """PASS calls, one row per sample x allele: sample_id, chrom (bare), pos, ref, alt, alleles (1 or 2),
    risk (index into `risk_alleles`, -1 for none)."""
    calls = variants.filter(pc.equal(variants["filter"], "PASS"))
    chrom = _contig(calls["chrom"])
    alleles = pc.if_else(pc.equal(calls["zygosity"], "homozygous"), 2, 1).cast(pa.int8())
    risk = np.full(calls.num_rows, -1, dtype=np.int8)
    for index, allele in enumerate(risk_alleles):
        risk[_np_bool(_matches(calls, chrom, allele))] = index
    rows = pa.table(
        {
            "sample_id": calls["sample_id"],
            "chrom": chrom,
            "pos": calls["pos"],
            "ref": calls["ref"],
            "alt": calls["alt"],
            "alleles": alleles,
            "risk": pa.array(risk),
        }
    )
    # One row per sample x allele, whatever duplicates the callsets held.
    unique = rows.group_by(["sample_id", *_ALLELE], use_threads=False).aggregate(
        [("alleles", "max"), ("risk", "max")]
    )
    return unique.rename_columns(["sample_id", *_ALLELE, "alleles", "risk"])


def _matches(calls: pa.Table, chrom: pa.ChunkedArray, allele: RiskAllele) -> pa.ChunkedArray:
    at_site = pc.and_(
        pc.and_(pc.equal(chrom, _bare_contig(allele.chrom)), pc.equal(calls["pos"], allele.pos)),
        pc.equal(calls["ref"], allele.ref),
    )
    if allele.rsid:
        pattern = f"(?:^|;){re.escape(allele.rsid)}(?:;|$)"
        at_site = pc.or_kleene(at_site, pc.match_substring_regex(calls["variant_id"], pattern=pattern))
    return pc.and_kleene(pc.equal(calls["alt"], allele.alt), at_site)


def _np_bool(values: pa.ChunkedArray | pa.Array) -> npt.NDArray[np.bool_]:
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=np.bool_)


def _pathogenic_alleles(clinvar: pa.Table) -> pa.Table | None:
    """Distinct (chrom, pos, ref, alt, gene) of P/LP ClinVar alleles, one row per gene ("" when none);
    None when there are no ClinVar rows at all."""
    if clinvar.num_rows == 0:
        return None
    values = pc.unique(clinvar["clinical_significance"].drop_null()).to_pylist()
    qualifying = pa.array([v for v in values if is_pathogenic(v)], type=pa.string())
    rows = clinvar.filter(pc.is_in(clinvar["clinical_significance"], value_set=qualifying))
    genes = pc.split_pattern(pc.fill_null(rows["gene"], ""), pattern="|")
    parent = pc.list_parent_indices(genes)
    flat = pa.table(
        {
            "chrom": _contig(rows["chrom"]).take(parent),
            "pos": rows["pos"].take(parent),
            "ref": rows["ref"].take(parent),
            "alt": rows["alt"].take(parent),
            "gene": pc.utf8_upper(pc.utf8_trim_whitespace(pc.list_flatten(genes))),
        }
    )
    return flat.group_by([*_ALLELE, "gene"], use_threads=False).aggregate([])


# ---------------------------------------------------------------------------------------------------------
# Columns
# ---------------------------------------------------------------------------------------------------------


def _pathogenic_columns(
    calls: pa.Table, patients: pa.Array, pathogenic: pa.Table | None, config: GenomicFeatureConfig
) -> dict[str, pa.Array]:
    names = ["pathogenic_burden", "pathogenic_genes", *(gene_column(g) for g in config.genes)]
    count = len(patients)
    if pathogenic is None:
        return {name: pa.nulls(count, pa.int32()) for name in names}
    alleles = pathogenic.group_by(_ALLELE, use_threads=False).aggregate([])
    hits = calls.join(alleles, keys=_ALLELE, join_type="inner", use_threads=False)
    columns = {"pathogenic_burden": _int32(_per_patient(hits, patients, count))}
    by_gene = calls.join(pathogenic, keys=_ALLELE, join_type="inner", use_threads=False)
    by_gene = by_gene.filter(pc.not_equal(by_gene["gene"], ""))
    genes = by_gene.group_by(["sample_id", "gene"], use_threads=False).aggregate([("alleles", "sum")])
    patient = np.asarray(pc.index_in(genes["sample_id"], value_set=patients), dtype=np.int64)
    columns["pathogenic_genes"] = _int32(np.bincount(patient, minlength=count))
    gene_of = genes["gene"].to_numpy(zero_copy_only=False)
    sums = genes["alleles_sum"].to_numpy().astype(np.int64)
    for gene in config.genes:
        mine = gene_of == gene.upper()
        columns[gene_column(gene)] = _int32(np.bincount(patient[mine], weights=sums[mine], minlength=count))
    return columns


def _per_patient(calls: pa.Table, patients: pa.Array, count: int) -> Ints:
    """Sum of `alleles` per patient, in `patients` order."""
    patient = np.asarray(pc.index_in(calls["sample_id"], value_set=patients), dtype=np.int64)
    weights = calls["alleles"].to_numpy().astype(np.int64)
    return np.bincount(patient, weights=weights, minlength=count).astype(np.int64)


def _risk_dosages(patient: Ints, alleles: Ints, risk: Ints, count: int, kinds: int) -> Ints:
    """(patients, risk alleles) dosage matrix, capped at 2 (two callsets can name one allele twice,
    e.g. by rsID on GRCh37 coordinates and by position on GRCh38)."""
    hit = risk >= 0
    flat = np.bincount(patient[hit] * kinds + risk[hit], weights=alleles[hit], minlength=count * kinds)
    return np.minimum(flat.reshape(count, kinds), 2).astype(np.int64)


def _apoe_genotypes(e4: Ints, e2: Ints) -> pa.Array:
    texts = [
        "/".join(["e2"] * int(b) + ["e3"] * (2 - int(a) - int(b)) + ["e4"] * int(a)) if a + b <= 2 else None
        for a, b in zip(e4.tolist(), e2.tolist(), strict=True)
    ]
    return pa.array(texts, type=pa.string())


def _int8(values: npt.NDArray[np.generic]) -> pa.Array:
    return pa.array(np.asarray(values).astype(np.int8), type=pa.int8())


def _int32(values: npt.NDArray[np.generic]) -> pa.Array:
    return pa.array(np.asarray(values).astype(np.int32), type=pa.int32())
