//! Who may publish to and subscribe to which topic: a [`Policy`] the [`Hub`](crate::Hub)
//! consults, and (feature `jwt`) a ready one on JSON Web Tokens, [`jwt::Jwt`].
//!
//! A policy answers two questions:
//!
//! - [`authenticate`](Policy::authenticate): who sent this request? An [`Identity`]: anonymous
//!   when the request carries no credentials, or authenticated, maybe until some time; a
//!   request with credentials that do not hold (a forged or expired token) is [`Denied`] with
//!   `401`.
//! - [`authorize`](Policy::authorize): may this identity do this [`Action`] on this topic?
//!
//! The hub holds the policy ([`HubBuilder::policy`](crate::HubBuilder::policy)). In an axum
//! handler, [`Identity`] is an extractor that authenticates the request with it (for any
//! state `S` where `Hub: FromRef<S>`), and the hub's checked methods authorize before they
//! do anything (before a replay is read, a topic is opened or an event is stored):
//! [`Hub::publish_as`](crate::Hub::publish_as), [`Hub::subscribe_as`](crate::Hub::subscribe_as)
//! and [`Hub::resume_as`](crate::Hub::resume_as). Denied, they fail with a [`HubError`]
//! that answers `401` (with `WWW-Authenticate: Bearer`) or `403`.
//!
//! A subscription authorized by an identity that expires ends when it expires, between two
//! events, with a `retry:` hint: the client comes back, with a fresh token or cookie, and
//! resumes after its `Last-Event-ID` once authorized again.
//!
//! The unchecked methods ([`Hub::publish`](crate::Hub::publish),
//! [`Hub::subscribe`](crate::Hub::subscribe), …) are for trusted server-side code, e.g. a
//! background job publishing to a user's topic: they consult no policy.
//!
//! [`HubError`]: crate::HubError
//!
//! # Example
//!
//! A policy for an application whose session middleware has already found the user: each user
//! reads their own topic, `user/{id}`, and nobody publishes from outside.
//!
//! ```
//! use axum::{Router, extract::{Path, State}, routing::get};
//! use http::request::Parts;
//! use tower_sse::auth::{Action, Denied, Identity, Policy};
//! use tower_sse::{Hub, HubError, LastEventId, SseLayer, Subscription};
//!
//! /// What the application's session middleware leaves in the request's extensions.
//! #[derive(Clone)]
//! struct UserId(String);
//!
//! struct OwnTopic;
//!
//! impl Policy for OwnTopic {
//!     fn authenticate(&self, request: &Parts) -> Result<Identity, Denied> {
//!         Ok(match request.extensions.get::<UserId>() {
//!             Some(user) => Identity::authenticated().with_subject(&user.0),
//!             None => Identity::anonymous(),
//!         })
//!     }
//!
//!     fn authorize(&self, who: &Identity, action: Action, topic: &str) -> Result<(), Denied> {
//!         let Some(user) = who.subject() else {
//!             return Err(Denied::unauthenticated("sign in first"));
//!         };
//!         match action {
//!             Action::Subscribe if topic.strip_prefix("user/") == Some(user) => Ok(()),
//!             _ => Err(Denied::forbidden("not your topic")),
//!         }
//!     }
//! }
//!
//! async fn events(
//!     State(hub): State<Hub>,
//!     who: Identity,
//!     Path(user): Path<String>,
//!     last: Option<LastEventId>,
//! ) -> Result<Subscription, HubError> {
//!     hub.subscribe_as(&who, &format!("user/{user}"), last).await
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let hub = Hub::builder().policy(OwnTopic).memory();
//! let app: Router = Router::new()
//!     .route("/events/{user}", get(events))
//!     .layer(SseLayer::new().registry(hub.registry()))
//!     .with_state(hub.clone());
//! # let _ = app;
//!
//! let ann = Identity::authenticated().with_subject("ann");
//! assert!(hub.subscribe_as(&ann, "user/ann", None).await.is_ok());
//! let denied = hub.subscribe_as(&ann, "user/bob", None).await.unwrap_err();
//! assert_eq!(denied.denied().unwrap().status(), 403);
//! let denied = hub.subscribe_as(&Identity::anonymous(), "user/ann", None).await.unwrap_err();
//! assert_eq!(denied.denied().unwrap().status(), 401);
//! // Trusted server-side code consults no policy.
//! hub.publish("user/bob", tower_sse::Event::data("your report is ready")).await.unwrap();
//! # }
//! ```
//!
//! # Private topics
//!
//! A hub without a policy lets every request do everything: anyone who can reach a handler
//! can read and publish any topic the handler passes on. That is safe only when the handler
//! decides the topic, never the client. Without a policy, these patterns are safe:
//!
//! - **Build the topic from the authenticated session**, in the handler: `user/{session.user}`,
//!   `org/{session.org}/alerts`. The client chooses nothing; a user cannot name someone
//!   else's topic. (A handler that also lets the client pick, e.g. a document id, must check
//!   that the user may see that document before it subscribes.)
//! - **Unguessable ids for per-response streams**: [`Hub::spawn_stream`](crate::Hub::spawn_stream)
//!   makes 128 random bits; whoever holds the id reads the stream, so hand it only to the
//!   client that asked, and never choose ids a client could guess (a job number, a user id)
//!   with [`StreamOptions::id`](crate::hub::StreamOptions::id).
//! - **Never take the topic raw from the path or query for private data.** `GET
//!   /events/{topic}` handing `topic` to [`Hub::subscribe`](crate::Hub::subscribe) makes
//!   every topic public, replay included: an old event is as readable as a live one.
//! - **Publish from the server**: when only server-side code publishes
//!   ([`Hub::publish`](crate::Hub::publish) from a job or another handler that has
//!   authorized its caller), no publishing route is needed at all.
//!
//! When clients do name topics (a push server, a hub shared by several applications, the
//! `examples/hub.rs` server), set a policy and call the checked methods: they authorize the
//! subscribe before any replay is read (an id from the past is no way around it), the publish
//! before anything is stored, and end a subscription when its authorization expires.
//! [`jwt::Jwt`] is such a policy, in Mercure's model: a token lists the topic
//! [selectors](Selector) its holder may publish to and subscribe to, and some topics may be
//! open to anonymous subscribers ([`jwt::Jwt::public_topics`]).
//!
//! A policy does not replace CORS or a host allow-list: browsers attach cookies to
//! cross-site requests, so a token carried in a cookie needs the layer's origin checks too.

