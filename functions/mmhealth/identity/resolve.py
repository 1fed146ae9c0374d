"""Patient identity: every source patient reference of the lake -> one person, with the rule that linked it.

Sources (`identity.links.source_kind`):
    patient_id        a delivered Patient.id, or a bare id a record names
    identifier        `system|value`: a reference by identifier only, or `Patient?identifier=system|value`
                      (clinical rows carry these as `identifier:system|value`)
    vcf_sample        a VCF sample column name (genomic.samples)
    dicom_patient_id  a DICOM PatientID (imaging.series / features.radiomics)

Rules, in the order they are tried (the first that applies links; `rule` records which):
1. Patients are one person when they share an identifier (`system|value`, national ids excluded: they are
   never flattened) - "shared identifier"; when a Patient was POSTed with `ifNoneExist=identifier=...`
   that another Patient carries - "ifNoneExist" (an id-less POSTed Patient's id is its urn:uuid fullUrl);
   or when a linkage row says so - "linkage file" (a `patient_id` row joins two Patients; an `identifier`
   row joins every Patient carrying the identifier to its patient_id). The person id is the Patient.id a
   linkage row names, else the smallest Patient.id of the group.
2. A record's `identifier:system|value` resolves to the one person whose Patients carry that identifier
   ("identifier"), or that a linkage row names ("linkage file"). None: unlinked, "no delivered Patient
   carries it"; several: unlinked, ambiguous.
3. A VCF sample or a DICOM PatientID resolves through a linkage row of its kind ("linkage file"), else when
   it is a delivered Patient.id ("patient id"), else when it is the value of an identifier of exactly one
   person ("identifier value": DICOM PatientID is usually the MRN).
Nothing is guessed beyond these: whatever none of them resolves is kept and listed as unlinked with why.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mmhealth.clinical.rows import IDENTIFIER_PREFIX
from mmhealth.clinical.values import JOIN
from mmhealth.lakehouse.schemas import IDENTITY_LINKS

UNLINKED = "unlinked"


@dataclass
class Identity:
    """The resolution: `links` (IDENTITY_LINKS rows) and the person of each (kind, value)."""

    persons: dict[tuple[str, str], str | None] = field(default_factory=dict)
    rows: list[dict[str, str | None]] = field(default_factory=list)

    def person_of(self, kind: str, value: str) -> str | None:
        return self.persons.get((kind, value))

    def add(self, kind: str, value: str, person: str | None, rule: str, detail: str | None = None) -> None:
        if (kind, value) in self.persons:
            return
        self.persons[(kind, value)] = person
        self.rows.append(
            {"source_kind": kind, "source_value": value, "person_id": person, "rule": rule, "detail": detail}
        )

    @property
    def links(self) -> pa.Table:
        rows = sorted(self.rows, key=lambda r: (str(r["source_kind"]), str(r["source_value"])))
        return pa.Table.from_pylist(rows, schema=IDENTITY_LINKS)

    def summary(self, listed: int = 20) -> dict[str, dict[str, Any]]:
        """Per source kind: how many sources are linked, how many are not, and the first unlinked ones."""
        out: dict[str, dict[str, Any]] = {}
        for (kind, _), person in sorted(self.persons.items()):
            entry = out.setdefault(kind, {"linked": 0, "unlinked": 0, "first_unlinked": []})
            entry["linked" if person is not None else "unlinked"] += 1
        for kind, entry in out.items():
            entry["first_unlinked"] = self.unlinked(kind)[:listed]
        return out

    def unlinked(self, kind: str) -> list[str]:
        return sorted(v for (k, v), person in self.persons.items() if k == kind and person is None)


def resolve(
    patients: pa.Table,
    references: Iterable[str],
    linkage: pa.Table | None = None,
    samples: Iterable[str] = (),
    dicom_patient_ids: Iterable[str] = (),
) -> Identity:
    """Apply the rules (module docstring). `patients`: clinical.patient's resource_id, identifiers and (when
    present) if_none_exist;
    `references`: the patient_id values the clinical tables hold; `linkage`: identity.linkage rows."""
    ids = [str(p) for p in patients["resource_id"].to_pylist()]
    identifiers = _identifiers_of(ids, patients["identifiers"].to_pylist())
    links = _linkage_rows(linkage)
    groups = _Groups(ids)
    holders: dict[str, set[str]] = defaultdict(set)
    for patient, idents in identifiers.items():
        for ident in idents:
            holders[ident].add(patient)
    for ident in sorted(holders):
        groups.join(sorted(holders[ident]), "shared identifier")
    # A conditional create (Bundle entry request.ifNoneExist=identifier=...) says: "this Patient is the one
    # that identifier names, if there is one" - even when the resource does not carry the identifier itself.
    criteria = patients["if_none_exist"].to_pylist() if "if_none_exist" in patients.column_names else []
    for patient, ident in sorted((p, c) for p, c in zip(ids, criteria, strict=False) if c):
        groups.join([patient, *sorted(holders.get(ident, set()) - {patient})], "ifNoneExist")
    for kind, value, target in links:
        if target not in groups.parent:
            continue
        if kind == "patient_id" and value in groups.parent:
            groups.join([target, value], "linkage file")
        elif kind == "identifier":
            groups.join([target, *sorted(holders.get(value, ()))], "linkage file")
        groups.named.add(target)

    identity = Identity()
    person = groups.persons()
    for patient in sorted(ids):
        identity.add("patient_id", patient, person[patient], groups.rule.get(patient, "patient resource"))
    by_link = {(kind, value): target for kind, value, target in links}
    values = _persons_by_identifier_value(identifiers, person)
    for reference in sorted(set(references)):
        if reference.startswith(IDENTIFIER_PREFIX):
            ident = reference[len(IDENTIFIER_PREFIX) :]
            candidates = {person[p] for p in holders.get(ident, ())}
            _link(identity, "identifier", ident, candidates, "identifier", by_link, person)
        elif reference not in person:
            _link(identity, "patient_id", reference, set(), "", by_link, person)
    for kind, found in (("vcf_sample", samples), ("dicom_patient_id", dicom_patient_ids)):
        for value in sorted(set(found)):
            candidates = {person[value]} if value in person else values.get(value, set())
            rule = "patient id" if value in person else "identifier value"
            _link(identity, kind, value, candidates, rule, by_link, person)
    return identity


def _link(
    identity: Identity,
    kind: str,
    value: str,
    candidates: set[str],
    rule: str,
    by_link: dict[tuple[str, str], str],
    person: dict[str, str],
) -> None:
    """Link (kind, value): a linkage row first, else the one candidate person; else unlinked with why."""
    target = by_link.get((kind, value))
    if target is not None:
        if target in person:
            identity.add(kind, value, person[target], "linkage file")
        else:
            identity.add(
                kind, value, None, UNLINKED, "the linkage file names a Patient that was not delivered"
            )
    elif len(candidates) == 1:
        identity.add(kind, value, next(iter(candidates)), rule)
    elif candidates:
        identity.add(kind, value, None, UNLINKED, f"ambiguous: {len(candidates)} persons match")
    else:
        identity.add(kind, value, None, UNLINKED, _NO_MATCH[kind])


_NO_MATCH = {
    "identifier": "no delivered Patient carries this identifier and no linkage row names it",
    "patient_id": "no Patient resource with this id was delivered",
    "vcf_sample": "not a Patient.id nor an identifier value of one person, and no linkage row names it",
    "dicom_patient_id": "not a Patient.id nor an identifier value of one person, and no linkage row names it",
}


class _Groups:
    """Union-find over Patient ids, remembering why each Patient joined a group."""

    def __init__(self, ids: list[str]) -> None:
        self.parent = {p: p for p in ids}
        self.rule: dict[str, str] = {}
        self.named: set[str] = set()  # Patient ids a linkage row names: preferred as a group's person id

    def find(self, p: str) -> str:
        while self.parent[p] != p:
            self.parent[p] = self.parent[self.parent[p]]
            p = self.parent[p]
        return p

    def join(self, members: list[str], rule: str) -> None:
        members = [m for m in members if m in self.parent]
        for other in members[1:]:
            a, b = self.find(members[0]), self.find(other)
            if a != b:
                self.parent[b] = a
                for p in (members[0], other):
                    self.rule.setdefault(p, rule)

    def persons(self) -> dict[str, str]:
        """Patient id -> person id: a named member of its group if any, else the smallest member."""
        members: dict[str, list[str]] = defaultdict(list)
        for p in self.parent:
            members[self.find(p)].append(p)
        person = {}
        for group in members.values():
            named = sorted(p for p in group if p in self.named)
            chosen = named[0] if named else min(group)
            person.update(dict.fromkeys(group, chosen))
        return person


def _identifiers_of(ids: list[str], joined: list[str | None]) -> dict[str, list[str]]:
    return {p: [i for i in (j or "").split(JOIN) if i] for p, j in zip(ids, joined, strict=True)}


def _persons_by_identifier_value(
    identifiers: dict[str, list[str]], person: dict[str, str]
) -> dict[str, set[str]]:
    """Identifier value (system dropped) -> the persons carrying it: how a DICOM PatientID (an MRN) matches."""
    found: dict[str, set[str]] = defaultdict(set)
    for patient, idents in identifiers.items():
        for ident in idents:
            found[ident.split("|", 1)[-1]].add(person[patient])
    return found


def _linkage_rows(linkage: pa.Table | None) -> list[tuple[str, str, str]]:
    if linkage is None or linkage.num_rows == 0:
        return []
    return sorted(
        zip(
            linkage["kind"].to_pylist(),
            linkage["value"].to_pylist(),
            linkage["patient_id"].to_pylist(),
            strict=True,
        )
    )


# ------------------------------------------------------------------------------------ applying it to tables


def from_links(links: pa.Table | None) -> Identity:
    """The Identity an identity.links table records (what the features step wrote)."""
    identity = Identity()
    for row in links.to_pylist() if links is not None else []:
        identity.add(row["source_kind"], row["source_value"], row["person_id"], row["rule"], row["detail"])
    return identity


def person_of_reference(identity: Identity, reference: str) -> str | None:
    """The person of a clinical row's patient_id (a bare Patient id, or `identifier:system|value`)."""
    if reference.startswith(IDENTIFIER_PREFIX):
        return identity.person_of("identifier", reference[len(IDENTIFIER_PREFIX) :])
    return identity.person_of("patient_id", reference)


