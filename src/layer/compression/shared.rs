//! Shared compression ([`Compression::shared`](super::Compression::shared)): each event is
//! compressed once, and the same compressed bytes go to every stream that sends it.
//!
//! A piece is one frame of a stream's plain bytes (an event, a keep-alive comment, the initial
//! comment or a `retry:` hint) compressed on its own, from a fresh compressor state, so that
//! it does not depend on what a stream sent before it. What each encoding makes of pieces:
//!
//! - **gzip**: a piece is raw deflate ended by a sync flush (byte aligned, not final), so the
//!   pieces of a stream concatenate into one deflate stream. A stream starts with the gzip
//!   header and ends with a final empty block and the trailer: the CRC-32 of everything, from
//!   the pieces' own (`crc32fast::Hasher::combine`), and the length mod 2³².
//! - **zstd**: a piece is a frame; a stream is one frame after another (RFC 8878).
//! - **br**: a piece is a bare, catable Brotli stream (the `brotli` crate's `catable` and
//!   `bare_stream`, flushed, never finished): meta-blocks without the stream's window header
//!   or last block, byte aligned at both ends, and with no reference to anything before
//!   them (no static dictionary, no distance from an earlier piece). A stream starts with the
//!   window header and a padding meta-block and ends with an empty last meta-block, so
//!   concatenating pieces takes no bit shifting (what `brotli::concat::BroCatli` would do for
//!   streams not crafted for it).
//!
//! A [`Cache`] per layer holds the pieces of the frames sent recently, keyed by the identity
//! of the frame's `Bytes` (address and length): an event published to a topic reaches each
//! subscriber's body as a clone of the same `Bytes`. The cache holds that `Bytes`, so its
//! memory cannot be freed and reused for other bytes while the entry lives; a hit compares
//! address and length with it. A miss compresses the frame and inserts the piece: whether a
//! frame is found never changes what a stream sends, only what it costs.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use brotli::enc::StandardAlloc;
use brotli::enc::encode::{BrotliEncoderOperation, BrotliEncoderStateStruct};
use bytes::Bytes;
use flate2::FlushCompress;

use super::{Compression, Encoding};

/// gzip's header: no name, comment or time, operating system unknown (RFC 1952).
const GZIP_HEAD: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
/// A final, empty deflate block with fixed codes: BFINAL 1, BTYPE 01, end-of-block (RFC 1951).
const DEFLATE_END: [u8; 2] = [0x03, 0x00];

/// The window (log₂ of its size) the Brotli pieces are compressed for, and which the stream's
/// header declares: a piece's distances must fit the window the decoder was told of.
const BROTLI_WINDOW: u32 = 22;
/// A Brotli stream's start for [`BROTLI_WINDOW`]: the window bits (`1011` for 22, written
/// least significant bit first), then a padding meta-block (ISLAST 0, MNIBBLES 0, reserved 0,
/// MSKIPBYTES 0) to the byte boundary (RFC 7932). `brotli_head_is_what_the_encoder_writes`
/// checks it against the encoder.
const BROTLI_HEAD: [u8; 2] = [0x6b, 0x00];
/// A Brotli stream's end: an empty last meta-block (ISLAST 1, ISLASTEMPTY 1), padded.
const BROTLI_END: [u8; 1] = [0x03];
/// Brotli's quality. Not 1, as in per-stream mode: a catable stream takes the general path,
/// where quality 1 sets up half a megabyte of buffers for each piece, so that 2 is both faster
/// (about 20 against 40 µs for a 1 KiB event) and smaller (about 7 %).
const BROTLI_QUALITY: i32 = 2;

/// zstd's level for a piece. Each piece is compressed once for all its streams, so a level
/// that takes a little more time than per-stream mode's −1 costs little per delivery.
const ZSTD_LEVEL: i32 = 1;
/// gzip's level: miniz_oxide's fastest.
const DEFLATE_LEVEL: u32 = 1;

