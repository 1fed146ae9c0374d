"""Synthetic personal identifiers: names, address, phone, MRN and SSN-like number.

They look like real PHI on purpose: the pipeline must prove it never logs them. The same identity is used
by the FHIR Patient and by DICOM PatientName, drawn from its own stream so it does not depend on modalities.
All phone numbers use the fictional 555-01xx range and SSN-like values start with 999 (never issued).
"""

from __future__ import annotations

from dataclasses import dataclass

from mmpipe.synth.cohort import Patient
from mmpipe.synth.seeding import Stream, rng_for

GIVEN_MALE = (
    "James", "Robert", "Michael", "William", "David", "Richard", "Joseph", "Thomas", "Charles", "Daniel",
    "Matthew", "Anthony", "Mark", "Donald", "Steven", "Paul", "Andrew", "Joshua", "Kenneth", "Kevin",
    "Brian", "George", "Edward", "Ronald", "Timothy", "Jason", "Jeffrey", "Ryan", "Jacob", "Gary",
)  # fmt: skip
GIVEN_FEMALE = (
    "Mary", "Patricia", "Jennifer", "Linda", "Elizabeth", "Barbara", "Susan", "Jessica", "Sarah", "Karen",
    "Lisa", "Nancy", "Betty", "Margaret", "Sandra", "Ashley", "Kimberly", "Emily", "Donna", "Michelle",
    "Carol", "Amanda", "Dorothy", "Melissa", "Deborah", "Stephanie", "Rebecca", "Sharon", "Laura", "Cynthia",
)  # fmt: skip
FAMILY = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
    "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson",
    "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores",
)  # fmt: skip
STREETS = (
    "Maple Street", "Oak Avenue", "Pine Road", "Cedar Lane", "Elm Street", "Washington Avenue", "Lake Drive",
    "Hillcrest Road", "Park Place", "River Road", "Sunset Boulevard", "Highland Avenue", "Mill Street",
)  # fmt: skip
CITIES = (
    ("Springfield", "MA", "011"), ("Worcester", "MA", "016"), ("Lowell", "MA", "018"), ("Cambridge", "MA", "021"),
    ("Brockton", "MA", "023"), ("Quincy", "MA", "021"), ("Lynn", "MA", "019"), ("Newton", "MA", "024"),
)  # fmt: skip


@dataclass(frozen=True)
class Identity:
    given: str
    family: str
    prefix: str
    line: str
    city: str
    state: str
    postal_code: str
    phone: str
    mrn: str
    ssn: str

    @property
    def dicom_name(self) -> str:
        """DICOM PN: Family^Given^^Prefix."""
        return f"{self.family}^{self.given}^^{self.prefix}"


def identity_of(patient: Patient, seed: int) -> Identity:
    rng = rng_for(seed, Stream.IDENTITY, patient.index)
    given_names = GIVEN_MALE if patient.sex == "male" else GIVEN_FEMALE
    city, state, zip_prefix = CITIES[int(rng.integers(0, len(CITIES)))]
    return Identity(
        given=given_names[int(rng.integers(0, len(given_names)))],
        family=FAMILY[int(rng.integers(0, len(FAMILY)))],
        prefix="Mr." if patient.sex == "male" else "Mrs." if rng.random() < 0.5 else "Ms.",
        line=f"{int(rng.integers(1, 999))} {STREETS[int(rng.integers(0, len(STREETS)))]}",
        city=city,
        state=state,
        postal_code=f"{zip_prefix}{int(rng.integers(0, 100)):02d}",
        phone=f"555-01{int(rng.integers(0, 100)):02d}",
        mrn=f"MRN{int(rng.integers(10_000_000, 99_999_999))}",
        ssn=f"999-{int(rng.integers(10, 99))}-{int(rng.integers(1000, 9999))}",
    )
