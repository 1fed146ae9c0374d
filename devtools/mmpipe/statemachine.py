"""The pipeline's ASL, built from one branch shape per modality.

statemachines/pipeline.asl.json is the deployed artifact; this module is how it is written, so that every
modality branch has exactly the same states (a reader who knows one knows all), and a test fails when the
committed JSON and this builder disagree. Regenerate with:

    .venv/bin/python -m mmpipe.statemachine > statemachines/pipeline.asl.json
"""

from __future__ import annotations

import json
from typing import Any

# Modalities with a branch in the state machine, and the prefix of their functions' logical ids.
BRANCHES: dict[str, str] = {"genomic": "Genomic", "clinical": "Clinical", "imaging": "Imaging"}
ALL_MODALITIES = ("genomic", "clinical", "imaging")

TRANSIENT_ERRORS = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "TransientError",
]
# A throttled invocation (the import functions have reserved concurrency, and several runs can fan out at
# once) waits longer and more often than a transient error: up to about 8.5 minutes before the state fails.
THROTTLED = "Lambda.TooManyRequestsException"


def _retry() -> list[dict[str, Any]]:
    return [
        {
            "ErrorEquals": [THROTTLED],
            "IntervalSeconds": 5,
            "MaxAttempts": 8,
            "BackoffRate": 2.0,
            "MaxDelaySeconds": 120,
            "JitterStrategy": "FULL",
        },
        {
            "ErrorEquals": TRANSIENT_ERRORS,
            "IntervalSeconds": 2,
            "MaxAttempts": 3,
            "BackoffRate": 2.0,
            "MaxDelaySeconds": 30,
            "JitterStrategy": "FULL",
        },
    ]


def _catch(next_state: str, result_path: str = "$.error") -> list[dict[str, Any]]:
    return [{"ErrorEquals": ["States.ALL"], "ResultPath": result_path, "Next": next_state}]


def _invoke(function: str, payload: dict[str, Any] | str | None = None, **fields: Any) -> dict[str, Any]:
    """A Lambda task (lambda:invoke integration, polled elsewhere, never .sync) with the standard Retry.

    `payload`: the state input (None), a JSONPath into it (str), or Parameters (dict)."""
    parameters: dict[str, Any] = {"FunctionName": "${%sFunctionArn}" % function}  # noqa: UP031 - ASL placeholder
    if payload is None or isinstance(payload, str):
        parameters["Payload.$"] = payload or "$"
    else:
        parameters["Payload"] = payload
    state = {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": parameters,
        "OutputPath": "$.Payload",
        "Retry": _retry(),
    }
    state.update(fields)
    return state


