//! One Server-Sent Event, validated and encoded once.
//!
//! An [`Event`] is built with [`Event::builder`] (or the [`Event::data`] shortcut), checked
//! against the WHATWG rules for each field, and serialized right away into one [`Bytes`] buffer.
//! Cloning an `Event` is a reference-count increment, so sending one event to ten thousand
//! clients never copies or re-encodes it.
//!
//! The encoding is exact:
//!
//! - CR, LF and CRLF in data each end exactly one line, and each line becomes its own `data: `
//!   line, so `"a\r\nb"` reaches the browser as `"a\nb"`.
//! - `data: ` always carries the space, so data that starts with a space keeps it.
//! - Empty data writes `data:` and fires an empty `message` event.
//! - An event with only an id fires nothing but moves the client's last event id.
//! - CR, LF or NUL in an id, and CR or LF in an event name or a comment, are errors returned
//!   by [`EventBuilder::build`], never injected bytes and never a panic.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower_sse::Event;
//!
//! let event = Event::builder()
//!     .event("price")
//!     .id("42")
//!     .data("EUR 1.08\nUSD 1.00")
//!     .retry(Duration::from_secs(3))
//!     .build()?;
//! assert_eq!(
//!     event.as_bytes(),
//!     &b"id: 42\nevent: price\nretry: 3000\ndata: EUR 1.08\ndata: USD 1.00\n\n"[..]
//! );
//!
//! // What a browser reads from it:
//! assert_eq!(event.id(), Some("42"));
//! assert_eq!(event.name(), Some("price"));
//! assert_eq!(event.data_str().as_deref(), Some("EUR 1.08\nUSD 1.00"));
//! assert_eq!(event.retry_hint(), Some(Duration::from_secs(3)));
//!
//! // Runtime data can never inject a field:
//! assert!(Event::builder().id("1\ndata: forged").build().is_err());
//! # Ok::<(), tower_sse::EventError>(())
//! ```

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

/// One Server-Sent Event, encoded once into shared bytes.
///
/// Build it with [`Event::builder`], [`Event::data`] or (with the `json` feature)
/// [`Event::json`]. The encoded form, [`Event::as_bytes`], always ends with the blank line that
/// dispatches the event. Clones share the same buffer.
#[derive(Clone, PartialEq, Eq)]
pub struct Event {
    /// The encoded event. When the event has an id, the buffer starts with its `id: ` line.
    bytes: Bytes,
    /// Length of the leading `id: …\n` line in `bytes`, or 0 when the event has no id.
    id_line: usize,
}

const ID_PREFIX: &[u8] = b"id:";

impl Event {
    /// Starts building an event.
    pub fn builder() -> EventBuilder {
        EventBuilder::default()
    }

    /// An event that carries `data` and nothing else: a `message` event in the browser.
    ///
    /// Data cannot be invalid: line breaks (CR, LF or CRLF) split it into several `data:` lines,
    /// which the browser joins back with LF.
    ///
    /// ```
    /// let event = tower_sse::Event::data("hello");
    /// assert_eq!(event.as_bytes(), &b"data: hello\n\n"[..]);
    /// ```
    pub fn data(data: impl AsRef<str>) -> Event {
        let data = data.as_ref();
        let mut buf = BytesMut::with_capacity(data.len() + 8);
        write_data(&mut buf, data);
        buf.put_u8(b'\n');
        Event {
            bytes: buf.freeze(),
            id_line: 0,
        }
    }

    /// An event whose data is `value` serialized as JSON on one line.
    ///
    /// ```
    /// let event = tower_sse::Event::json(&serde_json::json!({"n": 1}))?;
    /// assert_eq!(event.as_bytes(), &b"data: {\"n\":1}\n\n"[..]);
    /// # Ok::<(), tower_sse::EventError>(())
    /// ```
    #[cfg(feature = "json")]
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Event, EventError> {
        Event::builder().json_data(value).build()
    }

