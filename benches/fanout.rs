//! Microbenchmark of in-process fan-out: `cargo bench --bench fanout`.
//!
//! One event published to a memory hub and received by every subscriber of the topic, without
//! HTTP: the hub's own cost per delivery (id assignment, history, the shared ring), which the
//! end-to-end benchmarks in `bench/` add sockets and HTTP to.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::StreamExt;
use tower_sse::{Event, Hub};

fn fanout(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("fanout");
    for subscribers in [1usize, 100, 1000] {
        let hub = Hub::memory();
        let mut subs = rt.block_on(async {
            let mut subs = Vec::with_capacity(subscribers);
            for _ in 0..subscribers {
                subs.push(hub.subscribe("bench", None).await.unwrap());
            }
            subs
        });
        let event = Event::data("x".repeat(64));
        group.throughput(Throughput::Elements(subscribers as u64));
        group.bench_function(format!("publish 64 B to {subscribers} subscribers"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    hub.publish("bench", event.clone()).await.unwrap();
                    for sub in &mut subs {
                        sub.next().await.unwrap();
                    }
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