/// Entries of a set: a frame can sit in any of them, so a few hot frames whose addresses fall
/// in one set do not evict one another.
const WAYS: usize = 4;
/// Idle compressors kept for reuse, per encoding.
const POOL: usize = 8;

/// The comment the layer keeps streams alive with, compressed once per encoding.
const KEEP_ALIVE: &[u8] = b":\n\n";

/// One frame compressed on its own, and what a stream needs to know of its plain bytes.
#[derive(Clone)]
pub(crate) struct Piece {
    bytes: Bytes,
    /// The CRC-32 and length of the plain bytes (computed for gzip only).
    crc: crc32fast::Hasher,
}

/// A frame's piece, kept with the frame that identifies it.
struct Entry {
    /// The frame: held, so that no other bytes can have its address while the entry lives.
    plain: Bytes,
    encoding: Encoding,
    piece: Piece,
    /// When the entry was inserted: its number in the cache's [`Order`].
    seq: u64,
}

impl Entry {
    fn is(&self, plain: &Bytes, encoding: Encoding) -> bool {
        self.plain.as_ptr() == plain.as_ptr()
            && self.plain.len() == plain.len()
            && self.encoding == encoding
    }

    /// What the entry counts against the cache's byte bound.
    fn cost(&self) -> usize {
        self.plain.len() + self.piece.bytes.len()
    }
}

/// The entries one lock guards.
#[derive(Default)]
struct Set {
    ways: [Option<Entry>; WAYS],
}

impl Set {
    fn find(&self, plain: &Bytes, encoding: Encoding) -> Option<&Entry> {
        self.ways.iter().flatten().find(|e| e.is(plain, encoding))
    }

    /// The way of the first `ways` a new entry goes to: a free one, else the oldest entry's.
    fn way_for_new(&self, ways: usize) -> usize {
        let ways = &self.ways[..ways];
        ways.iter().position(Option::is_none).unwrap_or_else(|| {
            (0..ways.len())
                .min_by_key(|&way| ways[way].as_ref().map_or(0, |e| e.seq))
                .unwrap_or(0)
        })
    }
}

/// Where an entry is: its set, and its number, which tells it from a later entry in the same
/// way.
#[derive(Clone, Copy)]
struct Key {
    set: usize,
    seq: u64,
}

/// The entries in the order they were inserted, for making room in bytes: the oldest goes
/// first, whichever set it is in.
#[derive(Default)]
struct Order {
    /// Oldest first. A key whose entry was replaced in its set since is skipped when it
    /// comes up; there are never more keys than twice the cache's entries.
    keys: VecDeque<Key>,
    /// The next entry's number.
    next: u64,
}

