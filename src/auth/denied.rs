use std::borrow::Cow;
use std::fmt;

use http::{HeaderValue, StatusCode};

/// Why a [`Policy`](super::Policy) refused a request: `401 Unauthorized` (no credentials, or
/// credentials that do not hold) or `403 Forbidden` (they hold, but do not grant this), with a
/// message for the client.
///
/// The message is sent to the client: say what is wrong with the request ("the token has
/// expired", "no subscribe selector of the token matches this topic"), never a secret or the
/// server's internals.
///
/// As an axum response: the status, `WWW-Authenticate: Bearer` on a `401` (with
/// `error="invalid_token"` and the message as `error_description` when credentials were
/// refused, as RFC 6750 says), and the message as the body. It converts into a
/// [`HubError`](crate::HubError) that answers the same.
///
/// ```
/// use tower_sse::auth::Denied;
///
/// let denied = Denied::invalid_token("the token has expired");
/// assert_eq!(denied.status(), 401);
/// assert_eq!(
///     denied.www_authenticate().unwrap(),
///     r#"Bearer error="invalid_token", error_description="the token has expired""#,
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    kind: Kind,
    message: Cow<'static, str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Unauthenticated,
    InvalidToken,
    Forbidden,
}

impl Denied {
    /// `401`: the request carries no credentials, and needs some.
    pub fn unauthenticated(message: impl Into<Cow<'static, str>>) -> Self {
        Denied::new(Kind::Unauthenticated, message)
    }

    /// `401`: the request's credentials do not hold (malformed, forged, expired, for another
    /// server).
    pub fn invalid_token(message: impl Into<Cow<'static, str>>) -> Self {
        Denied::new(Kind::InvalidToken, message)
    }

    /// `403`: the credentials hold, but do not grant this.
    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> Self {
        Denied::new(Kind::Forbidden, message)
    }

    fn new(kind: Kind, message: impl Into<Cow<'static, str>>) -> Self {
        Denied {
            kind,
            message: message.into(),
        }
    }

    /// `401 Unauthorized` or `403 Forbidden`.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            Kind::Unauthenticated | Kind::InvalidToken => StatusCode::UNAUTHORIZED,
            Kind::Forbidden => StatusCode::FORBIDDEN,
        }
    }

    /// Whether credentials are missing or do not hold (`401`), rather than insufficient.
    pub fn is_unauthenticated(&self) -> bool {
        self.status() == StatusCode::UNAUTHORIZED
    }

    /// The message for the client.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The `WWW-Authenticate` value of a `401`: `Bearer`, or for refused credentials
    /// `Bearer error="invalid_token", error_description="…"` (the message, with any character
    /// a quoted string cannot hold replaced). `None` for a `403`.
    pub fn www_authenticate(&self) -> Option<HeaderValue> {
        match self.kind {
            Kind::Unauthenticated => Some(HeaderValue::from_static("Bearer")),
            Kind::InvalidToken => {
                // RFC 6750 §3: error_description is %x20-21 / %x23-5B / %x5D-7E.
                let description: String = self
                    .message
                    .chars()
                    .map(|c| match c {
                        ' '..='~' if c != '"' && c != '\\' => c,
                        _ => '?',
                    })
                    .collect();
                let value =
                    format!(r#"Bearer error="invalid_token", error_description="{description}""#);
                Some(HeaderValue::from_str(&value).unwrap_or_else(|_| {
                    HeaderValue::from_static(r#"Bearer error="invalid_token""#)
                }))
            }
            Kind::Forbidden => None,
        }
    }
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Denied {}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for Denied {
    fn into_response(self) -> axum::response::Response {
        let mut response = (self.status(), format!("{self}\n")).into_response();
        if let Some(value) = self.www_authenticate() {
            response
                .headers_mut()
                .insert(http::header::WWW_AUTHENTICATE, value);
        }
        response
    }
}
