"""The Redis store's Lua scripts: :mod:`lokey.store.queue`'s algorithms, run inside Redis.

Every operation that reads and then writes is one script, so it is atomic against every other
client of the server (Redis runs one script at a time). Each script checks everything that can
fail before its first write: Redis does not roll a script's writes back when it fails later.

Integers are written with ``string.format('%d', ...)``: Redis turns a Lua number argument into
text in its shortest form, which may be ``1e+15``, and a counter must stay an integer. Lua
numbers are doubles, exact to 2**53: far beyond any counter a queue reaches.

The scripts read items in bounded ``LRANGE`` rounds, never the whole list; the round lengths
follow queue.py (MIN_ROUND, SKIP_ROUND; drops read DROP_ROUND items at a time), passed in ARGV
so tests can change them.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Final

from lokey.store.queue import QueueMeta
from lokey.store.usage import RECENT_HOURS

__all__ = [
    "ERROR_PREFIX",
    "INIT",
    "LEASE",
    "META_FIELDS",
    "MISSING_PREFIX",
    "PUSH",
    "RECREATE",
    "RELEASE",
    "RESIZE",
    "TAKE",
]

META_FIELDS: Final = tuple(f.name for f in fields(QueueMeta))
# Scripts prefix their own error replies with this, so a message says where it came from.
ERROR_PREFIX: Final = "LOKEY"
# The error code of a script that found a queue's counters gone (before any write): the one
# failure after which the store may recreate its layout and run the script again.
MISSING_PREFIX: Final = "LOKEYMISSING"
# Items one LRANGE of a drop reads at a time: with 64 KiB Fortuna items a round holds 8 MiB.
DROP_ROUND: Final = 128
# Lua's unpack() fails beyond LUAI_MAXCSTACK (8000) values: RPUSH in chunks below that.
PUSH_ROUND: Final = 1000

_FIELD_LIST = ", ".join(f"'{name}'" for name in META_FIELDS)

_PRELUDE = f"""
local FIELDS = {{{_FIELD_LIST}}}

local function int(v)
  return string.format('%d', v)
end

local function fail(message)
  error({{err = '{ERROR_PREFIX} ' .. message}})
end

local function drift(problem)
  fail('the queue ' .. problem .. ': its counters and its items disagree')
end

local function load_meta(key)
  local values = redis.call('HMGET', key, unpack(FIELDS))
  local meta = {{}}
  for i, name in ipairs(FIELDS) do
    if not values[i] then
      error({{err = '{MISSING_PREFIX} the queue counters at ' .. key .. ' are missing'}})
    end
    meta[name] = tonumber(values[i])
  end
  return meta
end

