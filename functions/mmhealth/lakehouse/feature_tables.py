"""Schemas of the feature tables (`features.clinical`, `.labels`, `.genomic`, `.imaging`).

Their columns follow from definitions the feature modules own (which LOINC codes make a measurement, which
genes are of interest, which outcomes and value sets exist, which radiomics features the job produced), so
each schema is built here from those definitions, passed in: the lakehouse owns every table's shape, naming
and documentation (`doc` metadata, kept by pyiceberg as the column comment), and imports no domain module.
Every feature table has one row per person (identity.links), keyed `patient_id`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import pyarrow as pa

PERSON = "person id: the Patient.id identity.links resolves the person's references to"


class IndicatorColumn(Protocol):
    """A definition that gives one column: its name and what it means."""

    @property
    def name(self) -> str: ...

    @property
    def doc(self) -> str: ...


class MeasurementColumns(IndicatorColumn, Protocol):
    @property
    def trend(self) -> bool: ...


class RiskAlleleColumns(IndicatorColumn, Protocol):
    @property
    def carrier(self) -> bool: ...


class OutcomeColumn(Protocol):
    @property
    def description(self) -> str: ...

    @property
    def documentation(self) -> str: ...


def _field(name: str, type_: pa.DataType, doc: str, nullable: bool = True) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"doc": doc})


def features_clinical_schema(
    measurements: Sequence[MeasurementColumns],
    comorbidities: Sequence[IndicatorColumn],
    medication_classes: Sequence[IndicatorColumn],
) -> pa.Schema:
    """`features.clinical`: one row per person; the columns of each measurement and indicator given."""
    fields = [
        _field("patient_id", pa.string(), PERSON, nullable=False),
        _field("index_date", pa.date32(), "features use records known strictly before this day (UTC)"),
        _field("age_at_index_years", pa.float64(), "age on the index date, years (from birth_date)"),
        _field("sex", pa.string(), "FHIR administrative gender"),
    ]
    for m in measurements:
        fields += [
            _field(f"{m.name}_latest", pa.float64(), f"{m.doc}: latest value before the index date"),
            _field(f"{m.name}_mean", pa.float64(), f"{m.doc}: mean of the values before the index date"),
            _field(f"{m.name}_count", pa.int32(), f"{m.doc}: number of values before the index date"),
        ]
        if m.trend:
            fields.append(
                _field(f"{m.name}_trend_per_year", pa.float64(), f"{m.doc}: least-squares slope per year")
            )
    fields.append(
        _field("smoking_status", pa.string(), "latest tobacco smoking status: never|former|current|unknown")
    )
    fields += [_field(g.name, pa.int8(), f"1 if a Condition of {g.doc} was recorded") for g in comorbidities]
    fields += [_field(g.name, pa.int8(), f"1 if a {g.doc} was ordered") for g in medication_classes]
    fields += [
        _field("encounter_count", pa.int32(), "encounters"),
        _field("inpatient_encounter_count", pa.int32(), "inpatient encounters (class IMP, ACUTE, NONAC)"),
        _field("emergency_encounter_count", pa.int32(), "emergency encounters (class EMER)"),
        _field("condition_count", pa.int32(), "Condition records, label-defining ones excluded"),
        _field("medication_request_count", pa.int32(), "medication requests"),
        _field("procedure_count", pa.int32(), "procedures"),
        _field("immunization_count", pa.int32(), "immunizations"),
        _field(
            "years_since_first_encounter", pa.float64(), "years from the first encounter to the index date"
        ),
    ]
    return pa.schema(fields)


def features_labels_schema(outcomes: Mapping[str, OutcomeColumn]) -> pa.Schema:
    """`features.labels`: one row per person; a label and an onset column per outcome (its value set)."""
    fields = [
        _field("patient_id", pa.string(), PERSON, nullable=False),
        _field("index_date", pa.date32(), "start of the label window (the features' index date)"),
    ]
    for name, outcome in outcomes.items():
        fields += [
            _field(
                name,
                pa.int8(),
                f"1 if a Condition of the value set ({outcome.documentation}) has its onset in [index date, "
                "index date + horizon); 0 if not; null if not eligible (no Patient resource, no index date, "
                "born after it, no record before it, died before it, onset before it, undated record)",
            ),
            _field(
                f"{name}_onset", pa.date32(), f"earliest onset (else recorded date) of {outcome.description}"
            ),
        ]
    return pa.schema(fields)


def gene_column(symbol: str) -> str:
    """`CDKN2B-AS1` -> `cdkn2b_as1_pathogenic_alleles`."""
    return f"{re.sub(r'[^a-z0-9]+', '_', symbol.lower()).strip('_')}_pathogenic_alleles"


def features_genomic_schema(genes: Sequence[str], risk_alleles: Sequence[RiskAlleleColumns]) -> pa.Schema:
    """`features.genomic`: one row per person with a linked VCF; a column per gene and risk allele given."""
    counted = "alleles (homozygous 2, heterozygous or hemizygous 1) of PASS calls"
    fields = [
        _field("patient_id", pa.string(), f"{PERSON} (through its VCF sample)", nullable=False),
        _field("pathogenic_burden", pa.int32(), f"ClinVar P/LP {counted}, any gene; null without ClinVar"),
        _field(
            "pathogenic_genes", pa.int32(), "distinct genes with a ClinVar P/LP allele; null without ClinVar"
        ),
    ]
    fields += [
        _field(gene_column(g), pa.int32(), f"ClinVar P/LP {counted} in {g}; null without ClinVar")
        for g in genes
    ]
    fields += [
        _field("apoe_e4_dosage", pa.int8(), "APOE e4 haplotypes (rs429358 C alleles), 0-2"),
        _field("apoe_e2_dosage", pa.int8(), "APOE e2 haplotypes (rs7412 T alleles), 0-2"),
        _field("apoe_e4_carrier", pa.int8(), "1 if carrying an APOE e4 haplotype"),
        _field(
            "apoe_genotype", pa.string(), "APOE genotype, e.g. e3/e4 (e3 where neither allele is carried)"
        ),
    ]
    for allele in risk_alleles:
        fields.append(_field(f"{allele.name}_dosage", pa.int8(), f"{allele.doc}: alleles carried, 0-2"))
        if allele.carrier:
            fields.append(_field(f"{allele.name}_carrier", pa.int8(), f"1 if carrying {allele.doc}"))
    return pa.schema(fields)


def features_imaging_schema(regions: Sequence[str], columns: Iterable[str]) -> pa.Schema:
    """`features.imaging`: one row per person with a usable series; fixed columns per region, then one
    float column per radiomics feature among `columns` (the names the rows carry)."""
    fixed = [
        pa.field("patient_id", pa.string(), nullable=False, metadata={"doc": PERSON}),
        pa.field("index_date", pa.date32(), nullable=False),
        pa.field("series_uid", pa.string(), nullable=False),
        pa.field("mr_days_before_index", pa.int32(), nullable=False),
        pa.field("mr_series_before_index", pa.int32(), nullable=False),
    ]
    for region in regions:
        fixed += [
            pa.field(f"{region}_present", pa.bool_(), nullable=False),
            pa.field(f"{region}_volume_ml", pa.float64(), nullable=False),
        ]
    names = {f.name for f in fixed}
    radiomics = sorted(set(columns) - names)
    return pa.schema(fixed + [pa.field(n, pa.float64()) for n in radiomics])