/// The pieces of the frames a layer's streams sent recently, and the compressors that make
/// them: bounded in entries and in bytes (frames plus pieces), shared by the layer's clones.
///
/// A new entry takes a free way of its set, else the place of the set's oldest entry; if its
/// bytes do not fit, the oldest entries of the whole cache are evicted until they do (one set
/// lock held at a time), so that the cache keeps the latest frames whichever bound it meets
/// first. An entry is gone at the latest once twice the cache's entries were inserted after
/// it (the bound on [`Order`]'s keys). A lookup takes only its set's lock.
pub(crate) struct Cache {
    /// A power of two of sets, each behind its own lock: a delivery takes one lock, for a
    /// lookup of at most [`WAYS`] entries.
    sets: Box<[Mutex<Set>]>,
    /// Ways used per set: [`WAYS`], or fewer for a cache of fewer entries.
    ways: usize,
    max_bytes: usize,
    held: AtomicUsize,
    /// Taken by insertions only, never with a set's lock waited for while it is held.
    order: Mutex<Order>,
    deflaters: Mutex<Vec<flate2::Compress>>,
    zstds: Mutex<Vec<zstd::bulk::Compressor<'static>>>,
    /// The keep-alive comment's piece, per encoding.
    keep_alive: [OnceLock<Piece>; 3],
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("entries", &self.entries())
            .field("max_bytes", &self.max_bytes)
            .field("held", &self.held.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// A cache of at most `entries` pieces and `max_bytes` bytes. The entries are capped at
    /// [`Compression::MAX_CACHE_ENTRIES`], then rounded down to whole sets, a power of two of
    /// them; none (`entries` 0): every frame is compressed each time it is sent.
    pub(crate) fn new(entries: usize, max_bytes: usize) -> Cache {
        let entries = entries.min(Compression::MAX_CACHE_ENTRIES);
        let ways = entries.min(WAYS);
        let sets = match entries.checked_div(ways) {
            Some(sets) if sets > 0 => 1 << sets.ilog2(),
            _ => 0,
        };
        Cache {
            sets: (0..sets).map(|_| Mutex::default()).collect(),
            ways,
            max_bytes,
            held: AtomicUsize::new(0),
            order: Mutex::default(),
            deflaters: Mutex::default(),
            zstds: Mutex::default(),
            keep_alive: Default::default(),
        }
    }

    /// The most entries the cache holds.
    fn entries(&self) -> usize {
        self.sets.len() * self.ways
    }

    /// The piece of `plain` in `encoding`: the cached one, or a new one, cached.
    fn piece(&self, plain: &Bytes, encoding: Encoding) -> io::Result<Piece> {
        if plain.as_ref() == KEEP_ALIVE {
            let constant = &self.keep_alive[encoding as usize];
            if let Some(piece) = constant.get() {
                return Ok(piece.clone());
            }
            let piece = self.compress(plain, encoding)?;
            return Ok(constant.get_or_init(|| piece).clone());
        }
        let Some(set) = self.set_of(plain, encoding) else {
            return self.compress(plain, encoding);
        };
        if let Some(entry) = lock(&self.sets[set]).find(plain, encoding) {
            return Ok(entry.piece.clone());
        }
        // Compressed without the lock: another stream may be doing the same; the first to
        // insert wins, so that all send the same bytes.
        let piece = self.compress(plain, encoding)?;
        Ok(self.insert(
            set,
            Entry {
                plain: plain.clone(),
                encoding,
                piece,
                seq: 0,
            },
        ))
    }

    /// The set `plain`'s entry would be in, if the cache has any.
    fn set_of(&self, plain: &Bytes, encoding: Encoding) -> Option<usize> {
        if self.sets.is_empty() || plain.is_empty() {
            return None;
        }
        // Heap addresses differ in their middle bits; a multiply spreads them to the top.
        let key = (plain.as_ptr() as u64) ^ ((plain.len() as u64) << 40) ^ encoding as u64;
        let hash = key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
        Some(hash as usize & (self.sets.len() - 1))
    }

    /// Puts `entry` in set `index`, in a free way, else in place of the set's oldest entry,
    /// first evicting the oldest entries of the cache until its bytes fit; an entry larger
    /// than the bound is not kept. The piece to send: the entry's, or that of an equal entry
    /// another stream inserted first.
    fn insert(&self, index: usize, mut entry: Entry) -> Piece {
        let cost = entry.cost();
        let mut set = lock(&self.sets[index]);
        if let Some(found) = set.find(&entry.plain, entry.encoding) {
            return found.piece.clone();
        }
        let mut way = set.way_for_new(self.ways);
        let mut replaced = set.ways[way].take();
        self.release(replaced.as_ref());
        if !self.reserve(cost) {
            // Room is made without this set's lock, so that no two set locks are ever held.
            drop(set);
            drop(replaced.take());
            if !self.make_room(cost) {
                return entry.piece;
            }
            set = lock(&self.sets[index]);
            if let Some(found) = set.find(&entry.plain, entry.encoding) {
                self.held.fetch_sub(cost, Ordering::Relaxed);
                return found.piece.clone();
            }
            way = set.way_for_new(self.ways);
            replaced = set.ways[way].take();
            self.release(replaced.as_ref());
        }
        let overflow = {
            let mut order = lock(&self.order);
            entry.seq = order.next;
            order.next += 1;
            order.keys.push_back(Key {
                set: index,
                seq: entry.seq,
            });
            // Keys of entries replaced in their sets, bounded: past twice the entries, the
            // oldest key goes, and its entry if it is still there.
            (order.keys.len() > 2 * self.entries())
                .then(|| order.keys.pop_front())
                .flatten()
        };
        let piece = entry.piece.clone();
        set.ways[way] = Some(entry);
        drop(set);
        drop(replaced);
        if let Some(key) = overflow {
            self.evict(key);
        }
        piece
    }

    /// Counts `cost` more bytes held, if they fit the bound.
    fn reserve(&self, cost: usize) -> bool {
        self.held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                held.checked_add(cost).filter(|&sum| sum <= self.max_bytes)
            })
            .is_ok()
    }

    /// Counts the bytes of an entry taken out of the cache as no longer held.
    fn release(&self, entry: Option<&Entry>) {
        if let Some(entry) = entry {
            self.held.fetch_sub(entry.cost(), Ordering::Relaxed);
        }
    }

    /// Evicts the oldest entries, one at a time, until `cost` more bytes fit, and counts
    /// them held; false if they cannot fit (larger than the bound, or the rest is held by
    /// insertions under way).
    fn make_room(&self, cost: usize) -> bool {
        if cost > self.max_bytes {
            return false;
        }
        loop {
            if self.reserve(cost) {
                return true;
            }
            let Some(key) = lock(&self.order).keys.pop_front() else {
                return false;
            };
            self.evict(key);
        }
    }

    /// Takes `key`'s entry out of the cache, unless it is gone already.
    fn evict(&self, key: Key) {
        let evicted = {
            let mut set = lock(&self.sets[key.set]);
            let way = set
                .ways
                .iter()
                .position(|e| e.as_ref().is_some_and(|e| e.seq == key.seq));
            way.and_then(|way| set.ways[way].take())
        };
        self.release(evicted.as_ref());
    }

    /// Compresses `plain` on its own.
    fn compress(&self, plain: &[u8], encoding: Encoding) -> io::Result<Piece> {
        let mut crc = crc32fast::Hasher::new();
        let bytes = match encoding {
            Encoding::Gzip => {
                crc.update(plain);
                let mut deflater = lock(&self.deflaters).pop().unwrap_or_else(|| {
                    flate2::Compress::new(flate2::Compression::new(DEFLATE_LEVEL), false)
                });
                let piece = deflate(&mut deflater, plain);
                deflater.reset();
                give_back(&self.deflaters, deflater);
                piece?
            }
            Encoding::Zstd => {
                let mut compressor = match lock(&self.zstds).pop() {
                    Some(compressor) => compressor,
                    None => zstd::bulk::Compressor::new(ZSTD_LEVEL)?,
                };
                let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(plain.len()));
                let piece = compressor.compress_to_buffer(plain, &mut out);
                give_back(&self.zstds, compressor);
                piece?;
                exact(out)
            }
            Encoding::Brotli => brotli_piece(plain)?,
        };
        Ok(Piece { bytes, crc })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `bytes` without the room left over, which a cached piece would hold on to.
