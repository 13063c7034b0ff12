/**
 * The Lua scripts behind the Redis store.
 *
 * Why scripts: each store operation must be atomic and must refuse to act on a record that
 * is gone (no resurrection). A script runs with nothing interleaved, so "check the record
 * is live, then write" cannot be split by a concurrent destroy, and it costs one round trip.
 *
 * Why one key per script: on Redis Cluster a script may only touch keys of one hash slot.
 * Session keys hash anywhere, so every script names exactly one key (`KEYS[1]`) and touches
 * nothing else; `rotate` is two scripts (take the old key, create the new one) and the
 * per-user index is maintained by its own scripts, beside the session scripts.
 *
 * Why no shebang (`#!lua flags=...`): legacy scripts run on Redis 6 too, and a read-only
 * run (a `load` with no touch due) still works under `maxmemory` pressure, because Redis
 * only refuses a legacy script when it actually calls a write command.
 *
 * Numbers: times travel as decimal text computed by the caller and are written back as
 * that same text, never formatted by Lua (Lua 5.1 prints 14 significant digits). Lua
 * reads them with `tonumber` only to compare, which is exact below 2^53.
 *
 * Record layout (one hash per session): `d:<name>` → JSON text; `c` createdAt, `s`
 * lastSeenAt, `a` absoluteExpiresAt, `e` expiresAt (integers, decimal text), `u`
 * userId, `ua` userAgent (optional). Meta names are one or two letters and never contain
 * `:`, so they cannot meet a `d:` data field; short names keep a visit-counter session
 * as small as connect-redis' one-string record. The key expires at `e` (PEXPIREAT: an absolute
 * time, which survives restarts and AOF reloads).
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
 * Shared helpers. `live(key, now)` is the single definition of "the record is there":
 * a hash whose four timestamps are integers and whose `e` is after `now`. Anything else
 * under the key (an expired record, a half-written or damaged one, a value of another
 * type) is deleted, so that a damaged record is removed the first time anyone looks.
 * `now` is the caller's clock, as the store contract says; Redis's own expiry (PEXPIREAT)
 * removes the key at the same deadline on the server's clock.
 */
const PRELUDE = `
-- A safe integer as decimal text: at most 16 digits (2^53 has 16), as the store parses it.
local function is_int(v)
  if type(v) ~= 'string' then return false end
  local digits = string.match(v, '^%-?(%d+)$')
  return digits ~= nil and string.len(digits) <= 16
end
-- The live record's meta {c, s, a, e}; 'rotated' for a rotation marker (a hash {r = 1});
-- nil when there is no live record (anything else under the key is deleted).
local function live(key, now)
  local kind = redis.call('TYPE', key)['ok']
  if kind == 'none' then return nil end
  if kind == 'hash' then
    local m = redis.call('HMGET', key, 'c', 's', 'a', 'e', 'r')
    if m[5] then return 'rotated' end
    if is_int(m[1]) and is_int(m[2]) and is_int(m[3]) and is_int(m[4]) then
      if tonumber(m[4]) > now then return m end
    end
  end
  redis.call('DEL', key)
  return nil
end
-- What a script answers for a key without a live record: 'rotated' or 'gone'.
local function absent(m)
  if m == 'rotated' then return 'rotated' end
  return 'gone'
end
-- Refreshes the idle deadline of live record m when a touch is due (now - lastSeenAt >=
-- interval): s = now, e = min(now + idle, absolute), PEXPIREAT e. Returns false, having
-- deleted the record, when the absolute deadline has passed.
local function touch(key, m, now_text, idle_deadline_text, interval_text)
  local now = tonumber(now_text)
  if now - tonumber(m[2]) < tonumber(interval_text) then return true end
  local expires = idle_deadline_text
  if tonumber(m[3]) < tonumber(expires) then expires = m[3] end
  if tonumber(expires) <= now then
    redis.call('DEL', key)
    return false
  end
  redis.call('HSET', key, 's', now_text, 'e', expires)
  redis.call('PEXPIREAT', key, expires)
  return true
end
-- HSET/HDEL in slices: Lua's unpack() fails past a few thousand values.
local function hset_from(key, list, first, last)
  local i = first
  while i <= last do
    local stop = math.min(i + 399, last)
    redis.call('HSET', key, unpack(list, i, stop))
    i = stop + 1
  end
end
local function hdel_from(key, list, first, last)
  local i = first
  while i <= last do
    local stop = math.min(i + 399, last)
    redis.call('HDEL', key, unpack(list, i, stop))
    i = stop + 1
  end
end
`;

