"""The conformance vectors through the component, from Python: every case
must come out exactly as the native default policy answered it."""

import json
import os
import time

import pytest

from regionsync_policy import ARGS, Policy, from_json, to_json

COMPONENT = os.environ.get("REGIONSYNC_COMPONENT")
VECTORS = os.environ.get(
    "REGIONSYNC_VECTORS",
    os.path.join(os.path.dirname(__file__), "..", "..", "..", "tests", "conformance", "vectors.json"),
)


@pytest.fixture(scope="module")
def policy():
    if not COMPONENT:
        pytest.fail("REGIONSYNC_COMPONENT must name the policy component (regionsync policy export default)")
    return Policy(COMPONENT)


def test_every_vector_reproduces(policy):
    with open(VECTORS) as f:
        vectors = json.load(f)
    cases = vectors["cases"]
    assert len(cases) >= 1000
    failures = []
    started = time.perf_counter()
    for i, case in enumerate(cases):
        method = getattr(policy, case["fn"].replace("-", "_"))
        args = [from_json(a, t) for a, t in zip(case["args"], ARGS[case["fn"]])]
        got = to_json(method(*args))
        if got != case["result"]:
            failures.append((i, case["fn"], case["args"], case["result"], got))
    took = time.perf_counter() - started
    print(f"python host: {len(cases) - len(failures)}/{len(cases)} vectors reproduced, "
          f"{took / len(cases) * 1e6:.1f} us per call (typed, with conversion)")
    assert not failures, f"{len(failures)} vectors differ; first: {failures[0]}"


def test_raw_calls_answer_as_typed_calls(policy):
    from regionsync_policy import Routing, RingView, SyncRequest, _from_component, _to_component
    typed = (SyncRequest(start_index=150), RingView(first_index=100, next_index=200, capacity=1000, delta_floor=1))
    want = to_json(policy.route_request(*typed))
    request, ring = (_to_component(v) for v in typed)
    n = 2000
    started = time.perf_counter()
    answers = [policy.call_raw("route-request", request, ring) for _ in range(n)]
    took = time.perf_counter() - started
    # The raw path answers what the typed one does, every time.
    assert all(to_json(_from_component(a, Routing)) == want for a in answers), want
    print(f"python host: route-request {took / n * 1e9:.0f} ns per call (component values, {n} calls)")
