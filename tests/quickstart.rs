//! End to end over real sockets: the quickstart example's app on `127.0.0.1:0`, read by a real
//! HTTP client (reqwest), parsed with the WHATWG algorithm.

#[path = "../examples/quickstart.rs"]
mod quickstart;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::client::EventReader;
use support::whatwg::ParsedEvent;

async fn serve() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, quickstart::app(Duration::from_millis(20)))
            .await
            .unwrap();
    });
    addr
}

/// Reads `count` events from a streaming response, then drops it (the client disconnects).
async fn read_events(response: reqwest::Response, count: usize) -> Vec<ParsedEvent> {
    EventReader::new(response).take(count).await
}

fn ids(events: &[ParsedEvent]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e.last_event_id.parse().unwrap())
        .collect()
}

#[tokio::test]
async fn stream_has_event_stream_headers() {
    let addr = serve().await;
    let response = reqwest::get(format!("http://{addr}/events")).await.unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-cache, no-transform");
    assert_eq!(headers["x-accel-buffering"], "no");
    assert!(headers.get("content-length").is_none());
}

#[tokio::test]
async fn reconnect_with_last_event_id_resumes_right_after_it() {
    let addr = serve().await;
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/events");

    let first = read_events(client.get(&url).send().await.unwrap(), 3).await;
    assert!(first.iter().all(|e| e.event_type == "tick"));
    let first_ids = ids(&first);
    assert_eq!(
        first_ids,
        [first_ids[0], first_ids[0] + 1, first_ids[0] + 2]
    );
    let last = first_ids[2];

    // Another client sees the server get three ticks past `last`, so there is something to
    // catch up on when the first one comes back.
    let observer = read_events(client.get(&url).send().await.unwrap(), 3).await;
    assert!(ids(&observer)[2] >= last + 3);

    let resumed = client
        .get(&url)
        .header("Last-Event-ID", last.to_string())
        .send()
        .await
        .unwrap();
    let resumed_ids = ids(&read_events(resumed, 5).await);
    let expected: Vec<u64> = (last + 1..=last + 5).collect();
    assert_eq!(
        resumed_ids, expected,
        "no gap and no duplicate after {last}"
    );
}

#[tokio::test]
async fn query_parameter_resumes_when_there_is_no_header() {
    let addr = serve().await;
    let client = reqwest::Client::new();
    let first = read_events(
        client
            .get(format!("http://{addr}/events"))
            .send()
            .await
            .unwrap(),
        1,
    )
    .await;
    let last = ids(&first)[0];
    let resumed = client
        .get(format!("http://{addr}/events?lastEventId={last}"))
        .send()
        .await
        .unwrap();
    assert_eq!(ids(&read_events(resumed, 2).await), [last + 1, last + 2]);
}

#[tokio::test]
async fn page_opens_an_event_source() {
    let addr = serve().await;
    let page = reqwest::get(format!("http://{addr}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("new EventSource(\"/events\")"));
}
