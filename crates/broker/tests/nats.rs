//! What only the NATS broker has to show, beyond the conformance suite: its namespacing on the
//! server, joining a group with another filter, members that die holding a message, and
//! behaviour while the server is down.
//!
//! Most tests use the server at `nats://127.0.0.1:4222` (or `CARRIERHUB_TEST_NATS_URL`), each
//! in a namespace of its own. The outage test starts a private `nats-server` (from `PATH`, or
//! `CARRIERHUB_TEST_NATS_SERVER`) on a free port so that it can stop and restart it. Without a
//! server, or the binary, the tests skip with a notice, except under `CI=true`, where they fail.

use async_nats::jetstream;
use carrierhub_broker::testing::{free_port, NatsServer};
use carrierhub_broker::*;
use carrierhub_store::testing::running_in_ci;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn url() -> String {
    std::env::var("CARRIERHUB_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

fn unique_namespace(label: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "test-{label}-{}x{}x{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A broker in a namespace of its own on the shared server; the namespace is deleted at the end.
struct Namespaced {
    broker: NatsBroker,
    namespace: String,
}

impl Namespaced {
    async fn connect(label: &str) -> Option<Self> {
        let url = url();
        let namespace = unique_namespace(label);
        match NatsBroker::connect_namespaced(&url, &namespace).await {
            Ok(broker) => Some(Self { broker, namespace }),
            Err(e) if running_in_ci() => panic!("NATS at {url} is required under CI=true: {e}"),
            Err(e) => {
                eprintln!("skipping: NATS at {url} is not reachable: {e}");
                None
            }
        }
    }

    async fn cleanup(self) {
        self.broker.delete_namespace().await.unwrap();
    }
}

fn config(group: &str, filter: &str) -> ConsumerConfig {
    ConsumerConfig {
        ack_wait: Duration::from_secs(1),
        max_deliveries: 0,
        ..ConsumerConfig::new(group, filter)
    }
}

fn msg(subject: &str, id: &str) -> Outgoing {
    Outgoing::new(subject, id, id.as_bytes().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_and_subjects_are_prefixed_by_the_namespace() {
    let Some(t) = Namespaced::connect("prefix").await else {
        return;
    };
    let mut first = msg("events.policy.created.northwind", "p1");
    first.headers.insert("empty".into(), String::new());
    t.broker.publish(first).await.unwrap();
    assert!(t.broker.describe().contains(&t.namespace));

    // On the server: the namespace's stream, holding the subject under the namespace.
    let js = jetstream::new(async_nats::connect(url()).await.unwrap());
    let stream = js
        .get_stream(format!("{}-messages", t.namespace))
        .await
        .unwrap();
    let stored = stream.get_raw_message(1).await.unwrap();
    assert_eq!(
        stored.subject.as_str(),
        format!("{}.events.policy.created.northwind", t.namespace)
    );
    js.get_stream(format!("{}-dead-letters", t.namespace))
        .await
        .unwrap();

    // To the caller: its own subject, and only its own headers (here, one with an empty value).
    let mut consumer = t
        .broker
        .consumer(config("g", "events.policy.>"))
        .await
        .unwrap();
    let d = consumer
        .next(Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.message.subject, "events.policy.created.northwind");
    assert_eq!(
        d.message.headers,
        [("empty".to_owned(), String::new())].into(),
        "{:?}",
        d.message.headers
    );
    d.ack().await.unwrap();

    // A caller may not set the server's headers.
    let mut reserved = msg("events.a", "r");
    reserved
        .headers
        .insert("Nats-Expected-Stream".into(), "x".into());
    assert!(matches!(
        t.broker.publish(reserved).await,
        Err(BrokerError::Invalid(_))
    ));
    assert!(matches!(
        t.broker.publish(msg("events.*", "w")).await,
        Err(BrokerError::Invalid(_))
    ));
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_a_group_with_another_filter_is_an_error() {
    let Some(t) = Namespaced::connect("filter").await else {
        return;
    };
    t.broker.consumer(config("g", "events.>")).await.unwrap();
    match t.broker.consumer(config("g", "events.policy.>")).await {
        Err(BrokerError::Invalid(e)) => assert!(e.contains("events.>"), "{e}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("joined a group with another filter"),
    }
    // The same filter with another ack_wait joins.
    let longer = ConsumerConfig {
        ack_wait: Duration::from_secs(7),
        ..config("g", "events.>")
    };
    t.broker.consumer(longer).await.unwrap();
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_members_died_becomes_a_dead_letter() {
    let Some(t) = Namespaced::connect("died").await else {
        return;
    };
    let limited = ConsumerConfig {
        max_deliveries: 2,
        ..config("g", "events.>")
    };
    t.broker.publish(msg("events.a", "crash")).await.unwrap();
    t.broker.publish(msg("events.a", "fine")).await.unwrap();
    // Two members take "crash" in turn and die holding it.
    for attempt in 1..=2 {
        let mut dying = t.broker.consumer(limited.clone()).await.unwrap();
        let d = dying.next(Duration::from_secs(5)).await.unwrap().unwrap();
        assert_eq!(
            (d.message.id.as_str(), d.message.attempt),
            ("crash", attempt)
        );
        std::mem::forget(d);
        if attempt == 1 {
            let fine = dying.next(Duration::from_secs(5)).await.unwrap().unwrap();
            assert_eq!(fine.message.id, "fine");
            fine.ack().await.unwrap();
        }
    }
    // The next member never sees it: it is dead-lettered on arrival.
    let mut consumer = t.broker.consumer(limited).await.unwrap();
    assert!(consumer
        .next(Duration::from_secs(3))
        .await
        .unwrap()
        .is_none());
    let dead = t.broker.dead_letters(0, 10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].message_id, "crash");
    assert_eq!(dead[0].deliveries, 2);
    assert!(
        dead[0].reason.contains("not acknowledged within ack_wait"),
        "{}",
        dead[0].reason
    );
    assert_eq!(
        t.broker.lag("g").await.unwrap(),
        Lag::default(),
        "the dead letter is still pending"
    );
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_by_id_from_after() {
    let Some(t) = Namespaced::connect("list").await else {
        return;
    };
    let mut consumer = t.broker.consumer(config("g", "events.>")).await.unwrap();
    for i in 0..4 {
        t.broker
            .publish(msg("events.a", &format!("m{i}")))
            .await
            .unwrap();
    }
    for i in 0..4 {
        let d = consumer
            .next(Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        d.dead_letter(&format!("reason\n{i}")).await.unwrap();
    }
    let all = t.broker.dead_letters(0, 10).await.unwrap();
    let ids: Vec<_> = all.iter().map(|d| d.message_id.as_str()).collect();
    assert_eq!(ids, ["m0", "m1", "m2", "m3"]);
    assert_eq!(all[0].reason, "reason 0", "a header holds one line");
    // Redriving one leaves a gap the listing steps over.
    t.broker.redrive(all[1].id).await.unwrap().unwrap();
    let page = t.broker.dead_letters(all[0].id, 2).await.unwrap();
    let ids: Vec<_> = page.iter().map(|d| d.message_id.as_str()).collect();
    assert_eq!(ids, ["m2", "m3"]);
    assert!(t
        .broker
        .dead_letters(all[3].id, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(t.broker.dead_letter(all[1].id).await.unwrap().is_none());

    // Redriven twice, a message's id names its original once.
    let again = consumer
        .next(Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.message.id, format!("m1+redrive.{}", all[1].id));
    again.dead_letter("still broken").await.unwrap();
    let letter = t
        .broker
        .dead_letters(all[3].id, 10)
        .await
        .unwrap()
        .remove(0);
    t.broker.redrive(letter.id).await.unwrap().unwrap();
    let third = consumer
        .next(Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(third.message.id, format!("m1+redrive.{}", letter.id));
    third.ack().await.unwrap();
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_no_server_is_unavailable() {
    let port = free_port();
    let started = Instant::now();
    match NatsBroker::connect(&format!("nats://127.0.0.1:{port}")).await {
        Err(BrokerError::Unavailable(_)) => {}
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("connected to nothing"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_during_an_outage_and_work_again_after_it() {
    let Some(mut server) = NatsServer::start_or_skip() else {
        return;
    };
    let broker = NatsBroker::connect_namespaced(&server.url(), "outage")
        .await
        .unwrap();
    let mut consumer = broker.consumer(config("g", "events.>")).await.unwrap();
    broker.publish(msg("events.a", "before")).await.unwrap();

    server.kill();
    let started = Instant::now();
    assert!(matches!(
        broker.publish(msg("events.a", "during")).await,
        Err(BrokerError::Unavailable(_))
    ));
    assert!(matches!(
        consumer.next(Duration::from_secs(1)).await,
        Err(BrokerError::Unavailable(_))
    ));
    assert!(matches!(
        broker.ping().await,
        Err(BrokerError::Unavailable(_))
    ));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "calls hung: {:?}",
        started.elapsed()
    );

    // The same store: the stream, the group and the message are still there. The client
    // reconnects by itself.
    server.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match broker.publish(msg("events.a", "after")).await {
            Ok(_) => break,
            Err(BrokerError::Unavailable(e)) => {
                assert!(Instant::now() < deadline, "no reconnect: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    broker.ping().await.unwrap();
    let mut ids = Vec::new();
    while !ids.iter().any(|id| id == "after") {
        let d = consumer
            .next(Duration::from_secs(5))
            .await
            .unwrap()
            .expect("the messages after the restart");
        ids.push(d.message.id.clone());
        d.ack().await.unwrap();
    }
    assert_eq!(ids[0], "before", "{ids:?}");
}
