"""The Docker-free local runtime: template.yaml, the state machine and the handlers on moto, in-process.

Entry point: `LocalRuntime` (see `mmpipe.local.runtime`).
"""

from mmpipe.local.inbox import Notification, TopicInbox
from mmpipe.local.invoker import FunctionSpec, InvocationRecord, LambdaContext
from mmpipe.local.runtime import LocalRuntime

__all__ = ["FunctionSpec", "InvocationRecord", "LambdaContext", "LocalRuntime", "Notification", "TopicInbox"]
