"""The gateway's client for the Lingma language-server binary (docs/lingma-protocol.md)."""

from sidecar.lingma.discover import find_binary
from sidecar.lingma.errors import StaleSessionError, classify_finish
from sidecar.lingma.events import (
    AnswerText,
    AskAccepted,
    AskFinished,
    SessionAssigned,
    ThinkText,
    ToolInvoked,
    UpstreamEvent,
)
from sidecar.lingma.instance import InstanceState, LingmaInstance
from sidecar.lingma.models import flatten_models, resolve_model
from sidecar.lingma.params import AskMode

__all__ = (
    "AnswerText",
    "AskAccepted",
    "AskFinished",
    "AskMode",
    "InstanceState",
    "LingmaInstance",
    "SessionAssigned",
    "StaleSessionError",
    "ThinkText",
    "ToolInvoked",
    "UpstreamEvent",
    "classify_finish",
    "find_binary",
    "flatten_models",
    "resolve_model",
)
