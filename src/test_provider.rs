//! A stand-in LLM provider for the tests (built only with the `testing` feature): HTTPS on
//! loopback with a throwaway CA (made with `openssl` at start) whose certificate names one
//! host name, recording every request it receives (method, path, headers, body, the SNI name)
//! and answering by path:
//!
//! - `/v1/stream`: `200`, `text/event-stream`, chunked: two events at once, the third only
//!   after [`TestProvider::release`] (so a test can see chunks arrive before the end);
//! - `/v1/echo`: `200`, `application/json`, the request body back, with `x-request-id` and
//!   a `set-cookie` (which must not pass back);
//! - `/v1/slow`: the response head only after 3 s;
//! - `/v1/big`: `200`, 2 MiB in 64 KiB chunks;
//! - `/v1/redirect`: `302` to the metadata address;
//! - anything else: `404`.
//!
//! Plain threads and blocking rustls: nothing here shares the code under test.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// One request as the provider received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// Lowercase names, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The TLS server name the client sent.
    pub sni: Option<String>,
}

impl Seen {
    /// The first value of `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    seen: Mutex<Vec<Seen>>,
    released: Mutex<bool>,
    gate: Condvar,
}

/// The provider; it stops serving when dropped (its listener thread ends with the process).
pub struct TestProvider {
    /// Its loopback port.
    pub port: u16,
    /// The CA that signed its certificate (PEM), for the client's trust store.
    pub ca_file: PathBuf,
    /// The host name its certificate names.
    pub host: String,
    state: Arc<State>,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for TestProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestProvider")
            .field("port", &self.port)
            .field("host", &self.host)
            .finish()
    }
}

impl TestProvider {
    /// Starts a provider whose certificate names `host`.
    pub fn start(host: &str) -> TestProvider {
        let dir = tempfile::tempdir().unwrap();
        certificates(dir.path(), host);
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(dir.path().join("leaf.pem"))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_file(dir.path().join("leaf.key")).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        let s = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (config, state) = (config.clone(), s.clone());
                std::thread::spawn(move || serve(conn, config, &state));
            }
        });
        TestProvider {
            port,
            ca_file: dir.path().join("ca.pem"),
            host: host.to_owned(),
            state,
            _dir: dir,
        }
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Lets `/v1/stream` send its last event.
    pub fn release(&self) {
        *self.state.released.lock().unwrap() = true;
        self.state.gate.notify_all();
    }
}

fn serve(conn: TcpStream, config: Arc<rustls::ServerConfig>, state: &State) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(server) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(server, conn);
    let mut reader = BufReader::new(&mut tls);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            return;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    drop(reader);
    let sni = tls.conn.server_name().map(str::to_owned);
    state.seen.lock().unwrap().push(Seen {
        method,
        path: path.clone(),
        headers,
        body: body.clone(),
        sni,
    });
    let _ = answer(&mut tls, &path, &body, state);
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

fn answer(out: &mut impl Write, path: &str, body: &[u8], state: &State) -> std::io::Result<()> {
    let chunked = |out: &mut dyn Write, data: &[u8]| -> std::io::Result<()> {
        write!(out, "{:x}\r\n", data.len())?;
        out.write_all(data)?;
        out.write_all(b"\r\n")?;
        out.flush()
    };
    let head = |out: &mut dyn Write, status: &str, extra: &str| -> std::io::Result<()> {
        write!(out, "HTTP/1.1 {status}\r\nconnection: close\r\n{extra}\r\n")?;
        out.flush()
    };
    match path.split('?').next().unwrap_or_default() {
        "/v1/stream" => {
            head(
                out,
                "200 OK",
                "content-type: text/event-stream\r\ntransfer-encoding: chunked\r\n",
            )?;
            chunked(out, b"data: one\n\n")?;
            std::thread::sleep(Duration::from_millis(50));
            chunked(out, b"data: two\n\n")?;
            let released = state.released.lock().unwrap();
            let _ = state
                .gate
                .wait_timeout_while(released, Duration::from_secs(10), |r| !*r)
                .unwrap();
            chunked(out, b"data: done\n\n")?;
            chunked(out, b"")
        }
        "/v1/echo" => {
            head(
                out,
                "200 OK",
                &format!(
                    "content-type: application/json\r\nx-request-id: req-1\r\nset-cookie: session=provider\r\ncontent-length: {}\r\n",
                    body.len()
                ),
            )?;
            out.write_all(body)?;
            out.flush()
        }
        "/v1/slow" => {
            std::thread::sleep(Duration::from_secs(3));
            head(out, "200 OK", "content-length: 2\r\n")?;
            out.write_all(b"ok")?;
            out.flush()
        }
        "/v1/big" => {
            head(
                out,
                "200 OK",
                "content-type: application/octet-stream\r\ntransfer-encoding: chunked\r\n",
            )?;
            let block = vec![b'x'; 64 * 1024];
            for _ in 0..32 {
                chunked(out, &block)?;
            }
            chunked(out, b"")
        }
        "/v1/redirect" => head(
            out,
            "302 Found",
            "location: https://169.254.169.254/latest/meta-data/?token=abc\r\ncontent-length: 0\r\n",
        ),
        _ => head(out, "404 Not Found", "content-length: 0\r\n"),
    }
}

/// A throwaway CA and a certificate for `host` signed by it (`ca.pem`, `leaf.pem`,
/// `leaf.key`), with openssl.
fn certificates(dir: &Path, host: &str) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=provider-test-ca",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("leaf.ext"),
        format!("subjectAltName=DNS:{host}\nextendedKeyUsage=serverAuth\n"),
    )
    .unwrap();
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            &format!("/CN={host}"),
        ],
    ]
    .concat());
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ]);
}
