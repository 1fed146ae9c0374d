"""Where `mmpipe status`, `redrive` and `export` look: a deployed stack, or a running `mmpipe local up`.

Both give the same thing, a `Target`: boto3 clients and the lakehouse catalog, plus the pipeline's state
machine, buckets, queues and Glue database prefix, so the commands use only public AWS APIs and work the
same in the cloud and on the local runtime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

from mmhealth.lakehouse import layout
from mmpipe.local.state_file import read_state

# Logical ids in template.yaml of what the commands need beyond the stack's Outputs.
INGEST_QUEUE = "IngestQueue"
DEAD_LETTER_QUEUE = "IngestDeadLetterQueue"

_LOCAL_CONFIG = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=60)
_CLOUD_CONFIG = Config(retries={"max_attempts": 5, "mode": "standard"})


class TargetError(RuntimeError):
    """The stack or the local runtime cannot be found or read."""


@dataclass
class Target:
    """The pipeline to operate on. `endpoint_url` is None in the cloud."""

    description: str
    session: boto3.session.Session
    endpoint_url: str | None
    state_machine_arn: str
    lake_bucket: str
    landing_bucket: str
    ingest_queue_url: str | None
    dead_letter_queue_url: str | None
    local: bool = False
    glue_database_prefix: str = ""
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(
                service,  # type: ignore[call-overload]
                endpoint_url=self.endpoint_url,
                config=_LOCAL_CONFIG if self.local else _CLOUD_CONFIG,
            )
        return self._clients[service]

    def lakehouse_catalog(self) -> Any:
        """The lake's Iceberg catalog (pyiceberg over Glue) with this target's endpoint, region and
        credentials: pyiceberg reads S3 through pyarrow, which does not see the boto3 session."""
        from pyiceberg.catalog import load_catalog

        props = {"type": "glue", "warehouse": layout.warehouse(self.lake_bucket)}
        credentials = self.session.get_credentials()
        frozen = credentials.get_frozen_credentials() if credentials is not None else None
        for service in ("glue", "s3"):
            settings = {
                "region": self.session.region_name,
                "endpoint": self.endpoint_url,
                "access-key-id": frozen.access_key if frozen else None,
                "secret-access-key": frozen.secret_key if frozen else None,
                "session-token": frozen.token if frozen else None,
            }
            props |= {f"{service}.{name}": value for name, value in settings.items() if value}
        return load_catalog("lakehouse", **props)


def local_target(state_file: Path) -> Target:
    """The runtime of a running `mmpipe local up` (raises LocalStateError without one)."""
    state = read_state(state_file)
    session = boto3.session.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto's fake credentials
        region_name=state.region,
    )
    return Target(
        description=f"local runtime at {state.endpoint_url} (pid {state.pid})",
        session=session,
        endpoint_url=state.endpoint_url,
        state_machine_arn=state.state_machine_arn,
        lake_bucket=state.lake_bucket,
        landing_bucket=state.landing_bucket,
        ingest_queue_url=state.ingest_queue_url,
        dead_letter_queue_url=state.dead_letter_queue_url,
        local=True,
        glue_database_prefix=state.glue_database_prefix,
    )


def stack_target(stack_name: str, region: str | None = None) -> Target:
    """A deployed stack: names from its Outputs and resources; credentials and region from the environment
    (or `region`). Raises TargetError when the stack cannot be described."""
    session = boto3.session.Session(region_name=region)
    try:
        cloudformation = session.client("cloudformation", config=_CLOUD_CONFIG)
        [stack] = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
        resources: dict[str, str] = {}
        for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack_name):
            for summary in page["StackResourceSummaries"]:
                resources[summary["LogicalResourceId"]] = summary.get("PhysicalResourceId", "")
    except NoRegionError:
        raise TargetError(
            f"cannot read stack {stack_name}: no AWS region (pass --region, or set AWS_REGION)"
        ) from None
    except (ClientError, BotoCoreError) as exc:
        raise TargetError(f"cannot read stack {stack_name}: {exc}") from exc
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    missing = [
        k for k in ("PipelineStateMachineArn", "LakeBucketName", "LandingBucketName") if k not in outputs
    ]
    if missing:
        raise TargetError(f"stack {stack_name} has no output {', '.join(missing)}: is it an mmpipe stack?")
    return Target(
        description=f"stack {stack_name} in {session.region_name}",
        session=session,
        endpoint_url=None,
        state_machine_arn=outputs["PipelineStateMachineArn"],
        lake_bucket=outputs["LakeBucketName"],
        landing_bucket=outputs["LandingBucketName"],
        ingest_queue_url=resources.get(INGEST_QUEUE),
        dead_letter_queue_url=outputs.get("IngestDeadLetterQueueUrl") or resources.get(DEAD_LETTER_QUEUE),
        glue_database_prefix=outputs.get("GlueDatabasePrefix", ""),
    )
