/**
 * The reference server's session data, declared once for atomic-session: every `Session` in
 * this program reads and writes these keys with these types.
 * @module
 */
export interface VisitData {
  visitCount: number;
}

declare module "atomic-session" {
  interface SessionTypes {
    data: VisitData;
  }
}
