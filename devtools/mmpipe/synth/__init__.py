"""Synthetic coherent multimodal cohort: genomic VCF, clinical FHIR R4 NDJSON and brain MR DICOM.

    from mmpipe.synth import generate_cohort
    summary = generate_cohort(out_dir, patients=200, seed=7)  # modalities={"genomic","clinical","imaging"}

Output (an "ops delivery", uploaded as-is; everything that is not data lives in the hidden .truth/):
    genomic/<patient_id>.vcf.gz                 single-sample VCF 4.2, BGZF (~90% of patients)
    genomic/clinvar_annotations.vcf.gz          ClinVar-style sites-only annotation VCF (CLNSIG, GENEINFO...)
    clinical/<ResourceType>.ndjson              FHIR R4, one resource per line, one file per type
    imaging/<patient_id>/<SeriesUID>/<n>.dcm    one brain MR series (~60% of patients), shuffled file numbers
    .truth/truth.json                           labels + onsets, planted signals, the generative model, seed
    .truth/masks/<SeriesUID>.npz                uint8 label map (1 lesion, 2 hippocampus), (slice,row,col)

Patients link across modalities by one id: FHIR Patient.id = VCF sample = DICOM PatientID; ImagingStudy
identifiers carry `urn:oid:<StudyInstanceUID>`.

Generative model (cohort.py; restated in truth.json): per patient, demographics -> risk-variant genotypes
(APOE e2/e3/e4, TREM2, PSEN1, LDLR/PCSK9/APOB, LPA, 9p21, F5 Leiden, NOTCH3/HTRA1, AGT/NOS3/AGTR1) ->
baseline clinical state (BMI, BP, LDL/HDL, diabetes, smoking, atrial fibrillation; genotypes feed BP and
LDL) -> brain factors (white-matter lesion volume, hippocampal atrophy) -> four logistic outcome labels
(hypertension, coronary heart disease, stroke, Alzheimer's disease; prevalences about 38/15/11/11%).
Onsets fall after a three-year baseline, so the signal is visible in records dated before each onset
(e.g. BP rising before a hypertension diagnosis, MMSE declining before Alzheimer's, the MR at baseline).

Determinism: every (modality, patient) draws from numpy.random.default_rng((seed, stream, index)); ids
are UUIDv5 / hashed DICOM UIDs; dates are fixed (no wall clock). Same arguments, same bytes.
"""

from mmpipe.synth.generate import generate_cohort

__all__ = ["generate_cohort"]
