//! Gauges read from the store every few seconds: the relay's lag (the outbox's unpublished
//! events and the age of the oldest), the webhooks' queue, and the store's connection pools.
//! Every process reports them (the outbox and the queue are shared: dashboards take the
//! `max` over instances); the pools are each process's own.

use carrierhub_store::Store;
use std::sync::Arc;
use std::time::Duration;

/// Refreshes the gauges every `every`; never returns.
pub async fn watch_store(store: Arc<dyn Store>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        refresh(store.as_ref()).await;
    }
}

async fn refresh(store: &dyn Store) {
    let now = chrono::Utc::now();
    let age = |oldest: Option<chrono::DateTime<chrono::Utc>>| {
        oldest.map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0)
    };
    match store.outbox_backlog().await {
        Ok(b) => {
            metrics::gauge!("carrierhub_relay_lag_events").set(b.ready as f64);
            metrics::gauge!("carrierhub_relay_lag_seconds").set(age(b.oldest));
        }
        Err(e) => tracing::debug!(error = %e, "cannot read the outbox's backlog"),
    }
    match store.webhook_backlog().await {
        Ok(b) => {
            metrics::gauge!("carrierhub_webhook_queue_deliveries", "state" => "due")
                .set(b.ready as f64);
            metrics::gauge!("carrierhub_webhook_queue_deliveries", "state" => "waiting")
                .set(b.waiting as f64);
            metrics::gauge!("carrierhub_webhook_queue_lag_seconds").set(age(b.oldest));
        }
        Err(e) => tracing::debug!(error = %e, "cannot read the webhooks' queue"),
    }
    for pool in store.pool_use() {
        metrics::gauge!("carrierhub_db_pool_connections", "pool" => pool.pool, "state" => "in_use")
            .set(pool.in_use as f64);
        metrics::gauge!("carrierhub_db_pool_connections", "pool" => pool.pool, "state" => "idle")
            .set(pool.idle as f64);
        metrics::gauge!("carrierhub_db_pool_max_connections", "pool" => pool.pool)
            .set(pool.max as f64);
    }
}
