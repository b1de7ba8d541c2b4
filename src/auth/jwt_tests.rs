//! `Jwt`: keys, hostile tokens, where the token is read from, and the rights in its claims.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::request::Parts;
use http::{Request, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use super::{Claims, Jwt, MAX_TOKEN_LEN};
use crate::auth::{Action, Denied, Identity, Policy};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const OTHER_SECRET: &[u8] = b"fedcba9876543210fedcba9876543210";
const RSA_PRIVATE: &[u8] = include_bytes!("../../tests/data/test-only-rsa-private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("../../tests/data/test-only-rsa-public.pem");
const EC_PRIVATE: &[u8] = include_bytes!("../../tests/data/test-only-ec-private.pem");
const EC_PUBLIC: &[u8] = include_bytes!("../../tests/data/test-only-ec-public.pem");
const OTHER_EC_PRIVATE: &[u8] = include_bytes!("../../tests/data/test-only-other-ec-private.pem");

fn jwt() -> Jwt {
    Jwt::hs256(SECRET).unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token with these claims, signed with `key` by `alg`.
fn signed(alg: Algorithm, key: &EncodingKey, claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

fn hs256(claims: &serde_json::Value) -> String {
    signed(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET).unwrap(),
        claims,
    )
}

fn valid_claims() -> serde_json::Value {
    json!({"sub": "ann", "exp": now() + 600, "sse": {"subscribe": ["room/*"], "publish": ["room/1"]}})
}

fn get(uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut request = Request::get(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(()).unwrap().into_parts().0
}

fn bearer(token: &str) -> Parts {
    get("/", &[("authorization", &format!("Bearer {token}"))])
}

/// The refusal of `token`, which must be a `401` with a challenge.
fn refusal(jwt: &Jwt, token: &str) -> String {
    let denied = jwt.authenticate(&bearer(token)).unwrap_err();
    assert_eq!(denied.status(), StatusCode::UNAUTHORIZED, "{denied}");
    let challenge = denied.www_authenticate().unwrap();
    assert!(
        challenge
            .to_str()
            .unwrap()
            .starts_with(r#"Bearer error="invalid_token", error_description=""#),
        "{challenge:?}"
    );
    denied.message().to_owned()
}

/// base64url without padding, for tokens jsonwebtoken would not make.
fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[test]
fn a_short_hs256_secret_is_refused_when_built() {
    let err = Jwt::hs256(b"secret").unwrap_err();
    assert!(err.to_string().contains("at least 32 bytes"), "{err}");
    assert!(Jwt::hs256(b"").is_err());
    assert_eq!(jwt().algorithm(), "HS256");
}

#[test]
fn a_valid_token_authenticates_with_its_subject_claims_and_expiry() {
    let exp = now() + 600;
    let token =
        hs256(&json!({"sub": "ann", "exp": exp, "sse": {"subscribe": ["room/*"]}, "team": "blue"}));
    let who = jwt().authenticate(&bearer(&token)).unwrap();
    assert!(!who.is_anonymous());
    assert_eq!(who.subject(), Some("ann"));
    // The verifier accepts the token up to `exp` plus the leeway: so long lives the identity.
    assert_eq!(
        who.expires_at(),
        Some(UNIX_EPOCH + Duration::from_secs(exp) + Duration::from_secs(60))
    );
    let claims = who.claims::<Claims>().unwrap();
    assert_eq!(claims.sub(), Some("ann"));
    assert_eq!(claims.exp(), Some(UNIX_EPOCH + Duration::from_secs(exp)));
    assert_eq!(claims.subscribe_selectors()[0].as_str(), "room/*");
    assert_eq!(claims.extra("team"), Some(&json!("blue")));
    assert!(!claims.is_admin());

    let who = jwt()
        .leeway(Duration::ZERO)
        .authenticate(&bearer(&token))
        .unwrap();
    assert_eq!(
        who.expires_at(),
        Some(UNIX_EPOCH + Duration::from_secs(exp))
    );
}

#[test]
fn sign_makes_tokens_verify_accepts() {
    let jwt = jwt();
    let claims = Claims::new()
        .subject("svc")
        .publish(["*"])
        .subscribe(["news", "room/*"])
        .admin(true)
        .claim("iat", json!(now()))
        .expires_in(Duration::from_secs(60));
    let token = jwt.sign(&claims).unwrap();
    assert_eq!(jwt.verify(&token).unwrap(), claims);
    // Claims without an expiry would be refused: not signed.
    assert!(jwt.sign(&Claims::new()).is_err());
    // A public key cannot sign.
    let err = Jwt::from_pem(RSA_PUBLIC)
        .unwrap()
        .sign(&claims)
        .unwrap_err();
    assert!(err.to_string().contains("cannot sign"), "{err}");
}

#[test]
fn an_expired_token_is_refused_with_a_clear_message() {
    let token = hs256(&json!({"exp": now() - 600, "sse": {"subscribe": ["*"]}}));
    assert_eq!(refusal(&jwt(), &token), "the token has expired");

    // Within the leeway it holds; without leeway it does not.
    let token = hs256(&json!({"exp": now() - 30}));
    assert!(jwt().authenticate(&bearer(&token)).is_ok());
    assert_eq!(
        refusal(&jwt().leeway(Duration::ZERO), &token),
        "the token has expired"
    );
}

#[test]
fn a_token_without_exp_or_not_yet_valid_is_refused() {
    let token = hs256(&json!({"sse": {"publish": ["*"]}}));
    assert_eq!(refusal(&jwt(), &token), "the token has no `exp` claim");
    let token = hs256(&json!({"exp": now() + 600, "nbf": now() + 300}));
    assert_eq!(refusal(&jwt(), &token), "the token is not valid yet (nbf)");
    // A NumericDate may have a fraction.
    let token = hs256(&json!({"exp": (now() + 600) as f64 + 0.5}));
    assert!(jwt().authenticate(&bearer(&token)).is_ok());
}

#[test]
fn a_token_signed_with_another_key_is_refused() {
    let token = signed(
        Algorithm::HS256,
        &EncodingKey::from_secret(OTHER_SECRET).unwrap(),
        &valid_claims(),
    );
    assert_eq!(
        refusal(&jwt(), &token),
        "the token's signature does not match this server's key"
    );
}

#[test]
fn alg_none_and_other_algorithms_are_refused() {
    let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = b64(valid_claims().to_string().as_bytes());
    assert_eq!(
        refusal(&jwt(), &format!("{header}.{claims}.")),
        "the token's header is malformed, or names an algorithm this server does not support \
         (such as `none`)"
    );
    assert_eq!(
        refusal(&jwt(), &format!("{header}.{claims}")),
        "the token is not a well-formed JWT (three base64url parts)"
    );
    // HS512 with the right secret: still not what this server accepts.
    let token = signed(
        Algorithm::HS512,
        &EncodingKey::from_secret(SECRET).unwrap(),
        &valid_claims(),
    );
    assert_eq!(
        refusal(&jwt(), &token),
        "the token is signed with HS512, this server accepts HS256 only"
    );
    // Key confusion: an HS256 token whose "secret" is the server's RSA public key.
    let token = signed(
        Algorithm::HS256,
        &EncodingKey::from_secret(RSA_PUBLIC).unwrap(),
        &valid_claims(),
    );
    assert_eq!(
        refusal(&Jwt::from_pem(RSA_PUBLIC).unwrap(), &token),
        "the token is signed with HS256, this server accepts RS256 only"
    );
}

#[test]
fn hostile_tokens_are_refused_without_a_panic() {
    let good = hs256(&valid_claims());
    let (head, rest) = good.split_once('.').unwrap();
    let deep = b64(format!("{}{}", "[".repeat(3000), "]".repeat(3000)).as_bytes());
    let cases = [
        "x".to_owned(),
        "a.b".to_owned(),
        "a.b.c".to_owned(),
        "..".to_owned(),
        "....".to_owned(),
        "!!!.@@@.###".to_owned(),
        "é.é.é".to_owned(),
        format!("{head}.{rest}.extra"),
        format!("{}.{rest}", b64(b"{\"alg\":\"HS256\"")),
        format!("{}.{rest}", b64(b"null")),
        format!("{}.{rest}", b64(br#"{"alg":"HS256","crit":["x"],"x":1}"#)),
        format!("{}.{rest}", b64(br#"{"alg":7}"#)),
        format!("{deep}.{rest}"),
        format!("{head}.{deep}.sig"),
        good.replace('.', ".\u{0}"),
        good[..good.len() - 3].to_owned(),
    ];
    for token in &cases {
        let denied = jwt().verify(token).unwrap_err();
        assert_eq!(denied.status(), StatusCode::UNAUTHORIZED, "{token:?}");
    }
    // Well-signed claims of the wrong shape are malformed too.
    for claims in [
        json!({"exp": now() + 600, "sse": {"publish": "room/1"}}),
        json!({"exp": now() + 600, "sse": {"admin": "yes"}}),
        json!({"exp": now() + 600, "sub": 7}),
        json!({"exp": "tomorrow"}),
        json!([1, 2]),
    ] {
        let message = refusal(&jwt(), &hs256(&claims));
        assert!(message.contains("malformed"), "{claims}: {message}");
    }
}

#[test]
fn an_oversized_token_is_refused_before_parsing() {
    let huge = "a".repeat(MAX_TOKEN_LEN + 1);
    assert_eq!(
        refusal(&jwt(), &huge),
        "the token is longer than 8192 bytes"
    );
    let cookie = format!("sse_token={huge}");
    let denied = jwt()
        .authenticate(&get("/", &[("cookie", &cookie)]))
        .unwrap_err();
    assert_eq!(denied.message(), "the token is longer than 8192 bytes");
    let denied = jwt()
        .authenticate(&get(&format!("/?authorization={huge}"), &[]))
        .unwrap_err();
    assert_eq!(denied.message(), "the token is longer than 8192 bytes");
    // Percent-encoded, it is refused before decoding.
    let encoded = "%41".repeat(MAX_TOKEN_LEN * 2);
    let denied = jwt()
        .authenticate(&get(&format!("/?authorization={encoded}"), &[]))
        .unwrap_err();
    assert_eq!(denied.message(), "the token is longer than 8192 bytes");
}

#[test]
fn the_header_wins_over_the_cookie_which_wins_over_the_query() {
    let jwt = jwt();
    let as_user = |user: &str| hs256(&json!({"sub": user, "exp": now() + 600}));
    let (header, cookie, query) = (as_user("header"), as_user("cookie"), as_user("query"));
    let subject = |parts: &Parts| {
        jwt.authenticate(parts)
            .unwrap()
            .subject()
            .map(str::to_owned)
    };
    let uri = format!("/events?authorization={query}");
    let cookie_header = format!("theme=dark; sse_token={cookie}; other=1");
    let bearer_header = format!("Bearer {header}");

    let all = get(
        &uri,
        &[
            ("authorization", &bearer_header),
            ("cookie", &cookie_header),
        ],
    );
    assert_eq!(subject(&all).as_deref(), Some("header"));
    let cookie_and_query = get(&uri, &[("cookie", &cookie_header)]);
    assert_eq!(subject(&cookie_and_query).as_deref(), Some("cookie"));
    assert_eq!(subject(&get(&uri, &[])).as_deref(), Some("query"));
    assert_eq!(subject(&get("/events", &[])), None);

    // The scheme is case-insensitive; other schemes (a proxy's Basic) are passed over.
    let lower = format!("bearer {header}");
    assert_eq!(
        subject(&get("/", &[("authorization", &lower)])).as_deref(),
        Some("header")
    );
    let basic = get(
        &uri,
        &[
            ("authorization", "Basic dXNlcjpwYXNz"),
            ("cookie", &cookie_header),
        ],
    );
    assert_eq!(subject(&basic).as_deref(), Some("cookie"));

    // A bad token where one is found is refused: no falling back to the next place.
    let bad_header = get(
        &uri,
        &[("authorization", "Bearer nope"), ("cookie", &cookie_header)],
    );
    assert!(jwt.authenticate(&bad_header).is_err());
    assert!(
        jwt.authenticate(&get("/", &[("authorization", "Bearer ")]))
            .is_err()
    );
    let bad_cookie = get(&uri, &[("cookie", "sse_token=nope")]);
    assert!(jwt.authenticate(&bad_cookie).is_err());

    // An empty cookie (how one is cleared) or parameter is no token.
    assert_eq!(subject(&get("/", &[("cookie", "sse_token=")])), None);
    assert_eq!(subject(&get("/?authorization=", &[])), None);
}

#[test]
fn cookie_and_query_parameter_are_configurable() {
    let token = hs256(&valid_claims());
    let renamed = jwt().cookie("session_jwt");
    let cookie = format!("session_jwt=\"{token}\"");
    assert!(
        !renamed
            .authenticate(&get("/", &[("cookie", &cookie)]))
            .unwrap()
            .is_anonymous()
    );
    let old_name = format!("sse_token={token}");
    assert!(
        renamed
            .authenticate(&get("/", &[("cookie", &old_name)]))
            .unwrap()
            .is_anonymous()
    );
    assert!(
        jwt()
            .no_cookie()
            .authenticate(&get("/", &[("cookie", &old_name)]))
            .unwrap()
            .is_anonymous()
    );

    let query = format!("/?lastEventId=1&authorization=Bearer%20{token}");
    assert!(
        !jwt()
            .authenticate(&get(&query, &[]))
            .unwrap()
            .is_anonymous()
    );
    assert!(
        jwt()
            .no_query_parameter()
            .authenticate(&get(&query, &[]))
            .unwrap()
            .is_anonymous()
    );
    // Several `Cookie` headers (HTTP/2 sends one per cookie).
    let parts = get("/", &[("cookie", "a=1"), ("cookie", &old_name)]);
    assert!(!jwt().authenticate(&parts).unwrap().is_anonymous());
}

#[test]
fn rights_come_from_the_selectors_in_the_claims() {
    let jwt = jwt().public_topics(["news", "public/*"]);
    let token = hs256(&json!({
        "exp": now() + 600,
        "sse": {"subscribe": ["room/*", "inbox/ann"], "publish": ["room/1"]}
    }));
    let ann = jwt.authenticate(&bearer(&token)).unwrap();
    let anonymous = Identity::anonymous();
    let check = |who: &Identity, action, topic| {
        jwt.authorize(who, action, topic)
            .map_err(|denied: Denied| denied.status().as_u16())
    };

    assert_eq!(check(&ann, Action::Subscribe, "room/7"), Ok(()));
    assert_eq!(check(&ann, Action::Subscribe, "inbox/ann"), Ok(()));
    assert_eq!(check(&ann, Action::Subscribe, "inbox/anna"), Err(403));
    assert_eq!(check(&ann, Action::Subscribe, "news"), Ok(()));
    assert_eq!(check(&ann, Action::Publish, "room/1"), Ok(()));
    assert_eq!(check(&ann, Action::Publish, "room/2"), Err(403));
    assert_eq!(check(&ann, Action::Publish, "news"), Err(403));
    assert_eq!(check(&ann, Action::Admin, "*"), Err(403));

    assert_eq!(check(&anonymous, Action::Subscribe, "news"), Ok(()));
    assert_eq!(check(&anonymous, Action::Subscribe, "public/x"), Ok(()));
    assert_eq!(check(&anonymous, Action::Subscribe, "room/7"), Err(401));
    assert_eq!(check(&anonymous, Action::Publish, "news"), Err(401));
    assert_eq!(check(&anonymous, Action::Admin, "*"), Err(401));

    let admin = jwt
        .authenticate(&bearer(&hs256(
            &json!({"exp": now() + 600, "sse": {"admin": true, "publish": ["*"]}}),
        )))
        .unwrap();
    assert_eq!(check(&admin, Action::Admin, "*"), Ok(()));
    assert_eq!(check(&admin, Action::Publish, "anything/at/all"), Ok(()));
    // `*` to publish is not `*` to subscribe.
    assert_eq!(check(&admin, Action::Subscribe, "room/7"), Err(403));

    let message = jwt
        .authorize(&ann, Action::Publish, "room/2")
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        r#"no publish selector of the token matches topic "room/2""#
    );
    let message = jwt
        .authorize(&anonymous, Action::Publish, "room/2")
        .unwrap_err()
        .to_string();
    assert_eq!(message, "publishing needs a token");
}

#[test]
fn an_identity_from_another_policy_has_no_rights_here() {
    let stranger = Identity::authenticated().with_subject("ann");
    let denied = jwt()
        .authorize(&stranger, Action::Subscribe, "x")
        .unwrap_err();
    assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn audience_and_issuer_when_configured() {
    let with = |extra: serde_json::Value| {
        let mut claims = valid_claims();
        claims
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        hs256(&claims)
    };
    let strict = jwt().audience(["hub"]).issuer(["https://login.example"]);
    let good = with(json!({"aud": "hub", "iss": "https://login.example"}));
    assert!(strict.authenticate(&bearer(&good)).is_ok());
    assert_eq!(
        refusal(
            &strict,
            &with(json!({"aud": "other", "iss": "https://login.example"}))
        ),
        "the token is for another audience (aud)"
    );
    assert_eq!(
        refusal(
            &strict,
            &with(json!({"aud": "hub", "iss": "https://evil.example"}))
        ),
        "the token is from another issuer (iss)"
    );
    assert_eq!(
        refusal(&strict, &with(json!({"aud": "hub"}))),
        "the token has no `iss` claim"
    );
    // Without an audience configured, a token meant for some audience is not for us.
    assert_eq!(
        refusal(&jwt(), &with(json!({"aud": "hub"}))),
        "the token is for another audience (aud)"
    );
}

#[test]
fn rs256_from_a_pem_public_key() {
    let jwt = Jwt::from_pem(RSA_PUBLIC).unwrap();
    assert_eq!(jwt.algorithm(), "RS256");
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
    let who = jwt
        .authenticate(&bearer(&signed(Algorithm::RS256, &key, &valid_claims())))
        .unwrap();
    assert_eq!(who.subject(), Some("ann"));
    // Signed by the right key, but with RS512: not accepted.
    assert_eq!(
        refusal(&jwt, &signed(Algorithm::RS512, &key, &valid_claims())),
        "the token is signed with RS512, this server accepts RS256 only"
    );
}

#[test]
fn es256_from_a_pem_public_key_and_a_wrong_key() {
    let jwt = Jwt::from_pem(EC_PUBLIC).unwrap();
    assert_eq!(jwt.algorithm(), "ES256");
    let key = EncodingKey::from_ec_pem(EC_PRIVATE).unwrap();
    let who = jwt
        .authenticate(&bearer(&signed(Algorithm::ES256, &key, &valid_claims())))
        .unwrap();
    assert_eq!(who.subject(), Some("ann"));

    let other = EncodingKey::from_ec_pem(OTHER_EC_PRIVATE).unwrap();
    assert_eq!(
        refusal(&jwt, &signed(Algorithm::ES256, &other, &valid_claims())),
        "the token's signature does not match this server's key"
    );
}

#[test]
fn a_key_file_that_is_not_a_public_key_is_refused_with_what_to_do() {
    let err = Jwt::from_pem(RSA_PRIVATE).unwrap_err().to_string();
    assert!(
        err.contains("private key") && err.contains("-pubout"),
        "{err}"
    );
    let err = Jwt::from_pem(EC_PRIVATE).unwrap_err().to_string();
    assert!(err.contains("private key"), "{err}");
    let err = Jwt::from_pem("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("certificate"), "{err}");
    for garbage in [
        &b""[..],
        b"not a key",
        b"\xff\xfe",
        b"-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n",
        b"-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----\n",
    ] {
        assert!(Jwt::from_pem(garbage).is_err());
    }

    let dir = std::env::temp_dir().join(format!("tower-sse-jwt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("public.pem");
    std::fs::write(&path, EC_PUBLIC).unwrap();
    assert_eq!(Jwt::from_pem_file(&path).unwrap().algorithm(), "ES256");
    let missing = dir.join("missing.pem");
    let err = Jwt::from_pem_file(&missing).unwrap_err().to_string();
    assert!(
        err.contains("cannot read") && err.contains("missing.pem"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn debug_shows_no_secret() {
    let shown = format!("{:?}", jwt().public_topics(["news"]));
    assert!(shown.contains("HS256") && shown.contains("news"), "{shown}");
    assert!(!shown.contains("0123456789abcdef"), "{shown}");
}

#[test]
fn a_cookie_or_query_token_reads_but_does_not_publish() {
    let jwt = jwt();
    let token = jwt
        .sign(
            &Claims::new()
                .publish(["*"])
                .subscribe(["*"])
                .expires_in(Duration::from_secs(600)),
        )
        .unwrap();
    for request in [
        get("/events/x", &[("cookie", &format!("sse_token={token}"))]),
        get(&format!("/events/x?authorization={token}"), &[]),
    ] {
        let who = jwt.authenticate(&request).unwrap();
        assert_eq!(jwt.authorize(&who, Action::Subscribe, "x"), Ok(()));
        let refused = jwt.authorize(&who, Action::Publish, "x").unwrap_err();
        assert_eq!(refused.status(), 401);
        assert!(
            refused.message().contains("Authorization header"),
            "{refused}"
        );
    }
    let header = bearer(&token);
    let who = jwt.authenticate(&header).unwrap();
    assert_eq!(jwt.authorize(&who, Action::Publish, "x"), Ok(()));
}

#[test]
fn of_several_cookies_the_first_that_holds_wins() {
    let jwt = jwt();
    let token = jwt
        .sign(
            &Claims::new()
                .subscribe(["mine"])
                .expires_in(Duration::from_secs(600)),
        )
        .unwrap();
    // A cookie planted for a longer path (or by a sibling domain) comes first.
    let cookies = format!("sse_token=planted.not.valid; sse_token={token}");
    let who = jwt
        .authenticate(&get("/events/mine", &[("cookie", &cookies)]))
        .unwrap();
    assert_eq!(jwt.authorize(&who, Action::Subscribe, "mine"), Ok(()));
    // None holds: the first one's reason.
    let bad = "sse_token=planted.not.valid; sse_token=also.not.valid";
    let refused = jwt
        .authenticate(&get("/events/mine", &[("cookie", bad)]))
        .unwrap_err();
    assert_eq!(refused.status(), 401);
}
