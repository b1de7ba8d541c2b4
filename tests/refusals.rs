//! What a request refused by a connection limit keeps: nothing. A counting global allocator
//! measures the heap bytes in use (allocated minus freed) around a thousand refusals at the
//! connection cap of the hub server, over one real keep-alive connection, with `Accept: text/event-stream` (the
//! layer refuses before the handler runs) and with `Accept: */*` (the handler runs and
//! subscribes to the hub, whose subscription the layer drops unpolled). What the
//! connection itself holds (hyper's buffers) is there before and after, and is not counted.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

mod support;
use support::hub::{Config, Server, config};

/// Counts the heap bytes in use, for the whole process.
struct Counting;

static IN_USE: AtomicIsize = AtomicIsize::new(0);
/// Every byte ever allocated: what requests cost while they run.
static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

fn size(layout: Layout) -> isize {
    isize::try_from(layout.size()).unwrap_or(isize::MAX)
}

// SAFETY: every call is passed on to the system allocator unchanged; the counter is a side
// effect that allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        IN_USE.fetch_add(size(layout), Ordering::Relaxed);
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        IN_USE.fetch_add(size(layout), Ordering::Relaxed);
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(size(layout), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        IN_USE.fetch_add(
            isize::try_from(new_size).unwrap_or(isize::MAX) - size(layout),
            Ordering::Relaxed,
        );
        ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn in_use() -> isize {
    IN_USE.load(Ordering::Relaxed)
}

/// Refusals measured, after as many to warm up (first-use allocations of the runtime, hyper,
/// tracing's callsites).
const REFUSALS: usize = 1000;
/// What a thousand refusals may leave behind, all together: less than 16 bytes each, so a
/// refusal that kept anything of its own (a registry entry, a topic, a subscriber position, a
/// replay buffer) would exceed it. What remains is noise: the last request's buffers, the
/// runtime's timer and task slabs.
const BOUND: isize = 16 * 1024;
const GUARD: Duration = Duration::from_secs(30);

/// One HTTP/1.1 keep-alive connection, one request at a time.
struct Client {
    stream: BufReader<TcpStream>,
    /// The `Host` of its requests: the server's address, one of the hosts it answers for.
    host: String,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        Client {
            stream: BufReader::new(TcpStream::connect(addr).await.unwrap()),
            host: addr.to_string(),
        }
    }

    /// Sends a `GET` and reads the whole response; returns its body.
    async fn get(&mut self, path: &str, accept: &str) -> Vec<u8> {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: {accept}\r\n\r\n",
            self.host
        );
        self.stream
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .unwrap();
        timeout(GUARD, self.read_response())
            .await
            .expect("a response")
    }

    async fn read_response(&mut self) -> Vec<u8> {
        let mut length = None;
        let mut chunked = false;
        let mut line = String::new();
        loop {
            line.clear();
            self.stream.read_line(&mut line).await.unwrap();
            let header = line.trim_end().to_ascii_lowercase();
            if header.is_empty() {
                break;
            }
            if let Some(value) = header.strip_prefix("content-length:") {
                length = Some(value.trim().parse::<usize>().unwrap());
            }
            chunked |= header == "transfer-encoding: chunked";
        }
        let mut body = Vec::new();
        if let Some(length) = length {
            body.resize(length, 0);
            self.stream.read_exact(&mut body).await.unwrap();
        } else {
            assert!(chunked, "a response with neither length nor chunks");
            loop {
                line.clear();
                self.stream.read_line(&mut line).await.unwrap();
                let size = usize::from_str_radix(line.trim_end(), 16).unwrap();
                let mut chunk = vec![0; size + 2];
                self.stream.read_exact(&mut chunk).await.unwrap();
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        }
        body
    }
}

/// Heap bytes in use after `REFUSALS` refusals minus before, each on a topic of its own, and
/// the bytes allocated (and freed) per refusal while it ran.
async fn kept_by_refusals(client: &mut Client, accept: &str, label: &str) -> (isize, usize) {
    let mut refuse = async |n: usize| {
        let body = client.get(&format!("/events/{label}-{n}"), accept).await;
        assert!(
            body.starts_with(b": too many connections\n"),
            "{label}: {:?}",
            String::from_utf8_lossy(&body)
        );
    };
    for n in 0..REFUSALS {
        refuse(n).await;
    }
    let before = in_use();
    let allocated = ALLOCATED.load(Ordering::Relaxed);
    for n in REFUSALS..2 * REFUSALS {
        refuse(n).await;
    }
    let per_refusal = (ALLOCATED.load(Ordering::Relaxed) - allocated) / REFUSALS;
    (in_use() - before, per_refusal)
}

#[tokio::test(flavor = "current_thread")]
async fn refusals_at_the_connection_cap_keep_nothing_whatever_the_accept_header() {
    // The hub server of `examples/hub.rs`, with room for one stream.
    let server = Server::start(Config {
        max_connections: Some(1),
        ..config()
    })
    .await;
    let (addr, hub) = (server.addr, server.hub.clone());
    // The one stream the cap allows.
    let mut open = server.request("open", None).await.bytes_stream();
    let first = timeout(GUARD, open.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(&first[..], b":\n\n");

    let mut client = Client::connect(addr).await;
    let (early, early_each) = kept_by_refusals(&mut client, "text/event-stream", "early").await;
    let (late, late_each) = kept_by_refusals(&mut client, "*/*", "late").await;
    println!(
        "heap bytes kept by {REFUSALS} refusals: {early} (EventSource), {late} (*/*); \
         allocated and freed while each ran (client included): {early_each}, {late_each}"
    );
    assert!(
        early < BOUND,
        "{REFUSALS} refusals before the handler kept {early} bytes"
    );
    assert!(
        late < BOUND,
        "{REFUSALS} refusals after the handler kept {late} bytes"
    );

    // Nothing of theirs anywhere: not in the registry, not in the hub.
    let registry = hub.registry();
    assert_eq!(registry.len(), 1);
    assert_eq!(registry.stats().refused, 4 * REFUSALS as u64);
    for topic in ["early-0", "late-0", &format!("late-{}", 2 * REFUSALS - 1)] {
        assert!(hub.topic_info(topic).await.unwrap().is_none(), "{topic}");
    }
}
