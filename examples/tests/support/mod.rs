//! Starts a reference server binary on a free port and talks HTTP to it.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tenancy_core::credential::{JwtClaims, encode_hs256};
use tenancy_core::secret::Secret;

/// The JWT secret every test server runs with.
pub const SECRET: &str = "e2e-secret-0123456789abcdef0123456789";
/// The issuer of its tokens.
pub const ISSUER: &str = "tenancy-dev";

/// The binaries under test: the same suite runs against each.
pub fn binaries() -> Vec<(&'static str, &'static str)> {
    vec![
        ("axum", env!("CARGO_BIN_EXE_tenancy-server")),
        ("actix", env!("CARGO_BIN_EXE_tenancy-server-actix")),
    ]
}

/// A running server process.
pub struct Server {
    pub name: &'static str,
    child: Child,
    pub base: String,
    output: Arc<Mutex<String>>,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// An answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Value,
    pub raw: String,
}

impl Answer {
    /// The problem code, for refusals.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }
}

fn collect(
    stream: impl Read + Send + 'static,
    into: Arc<Mutex<String>>,
    found: Option<std::sync::mpsc::Sender<String>>,
) {
    std::thread::spawn(move || {
        let reader = BufReader::new(stream);
        for line in reader.lines().map_while(Result::ok) {
            {
                let mut out = into.lock().unwrap();
                out.push_str(&line);
                out.push('\n');
            }
            // Announce the address only once the line is in the output.
            if let Some(tx) = &found
                && let Some(addr) = line
                    .split("listening on ")
                    .nth(1)
                    .and_then(|url| url.split("://").nth(1))
            {
                let _ = tx.send(addr.trim().to_owned());
            }
        }
    });
}

impl Server {
    /// Starts `bin` with the test secret and `env`.
    pub fn start(name: &'static str, bin: &str, env: &[(&str, &str)]) -> Server {
        Self::start_with(name, bin, env, true)
    }

