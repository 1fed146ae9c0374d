"""boto3 clients of the local runtime, all pointed at the moto server."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from mmpipe.local.process_env import REGION

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_glue import GlueClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_stepfunctions import SFNClient

# Local calls never need SDK retries, and a stuck call should surface quickly.
_CONFIG = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=120)


class AwsClients:
    """One boto3 session, one client per service, created on first use.

    The session must be created after the invoker's hook is registered (botocore copies
    `BUILTIN_HANDLERS` into a session when the session is created), so that a Lambda Invoke made with
    these clients reaches the in-process handler. Client creation is serialised: a boto3 session is not
    thread-safe, the clients are.
    """

    def __init__(self, endpoint_url: str) -> None:
        self._session = boto3.session.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto's fake credentials
            region_name=REGION,
        )
        self.endpoint_url = endpoint_url
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                self._clients[service] = self._session.client(
                    service,  # type: ignore[call-overload]
                    endpoint_url=self.endpoint_url,
                    config=_CONFIG,
                )
            return self._clients[service]

    @property
    def cloudformation(self) -> CloudFormationClient:
        return self.client("cloudformation")

    @property
    def s3(self) -> S3Client:
        return self.client("s3")

    @property
    def sqs(self) -> SQSClient:
        return self.client("sqs")

    @property
    def sns(self) -> SNSClient:
        return self.client("sns")

    @property
    def lambda_(self) -> LambdaClient:
        return self.client("lambda")

    @property
    def stepfunctions(self) -> SFNClient:
        return self.client("stepfunctions")

    @property
    def dynamodb(self) -> DynamoDBClient:
        return self.client("dynamodb")

    @property
    def glue(self) -> GlueClient:
        return self.client("glue")

    @property
    def cloudwatch(self) -> Any:
        return self.client("cloudwatch")
