//! Microbenchmark of the layer's per-event compression:
//!
//! ```text
//! cargo bench --features compression --bench compress
//! STREAMS=1000 ROUNDS=9 cargo bench --features compression --bench compress
//! ```
//!
//! Many streams through `SseLayer`, each over an endless stream of 1 KiB JSON events like the
//! harness's (`loadgen publish --data json`: an order with varied line items), read one event per
//! stream in turn, as a fan-out delivers them: plain, and compressed by the layer with each
//! encoding, every event compressed and flushed on its own in its stream's context
//! (`Compression::new().per_stream()`). The throughput is in deliveries; the difference to `plain`
//! is what compression adds to each. With a thousand streams, the contexts do not fit in the cache,
//! as in the harness.
//!
//! The `shared-*` variants compress as `Compression::new()` does (shared, the default): every
//! stream sends the same event in each round (the same `Bytes`, as a topic's subscribers get it),
//! compressed once for all of them. Their cache holds fewer events than a stream cycles through, so
//! that no event is found again from an earlier round: with one stream, every delivery compresses.
//!
//! The variants take turns, round after round, so that other load on the machine falls on all
//! alike; each round reads for a fixed number of deliveries and counts the thread's CPU time
//! (`/proc/thread-self/schedstat` on Linux, else the wall-clock time). The least per delivery
//! over the rounds counts. Figures go to stdout; nothing is asserted.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use axum::response::IntoResponse;
use futures_util::stream;
use http::{Request, Response, header};
use http_body::Body as _;
use tower::{Layer, ServiceExt, service_fn};
use tower_sse::layer::Compression;
use tower_sse::{Event, EventStream, SseLayer};

/// Distinct events each stream cycles through: more than any encoding's window holds, so no
/// event is found whole in a context.
const POOL: usize = 1024;

/// A JSON object of at least `size` bytes, as `loadgen`'s `json_data` makes them (seeded by
/// `seq` rather than the clock).
fn json_data(size: usize, seq: u64) -> String {
    let t = 1_700_000_000_000_000_000u64 + seq * 50_000_000;
    let mut state = t ^ (seq.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1;
    let mut next = move |below: u64| {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d) % below
    };
    const WORDS: [&str; 8] = [
        "standard", "express", "pending", "shipped", "gift", "bulk", "return", "priority",
    ];
    let mut body = format!(
        "{{\"t\":{t},\"seq\":{seq},\"type\":\"order.updated\",\"order\":{{\"id\":\"ord_{:012x}\",\"customer\":{{\"id\":{},\"name\":\"customer {}\",\"tier\":\"{}\"}},\"items\":[",
        next(1 << 48),
        next(1_000_000),
        next(100_000),
        WORDS[next(8) as usize],
    );
    let mut first = true;
    while body.len() + 30 < size || first {
        if !first {
            body.push(',');
        }
        first = false;
        body.push_str(&format!(
            "{{\"sku\":\"SKU-{:05}\",\"qty\":{},\"price\":{}.{:02},\"note\":\"{}\"}}",
            next(100_000),
            1 + next(9),
            next(500),
            next(100),
            WORDS[next(8) as usize],
        ));
    }
    body.push_str("]}}");
    body
}

/// The events, with ids as the memory hub writes them.
fn pool() -> Arc<[Event]> {
    (0..POOL as u64)
        .map(|seq| {
            Event::builder()
                .id(format!("{:012x}-{seq}", 0x6f1c_2a9b_03deu64))
                .data(json_data(1024, seq))
                .build()
                .unwrap()
        })
        .collect()
}

type Stream = Pin<Box<dyn futures_util::Stream<Item = Event> + Send>>;
/// As in an axum app: the handler's response body is axum's.
type Body = tower_sse::layer::SseBody<axum::body::Body>;

/// Opens `n` streams through `layer`, asking for `accept_encoding`, each starting at its own
/// place in the pool (or, for a `fanout`, all at the same), and reads each up to its first
/// event.
fn open(
    rt: &tokio::runtime::Runtime,
    layer: &SseLayer,
    accept_encoding: Option<&str>,
    fanout: bool,
    n: usize,
) -> Vec<Pin<Box<Body>>> {
    let events = pool();
    (0..n)
        .map(|i| {
            let events = events.clone();
            let i = if fanout { 0 } else { i };
            let service = layer.layer(service_fn(move |_: Request<()>| {
                let events = events.clone();
                async move {
                    let stream: Stream = Box::pin(stream::iter(
                        (0..).map(move |k| events[(i + k) % POOL].clone()),
                    ));
                    Ok::<_, Infallible>(EventStream::new(stream).into_response())
                }
            }));
            let mut request = Request::get("/events").header(header::ACCEPT, "text/event-stream");
            if let Some(coding) = accept_encoding {
                request = request.header(header::ACCEPT_ENCODING, coding);
            }
            let request = request.body(()).unwrap();
            let response: Response<Body> = rt.block_on(service.oneshot(request)).unwrap();
            let encoded = response.headers().get(header::CONTENT_ENCODING).cloned();
            assert_eq!(
                encoded.as_ref().map(|v| v.to_str().unwrap()),
                accept_encoding,
                "the layer compresses as asked"
            );
            let mut body = Box::pin(response.into_body());
            // The initial comment, then the first event.
            let mut cx = Context::from_waker(Waker::noop());
            for _ in 0..2 {
                let _ = body.as_mut().poll_frame(&mut cx);
            }
            body
        })
        .collect()
}

