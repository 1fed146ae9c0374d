"""The radiomics job: DICOM series -> oriented 3-D volume -> MONAI segmentation -> pyradiomics features.

A separate deployable (containers/radiomics/Dockerfile), not part of the Lambda package: it must not import
`mmhealth`. Entry points: `python -m radiomics_job` (the job) and `python -m radiomics_job.train`.
"""

from __future__ import annotations

from pathlib import Path

__version__ = "1.1.0"

# model/ and params/ sit beside the package, in the repository (containers/radiomics/) and in the image
# (/opt/radiomics/); --weights / --params override them.
HOME = Path(__file__).resolve().parent.parent
DEFAULT_WEIGHTS = HOME / "model" / "segmenter-v1.pt"
DEFAULT_PARAMS = HOME / "params" / "radiomics-v2.yaml"
DEFAULT_FALLBACK_PARAMS = HOME / "params" / "radiomics-foreground-v1.yaml"

# The network's regions (the labels it was trained on), and the fallback region (foreground.py) a series
# gets instead when the network finds none. Features list the network's regions always, the fallback when used.
NETWORK_LABEL_NAMES: dict[int, str] = {1: "lesion", 2: "hippocampus"}
FALLBACK_LABEL_NAMES: dict[int, str] = {3: "foreground"}
LABEL_NAMES: dict[int, str] = {**NETWORK_LABEL_NAMES, **FALLBACK_LABEL_NAMES}
