"""GRCh38 facts the synthetic genomes are placed on: contigs, gene spans and the planted risk variants.

Confidence, stated once so no reader has to guess:
- Contig lengths and RefSeq accessions are the GRCh38 primary-assembly values.
- Named rsIDs (APOE rs429358/rs7412, F5 rs6025, LPA rs10455872, 9p21 rs1333049, APOB rs5742904,
  TREM2 rs75932628, AGT rs699, NOS3 rs1799983, AGTR1 rs5186) sit at their real GRCh38 positions with the
  plus-strand REF/ALT; NOS3 rs1799983 is written G>T (Glu298Asp), the orientation most sources give.
- Variants without an rsID (LDLR, PCSK9, PSEN1, NOTCH3, HTRA1 "pathogenic" alleles) are synthetic: real
  gene, made-up position inside it. Background sites are placed inside *approximate* GRCh38 gene spans
  (rounded from the NCBI/Ensembl annotation); their REF bases are random because no FASTA is shipped.
- Allele frequencies of rare risk alleles are enriched well above population values, so that a cohort of
  a few hundred patients carries each of them a handful of times (documented in truth.json too).
"""

from __future__ import annotations

from dataclasses import dataclass

ASSEMBLY = "GRCh38"

# Primary-assembly lengths, in the natural order the VCFs are sorted by.
CONTIG_LENGTHS: dict[str, int] = {
    "chr1": 248_956_422,
    "chr2": 242_193_529,
    "chr3": 198_295_559,
    "chr4": 190_214_555,
    "chr5": 181_538_259,
    "chr6": 170_805_979,
    "chr7": 159_345_973,
    "chr8": 145_138_636,
    "chr9": 138_394_717,
    "chr10": 133_797_422,
    "chr11": 135_086_622,
    "chr12": 133_275_309,
    "chr13": 114_364_328,
    "chr14": 107_043_718,
    "chr15": 101_991_189,
    "chr16": 90_338_345,
    "chr17": 83_257_441,
    "chr18": 80_373_285,
    "chr19": 58_617_616,
    "chr20": 64_444_167,
    "chr21": 46_709_983,
    "chr22": 50_818_468,
    "chrX": 156_040_895,
    "chrY": 57_227_415,
    "chrM": 16_569,
}
CONTIG_ORDER: dict[str, int] = {name: i for i, name in enumerate(CONTIG_LENGTHS)}

# RefSeq accessions, used for the CLNHGVS field of the ClinVar-style VCF.
REFSEQ_ACCESSION: dict[str, str] = {
    "chr1": "NC_000001.11",
    "chr2": "NC_000002.12",
    "chr3": "NC_000003.12",
    "chr4": "NC_000004.12",
    "chr5": "NC_000005.10",
    "chr6": "NC_000006.12",
    "chr7": "NC_000007.14",
    "chr8": "NC_000008.11",
    "chr9": "NC_000009.12",
    "chr10": "NC_000010.11",
    "chr11": "NC_000011.10",
    "chr12": "NC_000012.12",
    "chr13": "NC_000013.11",
    "chr14": "NC_000014.9",
    "chr15": "NC_000015.10",
    "chr16": "NC_000016.10",
    "chr17": "NC_000017.11",
    "chr18": "NC_000018.10",
    "chr19": "NC_000019.10",
    "chr20": "NC_000020.11",
    "chr21": "NC_000021.9",
    "chr22": "NC_000022.11",
    "chrX": "NC_000023.11",
    "chrY": "NC_000024.10",
}


@dataclass(frozen=True)
class GeneRegion:
    """An approximate GRCh38 gene span that background variant sites are drawn inside."""

    symbol: str
    gene_id: int  # NCBI Gene ID, as in ClinVar's GENEINFO (SYMBOL:GeneID)
    chrom: str
    start: int
    end: int
    outcome: str  # which outcome the gene is relevant to ("background" when none in particular)
    diseases: tuple[str, ...]  # ClinVar-style CLNDN names (underscores, no commas)


HTN, CHD, STROKE, AD = "hypertension", "coronary_heart_disease", "stroke", "alzheimers_disease"
CADASIL = "Cerebral_autosomal_dominant_arteriopathy_with_subcortical_infarcts_and_leukoencephalopathy_type_1"