/// Reads one frame (one event, compressed and flushed) from each stream; returns the bytes.
fn deliver(bodies: &mut [Pin<Box<Body>>]) -> usize {
    let mut cx = Context::from_waker(Waker::noop());
    let mut bytes = 0;
    for body in bodies {
        match body.as_mut().poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => {
                bytes += frame.data_ref().map_or(0, bytes::Buf::remaining)
            }
            other => panic!("a stream always has an event ready: {:?}", other.is_ready()),
        }
    }
    bytes
}

/// The time this thread has run, on Linux (`/proc/thread-self/schedstat`, which advances at
/// scheduler ticks: rounds are long enough for that), so that other load on the machine does
/// not count; elsewhere the wall-clock time.
enum Cpu {
    Thread(Duration),
    Wall(Instant),
}

impl Cpu {
    fn now() -> Cpu {
        Cpu::thread().map_or_else(|| Cpu::Wall(Instant::now()), Cpu::Thread)
    }

    fn thread() -> Option<Duration> {
        let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
        let ns = stat.split_whitespace().next()?.parse().ok()?;
        Some(Duration::from_nanos(ns))
    }

    fn elapsed(&self) -> Duration {
        match self {
            Cpu::Thread(start) => Cpu::thread().map_or(Duration::ZERO, |now| now - *start),
            Cpu::Wall(start) => start.elapsed(),
        }
    }
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter, if any, picks variants by name.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let rounds = env("ROUNDS", 5);
    let deliveries = env("DELIVERIES", 20_000);
    let warm = env("WARM", 200);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let plain = SseLayer::new();
    let compressing = SseLayer::new().compression(Compression::new().per_stream());
    let sharing = SseLayer::new().compression(Compression::new().cache_entries(POOL / 16));
    let variants = [
        ("plain", &plain, None, false),
        ("gzip", &compressing, Some("gzip"), false),
        ("br", &compressing, Some("br"), false),
        ("zstd", &compressing, Some("zstd"), false),
        ("shared-gzip", &sharing, Some("gzip"), true),
        ("shared-br", &sharing, Some("br"), true),
        ("shared-zstd", &sharing, Some("zstd"), true),
    ];
    let counts: Vec<usize> = std::env::var("STREAMS").map_or(vec![1, 1000], |v| {
        v.split(',').filter_map(|n| n.parse().ok()).collect()
    });
    for streams in counts {
        let mut open_variants: Vec<_> = variants
            .iter()
            .filter(|(name, ..)| {
                filter.is_empty()
                    || *name == "plain"
                    || filter.iter().any(|f| name.contains(f.as_str()))
            })
            .map(|&(name, layer, coding, fanout)| {
                let mut bodies = open(&rt, layer, coding, fanout, streams);
                // Bytes per event, over the pool once, for the record.
                let mut sizes = 0;
                for _ in 0..POOL {
                    sizes += deliver(&mut bodies[..1]);
                }
                // Every stream's window full, as in a stream that has run for a while.
                for _ in 0..warm {
                    deliver(&mut bodies);
                }
                (name, bodies, sizes / POOL, Duration::MAX)
            })
            .collect();
        let calls = deliveries.div_ceil(streams);
        for _ in 0..rounds {
            for (_, bodies, _, best) in &mut open_variants {
                // At least the deliveries asked for, and at least 50 ms (the thread's time
                // advances by scheduler ticks).
                let cpu = Cpu::now();
                let mut done = 0;
                while done == 0 || cpu.elapsed() < Duration::from_millis(50) {
                    for _ in 0..calls {
                        std::hint::black_box(deliver(bodies));
                    }
                    done += calls;
                }
                *best = (*best).min(cpu.elapsed() / (done * streams) as u32);
            }
        }
        let base = open_variants[0].3.as_secs_f64();
        println!(
            "{streams} stream(s), 1 KiB JSON events, best of {rounds} rounds of {} deliveries:",
            calls * streams
        );
        println!("  variant       bytes/event   CPU per delivery   added to plain");
        for (name, _, size, best) in &open_variants {
            let t = best.as_secs_f64();
            println!(
                "  {name:<12} {size:>12} {:>15.2} µs {:>13.2} µs",
                t * 1e6,
                (t - base) * 1e6
            );
        }
    }
}
