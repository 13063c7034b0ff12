// The `schema` option: a Standard Schema checks session data loaded from the store.
import type { StandardSchemaV1 } from "@standard-schema/spec";
import type { SessionEvent, SessionStore } from "atomic-session";
import { SessionConfigError, SessionManager, type SessionManagerOptions } from "atomic-session";
import { MemoryStore } from "atomic-session/stores/memory";
import { cookiePair, cookieValue, openSession } from "atomic-session/testing";
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { storeKeyOf } from "../../src/core/ids.js";

const visitSchema = z.object({ visitCount: z.number().int().nonnegative().optional(), user: z.string().optional() });

const stores: MemoryStore[] = [];
afterEach(async () => {
  for (const store of stores.splice(0)) await store.dispose();
});
function managerWith(schema: SessionManagerOptions["schema"]): {
  manager: SessionManager;
  store: MemoryStore;
  events: SessionEvent[];
} {
  const store = new MemoryStore();
  stores.push(store);
  const manager = new SessionManager({ store, schema });
  const events: SessionEvent[] = [];
  manager.on((event) => events.push(event));
  return { manager, store, events };
}

/** A session with one visit, whose stored `visitCount` is then overwritten with raw JSON, as another writer could. */
async function sessionStoredAs(manager: SessionManager, store: SessionStore, visitCountJson: string): Promise<string> {
  const { session, response } = openSession(manager);
  await session.increment("visitCount");
  await store.apply(storeKeyOf(cookieValue(response.cookie)), { set: new Map([["visitCount", visitCountJson]]), now: Date.now() });
  return cookiePair(response.cookie);
}

describe("schema option", () => {
  it("loads data that passes the schema as usual", async () => {
    const { manager, store, events } = managerWith(visitSchema);
    const cookie = await sessionStoredAs(manager, store, "41");
    const { session } = openSession(manager, cookie);
    expect(await session.increment("visitCount")).toBe(42);
    expect(events.map((event) => event.type)).not.toContain("corrupted-record");
  });

  it("treats data the schema rejects as a corrupted record: event, record removed, session absent", async () => {
    const { manager, store, events } = managerWith(visitSchema);
    const cookie = await sessionStoredAs(manager, store, '"many"');
    const { session, response } = openSession(manager, cookie);
    expect(await session.exists()).toBe(false);
    expect(await session.get("visitCount")).toBeUndefined();
    expect(events.map((event) => event.type)).toContain("corrupted-record");
    expect(await store.count(Date.now())).toBe(0);
    // The request carries on as a new anonymous session.
    await session.increment("visitCount");
    expect(cookiePair(response.cookie)).not.toBe(cookie);
  });

  it("awaits a validator that answers with a Promise", async () => {
    let calls = 0;
    const asyncSchema: StandardSchemaV1 = {
      "~standard": {
        version: 1,
        vendor: "test",
        validate: async (value) => {
          calls++;
          const { visitCount } = value as { visitCount?: unknown };
          return typeof visitCount === "number" ? { value } : { issues: [{ message: "visitCount must be a number" }] };
        },
      },
    };
    const { manager, store } = managerWith(asyncSchema);
    expect(await openSession(manager, await sessionStoredAs(manager, store, "1")).session.get("visitCount")).toBe(1);
    expect(await openSession(manager, await sessionStoredAs(manager, store, "null")).session.exists()).toBe(false);
    expect(calls).toBe(2);
  });

  it("is checked when the manager is created", () => {
    expect(() => managerWith({} as StandardSchemaV1)).toThrow(SessionConfigError);
    expect(() => managerWith({} as StandardSchemaV1)).toThrow(/Standard Schema/);
  });
});
