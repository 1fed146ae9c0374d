"""The translations `reconcile` applies on top of moto's CloudFormation (no server needed)."""

from __future__ import annotations

import json

import pytest

from mmpipe.local.reconcile import _lifecycle_rule, local_policy, substitute_definition
from mmpipe.local.template import TemplateError

DENY_HTTP = {
    "Sid": "DenyInsecureTransport",
    "Effect": "Deny",
    "Principal": "*",
    "Action": "s3:*",
    "Resource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"],
    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
}
ALLOW_S3 = {
    "Sid": "AllowLandingBucketEvents",
    "Effect": "Allow",
    "Principal": {"Service": "s3.amazonaws.com"},
    "Action": "sqs:SendMessage",
    "Resource": "arn:aws:sqs:us-east-1:123456789012:q",
}


def test_local_policy_leaves_out_only_insecure_transport_denials() -> None:
    deny_other = {
        **DENY_HTTP,
        "Sid": "DenyOther",
        "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "false"}},
    }
    document = {"Version": "2012-10-17", "Statement": [ALLOW_S3, DENY_HTTP, deny_other]}

    policy = local_policy("IngestQueuePolicy", document)

    assert policy is not None
    assert json.loads(policy) == {"Version": "2012-10-17", "Statement": [ALLOW_S3, deny_other]}


def test_local_policy_is_none_when_only_the_transport_denial_was_there() -> None:
    boolean_false = {**DENY_HTTP, "Condition": {"Bool": {"aws:SecureTransport": False}}}

    assert local_policy("LakeBucketPolicy", {"Statement": [DENY_HTTP]}) is None
    assert local_policy("LakeBucketPolicy", json.dumps({"Statement": boolean_false})) is None


def test_lifecycle_rule_is_translated_to_the_s3_api_shape() -> None:
    rule = {
        "Id": "ExpireStaging",
        "Status": "Enabled",
        "Prefix": "staging/",
        "ExpirationInDays": 30,
        "NoncurrentVersionExpiration": {"NoncurrentDays": 7},
        "Transitions": [{"StorageClass": "GLACIER", "TransitionInDays": 90}],
    }

    assert _lifecycle_rule("LakeBucket", rule) == {
        "ID": "ExpireStaging",
        "Status": "Enabled",
        "Filter": {"Prefix": "staging/"},
        "Expiration": {"Days": 30},
        "NoncurrentVersionExpiration": {"NoncurrentDays": 7},
        "Transitions": [{"StorageClass": "GLACIER", "Days": 90}],
    }
    with pytest.raises(TemplateError, match="ObjectSizeGreaterThan"):
        _lifecycle_rule("LakeBucket", {**rule, "ObjectSizeGreaterThan": 10})


def test_definition_substitutions_are_applied_and_a_missing_one_is_refused() -> None:
    definition = '{"A": "${FnArn}", "B": "${TopicArn}", "C": "States.Format(\'{}\', $.x)", "D": "${Count}"}'

    substituted = substitute_definition(
        "Machine", definition, {"FnArn": "arn:fn", "TopicArn": "arn:topic", "Count": 3}
    )

    assert json.loads(substituted) == {
        "A": "arn:fn",
        "B": "arn:topic",
        "C": "States.Format('{}', $.x)",
        "D": "3",
    }
    with pytest.raises(TemplateError, match=r"no value for \$\{TopicArn\}"):
        substitute_definition("Machine", definition, {"FnArn": "arn:fn", "Count": 3})
