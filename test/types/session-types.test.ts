// Type-level tests: `tsc -p tsconfig.json` checks the expectTypeOf and @ts-expect-error lines;
// at run time they only exercise a memory store.
import { afterEach, describe, expectTypeOf, it } from "vitest";
import { withSessions } from "../../src/adapters/node.js";
import { SessionManager } from "../../src/core/manager.js";
import type { Session } from "../../src/core/session.js";
import { MemoryStore } from "../../src/stores/memory.js";
import { openSession } from "../support/sessions.js";

type VisitData = { visitCount: number; user?: string };

const stores: MemoryStore[] = [];
function visitManager(): SessionManager<VisitData> {
  const store = new MemoryStore();
  stores.push(store);
  return new SessionManager<VisitData>({ store });
}
afterEach(async () => {
  for (const store of stores.splice(0)) await store.dispose();
});

describe("Session<Data>", () => {
  it("reads a declared key as its type or undefined, and refuses unknown keys and wrong values", async () => {
    const { session } = openSession(visitManager());
    expectTypeOf(session).toEqualTypeOf<Session<VisitData>>();
    expectTypeOf(session.get("visitCount")).resolves.toEqualTypeOf<number | undefined>();
    expectTypeOf(session.get("user")).resolves.toEqualTypeOf<string | undefined>();
    expectTypeOf(session.all()).resolves.toEqualTypeOf<Partial<VisitData>>();
    expectTypeOf(session.update("visitCount", (count) => (count ?? 0) + 1)).resolves.toEqualTypeOf<number | undefined>();
    // @ts-expect-error: "visits" is not a key of VisitData
    await session.get("visits");
    // @ts-expect-error: visitCount holds a number
    await session.set("visitCount", "one");
    // @ts-expect-error: the values object is checked too
    await session.set({ visitCount: 1, admin: true });
    // @ts-expect-error: update() must return the key's type
    await session.update("user", () => 42);
    // @ts-expect-error: only declared keys can be incremented
    await session.increment("visits");
  });
});

describe("the node:http adapter", () => {
  it("hands the handler a session of the manager's Data", () => {
    withSessions(visitManager(), async (_req, _res, session) => {
      expectTypeOf(session.get("visitCount")).resolves.toEqualTypeOf<number | undefined>();
      // @ts-expect-error: "visits" is not a key of VisitData
      await session.get("visits");
    });
  });
});
