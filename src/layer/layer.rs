use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::request::Parts;
use http::{HeaderName, HeaderValue, Method, header};
use tower_layer::Layer;

use super::cors::{AllowedOrigins, InvalidOrigin};
use super::service::SseService;

/// Default interval between keep-alive comments: well under the 60 s idle limits of nginx and
/// AWS load balancers.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Size of the optional padding comment for old polyfills.
const PADDING: usize = 2048;

/// A tower [`Layer`] that makes every `text/event-stream` response production-grade.
///
/// See the [module documentation](crate::layer) for what it does to a stream, and the setters
/// below for what can be changed. It is a cheap [`Clone`] configuration value.
#[derive(Debug, Clone)]
#[must_use]
pub struct SseLayer {
    pub(crate) config: Arc<Config>,
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) keep_alive: Option<Duration>,
    retry: Option<Duration>,
    initial_comment: bool,
    padding: bool,
    /// The bytes a stream starts with (initial comment, padding, retry hint), if any.
    pub(crate) prelude: Option<Bytes>,
    pub(crate) origins: Option<AllowedOrigins>,
    allow_methods: Vec<Method>,
    allow_headers: Vec<HeaderName>,
    /// The CORS layer derived from the settings above; `None` without allowed origins.
    pub(crate) cors: Option<tower_http::cors::CorsLayer>,
}

impl Default for SseLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl SseLayer {
    /// A layer with the defaults: keep-alive every 15 s, a one-line initial comment so proxies
    /// pass the headers on at once, no `retry:` hint, no padding, and no cross-origin access
    /// (same-origin pages only).
    pub fn new() -> Self {
        let mut config = Config {
            keep_alive: Some(DEFAULT_KEEP_ALIVE),
            retry: None,
            initial_comment: true,
            padding: false,
            prelude: None,
            origins: None,
            allow_methods: vec![Method::GET, Method::HEAD],
            allow_headers: vec![
                HeaderName::from_static("last-event-id"),
                header::CACHE_CONTROL,
            ],
            cors: None,
        };
        config.refresh();
        SseLayer {
            config: Arc::new(config),
        }
    }

    fn update(mut self, f: impl FnOnce(&mut Config)) -> Self {
        let config = Arc::make_mut(&mut self.config);
        f(config);
        config.refresh();
        self
    }

    /// Sends a keep-alive comment (`:`) after `interval` without any other bytes, so proxies and
    /// load balancers do not close an idle stream and a vanished client is noticed at the next
    /// write. The timer restarts with every event, and the comment is only ever written between
    /// two complete events. Default: 15 s.
    pub fn keep_alive(self, interval: Duration) -> Self {
        self.update(|c| c.keep_alive = Some(interval))
    }

    /// Switches keep-alive comments off.
    pub fn no_keep_alive(self) -> Self {
        self.update(|c| c.keep_alive = None)
    }

    /// Starts every stream with a `retry:` hint: how long the browser waits before it
    /// reconnects after the connection drops. Browsers default to a few seconds.
    pub fn retry(self, retry: Duration) -> Self {
        self.update(|c| c.retry = Some(retry))
    }

    /// Does not start streams with the one-line comment that makes buffering proxies pass the
    /// response headers on at once. On by default.
    pub fn no_initial_comment(self) -> Self {
        self.update(|c| c.initial_comment = false)
    }

    /// Starts every stream with a 2 KiB comment, which some old `EventSource` polyfills (and
    /// old Internet Explorer XHR streaming) need before they deliver the first event. Off by
    /// default.
    pub fn padding(self, padding: bool) -> Self {
        self.update(|c| c.padding = padding)
    }

    /// Allows pages on these exact origins to open streams with credentials (cookies), as in
    /// `new EventSource(url, { withCredentials: true })`.
    ///
    /// An allowed origin is echoed in `Access-Control-Allow-Origin` with
    /// `Access-Control-Allow-Credentials: true` and `Vary: Origin`; preflights asking for
    /// `Last-Event-ID` or `Cache-Control` succeed. A request from any other origin (or from
    /// `Origin: null`) gets no CORS headers, and if it asked for an event stream it is answered
    /// `403 Forbidden` without the stream being polled. Same-origin requests need no listing.
    ///
    /// CORS applies to every request that passes through the layer, since a preflight cannot
    /// know which response will follow; put the layer on the routes that need it.
    ///
    /// # Panics
    ///
    /// When an origin is `*`, `null`, or not of the form `scheme://host[:port]`; the message
    /// says what to write instead. Use [`try_allow_origins`](Self::try_allow_origins) for
    /// origins that come from configuration.
    pub fn allow_origins<I, O>(self, origins: I) -> Self
    where
        I: IntoIterator<Item = O>,
        O: AsRef<str>,
    {
        match self.try_allow_origins(origins) {
            Ok(layer) => layer,
            Err(err) => panic!("tower_sse::SseLayer::allow_origins: {err}"),
        }
    }

