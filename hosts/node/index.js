// The regionsync sync policy component, embedded in Node.js.
//
// The component (`regionsync policy export default -o policy.wasm`) is
// transpiled by @bytecodealliance/jco into an ES module (`npm run transpile
// -- policy.wasm`, which writes `gen/`); this module wraps its decisions
// (wit/policy.wit) as plain functions. Records are objects with camelCase
// fields, variants `{ tag, val }`, enums their WIT names; u64 values are
// BigInt, as jco passes them.

/**
 * @typedef {{ firstIndex: bigint, nextIndex: bigint, capacity: bigint, deltaFloor: bigint }} RingView
 * @typedef {{ startIndex: bigint, canDelta: boolean, mustDelta: boolean }} SyncRequest
 * @typedef {{ tag: 'up-to-date' } | { tag: 'history', val: bigint } | { tag: 'full-sync' } | { tag: 'delta', val: bigint }} RouteAction
 * @typedef {{ action: RouteAction, reason: string }} Routing
 * @typedef {{ phase: 'catching-up' | 'live', cursor: bigint, ring: RingView }} StreamView
 * @typedef {{ phase: string, nextIndex: bigint, snapshotRegions: bigint, complete: boolean, ready: boolean, forceFullSync: boolean, resumable: boolean }} FollowerState
 * @typedef {{ error: boolean, startIndex: bigint, regionCount: number, announced: string, digest: string }} FrameHeader
 */

/**
 * Load the transpiled component from `dir` (default: ./gen).
 * @param {string} [dir]
 */
export async function loadPolicy(dir = new URL('./gen/', import.meta.url).href) {
  const base = dir.endsWith('/') ? dir : `${dir}/`;
  const { decisions } = await import(new URL('policy.js', base.startsWith('file:') ? base : `file://${base}`).href);
  return {
    /** @returns {{ name: string, version: string }} */
    describe: () => decisions.describe(),
    /** @param {SyncRequest} request @param {RingView} ring @returns {Routing} */
    routeRequest: (request, ring) => decisions.routeRequest(request, ring),
    /** @param {StreamView} view */
    planSend: (view) => decisions.planSend(view),
    limits: () => decisions.limits(),
    /** @param {{ passes: number, pending: bigint }} view @returns {'another-pass' | 'final-pass'} */
    planCatchUp: (view) => decisions.planCatchUp(view),
    /** @param {number} running @returns {boolean} */
    admitFullSync: (running) => decisions.admitFullSync(running),
    /** @param {FollowerState} state */
    onConnect: (state) => decisions.onConnect(state),
    /** @param {FollowerState} state @param {FrameHeader} frame */
    onFrame: (state, frame) => decisions.onFrame(state, frame),
    /** @param {number} attempt @param {bigint} seed @returns {bigint} */
    backoff: (attempt, seed) => decisions.backoff(attempt, seed),
  };
}

// --- WIT-shaped JSON (the conformance vectors) and back --------------------

const U64 = new Set([
  'first-index', 'next-index', 'capacity', 'delta-floor', 'start-index', 'cursor',
  'pending', 'snapshot-regions', 'max-bytes', 'claim-index', 'start',
]);

const camel = (k) => k.replace(/-([a-z])/g, (_, c) => c.toUpperCase());
const kebab = (k) => k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/** A WIT-shaped JSON record as jco's value (camelCase, BigInt for u64). */
export function fromJson(value, key = '') {
  if (Array.isArray(value)) return value.map((v) => fromJson(v));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [camel(k), fromJson(v, k)]));
  }
  if (typeof value === 'number' && U64.has(key)) return BigInt(value);
  return value;
}

/** jco's value as WIT-shaped JSON (kebab-case, numbers, null for none). */
export function toJson(value) {
  if (value === undefined) return null;
  if (typeof value === 'bigint') return Number(value);
  if (Array.isArray(value)) return value.map(toJson);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [kebab(k), toJson(v)]));
  }
  return value;
}