fn exact(mut bytes: Vec<u8>) -> Bytes {
    bytes.shrink_to_fit();
    Bytes::from(bytes)
}

/// Keeps an idle compressor for the next piece, unless enough are kept.
fn give_back<T>(pool: &Mutex<Vec<T>>, compressor: T) {
    let mut pool = lock(pool);
    if pool.len() < POOL {
        pool.push(compressor);
    }
}

/// `plain` as raw deflate from `deflater`'s fresh state, ended by a sync flush.
fn deflate(deflater: &mut flate2::Compress, plain: &[u8]) -> io::Result<Bytes> {
    let mut out = Vec::with_capacity(plain.len() + plain.len() / 8 + 64);
    loop {
        let read = deflater.total_in() as usize;
        let wrote = out.len();
        deflater
            .compress_vec(&plain[read..], &mut out, FlushCompress::Sync)
            .map_err(io::Error::other)?;
        let read_all = deflater.total_in() as usize == plain.len();
        // Room left after a sync flush: it is complete.
        if read_all && out.len() < out.capacity() {
            return Ok(exact(out));
        }
        if out.len() == wrote && deflater.total_in() as usize == read && out.len() < out.capacity()
        {
            return Err(io::Error::other("the compressor made no progress"));
        }
        out.reserve(out.capacity());
    }
}

