import type { IncomingMessage } from "node:http";

/** Most bytes the reference server reads from a request body (JSON or form). */
export const MAX_BODY_BYTES = 16 * 1024;

export type BodyText =
  | { kind: "ok"; text: string }
  | { kind: "error"; status: 415; reason: "wrong type" }
  | { kind: "error"; status: 413; reason: "too large" }
  | { kind: "error"; status: 400; reason: "unreadable" | "not UTF-8" };

/**
 * Reads a body of `mediaType` as UTF-8 text, at most {@link MAX_BODY_BYTES}. A malformed
 * body is a 4xx reading, never an exception: another type 415, too large 413 (the rest is
 * drained, so that the answer can still be sent), unreadable or not UTF-8 400.
 */
export async function readBodyText(req: IncomingMessage, mediaType: string): Promise<BodyText> {
  const type = req.headers["content-type"]?.split(";", 1)[0]?.trim().toLowerCase();
  if (type !== mediaType) {
    req.resume();
    return { kind: "error", status: 415, reason: "wrong type" };
  }
  if (Number(req.headers["content-length"]) > MAX_BODY_BYTES) {
    req.resume();
    return { kind: "error", status: 413, reason: "too large" };
  }
  const body = await new Promise<Buffer | "too large" | "unreadable">((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) return void chunks.push(chunk);
      // Stop keeping the body but keep draining it, so that the 413 can still be sent.
      req.off("data", onData);
      req.resume();
      resolve("too large");
    };
    req.on("data", onData);
    req.once("end", () => resolve(Buffer.concat(chunks)));
    req.once("error", () => resolve("unreadable"));
  });
  if (body === "too large") return { kind: "error", status: 413, reason: "too large" };
  if (body === "unreadable") return { kind: "error", status: 400, reason: "unreadable" };
  try {
    return { kind: "ok", text: new TextDecoder("utf-8", { fatal: true }).decode(body) };
  } catch {
    return { kind: "error", status: 400, reason: "not UTF-8" };
  }
}
