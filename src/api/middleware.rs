//! HTTP layer: the middleware around every handler (metrics, panic catching, authentication and
//! the rate limit) and the fallback service for requests no handler takes. May use the rest of
//! `api` and `telemetry`, never the store.

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use futures_util::FutureExt;

use super::auth::API_KEY_HEADER;
use super::problem::ApiError;
use super::state::AppState;

/// Middleware: counts requests and observes latency by route template (never the raw path, so
/// label cardinality stays bounded).
pub async fn record_metrics(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let res = next.call(req).await?;
    if let Some(state) = state {
        let request = res.request();
        let route = state.routes.template(request.path()).unwrap_or("unmatched");
        state.metrics.observe_request(
            request.method().as_str(),
            route,
            res.status().as_str(),
            started.elapsed(),
        );
    }
    Ok(res)
}

/// Middleware: a panicking handler answers 500 problem+json instead of dropping the connection
/// (and never takes the worker down).
pub async fn catch_panic(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    // Cloning the request here would break routing (it needs the only reference), so a panic is
    // turned into an error, which actix renders through `ApiError::error_response`.
    match std::panic::AssertUnwindSafe(next.call(req))
        .catch_unwind()
        .await
    {
        Ok(res) => Ok(res?.map_into_boxed_body()),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(ApiError::Internal(format!("handler panicked: {message}")).into())
        }
    }
}

/// Middleware: a body in a `Content-Encoding` the service does not decode (actix-web decodes
/// gzip, deflate, br and zstd) is refused with 415 rather than read as if it were plain.
pub async fn refuse_encoded_bodies(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let encoding = req
        .headers()
        .get(actix_web::http::header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    match encoding {
        Some(encoding)
            if !matches!(
                encoding.as_str(),
                "" | "identity" | "gzip" | "x-gzip" | "deflate" | "br" | "zstd"
            ) =>
        {
            let (http_req, _) = req.into_parts();
            let err = ApiError::UnsupportedMediaType(format!(
                "Content-Encoding '{encoding}' is not supported (gzip, deflate, br, zstd or none)"
            ));
            Ok(ServiceResponse::new(http_req, err.error_response()))
        }
        _ => Ok(next.call(req).await?.map_into_boxed_body()),
    }
}

/// The largest request body (the extractors' limit), for middleware that reads bodies.
#[derive(Debug, Clone, Copy)]
pub struct MaxBody(pub usize);

/// Middleware: a JSON body that names a member twice in one object is refused with 400 (JSON
/// leaves it open which one counts; the parser would keep the last silently). The body is read
/// once here and handed on unchanged. Compressed bodies are checked by no one but the parser.
pub async fn refuse_duplicate_members(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    use futures_util::StreamExt;
    let json = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().contains("json"));
    let plain = req
        .headers()
        .get(actix_web::http::header::CONTENT_ENCODING)
        .is_none();
    if !json || !plain {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let limit = req.app_data::<MaxBody>().map_or(usize::MAX, |m| m.0);
    let mut payload = req.take_payload();
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > limit {
            let (http_req, _) = req.into_parts();
            let err = ApiError::PayloadTooLarge(format!("the body is larger than {limit} bytes"));
            return Ok(ServiceResponse::new(http_req, err.error_response()));
        }
        body.extend_from_slice(&chunk);
    }
    let body = body.freeze();
    if let Err(member) = unique_members(&body) {
        let (http_req, _) = req.into_parts();
        let err = ApiError::BadRequest(format!(
            "the JSON body names the member '{member}' twice in one object"
        ));
        return Ok(ServiceResponse::new(http_req, err.error_response()));
    }
    req.set_payload(actix_web::dev::Payload::from(body));
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// `Err(member)` when some object of the JSON text names `member` twice; text that is not
/// JSON passes (the extractor reports it).
fn unique_members(body: &[u8]) -> Result<(), String> {
    use serde::de::{Deserializer, Error, MapAccess, SeqAccess, Visitor};
    const MARK: &str = "\u{0}duplicate member:";
    struct Unique;
    impl<'de> serde::Deserialize<'de> for Unique {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(UniqueVisitor)
        }
    }
    struct UniqueVisitor;
    impl<'de> Visitor<'de> for UniqueVisitor {
        type Value = Unique;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                if !seen.insert(key.clone()) {
                    return Err(A::Error::custom(format!("{MARK}{key}")));
                }
                map.next_value::<Unique>()?;
            }
            Ok(Unique)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
            while seq.next_element::<Unique>()?.is_some() {}
            Ok(Unique)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_str<E>(self, _: &str) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_unit<E>(self) -> Result<Unique, E> {
            Ok(Unique)
        }
    }
    match serde_json::from_slice::<Unique>(body) {
        Err(e) => {
            let text = e.to_string();
            match text.find(MARK) {
                Some(at) => {
                    let rest = &text[at + MARK.len()..];
                    // serde_json appends " at line L column C".
                    let member = rest.rsplit_once(" at line ").map_or(rest, |(m, _)| m);
                    Err(member.to_string())
                }
                None => Ok(()),
            }
        }
        Ok(_) => Ok(()),
    }
}

