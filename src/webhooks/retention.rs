//! Outbox retention: finished deliveries (delivered, failed, dead) and their attempts are kept
//! for `--retention-days`, then deleted with the events nothing refers to any more. Pending
//! deliveries are never touched, whatever their age: retention can never lose a notification.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// How often the outbox is pruned (also once at start).
const EVERY: Duration = Duration::from_secs(3600);

/// Prunes once now and then every hour until `stop` is cancelled. `keep` of zero keeps
/// everything (then there is nothing to run).
pub async fn run(store: Store, keep: Duration, stop: CancellationToken) {
    if keep.is_zero() {
        return;
    }
    loop {
        prune(&store, keep).await;
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}

/// One pass: what finished more than `keep` ago goes.
pub async fn prune(store: &Store, keep: Duration) {
    let Ok(keep) = chrono::Duration::from_std(keep) else {
        return;
    };
    let before = chrono::Utc::now() - keep;
    match store.prune_outbox(before).await {
        Ok((0, 0)) => {}
        Ok((deliveries, events)) => {
            tracing::info!(
                deliveries,
                events,
                "outbox retention pruned finished deliveries"
            )
        }
        Err(e) => tracing::warn!(error = %e, "outbox retention failed; retrying next pass"),
    }
}