GENE_REGIONS: tuple[GeneRegion, ...] = (
    # Hypertension
    GeneRegion("AGT", 183, "chr1", 230_702_523, 230_745_583, HTN, ("Essential_hypertension",)),
    GeneRegion("ACE", 1636, "chr17", 63_477_061, 63_498_380, HTN, ("Renal_tubular_dysgenesis",)),
    GeneRegion("NOS3", 4846, "chr7", 150_990_995, 151_014_588, HTN, ("Essential_hypertension",)),
    GeneRegion("AGTR1", 185, "chr3", 148_697_784, 148_743_008, HTN, ("Essential_hypertension",)),
    GeneRegion("CYP11B2", 1585, "chr8", 142_910_559, 142_917_843, HTN, ("Essential_hypertension",)),
    GeneRegion("SH2B3", 10019, "chr12", 111_405_923, 111_451_623, HTN, ("Essential_hypertension",)),
    # Coronary heart disease and lipids
    GeneRegion("LDLR", 3949, "chr19", 11_089_462, 11_133_820, CHD, ("Familial_hypercholesterolemia_1",)),
    GeneRegion("PCSK9", 255738, "chr1", 55_039_548, 55_064_852, CHD, ("Familial_hypercholesterolemia_3",)),
    GeneRegion("APOB", 338, "chr2", 21_001_429, 21_044_073, CHD, ("Familial_hypercholesterolemia_2",)),
    GeneRegion("LPA", 4018, "chr6", 160_531_483, 160_664_275, CHD, ("Coronary_artery_disease",)),
    # Extended past the lncRNA's end to take in the rs1333049 lead SNP of the 9p21 locus.
    GeneRegion("CDKN2B-AS1", 100048912, "chr9", 21_994_778, 22_128_000, CHD, ("Coronary_artery_disease",)),
    GeneRegion("LPL", 4023, "chr8", 19_901_717, 19_967_259, CHD, ("Hyperlipoproteinemia_type_I",)),
    GeneRegion("CETP", 1071, "chr16", 56_961_923, 56_983_845, CHD, ("Hyperalphalipoproteinemia",)),
    GeneRegion("HMGCR", 3156, "chr5", 75_336_329, 75_362_104, CHD, ("not_specified",)),
    # Stroke
    GeneRegion("NOTCH3", 4854, "chr19", 15_159_038, 15_200_995, STROKE, (CADASIL,)),
    GeneRegion("HTRA1", 5654, "chr10", 122_461_525, 122_514_907, STROKE, ("CARASIL_syndrome",)),
    GeneRegion(
        "F5", 2153, "chr1", 169_511_951, 169_586_481, STROKE, ("Thrombophilia_due_to_factor_V_Leiden",)
    ),
    GeneRegion("HDAC9", 9734, "chr7", 18_086_825, 19_002_416, STROKE, ("Ischemic_stroke",)),
    GeneRegion("PITX2", 5308, "chr4", 110_617_423, 110_642_123, STROKE, ("Atrial_fibrillation",)),
    GeneRegion("ZFHX3", 463, "chr16", 72_782_885, 73_891_871, STROKE, ("Atrial_fibrillation",)),
    GeneRegion(
        "MTHFR", 4524, "chr1", 11_785_723, 11_806_455, STROKE, ("Homocystinuria_due_to_MTHFR_deficiency",)
    ),
    GeneRegion("GLA", 2717, "chrX", 101_397_803, 101_407_925, STROKE, ("Fabry_disease",)),
    # Alzheimer's disease
    GeneRegion(
        "APOE", 348, "chr19", 44_905_796, 44_909_393, AD, ("Alzheimer_disease", "Dysbetalipoproteinemia")
    ),
    GeneRegion("TREM2", 54209, "chr6", 41_158_506, 41_163_186, AD, ("Alzheimer_disease_17",)),
    GeneRegion("APP", 351, "chr21", 25_880_550, 26_171_128, AD, ("Alzheimer_disease_1",)),
    GeneRegion("PSEN1", 5663, "chr14", 73_136_434, 73_223_691, AD, ("Alzheimer_disease_3",)),
    GeneRegion("PSEN2", 5664, "chr1", 226_870_184, 226_927_726, AD, ("Alzheimer_disease_4",)),
    GeneRegion("SORL1", 6653, "chr11", 121_452_314, 121_633_763, AD, ("Alzheimer_disease",)),
    GeneRegion("CLU", 1191, "chr8", 27_596_917, 27_615_031, AD, ("Alzheimer_disease",)),
    GeneRegion("ABCA7", 10347, "chr19", 1_040_102, 1_065_572, AD, ("Alzheimer_disease",)),
    GeneRegion("BIN1", 274, "chr2", 127_048_027, 127_107_355, AD, ("Alzheimer_disease",)),
)
GENES_BY_SYMBOL: dict[str, GeneRegion] = {g.symbol: g for g in GENE_REGIONS}


