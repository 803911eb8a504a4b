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
