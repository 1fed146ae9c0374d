"""An SQS queue subscribed to an SNS topic: what on-call would receive, readable by the CLI and tests."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from mmpipe.local.aws import AwsClients


@dataclass(frozen=True)
class Notification:
    """One SNS message as delivered to a subscriber (the SNS envelope, unwrapped)."""

    subject: str | None
    message: str
    attributes: dict[str, Any] = field(default_factory=dict)

    def json(self) -> Any:
        """The message parsed as JSON; raises json.JSONDecodeError if it is not JSON."""
        return json.loads(self.message)


class TopicInbox:
    """Subscribes a new queue to `topic_arn`; `receive()` returns the notifications in arrival order."""

    def __init__(self, clients: AwsClients, topic_arn: str, name: str) -> None:
        self._sqs = clients.sqs
        self._sns = clients.sns
        self.topic_arn = topic_arn
        self.queue_url = self._sqs.create_queue(QueueName=name)["QueueUrl"]
        queue_arn = self._sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "sns.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
                }
            ],
        }
        self._sqs.set_queue_attributes(QueueUrl=self.queue_url, Attributes={"Policy": json.dumps(policy)})
        self.subscription_arn = self._sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)[
            "SubscriptionArn"
        ]

    def receive(self, count: int = 1, timeout: float = 10.0) -> list[Notification]:
        """Wait until `count` notifications arrived or `timeout` passed; returns what arrived (maybe fewer)."""
        notifications: list[Notification] = []
        deadline = time.monotonic() + timeout
        while len(notifications) < count and time.monotonic() < deadline:
            wait = max(0, min(1, int(deadline - time.monotonic())))
            messages = self._sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait
            ).get("Messages", [])
            for message in messages:
                envelope = json.loads(message["Body"])
                notifications.append(
                    Notification(
                        subject=envelope.get("Subject"),
                        message=envelope.get("Message", ""),
                        attributes=envelope.get("MessageAttributes", {}),
                    )
                )
                self._sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
            if not messages and wait == 0:
                time.sleep(0.05)
        return notifications

    def close(self) -> None:
        self._sns.unsubscribe(SubscriptionArn=self.subscription_arn)
        self._sqs.delete_queue(QueueUrl=self.queue_url)
