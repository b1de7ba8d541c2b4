//! Event streams and content encodings: the layer never writes into a body it cannot read.
//!
//! Two cases meet here.
//!
//! - **Already encoded.** A handler's event stream whose response carries `Content-Encoding`
//!   (set by an inner layer, such as tower-http's `CompressionLayer` with a predicate that
//!   compresses event streams) is compressed bytes the layer cannot read: it cannot tell where
//!   an event ends, and a comment or hint written into it would corrupt it. It passes untouched:
//!   no initial comment, padding, `retry:` hint, keep-alive or [`Connection::send`] event is
//!   ever written into it, and a warning is logged for each such response. What needs no bytes
//!   still applies: its headers, the registry entry (bytes counted, events not), the connection
//!   limits (a refused stream is answered with the layer's own plain body, without the
//!   `Content-Encoding`), and the end at shutdown, at [`max_lifetime`] and on
//!   [`Registry::close`], which is an end without a `retry:` hint (the client sees a
//!   compressed stream cut short, and reconnects as after a dropped connection).
//! - **Compressed here** (feature `compression`, [`SseLayer::compression`]). The layer
//!   compresses the stream itself, after it has added its own bytes: each event once for all
//!   the streams that send it (the default), or in one compression context per stream; either
//!   way flushed at the end of every event and every keep-alive comment, so each one is
//!   decodable as soon as it is sent, and finished when the stream ends.
//!
//! [`Connection::send`]: crate::registry::Connection::send
//! [`max_lifetime`]: crate::SseLayer::max_lifetime
//! [`Registry::close`]: crate::registry::Registry::close
//! [`SseLayer::compression`]: crate::SseLayer::compression

use http::{HeaderMap, header};

use super::SseBody;
use super::config::Config;
use crate::registry::Registration;

/// The encoding a request's `Accept-Encoding` allows for an event stream from this layer;
/// nothing without the `compression` feature.
#[cfg(feature = "compression")]
pub(crate) type Accepted = Option<Encoding>;
/// The encoding a request's `Accept-Encoding` allows for an event stream from this layer;
/// nothing without the `compression` feature.
#[cfg(not(feature = "compression"))]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Accepted;

/// The layer's compression settings ([`Config`]); nothing without the `compression` feature.
#[cfg(feature = "compression")]
pub(crate) type Settings = Option<Compressing>;
/// The layer's compression settings ([`Config`]); nothing without the `compression` feature.
#[cfg(not(feature = "compression"))]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Settings;

/// Reads the request's `Accept-Encoding`, only when the layer compresses.
#[cfg(feature = "compression")]
pub(crate) fn accepted(headers: &HeaderMap, config: &Config) -> Accepted {
    let offered = &config.compression.as_ref()?.offered;
    negotiate(headers.get_all(header::ACCEPT_ENCODING), offered)
}

/// Reads the request's `Accept-Encoding`, only when the layer compresses.
#[cfg(not(feature = "compression"))]
pub(crate) fn accepted(_headers: &HeaderMap, config: &Config) -> Accepted {
    let Settings = config.compression;
    Accepted
}

/// The body of a registered event stream: untouched if it arrived encoded, compressed if the
/// layer compresses and the client accepts an encoding, else the layer's plain stream.
pub(crate) fn stream_body<B: http_body::Body>(
    headers: &mut HeaderMap,
    body: B,
    config: &Config,
    registration: Registration,
    accepted: Accepted,
) -> SseBody<B> {
    if let Some(coding) = content_coding(headers) {
        tracing::warn!(
            content_encoding = ?coding,
            "an event stream arrived already encoded: it is passed on untouched, without \
             keep-alive comments, initial comment, retry hints or sent events; apply the \
             compression layer outside SseLayer (`.layer(sse).layer(compression)`), or let \
             SseLayer compress (feature `compression`)"
        );
        registration.shared.refuse_sends();
        return SseBody::encoded(body, config, registration);
    }
    #[cfg(feature = "compression")]
    if let Some(compressing) = &config.compression {
        vary_on_accept_encoding(headers);
        if let Some(encoding) = accepted {
            headers.insert(header::CONTENT_ENCODING, encoding.header_value());
            let inner = SseBody::stream(body, config, registration);
            return SseBody::compressed(Compressed::new(inner, encoding, compressing));
        }
    }
    #[cfg(not(feature = "compression"))]
    let Accepted = accepted;
    SseBody::stream(body, config, registration)
}

