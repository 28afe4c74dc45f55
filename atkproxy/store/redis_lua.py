"""The Lua scripts of the Redis store: every transition of a job is one script, so atomic.

Keys, under the prefix P (ARGV[1] of every script):

    P job:<id>          hash: the small fields, one per field; the bodies `request`,
                        `reply` (written by add) and `result` (written once, HSETNX)
    P due:<state>       zset of unleased jobs with a due time, scored by due_at (a "lane")
    P leases            zset of leased jobs, scored by lease_until
    P created:<state>   zset of the jobs in a state, scored by created_at (listing, counts)
    P created:all       zset of every job, scored by created_at (listing)
    P terminal          zset of jobs in a terminal state, scored by updated_at (purge)
    P idem:<digest>     the id of the job recorded under an idempotency digest

A leased job is in `leases`, not in its lane; a claim first moves the leases that expired
back to their lanes, then takes from the lanes. Times arrive as text and are written as
they came (Lua would print a float with 14 digits); they are only compared as numbers.

The scripts name their keys from the prefix rather than in KEYS, so they need one Redis
(standalone, or a primary with replicas under Sentinel), not Redis Cluster. The `#!lua`
line makes Redis refuse a script up front when it is out of memory or a read-only
replica, so no script stops half-way through its writes for those reasons.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from ..jobs import REDELIVERABLE, TERMINAL, JobState


class Script(NamedTuple):
    """A script's text, and the SHA1 digest EVALSHA names it by."""

    text: str
    sha: str


def _script(body: str) -> Script:
    text = _COMMON + body
    return Script(text, hashlib.sha1(text.encode()).hexdigest())


def _lua_set(states: frozenset[JobState]) -> str:
    return "{" + ", ".join(f"[{s.value!r}] = true" for s in sorted(states)) + "}"


_COMMON = f"""#!lua
local P = ARGV[1]
local TERMINAL = {_lua_set(TERMINAL)}
local REDELIVERABLE = {_lua_set(REDELIVERABLE)}

local function jkey(id) return P .. 'job:' .. id end

local function drop_index(id, state)
  redis.call('ZREM', P .. 'due:' .. state, id)
  redis.call('ZREM', P .. 'leases', id)
  redis.call('ZREM', P .. 'created:' .. state, id)
  redis.call('ZREM', P .. 'terminal', id)
end

-- index the job as its hash now says
local function put_index(id)
  local f = redis.call('HMGET', jkey(id), 'state', 'created_at', 'updated_at', 'due_at',
                       'lease_owner', 'lease_until')
  local state = f[1]
  if f[5] then
    redis.call('ZADD', P .. 'leases', f[6], id)
  elseif f[4] then
    redis.call('ZADD', P .. 'due:' .. state, f[4], id)
  end
  redis.call('ZADD', P .. 'created:' .. state, f[2], id)
  redis.call('ZADD', P .. 'created:all', f[2], id)
  if TERMINAL[state] then
    redis.call('ZADD', P .. 'terminal', f[3], id)
  end
end

local function lease_free(owner, until_, now)
  return (not owner) or tonumber(until_) < tonumber(now)
end

-- the job's hash as one string: `<length>:<bytes>` for each field and value in turn (one
-- reply element per job: redis-py parses each element of a reply at a real cost)
local function packed(id)
  local flat = redis.call('HGETALL', jkey(id))
  for i, v in ipairs(flat) do flat[i] = #v .. ':' .. v end
  return table.concat(flat)
end

-- set ARGV[first], ARGV[first + 1] ... as field/value pairs, `count` of them
local function hset_pairs(key, first, count)
  if count > 0 then
    redis.call('HSET', key, unpack(ARGV, first, first + 2 * count - 1))
  end
end
"""

# ARGV: P, id, idempotency ('' for none), n, field1, value1, ... (n pairs)
# -> {0} added, {1, packed job} recorded under the idempotency digest, {2} id taken
ADD = _script(
    """
local id, idem, n = ARGV[2], ARGV[3], tonumber(ARGV[4])
local key = jkey(id)
if idem ~= '' then
  local known = redis.call('GET', P .. 'idem:' .. idem)
  if known and redis.call('EXISTS', jkey(known)) == 1 then
    return {1, packed(known)}
  end
end
if redis.call('EXISTS', key) == 1 then return {2} end
hset_pairs(key, 5, n)
if idem ~= '' then redis.call('SET', P .. 'idem:' .. idem, id) end
put_index(id)
return {0}
"""
)