mod denied;
mod identity;
#[cfg(feature = "jwt")]
pub mod jwt;
mod selector;

use std::fmt;
use std::sync::Arc;

use http::request::Parts;

pub use denied::Denied;
pub use identity::Identity;
pub use selector::Selector;

/// What a request wants to do with a topic; see [`Policy::authorize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// Read a topic: live events and the replay of its history.
    Subscribe,
    /// Publish an event to a topic.
    Publish,
    /// Operate the hub: list its connections, close topics, see its admin page. The topic is
    /// the one concerned, or `*` for the whole hub.
    Admin,
}

impl Action {
    /// `"subscribe"`, `"publish"` or `"admin"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Subscribe => "subscribe",
            Action::Publish => "publish",
            Action::Admin => "admin",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who may do what with which topic: consulted by the hub's checked methods; see the
/// [module documentation](self).
///
/// Both methods are synchronous and called on the request's task: keep them cheap (verifying
/// a signature, matching a list). A check that needs I/O (a session store, a database) belongs
/// in a middleware that runs before and leaves its result in the request's extensions, where
/// [`authenticate`](Self::authenticate) finds it, or in
/// [`Identity::with_claims`].
pub trait Policy: Send + Sync + 'static {
    /// Who sent this request: [`Identity::anonymous`] when it carries no credentials, an
    /// authenticated identity (with its expiry, if any) when they hold.
    ///
    /// # Errors
    ///
    /// Credentials that do not hold (a forged, malformed or expired token):
    /// [`Denied::invalid_token`], `401`. Do not fall back to anonymous then: the client
    /// should know its credentials failed.
    fn authenticate(&self, request: &Parts) -> Result<Identity, Denied>;

    /// Whether `who` may do `action` on `topic`.
    ///
    /// # Errors
    ///
    /// [`Denied::unauthenticated`] (`401`) when an anonymous identity needs credentials,
    /// [`Denied::forbidden`] (`403`) when an authenticated one lacks the right.
    fn authorize(&self, who: &Identity, action: Action, topic: &str) -> Result<(), Denied>;
}

/// A shared policy, e.g. one the application also consults itself.
impl<P: Policy + ?Sized> Policy for Arc<P> {
    fn authenticate(&self, request: &Parts) -> Result<Identity, Denied> {
        (**self).authenticate(request)
    }

    fn authorize(&self, who: &Identity, action: Action, topic: &str) -> Result<(), Denied> {
        (**self).authorize(who, action, topic)
    }
}

/// The policy a hub holds: shared, and `Debug` for the hub's builder.
#[derive(Clone)]
pub(crate) struct SharedPolicy(pub(crate) Arc<dyn Policy>);

impl fmt::Debug for SharedPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Policy")
    }
}

#[cfg(feature = "axum")]
mod axum_impls {
    use axum::extract::{FromRef, FromRequestParts};
    use http::request::Parts;

    use super::{Denied, Identity};
    use crate::Hub;

    /// Authenticates the request with the hub's [policy](super::Policy) (anonymous, without
    /// one). Rejected with [`Denied`] (`401`) when the request's credentials do not hold.
    impl<S> FromRequestParts<S> for Identity
    where
        Hub: FromRef<S>,
        S: Send + Sync,
    {
        type Rejection = Denied;

        async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Denied> {
            Hub::from_ref(state).authenticate(parts)
        }
    }
}

#[cfg(test)]
mod tests;
