// The conformance vectors through the component, from Node.js: every case
// must come out exactly as the native default policy answered it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { loadPolicy, fromJson, toJson } from '../index.js';

const vectorsPath = process.env.REGIONSYNC_VECTORS
  ?? new URL('../../../tests/conformance/vectors.json', import.meta.url);
const gen = process.env.REGIONSYNC_NODE_GEN;

const call = {
  describe: (p) => p.describe(),
  limits: (p) => p.limits(),
  'route-request': (p, [r, ring]) => p.routeRequest(fromJson(r), fromJson(ring)),
  'plan-send': (p, [v]) => p.planSend(fromJson(v)),
  'plan-catch-up': (p, [v]) => p.planCatchUp(fromJson(v)),
  'admit-full-sync': (p, [n]) => p.admitFullSync(n),
  'on-connect': (p, [s]) => p.onConnect(fromJson(s)),
  'on-frame': (p, [s, f]) => p.onFrame(fromJson(s), fromJson(f)),
  backoff: (p, [a, seed]) => p.backoff(a, BigInt(seed)),
};

test('every conformance vector reproduces', async () => {
  const policy = await loadPolicy(gen);
  const { cases } = JSON.parse(readFileSync(vectorsPath, 'utf8'));
  assert.ok(cases.length >= 1000, `only ${cases.length} vectors`);
  const failures = [];
  const started = process.hrtime.bigint();
  for (const [i, c] of cases.entries()) {
    const got = toJson(call[c.fn](policy, c.args));
    try {
      assert.deepStrictEqual(got, c.result);
    } catch {
      failures.push({ i, fn: c.fn, args: c.args, want: c.result, got });
    }
  }
  const took = Number(process.hrtime.bigint() - started) / cases.length;
  console.log(`node host: ${cases.length - failures.length}/${cases.length} vectors reproduced, ${(took / 1000).toFixed(1)} us per call (with conversion)`);
  assert.equal(failures.length, 0, `${failures.length} differ; first: ${JSON.stringify(failures[0])}`);
});

test('route-request call cost', async () => {
  const policy = await loadPolicy(gen);
  const request = { startIndex: 150n, canDelta: false, mustDelta: false };
  const ring = { firstIndex: 100n, nextIndex: 200n, capacity: 1000n, deltaFloor: 1n };
  const n = 20000;
  for (let i = 0; i < 1000; i++) policy.routeRequest(request, ring);
  const started = process.hrtime.bigint();
  for (let i = 0; i < n; i++) policy.routeRequest(request, ring);
  const ns = Number(process.hrtime.bigint() - started) / n;
  console.log(`node host: route-request ${ns.toFixed(0)} ns per call (${n} calls)`);
  assert.equal(policy.routeRequest(request, ring).action.tag, 'history');
});
