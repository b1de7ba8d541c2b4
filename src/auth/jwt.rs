//! [`Jwt`]: a [`Policy`] on JSON Web Tokens, in Mercure's model: the token lists the topic
//! [selectors](Selector) its holder may publish to and subscribe to, and whether it may operate
//! the hub.
//!
//! ```json
//! {"sse": {"publish": ["room/42"], "subscribe": ["room/*", "news"], "admin": false}, "exp": 1767225600}
//! ```
//!
//! - **Keys**: HS256 with a shared secret ([`Jwt::hs256`]), or RS256 / ES256 (and ES384,
//!   EdDSA) with a public key in PEM ([`Jwt::from_pem`], [`Jwt::from_pem_file`]); the
//!   algorithm follows the key, and a token signed with any other is refused (`alg: none`
//!   included).
//! - **The token** is looked for in the `Authorization: Bearer` header, then the cookie
//!   `sse_token` ([`Jwt::cookie`]; a browser's `EventSource` cannot set headers, but sends
//!   cookies, with `withCredentials` across origins), then the query parameter
//!   `authorization`. The query parameter is a last resort: URLs end up in access logs,
//!   proxies and browser history, so whoever reads those can replay the token until it
//!   expires. Prefer the cookie (`HttpOnly; Secure; SameSite`), give query tokens a short
//!   life, or turn the parameter off ([`Jwt::no_query_parameter`]). The first place that has
//!   a token decides: a bad token in the header is refused, not passed over for the cookie.
//! - **Checks**: the signature, `exp` (required, with [`leeway`](Jwt::leeway) for clock
//!   skew), `nbf` when present, and `aud` / `iss` when configured ([`Jwt::audience`],
//!   [`Jwt::issuer`]). Tokens longer than [`MAX_TOKEN_LEN`] are refused before any parsing.
//!   Every refusal is a `401` with `WWW-Authenticate: Bearer error="invalid_token",
//!   error_description="…"` saying why: expired, signed with another key, another algorithm,
//!   malformed.
//! - **Rights**: publishing needs a token with a matching `publish` selector (`401` without a
//!   token, `403` when none matches); subscribing needs a matching `subscribe` selector,
//!   except for [public topics](Jwt::public_topics), open to anyone; [`Action::Admin`] needs
//!   `"admin": true`.
//! - **Expiry**: the identity expires at `exp` plus the leeway, when the verifier stops
//!   accepting the token; a subscription opened with it ends then, with a `retry:` hint.
//!
//! The claims are [`Claims`], left in the [`Identity`] for handlers and for an application's
//! own policy built around this one ([`Identity::claims`]); other claims of the token are
//! kept there too ([`Claims::extra`]).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use http::Request;
//! use tower_sse::auth::jwt::{Claims, Jwt};
//! use tower_sse::auth::{Action, Policy};
//!
//! let jwt = Jwt::hs256(b"change me: 32 or more random bytes!!")
//!     .unwrap()
//!     .public_topics(["news"]);
//!
//! // What an application's login endpoint would hand a client.
//! let token = jwt
//!     .sign(&Claims::new().subject("ann").subscribe(["user/ann/*"]).expires_in(Duration::from_secs(3600)))
//!     .unwrap();
//!
//! let (request, ()) = Request::get("/events/user/ann/inbox")
//!     .header("cookie", format!("theme=dark; sse_token={token}"))
//!     .body(())
//!     .unwrap()
//!     .into_parts();
//! let ann = jwt.authenticate(&request).unwrap();
//! assert_eq!(ann.subject(), Some("ann"));
//! assert!(jwt.authorize(&ann, Action::Subscribe, "user/ann/inbox").is_ok());
//! assert_eq!(jwt.authorize(&ann, Action::Subscribe, "user/bob/inbox").unwrap_err().status(), 403);
//! // A token from a cookie (or the query) reads; publishing needs the `Authorization` header,
//! // which a cross-site form cannot send.
//! assert_eq!(jwt.authorize(&ann, Action::Publish, "news").unwrap_err().status(), 401);
//!
//! // No token: anonymous, who may read the public topics only.
//! let (request, ()) = Request::get("/events/news").body(()).unwrap().into_parts();
//! let anonymous = jwt.authenticate(&request).unwrap();
//! assert!(jwt.authorize(&anonymous, Action::Subscribe, "news").is_ok());
//! assert_eq!(jwt.authorize(&anonymous, Action::Publish, "news").unwrap_err().status(), 401);
//! ```
//!
//! With a hub: `Hub::builder().policy(jwt)`, then [`Hub::subscribe_as`](crate::Hub::subscribe_as)
//! and [`Hub::publish_as`](crate::Hub::publish_as) in the handlers; see the
//! [`auth`](super) module.

