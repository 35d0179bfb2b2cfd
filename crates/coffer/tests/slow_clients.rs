//! Slow and idle clients against both listeners: 2,000 sockets that send half a request and wait,
//! or trickle a byte at a time, from one address range, while a normal client's SMTP delivery and
//! HTTP search still go through; the trickling ones are closed at their deadline.

mod common;

use std::time::Duration;

use common::{Coffer, Server, journal_archive, python};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SEND: &str = r#"
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), local_hostname="exchange.test", timeout=15)
s.ehlo("exchange.test")
s.mail("MicrosoftExchange@contoso.com")
s.rcpt(sys.argv[2])
code, reply = s.data(b"From: alice@contoso.com\r\nSubject: through the crowd\r\n\r\nstill served\r\n")
print(code, reply.decode())
s.quit()
"#;

/// Room for the sockets this test holds (both ends live in this machine's limits).
fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum.map(|m| m.min(65_536)).or(Some(65_536));
    let _ = setrlimit(Resource::Nofile, limit);
}

/// A connection to `target` from `source` (an address of 127.0.0.0/8: another "host").
async fn connect_from(source: [u8; 4], target: std::net::SocketAddr) -> Option<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().ok()?;
    socket.bind((std::net::Ipv4Addr::from(source), 0).into()).ok()?;
    tokio::time::timeout(Duration::from_secs(10), socket.connect(target)).await.ok()?.ok()
}

#[test]
fn two_thousand_idle_and_trickling_sockets_do_not_keep_a_normal_client_out() {
    raise_open_file_limit();
    let c = Coffer::new();
    let (journal, _) = journal_archive(&c);
    let key = c.user_with_key("admin", "administrator", &[]);
    let server = Server::start(
        &c,
        &[
            ("COFFER_SMTP__TLS", "off"),
            ("COFFER_SMTP__COMMAND_TIMEOUT_SECS", "4"),
            ("COFFER_HTTP__HEADER_TIMEOUT_SECS", "4"),
        ],
    );
    let (smtp, http) = (server.smtp, server.http);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let attackers: Vec<tokio::net::TcpStream> = runtime.block_on(async {
        let mut opened = Vec::new();
        for i in 0..2000u32 {
            let (target, range) = if i % 2 == 0 { (smtp, 1) } else { (http, 2) };
            let host = 1 + ((i / 2) % 250) as u8;
            if let Some(mut s) = connect_from([127, 0, range, host], target).await {
                // Half a request, then silence (or a trickle, below).
                let half: &[u8] = if target == smtp { b"EHLO slow" } else { b"GET /search HTTP/1.1\r\nHost: x\r\n" };
                let _ = s.write_all(half).await;
                opened.push(s);
            }
        }
        opened
    });
    assert!(attackers.len() >= 1900, "{} attacking sockets connected", attackers.len());
    // Half of them trickle a byte a second, as long as the server lets them.
    let trickling: Vec<_> = attackers
        .into_iter()
        .enumerate()
        .map(|(i, mut s)| {
            runtime.spawn(async move {
                let started = std::time::Instant::now();
                let mut buf = [0u8; 512];
                loop {
                    if i % 4 < 2 && s.write_all(b"x").await.is_err() {
                        return started.elapsed();
                    }
                    match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
                        _ if started.elapsed() > Duration::from_secs(60) => return started.elapsed(),
                        _ => {}
                    }
                }
            })
        })
        .collect();

    // A normal client from another address is served meanwhile.
    let answer = python(SEND, &[&smtp.port().to_string(), &journal]);
    assert!(answer.starts_with("250"), "{answer}");
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(15)).build();
    let search = agent
        .get(&format!("http://{http}/api/v1/search?q=subject:crowd"))
        .set("Authorization", &format!("Bearer {key}"))
        .call()
        .expect("an HTTP search through the crowd");
    assert_eq!(search.status(), 200);

    // Every slow socket is closed by the server: over a cap at once, the others at their deadline.
    let lifetimes: Vec<Duration> = runtime.block_on(async {
        let mut out = Vec::new();
        for t in trickling {
            out.push(t.await.unwrap());
        }
        out
    });
    let longest = lifetimes.iter().max().unwrap();
    assert!(*longest < Duration::from_secs(60), "a slow client kept its socket for {longest:?}");
    // The listener's figures are written at the latest when it stops.
    let mut server = server;
    server.stop();
    let refused = common::listener_figure(&c, "smtp", "reject:per-range-limit")
        + common::listener_figure(&c, "smtp", "reject:per-ip-limit");
    assert!(refused >= 800, "the SMTP caps per address and range turned the crowd away ({refused})");
}
