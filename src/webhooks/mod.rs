//! Trigger subscriptions, the transactional outbox and its dispatcher.

// TEMPORARY until the retry module lands.
pub mod retry {
    #[derive(Clone, Debug)]
    pub struct RetryPolicy {
        pub max_attempts: u32,
        pub schedule: Vec<std::time::Duration>,
        pub jitter: f64,
        pub retry_after_cap: std::time::Duration,
    }
    impl Default for RetryPolicy {
        fn default() -> Self {
            Self {
                max_attempts: 8,
                schedule: vec![],
                jitter: 0.1,
                retry_after_cap: std::time::Duration::from_secs(3600),
            }
        }
    }
}