# ARGV: P, owner, now, until, limit, state1, state2, ...  -> {packed job, ...}
CLAIM = _script(
    """
local owner, now, until_, limit = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', '(' .. now)) do
  redis.call('ZREM', P .. 'leases', id)
  local f = redis.call('HMGET', jkey(id), 'state', 'due_at')
  if f[1] and f[2] then redis.call('ZADD', P .. 'due:' .. f[1], f[2], id) end
end
local found = {}
for i = 6, #ARGV do
  local lane = P .. 'due:' .. ARGV[i]
  local offset, taken = 0, 0
  while taken < limit do
    local batch = redis.call('ZRANGEBYSCORE', lane, '-inf', now, 'WITHSCORES',
                             'LIMIT', offset, limit)
    if #batch == 0 then break end
    for j = 1, #batch, 2 do
      local f = redis.call('HMGET', jkey(batch[j]), 'state', 'lease_owner', 'lease_until')
      -- (a lane never names a job that is gone; were it to, the job must not be recreated)
      if taken < limit and f[1] and lease_free(f[2], f[3], now) then
        found[#found + 1] = {tonumber(batch[j + 1]), batch[j], lane}
        taken = taken + 1
      end
    end
    offset = offset + #batch / 2
  end
end
table.sort(found, function(a, b)
  if a[1] ~= b[1] then return a[1] < b[1] end
  return a[2] < b[2]
end)
local out = {}
for i = 1, math.min(limit, #found) do
  local id, lane = found[i][2], found[i][3]
  redis.call('HSET', jkey(id), 'lease_owner', owner, 'lease_until', until_)
  redis.call('ZREM', lane, id)
  redis.call('ZADD', P .. 'leases', until_, id)
  out[i] = packed(id)
end
return out
"""
)

# ARGV: P  -> how many leases there were (each now expired: a claim takes the job)
EXPIRE_LEASES = _script(
    """
local ids = redis.call('ZRANGE', P .. 'leases', 0, -1)
for _, id in ipairs(ids) do
  redis.call('HSET', jkey(id), 'lease_until', '0')
  redis.call('ZADD', P .. 'leases', 0, id)
end
return #ids
"""
)

# ARGV: P, owner, until, id1, id2, ...  -> the ids still held (now renewed)
RENEW = _script(
    """
local owner, until_ = ARGV[2], ARGV[3]
local held = {}
for i = 4, #ARGV do
  local id = ARGV[i]
  local f = redis.call('HMGET', jkey(id), 'state', 'lease_owner')
  if f[1] and f[2] == owner then
    redis.call('HSET', jkey(id), 'lease_until', until_)
    redis.call('ZREM', P .. 'due:' .. f[1], id)
    redis.call('ZADD', P .. 'leases', until_, id)
    held[#held + 1] = id
  end
end
return held
"""
)

# ARGV: P, id, owner ('' for none), now, result ('' for none), n, field/value pairs (n),
#       then the names of the fields to delete  -> 0 done, 1 job missing, 2 lease lost
UPDATE = _script(
    """
local id, owner, now, result, n = ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local key = jkey(id)
local cur = redis.call('HMGET', key, 'state', 'lease_owner', 'lease_until')
if not cur[1] then return 1 end
if owner ~= '' then
  if cur[2] ~= owner then return 2 end
elseif not lease_free(cur[2], cur[3], now) then
  return 2
end
drop_index(id, cur[1])
local deleted = 7 + 2 * n
if deleted <= #ARGV then redis.call('HDEL', key, unpack(ARGV, deleted, #ARGV)) end
hset_pairs(key, 7, n)
if result ~= '' then redis.call('HSETNX', key, 'result', result) end
put_index(id)
return 0
"""
)

# ARGV: P, now, updated_at, job id ('' for a bulk move), state (bulk), limit -> moved
REDELIVER = _script(
    """
local now, updated, job_id, state, limit = ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local moved = 0

local function redeliver(id)
  local key = jkey(id)
  local f = redis.call('HMGET', key, 'state', 'lease_owner', 'lease_until', 'attempts')
  if not (f[1] and REDELIVERABLE[f[1]] and lease_free(f[2], f[3], now)) then return false end
  drop_index(id, f[1])
  redis.call('HDEL', key, 'reason', 'lease_owner')
  redis.call('HSET', key, 'state', 'delivering', 'due_at', now, 'lease_until', '0.0',
             'updated_at', updated, 'delivery_base', #cjson.decode(f[4]))
  put_index(id)
  return true
end

if job_id ~= '' then
  if redeliver(job_id) then return 1 end
  return 0
end
local offset = 0
while moved < limit do
  local batch = redis.call('ZREVRANGE', P .. 'created:' .. state, offset, offset + 99)
  if #batch == 0 then break end
  for _, id in ipairs(batch) do
    if moved < limit and redeliver(id) then
      moved = moved + 1
    else
      offset = offset + 1  -- moved jobs leave the zset; skipped ones stay before the next
    end
  end
end
return moved
"""
)

# ARGV: P, before, limit  -> how many jobs were dropped
PURGE = _script(
    """
local before, limit = ARGV[2], tonumber(ARGV[3])
local old = redis.call('ZRANGEBYSCORE', P .. 'terminal', '-inf', '(' .. before,
                       'LIMIT', 0, limit)
for _, id in ipairs(old) do
  local f = redis.call('HMGET', jkey(id), 'state', 'idempotency')
  if f[1] then drop_index(id, f[1]) end
  redis.call('ZREM', P .. 'terminal', id)
  redis.call('ZREM', P .. 'created:all', id)
  if f[2] and redis.call('GET', P .. 'idem:' .. f[2]) == id then
    redis.call('DEL', P .. 'idem:' .. f[2])
  end
  redis.call('DEL', jkey(id))
end
return #old
"""
)
