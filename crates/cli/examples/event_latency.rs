//! Benchmark helper (bench/broker.sh): joins a fresh consumer group on the broker, reads
//! change events as they are published, and reports how long each took from the moment it
//! was written (`occurred_at`, in the committing transaction) to its arrival here: count,
//! p50, p99 and max in milliseconds, as one JSON line.
//!
//! Usage: event_latency BROKER_URL STORE_URL EXPECTED_EVENTS [IDLE_SECS]
//! It stops after EXPECTED_EVENTS events, or after IDLE_SECS (default 30) without one.

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
    let mut consumer = broker
        .consumer(ConsumerConfig::new(group, "events.>"))
        .await?;
    println!("ready");
    let mut latencies = Vec::with_capacity(expected);
    while latencies.len() < expected {
        let Some(d) = consumer.next(idle).await? else {
            break;
        };
        let arrived = chrono::Utc::now();
        let body: serde_json::Value = serde_json::from_slice(&d.message.payload)?;
        if let Some(at) = body["occurred_at"].as_str() {
            let at: chrono::DateTime<chrono::Utc> = at.parse()?;
            latencies.push((arrived - at).num_microseconds().unwrap_or(0) as f64 / 1000.0);
        }
        d.ack().await?;
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
