//! Search latency of an existing archive: `search_latency DATA_DIR [ROUNDS]`.
//! Runs a mix of 20 typical e-discovery queries (first page of 50, newest first, exact total) in
//! process, ROUNDS times each, and prints p50/p99 over all runs and per query.

use std::time::Instant;

use coffer_archive::{Actor, Archive, ArchiveConfig, Sort};

const QUERIES: &[&str] = &[
    "budget",
    "budget report",
    "\"quarterly numbers\"",
    "from:alice.martin@contoso.com",
    "from:contoso.com",
    "to:bob",
    "participant:tanaka@example.jp",
    "subject:invoice",
    "has:attachment",
    "size:>3K",
    "after:2024-01-01",
    "date:2023-06",
    "budget OR invoice",
    "contract -draft",
    "sett*",
    "from:contoso.com has:attachment after:2023-06-01",
    "会議",
    "Größe",
    "filename:invoice",
    "money",
];

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let data = args.get(1).expect("usage: search_latency DATA_DIR [ROUNDS]");
    let rounds: usize = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(20);
    let archive = Archive::open(ArchiveConfig::new(data.into()), false).await.expect("open the archive");
    let actor = Actor::operator(archive.tenant(None).await.unwrap());
    // One warm-up pass (page cache, lazy loads).
    for q in QUERIES {
        archive.search(&actor, q, 50, 0, Sort::Date, true).await.unwrap();
    }
    let mut all = Vec::new();
    println!("{:<52} {:>8} {:>9} {:>9}", "query", "hits", "p50 ms", "p99 ms");
    for q in QUERIES {
        let mut times = Vec::new();
        let mut total = 0;
        for _ in 0..rounds {
            let t = Instant::now();
            total = archive.search(&actor, q, 50, 0, Sort::Date, true).await.unwrap().total;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        all.extend(&times);
        println!("{:<52} {:>8} {:>9.2} {:>9.2}", q, total, pct(&mut times, 50.0), pct(&mut times, 99.0));
    }
    println!("ALL p50 {:.2} ms  p99 {:.2} ms over {} searches", pct(&mut all, 50.0), pct(&mut all, 99.0), all.len());
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p / 100.0).round() as usize]
}
