//! `hostile_memory`: how much a reference server grows under hostile
//! anonymous traffic.
//!
//! Starts each reference server binary (release build, in-memory stores) on
//! a free port and sends, over 16 keep-alive connections:
//!
//! 1. 100,000 anonymous `GET`s, each with a random `X-Tenant-ID` (half of
//!    them naming the real `platform` tenant) and a random 8 KB path;
//! 2. 20,000 `GET`s with random well-formed API keys (the checksum is
//!    public, so each one passes the format check).
//!
//! It reads the server's resident set size (`VmRSS` of `/proc/PID/status`)
//! after start-up and after each phase, and prints a markdown table with the
//! answers by status. Each binary runs twice: with the default
//! pre-authentication throttle, and with it off
//! (`TENANCY_AUTH_THROTTLE=off`), where every request reaches
//! authentication.
//!
//! ```sh
//! cargo build --release -p tenancy-examples
//! cargo run --release -p tenancy-benches --bin hostile_memory
//! ```
//!
//! Pass server binaries as arguments to measure others.
// Printing the report is the purpose of this binary.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tenancy_core::credential::{ApiKeySecret, new_key_id};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

type Failure = Box<dyn std::error::Error + Send + Sync>;

const ANONYMOUS: usize = 100_000;
const RANDOM_KEYS: usize = 20_000;
const CONNECTIONS: usize = 16;
const PATH_BYTES: usize = 8 * 1024;
const SECRET: &str = "hostile-memory-secret-0123456789abcdef";

/// A running server and its address.
struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(bin: &PathBuf, env: &[(&str, &str)]) -> Result<Server, Failure> {
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("TENANCY_BIND", "127.0.0.1:0")
        .env("TENANCY_JWT_SECRET", SECRET)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines.next().ok_or("the server exited before listening")??;
        if let Some(url) = line.split("listening on ").nth(1) {
            break url.trim().trim_start_matches("http://").to_owned();
        }
    };
    // Keep draining stdout so the server never blocks on it.
    std::thread::spawn(move || lines.for_each(drop));
    Ok(Server { child, addr })
}

fn rss_kib(pid: u32) -> Result<u64, Failure> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS line")?;
    Ok(line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?)
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    // Without OS randomness the paths repeat; the measurement still holds.
    let _ = getrandom::fill(&mut bytes);
    bytes
}

/// A path of `PATH_BYTES` random URL-safe characters.
fn random_path() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut path = String::from("/api/v1/");
    path.extend(
        random_bytes(PATH_BYTES)
            .iter()
            .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char),
    );
    path
}

fn random_tenant(i: usize) -> String {
    if i.is_multiple_of(2) {
        "platform".to_owned()
    } else {
        let bytes = random_bytes(8);
        format!(
            "t{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    }
}

/// Sends one request on `conn` and reads its answer; returns the status.
async fn exchange(conn: &mut TcpStream, request: &[u8], buf: &mut Vec<u8>) -> Result<u16, Failure> {
    conn.write_all(request).await?;
    buf.clear();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err("connection closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = std::str::from_utf8(&buf[..head_end])?;
    let status: u16 = head.get(9..12).ok_or("no status")?.parse()?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err("connection closed mid-body".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(status)
}

/// Sends `total` requests made by `make` over `CONNECTIONS` connections;
/// returns the answers by status.
async fn flood(
    addr: &str,
    total: usize,
    make: impl Fn(usize) -> Vec<u8> + Send + Sync + 'static,
) -> Result<BTreeMap<u16, usize>, Failure> {
    let next = Arc::new(AtomicUsize::new(0));
    let make = Arc::new(make);
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (addr, next, make) = (addr.to_owned(), next.clone(), make.clone());
        tasks.push(tokio::spawn(async move {
            let mut counts = BTreeMap::new();
            let mut conn = TcpStream::connect(&addr).await?;
            let mut buf = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, Failure>(counts);
                }
                let request = make(i);
                let status = match exchange(&mut conn, &request, &mut buf).await {
                    Ok(s) => s,
                    Err(_) => {
                        // The server may close a connection; open another.
                        conn = TcpStream::connect(&addr).await?;
                        exchange(&mut conn, &request, &mut buf).await?
                    }
                };
                *counts.entry(status).or_insert(0) += 1;
            }
        }));
    }
    let mut all = BTreeMap::new();
    for task in tasks {
        for (status, n) in task.await?? {
            *all.entry(status).or_insert(0) += n;
        }
    }
    Ok(all)
}

fn get(path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.into_bytes()
}

fn statuses(counts: &BTreeMap<u16, usize>) -> String {
    counts
        .iter()
        .map(|(s, n)| format!("{n}× {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn measure(bin: &PathBuf, label: &str, env: &[(&str, &str)]) -> Result<(), Failure> {
    let server = start(bin, env)?;
    let pid = server.child.id();
    // Warm up the connections and the runtime.
    flood(&server.addr, 200, |_| get("/healthz", &[])).await?;
    let start_kib = rss_kib(pid)?;
    let anonymous = flood(&server.addr, ANONYMOUS, |i| {
        let tenant = random_tenant(i);
        get(&random_path(), &[("X-Tenant-ID", &tenant)])
    })
    .await?;
    let after_anonymous = rss_kib(pid)?;
    let keys = flood(&server.addr, RANDOM_KEYS, |_| {
        let key = new_key_id()
            .and_then(|id| ApiKeySecret::generate("tnk", id))
            .map(|k| k.expose().to_owned())
            .unwrap_or_default();
        get("/api/v1/metrics/query", &[("X-API-Key", &key)])
    })
    .await?;
    let after_keys = rss_kib(pid)?;
    let growth_mib = after_keys.saturating_sub(start_kib) as f64 / 1024.0;
    println!(
        "| {} | {label} | {:.1} | {:.1} | {:.1} | **{growth_mib:.1}** | {} | {} |",
        bin.file_name().and_then(|n| n.to_str()).unwrap_or("server"),
        start_kib as f64 / 1024.0,
        after_anonymous as f64 / 1024.0,
        after_keys as f64 / 1024.0,
        statuses(&anonymous),
        statuses(&keys),
    );
    Ok(())
}

fn main() -> Result<(), Failure> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut bins: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    if bins.is_empty() {
        bins = ["tenancy-server", "tenancy-server-actix"]
            .iter()
            .map(|b| root.join("target/release").join(b))
            .collect();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!(
        "{ANONYMOUS} anonymous requests (random tenant ids, {PATH_BYTES}-byte paths), then {RANDOM_KEYS} random well-formed API keys; {CONNECTIONS} connections\n"
    );
    println!(
        "| server | throttle | RSS at start (MiB) | after anonymous | after keys | growth (MiB) | anonymous answers | key answers |"
    );
    println!("|---|---|---:|---:|---:|---:|---|---|");
    runtime.block_on(async {
        for bin in &bins {
            measure(bin, "on (default)", &[]).await?;
            measure(bin, "off", &[("TENANCY_AUTH_THROTTLE", "off")]).await?;
        }
        Ok(())
    })
}