local function save_meta(key, meta)
  local args = {{}}
  for _, name in ipairs(FIELDS) do
    args[#args + 1] = name
    args[#args + 1] = int(meta[name])
  end
  redis.call('HSET', key, unpack(args))
end

local function mean_item(meta)
  if meta.items > 0 then
    return math.max(math.floor(meta.bytes / meta.items), 1)
  end
  return 1
end

local function ceil_div(a, b)
  return math.floor((a + b - 1) / b)
end

-- queue._drop_head: read whichever is fewer, the dropped items or the kept ones.
local function drop_head(key, meta, count, round)
  if count <= 0 then
    return
  end
  local keep = meta.items - count
  local lost
  if keep < count then
    local len = redis.call('LLEN', key)
    if len ~= meta.items or keep > meta.items then
      drift('holds ' .. int(len) .. ' items, not ' .. int(meta.items))
    end
    local kept = 0
    local start = len - keep
    while start < len do
      local stop = math.min(start + round, len) - 1
      for _, v in ipairs(redis.call('LRANGE', key, start, stop)) do
        kept = kept + #v
      end
      start = stop + 1
    end
    if keep > 0 then
      redis.call('LTRIM', key, len - keep, -1)
    else
      redis.call('DEL', key)
    end
    lost = meta.bytes - kept
  else
    local size = 0
    local seen = 0
    while seen < count do
      local chunk = redis.call('LRANGE', key, seen, math.min(seen + round, count) - 1)
      if #chunk == 0 then
        drift('holds ' .. int(seen) .. ' items, fewer than the ' .. int(count) .. ' to drop')
      end
      for _, v in ipairs(chunk) do
        size = size + #v
      end
      seen = seen + #chunk
    end
    lost = size - meta.head_offset
    redis.call('LTRIM', key, count, -1)
  end
  meta.items = meta.items - count
  meta.bytes = meta.bytes - lost
  meta.head_offset = 0
  meta.dropped = meta.dropped + count
  meta.dropped_bytes = meta.dropped_bytes + lost
end
"""

INIT: Final = (
    _PRELUDE
    + """
-- KEYS: format, then each queue's meta; ARGV: layout version, default capacity
local found = redis.call('GET', KEYS[1])
if not found then
  redis.call('SET', KEYS[1], ARGV[1])
elseif found ~= ARGV[1] then
  return {1, found}
end
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    local meta = {}
    for _, name in ipairs(FIELDS) do
      meta[name] = 0
    end
    meta.capacity = tonumber(ARGV[2])
    save_meta(KEYS[i], meta)
  end
end
return {0, ''}
"""
)

RECREATE: Final = (
    _PRELUDE
    + """
-- KEYS: format, each queue's meta, then each queue's items and usage; ARGV: layout version,
-- default capacity. Only when the format key is gone: the server lost the store (restarted
-- without persistence, flushed). Whatever is left of the queues is dropped, never served (a
-- byte whose counters are gone cannot be shown to be unserved), and empty queues are created.
-- One script, so of several instances noticing at once exactly one recreates.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local queues = (#KEYS - 1) / 3
for i = 2, #KEYS do
  redis.call('DEL', KEYS[i])
end
redis.call('SET', KEYS[1], ARGV[1])
for i = 2, 1 + queues do
  local meta = {}
  for _, name in ipairs(FIELDS) do
    meta[name] = 0
  end
  meta.capacity = tonumber(ARGV[2])
  save_meta(KEYS[i], meta)
end
return 1
"""
)

PUSH: Final = (
    _PRELUDE
    + """
-- queue.push. KEYS: items, meta; ARGV: polls, DROP_CHUNK, DROP_ROUND, then the items
local meta = load_meta(KEYS[2])
local polls = tonumber(ARGV[1])
local drop_chunk = tonumber(ARGV[2])
local drop_round = tonumber(ARGV[3])
local first = 4
local count = #ARGV - 3
local nbytes = 0
for i = first, #ARGV do
  nbytes = nbytes + #ARGV[i]
end
local overflow = meta.items + count - meta.capacity
local from_queue, from_batch = 0, 0
if overflow > 0 then
  from_queue = math.min(overflow, meta.items, count + drop_chunk)
  if from_queue == meta.items then
    from_batch = overflow - from_queue
  end
  drop_head(KEYS[1], meta, from_queue, drop_round)
end
if from_batch > 0 then
  local lost = 0
  for i = first, first + from_batch - 1 do
    lost = lost + #ARGV[i]
  end
  meta.dropped = meta.dropped + from_batch
  meta.dropped_bytes = meta.dropped_bytes + lost
  meta.total_generated = meta.total_generated + from_batch
  meta.generated_bytes = meta.generated_bytes + lost
  first = first + from_batch
  count = count - from_batch
  nbytes = nbytes - lost
end
meta.total_generated = meta.total_generated + count
meta.generated_bytes = meta.generated_bytes + nbytes
meta.polling_count = meta.polling_count + polls
if count > 0 then
  local i = first
  while i <= #ARGV do
    local j = math.min(i + """
    + str(PUSH_ROUND - 1)
    + """, #ARGV)
    redis.call('RPUSH', KEYS[1], unpack(ARGV, i, j))
    i = j + 1
  end
  meta.next_id = meta.next_id + count
  meta.items = meta.items + count
  meta.bytes = meta.bytes + nbytes
end
save_meta(KEYS[2], meta)
return from_queue + from_batch
"""
)

RESIZE: Final = (
    _PRELUDE
    + """
-- queue.resize (ARGV[1] a capacity) or queue.trim (ARGV[1] empty): at most one bounded drop.
-- KEYS: items, meta; ARGV: capacity or '', DROP_CHUNK, DROP_ROUND.
-- Returns {dropped, still over capacity}.
local meta = load_meta(KEYS[2])
local setting = ARGV[1] ~= ''
local capacity = meta.capacity
if setting then
  capacity = tonumber(ARGV[1])
end
local drop_chunk = tonumber(ARGV[2])
local drop_round = tonumber(ARGV[3])
local excess = meta.items - capacity
local dropped = 0
if excess > 0 then
  if capacity < excess and capacity <= drop_chunk then
    dropped = excess
  else
    dropped = math.min(excess, drop_chunk)
  end
  drop_head(KEYS[1], meta, dropped, drop_round)
end
if setting then
  meta.capacity = capacity
end
if setting or dropped > 0 then
  save_meta(KEYS[2], meta)
end
local over = 0
if meta.items > meta.capacity then
  over = 1
end
return {dropped, over}
"""
)

TAKE: Final = (
    _PRELUDE
    + """
-- queue.take plus the usage record. KEYS: items, meta, usage;
-- ARGV: n, skip, consume, partial, account, hour start, MIN_ROUND, SKIP_ROUND.
-- Returns {0, bytes}, or {1, available} when the queue is too short (nothing changed).
local RECENT_HOURS = """
    + str(RECENT_HOURS)
    + """
local key = KEYS[1]
local meta = load_meta(KEYS[2])
local n = tonumber(ARGV[1])
local skip = tonumber(ARGV[2])
local consume = ARGV[3] == '1'
local partial = ARGV[4] == '1'
local accounted = ARGV[5] == '1'
local hour = ARGV[6]
local MIN_ROUND = tonumber(ARGV[7])
local SKIP_ROUND = tonumber(ARGV[8])

local function count_consumed(items, nbytes)
  meta.bytes = meta.bytes - nbytes
  meta.consumed = meta.consumed + items
  meta.consumed_bytes = meta.consumed_bytes + nbytes
end

-- queue._extend: rounds of the estimated items still needed, never more than already read.
local function extend(window, start, total, target)
  local mean = mean_item(meta)
  while total < target do
    if #window > 0 then
      mean = math.max(math.floor(total / #window), 1)
    end
    local count = math.min(ceil_div(target - total, mean), math.max(#window, MIN_ROUND))
    local from = start + #window
    local more = redis.call('LRANGE', key, from, from + count - 1)
    if #more == 0 then
      drift('ran out ' .. int(target - total) .. ' bytes before its counters say it ends')
    end
    for _, v in ipairs(more) do
      window[#window + 1] = v
      total = total + #v
    end
  end
  return total
end

-- The item of window holding byte `stop` (window[1] starting at base) and that byte's end
-- offset inside it.
local function locate(window, base, stop)
  local position = base
  for i, v in ipairs(window) do
    if position + #v >= stop then
      return i, stop - position
    end
    position = position + #v
  end
  drift('has no byte ' .. int(stop))
end

local function join(window, lo, last, hi)
  if last == 1 then
    return string.sub(window[1], lo + 1, hi)
  end
  local pieces = {string.sub(window[1], lo + 1)}
  for i = 2, last - 1 do
    pieces[#pieces + 1] = window[i]
  end
  pieces[#pieces + 1] = string.sub(window[last], 1, hi)
  return table.concat(pieces)
end

-- queue._take_head: whole items from the head and maybe a prefix of the next one.
local function take_head()
  local offset = meta.head_offset
  local need = offset + n
  local window = {}
  extend(window, 0, 0, need)
  local last, cut = locate(window, 0, need)
  local result = join(window, offset, last, cut)
  if consume then
    local whole = cut == #window[last]
    local finished = last - 1
    if whole then
      finished = last
    end
    if finished > 0 then
      redis.call('LTRIM', key, finished, -1)
    end
    meta.items = meta.items - finished
    if whole then
      meta.head_offset = 0
    else
      meta.head_offset = cut
    end
    count_consumed(finished, n)
  end
  return result
end

-- queue._skip_to: measure whole items up to the one holding Q[skip].
local function skip_to(position)
  local index = 1
  local mean = mean_item(meta)
  while true do
    local count = math.min(math.floor((skip - position) / mean) + 1,
                           math.max(index, MIN_ROUND), SKIP_ROUND)
    local chunk = redis.call('LRANGE', key, index, index + count - 1)
    if #chunk == 0 then
      drift('ends before byte ' .. int(skip) .. ', which its counters say it holds')
    end
    local start = position
    for i, v in ipairs(chunk) do
      if start + #v > skip then
        return index + i - 1, start
      end
      start = start + #v
    end
    index = index + #chunk
    mean = math.max(math.floor((start - position) / #chunk), 1)
    position = start
  end
end

-- queue._take_inside: Q[skip:skip+n] with skip > 0. Wholly covered items go (set to the
-- empty-string sentinel, then LREM: a pushed item is never empty); cut items are rewritten.
local function take_inside()
  local stop = skip + n
  local first = meta.head_offset
  local position = 0
  local index = 0
  local head = redis.call('LINDEX', key, 0)
  if not head then
    drift('is empty')
  end
  local head_size = #head - first
  local is_head = head_size > skip
  if not is_head then
    index, position = skip_to(head_size)
    first = 0
  end
  local base = position - first
  local window = redis.call('LRANGE', key, index, index)
  if #window == 0 then
    drift('has no item ' .. int(index))
  end
  extend(window, index, #window[1], stop - base)
  local lo = skip - base
  local last, hi = locate(window, base, stop)
  local result = join(window, lo, last, hi)
  if not consume then
    return result
  end
  local kept_first
  if last == 1 then
    kept_first = string.sub(window[1], first + 1, lo) .. string.sub(window[1], hi + 1)
  else
    kept_first = string.sub(window[1], first + 1, lo)
  end
  local deleted = {}
  for i = 2, last - 1 do
    deleted[#deleted + 1] = index + i - 1
  end
  local rewritten = {}
  if #kept_first > 0 then
    rewritten[#rewritten + 1] = {index, kept_first}
  else
    deleted[#deleted + 1] = index
  end
  if last > 1 then
    local kept_last = string.sub(window[last], hi + 1)
    if #kept_last > 0 then
      rewritten[#rewritten + 1] = {index + last - 1, kept_last}
    else
      deleted[#deleted + 1] = index + last - 1
    end
  end
  for _, pair in ipairs(rewritten) do
    redis.call('LSET', key, pair[1], pair[2])
  end
  for _, at in ipairs(deleted) do
    redis.call('LSET', key, at, '')
  end
  if #deleted > 0 then
    -- LREM stops once it has removed that many: it scans no further than the range
    redis.call('LREM', key, #deleted, '')
  end
  if is_head then
    meta.head_offset = 0
  end
  meta.items = meta.items - #deleted
  count_consumed(#deleted, n)
  return result
end

-- UsageRecord.add: totals, the hour's bucket, at most RECENT_HOURS buckets (the newest).
local function account(nbytes)
  local usage = KEYS[3]
  redis.call('HINCRBY', usage, 'bytes', int(nbytes))
  redis.call('HINCRBY', usage, 'requests', 1)
  local fresh = redis.call('HEXISTS', usage, 'b:' .. hour) == 0
  redis.call('HINCRBY', usage, 'b:' .. hour, int(nbytes))
  redis.call('HINCRBY', usage, 'r:' .. hour, 1)
  if not fresh then
    return
  end
  local starts = {}
  for _, field in ipairs(redis.call('HKEYS', usage)) do
    if string.sub(field, 1, 2) == 'b:' then
      starts[#starts + 1] = tonumber(string.sub(field, 3))
    end
  end
  if #starts <= RECENT_HOURS then
    return
  end
  table.sort(starts)
  for i = 1, #starts - RECENT_HOURS do
    redis.call('HDEL', usage, 'b:' .. int(starts[i]), 'r:' .. int(starts[i]))
  end
end

local available = meta.bytes
if skip + n > available then
  if not partial then
    return {1, int(available)}
  end
  n = available - skip
  if n <= 0 then
    return {0, ''}
  end
end
local result
if skip == 0 then
  result = take_head()
else
  result = take_inside()
end
if consume then
  save_meta(KEYS[2], meta)
end
if accounted and #result > 0 then
  account(#result)
end
return {0, result}
"""
)

LEASE: Final = """
-- KEYS: the lease; ARGV: holder, ttl in ms. Renew our own lease, or take a free one.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
"""

RELEASE: Final = """
-- KEYS: the lease; ARGV: holder. Delete it only if we hold it.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""
