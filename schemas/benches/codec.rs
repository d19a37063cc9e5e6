//! Codec and routing benchmarks: `cargo bench -p signpost-schemas`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use signpost_schemas::route::PrefixTable;
use signpost_schemas::*;
use std::hint::black_box;

const FIND: &[u8] = include_bytes!("../samples/valid/lost/find-service-e164.xml");
const RESPONSE: &[u8] = include_bytes!("../samples/valid/lost/find-service-response.xml");

fn three_mappings() -> Response {
    let Ok(Response::Found(mut r)) = Response::decode(RESPONSE, &Limits::MESSAGE) else { panic!("sample") };
    let third = r.mappings[0].clone();
    r.mappings.push(third);
    for m in &mut r.mappings {
        if let Some(s) = &mut m.signature {
            s.value = vec![0x30; 71]; // a DER ECDSA P-256 signature is 70-72 bytes
        }
    }
    Response::Found(r)
}

fn codec(c: &mut Criterion) {
    csi::warm_up();
    c.bench_function("decode findService", |b| b.iter(|| Request::decode(black_box(FIND), &Limits::MESSAGE)));
    let resp = three_mappings();
    let mut buf = String::with_capacity(4096);
    c.bench_function("encode findServiceResponse (3 signed mappings)", |b| {
        b.iter(|| {
            resp.encode_into(&mut buf);
            black_box(buf.len())
        })
    });
    let enc = resp.encode();
    c.bench_function("decode findServiceResponse (3 signed mappings)", |b| {
        b.iter(|| Response::decode(black_box(enc.as_bytes()), &Limits::MESSAGE))
    });
    c.bench_function("csi from_wire tel", |b| b.iter(|| Csi::from_wire(black_box("tel:+4915112345678"))));
    c.bench_function("csi from_wire mailto", |b| b.iter(|| Csi::from_wire(black_box("mailto:alice@example.com"))));
    c.bench_function("csi parse human +49 151 1234-5678", |b| b.iter(|| Csi::parse(black_box("+49 151 1234-5678"), None)));
    let de: Region = "DE".parse().unwrap();
    c.bench_function("csi parse national 0151 12345678 (DE)", |b| {
        b.iter(|| Csi::parse(black_box("0151 12345678"), Some(de)))
    });
}

fn routing(c: &mut Criterion) {
    // 10,000 prefixes: 250 country-code-like prefixes and 9,750 blocks.
    let mut t = PrefixTable::new();
    let mut n = 0u64;
    for cc in 1..=250u64 {
        t.insert(E164Prefix::parse(&format!("+{}", 100 + cc)).unwrap(), n);
        n += 1;
    }
    let mut x = 0x1234_5678u64;
    while t.len() < 10_000 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let p = format!("+{}{:04}", 101 + (x >> 33) % 250, (x >> 13) % 10_000);
        t.insert(E164Prefix::parse(&p).unwrap(), n);
        n += 1;
    }
    let numbers: Vec<String> = (0..1024u64)
        .map(|i| format!("{}{:04}{:05}", 101 + (i * 7919) % 250, (i * 104_729) % 10_000, i))
        .collect();
    let mut i = 0usize;
    c.bench_function("longest-prefix lookup (10,000 prefixes)", |b| {
        b.iter_batched(
            || {
                i = (i + 1) % numbers.len();
                &numbers[i]
            },
            |d| t.longest_match(black_box(d)).map(|(_, v)| *v),
            BatchSize::SmallInput,
        )
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2))
        .sample_size(50);
    targets = codec, routing
}
criterion_main!(benches);
