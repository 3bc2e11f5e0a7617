//! The broker's behaviour, one suite for every implementation: each test runs as
//! `embedded_sqlite::NAME`, `embedded_postgres::NAME` and `nats::NAME` (see `common/mod.rs`).

use crate::common;

use carrierhub_broker::*;
use common::Target;
use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

conformance!(
    messages_arrive_in_order_and_acked_ones_do_not_return,
    a_duplicate_id_is_published_once,
    an_unacknowledged_delivery_is_redelivered_after_ack_wait,
    a_nak_redelivers_after_its_delay,
    progress_keeps_a_long_job_from_being_redelivered,
    members_of_a_group_share_the_messages,
    every_group_sees_every_message_it_filters_for,
    groups_and_messages_survive_a_restart,
    a_poison_message_becomes_a_dead_letter_and_blocks_nothing,
    a_dead_letter_can_be_redriven,
    lag_counts_pending_and_unacknowledged,
    headers_travel_with_the_message,
);

const WAIT: Duration = Duration::from_secs(5);
const SHORT: Duration = Duration::from_millis(300);

fn msg(subject: &str, id: &str) -> Outgoing {
    Outgoing::new(subject, id, id.as_bytes().to_vec())
}

fn config(group: &str, filter: &str) -> ConsumerConfig {
    ConsumerConfig {
        ack_wait: Duration::from_secs(2),
        max_deliveries: 0,
        ..ConsumerConfig::new(group, filter)
    }
}

async fn next(consumer: &mut Box<dyn Consumer>) -> Delivery {
    consumer
        .next(WAIT)
        .await
        .unwrap()
        .expect("a message within the wait")
}

async fn messages_arrive_in_order_and_acked_ones_do_not_return(t: Target) {
    let broker = t.broker().await;
    let mut consumer = broker.consumer(config("g", "events.>")).await.unwrap();
    let mut sequences = Vec::new();
    for i in 0..5 {
        let p = broker
            .publish(msg(
                &format!("events.policy.created.c{i}"),
                &format!("m{i}"),
            ))
            .await
            .unwrap();
        assert!(!p.duplicate);
        sequences.push(p.sequence);
    }
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
    for (i, &sequence) in sequences.iter().enumerate() {
        let d = next(&mut consumer).await;
        assert_eq!(d.message.id, format!("m{i}"));
        assert_eq!(d.message.subject, format!("events.policy.created.c{i}"));
        assert_eq!(d.message.payload, format!("m{i}").into_bytes());
        assert_eq!(d.message.sequence, sequence);
        assert_eq!(d.message.attempt, 1);
        d.ack().await.unwrap();
    }
    // Past the ack wait: nothing comes back.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(consumer.next(SHORT).await.unwrap().is_none());
}

async fn a_duplicate_id_is_published_once(t: Target) {
    let broker = t.broker().await;
    let first = broker.publish(msg("events.a", "same")).await.unwrap();
    let again = broker.publish(msg("events.a", "same")).await.unwrap();
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!(again.sequence, first.sequence);
    broker.publish(msg("events.a", "other")).await.unwrap();
    assert_eq!(broker.message_count().await.unwrap(), 2);
    let mut consumer = broker.consumer(config("g", "events.>")).await.unwrap();
    let ids = [next(&mut consumer).await, next(&mut consumer).await];
    assert_eq!(ids[0].message.id, "same");
    assert_eq!(ids[1].message.id, "other");
    for d in ids {
        d.ack().await.unwrap();
    }
    assert!(consumer.next(SHORT).await.unwrap().is_none());
}

async fn an_unacknowledged_delivery_is_redelivered_after_ack_wait(t: Target) {
    let broker = t.broker().await;
    broker.publish(msg("events.a", "m1")).await.unwrap();
    {
        // A member that takes the message and dies without a word.
        let mut dying = broker.consumer(config("g", "events.>")).await.unwrap();
        let d = next(&mut dying).await;
        assert_eq!(d.message.attempt, 1);
        std::mem::forget(d);
    }
    let mut consumer = broker.consumer(config("g", "events.>")).await.unwrap();
    let started = std::time::Instant::now();
    let again = next(&mut consumer).await;
    assert_eq!(again.message.id, "m1");
    assert_eq!(again.message.attempt, 2);
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "redelivered before the ack wait"
    );
    again.ack().await.unwrap();
}