def chunk_iteration(prefix: str, distributed: bool) -> dict[str, Any]:
    """One chunk: import -> Wait/Poll loop while a backend job runs; Catch -> chunk failure -> done.

    Inline for most deliveries (every state in the run's own history, where on-call reads it); as child
    executions (Distributed) when a modality has more chunks than Prepare keeps inline, so the run's history
    stays bounded whatever the delivery's size. State names are unique across the state machine, so the
    child copy's names end in `Child`."""
    p, tail = prefix, "Child" if distributed else ""
    mode = {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"} if distributed else {"Mode": "INLINE"}
    failure, done = f"Record{p}ChunkFailure{tail}", f"{p}ChunkDone{tail}"
    finished, wait, poll = f"{p}ImportFinished{tail}", f"WaitFor{p}Import{tail}", f"Poll{p}Import{tail}"
    return {
        "ProcessorConfig": mode,
        "StartAt": f"Import{p}Chunk{tail}",
        "States": {
            f"Import{p}Chunk{tail}": _invoke(f"{p}Import", Next=finished, Catch=_catch(failure)),
            finished: {
                "Type": "Choice",
                "Choices": [{"Variable": "$.status", "StringEquals": "IN_PROGRESS", "Next": wait}],
                "Default": done,
            },
            wait: {"Type": "Wait", "SecondsPath": "$.wait_seconds", "Next": poll},
            poll: _invoke(f"{p}Poll", Next=finished, Catch=_catch(failure)),
            failure: _invoke(
                "ChunkFailure",
                Next=done,
                Comment="Quarantines every file of the chunk with the error's cause; the rest of the delivery goes on",
            ),
            done: {
                "Type": "Pass",
                "Parameters": {
                    "chunk_id.$": "$.chunk.chunk_id",
                    "status.$": "$.status",
                    "rows.$": "$.rows",
                    "quarantined.$": "$.quarantined",
                },
                "End": True,
            },
        },
    }


def _chunk_map(modality: str, prefix: str, distributed: bool) -> dict[str, Any]:
    m, p = modality, prefix
    state = {
        "Type": "Map",
        "Comment": f"One iteration per chunk of {m} files: import, then poll a backend job if one was started",
        "ItemsPath": f"$.{m}.chunks",
        "ItemSelector": {
            "chunk.$": "$$.Map.Item.Value",
            "config.$": "$.config",
            "execution_started_at.$": "$$.Execution.StartTime",
        },
        "MaxConcurrencyPath": "$.config.map_concurrency",
        "ItemProcessor": chunk_iteration(p, distributed),
        "ResultPath": f"$.{m}_chunks",
        "Next": f"Catalog{p}",
        "Catch": _catch(f"{p}Failed"),
    }
    if distributed:
        state["Label"] = f"{p}Chunks"
    return state


def modality_branch(modality: str, prefix: str) -> dict[str, Any]:
    """Skip when empty -> Map over chunks (inline, or child executions for many) -> catalog."""
    m, p = modality, prefix
    return {
        "StartAt": f"Has{p}Files",
        "States": {
            f"Has{p}Files": {
                "Type": "Choice",
                "Comment": f"Skip the {m} branch when the delivery has no {m} files; many chunks run as "
                "child executions",
                "Choices": [
                    {
                        "And": [
                            {"Variable": f"$.{m}.files", "NumericGreaterThan": 0},
                            {"Variable": f"$.{m}.distributed", "BooleanEquals": True},
                        ],
                        "Next": f"Import{p}ChunksInChildren",
                    },
                    {"Variable": f"$.{m}.files", "NumericGreaterThan": 0, "Next": f"Import{p}Chunks"},
                ],
                "Default": f"{p}Skipped",
            },
            f"{p}Skipped": {"Type": "Pass", "Parameters": {"modality": m, "skipped": True}, "End": True},
            f"Import{p}Chunks": _chunk_map(m, p, distributed=False),
            f"Import{p}ChunksInChildren": _chunk_map(m, p, distributed=True),
            f"Catalog{p}": _invoke(
                f"{p}Catalog",
                payload={
                    "run_id.$": "$.run_id",
                    "modality": m,
                    "config.$": "$.config",
                    "chunks.$": f"$.{m}_chunks",
                },
                Comment=f"Commits all staged {m} parts of the run to Iceberg in one transaction (idempotent per run)",
                Catch=_catch(f"{p}Failed"),
                End=True,
            ),
            f"{p}Failed": {
                "Type": "Pass",
                "Comment": "Keeps the branch's error for Finalize, which fails the run after notifying",
                "Parameters": {"modality": m, "failed": True, "error.$": "$.error"},
                "End": True,
            },
        },
    }


def imaging_branch() -> dict[str, Any]:
    """The imaging branch: the common shape, then the radiomics job (start -> Wait/Poll loop -> catalog).

    The imaging catalog result is kept (ResultPath) and carried through the job's loop, so the branch ends,
    like the others, with one result for the modality (CatalogRadiomics merges the two).
    """
    branch = modality_branch("imaging", "Imaging")
    states = branch["States"]
    catalog = states["CatalogImaging"]
    del catalog["End"], catalog["OutputPath"]
    catalog.update(ResultSelector={"result.$": "$.Payload"}, ResultPath="$.catalog", Next="StartRadiomics")
    failed = _catch("ImagingFailed")
    states.update(
        {
            "StartRadiomics": _invoke(
                "RadiomicsStart",
                payload={"run_id.$": "$.run_id", "config.$": "$.config", "catalog.$": "$.catalog.result"},
                Comment="Writes one manifest per consistent series and starts the MONAI + pyradiomics job "
                "(SageMaker Processing or AWS Batch)",
                Next="RadiomicsFinished",
                Catch=failed,
            ),
            "RadiomicsFinished": {
                "Type": "Choice",
                "Choices": [
                    {"Variable": "$.status", "StringEquals": "IN_PROGRESS", "Next": "WaitForRadiomics"}
                ],
                "Default": "CatalogRadiomics",
            },
            "WaitForRadiomics": {"Type": "Wait", "SecondsPath": "$.wait_seconds", "Next": "PollRadiomics"},
            "PollRadiomics": _invoke("RadiomicsPoll", Next="RadiomicsFinished", Catch=failed),
            "CatalogRadiomics": _invoke(
                "RadiomicsCatalog",
                Comment="Commits features.radiomics; series the job could not process are quarantined",
                Catch=failed,
                End=True,
            ),
        }
    )
    return branch


def _notify(subject: str, message: str, next_state: str) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::sns:publish",
        "Parameters": {"TopicArn": "${RunNotificationTopicArn}", "Subject.$": subject, "Message.$": message},
        "ResultPath": None,
        "Retry": [
            {
                "ErrorEquals": ["States.ALL"],
                "IntervalSeconds": 2,
                "MaxAttempts": 3,
                "BackoffRate": 2.0,
                "JitterStrategy": "FULL",
            }
        ],
        "Next": next_state,
    }


