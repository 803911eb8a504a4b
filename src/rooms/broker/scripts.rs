//! The Lua scripts that keep presence in Redis consistent: each changes the
//! cluster-wide count and this node's own share of it in one atomic step, so
//! a node that dies can be subtracted exactly (see docs/scale-out.md for the
//! key layout).
//!
//! They touch keys they build from the prefix (room keys), which standalone
//! Redis allows; Redis Cluster would need the keys declared and hash-tagged.

/// A connection of a user opens (+1) or closes (-1) on a node.
/// KEYS: uc (user → connections), ui (user → info JSON), nu (this node's
/// user → connections), cc (connections over the cluster). ARGV: user,
/// info, delta. Returns the user's connections over the cluster.
pub const CONNECT: &str = r#"
local d = tonumber(ARGV[3])
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], d)
if n <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
elseif d > 0 then
  redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])
end
local m = redis.call('HINCRBY', KEYS[3], ARGV[1], d)
if m <= 0 then redis.call('HDEL', KEYS[3], ARGV[1]) end
redis.call('INCRBY', KEYS[4], d)
return n
"#;

/// A connection joins (+1), leaves (-1) or asks (0) about a room.
/// KEYS: rc (room: user → connections), rm (room members, a sorted set by
/// id), nr (this node's "room\nuser" → connections). ARGV: user, delta,
/// the nr field. Returns {change, members}: change is 1 when the user just
/// became a member cluster-wide, -1 when it just stopped being one.
pub const MEMBER: &str = r#"
local d = tonumber(ARGV[2])
local change = 0
if d ~= 0 then
  local n = redis.call('HINCRBY', KEYS[1], ARGV[1], d)
  if n <= 0 then
    redis.call('HDEL', KEYS[1], ARGV[1])
    if redis.call('ZREM', KEYS[2], ARGV[1]) == 1 then change = -1 end
  elseif redis.call('ZADD', KEYS[2], 'NX', 0, ARGV[1]) == 1 then
    change = 1
  end
  local m = redis.call('HINCRBY', KEYS[3], ARGV[3], d)
  if m <= 0 then redis.call('HDEL', KEYS[3], ARGV[3]) end
end
return {change, redis.call('ZCARD', KEYS[2])}
"#;

/// One page of a room's members. KEYS: rm, ui. ARGV: cursor ('' for the
/// start), limit. Returns {count, more, ids, infos}.
pub const WHO: &str = r#"
local limit = tonumber(ARGV[2])
local count = redis.call('ZCARD', KEYS[1])
local min = '-'
if ARGV[1] ~= '' then min = '(' .. ARGV[1] end
local ids = redis.call('ZRANGEBYLEX', KEYS[1], min, '+', 'LIMIT', 0, limit + 1)
local more = 0
if #ids > limit then
  more = 1
  table.remove(ids)
end
local infos = {}
if #ids > 0 then infos = redis.call('HMGET', KEYS[2], unpack(ids)) end
return {count, more, ids, infos}
"#;

/// Sets a user's info (status) if the user is online. KEYS: ui. ARGV: user, info.
pub const STATUS: &str = r#"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
return 0
"#;

/// A private message: published when the user has a connection anywhere.
/// KEYS: uc, the user's shard channel. ARGV: user, payload. Returns the
/// user's connections over the cluster (0: offline, nothing published).
pub const PRIVATE: &str = r#"
local n = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if n > 0 then redis.call('PUBLISH', KEYS[2], ARGV[2]) end
return n
"#;

/// Removes a node's whole share of presence: for a dead node (ARGV[3] =
/// '1': only if its heartbeat key is gone) or for this node before a
/// resync. KEYS: nu, nr, uc, ui, nodes, alive. ARGV: prefix, node, check.
/// Returns {room, user, info, members, ...} of users who left a room
/// cluster-wide.
pub const CLEANUP: &str = r#"
if ARGV[3] == '1' and redis.call('EXISTS', KEYS[6]) == 1 then return {} end
local left = {}
local nr = redis.call('HGETALL', KEYS[2])
for i = 1, #nr, 2 do
  local f = nr[i]
  local c = tonumber(nr[i + 1])
  local sep = string.find(f, '\n', 1, true)
  if sep then
    local room = string.sub(f, 1, sep - 1)
    local user = string.sub(f, sep + 1)
    local rc = ARGV[1] .. ':rc:' .. room
    local rm = ARGV[1] .. ':rm:' .. room
    local n = redis.call('HINCRBY', rc, user, -c)
    if n <= 0 then
      redis.call('HDEL', rc, user)
      if redis.call('ZREM', rm, user) == 1 then
        table.insert(left, room)
        table.insert(left, user)
        table.insert(left, redis.call('HGET', KEYS[4], user) or '')
        table.insert(left, redis.call('ZCARD', rm))
      end
    end
  end
