/**
 * Reading express-session's cookie, with no Redis involved: signatures made by cookie-signature
 * itself (the package express-session signs with) checked against one or several secrets,
 * every tampered, unsigned or foreign form refused, verdicts held to cookie-signature's own
 * `unsign`, and the options refused when the adoption is created.
 */
import { createHmac } from "node:crypto";
import { createRequire } from "node:module";
import { SessionConfigError, SessionManager } from "atomic-session";
import { expressSessionAdoption } from "atomic-session/express-session";
import { MemoryStore } from "atomic-session/stores/memory";
import { createClient } from "redis";
import { describe, expect, it } from "vitest";

const signature = createRequire(import.meta.url)("cookie-signature") as {
  sign(value: string, secret: string): string;
  unsign(value: string, secret: string): string | false;
};

const SECRETS = ["the newest secret", "the one before", "short"];
const ID = "Xq3nK0lH7w1C-QpZ_9s2YtUeRvBaMdFg";
/** A client that never connects: reading a cookie sends nothing. */
const client = createClient();

/** The cookie header express-session sends back for `id` signed with `secret` (it writes `s:` percent-encoded). */
function legacyCookie(id: string, secret: string, name = "connect.sid"): string {
  return `${name}=${encodeURIComponent(`s:${signature.sign(id, secret)}`)}`;
}