def _features_task() -> dict[str, Any]:
    """Keeps the run state: the result (or, through the Catch, the error) lands in $.features."""
    state = _invoke(
        "Features",
        payload={"run_id.$": "$.run_id", "modalities.$": "$.modalities"},
        Comment="Per-patient features and outcome labels from the lakehouse (features.*), leakage-safe",
        ResultSelector={"result.$": "$.Payload"},
        ResultPath="$.features",
        Catch=_catch("NoTraining", "$.features"),
        Next="StartTraining",
    )
    del state["OutputPath"]  # OutputPath would apply after ResultPath and drop the run state
    return state


def _stage_task(stage: str, function: str, payload: dict[str, Any] | str, **fields: Any) -> dict[str, Any]:
    """A Lambda task whose result lands in $.<stage>.result, keeping the rest of the run state."""
    state = _invoke(function, payload, **fields)
    del state["OutputPath"]  # OutputPath would apply after ResultPath and drop the run state
    state.update(ResultSelector={"result.$": "$.Payload"}, ResultPath=f"$.{stage}")
    return state


def _job_loop(stage: str, name: str, catalog_comment: str, after: str, on_error: str) -> dict[str, Any]:
    """<Name>Finished -> Wait -> Poll -> ... -> Catalog<Name> -> `after`, for the job in $.<stage>.result.

    A failed poll or catalog goes to `on_error` with the error in $.<stage> (Finalize reports it)."""
    failed = _catch(on_error, f"$.{stage}")
    return {
        f"{name}Finished": {
            "Type": "Choice",
            "Choices": [
                {
                    "Variable": f"$.{stage}.result.status",
                    "StringEquals": "IN_PROGRESS",
                    "Next": f"WaitFor{name}",
                }
            ],
            "Default": f"Catalog{name}",
        },
        f"WaitFor{name}": {
            "Type": "Wait",
            "SecondsPath": f"$.{stage}.result.wait_seconds",
            "Next": f"Poll{name}",
        },
        f"Poll{name}": _stage_task(
            stage, f"{name}Poll", f"$.{stage}.result", Catch=failed, Next=f"{name}Finished"
        ),
        f"Catalog{name}": _stage_task(
            stage, f"{name}Catalog", f"$.{stage}.result", Comment=catalog_comment, Catch=failed, Next=after
        ),
    }


def _job_stage(
    stage: str, name: str, start_comment: str, catalog_comment: str, after: str, on_error: str
) -> dict[str, Any]:
    """Start<Name> (the run's snapshot, or why not) -> Wait/Poll loop -> Catalog<Name> -> `after`.

    $.<stage> holds the job's state (or, through a Catch, the error) for Finalize and Notify."""
    return {
        f"Start{name}": _stage_task(
            stage,
            f"{name}Start",
            {"run_id.$": "$.run_id", "config.$": "$.config", "features.$": "$.features"},
            Comment=start_comment,
            Catch=_catch(on_error, f"$.{stage}"),
            Next=f"{name}Finished",
        ),
        **_job_loop(stage, name, catalog_comment, after, on_error),
    }


def _skipped_stage(stage: str, comment: str, reason: str, after: str) -> dict[str, Any]:
    """A Pass state recording that the stage did not run, and why (Finalize reports the earlier error)."""
    return {
        "Type": "Pass",
        "Comment": comment,
        "Result": {"result": {"status": "COMPLETED", "skipped": reason}},
        "ResultPath": f"$.{stage}",
        "Next": after,
    }


def training_states() -> dict[str, Any]:
    """Training (the AutoGluon job on the run's snapshot), then scoring; a training error skips scoring."""
    return {
        **_job_stage(
            "training",
            "Training",
            "The AutoGluon SageMaker training job on the run's dataset snapshot (or why none)",
            "Metrics, report and model card next to the run; features.metrics and features.models committed",
            "StartScoring",
            "NoScoring",
        ),
        "NoTraining": _skipped_stage(
            "training",
            "The features step failed: nothing to train on (Finalize reports the features error)",
            "the features step failed",
            "StartScoring",
        ),
    }


