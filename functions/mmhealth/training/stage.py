"""The Features step of a run: rebuild the features when the run changed rows, then the dataset snapshot.

Runs of different deliveries may overlap. Features are a function of the whole lake and are replaced
whole, so a rebuild that read the lake before another run's rows were committed could replace a newer
rebuild with older content. Optimistic concurrency instead of locks: the step notes the source tables'
snapshot ids before it reads them and checks them after its commit; if a source moved meanwhile, it rebuilds
again (up to MAX_REBUILDS). The last rebuild to commit has then read everything committed before its
check, and a run that commits rows after that check rebuilds after it.
"""

from __future__ import annotations

from typing import Any

from pyiceberg.catalog import Catalog

from mmhealth.features.clinical import READ_COLUMNS
from mmhealth.lakehouse.catalog import lakehouse_catalog, snapshot_id
from mmhealth.observability import logger
from mmhealth.training import dataset, featurize

MAX_REBUILDS = 3
SOURCE_TABLES = (
    *READ_COLUMNS,
    "clinical.patient",
    "identity.linkage",
    "features.radiomics",
    "genomic.samples",
    "genomic.variants",
    "genomic.clinvar",
)


def features_step(run_id: str, branches: list[dict[str, Any]]) -> dict[str, Any]:
    """BuildFeatures: {"skipped": True, "reason"} or the rebuild's counts with the snapshot ("dataset")."""
    if not featurize.changed(branches):
        return {"skipped": True, "reason": "no clinical, imaging or genomic rows changed in this run"}
    catalog = lakehouse_catalog()
    for attempt in range(1, MAX_REBUILDS + 1):
        before = source_snapshots(catalog)
        result = featurize.rebuild_features(run_id, branches, force=True)
        if source_snapshots(catalog) == before:
            break
        logger.info("lake changed during the features rebuild", extra={"attempt": attempt})
    result["rebuilds"] = attempt
    snapshot = dataset.build_snapshot(run_id)
    result["dataset"] = snapshot.model_dump() if snapshot is not None else None
    return result


def source_snapshots(catalog: Catalog) -> dict[str, int | None]:
    """The current snapshot id of every table the features read."""
    return {name: snapshot_id(name, catalog) for name in sorted(set(SOURCE_TABLES))}