@dataclass(frozen=True)
class RiskVariant:
    """A variant the label model reads (its genotype is drawn before the labels), always reported in VCFs."""

    key: str  # stable name used in truth.json
    gene: str
    chrom: str
    pos: int
    ref: str
    alt: str
    rsid: str | None  # None: synthetic position, written with ID "."
    alt_frequency: float  # enriched for rare alleles, see the module docstring
    clinical_significance: str  # CLNSIG in the ClinVar-style VCF
    outcome: str
    effect: str  # one line for truth.json


# A table, kept one variant per row for reading: key, gene, chrom, pos, REF, ALT, rsID, ALT frequency,
# CLNSIG, outcome, effect. APOE alleles are drawn as e2/e3/e4 haplotypes in cohort.py, not from these
# frequencies (which are the haplotype frequencies they imply: e4 = rs429358 C, e2 = rs7412 T).
# fmt: off
RISK_VARIANTS: tuple[RiskVariant, ...] = (
    RiskVariant("APOE_rs429358", "APOE", "chr19", 44_908_684, "T", "C", "rs429358", 0.15, "risk_factor", AD,
                "C allele defines APOE e4; strongest common Alzheimer's risk allele"),
    RiskVariant("APOE_rs7412", "APOE", "chr19", 44_908_822, "C", "T", "rs7412", 0.08, "protective", AD,
                "T allele defines APOE e2; protective for Alzheimer's"),
    RiskVariant("TREM2_R47H", "TREM2", "chr6", 41_161_514, "C", "T", "rs75932628", 0.012, "risk_factor", AD,
                "TREM2 p.Arg47His; roughly triples Alzheimer's risk"),
    RiskVariant("PSEN1_synthetic", "PSEN1", "chr14", 73_173_664, "A", "G", None, 0.003, "Pathogenic", AD,
                "synthetic early-onset PSEN1 missense allele; near-deterministic risk"),
    RiskVariant("LDLR_synthetic", "LDLR", "chr19", 11_113_410, "G", "A", None, 0.008, "Pathogenic", CHD,
                "synthetic familial-hypercholesterolemia allele; raises LDL"),
    RiskVariant("PCSK9_synthetic_gof", "PCSK9", "chr1", 55_051_215, "A", "T", None, 0.004, "Likely_pathogenic",
                CHD, "synthetic PCSK9 gain-of-function allele; raises LDL"),
    RiskVariant("APOB_R3527Q", "APOB", "chr2", 21_006_288, "C", "T", "rs5742904", 0.005, "Pathogenic", CHD,
                "familial defective APOB; raises LDL"),
    RiskVariant("LPA_rs10455872", "LPA", "chr6", 160_589_086, "A", "G", "rs10455872", 0.08, "risk_factor", CHD,
                "raises lipoprotein(a); coronary risk per allele"),
    RiskVariant("CDKN2B-AS1_rs1333049", "CDKN2B-AS1", "chr9", 22_125_504, "C", "G", "rs1333049", 0.47,
                "risk_factor", CHD, "9p21 coronary risk locus; the risk allele is modelled as the ALT here"),
    RiskVariant("F5_Leiden", "F5", "chr1", 169_549_811, "C", "T", "rs6025", 0.035, "Pathogenic", STROKE,
                "factor V Leiden; thrombophilia"),
    RiskVariant("NOTCH3_synthetic", "NOTCH3", "chr19", 15_192_310, "G", "A", None, 0.006, "Pathogenic", STROKE,
                "synthetic cysteine-altering NOTCH3 allele (CADASIL); white-matter lesions"),
    RiskVariant("HTRA1_synthetic", "HTRA1", "chr10", 122_504_120, "C", "T", None, 0.004, "Likely_pathogenic",
                STROKE, "synthetic HTRA1 allele (small-vessel disease); white-matter lesions"),
    RiskVariant("AGT_rs699", "AGT", "chr1", 230_710_048, "A", "G", "rs699", 0.42, "risk_factor", HTN,
                "AGT p.Met268Thr (M235T); raises angiotensinogen"),
    RiskVariant("NOS3_rs1799983", "NOS3", "chr7", 150_999_023, "G", "T", "rs1799983", 0.30, "risk_factor", HTN,
                "NOS3 p.Glu298Asp; lower nitric-oxide production"),
    RiskVariant("AGTR1_rs5186", "AGTR1", "chr3", 148_742_201, "A", "C", "rs5186", 0.28, "risk_factor", HTN,
                "AGTR1 A1166C"),
)
# fmt: on
RISK_VARIANTS_BY_KEY: dict[str, RiskVariant] = {v.key: v for v in RISK_VARIANTS}
