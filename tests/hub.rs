//! End to end over real sockets: the hub server of `examples/hub.rs` on `127.0.0.1:0`, driven by
//! a real HTTP client (reqwest) and read with the WHATWG parser.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use support::client::{EventReader, GUARD};
use support::hub::{Config, Server, config, hub_server};
use tower_sse::registry::Presence;

#[tokio::test]
async fn published_event_reaches_subscriber_with_its_id() {
    let server = Server::start(config()).await;
    let mut reader = server.subscribe("news", None).await;
    server.until_open(1).await;
    let id = server.publish("news", "hello\nworld").await;
    let event = reader.next().await.unwrap();
    assert_eq!(event.event_type, "message");
    assert_eq!(event.data, "hello\nworld");
    assert_eq!(event.last_event_id, id);
}

#[tokio::test]
async fn publish_with_event_name_sends_a_named_event() {
    let server = Server::start(config()).await;
    let mut reader = server.subscribe("prices", None).await;
    server.until_open(1).await;
    let response = server
        .publish_raw("/publish/prices?event=price", "{\"eur\":1.08}")
        .await;
    assert_eq!(response.status(), 200);
    let event = reader.next().await.unwrap();
    assert_eq!(event.event_type, "price");
    assert_eq!(event.data, "{\"eur\":1.08}");
}

#[tokio::test]
async fn bad_publish_input_gets_4xx_with_a_message() {
    let server = Server::start(config()).await;
    for (path, body, fragment) in [
        ("/publish/bad%20topic", b"x".to_vec(), "invalid topic"),
        ("/publish/news?event=a%0Ab", b"x".to_vec(), "event name"),
        ("/publish/news", vec![0xff, 0xfe], "UTF-8"),
    ] {
        let response = server.publish_raw(path, body).await;
        assert!(
            response.status().is_client_error(),
            "{path}: {}",
            response.status()
        );
        let text = response.text().await.unwrap();
        assert!(text.contains(fragment), "{path}: {text:?}");
    }
    // Nothing was published by the refused requests.
    assert_eq!(server.hub.stats().published, 0);
}

#[tokio::test]
async fn reconnect_with_last_event_id_gets_exactly_the_missed_events() {
    let server = Server::start(config()).await;
    let mut ids = Vec::new();
    for n in 1..=10 {
        ids.push(server.publish("feed", &format!("event {n}")).await);
    }
    // A client that saw up to the 7th event comes back.
    let mut reader = server.subscribe("feed", Some(&ids[6])).await;
    let replayed = reader.take(3).await;
    let replayed_ids: Vec<&str> = replayed.iter().map(|e| e.last_event_id.as_str()).collect();
    assert_eq!(replayed_ids, [&ids[7], &ids[8], &ids[9]]);
    assert_eq!(replayed[0].data, "event 8");
    // Then live.
    let live_id = server.publish("feed", "event 11").await;
    assert_eq!(reader.next().await.unwrap().last_event_id, live_id);
}

#[tokio::test]
async fn last_event_id_query_parameter_resumes_too() {
    let server = Server::start(config()).await;
    let first = server.publish("feed", "one").await;
    let second = server.publish("feed", "two").await;
    let response = server
        .client
        .get(server.url(&format!("/events/feed?lastEventId={first}")))
        .send()
        .await
        .unwrap();
    let mut reader = EventReader::new(response);
    assert_eq!(reader.next().await.unwrap().last_event_id, second);
}

#[tokio::test]
async fn reconnect_after_a_restart_gets_a_gap_event_first() {
    let before = Server::start(config()).await;
    let old_id = before.publish("feed", "before the restart").await;
    before.stop().await;

    let after = Server::start(config()).await;
    let new_id = after.publish("feed", "after the restart").await;
    let mut reader = after.subscribe("feed", Some(&old_id)).await;

    let gap = reader.next().await.unwrap();
    assert_eq!(gap.event_type, "gap");
    let notice: Value = serde_json::from_str(&gap.data).unwrap();
    assert_eq!(notice["reason"], "foreign");
    assert_eq!(notice["requested"], old_id.as_str());
    assert_eq!(notice["resume"], "oldest");
    // Then everything the new server holds.
    let next = reader.next().await.unwrap();
    assert_eq!(
        (next.last_event_id.as_str(), next.data.as_str()),
        (new_id.as_str(), "after the restart")
    );
}

