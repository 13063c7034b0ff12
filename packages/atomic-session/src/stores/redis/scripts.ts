/**
 * The Lua scripts behind the Redis store.
 *
 * Why scripts: a store operation that writes must be atomic and must refuse to act on a record
 * that is gone (no resurrection). A script runs with nothing interleaved, so "check the record
 * is live, then write" cannot be split by a concurrent destroy, and it costs one round trip.
 * Reads need no script: `load` is a plain `HGETALL` checked by the store, and falls back to
 * {@link LOAD} only when a touch is due or the record looks damaged.
 *
 * Why lean: what a script costs Redis is mostly its own machinery (each `redis.call`, each
 * argument converted between Redis and Lua, each call into a Lua library function), not the
 * commands' work, so the scripts a request runs (create, apply, increment, compare-and-set)
 * read what they need in one `HMGET`, write with one command (HINCRBY for an increment, HSET
 * otherwise), check liveness with the few comparisons {@link LIVE} describes, and keep the
 * thorough checks for the rare paths. The common paths cost two or three calls.
 *
 * Why one key per script: on Redis Cluster a script may only touch keys of one hash slot.
 * Session keys hash anywhere, so every script names exactly one key (`KEYS[1]`) and touches
 * nothing else; `rotate` is several scripts (create the new key, take the old one) and the
 * per-user index is maintained by its own commands, beside the session scripts.
 *
 * Why no shebang (`#!lua flags=...`), and memory pressure: legacy scripts run on Redis 6 too,
 * and under `maxmemory` with `noeviction` Redis refuses one only when its first write command
 * is a "denyoom" one (HSET, ZADD…) and the server was over the limit when the script started;
 * once a script has run any write command (DEL counts, even of nothing) the rest runs. So a
 * script that must be refusable (create, apply, increment, compare-and-set) writes with HSET
 * first, and one that must finish whatever the memory (take, destroy, replace) deletes first.
 *
 * Numbers: times travel as decimal text computed by the caller and are written back as that
 * same text, never formatted by Lua except where noted (Lua 5.1 prints 14 significant digits).
 * Lua reads them with `tonumber` only to compare, which is exact below 2^53.
 *
 * Record layout (one hash per session): `d:<name>` → JSON text; `c` createdAt, `s`
 * lastSeenAt, `a` absoluteExpiresAt, `e` expiresAt (integers, decimal text), `u` userId,
 * `ua` userAgent, `p` persistent (optional). A rotation marker is the hash `{r = 1}`. Meta
 * names are one or two letters and never contain `:`, so they cannot meet a `d:` data field.
 * The key expires at `e` (PEXPIREAT: an absolute time, which survives restarts and AOF reloads).
 * @module
 */
import { createHash } from "node:crypto";

export interface LuaScript {
  /** For error messages and tests. */
  readonly name: string;
  readonly source: string;
  /** SHA-1 of `source`, as EVALSHA wants it. */
  readonly sha1: string;
}

function script(name: string, source: string): LuaScript {
  return { name, source, sha1: createHash("sha1").update(source).digest("hex") };
}

/**
 * `absent(key, m, now)` is the single definition of "the record is there", over
 * `m = HMGET key e r c s a …` (run with pcall): a hash without `r` whose four timestamps are
 * integers and whose `e` is after `now` (the caller's clock, as the store contract says; Redis's
 * own expiry removes the key at the same deadline on the server's clock). It returns nil for a
 * live record, 'rotated' for a marker, and 'gone' otherwise, having deleted whatever was there
 * (an expired, half-written or damaged record, a value of another type), so that a damaged
 * record is removed the first time anyone looks.
 */
const ABSENT = `
local function is_int(v)
  if type(v) ~= 'string' then return false end
  local digits = string.match(v, '^%-?(%d+)$')
  return digits ~= nil and string.len(digits) <= 16
end
local function absent(key, m, now)
  if m.err then
    if not string.find(m.err, 'WRONGTYPE', 1, true) then return m end
  elseif m[2] then
    return 'rotated'
  elseif is_int(m[1]) and is_int(m[3]) and is_int(m[4]) and is_int(m[5]) and tonumber(m[1]) > now then
    return nil
  end
  redis.call('DEL', key)
  return 'gone'
end
`;

/**
 * The request-path scripts' liveness check, over `m = HMGET key e r …` (run with pcall): the
 * record is live when it is a hash without `r` whose `e` is a number after `now` (and, for an
 * increment, whose `s` and `a` are numbers: it computes with them). Otherwise `refuse` gives
 * the answer, as `absent` would: 'rotated' for a marker, else 'gone' with the key deleted (an
 * error other than WRONGTYPE, such as OOM, is passed on). Cheaper than `absent`, which also
 * checks that `c`, `s`, `a` and `e` are integer text; a record damaged in a way only `absent`
 * sees is written to here, and removed by the next read (the store's own check is `absent`'s).
 */
