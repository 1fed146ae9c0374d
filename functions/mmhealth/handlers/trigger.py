"""SQS (S3 ObjectCreated events) -> classified objects recorded under their delivery's wave -> its run.

Partial batch failures: a message whose object cannot be read is reported in batchItemFailures and
retried alone (then dead-lettered); the others are recorded. The objects are sniffed concurrently first;
the BatchProcessor then accounts for each record's outcome.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from mmhealth import ingest
from mmhealth.contracts import ManifestFile
from mmhealth.observability import logger, metrics, tracer
from mmhealth.settings import settings


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    classified = ingest.classify_messages({r["messageId"]: r["body"] for r in event["Records"]})

    def classified_files(record: SQSRecord) -> list[ManifestFile]:
        outcome = classified[record.message_id]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    with processor(records=event["Records"], handler=classified_files):
        outcomes = processor.process()
    files = [f for status, result, _ in outcomes if status == "success" for f in result]
    run_ids = ingest.start_runs(files, settings())
    response = processor.response()
    logger.info(
        "batch processed",
        extra={
            "records": len(event["Records"]),
            "files": len(files),
            "failed": len(response["batchItemFailures"]),
            "runs": run_ids,
        },
    )
    return dict(response)
