//! A TCP proxy between the client and the real server that a test can cut
//! and restore: while cut, it refuses new connections (nothing listens on
//! its port) and has closed every open one, which is what a client sees
//! when the server goes down.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A cuttable TCP proxy on 127.0.0.1.
pub(crate) struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    cut: bool,
    listener: Option<JoinHandle<()>>,
    connections: Vec<JoinHandle<()>>,
}

impl Proxy {
    /// A proxy to the server at `upstream_url` (`http://host:port`).
    pub(crate) async fn start(upstream_url: &str) -> Self {
        let upstream = upstream_url
            .trim_start_matches("http://")
            .split(['/', '?'])
            .next()
            .and_then(|a| a.parse().ok())
            .expect("the test server URL is http://ip:port");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let proxy = Self {
            addr,
            upstream,
            state: Arc::default(),
        };
        proxy.serve(listener);
        proxy
    }

    /// The URL clients use to reach the server through the proxy.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops listening and closes every open connection.
    pub(crate) fn cut(&self) {
        let mut state = self.state.lock().expect("lock");
        state.cut = true;
        if let Some(listener) = state.listener.take() {
            listener.abort();
        }
        for connection in state.connections.drain(..) {
            connection.abort();
        }
    }

    /// Listens again on the same port.
    pub(crate) async fn restore(&self) {
        // The aborted listener task releases the socket when it is dropped,
        // which happens on the runtime shortly after the abort.
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        };
        self.serve(listener);
    }

    fn serve(&self, listener: TcpListener) {
        let state = self.state.clone();
        let upstream = self.upstream;
        let mut guard = self.state.lock().expect("lock");
        guard.cut = false;
        guard.listener = Some(tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                let connection = tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    // Forward small writes at once, as a direct connection would.
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
                let mut state = state.lock().expect("lock");
                if state.cut {
                    // Accepted just as the proxy was cut.
                    connection.abort();
                    return;
                }
                state.connections.retain(|c| !c.is_finished());
                state.connections.push(connection);
            }
        }));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}
