//! The WHATWG event-stream parser, written line by line from the HTML standard, section
//! "Server-sent events": "Parsing an event stream", "Interpreting an event stream" and the
//! dispatch steps of the processing model.
//!
//! What it implements, in the standard's words where they matter:
//!
//! - The stream is decoded as UTF-8, one leading BOM (U+FEFF) is stripped, invalid bytes become
//!   U+FFFD.
//! - Lines end with CRLF, a lone LF or a lone CR.
//! - A line starting with `:` is a comment and is ignored (this parser also reports it, see
//!   [`Item::Comment`]).
//! - Otherwise the field name is everything up to the first `:` and the value everything after
//!   it, minus one leading space; a line without `:` is a field name with an empty value.
//! - `event` sets the event type buffer; `data` appends the value and an LF to the data buffer;
//!   `id` sets the last event ID buffer unless the value contains NUL; `retry` sets the
//!   reconnection time if the value is ASCII digits only; any other field is ignored.
//! - A blank line dispatches: the last event ID string takes the buffer's value (even when
//!   nothing fires); if the data buffer is empty the data and event type buffers are reset and
//!   nothing fires; otherwise one trailing LF is removed from the data and a `MessageEvent`
//!   fires with type `message` unless the event type buffer says otherwise.
//! - At the end of the stream, an incomplete event is discarded.

use std::time::Duration;

/// An event as a browser's `EventSource` would fire it: a `MessageEvent`, without the fields
/// that belong to the page rather than the stream (`origin`, `source`, `ports`).
///
/// Build one to compare with what a [`Parser`] or an [`EventReader`](super::EventReader) gave,
/// with [`ParsedEvent::new`] or [`ParsedEvent::message`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ParsedEvent {
    /// The event's `type`: the `event:` field's value, or `"message"` when there was none or it
    /// was empty. This is the name `addEventListener` listens for.
    pub event_type: String,
    /// `MessageEvent.data`: the `data:` lines joined with LF.
    pub data: String,
    /// `MessageEvent.lastEventId`: the last `id:` seen on the stream so far, in this event or an
    /// earlier one (an id persists until another `id:` line changes it), or `""`.
    pub last_event_id: String,
}

impl ParsedEvent {
    /// An event with every field given.
    ///
    /// ```
    /// use tower_sse::testing::{ParsedEvent, parse};
    /// assert_eq!(
    ///     parse(b"id: 7\nevent: price\ndata: 1.08\n\n"),
    ///     [ParsedEvent::new("price", "1.08", "7")]
    /// );
    /// ```
    pub fn new(
        event_type: impl Into<String>,
        data: impl Into<String>,
        last_event_id: impl Into<String>,
    ) -> Self {
        ParsedEvent {
            event_type: event_type.into(),
            data: data.into(),
            last_event_id: last_event_id.into(),
        }
    }

    /// A `message` event with this data and no last event id.
    ///
    /// ```
    /// use tower_sse::testing::{ParsedEvent, parse};
    /// assert_eq!(parse(b"data: a\r\ndata: b\r\n\r\n"), [ParsedEvent::message("a\nb")]);
    /// ```
    pub fn message(data: impl Into<String>) -> Self {
        ParsedEvent::new("message", data, "")
    }
}

/// Something the parser found in the stream, in stream order; see [`Parser::feed_items`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Item {
    /// An event that fired.
    Event(ParsedEvent),
    /// A comment line. Browsers ignore comments; tests look at them to check keep-alives.
    Comment {
        /// Everything after the leading `:`, unmodified (a `: ping` line gives `" ping"`).
        text: String,
        /// Whether the comment came in the middle of an event: after a field line and before
        /// the blank line that ends the event. Harmless to a browser, but a server that only
        /// writes keep-alives between events never produces it.
        mid_event: bool,
    },
}

/// The incremental WHATWG event-stream parser: what a browser's `EventSource` does with the
/// bytes of a `text/event-stream` response, minus the networking.
///
/// Feed it byte chunks split anywhere (inside a UTF-8 sequence, inside the BOM, between the CR
/// and the LF of a CRLF) and it gives the same events as for one chunk. Any bytes are accepted;
/// none make it panic.
///
/// ```
/// use std::time::Duration;
/// use tower_sse::testing::{Item, ParsedEvent, Parser};
///
/// let mut parser = Parser::new();
/// assert!(parser.feed(b"data: a\r").is_empty());
/// assert_eq!(parser.feed(b"\ndata: b\r\n\r\n"), [ParsedEvent::message("a\nb")]);
///
/// // Comments too, with `feed_items`; the last event id and `retry:` as the parser's state.
/// assert_eq!(
///     parser.feed_items(b": ping\n\nid: 3\nretry: 2500\n\n"),
///     [Item::Comment { text: " ping".into(), mid_event: false }]
/// );
/// assert_eq!(parser.last_event_id(), "3");
/// assert_eq!(parser.retry(), Some(Duration::from_millis(2500)));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Parser {
    /// Bytes of the current, not yet terminated line.
    line: Vec<u8>,
    /// The previous byte fed was a CR, so an LF that follows it is part of the same line end.
    after_cr: bool,
    /// A line has been completed: a BOM at the start of `line` is no longer the stream's.
    past_stream_start: bool,
    /// The data buffer.
    data: String,
    /// The event type buffer.
    event_type: String,
    /// The last event ID buffer.
    last_event_id_buffer: String,
    /// The `EventSource`'s last event ID string, set from the buffer on each dispatch.
    last_event_id: String,
    /// The reconnection time in milliseconds, once a valid `retry:` has been seen.
    retry: Option<u64>,
    /// A field line has been seen since the last blank line.
    mid_event: bool,
}

