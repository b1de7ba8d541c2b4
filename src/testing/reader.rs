//! [`EventReader`]: the events of a response body, read through the [`Parser`].

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::pin::Pin;
use std::time::Duration;

use bytes::Buf;
use http_body::Body;

use super::{Item, ParsedEvent, Parser};

/// Reads an event-stream body as a browser would: frame by frame through a [`Parser`].
///
/// It works on any [`http_body::Body`]: axum's `Body` (a response from a router), an
/// [`EventStream`](crate::EventStream), anything a handler's response carries. Nothing in it
/// waits on a timer: an open stream that sends nothing makes a read wait for good, so wrap
/// reads that might in `tokio::time::timeout`. The reads are cancel-safe: a read cancelled by
/// a timeout loses nothing, and the next read picks up where it left off.
///
/// ```
/// use futures_util::stream;
/// use tower_sse::{Event, EventStream, testing::{EventReader, ParsedEvent}};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let body = EventStream::new(stream::iter([
///     Event::builder().id("1").data("a").build().unwrap(),
///     Event::builder().id("2").event("done").data("b").build().unwrap(),
/// ]));
/// let mut reader = EventReader::new(body);
/// let first = reader.take(1).await.unwrap();
/// assert_eq!(first, [ParsedEvent::new("message", "a", "1")]);
/// let rest = reader.until_end().await.unwrap();
/// assert_eq!(rest, [ParsedEvent::new("done", "b", "2")]);
/// assert_eq!(reader.last_event_id(), "2");
/// # }
/// ```
pub struct EventReader<B> {
    body: Pin<Box<B>>,
    parser: Parser,
    /// What the parser found and no read has returned yet.
    pending: VecDeque<Item>,
    /// The body has ended (or failed): it is not polled again.
    ended: bool,
}

impl<B> EventReader<B> {
    /// A reader at the start of `body`.
    pub fn new(body: B) -> Self {
        EventReader {
            body: Box::pin(body),
            parser: Parser::new(),
            pending: VecDeque::new(),
            ended: false,
        }
    }

    /// The last event id seen so far: what a browser would send as `Last-Event-ID` if it
    /// reconnected now (see [`Parser::last_event_id`]). It includes events the parser has
    /// completed but no read has returned yet.
    pub fn last_event_id(&self) -> &str {
        self.parser.last_event_id()
    }

    /// The reconnection time from the last valid `retry:` field seen so far, if any.
    pub fn retry(&self) -> Option<Duration> {
        self.parser.retry()
    }

    /// The parser, for the rest of its state (e.g. [`Parser::has_pending`]: whether the body
    /// ended in the middle of an event).
    pub fn parser(&self) -> &Parser {
        &self.parser
    }

    /// Whether the body has ended (or failed). Events already read from it may still be
    /// waiting to be returned.
    pub fn is_ended(&self) -> bool {
        self.ended
    }
}

impl<B> EventReader<B>
where
    B: Body,
{
    /// The next event or comment, or `None` once the body has ended.
    ///
    /// # Errors
    ///
    /// The body's error, when reading it fails; the body is not read again after that.
    pub async fn next_item(&mut self) -> Result<Option<Item>, B::Error> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Ok(Some(item));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// The next event, past any comments, or `None` once the body has ended.
    ///
    /// # Errors
    ///
    /// The body's error, when reading it fails; the body is not read again after that.
    pub async fn next_event(&mut self) -> Result<Option<ParsedEvent>, B::Error> {
        loop {
            while let Some(item) = self.pending.pop_front() {
                if let Item::Event(event) = item {
                    return Ok(Some(event));
                }
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// The next `n` events, past any comments; fewer if the body ends first.
    ///
    /// # Errors
    ///
    /// The body's error, when reading it fails. The events read before it are kept for the
    /// next read.
    pub async fn take(&mut self, n: usize) -> Result<Vec<ParsedEvent>, B::Error> {
        // Read first, take after: a read cancelled halfway loses nothing.
        while self.pending_events() < n && self.fill().await? {}
        let mut events = Vec::with_capacity(n.min(self.pending.len()));
        while events.len() < n {
            match self.pending.pop_front() {
                Some(Item::Event(event)) => events.push(event),
                Some(Item::Comment { .. }) => {}
                None => break,
            }
        }
        Ok(events)
    }

    /// Every event until the body ends, past any comments.
    ///
    /// # Errors
    ///
    /// The body's error, when reading it fails. The events read before it are kept for the
    /// next read.
    pub async fn until_end(&mut self) -> Result<Vec<ParsedEvent>, B::Error> {
        while self.fill().await? {}
        Ok(self
            .pending
            .drain(..)
            .filter_map(|item| match item {
                Item::Event(event) => Some(event),
                Item::Comment { .. } => None,
            })
            .collect())
    }

    fn pending_events(&self) -> usize {
        self.pending
            .iter()
            .filter(|item| matches!(item, Item::Event(_)))
            .count()
    }

    /// Reads one more frame into `pending`; `false` once the body has ended.
    async fn fill(&mut self) -> Result<bool, B::Error> {
        if self.ended {
            return Ok(false);
        }
        let frame = poll_fn(|cx| self.body.as_mut().poll_frame(cx)).await;
        match frame {
            None => {
                self.ended = true;
                Ok(false)
            }
            Some(Err(err)) => {
                self.ended = true;
                Err(err)
            }
            Some(Ok(frame)) => {
                // Trailers carry no events.
                if let Ok(mut data) = frame.into_data() {
                    while data.has_remaining() {
                        let chunk = data.chunk();
                        let len = chunk.len();
                        self.pending.extend(self.parser.feed_items(chunk));
                        data.advance(len);
                    }
                }
                Ok(true)
            }
        }
    }
}

impl<B> fmt::Debug for EventReader<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventReader")
            .field("parser", &self.parser)
            .field("pending", &self.pending)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}
