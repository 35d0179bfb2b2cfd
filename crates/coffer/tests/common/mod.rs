//! Runs the real `coffer` binary against a temporary data folder.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub struct Coffer {
    pub dir: tempfile::TempDir,
    pub database_url: Option<String>,
}

impl Coffer {
    pub fn new() -> Coffer {
        Coffer { dir: tempfile::tempdir().unwrap(), database_url: None }
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_coffer"));
        c.current_dir(self.dir.path())
            .env("COFFER_DATA", self.data())
            .env_remove("COFFER_DATABASE_URL")
            .env("RUST_LOG", "warn");
        if let Some(url) = &self.database_url {
            c.env("COFFER_DATABASE_URL", url);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).stdin(Stdio::null()).output().unwrap()
    }

    /// Runs and insists on success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "coffer {args:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Adds a console account the way an operator does (`coffer user add`, the password on stdin)
    /// and returns an API key for it.
    pub fn user_with_key(&self, login: &str, role: &str, addresses: &[&str]) -> String {
        let mut args = vec!["user", "add", login, "--role", role];
        for a in addresses {
            args.extend(["--address", a]);
        }
        let mut child = self.command().args(&args).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), format!("{PASSWORD}\n").as_bytes()).unwrap();
        assert!(child.wait().unwrap().success(), "coffer user add {login}");
        self.ok(&["user", "key", login, "--name", "tests"]).trim().to_owned()
    }

    pub fn count(&self, query: &str) -> usize {
        self.ok(&["search", "--count", query]).trim().parse().unwrap()
    }

    pub fn json(&self, query: &str, limit: usize) -> Vec<serde_json::Value> {
        self.ok(&["search", "--json", "--limit", &limit.to_string(), query])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// The password of the accounts tests make.
pub const PASSWORD: &str = "correct horse battery";

pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// `stored id=.. sha256=.. origin=..` lines of `import -v`.
pub fn receipts(stdout: &str) -> Vec<(String, i64, String, String)> {
    stdout
        .lines()
        .filter_map(|l| {
            let (what, rest) = l.split_once(' ')?;
            let id = rest.split("id=").nth(1)?.split(' ').next()?.parse().ok()?;
            let sha = rest.split("sha256=").nth(1)?.split(' ').next()?.to_owned();
            let origin = rest.split("origin=").nth(1)?.to_owned();
            Some((what.to_owned(), id, sha, origin))
        })
        .collect()
}

/// Writes messages as a Maildir++ tree: `folders[i]` is "" for the inbox or "Sub/Folder".
pub fn write_maildir(root: &Path, messages: &[(Vec<u8>, String)]) {
    for (i, (raw, folder)) in messages.iter().enumerate() {
        let dir =
            if folder.is_empty() { root.to_path_buf() } else { root.join(format!(".{}", folder.replace('/', "."))) };
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::write(dir.join("cur").join(format!("{i}.coffer-test:2,S")), raw).unwrap();
    }
}

/// Reads every entry of an export zip: name → bytes.
pub fn zip_entries(path: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    use std::io::Read;
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut out = std::collections::BTreeMap::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).unwrap();
        out.insert(f.name().to_owned(), bytes);
    }
    out
}

/// A running `coffer serve` on a free loopback port, killed when dropped.
pub struct Server {
    pub child: std::process::Child,
    pub smtp: std::net::SocketAddr,
    /// The console and API.
    pub http: std::net::SocketAddr,
    /// The one-time link to create the first administrator, printed while no account exists.
    pub setup_link: Option<String>,
}

impl Server {
    /// Starts `coffer serve` with extra environment (e.g. COFFER_SMTP__TLS=require) and waits until
    /// the SMTP listener is up.
    pub fn start(c: &Coffer, env: &[(&str, &str)]) -> Server {
        Server::start_on(c, free_port(), env)
    }

    /// Starts on a given port (a restart after a crash keeps the clients' address).
    pub fn start_on(c: &Coffer, port: u16, env: &[(&str, &str)]) -> Server {
        Server::start_at(c, port, "127.0.0.1:0", env)
    }

    /// Starts with the console on a given address (when a peer must know it beforehand).
    pub fn start_at(c: &Coffer, port: u16, http: &str, env: &[(&str, &str)]) -> Server {
        use std::io::BufRead;
        let mut cmd = c.command();
        cmd.args(["serve", "--smtp", &format!("127.0.0.1:{port}"), "--http", http])
            .env("COFFER_JOURNAL_DOMAIN", "archive.test")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(stdout).lines();
        // The SMTP listeners print their addresses first, the console last.
        let mut smtp = None;
        let mut setup_link = None;
        let http = loop {
            let line = lines.next().expect("coffer serve stopped before listening").unwrap();
            if let Some(a) = line.strip_prefix("smtp listening on ") {
                smtp.get_or_insert(a.parse().unwrap());
            } else if let Some(a) = line.strip_prefix("http listening on ") {
                break a.parse().unwrap();
            } else if let Some((_, link)) =
                line.split_once("console set-up link (creates the first administrator, once): ")
            {
                setup_link = Some(link.to_owned());
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Server { child, smtp: smtp.expect("no SMTP listener"), http, setup_link }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM: the graceful way.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Prepares an archive with tenant `contoso` and certificate `smtp` for `localhost`; returns the
/// tenant's journal address and the CA file (the self-signed certificate) clients verify against.
pub fn journal_archive(c: &Coffer) -> (String, PathBuf) {
    let out = c
        .command()
        .args(["tenant", "add", "contoso", "--domain", "contoso.com"])
        .env("COFFER_JOURNAL_DOMAIN", "archive.test")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let address = text.split("journal address: ").nth(1).expect("journal address").trim().to_owned();
    c.ok(&["cert", "generate", "--alias", "smtp", "--cn", "localhost"]);
    let ca = c.dir.path().join("ca.pem");
    std::fs::write(&ca, c.ok(&["cert", "export", "--alias", "smtp"])).unwrap();
    (address, ca)
}

/// The sum of a listener figure over the last 24 hours, as `coffer status --json` reports it.
pub fn listener_figure(c: &Coffer, listener: &str, figure: &str) -> i64 {
    let status: serde_json::Value = serde_json::from_str(&c.ok(&["status", "--json"])).unwrap();
    status["listener_figures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["listener"] == listener && f["figure"] == figure)
        .map(|f| f["value"].as_i64().unwrap())
        .sum()
}

/// Polls until `coffer search --count` gives `expected` (the index may lag the 250 by a moment).
pub fn wait_for_count(c: &Coffer, tenant: &str, query: &str, expected: usize) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let n: usize = c.ok(&["search", "--tenant", tenant, "--count", query]).trim().parse().unwrap();
        if n == expected || std::time::Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

/// Runs a Python 3 script with arguments; returns stdout, failing the test on a non-zero exit.
pub fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3").arg("-c").arg(script).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
