//! A minimal receiver for insights-connector's trigger notifications, for local development.
//!
//! ```sh
//! cargo run --example webhook_receiver -- --port 9090 [--secret whsec_…]
//! ```
//!
//! Every `POST` (any path) is printed as pretty JSON under a header line with its `eventType`.
//! With `--secret` (or `WEBHOOK_SECRET`) each notification must carry a valid Standard Webhooks
//! signature (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of
//! "id.timestamp.body">`) with a timestamp within 5 minutes of now: a bad or missing signature is
//! answered 401, everything else 202. `GET /` answers 200 (a readiness probe).
//!
//! The service only calls loopback addresses such as this receiver when it runs with
//! `--allow-private-callbacks` (development only).

use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::http::Method;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use clap::Parser;
use insights_connector::webhooks::signing::{
    self, SigningSecret, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP,
};
use subtle::ConstantTimeEq;

/// Largest accepted difference between `webhook-timestamp` and the local clock.
const TOLERANCE_SECS: i64 = 5 * 60;

/// Prints insights-connector notifications and verifies their signatures.
#[derive(Parser)]
#[command(about)]
struct Args {
    /// Port to listen on.
    #[arg(long, default_value_t = 9090)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Standard Webhooks secret (`whsec_…`) the subscriptions were created with; when given,
    /// unsigned or badly signed notifications are refused with 401.
    #[arg(long, env = "WEBHOOK_SECRET")]
    secret: Option<String>,
}

struct State {
    secret: Option<SigningSecret>,
    received: AtomicU64,
}

/// Checks the Standard Webhooks headers of a request against `secret`; returns the `webhook-id`.
fn verify(secret: &SigningSecret, req: &HttpRequest, body: &[u8]) -> Result<String, String> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| format!("missing {name} header"))
    };
    let id = header(HEADER_ID)?;
    let timestamp: i64 = header(HEADER_TIMESTAMP)?
        .trim()
        .parse()
        .map_err(|_| format!("{HEADER_TIMESTAMP} is not a unix time"))?;
    let signatures = header(HEADER_SIGNATURE)?;
    let age = chrono::Utc::now().timestamp() - timestamp;
    if age.abs() > TOLERANCE_SECS {
        return Err(format!(
            "{HEADER_TIMESTAMP} is {age} s away from now (more than {TOLERANCE_SECS} s)"
        ));
    }
    let expected = signing::sign(secret, id, timestamp, body);
    // The header may list several space-separated signatures (key rotation); one must match.
    let valid = signatures
        .split_whitespace()
        .any(|candidate| bool::from(candidate.as_bytes().ct_eq(expected.as_bytes())));
    if valid {
        Ok(id.to_string())
    } else {
        Err("signature does not match".into())
    }
}

async fn notification(req: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    if req.method() != Method::POST {
        return HttpResponse::MethodNotAllowed()
            .insert_header(("Allow", "POST"))
            .finish();
    }
    let verified = match &state.secret {
        Some(secret) => match verify(secret, &req, &body) {
            Ok(id) => format!("webhook-id {id}, signature verified"),
            Err(reason) => {
                eprintln!("refused a notification to {}: {reason}", req.path());
                return HttpResponse::Unauthorized().body(reason);
            }
        },
        None => match req.headers().get(HEADER_ID).and_then(|v| v.to_str().ok()) {
            Some(id) => format!("webhook-id {id}, signature not checked"),
            None => "signature not checked".to_string(),
        },
    };
    let json: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(json) => json,
        Err(e) => {
            eprintln!("refused a notification to {}: not JSON ({e})", req.path());
            return HttpResponse::BadRequest().body("the body is not JSON");
        }
    };
    let n = state.received.fetch_add(1, Ordering::SeqCst) + 1;
    let event_type = json["eventType"].as_str().unwrap_or("(no eventType)");
    let pretty = serde_json::to_string_pretty(&json).unwrap_or_default();
    // One print, so concurrent notifications do not interleave.
    println!(
        "=== notification #{n}: {event_type} at {} ({verified})\n{pretty}",
        req.path()
    );
    HttpResponse::Accepted().finish()
}

async fn ready() -> HttpResponse {
    HttpResponse::Ok().body("insights-connector webhook receiver\n")
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let secret = match args.secret.as_deref() {
        Some(text) => {
            Some(SigningSecret::parse(text).map_err(|e| anyhow::anyhow!("--secret: {e}"))?)
        }
        None => None,
    };
    let signed = secret.is_some();
    let state = web::Data::new(State {
        secret,
        received: AtomicU64::new(0),
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(4 * 1024 * 1024))
            .route("/", web::get().to(ready))
            .default_service(web::to(notification))
    })
    .workers(1)
    .bind((args.host.as_str(), args.port))?;
    for addr in server.addrs() {
        eprintln!(
            "webhook receiver listening on http://{addr}/ ({})",
            if signed {
                "verifying Standard Webhooks signatures"
            } else {
                "signatures not checked: no --secret"
            }
        );
    }
    server.run().await?;
    Ok(())
}
