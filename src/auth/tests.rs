//! The policy as the hub consults it: selectors, refusals, the checked hub methods (before any
//! replay, before anything is stored), and expiry ending a subscription, on paused time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use http::request::Parts;
use http::{Request, StatusCode};

use super::{Action, Denied, Identity, Policy, Selector};
use crate::backend::Start;
use crate::hub::StreamOptions;
use crate::{Event, Hub, HubError, LastEventId};

/// A policy for the tests: `x-user` names the user (no header: anonymous), `x-expires-in`
/// (seconds) its expiry. Anyone reads `public/*`; a user reads and publishes `user/{name}/*`;
/// `root` is admin. Counts its calls.
#[derive(Default)]
struct Users {
    authorized: AtomicUsize,
    asked: Mutex<Vec<(Action, String)>>,
}

impl Policy for Users {
    fn authenticate(&self, request: &Parts) -> Result<Identity, Denied> {
        let Some(user) = request.headers.get("x-user") else {
            return Ok(Identity::anonymous());
        };
        let user = user
            .to_str()
            .map_err(|_| Denied::invalid_token("bad user"))?;
        let mut who = Identity::authenticated().with_subject(user);
        if let Some(secs) = request.headers.get("x-expires-in") {
            let secs: u64 = secs.to_str().unwrap().parse().unwrap();
            who = who.with_expiry(SystemTime::now() + Duration::from_secs(secs));
        }
        Ok(who)
    }

    fn authorize(&self, who: &Identity, action: Action, topic: &str) -> Result<(), Denied> {
        self.authorized.fetch_add(1, Ordering::Relaxed);
        self.asked.lock().unwrap().push((action, topic.to_owned()));
        if action == Action::Subscribe && Selector::new("public/*").matches(topic) {
            return Ok(());
        }
        let Some(user) = who.subject() else {
            return Err(Denied::unauthenticated("sign in first"));
        };
        let own = Selector::new(format!("user/{user}/*"));
        match action {
            Action::Subscribe | Action::Publish if own.matches(topic) => Ok(()),
            Action::Admin if user == "root" => Ok(()),
            _ => Err(Denied::forbidden("not yours")),
        }
    }
}

fn hub_with(policy: Arc<Users>) -> Hub {
    Hub::builder().policy(policy).memory()
}

fn user(name: &str) -> Identity {
    Identity::authenticated().with_subject(name)
}

fn status(err: &HubError) -> StatusCode {
    err.denied().expect("refused by the policy").status()
}

/// An event's bytes, as text.
fn text(event: &Event) -> &str {
    std::str::from_utf8(event.as_bytes()).unwrap()
}

/// An event's `data:` lines.
fn data(event: &Event) -> Vec<&str> {
    text(event)
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .collect()
}

fn last(id: &str) -> Option<LastEventId> {
    Some(LastEventId::new(id).unwrap())
}

#[test]
fn selectors_exact_prefix_and_star() {
    let exact = Selector::new("room/42");
    assert!(exact.matches("room/42"));
    assert!(!exact.matches("room/420"));
    assert!(!exact.matches("room/4"));
    assert!(!exact.matches(""));

    let prefix = Selector::new("room/*");
    assert!(prefix.matches("room/42"));
    assert!(prefix.matches("room/42/chat"));
    assert!(prefix.matches("room/"));
    assert!(!prefix.matches("room"));
    assert!(!prefix.matches("rooms/1"));

    let star = Selector::new("*");
    assert!(star.matches("anything"));
    assert!(star.matches("stream:abc"));

    // A `*` anywhere but at the end is literal, and topics cannot contain one.
    assert!(!Selector::new("room/*/chat").matches("room/1/chat"));
    // An empty selector covers nothing.
    assert!(!Selector::new("").matches("x"));

    assert!(Selector::any(&["news", "room/*"], "room/1"));
    assert!(Selector::any(&[Selector::new("news")], "news"));
    assert!(!Selector::any::<&str>(&[], "news"));
    assert_eq!(Selector::from("a*").to_string(), "a*");
}