const LIVE = `
local function refuse(key, m)
  if m.err and not string.find(m.err, 'WRONGTYPE', 1, true) then return m end
  if m[2] then return 'rotated' end
  redis.call('DEL', key)
  return 'gone'
end
`;

/** The idle deadline after a touch: min(now + idle timeout, absolute deadline), as `touchMeta` computes it. */
const TOUCH_DEADLINE = `
local function touch_deadline(idle_deadline, absolute)
  if tonumber(absolute) < tonumber(idle_deadline) then return absolute end
  return idle_deadline
end
`;

/** HSET/HDEL in slices: Lua's unpack() fails past a few thousand values. */
const SLICES = `
local function sliced(command, key, list, first, last)
  local i = first
  while i <= last do
    local stop = math.min(i + 399, last)
    redis.call(command, key, unpack(list, i, stop))
    i = stop + 1
  end
end
`;

/**
 * load, when a touch is due or the plain read found something odd. KEYS[1] session.
 * ARGV: now, now + idle timeout, touch interval.
 * Returns 'gone' (nothing, expired or damaged: deleted), 'rotated' (a marker) or the flat
 * HGETALL list. When a touch is due (now - lastSeenAt >= interval) it moves `s` to now and
 * `e` to min(now + idle, absolute) with PEXPIREAT in the same step, so a touch never races a
 * destroy and never outlives the absolute deadline. Under memory pressure the HSET is refused
 * (OOM) and nothing is written: the store then answers with the record as it read it.
 */
export const LOAD = script(
  "load",
  `${ABSENT}${TOUCH_DEADLINE}
local key = KEYS[1]
local now = tonumber(ARGV[1])
local m = redis.pcall('HMGET', key, 'e', 'r', 'c', 's', 'a')
local why = absent(key, m, now)
if why then return why end
if now - tonumber(m[4]) >= tonumber(ARGV[3]) then
  local expires = touch_deadline(ARGV[2], m[5])
  if tonumber(expires) <= now then
    redis.call('DEL', key)
    return 'gone'
  end
  redis.call('HSET', key, 's', ARGV[1], 'e', expires)
  redis.call('PEXPIREAT', key, expires)
end
return redis.call('HGETALL', key)
`,
);

/**
 * create. KEYS[1] session. ARGV: now, expiresAt, then field/value pairs (meta and data).
 * Returns 0 when a live record or a rotation marker holds the key (left untouched), 1 once
 * written. A dead or damaged record under the key is replaced. Its first write is HSET, so a
 * Redis over `maxmemory` refuses it whole (OOM) and nothing changes.
 */
export const CREATE = script(
  "create",
  `${ABSENT}${SLICES}
local key = KEYS[1]
if redis.call('EXISTS', key) == 1 then
  local why = absent(key, redis.pcall('HMGET', key, 'e', 'r', 'c', 's', 'a'), tonumber(ARGV[1]))
  if why ~= 'gone' then return 0 end
end
if #ARGV <= 402 then
  redis.call('HSET', key, unpack(ARGV, 3))
else
  sliced('HSET', key, ARGV, 3, #ARGV)
end
redis.call('PEXPIREAT', key, ARGV[2])
return 1
`,
);

/**
 * apply. KEYS[1] session. ARGV: now, new expiresAt or '' (unchanged), '1' when the caller
 * wants the user and deadlines before the change (to maintain the user index), the number of
 * field/value strings to set, those strings, then the fields to delete.
 * Returns 'gone' / 'rotated' when there is no live record (nothing written: no resurrection),
 * else 1, or {1, user before or '', expiresAt before, absoluteExpiresAt before or ''}.
 */
export const APPLY = script(
  "apply",
  `${LIVE}${SLICES}
local key = KEYS[1]
local m = redis.pcall('HMGET', key, 'e', 'r', 'u', 'a')
local e = not m.err and tonumber(m[1])
if not e or m[2] or e <= ARGV[1] + 0 then return refuse(key, m) end
local last_set = 4 + ARGV[4]
if last_set > 4 and last_set <= 404 then
  redis.call('HSET', key, unpack(ARGV, 5, last_set))
else
  sliced('HSET', key, ARGV, 5, last_set)
end
sliced('HDEL', key, ARGV, last_set + 1, #ARGV)
if ARGV[2] ~= '' then redis.call('PEXPIREAT', key, ARGV[2]) end
if ARGV[3] ~= '1' then return 1 end
return {1, m[3] or '', m[1], m[4] or ''}
`,
);