use std::borrow::Cow;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{AUTHORIZATION, COOKIE};
use http::request::Parts;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use percent_encoding::percent_decode_str;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Action, Denied, Identity, Policy, Selector};

/// The cookie [`Jwt`] reads a token from unless told otherwise ([`Jwt::cookie`]).
pub const DEFAULT_COOKIE: &str = "sse_token";

/// The query parameter [`Jwt`] reads a token from, last (see [`Jwt::no_query_parameter`]).
pub const QUERY_PARAMETER: &str = "authorization";

/// The longest token accepted, in bytes: 8 KiB. Longer ones are refused before any parsing.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The clock skew allowed on `exp` and `nbf` unless told otherwise ([`Jwt::leeway`]): 60 s,
/// jsonwebtoken's default.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

/// The largest leeway accepted: one day.
const MAX_LEEWAY: Duration = Duration::from_secs(24 * 3600);

/// The shortest HS256 secret: RFC 7518 §3.2 requires a key as long as the hash, 256 bits.
const MIN_SECRET_LEN: usize = 32;

/// A [`Policy`] on JSON Web Tokens; see the [module documentation](self). A cheap [`Clone`].
#[derive(Clone)]
#[must_use]
pub struct Jwt {
    inner: Arc<Config>,
}

#[derive(Clone)]
struct Config {
    key: DecodingKey,
    /// The secret of an HS256 policy, to [`sign`](Jwt::sign) with.
    signing: Option<EncodingKey>,
    algorithm: Algorithm,
    validation: Validation,
    leeway: Duration,
    cookie: Option<String>,
    query: bool,
    public: Vec<Selector>,
}

impl fmt::Debug for Jwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwt")
            .field("algorithm", &self.inner.algorithm)
            .field("leeway", &self.inner.leeway)
            .field("cookie", &self.inner.cookie)
            .field("query_parameter", &self.inner.query)
            .field("public_topics", &self.inner.public)
            .finish_non_exhaustive()
    }
}

impl Jwt {
    /// Tokens signed with HS256 and `secret`, which signs too ([`sign`](Self::sign)).
    ///
    /// # Errors
    ///
    /// A secret shorter than 32 bytes (RFC 7518 §3.2 requires 256 bits for HS256): make one
    /// with `openssl rand -base64 32`.
    pub fn hs256(secret: impl AsRef<[u8]>) -> Result<Jwt, KeyError> {
        let secret = secret.as_ref();
        if secret.len() < MIN_SECRET_LEN {
            return Err(KeyError::new(format!(
                "an HS256 secret needs at least {MIN_SECRET_LEN} bytes, this one has {} \
                 (make one with `openssl rand -base64 32`)",
                secret.len()
            )));
        }
        let key = DecodingKey::from_secret(secret).map_err(|err| KeyError::from_jwt(&err))?;
        let signing = EncodingKey::from_secret(secret).map_err(|err| KeyError::from_jwt(&err))?;
        Ok(Jwt::new(key, Some(signing), Algorithm::HS256))
    }

