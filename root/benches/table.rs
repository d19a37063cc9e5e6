//! Root lookup cost: a table with 250 country codes, 10,000 number blocks
//! and 100,000 email domains. `cargo bench -p signpost-root --bench table`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use signpost_schemas::lost::{AuthorityRef, Cover, Delegation, Endpoint};
use signpost_schemas::route::RoutingTable;
use signpost_schemas::{Csi, Domain, E164Prefix, Name};

fn delegation(cover: Cover, n: usize) -> Delegation {
    Delegation {
        cover,
        lifetime: 86_400,
        authorities: vec![AuthorityRef {
            id: Name::parse(&format!("dp{n}.example")).unwrap(),
            endpoints: vec![Endpoint::parse("https://127.0.0.1:7402/lost").unwrap()],
        }],
    }
}

fn table() -> (RoutingTable<usize>, Vec<Delegation>, Vec<Csi>) {
    let mut t = RoutingTable::new();
    let mut ds = Vec::new();
    let mut add = |t: &mut RoutingTable<usize>, c: Cover| {
        let n = ds.len();
        ds.push(delegation(c.clone(), n));
        t.insert(c, n);
    };
    // 250 country-code-like prefixes: +20..+269 style mix of 2 and 3 digits.
    let ccs: Vec<String> = (0..250).map(|i| if i < 80 { format!("{}", 20 + i) } else { format!("{}", 200 + i) }).collect();
    for cc in &ccs {
        add(&mut t, Cover::Prefix(E164Prefix::parse(&format!("+{cc}")).unwrap()));
    }
    let mut x = 7u64;
    let mut blocks = 0;
    while blocks < 10_000 {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let cc = &ccs[(x >> 33) as usize % ccs.len()];
        let p = E164Prefix::parse(&format!("+{cc}{:03}", (x >> 13) % 1000)).unwrap();
        if t.e164.get_exact(&p).is_none() {
            add(&mut t, Cover::Prefix(p));
            blocks += 1;
        }
    }
    for i in 0..100_000 {
        add(&mut t, Cover::Domain { domain: Domain::parse(&format!("mail{i}.example")).unwrap(), include_subdomains: i % 2 == 0 });
    }
    let queries = (0..1024u64)
        .map(|i| {
            if i % 2 == 0 {
                Csi::from_wire(&format!("tel:+49{:09}", 100_000_000 + i * 7919)).unwrap()
            } else {
                Csi::from_wire(&format!("mailto:user{i}@eu.mail{}.example", (i * 97) % 100_000)).unwrap()
            }
        })
        .collect();
    (t, ds, queries)
}

fn bench(c: &mut Criterion) {
    let (t, ds, q) = table();
    println!("table: {} prefixes, {} domains", t.e164.len(), t.email.len());
    let mut i = 0;
    c.bench_function("root lookup (250 cc + 10k blocks + 100k domains)", |b| {
        b.iter(|| {
            i = (i + 1) % q.len();
            black_box(t.lookup_value(black_box(&q[i])).copied())
        })
    });
    let mut out = String::with_capacity(2048);
    c.bench_function("root lookup + redirect encode", |b| {
        b.iter(|| {
            i = (i + 1) % q.len();
            if let Some(&n) = t.lookup_value(&q[i]) {
                let d = &ds[n];
                let r = signpost_schemas::Response::Redirect(signpost_schemas::Redirect {
                    target: d.authorities[0].id.clone(),
                    source: Name::parse("root.example").unwrap(),
                    message: None,
                    feed_position: None,
                    delegation: d.clone(),
                });
                r.encode_into(&mut out);
            }
            black_box(out.len())
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2)).sample_size(30);
    targets = bench
}
criterion_main!(benches);
