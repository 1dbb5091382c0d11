//! HTTP layer: API keys (`X-API-Key` header → tenant) and the per-key rate limit. Only SHA-256
//! hashes are stored; the comparison of the presented key's hash with the stored one is
//! constant-time. May use engine and `api::problem`; it still reads the key table through
//! `store::Store` directly, as the engine has no key API yet.

use std::collections::HashMap;
use std::future::{ready, Ready};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::problem::ApiError;
use crate::configuration::RateLimit;
use crate::engine::TenantId;
use crate::store::{NewApiKey, Store, StoreResult};

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

/// How long a positive answer is trusted without asking the database again. Keys are created
/// and revoked by other replicas and the CLI, so this bounds how long a revoked key keeps
/// working here (this, plus one lookup). Unknown keys are not cached at all: a key created
/// elsewhere works on its first request, and random keys cannot fill the cache.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(3);

/// A key's last use is written at most this often per process, so authenticating a request
/// does not write to the database.
pub const KEY_TOUCH_INTERVAL: Duration = Duration::from_secs(60);

/// Characters of a key stored in the clear as its prefix, so an operator can tell keys apart in
/// `keys list`: at most 8, and at most a quarter of the key, so a short bootstrap key keeps
/// most of its secret (a generated key has 43 random characters after `ick_`; the prefix shows
/// 4 of them, far too few to matter).
pub fn key_prefix(key: &str) -> String {
    let n = (key.chars().count() / 4).min(8);
    key.chars().take(n).collect()
}

/// A key that authenticated: its id (for the rate limit) and its tenant.
#[derive(Debug, Clone)]
pub struct AuthenticatedKey {
    pub id: String,
    pub tenant: TenantId,
}

struct CachedKey {
    key: AuthenticatedKey,
    expires_at: Option<DateTime<Utc>>,
    fetched: Instant,
}

/// Resolves keys to tenants, caching positive answers for [`KEY_CACHE_TTL`].
pub struct KeyRing {
    store: Store,
    cache: RwLock<HashMap<[u8; 32], CachedKey>>,
    /// When this process last wrote each key's `last_used_at`.
    touched: Mutex<HashMap<String, Instant>>,
}

impl KeyRing {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            cache: RwLock::new(HashMap::new()),
            touched: Mutex::new(HashMap::new()),
        }
    }

    pub async fn resolve(&self, presented: &str) -> StoreResult<Option<AuthenticatedKey>> {
        let hash = hash_key(presented);
        let now = Instant::now();
        let cached = self
            .cache
            .read()
            .expect("key cache poisoned")
            .get(&hash)
            .filter(|c| now.duration_since(c.fetched) < KEY_CACHE_TTL)
            .map(|c| (c.key.clone(), c.expires_at));
        let (key, expires_at) = match cached {
            Some(hit) => hit,
            None => match self.lookup(&hash, now).await? {
                Some(found) => found,
                None => return Ok(None),
            },
        };
        if expires_at.is_some_and(|at| at <= Utc::now()) {
            return Ok(None);
        }
        self.note_use(&key.id, now);
        Ok(Some(key))
    }

    async fn lookup(
        &self,
        hash: &[u8; 32],
        now: Instant,
    ) -> StoreResult<Option<(AuthenticatedKey, Option<DateTime<Utc>>)>> {
        let record = self.store.find_api_key(hash).await?;
        let mut cache = self.cache.write().expect("key cache poisoned");
        // Expired entries go (a revoked key's among them), so the map holds only keys in use.
        cache.retain(|_, c| now.duration_since(c.fetched) < KEY_CACHE_TTL);
        let Some(record) = record else {
            return Ok(None);
        };
        // The lookup was by hash; confirm in constant time so no timing depends on the key.
        if !bool::from(record.key_hash.as_slice().ct_eq(hash)) {
            return Ok(None);
        }
        let key = AuthenticatedKey {
            id: record.id,
            tenant: TenantId(record.tenant),
        };
        cache.insert(
            *hash,
            CachedKey {
                key: key.clone(),
                expires_at: record.expires_at,
                fetched: now,
            },
        );
        Ok(Some((key, record.expires_at)))
    }

    /// Writes the key's last use when this process has not done so for
    /// [`KEY_TOUCH_INTERVAL`], in the background: the request does not wait for the write.
    fn note_use(&self, id: &str, now: Instant) {
        {
            let mut touched = self.touched.lock().expect("touch map poisoned");
            if touched
                .get(id)
                .is_some_and(|at| now.duration_since(*at) < KEY_TOUCH_INTERVAL)
            {
                return;
            }
            touched.retain(|_, at| now.duration_since(*at) < KEY_TOUCH_INTERVAL);
            touched.insert(id.to_string(), now);
        }
        let store = self.store.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            if let Err(e) = store.touch_api_key(&id, Utc::now()).await {
                tracing::warn!(key_id = %id, error = %e, "could not record the key's last use");
            }
        });
    }
}

