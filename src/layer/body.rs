use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::config::Config;
use crate::registry::{Departure, Registration};

const KEEP_ALIVE: Bytes = Bytes::from_static(b":\n\n");

pin_project! {
    /// Response body of [`SseService`](super::SseService).
    ///
    /// For an event stream it adds the prelude and keep-alive comments around the handler's
    /// bytes; every other body passes through unchanged.
    pub struct SseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Passthrough { #[pin] body: B },
        Full { data: Option<Bytes> },
        Stream { #[pin] body: B, state: StreamState },
        // The stream above, compressed (feature `compression`; see `super::compression`).
        Compressed { #[pin] body: super::compression::Compressed<B> },
    }
}

struct StreamState {
    /// The stream's registry entry; dropping it removes the stream from the registry.
    registration: Registration,
    shutdown_retry: Duration,
    prelude: Option<Bytes>,
    boundary: Boundary,
    keep_alive: Option<Duration>,
    /// When the last bytes were written; the keep-alive is due one interval after it.
    last_write: Option<Instant>,
    /// [`SseLayer::write_timeout`](crate::SseLayer::write_timeout): how long the body may wait
    /// to be polled again after handing a frame over (see `crate::registry::watchdog`).
    write_timeout: Option<Duration>,
    timer: Option<Pin<Box<Sleep>>>,
    /// When the stream reaches [`SseLayer::max_lifetime`](crate::SseLayer::max_lifetime), if
    /// it has one, and the timer that wakes an idle stream then.
    lifetime_end: Option<Instant>,
    lifetime_timer: Option<Pin<Box<Sleep>>>,
    /// The task waker the body was last polled with, which the registry entry holds
    /// (`ConnShared::set_waker`).
    waker: Option<Waker>,
    done: bool,
    /// The handler's body arrived encoded (compressed) by an inner layer: the layer writes
    /// nothing into it, and its bytes do not say where its events end (see
    /// `super::compression`).
    encoded: bool,
}

impl<B> SseBody<B> {
    pub(crate) fn passthrough(body: B) -> Self {
        SseBody {
            kind: Kind::Passthrough { body },
        }
    }

    pub(crate) fn full(data: Bytes) -> Self {
        SseBody {
            kind: Kind::Full { data: Some(data) },
        }
    }

    pub(crate) fn stream(body: B, config: &Config, registration: Registration) -> Self {
        if let Some(timeout) = config.write_timeout {
            registration.registry.watch_stalls(timeout);
            registration.shared.set_write_timeout(timeout);
        }
        SseBody {
            kind: Kind::Stream {
                body,
                state: StreamState {
                    registration,
                    shutdown_retry: config.shutdown_retry,
                    prelude: config.prelude.clone(),
                    boundary: Boundary::START,
                    keep_alive: config.keep_alive,
                    last_write: None,
                    write_timeout: config.write_timeout,
                    timer: None,
                    lifetime_end: config
                        .max_lifetime
                        .and_then(|lifetime| Instant::now().checked_add(lifetime)),
                    lifetime_timer: None,
                    waker: None,
                    done: false,
                    encoded: false,
                },
            },
        }
    }

    /// A stream whose body arrived encoded: registered, limited and ended like any, but
    /// nothing is ever written into it (no prelude, keep-alive or `retry:` hint).
    pub(crate) fn encoded(body: B, config: &Config, registration: Registration) -> Self {
        let mut this = Self::stream(body, config, registration);
        if let Kind::Stream { state, .. } = &mut this.kind {
            state.prelude = None;
            state.keep_alive = None;
            state.encoded = true;
        }
        this
    }

    /// A stream the layer compresses.
    #[cfg(feature = "compression")]
    pub(crate) fn compressed(body: super::compression::Compressed<B>) -> Self {
        SseBody {
            kind: Kind::Compressed { body },
        }
    }
}

impl<B> Body for SseBody<B>
where
    B: Body,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Passthrough { body } => body
                .poll_frame(cx)
                .map(|frame| frame.map(|frame| frame.map(|frame| frame.map_data(into_bytes)))),
            KindProj::Full { data } => Poll::Ready(data.take().map(|data| Ok(Frame::data(data)))),
            KindProj::Compressed { body } => body.poll_frame(cx),
            KindProj::Stream { body, state } => {
                if state.done {
                    return Poll::Ready(None);
                }
                let _span = state.registration.span.clone().entered();
                // Polled: the server has taken the frame handed over last.
                state.registration.shared.polled();
                if let Some(prelude) = state.prelude.take() {
                    state.wrote(&prelude, false);
                    return Poll::Ready(Some(Ok(Frame::data(prelude))));
                }
                state.track_waker(cx.waker());
                if let Some(reason) = state.registration.shared.close_reason() {
                    return Poll::Ready(state.close(reason.into()));
                }
                if state.boundary.at_event_end() {
                    if state.lifetime_is_over() {
                        return Poll::Ready(state.close(Departure::MaxLifetime));
                    }
                    if let Some(event) = state.registration.shared.pop_outbox() {
                        let bytes = event.into_bytes();
                        state.wrote(&bytes, true);
                        return Poll::Ready(Some(Ok(Frame::data(bytes))));
                    }
                }
                match body.poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        let frame = frame.map_data(into_bytes);
                        if let Some(data) = frame.data_ref() {
                            state.wrote(data, true);
                        }
                        Poll::Ready(Some(Ok(frame)))
                    }
                    Poll::Ready(Some(Err(err))) => {
                        state.finish(Departure::Ended);
                        Poll::Ready(Some(Err(err)))
                    }
                    Poll::Ready(None) => {
                        state.finish(Departure::Ended);
                        Poll::Ready(None)
                    }
                    Poll::Pending => state.poll_timers(cx),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Passthrough { body } => body.is_end_stream(),
            Kind::Full { data } => data.is_none(),
            Kind::Stream { state, .. } => state.done,
            Kind::Compressed { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Passthrough { body } => body.size_hint(),
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Stream { .. } | Kind::Compressed { .. } => SizeHint::default(),
        }
    }
}