/// `plain` as a bare, catable Brotli stream (see the module's docs), flushed.
fn brotli_piece(plain: &[u8]) -> io::Result<Bytes> {
    let mut state = BrotliEncoderStateStruct::new(StandardAlloc::default());
    state.params.quality = BROTLI_QUALITY;
    state.params.lgwin = BROTLI_WINDOW as i32;
    state.params.catable = true;
    state.params.bare_stream = true;
    state.params.size_hint = plain.len();
    let mut out = vec![0u8; plain.len() + plain.len() / 8 + 64];
    let (mut read, mut wrote) = (0, 0);
    loop {
        let mut available_in = plain.len() - read;
        let mut available_out = out.len() - wrote;
        let ok = state.compress_stream(
            BrotliEncoderOperation::BROTLI_OPERATION_FLUSH,
            &mut available_in,
            plain,
            &mut read,
            &mut available_out,
            &mut out,
            &mut wrote,
            &mut None,
            &mut |_, _, _, _| (),
        );
        if !ok {
            return Err(io::Error::other("the Brotli compressor failed"));
        }
        if read == plain.len() && !state.has_more_output() {
            out.truncate(wrote);
            return Ok(exact(out));
        }
        if available_out == 0 {
            out.resize(out.len() * 2, 0);
        } else if available_in != 0 {
            return Err(io::Error::other("the compressor made no progress"));
        }
    }
}

/// One stream's state in shared mode: what it has sent, for its header and trailer.
pub(crate) struct Stream {
    encoding: Encoding,
    cache: Arc<Cache>,
    /// What the stream starts with, until it is sent: the gzip header, Brotli's window
    /// header; nothing for zstd.
    head: Option<&'static [u8]>,
    /// Whether a piece was sent (a zstd stream needs a frame).
    sent_piece: bool,
    /// The CRC-32 and length of everything sent so far (gzip only).
    crc: crc32fast::Hasher,
}

impl Stream {
    pub(crate) fn new(encoding: Encoding, cache: Arc<Cache>) -> Stream {
        Stream {
            encoding,
            cache,
            head: match encoding {
                Encoding::Gzip => Some(&GZIP_HEAD),
                Encoding::Brotli => Some(&BROTLI_HEAD),
                Encoding::Zstd => None,
            },
            sent_piece: false,
            crc: crc32fast::Hasher::new(),
        }
    }

    /// The piece of `plain`, to be sent next (after the stream's header, the first time);
    /// nothing for no bytes.
    pub(crate) fn compress(&mut self, plain: &Bytes) -> io::Result<Bytes> {
        if plain.is_empty() {
            return Ok(Bytes::new());
        }
        let piece = self.cache.piece(plain, self.encoding)?;
        if self.encoding == Encoding::Gzip {
            self.crc.combine(&piece.crc);
        }
        self.sent_piece = true;
        Ok(self.after_head(piece.bytes))
    }

