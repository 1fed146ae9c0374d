"""pyradiomics features per region of the predicted label map, with the versioned parameter file."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import radiomics
import SimpleITK as sitk
from radiomics.featureextractor import RadiomicsFeatureExtractor

from radiomics_job import LABEL_NAMES
from radiomics_job.storage import file_version
from radiomics_job.volume import Geometry

# pyradiomics logs every step at INFO (and its logger would pass them on to the job's root handler).
radiomics.setVerbosity(logging.ERROR)
logging.getLogger("radiomics").setLevel(logging.ERROR)


class FeatureExtractor:
    """pyradiomics configured from one YAML file; `version` = file name + sha256[:12]."""

    def __init__(self, params: Path) -> None:
        """Raises ValueError when the file is missing or not valid pyradiomics parameters."""
        try:
            self.extractor = RadiomicsFeatureExtractor(str(params))
        except Exception as error:  # pykwalify raises its own SchemaError, yaml its own errors
            raise ValueError(f"cannot load pyradiomics parameters {params}: {error}") from error
        self.version = file_version(params)
        self.feature_count = sum(len(names) for names in self.extractor.enabledFeatures.values())

    def extract(self, image: sitk.Image, mask: sitk.Image, label: int) -> dict[str, float]:
        """Features of one label: {"original_<class>_<feature>": value}; ValueError for an unusable ROI."""
        result = self.extractor.execute(image, mask, label=label)
        return {
            str(name): float(np.asarray(value))
            for name, value in result.items()
            if not str(name).startswith("diagnostics_")
        }

    def regions(
        self, image: sitk.Image, labels: npt.NDArray[np.uint8], geometry: Geometry
    ) -> list[dict[str, Any]]:
        """One record per label of LABEL_NAMES; an empty label has voxels 0 and features null."""
        mask = geometry.apply(sitk.GetImageFromArray(labels))
        records = []
        for label, name in LABEL_NAMES.items():
            voxels = int(np.count_nonzero(labels == label))
            features: dict[str, float] | None = None
            problem: str | None = None
            if voxels:
                try:
                    features = self.extract(image, mask, label)
                except ValueError as error:  # pyradiomics' checkMask: ROI too small or one-dimensional
                    problem = str(error)
            records.append(
                {
                    "label": label,
                    "name": name,
                    "voxels": voxels,
                    "volume_mm3": round(voxels * geometry.voxel_volume_mm3, 3),
                    "features": features,
                    "features_error": problem,
                }
            )
        return records