/**
 * increment. KEYS[1] session. ARGV: now, field, by, now + idle timeout, touch interval, -by.
 * Touches like load (an increment is activity, and it is often a request's only store call).
 * Returns 'gone' / 'rotated' when there is no live record, the new value (an integer, or its
 * decimal text past 10^15, which clients decode inexactly as an integer), or {'not-integer'} /
 * {'out-of-range'} (nothing written), which the store turns into a SessionValueError.
 *
 * Mirrors `addToStoredInteger`: the stored text must match /^-?(0|[1-9]\d{0,15})$/ (absent
 * counts as 0) and the sum must be a safe integer; `by` is one already (the store checks it).
 * The common case is one HINCRBY, which Redis itself refuses for text that is not an integer
 * (or a sum past 64 bits); when it refuses, or when the stored value or the sum is outside the safe range (where
 * HINCRBY's exact 64-bit arithmetic and JavaScript's differ), the HINCRBY is undone and the
 * slow path does exactly what `addToStoredInteger` does. The value stays decimal text in the
 * hash, which is also its JSON encoding.
 */
export const INCREMENT = script(
  "increment",
  `${LIVE}
local key = KEYS[1]
local now = ARGV[1] + 0
local m = redis.pcall('HMGET', key, 'e', 'r', 's', 'a')
local e = not m.err and tonumber(m[1])
local s = e and tonumber(m[3])
local a = s and tonumber(m[4])
if not a or m[2] or e <= now then return refuse(key, m) end
local expires = false
if now - s >= ARGV[5] + 0 then
  expires = ARGV[4]
  if a < expires + 0 then expires = m[4] end
  if expires + 0 <= now then
    redis.call('DEL', key)
    return 'gone'
  end
end
local limit = 9007199254740991
local sum = redis.pcall('HINCRBY', key, ARGV[2], ARGV[3])
if type(sum) ~= 'number' or sum > limit or sum < -limit or sum - ARGV[3] > limit or sum - ARGV[3] < -limit then
  if type(sum) == 'number' then
    redis.call('HINCRBY', key, ARGV[2], ARGV[6])
  elseif not (string.find(sum.err, 'not an integer', 1, true) or string.find(sum.err, 'overflow', 1, true)) then
    return sum
  end
  local current = redis.call('HGET', key, ARGV[2])
  local value = 0
  if current then
    local digits = string.match(current, '^%-?(%d+)$')
    if not digits or string.len(digits) > 16 or (string.len(digits) > 1 and string.sub(digits, 1, 1) == '0') then
      return {'not-integer'}
    end
    value = tonumber(current)
  end
  sum = value + ARGV[3]
  if sum > limit or sum < -limit then return {'out-of-range'} end
  redis.call('HSET', key, ARGV[2], string.format('%.0f', sum))
end
if expires then
  redis.call('HSET', key, 's', ARGV[1], 'e', expires)
  redis.call('PEXPIREAT', key, expires)
end
if sum > 999999999999999 or sum < -999999999999999 then return string.format('%.0f', sum) end
return sum
`,
);

/**
 * compareAndSet. KEYS[1] session. ARGV: now, field, '1'/'0' expected given, expected,
 * '1'/'0' next given, next. Compares the exact stored JSON text ('0': the field must be
 * absent). Returns 'gone', 'rotated', 'conflict' or 'ok'.
 */
export const COMPARE_AND_SET = script(
  "compareAndSet",
  `${LIVE}
local key = KEYS[1]
local m = redis.pcall('HMGET', key, 'e', 'r', ARGV[2])
local e = not m.err and tonumber(m[1])
if not e or m[2] or e <= ARGV[1] + 0 then return refuse(key, m) end
local current = m[3]
if ARGV[3] == '1' then
  if current ~= ARGV[4] then return 'conflict' end
elseif current then
  return 'conflict'
end
if ARGV[5] == '1' then
  redis.call('HSET', key, ARGV[2], ARGV[6])
else
  redis.call('HDEL', key, ARGV[2])
end
return 'ok'
`,
);

/**
 * take: the last step of rotate, once the new key holds the session. KEYS[1] old session.
 * ARGV: now, when the rotation marker expires, the digest of the record as the store read it
 * (see `recordDigest`). Replaces a live record with a rotation marker ({r = 1}, expiring at
 * ARGV[2]) and returns 1 when the record is still the one the store read, else the flat
 * HGETALL list it held (a concurrent write landed in between: the store copies it to the new
 * key). Returns 'gone' / 'rotated' when there was no live record: nothing is written.
 * Deletes first, so that it runs to the end under memory pressure.
 */