    /// Tokens signed with the private half of `pem`, a public key in PEM (`-----BEGIN PUBLIC
    /// KEY-----`, or `RSA PUBLIC KEY`): RS256 for an RSA key, ES256 for a P-256 key (ES384
    /// for P-384), EdDSA for an Ed25519 key.
    ///
    /// # Errors
    ///
    /// Not a PEM public key (a private key or a certificate is refused, with what to do
    /// instead), or a key of another kind.
    pub fn from_pem(pem: impl AsRef<[u8]>) -> Result<Jwt, KeyError> {
        let pem = pem.as_ref();
        let text = std::str::from_utf8(pem).unwrap_or_default();
        let label = text
            .split("-----BEGIN ")
            .nth(1)
            .and_then(|rest| rest.split_once("-----"))
            .map(|(label, _)| label.trim());
        match label {
            Some("PUBLIC KEY" | "RSA PUBLIC KEY") => {}
            Some(label) if label.contains("PRIVATE KEY") => {
                return Err(KeyError::new(
                    "this is a private key: give the server the public key \
                     (`openssl pkey -in private.pem -pubout -out public.pem`)",
                ));
            }
            Some("CERTIFICATE") => {
                return Err(KeyError::new(
                    "this is a certificate: give the server its public key \
                     (`openssl x509 -in cert.pem -pubkey -noout > public.pem`)",
                ));
            }
            Some(label) => {
                return Err(KeyError::new(format!(
                    "a PEM {label:?} is not a public key: expected -----BEGIN PUBLIC KEY-----"
                )));
            }
            None => {
                return Err(KeyError::new(
                    "not a PEM public key: expected -----BEGIN PUBLIC KEY-----",
                ));
            }
        }
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Ok(Jwt::new(key, None, Algorithm::RS256));
        }
        if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            // The uncompressed point: 0x04, then x and y of 32 (P-256) or 48 (P-384) bytes.
            let algorithm = match key.try_get_as_bytes().map(<[u8]>::len) {
                Ok(65) => Algorithm::ES256,
                Ok(97) => Algorithm::ES384,
                _ => {
                    return Err(KeyError::new(
                        "an EC key on a curve other than P-256 or P-384",
                    ));
                }
            };
            return Ok(Jwt::new(key, None, algorithm));
        }
        if let Ok(key) = DecodingKey::from_ed_pem(pem) {
            return Ok(Jwt::new(key, None, Algorithm::EdDSA));
        }
        Err(KeyError::new(
            "not an RSA, EC (P-256, P-384) or Ed25519 public key",
        ))
    }

    /// [`from_pem`](Self::from_pem) with the key read from a file.
    ///
    /// # Errors
    ///
    /// A file that cannot be read, or as [`from_pem`](Self::from_pem); the message names the
    /// file.
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<Jwt, KeyError> {
        let path = path.as_ref();
        let pem = std::fs::read(path)
            .map_err(|err| KeyError::new(format!("cannot read {}: {err}", path.display())))?;
        Jwt::from_pem(pem).map_err(|err| KeyError::new(format!("{}: {err}", path.display())))
    }

    fn new(key: DecodingKey, signing: Option<EncodingKey>, algorithm: Algorithm) -> Jwt {
        ensure_crypto_provider();
        let mut validation = Validation::new(algorithm);
        validation.leeway = DEFAULT_LEEWAY.as_secs();
        validation.validate_nbf = true;
        Jwt {
            inner: Arc::new(Config {
                key,
                signing,
                algorithm,
                validation,
                leeway: DEFAULT_LEEWAY,
                cookie: Some(DEFAULT_COOKIE.to_owned()),
                query: true,
                public: Vec::new(),
            }),
        }
    }

    fn config(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.inner)
    }

    /// The clock skew allowed between the token's issuer and this server, on `exp` and `nbf`.
    /// Default 60 s; at most one day. A subscription ends this long after `exp`, when the
    /// token stops being accepted.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        let leeway = Duration::from_secs(leeway.min(MAX_LEEWAY).as_secs());
        let config = self.config();
        config.leeway = leeway;
        config.validation.leeway = leeway.as_secs();
        self
    }

    /// Accepts only tokens whose `aud` names one of `audiences` (a token without `aud` is
    /// refused then). Default: tokens with an `aud` claim are refused, as RFC 7519 requires of
    /// a server that does not identify itself.
    pub fn audience<I, S>(mut self, audiences: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let audiences: Vec<String> = audiences.into_iter().map(Into::into).collect();
        let validation = &mut self.config().validation;
        validation.set_audience(&audiences);
        validation.required_spec_claims.insert("aud".to_owned());
        self
    }

    /// Accepts only tokens whose `iss` is one of `issuers` (a token without `iss` is refused
    /// then). Default: any issuer.
    pub fn issuer<I, S>(mut self, issuers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let issuers: Vec<String> = issuers.into_iter().map(Into::into).collect();
        let validation = &mut self.config().validation;
        validation.set_issuer(&issuers);
        validation.required_spec_claims.insert("iss".to_owned());
        self
    }

    /// The cookie to read a token from, after the `Authorization` header. Default
    /// [`DEFAULT_COOKIE`], `sse_token`.
    pub fn cookie(mut self, name: impl Into<String>) -> Self {
        self.config().cookie = Some(name.into());
        self
    }

    /// Reads no cookie.
    pub fn no_cookie(mut self) -> Self {
        self.config().cookie = None;
        self
    }

    /// Does not read the `authorization` query parameter (see the [module
    /// documentation](self) for why it is a last resort).
    pub fn no_query_parameter(mut self) -> Self {
        self.config().query = false;
        self
    }

    /// Topics anyone may subscribe to, without a token: [selectors](Selector), e.g. `["*"]`
    /// for every topic, `["news", "public/*"]`. Default: none. Publishing always needs a
    /// token.
    pub fn public_topics<I, S>(mut self, selectors: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Selector>,
    {
        self.config().public = selectors.into_iter().map(Into::into).collect();
        self
    }

    /// The algorithm tokens must be signed with: `"HS256"`, `"RS256"`, `"ES256"`, `"ES384"`
    /// or `"EdDSA"`.
    pub fn algorithm(&self) -> &'static str {
        match self.inner.algorithm {
            Algorithm::HS256 => "HS256",
            Algorithm::RS256 => "RS256",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
            _ => "?",
        }
    }

    /// A token carrying `claims`, signed with this policy's HS256 secret: e.g. for a login
    /// endpoint, or to print a first token when a server starts.
    ///
    /// # Errors
    ///
    /// A policy made from a public key (it cannot sign), or claims without an expiry (the
    /// policy would refuse the token: set [`Claims::expires_in`]).
    pub fn sign(&self, claims: &Claims) -> Result<String, KeyError> {
        let Some(key) = &self.inner.signing else {
            return Err(KeyError::new(format!(
                "a {} policy verifies with a public key and cannot sign: sign with the private key",
                self.algorithm()
            )));
        };
        if claims.exp.is_none() {
            return Err(KeyError::new(
                "claims without `exp` would be refused: set `Claims::expires_in`",
            ));
        }
        jsonwebtoken::encode(&Header::new(self.inner.algorithm), claims, key)
            .map_err(|err| KeyError::from_jwt(&err))
    }

    /// Verifies `token` and returns its claims.
    ///
    /// # Errors
    ///
    /// [`Denied::invalid_token`] (`401`), saying why: too long, malformed, another algorithm,
    /// a bad signature, expired, not valid yet, for another audience or issuer.
    pub fn verify(&self, token: &str) -> Result<Claims, Denied> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(too_long());
        }
        let config = &*self.inner;
        // The token is the client's, parsed by jsonwebtoken, base64, serde_json and the
        // signature crates: should any of them panic on some input, that is one more refused
        // token, not a dropped connection.
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            jsonwebtoken::decode::<Claims>(token, &config.key, &config.validation)
        }));
        match decoded {
            Ok(Ok(data)) => Ok(data.claims),
            Ok(Err(err)) => Err(self.refusal(token, err.kind())),
            Err(_) => Err(Denied::invalid_token("the token cannot be verified")),
        }
    }

    /// The message for a token jsonwebtoken refused.
    fn refusal(&self, token: &str, kind: &ErrorKind) -> Denied {
        let message: Cow<'static, str> = match kind {
            ErrorKind::ExpiredSignature => "the token has expired".into(),
            ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".into(),
            ErrorKind::InvalidSignature => {
                "the token's signature does not match this server's key".into()
            }
            ErrorKind::InvalidAlgorithm => {
                let signed = jsonwebtoken::decode_header(token)
                    .map(|header| format!("{:?}", header.alg))
                    .unwrap_or_else(|_| "another algorithm".to_owned());
                format!(
                    "the token is signed with {signed}, this server accepts {} only",
                    self.algorithm()
                )
                .into()
            }
            ErrorKind::InvalidAudience => "the token is for another audience (aud)".into(),
            ErrorKind::InvalidIssuer => "the token is from another issuer (iss)".into(),
            ErrorKind::MissingRequiredClaim(claim) => {
                format!("the token has no `{}` claim", claim.escape_debug()).into()
            }
            ErrorKind::InvalidClaimFormat(claim) => {
                format!("the token's `{}` claim is malformed", claim.escape_debug()).into()
            }
            // The header is read before the signature is checked, the claims after.
            ErrorKind::Json(_) if jsonwebtoken::decode_header(token).is_ok() => {
                "the token's claims are malformed: `sse` has `publish` and `subscribe` arrays \
                 of strings and `admin` a boolean, `sub` is a string"
                    .into()
            }
            ErrorKind::Json(_) => "the token's header is malformed, or names an algorithm this \
                                   server does not support (such as `none`)"
                .into(),
            ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
                "the token is not a well-formed JWT (three base64url parts)".into()
            }
            _ => "the token cannot be verified".into(),
        };
        Denied::invalid_token(message)
    }

    /// The request's tokens and where they came from: the `Authorization: Bearer` header's,
    /// else the cookie's (every cookie of that name, in the order sent: a browser may hold
    /// one for a longer path, or one planted by a sibling domain), else the query
    /// parameter's. Empty when none has one.
    fn tokens<'a>(&self, request: &'a Parts) -> Result<Vec<(Cow<'a, str>, TokenSource)>, Denied> {
        for value in request.headers.get_all(AUTHORIZATION) {
            let bytes = value.as_bytes();
            // RFC 7235: the scheme is case-insensitive. Other schemes (Basic, for a proxy)
            // are not ours to judge.
            let Some(rest) = bytes
                .get(..7)
                .filter(|scheme| scheme.eq_ignore_ascii_case(b"bearer "))
                .map(|_| &bytes[7..])
            else {
                continue;
            };
            let token = std::str::from_utf8(rest)
                .map_err(|_| Denied::invalid_token("the Bearer token is not ASCII"))?
                .trim();
            if token.is_empty() {
                return Err(Denied::invalid_token("the Bearer token is empty"));
            }
            return checked_len(token)
                .map(|token| vec![(Cow::Borrowed(token), TokenSource::Header)]);
        }
        if let Some(name) = &self.inner.cookie {
            let tokens = cookies(request, name)
                .into_iter()
                .map(|token| {
                    checked_len(token).map(|token| (Cow::Borrowed(token), TokenSource::Cookie))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if !tokens.is_empty() {
                return Ok(tokens);
            }
        }
        if self.inner.query
            && let Some(query) = request.uri.query()
            && let Some(raw) = query.split('&').find_map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (key == QUERY_PARAMETER && !value.is_empty()).then_some(value)
            })
        {
            // Each decoded byte takes at most three encoded ones: refuse to decode what
            // cannot fit.
            if raw.len() > 3 * (MAX_TOKEN_LEN + 7) {
                return Err(too_long());
            }
            let plus_as_space = raw.replace('+', " ");
            let decoded = percent_decode_str(&plus_as_space)
                .decode_utf8()
                .map_err(|_| Denied::invalid_token("the token is not ASCII"))?;
            let token = decoded.trim();
            let token = match token.get(..7) {
                Some(scheme) if scheme.eq_ignore_ascii_case("bearer ") => token[7..].trim(),
                _ => token,
            };
            if token.is_empty() {
                return Ok(Vec::new());
            }
            return checked_len(token)
                .map(|token| vec![(Cow::Owned(token.to_owned()), TokenSource::Query)]);
        }
        Ok(Vec::new())
    }
}

