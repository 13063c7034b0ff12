/**
 * How the CLI prints sessions. User IDs and user agents come from the application and from
 * browsers: before they reach a terminal, control characters (escape sequences) and
 * direction overrides are replaced, in text and in JSON alike.
 * @module
 */
import type { SessionInfo } from "atomic-session";

/** A session as the CLI shows it: public facts only, named by its handle (never its ID or store key). */
export interface SessionView {
  handle: string;
  user: string | null;
  createdAt: string;
  lastSeenAt: string;
  /** When the session ends if unused: min(last seen + idle timeout, absolute expiry). */
  expiresAt: string;
  absoluteExpiresAt: string;
  userAgent: string | null;
}

export function viewOf(info: SessionInfo): SessionView {
  return {
    handle: info.handle,
    user: info.userId ?? null,
    createdAt: isoTime(info.createdAt),
    lastSeenAt: isoTime(info.lastSeenAt),
    expiresAt: isoTime(info.expiresAt),
    absoluteExpiresAt: isoTime(info.absoluteExpiresAt),
    userAgent: info.userAgent ?? null,
  };
}

/** UTC, to the second: `2025-01-31T12:00:00Z`. */
function isoTime(date: Date): string {
  return Number.isNaN(date.getTime()) ? String(date) : date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** C0 and C1 controls, DEL, and the bidirectional marks and overrides a terminal would act on. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point: they are replaced.
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** Text for a terminal: every unsafe character becomes U+FFFD. */
export function safeText(text: string): string {
  return text.replace(UNSAFE, "\ufffd");
}

/** JSON for a terminal: still valid JSON, with the unsafe characters JSON.stringify leaves raw escaped as `\uXXXX`. */
export function safeJson(value: unknown): string {
  return JSON.stringify(value).replace(UNSAFE, (character) => `\\u${character.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

const COLUMNS = [
  { title: "HANDLE", width: 16 },
  { title: "USER", width: 24 },
  { title: "CREATED", width: 20 },
  { title: "LAST SEEN", width: 20 },
  { title: "EXPIRES", width: 20 },
  { title: "USER AGENT", width: 60 },
] as const;

/** Fixed-width columns, so that the table streams: a row is printed as soon as it is read. */
export function tableHeader(): string {
  return row(COLUMNS.map((column) => column.title));
}

export function tableRow(view: SessionView): string {
  return row([view.handle, view.user ?? "-", view.createdAt, view.lastSeenAt, view.expiresAt, view.userAgent ?? "-"]);
}

function row(cells: string[]): string {
  return cells
    .map((cell, i) => {
      const width = COLUMNS[i]?.width ?? 20;
      const fitted = truncate(safeText(cell), width);
      return i === cells.length - 1 ? fitted : fitted.padEnd(width);
    })
    .join("  ");
}

/** At most `width` characters (code points), the last one `…` when cut. */
function truncate(text: string, width: number): string {
  const characters = [...text];
  return characters.length <= width ? text : `${characters.slice(0, width - 1).join("")}…`;
}

/** `show`: one fact per line. */
export function details(view: SessionView): string {
  const lines: [string, string][] = [
    ["handle", view.handle],
    ["user", view.user ?? "- (anonymous)"],
    ["created", view.createdAt],
    ["last seen", view.lastSeenAt],
    ["expires", `${view.expiresAt} (unless used before)`],
    ["absolute expiry", view.absoluteExpiresAt],
    ["user agent", view.userAgent ?? "-"],
  ];
  return lines.map(([name, value]) => `${name.padEnd(17)}${safeText(value)}`).join("\n");
}