export const TAKE = script(
  "take",
  `${ABSENT}
local key = KEYS[1]
local why = absent(key, redis.pcall('HMGET', key, 'e', 'r', 'c', 's', 'a'), tonumber(ARGV[1]))
if why then return why end
local all = redis.call('HGETALL', key)
local parts = {}
for i = 1, #all do parts[i] = string.len(all[i]) .. ':' .. all[i] end
local same = redis.sha1hex(table.concat(parts)) == ARGV[3]
redis.call('DEL', key)
redis.call('HSET', key, 'r', '1')
redis.call('PEXPIREAT', key, ARGV[2])
if same then return 1 end
return all
`,
);

/**
 * undoTake: puts back what `take` took, when the rotation must fail after it (its durable write
 * was not confirmed by enough replicas). KEYS[1] old session. ARGV: expiresAt, then the flat
 * HGETALL list `take` removed. Only over a rotation marker (which, once this rotation's take
 * succeeded, can only be its own): returns 0, writing nothing, when the key holds anything else
 * (a logout removed the marker meanwhile), else rewrites the record and returns 1. Deletes first
 * (see take).
 */
export const UNDO_TAKE = script(
  "undoTake",
  `${SLICES}
local key = KEYS[1]
if redis.pcall('HGET', key, 'r') ~= '1' then return 0 end
redis.call('DEL', key)
sliced('HSET', key, ARGV, 2, #ARGV)
redis.call('PEXPIREAT', key, ARGV[1])
return 1
`,
);

/**
 * replace: rotate's copy of the latest data onto the new key, when a concurrent write changed
 * the old record after the store read it. KEYS[1] the new session. ARGV: now, expiresAt, then
 * field/value pairs. Returns 0, writing nothing, when the new key no longer holds a live record
 * (destroyed meanwhile), else rewrites it whole and returns 1. Deletes first (see take).
 */
export const REPLACE = script(
  "replace",
  `${ABSENT}${SLICES}
local key = KEYS[1]
if absent(key, redis.pcall('HMGET', key, 'e', 'r', 'c', 's', 'a'), tonumber(ARGV[1])) then return 0 end
redis.call('DEL', key)
sliced('HSET', key, ARGV, 3, #ARGV)
redis.call('PEXPIREAT', key, ARGV[2])
return 1
`,
);

/**
 * destroy. KEYS[1] session. Deletes whatever is there (a record, a marker, a foreign value)
 * and returns the userId it held (or nil), so the store can drop the key from that user's index.
 */
export const DESTROY = script(
  "destroy",
  `
local user = redis.pcall('HGET', KEYS[1], 'u')
redis.call('DEL', KEYS[1])
if type(user) == 'string' then return user end
return false
`,
);

/**
 * revoke: one session of a user's "log out everywhere". KEYS[1] session. ARGV: now, userId.
 * Deletes the record only when it is live and bound to that user (an index member can be
 * stale: rebound to another user) and returns 1. Returns 'rotated' for a rotation marker: the
 * session may have moved to a new key since the store read the index (the store reads it again),
 * and 0 otherwise, having removed only what `absent` removes.
 */
export const REVOKE = script(
  "revoke",
  `${ABSENT}
local key = KEYS[1]
local m = redis.pcall('HMGET', key, 'e', 'r', 'c', 's', 'a', 'u')
local why = absent(key, m, tonumber(ARGV[1]))
if why == 'rotated' then return why end
if why or m[6] ~= ARGV[2] then return 0 end
redis.call('DEL', key)
return 1
`,
);

/**
 * indexAdd. KEYS[1] a user's index (sorted set: member = session key, score = the time after
 * which that session cannot be live). ARGV: now, score, member.
 * Prunes members past their score, adds this one, and makes the index key expire with its
 * last member, so an index never outlives its sessions. Its first write is ZREMRANGEBYSCORE,
 * so it runs under memory pressure too (a login refused there is undone by the store).
 */
export const INDEX_ADD = script(
  "indexAdd",
  `
local key = KEYS[1]
redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1])
if tonumber(ARGV[2]) > tonumber(ARGV[1]) then redis.call('ZADD', key, ARGV[2], ARGV[3]) end
local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
-- '%.0f': the score comes back as a double; print it as a plain integer for PEXPIREAT.
if last[2] then redis.call('PEXPIREAT', key, string.format('%.0f', math.ceil(tonumber(last[2])))) end
return 1
`,
);

/**
 * The digest `take` compares: SHA-1 of every string of the flat HGETALL list, each as
 * `<UTF-8 byte length>:<text>`, in the order Redis listed them. Computed here from the list the
 * store read and in Lua from the list the record holds when `take` runs; a different order
 * (a hash Redis rehashed in between) only makes `take` send the record back for a full compare.
 */
export function recordDigest(list: readonly string[]): string {
  const hash = createHash("sha1");
  for (const text of list) hash.update(`${Buffer.byteLength(text)}:${text}`);
  return hash.digest("hex");
}