#[tokio::test]
async fn connections_lists_open_streams_and_drops_one_that_leaves() {
    let server = Server::start(config()).await;
    let first = server.publish("room", "one").await;
    server.publish("room", "two").await;

    let mut reader = server.subscribe("room", Some(&first)).await;
    assert_eq!(reader.next().await.unwrap().data, "two");
    server.until_open(1).await;

    let list = server.connections().await;
    assert_eq!(list.len(), 1);
    let conn = &list[0];
    assert_eq!(conn["topic"], "room");
    assert_eq!(conn["last_event_id"], first.as_str());
    assert_eq!(conn["events_sent"], 1);
    assert!(conn["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(conn["id"].is_u64() && conn["connected_at"].is_u64());

    // The client goes away; the registry notices and drops it.
    let registry = server.hub.registry();
    let mut presence = registry.presence();
    drop(reader);
    let notice = tokio::time::timeout(GUARD, presence.next())
        .await
        .expect("a disconnect notice within the guard time")
        .unwrap();
    assert!(matches!(notice, Presence::Disconnected(_)));
    assert!(server.connections().await.is_empty());
}

#[tokio::test]
async fn graceful_shutdown_ends_every_stream_with_a_retry_hint() {
    let server = Server::start(config()).await;
    let mut readers = Vec::new();
    for _ in 0..20 {
        readers.push(server.subscribe("news", None).await);
    }
    server.until_open(20).await;
    server.stop().await;
    for mut reader in readers {
        assert!(reader.until_end().await.is_empty());
        let retry = reader.retry().expect("a retry hint before the end");
        assert!((1000..=3000).contains(&retry), "retry {retry} ms");
    }
}

#[tokio::test]
async fn max_connections_refuses_the_next_stream_with_a_retry_hint() {
    let server = Server::start(Config {
        max_connections: Some(2),
        ..config()
    })
    .await;
    let _a = server.subscribe("news", None).await;
    let _b = server.subscribe("news", None).await;
    server.until_open(2).await;

    let mut refused = server.subscribe("news", None).await;
    assert!(
        refused.until_end().await.is_empty(),
        "no event, and the stream ends"
    );
    let retry = refused.retry().expect("told when to come back");
    assert!((5000..=15000).contains(&retry), "retry {retry} ms");
    assert!(String::from_utf8_lossy(refused.raw()).contains("too many connections"));
    assert_eq!(server.connections().await.len(), 2);
}

#[tokio::test]
async fn keep_alive_setting_sends_comments_on_an_idle_stream() {
    let server = Server::start(Config {
        keep_alive: Duration::from_secs(1),
        ..config()
    })
    .await;
    let response = server
        .client
        .get(server.url("/events/quiet"))
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    let mut received = Vec::new();
    // The initial comment, then a keep-alive comment after the idle second.
    while received.len() < b":\n\n:\n\n".len() {
        let chunk = tokio::time::timeout(GUARD, body.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        received.extend_from_slice(&chunk);
    }
    assert_eq!(received, b":\n\n:\n\n");
}

#[tokio::test]
async fn allowed_origin_is_echoed_with_credentials() {
    let server = Server::start(Config {
        allow_origins: vec!["http://app.localhost:8080".to_owned()],
        ..config()
    })
    .await;
    let response = server
        .client
        .get(server.url("/events/news"))
        .header("Origin", "http://app.localhost:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "http://app.localhost:8080"
    );
    assert_eq!(
        response.headers()["access-control-allow-credentials"],
        "true"
    );

    let refused = server
        .client
        .get(server.url("/events/news"))
        .header("Origin", "http://evil.localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn wildcard_allow_origins_is_refused_with_what_to_write_instead() {
    let err = hub_server::app(&Config {
        allow_origins: vec!["*".to_owned()],
        ..config()
    })
    .await
    .err()
    .expect("a wildcard origin is refused");
    assert!(err.starts_with("ALLOW_ORIGINS:"), "{err}");
    assert!(err.contains("list each exact origin"), "{err}");
}

#[tokio::test]
async fn closing_a_topic_ends_its_streams_and_a_reconnect_after_the_end_gets_204() {
    let server = Server::start(config()).await;
    let mut reader = server.subscribe("job-7", None).await;
    server.until_open(1).await;
    let id = server.publish("job-7", "50%").await;

    let response = server.publish_raw("/close/job-7", "").await;
    assert_eq!(response.status(), 200);
    let end_id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(end_id.ends_with(":end"), "{end_id}");

    // The open stream: the event, the end, and the server ends the response.
    let events = reader.until_end().await;
    let seen: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.event_type.as_str(), e.last_event_id.as_str()))
        .collect();
    assert_eq!(seen, [("message", id.as_str()), ("end", end_id.as_str())]);

    // Reconnecting as EventSource does, with the end's id: 204, which makes it stop.
    let response = server.request("job-7", Some(&end_id)).await;
    assert_eq!(response.status(), 204);
    // A late reconnect from before the end: what it missed, then the end.
    let mut late = server.subscribe("job-7", Some(&id)).await;
    let events = late.until_end().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, "end");

    // The topic takes no more events.
    let refused = server.try_publish("job-7", "more").await.unwrap_err();
    assert_eq!(refused.0, 409, "{refused:?}");
}

#[tokio::test]
async fn from_oldest_gives_a_first_connection_everything_retained() {
    let server = Server::start(config()).await;
    let first = server.publish("log", "one").await;
    let second = server.publish("log", "two").await;
    let response = server
        .client
        .get(server.url("/events/log?from=oldest"))
        .send()
        .await
        .unwrap();
    let mut reader = EventReader::new(response);
    let ids: Vec<String> = reader
        .take(2)
        .await
        .into_iter()
        .map(|e| e.last_event_id)
        .collect();
    assert_eq!(ids, [first, second.clone()]);
    // A reconnect still resumes after its id, whatever `from` says.
    let third = server.publish("log", "three").await;
    let response = server
        .client
        .get(server.url("/events/log?from=oldest"))
        .header("Last-Event-ID", &second)
        .send()
        .await
        .unwrap();
    let mut reader = EventReader::new(response);
    assert_eq!(reader.next().await.unwrap().last_event_id, third);
}

#[tokio::test]
async fn a_topic_per_user_works_and_topics_report_who_listens() {
    let server = Server::start(config()).await;
    let users = 50;
    let mut readers = Vec::new();
    for user in 0..users {
        readers.push(server.subscribe(&format!("user-{user}"), None).await);
    }
    server.until_open(users).await;
    for user in 0..users {
        server
            .publish(&format!("user-{user}"), &format!("for {user}"))
            .await;
    }
    for (user, reader) in readers.iter_mut().enumerate() {
        assert_eq!(reader.next().await.unwrap().data, format!("for {user}"));
    }
    let info: Value = server
        .client
        .get(server.url("/topics/user-3"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["subscribers"], 1);
    assert_eq!(info["retained_events"], 1);

    // Every user leaves: the topics keep their one event each, nothing more.
    drop(readers);
    server.until_open(0).await;
    let info = server.hub.topic_info("user-3").await.unwrap().unwrap();
    assert_eq!(info.subscribers, 0);
    let missing = server
        .client
        .get(server.url("/topics/nobody"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn at_max_topics_a_new_subscriber_gets_a_retry_hint_and_a_publisher_503() {
    let server = Server::start(Config {
        max_topics: Some(2),
        ..config()
    })
    .await;
    let _a = server.subscribe("a", None).await;
    let _b = server.subscribe("b", None).await;
    server.until_open(2).await;

    // 200 with a comment and a retry hint, so EventSource comes back by itself.
    let mut refused = server.subscribe("c", None).await;
    assert!(refused.until_end().await.is_empty());
    assert_eq!(refused.retry(), Some(1000));
    let text = String::from_utf8_lossy(refused.raw()).into_owned();
    assert!(text.contains(": the hub holds as many topics"), "{text:?}");

    let (status, body) = server.try_publish("c", "x").await.unwrap_err();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("as many topics"), "{body}");
}