async fn a_nak_redelivers_after_its_delay(t: Target) {
    let broker = t.broker().await;
    let mut consumer = broker.consumer(config("g", "events.>")).await.unwrap();
    broker.publish(msg("events.a", "m1")).await.unwrap();
    let d = next(&mut consumer).await;
    let naked = std::time::Instant::now();
    d.nak(Duration::from_millis(800), "database unavailable")
        .await
        .unwrap();
    let again = next(&mut consumer).await;
    assert!(naked.elapsed() >= Duration::from_millis(700));
    assert_eq!(again.message.id, "m1");
    assert_eq!(again.message.attempt, 2);
    again.ack().await.unwrap();
}

async fn progress_keeps_a_long_job_from_being_redelivered(t: Target) {
    let broker = t.broker().await;
    let mut worker = broker.consumer(config("g", "events.>")).await.unwrap();
    let mut other = broker.consumer(config("g", "events.>")).await.unwrap();
    broker.publish(msg("events.a", "long")).await.unwrap();
    let d = next(&mut worker).await;
    // Three ack waits of work, reporting progress twice a wait.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        d.progress().await.unwrap();
        assert!(
            other
                .next(Duration::from_millis(10))
                .await
                .unwrap()
                .is_none(),
            "redelivered while the job was reporting progress"
        );
    }
    d.ack().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(other.next(SHORT).await.unwrap().is_none());
}

async fn members_of_a_group_share_the_messages(t: Target) {
    let broker = t.broker().await;
    let mut a = broker
        .consumer(config("workers", "events.>"))
        .await
        .unwrap();
    let mut b = broker
        .consumer(config("workers", "events.>"))
        .await
        .unwrap();
    for i in 0..20 {
        broker
            .publish(msg("events.a", &format!("m{i}")))
            .await
            .unwrap();
    }
    let mut seen_a = Vec::new();
    let mut seen_b = Vec::new();
    // Each member holds what it takes until both have had their turns.
    let mut held = Vec::new();
    while seen_a.len() + seen_b.len() < 20 {
        if let Some(d) = a.next(SHORT).await.unwrap() {
            seen_a.push(d.message.id.clone());
            held.push(d);
        }
        if let Some(d) = b.next(SHORT).await.unwrap() {
            seen_b.push(d.message.id.clone());
            held.push(d);
        }
    }
    for d in held {
        d.ack().await.unwrap();
    }
    assert!(
        !seen_a.is_empty() && !seen_b.is_empty(),
        "one member got everything"
    );
    let all: HashSet<_> = seen_a.iter().chain(&seen_b).collect();
    assert_eq!(all.len(), 20, "a message went to both members");
    assert!(a.next(SHORT).await.unwrap().is_none());
    assert!(b.next(SHORT).await.unwrap().is_none());
}

async fn every_group_sees_every_message_it_filters_for(t: Target) {
    let broker = t.broker().await;
    let mut everything = broker.consumer(config("all", "events.>")).await.unwrap();
    let mut received = broker
        .consumer(config("pipeline", "events.submission.received.*"))
        .await
        .unwrap();
    broker
        .publish(msg("events.submission.received.northwind", "s1"))
        .await
        .unwrap();
    broker
        .publish(msg("events.policy.created.northwind", "p1"))
        .await
        .unwrap();
    broker
        .publish(msg("events.submission.received.harbour", "s2"))
        .await
        .unwrap();
    let mut all = Vec::new();
    for _ in 0..3 {
        let d = next(&mut everything).await;
        all.push(d.message.id.clone());
        d.ack().await.unwrap();
    }
    assert_eq!(all, ["s1", "p1", "s2"]);
    let mut only = Vec::new();
    for _ in 0..2 {
        let d = next(&mut received).await;
        only.push(d.message.id.clone());
        d.ack().await.unwrap();
    }
    assert_eq!(only, ["s1", "s2"]);
    assert!(received.next(SHORT).await.unwrap().is_none());
    // A group created later still reads the stream from its start.
    let mut late = broker.consumer(config("late", "events.>")).await.unwrap();
    assert_eq!(next(&mut late).await.message.id, "s1");
}

async fn groups_and_messages_survive_a_restart(t: Target) {
    {
        let broker = t.broker().await;
        let mut consumer = broker.consumer(config("g", "events.>")).await.unwrap();
        for i in 0..3 {
            broker
                .publish(msg("events.a", &format!("m{i}")))
                .await
                .unwrap();
        }
        next(&mut consumer).await.ack().await.unwrap();
        // m1 is taken and never settled; m2 is never taken.
        std::mem::forget(next(&mut consumer).await);
    }
    let broker = t.broker().await;
    assert!(
        broker
            .publish(msg("events.a", "m0"))
            .await
            .unwrap()
            .duplicate,
        "the de-duplication ids were lost"
    );
    let mut consumer = broker.consumer(config("g", "events.>")).await.unwrap();
    let mut ids = BTreeSet::new();
    for _ in 0..2 {
        let d = next(&mut consumer).await;
        ids.insert(d.message.id.clone());
        d.ack().await.unwrap();
    }
    assert_eq!(ids, BTreeSet::from(["m1".to_owned(), "m2".to_owned()]));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(consumer.next(SHORT).await.unwrap().is_none());
}

