"""The regionsync sync policy component, embedded in Python.

Loads the same WebAssembly component the Rust host runs (``regionsync policy
export default -o policy.wasm``) with the ``wasmtime`` package's component
model support, and exposes its decisions (``wit/policy.wit``) as plain Python
functions over typed values: dataclasses for records, ``enum.Enum`` for WIT
enums, and :class:`Variant` for WIT variants, whose cases keep their names
(``Variant("history", 42)``).

    from regionsync_policy import Policy, SyncRequest, RingView
    policy = Policy("policy.wasm")
    routing = policy.route_request(SyncRequest(start_index=150),
                                   RingView(first_index=100, next_index=200,
                                            capacity=1000, delta_floor=1))
    print(routing.action, routing.reason)   # Variant('history', 150) RouteReason.IN_RING
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from dataclasses import dataclass
from typing import Any, Optional

import wasmtime
from wasmtime import component as wc

INTERFACE = "regionsync:policy/decisions@0.2.0"


class _WitEnum(enum.Enum):
    """A WIT enum: the value is the case's WIT name."""

    def __str__(self) -> str:
        return self.value


class RouteReason(_WitEnum):
    UP_TO_DATE = "up-to-date"
    IN_RING = "in-ring"
    ZERO_INDEX = "zero-index"
    BEHIND_RING = "behind-ring"
    AHEAD_OF_LEADER = "ahead-of-leader"
    GAP_REFUSED = "gap-refused"
    DELTA_RESUMED = "delta-resumed"


class StreamPhase(_WitEnum):
    CATCHING_UP = "catching-up"
    LIVE = "live"


class CatchUpStep(_WitEnum):
    ANOTHER_PASS = "another-pass"
    FINAL_PASS = "final-pass"


class FollowerPhase(_WitEnum):
    AWAITING = "awaiting"
    SNAPSHOT = "snapshot"
    STREAMING = "streaming"
    DELTA = "delta"


class AnnouncedSync(_WitEnum):
    NONE = "none"
    FULL = "full"
    DELTA = "delta"
    HISTORY = "history"


class DigestCheck(_WitEnum):
    ABSENT = "absent"
    MATCHED = "matched"
    MISMATCHED = "mismatched"


class FrameKind(_WitEnum):
    ERROR = "error"
    SNAPSHOT_START = "snapshot-start"
    SNAPSHOT_DATA = "snapshot-data"
    COMPLETION = "completion"
    DELTA_START = "delta-start"
    DELTA_DATA = "delta-data"
    VERIFY_FAILED = "verify-failed"
    HISTORY = "history"
    DUPLICATE = "duplicate"
    KEEPALIVE = "keepalive"
    UNEXPECTED = "unexpected"


class ReconnectReason(_WitEnum):
    ERROR_HEADER = "error-header"
    GAP = "gap"
    UNEXPECTED_FRAME = "unexpected-frame"
    VERIFY_FAILED = "verify-failed"


@dataclass(frozen=True)
class Variant:
    """A WIT variant case: its name and its payload (None for none)."""

    tag: str
    val: Any = None


@dataclass(frozen=True)
class PolicyInfo:
    name: str
    version: str


@dataclass(frozen=True)
class RingView:
    first_index: int
    next_index: int
    capacity: int
    delta_floor: int


@dataclass(frozen=True)
class SyncRequest:
    start_index: int
    can_delta: bool = False
    must_delta: bool = False


@dataclass(frozen=True)
class Routing:
    action: Variant
    reason: RouteReason


@dataclass(frozen=True)
class StreamView:
    phase: StreamPhase
    cursor: int
    ring: RingView


@dataclass(frozen=True)
class RecordRange:
    start: int
    count: int


@dataclass(frozen=True)
class CatchUpView:
    passes: int
    pending: int


@dataclass(frozen=True)
class FrameLimits:
    max_regions: int
    max_bytes: int


@dataclass(frozen=True)
class FollowerState:
    phase: FollowerPhase
    next_index: int
    snapshot_regions: int
    complete: bool
    ready: bool
    force_full_sync: bool
    resumable: bool


@dataclass(frozen=True)
class FrameHeader:
    error: bool
    start_index: int
    region_count: int
    announced: AnnouncedSync
    digest: DigestCheck


@dataclass(frozen=True)
class FrameDecision:
    state: FollowerState
    kind: FrameKind
    reset_store: bool
    begin_delta: bool
    apply_from: Optional[int]
    record_history: bool
    claim_index: Optional[int]
    reconnect: Optional[ReconnectReason]


@dataclass(frozen=True)
class ConnectPlan:
    start_index: int
    state: FollowerState
    ask_delta: bool
    ask_verify: bool


# --- Between typed values and the component's values ---------------------

