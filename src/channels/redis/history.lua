-- Read a channel's position, and the publications after a position (docs/redis.md).
-- KEYS[1] the channel's meta hash, KEYS[2] its history stream.
-- ARGV[1] HISTORY_TTL in ms, ARGV[2] an epoch for a channel Redis does not hold,
-- ARGV[3] the offset to read after ('' for the position only), ARGV[4] its epoch,
-- ARGV[5] whose position it is: '' a client's claim, 'delivered' one a server delivered
-- from this Redis, 'went-back' one after which a server's pub/sub brought an offset again.
-- Returns { epoch, top, entries } (entries as XRANGE gives them, oldest first). A read keeps
-- the meta (and so the epoch) alive: the position checks of a subscribed channel read it.
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local top = 0
if epoch then
  top = tonumber(redis.call('HGET', KEYS[1], 'top') or '0')
end
-- A delivered offset beyond the top, or an offset assigned twice, in the same epoch: Redis
-- lost writes it had answered (a failover to a replica that lagged, a crash between
-- fsyncs), and its publishes reuse offsets that clients already hold. The channel gets a
-- new epoch, as when Redis lost it whole, so that every client is told instead. A client's
-- claim never changes the channel.
local regressed = epoch and ARGV[4] == epoch
  and (ARGV[5] == 'went-back' or (ARGV[5] == 'delivered' and tonumber(ARGV[3]) > top))
if not epoch or regressed then
  epoch = ARGV[2]
  top = 0
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'top', 0)
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
local entries = {}
if ARGV[3] ~= '' and ARGV[4] == epoch and tonumber(ARGV[3]) < top then
  local first = string.format('%d', tonumber(ARGV[3]) + 1) .. '-0'
  entries = redis.call('XRANGE', KEYS[2], first, '+')
end
return { epoch, top, entries }
