"""What FHIR R4 (4.0.1) itself says that the flattener needs: the resource types and the id format.

`RESOURCE_TYPES` is every concrete resource type of R4: the StructureDefinitions of the official
hl7.fhir.r4.core 4.0.1 package with kind=resource, derivation=specialization and abstract=false (146
types). R4B and R5 renamed or added types (MedicinalProductDefinition, SubscriptionTopic, ...): those are
not R4, and HealthLake's R4 data store rejects them too.
"""

from __future__ import annotations

import re

VERSION = "4.0.1"

RESOURCE_TYPES: frozenset[str] = frozenset(
    {
        "Account", "ActivityDefinition", "AdverseEvent", "AllergyIntolerance", "Appointment",
        "AppointmentResponse", "AuditEvent", "Basic", "Binary", "BiologicallyDerivedProduct",
        "BodyStructure", "Bundle", "CapabilityStatement", "CarePlan", "CareTeam", "CatalogEntry",
        "ChargeItem", "ChargeItemDefinition", "Claim", "ClaimResponse", "ClinicalImpression",
        "CodeSystem", "Communication", "CommunicationRequest", "CompartmentDefinition", "Composition",
        "ConceptMap", "Condition", "Consent", "Contract", "Coverage", "CoverageEligibilityRequest",
        "CoverageEligibilityResponse", "DetectedIssue", "Device", "DeviceDefinition", "DeviceMetric",
        "DeviceRequest", "DeviceUseStatement", "DiagnosticReport", "DocumentManifest",
        "DocumentReference", "EffectEvidenceSynthesis", "Encounter", "Endpoint", "EnrollmentRequest",
        "EnrollmentResponse", "EpisodeOfCare", "EventDefinition", "Evidence", "EvidenceVariable",
        "ExampleScenario", "ExplanationOfBenefit", "FamilyMemberHistory", "Flag", "Goal",
        "GraphDefinition", "Group", "GuidanceResponse", "HealthcareService", "ImagingStudy",
        "Immunization", "ImmunizationEvaluation", "ImmunizationRecommendation", "ImplementationGuide",
        "InsurancePlan", "Invoice", "Library", "Linkage", "List", "Location", "Measure",
        "MeasureReport", "Media", "Medication", "MedicationAdministration", "MedicationDispense",
        "MedicationKnowledge", "MedicationRequest", "MedicationStatement", "MedicinalProduct",
        "MedicinalProductAuthorization", "MedicinalProductContraindication",
        "MedicinalProductIndication", "MedicinalProductIngredient", "MedicinalProductInteraction",
        "MedicinalProductManufactured", "MedicinalProductPackaged", "MedicinalProductPharmaceutical",
        "MedicinalProductUndesirableEffect", "MessageDefinition", "MessageHeader", "MolecularSequence",
        "NamingSystem", "NutritionOrder", "Observation", "ObservationDefinition", "OperationDefinition",
        "OperationOutcome", "Organization", "OrganizationAffiliation", "Parameters", "Patient",
        "PaymentNotice", "PaymentReconciliation", "Person", "PlanDefinition", "Practitioner",
        "PractitionerRole", "Procedure", "Provenance", "Questionnaire", "QuestionnaireResponse",
        "RelatedPerson", "RequestGroup", "ResearchDefinition", "ResearchElementDefinition",
        "ResearchStudy", "ResearchSubject", "RiskAssessment", "RiskEvidenceSynthesis", "Schedule",
        "SearchParameter", "ServiceRequest", "Slot", "Specimen", "SpecimenDefinition",
        "StructureDefinition", "StructureMap", "Subscription", "Substance", "SubstanceNucleicAcid",
        "SubstancePolymer", "SubstanceProtein", "SubstanceReferenceInformation",
        "SubstanceSourceMaterial", "SubstanceSpecification", "SupplyDelivery", "SupplyRequest", "Task",
        "TerminologyCapabilities", "TestReport", "TestScript", "ValueSet", "VerificationResult",
        "VisionPrescription",
    }
)  # fmt: skip

