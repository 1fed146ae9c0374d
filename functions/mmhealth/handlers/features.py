"""Features: once per delivery, rebuild the features.* tables and the training dataset snapshot.

A run whose data changed but which is not the last of its delivery to reach this step defers: it leaves
`features/pending/<run>` and the last run rebuilds (mmhealth.delivery), whether or not its own data changed.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mmhealth import delivery, featurize, storage
from mmhealth.lakehouse import layout
from mmhealth.observability import logger, metrics, tracer
from mmhealth.settings import settings
from mmhealth.training import dataset

PENDING = layout.FEATURES_PENDING


@logger.inject_lambda_context(correlation_id_path="run_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    run_id, branches = event["run_id"], event.get("modalities") or []
    lake = settings().lake_bucket
    changed = featurize.changed(branches)
    later = delivery.runs_still_before(run_id, "features")
    if later:
        if changed:
            storage.write_json(lake, f"{PENDING}{run_id}", {"run_id": run_id})
        reason = f"run {later[0]} ({len(later)} run(s) in all) is still ingesting; the last run rebuilds"
        logger.info("features deferred", extra={"runs_still_ingesting": len(later)})
        return {"skipped": True, "reason": reason}
    pending = sorted(storage.list_keys(lake, PENDING))
    result = featurize.rebuild_features(run_id, branches, force=bool(pending))
    if not result.get("skipped"):
        snapshot = dataset.build_snapshot(run_id)
        result["dataset"] = snapshot.model_dump() if snapshot is not None else None
        if pending:
            storage.delete_keys(lake, pending)  # deferred runs' changes are in this rebuild
            result["deferred_runs"] = len(pending)
    return result
