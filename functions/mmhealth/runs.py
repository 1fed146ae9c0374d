"""Run-level logic of Prepare: the closed wave -> the run manifest, per-modality work, the run config.

Finalize, which commits to Iceberg, is mmhealth.finalize: this module ships in the functions without Arrow."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from mmhealth import ledger, quarantine, storage
from mmhealth.contracts import (
    KIND_TO_MODALITY,
    MODALITIES,
    Chunk,
    ChunkRef,
    ManifestFile,
    RunConfig,
    RunManifest,
    utc_now,
)
from mmhealth.errors import ManifestError
from mmhealth.lakehouse.layout import RunPaths
from mmhealth.settings import Settings


def resolve_config(cfg: Settings, overrides: dict[str, Any] | None) -> RunConfig:
    """Defaults <- Lambda environment (template parameters) <- RUN_CONFIG <- the execution input."""
    values: dict[str, Any] = {}
    for name in ("poll_seconds", "poll_max_seconds", "poll_max_attempts"):
        if getattr(cfg, name) is not None:
            values[name] = getattr(cfg, name)
    if cfg.genomic_backend:
        values["genomic_backend"] = cfg.genomic_backend
    if cfg.clinical_backend:
        values["clinical_backend"] = cfg.clinical_backend
    if cfg.training_time_limit is not None:
        values["training_time_limit"] = cfg.training_time_limit
    if cfg.training_presets:
        values["training_presets"] = cfg.training_presets
    if cfg.training_hyperparameters:
        values["training_hyperparameters"] = cfg.training_hyperparameters
    if cfg.delivery_quiet_seconds is not None:
        values["delivery_quiet_seconds"] = cfg.delivery_quiet_seconds
    values |= cfg.run_config
    values |= overrides or {}
    try:
        return RunConfig.model_validate(values)
    except ValidationError as exc:
        raise ManifestError(f"invalid run config: {exc}") from exc


# A modality with more chunks than this imports them as child executions (a Distributed Map): about 11
# history events per inline chunk, so three modalities inline stay near 700 events of the run's history,
# and a delivery of any size stays far below Step Functions' 25,000 (DESIGN: history stays bounded).
INLINE_CHUNKS_MAX = 20


def prepare(execution_input: dict[str, Any], cfg: Settings) -> dict[str, Any]:
    """Freeze the closed wave's files into the run manifest (chunks per modality); quarantine unknown files.

    Deterministic for a wave: a redriven or restarted run writes the same manifest and chunk keys."""
    try:
        run_id, delivery, wave = (execution_input[k] for k in ("run_id", "delivery", "wave"))
    except KeyError as exc:
        raise ManifestError(f"execution input lacks {exc.args[0]}") from exc
    if not cfg.ledger_table:
        raise ManifestError("Prepare needs LEDGER_TABLE in its environment")
    current = ledger.state(cfg.ledger_table, delivery)
    if current.wave < int(wave) or (current.wave == int(wave) and current.collecting):
        raise ManifestError(
            f"wave {wave} of delivery {delivery!r} is not closed (its newest wave is {current.wave}, "
            f"{current.phase}): Collect closes it first"
        )
    config = resolve_config(cfg, execution_input.get("config"))
    files = sorted((f for _, f in ledger.files(cfg.ledger_table, delivery, int(wave))), key=_by_key)
    manifest = build_manifest(run_id, delivery, int(wave), files, cfg)
    for unknown in manifest.unknown:
        quarantine.record(
            cfg.lake_bucket,
            run_id,
            unknown.object,
            modality="unknown",
            stage="classify",
            reason=(unknown.reason or "unrecognised-type").split(":", 1)[0],
            detail=unknown.reason or "unrecognised file type",
        )
    collected = execution_input.get("collect", {}).get("result") or {}
    output: dict[str, Any] = {
        "run_id": run_id,
        "delivery": {
            "name": delivery,
            "wave": wave,
            "files": len(files),
            "closed": collected.get("reason"),
            "missing": collected.get("missing", 0),
            "missing_first": collected.get("missing_first", []),
            "unrecorded": collected.get("unrecorded", 0),
            "unrecorded_first": collected.get("unrecorded_first", []),
        },
        "config": config.model_dump(),
        "unknown": len(manifest.unknown),
    }
    for modality in MODALITIES:
        chunks = [c for c in manifest.chunks if c.modality == modality]
        output[modality] = {
            "files": sum(c.files for c in chunks),
            "chunks": [c.model_dump() for c in chunks],
            "distributed": len(chunks) > INLINE_CHUNKS_MAX,
        }
    return output


def _by_key(f: ManifestFile) -> str:
    return f.object.key


def build_manifest(
    run_id: str, delivery: str, wave: int, files: list[ManifestFile], cfg: Settings
) -> RunManifest:
    """Write each modality's chunks and the manifest to the lake bucket; return the manifest."""
    paths = RunPaths(run_id)
    refs: list[ChunkRef] = []
    for modality in MODALITIES:
        mine = [f for f in files if KIND_TO_MODALITY.get(f.kind) == modality]
        for index, start in enumerate(range(0, len(mine), cfg.chunk_size)):
            chunk = Chunk(
                chunk_id=f"{modality}-{index:04d}",
                modality=modality,
                files=mine[start : start + cfg.chunk_size],
            )
            key = paths.chunk(modality, index)
            storage.write_json(cfg.lake_bucket, key, chunk.model_dump())
            refs.append(
                ChunkRef(
                    run_id=run_id, modality=modality, chunk_id=chunk.chunk_id, key=key, files=len(chunk.files)
                )
            )
    manifest = RunManifest(
        run_id=run_id,
        created_at=utc_now(),
        landing_bucket=files[0].object.bucket if files else "",
        lake_bucket=cfg.lake_bucket,
        deliveries=[delivery],
        wave=wave,
        chunks=refs,
        unknown=[f for f in files if f.kind == "unknown"],
        markers=[f.object.key for f in files if f.kind == "marker"],
    )
    storage.write_json(cfg.lake_bucket, paths.manifest, manifest.model_dump())
    return manifest


def short_cause(cause: str) -> str:
    """Lambda errors arrive as a JSON Cause; keep the message an on-call engineer reads first."""
    try:
        parsed = json.loads(cause)
    except (TypeError, ValueError):
        return cause[:1000]
    if isinstance(parsed, dict):
        return f"{parsed.get('errorType', '')}: {parsed.get('errorMessage', '')}".strip(": ")[:1000]
    return cause[:1000]
