use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::{HeaderName, HeaderValue, Method, header};
use tower_layer::Layer;

// Re-exported for `super::compression`, which still imports it from here.
use super::config::Config;
use super::cors::{AllowedOrigins, InvalidOrigin};
use super::host::{AllowedHosts, InvalidHost};
use super::origin::Scheme;
use super::proxy::{InvalidProxy, TrustedProxies};
use super::service::SseService;
use crate::registry::{Limits, Registry};

/// Default interval between keep-alive comments: well under the 60 s idle limits of nginx and
/// AWS load balancers.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Default [write timeout](SseLayer::write_timeout): how long a stream may wait for its client
/// to accept bytes before it is ended. Twice the default keep-alive interval, so a stream that
/// has nothing but keep-alives to send is not ended for one late comment, and half the idle
/// limit of nginx and AWS load balancers (60 s), which would cut the connection anyway; a
/// client that takes nothing for 30 s while the server has something to send has gone, or
/// does not read.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Default `retry:` hint at shutdown, before jitter.
pub const DEFAULT_SHUTDOWN_RETRY: Duration = Duration::from_secs(2);

/// Default `retry:` hint for a stream refused by a connection limit, before jitter.
pub const DEFAULT_OVER_LIMIT_RETRY: Duration = Duration::from_secs(10);

/// A tower [`Layer`] that makes every `text/event-stream` response production-grade.
///
/// See the [module documentation](crate::layer) for what it does to a stream, and the setters
/// below for what can be changed. It is a cheap [`Clone`] configuration value.
#[derive(Debug, Clone)]
#[must_use]
pub struct SseLayer {
    pub(crate) config: Arc<Config>,
}

