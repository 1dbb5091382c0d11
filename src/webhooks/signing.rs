//! Standard Webhooks signing (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
//!
//! The signature is `v1,<base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))>` where the
//! key is the base64-decoded part of a `whsec_…` secret. The `webhook-id` must stay the
//! same across retries (receivers use it to drop duplicates); the timestamp is the time of
//! each attempt, in unix seconds. Ids and timestamps must not contain `.`.

use std::fmt;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use sha2::Sha256;

/// Prefix of a symmetric Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Smallest accepted key, in bytes (Standard Webhooks: 24..=64).
pub const MIN_SECRET_BYTES: usize = 24;
/// Largest accepted key, in bytes.
pub const MAX_SECRET_BYTES: usize = 64;
/// Size of keys made by [`SigningSecret::generate`].
pub const GENERATED_SECRET_BYTES: usize = 32;

pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// Standard alphabet, padding optional (`=` may be present or left off).
const LENIENT_STANDARD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A symmetric signing key. `Debug` never shows the key.
#[derive(Clone)]
pub struct SigningSecret(Vec<u8>);

/// Why a secret was refused. Messages never repeat the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("signing secret must start with \"whsec_\"")]
    MissingPrefix,
    #[error("signing secret is not valid base64 (standard alphabet) after \"whsec_\"")]
    InvalidBase64,
    #[error("signing secret decodes to {0} bytes; it must be 24 to 64 bytes")]
    BadLength(usize),
}

impl SigningSecret {
    /// Parses `whsec_<base64>` (standard alphabet, padding optional; surrounding
    /// whitespace ignored). The decoded key must be 24 to 64 bytes.
    pub fn parse(s: &str) -> Result<Self, SecretError> {
        let b64 = s
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::MissingPrefix)?;
        let key = LENIENT_STANDARD
            .decode(b64)
            .map_err(|_| SecretError::InvalidBase64)?;
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&key.len()) {
            return Err(SecretError::BadLength(key.len()));
        }
        Ok(Self(key))
    }

    /// A new random 32-byte secret and its `whsec_` text (show it to the subscriber once;
    /// [`parse`](Self::parse) reads it back).
    pub fn generate() -> (Self, String) {
        let mut key = vec![0u8; GENERATED_SECRET_BYTES];
        rand::rng().fill_bytes(&mut key);
        let text = format!("{SECRET_PREFIX}{}", STANDARD.encode(&key));
        (Self(key), text)
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(<redacted>)")
    }
}