/// Middleware: authenticates every non-operational request and applies the rate limit.
pub async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if super::auth::is_operational(req.path()) {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .expect("AppState is registered");
    let presented = req
        .headers()
        .get(API_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let refuse = |req: ServiceRequest, err: ApiError| {
        let (http_req, _) = req.into_parts();
        Ok(ServiceResponse::new(http_req, err.error_response()))
    };
    let Some(presented) = presented.filter(|k| !k.is_empty() && k.len() <= 512) else {
        return refuse(req, ApiError::Unauthorized);
    };
    let key = match state.keys.resolve(&presented).await {
        Ok(Some(key)) => key,
        Ok(None) => return refuse(req, ApiError::Unauthorized),
        Err(e) => return refuse(req, ApiError::Internal(e.to_string())),
    };
    if let Some(throttle) = &state.throttle {
        match throttle.check(&key.id).await {
            Ok(Ok(())) => {}
            Ok(Err(retry_after_secs)) => {
                return refuse(req, ApiError::TooManyRequests { retry_after_secs })
            }
            Err(e) => return refuse(req, ApiError::Internal(e.to_string())),
        }
    }
    req.extensions_mut().insert(key.tenant);
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// Fallback: 405 with `Allow` for a known path, otherwise 404 — both problem+json.
pub async fn fallback(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Err(match state.routes.allowed(req.path()) {
        Some(mut methods) => {
            methods.sort();
            ApiError::MethodNotAllowed {
                method: req.method().to_string(),
                allow: methods.join(", "),
            }
        }
        None => ApiError::NotFound(format!("no resource at {}", req.path())),
    })
}

#[cfg(test)]
mod tests {
    use actix_web::middleware::from_fn;
    use actix_web::{test, web, App, HttpResponse};

    #[actix_web::test]
    async fn a_panicking_handler_answers_500_problem_and_the_service_keeps_serving() {
        let app = test::init_service(
            App::new()
                .wrap(from_fn(super::catch_panic))
                .route(
                    "/boom",
                    web::get().to(|| async {
                        if true {
                            panic!("boom");
                        }
                        HttpResponse::Ok().finish()
                    }),
                )
                .route(
                    "/fine",
                    web::get().to(|| async { HttpResponse::Ok().finish() }),
                ),
        )
        .await;
        // The HTTP dispatcher renders a middleware error through `error_response`; do the same.
        let err = test::try_call_service(&app, test::TestRequest::get().uri("/boom").to_request())
            .await
            .expect_err("the panic becomes an error");
        let res = err.error_response();
        assert_eq!(res.status(), 500);
        assert_eq!(
            res.headers().get("content-type").unwrap(),
            crate::api::problem::PROBLEM_JSON
        );
        let bytes = actix_web::body::to_bytes(res.into_body()).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["status"], 500);
        assert!(
            !body["detail"].as_str().unwrap().contains("boom"),
            "no internals leak"
        );
        let res =
            test::call_service(&app, test::TestRequest::get().uri("/fine").to_request()).await;
        assert_eq!(res.status(), 200);
    }
}
