"""Environment of the Lambda functions, validated (pydantic) instead of read ad hoc.

Read per invocation (cheap) rather than cached at import, so tests and the local runtime can change the
environment between invocations.
"""

from __future__ import annotations

import json
import os

from pydantic import BaseModel, Field, ValidationError

from mmhealth.errors import PipelineError


class Settings(BaseModel):
    lake_bucket: str = Field(min_length=3)
    glue_database_prefix: str = ""
    state_machine_arn: str | None = None
    ledger_table: str | None = None
    chunk_size: int = Field(default=25, ge=1, le=1000)
    poll_seconds: int | None = None
    poll_max_seconds: int | None = None  # POLL_MAX_SECONDS -> RunConfig
    poll_max_attempts: int | None = None  # POLL_MAX_ATTEMPTS -> RunConfig
    genomic_backend: str | None = None
    healthomics_variant_store: str | None = None
    healthomics_role_arn: str | None = None
    clinical_backend: str | None = None
    healthlake_datastore_id: str | None = None
    healthlake_role_arn: str | None = None
    healthlake_kms_key_id: str | None = None
    healthimaging_datastore_id: str | None = None
    healthimaging_role_arn: str | None = None
    radiomics_backend: str = "sagemaker"  # sagemaker | batch
    radiomics_image_uri: str | None = None
    radiomics_role_arn: str | None = None  # the SageMaker Processing execution role
    radiomics_instance_type: str = "ml.g4dn.xlarge"
    radiomics_instance_count: int = Field(default=1, ge=1, le=100)
    radiomics_job_queue: str | None = None  # AWS Batch
    radiomics_job_definition: str | None = None  # AWS Batch
    training_image_uri: str | None = None  # containers/training, or AWS's AutoGluon training image
    training_role_arn: str | None = None  # the SageMaker training execution role
    # With AWS's AutoGluon image: the script-mode source tarball (`make training-source`), s3://...
    training_source_uri: str | None = None
    training_instance_type: str = "ml.m5.2xlarge"
    scoring_instance_type: str = "ml.m5.xlarge"  # the scoring Processing job (AutoGluon inference on CPU)
    endpoint_name: str | None = None  # ENDPOINT_NAME: the optional real-time endpoint (RealtimeEndpoint)
    endpoint_memory_mb: int = 4096
    endpoint_max_concurrency: int = 2
    training_time_limit: int | None = None  # TRAINING_TIME_LIMIT -> RunConfig.training_time_limit
    training_presets: str | None = None  # TRAINING_PRESETS -> RunConfig.training_presets
    training_hyperparameters: str | None = None  # TRAINING_HYPERPARAMETERS -> RunConfig
    delivery_quiet_seconds: int | None = None  # DELIVERY_QUIET_SECONDS -> RunConfig
    run_config: dict[str, object] = Field(default_factory=dict)  # RUN_CONFIG: JSON overrides


def settings() -> Settings:
    """The current environment as Settings; raises PipelineError naming the bad variable."""
    env = os.environ
    try:
        return Settings(
            lake_bucket=env.get("LAKE_BUCKET", ""),
            glue_database_prefix=env.get("GLUE_DATABASE_PREFIX", ""),
            state_machine_arn=env.get("STATE_MACHINE_ARN") or None,
            ledger_table=env.get("LEDGER_TABLE") or None,
            chunk_size=int(env.get("CHUNK_SIZE", "25")),
            poll_seconds=int(env["POLL_SECONDS"]) if env.get("POLL_SECONDS") else None,
            poll_max_seconds=int(env["POLL_MAX_SECONDS"]) if env.get("POLL_MAX_SECONDS") else None,
            poll_max_attempts=int(env["POLL_MAX_ATTEMPTS"]) if env.get("POLL_MAX_ATTEMPTS") else None,
            genomic_backend=env.get("GENOMIC_BACKEND") or None,
            healthomics_variant_store=env.get("HEALTHOMICS_VARIANT_STORE") or None,
            healthomics_role_arn=env.get("HEALTHOMICS_ROLE_ARN") or None,
            clinical_backend=env.get("CLINICAL_BACKEND") or None,
            healthlake_datastore_id=env.get("HEALTHLAKE_DATASTORE_ID") or None,
            healthlake_role_arn=env.get("HEALTHLAKE_ROLE_ARN") or None,
            healthlake_kms_key_id=env.get("HEALTHLAKE_KMS_KEY_ID") or None,
            healthimaging_datastore_id=env.get("HEALTHIMAGING_DATASTORE_ID") or None,
            healthimaging_role_arn=env.get("HEALTHIMAGING_ROLE_ARN") or None,
            radiomics_backend=env.get("RADIOMICS_BACKEND") or "sagemaker",
            radiomics_image_uri=env.get("RADIOMICS_IMAGE_URI") or None,
            radiomics_role_arn=env.get("RADIOMICS_ROLE_ARN") or None,
            radiomics_instance_type=env.get("RADIOMICS_INSTANCE_TYPE") or "ml.g4dn.xlarge",
            radiomics_instance_count=int(env.get("RADIOMICS_INSTANCE_COUNT") or "1"),
            radiomics_job_queue=env.get("RADIOMICS_JOB_QUEUE") or None,
            radiomics_job_definition=env.get("RADIOMICS_JOB_DEFINITION") or None,
            training_image_uri=env.get("TRAINING_IMAGE_URI") or None,
            training_role_arn=env.get("TRAINING_ROLE_ARN") or None,
            training_source_uri=env.get("TRAINING_SOURCE_URI") or None,
            training_instance_type=env.get("TRAINING_INSTANCE_TYPE") or "ml.m5.2xlarge",
            scoring_instance_type=env.get("SCORING_INSTANCE_TYPE") or "ml.m5.xlarge",
            endpoint_name=env.get("ENDPOINT_NAME") or None,
            endpoint_memory_mb=int(env.get("ENDPOINT_MEMORY_MB") or 4096),
            endpoint_max_concurrency=int(env.get("ENDPOINT_MAX_CONCURRENCY") or 2),
            training_time_limit=int(env["TRAINING_TIME_LIMIT"]) if env.get("TRAINING_TIME_LIMIT") else None,
            training_presets=env.get("TRAINING_PRESETS") or None,
            training_hyperparameters=env.get("TRAINING_HYPERPARAMETERS") or None,
            delivery_quiet_seconds=(
                int(env["DELIVERY_QUIET_SECONDS"]) if env.get("DELIVERY_QUIET_SECONDS") else None
            ),
            run_config=json.loads(env.get("RUN_CONFIG") or "{}"),
        )
    except (ValidationError, ValueError) as exc:
        raise PipelineError(f"invalid Lambda environment: {exc}") from exc