/// `v1,<base64(HMAC-SHA256(key, "{msg_id}.{timestamp}.{body}"))>`.
pub fn sign(secret: &SigningSecret, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(&secret.0).expect("HMAC accepts keys of any length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The Standard Webhooks headers for one attempt: always `webhook-id` and
/// `webhook-timestamp`; `webhook-signature` only when there is a secret.
pub fn headers(
    secret: Option<&SigningSecret>,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    let mut out = vec![
        (HEADER_ID, msg_id.to_string()),
        (HEADER_TIMESTAMP, timestamp.to_string()),
    ];
    if let Some(secret) = secret {
        out.push((HEADER_SIGNATURE, sign(secret, msg_id, timestamp, body)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
    use standardwebhooks::Webhook;

    fn header_map(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                HeaderName::from_static(name),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    /// Reference vector of the Standard Webhooks / Svix test suites
    /// (svix-webhooks `go/webhook_test.go`, standard-webhooks libraries).
    #[test]
    fn spec_test_vector() {
        let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            sign(
                &secret,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    /// Vector from the `standardwebhooks` Rust crate's own tests.
    #[test]
    fn crate_test_vector() {
        let secret = SigningSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert_eq!(
            sign(
                &secret,
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1649367553,
                br#"{"email":"test@example.com","username":"test_user"}"#
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn standardwebhooks_crate_verifies_our_headers() {
        let (secret, text) = SigningSecret::generate();
        let verifier = Webhook::new(&text).unwrap();
        let body = br#"{"type":"refresh.failed","timestamp":"2026-01-01T00:00:00Z","data":{"jobId":"j1"}}"#;
        let ts = now();
        let hdrs = headers(Some(&secret), "evt_01J9Z", ts, body);
        verifier.verify(body, &header_map(&hdrs)).unwrap();
        // Their signer and ours agree byte for byte.
        assert_eq!(
            verifier.sign("evt_01J9Z", ts, body).unwrap(),
            sign(&secret, "evt_01J9Z", ts, body)
        );
        // Any change to body, id or timestamp breaks verification.
        assert!(verifier.verify(b"{}", &header_map(&hdrs)).is_err());
        let mut other_id = hdrs.clone();
        other_id[0].1 = "evt_other".into();
        assert!(verifier.verify(body, &header_map(&other_id)).is_err());
        let mut other_ts = hdrs.clone();
        other_ts[1].1 = (ts - 1).to_string();
        assert!(verifier.verify(body, &header_map(&other_ts)).is_err());
        // A different secret does not verify.
        let (_, other_text) = SigningSecret::generate();
        assert!(Webhook::new(&other_text)
            .unwrap()
            .verify(body, &header_map(&hdrs))
            .is_err());
    }

    #[test]
    fn verifier_accepts_every_valid_length() {
        for len in [MIN_SECRET_BYTES, 32, 33, MAX_SECRET_BYTES] {
            let key: Vec<u8> = (0..len as u8).collect();
            let text = format!("whsec_{}", STANDARD.encode(&key));
            let secret = SigningSecret::parse(&text).unwrap();
            let body = "unicode ✓ body".as_bytes();
            let hdrs = headers(Some(&secret), "msg_1", now(), body);
            Webhook::new(&text)
                .unwrap()
                .verify(body, &header_map(&hdrs))
                .unwrap();
        }
    }

    #[test]
    fn headers_without_secret() {
        let hdrs = headers(None, "msg_1", 1_700_000_000, b"{}");
        assert_eq!(
            hdrs,
            vec![
                ("webhook-id", "msg_1".to_string()),
                ("webhook-timestamp", "1700000000".to_string()),
            ]
        );
    }

    #[test]
    fn headers_with_secret() {
        let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let hdrs = headers(
            Some(&secret),
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        let names: Vec<&str> = hdrs.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            ["webhook-id", "webhook-timestamp", "webhook-signature"]
        );
        assert_eq!(hdrs[2].1, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn parse_errors_are_clear() {
        assert_eq!(
            SigningSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap_err(),
            SecretError::MissingPrefix
        );
        assert_eq!(
            SigningSecret::parse("WHSEC_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap_err(),
            SecretError::MissingPrefix
        );
        assert_eq!(
            SigningSecret::parse("whsec_not base64!").unwrap_err(),
            SecretError::InvalidBase64
        );
        // URL-safe alphabet is not the standard one.
        let urlsafe = format!("whsec_{}", "-_".repeat(16));
        assert_eq!(
            SigningSecret::parse(&urlsafe).unwrap_err(),
            SecretError::InvalidBase64
        );
        assert_eq!(
            SigningSecret::parse("whsec_").unwrap_err(),
            SecretError::BadLength(0)
        );
        let short = format!("whsec_{}", STANDARD.encode([7u8; 23]));
        assert_eq!(
            SigningSecret::parse(&short).unwrap_err(),
            SecretError::BadLength(23)
        );
        let long = format!("whsec_{}", STANDARD.encode([7u8; 65]));
        let err = SigningSecret::parse(&long).unwrap_err();
        assert_eq!(err, SecretError::BadLength(65));
        assert_eq!(
            err.to_string(),
            "signing secret decodes to 65 bytes; it must be 24 to 64 bytes"
        );
        // Messages never echo the secret.
        let bad = "whsec_SECRETSECRET$$";
        assert!(!SigningSecret::parse(bad)
            .unwrap_err()
            .to_string()
            .contains("SECRET"));
    }

    #[test]
    fn parse_accepts_padding_either_way_and_whitespace() {
        let key = [9u8; 32];
        let padded = format!("whsec_{}", STANDARD.encode(key));
        assert!(padded.ends_with('='));
        let unpadded = padded.trim_end_matches('=').to_string();
        for text in [padded.clone(), unpadded, format!("  {padded}\n")] {
            let s = SigningSecret::parse(&text).unwrap();
            assert_eq!(s.0, key);
        }
    }

    #[test]
    fn generate_round_trips_and_is_random() {
        let (a, text_a) = SigningSecret::generate();
        let (b, text_b) = SigningSecret::generate();
        assert!(text_a.starts_with("whsec_"));
        assert_eq!(a.0.len(), GENERATED_SECRET_BYTES);
        assert_ne!(a.0, b.0);
        assert_ne!(text_a, text_b);
        assert_eq!(SigningSecret::parse(&text_a).unwrap().0, a.0);
        assert_eq!(format!("{a:?}"), "SigningSecret(<redacted>)");
        assert!(!format!("{a:?}").contains(&text_a[6..]));
    }

    #[test]
    fn binary_body_is_signed_over_exact_bytes() {
        let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let a = sign(&secret, "m", 1, &[0xff, 0x00, 0x80]);
        let b = sign(&secret, "m", 1, &[0xff, 0x00, 0x81]);
        assert_ne!(a, b);
        assert!(a.starts_with("v1,"));
        assert_eq!(STANDARD.decode(&a[3..]).unwrap().len(), 32);
    }
}