/// The values of cookie `name`, from the request's `Cookie` headers, in the order sent; empty
/// ones (how a cookie is cleared) left out.
fn cookies<'a>(request: &'a Parts, name: &str) -> Vec<&'a str> {
    request
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(move |pair| {
            let (key, value) = pair.split_once('=')?;
            (key.trim() == name).then(|| value.trim().trim_matches('"'))
        })
        .filter(|value| !value.is_empty())
        .collect()
}

fn checked_len(token: &str) -> Result<&str, Denied> {
    if token.len() > MAX_TOKEN_LEN {
        Err(too_long())
    } else {
        Ok(token)
    }
}

fn too_long() -> Denied {
    Denied::invalid_token(format!("the token is longer than {MAX_TOKEN_LEN} bytes"))
}

/// Makes sure jsonwebtoken has a crypto provider: its own choice is ambiguous (and would panic
/// at the first token) when something else in the build also enables its `aws_lc_rs` feature.
fn ensure_crypto_provider() {
    use jsonwebtoken::crypto::CryptoProvider;
    if CryptoProvider::try_get_default().is_none() {
        // Another thread may have installed one meanwhile: any provider will do.
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    }
}

impl Policy for Jwt {
    /// The request's token, verified: an identity with the token's `sub`, its expiry (`exp`
    /// plus the leeway) and its [`Claims`]. Anonymous without a token.
    fn authenticate(&self, request: &Parts) -> Result<Identity, Denied> {
        let tokens = self.tokens(request)?;
        let Some(((_, source), rest)) = tokens.split_first() else {
            return Ok(Identity::anonymous());
        };
        // The first token that holds; if none does, why the first does not.
        let mut claims = match self.verify(&tokens[0].0) {
            Ok(claims) => claims,
            Err(first) => rest
                .iter()
                .find_map(|(token, _)| self.verify(token).ok())
                .ok_or(first)?,
        };
        claims.source = Some(*source);
        let mut identity = Identity::authenticated();
        if let Some(sub) = &claims.sub {
            identity = identity.with_subject(sub);
        }
        if let Some(end) = claims
            .exp
            .and_then(|exp| UNIX_EPOCH.checked_add(Duration::from_secs(exp)))
            .and_then(|exp| exp.checked_add(self.inner.leeway))
        {
            identity = identity.with_expiry(end);
        }
        Ok(identity.with_claims(claims))
    }

