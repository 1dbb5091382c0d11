//! The baselines' servers, all inside this harness: a bare actix-web server returning
//! pre-serialized bytes, a webhook sink, and a bare process for the footprint comparison.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::dev::ServerHandle;
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};

pub fn unix_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as i64
}

/// The bytes the real service answered, served again by a bare handler.
#[derive(Clone)]
pub struct FixedBodies {
    pub page: Bytes,
    pub filtered: Bytes,
    pub item: Bytes,
}

/// Starts the bare GetItems/GetItem baseline on `port` with the same number of workers as
/// the service (actix's default: one per core). Same routes, no auth, no database.
pub fn start_fixed(bodies: FixedBodies, port: u16) -> ServerHandle {
    let server = HttpServer::new(move || {
        let bodies = bodies.clone();
        App::new()
            .app_data(web::Data::new(bodies))
            .route(
                "/instances/{instanceId}/entities/{entityName}/items",
                web::get().to(|req: HttpRequest, b: web::Data<FixedBodies>| async move {
                    let body = if req.query_string().contains("filter") {
                        b.filtered.clone()
                    } else {
                        b.page.clone()
                    };
                    HttpResponse::Ok()
                        .content_type("application/json")
                        .body(body)
                }),
            )
            .route(
                "/instances/{instanceId}/entities/{entityName}/items/{itemId}",
                web::get().to(|b: web::Data<FixedBodies>| async move {
                    HttpResponse::Ok()
                        .content_type("application/json")
                        .body(b.item.clone())
                }),
            )
    })
    .bind(("127.0.0.1", port))
    .expect("baseline binds")
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    handle
}

/// One notification as the sink received it.
#[derive(Debug, Clone)]
pub struct Receipt {
    /// Unix microseconds when the handler ran.
    pub at_us: i64,
    /// The `{n}` of `/hook/{n}`.
    pub hook: u32,
    pub event_id: String,
    /// The payload's `occurredAt`, in unix microseconds.
    pub occurred_at_us: Option<i64>,
}

#[derive(Default)]
struct SinkState {
    receipts: Mutex<Vec<Receipt>>,
    count: AtomicU64,
    last_body: Mutex<Bytes>,
}

/// A minimal HTTP receiver for webhook notifications: `POST /hook/{n}` → 200.
#[derive(Clone)]
pub struct Sink {
    state: Arc<SinkState>,
    pub port: u16,
    handle: ServerHandle,
}

impl Sink {
    pub fn start(workers: usize) -> Sink {
        let state = Arc::new(SinkState::default());
        let shared = state.clone();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("sink binds");
        let port = listener.local_addr().expect("sink address").port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(shared.clone()))
                .app_data(web::PayloadConfig::new(1 << 20))
                .route(
                    "/hook/{n}",
                    web::post().to(
                        |path: web::Path<u32>, body: Bytes, s: web::Data<Arc<SinkState>>| async move {
                            let at_us = unix_micros();
                            let value: serde_json::Value =
                                serde_json::from_slice(&body).unwrap_or_default();
                            let occurred_at_us = value["occurredAt"]
                                .as_str()
                                .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok())
                                .map(|t| t.timestamp_micros());
                            let receipt = Receipt {
                                at_us,
                                hook: path.into_inner(),
                                event_id: value["eventId"].as_str().unwrap_or("").to_string(),
                                occurred_at_us,
                            };
                            s.receipts.lock().expect("sink lock").push(receipt);
                            *s.last_body.lock().expect("sink lock") = body;
                            s.count.fetch_add(1, Ordering::SeqCst);
                            HttpResponse::Ok().finish()
                        },
                    ),
                )
        })
        .workers(workers)
        .listen(listener)
        .expect("sink listens")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Sink {
            state,
            port,
            handle,
        }
    }

    pub fn url(&self, n: u32) -> String {
        format!("http://127.0.0.1:{}/hook/{n}", self.port)
    }

    pub fn count(&self) -> u64 {
        self.state.count.load(Ordering::SeqCst)
    }

    /// Forgets everything received so far.
    pub fn reset(&self) {
        self.state.receipts.lock().expect("sink lock").clear();
        self.state.count.store(0, Ordering::SeqCst);
    }

    pub fn receipts(&self) -> Vec<Receipt> {
        self.state.receipts.lock().expect("sink lock").clone()
    }

    pub fn last_body(&self) -> Bytes {
        self.state.last_body.lock().expect("sink lock").clone()
    }

    /// Waits until at least `n` notifications arrived; false on timeout.
    pub async fn wait_for(&self, n: u64, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.count() < n {
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        true
    }

    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }
}

/// `bare-server --port P`: the smallest actix-web service answering `/ready` (run as a child
/// process for the footprint baseline).
pub async fn run_bare_server(port: u16) -> std::io::Result<()> {
    HttpServer::new(|| {
        App::new().route(
            "/ready",
            web::get().to(|| async {
                HttpResponse::Ok()
                    .content_type("application/json")
                    .body(r#"{"status":"ready"}"#)
            }),
        )
    })
    .bind(("127.0.0.1", port))?
    .run()
    .await
}
