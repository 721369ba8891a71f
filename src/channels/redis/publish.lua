-- Publish one publication to a channel, atomically (docs/redis.md, "Layout and guarantees").
-- KEYS[1] the channel's meta hash (epoch, top), KEYS[2] its history stream.
-- ARGV[1] HISTORY_SIZE, ARGV[2] HISTORY_TTL in ms, ARGV[3] the pub/sub topic,
-- ARGV[4] an epoch for a channel Redis does not hold, ARGV[5] the publication's body (JSON).
-- Returns { offset, epoch }.
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  -- Redis lost the channel (expired, evicted, flushed, restarted without persistence):
  -- a new epoch, with offsets from 1 and no history from before.
  epoch = ARGV[4]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local offset = redis.call('HINCRBY', KEYS[1], 'top', 1)
local id = string.format('%d', offset)
if tonumber(ARGV[1]) > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[1], id .. '-0', 'p', ARGV[5])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], id .. ' ' .. epoch .. ' ' .. ARGV[5])
return { offset, epoch }
