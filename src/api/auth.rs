//! HTTP layer: API keys (`X-API-Key` header → tenant) and the per-key rate limit. Only SHA-256
//! hashes are stored; the comparison of the presented key's hash with the stored one is
//! constant-time. May use engine and `api::problem`; it still reads the key table through
//! `store::Store` directly, as the engine has no key API yet.

use std::collections::HashMap;
use std::future::{ready, Ready};
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use base64::Engine as _;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::problem::ApiError;
use crate::configuration::RateLimit;
use crate::engine::TenantId;
use crate::store::{Store, StoreResult};

pub const API_KEY_HEADER: &str = "X-API-Key";

pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// A fresh random key: 32 bytes of OS randomness, URL-safe base64, with a recognisable prefix.
pub fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "ick_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// Resolves keys to tenants, caching positive answers (keys are never deleted while running).
pub struct KeyRing {
    store: Store,
    cache: RwLock<HashMap<[u8; 32], TenantId>>,
}

impl KeyRing {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            cache: RwLock::new(HashMap::new()),
        }
    }

    pub async fn resolve(&self, presented: &str) -> StoreResult<Option<TenantId>> {
        let hash = hash_key(presented);
        if let Some(t) = self.cache.read().expect("key cache poisoned").get(&hash) {
            return Ok(Some(t.clone()));
        }
        let Some(record) = self.store.find_api_key(&hash).await? else {
            return Ok(None);
        };
        // The lookup was by hash; confirm in constant time so no timing depends on the key.
        if !bool::from(record.key_hash.as_slice().ct_eq(&hash)) {
            return Ok(None);
        }
        let tenant = TenantId(record.tenant);
        self.cache
            .write()
            .expect("key cache poisoned")
            .insert(hash, tenant.clone());
        Ok(Some(tenant))
    }
}

/// Stores the configured bootstrap keys; if no key exists at all afterwards, creates one for
/// tenant `default` and returns it (the caller prints it once).
pub async fn bootstrap_keys(
    store: &Store,
    keys: &[(String, String)],
) -> StoreResult<Option<String>> {
    for (tenant, key) in keys {
        store.insert_api_key(tenant, &hash_key(key)).await?;
    }
    if store.count_api_keys().await? > 0 {
        return Ok(None);
    }
    let key = generate_key();
    store.insert_api_key("default", &hash_key(&key)).await?;
    Ok(Some(key))
}

/// Per-key request budget.
pub struct Throttle {
    limiter: DefaultKeyedRateLimiter<[u8; 32]>,
}

impl Throttle {
    pub fn new(limit: RateLimit) -> Arc<Self> {
        let burst = NonZeroU32::new(limit.requests).expect("rate limit is positive");
        let quota = Quota::with_period(limit.per / limit.requests)
            .expect("period is positive")
            .allow_burst(burst);
        Arc::new(Self {
            limiter: DefaultKeyedRateLimiter::keyed(quota),
        })
    }

    /// `Err(seconds to wait)` when the key's budget is spent.
    pub fn check(&self, key_hash: &[u8; 32]) -> Result<(), u64> {
        self.limiter.check_key(key_hash).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}

/// Paths that need no key and are not part of the documented API.
pub fn is_operational(path: &str) -> bool {
    matches!(
        path,
        "/health" | "/ready" | "/metrics" | "/openapi.json" | "/docs"
    ) || path.starts_with("/docs/")
        || path.starts_with("/connector/")
}

/// Handlers take the tenant as an argument; it was put there by
/// [`super::middleware::authenticate`].
impl FromRequest for TenantId {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<TenantId>()
                .cloned()
                .ok_or(ApiError::Unauthorized),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_distinct_and_long() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a, b);
        assert!(a.starts_with("ick_") && a.len() > 40);
    }

    #[test]
    fn throttle_refuses_past_budget() {
        let t = Throttle::new(RateLimit {
            requests: 2,
            per: std::time::Duration::from_secs(60),
        });
        let k = hash_key("k");
        assert!(t.check(&k).is_ok());
        assert!(t.check(&k).is_ok());
        let wait = t.check(&k).unwrap_err();
        assert!((1..=60).contains(&wait), "wait {wait}");
        assert!(t.check(&hash_key("other")).is_ok());
    }
}