    /// An event that only carries a `retry:` hint: it fires nothing in the browser, but sets how
    /// long it waits before reconnecting.
    ///
    /// ```
    /// use std::time::Duration;
    /// let event = tower_sse::Event::retry(Duration::from_millis(2500));
    /// assert_eq!(event.as_bytes(), &b"retry: 2500\n\n"[..]);
    /// ```
    pub fn retry(retry: Duration) -> Event {
        let mut buf = BytesMut::with_capacity(24);
        write_retry(&mut buf, retry);
        buf.put_u8(b'\n');
        Event {
            bytes: buf.freeze(),
            id_line: 0,
        }
    }

    /// The event's id, if it has one.
    pub fn id(&self) -> Option<&str> {
        if self.id_line == 0 {
            return None;
        }
        // `id:` and a value, or a bare `id` line (an empty id) from `from_encoded`.
        let line = &self.bytes[..self.id_line - 1];
        let value = line.get(ID_PREFIX.len()..).unwrap_or_default();
        let value = value.strip_prefix(b" ").unwrap_or(value);
        // The id was a `&str` when it was written, so this never fails.
        std::str::from_utf8(value).ok()
    }

    /// The event's name (its `event:` field), if it has one; a browser dispatches an event
    /// without one as `message`.
    ///
    /// ```
    /// use tower_sse::Event;
    /// let event = Event::builder().event("done").data("{}").build()?;
    /// assert_eq!(event.name(), Some("done"));
    /// assert_eq!(Event::data("x").name(), None);
    /// # Ok::<(), tower_sse::EventError>(())
    /// ```
    pub fn name(&self) -> Option<&str> {
        // A browser takes the last `event:` line; this crate writes at most one.
        self.fields()
            .filter(|(field, _)| *field == "event")
            .last()
            .map(|(_, value)| value)
    }