def clinical_per_person(tables: dict[str, pa.Table], identity: Identity) -> dict[str, pa.Table]:
    """The clinical tables with patient_id replaced by the person id. A reference no rule resolves keeps its
    value (the records stay, under a patient without a Patient resource, so not eligible for labels); of
    several Patient resources of one person, the row of the one whose id is the person id is kept."""
    out = {}
    for name, table in tables.items():
        if "patient_id" not in table.column_names:
            out[name] = table
            continue
        persons = map_values(table["patient_id"], lambda v: person_of_reference(identity, v) or v)
        mapped = table.set_column(table.column_names.index("patient_id"), "patient_id", persons)
        if name == "clinical.patient":  # a person's id is one of its Patients' ids: keep that Patient's row
            mapped = mapped.filter(pc.equal(persons, table["patient_id"]))
        out[name] = mapped
    return out


def map_values(values: pa.ChunkedArray, mapping: Callable[[str], str | None]) -> pa.ChunkedArray:
    """`mapping` applied once per distinct value (a table has far fewer patients than rows); nulls stay."""
    distinct = pc.unique(values).drop_null()
    mapped = pa.array([mapping(v) for v in distinct.to_pylist()], type=pa.string())
    return pc.take(mapped, pc.index_in(values, value_set=distinct))


def one_sample_per_person(identity: Identity, kind: str, values: Iterable[str]) -> dict[str, str]:
    """value -> person for the linked values of `kind`, one value per person (the smallest): two callsets of
    one person would count their alleles twice. The others are left out of the features."""
    chosen: dict[str, str] = {}
    for value in sorted(set(values)):
        person = identity.person_of(kind, value)
        if person is not None and person not in chosen.values():
            chosen[value] = person
    return chosen