/**
 * load. KEYS[1] session. ARGV: now, now + idle timeout, touch interval.
 * Returns 'gone' (nothing, expired or damaged: damaged and expired records are deleted),
 * 'rotated' (a rotation marker) or the flat HGETALL list. When a touch is due (now - lastSeenAt >= interval) it moves `s` to
 * now and `e` to min(now + idle, absolute) with PEXPIREAT in the same step, so a touch
 * never races a destroy and never outlives the absolute deadline.
 */
export const LOAD = script(
  "load",
  `${PRELUDE}
local key = KEYS[1]
local m = live(key, tonumber(ARGV[1]))
if type(m) ~= 'table' then return absent(m) end
if not touch(key, m, ARGV[1], ARGV[2], ARGV[3]) then return 'gone' end
return redis.call('HGETALL', key)
`,
);

/**
 * create. KEYS[1] session. ARGV: now, expiresAt, then field/value pairs (meta and data).
 * Returns 0 when a live record or a rotation marker holds the key (it is left untouched), 1 once written.
 * A dead or damaged record under the key is replaced (live() deletes it first).
 * Also the second half of rotate, on the new key.
 */
export const CREATE = script(
  "create",
  `${PRELUDE}
local key = KEYS[1]
if live(key, tonumber(ARGV[1])) then return 0 end
hset_from(key, ARGV, 3, #ARGV)
redis.call('PEXPIREAT', key, ARGV[2])
return 1
`,
);

/**
 * apply. KEYS[1] session. ARGV: now, new expiresAt or '' (unchanged), '1' when the caller
 * wants the user/expiry before and after (to maintain the user index), the number of
 * field/value strings to set, those strings, then the fields to delete.
 * Returns 'gone' / 'rotated' when there is no live record (nothing written: no resurrection), else 1, or
 * {1, user before, expires before, absolute before, user after, expires after, absolute after}.
 */
export const APPLY = script(
  "apply",
  `${PRELUDE}
local key = KEYS[1]
local before = live(key, tonumber(ARGV[1]))
if type(before) ~= 'table' then return absent(before) end
local report = ARGV[3] == '1'
local user_before = false
if report then user_before = redis.call('HGET', key, 'u') end
local set_count = tonumber(ARGV[4])
hset_from(key, ARGV, 5, 4 + set_count)
hdel_from(key, ARGV, 5 + set_count, #ARGV)
if ARGV[2] ~= '' then redis.call('PEXPIREAT', key, ARGV[2]) end
if not report then return 1 end
local after = redis.call('HMGET', key, 'u', 'e', 'a')
return {1, user_before or '', before[4], before[3], after[1] or '', after[2] or '', after[3] or ''}
`,
);

/**
 * increment. KEYS[1] session. ARGV: now, field, by, now + idle timeout, touch interval.
 * Touches like load (an increment is activity, and it is often a request's only store call).
 * Returns 'gone' / 'rotated' when there is no live record, the new value as decimal text, or {'not-integer'} / {'out-of-range'}
 * (nothing written) which the store turns into a SessionValueError. The value stays
 * decimal text in the hash, which is also its JSON encoding, and HINCRBY keeps it exact.
 */