describe("expressSessionAdoption reads express-session's signed cookie", () => {
  const adoption = expressSessionAdoption({ client, secrets: SECRETS });

  it("accepts a cookie signed with any of the secrets, encoded as express-session writes it or not", () => {
    for (const secret of SECRETS) {
      expect(adoption.readCookie(legacyCookie(ID, secret))).toEqual({ kind: "valid", id: ID });
      expect(adoption.readCookie(`connect.sid=s:${signature.sign(ID, secret)}`)).toEqual({ kind: "valid", id: ID });
    }
    expect(adoption.readCookie(`theme=dark; ${legacyCookie(ID, "the one before")}; sessionID=abc`)).toEqual({ kind: "valid", id: ID });
    // cookie-signature signs everything before the last dot: an ID (from a custom genid) may hold dots.
    expect(adoption.readCookie(legacyCookie("user.42.abc", "short"))).toEqual({ kind: "valid", id: "user.42.abc" });
  });

  it("refuses a cookie signed with a secret it was not given, whichever secret it was given", () => {
    expect(adoption.readCookie(legacyCookie(ID, "a secret nobody configured"))).toEqual({ kind: "invalid", reason: "bad signature" });
    const onlyNewest = expressSessionAdoption({ client, secrets: "the newest secret" });
    expect(onlyNewest.readCookie(legacyCookie(ID, "the newest secret"))).toEqual({ kind: "valid", id: ID });
    expect(onlyNewest.readCookie(legacyCookie(ID, "the one before")).kind).toBe("invalid");
  });

  it("refuses tampered, unsigned and malformed cookies, exactly where cookie-signature's unsign does", () => {
    const signed = signature.sign(ID, SECRETS[0] as string);
    const mac = signed.slice(ID.length + 1);
    const flip = (text: string, at: number) => `${text.slice(0, at)}${text[at] === "A" ? "B" : "A"}${text.slice(at + 1)}`;
    const tampered = [
      `s:${flip(ID, 0)}.${mac}`,
      `s:${ID}.${flip(mac, 10)}`,
      `s:${ID}.${mac}x`,
      `s:${ID}.${mac}=`,
      `s:${ID}.${mac.slice(0, -1)}`,
      `s:${ID}.${mac.replaceAll("+", "-").replaceAll("/", "_")}${/[+/]/.test(mac) ? "" : "-"}`,
      `s:${ID}x.${mac}`,
      `s:.${mac}`,
      `s:${ID}`,
      `s:${signed}.${mac}`,
      `S:${signed}`,
      signed,
      ID,
    ];
    for (const value of tampered) {
      const reading = adoption.readCookie(`connect.sid=${encodeURIComponent(value)}`);
      expect(reading.kind, value).toBe("invalid");
      if (value.startsWith("s:")) {
        for (const secret of SECRETS) expect(signature.unsign(value.slice(2), secret), value).toBe(false);
      }
    }
    expect(adoption.readCookie(`connect.sid=${ID}`)).toEqual({ kind: "invalid", reason: "unsigned" });
  });

  it("agrees with cookie-signature on random IDs and secrets", () => {
    for (let round = 0; round < 200; round++) {
      const id = createHmac("sha256", String(round))
        .digest("base64url")
        .slice(0, 8 + (round % 30));
      const secret = SECRETS[round % SECRETS.length] as string;
      const value = signature.sign(id, round % 7 === 0 ? "unknown secret" : secret);
      const expected = SECRETS.map((candidate) => signature.unsign(value, candidate)).find((unsigned) => unsigned !== false);
      const reading = adoption.readCookie(`connect.sid=${encodeURIComponent(`s:${value}`)}`);
      expect(reading, value).toEqual(
        expected === undefined ? { kind: "invalid", reason: "bad signature" } : { kind: "valid", id: expected },
      );
    }
  });

  it("reads only its own cookie name, and the first of duplicates (as express-session does)", () => {
    expect(adoption.readCookie(undefined)).toEqual({ kind: "absent" });
    expect(adoption.readCookie("")).toEqual({ kind: "absent" });
    expect(adoption.readCookie(legacyCookie(ID, "short", "other.sid"))).toEqual({ kind: "absent" });
    expect(adoption.readCookie("connect.sid=")).toEqual({ kind: "absent" });
    const renamed = expressSessionAdoption({ client, secrets: SECRETS, cookieName: "app.sid" });
    expect(renamed.readCookie(legacyCookie(ID, "short", "app.sid"))).toEqual({ kind: "valid", id: ID });
    expect(renamed.readCookie(legacyCookie(ID, "short"))).toEqual({ kind: "absent" });
    expect(adoption.readCookie(`connect.sid=s%3Aforged.sig; ${legacyCookie(ID, "short")}`).kind).toBe("invalid");
  });

  it("clears the legacy cookie where express-session set it", () => {
    expect(adoption.clearCookie(false)).toBe(
      "connect.sid=; Max-Age=0; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; SameSite=Lax",
    );
    const scoped = expressSessionAdoption({ client, secrets: SECRETS, cookiePath: "/app", cookieDomain: "example.com" });
    expect(scoped.clearCookie(true)).toBe(
      "connect.sid=; Max-Age=0; Domain=example.com; Path=/app; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; Secure; SameSite=Lax",
    );
  });

  it("refuses bad options when it is created, naming the option", () => {
    const bad: [unknown, RegExp][] = [
      [undefined, /needs options/],
      [{ secrets: SECRETS }, /client must be/],
      [{ client: {}, secrets: SECRETS }, /node-redis v5 client/],
      [{ client }, /secrets must be/],
      [{ client, secrets: [] }, /secrets must be/],
      [{ client, secrets: ["ok", ""] }, /secrets must be/],
      [{ client, secrets: SECRETS, cookieName: "connect sid" }, /cookieName "connect sid"/],
      [{ client, secrets: SECRETS, cookiePath: "app" }, /cookiePath "app"/],
      [{ client, secrets: SECRETS, cookieDomain: "exa mple.com" }, /cookieDomain/],
      [{ client, secrets: SECRETS, prefix: 5 }, /prefix must be/],
      [{ client, secrets: SECRETS, userField: "" }, /userField must be/],
    ];
    for (const [options, message] of bad) {
      const create = () => expressSessionAdoption(options as Parameters<typeof expressSessionAdoption>[0]);
      expect(create).toThrow(SessionConfigError);
      expect(create).toThrow(message);
    }
  });

  it("the manager refuses an adopt option that is not a legacy session source", () => {
    expect(() => new SessionManager({ store: new MemoryStore(), adopt: {} as never })).toThrow(
      /options.adopt is not a legacy session source/,
    );
    expect(() => new SessionManager({ store: new MemoryStore(), adopt: adoption })).not.toThrow();
  });
});
