"""The outcomes and the Condition codes that define them: value sets read from `outcomes.toml` (its comments
say where each code comes from).

    OUTCOMES["stroke"].snomed     # frozenset of SNOMED CT concept ids
    defines(OUTCOMES["stroke"], system_column, code_column)  # per Condition row: does it define the label?
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

DEFINITIONS = Path(__file__).with_name("outcomes.toml")
SNOMED_SYSTEMS = ("urn:oid:2.16.840.1.113883.6.96", "sct", "snomed", "snomedct", "snomed ct", "snomed-ct")
ICD10CM_SYSTEMS = ("urn:oid:2.16.840.1.113883.6.90", "icd-10-cm", "icd10cm", "icd-10cm")


@dataclass(frozen=True)
class Outcome:
    """One outcome's value set: SNOMED CT codes (exact) and ICD-10-CM categories (a category and its
    subcodes)."""

    name: str
    description: str
    snomed: tuple[str, ...]
    icd10cm: tuple[str, ...]

    @property
    def documentation(self) -> str:
        """The value set in a sentence (the label column's doc)."""
        icd = f"; ICD-10-CM {', '.join(self.icd10cm)} and their subcodes" if self.icd10cm else ""
        return f"{self.description}: SNOMED CT {', '.join(self.snomed)}{icd}"


def load(path: Path = DEFINITIONS) -> dict[str, Outcome]:
    """The outcomes of a definitions file, in file order. Raises ValueError naming what is wrong."""
    with path.open("rb") as handle:
        document = tomllib.load(handle)
    outcomes = {}
    for name, entry in document.items():
        snomed = tuple(str(c).strip() for c in entry.get("snomed", []))
        icd = tuple(str(c).strip().upper().replace(".", "") for c in entry.get("icd10cm", []))
        if not snomed and not icd:
            raise ValueError(f"{path.name}: outcome {name} has no codes")
        if any(not c.isdigit() for c in snomed):
            raise ValueError(f"{path.name}: outcome {name}: a SNOMED CT code is not a concept id")
        outcomes[name] = Outcome(name, str(entry.get("description", name)), snomed, icd)
    return outcomes


OUTCOMES: dict[str, Outcome] = load()
# The first SNOMED CT code of each outcome: the one the pipeline first labelled with (and the synthetic
# cohort writes).
PRIMARY_CODES: dict[str, str] = {name: o.snomed[0] for name, o in OUTCOMES.items()}
ALL_SNOMED: frozenset[str] = frozenset(c for o in OUTCOMES.values() for c in o.snomed)
ALL_ICD10CM: tuple[str, ...] = tuple(sorted({c for o in OUTCOMES.values() for c in o.icd10cm}))


def system_is(
    system: pa.ChunkedArray, fragment: str, names: tuple[str, ...], unstated: bool
) -> npt.NDArray[np.bool_]:
    """Code system check: the canonical URI (and versioned variants of it), known OIDs and short names."""
    lower = pc.utf8_lower(system)
    match = _bools(pc.match_substring(lower, fragment)) | _bools(pc.is_in(lower, pa.array(names)))
    return match | (_bools(pc.is_null(system)) if unstated else False)


def in_icd_categories(codes: pa.ChunkedArray, categories: tuple[str, ...]) -> npt.NDArray[np.bool_]:
    """Codes that are one of `categories` (3-character ICD-10-CM categories) or a subcode of one."""
    if not categories:
        return np.zeros(len(codes), dtype=np.bool_)
    bare = pc.utf8_upper(pc.replace_substring(codes, ".", ""))
    return _bools(pc.match_substring_regex(bare, f"^({'|'.join(categories)})"))


def defines(outcome: Outcome, system: pa.ChunkedArray, code: pa.ChunkedArray) -> npt.NDArray[np.bool_]:
    """Per Condition row: its coding is in the outcome's value set, under the code system it belongs to."""
    snomed = system_is(system, "snomed.info/sct", SNOMED_SYSTEMS, unstated=False)
    icd = system_is(system, "icd-10-cm", ICD10CM_SYSTEMS, unstated=False)
    return (snomed & _bools(pc.is_in(code, pa.array(outcome.snomed, pa.string())))) | (
        icd & in_icd_categories(code, outcome.icd10cm)
    )


def carries_any_label_code(codes: pa.ChunkedArray) -> npt.NDArray[np.bool_]:
    """Codes of any outcome's value set, whatever system they are given in: the leakage boundary is wider
    than the label definition on purpose."""
    return _bools(pc.is_in(codes, pa.array(sorted(ALL_SNOMED), pa.string()))) | in_icd_categories(
        codes, ALL_ICD10CM
    )


def _bools(values: pa.ChunkedArray | pa.Array) -> npt.NDArray[np.bool_]:
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=np.bool_)