fn into_bytes<D: Buf>(mut data: D) -> Bytes {
    data.copy_to_bytes(data.remaining())
}

impl StreamState {
    /// Keeps `waker` the task's current one: when it would not wake the same task, the
    /// registry entry gets the new one.
    fn track_waker(&mut self, waker: &Waker) {
        if !self.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            self.registration.shared.set_waker(waker);
            self.waker = Some(waker.clone());
        }
    }

    /// Records bytes written: where they leave the stream, the keep-alive clock, and (for the
    /// handler's bytes and sent events, not the layer's comments) the registry counters.
    fn wrote(&mut self, bytes: &[u8], mut counted: bool) {
        if bytes.is_empty() {
            return;
        }
        if self.encoded {
            // Compressed bytes: only their count means anything.
            counted = false;
        } else {
            self.boundary = self.boundary.advance(bytes);
        }
        let completes_event = u64::from(self.boundary.at_event_end() && counted);
        self.registration
            .shared
            .record(completes_event, bytes.len() as u64);
        if self.keep_alive.is_none() && self.write_timeout.is_none() {
            return;
        }
        // The timer itself is only moved when it fires (see `poll_keep_alive`), so a busy
        // stream costs a clock read per frame, not a timer update.
        let now = Instant::now();
        if self.keep_alive.is_some() {
            self.last_write = Some(now);
        }
        if let Some(timeout) = self.write_timeout {
            // The frame is handed over next: the stream stalls unless polled again in time.
            let registration = &self.registration;
            let at = registration.registry.stall_deadline(now, timeout);
            registration.shared.awaiting_poll(at);
        }
    }

    /// Ends the stream because the server asked it to: closed, shut down, at its maximum
    /// lifetime, or stalled. Unless closed, and between two events, it first sends a jittered
    /// `retry:` hint, so that clients told at once do not all come back at once (a stalled
    /// client finds it if it reads again); otherwise the stream just ends (inside an event,
    /// the client drops the partial event and resumes after the last complete one).
    fn close<E>(&mut self, why: Departure) -> Option<Result<Frame<Bytes>, E>> {
        let retry = why != Departure::Closed;
        let retry = (retry && self.boundary.at_event_end() && !self.encoded).then(|| {
            let retry = crate::Event::retry(super::future::jitter(self.shutdown_retry));
            self.registration.shared.record(0, retry.len() as u64);
            Ok(Frame::data(retry.into_bytes()))
        });
        self.finish(why);
        retry
    }

    /// Whether the stream has reached its maximum lifetime. A clock read, only for streams
    /// that have one.
    fn lifetime_is_over(&self) -> bool {
        self.lifetime_end.is_some_and(|end| Instant::now() >= end)
    }

    /// Called while the inner body has nothing to send: ends the stream at its maximum
    /// lifetime, else sends a keep-alive comment when one is due.
    fn poll_timers<E>(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, E>>> {
        if let Some(end) = self.lifetime_end {
            let timer = self
                .lifetime_timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(end)));
            // Inside an event the stream ends at the event's end instead, when the inner body
            // has delivered it (and woken the task).
            if timer.as_mut().poll(cx).is_ready() && self.boundary.at_event_end() {
                return Poll::Ready(self.close(Departure::MaxLifetime));
            }
        }
        self.poll_keep_alive(cx)
    }

    /// Ends the stream. It leaves the registry now, not when the body is dropped: an ended
    /// stream is not open (its `Connection::send` fails), whoever still holds the body.
    fn finish(&mut self, why: Departure) {
        self.done = true;
        self.registration
            .registry
            .unregister(&self.registration.shared, why);
    }

    /// Called while the inner body has nothing to send: yields a keep-alive comment once the
    /// stream has been idle for the interval and sits between two events.
    fn poll_keep_alive<E>(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, E>>> {
        let Some(interval) = self.keep_alive else {
            return Poll::Pending;
        };
        let last_write = *self.last_write.get_or_insert_with(Instant::now);
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(last_write + interval)));
        loop {
            ready!(timer.as_mut().poll(cx));
            let due = last_write + interval;
            if due > timer.deadline() {
                // Bytes went out since the timer was set: wait for the rest of the interval.
                timer.as_mut().reset(due);
                continue;
            }
            let now = Instant::now();
            timer.as_mut().reset(now + interval);
            if self.boundary.at_event_end() {
                self.wrote(&KEEP_ALIVE, false);
                return Poll::Ready(Some(Ok(Frame::data(KEEP_ALIVE))));
            }
            // In the middle of an event: a comment here would corrupt it. Look again after
            // another interval.
        }
    }
}

