"""pyradiomics features per region of the predicted label map, with the versioned parameter file."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import radiomics
import SimpleITK as sitk
from radiomics.featureextractor import RadiomicsFeatureExtractor

from radiomics_job import DEFAULT_FALLBACK_PARAMS, FALLBACK_LABEL_NAMES, NETWORK_LABEL_NAMES
from radiomics_job.storage import file_version
from radiomics_job.volume import Geometry

# pyradiomics logs every step at INFO (and its logger would pass them on to the job's root handler).
radiomics.setVerbosity(logging.ERROR)
logging.getLogger("radiomics").setLevel(logging.ERROR)


def _load(params: Path) -> RadiomicsFeatureExtractor:
    try:
        return RadiomicsFeatureExtractor(str(params))
    except Exception as error:  # pykwalify raises its own SchemaError, yaml its own errors
        raise ValueError(f"cannot load pyradiomics parameters {params}: {error}") from error


class FeatureExtractor:
    """pyradiomics configured from two YAML files: `params` for the network's regions, `fallback_params`
    for the fallback region (radiomics_job/foreground.py). `version` = each file's name + sha256[:12],
    joined by "+" (the network regions' file first)."""

    def __init__(self, params: Path, fallback_params: Path | None = None) -> None:
        """Raises ValueError when a file is missing or not valid pyradiomics parameters."""
        fallback_params = fallback_params or DEFAULT_FALLBACK_PARAMS
        self.extractor = _load(params)
        self.fallback = _load(fallback_params)
        self.version = f"{file_version(params)}+{file_version(fallback_params)}"
        self.feature_count = sum(len(names) for names in self.extractor.enabledFeatures.values())

    def extract(self, image: sitk.Image, mask: sitk.Image, label: int) -> dict[str, float]:
        """Features of one label: {"original_<class>_<feature>": value}; ValueError for an unusable ROI.
        Values may be NaN or infinite (pyradiomics' answer for a texture of a tiny or flat region)."""
        extractor = self.fallback if label in FALLBACK_LABEL_NAMES else self.extractor
        result = extractor.execute(image, mask, label=label)
        return {
            str(name): float(np.asarray(value))
            for name, value in result.items()
            if not str(name).startswith("diagnostics_")
        }

    def regions(
        self, image: sitk.Image, labels: npt.NDArray[np.uint8], geometry: Geometry
    ) -> list[dict[str, Any]]:
        """One record per network label (lesion, hippocampus), and one for the fallback region when the
        label map has it; an empty label has voxels 0 and features null. A value that is not finite is null
        in `features` and named in `features_not_finite` (see `finite`)."""
        mask = geometry.apply(sitk.GetImageFromArray(labels))
        counts = np.bincount(labels.ravel(), minlength=max(FALLBACK_LABEL_NAMES) + 1)
        used = {label: name for label, name in FALLBACK_LABEL_NAMES.items() if counts[label]}
        records = []
        for label, name in {**NETWORK_LABEL_NAMES, **used}.items():
            voxels = int(counts[label])
            features: dict[str, float | None] | None = None
            not_finite: dict[str, str] | None = None
            problem: str | None = None
            if voxels:
                try:
                    features, not_finite = finite(self.extract(image, mask, label))
                except ValueError as error:  # pyradiomics' checkMask: ROI too small or one-dimensional
                    problem = str(error)
            records.append(
                {
                    "label": label,
                    "name": name,
                    "voxels": voxels,
                    "volume_mm3": round(voxels * geometry.voxel_volume_mm3, 3),
                    "features": features,
                    "features_not_finite": not_finite,
                    "features_error": problem,
                }
            )
        return records


def finite(values: dict[str, float]) -> tuple[dict[str, float | None], dict[str, str]]:
    """(features with every NaN / +inf / -inf value replaced by None, {name: "nan" | "inf" | "-inf"} of
    those): JSON has no such numbers, and a value that is not a number is not a feature value."""
    features: dict[str, float | None] = {}
    not_finite: dict[str, str] = {}
    for name, value in values.items():
        if math.isfinite(value):
            features[name] = value
        else:
            features[name] = None
            not_finite[name] = "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return features, not_finite
