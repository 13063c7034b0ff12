import { createHmac } from "node:crypto";
import { type CookieOptions, SessionConfigError, SessionManager } from "atomic-session";
import { MemoryStore } from "atomic-session/stores/memory";
import { afterAll, describe, expect, it } from "vitest";
import { resolveCookieOptions, SessionCookie } from "../../src/core/cookie.js";
import { newSessionId } from "../../src/core/ids.js";

const SECRET = "s".repeat(32);
const OLD_SECRET = "o".repeat(48);

function cookieWith(options: CookieOptions = {}, secrets: readonly string[] = []): SessionCookie {
  return new SessionCookie(resolveCookieOptions(options), secrets);
}

function signed(id: string, secret: string): string {
  return `${id}.${createHmac("sha256", secret).update(id).digest("base64url")}`;
}

/** A Set-Cookie value's attributes after the `name=value` pair, as written. */
function attributesOf(setCookie: string): string[] {
  return setCookie
    .split(";")
    .slice(1)
    .map((attribute) => attribute.trim());
}

describe("bad cookie options fail when the SessionManager is created", () => {
  const store = new MemoryStore();
  afterAll(() => store.dispose());

  it.each([
    ["a domain that is not a host name", { domain: "bad domain" }, /cookie\.domain "bad domain"/],
    ["an empty domain", { domain: "" }, /cookie\.domain/],
    ["a domain with a port", { domain: "example.com:8080" }, /cookie\.domain/],
    ["a relative path", { path: "relative" }, /cookie\.path "relative" must start with "\/"/],
    ["a path with ;", { path: "/a;b" }, /cookie\.path/],
    ["a path with a control character", { path: "/a\nb" }, /cookie\.path/],
    ["a path with non-ASCII", { path: "/café" }, /cookie\.path/],
    ["SameSite=None without secure", { sameSite: "none" }, /sameSite "none" requires cookie\.secure: true/],
    ["SameSite=None with secure auto", { sameSite: "none", secure: "auto" }, /sameSite "none" requires/],
    ["partitioned without secure", { partitioned: true }, /partitioned requires cookie\.secure: true/],
    ["an unknown priority", { priority: "urgent" }, /cookie\.priority/],
    ["an unknown sameSite", { sameSite: "None" }, /cookie\.sameSite/],
    ["a name with a space", { name: "session id" }, /cookie\.name/],
    ["a __Host- name without secure", { name: "__Host-sid" }, /__Host-/],
    ["a __Secure- name without secure", { name: "__Secure-sid" }, /__Secure-/],
    ["a non-boolean httpOnly", { httpOnly: "yes" }, /cookie\.httpOnly/],
  ])("%s", (_label, cookie, message) => {
    const create = () => new SessionManager({ store, cookie: cookie as CookieOptions });
    expect(create).toThrow(SessionConfigError);
    expect(create).toThrow(message);
  });

  it.each([
    ["a host name", { domain: "example.com" }],
    ["a leading-dot domain", { domain: ".example.com" }],
    ["a nested path", { path: "/app/v1" }],
    ["SameSite=None with secure", { sameSite: "none", secure: true }],
    ["partitioned with secure", { partitioned: true, secure: true, priority: "low" }],
    ["a __Host- name done right", { name: "__Host-sid", secure: true }],
  ] as const)("accepts %s", (_label, cookie) => {
    expect(() => new SessionManager({ store, cookie })).not.toThrow();
  });
});

