//! Tests for the layer's own CORS core (`super::cors`): the origin rule is checked once per
//! request, preflights are answered without the handler and without a body of the handler's
//! type, and `Vary` is appended to the handler's, never written over it.
//!
//! No network: each test sends requests through the layer with `oneshot`.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Frame;
use tower::{ServiceExt as _, service_fn};
use tower_layer::Layer as _;

use super::SseLayer;
use super::tests::{APP, HOST, event_stream_response, lists, next, request_from, rest, serve};

/// A layer whose origin predicate allows [`APP`] and counts its calls.
fn counting_layer() -> (SseLayer, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let layer = SseLayer::new().allow_origin_predicate(move |origin, _parts| {
        counter.fetch_add(1, Ordering::SeqCst);
        origin == APP
    });
    (layer, calls)
}

/// A preflight from a page on `origin` for a `GET` with `Last-Event-ID`.
fn preflight_from(origin: &str) -> Request<Body> {
    Request::builder()
        .method(Method::OPTIONS)
        .uri("/events")
        .header(header::HOST, HOST)
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "last-event-id")
        .body(Body::empty())
        .unwrap()
}

fn stream_response() -> Response<Body> {
    event_stream_response(Body::from("data: x\n\n"))
}

#[tokio::test]
async fn origin_predicate_is_called_once_for_a_preflight() {
    let (layer, calls) = counting_layer();
    let response = serve(layer, preflight_from(APP), stream_response()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn origin_predicate_is_called_once_for_a_get() {
    let (layer, calls) = counting_layer();
    let response = serve(layer, request_from(APP), stream_response()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn origin_predicate_is_called_once_for_a_refused_origin() {
    let (layer, calls) = counting_layer();
    let response = serve(
        layer,
        request_from("https://evil.example.net"),
        stream_response(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn origin_predicate_is_called_once_for_a_stream_refused_by_a_limit() {
    let (layer, calls) = counting_layer();
    let mut request = request_from(APP);
    // What `EventSource` sends: refused before the handler runs.
    request.headers_mut().insert(
        header::ACCEPT,
        HeaderValue::from_static("text/event-stream"),
    );
    let response = serve(layer.max_connections(0), request, stream_response()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    assert!(lists(headers, header::VARY, "origin"));
    assert!(
        rest(&mut response.into_body())
            .await
            .starts_with(b": too many")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn what_is_not_one_origin_is_refused_before_a_permissive_predicate() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let layer = SseLayer::new().allow_origin_predicate(move |_origin, _parts| {
        counter.fetch_add(1, Ordering::SeqCst);
        true
    });
    for origin in [
        "*",
        "null",
        "NULL",
        "https://a.example, https://b.example",
        "https://a.example,https://b.example",
        "https://a.example https://b.example",
        "https://a.example\t",
        "https://*.example",
    ] {
        let request = request_from(origin);
        let response = serve(layer.clone(), request, stream_response()).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{origin:?}");
        let headers = response.headers();
        assert!(
            headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none(),
            "{origin:?}"
        );
        assert!(
            headers
                .get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
                .is_none(),
            "{origin:?}"
        );
        let preflight = serve(layer.clone(), preflight_from(origin), stream_response()).await;
        assert!(
            preflight
                .headers()
                .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .is_none(),
            "{origin:?}"
        );
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "the predicate is not asked"
    );

    // One origin is still the predicate's to decide.
    let response = serve(layer, request_from(APP), stream_response()).await;
    assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn origin_predicate_is_not_called_without_an_origin() {
    let (layer, calls) = counting_layer();
    let request = Request::get("/events").body(Body::empty()).unwrap();
    let response = serve(layer, request, stream_response()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn preflight_from_a_refused_origin_gets_no_allow_origin() {
    let response = serve(
        SseLayer::new().allow_origins([APP]),
        preflight_from("https://evil.example.net"),
        stream_response(),
    )
    .await;
    let headers = response.headers();
    assert!(headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    assert!(
        headers
            .get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
            .is_none()
    );
    assert!(lists(headers, header::VARY, "origin"));
}

#[tokio::test]
async fn preflight_lists_added_methods_and_headers_and_has_no_body() {
    let layer = SseLayer::new()
        .allow_origins([APP])
        .allow_methods([Method::POST])
        .allow_headers([header::CONTENT_TYPE]);
    let response = serve(layer, preflight_from(APP), stream_response()).await;
    let headers = response.headers();
    assert_eq!(
        headers[header::ACCESS_CONTROL_ALLOW_METHODS],
        "GET,HEAD,POST"
    );
    assert_eq!(
        headers[header::ACCESS_CONTROL_ALLOW_HEADERS],
        "last-event-id,cache-control,content-type"
    );
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    assert!(headers.get(header::CONTENT_TYPE).is_none());
    assert!(rest(&mut response.into_body()).await.is_empty());
}

#[tokio::test]
async fn vary_is_appended_to_the_handlers_own() {
    let mut response = stream_response();
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept-language"));
    let response = serve(
        SseLayer::new().allow_origins([APP]),
        request_from(APP),
        response,
    )
    .await;
    let headers = response.headers();
    assert!(lists(headers, header::VARY, "accept-language"));
    assert!(lists(headers, header::VARY, "origin"));
    assert!(lists(
        headers,
        header::VARY,
        "access-control-request-headers"
    ));
}

#[tokio::test]
async fn handlers_own_allow_origin_is_replaced_by_the_checked_one() {
    let mut response = stream_response();
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    let response = serve(
        SseLayer::new().allow_origins([APP]),
        request_from(APP),
        response,
    )
    .await;
    let headers = response.headers();
    let allow: Vec<_> = headers
        .get_all(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .iter()
        .collect();
    assert_eq!(allow, [APP]);
}

/// A response body that does not implement `Default`: a stream of one frame.
struct NoDefault(Option<Bytes>);

impl http_body::Body for NoDefault {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().0.take().map(|data| Ok(Frame::data(data))))
    }
}

#[tokio::test]
async fn layer_serves_a_response_body_without_default() {
    // Compiles only if the layer asks nothing more of the handler's body than `Body`.
    let service =
        SseLayer::new()
            .allow_origins([APP])
            .layer(service_fn(|_: Request<Body>| async {
                let response = Response::builder()
                    .header(header::CONTENT_TYPE, "text/event-stream")
                    .body(NoDefault(Some(Bytes::from_static(b"data: x\n\n"))))
                    .unwrap();
                Ok::<_, Infallible>(response)
            }));

    let preflight = service.clone().oneshot(preflight_from(APP)).await.unwrap();
    assert_eq!(preflight.status(), StatusCode::OK);
    assert_eq!(
        preflight.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        APP
    );
    assert!(rest(&mut preflight.into_body()).await.is_empty());

    let response = service.oneshot(request_from(APP)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
    let mut body = response.into_body();
    assert_eq!(next(&mut body).await, ":\n\n");
    assert_eq!(next(&mut body).await, "data: x\n\n");
}

#[tokio::test]
async fn an_event_stream_request_from_a_refused_origin_never_reaches_the_handler() {
    // A handler that starts work for each stream (a subscription, a poller): the page of
    // another origin must not get to start it.
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let handler = service_fn(move |_: Request<Body>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(stream_response()) }
    });
    for layer in [SseLayer::new().allow_origins([APP]), SseLayer::new()] {
        let cors = layer.clone().layer(handler.clone());
        let mut request = request_from("https://evil.example.net");
        request.headers_mut().insert(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        let response = cors.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let headers = response.headers();
        assert!(headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        assert_eq!(
            lists(headers, header::VARY, "origin"),
            headers.contains_key(header::VARY)
        );
        assert_eq!(
            rest(&mut response.into_body()).await,
            b"origin not allowed\n"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 0, "the handler ran");

        // One that may take something else runs the handler (its answer may be no stream),
        // and its stream is refused all the same.
        let response = cors
            .oneshot(request_from("https://evil.example.net"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(calls.swap(0, Ordering::SeqCst), 1);
    }
    // With allowed origins, the refusal varies on `Origin` as every answer of the layer does.
    let mut request = request_from("https://evil.example.net");
    request.headers_mut().insert(
        header::ACCEPT,
        HeaderValue::from_static("text/event-stream"),
    );
    let response = serve(
        SseLayer::new().allow_origins([APP]),
        request,
        stream_response(),
    )
    .await;
    assert!(lists(response.headers(), header::VARY, "origin"));
}
