//! SMTP load client for the benchmarks: `smtp_load HOST:PORT JOURNAL_ADDRESS COUNT CONNECTIONS`.
//! Sends COUNT generated journal reports over CONNECTIONS connections (plain SMTP, pipelined
//! MAIL/RCPT/DATA) and prints messages/s and the time from the end of DATA to the 250 reply.

use std::time::Instant;

use coffer_testkit::corpus::Generator;
use coffer_testkit::journal::{Envelope, Style, report};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: smtp_load HOST:PORT JOURNAL_ADDRESS COUNT CONNECTIONS");
        std::process::exit(2);
    }
    let (addr, journal) = (args[1].clone(), args[2].clone());
    let count: usize = args[3].parse().unwrap();
    let connections: usize = args[4].parse().unwrap();
    let mut generator = Generator::new(77);
    let reports: Vec<Vec<u8>> = (0..count)
        .map(|i| {
            let g = generator.message(i);
            let env = Envelope::new(&g.truth.from, &g.truth.subject, &format!("<{}>", g.truth.message_id))
                .line("To", &g.truth.to[0])
                .line("Bcc", "audit@contoso.com");
            dot_stuff(&report(&g.raw, &env, Style::ExchangeOnline, &journal))
        })
        .collect();
    let bytes: usize = reports.iter().map(Vec::len).sum();
    let reports = std::sync::Arc::new(reports);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let (addr, journal, reports) = (addr.clone(), journal.clone(), reports.clone());
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(&addr).await.unwrap();
            // Without it, Nagle's algorithm and delayed ACKs add 40 ms to every reply.
            stream.set_nodelay(true).unwrap();
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            lines.next_line().await.unwrap();
            write.write_all(b"EHLO load.test\r\n").await.unwrap();
            while let Some(l) = lines.next_line().await.unwrap() {
                if l.starts_with("250 ") {
                    break;
                }
            }
            let mut latencies = Vec::new();
            for r in reports.iter().skip(c).step_by(connections) {
                write
                    .write_all(
                        format!("MAIL FROM:<exchange@contoso.com>\r\nRCPT TO:<{journal}>\r\nDATA\r\n").as_bytes(),
                    )
                    .await
                    .unwrap();
                for _ in 0..3 {
                    lines.next_line().await.unwrap();
                }
                let mut data = r.clone();
                data.extend_from_slice(b".\r\n");
                write.write_all(&data).await.unwrap();
                let sent = Instant::now();
                let reply = lines.next_line().await.unwrap().unwrap();
                assert!(reply.starts_with("250"), "{reply}");
                latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
            }
            write.write_all(b"QUIT\r\n").await.unwrap();
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| all[((all.len() - 1) as f64 * p) as usize];
    println!(
        "{count} journal reports over {connections} connections in {secs:.2} s: {:.0} msg/s, {:.1} MB/s; end of DATA to 250: p50 {:.2} ms, p99 {:.2} ms",
        count as f64 / secs,
        bytes as f64 / secs / 1e6,
        pct(0.5),
        pct(0.99)
    );
}

/// SMTP transparency: a line starting with "." gets another one.
fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 16);
    let mut at_line_start = true;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}
