//! No loss under crashes: 5,000 journal reports over 8 connections while the server is killed
//! with SIGKILL three times and restarted. Every message a client got 250 for is there afterwards,
//! none is stored twice, and `verify` is clean.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use coffer_testkit::corpus::Generator;
use coffer_testkit::journal::{Envelope, Style, report};
use common::{Coffer, Server, journal_archive};

const REPORTS: usize = 5_000;

/// Eight threads, each delivering its share; a refused or broken delivery is retried on a new
/// connection until it gets 250, as an MTA would. Every 250 is written down at once.
const CLIENT: &str = r#"
import smtplib, sys, os, threading, time
port, journal, folder, acked_path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
names = sorted(os.listdir(folder))
lock = threading.Lock()
acked = open(acked_path, "a")
def worker(t):
    conn = None
    for name in names[t::8]:
        data = open(os.path.join(folder, name), "rb").read()
        while True:
            try:
                if conn is None:
                    conn = smtplib.SMTP("127.0.0.1", port, timeout=30)
                    conn.ehlo("exchange.test")
                conn.mail("MicrosoftExchange@contoso.com")
                code, _ = conn.rcpt(journal)
                if code != 250:
                    raise smtplib.SMTPException("rcpt %d" % code)
                code, _ = conn.data(data)
                if code == 250:
                    with lock:
                        acked.write(name + "\n")
                        acked.flush()
                    break
                conn.rset()
            except Exception:
                try:
                    conn.close()
                except Exception:
                    pass
                conn = None
                time.sleep(0.2)
    if conn is not None:
        conn.quit()
threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
for t in threads: t.start()
for t in threads: t.join()
"#;

#[test]
fn sigkill_three_times_under_load_loses_no_acknowledged_report_and_stores_none_twice() {
    let c = Coffer::new();
    let (journal, _) = journal_archive(&c);
    let folder = c.dir.path().join("reports");
    std::fs::create_dir_all(&folder).unwrap();
    let mut generator = Generator::new(2024);
    let mut message_id_of = std::collections::HashMap::new();
    for i in 0..REPORTS {
        let g = generator.message(i);
        let env = Envelope::new(&g.truth.from, &g.truth.subject, &format!("<{}>", g.truth.message_id))
            .line("To", &g.truth.to[0]);
        let name = format!("{i:05}.eml");
        std::fs::write(folder.join(&name), report(&g.raw, &env, Style::ExchangeOnline, &journal)).unwrap();
        message_id_of.insert(name, g.truth.message_id.clone());
    }

    let port = common::free_port();
    let mut server = Server::start_on(&c, port, &[]);
    let acked_path = c.dir.path().join("acked.txt");
    let client_script = c.dir.path().join("client.py");
    std::fs::write(&client_script, CLIENT).unwrap();
    let mut client = std::process::Command::new("python3")
        .args([
            client_script.to_str().unwrap(),
            &port.to_string(),
            &journal,
            folder.to_str().unwrap(),
            acked_path.to_str().unwrap(),
        ])
        .spawn()
        .unwrap();
    let acked_count = || std::fs::read_to_string(&acked_path).map(|t| t.lines().count()).unwrap_or(0);

    for kill_at in [900, 2_300, 3_700] {
        let deadline = Instant::now() + Duration::from_secs(300);
        while acked_count() < kill_at && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        server.kill(); // SIGKILL in the middle of whatever it was doing
        std::thread::sleep(Duration::from_millis(300));
        server = Server::start_on(&c, port, &[]);
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = client.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the client did not finish");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.success());
    let acked: BTreeSet<String> = std::fs::read_to_string(&acked_path).unwrap().lines().map(str::to_owned).collect();
    assert_eq!(acked.len(), REPORTS, "every report was eventually acknowledged");
    server.stop();

    // Every acknowledged message is in the catalog and the store, and only once.
    c.ok(&["reindex"]);
    let zip = c.dir.path().join("all.zip");
    c.ok(&["export", "--tenant", "contoso", "--format", "eml-zip", "--out", zip.to_str().unwrap(), ""]);
    let manifest = String::from_utf8(common::zip_entries(&zip)["manifest.csv"].clone()).unwrap();
    let ids: Vec<String> = manifest.lines().skip(1).map(|l| l.split(',').nth(4).unwrap().to_owned()).collect();
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "a message was stored twice");
    for name in &acked {
        assert!(distinct.contains(&message_id_of[name]), "{name} got 250 but is missing");
    }
    assert_eq!(ids.len(), REPORTS);
    let verify = c.ok(&["verify"]);
    assert!(verify.contains("all intact"), "{verify}");
}