#[test]
fn denied_answers_401_with_a_bearer_challenge_and_403_without() {
    let missing = Denied::unauthenticated("publishing needs a token");
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert!(missing.is_unauthenticated());
    assert_eq!(missing.www_authenticate().unwrap(), "Bearer");

    let invalid = Denied::invalid_token("the token has expired");
    assert_eq!(invalid.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        invalid.www_authenticate().unwrap(),
        r#"Bearer error="invalid_token", error_description="the token has expired""#
    );

    let forbidden = Denied::forbidden("not yours");
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    assert!(!forbidden.is_unauthenticated());
    assert!(forbidden.www_authenticate().is_none());
    assert_eq!(forbidden.to_string(), "not yours");
}

#[test]
fn a_hostile_message_cannot_break_the_challenge_header() {
    let denied = Denied::invalid_token("say \"hi\"\r\nSet-Cookie: x=1\\ é\0");
    let value = denied.www_authenticate().unwrap();
    let value = value.to_str().unwrap();
    assert_eq!(
        value,
        r#"Bearer error="invalid_token", error_description="say ?hi???Set-Cookie: x=1? ??""#
    );
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn denied_and_the_hub_error_carrying_it_answer_alike() {
    use axum::response::IntoResponse;
    for response in [
        Denied::invalid_token("the token has expired").into_response(),
        HubError::from(Denied::invalid_token("the token has expired")).into_response(),
    ] {
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()["www-authenticate"],
            r#"Bearer error="invalid_token", error_description="the token has expired""#
        );
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(&body[..], b"the token has expired\n");
    }
    let response = HubError::from(Denied::forbidden("not yours")).into_response();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get("www-authenticate").is_none());
}

#[test]
fn identity_keeps_its_earliest_expiry_and_typed_claims() {
    let soon = SystemTime::now() + Duration::from_secs(10);
    let later = soon + Duration::from_secs(10);
    let who = user("ann")
        .with_expiry(later)
        .with_expiry(soon)
        .with_claims(42u32);
    assert_eq!(who.expires_at(), Some(soon));
    assert!(!who.is_anonymous());
    assert_eq!(who.claims::<u32>(), Some(&42));
    assert_eq!(who.claims::<String>(), None);
    assert!(who.is_expired_at(soon) && !who.is_expired_at(soon - Duration::from_secs(1)));
    let anonymous = Identity::anonymous();
    assert!(anonymous.is_anonymous() && anonymous.subject().is_none());
}

