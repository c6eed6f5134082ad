// Worked use: route the sync requests of a list of followers against a
// leader's ring and print the decisions, as a Node.js control plane would.
//
//   node route_followers.js            (after `npm run transpile -- policy.wasm`)
import { loadPolicy } from './index.js';

const policy = await loadPolicy();
const ring = { firstIndex: 9000n, nextIndex: 10000n, capacity: 1000n, deltaFloor: 1n };
const { name, version } = policy.describe();
console.log(`${name} ${version}; ring holds [${ring.firstIndex}, ${ring.nextIndex})`);
for (const start of [0n, 50n, 8999n, 9000n, 9500n, 10000n, 10001n]) {
  for (const canDelta of [false, true]) {
    const { action, reason } = policy.routeRequest({ startIndex: start, canDelta, mustDelta: false }, ring);
    const what = action.val === undefined ? action.tag : `${action.tag} from ${action.val}`;
    console.log(`follower at ${String(start).padStart(5)} (deltas: ${canDelta ? 'yes' : 'no '}) -> ${what} (${reason})`);
  }
}