export const INCREMENT = script(
  "increment",
  `${PRELUDE}
local key = KEYS[1]
local m = live(key, tonumber(ARGV[1]))
if type(m) ~= 'table' then return absent(m) end
if not touch(key, m, ARGV[1], ARGV[4], ARGV[5]) then return 'gone' end
local current = redis.call('HGET', key, ARGV[2])
local value = 0
if current then
  local digits = string.match(current, '^%-?(%d+)$')
  if not digits then return {'not-integer'} end
  if string.len(digits) > 16 then return {'out-of-range'} end
  value = tonumber(current)
end
local limit = 9007199254740991
local by = tonumber(ARGV[3])
if math.abs(value) > limit or math.abs(value + by) > limit then return {'out-of-range'} end
-- pcall: HINCRBY still refuses text like '007' that the pattern lets through.
local result = redis.pcall('HINCRBY', key, ARGV[2], ARGV[3])
if type(result) == 'table' and result.err then
  if string.find(result.err, 'not an integer', 1, true) then return {'not-integer'} end
  -- Any other refusal (OOM, READONLY) is a system failure, not a bad value: pass it on.
  return result
end
-- The stored text, not the integer reply: node-redis 5 decodes integer replies with
-- float arithmetic that is off by one near 2^53.
return redis.call('HGET', key, ARGV[2])
`,
);

/**
 * compareAndSet. KEYS[1] session. ARGV: now, field, '1'/'0' expected given, expected,
 * '1'/'0' next given, next. Compares the exact stored JSON text ('0': the field must be
 * absent). Returns 'gone', 'rotated', 'conflict' or 'ok'.
 */
export const COMPARE_AND_SET = script(
  "compareAndSet",
  `${PRELUDE}
local key = KEYS[1]
local m = live(key, tonumber(ARGV[1]))
if type(m) ~= 'table' then return absent(m) end
local current = redis.call('HGET', key, ARGV[2])
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
 * take: the first half of rotate. KEYS[1] old session. ARGV: now, when the rotation marker expires.
 * Reads the whole record and replaces it with a rotation marker ({r = 1}, expiring at ARGV[2])
 * in one step, so the old ID is dead the moment this runs, whatever happens to the create on
 * the new key (another slot on Cluster). Returns 'gone' / 'rotated', else the flat HGETALL list.
 */
export const TAKE = script(
  "take",
  `${PRELUDE}
local key = KEYS[1]
local m = live(key, tonumber(ARGV[1]))
if type(m) ~= 'table' then return absent(m) end
local all = redis.call('HGETALL', key)
-- DEL first: once the script has written, Redis lets it finish under maxmemory pressure.
redis.call('DEL', key)
redis.call('HSET', key, 'r', '1')
redis.call('PEXPIREAT', key, ARGV[2])
return all
`,
);

/**
 * destroy. KEYS[1] session. Deletes whatever is there and returns the userId it held
 * (or nil), so the store can drop the key from that user's index.
 */
export const DESTROY = script(
  "destroy",
  `
local key = KEYS[1]
local user = false
if redis.call('TYPE', key)['ok'] == 'hash' then user = redis.call('HGET', key, 'u') end
redis.call('DEL', key)
return user
`,
);

/**
 * indexAdd. KEYS[1] a user's index (sorted set: member = session key, score = the time
 * after which that session cannot be live). ARGV: now, score, member, and optionally a
 * member to remove (the old key of a rotated session of the same user).
 * Prunes dead members, adds this one, and makes the index key expire with its last
 * member, so an index never outlives its sessions.
 */
export const INDEX_ADD = script(
  "indexAdd",
  `
local key = KEYS[1]
redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1])
if ARGV[4] then redis.call('ZREM', key, ARGV[4]) end
if tonumber(ARGV[2]) > tonumber(ARGV[1]) then redis.call('ZADD', key, ARGV[2], ARGV[3]) end
local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
-- '%.0f': the score comes back as a double; print it as a plain integer for PEXPIREAT.
if last[2] then redis.call('PEXPIREAT', key, string.format('%.0f', math.ceil(tonumber(last[2])))) end
return 1
`,
);

/**
 * indexRead. KEYS[1] a user's index. ARGV: now.
 * Prunes members whose deadline has passed and returns the rest. Members can still be
 * stale (destroyed, rotated away, rebound): the store checks each one's record.
 */
export const INDEX_READ = script(
  "indexRead",
  `
local key = KEYS[1]
redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1])
return redis.call('ZRANGE', key, 0, -1)
`,
);