impl Default for SseLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl SseLayer {
    /// A layer with the defaults: keep-alive every 15 s, a one-line initial comment so proxies
    /// pass the headers on at once, no `retry:` hint, no padding, no cross-origin access
    /// (same-origin pages only), cross-origin requests with unsafe methods refused
    /// ([`no_cross_origin_protection`](Self::no_cross_origin_protection)), and every host
    /// served ([`allow_hosts`](Self::allow_hosts)).
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
            registry: Registry::new(),
            limits: Limits::default(),
            shutdown_retry: DEFAULT_SHUTDOWN_RETRY,
            over_limit_retry: DEFAULT_OVER_LIMIT_RETRY,
            max_lifetime: None,
            write_timeout: Some(DEFAULT_WRITE_TIMEOUT),
            trusted_proxies: None,
            shutdown_grace: Duration::ZERO,
            hosts: None,
            public_scheme: None,
            cross_origin_protection: true,
            compression: Default::default(),
        };
        config.refresh();
        SseLayer {
            config: Arc::new(config),
        }
    }

    pub(super) fn update(mut self, f: impl FnOnce(&mut Config)) -> Self {
        let config = Arc::make_mut(&mut self.config);
        f(config);
        config.refresh();
        self
    }

    /// Sends a keep-alive comment (`:`) after `interval` without any other bytes, so proxies and
    /// load balancers do not close an idle stream and a vanished client is noticed at the next
    /// write. The timer restarts with every event, and the comment is only ever written between
    /// two complete events. Default: 15 s. `Duration::ZERO` switches keep-alive off, like
    /// [`no_keep_alive`](Self::no_keep_alive).
    pub fn keep_alive(self, interval: Duration) -> Self {
        self.update(|c| c.keep_alive = (!interval.is_zero()).then_some(interval))
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
    /// Pages on these origins also pass the
    /// [cross-origin protection](Self::no_cross_origin_protection): they may `POST` (or `PUT`,
    /// `DELETE`, …) through the layer, which pages on other origins may not.
    ///
    /// CORS applies to every request that passes through the layer, since a preflight cannot
    /// know which response will follow; put the layer on the routes that need it.
    ///
    /// # Panics
    ///
    /// When an origin is `*`, `null`, or not of the form `scheme://host[:port]`; the message
    /// says what to write instead. Use [`try_allow_origins`](Self::try_allow_origins) for
    /// origins that come from configuration.
    #[track_caller]
    pub fn allow_origins<I, O>(self, origins: I) -> Self
    where
        I: IntoIterator<Item = O>,
        O: AsRef<str>,
    {
        or_panic(self.try_allow_origins(origins), "allow_origins")
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

    /// Decides per request which origins may open streams with credentials (and pass the
    /// [cross-origin protection](Self::no_cross_origin_protection)), e.g. every subdomain of
    /// one site. The predicate is asked once per request, and never about an origin no browser
    /// sends and no credentialed answer may echo: `null`, `*`, a list, or a value with
    /// whitespace or a byte outside printable ASCII, which are refused first. Check the scheme
    /// too, as below: `http://evil.example.com` also ends with `.example.com`.
    ///
    /// ```
    /// use tower_sse::SseLayer;
    ///
    /// let layer = SseLayer::new().allow_origin_predicate(|origin, _parts| {
    ///     origin
    ///         .to_str()
    ///         .ok()
    ///         .and_then(|origin| origin.strip_prefix("https://"))
    ///         .is_some_and(|host| host.ends_with(".example.com"))
    /// });
    /// # let _ = layer;
    /// ```
    pub fn allow_origin_predicate<F>(self, predicate: F) -> Self
    where
        F: Fn(&HeaderValue, &Parts) -> bool + Send + Sync + 'static,
    {
        self.update(|c| c.origins = Some(AllowedOrigins::predicate(predicate)))
    }

    /// Lists every stream in `registry` (by default each layer has its own). Give it the hub's,
    /// `SseLayer::new().registry(hub.registry())`, so the hub's streams are listed, limited and
    /// shut down together.
    pub fn registry(self, registry: Registry) -> Self {
        self.update(|c| c.registry = registry)
    }

    /// Caps the number of open streams. One over the cap is answered `200 OK` with a `retry:`
    /// hint (10 s, jittered) and an immediate end, not with `429` or `503`: a browser's
    /// `EventSource` treats any status but 200 as final and would never reconnect, whereas this
    /// way it comes back later by itself. Other clients see a stream that ends at once, with a
    /// comment saying why.
    pub fn max_connections(self, max: usize) -> Self {
        self.update(|c| c.limits.global = Some(max))
    }

    /// Caps the number of open streams from one peer IP address, answered like
    /// [`max_connections`](Self::max_connections). Needs the peer address: with axum, serve
    /// with `into_make_service_with_connect_info::<SocketAddr>()`; requests without one are
    /// not counted. Behind a reverse proxy, list it in
    /// [`trusted_proxies`](Self::trusted_proxies), or every client counts as the proxy.
    pub fn max_connections_per_peer(self, max: usize) -> Self {
        self.update(|c| c.limits.per_peer = Some(max))
    }

    /// Believes the `Forwarded` (RFC 7239) and `X-Forwarded-For` headers of requests whose
    /// peer is one of these proxies: IP addresses (`"10.0.0.7"`, `"::1"`) or networks in CIDR
    /// notation (`"10.0.0.0/8"`, `"fd00::/8"`). Without it (the default), those headers are
    /// ignored.
    ///
    /// For a request from a listed proxy, the client is the rightmost address in the header
    /// that is not a listed proxy (each proxy appends the address it received the request from,
    /// so what lies left of that may have been written by the client), and it is what the
    /// [per-peer limit](Self::max_connections_per_peer) counts and the
    /// [registry](crate::registry::ConnectionInfo::peer) shows. The layer leaves it in the
    /// request's extensions as a [`ClientAddr`](crate::layer::ClientAddr) for handlers. A
    /// request from any other peer is taken at its peer address, whatever headers it sends. So
    /// is a request whose header cannot be read where it matters (`for=unknown`, an obfuscated
    /// name, garbage), and one whose `Forwarded` and `X-Forwarded-For` name different clients
    /// (a proxy sets one of them and passes the other on as the client wrote it, so neither can
    /// be believed). Headers are never a cause for a panic or an error.
    ///
    /// List only the proxies in front of the server, and make sure nothing else can reach it
    /// from their addresses.
    ///
    /// ```
    /// use tower_sse::SseLayer;
    ///
    /// // nginx on the same host, and the load balancers of the private network.
    /// let layer = SseLayer::new()
    ///     .trusted_proxies(["127.0.0.1", "::1", "10.0.0.0/8"])
    ///     .max_connections_per_peer(50);
    /// # let _ = layer;
    /// ```
    ///
    /// # Panics
    ///
    /// When an entry is neither an IP address nor a network; the message says what to write.
    /// Use [`try_trusted_proxies`](Self::try_trusted_proxies) for lists that come from
    /// configuration.
    #[track_caller]
    pub fn trusted_proxies<I, P>(self, proxies: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<str>,
    {
        or_panic(self.try_trusted_proxies(proxies), "trusted_proxies")
    }

    /// Like [`trusted_proxies`](Self::trusted_proxies), but reports an unusable entry as an
    /// error, for lists read from configuration or the environment.
    ///
    /// ```
    /// use tower_sse::SseLayer;
    ///
    /// let err = SseLayer::new().try_trusted_proxies(["10.0.0.0/33"]).unwrap_err();
    /// assert!(err.to_string().contains("CIDR"));
    /// ```
    ///
    /// # Errors
    ///
    /// When an entry is neither an IP address nor a network in CIDR notation.
    pub fn try_trusted_proxies<I, P>(self, proxies: I) -> Result<Self, InvalidProxy>
    where
        I: IntoIterator<Item = P>,
        P: AsRef<str>,
    {
        let proxies = TrustedProxies::list(proxies)?;
        Ok(self.update(|c| c.trusted_proxies = (!proxies.is_empty()).then_some(proxies)))
    }

    /// Serves only requests for these hosts, against DNS rebinding; any other request is
    /// answered `421 Misdirected Request` before the handler runs. Without it (the default),
    /// every host is served: right for a library behind a proxy that already routes by host,
    /// wrong for a server a browser can reach directly (on `localhost` above all), where a
    /// page on a name its author points at the server's address reads and writes as a
    /// same-origin page. See the
    /// [module documentation](crate::layer#cross-site-requests-and-dns-rebinding).
    ///
    /// Entries are `host` or `host:port`, compared case-insensitively: a name
    /// (`"api.example.com"`, internationalized names in their `xn--` form), an IPv4 address
    /// (`"127.0.0.1"`), an IPv6 address in brackets (`"[::1]"`; a bare `"::1"` is taken too),
    /// or every subdomain of a name (`"*.example.com"`, which does not include `example.com`
    /// itself). An entry without a port allows any port; one with a port allows that port only,
    /// a request without a port being on its scheme's default one (see
    /// [`public_scheme`](Self::public_scheme)). A trailing dot (`example.com.`) is ignored.
    ///
    /// The host of a request is its `Host` header and, on HTTP/2 or with an absolute-form
    /// target, its target's authority: each of them it has must be listed. A request that
    /// names no host, names it twice or in a malformed way is answered `400 Bad Request`. The
    /// check applies to every request through the layer (preflights and ordinary routes too),
    /// keeps nothing and reads no body. `421` rather than `403`: the request is not forbidden
    /// to its sender, it reached a server that does not answer for that name (RFC 9110
    /// §15.5.20), and an HTTP/2 client that sent it on a connection it shares between names
    /// retries it on a new one.
    ///
    /// ```
    /// use tower_sse::SseLayer;
    ///
    /// // A push server reached as push.example.com, and on this machine while developing.
    /// let layer = SseLayer::new().allow_hosts([
    ///     "push.example.com",
    ///     "localhost:8080",
    ///     "127.0.0.1:8080",
    ///     "[::1]:8080",
    /// ]);
    /// # let _ = layer;
    /// ```
    ///
    /// # Panics
    ///
    /// When an entry is not `host[:port]` (a scheme, a path, `*`, a wildcard that is not the
    /// first label); the message says what to write. Use
    /// [`try_allow_hosts`](Self::try_allow_hosts) for lists that come from configuration.
    #[track_caller]
    pub fn allow_hosts<I, H>(self, hosts: I) -> Self
    where
        I: IntoIterator<Item = H>,
        H: AsRef<str>,
    {
        or_panic(self.try_allow_hosts(hosts), "allow_hosts")
    }

    /// Like [`allow_hosts`](Self::allow_hosts), but reports an unusable entry as an error, for
    /// lists read from configuration or the environment.
    ///
    /// ```
    /// use tower_sse::SseLayer;
    ///
    /// let err = SseLayer::new().try_allow_hosts(["https://api.example.com"]).unwrap_err();
    /// assert!(err.to_string().contains("no scheme"));
    /// ```
    ///
    /// # Errors
    ///
    /// When an entry is not `host[:port]`, `*.host[:port]`, or a bracketed IPv6 address with an
    /// optional port.
    pub fn try_allow_hosts<I, H>(self, hosts: I) -> Result<Self, InvalidHost>
    where
        I: IntoIterator<Item = H>,
        H: AsRef<str>,
    {
        let hosts = AllowedHosts::list(hosts)?;
        Ok(self.update(|c| c.hosts = Some(hosts)))
    }

    /// The scheme clients reach the server by, `https` behind a TLS terminator, for the
    /// same-origin checks: the origin of a page is its scheme, host and port, so the layer
    /// must know the scheme of its own. Default: the scheme the
    /// [trusted proxies](Self::trusted_proxies) forward (`Forwarded: proto=`,
    /// `X-Forwarded-Proto`), else the request target's (HTTP/2 always has one), else `http`.
    /// Set it when the layer cannot see it: TLS terminated by a proxy it does not trust, or by
    /// the server itself over HTTP/1.1. It takes precedence over the request target's scheme,
    /// not over what trusted proxies forward.
    ///
    /// It matters for requests whose browser sends no `Sec-Fetch-Site` (those older than 2023):
    /// with the wrong scheme, their same-origin `POST`s are refused as cross-origin and their
    /// same-origin streams that send an `Origin` answered `403`.
    ///
    /// ```
    /// use http::uri::Scheme;
    /// use tower_sse::SseLayer;
    ///
    /// let layer = SseLayer::new().public_scheme(Scheme::HTTPS);
    /// # let _ = layer;
    /// ```
    ///
    /// # Panics
    ///
    /// When `scheme` is neither `http` nor `https`.
    #[track_caller]
    pub fn public_scheme(self, scheme: http::uri::Scheme) -> Self {
        let Some(scheme) = Scheme::parse(scheme.as_str().as_bytes()) else {
            panic!(
                "tower_sse::SseLayer::public_scheme: {scheme:?} is neither `http` nor `https`; \
                 write `http::uri::Scheme::HTTPS` or `http::uri::Scheme::HTTP`"
            );
        };
        self.update(|c| c.public_scheme = Some(scheme))
    }

    /// Lets cross-origin requests with unsafe methods through to the handler.
    ///
    /// By default, a request whose method is not `GET`, `HEAD` or `OPTIONS` and that a browser
    /// sent from a page of another origin is answered `403 Forbidden` before the handler runs,
    /// unless that origin is [allowed](Self::allow_origins): without it, any web page could
    /// make its visitors' browsers `POST` to the server (a "simple" `POST`, a form's or a
    /// `fetch` with a `text/plain` body, needs no preflight), with their cookies, or from
    /// their network to a server on `localhost`. The check is Go's
    /// `net/http.CrossOriginProtection`: `Sec-Fetch-Site` says where the request comes from
    /// (`same-origin` or `none` pass); for browsers that do not send it, an `Origin` must be
    /// the server's own (scheme, host and port, see [`public_scheme`](Self::public_scheme)) or
    /// an allowed one, and `Origin: null` never passes. A request with neither header (`curl`,
    /// a server) passes. The refusal keeps nothing and reads no body; safe methods and
    /// preflights are never refused, so handlers must not change anything on `GET`.
    ///
    /// Switch it off only for routes that take no action on behalf of a browser's user, or
    /// that protect themselves (a token in the body or a custom header that no cross-origin
    /// page can send without a preflight). See the
    /// [module documentation](crate::layer#cross-site-requests-and-dns-rebinding).
    ///
    /// ```
    /// use tower_sse::SseLayer;
    ///
    /// // A webhook receiver: servers post to it, with a signature the handler checks.
    /// let layer = SseLayer::new().no_cross_origin_protection();
    /// # let _ = layer;
    /// ```
    pub fn no_cross_origin_protection(self) -> Self {
        self.update(|c| c.cross_origin_protection = false)
    }

    /// The `retry:` hint of a stream refused by a connection limit, before jitter (±50 %).
    /// Default 10 s.
    pub fn over_limit_retry(self, retry: Duration) -> Self {
        self.update(|c| c.over_limit_retry = retry)
    }

    /// The `retry:` hint every stream ends with at shutdown, at its
    /// [`max_lifetime`](Self::max_lifetime) and after a [stall](Self::write_timeout), before
    /// jitter (±50 %, so clients do not all come back at once). Default 2 s.
    pub fn shutdown_retry(self, retry: Duration) -> Self {
        self.update(|c| c.shutdown_retry = retry)
    }

    /// Ends every event stream once it has been open for `lifetime`, with the jittered
    /// `retry:` hint a [`shutdown`](Self::shutdown) sends
    /// ([`shutdown_retry`](Self::shutdown_retry)), so the reconnects of streams opened together
    /// spread out. It ends between two events: a stream in the middle of one ends once that
    /// event is complete. The client reconnects by itself (with its `Last-Event-ID`).
    ///
    /// Long-lived connections pin a server and the load balancer's choice; ending them now and
    /// then lets load rebalance and lets a credential checked at connect time be checked again
    /// (Mercure ends its streams every 600 s by default). Off by default; `Duration::ZERO`
    /// switches it off too.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_sse::SseLayer;
    ///
    /// let layer = SseLayer::new().max_lifetime(Duration::from_secs(600));
    /// # let _ = layer;
    /// ```
    pub fn max_lifetime(self, lifetime: Duration) -> Self {
        self.update(|c| c.max_lifetime = (!lifetime.is_zero()).then_some(lifetime))
    }

    /// Ends a stream whose client has accepted no bytes for `timeout` while the stream had
    /// something to send (an event or a keep-alive comment): a client that stopped reading, or
    /// never read. Its slot under the [connection limits](Self::max_connections) is freed at
    /// once, it leaves the [registry](crate::registry::Registry) (with a `Disconnected`
    /// presence notice), and it is counted in
    /// [`RegistryStats::stalled`](crate::registry::RegistryStats::stalled) (and in
    /// [`HubStats::stalled_readers`](crate::hub::HubStats::stalled_readers) for the hub's
    /// registry). Should the client read again, it finds the stream ended with the jittered
    /// `retry:` hint of a [shutdown](Self::shutdown_retry). Default: 30 s
    /// ([`DEFAULT_WRITE_TIMEOUT`]). `Duration::ZERO` switches it off, like
    /// [`no_write_timeout`](Self::no_write_timeout).
    ///
    /// Served by `tower_sse::serve`, the server tells the layer when the connection's socket
    /// stopped taking bytes, and the connection that carried a stalled stream is reset (over
    /// HTTP/2, with the client's other streams on it), freeing its socket and buffers. A
    /// stream that stalls is ended within `timeout` and a quarter more (a task per registry
    /// looks over the open streams four times per timeout).
    ///
    /// Any other server (plain `axum::serve`) works too, with a longer bound: the layer sees
    /// that nobody asked the stream for its next frame, which a server does only once it has
    /// taken the previous one into its write buffer. hyper takes up to 16 frames there
    /// whether or not the socket accepts them, and a keep-alive is one frame, so a stream
    /// that has only keep-alives to send is found up to 16 keep-alive intervals later (one
    /// with events to send, within the timeout). Such a server still holds the connection,
    /// with what its socket and write buffer hold, until the client reads or goes, as the
    /// layer cannot close a socket; a server that caps the socket send buffer bounds what
    /// each holds, not how many.
    ///
    /// A stream with nothing to send is never stalled: an idle client is found by the
    /// keep-alive instead. A slow client is not stalled either, as long as it takes some bytes
    /// within each `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_sse::SseLayer;
    ///
    /// let layer = SseLayer::new().write_timeout(Duration::from_secs(10));
    /// # let _ = layer;
    /// ```
    pub fn write_timeout(self, timeout: Duration) -> Self {
        self.update(|c| c.write_timeout = (!timeout.is_zero()).then_some(timeout))
    }

    /// Switches the [write timeout](Self::write_timeout) off: a client that stops reading
    /// keeps its stream (and its slot under the connection limits) until it goes away.
    pub fn no_write_timeout(self) -> Self {
        self.update(|c| c.write_timeout = None)
    }

    /// Lets open streams run for up to `grace` once shutdown starts
    /// ([`shutdown`](Self::shutdown), [`shutdown_on`](Self::shutdown_on)), so that a short
    /// answer can finish.
    ///
    /// New streams are refused from the start of the shutdown (with a `retry:` hint, as
    /// always), while open ones keep flowing: one that ends by itself within `grace` ends
    /// normally, with its own last event; the rest end at `grace` the way shutdown ends every
    /// stream, with a jittered `retry:` hint. So a graceful shutdown still completes, within
    /// `grace`. Default: zero, every stream ends when shutdown starts.
    ///
    /// The grace is counted by a task on the tokio runtime that starts the shutdown; one
    /// started outside a runtime ends every stream at once.
    ///
    /// ```no_run
    /// # async fn run(app: axum::Router, listener: tokio::net::TcpListener) {
    /// use std::time::Duration;
    ///
    /// let sse = tower_sse::SseLayer::new().shutdown_grace(Duration::from_secs(10));
    /// axum::serve(listener, app.layer(sse.clone()))
    ///     // On SIGTERM: no new streams, open ones have 10 s to finish, then `serve` returns.
    ///     .with_graceful_shutdown(sse.shutdown_on(tower_sse::shutdown_signal()))
    ///     .await
    ///     .unwrap();
    /// # }
    /// ```
    pub fn shutdown_grace(self, grace: Duration) -> Self {
        self.update(|c| c.shutdown_grace = grace)
    }

    /// Ends every open stream of this layer's registry, each with a final jittered `retry:`
    /// hint written between two events, and answers every new stream with such a hint and an
    /// immediate end. Streams end on their next poll, so a graceful shutdown that waits for
    /// open responses completes promptly; with a [`shutdown_grace`](Self::shutdown_grace),
    /// open streams end by themselves or when it is over.
    pub fn shutdown(&self) {
        shut_down(&self.config.registry, self.config.shutdown_grace);
    }

    /// A future for `axum::serve(..).with_graceful_shutdown(..)`: waits for `signal`, starts
    /// the shutdown (see [`shutdown`](Self::shutdown)), then resolves so the server stops
    /// accepting connections and waits for the open ones, whose streams end at once or, with a
    /// [`shutdown_grace`](Self::shutdown_grace), within it.
    ///
    /// ```no_run
    /// # async fn run(app: axum::Router, listener: tokio::net::TcpListener) {
    /// let sse = tower_sse::SseLayer::new();
    /// axum::serve(listener, app.layer(sse.clone()))
    ///     .with_graceful_shutdown(sse.shutdown_on(tower_sse::shutdown_signal()))
    ///     .await
    ///     .unwrap();
    /// # }
    /// ```
    pub fn shutdown_on<F>(&self, signal: F) -> impl Future<Output = ()> + Send + 'static
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let registry = self.config.registry.clone();
        let grace = self.config.shutdown_grace;
        async move {
            signal.await;
            shut_down(&registry, grace);
        }
    }

    /// Methods that allowed origins may use, besides the default `GET` and `HEAD` (say, `POST`
    /// for a publish route under the same layer, or for a stream that answers a `POST` read
    /// with `fetch`; see the [module documentation](crate::layer#streams-that-answer-a-post)).
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
    /// `Cache-Control` (say, `Content-Type` for a JSON body, which `fetch` preflights).
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

/// The layer a fallible setter built, for its panicking twin: its error is a programmer's.
#[track_caller]
fn or_panic<E: std::fmt::Display>(built: Result<SseLayer, E>, setter: &str) -> SseLayer {
    match built {
        Ok(layer) => layer,
        Err(err) => panic!("tower_sse::SseLayer::{setter}: {err}"),
    }
}

/// Starts a shutdown: no new streams from now on, and every open one ended now or, given a
/// grace, when it is over.
fn shut_down(registry: &Registry, grace: Duration) {
    if grace.is_zero() {
        registry.close_all();
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("shutdown outside a tokio runtime: streams end now, without their grace");
        registry.close_all();
        return;
    };
    registry.stop_admitting();
    let registry = registry.clone();
    runtime.spawn(async move {
        tokio::time::sleep(grace).await;
        registry.close_all();
    });
}

impl<S> Layer<S> for SseLayer {
    type Service = SseService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SseService::new(inner, self.config.clone())
    }
}
