//! The Redis Streams backend: several hub servers share history, replay and fan-out.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt};
use futures_util::stream::Stream;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{
    AsyncConnectionConfig, Client, FromRedisValue, RedisError, RedisResult, Script,
    ScriptInvocation, Value,
};
use slab::Slab;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::log::{Log, Read, until_idle};
use super::{
    Backend, DEFAULT_IDEMPOTENCY_WINDOW, Delivery, END_ID_SUFFIX, EVENT_OVERHEAD, Error, Gap,
    GapReason, GapResume, Health, HistoryLimits, Live, Opened, Publish, Published, ReplayOptions,
    Rest, Start, TopicInfo, TopicLimits,
};
use crate::Event;

/// The default prefix of the stream keys: topic `news` is the stream `tower-sse:news`.
pub const DEFAULT_KEY_PREFIX: &str = "tower-sse:";

/// How long the reader's `XREAD` blocks before it looks at its topics again.
const BLOCK: Duration = Duration::from_secs(1);
/// Entries one `XREAD` returns at most.
const READ_COUNT: usize = 1000;
/// Shortest pause between two reconnection attempts of the reader.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between two reconnection attempts of the reader.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long a connection attempt to Redis may take.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a command may wait for Redis's answer.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// A command connection that has not answered for this long is checked with a `PING` before a
/// command is sent on it: Redis's `timeout` (1 s at the least) or a NAT's idle timeout may have
/// closed it meanwhile, and a publish handed to a closed connection has an unknown outcome.
const IDLE_CHECK: Duration = Duration::from_millis(500);
/// How often the local logs drop what every subscriber has read (each delivery does too).
const SWEEP: Duration = Duration::from_secs(1);
/// The shortest interval between two renewals of the keys of the topics in use here.
const MIN_RENEW: Duration = Duration::from_millis(10);
/// Topics whose keys one renewal pipeline extends.
const RENEW_BATCH: usize = 500;
/// A local log keeps nothing for replay (Redis does): an entry stays only until every local
/// subscriber has read it, or until a subscriber that has not is more than its queue behind.
const LIVE_ONLY: HistoryLimits = HistoryLimits {
    max_events: 0,
    max_bytes: 0,
    max_age: Duration::ZERO,
    idempotency_window: DEFAULT_IDEMPOTENCY_WINDOW,
    max_idempotency_keys: 0,
};

/// Lua shared by the scripts. KEYS[1] is a topic's stream, KEYS[2] its metadata hash; ARGV[1]
/// to ARGV[4] are the history's count bound, the trim batch, the age bound in ms and the idle
/// TTL in ms (see [`Shared::run`]), a script's own arguments follow. The metadata hash has the
/// fields `b` (the instance's birth, see [`RedisBackend`]), `n` (entries ever added to the
/// instance: each entry carries its ordinal, so a reader can tell that it missed some), `s`
/// (encoded bytes of the events retained), `l` (the newest event's id) and, once the topic is
/// closed, `x` (the close marker's id) and `end` (the final event, stored without id).
///
/// Trimming deletes the oldest entries with `XDEL`, because Redis records what `XDEL` removes
/// in `XINFO STREAM`'s max-deleted-entry-id (and `XTRIM` does not), which is how a reconnect
/// after a trimmed id is told apart from one that missed nothing.
const LIB: &str = r"
local function split(id) return string.match(id, '^(%d+)-(%d+)$') end
local function cmpnum(a, b)
  if #a ~= #b then return #a < #b and -1 or 1 end
  if a == b then return 0 end
  return a < b and -1 or 1
end
-- Compares two stream ids exactly, as the decimal strings they are (a Lua number is a double).
local function cmp(a, b)
  local ams, aseq = split(a)
  local bms, bseq = split(b)
  local c = cmpnum(ams, bms)
  if c ~= 0 then return c end
  return cmpnum(aseq, bseq)