def _to_component(value: Any) -> Any:
    """A typed value as wasmtime's component values: records as objects with
    the WIT (kebab-case) field names, enums as their names."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if isinstance(value, Variant):
            return wc.Variant(value.tag, _to_component(value.val))
        fields = {f.name.replace("_", "-"): _to_component(getattr(value, f.name))
                  for f in dataclasses.fields(value)}
        return types.SimpleNamespace(**fields)
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _from_component(value: Any, hint: Any) -> Any:
    """A component value as the typed value `hint` names."""
    origin = typing.get_origin(hint)
    if origin is typing.Union:  # Optional[T]
        if value is None:
            return None
        inner = [a for a in typing.get_args(hint) if a is not type(None)][0]
        return _from_component(value, inner)
    if hint is Variant:
        payload = getattr(value, "payload", None)
        if payload is not None and hasattr(payload, "__dict__") and not isinstance(payload, (int, str)):
            payload = _from_component(payload, RecordRange)
        return Variant(value.tag, payload)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(value)
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        return hint(**{f.name: _from_component(getattr(value, f.name.replace("_", "-")), hints[f.name])
                       for f in dataclasses.fields(hint)})
    return value


class Policy:
    """One instance of the policy component."""

    def __init__(self, path: str) -> None:
        self._engine = wasmtime.Engine()
        self._store = wasmtime.Store(self._engine)
        component = wc.Component.from_file(self._engine, path)
        self._instance = wc.Linker(self._engine).instantiate(self._store, component)
        iface = self._instance.get_export_index(self._store, INTERFACE)
        if iface is None:
            raise ValueError(f"{path} does not export {INTERFACE}")
        self._funcs = {}
        for name in ("describe", "route-request", "plan-send", "limits", "plan-catch-up",
                     "admit-full-sync", "on-connect", "on-frame", "backoff"):
            index = self._instance.get_export_index(self._store, name, iface)
            func = self._instance.get_func(self._store, index) if index else None
            if func is None:
                raise ValueError(f"{path} does not export {name}")
            self._funcs[name] = func

    def call_raw(self, name: str, *args: Any) -> Any:
        """Call an export by its WIT name with component values."""
        func = self._funcs[name]
        result = func(self._store, *args)
        func.post_return(self._store)
        return result

    def _call(self, name: str, result: Any, *args: Any) -> Any:
        return _from_component(self.call_raw(name, *(_to_component(a) for a in args)), result)

    def describe(self) -> PolicyInfo:
        return self._call("describe", PolicyInfo)

    def route_request(self, request: SyncRequest, ring: RingView) -> Routing:
        return self._call("route-request", Routing, request, ring)

    def plan_send(self, view: StreamView) -> Variant:
        return self._call("plan-send", Variant, view)

    def limits(self) -> FrameLimits:
        return self._call("limits", FrameLimits)

    def plan_catch_up(self, view: CatchUpView) -> CatchUpStep:
        return self._call("plan-catch-up", CatchUpStep, view)

    def admit_full_sync(self, running: int) -> bool:
        return self._call("admit-full-sync", bool, running)

    def on_connect(self, state: FollowerState) -> ConnectPlan:
        return self._call("on-connect", ConnectPlan, state)

    def on_frame(self, state: FollowerState, frame: FrameHeader) -> FrameDecision:
        return self._call("on-frame", FrameDecision, state, frame)

    def backoff(self, attempt: int, seed: int) -> int:
        return self._call("backoff", int, attempt, seed)


# --- WIT-shaped JSON, as in the conformance vectors -------------------------

def to_json(value: Any) -> Any:
    """A typed value as WIT-shaped JSON (kebab-case names, variants as
    ``{"tag", "val"}``, enums as names, options as null)."""
    if isinstance(value, Variant):
        out = {"tag": value.tag}
        if value.val is not None:
            out["val"] = to_json(value.val)
        return out
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name.replace("_", "-"): to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    return value


def from_json(value: Any, hint: Any) -> Any:
    """WIT-shaped JSON as the typed value `hint` names."""
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        if value is None:
            return None
        inner = [a for a in typing.get_args(hint) if a is not type(None)][0]
        return from_json(value, inner)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(value)
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        return hint(**{f.name: from_json(value[f.name.replace("_", "-")], hints[f.name])
                       for f in dataclasses.fields(hint)})
    return value


# The argument types of each export, for reading vectors.
ARGS = {
    "describe": [],
    "limits": [],
    "route-request": [SyncRequest, RingView],
    "plan-send": [StreamView],
    "plan-catch-up": [CatchUpView],
    "admit-full-sync": [int],
    "on-connect": [FollowerState],
    "on-frame": [FollowerState, FrameHeader],
    "backoff": [int, int],
}

__all__ = [name for name in dir() if not name.startswith("_")]
