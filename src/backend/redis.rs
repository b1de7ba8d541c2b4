//! The Redis Streams backend: several hub servers share history, replay and fan-out.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt};
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, Script, Value};
use tokio::sync::{Notify, broadcast};

use super::{
    Backend, Gap, GapReason, GapResume, Health, HistoryLimits, Live, Opened, Position, Published,
    ReplayOptions,
};
use crate::hub::HubError;
use crate::{Event, LastEventId};

/// The default prefix of the stream keys: topic `news` is the stream `tower-sse:news`.
pub const DEFAULT_KEY_PREFIX: &str = "tower-sse:";

/// How long the reader's `XREAD` blocks before it looks at its topics again.
const BLOCK: Duration = Duration::from_secs(1);
/// Entries one `XREAD` returns at most.
const READ_COUNT: usize = 1000;
/// Longest pause between two reconnection attempts of the reader.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Lua shared by both scripts: trimming by `XDEL` of the oldest entries, because Redis records
/// what `XDEL` removes in `XINFO STREAM`'s max-deleted-entry-id (and `XTRIM` does not), which is
/// how a reconnect after a trimmed id is told apart from one that missed nothing.
const TRIM: &str = r"
local function drop(key, entries)
  local ids = {}
  for i, entry in ipairs(entries) do ids[i] = entry[1] end
  for i = 1, #ids, 500 do
    redis.call('XDEL', key, unpack(ids, i, math.min(i + 499, #ids)))
  end
end
local function trim(key, maxlen, batch, minid_ms)
  if minid_ms > 0 then
    while true do
      local old = redis.call('XRANGE', key, '-', '(' .. minid_ms .. '-0', 'COUNT', 1000)
      if #old == 0 then break end
      drop(key, old)
      if #old < 1000 then break end
    end
  end
  local over = redis.call('XLEN', key) - maxlen
  if over >= batch then drop(key, redis.call('XRANGE', key, '-', '+', 'COUNT', over)) end
end
";

/// Appends an event with its ordinal `n` (from the counter KEYS[2], so a reader can tell that
/// it missed entries), then trims by count (once a batch over) and by age, measured on the
/// Redis server's clock from the id it just gave. ARGV: max count, trim batch, max age in ms,
/// the encoded event. Returns the id.
const PUBLISH: &str = r"
local n = redis.call('INCR', KEYS[2])
local id = redis.call('XADD', KEYS[1], '*', 'e', ARGV[4], 'n', n)
local ms = tonumber(string.match(id, '^(%d+)'))
trim(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), ms - tonumber(ARGV[3]))
return id
";

/// Opens a subscription atomically: drops entries older than the age bound, tells whether the
/// client's id can be resumed from, and reads the replay.
///
/// ARGV: after (a stream id, or '' for none), replay count, max age in ms, resume mode
/// ('oldest' or 'live'), '1' when the client's id was malformed, max count, trim batch.
/// Returns { last-generated-id, max-deleted-entry-id, gap reason or '', entries, ordinal of
/// the last entry }.
const OPEN: &str = r"
local key = KEYS[1]
local after, count, age, mode, malformed = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function greater(a, b)
  local ams, aseq = parse(a)
  local bms, bseq = parse(b)
  return ams > bms or (ams == bms and aseq > bseq)
end
local last, deleted = '0-0', '0-0'
if redis.call('EXISTS', key) == 1 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  trim(key, tonumber(ARGV[6]), tonumber(ARGV[7]), now - age)
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
  if greater(after, last) then reason = 'unknown'
  elseif greater(deleted, after) then reason = 'evicted' end
end
local start = nil
if reason ~= '' then
  if mode == 'oldest' then start = '-' end
elseif after ~= '' then
  start = '(' .. after
end
local entries = {}
if start then entries = redis.call('XRANGE', key, start, '+', 'COUNT', count) end
return { last, deleted, reason, entries, tonumber(redis.call('GET', KEYS[2]) or '0') }
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

    fn position(self) -> Position {
        (Position::from(self.ms) << 64) | Position::from(self.seq)
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// History and fan-out in Redis Streams, shared by every hub server on the same Redis.
///
/// - `publish` runs `XADD` (the entry id is the event id every server hands out) and trims by
///   count and age in one script, so nothing is half-done. Trimming deletes the oldest entries
///   with `XDEL` once the stream is a batch (a tenth of the count bound, at most 100) over its
///   bound, rather than with `XTRIM`: Redis records what `XDEL` removes, so a reconnect after a
///   trimmed id is answered with a `gap` event, never with a silently partial replay.
/// - Each process reads new entries of the topics it has subscribers for with one blocking
///   `XREAD` on one dedicated connection, and fans them out locally, bytes shared; commands
///   share one more, multiplexed, connection. Two connections per process in all.
/// - A reconnect replays with `XRANGE` strictly after the client's id, capped; an id older than
///   what the stream retains (per `XINFO STREAM`'s max-deleted-entry-id), ahead of it, or not a
///   stream id at all gets the `gap` event, as in memory.
/// - While Redis is unreachable, `publish` fails with an error that says so and nothing is
///   stored; open streams stay up, and once Redis is back the reader continues each topic from
///   the last entry it delivered, so every entry Redis accepted reaches every subscriber.
///   Reconnection backs off up to 5 s; [`Backend::health`] and the logs tell the state.
///
/// The history's byte bound does not apply: Redis bounds by count and age.
pub struct RedisBackend {
    shared: Arc<Shared>,
}

struct Shared {
    client: Client,
    manager: ConnectionManager,
    prefix: String,
    limits: HistoryLimits,
    queue: usize,
    publish: Script,
    open: Script,
    feeds: Mutex<HashMap<Arc<str>, Feed>>,
    /// Woken when a topic is added to the reader's set.
    changed: Notify,
    /// The reader connection's `CLIENT ID`, to interrupt its blocking `XREAD`.
    reader_id: Mutex<Option<i64>>,
    /// The last failure, until an operation succeeds again.
    error: Mutex<Option<String>>,
}

/// One topic this process has subscribers for.
struct Feed {
    sender: broadcast::Sender<Published>,
    /// The last entry delivered to `sender` (or from which to start reading); `None` until the
    /// first subscription has read its snapshot.
    position: Option<StreamId>,
    /// The ordinal of the entry at `position`: the next one read must be one more, or entries
    /// were trimmed before this process read them.
    ordinal: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("prefix", &self.shared.prefix)
            .field("limits", &self.shared.limits)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// A backend on the Redis server at `url` (`redis://host:port/db`), with streams named
    /// `prefix` + topic. It connects lazily: Redis need not be up yet. Must be called within a
    /// Tokio runtime (it starts the reader task).
    ///
    /// # Errors
    ///
    /// When `url` is not a Redis URL.
    pub fn new(
        url: &str,
        prefix: &str,
        limits: HistoryLimits,
        queue: usize,
    ) -> Result<RedisBackend, HubError> {
        let client = Client::open(url)
            .map_err(|err| HubError::config(format!("invalid Redis URL {url:?}: {err}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|err| HubError::config(format!("Redis client: {err}")))?;
        let shared = Arc::new(Shared {
            client,
            manager,
            prefix: prefix.to_owned(),
            limits,
            queue: queue.clamp(1, 1 << 20),
            publish: Script::new(&format!("{TRIM}{PUBLISH}")),
            open: Script::new(&format!("{TRIM}{OPEN}")),
            feeds: Mutex::new(HashMap::new()),
            changed: Notify::new(),
            reader_id: Mutex::new(None),
            error: Mutex::new(None),
        });
        tokio::spawn(read_loop(Arc::downgrade(&shared)));
        Ok(RedisBackend { shared })
    }
}

impl Shared {
    fn key(&self, topic: &str) -> String {
        format!("{}{topic}", self.prefix)
    }

    /// The counter of entries ever added to a topic's stream.
    fn counter_key(&self, topic: &str) -> String {
        format!("{}{topic}#n", self.prefix)
    }

    /// How far over its count bound a stream may grow before it is trimmed back, so trimming
    /// is a batch every so many publishes rather than a deletion on each.
    fn trim_batch(&self) -> usize {
        (self.limits.max_events / 10).clamp(1, 100)
    }

    fn failed(&self, what: &str, err: &redis::RedisError) -> HubError {
        let message = format!("Redis {what} failed: {err}");
        let mut error = lock(&self.error);
        if error.is_none() {
            tracing::warn!("{message}");
        }
        *error = Some(message.clone());
        HubError::unavailable(message)
    }

    fn succeeded(&self) {
        let mut error = lock(&self.error);
        if error.take().is_some() {
            tracing::info!("Redis is reachable again");
        }
    }

    fn age_ms(&self) -> u64 {
        u64::try_from(self.limits.max_age.as_millis())
            .unwrap_or(u64::MAX)
            .min(i64::MAX as u64 / 2)
    }

    async fn publish(&self, topic: &str, event: Event) -> Result<Event, HubError> {
        let body = event.without_id();
        let mut conn = self.manager.clone();
        let id: String = self
            .publish
            .key(self.key(topic))
            .key(self.counter_key(topic))
            .arg(self.limits.max_events)
            .arg(self.trim_batch())
            .arg(self.age_ms())
            .arg(body.as_ref())
            .invoke_async(&mut conn)
            .await
            .map_err(|err| self.failed("XADD", &err))?;
        self.succeeded();
        event.with_id(&id).map_err(HubError::event)
    }

    async fn open(
        &self,
        topic: &str,
        after: Option<&LastEventId>,
        options: &ReplayOptions,
    ) -> Result<Opened, HubError> {
        let max_replay = options.max_replay.max(1);
        let parsed = after.map(|after| after.as_str().and_then(StreamId::parse));
        let malformed = matches!(parsed, Some(None));

        // Live first: every entry this process delivers from now on reaches this receiver.
        let (receiver, topic_key): (_, Arc<str>) = {
            let mut feeds = lock(&self.feeds);
            let key: Arc<str> = match feeds.get_key_value(topic) {
                Some((key, _)) => key.clone(),
                None => topic.into(),
            };
            let feed = feeds.entry(key.clone()).or_insert_with(|| Feed {
                sender: broadcast::channel(self.queue).0,
                position: None,
                ordinal: 0,
            });
            (feed.sender.subscribe(), key)
        };

        let mut conn = self.manager.clone();
        let reply: Value = self
            .open
            .key(self.key(topic))
            .key(self.counter_key(topic))
            .arg(
                parsed
                    .flatten()
                    .map(|id| id.to_string())
                    .unwrap_or_default(),
            )
            .arg(max_replay + 1)
            .arg(self.age_ms())
            .arg(options.resume.as_str())
            .arg(if malformed { "1" } else { "0" })
            .arg(self.limits.max_events)
            .arg(self.trim_batch())
            .invoke_async(&mut conn)
            .await
            .map_err(|err| {
                self.forget_if_unused(&topic_key);
                self.failed("subscribe", &err)
            })?;
        self.succeeded();
        let OpenReply {
            last,
            deleted,
            reason,
            entries,
            ordinal,
        } = parse_open(reply)
            .ok_or_else(|| HubError::unavailable("unexpected reply to the open script"))?;

        let gap = reason.map(|reason| Gap {
            reason,
            resume: options.resume,
            resume_after: Some(match options.resume {
                GapResume::Oldest => deleted.to_string(),
                GapResume::Live => last.to_string(),
            }),
            last_id: (last != StreamId::default()).then(|| last.to_string()),
        });
        let mut replay = decode(entries);
        let mut after = last;
        if replay.len() <= max_replay {
            // Position the topic's reader at this snapshot if it is new; if the reader is
            // already past it, read the entries in between so none is missed.
            let (reader_at, new_topic) = {
                let mut feeds = lock(&self.feeds);
                match feeds.get_mut(&topic_key) {
                    Some(feed) => {
                        let new_topic = feed.position.is_none();
                        if new_topic {
                            feed.ordinal = ordinal;
                        }
                        (*feed.position.get_or_insert(last), new_topic)
                    }
                    None => (last, false),
                }
            };
            if new_topic {
                self.wake_reader().await;
            }
            if reader_at > last {
                let mut conn = self.manager.clone();
                let between: Value = redis::cmd("XRANGE")
                    .arg(self.key(topic))
                    .arg(format!("({last}"))
                    .arg(reader_at.to_string())
                    .arg("COUNT")
                    .arg(max_replay + 1 - replay.len())
                    .query_async(&mut conn)
                    .await
                    .map_err(|err| self.failed("XRANGE", &err))?;
                replay.extend(decode(items(between)));
            }
            // Whatever the receiver got at or before `after` is in the replay: the hub drops it.
            after = last.max(reader_at);
        }
        if replay.len() > max_replay {
            // Cut at the cap: the client comes back for the rest.
            replay.truncate(max_replay);
            return Ok(Opened {
                gap,
                replay,
                live: None,
            });
        }
        Ok(Opened {
            gap,
            replay,
            live: Some(Live {
                receiver,
                after: after.position(),
            }),
        })
    }

    fn forget_if_unused(&self, topic: &str) {
        let mut feeds = lock(&self.feeds);
        if feeds
            .get(topic)
            .is_some_and(|feed| feed.sender.receiver_count() <= 1 && feed.position.is_none())
        {
            feeds.remove(topic);
        }
    }

    /// Makes the reader include a new topic now rather than after its current `XREAD`.
    async fn wake_reader(&self) {
        self.changed.notify_one();
        let id = *lock(&self.reader_id);
        if let Some(id) = id {
            let mut conn = self.manager.clone();
            let _: Result<i64, _> = redis::cmd("CLIENT")
                .arg("UNBLOCK")
                .arg(id)
                .query_async(&mut conn)
                .await;
        }
    }

    /// Fans out the entries of one `XREAD` reply.
    fn deliver(&self, reply: Value) {
        let mut feeds = lock(&self.feeds);
        for (key, entries) in streams_of(reply) {
            let Some(topic) = key.strip_prefix(&self.prefix) else {
                continue;
            };
            let Some(feed) = feeds.get_mut(topic) else {
                continue;
            };
            for (id, ordinal, event) in decode_entries(entries) {
                if feed.position.is_some_and(|position| id <= position) {
                    continue;
                }
                if ordinal != feed.ordinal + 1 {
                    // Entries were trimmed before this process read them: its subscribers of
                    // this topic must not go on as if nothing was missed. Their streams end
                    // with a `retry:` hint; they reconnect and get the `gap` event.
                    tracing::warn!(
                        topic,
                        "entries were trimmed before they were read; ending the topic's streams"
                    );
                    feed.sender = broadcast::channel(self.queue).0;
                }
                feed.position = Some(id);
                feed.ordinal = ordinal;
                if let Some(event) = event {
                    let _ = feed.sender.send(Published {
                        position: id.position(),
                        event,
                    });
                }
            }
        }
    }

    /// The topics to read and where from; forgets topics nobody here subscribes to any more.
    fn reading(&self) -> Vec<(String, StreamId)> {
        let mut feeds = lock(&self.feeds);
        feeds.retain(|_, feed| feed.sender.receiver_count() > 0);
        feeds
            .iter()
            .filter_map(|(topic, feed)| Some((self.key(topic), feed.position?)))
            .collect()
    }
}

/// Reads new entries for every topic with local subscribers and fans them out, until the
/// backend is dropped.
async fn read_loop(shared: Weak<Shared>) {
    let mut conn: Option<MultiplexedConnection> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(this) = shared.upgrade() else {
            return;
        };
        let streams = this.reading();
        let Some(connection) = conn.as_mut() else {
            match connect(&this.client).await {
                Ok((connection, id)) => {
                    *lock(&this.reader_id) = Some(id);
                    conn = Some(connection);
                    backoff = Duration::from_millis(100);
                    this.succeeded();
                }
                Err(err) => {
                    this.failed("connection", &err);
                    drop(this);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            continue;
        };
        if streams.is_empty() {
            // Nothing to read: check that Redis answers, so health is current on an idle
            // server too, then wait for a topic (or the next check).
            match redis::cmd("PING").query_async::<String>(connection).await {
                Ok(_) => this.succeeded(),
                Err(err) => {
                    this.failed("PING", &err);
                    *lock(&this.reader_id) = None;
                    conn = None;
                }
            }
            let changed = this.changed.notified();
            let _ = tokio::time::timeout(BLOCK, changed).await;
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
                this.succeeded();
                this.deliver(reply);
            }
            Err(err) => {
                this.failed("XREAD", &err);
                *lock(&this.reader_id) = None;
                conn = None;
                drop(this);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

async fn connect(client: &Client) -> redis::RedisResult<(MultiplexedConnection, i64)> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(BLOCK + Duration::from_secs(5)));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let id: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut conn)
        .await?;
    Ok((conn, id))
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

/// The open script's reply.
struct OpenReply {
    /// The stream's last generated id.
    last: StreamId,
    /// The largest id ever deleted from it.
    deleted: StreamId,
    reason: Option<GapReason>,
    entries: Vec<Value>,
    /// The ordinal of the entry at `last`.
    ordinal: u64,
}

/// `{ last, deleted, reason, entries, ordinal }` of the open script.
fn parse_open(reply: Value) -> Option<OpenReply> {
    let mut parts = items(reply).into_iter();
    let last = StreamId::parse(text(&parts.next()?)?)?;
    let deleted = StreamId::parse(text(&parts.next()?)?)?;
    let reason = match text(&parts.next()?)? {
        "" => None,
        "evicted" => Some(GapReason::Evicted),
        "unknown" => Some(GapReason::Unknown),
        _ => Some(GapReason::Malformed),
    };
    let entries = items(parts.next()?);
    let ordinal = match parts.next()? {
        Value::Int(n) => u64::try_from(n).ok()?,
        _ => return None,
    };
    Some(OpenReply {
        last,
        deleted,
        reason,
        entries,
        ordinal,
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

/// Each entry's id, ordinal and event (`None` for an entry that is not a stored event).
fn decode_entries(entries: Vec<Value>) -> Vec<(StreamId, u64, Option<Event>)> {
    entries
        .into_iter()
        .filter_map(|entry| {
            let mut entry = items(entry).into_iter();
            let id_text = text(&entry.next()?)?.to_owned();
            let id = StreamId::parse(&id_text)?;
            let fields = items(entry.next()?);
            let mut body = None;
            let mut ordinal = 0;
            for pair in fields.chunks(2) {
                match pair {
                    [name, Value::BulkString(value)] if text(name) == Some("e") => {
                        body = Some(Bytes::copy_from_slice(value));
                    }
                    [name, value] if text(name) == Some("n") => {
                        ordinal = text(value).and_then(|n| n.parse().ok()).unwrap_or(0);
                    }
                    _ => {}
                }
            }
            let event = body.and_then(|body| Event::from_stored(body, &id_text));
            if event.is_none() {
                tracing::warn!(id = %id_text, "skipping a stream entry that is not a stored event");
            }
            Some((id, ordinal, event))
        })
        .collect()
}

/// The stored events among `entries`, in order.
fn decode(entries: Vec<Value>) -> Vec<Event> {
    decode_entries(entries)
        .into_iter()
        .filter_map(|(_, _, event)| event)
        .collect()
}

impl Backend for RedisBackend {
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        event: Event,
    ) -> BoxFuture<'a, Result<Event, HubError>> {
        self.shared.publish(topic, event).boxed()
    }

    fn open<'a>(
        &'a self,
        topic: &'a str,
        after: Option<&'a LastEventId>,
        options: &'a ReplayOptions,
    ) -> BoxFuture<'a, Result<Opened, HubError>> {
        self.shared.open(topic, after, options).boxed()
    }

    fn health(&self) -> Health {
        match lock(&self.shared.error).as_ref() {
            None => Health::Ok,
            Some(why) => Health::Unavailable(why.clone()),
        }
    }
}
