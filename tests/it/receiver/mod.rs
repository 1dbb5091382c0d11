//! A scriptable webhook receiver on 127.0.0.1: a minimal HTTP/1.1 server (one request per
//! connection) that records every request and answers from a queue of planned replies.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// How to answer one request.
#[derive(Debug, Clone)]
pub enum Reply {
    Status {
        code: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Read the request, then never answer (until the receiver stops).
    Hang,
}

impl Reply {
    pub fn status(code: u16) -> Self {
        Reply::Status {
            code,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    pub fn with_header(self, name: &str, value: &str) -> Self {
        match self {
            Reply::Status {
                code,
                mut headers,
                body,
            } => {
                headers.push((name.into(), value.into()));
                Reply::Status {
                    code,
                    headers,
                    body,
                }
            }
            hang => hang,
        }
    }

    pub fn with_body(self, text: &str) -> Self {
        match self {
            Reply::Status { code, headers, .. } => Reply::Status {
                code,
                headers,
                body: text.into(),
            },
            hang => hang,
        }
    }
}

/// One received request.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Lower-case names.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub fn event_id(&self) -> String {
        self.json()["eventId"].as_str().unwrap().to_string()
    }
}

struct State {
    plan: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    received: Mutex<Vec<Received>>,
    arrived: Notify,
    tasks: Mutex<Vec<AbortHandle>>,
    connections: AtomicUsize,
    /// How long each answer waits after the request was read.
    delay: Mutex<Duration>,
}

pub struct Receiver {
    pub port: u16,
    state: Arc<State>,
}

impl Receiver {
    /// On a free port.
    pub async fn start() -> Self {
        Self::serve(TcpListener::bind("127.0.0.1:0").await.unwrap())
    }

    /// On a given port (e.g. to come back where a stopped receiver was).
    pub async fn start_on(port: u16) -> Self {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match TcpListener::bind(("127.0.0.1", port)).await {
                Ok(l) => return Self::serve(l),
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot bind 127.0.0.1:{port}: {e}"),
            }
        }
    }

    fn serve(listener: TcpListener) -> Self {
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            plan: Mutex::new(VecDeque::new()),
            default: Mutex::new(Reply::status(200).with_body("ok")),
            received: Mutex::new(Vec::new()),
            arrived: Notify::new(),
            tasks: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
            delay: Mutex::new(Duration::ZERO),
        });
        let st = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                st.connections.fetch_add(1, Ordering::SeqCst);
                let st2 = Arc::clone(&st);
                let conn = tokio::spawn(handle(sock, st2));
                st.tasks.lock().unwrap().push(conn.abort_handle());
            }
        });
        state.tasks.lock().unwrap().push(accept.abort_handle());
        Self { port, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Answers the next requests with these replies, in order (then the default).
    pub fn plan(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.plan.lock().unwrap().extend(replies);
    }

    /// The answer once the plan is used up (initially 200 "ok").
    pub fn set_default(&self, reply: Reply) {
        *self.state.default.lock().unwrap() = reply;
    }

    /// Every answer from now on waits `delay` after its request arrived (a slow receiver).
    pub fn set_delay(&self, delay: Duration) {
        *self.state.delay.lock().unwrap() = delay;
    }

    /// TCP connections accepted so far (whether or not a request followed).
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    pub fn received_at(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Waits until `n` requests (at `path`, or anywhere when `None`) have arrived.
    pub async fn wait_for(&self, path: Option<&str>, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let arrived = self.state.arrived.notified();
            let got: Vec<Received> = self
                .received()
                .into_iter()
                .filter(|r| path.is_none_or(|p| r.path == p))
                .collect();
            if got.len() >= n {
                return got;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "waited {timeout:?} for {n} requests at {path:?}; got {}: {:?}",
                    got.len(),
                    got.iter()
                        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
                        .collect::<Vec<_>>()
                );
            }
            let _ = tokio::time::timeout(left, arrived).await;
        }
    }

    /// Asserts that nothing (more) arrives at `path` during `window` beyond `expected`.
    pub async fn assert_quiet(&self, path: &str, expected: usize, window: Duration) {
        tokio::time::sleep(window).await;
        let got = self.received_at(path);
        assert_eq!(
            got.len(),
            expected,
            "unexpected requests at {path}: {:?}",
            got.iter()
                .map(|r| String::from_utf8_lossy(&r.body).into_owned())
                .collect::<Vec<_>>()
        );
    }

    /// Stops listening and drops every open connection.
    pub fn stop(&self) {
        for t in self.state.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn handle(mut sock: TcpStream, st: Arc<State>) {
    let Some(req) = read_request(&mut sock).await else {
        return;
    };
    st.received.lock().unwrap().push(req);
    st.arrived.notify_waiters();
    let reply = st
        .plan
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| st.default.lock().unwrap().clone());
    let delay = *st.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match reply {
        Reply::Hang => {
            // Hold the connection until the receiver stops (the task is aborted then).
            std::future::pending::<()>().await;
        }
        Reply::Status {
            code,
            headers,
            body,
        } => {
            let mut out = format!(
                "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (n, v) in headers {
                out.push_str(&format!("{n}: {v}\r\n"));
            }
            out.push_str("\r\n");
            out.push_str(&body);
            let _ = sock.write_all(out.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
    }
}

async fn read_request(sock: &mut TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_string();
    let path = request_line.next()?.to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Received {
        method,
        path,
        headers,
        body,
        at: Instant::now(),
    })
}