async fn a_poison_message_becomes_a_dead_letter_and_blocks_nothing(t: Target) {
    let broker = t.broker().await;
    let limited = ConsumerConfig {
        max_deliveries: 3,
        ..config("g", "events.>")
    };
    let mut consumer = broker.consumer(limited).await.unwrap();
    broker.publish(msg("events.a", "poison")).await.unwrap();
    broker.publish(msg("events.a", "fine")).await.unwrap();
    let mut fine = 0;
    let mut poison_attempts = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        let Some(d) = consumer.next(SHORT).await.unwrap() else {
            if poison_attempts.len() == 3 && fine == 1 {
                break;
            }
            continue;
        };
        if d.message.id == "poison" {
            poison_attempts.push(d.message.attempt);
            let reason = format!("cannot parse, attempt {}", d.message.attempt);
            d.nak(Duration::from_millis(100), &reason).await.unwrap();
        } else {
            fine += 1;
            d.ack().await.unwrap();
        }
    }
    assert_eq!(fine, 1);
    assert_eq!(poison_attempts, [1, 2, 3]);
    let dead = broker.dead_letters(0, 10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    let letter = &dead[0];
    assert_eq!(letter.message_id, "poison");
    assert_eq!(letter.group, "g");
    assert_eq!(letter.subject, "events.a");
    assert_eq!(letter.payload, b"poison");
    assert_eq!(letter.deliveries, 3);
    assert!(
        letter.reason.contains("cannot parse, attempt 3"),
        "{}",
        letter.reason
    );
    assert_eq!(
        broker.dead_letter(letter.id).await.unwrap().as_ref(),
        Some(letter)
    );
    assert!(consumer.next(SHORT).await.unwrap().is_none());
}

async fn a_dead_letter_can_be_redriven(t: Target) {
    let broker = t.broker().await;
    let mut consumer = broker.consumer(config("g", "events.>")).await.unwrap();
    broker.publish(msg("events.a", "bad")).await.unwrap();
    next(&mut consumer)
        .await
        .dead_letter("mapping 'x' does not exist")
        .await
        .unwrap();
    let dead = broker.dead_letters(0, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, "mapping 'x' does not exist");
    assert_eq!(dead[0].deliveries, 1);
    assert!(consumer.next(SHORT).await.unwrap().is_none());

    let republished = broker.redrive(dead[0].id).await.unwrap().expect("redriven");
    assert!(!republished.duplicate);
    assert!(broker.dead_letters(0, 10).await.unwrap().is_empty());
    assert!(broker.redrive(dead[0].id).await.unwrap().is_none());
    let d = next(&mut consumer).await;
    assert_eq!(d.message.subject, "events.a");
    assert_eq!(d.message.payload, b"bad");
    assert_ne!(d.message.id, "bad", "a redriven message needs a new id");
    d.ack().await.unwrap();
}

async fn lag_counts_pending_and_unacknowledged(t: Target) {
    let broker = t.broker().await;
    let mut consumer = broker.consumer(config("g", "events.x.>")).await.unwrap();
    assert_eq!(broker.lag("g").await.unwrap(), Lag::default());
    for i in 0..3 {
        broker
            .publish(msg("events.x.y", &format!("m{i}")))
            .await
            .unwrap();
    }
    broker.publish(msg("events.other", "o")).await.unwrap();
    let lag = broker.lag("g").await.unwrap();
    assert_eq!(lag.pending + lag.unacknowledged, 3, "{lag:?}");
    let d = next(&mut consumer).await;
    let lag = broker.lag("g").await.unwrap();
    assert_eq!((lag.pending, lag.unacknowledged), (2, 1), "{lag:?}");
    d.ack().await.unwrap();
    let lag = broker.lag("g").await.unwrap();
    assert_eq!((lag.pending, lag.unacknowledged), (2, 0), "{lag:?}");
    assert!(broker.lag("no-such-group").await.is_err());
}

async fn headers_travel_with_the_message(t: Target) {
    let broker = t.broker().await;
    let mut consumer = broker.consumer(config("g", "events.>")).await.unwrap();
    let mut out = msg("events.a", "h");
    out.headers.insert(
        "traceparent".into(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
    );
    out.headers.insert("carrier".into(), "northwind".into());
    broker.publish(out.clone()).await.unwrap();
    let d = next(&mut consumer).await;
    assert_eq!(d.message.headers, out.headers);
    d.ack().await.unwrap();
}