    /// Like [`allow_origins`](Self::allow_origins), but reports an unusable origin as an error,
    /// for origins read from configuration or the environment.
    ///
    /// ```
    /// use tower_sse::SseLayer;
    ///
    /// let err = SseLayer::new().try_allow_origins(["*"]).unwrap_err();
    /// assert!(err.to_string().contains("list each exact origin"));
    /// ```
    ///
    /// # Errors
    ///
    /// When an origin is `*`, `null`, or not of the form `scheme://host[:port]`.
    pub fn try_allow_origins<I, O>(self, origins: I) -> Result<Self, InvalidOrigin>
    where
        I: IntoIterator<Item = O>,
        O: AsRef<str>,
    {
        let origins = AllowedOrigins::list(origins)?;
        Ok(self.update(|c| c.origins = Some(origins)))
    }

    /// Decides per request which origins may open streams with credentials, e.g. every
    /// subdomain of one site. `Origin: null` is refused before the predicate is asked.
    ///
    /// ```
    /// use tower_sse::SseLayer;
    ///
    /// let layer = SseLayer::new().allow_origin_predicate(|origin, _parts| {
    ///     origin.as_bytes().ends_with(b".example.com")
    /// });
    /// # let _ = layer;
    /// ```
    pub fn allow_origin_predicate<F>(self, predicate: F) -> Self
    where
        F: Fn(&HeaderValue, &Parts) -> bool + Send + Sync + 'static,
    {
        self.update(|c| c.origins = Some(AllowedOrigins::predicate(predicate)))
    }

    /// Methods that allowed origins may use, besides the default `GET` and `HEAD` (say, `POST`
    /// for a publish route under the same layer).
    pub fn allow_methods<I: IntoIterator<Item = Method>>(self, methods: I) -> Self {
        self.update(|c| {
            for method in methods {
                if !c.allow_methods.contains(&method) {
                    c.allow_methods.push(method);
                }
            }
        })
    }

    /// Request headers that allowed origins may send, besides the default `Last-Event-ID` and
    /// `Cache-Control` (say, `Content-Type` for a JSON publish route under the same layer).
    pub fn allow_headers<I: IntoIterator<Item = HeaderName>>(self, headers: I) -> Self {
        self.update(|c| {
            for name in headers {
                if !c.allow_headers.contains(&name) {
                    c.allow_headers.push(name);
                }
            }
        })
    }
}

impl Config {
    /// Recomputes what is derived from the settings.
    fn refresh(&mut self) {
        self.prelude = self.build_prelude();
        self.cors = self.origins.as_ref().map(|origins| {
            tower_http::cors::CorsLayer::new()
                .allow_origin(origins.to_tower_http())
                .allow_credentials(true)
                .allow_methods(self.allow_methods.clone())
                .allow_headers(self.allow_headers.clone())
        });
    }

    fn build_prelude(&self) -> Option<Bytes> {
        if !self.initial_comment && !self.padding && self.retry.is_none() {
            return None;
        }
        let mut buf = BytesMut::with_capacity(if self.padding { PADDING + 32 } else { 32 });
        if self.initial_comment || self.padding {
            buf.put_u8(b':');
            if self.padding {
                buf.put_bytes(b' ', PADDING);
            }
            buf.put_u8(b'\n');
        }
        if let Some(retry) = self.retry {
            let retry = crate::Event::retry(retry);
            // `retry: N\n\n` without its blank line: the prelude ends with one below.
            buf.put_slice(&retry.as_bytes()[..retry.len() - 1]);
        }
        buf.put_u8(b'\n');
        Some(buf.freeze())
    }
}

impl<S> Layer<S> for SseLayer {
    type Service = SseService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SseService::new(inner, self.config.clone())
    }
}
