//! Benchmark helper (bench/broker.sh): joins a fresh consumer group on the broker, reads
//! change events as they are published, and reports how long each took from the moment it
//! was written (`occurred_at`, in the committing transaction) to its arrival here: count,
//! p50, p99 and max in milliseconds, as one JSON line.
//!
//! Usage: event_latency BROKER_URL STORE_URL EXPECTED_EVENTS [IDLE_SECS]
//! It stops after EXPECTED_EVENTS events, or after IDLE_SECS (default 30) without one. Eight
//! members of the group read side by side, as a subscriber that keeps up would.

use carrierhub_broker::{open_broker, ConsumerConfig};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: event_latency BROKER_URL|embedded STORE_URL EXPECTED_EVENTS [IDLE_SECS]");
        std::process::exit(2);
    }
    let broker_url = (args[1] != "embedded").then_some(args[1].as_str());
    let broker = open_broker(broker_url, &args[2]).await?;
    let expected: usize = args[3].parse()?;
    let idle = Duration::from_secs(args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(30));
    let group = format!("latency{}", chrono::Utc::now().timestamp_micros());
    // Only events published from now on: the group starts at the stream's end because the
    // benchmark starts it on an empty stream.
    const MEMBERS: usize = 8;
    let mut consumers = Vec::new();
    for _ in 0..MEMBERS {
        consumers.push(
            broker
                .consumer(ConsumerConfig::new(group.clone(), "events.>"))
                .await?,
        );
    }
    println!("ready");
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for mut consumer in consumers {
        let seen = seen.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            while seen.load(std::sync::atomic::Ordering::Relaxed) < expected {
                let Ok(Some(d)) = consumer.next(idle).await else {
                    break;
                };
                let arrived = chrono::Utc::now();
                let body: serde_json::Value =
                    serde_json::from_slice(&d.message.payload).unwrap_or_default();
                if let Some(at) = body["occurred_at"].as_str() {
                    if let Ok(at) = at.parse::<chrono::DateTime<chrono::Utc>>() {
                        latencies
                            .push((arrived - at).num_microseconds().unwrap_or(0) as f64 / 1000.0);
                    }
                }
                seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let _ = d.ack().await;
            }
            latencies
        });
    }
    let mut latencies = Vec::with_capacity(expected);
    while let Some(part) = tasks.join_next().await {
        latencies.extend(part?);
    }
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        if latencies.is_empty() {
            0.0
        } else {
            latencies[((latencies.len() - 1) as f64 * q).round() as usize]
        }
    };
    println!(
        "{}",
        serde_json::json!({
            "events": latencies.len(),
            "p50_ms": pick(0.50),
            "p99_ms": pick(0.99),
            "max_ms": pick(1.0),
        })
    );
    Ok(())
}