describe("reading the Cookie header", () => {
  const unsigned = cookieWith();
  const a = newSessionId();
  const b = newSessionId();

  it("is absent without a cookie of our name", () => {
    expect(unsigned.read(undefined)).toEqual({ kind: "absent" });
    expect(unsigned.read("")).toEqual({ kind: "absent" });
    expect(unsigned.read(`theme=dark; xsessionID=${a}; SessionID=${a}`)).toEqual({ kind: "absent" });
  });

  it("finds our cookie among others, trimming the spaces around it", () => {
    expect(unsigned.read(`theme=dark;  sessionID=${a} ;lang=en`)).toEqual({ kind: "valid", ids: [a], signedWithOldSecret: false });
  });

  it("keeps every valid duplicate, in order, once each, skipping the invalid ones", () => {
    expect(unsigned.read(`sessionID=${b}; sessionID=planted; sessionID=${a}; sessionID=${b}`)).toEqual({
      kind: "valid",
      ids: [b, a],
      signedWithOldSecret: false,
    });
    expect(unsigned.read(`sessionID=planted; sessionID=${a}`)).toEqual({ kind: "valid", ids: [a], signedWithOldSecret: false });
  });

  it("looks at no more than sixteen candidates, so planted cookies cost a bounded number of lookups", () => {
    const ids = Array.from({ length: 17 }, () => newSessionId());
    const reading = unsigned.read(ids.map((id) => `sessionID=${id}`).join("; "));
    expect(reading).toEqual({ kind: "valid", ids: ids.slice(0, 16), signedWithOldSecret: false });
  });

  it("accepts a signature only in its canonical spelling (the last character's unused bits are zero)", () => {
    const cookie = cookieWith({}, [SECRET]);
    const value = signed(a, SECRET);
    const [id, signature] = value.split(".") as [string, string];
    expect(cookie.read(`sessionID=${value}`)).toMatchObject({ kind: "valid", ids: [a] });
    // 43 characters carry 258 bits for 256: the last character has 4 spellings, one canonical.
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const last = alphabet.indexOf(signature.at(-1) as string);
    for (let low = 1; low < 4; low++) {
      const variant = `${signature.slice(0, -1)}${alphabet[(last & ~3) | ((last + low) & 3)]}`;
      expect(cookie.read(`sessionID=${id}.${variant}`)).toEqual({ kind: "invalid", reason: "malformed signed session cookie" });
    }
  });

  it("is invalid, with a reason, when no value of our name is a session ID", () => {
    expect(unsigned.read("sessionID=")).toEqual({ kind: "invalid", reason: "malformed session ID" });
    expect(unsigned.read(`sessionID="${a}"; sessionID=${a}x`)).toEqual({ kind: "invalid", reason: "malformed session ID" });
  });

  it("verifies signatures with every secret, and says when an older one signed", () => {
    const rotating = cookieWith({}, [SECRET, OLD_SECRET]);
    expect(rotating.read(`sessionID=${signed(a, SECRET)}`)).toEqual({ kind: "valid", ids: [a], signedWithOldSecret: false });
    expect(rotating.read(`sessionID=${signed(a, OLD_SECRET)}`)).toEqual({ kind: "valid", ids: [a], signedWithOldSecret: true });
    expect(rotating.read(`sessionID=${signed(a, "x".repeat(32))}`)).toEqual({ kind: "invalid", reason: "bad signature" });
    expect(rotating.read(`sessionID=${a}`)).toEqual({ kind: "invalid", reason: "malformed signed session cookie" });
    expect(rotating.read(`sessionID=${a}.short`)).toEqual({ kind: "invalid", reason: "malformed signed session cookie" });
    // A planted cookie with a forged signature does not hide the real one.
    expect(rotating.read(`sessionID=${signed(b, "x".repeat(32))}; sessionID=${signed(a, SECRET)}`)).toEqual({
      kind: "valid",
      ids: [a],
      signedWithOldSecret: false,
    });
  });

  it("does not take a signed value when no secret is configured", () => {
    expect(unsigned.read(`sessionID=${signed(a, SECRET)}`)).toEqual({ kind: "invalid", reason: "malformed session ID" });
  });
});

describe("the Set-Cookie it writes", () => {
  const id = newSessionId();

  it("has the defaults: Path=/, HttpOnly, SameSite=Lax, Secure only over HTTPS (auto)", () => {
    const cookie = cookieWith();
    const expires = Date.UTC(2030, 0, 2, 3, 4, 5, 678);
    expect(cookie.issue(id, expires, false)).toBe(`sessionID=${id}; Expires=Wed, 02 Jan 2030 03:04:05 GMT; Path=/; HttpOnly; SameSite=Lax`);
    expect(attributesOf(cookie.issue(id, expires, true))).toContain("Secure");
  });

  it("has no Expires (nor Max-Age) for a browser-session cookie", () => {
    const issued = cookieWith().issue(id, undefined, false);
    expect(issued).toBe(`sessionID=${id}; Path=/; HttpOnly; SameSite=Lax`);
    expect(issued).not.toMatch(/expires|max-age/i);
  });

  it("writes Domain, Path, SameSite, Partitioned and Priority as configured", () => {
    const cookie = cookieWith({
      name: "sid",
      domain: "example.com",
      path: "/app",
      sameSite: "none",
      secure: true,
      partitioned: true,
      priority: "high",
    });
    const attributes = attributesOf(cookie.issue(id, undefined, false));
    expect(attributes).toEqual(
      expect.arrayContaining(["Domain=example.com", "Path=/app", "HttpOnly", "Secure", "SameSite=None", "Partitioned", "Priority=High"]),
    );
    expect(attributes).toHaveLength(7);
    expect(cookie.issue(id, undefined, false)).toMatch(new RegExp(`^sid=${id};`));
  });

  it("writes Secure on every request with secure: true, never with secure: false", () => {
    expect(attributesOf(cookieWith({ secure: true }).issue(id, undefined, false))).toContain("Secure");
    expect(attributesOf(cookieWith({ secure: false }).issue(id, undefined, true))).not.toContain("Secure");
  });

  it("leaves out HttpOnly and Priority when told to", () => {
    const attributes = attributesOf(cookieWith({ httpOnly: false }).issue(id, undefined, false));
    expect(attributes).not.toContain("HttpOnly");
    expect(attributes.some((attribute) => attribute.startsWith("Priority"))).toBe(false);
    expect(attributes).not.toContain("Partitioned");
  });

  it("signs the value with the first secret", () => {
    const issued = cookieWith({}, [SECRET, OLD_SECRET]).issue(id, undefined, false);
    expect(issued.split(";", 1)[0]).toBe(`sessionID=${signed(id, SECRET)}`);
  });

  it("clears with an empty value, Max-Age=0 and an Expires in the past, with the same attributes", () => {
    const cleared = cookieWith({ domain: "example.com", path: "/app", secure: true, partitioned: true, priority: "low" }).clear(false);
    expect(cleared.split(";", 1)[0]).toBe("sessionID=");
    expect(attributesOf(cleared)).toEqual(
      expect.arrayContaining([
        "Max-Age=0",
        "Expires=Thu, 01 Jan 1970 00:00:00 GMT",
        "Domain=example.com",
        "Path=/app",
        "Secure",
        "Partitioned",
        "Priority=Low",
      ]),
    );
  });
});