#[tokio::test]
async fn a_hub_without_policy_allows_everything_to_anyone() {
    let hub = Hub::memory();
    let (request, ()) = Request::get("/").body(()).unwrap().into_parts();
    let who = hub.authenticate(&request).unwrap();
    assert!(who.is_anonymous());
    hub.authorize(&who, Action::Admin, "*").unwrap();
    hub.publish_as(&who, "anything", Event::data("x"))
        .await
        .unwrap();
    hub.subscribe_as(&who, "anything", Start::Oldest)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_hub_authenticates_requests_with_its_policy() {
    let hub = hub_with(Arc::default());
    let (request, ()) = Request::get("/")
        .header("x-user", "ann")
        .body(())
        .unwrap()
        .into_parts();
    assert_eq!(hub.authenticate(&request).unwrap().subject(), Some("ann"));
    let (request, ()) = Request::get("/")
        .header("x-user", &b"\xff"[..])
        .body(())
        .unwrap()
        .into_parts();
    assert_eq!(hub.authenticate(&request).unwrap_err().status(), 401);
}

#[tokio::test]
async fn a_refused_publish_stores_nothing() {
    let policy = Arc::new(Users::default());
    let hub = hub_with(policy.clone());

    let err = hub
        .publish_as(&Identity::anonymous(), "user/ann/inbox", Event::data("x"))
        .await
        .unwrap_err();
    assert_eq!(status(&err), StatusCode::UNAUTHORIZED);
    assert!(!err.is_invalid_input());
    let err = hub
        .publish_as(&user("bob"), "user/ann/inbox", Event::data("x"))
        .await
        .unwrap_err();
    assert_eq!(status(&err), StatusCode::FORBIDDEN);
    assert_eq!(hub.stats().published, 0);
    assert!(hub.topic_info("user/ann/inbox").await.unwrap().is_none());

    let stored = hub
        .publish_as(&user("ann"), "user/ann/inbox", Event::data("x"))
        .await
        .unwrap();
    assert!(!stored.id().is_empty());
    assert_eq!(
        *policy.asked.lock().unwrap(),
        [
            (Action::Publish, "user/ann/inbox".to_owned()),
            (Action::Publish, "user/ann/inbox".to_owned()),
            (Action::Publish, "user/ann/inbox".to_owned()),
        ]
    );
}

#[tokio::test]
async fn an_invalid_topic_is_a_400_before_the_policy_is_asked() {
    let policy = Arc::new(Users::default());
    let hub = hub_with(policy.clone());
    let err = hub
        .subscribe_as(&user("ann"), "bad topic", None)
        .await
        .unwrap_err();
    assert!(err.denied().is_none() && err.is_invalid_input());
    let err = hub
        .publish_as(&user("ann"), "", Event::data("x"))
        .await
        .unwrap_err();
    assert!(err.denied().is_none() && err.is_invalid_input());
    assert_eq!(policy.authorized.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_private_topic_is_refused_on_replay_too_and_served_to_its_owner() {
    let hub = hub_with(Arc::default());
    let mut ids = Vec::new();
    for n in 1..=3 {
        let published = hub
            .publish("user/ann/inbox", Event::data(format!("secret {n}")))
            .await
            .unwrap();
        ids.push(published.id().to_owned());
    }
    // A reconnect with an id is a subscribe like any other.
    for (who, expected) in [
        (Identity::anonymous(), StatusCode::UNAUTHORIZED),
        (user("bob"), StatusCode::FORBIDDEN),
    ] {
        for start in [
            Start::After(last(&ids[0]).unwrap()),
            Start::Oldest,
            Start::Live,
        ] {
            let err = hub
                .subscribe_as(&who, "user/ann/inbox", start)
                .await
                .unwrap_err();
            assert_eq!(status(&err), expected);
        }
    }
    // Nothing was opened for the refused subscribers.
    assert_eq!(
        hub.topic_info("user/ann/inbox")
            .await
            .unwrap()
            .unwrap()
            .subscribers,
        0
    );

    let mut subscription = hub
        .subscribe_as(&user("ann"), "user/ann/inbox", last(&ids[0]))
        .await
        .unwrap();
    assert_eq!(subscription.next().await.unwrap().id(), Some(&*ids[1]));
    assert_eq!(subscription.next().await.unwrap().id(), Some(&*ids[2]));

    // Public topics are open to anyone.
    hub.subscribe_as(&Identity::anonymous(), "public/news", None)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_expired_identity_is_refused_even_without_a_policy() {
    let gone = user("ann").with_expiry(SystemTime::now() - Duration::from_secs(1));
    for hub in [hub_with(Arc::default()), Hub::memory()] {
        let err = hub
            .subscribe_as(&gone, "user/ann/inbox", None)
            .await
            .unwrap_err();
        assert_eq!(status(&err), StatusCode::UNAUTHORIZED);
        assert_eq!(
            err.denied().unwrap().www_authenticate().unwrap(),
            r#"Bearer error="invalid_token", error_description="the authorization has expired""#
        );
    }
}

#[tokio::test(start_paused = true)]
async fn expiry_ends_a_live_subscription_with_a_retry_hint() {
    let hub = Hub::builder()
        .retry_after_lag(Duration::from_millis(1500))
        .policy(Users::default())
        .memory();
    let ann = user("ann").with_expiry(SystemTime::now() + Duration::from_secs(5));
    let started = tokio::time::Instant::now();
    let mut subscription = hub
        .subscribe_as(&ann, "user/ann/inbox", None)
        .await
        .unwrap();
    hub.publish("user/ann/inbox", Event::data("before"))
        .await
        .unwrap();
    assert_eq!(data(&subscription.next().await.unwrap()), ["before"]);
    assert!(started.elapsed() < Duration::from_secs(1));

    // Nothing more is published: the next item is the end of the authorization, at 5 s.
    let notice = subscription.next().await.unwrap();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(4900) && elapsed <= Duration::from_millis(5100),
        "{elapsed:?}"
    );
    assert_eq!(text(&notice), "retry: 1500\n: authorization expired\n\n");
    assert!(subscription.next().await.is_none());
    // Its place in the topic is given back.
    assert_eq!(
        hub.topic_info("user/ann/inbox")
            .await
            .unwrap()
            .unwrap()
            .subscribers,
        0
    );
}

#[tokio::test(start_paused = true)]
async fn expiry_cuts_a_replay_between_two_events() {
    let hub = hub_with(Arc::default());
    for n in 1..=3 {
        hub.publish("user/ann/inbox", Event::data(format!("{n}")))
            .await
            .unwrap();
    }
    let ann = user("ann").with_expiry(SystemTime::now() + Duration::from_secs(1));
    let mut subscription = hub
        .subscribe_as(&ann, "user/ann/inbox", Start::Oldest)
        .await
        .unwrap();
    assert_eq!(futures_util::Stream::size_hint(&subscription).0, 1);
    assert_eq!(data(&subscription.next().await.unwrap()), ["1"]);
    tokio::time::advance(Duration::from_secs(2)).await;
    // The rest of the replay waits for the client to come back authorized.
    let notice = subscription.next().await.unwrap();
    assert_eq!(text(&notice), "retry: 1000\n: authorization expired\n\n");
    assert!(subscription.next().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn expire_at_on_a_trusted_subscription_and_in_the_past() {
    let hub = Hub::memory();
    let subscription = hub.subscribe("session", None).await.unwrap();
    let mut subscription = subscription.expire_at(SystemTime::now() - Duration::from_secs(1));
    let started = tokio::time::Instant::now();
    assert!(text(&subscription.next().await.unwrap()).contains("retry: "));
    assert!(subscription.next().await.is_none());
    assert_eq!(started.elapsed(), Duration::ZERO);

    // A deadline too far to represent is none; an earlier one wins over a later one.
    let far = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::MAX / 4);
    let mut subscription = hub
        .subscribe("session", None)
        .await
        .unwrap()
        .expire_at(far)
        .expire_at(SystemTime::now() + Duration::from_secs(3))
        .expire_at(SystemTime::now() + Duration::from_secs(60));
    assert!(text(&subscription.next().await.unwrap()).contains("retry: "));
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(2900) && elapsed <= Duration::from_millis(3100));
}

#[tokio::test]
async fn resume_as_authorizes_the_stream_topic_before_saying_whether_it_exists() {
    let policy = Arc::new(Users::default());
    let hub = hub_with(policy.clone());
    let spawned = hub
        .spawn_stream(
            StreamOptions::new(),
            futures_util::stream::iter([Event::data("token")]),
        )
        .await
        .unwrap();
    let id = spawned.id().to_owned();
    drop(spawned);

    // Nobody but the policy's `user/{name}/*` owners passes: `stream:{id}` is no one's.
    for who in [Identity::anonymous(), user("ann")] {
        for id in [id.as_str(), "no-such-stream"] {
            let err = hub.resume_as(&who, id, None).await.unwrap_err();
            assert!(err.denied().is_some(), "{id}");
        }
    }
    assert!(
        policy
            .asked
            .lock()
            .unwrap()
            .contains(&(Action::Subscribe, format!("stream:{id}")))
    );
    // An id no stream can have is nothing to protect: ended, as with `resume`.
    assert!(
        hub.resume_as(&Identity::anonymous(), "not an id!", None)
            .await
            .unwrap()
            .is_ended()
    );

    // A hub whose policy lets the reader in.
    struct Streams;
    impl Policy for Streams {
        fn authenticate(&self, _: &Parts) -> Result<Identity, Denied> {
            Ok(Identity::anonymous())
        }
        fn authorize(&self, _: &Identity, action: Action, topic: &str) -> Result<(), Denied> {
            match action {
                Action::Subscribe if Selector::new("stream:*").matches(topic) => Ok(()),
                _ => Err(Denied::forbidden("no")),
            }
        }
    }
    let hub = Hub::builder().policy(Streams).memory();
    let spawned = hub
        .spawn_stream(
            StreamOptions::new(),
            futures_util::stream::iter([Event::data("token")]),
        )
        .await
        .unwrap();
    let mut subscription = hub
        .resume_as(&Identity::anonymous(), spawned.id(), None)
        .await
        .unwrap();
    let mut received = Vec::new();
    while let Some(event) = subscription.next().await {
        received.extend(data(&event).into_iter().map(str::to_owned));
    }
    assert_eq!(received, ["token", "{}"]);
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn identity_is_an_extractor_on_the_hubs_policy() {
    use axum::extract::{Path, State};
    use axum::routing::get;
    use tower::ServiceExt;

    async fn whoami(
        State(hub): State<Hub>,
        who: Identity,
        Path(topic): Path<String>,
    ) -> Result<String, HubError> {
        hub.authorize(&who, Action::Subscribe, &topic)?;
        Ok(who.subject().unwrap_or("anonymous").to_owned())
    }

    let app = axum::Router::new()
        .route("/t/{*topic}", get(whoami))
        .with_state(hub_with(Arc::default()));
    let call = |uri: &'static str, user: Option<&'static [u8]>| {
        let app = app.clone();
        async move {
            let mut request = Request::get(uri);
            if let Some(user) = user {
                request = request.header("x-user", user);
            }
            let response = app
                .oneshot(request.body(axum::body::Body::empty()).unwrap())
                .await
                .unwrap();
            let status = response.status();
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            (status, String::from_utf8(body.to_vec()).unwrap())
        }
    };
    assert_eq!(
        call("/t/user/ann/x", Some(b"ann")).await,
        (StatusCode::OK, "ann".to_owned())
    );
    assert_eq!(
        call("/t/user/ann/x", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call("/t/user/ann/x", Some(b"bob")).await.0,
        StatusCode::FORBIDDEN
    );
    // Credentials that do not hold are refused by the extractor itself.
    assert_eq!(
        call("/t/public/x", Some(b"\xff")).await,
        (StatusCode::UNAUTHORIZED, "bad user\n".to_owned())
    );
}

#[tokio::test]
async fn a_request_may_not_publish_the_names_the_hub_sends_itself() {
    let hub = Hub::memory();
    let who = Identity::anonymous();
    for name in crate::hub::RESERVED_EVENT_NAMES {
        let forged = Event::builder().event(name).data("forged").build().unwrap();
        let err = hub.publish_as(&who, "news", forged).await.unwrap_err();
        assert!(err.to_string().contains("reserved"), "{name}: {err}");
        let status = axum::response::IntoResponse::into_response(err).status();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}");
    }
    assert_eq!(hub.stats().published, 0);
    // Trusted server-side code may send them.
    let own = Event::builder().event("end").data("{}").build().unwrap();
    hub.publish("news", own).await.unwrap();
    // And other names pass.
    let fine = Event::builder().event("gaps").data("ok").build().unwrap();
    hub.publish_as(&who, "news", fine).await.unwrap();
}
