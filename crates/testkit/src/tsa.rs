//! A local time-stamping authority (RFC 3161 over HTTP): OpenSSL's own `openssl ts -reply`
//! behind a small HTTP handler, with a CA and a TSA certificate made by `openssl` at start.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;

pub struct LocalTsa {
    /// Where requests go (`http://127.0.0.1:PORT/`).
    pub url: String,
    /// The CA certificate (PEM) the TSA's certificate chains to: `timestamp.ca_file`.
    pub ca_file: PathBuf,
    /// Requests answered so far.
    pub answered: Arc<AtomicUsize>,
    dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out =
        Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs (Debian's openssl package)");
    assert!(out.status.success(), "openssl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

impl LocalTsa {
    pub fn start() -> LocalTsa {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("ext.cnf"),
            "[tsa]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,nonRepudiation\n\
             extendedKeyUsage=critical,timeStamping\nsubjectKeyIdentifier=hash\n",
        )
        .unwrap();
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "3650",
                "-subj",
                "/CN=Coffer Test Root CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "tsa.key",
                "-out",
                "tsa.csr",
                "-subj",
                "/CN=Coffer Test TSA",
            ],
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "tsa.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "tsa.crt",
                "-days",
                "3650",
                "-extfile",
                "ext.cnf",
                "-extensions",
                "tsa",
            ],
        );
        std::fs::write(d.join("tsaserial"), "01\n").unwrap();
        std::fs::write(
            d.join("tsa.cnf"),
            format!(
                "[tsa]\ndefault_tsa = tsa_config\n[tsa_config]\ndir = {}\nserial = $dir/tsaserial\ncrypto_device = builtin\n\
                 signer_cert = $dir/tsa.crt\ncerts = $dir/ca.crt\nsigner_key = $dir/tsa.key\nsigner_digest = sha256\n\
                 default_policy = 1.2.3.4.1\nother_policies = 1.2.3.4.5\ndigests = sha256, sha384, sha512\n\
                 accuracy = secs:1\nordering = no\ntsa_name = yes\ness_cert_id_chain = no\ness_cert_id_alg = sha256\n",
                d.display()
            ),
        )
        .unwrap();

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let answered = Arc::new(AtomicUsize::new(0));
        let app = Router::new().route("/", post(reply)).with_state((Arc::new(d.to_owned()), answered.clone()));
        // Its own thread and runtime, so that it serves sync and async tests alike and lives as
        // long as the test process.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap()
            })
        });
        LocalTsa { url, ca_file: d.join("ca.crt"), answered, dir }
    }

    /// The folder holding the TSA's files (`ca.crt`, `tsa.crt`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

async fn reply(State((dir, answered)): State<(Arc<PathBuf>, Arc<AtomicUsize>)>, body: Bytes) -> impl IntoResponse {
    let n = answered.fetch_add(1, Ordering::SeqCst);
    let result = tokio::task::spawn_blocking(move || {
        let query = dir.join(format!("q{n}.tsq"));
        let response = dir.join(format!("r{n}.tsr"));
        std::fs::write(&query, &body)?;
        let out = Command::new("openssl")
            .args(["ts", "-reply", "-config", "tsa.cnf", "-queryfile"])
            .arg(&query)
            .arg("-out")
            .arg(&response)
            .current_dir(&*dir)
            .output()?;
        if !out.status.success() {
            return Err(std::io::Error::other(String::from_utf8_lossy(&out.stderr).into_owned()));
        }
        std::fs::read(&response)
    })
    .await
    .unwrap();
    match result {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/timestamp-reply")], bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
