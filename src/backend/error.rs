use std::error::Error as StdError;
use std::fmt;

/// Why a [`Backend`](super::Backend) call failed.
///
/// Its message is safe to show to a client: it says what kind of failure it was, never the
/// backend's internals (a Redis error text, an address). The underlying error, when there is
/// one, is kept as its [`source`](StdError::source) for logs.
///
/// ```
/// use tower_sse::backend::Error;
///
/// let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "10.0.0.7:6379 refused");
/// let err = Error::unavailable(io);
/// assert!(err.is_unavailable());
/// assert!(!err.to_string().contains("10.0.0.7")); // for clients
/// assert!(std::error::Error::source(&err).unwrap().to_string().contains("10.0.0.7")); // for logs
/// ```
pub struct Error {
    kind: Kind,
    /// For [`Kind::Unavailable`]: the class of the store's refusal (`out of memory`), never
    /// its text. For [`Kind::OutcomeUnknown`]: set when the call is safe to repeat (a close).
    note: Option<&'static str>,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Unavailable,
    OutcomeUnknown,
    KeyReused,
    TooManyTopics,
    HistoryFull,
    Closed,
    Config,
    Internal,
}

impl Error {
    fn new(kind: Kind, source: Option<Box<dyn StdError + Send + Sync>>) -> Self {
        Error {
            kind,
            note: None,
            source,
        }
    }

    /// [`Error::unavailable`] for a store that answered with an error (out of memory, a
    /// read-only replica, a permission refused): nothing was done. `class` says which kind of
    /// refusal in a few words, never the store's own text; it is shown to clients.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn refused(
        class: &'static str,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        Error {
            note: Some(class),
            ..Error::unavailable(source)
        }
    }

    /// [`Error::outcome_unknown`] for a call that is safe to repeat (a close: closing twice
    /// closes once): it may or may not have been done, and retrying it is safe.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn outcome_unknown_repeatable(
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        Error {
            note: Some(REPEATABLE),
            ..Error::outcome_unknown(source)
        }
    }

    /// The backend cannot serve now (a store that is unreachable) and did nothing: trying again
    /// later may work. For a publish: nothing was stored.
    pub fn unavailable(source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Error::new(Kind::Unavailable, Some(source.into()))
    }

    /// A write may or may not have been done: it was sent to the store, and no answer came (a
    /// timeout, a connection that dropped after the command was written). For a publish: the
    /// event may have been stored; retrying with the same idempotency key is safe, retrying
    /// without one may store it twice.
    pub fn outcome_unknown(source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Error::new(Kind::OutcomeUnknown, Some(source.into()))
    }

    /// The idempotency key of a publish was used within the window for a different event on
    /// the same topic: nothing was stored.
    pub fn key_reused() -> Self {
        Error::new(Kind::KeyReused, None)
    }

    /// The hub holds as many topics as it may, and none of them is idle: a new topic is refused.
    pub fn too_many_topics() -> Self {
        Error::new(Kind::TooManyTopics, None)
    }

    /// The hub's retained history is at its byte bound and nothing can be evicted to make room.
    pub fn history_full() -> Self {
        Error::new(Kind::HistoryFull, None)
    }

    /// The topic is closed: it takes no more events until it is gone.
    pub fn closed() -> Self {
        Error::new(Kind::Closed, None)
    }

    /// The backend's configuration is unusable (e.g. a malformed URL).
    pub fn config(source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Error::new(Kind::Config, Some(source.into()))
    }

    /// Anything else that went wrong inside the backend.
    pub fn internal(source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Error::new(Kind::Internal, Some(source.into()))
    }

    /// Whether the backend could not serve now and did nothing; trying again later may work.
    pub fn is_unavailable(&self) -> bool {
        self.kind == Kind::Unavailable
    }

    /// Whether a write may or may not have been done ([`Error::outcome_unknown`]).
    pub fn is_outcome_unknown(&self) -> bool {
        self.kind == Kind::OutcomeUnknown
    }

    /// Whether a publish's idempotency key was used for a different event
    /// ([`Error::key_reused`]).
    pub fn is_key_reused(&self) -> bool {
        self.kind == Kind::KeyReused
    }

    /// Whether a bound of the hub (topics, history bytes) refused the call; trying again later
    /// may work, once something has expired.
    pub fn is_full(&self) -> bool {
        matches!(self.kind, Kind::TooManyTopics | Kind::HistoryFull)
    }

    /// Whether the topic is closed.
    pub fn is_closed(&self) -> bool {
        self.kind == Kind::Closed
    }

    /// Whether the backend's configuration is at fault.
    pub fn is_config(&self) -> bool {
        self.kind == Kind::Config
    }
}

/// The note of [`Error::outcome_unknown_repeatable`].
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
const REPEATABLE: &str = "repeatable";

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind);
        if let Some(note) = self.note {
            d.field("note", &note);
        }
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Configuration is the developer's, at start-up: say what is wrong with it.
        if let (Kind::Config, Some(source)) = (self.kind, &self.source) {
            return write!(f, "the hub's backend is misconfigured: {source}");
        }
        match (self.kind, self.note) {
            (Kind::Unavailable, Some(class)) => {
                return write!(
                    f,
                    "the hub's backend refused the command ({class}) and nothing was done; \
                     try again later"
                );
            }
            (Kind::OutcomeUnknown, Some(_)) => {
                return f.write_str(
                    "the hub's backend failed before it answered (a timeout or a dropped \
                     connection): it may or may not have been done; retrying it is safe",
                );
            }
            _ => {}
        }
        f.write_str(match self.kind {
            Kind::Unavailable => {
                "the hub's backend is unavailable and nothing was done; try again shortly"
            }
            Kind::OutcomeUnknown => {
                "the hub's backend failed before it answered (a timeout or a dropped \
                 connection): the event may or may not have been stored. Retry with the same idempotency key, which is safe; a retry without one \
                 may store the event twice"
            }
            Kind::KeyReused => {
                "the idempotency key was used within its window for a different event on this \
                 topic; use a new key for a new event"
            }
            Kind::TooManyTopics => {
                "the hub holds as many topics as it may and none is idle; try again later"
            }
            Kind::HistoryFull => {
                "the hub's history is at its byte bound and nothing can be evicted; try again later"
            }
            Kind::Closed => "the topic is closed",
            Kind::Config => "the hub's backend is misconfigured",
            Kind::Internal => "the hub's backend failed",
        })
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn StdError + 'static))
    }
}