    /// Subscribing to a [public topic](Jwt::public_topics) is open; anything else needs a
    /// token (`401`) whose selectors match (`403`): `sse.subscribe` for
    /// [`Action::Subscribe`], `sse.publish` for [`Action::Publish`], `sse.admin` for
    /// [`Action::Admin`].
    fn authorize(&self, who: &Identity, action: Action, topic: &str) -> Result<(), Denied> {
        if action == Action::Subscribe && Selector::any(&self.inner.public, topic) {
            return Ok(());
        }
        let Some(claims) = who.claims::<Claims>() else {
            return Err(match action {
                Action::Publish => Denied::unauthenticated("publishing needs a token"),
                Action::Admin => Denied::unauthenticated("this needs an admin token"),
                _ => Denied::unauthenticated(format!(
                    "topic {topic:?} is private: subscribing needs a token"
                )),
            });
        };
        if action == Action::Publish
            && claims
                .source
                .is_some_and(|source| source != TokenSource::Header)
        {
            // A cookie goes with every request a browser sends, a cross-site form's included,
            // and a query ends up in logs: a write needs the header, which only a script of a
            // page allowed by CORS can set.
            return Err(Denied::unauthenticated(
                "publishing needs the token in the Authorization header, not a cookie or the query",
            ));
        }
        match action {
            Action::Subscribe if claims.can_subscribe(topic) => Ok(()),
            Action::Publish if claims.can_publish(topic) => Ok(()),
            Action::Admin if claims.is_admin() => Ok(()),
            Action::Subscribe => Err(Denied::forbidden(format!(
                "no subscribe selector of the token matches topic {topic:?}"
            ))),
            Action::Publish => Err(Denied::forbidden(format!(
                "no publish selector of the token matches topic {topic:?}"
            ))),
            Action::Admin => Err(Denied::forbidden("the token has no admin right")),
        }
    }
}

