//! Microbenchmarks of event encoding: `cargo bench --bench encode`.
//!
//! An event is validated and encoded once, when it is built; these measure that cost, and that
//! assigning an id at publish time re-encodes only the id line.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tower_sse::Event;

fn encode(c: &mut Criterion) {
    let short = "x".repeat(64);
    let long = "line of text\n".repeat(80); // ~1 KiB over 80 lines
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Bytes(short.len() as u64));
    group.bench_function("data 64 B", |b| b.iter(|| Event::data(black_box(&short))));
    group.throughput(Throughput::Bytes(long.len() as u64));
    group.bench_function("data 1 KiB, 80 lines", |b| {
        b.iter(|| Event::data(black_box(&long)))
    });
    group.bench_function("builder: id, event, retry, 1 KiB data", |b| {
        b.iter(|| {
            Event::builder()
                .id("1795239357247-0")
                .event("price")
                .retry(std::time::Duration::from_secs(3))
                .data(black_box(long.as_str()))
                .build()
                .unwrap()
        })
    });
    let event = Event::data(&long);
    group.bench_function("with_id on a 1 KiB event", |b| {
        b.iter(|| black_box(&event).with_id("6f1c2a9b03de-41").unwrap())
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("clone (a reference count)", |b| {
        b.iter(|| black_box(&event).clone())
    });
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
