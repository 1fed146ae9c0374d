"""The process environment of a local run: every AWS SDK call goes to moto, nothing leaves 127.0.0.1.

`os.environ` is process-global, so the local runtime owns it for its lifetime: it points the SDKs at moto
with fake credentials, hides the developer's AWS config (a profile or a configured endpoint must never
send a local run to a real account), adds the Lambda functions' own variables, and puts everything back
on exit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

ACCOUNT_ID = "123456789012"  # moto's default account
REGION = "us-east-1"

# Variables that could redirect an SDK away from the endpoint or towards real credentials.
_HIDDEN_PREFIXES = ("AWS_ENDPOINT_URL_",)
_HIDDEN = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_USE_FIPS_ENDPOINT",
    "AWS_USE_DUALSTACK_ENDPOINT",
)


def sdk_variables(endpoint_url: str, port: int) -> dict[str, str]:
    """What every boto3 client (handlers, pyiceberg, moto's own Step Functions engine) needs locally."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        # moto's Step Functions engine builds its Lambda/SNS clients for http://localhost:$MOTO_PORT.
        "MOTO_PORT": str(port),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",  # moto's fake credentials
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        # No shared config/credentials files: a developer's ~/.aws must not leak into a local run.
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        # What `sam local` sets, and no X-Ray daemon to send traces to.
        "AWS_SAM_LOCAL": "true",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }


class EnvironmentConflictError(RuntimeError):
    """Two functions set the same environment variable to different values.

    The handlers run in one process, so they share one `os.environ`; a conflicting variable would make
    one of them read the other's value. Rename the variable in template.yaml.
    """


def merge_function_environments(environments: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """Union of the functions' variables (function name -> variables); raises EnvironmentConflictError."""
    merged: dict[str, str] = {}
    owner: dict[str, str] = {}
    conflicts: list[str] = []
    for function, variables in sorted(environments.items()):
        for name, value in variables.items():
            if name in merged and merged[name] != value:
                conflicts.append(f"{name}: {owner[name]}={merged[name]!r} but {function}={value!r}")
                continue
            merged.setdefault(name, value)
            owner.setdefault(name, function)
    if conflicts:
        raise EnvironmentConflictError(
            "functions share one process locally, so their environment variables must agree: "
            + "; ".join(conflicts)
        )
    return merged


class ProcessEnvironment:
    """Patches `os.environ` and restores exactly what was there before (set, changed or absent)."""

    def __init__(self) -> None:
        self._saved: dict[str, str | None] = {}

    def apply(self, variables: Mapping[str, str]) -> None:
        """Set variables; may be called several times, the first saved value of each name wins."""
        for name, value in variables.items():
            self._save(name)
            os.environ[name] = value

    def hide_credentials_and_endpoints(self) -> None:
        """Remove variables that could point an SDK at a real account or another endpoint."""
        names = [n for n in os.environ if n in _HIDDEN or n.startswith(_HIDDEN_PREFIXES)]
        for name in names:
            self._save(name)
            del os.environ[name]

    def restore(self) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved.clear()

    def _save(self, name: str) -> None:
        if name not in self._saved:
            self._saved[name] = os.environ.get(name)