    /// The event's data as a browser receives it (`MessageEvent.data`): its `data:` lines joined
    /// with LF, or `None` when it has no `data:` line and so fires nothing in a browser.
    ///
    /// It is the data the event was built with, except that each line break (CR, LF or CRLF) is
    /// an LF, as the browser sees it. Empty data is `Some("")`: it fires an empty message. Data
    /// on one line is borrowed from the encoded event; data on several lines is joined into a
    /// new `String`.
    ///
    /// ```
    /// use tower_sse::Event;
    /// assert_eq!(Event::data("hello").data_str().as_deref(), Some("hello"));
    /// assert_eq!(Event::data("a\r\nb\rc").data_str().as_deref(), Some("a\nb\nc"));
    /// assert_eq!(Event::data("").data_str().as_deref(), Some(""));
    /// assert_eq!(Event::builder().id("7").build()?.data_str(), None);
    /// # Ok::<(), tower_sse::EventError>(())
    /// ```
    pub fn data_str(&self) -> Option<Cow<'_, str>> {
        let mut lines = self
            .fields()
            .filter(|(field, _)| *field == "data")
            .map(|(_, value)| value);
        let first = lines.next()?;
        let Some(second) = lines.next() else {
            return Some(Cow::Borrowed(first));
        };
        let mut data = String::with_capacity(self.bytes.len());
        data.push_str(first);
        for line in std::iter::once(second).chain(lines) {
            data.push('\n');
            data.push_str(line);
        }
        Some(Cow::Owned(data))
    }

    /// The event's `retry:` hint, in the whole milliseconds it is written in: how long a
    /// browser waits before it reconnects once the connection drops.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_sse::Event;
    /// let event = Event::retry(Duration::from_millis(2500));
    /// assert_eq!(event.retry_hint(), Some(Duration::from_millis(2500)));
    /// assert_eq!(Event::data("x").retry_hint(), None);
    /// ```
    pub fn retry_hint(&self) -> Option<Duration> {
        // A browser takes the last `retry:` line that is only ASCII digits.
        self.fields()
            .filter(|(field, value)| {
                *field == "retry" && !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit())
            })
            .last()
            .map(|(_, value)| {
                let millis = value.bytes().fold(0u64, |n, b| {
                    n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
                });
                Duration::from_millis(millis)
            })
    }

    /// The event's comments, in order, as [`EventBuilder::comment`] was given them (a `: text`
    /// line gives `"text"`). Browsers ignore them.
    ///
    /// ```
    /// use tower_sse::Event;
    /// let event = Event::builder().comment("first").comment("").data("x").build()?;
    /// assert!(event.comments().eq(["first", ""]));
    /// # Ok::<(), tower_sse::EventError>(())
    /// ```
    pub fn comments(&self) -> impl Iterator<Item = &str> {
        self.lines()
            .filter_map(|line| line.strip_prefix(':'))
            .map(|text| text.strip_prefix(' ').unwrap_or(text))
    }

    /// The encoded lines, without the blank line that ends the event.
    fn lines(&self) -> impl Iterator<Item = &str> {
        // Written from `&str`s, or checked by `from_encoded`: always UTF-8, lines ended by LF.
        std::str::from_utf8(&self.bytes)
            .unwrap_or_default()
            .split('\n')
            .take_while(|line| !line.is_empty())
    }

    /// The field lines as `(name, value)`, read as a browser reads them: the name up to the
    /// first `:`, the value after it without one leading space; a line without `:` is a name
    /// with an empty value.
    fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.lines()
            .filter(|line| !line.starts_with(':'))
            .map(|line| match line.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (line, ""),
            })
    }

    /// The encoded event, ending with the blank line that dispatches it.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The encoded event as shared bytes (a reference count, not a copy).
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// Returns this event with its id set to `id` (replacing any id it had), re-encoding only
    /// the id line.
    ///
    /// This is what a hub does when it assigns ids at publish time.
    ///
    /// # Errors
    ///
    /// When `id` contains CR, LF or NUL.
    pub fn with_id(&self, id: &str) -> Result<Event, EventError> {
        validate_id(id)?;
        let rest = &self.bytes[self.id_line..];
        let mut buf = BytesMut::with_capacity(id.len() + 5 + rest.len());
        write_field(&mut buf, "id", id);
        let id_line = buf.len();
        buf.put_slice(rest);
        Ok(Event {
            bytes: buf.freeze(),
            id_line,
        })
    }

    /// The encoded event without its `id:` line, e.g. for a backend that stores events and
    /// gives them its own ids when it reads them back ([`with_id`](Self::with_id)).
    ///
    /// ```
    /// let event = tower_sse::Event::builder().id("7").data("x").build()?;
    /// assert_eq!(event.without_id(), &b"data: x\n\n"[..]);
    /// # Ok::<(), tower_sse::EventError>(())
    /// ```
    pub fn without_id(&self) -> Bytes {
        self.bytes.slice(self.id_line..)
    }

    /// An event from its encoded form, as [`as_bytes`](Self::as_bytes) gave it: for a
    /// [`Backend`](crate::backend::Backend) that keeps events in a store of its own. The bytes
    /// are shared, not copied. A leading `id:` line becomes the event's id.
    ///
    /// ```
    /// use tower_sse::Event;
    /// let event = Event::builder().id("41").event("price").data("1.08").build()?;
    /// let back = Event::from_encoded(event.as_bytes().clone())?;
    /// assert_eq!(back, event);
    /// assert_eq!(back.id(), Some("41"));
    ///
    /// // Whatever is stored, it can never carry a second event or a CR into a stream.
    /// assert!(Event::from_encoded("data: a\n\ndata: b\n\n".into()).is_err());
    /// # Ok::<(), tower_sse::EventError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Unless `bytes` is exactly one event as this crate encodes it: UTF-8, lines ended by LF
    /// (no CR), no blank line before the one that ends it, an `id:` line only first and without
    /// NUL.
    pub fn from_encoded(bytes: Bytes) -> Result<Event, EventError> {
        let invalid = |why| Err(EventError::new(ErrorKind::Encoded(why)));
        if std::str::from_utf8(&bytes).is_err() {
            return invalid("it is not UTF-8");
        }
        if bytes.contains(&b'\r') {
            return invalid("it contains a carriage return (CR)");
        }
        let Some(lines) = bytes.strip_suffix(b"\n\n") else {
            return invalid("it does not end with a blank line");
        };
        let mut id_line = 0;
        let mut offset = 0;
        for line in lines.split(|&b| b == b'\n') {
            if line.is_empty() {
                return invalid("it holds more than one event");
            }
            if line == b"id" || line.starts_with(b"id:") {
                if offset != 0 {
                    return invalid("an id line is not its first line");
                }
                if line.contains(&0) {
                    return invalid("its id contains a NUL character");
                }
                id_line = line.len() + 1;
            }
            offset += line.len() + 1;
        }
        Ok(Event { bytes, id_line })
    }

    /// Rebuilds an event that a backend stored with [`without_id`](Self::without_id), giving it
    /// `id`. `None` unless `body` is exactly one event without an id, as this crate encodes it:
    /// stored bytes from elsewhere can never inject a field or a second event into a stream.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn from_stored(body: Bytes, id: &str) -> Option<Event> {
        let event = Event::from_encoded(body).ok()?;
        if event.id_line != 0 {
            return None;
        }
        event.with_id(id).ok()
    }

    /// The encoded length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the encoded event is empty. It never is: every event ends with a blank line.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("id", &self.id())
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl From<Event> for Bytes {
    fn from(event: Event) -> Bytes {
        event.bytes
    }
}