# The `id` datatype: "Any combination of upper- or lower-case ASCII letters, numerals, '-' and '.', with a
# length limit of 64 characters."
ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")

# Resource types of R4B (4.3) and R5 that R4 does not have (from fhir.resources 8.3.0's models): a
# resourceType among them is named in a problem, since it says which FHIR version the sender writes.
LATER_RESOURCE_TYPES: frozenset[str] = frozenset(
    {
        "ActorDefinition", "AdministrableProductDefinition", "ArtifactAssessment",
        "BiologicallyDerivedProductDispense", "Citation", "ClinicalUseDefinition", "ConditionDefinition",
        "DeviceAssociation", "DeviceDispense", "DeviceUsage", "EncounterHistory", "EvidenceReport",
        "FormularyItem", "GenomicStudy", "ImagingSelection", "Ingredient", "InventoryItem", "InventoryReport",
        "ManufacturedItemDefinition", "MedicinalProductDefinition", "NutritionIntake", "NutritionProduct",
        "PackagedProductDefinition", "Permission", "RegulatedAuthorization", "RequestOrchestration",
        "Requirements", "SubscriptionStatus", "SubscriptionTopic", "SubstanceDefinition", "TestPlan",
        "Transport",
    }
)  # fmt: skip

# Coded elements with a *required* binding in R4 (4.0.1) that the tables read: element path -> (value set,
# its codes). A value outside the set is not R4 (a surname in Patient.gender, a typo in a status), so the
# resource is rejected (invalid-resource) rather than carried into the features. Condition's two statuses
# are CodeableConcepts: their code is checked when the coding's system is the value set's code system (or
# absent). Source: the "Binding: ... (Required)" lines of each resource's page in the R4 specification.
REQUIRED_BINDINGS: dict[str, tuple[str, frozenset[str]]] = {
    "Patient.gender": ("administrative-gender", frozenset({"male", "female", "other", "unknown"})),
    "Encounter.status": ("encounter-status", frozenset(
        {"planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled", "entered-in-error",
         "unknown"})),
    "Condition.clinicalStatus": ("condition-clinical", frozenset(
        {"active", "recurrence", "relapse", "inactive", "remission", "resolved"})),
    "Condition.verificationStatus": ("condition-ver-status", frozenset(
        {"unconfirmed", "provisional", "differential", "confirmed", "refuted", "entered-in-error"})),
    "Observation.status": ("observation-status", frozenset(
        {"registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error",
         "unknown"})),
    "Procedure.status": ("event-status", frozenset(
        {"preparation", "in-progress", "not-done", "on-hold", "stopped", "completed", "entered-in-error",
         "unknown"})),
    "MedicationRequest.status": ("medicationrequest-status", frozenset(
        {"active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped", "draft", "unknown"})),
    "MedicationRequest.intent": ("medicationrequest-intent", frozenset(
        {"proposal", "plan", "order", "original-order", "reflex-order", "filler-order", "instance-order",
         "option"})),
    "Immunization.status": ("immunization-status", frozenset({"completed", "entered-in-error", "not-done"})),
    "DiagnosticReport.status": ("diagnostic-report-status", frozenset(
        {"registered", "partial", "preliminary", "final", "amended", "corrected", "appended", "cancelled",
         "entered-in-error", "unknown"})),
    "ImagingStudy.status": ("imagingstudy-status", frozenset(
        {"registered", "available", "cancelled", "entered-in-error", "unknown"})),
    "Claim.status": ("fm-status", frozenset({"active", "cancelled", "draft", "entered-in-error"})),
    "Claim.use": ("claim-use", frozenset({"claim", "preauthorization", "predetermination"})),
}  # fmt: skip
TERMINOLOGY = "http://terminology.hl7.org/CodeSystem/"