end
local nu = redis.call('HGETALL', KEYS[1])
for i = 1, #nu, 2 do
  redis.call('INCRBY', ARGV[1] .. ':cc:', -tonumber(nu[i + 1]))
  local n = redis.call('HINCRBY', KEYS[3], nu[i], -tonumber(nu[i + 1]))
  if n <= 0 then
    redis.call('HDEL', KEYS[3], nu[i])
    redis.call('HDEL', KEYS[4], nu[i])
  end
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SREM', KEYS[5], ARGV[2])
return left
"#;

/// A room message: numbered (the room's next offset, one counter per room
/// over the cluster), kept in the room's stream and published, in one
/// atomic step, so every node receives a room's messages in offset order.
/// KEYS: rh (room: epoch `e`, latest offset `o`), rs (the room's stream,
/// entry ids `0-<offset>`), the room's shard channel. ARGV: epoch for a
/// room Redis does not know, the event before its offset, the event after
/// its epoch, the payload's head, size (0: not kept), ttl ms (0: none).
/// Returns {offset, epoch}.
pub const MESSAGE: &str = r#"
local e = redis.call('HGET', KEYS[1], 'e')
if not e then
  e = ARGV[1]
  redis.call('HSET', KEYS[1], 'e', e)
end
local o = redis.call('HINCRBY', KEYS[1], 'o', 1)
local ev = ARGV[2] .. o .. ',"epoch":"' .. e .. '"' .. ARGV[3]
local size = tonumber(ARGV[5])
if size > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', size, '0-' .. o, 'e', ev)
end
local ttl = tonumber(ARGV[6])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  if size > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
end
redis.call('PUBLISH', KEYS[3], ARGV[4] .. ev)
return {o, e}
"#;

/// The room's position when a connection joins, and with `since` what it
/// missed, published to the joining node's own channel: the subscriber
/// receives it after every message numbered before it and before every
/// later one, which is what makes recovery exactly-once and in order.
/// KEYS: rh, rs, the node's channel. ARGV: epoch for a room Redis does not
/// know, the since epoch ('' for none), the since offset, most messages,
/// the payload's head, ttl ms. Publishes `status\nepoch\noffset[\nevent]*`
/// with status `none`, `ok`, `epoch_changed`, `too_old` or
/// `history_disabled`.
pub const RECOVER: &str = r#"
local e = redis.call('HGET', KEYS[1], 'e')
if not e then
  e = ARGV[1]
  redis.call('HSET', KEYS[1], 'e', e)
  local ttl = tonumber(ARGV[6])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
end
local o = tonumber(redis.call('HGET', KEYS[1], 'o') or '0')
local out = {'none', e, o}
if ARGV[2] ~= '' then
  local since = tonumber(ARGV[3])
  local missed = o - since
  if e ~= ARGV[2] or missed < 0 then
    out[1] = 'epoch_changed'
  elseif missed == 0 then
    out[1] = 'ok'
  elseif missed > tonumber(ARGV[4]) then
    out[1] = 'too_old'
  else
    local r = redis.call('XRANGE', KEYS[2], '0-' .. (since + 1), '+', 'COUNT', missed)
    if #r == 0 and redis.call('EXISTS', KEYS[2]) == 0 then
      out[1] = 'too_old'
    elseif #r ~= missed or r[1][1] ~= '0-' .. (since + 1) then
      out[1] = 'too_old'
    else
      out[1] = 'ok'
      for i = 1, #r do out[#out + 1] = r[i][2][2] end
    end
  end
end
redis.call('PUBLISH', KEYS[3], ARGV[5] .. table.concat(out, '\n'))
return 0
"#;

/// A page of a room's history. KEYS: rh, rs. ARGV: epoch for a room Redis
/// does not know, after (offset), count. Returns {epoch, offset, oldest,
/// events}.
pub const HISTORY: &str = r#"
local e = redis.call('HGET', KEYS[1], 'e')
if not e then
  e = ARGV[1]
  redis.call('HSET', KEYS[1], 'e', e)
end
local o = tonumber(redis.call('HGET', KEYS[1], 'o') or '0')
local oldest = o + 1
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if #first > 0 then oldest = tonumber(string.sub(first[1][1], 3)) end
local r = redis.call('XRANGE', KEYS[2], '(0-' .. ARGV[2], '+', 'COUNT', ARGV[3])
local ev = {}
for i = 1, #r do ev[i] = r[i][2][2] end
return {e, o, oldest, ev}
"#;