/// Builds an [`Event`]; see [`Event::builder`].
///
/// Setters never fail; the first invalid value is reported by [`EventBuilder::build`].
#[derive(Debug, Default, Clone)]
#[must_use]
pub struct EventBuilder {
    id: Option<String>,
    event: Option<String>,
    retry: Option<Duration>,
    comments: Vec<String>,
    data: Option<Data>,
    error: Option<EventError>,
}

#[derive(Debug, Clone)]
enum Data {
    Text(String),
    #[cfg(feature = "json")]
    Json(String),
}

impl EventBuilder {
    /// Sets the data. Line breaks (CR, LF or CRLF) split it into several `data:` lines; the
    /// browser receives them joined with LF. Empty data is written as `data:` and still fires an
    /// event. Calling this again replaces the data.
    pub fn data(mut self, data: impl Into<String>) -> Self {
        self.data = Some(Data::Text(data.into()));
        self
    }

    /// Sets the data to `value` serialized as JSON on one line.
    #[cfg(feature = "json")]
    pub fn json_data<T: serde::Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_string(value) {
            Ok(json) => self.data = Some(Data::Json(json)),
            Err(err) => self.fail(EventError::new(ErrorKind::Json(err.to_string()))),
        }
        self
    }

    /// Sets the event name: the browser fires it as an event of that type, which
    /// `addEventListener(name, …)` receives. Without a name the event is a `message`.
    ///
    /// A name containing CR or LF makes [`build`](Self::build) fail.
    pub fn event(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        if let Some(c) = find_line_break(&name) {
            self.fail(EventError::new(ErrorKind::EventName(c)));
        }
        self.event = Some(name);
        self
    }

    /// Sets the id, which the browser remembers and sends back as `Last-Event-ID` when it
    /// reconnects.
    ///
    /// An id containing CR, LF or NUL makes [`build`](Self::build) fail. An empty id is allowed:
    /// it resets the browser's last event id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        let id = id.into();
        if let Err(err) = validate_id(&id) {
            self.fail(err);
        }
        self.id = Some(id);
        self
    }

    /// Sets the reconnection delay the browser waits after the connection drops. Written in
    /// whole milliseconds.
    pub fn retry(mut self, retry: Duration) -> Self {
        self.retry = Some(retry);
        self
    }

    /// Adds a comment line (`: text`). Browsers ignore comments; they are useful for debugging
    /// with `curl`. May be called more than once.
    ///
    /// A comment containing CR or LF makes [`build`](Self::build) fail.
    pub fn comment(mut self, comment: impl Into<String>) -> Self {
        let comment = comment.into();
        if let Some(c) = find_line_break(&comment) {
            self.fail(EventError::new(ErrorKind::Comment(c)));
        }
        self.comments.push(comment);
        self
    }

    fn fail(&mut self, err: EventError) {
        self.error.get_or_insert(err);
    }

    /// Validates the fields and encodes the event.
    ///
    /// # Errors
    ///
    /// The first invalid value that was set: CR, LF or NUL in the id; CR or LF in the event name
    /// or a comment; data that could not be serialized as JSON.
    pub fn build(self) -> Result<Event, EventError> {
        if let Some(err) = self.error {
            return Err(err);
        }
        let data_len = match &self.data {
            Some(Data::Text(s)) => s.len() + 8,
            #[cfg(feature = "json")]
            Some(Data::Json(s)) => s.len() + 8,
            None => 0,
        };
        let mut buf = BytesMut::with_capacity(
            data_len
                + self.id.as_ref().map_or(0, |s| s.len() + 5)
                + self.event.as_ref().map_or(0, |s| s.len() + 8)
                + self.comments.iter().map(|c| c.len() + 3).sum::<usize>()
                + 24,
        );
        let mut id_line = 0;
        if let Some(id) = &self.id {
            write_field(&mut buf, "id", id);
            id_line = buf.len();
        }
        if let Some(event) = &self.event {
            write_field(&mut buf, "event", event);
        }
        if let Some(retry) = self.retry {
            write_retry(&mut buf, retry);
        }
        for comment in &self.comments {
            write_field(&mut buf, "", comment);
        }
        match &self.data {
            Some(Data::Text(data)) => write_data(&mut buf, data),
            // Compact JSON has no line breaks, but a `RawValue` is written verbatim and may.
            #[cfg(feature = "json")]
            Some(Data::Json(json)) => write_data(&mut buf, json),
            None => {}
        }
        buf.put_u8(b'\n');
        Ok(Event {
            bytes: buf.freeze(),
            id_line,
        })
    }
}

