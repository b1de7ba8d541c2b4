use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

/// Who sent a request, as a [`Policy`](super::Policy) authenticated it: anonymous, or
/// authenticated (with a subject, an expiry and the policy's own claims, each optional). A
/// cheap [`Clone`].
///
/// As an axum extractor, it authenticates the request with the hub's policy; see the
/// [module documentation](super).
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tower_sse::auth::Identity;
///
/// let ann = Identity::authenticated()
///     .with_subject("ann")
///     .with_expiry(SystemTime::now() + Duration::from_secs(3600))
///     .with_claims(vec!["editor".to_owned()]);
/// assert_eq!(ann.subject(), Some("ann"));
/// assert_eq!(ann.claims::<Vec<String>>().unwrap(), &["editor"]);
/// assert!(Identity::anonymous().is_anonymous());
/// ```
#[derive(Clone, Default)]
pub struct Identity {
    authenticated: bool,
    subject: Option<Arc<str>>,
    expires_at: Option<SystemTime>,
    claims: Option<Arc<dyn Any + Send + Sync>>,
}

impl Identity {
    /// A request without credentials.
    pub fn anonymous() -> Self {
        Identity::default()
    }

    /// A request whose credentials hold.
    pub fn authenticated() -> Self {
        Identity {
            authenticated: true,
            ..Identity::default()
        }
    }

    /// Who it is: a user id, a token's `sub`.
    #[must_use]
    pub fn with_subject(mut self, subject: impl AsRef<str>) -> Self {
        self.subject = Some(subject.as_ref().into());
        self
    }

    /// When the authorization ends (a token's `exp`): a subscription authorized by this
    /// identity ends then, with a `retry:` hint, so the client comes back with fresh
    /// credentials. An earlier expiry already set is kept.
    #[must_use]
    pub fn with_expiry(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(self.expires_at.map_or(at, |old| old.min(at)));
        self
    }

    /// The policy's own data about the request (a token's claims, a user's roles), for its
    /// [`authorize`](super::Policy::authorize) and for handlers: read back with
    /// [`claims`](Self::claims).
    #[must_use]
    pub fn with_claims<T: Any + Send + Sync>(mut self, claims: T) -> Self {
        self.claims = Some(Arc::new(claims));
        self
    }

    /// Whether the request carried no credentials.
    pub fn is_anonymous(&self) -> bool {
        !self.authenticated
    }

    /// Who it is, when the policy said.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// When the authorization ends, if it does.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// Whether the authorization has ended by `now`.
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// The claims set with [`with_claims`](Self::with_claims), when they are a `T`.
    pub fn claims<T: Any>(&self) -> Option<&T> {
        self.claims.as_deref()?.downcast_ref()
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("authenticated", &self.authenticated)
            .field("subject", &self.subject)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}