/// Where the bytes written so far end, as the WHATWG parser sees them: within a line, right
/// after one line break, or after a blank line (between two events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Boundary {
    /// Line breaks since the last byte that was not a line break, capped at 2.
    breaks: u8,
    /// Whether the last byte was a CR (so a following LF belongs to it).
    after_cr: bool,
}

impl Boundary {
    pub(crate) const START: Boundary = Boundary {
        breaks: 2,
        after_cr: false,
    };

    pub(crate) fn at_event_end(self) -> bool {
        self.breaks >= 2
    }

    /// The state after `bytes` are written. Only the tail after the last non-break byte
    /// matters, so this reads a few bytes from the end, not the whole frame.
    pub(crate) fn advance(self, bytes: &[u8]) -> Boundary {
        let Some(&last) = bytes.last() else {
            return self;
        };
        let (start, mut breaks, mut after_cr) =
            match bytes.iter().rposition(|&b| b != b'\r' && b != b'\n') {
                Some(i) => (i + 1, 0u8, false),
                None => (0, self.breaks, self.after_cr),
            };
        for &b in &bytes[start..] {
            if !(after_cr && b == b'\n') {
                breaks = breaks.saturating_add(1).min(2);
            }
            after_cr = b == b'\r';
        }
        debug_assert_eq!(after_cr, last == b'\r');
        Boundary { breaks, after_cr }
    }
}