impl Parser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Parser::default()
    }

    /// Feeds the next chunk of the stream and returns the events it completed, in order.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<ParsedEvent> {
        self.feed_items(chunk)
            .into_iter()
            .filter_map(|item| match item {
                Item::Event(event) => Some(event),
                Item::Comment { .. } => None,
            })
            .collect()
    }

    /// Like [`feed`](Self::feed), but also returns the comment lines, in stream order with the
    /// events.
    pub fn feed_items(&mut self, chunk: &[u8]) -> Vec<Item> {
        let mut items = Vec::new();
        for &byte in chunk {
            let after_cr = std::mem::replace(&mut self.after_cr, false);
            match byte {
                b'\n' if after_cr => {}
                b'\n' => self.end_line(&mut items),
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(&mut items);
                }
                _ => self.line.push(byte),
            }
        }
        items
    }

    /// The `EventSource`'s last event ID string: what a browser would send as `Last-Event-ID`
    /// if it reconnected now (nothing, when it is empty). Set at each blank line, including
    /// those that fire nothing.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// The reconnection time from the last valid `retry:` field, if any: how long a browser
    /// would wait before reconnecting.
    pub fn retry(&self) -> Option<Duration> {
        self.retry.map(Duration::from_millis)
    }

    /// Whether the stream so far ends in the middle of an event: a partial line, or field lines
    /// not yet followed by a blank line. If the stream ended here, that part would be discarded.
    pub fn has_pending(&self) -> bool {
        !self.line.is_empty() || self.mid_event
    }

    fn end_line(&mut self, items: &mut Vec<Item>) {
        let raw = std::mem::take(&mut self.line);
        let at_stream_start = !std::mem::replace(&mut self.past_stream_start, true);
        let raw = match raw.strip_prefix(b"\xEF\xBB\xBF") {
            Some(rest) if at_stream_start => rest,
            _ => &raw[..],
        };
        // CR and LF never occur inside a UTF-8 sequence, so decoding line by line is decoding
        // the stream.
        let line = String::from_utf8_lossy(raw);
        self.process_line(&line, items);
    }

    fn process_line(&mut self, line: &str, items: &mut Vec<Item>) {
        if line.is_empty() {
            self.dispatch(items);
            return;
        }
        if let Some(comment) = line.strip_prefix(':') {
            items.push(Item::Comment {
                text: comment.to_owned(),
                mid_event: self.mid_event,
            });
            return;
        }
        self.mid_event = true;
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event_type),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            // An id containing NUL is ignored.
            "id" if !value.contains('\0') => value.clone_into(&mut self.last_event_id_buffer),
            // A retry that is not only ASCII digits is ignored.
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                let millis = value.bytes().fold(0u64, |n, b| {
                    n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
                });
                self.retry = Some(millis);
            }
            // Anything else is ignored.
            _ => {}
        }
    }

    fn dispatch(&mut self, items: &mut Vec<Item>) {
        self.mid_event = false;
        // 1. The last event ID string is set even when nothing fires.
        self.last_event_id.clone_from(&self.last_event_id_buffer);
        // 2. An empty data buffer fires nothing.
        let mut data = std::mem::take(&mut self.data);
        let event_type = std::mem::take(&mut self.event_type);
        if data.is_empty() {
            return;
        }
        // 3. One trailing LF is removed.
        if data.ends_with('\n') {
            data.pop();
        }
        // 4.-7. Fire, as `message` unless the event type buffer is set.
        items.push(Item::Event(ParsedEvent {
            event_type: if event_type.is_empty() {
                "message".to_owned()
            } else {
                event_type
            },
            data,
            last_event_id: self.last_event_id.clone(),
        }));
    }
}

/// Parses a complete stream: the events a browser would fire. An incomplete final event is
/// discarded, as at the end of a real stream.
///
/// ```
/// use tower_sse::{Event, testing::{ParsedEvent, parse}};
/// let event = Event::builder().id("1").data(" spaced: out").build()?;
/// assert_eq!(parse(event.as_bytes()), [ParsedEvent::new("message", " spaced: out", "1")]);
/// # Ok::<(), tower_sse::EventError>(())
/// ```
pub fn parse(stream: &[u8]) -> Vec<ParsedEvent> {
    Parser::new().feed(stream)
}