/// Why a key or a signature could not be made; the message says what to do.
#[derive(Debug, Clone)]
pub struct KeyError {
    message: String,
}

impl KeyError {
    fn new(message: impl Into<String>) -> Self {
        KeyError {
            message: message.into(),
        }
    }

    fn from_jwt(err: &jsonwebtoken::errors::Error) -> Self {
        KeyError::new(err.to_string())
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for KeyError {}

/// A token's claims, as [`Jwt`] reads them:
/// `{"sub": …, "exp": …, "sse": {"publish": [sel…], "subscribe": [sel…], "admin": bool}}`,
/// every part optional but `exp` (which [`Jwt`] requires), plus whatever else the token
/// carries ([`extra`](Self::extra)).
///
/// Built to [sign](Jwt::sign) a token:
///
/// ```
/// use std::time::Duration;
/// use tower_sse::auth::jwt::Claims;
///
/// let publisher = Claims::new().publish(["*"]).subscribe(["*"]).admin(true).expires_in(Duration::from_secs(3600));
/// assert!(publisher.can_publish("any/topic") && publisher.is_admin());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "numeric_date"
    )]
    exp: Option<u64>,
    #[serde(default)]
    sse: Rights,
    #[serde(flatten)]
    extra: serde_json::Map<String, serde_json::Value>,
    /// Where [`Jwt`]'s policy found the token; `None` for claims not read from a request.
    #[serde(skip)]
    source: Option<TokenSource>,
}