def scoring_states() -> dict[str, Any]:
    """Scoring: the newest model on the run's snapshot (or why not), its predictions committed."""
    return {
        **_job_stage(
            "scoring",
            "Scoring",
            "Risk scores of every eligible patient: the newest model on the run's snapshot (or why none)",
            "The job's predictions committed to features.predictions",
            "Finalize",
            "Finalize",
        ),
        "NoScoring": _skipped_stage(
            "scoring",
            "Training failed: the run is not scored (Finalize reports the training error)",
            "training failed",
            "Finalize",
        ),
    }


def collect_states() -> dict[str, Any]:
    """Collect <-> WaitForDelivery until the wave's delivery is complete (mmhealth.waves), then Prepare.

    $.collect.result says why the wave is still open or how it closed; it stays in the run state."""
    collect = _invoke(
        "Collect",
        Comment="Waits for the delivery's completion marker or a quiet period, then closes the wave",
        ResultSelector={"result.$": "$.Payload"},
        ResultPath="$.collect",
        Next="DeliveryComplete",
        Catch=_catch("NotifyFailure"),
    )
    del collect["OutputPath"]  # OutputPath would apply after ResultPath and drop the run state
    return {
        "Collect": collect,
        "DeliveryComplete": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.collect.result.closed", "BooleanEquals": True, "Next": "Prepare"}],
            "Default": "WaitForDelivery",
        },
        "WaitForDelivery": {
            "Type": "Wait",
            "Comment": "The rest of the quiet period, or the poll interval while a marker waits for its files",
            "SecondsPath": "$.collect.result.wait_seconds",
            "Next": "Collect",
        },
    }


def pipeline_definition() -> dict[str, Any]:
    return {
        "Comment": (
            "mmpipe pipeline, one run per delivery wave: Collect (until the delivery is complete) -> Prepare -> "
            "per-modality import/poll/catalog (+ radiomics job) -> Features -> "
            "Training (AutoGluon job) -> Scoring (the newest model on the run's snapshot) -> Finalize -> Notify. "
            "JSONPath only; no .sync integrations (polled instead), so moto's engine and Step Functions Local "
            "run it as AWS does."
        ),
        "StartAt": "Collect",
        "States": {
            **collect_states(),
            "Prepare": _invoke(
                "Prepare",
                Next="IngestModalities",
                Comment="Freezes the closed wave's files into the run manifest and resolves the run config",
                Catch=_catch("NotifyFailure"),
            ),
            "IngestModalities": {
                "Type": "Parallel",
                "Comment": "One branch per modality; a branch with no files is skipped",
                "Branches": [
                    imaging_branch() if m == "imaging" else modality_branch(m, p) for m, p in BRANCHES.items()
                ],
                "ResultPath": "$.modalities",
                "Next": "BuildFeatures",
                "Catch": _catch("NotifyFailure"),
            },
            "BuildFeatures": _features_task(),
            **training_states(),
            **scoring_states(),
            "Finalize": _invoke(
                "Finalize",
                payload={
                    "run_id.$": "$.run_id",
                    "modalities.$": "$.modalities",
                    "unknown.$": "$.unknown",
                    "delivery.$": "$.delivery",
                    "files": {f"{m}.$": f"$.{m}.files" for m in ALL_MODALITIES},
                    "features.$": "$.features",
                    "training.$": "$.training",
                    "scoring.$": "$.scoring",
                },
                Comment="Commits the run's quarantine records to ops.quarantine and writes the run summary",
                Next="NotifyRun",
                Catch=_catch("NotifyFailure"),
            ),
            "NotifyRun": _notify(
                "States.Format('mmpipe run {} {}', $.run_id, $.status)",
                "States.JsonToString($)",
                "RunOutcome",
            ),
            "RunOutcome": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.status", "StringEquals": "FAILED", "Next": "ModalityFailed"}],
                "Default": "RunSucceeded",
            },
            "RunSucceeded": {"Type": "Succeed"},
            "ModalityFailed": {"Type": "Fail", "Error": "ModalityFailed", "CausePath": "$.cause"},
            "NotifyFailure": _notify(
                "States.Format('mmpipe run {} FAILED', $.run_id)",
                "States.JsonToString($.error)",
                "PipelineFailed",
            ),
            "PipelineFailed": {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"},
        },
    }


def render() -> str:
    return json.dumps(pipeline_definition(), indent=2) + "\n"


if __name__ == "__main__":
    print(render(), end="")