/// Writes `name: value\n`, or `name:\n` when the value is empty. The name `""` writes a comment.
fn write_field(buf: &mut BytesMut, name: &str, value: &str) {
    buf.put_slice(name.as_bytes());
    buf.put_u8(b':');
    if !value.is_empty() {
        buf.put_u8(b' ');
        buf.put_slice(value.as_bytes());
    }
    buf.put_u8(b'\n');
}

fn write_retry(buf: &mut BytesMut, retry: Duration) {
    let millis = u64::try_from(retry.as_millis()).unwrap_or(u64::MAX);
    // Writing into a `BytesMut` cannot fail.
    let _ = writeln!(buf, "retry: {millis}");
}

/// Writes one `data:` line per line of `data`, where CR, LF and CRLF each end one line.
fn write_data(buf: &mut BytesMut, data: &str) {
    let bytes = data.as_bytes();
    let mut start = 0;
    loop {
        let end = bytes[start..]
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .map(|i| start + i);
        let line = &data[start..end.unwrap_or(bytes.len())];
        write_field(buf, "data", line);
        match end {
            None => break,
            Some(i) => {
                start = if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
                    i + 2
                } else {
                    i + 1
                };
            }
        }
    }
}

fn find_line_break(s: &str) -> Option<char> {
    s.chars().find(|&c| c == '\r' || c == '\n')
}

fn validate_id(id: &str) -> Result<(), EventError> {
    match id.chars().find(|&c| c == '\r' || c == '\n' || c == '\0') {
        Some(c) => Err(EventError::new(ErrorKind::Id(c))),
        None => Ok(()),
    }
}

/// An event field that the wire format cannot carry.
///
/// Returned by [`EventBuilder::build`] (and [`Event::with_id`]); its message says which field
/// was wrong and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventError {
    kind: ErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ErrorKind {
    Id(char),
    EventName(char),
    Comment(char),
    #[cfg_attr(not(feature = "json"), allow(dead_code))]
    Json(String),
    Encoded(&'static str),
}

impl EventError {
    fn new(kind: ErrorKind) -> Self {
        EventError { kind }
    }
}

fn char_name(c: char) -> &'static str {
    match c {
        '\r' => "a carriage return (CR)",
        '\n' => "a line feed (LF)",
        _ => "a NUL character",
    }
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::Id(c) => write!(
                f,
                "event id contains {}; ids may not contain CR, LF or NUL",
                char_name(*c)
            ),
            ErrorKind::EventName(c) => write!(
                f,
                "event name contains {}; names may not contain CR or LF",
                char_name(*c)
            ),
            ErrorKind::Comment(c) => write!(
                f,
                "comment contains {}; comments may not contain CR or LF",
                char_name(*c)
            ),
            ErrorKind::Json(err) => write!(f, "event data could not be serialized as JSON: {err}"),
            ErrorKind::Encoded(why) => write!(f, "not an encoded event: {why}"),
        }
    }
}

impl std::error::Error for EventError {}

#[cfg(test)]
mod tests;