    /// Starts `bin`; `with_secret` sets the test JWT secret.
    pub fn start_with(
        name: &'static str,
        bin: &str,
        env: &[(&str, &str)],
        with_secret: bool,
    ) -> Server {
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TENANCY_BIND", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if with_secret {
            cmd.env("TENANCY_JWT_SECRET", SECRET);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("server starts");
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        collect(child.stdout.take().unwrap(), output.clone(), Some(tx));
        collect(child.stderr.take().unwrap(), output.clone(), None);
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{name} did not start: {}", output.lock().unwrap()));
        let client = Client::builder(TokioExecutor::new()).build_http();
        Server {
            name,
            child,
            base: format!("http://{addr}"),
            output,
            client,
        }
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Sends a request.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Answer {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default().to_owned())))
            .unwrap();
        let res = self
            .client
            .request(req)
            .await
            .unwrap_or_else(|e| panic!("{}: {method} {path}: {e}", self.name));
        let (parts, body) = res.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let raw = String::from_utf8_lossy(&bytes).into_owned();
        Answer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            raw,
        }
    }

    /// `GET` with a bearer token.
    pub async fn get(&self, path: &str, token: &str) -> Answer {
        let auth = format!("Bearer {token}");
        self.call("GET", path, &[("authorization", &auth)], None)
            .await
    }

    /// Sends the request again until `done` holds for its answer (at most
    /// 10 s): audit and usage reads show what the buffers have written,
    /// which is within a second or two of the request.
    pub async fn call_until(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        done: impl Fn(&Answer) -> bool,
    ) -> Answer {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let answer = self.call("GET", path, headers, None).await;
            if done(&answer) || Instant::now() > deadline {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `GET` with a bearer token until `done` holds (see
    /// [`call_until`](Self::call_until)).
    pub async fn get_until(
        &self,
        path: &str,
        token: &str,
        done: impl Fn(&Answer) -> bool,
    ) -> Answer {
        let auth = format!("Bearer {token}");
        self.call_until(path, &[("authorization", &auth)], done)
            .await
    }

    /// `POST` a JSON body with a bearer token.
    pub async fn post(&self, path: &str, token: &str, body: &str) -> Answer {
        let auth = format!("Bearer {token}");
        self.call("POST", path, &[("authorization", &auth)], Some(body))
            .await
    }

    /// Sends SIGTERM and waits for the process to exit; returns its code.
    pub fn terminate(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the output threads drain.
                std::thread::sleep(Duration::from_millis(100));
                return status.code();
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                panic!("{} did not stop on SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A token of the test secret for `role` of `tenant`, subject `sub`.
pub fn token(tenant: &str, role: &str, sub: &str) -> String {
    let claims = JwtClaims::new(ISSUER, sub, role, Duration::from_secs(3600)).with_tenant(tenant);
    encode_hs256(&Secret::new(SECRET), &claims).unwrap()
}

/// The platform super_admin token.
pub fn root() -> String {
    token("platform", "super_admin", "root@platform")
}

/// Creates tenant `id` on `plan` as the platform super_admin.
pub async fn create_tenant(server: &Server, id: &str, plan: &str) {
    let body = format!(
        r#"{{"tenant_id":"{id}","name":"{id} Inc","plan":"{plan}","contact_email":"ops@{id}.test"}}"#
    );
    let answer = server.post("/api/v1/tenants", &root(), &body).await;
    assert_eq!(
        answer.status, 201,
        "{}: create {id}: {}",
        server.name, answer.raw
    );
}

/// Issues a key of `scope` for `tenant` as its admin; returns (secret, key id).
pub async fn issue_key(
    server: &Server,
    tenant: &str,
    scope: &str,
    extra: &str,
) -> (String, String) {
    let admin = token(tenant, "admin", &format!("admin@{tenant}"));
    let answer = server
        .post(
            "/api/v1/apikeys",
            &admin,
            &format!(r#"{{"name":"k-{scope}","scope":"{scope}"{extra}}}"#),
        )
        .await;
    assert_eq!(
        answer.status, 201,
        "{}: issue key: {}",
        server.name, answer.raw
    );
    (
        answer.body["api_key"].as_str().unwrap().to_owned(),
        answer.body["key_id"].as_str().unwrap().to_owned(),
    )
}

/// Sends audited writes (`POST /api/v1/runbooks/…/trigger`, each with its
/// own `x-request-id`) from 8 tasks until the server stops answering; returns
/// the task handles and the ids of the requests answered 2xx.
pub fn start_write_load(
    addr: std::net::SocketAddr,
    bearer: String,
) -> (Vec<tokio::task::JoinHandle<()>>, Arc<Mutex<Vec<String>>>) {
    let ok_ids: Arc<Mutex<Vec<String>>> = Arc::default();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (client, bearer, ok_ids) = (client.clone(), bearer.clone(), ok_ids.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let id = format!("w{worker}-r{i}");
                let req =
                    http::Request::post(format!("http://{addr}/api/v1/runbooks/rb-{i}/trigger"))
                        .header("authorization", &bearer)
                        .header("x-request-id", &id)
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                match client.request(req).await {
                    Ok(res) if res.status().is_success() => ok_ids.lock().unwrap().push(id),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }));
    }
    (tasks, ok_ids)
}

/// Sends SIGTERM to this test process (whose server has a handler for it).
pub fn sigterm_self() {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(std::process::id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// Asserts every id in `answered` has a `runbook.trigger` audit event of
/// tenant `acme`, and that nothing was dropped.
pub async fn assert_every_answer_audited(tenancy: &tenancy_core::Tenancy, answered: &[String]) {
    use tenancy_core::audit::AuditFilter;
    assert!(
        answered.len() > 50,
        "the load ran ({} answers)",
        answered.len()
    );
    let events = tenancy
        .audit_query()
        .unwrap()
        .query(
            &tenancy_core::tenant::TenantId::new("acme").unwrap(),
            &AuditFilter::default()
                .action("runbook.trigger")
                .limit(10_000),
        )
        .await
        .unwrap();
    let audited: std::collections::HashSet<String> =
        events.into_iter().filter_map(|e| e.request_id).collect();
    let missing: Vec<&String> = answered
        .iter()
        .filter(|id| !audited.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} 2xx requests lost their audit event: {:?}",
        missing.len(),
        answered.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(tenancy.audit_dropped(), 0);
}

/// A prepared reference app with tenant `acme` (enterprise plan).
pub async fn prepared_app() -> tenancy_examples::startup::Prepared {
    let vars = vec![("TENANCY_JWT_SECRET".to_owned(), SECRET.to_owned())];
    let prepared = tenancy_examples::startup::prepare(vars).await.unwrap();
    prepared
        .app
        .tenancy()
        .admin()
        .create_tenant(tenancy_core::tenant::TenantRecord::new(
            tenancy_core::tenant::TenantId::new("acme").unwrap(),
            "Acme",
            "enterprise",
        ))
        .await
        .unwrap();
    prepared
}

/// A configuration file (in a fresh temporary folder named after `name`)
/// that trusts the CA of `ca_pem` for key fetches (`auth.ca_file`): for an
/// identity provider behind a private CA.
pub fn config_trusting(name: &str, ca_pem: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "{name}-{}-{}",
        std::process::id(),
        tenancy_core::credential::new_key_id().unwrap()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let config = dir.join("tenancy.toml");
    std::fs::write(
        &config,
        format!("[auth]\nca_file = {:?}\n", ca_file.to_str().unwrap()),
    )
    .unwrap();
    config
}
