#!/usr/bin/env bash
# Soak: many seeded fault scenarios and SIGKILL points (not part of the
# default test run). Usage: scripts/soak.sh [SCENARIOS] [KILL_POINTS] [BASE_SEED]
# A failure prints its seed; FAULT_SEED=<seed> (or KILL_SEED) replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
scenarios=${1:-5000}
kills=${2:-200}
base=${3:-$((RANDOM * 32768 + RANDOM))}
./setup
cargo build --release -p regionsync-cli
echo "fault scenarios: $scenarios from seed $base; kill points: $kills"
FAULT_SCENARIOS=$scenarios FAULT_BASE=$base \
  cargo test --release -p regionsync-tests --test it -- fault_injection --nocapture
KILL_POINTS=$kills KILL_SEED=$base \
  cargo test --release -p regionsync-tests --test kill_points -- --nocapture
