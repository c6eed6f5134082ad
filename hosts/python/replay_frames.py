"""Worked use: replay a recorded sequence of frames through the follower's
phase machine and print the phases, as a notebook investigating a cluster
would.

    python replay_frames.py policy.wasm
"""

import sys

from regionsync_policy import (AnnouncedSync, DigestCheck, FollowerPhase, FollowerState,
                               FrameHeader, Policy)

# A follower 100 records behind a leader whose ring no longer holds them:
# the leader announces a full sync, sends the snapshot in two frames and
# completes at 1200; then live history arrives.
FRAMES = [
    FrameHeader(False, 0, 500, AnnouncedSync.FULL, DigestCheck.ABSENT),
    FrameHeader(False, 500, 300, AnnouncedSync.FULL, DigestCheck.ABSENT),
    FrameHeader(False, 1200, 0, AnnouncedSync.FULL, DigestCheck.MATCHED),
    FrameHeader(False, 1200, 3, AnnouncedSync.FULL, DigestCheck.ABSENT),
    FrameHeader(False, 1203, 0, AnnouncedSync.FULL, DigestCheck.ABSENT),
    FrameHeader(True, 1203, 0, AnnouncedSync.FULL, DigestCheck.ABSENT),
]


def main(path: str) -> None:
    policy = Policy(path)
    state = FollowerState(FollowerPhase.STREAMING, 1100, 0, True, True, False, False)
    plan = policy.on_connect(state)
    print(f"connect: ask for {plan.start_index} (delta={plan.ask_delta}, verify={plan.ask_verify})")
    state = plan.state
    for frame in FRAMES:
        d = policy.on_frame(state, frame)
        state = d.state
        print(f"frame at {frame.start_index:>5} with {frame.region_count:>3} regions -> "
              f"{d.kind.value:<14} phase={state.phase.value:<9} next={state.next_index:<5} "
              f"ready={state.ready} claim={d.claim_index} reconnect={d.reconnect}")
        if d.reconnect is not None:
            state = policy.on_connect(state).state


if __name__ == "__main__":
    main(sys.argv[1])
