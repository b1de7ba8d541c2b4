//! Helpers shared by the integration tests. Each test file that needs them declares
//! `mod support;`.
#![allow(dead_code)]

pub mod client;
pub mod hub;
pub mod nginx;
pub mod redis_server;
pub mod whatwg;

/// Whether the servers of these tests take `tower_sse::serve`'s HTTP/1 fast path: yes, as by
/// default, unless `HTTP1_FAST_PATH=0` (`.ci/run` runs the suites over real sockets both ways).
pub fn http1_fast_path() -> bool {
    std::env::var("HTTP1_FAST_PATH").map_or(true, |v| v.trim() != "0")
}