/// Where a request carried its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenSource {
    /// `Authorization: Bearer`: the only source [`Jwt`] accepts for publishing.
    Header,
    /// The cookie ([`Jwt::cookie`]).
    Cookie,
    /// The `authorization` query parameter.
    Query,
}

/// The `sse` claim.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Rights {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    publish: Vec<Selector>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    subscribe: Vec<Selector>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    admin: bool,
}

impl Claims {
    /// No rights, no expiry.
    pub fn new() -> Self {
        Claims::default()
    }

    /// Sets `sub`, who the token is for.
    pub fn subject(mut self, sub: impl Into<String>) -> Self {
        self.sub = Some(sub.into());
        self
    }

    /// Sets `exp`: the token expires at `at` (to the second).
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.exp = Some(at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs());
        self
    }

    /// Sets `exp`: the token expires `ttl` from now.
    pub fn expires_in(self, ttl: Duration) -> Self {
        let at = SystemTime::now()
            .checked_add(ttl)
            .unwrap_or_else(|| UNIX_EPOCH + Duration::from_secs(u32::MAX.into()));
        self.expires_at(at)
    }

    /// Adds topics the token may publish to.
    pub fn publish<I, S>(mut self, selectors: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Selector>,
    {
        self.sse
            .publish
            .extend(selectors.into_iter().map(Into::into));
        self
    }

    /// Adds topics the token may subscribe to.
    pub fn subscribe<I, S>(mut self, selectors: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Selector>,
    {
        self.sse
            .subscribe
            .extend(selectors.into_iter().map(Into::into));
        self
    }

    /// Whether the token may operate the hub ([`Action::Admin`]).
    pub fn admin(mut self, admin: bool) -> Self {
        self.sse.admin = admin;
        self
    }

    /// Sets another claim (`iss`, `aud`, one of the application's own).
    pub fn claim(mut self, name: impl Into<String>, value: serde_json::Value) -> Self {
        self.extra.insert(name.into(), value);
        self
    }

    /// `sub`, who the token is for.
    pub fn sub(&self) -> Option<&str> {
        self.sub.as_deref()
    }

    /// `exp`, when the token expires.
    pub fn exp(&self) -> Option<SystemTime> {
        UNIX_EPOCH.checked_add(Duration::from_secs(self.exp?))
    }

    /// The selectors of `sse.publish`.
    pub fn publish_selectors(&self) -> &[Selector] {
        &self.sse.publish
    }

    /// The selectors of `sse.subscribe`.
    pub fn subscribe_selectors(&self) -> &[Selector] {
        &self.sse.subscribe
    }

    /// Whether a `publish` selector matches `topic`.
    pub fn can_publish(&self, topic: &str) -> bool {
        Selector::any(&self.sse.publish, topic)
    }

    /// Whether a `subscribe` selector matches `topic`.
    pub fn can_subscribe(&self, topic: &str) -> bool {
        Selector::any(&self.sse.subscribe, topic)
    }

    /// `sse.admin`.
    pub fn is_admin(&self) -> bool {
        self.sse.admin
    }

    /// Where the request carried the token, for claims that [`Jwt`]'s policy read from one.
    pub fn source(&self) -> Option<TokenSource> {
        self.source
    }

    /// Another claim of the token, by name (`iat`, `iss`, the application's own).
    pub fn extra(&self, name: &str) -> Option<&serde_json::Value> {
        self.extra.get(name)
    }
}

impl Serialize for Selector {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Selector {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Selector::new)
    }
}

/// A NumericDate (RFC 7519): seconds since the epoch, an integer or a number with a fraction,
/// as jsonwebtoken's own validation reads it.
fn numeric_date<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    use serde::de::Error;
    match Option::<serde_json::Number>::deserialize(deserializer)? {
        None => Ok(None),
        Some(number) => match (number.as_u64(), number.as_f64()) {
            (Some(secs), _) => Ok(Some(secs)),
            (None, Some(secs)) if secs.is_finite() && secs >= 0.0 && secs < u64::MAX as f64 => {
                // In range, checked just above.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Ok(Some(secs.round() as u64))
            }
            _ => Err(D::Error::custom(
                "a NumericDate is a non-negative number of seconds",
            )),
        },
    }
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
