import { describe, expect, it } from "vitest";
import { handleOf, isWellFormedSessionId, newSessionId, storeKeyOf } from "../../src/core/ids.js";

describe("session IDs", () => {
  it("are 43 base64url characters (256 bits) and never repeat, across refills of the random pool", () => {
    const ids = Array.from({ length: 1000 }, () => newSessionId());
    for (const id of ids) expect(isWellFormedSessionId(id)).toBe(true);
    expect(new Set(ids).size).toBe(1000);
    // A wiped or reused pool would show up as an all-"A" ID or as repeated bytes.
    expect(ids.some((id) => /^A+$/.test(id))).toBe(false);
  });

  it("derive a store key and a handle that do not contain the ID", () => {
    const id = newSessionId();
    const key = storeKeyOf(id);
    expect(key).not.toBe(id);
    expect(key).toHaveLength(32);
    expect(handleOf(key)).toMatch(/^[A-Za-z0-9_-]{16}$/);
    expect(handleOf(key)).not.toBe(key.slice(0, 16));
    expect(storeKeyOf(id)).toBe(key);
  });
});