/// Readies the headers of an event stream refused by a limit for the layer's own plain body,
/// which replaces the handler's, encoded or not.
pub(crate) fn refused(headers: &mut HeaderMap) {
    if content_coding(headers).is_some() {
        headers.remove(header::CONTENT_ENCODING);
    }
}

/// The response's content coding, unless there is none: a `Content-Encoding` with no coding
/// in it (empty, or only spaces and commas) or only `identity` (which is not a content coding
/// but turns up) counts as none.
fn content_coding(headers: &HeaderMap) -> Option<&http::HeaderValue> {
    headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .find(|value| {
            value
                .as_bytes()
                .split(|&byte| byte == b',')
                .map(<[u8]>::trim_ascii)
                .any(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case(b"identity"))
        })
}

#[cfg(not(feature = "compression"))]
pub(crate) use self::disabled::Compressed;
#[cfg(feature = "compression")]
pub use self::enabled::Compression;
#[cfg(feature = "compression")]
pub(crate) use self::enabled::{
    Compressed, Compressing, Encoding, negotiate, vary_on_accept_encoding,
};

#[cfg(feature = "compression")]
mod shared;

#[cfg(feature = "compression")]
mod enabled {
    use std::io;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll, ready};

    use async_compression::Level;

    use async_compression::codecs::{BrotliEncoder, EncodeV2, GzipEncoder, ZstdEncoder};
    use async_compression::core::util::{PartialBuffer, WriteBuffer};
    use async_compression::zstd::CParameter;
    use bytes::{Bytes, BytesMut};
    use http::{HeaderMap, HeaderValue, header};
    use http_body::{Body, Frame, SizeHint};

    use super::super::SseBody;
    use super::super::body::Boundary;
    use super::shared;

    /// Which encodings [`SseLayer::compression`](crate::SseLayer::compression) may compress
    /// event streams with (all three unless left out), and how. The client's `q` values
    /// decide first; between encodings it weighs alike, the mode's preference decides.
    ///
    /// **Shared, the default** ([`shared`](Self::shared)): each event is compressed once, on
    /// its own, and the same bytes go to every stream that sends it (every subscriber of a hub
    /// topic). A stream keeps no context and no memory of its own. Brotli is preferred, then
    /// gzip, then zstd (one frame per event in this mode, which some client libraries stop
    /// after):
    ///
    /// | encoding | settings | bytes per 1 KiB JSON event | CPU added per delivery, 1 000 streams sending each event | 1 stream per event |
    /// |----------|----------|----------------------------|-------------------------------|--------------------|
    /// | `br`     | quality 2 | 416 | 0.06 µs | 20.1 µs |
    /// | `gzip`   | level 1   | 437 | 0.20 µs | 17.1 µs |
    /// | `zstd`   | level 1   | 410 | 0.05 µs | 6.3 µs |
    ///
    /// **One context per stream** ([`per_stream`](Self::per_stream)): zstd is preferred
    /// (about gzip's CPU and bytes per event, and a window four times as long), then gzip,
    /// then Brotli (which keeps no context between events):
    ///
    /// | encoding | settings | context kept between events | memory per stream, about | CPU added per delivery, 1 KiB JSON, 1 000 streams |
    /// |----------|----------|-----------------------------|--------------------------|------------------------------|
    /// | `zstd`   | level −1, 4 096-entry match table | 128 KiB window | 190 KiB | 14.5 µs, 296 bytes |
    /// | `gzip`   | level 1  | 32 KiB window  | 270 KiB | 17.5 µs, 291 bytes |
    /// | `br`     | quality 1 | none (each event on its own) | 3 KiB | 19.5 µs, 438 bytes |
    ///
    /// Each stream has its own context, which is where the memory goes: an event is
    /// compressed against the earlier ones still in the window, so a page sent again with
    /// small changes (a server-driven UI's morph) compresses to little more than the changes
    /// (a 48 KiB page sent again with one row changed: 50 bytes to an eighth of the first send
    /// with zstd, depending on the rows; gzip's window is too short for it). The fastest
    /// settings are used because every stream compresses every event it sends: a topic with
    /// a thousand subscribers compresses each event a thousand times, and with a thousand
    /// contexts none is in the CPU cache when its event comes, so what a context reads at
    /// random (zstd's match table, kept small here) costs more than the compressing itself.
    ///
    /// The tables' CPU columns are the microbenchmark (`WARM=300 STREAMS=1000 cargo bench
    /// --features compression --bench compress`, every stream's window full; 1 057-byte
    /// events; 2 cores, 2026-12-02; the "1 stream per event" column with
    /// `STREAMS=1`): the CPU a delivery costs more than a plain one. In the benchmark harness
    /// (`cargo run --release -p tower-sse-bench --bin run -- --quick --servers tower-sse
    /// --scenarios compression`: 1 KiB JSON events, a thousand subscribers, 2 cores), shared
    /// compression measured 0.72 to 0.91 times the plain stream's CPU per delivery in every
    /// encoding, within issue 12's 1.3 times, and one context per stream 2.33 to 3.17
    /// times (`BENCHMARKS.md`).
    ///
    /// **Which mode.** Keep the default for events many streams send (hub topics, broadcasts):
    /// its memory is the cache's, bounded, whatever the number of streams. Choose
    /// [`per_stream`](Self::per_stream) for streams whose events are their own (a topic per
    /// user, document or response) when what the events repeat matters more than CPU and
    /// memory per stream. Shared, an event that only one stream sends is compressed for it
    /// alone, from a fresh state (the "1 stream per event" column) and against nothing
    /// before it: a page morph sent again costs nearly its first size (20 morphs of a 7 KiB
    /// table, one row changed each time: 20 to 30 KB shared, 3 KB with per-stream zstd), and
    /// events of a few dozen bytes come out larger than plain (500 LLM-style tokens of about
    /// 24 bytes, 12 168 bytes plain: 15 168 shared in gzip or Brotli, 16 668 in zstd; per
    /// stream 5 056 in gzip, 8 478 in zstd; the tests
    /// `small_events_are_larger_than_plain_when_shared_and_smaller_per_stream` and
    /// `page_morphs_are_several_times_smaller_per_stream_than_shared` print both).
    ///
    /// ```
    /// use tower_sse::SseLayer;
    /// use tower_sse::layer::Compression;
    ///
    /// // Each event once for all its subscribers, in Brotli or gzip, never zstd.
    /// let layer = SseLayer::new().compression(Compression::new().no_zstd());
    /// // One context per stream, for a server-driven UI's page morphs.
    /// let morphs = SseLayer::new().compression(Compression::new().per_stream());
    /// # let _ = (layer, morphs);
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[must_use]
    pub struct Compression {
        zstd: bool,
        br: bool,
        gzip: bool,
        shared: bool,
        cache_entries: usize,
        cache_bytes: usize,
    }

    impl Default for Compression {
        fn default() -> Self {
            Self::new()
        }
    }

    impl Compression {
        /// The shared mode's cache holds at most this many events by default
        /// ([`cache_entries`](Self::cache_entries)).
        pub const DEFAULT_CACHE_ENTRIES: usize = 1024;
        /// The shared mode's cache holds at most this many bytes by default (events and
        /// their compressed bytes; [`cache_bytes`](Self::cache_bytes)).
        pub const DEFAULT_CACHE_BYTES: usize = 4 << 20;
        /// The most events the shared mode's cache can hold: a larger
        /// [`cache_entries`](Self::cache_entries) is taken as this. The cache's table is
        /// allocated when the layer is built, about 100 bytes per entry (6.4 MB for this
        /// many), and its order of insertion takes up to 32 more per entry as it fills;
        /// neither counts in [`cache_bytes`](Self::cache_bytes).
        pub const MAX_CACHE_ENTRIES: usize = 1 << 16;

        /// All three encodings, each event compressed once for all the streams that send it
        /// ([`shared`](Self::shared), the default), preferring `br`, then `gzip`, then `zstd`.
        /// For one context per stream, add [`per_stream`](Self::per_stream).
        pub fn new() -> Self {
            Compression {
                zstd: true,
                br: true,
                gzip: true,
                shared: true,
                cache_entries: Self::DEFAULT_CACHE_ENTRIES,
                cache_bytes: Self::DEFAULT_CACHE_BYTES,
            }
        }

        /// One compression context per stream, which compresses each event against the
        /// ones the stream sent before it (not the default): the fewest bytes for events
        /// that repeat earlier ones, such as a server-driven UI's morphs of a page, for the
        /// CPU of compressing every event once per stream that sends it, and the memory of a
        /// context per stream (see the table above). Prefers `zstd` (the longest window),
        /// then `gzip`, then `br`.
        ///
        /// **Compression leaks sizes.** With zstd or gzip, an event is compressed against
        /// the earlier ones of its stream (Brotli keeps no context here), so in a stream
        /// that mixes content an attacker can influence with secrets, the compressed sizes
        /// can give the secrets away (as in BREACH). The
        /// default, [`shared`](Self::shared), compresses each event on its own, which limits
        /// that to what shares one event.
        pub fn per_stream(mut self) -> Self {
            self.shared = false;
            self
        }

        /// Compresses each event once, on its own, and sends the same compressed bytes to
        /// every stream that sends the event (every subscriber of a topic): the default, which
        /// [`Compression::new`] already sets. From a cache the
        /// layer's streams share ([`cache_entries`](Self::cache_entries),
        /// [`cache_bytes`](Self::cache_bytes)). A stream keeps no context: an event does not
        /// compress against the ones before it, and a stream costs no memory of its own.
        /// The layer's own comments and hints are compressed the same way. Each stream is
        /// still one valid stream of its encoding, which a decoder reads as it arrives (for
        /// zstd, one that reads on across frames: see below).
        ///
        /// The event is found again by the identity of its bytes: a hub's topic hands every
        /// subscriber the same bytes of an event, as does any handler that clones one
        /// [`Event`](crate::Event) to many streams. An event built anew for each stream is
        /// compressed for each (as correct, and as costly, as without the cache).
        ///
        /// **zstd is one frame per event** in this mode (and per keep-alive comment or
        /// hint): a valid zstd stream (RFC 8878 §3.1: any number of frames, one after
        /// another), which browsers and curl decode whole, but some client libraries stop
        /// after the first frame unless told to go on (Python's `zstandard` without
        /// `read_across_frames=True`, older `reqwest`, some Node and Bun versions): such a
        /// client sees only the start of the stream. So this mode prefers `br`, then `gzip`
        /// (one stream each in every decoder), and chooses zstd only for a client that
        /// weighs it above both, or when it is the only one offered that the client accepts.
        /// Per-stream zstd is a single frame.
        /// To never send it, leave zstd out (`Compression::new().no_zstd()`).
        ///
        /// **Compression leaks sizes** less in this mode: each event is compressed on its
        /// own, so what a compressed size tells is limited to what shares one event (see
        /// [`per_stream`](Self::per_stream)).
        ///
        /// Memory: the cache ([`cache_entries`](Self::cache_entries),
        /// [`cache_bytes`](Self::cache_bytes)), and idle compressors kept for reuse, up to 8
        /// gzip deflaters and 8 zstd contexts per layer, which are not counted in
        /// `cache_bytes`.
        pub fn shared(mut self) -> Self {
            self.shared = true;
            self
        }

        /// The most events the shared mode's cache holds (default
        /// [`DEFAULT_CACHE_ENTRIES`](Self::DEFAULT_CACHE_ENTRIES), at most
        /// [`MAX_CACHE_ENTRIES`](Self::MAX_CACHE_ENTRIES)), rounded down to a multiple of
        /// four that is a power of two (or to fewer than four); each encoding of an event
        /// counts once. 0 caches nothing: every stream compresses each event itself, without
        /// a context. An event is evicted by later ones, never by age: a new event takes the
        /// place of the oldest of the four it shares a place with, and, when its bytes do
        /// not fit [`cache_bytes`](Self::cache_bytes), of the oldest events in the cache; an
        /// event is gone at the latest once twice as many events as the cache holds were
        /// cached after it.
        pub fn cache_entries(mut self, entries: usize) -> Self {
            self.cache_entries = entries;
            self
        }

        /// The most bytes the shared mode's cache holds (default
        /// [`DEFAULT_CACHE_BYTES`](Self::DEFAULT_CACHE_BYTES)): the events it keeps (whose
        /// memory it keeps alive, as a slice of anything larger keeps all of it) and their
        /// compressed bytes. When a new event does not fit, the oldest events are evicted
        /// until it does; an event that does not fit on its own (its bytes and compressed
        /// bytes together larger than this) is not cached, but compressed for each stream.
        /// Not counted: the cache's table (see
        /// [`MAX_CACHE_ENTRIES`](Self::MAX_CACHE_ENTRIES)) and the idle compressors kept
        /// for reuse (see [`shared`](Self::shared)).
        pub fn cache_bytes(mut self, bytes: usize) -> Self {
            self.cache_bytes = bytes;
            self
        }

        /// Does not offer `zstd`.
        pub fn no_zstd(mut self) -> Self {
            self.zstd = false;
            self
        }

        /// Does not offer `br` (Brotli).
        pub fn no_br(mut self) -> Self {
            self.br = false;
            self
        }

        /// Does not offer `gzip`.
        pub fn no_gzip(mut self) -> Self {
            self.gzip = false;
            self
        }

        fn offers(self, encoding: Encoding) -> bool {
            match encoding {
                Encoding::Zstd => self.zstd,
                Encoding::Brotli => self.br,
                Encoding::Gzip => self.gzip,
            }
        }

        fn offers_any(self) -> bool {
            self.zstd || self.br || self.gzip
        }
    }

    impl crate::SseLayer {
        /// Compresses event streams for clients that accept it (`Accept-Encoding`), with the
        /// encodings of `compression` (see [`Compression`] for the settings and what each
        /// costs). Needs the `compression` feature; off unless set.
        ///
        /// The layer compresses after it has added its own bytes, each event once for all
        /// the streams that send it ([`Compression::shared`], the default) or in one context
        /// per stream ([`Compression::per_stream`]), and ends every event and every
        /// keep-alive comment with a flush, so each one reaches the client decodable at
        /// once. The response gets
        /// `Content-Encoding` and `Vary: Accept-Encoding`; a client that accepts none of the
        /// encodings (or none with a non-zero `q`) gets the plain stream, with the same
        /// `Vary`. A handler's event stream that is already encoded (by an inner layer) is
        /// never compressed twice: it passes untouched.
        ///
        /// Put no other compression layer around the layer for event streams: tower-http's
        /// `CompressionLayer` leaves them alone with its default predicate, and leaves any
        /// response alone that already has a `Content-Encoding`.
        ///
        /// ```
        /// use axum::{Router, routing::get};
        /// use futures_util::stream;
        /// use tower_sse::layer::Compression;
        /// use tower_sse::{Event, EventStream, SseLayer};
        ///
        /// async fn events() -> EventStream<impl futures_util::Stream<Item = Event>> {
        ///     EventStream::new(stream::iter([Event::data(r#"{"price":101.5}"#)]))
        /// }
        ///
        /// let app: Router = Router::new()
        ///     .route("/events", get(events))
        ///     .layer(SseLayer::new().compression(Compression::new()));
        /// # let _ = app;
        /// ```
        pub fn compression(self, compression: Compression) -> Self {
            self.update(|c| {
                c.compression = compression.offers_any().then(|| Compressing {
                    offered: compression,
                    cache: compression.shared.then(|| {
                        Arc::new(shared::Cache::new(
                            compression.cache_entries,
                            compression.cache_bytes,
                        ))
                    }),
                })
            })
        }
    }

    /// What [`SseLayer::compression`](crate::SseLayer::compression) sets: the settings, and
    /// in shared mode the cache of the layer and its clones.
    #[derive(Debug, Clone)]
    pub(crate) struct Compressing {
        pub(crate) offered: Compression,
        cache: Option<Arc<shared::Cache>>,
    }

    /// An encoding the layer compresses with.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Encoding {
        Zstd,
        Brotli,
        Gzip,
    }

    impl Encoding {
        /// Most preferred first, with one context per stream: zstd's window is the longest.
        const PER_STREAM_PREFERENCE: [Encoding; 3] =
            [Encoding::Zstd, Encoding::Gzip, Encoding::Brotli];
        /// Most preferred first, in shared mode, where no encoding keeps a context: zstd,
        /// one frame per event there, comes last (see [`Compression::shared`]).
        const SHARED_PREFERENCE: [Encoding; 3] = [Encoding::Brotli, Encoding::Gzip, Encoding::Zstd];

        fn preference(offered: &Compression) -> [Encoding; 3] {
            if offered.shared {
                Self::SHARED_PREFERENCE
            } else {
                Self::PER_STREAM_PREFERENCE
            }
        }

        fn index(self) -> usize {
            self as usize
        }

        /// The encoding a content-coding token names, if the layer has it.
        fn from_token(token: &[u8]) -> Option<Encoding> {
            if token.eq_ignore_ascii_case(b"zstd") {
                Some(Encoding::Zstd)
            } else if token.eq_ignore_ascii_case(b"br") {
                Some(Encoding::Brotli)
            } else if token.eq_ignore_ascii_case(b"gzip") || token.eq_ignore_ascii_case(b"x-gzip") {
                Some(Encoding::Gzip)
            } else {
                None
            }
        }

        pub(crate) fn header_value(self) -> HeaderValue {
            HeaderValue::from_static(match self {
                Encoding::Zstd => "zstd",
                Encoding::Brotli => "br",
                Encoding::Gzip => "gzip",
            })
        }
    }

    /// The encoding to answer `Accept-Encoding` with: the offered one the client weighs
    /// highest, the mode's preference ([`Encoding::preference`]) deciding between equals. A
    /// coding listed with `q=0` (or an unreadable `q`), or not listed and not covered by `*`,
    /// is never chosen; a coding listed more than once counts with its lowest weight. No
    /// header: no encoding.
    pub(crate) fn negotiate<'a>(
        values: impl IntoIterator<Item = &'a HeaderValue>,
        offered: &Compression,
    ) -> Option<Encoding> {
        // Weights in thousandths, as listed.
        let mut listed: [Option<u16>; 3] = [None; 3];
        let mut any: Option<u16> = None;
        for value in values {
            for item in value.as_bytes().split(|&b| b == b',') {
                let mut parts = item.split(|&b| b == b';');
                let coding = parts.next().unwrap_or_default().trim_ascii();
                let weight = parts
                    .filter_map(|param| {
                        let (name, value) = param.trim_ascii().split_at_checked(2)?;
                        name.eq_ignore_ascii_case(b"q=").then_some(value)
                    })
                    .next_back()
                    .map_or(Some(1000), qvalue)
                    .unwrap_or(0);
                let slot = if coding == b"*" {
                    &mut any
                } else if let Some(encoding) = Encoding::from_token(coding) {
                    &mut listed[encoding.index()]
                } else {
                    continue;
                };
                *slot = Some(slot.map_or(weight, |w| w.min(weight)));
            }
        }
        let mut best: Option<(Encoding, u16)> = None;
        for encoding in Encoding::preference(offered) {
            let weight = listed[encoding.index()].or(any).unwrap_or(0);
            if offered.offers(encoding) && weight > 0 && best.is_none_or(|(_, w)| weight > w) {
                best = Some((encoding, weight));
            }
        }
        best.map(|(encoding, _)| encoding)
    }

    /// A `qvalue` (`0`, `0.5`, `1.000`: at most three decimals, at most 1) in thousandths.
    fn qvalue(value: &[u8]) -> Option<u16> {
        let value = value.trim_ascii();
        let (&first, rest) = value.split_first()?;
        let whole = match first {
            b'0' => 0u16,
            b'1' => 1000,
            _ => return None,
        };
        let decimals = match rest {
            [] => return Some(whole),
            [b'.', decimals @ ..] if decimals.len() <= 3 => decimals,
            _ => return None,
        };
        let mut weight = whole;
        let mut scale = 100;
        for &digit in decimals {
            if !digit.is_ascii_digit() {
                return None;
            }
            weight += u16::from(digit - b'0') * scale;
            scale /= 10;
        }
        (weight <= 1000).then_some(weight)
    }

    /// Adds `Vary: Accept-Encoding`, unless a `Vary` already names it (or is `*`).
    pub(crate) fn vary_on_accept_encoding(headers: &mut HeaderMap) {
        let named = headers.get_all(header::VARY).iter().any(|value| {
            value.as_bytes().split(|&b| b == b',').any(|name| {
                let name = name.trim_ascii();
                name == b"*" || name.eq_ignore_ascii_case(b"accept-encoding")
            })
        });
        if !named {
            headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
        }
    }

    /// zstd's settings, chosen by measuring (see [`Compression`]): a fast level, the window
    /// that holds a page sent again, and a small match table. The table is what a stream's
    /// compression reads at random; with a thousand streams none of it is in the cache when
    /// an event comes, and each read is a miss. 4 096 entries (16 KiB) still find a 48 KiB
    /// page sent again (`compression_tests`); 1 024 did not.
    const ZSTD_LEVEL: i32 = -1;
    const ZSTD_WINDOW_LOG: u32 = 17;
    const ZSTD_HASH_LOG: u32 = 12;

    /// One stream's compression context.
    enum Encoder {
        Zstd(ZstdEncoder),
        // Boxed: Brotli's state is the large one.
        Brotli(Box<BrotliEncoder>),
        Gzip(GzipEncoder),
    }

    /// What one call into the codec does.
    #[derive(Clone, Copy)]
    enum Step {
        Encode,
        Flush,
        Finish,
    }

    impl Encoder {
        fn new(encoding: Encoding) -> Encoder {
            match encoding {
                Encoding::Zstd => Encoder::Zstd(ZstdEncoder::new_with_params(
                    ZSTD_LEVEL,
                    &[
                        CParameter::window_log(ZSTD_WINDOW_LOG),
                        CParameter::hash_log(ZSTD_HASH_LOG),
                        CParameter::checksum_flag(false),
                    ],
                )),
                Encoding::Brotli => {
                    let params = async_compression::brotli::EncoderParams::default()
                        .quality(Level::Precise(1));
                    Encoder::Brotli(Box::new(BrotliEncoder::new(params)))
                }
                Encoding::Gzip => Encoder::Gzip(GzipEncoder::new(Level::Fastest.into())),
            }
        }

        /// Compresses `data`, and with `flush` everything the context still holds, so that
        /// the bytes returned so far decode to all the input so far.
        fn compress(&mut self, data: &[u8], flush: bool) -> io::Result<Bytes> {
            // Outside the work, which may run again after its room ran out: it goes on
            // where it stopped.
            let mut input = PartialBuffer::new(data);
            self.with_scratch(data.len(), |encoder, out| {
                while !input.unwritten().is_empty() {
                    let before = (input.written_len(), out.written_len());
                    if out.has_no_spare_space() {
                        return Ok(false);
                    }
                    encoder.step(Step::Encode, &mut input, out)?;
                    if (input.written_len(), out.written_len()) == before {
                        return Err(io::Error::other("the compressor made no progress"));
                    }
                }
                if flush {
                    encoder.step(Step::Flush, &mut PartialBuffer::new(&[][..]), out)
                } else {
                    Ok(true)
                }
            })
        }

        /// Writes out what the context holds and ends the compressed stream.
        fn finish(&mut self) -> io::Result<Bytes> {
            self.with_scratch(0, |encoder, out| {
                encoder.step(Step::Finish, &mut PartialBuffer::new(&[][..]), out)
            })
        }

        /// Runs `work` with a scratch buffer of at least `len` plus some room, and
        /// returns a copy of what it wrote. `work` says whether it is done; if it is not
        /// (the room ran out: a large event, or one that did not compress), it runs again,
        /// with the room doubled, after its output so far. The bound stops a codec that
        /// would never be done.
        fn with_scratch(
            &mut self,
            len: usize,
            mut work: impl FnMut(&mut Self, &mut WriteBuffer<'_>) -> io::Result<bool>,
        ) -> io::Result<Bytes> {
            // Room for the event compressed, and then some: zstd compresses straight into a
            // buffer at least as large as its bound for the input, without a copy of its own.
            let mut scratch = vec![0; len + len / 4 + 1024];
            let mut out = WriteBuffer::new_initialized(&mut scratch[..]);
            if work(self, &mut out)? {
                return Ok(Bytes::copy_from_slice(out.written()));
            }
            // Rare: keep what was written, and go on in a larger buffer.
            let mut done = BytesMut::from(out.written());
            let mut room = scratch.len();
            for _ in 0..16 {
                room = room.saturating_mul(2);
                scratch.clear();
                scratch.resize(room, 0);
                let mut out = WriteBuffer::new_initialized(&mut scratch[..]);
                let finished = work(self, &mut out)?;
                done.extend_from_slice(out.written());
                if finished {
                    return Ok(done.freeze());
                }
            }
            Err(io::Error::other("the compressor did not finish flushing"))
        }

        /// One call into the codec, writing into `output`. For a flush or finish, returns
        /// whether it is done; an encode is done when all its input is in the context.
        fn step(
            &mut self,
            step: Step,
            input: &mut PartialBuffer<&[u8]>,
            output: &mut WriteBuffer<'_>,
        ) -> io::Result<bool> {
            match self {
                Encoder::Zstd(codec) => run(codec, step, input, output),
                Encoder::Brotli(codec) => run(&mut **codec, step, input, output),
                Encoder::Gzip(codec) => run(codec, step, input, output),
            }
        }
    }

    fn run<E: EncodeV2>(
        codec: &mut E,
        step: Step,
        input: &mut PartialBuffer<&[u8]>,
        output: &mut WriteBuffer<'_>,
    ) -> io::Result<bool> {
        match step {
            Step::Encode => codec
                .encode(input, output)
                .map(|()| input.unwritten().is_empty()),
            Step::Flush => codec.flush(output),
            Step::Finish => codec.finish(output),
        }
    }

    /// How a stream is compressed.
    enum Codec {
        /// With its own context, flushed at the end of each event and comment.
        PerStream {
            encoder: Encoder,
            /// Where the plain bytes compressed so far end.
            boundary: Boundary,
        },
        /// Each frame on its own, through the layer's cache.
        Shared(shared::Stream),
    }

    impl Codec {
        /// The compressed bytes of `data`, the stream's next frame, if there are any yet.
        fn compress(&mut self, data: &Bytes) -> io::Result<Bytes> {
            match self {
                Codec::PerStream { encoder, boundary } => {
                    *boundary = boundary.advance(data);
                    encoder.compress(data, boundary.at_event_end())
                }
                Codec::Shared(stream) => stream.compress(data),
            }
        }

        fn finish(&mut self) -> io::Result<Bytes> {
            match self {
                Codec::PerStream { encoder, .. } => encoder.finish(),
                Codec::Shared(stream) => stream.finish(),
            }
        }
    }

    /// The body of a stream the layer compresses: the layer's own stream body, compressed.
    pub(crate) struct Compressed<B> {
        inner: Pin<Box<SseBody<B>>>,
        codec: Codec,
        /// Trailers of the inner body, sent once the compressed stream is finished.
        trailers: Option<HeaderMap>,
        done: bool,
    }

    impl<B> Compressed<B> {
        pub(crate) fn new(inner: SseBody<B>, encoding: Encoding, settings: &Compressing) -> Self {
            let codec = match &settings.cache {
                Some(cache) => Codec::Shared(shared::Stream::new(encoding, cache.clone())),
                None => Codec::PerStream {
                    encoder: Encoder::new(encoding),
                    boundary: Boundary::START,
                },
            };
            Compressed {
                inner: Box::pin(inner),
                codec,
                trailers: None,
                done: false,
            }
        }

        /// Ends the compressed stream: its last bytes, then the trailers if any.
        fn finish<E>(&mut self) -> Poll<Option<Result<Frame<Bytes>, E>>> {
            self.done = true;
            match self.codec.finish() {
                Ok(last) if !last.is_empty() => Poll::Ready(Some(Ok(Frame::data(last)))),
                Ok(_) => Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t)))),
                Err(err) => {
                    tracing::error!(%err, "compressing an event stream failed; it ends here");
                    self.trailers = None;
                    Poll::Ready(None)
                }
            }
        }
    }

    impl<B: Body> Body for Compressed<B> {
        type Data = Bytes;
        type Error = B::Error;

        fn poll_frame(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
            let this = self.get_mut();
            loop {
                if this.done {
                    return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
                }
                let frame = match ready!(this.inner.as_mut().poll_frame(cx)) {
                    Some(Ok(frame)) => frame,
                    Some(Err(err)) => {
                        this.done = true;
                        return Poll::Ready(Some(Err(err)));
                    }
                    None => return this.finish(),
                };
                let data = match frame.into_data() {
                    Ok(data) => data,
                    Err(frame) => {
                        this.trailers = frame.into_trailers().ok();
                        return this.finish();
                    }
                };
                match this.codec.compress(&data) {
                    Ok(out) if !out.is_empty() => return Poll::Ready(Some(Ok(Frame::data(out)))),
                    // All of it is in the context, in the middle of an event: on to the rest.
                    Ok(_) => {}
                    Err(err) => {
                        tracing::error!(%err, "compressing an event stream failed; it ends here");
                        this.done = true;
                        return Poll::Ready(None);
                    }
                }
            }
        }

        fn is_end_stream(&self) -> bool {
            self.done && self.trailers.is_none()
        }

        fn size_hint(&self) -> SizeHint {
            SizeHint::default()
        }
    }
}

#[cfg(not(feature = "compression"))]
mod disabled {
    use std::convert::Infallible;
    use std::marker::PhantomData;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use http_body::{Body, Frame};

    /// Without the `compression` feature no stream is compressed: this body cannot be made.
    pub(crate) struct Compressed<B> {
        never: Infallible,
        _body: PhantomData<B>,
    }

    impl<B: Body> Body for Compressed<B> {
        type Data = Bytes;
        type Error = B::Error;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
            match self.never {}
        }
    }
}