/// Stores the configured bootstrap keys; if no key exists at all afterwards, creates one for
/// tenant `default` and returns it (the caller prints it once).
pub async fn bootstrap_keys(
    store: &Store,
    keys: &[(String, String)],
) -> StoreResult<Option<String>> {
    for (tenant, key) in keys {
        store_key(store, tenant, key).await?;
    }
    if store.count_api_keys().await? > 0 {
        return Ok(None);
    }
    let key = generate_key();
    store_key(store, "default", &key).await?;
    Ok(Some(key))
}

/// Stores a key (its hash and prefix) for a tenant; the new key's id, or `None` when the key was
/// already stored.
pub async fn store_key(store: &Store, tenant: &str, key: &str) -> StoreResult<Option<String>> {
    store
        .insert_api_key(NewApiKey {
            tenant,
            key_hash: &hash_key(key),
            prefix: &key_prefix(key),
        })
        .await
}

/// Per-key request budget. On PostgreSQL it is one budget across every replica: a fixed window
/// per key counted in the database (so a burst of up to twice the budget can straddle a window
/// boundary). On SQLite one process serves the file, and an in-process limiter (a smooth
/// token bucket that writes nothing) is the whole budget.
pub struct Throttle {
    limit: RateLimit,
    store: Store,
    local: DefaultKeyedRateLimiter<String>,
}

impl Throttle {
    pub fn new(limit: RateLimit, store: Store) -> Arc<Self> {
        let burst = NonZeroU32::new(limit.requests).expect("rate limit is positive");
        let quota = Quota::with_period(limit.per / limit.requests)
            .expect("period is positive")
            .allow_burst(burst);
        Arc::new(Self {
            limit,
            store,
            local: DefaultKeyedRateLimiter::keyed(quota),
        })
    }

    /// `Err(seconds to wait)` when the key's budget is spent.
    pub async fn check(&self, key_id: &str) -> StoreResult<Result<(), u64>> {
        let per = self.limit.per.as_secs().max(1) as i64;
        let now = Utc::now().timestamp();
        let window_start = now - now.rem_euclid(per);
        match self.store.count_key_request(key_id, window_start).await? {
            Some(window) if window.used <= i64::from(self.limit.requests) => Ok(Ok(())),
            // Whole seconds until the window ends, rounded up (`now` is rounded down).
            Some(window) => Ok(Err((window.window_start + per - now).max(1) as u64)),
            None => Ok(self
                .local
                .check_key(&key_id.to_string())
                .map_err(|not_until| {
                    let wait = not_until.wait_time_from(DefaultClock::default().now());
                    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
                })),
        }
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

    #[tokio::test]
    async fn throttle_refuses_past_budget() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let t = Throttle::new(
            RateLimit {
                requests: 2,
                per: std::time::Duration::from_secs(60),
            },
            store,
        );
        assert!(t.check("k").await.unwrap().is_ok());
        assert!(t.check("k").await.unwrap().is_ok());
        let wait = t.check("k").await.unwrap().unwrap_err();
        assert!((1..=60).contains(&wait), "wait {wait}");
        assert!(t.check("other").await.unwrap().is_ok());
    }

    /// The first authentication records the last use; the next ones within a minute write
    /// nothing.
    #[tokio::test]
    async fn last_use_is_written_at_most_once_a_minute() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        store_key(&store, "t", "a-key-for-the-test-0123456789")
            .await
            .unwrap();
        let ring = KeyRing::new(store.clone());
        let hash = hash_key("a-key-for-the-test-0123456789");
        let last_used = || async {
            store
                .find_api_key(&hash)
                .await
                .unwrap()
                .unwrap()
                .last_used_at
        };
        assert!(ring
            .resolve("a-key-for-the-test-0123456789")
            .await
            .unwrap()
            .is_some());
        let mut first = None;
        for _ in 0..100 {
            first = last_used().await;
            if first.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let first = first.expect("the last use is recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
        for _ in 0..3 {
            assert!(ring
                .resolve("a-key-for-the-test-0123456789")
                .await
                .unwrap()
                .is_some());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            last_used().await,
            Some(first),
            "no second write within a minute"
        );
    }

    #[test]
    fn prefixes_show_at_most_8_characters_and_a_quarter_of_the_key() {
        let key = generate_key();
        assert_eq!(key_prefix(&key), key[..8]);
        assert_eq!(key_prefix("0123456789abcdef"), "0123");
        assert_eq!(key_prefix("ab"), "");
        assert_eq!(key_prefix("ééééééééééééééééééééééééééééééééé"), "éééééééé");
    }
}
