/**
 * Conformance suites for session stores, as Vitest suites: the ones every store of
 * atomic-session passes, for third-party stores to pass too (after unstorage's `testDriver`).
 *
 * - `describeStoreConformance(name, open)` holds a `SessionStore` to its contract: atomic
 *   increments and compare-and-set from two instances, no resurrection, rotation markers,
 *   touch arithmetic, exact text round trips, expiry, and the optional abilities it has.
 * - `describeSessionConformance(name, open)` runs the `SessionManager` on the store: one
 *   store call per request, 200 concurrent increments, rotation, login races, a user's
 *   sessions at scale, and refusal of text no store can keep.
 *
 * Needs `vitest` (an optional peer dependency of atomic-session).
 * @module
 */
export { describeSessionConformance, type SessionHarness } from "./session-conformance.js";
export { cookiePair, cookieValue, countingStore, type FakeResponse, managerFor, openSession } from "./sessions.js";
export { at, describeStoreConformance, metaFor, newKey, rotation, type StoreHarness } from "./store-conformance.js";