end
local function ms_of(id)
  local ms = split(id)
  return tonumber(ms)
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- An event's encoded size as the hub counts it: the stored body plus its 'id: ' line.
local function size(id, body) return #body + #id + 5 end
local function drop(key, meta, entries)
  local ids, bytes = {}, 0
  for i, entry in ipairs(entries) do
    ids[i] = entry[1]
    local fields = entry[2]
    for j = 1, #fields, 2 do
      if fields[j] == 'e' then bytes = bytes + size(entry[1], fields[j + 1]) end
    end
  end
  for i = 1, #ids, 500 do
    redis.call('XDEL', key, unpack(ids, i, math.min(i + 499, #ids)))
  end
  if bytes > 0 and redis.call('EXISTS', meta) == 1 then
    redis.call('HINCRBY', meta, 's', -bytes)
  end
end
local function trim(key, meta, maxlen, batch, minid_ms)
  if minid_ms > 0 then
    while true do
      local old = redis.call('XRANGE', key, '-', '(' .. string.format('%.0f', minid_ms) .. '-0',
        'COUNT', 1000)
      if #old == 0 then break end
      drop(key, meta, old)
      if #old < 1000 then break end
    end
  end
  local over = redis.call('XLEN', key) - maxlen
  if over >= batch then drop(key, meta, redis.call('XRANGE', key, '-', '+', 'COUNT', over)) end
end
-- The birth of the topic's instance, or nil when the topic does not exist. A stream without
-- metadata (written by an earlier version) is an instance born at 0-0.
local function birth_of(key, meta)
  local b = redis.call('HGET', meta, 'b')
  if b then return b end
  if redis.call('EXISTS', key) == 1 then return '0-0' end
  return nil
end
-- Makes sure the topic exists; returns the id its next entry is to be added with. A new
-- instance is born now, on the Redis server's clock, and its first entry comes right after.
local function create(key, meta)
  if redis.call('EXISTS', meta) == 1 then return '*' end
  if redis.call('EXISTS', key) == 1 then
    redis.call('HSET', meta, 'b', '0-0')
    return '*'
  end
  local ms = string.format('%.0f', now_ms())
  redis.call('HSET', meta, 'b', ms .. '-0')
  return ms .. '-1'
end
local function expire(key, meta)
  redis.call('PEXPIRE', key, ARGV[4])
  redis.call('PEXPIRE', meta, ARGV[4])
end
-- Trims by count (once a batch over) and by age: what is older than `ms` minus the age bound.
local function bound(key, meta, ms)
  trim(key, meta, tonumber(ARGV[1]), tonumber(ARGV[2]), ms - tonumber(ARGV[3]))
end
";

/// Appends an event with its ordinal, trims by count (once a batch over) and by age (measured
/// on the Redis server's clock from the id it just gave), and renews the topic's expiry.
/// ARGV[5]: the encoded event. With an idempotency key, KEYS[3] is its record (see
/// [`Shared::key_record`]) and ARGV[6] the window in ms: a record holds the id and the SHA-1 of
/// the event it was first published with, and a key that has one stores nothing (before the
/// closed check: a retry of a publish that was stored before the close is a duplicate).
/// Returns { 'stored', id }, { 'duplicate', the first id }, { 'reused', '' } (the key's record
/// is of another event) or { 'closed', '' }.
const PUBLISH: &str = r"
local key, meta, record = KEYS[1], KEYS[2], KEYS[3]
local print = ''
if record then
  print = redis.sha1hex(ARGV[5])
  local seen = redis.call('GET', record)
  if seen then
    local first_id, first_print = string.match(seen, '^(%S+) (%x+)$')
    if first_id and first_print == print then return { 'duplicate', first_id } end
    return { 'reused', '' }
  end
end
local first = create(key, meta)
if redis.call('HEXISTS', meta, 'x') == 1 then return { 'closed', '' } end
local n = redis.call('HINCRBY', meta, 'n', 1)
local id = redis.call('XADD', key, first, 'e', ARGV[5], 'n', n)
redis.call('HSET', meta, 'l', id)
redis.call('HINCRBY', meta, 's', size(id, ARGV[5]))
bound(key, meta, ms_of(id))
expire(key, meta)
if record then redis.call('SET', record, id .. ' ' .. print, 'PX', ARGV[6]) end
return { 'stored', id }
";

/// Closes a topic: appends the close marker (field `end` instead of `e`) with its ordinal,
/// records it in the metadata, trims and renews the expiry as a publish does. ARGV[5]: the
/// encoded final event. Returns `{ marker id, final event }`, the existing ones when the topic
/// was closed already.
const CLOSE: &str = r"
local key, meta = KEYS[1], KEYS[2]
local first = create(key, meta)
local closed = redis.call('HMGET', meta, 'x', 'end')
if closed[1] then return closed end
local n = redis.call('HINCRBY', meta, 'n', 1)
local id = redis.call('XADD', key, first, 'end', ARGV[5], 'n', n)
redis.call('HSET', meta, 'x', id, 'end', ARGV[5])
bound(key, meta, ms_of(id))
expire(key, meta)
return { id, ARGV[5] }
";

/// Opens a subscription atomically: drops entries older than the age bound, renews the
/// topic's expiry (someone listens: the topic is not idle; nothing is created when it does not
/// exist), tells whether the client's id can be resumed from, and reads the replay.
///
/// ARGV[5..]: after (a stream id, or '' for none), replay count, resume mode ('oldest' or
/// 'live'), '1' when the client's id was malformed, '1' to start with the oldest retained
/// entry. Returns { last-generated-id, max-deleted-entry-id,
/// gap reason or '', entries, ordinal of the last entry, birth or '', newest event's id or '',
/// close marker's id or '', final event or '' }.
const OPEN: &str = r"
local key, meta = KEYS[1], KEYS[2]
local after, count, mode, malformed, oldest = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local birth = birth_of(key, meta)
local exists = redis.call('EXISTS', key) == 1
local last, deleted = '0-0', '0-0'
expire(key, meta)
if exists then
  bound(key, meta, now_ms())
  local info = redis.call('XINFO', 'STREAM', key)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then last = info[i + 1] end
    if info[i] == 'max-deleted-entry-id' then deleted = info[i + 1] end
  end
end
local reason = ''
if malformed == '1' then
  reason = 'malformed'
elseif after ~= '' then
  if not birth or cmp(after, birth) < 0 then reason = 'foreign'
  elseif cmp(after, last) > 0 then reason = 'unknown'
  elseif cmp(after, deleted) < 0 then reason = 'evicted'
  elseif after ~= birth and after ~= deleted
      and #redis.call('XRANGE', key, after, after) == 0 then reason = 'foreign'
  end
end
local start = nil
if reason ~= '' then
  if mode == 'oldest' then start = '-' end
elseif after ~= '' then
  start = '(' .. after
elseif oldest == '1' then
  start = '-'
end
local entries = {}
if start and exists then entries = redis.call('XRANGE', key, start, '+', 'COUNT', count) end
local m = redis.call('HMGET', meta, 'n', 'l', 'x', 'end')
return { last, deleted, reason, entries, tonumber(m[1] or '0'), birth or '', m[2] or '',
  m[3] or '', m[4] or '' }
";

/// What a topic holds, after trimming by age. Returns false when the topic does not exist, else { events retained, their bytes, newest
/// event's id or '', close marker's id or '' }.
const INFO: &str = r"
local key, meta = KEYS[1], KEYS[2]
local exists = redis.call('EXISTS', key) == 1
if not exists and redis.call('EXISTS', meta) == 0 then return false end
local len = 0
if exists then
  bound(key, meta, now_ms())
  len = redis.call('XLEN', key)
end
local m = redis.call('HMGET', meta, 's', 'l', 'x')
if exists and m[3] and #redis.call('XRANGE', key, m[3], m[3]) > 0 then len = len - 1 end
return { len, tonumber(m[1] or '0'), m[2] or '', m[3] or '' }
";

/// A Redis stream entry id, `MS-SEQ`; the event id clients see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
struct StreamId {
    ms: u64,
    seq: u64,
}

impl StreamId {
    fn parse(id: &str) -> Option<StreamId> {
        let (ms, seq) = id.split_once('-')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return None;
        }
        Some(StreamId {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }

    /// `Some` unless this is `0-0`, which the scripts give for "none".
    fn nonzero(self) -> Option<StreamId> {
        (self != StreamId::default()).then_some(self)
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// The id of the final event whose close marker has stream id `marker`.
fn end_id(marker: &str) -> String {
    format!("{marker}{END_ID_SUFFIX}")
}

/// History and fan-out in Redis Streams, shared by every hub server on the same Redis.
///
/// - **Keys.** Topic `t` is the stream `{prefix}t` and the hash `{prefix}t#m` (its metadata:
///   the instance's birth, the entries ever added, the retained bytes, the newest event's id,
///   and once closed the final event). Both are created by the first publish (or close), and
///   both get a `PEXPIRE` of [`TopicLimits::idle_ttl`], renewed by every publish, close and
///   subscription ([`open`](Backend::open), in its script): a topic nobody publishes to or
///   subscribes to is dropped whole by Redis. While this process has subscribers for a topic
///   (or waits in [`wait_idle`](Backend::wait_idle) on it), it renews the topic's keys every
///   third of the TTL, so a topic someone listens to is never idle; after the last one leaves,
///   the keys go within the TTL.
/// - **Ids and instances.** An event's id is its stream entry id, `MS-SEQ`, the same on every
///   server. A topic's instance (from its first publish until its keys expire) records its
///   birth, `MS-0` on the Redis server's clock when it was created, and its first entry gets
///   `MS-1`, so every id of the instance is above its birth and `MS-0` is the position before
///   its first event. An id below the birth is from an earlier instance (expired, or closed and
///   expired) or from another topic: a `gap` event, reason `foreign`. This holds as long as the
///   Redis server's clock does not go back between two instances of a topic. Stream ids are
///   unique within a stream, not across streams, so an id from another topic is recognised as
///   `foreign` when it is below the birth, or above the newest id this topic trimmed and at
///   most its newest id while none of its entries. Nothing tells one at or below the newest
///   trimmed id from an id of this topic that was trimmed (`evicted`), nor one above the
///   newest id from an id not issued yet (`unknown`); and one that is also an entry of this
///   topic (two streams can add the same id in the same millisecond) is taken as that entry.
///   A stream without metadata, written by an earlier version, is adopted as born at `0-0`.
/// - **Close.** [`close`](Backend::close) appends a close marker entry carrying the final event
///   (stored without id, like events) and records it in the metadata, atomically in a script;
///   from then on publishing fails with [`Error::closed`]. The final event's id is the marker's
///   stream id followed by [`END_ID_SUFFIX`]. Every server's reader that reads the marker ends
///   its local subscribers of the topic with the final event; a subscriber that opens later
///   gets what is retained after its start, then the final event (the metadata keeps it even
///   once the marker is trimmed), until the topic's keys expire.
/// - **Publish** runs `XADD` and trims by count and age in one script, so nothing is
///   half-done. Trimming deletes the oldest entries with `XDEL` once the stream is a batch (a
///   tenth of the count bound, at most 100) over its bound, rather than with `XTRIM`: Redis
///   records what `XDEL` removes, so a reconnect after a trimmed id is answered with a `gap`
///   event, never with a silently partial replay.
/// - **Idempotency keys** are checked and recorded in the same script: a key's record is the
///   key `{prefix}{topic}#i:{key}`, holding the id and a SHA-1 of the event it was first
///   published with, set with a `PX` of [`HistoryLimits::idempotency_window`]. Two publishes
///   with one key, on any servers, store once: the second gets the first's id
///   ([`Published::duplicate`]), or [`Error::key_reused`] for a different event. Records do not
///   count towards [`HistoryLimits::max_idempotency_keys`] (a bound of the in-memory backend):
///   Redis's `maxmemory` bounds them. Unlike the in-memory backend's, a record can outlive its
///   topic: should the topic expire (its [`TopicLimits::idle_ttl`] shorter than the window), a
///   retry with the key within the window answers the old instance's id, which a client that
///   resumes from it finds `foreign` (a `gap`), rather than storing the event in the new
///   instance. Keep the window shorter than the idle TTL if that matters.
/// - **Fan-out.** Each process reads new entries of the topics it has subscribers for with one
///   blocking `XREAD` on one dedicated connection, and pushes them into a small log per topic
///   that is also its live queue (as in the in-memory backend): each local subscriber is a
///   position in it, an entry stays until every local subscriber has read it (it goes at the
///   next delivery, or within a second), and a subscriber more than its queue behind, or
///   holding the oldest entries when the logs reach their byte bound (below), is
///   disconnected with a `retry:` hint. A topic here costs a small constant plus the entries
///   not yet read by everyone; a subscriber, its position.
///   Commands share one more, multiplexed, connection: two connections per process in all.
///   Should entries be trimmed before this process has read them, the topic's local
///   subscribers are ended so that they reconnect and are told of the gap.
/// - **Replay** is `XRANGE` strictly after the client's id, capped; an id older than what the
///   stream retains (per `XINFO STREAM`'s max-deleted-entry-id), ahead of it, not a stream id,
///   or foreign (above) gets the `gap` event, as in memory.
/// - **Outages.** While Redis is unreachable, and this process knows it (a command or its
///   reader failed: [`Backend::health`] says so), a command is sent only once a `PING` has
///   shown that the command connection answers: `publish` fails with [`Error::unavailable`]
///   and nothing is stored. A publish that may have reached Redis and got no answer (Redis
///   frozen, a response timeout of 2 s, a connection that dropped once the publish was handed
///   to it: nothing tells whether it was written before Redis went) may have been stored, or
///   may be stored once Redis runs again: it fails with [`Error::outcome_unknown`], and a
///   retry with the same idempotency key is safe. Open streams stay up, and once Redis is back
///   the reader continues each topic from the last entry it delivered, so every entry Redis
///   accepted reaches every subscriber. The reader always has a read pending on Redis (with no
///   topic to read, a blocking `XREAD` on the key `{prefix}#idle`, which nothing writes), so
///   this process notices as soon as Redis closes its connections (killed, restarted), with
///   nobody subscribed too: from then on the health says so, and commands check the command
///   connection before they are sent (a publish that is not sent: [`Error::unavailable`]). Only
///   a command handed to the closed connection in the instant before the reader saw it close
///   misses a quick restart. The reader's reconnection backs off up to 5 s, cut short once a
///   command finds Redis back; once it reconnects, it brings the command connection back too.
///   The health and the logs tell the state. The health says whether Redis is reachable and
///   answering: it turns unavailable when a command or the reader cannot reach Redis or gets
///   no answer in time (within about 3 s of Redis freezing, on an idle node too), and ok again
///   only once the command connection answers, so that once Redis answers again, the next
///   command succeeds. An error reply (`OOM`, `READONLY`, `NOPERM`, …) proves that Redis
///   answers: the command fails with [`Error::unavailable`] (its message names the class of the
///   refusal, never Redis's text), it is logged and counted in the metrics, and the health
///   stays ok. A command connection that has not answered for half a second is checked with a
///   `PING` before a command is sent on it, so that one Redis (its `timeout`) or a NAT closed
///   while idle is found and replaced before a publish is handed to it: the publish is then
///   sent on a new connection, or fails with [`Error::unavailable`] (not stored). A close that
///   may have run and got no answer is [`Error::outcome_unknown`] too: closing again is safe.
///   A command is sent again, once,
///   when its error proves that it was not sent (a refused connection), or when its
///   connection was closed or reset (Redis restarted before this process noticed) and running
///   it twice does no harm: reads, closes, renewals and publishes with an idempotency key (a
///   keyed publish that ran the first time then answers as a
///   [duplicate](Published::is_duplicate), with its id). Never after a timeout, nor a publish
///   without a key after a dropped connection: it is [`Error::outcome_unknown`]. Errors given
///   to clients, and the health's reason, never carry Redis's text; it is their source, for
///   logs.
/// - **Redis user.** The commands need, on the keys under the prefix: `+@read +@write
///   +@scripting` (the scripts, the reads), `+ping` (connection checks), `+time` (the scripts
///   read Redis's clock) and `+client|id +client|unblock` (to wake the reader when a topic is
///   added). The least-privilege ACL, for the default prefix:
///   `ACL SETUSER hub on >secret ~tower-sse:* +@read +@write +@scripting +ping +time +client|id
///   +client|unblock`. Without the two `CLIENT` commands the backend works, and a new topic's
///   first events wait up to a second (the reader's block time); the refusal is logged once.
///
/// Bounds: the history's count and age bounds ([`HistoryLimits::max_events`],
/// [`HistoryLimits::max_age`]) apply per topic in Redis; its byte bound
/// ([`HistoryLimits::max_bytes`]) does not: Redis bounds by count and age (and by its own
/// `maxmemory`). [`TopicLimits::max_history_bytes`] bounds what this process holds: the
/// entries of all its local logs together, each counted as its encoded size plus
/// [`EVENT_OVERHEAD`] (see [`local_bytes`](RedisBackend::local_bytes)). When a delivery would
/// take them past it, the entries every local subscriber has read go first; then the local
/// subscribers that hold the oldest entries, oldest first, are cut off ([`Delivery::Lagged`]:
/// a `retry:` hint; they catch up by replay from Redis) and what only they held goes, until
/// the entry fits. An event larger than the bound ends its topic's local subscribers, who get
/// it by replay. What one `XREAD` brings (up to 1000 entries per topic) is in the log before
/// anyone reads it, so the bound should be large beside such a batch: otherwise subscribers
/// that keep up are cut too. [`TopicLimits::max_topics`]
/// bounds the topics this process reads (those it has local subscribers or waiters for); a
/// subscription to one more is refused with [`Error::too_many_topics`] (a `retry:` hint).
/// [`topic_info`](Backend::topic_info) and [`wait_idle`](Backend::wait_idle) count this
/// process's subscribers only.
pub struct RedisBackend {
    shared: Arc<Shared>,
}

struct Shared {
    client: Client,
    manager: ConnectionManager,
    prefix: String,
    limits: HistoryLimits,
    topics: TopicLimits,
    queue: usize,
    publish: Script,
    close: Script,
    open: Script,
    info: Script,
    /// The topics this process reads. Lock order: `feeds`, then a topic's state. `retired` and
    /// a second topic's state are only ever locked with `feeds` held (in
    /// [`Shared::make_room`], which holds one topic's state meanwhile), so no two threads
    /// take them at once.
    feeds: Mutex<HashMap<Arc<str>, Arc<LocalTopic>>>,
    /// Closed topics replaced in `feeds` whose subscribers have not all finished: their logs
    /// still hold entries, so the sweep and the byte bound look at them too.
    retired: Mutex<Vec<Weak<LocalTopic>>>,
    /// Bytes held by every local log, counted as [`TopicLimits::max_history_bytes`] counts
    /// them (each entry's encoded size plus [`EVENT_OVERHEAD`]); never more than that bound.
    held: Arc<AtomicUsize>,
    /// Woken when a topic is added to the reader's set, and when a command finds Redis
    /// reachable again after a failure: a reader waiting to reconnect then tries at once.
    changed: Arc<Notify>,
    /// The reader connection's `CLIENT ID`, to interrupt its blocking `XREAD`.
    reader_id: Mutex<Option<i64>>,
    /// The last failure to reach Redis, until an operation succeeds again: what the health
    /// says, in words that never carry Redis's text.
    error: Mutex<Option<String>>,
    /// When the command connection last answered; `None` before its first answer.
    answered: Mutex<Option<Instant>>,
    /// Whether a refused `CLIENT ID` or `CLIENT UNBLOCK` (an ACL without them) was logged.
    client_refused: AtomicBool,
}

/// A topic this process has subscribers (or waiters) for.
struct LocalTopic {
    name: Arc<str>,
    state: Mutex<Feed>,
}

struct Feed {
    /// The entries read and not yet read by every local subscriber; each subscriber is a
    /// reader of it. Closed once the close marker is read.
    log: Log,
    /// The last entry read into `log` (or from which to start reading); `None` until the first
    /// subscription has read its snapshot.
    position: Option<StreamId>,
    /// The ordinal of the entry at `position`: the next one read must be one more, or entries
    /// were trimmed before this process read them.
    ordinal: u64,
    /// Counts the times every reader was cut off because entries were missed: a reader that
    /// finds itself cut in a later generation than its own lost its feed (it is not lagged).
    generation: u64,
    /// Created for `wait_idle`: the subscriber count, as it changes.
    listeners: Option<watch::Sender<usize>>,
    /// Each local subscriber's place in `log`, as the byte bound needs it.
    slots: Slab<Slot>,
    /// The backend's count of held bytes, and this log's share of it.
    held: Arc<AtomicUsize>,
    charged: usize,
}

/// A local subscriber, as the bound on held bytes sees it.
struct Slot {
    /// Its key in the log, until it is shed.
    key: usize,
    /// The sequence number of the next event it reads (the log's count, kept here as it
    /// reads); [`u64::MAX`] once it holds nothing any more (finished, cut off or shed).
    next: u64,
    /// Cut off to free what it held: removed from the log, it gets `Lagged` next.
    shed: bool,
}

impl Feed {
    /// A feed whose subscribers may fall `queue` events behind, whose bytes count in `held`.
    fn new(queue: usize, listeners: Option<watch::Sender<usize>>, held: Arc<AtomicUsize>) -> Feed {
        Feed {
            log: Log::new(1, queue),
            position: None,
            ordinal: 0,
            generation: 0,
            listeners,
            slots: Slab::new(),
            held,
            charged: 0,
        }
    }

    /// Brings this log's share of the held bytes up to date after entries left it: its
    /// entries and, once closed, its final event, each with [`EVENT_OVERHEAD`] (as the
    /// in-memory backend counts them).
    fn settle(&mut self) {
        let end = self.log.end().map_or(0, |end| end.len() + EVENT_OVERHEAD);
        let now = self.log.bytes() + self.log.len() * EVENT_OVERHEAD + end;
        if now < self.charged {
            self.held.fetch_sub(self.charged - now, Ordering::AcqRel);
        } else if now > self.charged {
            self.held.fetch_add(now - self.charged, Ordering::AcqRel);
        }
        self.charged = now;
    }

    /// Drops what every local subscriber has read.
    fn evict(&mut self, now: Instant) {
        self.log.evict(&LIVE_ONLY, now);
        self.settle();
    }

    /// Appends `event`, whose `cost` the caller has charged to the held bytes.
    fn push(&mut self, event: Event, cost: usize, now: Instant) {
        self.log.push(event, now);
        self.charged += cost;
    }

    /// Closes the log with `end`, whose `cost` the caller has charged to the held bytes.
    fn close(&mut self, end: Event, cost: usize) {
        self.log.close(end);
        self.charged += cost;
    }

    /// Sheds the subscribers that `which` picks: each gets `Lagged` next, and what only they
    /// had yet to read goes. Returns how many were shed.
    fn shed(&mut self, now: Instant, which: impl Fn(&Slot) -> bool) -> usize {
        let mut shed = 0;
        for (_, slot) in &mut self.slots {
            if !slot.shed && which(slot) {
                self.log.remove_reader(slot.key);
                slot.shed = true;
                slot.next = u64::MAX;
                shed += 1;
            }
        }
        // A subscriber that holds entries has been woken since its last `Pending` (by the
        // push of the first of them), so it polls again without a wake from here.
        if shed > 0 {
            self.readers_changed();
        }
        self.evict(now);
        shed
    }

    /// Sheds the subscribers that hold the oldest entry. Returns how many were shed and
    /// whether anything was freed.
    fn shed_oldest(&mut self, now: Instant) -> (usize, bool) {
        let (first, before) = (self.log.first_seq(), self.charged);
        let shed = self.shed(now, |slot| slot.next <= first);
        (shed, shed > 0 || self.charged < before)
    }

    fn has_listeners(&self) -> bool {
        self.listeners
            .as_ref()
            .is_some_and(|tx| tx.receiver_count() > 0)
    }

    /// Nobody here subscribes or waits: the topic is no longer read.
    fn is_unused(&self) -> bool {
        self.log.readers() == 0 && !self.has_listeners()
    }

    fn readers_changed(&self) {
        if let Some(tx) = &self.listeners {
            tx.send_replace(self.log.readers());
        }
    }

    /// Ends every subscriber's live part: each reconnects and replays.
    fn cut(&mut self) {
        self.generation += 1;
        self.log.cut_all();
        for (_, slot) in &mut self.slots {
            slot.next = u64::MAX;
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.held.fetch_sub(self.charged, Ordering::AcqRel);
    }
}

/// What a command that failed may have done, as its caller tells [`Shared::command`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    /// A read, or a write that changes nothing more when it runs twice (a close, a renewal): a
    /// failure is [`Error::unavailable`], whether or not it ran, and a command whose
    /// connection dropped is sent again, once.
    Repeatable,
    /// A write that does what it does once however often it runs (a close): as
    /// [`Effect::Repeatable`], but a failure that does not prove it unrun is
    /// [`Error::outcome_unknown`] (it may have been done; retrying is safe).
    Idempotent,
    /// A publish without an idempotency key: a failure that does not prove it unrun is
    /// [`Error::outcome_unknown`], and it is never sent again.
    Append,
    /// A publish with an idempotency key: stored once however often it runs, so a publish
    /// whose connection dropped is sent again, once; should that fail too, the outcome is
    /// unknown (the first may have run).
    KeyedAppend,
}

/// Whether `err` proves that Redis did not run the command: the connection was refused (a
/// refusal only ever answers a connection attempt), or Redis answered with an error (`OOM`,
/// `BUSY`, `NOPERM`, …: refused, not run). A timeout, or a connection that dropped, may come
/// after the command was written, and it may have run.
fn never_run(err: &RedisError) -> bool {
    err.is_connection_refusal() || err.code().is_some()
}

/// Whether a command that failed with `err` is sent once more: when it was not sent (a refused
/// connection), or when its connection is gone (closed, reset: the connection manager makes a
/// new one) and running it twice does no harm. Never after a timeout: Redis may still run the
/// first, and a second would only wait as long again.
fn send_again(err: &RedisError, effect: Effect) -> bool {
    err.is_connection_refusal() || (effect != Effect::Append && err.is_connection_dropped())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks leaves the state consistent, so a panic elsewhere while
    // one was held does not make it unusable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `d` in whole milliseconds, within what Redis takes for an expiry or an age.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis())
        .unwrap_or(u64::MAX)
        .min(i64::MAX as u64 / 2)
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("prefix", &self.shared.prefix)
            .field("limits", &self.shared.limits)
            .field("topics", &self.shared.topics)
            .field("queue", &self.shared.queue)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// Bytes held now by this process's local logs (the entries some local subscriber has
    /// yet to read, and those read since the last delivery or sweep), each counted as its
    /// encoded size plus [`EVENT_OVERHEAD`]: never more than
    /// [`TopicLimits::max_history_bytes`].
    pub fn local_bytes(&self) -> usize {
        self.shared.held.load(Ordering::Relaxed)
    }

    /// A backend on the Redis server at `url` (`redis://host:port/db`), with streams named
    /// `prefix` + topic, the count and age bounds of `limits`, the idle TTL and the bounds of
    /// `topics` on what this process reads and holds, and `queue` as each subscriber's lag
    /// bound (clamped to 1..=1 048 576). It connects lazily: Redis need not be up yet. Must be
    /// called within a Tokio runtime (it starts its reader and its key keeper).
    ///
    /// # Errors
    ///
    /// When `url` is not a Redis URL.
    pub fn new(
        url: &str,
        prefix: &str,
        limits: HistoryLimits,
        topics: TopicLimits,
        queue: usize,
    ) -> Result<RedisBackend, Error> {
        let client = Client::open(url)
            .map_err(|err| Error::config(format!("invalid Redis URL {url:?}: {err}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECTION_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|err| Error::config(format!("Redis client: {err}")))?;
        let script = |body: &str| Script::new(&format!("{LIB}{body}"));
        let shared = Arc::new(Shared {
            client,
            manager,
            prefix: prefix.to_owned(),
            limits,
            topics,
            queue: queue.clamp(1, 1 << 20),
            publish: script(PUBLISH),
            close: script(CLOSE),
            open: script(OPEN),
            info: script(INFO),
            feeds: Mutex::new(HashMap::new()),
            retired: Mutex::new(Vec::new()),
            held: Arc::new(AtomicUsize::new(0)),
            changed: Arc::new(Notify::new()),
            reader_id: Mutex::new(None),
            error: Mutex::new(None),
            answered: Mutex::new(None),
            client_refused: AtomicBool::new(false),
        });
        tokio::spawn(read_loop(Arc::downgrade(&shared)));
        tokio::spawn(keep(Arc::downgrade(&shared)));
        Ok(RedisBackend { shared })
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Nobody reads for the local subscribers any more: they reconnect (to another server).
        for topic in lock(&self.feeds).values() {
            lock(&topic.state).cut();
        }
    }
}

/// The open script's reply.
struct OpenReply {
    /// The stream's last generated id (`0-0` when there is no stream).
    last: StreamId,
    /// The largest id ever deleted from it (`0-0` when none was).
    deleted: StreamId,
    reason: Option<GapReason>,
    entries: Vec<Value>,
    /// The ordinal of the entry at `last`.
    ordinal: u64,
    /// The instance's birth; `None` when the topic does not exist.
    birth: Option<StreamId>,
    /// The newest event's id, when known.
    newest: Option<String>,
    /// The final event, when the topic is closed.
    end: Option<Event>,
}

impl OpenReply {
    /// The `gap` for the reply's reason, if any: where the stream continues, by an id that
    /// resumes exactly there.
    fn gap(&self, resume: GapResume) -> Option<Gap> {
        let reason = self.reason?;
        let mut gap = Gap::new(reason, resume);
        if let Some(birth) = self.birth {
            let before = match resume {
                GapResume::Oldest => self.deleted,
                GapResume::Live => self.last,
            };
            gap = gap.resume_after(before.max(birth).to_string());
        }
        if let Some(newest) = &self.newest {
            gap = gap.last_id(newest);
        }
        Some(gap)
    }
}

impl Shared {
    fn key(&self, topic: &str) -> String {
        format!("{}{topic}", self.prefix)
    }

    /// The key the reader blocks on while it has no topic to read: nothing ever writes it
    /// (`#` is never in a topic name, so no topic's keys are ever this one).
    fn idle_key(&self) -> String {
        format!("{}#idle", self.prefix)
    }

    /// The topic's metadata hash (`#` is never in a topic name).
    fn meta_key(&self, topic: &str) -> String {
        format!("{}{topic}#m", self.prefix)
    }

    /// How far over its count bound a stream may grow before it is trimmed back, so trimming
    /// is a batch every so many publishes rather than a deletion on each.
    fn trim_batch(&self) -> usize {
        (self.limits.max_events / 10).clamp(1, 100)
    }

    fn age_ms(&self) -> u64 {
        millis(self.limits.max_age)
    }

    fn ttl_ms(&self) -> u64 {
        millis(self.topics.idle_ttl).max(1)
    }

    /// The error for a failed Redis call that did nothing: [`Error::unavailable`], with the
    /// class of the refusal when Redis answered with an error. A failure to reach Redis shows
    /// in the health too.
    fn failed(&self, what: &str, err: RedisError) -> Error {
        if err.code() == Some("WRONGTYPE") {
            return self.internal(what, err);
        }
        self.note(what, &err);
        match err.code() {
            Some(code) => Error::refused(refusal(code), err),
            None => Error::unavailable(err),
        }
    }

    /// The error for a failed Redis call, `kind` unless no retrying will help; a failure to
    /// reach Redis shows in the health too.
    fn failed_as(&self, what: &str, err: RedisError, kind: fn(RedisError) -> Error) -> Error {
        if err.code() == Some("WRONGTYPE") {
            return self.internal(what, err);
        }
        self.note(what, &err);
        kind(err)
    }

    /// A key of ours holds something else: no retrying will help.
    fn internal(&self, what: &str, err: RedisError) -> Error {
        tracing::error!("Redis {what} failed: {err}");
        Error::internal(err)
    }

    /// Logs a failure, and records it for the health when it shows that Redis cannot be
    /// reached or used. An error reply (`OOM`, `READONLY`, `NOPERM`, `BUSY`…) proves that Redis
    /// answers: the health, which tells whether Redis is reachable and answering, stays as it
    /// is, and the error goes to the logs and the metrics. A refused login is an outage: no
    /// command can run. The health's words never carry Redis's text (the log does).
    fn note(&self, what: &str, err: &RedisError) {
        if let Some(code) = err.code()
            && !matches!(code, "NOAUTH" | "WRONGPASS" | "LOADING")
        {
            tracing::warn!("Redis {what} refused: {err}");
            return;
        }
        let mut error = lock(&self.error);
        if error.is_none() {
            tracing::warn!("Redis {what} failed: {err}");
        } else {
            tracing::debug!("Redis {what} failed: {err}");
        }
        *error = Some(format!("Redis {what} failed: {}", cause(err)));
    }

    /// The command connection answered.
    fn answered(&self) {
        *lock(&self.answered) = Some(Instant::now());
    }

    fn succeeded(&self) {
        self.answered();
        let mut error = lock(&self.error);
        if error.take().is_some() {
            tracing::info!("Redis is reachable again");
            self.changed.notify_one();
        }
    }

    /// Runs `script` (one of [`LIB`]'s) on `topic`'s keys with the common arguments, then
    /// those `args` adds.
    async fn run<T: FromRedisValue + Send>(
        &self,
        what: &str,
        effect: Effect,
        script: &Script,
        topic: &str,
        args: impl FnOnce(&mut ScriptInvocation<'_>),
    ) -> Result<T, Error> {
        let mut invocation = script.key(self.key(topic));
        invocation
            .key(self.meta_key(topic))
            .arg(self.limits.max_events)
            .arg(self.trim_batch())
            .arg(self.age_ms())
            .arg(self.ttl_ms());
        args(&mut invocation);
        let invocation = &invocation;
        self.command(what, effect, |mut conn| {
            async move { invocation.invoke_async(&mut conn).await }.boxed()
        })
        .await
    }

    /// Runs one command (a script, or a pipeline) on the command connection: `send` sends it
    /// on the connection it is given.
    ///
    /// The connection manager replaces a failed connection in the background, and keeps the
    /// outcome until a command asks for the connection, a failure too: after an outage, the
    /// next command would get the failed reconnection (or the connection Redis closed) although
    /// Redis answers again. So while a failure is on record (the health says so), the command
    /// is sent only once [`Shared::probe`] has seen the connection answer; when it does not,
    /// the command was not sent. A command refused a connection (a reconnection that failed
    /// while it waited for it) is sent once more, on the connection the manager makes then: a
    /// refusal only ever answers a connection attempt, so the command was not sent. So is one
    /// whose connection was closed or reset (Redis restarted before this process noticed, say)
    /// when it does no harm run twice: every effect but [`Effect::Append`]. Nothing is sent
    /// again after a timeout, and a publish without a key never after a connection that
    /// dropped: it may have been run. Such a failure of a publish, or any failure of a keyed
    /// one that was sent again, is [`Error::outcome_unknown`]; every other failure is
    /// [`Error::unavailable`].
    async fn command<'a, T>(
        &self,
        what: &str,
        effect: Effect,
        send: impl Fn(ConnectionManager) -> BoxFuture<'a, RedisResult<T>>,
    ) -> Result<T, Error> {
        let idle = lock(&self.answered).is_none_or(|at| at.elapsed() >= IDLE_CHECK);
        if idle || lock(&self.error).is_some() {
            self.probe().await.map_err(|err| self.failed(what, err))?;
        }
        let mut result = send(self.manager.clone()).await;
        // Whether a failed attempt before this one may have run.
        let mut may_have_run = false;
        if let Err(err) = &result
            && send_again(err, effect)
        {
            may_have_run = !never_run(err);
            result = send(self.manager.clone()).await;
        }
        let reply = result.map_err(|err| match effect {
            Effect::Append | Effect::KeyedAppend if may_have_run || !never_run(&err) => {
                self.failed_as(what, err, Error::outcome_unknown)
            }
            Effect::Idempotent if !never_run(&err) => {
                self.failed_as(what, err, Error::outcome_unknown_repeatable)
            }
            _ => self.failed(what, err),
        })?;
        self.succeeded();
        Ok(reply)
    }

    /// Whether the command connection answers: a `PING` on it. When that fails on the
    /// connection itself at once (the manager's failed reconnection from an outage, or a
    /// connection Redis closed), the manager starts a new one, and a second `PING` goes there.
    /// Not after a response timeout: the connection is there and Redis does not answer, and a
    /// second `PING` would only wait as long again. An error reply (`NOPERM`, say) is an answer.
    async fn probe(&self) -> RedisResult<()> {
        let mut again = true;
        loop {
            let started = Instant::now();
            let mut conn = self.manager.clone();
            match redis::cmd("PING").query_async::<Value>(&mut conn).await {
                Ok(_) => {
                    self.answered();
                    return Ok(());
                }
                Err(err) if err.code().is_some() => {
                    self.answered();
                    return Ok(());
                }
                Err(err)
                    if again
                        && err.is_io_error()
                        && !(err.is_timeout() && started.elapsed() >= CONNECTION_TIMEOUT / 2) =>
                {
                    again = false;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// The reader reached Redis: the failure on record, if any, is over once the command
    /// connection answers too, so that the health never says ok while the next command would
    /// fail on a connection from before the outage.
    async fn recovered(&self) {
        if lock(&self.error).is_none() {
            return;
        }
        match self.probe().await {
            Ok(()) => self.succeeded(),
            Err(err) => {
                self.failed("PING", err);
            }
        }
    }

    /// The key of the record of idempotency key `key` on `topic` (`#` is never in a topic
    /// name, so no topic's keys are ever one).
    fn key_record(&self, topic: &str, key: &str) -> String {
        format!("{}{topic}#i:{key}", self.prefix)
    }

    async fn publish(&self, topic: &str, publish: Publish) -> Result<Published, Error> {
        let (event, key) = publish.into_parts();
        let body = event.without_id();
        let window = millis(self.limits.idempotency_window).max(1);
        let effect = match key {
            Some(_) => Effect::KeyedAppend,
            None => Effect::Append,
        };
        let (outcome, id): (String, String) = self
            .run("publish", effect, &self.publish, topic, |script| {
                script.arg(body.as_ref());
                if let Some(key) = &key {
                    script.key(self.key_record(topic, key)).arg(window);
                }
            })
            .await?;
        let stored = |id: &str| event.with_id(id).map_err(Error::internal);
        match outcome.as_str() {
            "stored" => Published::stored(stored(&id)?),
            "duplicate" => Published::duplicate(stored(&id)?),
            "reused" => Err(Error::key_reused()),
            "closed" => Err(Error::closed()),
            _ => Err(Error::internal("unexpected reply to the publish script")),
        }
    }

    async fn close(&self, topic: &str, end: Event) -> Result<Event, Error> {
        let body = end.without_id();
        let (marker, stored): (String, Vec<u8>) = self
            .run("close", Effect::Idempotent, &self.close, topic, |script| {
                script.arg(body.as_ref());
            })
            .await?;
        Event::from_stored(Bytes::from(stored), &end_id(&marker))
            .ok_or_else(|| Error::internal("the topic's stored final event is not an event"))
    }

    async fn open(
        self: &Arc<Self>,
        topic: &str,
        start: &Start,
        options: &ReplayOptions,
    ) -> Result<Opened, Error> {
        let after = match start {
            Start::After(after) => Some(after),
            Start::Live | Start::Oldest => None,
        };
        let max_replay = options.max_replay.max(1);
        let parsed = after.map(|after| after.as_str().and_then(StreamId::parse));
        let malformed = matches!(parsed, Some(None));

        // Live first: every entry this process reads for the topic from now on reaches this
        // reader (dropped again on every way out but the live one).
        let mut reader = self.reader(topic)?;

        let after = parsed
            .flatten()
            .map(|id| id.to_string())
            .unwrap_or_default();
        let flag = |set: bool| if set { "1" } else { "0" };
        let reply: Value = self
            .run(
                "subscribe",
                Effect::Repeatable,
                &self.open,
                topic,
                |script| {
                    script
                        .arg(after)
                        .arg(max_replay + 1)
                        .arg(options.resume.as_str())
                        .arg(flag(malformed))
                        .arg(flag(matches!(start, Start::Oldest)));
                },
            )
            .await?;
        let mut snapshot = parse_open(reply)
            .ok_or_else(|| Error::internal("unexpected reply to the open script"))?;
        let gap = snapshot.gap(options.resume);
        let opened = |replay: Vec<Event>, rest: Rest| match gap.clone() {
            Some(gap) => Opened::new(replay, rest).with_gap(gap),
            None => Opened::new(replay, rest),
        };
        // The marker among the entries is left out: the final event comes from the metadata.
        let mut replay: Vec<Event> = decode_entries(std::mem::take(&mut snapshot.entries))
            .into_iter()
            .filter_map(|entry| match entry.stored {
                Stored::Event(event) => Some(event),
                _ => None,
            })
            .collect();
        if replay.len() > max_replay {
            // Cut at the cap: the client comes back for the rest.
            replay.truncate(max_replay);
            return Ok(opened(replay, Rest::More));
        }
        if let Some(end) = snapshot.end {
            return Ok(opened(replay, Rest::End(end)));
        }

        #[cfg(test)]
        tests::after_snapshot().await;
        // Position the topic's reader at this snapshot if it is new; if the reader is already
        // past it, read the entries in between so none is missed.
        let (reader_at, new_topic) = {
            let mut feed = lock(&reader.topic.state);
            let new_topic = feed.position.is_none();
            if new_topic {
                feed.ordinal = snapshot.ordinal;
            }
            (*feed.position.get_or_insert(snapshot.last), new_topic)
        };
        if new_topic {
            self.wake_reader().await;
        }
        let mut end = None;
        if reader_at > snapshot.last {
            let mut xrange = redis::cmd("XRANGE");
            xrange
                .arg(self.key(topic))
                .arg(format!("({}", snapshot.last))
                .arg(reader_at.to_string())
                .arg("COUNT")
                .arg(max_replay + 1 - replay.len());
            let xrange = &xrange;
            let between: Value = self
                .command("XRANGE", Effect::Repeatable, |mut conn| {
                    async move { xrange.query_async(&mut conn).await }.boxed()
                })
                .await?;
            let between = decode_entries(items(between));
            if between
                .first()
                .is_none_or(|entry| entry.ordinal != snapshot.ordinal + 1)
            {
                // Trimmed meanwhile: the client reconnects and is told of the gap.
                return Ok(opened(replay, Rest::More));
            }
            for entry in between {
                match entry.stored {
                    Stored::Event(event) => replay.push(event),
                    Stored::End(event) => end = Some(event),
                    Stored::Other => {}
                }
            }
        }
        if replay.len() > max_replay {
            replay.truncate(max_replay);
            return Ok(opened(replay, Rest::More));
        }
        if let Some(end) = end {
            return Ok(opened(replay, Rest::End(end)));
        }
        // Whatever the reader gets at or before this is in the replay: it skips it.
        reader.after = Some(snapshot.last.max(reader_at));
        Ok(opened(replay, Rest::Live(Live::new(reader))))
    }

    async fn topic_info(&self, topic: &str) -> Result<Option<TopicInfo>, Error> {
        let held: Option<(i64, i64, String, String)> = self
            .run("topic info", Effect::Repeatable, &self.info, topic, |_| {})
            .await?;
        let subscribers = lock(&self.feeds)
            .get(topic)
            .map_or(0, |topic| lock(&topic.state).log.readers());
        let Some((events, bytes, newest, marker)) = held else {
            return Ok((subscribers > 0).then(|| TopicInfo::new(subscribers, 0, 0)));
        };
        let count = |n: i64| usize::try_from(n).unwrap_or(0);
        let mut info =
            TopicInfo::new(subscribers, count(events), count(bytes)).closed(!marker.is_empty());
        if !newest.is_empty() {
            info = info.last_id(newest);
        }
        Ok(Some(info))
    }

    async fn wait_idle(self: &Arc<Self>, topic: &str, grace: Duration) -> Result<(), Error> {
        let mut waiting = self.local(topic, |topic, feed| {
            let readers = feed.log.readers();
            let listener = feed
                .listeners
                .get_or_insert_with(|| watch::channel(readers).0)
                .subscribe();
            Waiting {
                shared: Arc::downgrade(self),
                topic: topic.clone(),
                listener: Some(listener),
            }
        })?;
        let listener = waiting.listener.as_mut().expect("set until dropped");
        until_idle(listener, grace).await;
        Ok(())
    }

    /// Runs `f` on the local topic `name`, created when missing (within
    /// [`TopicLimits::max_topics`]), with the topics and its state locked. A closed one is
    /// replaced: its readers finish with its final event, and whoever comes now reads the
    /// topic's next instance.
    fn local<R>(
        &self,
        name: &str,
        f: impl FnOnce(&Arc<LocalTopic>, &mut Feed) -> R,
    ) -> Result<R, Error> {
        let mut feeds = lock(&self.feeds);
        let mut listeners = None;
        match feeds.get(name) {
            Some(topic) => {
                let mut feed = lock(&topic.state);
                if feed.log.end().is_none() {
                    return Ok(f(topic, &mut feed));
                }
                listeners = feed.listeners.take();
                drop(feed);
                lock(&self.retired).push(Arc::downgrade(topic));
            }
            None if feeds.len() >= self.topics.max_topics => return Err(Error::too_many_topics()),
            None => {}
        }
        let topic = Arc::new(LocalTopic {
            name: name.into(),
            state: Mutex::new(Feed::new(self.queue, listeners, self.held.clone())),
        });
        feeds.insert(topic.name.clone(), topic.clone());
        let mut feed = lock(&topic.state);
        let result = f(&topic, &mut feed);
        feed.readers_changed();
        Ok(result)
    }

    /// A new local subscriber of `name`, at the end of its log.
    fn reader(self: &Arc<Self>, name: &str) -> Result<Reader, Error> {
        self.local(name, |topic, feed| {
            let next = feed.log.next_seq();
            let key = feed.log.add_reader(next);
            let slot = feed.slots.insert(Slot {
                key,
                next,
                shed: false,
            });
            feed.readers_changed();
            Reader {
                shared: Arc::downgrade(self),
                topic: topic.clone(),
                slot,
                after: None,
                generation: feed.generation,
                done: false,
            }
        })
    }

    /// Stops reading `topic` if nobody here subscribes or waits any more.
    fn forget_if_unused(&self, topic: &Arc<LocalTopic>) {
        let mut feeds = lock(&self.feeds);
        if feeds
            .get(&topic.name)
            .is_some_and(|current| Arc::ptr_eq(current, topic))
            && lock(&topic.state).is_unused()
        {
            feeds.remove(&topic.name);
        }
    }

    /// Makes the reader include a new topic now rather than after its current `XREAD`.
    async fn wake_reader(&self) {
        self.changed.notify_one();
        let id = *lock(&self.reader_id);
        if let Some(id) = id {
            let mut conn = self.manager.clone();
            let unblocked: RedisResult<i64> = redis::cmd("CLIENT")
                .arg("UNBLOCK")
                .arg(id)
                .query_async(&mut conn)
                .await;
            // Should it fail, the reader comes round within its block time all the same; a
            // failed connection goes on record, so that the next command checks it first. A
            // refusal (an ACL without `+client|unblock`) is logged once.
            match unblocked {
                Ok(_) => self.answered(),
                Err(err) if err.code().is_some() => self.client_refused("CLIENT UNBLOCK", &err),
                Err(err) if err.is_io_error() => {
                    self.failed("CLIENT UNBLOCK", err);
                }
                Err(_) => {}
            }
        }
    }

    /// Logs, once, that Redis refused a `CLIENT` command (an ACL without it): the reader is not
    /// woken when a topic is added, so a new topic's first events wait up to the block time.
    fn client_refused(&self, what: &str, err: &RedisError) {
        if !self.client_refused.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "Redis refused {what} ({err}): new topics are read within {BLOCK:?} rather \
                 than at once; allow `+client|id +client|unblock` to the hub's Redis user"
            );
        }
    }

    /// Pushes the entries of one `XREAD` reply into the local logs.
    fn deliver(&self, reply: Value) {
        let now = Instant::now();
        let feeds = lock(&self.feeds);
        for (key, entries) in streams_of(reply) {
            let Some(topic) = key.strip_prefix(&self.prefix).and_then(|t| feeds.get(t)) else {
                continue;
            };
            let mut feed = lock(&topic.state);
            for entry in decode_entries(entries) {
                if feed.log.end().is_some() {
                    break;
                }
                if feed.position.is_some_and(|position| entry.id <= position) {
                    continue;
                }
                if entry.ordinal != feed.ordinal + 1 {
                    // Entries were trimmed before this process read them (or the topic's keys
                    // expired and it started again): its subscribers of this topic must not
                    // go on as if nothing was missed. Their streams end with a `retry:` hint;
                    // they reconnect and get the `gap` event.
                    tracing::warn!(
                        topic = %topic.name,
                        "entries were trimmed before they were read; ending the topic's streams"
                    );
                    feed.cut();
                }
                feed.position = Some(entry.id);
                crate::metrics::backend_lag(entry.id.ms);
                feed.ordinal = entry.ordinal;
                let (event, end) = match entry.stored {
                    Stored::Event(event) => (event, false),
                    Stored::End(event) => (event, true),
                    Stored::Other => continue,
                };
                let cost = event.len() + EVENT_OVERHEAD;
                let room = self.charge(cost) || self.make_room(&feeds, topic, &mut feed, cost, now);
                if !room {
                    // Larger than the bound: no local log can hold it. Its subscribers here
                    // get it by replay from Redis when they reconnect.
                    let shed = feed.shed(now, |_| true);
                    tracing::debug!(
                        topic = %topic.name,
                        subscribers = shed,
                        "an event larger than max_history_bytes: cut the topic's local \
                         subscribers"
                    );
                }
                if end {
                    if !room {
                        // Closed all the same, so that the topic is read no more and whoever
                        // subscribes next reads its next instance: held over the bound until
                        // the topic, with nobody left to read it, is forgotten.
                        feed.held.fetch_add(cost, Ordering::AcqRel);
                    }
                    feed.close(event, cost);
                } else if room {
                    feed.push(event, cost, now);
                }
            }
            feed.evict(now);
        }
    }

    /// Counts `cost` more bytes as held, if that stays within
    /// [`TopicLimits::max_history_bytes`]: the hot path of the bound, one atomic update.
    fn charge(&self, cost: usize) -> bool {
        super::charge_within(&self.held, cost, self.topics.max_history_bytes)
    }

    /// The slow path of the bound on held bytes: makes room for `cost` more and charges it.
    /// First drops from every local log what its subscribers have all read; if that is not
    /// enough, cuts off the subscribers that hold the oldest entries, oldest first (they get
    /// `Lagged`, reconnect and catch up by replay from Redis), until `cost` fits with a
    /// sixteenth of the bound to spare, so that the next deliveries do not all come here.
    /// `feed` is `current`'s state, locked by the caller with `feeds`. Returns whether `cost`
    /// is charged (never when it is larger than the bound).
    fn make_room(
        &self,
        feeds: &HashMap<Arc<str>, Arc<LocalTopic>>,
        current: &Arc<LocalTopic>,
        feed: &mut Feed,
        cost: usize,
        now: Instant,
    ) -> bool {
        if cost > self.topics.max_history_bytes {
            return false;
        }
        let mut others: Vec<Arc<LocalTopic>> = feeds
            .values()
            .filter(|topic| !Arc::ptr_eq(topic, current))
            .cloned()
            .collect();
        others.extend(lock(&self.retired).iter().filter_map(Weak::upgrade));
        feed.evict(now);
        for topic in &others {
            lock(&topic.state).evict(now);
        }
        if self.charge(cost) {
            return true;
        }
        // The topics that still hold entries, by their oldest (`others.len()` is `current`).
        let mut oldest = BinaryHeap::new();
        if let Some(at) = feed.log.oldest_at() {
            oldest.push(Reverse((at, others.len())));
        }
        for (index, topic) in others.iter().enumerate() {
            if let Some(at) = lock(&topic.state).log.oldest_at() {
                oldest.push(Reverse((at, index)));
            }
        }
        let max = self.topics.max_history_bytes;
        let goal = cost.saturating_add(max / 16).min(max);
        let room = || self.held.load(Ordering::Acquire) <= max - goal;
        let mut shed = 0;
        while let Some(Reverse((_, index))) = oldest.pop() {
            let mut other;
            let topic: &mut Feed = match others.get(index) {
                Some(topic) => {
                    other = lock(&topic.state);
                    &mut other
                }
                None => &mut *feed,
            };
            let (cut, progressed) = topic.shed_oldest(now);
            shed += cut;
            let next = topic.log.oldest_at();
            if room() {
                break;
            }
            if let Some(at) = next.filter(|_| progressed) {
                oldest.push(Reverse((at, index)));
            }
        }
        if shed > 0 {
            tracing::debug!(
                subscribers = shed,
                max_history_bytes = self.topics.max_history_bytes,
                "cut the local subscribers holding the oldest entries to stay within \
                 max_history_bytes"
            );
        }
        self.charge(cost)
    }

    /// The topics to read and where from: those with a position that are not closed.
    fn reading(&self) -> Vec<(String, StreamId)> {
        let feeds = lock(&self.feeds);
        feeds
            .iter()
            .filter_map(|(name, topic)| {
                let feed = lock(&topic.state);
                if feed.log.end().is_some() {
                    return None;
                }
                Some((self.key(name), feed.position?))
            })
            .collect()
    }

    /// Drops from the local logs what every subscriber has read, and forgets topics nobody
    /// here uses any more.
    fn sweep(&self) {
        let now = Instant::now();
        let mut feeds = lock(&self.feeds);
        feeds.retain(|_, topic| {
            let mut feed = lock(&topic.state);
            feed.evict(now);
            !feed.is_unused()
        });
        lock(&self.retired).retain(|topic| match topic.upgrade() {
            Some(topic) => {
                lock(&topic.state).evict(now);
                true
            }
            None => false,
        });
        if feeds.capacity() > 4 * feeds.len() + 1024 {
            feeds.shrink_to_fit();
        }
    }

    /// Renews the expiry of the keys of every topic in use here.
    async fn renew(&self) {
        let names: Vec<Arc<str>> = lock(&self.feeds).keys().cloned().collect();
        let ttl = self.ttl_ms();
        for batch in names.chunks(RENEW_BATCH) {
            let mut pipe = redis::pipe();
            for name in batch {
                for key in [self.key(name), self.meta_key(name)] {
                    // A no-op on a key that is gone: nothing is created again.
                    pipe.cmd("PEXPIRE").arg(key).arg(ttl).ignore();
                }
            }
            let pipe = &pipe;
            let renewed = self
                .command("PEXPIRE", Effect::Repeatable, |mut conn| {
                    async move { pipe.query_async::<()>(&mut conn).await }.boxed()
                })
                .await;
            if renewed.is_err() {
                return;
            }
        }
    }
}

/// Reads new entries for every topic with local subscribers and fans them out, until the
/// backend is dropped.
async fn read_loop(shared: Weak<Shared>) {
    let mut conn: Option<MultiplexedConnection> = None;
    let mut backoff = MIN_BACKOFF;
    loop {
        let Some(this) = shared.upgrade() else {
            return;
        };
        let streams = this.reading();
        let Some(connection) = conn.as_mut() else {
            match connect(&this).await {
                Ok((connection, id)) => {
                    *lock(&this.reader_id) = id;
                    conn = Some(connection);
                    backoff = MIN_BACKOFF;
                    this.recovered().await;
                }
                Err(err) => {
                    crate::metrics::backend_error("read", &this.failed("connection", err));
                    backoff = pause(this, backoff).await;
                }
            }
            continue;
        };
        if streams.is_empty() {
            // A topic was added since `reading` looked: read it at once.
            if this.changed.notified().now_or_never().is_some() {
                continue;
            }
            // Nothing to read: block on a key nothing writes, until a topic is added
            // ([`Shared::wake_reader`] unblocks it) or for the block time. A command is
            // pending on the connection all along, so should Redis go (its connections
            // closed), the read fails at once and the health says so before the next command
            // is sent: that command then checks the command connection first (see
            // [`Shared::command`]), and the reader's reconnection, once Redis is back, brings
            // the command connection back too (see [`Shared::recovered`]).
            let mut idle = redis::cmd("XREAD");
            idle.arg("BLOCK")
                .arg(BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(this.idle_key())
                .arg("$");
            match idle.query_async::<Value>(connection).await {
                Ok(_) => this.recovered().await,
                Err(err) => {
                    crate::metrics::backend_error("read", &this.failed("XREAD", err));
                    *lock(&this.reader_id) = None;
                    conn = None;
                    backoff = pause(this, backoff).await;
                }
            }
            continue;
        }
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(READ_COUNT)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS");
        for (key, _) in &streams {
            cmd.arg(key);
        }
        for (_, position) in &streams {
            cmd.arg(position.to_string());
        }
        match cmd.query_async::<Value>(connection).await {
            Ok(reply) => {
                this.deliver(reply);
                this.recovered().await;
            }
            Err(err) => {
                crate::metrics::backend_error("read", &this.failed("XREAD", err));
                *lock(&this.reader_id) = None;
                conn = None;
                backoff = pause(this, backoff).await;
            }
        }
    }
}

/// The reader's pause after a failure: `backoff` long, or shorter (never under
/// [`MIN_BACKOFF`]) should a command find Redis reachable again meanwhile. The backend is not
/// kept alive meanwhile. Returns the next pause's length.
async fn pause(this: Arc<Shared>, backoff: Duration) -> Duration {
    let changed = this.changed.clone();
    drop(this);
    tokio::time::sleep(MIN_BACKOFF).await;
    let _ = tokio::time::timeout(backoff.saturating_sub(MIN_BACKOFF), changed.notified()).await;
    (backoff * 2).min(MAX_BACKOFF)
}

/// Until the backend is dropped: empties the local logs of what everyone has read, and renews
/// the keys of the topics in use here every third of the idle TTL, so that they do not expire
/// while someone listens.
async fn keep(shared: Weak<Shared>) {
    let Some(renew_every) = shared
        .upgrade()
        .map(|this| (this.topics.idle_ttl / 3).max(MIN_RENEW))
    else {
        return;
    };
    let mut renewed = Instant::now();
    loop {
        tokio::time::sleep(renew_every.min(SWEEP)).await;
        let Some(this) = shared.upgrade() else {
            return;
        };
        this.sweep();
        if renewed.elapsed() >= renew_every {
            renewed = Instant::now();
            this.renew().await;
        }
    }
}

/// The reader's connection, and its `CLIENT ID` (to wake it) unless Redis refuses it (an ACL
/// without `+client|id`: the reader goes on without wake-ups).
async fn connect(this: &Shared) -> redis::RedisResult<(MultiplexedConnection, Option<i64>)> {
    // A blocking read answers after its block time; past that, Redis is taken as gone as soon
    // as a command would be.
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECTION_TIMEOUT))
        .set_response_timeout(Some(BLOCK + RESPONSE_TIMEOUT));
    let mut conn = this
        .client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let id = redis::cmd("CLIENT")
        .arg("ID")
        .query_async::<i64>(&mut conn)
        .await;
    match id {
        Ok(id) => Ok((conn, Some(id))),
        Err(err) if err.code().is_some() => {
            this.client_refused("CLIENT ID", &err);
            Ok((conn, None))
        }
        Err(err) => Err(err),
    }
}

/// What a Redis error reply with `code` is, in a few words for clients and the health (which
/// never name the backend's internals).
fn refusal(code: &str) -> &'static str {
    match code {
        "OOM" => "out of memory",
        "READONLY" => "read-only replica",
        "NOPERM" => "permission denied",
        "NOAUTH" | "WRONGPASS" => "login refused",
        "BUSY" => "busy running a script",
        "LOADING" => "loading its data",
        "MASTERDOWN" => "replica without its primary",
        _ => "error reply",
    }
}

/// What went wrong, in a few words that never carry Redis's text (nor an address).
fn cause(err: &RedisError) -> &'static str {
    if let Some(code) = err.code() {
        refusal(code)
    } else if err.is_timeout() {
        "timed out"
    } else if err.is_connection_refusal() {
        "connection refused"
    } else if err.is_connection_dropped() {
        "connection lost"
    } else {
        "unreachable"
    }
}

fn text(value: &Value) -> Option<&str> {
    match value {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

fn items(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) | Value::Set(items) => items,
        Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => Vec::new(),
    }
}

/// Reads the open script's reply.
fn parse_open(reply: Value) -> Option<OpenReply> {
    let mut parts = items(reply).into_iter();
    let mut next_text = || -> Option<String> { text(&parts.next()?).map(str::to_owned) };
    let last = StreamId::parse(&next_text()?)?;
    let deleted = StreamId::parse(&next_text()?)?;
    let reason = match next_text()?.as_str() {
        "" => None,
        "evicted" => Some(GapReason::Evicted),
        "unknown" => Some(GapReason::Unknown),
        "foreign" => Some(GapReason::Foreign),
        _ => Some(GapReason::Malformed),
    };
    let entries = items(parts.next()?);
    let ordinal = match parts.next()? {
        Value::Int(n) => u64::try_from(n).ok()?,
        _ => return None,
    };
    let mut next_text = || -> Option<String> { text(&parts.next()?).map(str::to_owned) };
    let birth = next_text()?;
    let birth = if birth.is_empty() {
        None
    } else {
        Some(StreamId::parse(&birth)?)
    };
    let newest = Some(next_text()?).filter(|id| !id.is_empty());
    let marker = next_text()?;
    let end = match parts.next()? {
        Value::BulkString(body) if !marker.is_empty() => {
            Some(Event::from_stored(Bytes::from(body), &end_id(&marker))?)
        }
        _ => None,
    };
    // A topic closed before any publish has no newest event.
    let newest = newest.or_else(|| {
        (end.is_none() && birth.is_some())
            .then(|| last.nonzero())
            .flatten()
            .map(|last| last.to_string())
    });
    Some(OpenReply {
        last,
        deleted,
        reason,
        entries,
        ordinal,
        birth,
        newest,
        end,
    })
}

/// `(key, entries)` pairs of an `XREAD` reply (an array of pairs, or a map in RESP3).
fn streams_of(reply: Value) -> Vec<(String, Vec<Value>)> {
    match reply {
        Value::Map(pairs) => pairs
            .into_iter()
            .filter_map(|(k, v)| Some((text(&k)?.to_owned(), items(v))))
            .collect(),
        other => items(other)
            .into_iter()
            .filter_map(|pair| {
                let mut pair = items(pair).into_iter();
                let key = text(&pair.next()?)?.to_owned();
                Some((key, items(pair.next()?)))
            })
            .collect(),
    }
}

/// What a stream entry holds.
enum Stored {
    Event(Event),
    /// The close marker's final event, with its id.
    End(Event),
    /// Something that is not a stored event.
    Other,
}

/// A stream entry, decoded.
struct Entry {
    id: StreamId,
    ordinal: u64,
    stored: Stored,
}

/// Each entry's id, ordinal and content.
fn decode_entries(entries: Vec<Value>) -> Vec<Entry> {
    entries
        .into_iter()
        .filter_map(|entry| {
            let mut entry = items(entry).into_iter();
            let id_text = text(&entry.next()?)?.to_owned();
            let id = StreamId::parse(&id_text)?;
            let fields = items(entry.next()?);
            let mut stored = None;
            let mut ordinal = 0;
            for pair in fields.chunks(2) {
                match pair {
                    [name, Value::BulkString(value)] if text(name) == Some("e") => {
                        stored = Event::from_stored(Bytes::copy_from_slice(value), &id_text)
                            .map(Stored::Event);
                    }
                    [name, Value::BulkString(value)] if text(name) == Some("end") => {
                        stored =
                            Event::from_stored(Bytes::copy_from_slice(value), &end_id(&id_text))
                                .map(Stored::End);
                    }
                    [name, value] if text(name) == Some("n") => {
                        ordinal = text(value).and_then(|n| n.parse().ok()).unwrap_or(0);
                    }
                    _ => {}
                }
            }
            let stored = stored.unwrap_or_else(|| {
                tracing::warn!(id = %id_text, "skipping a stream entry that is not a stored event");
                Stored::Other
            });
            Some(Entry {
                id,
                ordinal,
                stored,
            })
        })
        .collect()
}

/// One local subscriber: a position in its topic's log.
struct Reader {
    shared: Weak<Shared>,
    topic: Arc<LocalTopic>,
    /// Its slot in the feed, which holds its key in the log.
    slot: usize,
    /// Entries at or below this were in the replay: skipped. Cleared past it.
    after: Option<StreamId>,
    /// The feed's generation when this reader was added.
    generation: u64,
    done: bool,
}

impl Stream for Reader {
    type Item = Delivery;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let mut guard = lock(&this.topic.state);
        let feed = &mut *guard;
        let slot = &mut feed.slots[this.slot];
        if slot.shed {
            // Cut off to keep the local logs within their byte bound: outrun.
            this.done = true;
            return Poll::Ready((feed.generation == this.generation).then_some(Delivery::Lagged));
        }
        loop {
            let delivery = match ready!(feed.log.poll_read(slot.key, cx)) {
                Read::Event(event) => {
                    slot.next += 1;
                    if let Some(after) = this.after {
                        let id = event.id().and_then(StreamId::parse);
                        if id.is_some_and(|id| id <= after) {
                            continue;
                        }
                        this.after = None;
                    }
                    return Poll::Ready(Some(Delivery::Event(event)));
                }
                // Cut off by a later generation: the feed was lost, not outrun.
                Read::Lagged => (feed.generation == this.generation).then_some(Delivery::Lagged),
                Read::End(end) => Some(Delivery::End(end)),
            };
            slot.next = u64::MAX;
            this.done = true;
            return Poll::Ready(delivery);
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let mut feed = lock(&self.topic.state);
        let slot = feed.slots.remove(self.slot);
        if !slot.shed {
            feed.log.remove_reader(slot.key);
            // What only this subscriber had yet to read no longer counts as held.
            feed.evict(Instant::now());
        }
        feed.readers_changed();
        let unused = feed.is_unused();
        drop(feed);
        if let Some(shared) = self.shared.upgrade().filter(|_| unused) {
            shared.forget_if_unused(&self.topic);
        }
    }
}

/// A `wait_idle` in progress: the topic stays in use (read, its keys renewed) until it ends or
/// is given up.
struct Waiting {
    shared: Weak<Shared>,
    topic: Arc<LocalTopic>,
    listener: Option<watch::Receiver<usize>>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        drop(self.listener.take());
        let mut feed = lock(&self.topic.state);
        if !feed.has_listeners() {
            feed.listeners = None;
        }
        let unused = feed.is_unused();
        drop(feed);
        if let Some(shared) = self.shared.upgrade().filter(|_| unused) {
            shared.forget_if_unused(&self.topic);
        }
    }
}

impl Backend for RedisBackend {
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        publish: Publish,
    ) -> BoxFuture<'a, Result<Published, Error>> {
        self.shared.publish(topic, publish).boxed()
    }

    fn open<'a>(
        &'a self,
        topic: &'a str,
        start: &'a Start,
        options: &'a ReplayOptions,
    ) -> BoxFuture<'a, Result<Opened, Error>> {
        self.shared.open(topic, start, options).boxed()
    }

    fn close<'a>(&'a self, topic: &'a str, end: Event) -> BoxFuture<'a, Result<Event, Error>> {
        self.shared.close(topic, end).boxed()
    }

    fn topic_info<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<Option<TopicInfo>, Error>> {
        self.shared.topic_info(topic).boxed()
    }

    fn wait_idle<'a>(
        &'a self,
        topic: &'a str,
        grace: Duration,
    ) -> BoxFuture<'a, Result<(), Error>> {
        self.shared.wait_idle(topic, grace).boxed()
    }

    fn health(&self) -> Health {
        match lock(&self.shared.error).as_ref() {
            None => Health::Ok,
            Some(why) => Health::Unavailable(why.clone()),
        }
    }
}

#[cfg(test)]
mod tests;
