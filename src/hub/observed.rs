//! The hub's backend, observed: a `tracing` span around each publish and subscription (and the
//! replay of a resume), and (feature `metrics`) what each call did: events published,
//! replays by outcome, events replayed, failures by operation.

use std::time::Duration;

use futures_util::future::BoxFuture;
use tracing::Instrument as _;
use tracing::field::Empty;

use crate::Event;
use crate::backend::{
    Backend, Error, Health, Opened, Publish, Published, ReplayOptions, Start, TopicInfo,
};

/// Wraps the backend a [`Hub`](crate::Hub) is built on. It forwards every method of
/// [`Backend`], the defaulted ones too: a method added to the trait must be forwarded here.
pub(crate) struct Observed<B>(pub(crate) B);

/// Counts a failed call of `operation`, and passes the result on.
fn counted<T>(operation: &'static str, result: Result<T, Error>) -> Result<T, Error> {
    if let Err(err) = &result {
        crate::metrics::backend_error(operation, err);
    }
    result
}

impl<B: Backend> Backend for Observed<B> {
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        publish: Publish,
    ) -> BoxFuture<'a, Result<Published, Error>> {
        let span = tracing::debug_span!("publish", topic, id = Empty);
        Box::pin(
            async move {
                let published = counted("publish", self.0.publish(topic, publish).await)?;
                tracing::Span::current().record("id", published.id());
                if !published.is_duplicate() {
                    crate::metrics::published();
                }
                Ok(published)
            }
            .instrument(span),
        )
    }

    fn open<'a>(
        &'a self,
        topic: &'a str,
        start: &'a Start,
        options: &'a ReplayOptions,
    ) -> BoxFuture<'a, Result<Opened, Error>> {
        let (kind, last_event_id) = match start {
            Start::Live => ("live", None),
            Start::Oldest => ("oldest", None),
            Start::After(last) => ("after", Some(last.as_str().unwrap_or("<unusable>"))),
        };
        let span = tracing::debug_span!("subscribe", topic, start = kind);
        let replay = match last_event_id {
            Some(last_event_id) => {
                tracing::debug_span!(parent: &span, "replay", last_event_id, outcome = Empty, events = Empty)
            }
            None => tracing::Span::none(),
        };
        Box::pin(
            async move {
                let opening = self.0.open(topic, start, options);
                let opened = counted("subscribe", opening.instrument(replay.clone()).await)?;
                crate::metrics::replayed(start, &opened);
                let outcome = opened
                    .gap
                    .as_ref()
                    .map_or("exact", |gap| gap.reason.as_str());
                replay.record("outcome", outcome);
                replay.record("events", opened.replay.len());
                Ok(opened)
            }
            .instrument(span),
        )
    }

    fn close<'a>(&'a self, topic: &'a str, end: Event) -> BoxFuture<'a, Result<Event, Error>> {
        Box::pin(async move { counted("close", self.0.close(topic, end).await) })
    }

    fn topic_info<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<Option<TopicInfo>, Error>> {
        Box::pin(async move { counted("topic_info", self.0.topic_info(topic).await) })
    }

    fn wait_idle<'a>(
        &'a self,
        topic: &'a str,
        grace: Duration,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move { counted("wait_idle", self.0.wait_idle(topic, grace).await) })
    }

    fn health(&self) -> Health {
        self.0.health()
    }
}