    /// What ends the stream: gzip's final block and trailer, Brotli's last meta-block, an
    /// empty zstd frame if no piece was sent.
    pub(crate) fn finish(&mut self) -> io::Result<Bytes> {
        let end = match self.encoding {
            Encoding::Gzip => {
                let crc = std::mem::take(&mut self.crc);
                let len = crc.total_len() as u32;
                let mut end = Vec::with_capacity(10);
                end.extend_from_slice(&DEFLATE_END);
                end.extend_from_slice(&crc.finalize().to_le_bytes());
                end.extend_from_slice(&len.to_le_bytes());
                Bytes::from(end)
            }
            Encoding::Brotli => Bytes::from_static(&BROTLI_END),
            Encoding::Zstd if !self.sent_piece => self.cache.compress(&[], Encoding::Zstd)?.bytes,
            Encoding::Zstd => Bytes::new(),
        };
        Ok(self.after_head(end))
    }

    /// `bytes`, after the stream's header if it is not sent yet.
    fn after_head(&mut self, bytes: Bytes) -> Bytes {
        match self.head.take() {
            Some(head) => [head, &bytes[..]].concat().into(),
            None => bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brotli_head_is_what_the_encoder_writes() {
        let mut state = BrotliEncoderStateStruct::new(StandardAlloc::default());
        state.params.quality = BROTLI_QUALITY;
        state.params.lgwin = BROTLI_WINDOW as i32;
        let mut out = [0u8; 16];
        let (mut read, mut wrote) = (0, 0);
        assert!(state.compress_stream(
            BrotliEncoderOperation::BROTLI_OPERATION_FLUSH,
            &mut 0,
            &[],
            &mut read,
            &mut 16,
            &mut out,
            &mut wrote,
            &mut None,
            &mut |_, _, _, _| (),
        ));
        assert_eq!(out[..wrote], BROTLI_HEAD);
    }

    #[test]
    fn a_cache_holds_at_most_its_entries_and_bytes() {
        let cache = Cache::new(10, usize::MAX);
        // Rounded down: two sets of four.
        assert_eq!((cache.sets.len(), cache.ways), (2, 4));
        assert_eq!(Cache::new(3, 0).sets.len() * Cache::new(3, 0).ways, 3);
        assert!(Cache::new(0, 1 << 20).sets.is_empty());
        let frames: Vec<Bytes> = (0..100)
            .map(|i| Bytes::from(format!("data: {i} {}\n\n", "x".repeat(i))))
            .collect();
        let bounded = Cache::new(64, 2000);
        for frame in &frames {
            bounded.piece(frame, Encoding::Zstd).unwrap();
            let held: usize = bounded
                .sets
                .iter()
                .map(|set| {
                    lock(set)
                        .ways
                        .iter()
                        .flatten()
                        .map(Entry::cost)
                        .sum::<usize>()
                })
                .sum();
            assert_eq!(held, bounded.held.load(Ordering::Relaxed));
            assert!(held <= 2000, "{held}");
        }
        let entries: usize = bounded
            .sets
            .iter()
            .map(|set| lock(set).ways.iter().flatten().count())
            .sum();
        assert!(entries > 0 && entries <= 64);
    }

    #[test]
    fn a_hit_is_the_same_bytes_and_an_equal_frame_elsewhere_is_not_a_hit() {
        let cache = Cache::new(64, 1 << 20);
        let frame = Bytes::from("data: hello hello hello\n\n");
        let first = cache.piece(&frame, Encoding::Gzip).unwrap();
        let again = cache.piece(&frame.clone(), Encoding::Gzip).unwrap();
        assert_eq!(first.bytes.as_ptr(), again.bytes.as_ptr());
        // The same bytes at another address: compressed again (equal, not the same).
        let copy = Bytes::copy_from_slice(&frame);
        let other = cache.piece(&copy, Encoding::Gzip).unwrap();
        assert_eq!(other.bytes, first.bytes);
        assert_ne!(other.bytes.as_ptr(), first.bytes.as_ptr());
        // Another encoding of the same frame is another entry.
        let zstd = cache.piece(&frame, Encoding::Zstd).unwrap();
        assert_ne!(zstd.bytes, first.bytes);
        // A slice of the frame (same address, shorter) is another frame.
        let prefix = frame.slice(..6);
        let piece = cache.piece(&prefix, Encoding::Gzip).unwrap();
        assert_ne!(piece.bytes, first.bytes);
    }

    /// The entries and bytes `cache` holds, counted, and checked against its count of bytes
    /// and its bounds.
    fn contents(cache: &Cache) -> (usize, usize) {
        let (mut entries, mut bytes) = (0, 0);
        for set in &cache.sets {
            for entry in lock(set).ways.iter().flatten() {
                entries += 1;
                bytes += entry.cost();
            }
        }
        assert_eq!(bytes, cache.held.load(Ordering::Relaxed));
        assert!(bytes <= cache.max_bytes, "{bytes} > {}", cache.max_bytes);
        assert!(
            entries <= cache.entries(),
            "{entries} > {}",
            cache.entries()
        );
        (entries, bytes)
    }

    /// Event `i`, distinct from the others, of about `len` bytes of table rows.
    fn event(i: usize, len: usize) -> Bytes {
        let mut text = format!("id: {i}\nevent: morph\ndata: <tbody id=\"n{i}\">");
        let mut x = i as u64 + 7;
        while text.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            text.push_str(&format!("<tr><td>{}</td><td>row</td></tr>", x % 100_000));
        }
        text.push_str("</tbody>\n\n");
        Bytes::from(text)
    }

    /// Whether a second lookup of `frame` finds the piece the first one made.
    fn found_again(cache: &Cache, frame: &Bytes, encoding: Encoding) -> bool {
        let first = cache.piece(frame, encoding).unwrap();
        let second = cache.piece(frame, encoding).unwrap();
        assert_eq!(first.bytes, second.bytes);
        first.bytes.as_ptr() == second.bytes.as_ptr()
    }

    #[test]
    fn new_events_are_cached_after_the_byte_bound_is_reached() {
        // (entries, bytes, event size): the default bounds, where 4, 16 and 48 KiB events
        // reach the byte bound long before the entries; and a small byte bound.
        let default = (
            Compression::DEFAULT_CACHE_ENTRIES,
            Compression::DEFAULT_CACHE_BYTES,
        );
        for (entries, max_bytes, len) in [
            (default.0, default.1, 4 << 10),
            (default.0, default.1, 16 << 10),
            (default.0, default.1, 48 << 10),
            (1024, 64 << 10, 2 << 10),
        ] {
            let cache = Cache::new(entries, max_bytes);
            // Twice the bytes the cache holds, and more, in events not seen before, kept
            // (as a topic's history keeps them) so that each has its own address.
            let count = 2 * max_bytes / len + 20;
            let mut kept = Vec::with_capacity(count);
            for i in 0..count {
                let frame = event(i, len);
                assert!(
                    found_again(&cache, &frame, Encoding::Gzip),
                    "event {i} of {count} ({len} bytes, bound {max_bytes}) was not cached"
                );
                contents(&cache);
                kept.push(frame);
            }
            let (held_entries, held) = contents(&cache);
            assert!(held_entries > 1, "{held_entries}");
            // Full up to about one event, not frozen at whatever came first.
            assert!(held + 3 * len >= max_bytes, "{held} of {max_bytes}");
        }
    }

    #[test]
    fn new_events_are_cached_when_their_memory_is_that_of_evicted_ones() {
        // Events dropped once sent: the allocator hands a new event the memory of one the
        // cache let go, so that new events keep falling into the same few sets.
        for (max_bytes, len) in [(4 << 20, 4 << 10), (64 << 10, 2 << 10)] {
            let cache = Cache::new(1024, max_bytes);
            for i in 0..2 * max_bytes / len + 20 {
                assert!(
                    found_again(&cache, &event(i, len), Encoding::Zstd),
                    "event {i}"
                );
                contents(&cache);
            }
        }
    }

    #[test]
    fn the_oldest_entries_make_room_first() {
        let cache = Cache::new(64, 64 << 10);
        // One event fills most of the bytes; the small ones after it evict it, not one another.
        let big = event(0, 40 << 10);
        assert!(found_again(&cache, &big, Encoding::Zstd));
        let small: Vec<Bytes> = (1..40).map(|i| event(i, 1 << 10)).collect();
        for frame in &small {
            assert!(found_again(&cache, frame, Encoding::Zstd));
            contents(&cache);
        }
        let is_held = |frame: &Bytes| {
            let set = cache.set_of(frame, Encoding::Zstd).unwrap();
            lock(&cache.sets[set]).find(frame, Encoding::Zstd).is_some()
        };
        assert!(!is_held(&big), "the oldest entry is evicted first");
        // What fits of the later ones: the most recent (barring a set's own four ways).
        assert!(is_held(small.last().unwrap()));
        let (held_entries, _) = contents(&cache);
        assert!(held_entries >= 30, "{held_entries}");
    }

    #[test]
    fn an_event_larger_than_the_byte_bound_is_not_cached() {
        let cache = Cache::new(64, 8 << 10);
        let small = event(1, 1 << 10);
        assert!(found_again(&cache, &small, Encoding::Gzip));
        let held = contents(&cache);
        let large = event(2, 16 << 10);
        assert!(!found_again(&cache, &large, Encoding::Gzip));
        // Nothing was evicted for it.
        assert_eq!(contents(&cache), held);
        assert!(found_again(&cache, &small, Encoding::Gzip));
    }

    #[test]
    fn keys_of_replaced_entries_stay_bounded() {
        // Bounded by entries only: entries are replaced in their sets, leaving their keys.
        let cache = Cache::new(16, usize::MAX);
        let events: Vec<Bytes> = (0..2000).map(|i| event(i, 100)).collect();
        for frame in &events {
            assert!(found_again(&cache, frame, Encoding::Zstd));
            assert!(lock(&cache.order).keys.len() <= 2 * cache.entries());
        }
        // Entries go at the latest once twice the cache's entries were inserted after them.
        let (held_entries, _) = contents(&cache);
        assert!(held_entries >= 8, "{held_entries}");
        let is_held = |frame: &Bytes| {
            let set = cache.set_of(frame, Encoding::Zstd).unwrap();
            lock(&cache.sets[set]).find(frame, Encoding::Zstd).is_some()
        };
        assert!(is_held(&events[1999]));
        assert!(events[..2000 - 32].iter().all(|frame| !is_held(frame)));
    }

    #[test]
    fn a_huge_entry_count_is_capped() {
        for asked in [1 << 30, usize::MAX] {
            let cache = Cache::new(asked, 1 << 20);
            assert_eq!(cache.entries(), Compression::MAX_CACHE_ENTRIES);
        }
        // What `MAX_CACHE_ENTRIES` says the table costs: about 100 bytes per entry.
        let per_entry = size_of::<Mutex<Set>>() / WAYS;
        assert!((80..=112).contains(&per_entry), "{per_entry}");
    }

    #[test]
    fn streams_on_threads_keep_the_bounds() {
        let cache = Cache::new(64, 32 << 10);
        // Some events shared by all threads, some their own, of sizes that reach the bytes.
        let shared: Vec<Bytes> = (0..40).map(|i| event(i, 500 + i * 50)).collect();
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let (cache, shared) = (&cache, &shared);
                scope.spawn(move || {
                    for i in 0..300 {
                        let own = event(1000 * (thread + 1) + i, 300 + (i * 37) % 3000);
                        let frame = if i % 2 == 0 { &shared[i % 40] } else { &own };
                        let encoding = [Encoding::Gzip, Encoding::Zstd][i % 3 % 2];
                        found_again(cache, frame, encoding);
                        assert!(cache.held.load(Ordering::Relaxed) <= 32 << 10);
                    }
                });
            }
        });
        let (entries, bytes) = contents(&cache);
        assert!(entries > 0 && bytes > 0);
    }
}
