//! The embedded broker beyond the conformance suite: opening an unmigrated database, members
//! and publishers racing on one group, and the protocol's corners (an expired last delivery,
//! a settlement from an earlier delivery, a group's fixed filter). Each test runs on SQLite
//! and on PostgreSQL (skipped without a server, except under `CI=true`).

use carrierhub_broker::*;
use carrierhub_store::testing::TestDatabase;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);
const SHORT: Duration = Duration::from_millis(300);

/// A migrated store database of its own.
enum Db {
    Sqlite(tempfile::TempDir),
    Postgres(TestDatabase),
}

impl Db {
    async fn sqlite() -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        carrierhub_store::migrate(dir.path().join("hub.db").to_str().unwrap())
            .await
            .unwrap();
        Some(Self::Sqlite(dir))
    }

    async fn postgres() -> Option<Self> {
        let db = TestDatabase::create_or_skip("embedded broker").await?;
        carrierhub_store::migrate(db.url()).await.unwrap();
        Some(Self::Postgres(db))
    }

    fn url(&self) -> String {
        match self {
            Self::Sqlite(dir) => dir.path().join("hub.db").to_str().unwrap().to_owned(),
            Self::Postgres(db) => db.url().to_owned(),
        }
    }

    /// The group's cursor, read from its row.
    async fn cursor(&self, group: &str) -> i64 {
        let sql = "SELECT next_sequence FROM broker_groups WHERE name = $1";
        match self {
            Self::Sqlite(_) => {
                let pool = sqlx::SqlitePool::connect(&self.url()).await.unwrap();
                sqlx::query_scalar(sql)
                    .bind(group)
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
            Self::Postgres(db) => {
                let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
                sqlx::query_scalar(sql)
                    .bind(group)
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
        }
    }

    async fn last_sequence(&self) -> i64 {
        let sql = "SELECT MAX(sequence) FROM broker_messages";
        match self {
            Self::Sqlite(_) => {
                let pool = sqlx::SqlitePool::connect(&self.url()).await.unwrap();
                sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
            }
            Self::Postgres(db) => {
                let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
                sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
            }
        }
    }

    /// A broker of its own (its own pool: another process, as far as the database knows).
    async fn broker(&self) -> Arc<EmbeddedBroker> {
        Arc::new(EmbeddedBroker::open(&self.url()).await.unwrap())
    }
}

/// Runs each named test on SQLite and on PostgreSQL.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(db) = super::Db::sqlite().await { super::$name(db).await }
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(db) = super::Db::postgres().await { super::$name(db).await }
                }
            )*
        }
    };
}

on_both!(
    racing_publishers_and_members_deliver_every_message_once,
    an_expired_last_delivery_becomes_a_dead_letter_saying_so,
    a_settlement_from_an_earlier_delivery_changes_nothing,
    a_group_keeps_the_filter_it_was_created_with,
    a_group_passes_over_the_messages_it_does_not_read,
    a_publish_wakes_a_waiting_member,
);

fn config(group: &str, filter: &str, ack_wait: Duration, max_deliveries: u32) -> ConsumerConfig {
    ConsumerConfig {
        ack_wait,
        max_deliveries,
        ..ConsumerConfig::new(group, filter)
    }
}

fn msg(subject: &str, id: &str) -> Outgoing {
    Outgoing::new(subject, id, id.as_bytes().to_vec())
}

/// Publishers on several connections while members on several others take from one group:
/// no message is skipped (a cursor passing a sequence still to commit) and none is handed
/// out twice (two members advancing the cursor from the same value).
async fn racing_publishers_and_members_deliver_every_message_once(db: Db) {
    const PUBLISHERS: usize = 4;
    const EACH: usize = 40;
    const MEMBERS: usize = 3;
    let total = PUBLISHERS * EACH;
    let setup = db.broker().await;
    // Created first, so that the members start before the first message.
    drop(
        setup
            .consumer(config("workers", "events.>", Duration::from_secs(60), 0))
            .await
            .unwrap(),
    );

    let mut members = Vec::new();
    for _ in 0..MEMBERS {
        let broker = db.broker().await;
        members.push(tokio::spawn(async move {
            let mut consumer = broker
                .consumer(config("workers", "events.>", Duration::from_secs(60), 0))
                .await
                .unwrap();
            let mut received = Vec::new();
            let mut idle = 0;
            // Until nothing has come for a while after the publishers are done.
            while idle < 5 {
                match consumer.next(SHORT).await.unwrap() {
                    Some(d) => {
                        idle = 0;
                        received.push((d.message.sequence, d.message.id.clone()));
                        assert_eq!(d.message.attempt, 1);
                        d.ack().await.unwrap();
                    }
                    None => idle += 1,
                }
            }
            received
        }));
    }
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let broker = db.broker().await;
        publishers.push(tokio::spawn(async move {
            for i in 0..EACH {
                let id = format!("p{p}-m{i}");
                let published = broker
                    .publish(msg(&format!("events.p{p}"), &id))
                    .await
                    .unwrap();
                assert!(!published.duplicate);
            }
        }));
    }
    for p in publishers {
        p.await.unwrap();
    }

    let mut all = Vec::new();
    for m in members {
        let received = m.await.unwrap();
        assert!(
            received.windows(2).all(|w| w[0].0 < w[1].0),
            "a member's new messages come in sequence order"
        );
        all.extend(received);
    }
    let ids: HashSet<_> = all.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(all.len(), ids.len(), "a message was handed out twice");
    assert_eq!(ids.len(), total, "a message was never handed out");
    assert_eq!(setup.lag("workers").await.unwrap(), Lag::default());
}

async fn an_expired_last_delivery_becomes_a_dead_letter_saying_so(db: Db) {
    let broker = db.broker().await;
    let limited = config("g", "events.>", Duration::from_millis(300), 2);
    let mut consumer = broker.consumer(limited).await.unwrap();
    broker.publish(msg("events.a", "stuck")).await.unwrap();
    broker.publish(msg("events.a", "next")).await.unwrap();

    let first = consumer.next(WAIT).await.unwrap().unwrap();
    assert_eq!(
        (first.message.id.as_str(), first.message.attempt),
        ("stuck", 1)
    );
    first
        .nak(Duration::ZERO, "downstream timed out")
        .await
        .unwrap();
    let second = consumer.next(WAIT).await.unwrap().unwrap();
    assert_eq!(
        (second.message.id.as_str(), second.message.attempt),
        ("stuck", 2)
    );
    // The member dies with its last allowed delivery.
    std::mem::forget(second);

    let next = consumer.next(WAIT).await.unwrap().unwrap();
    assert_eq!(next.message.id, "next");
    next.ack().await.unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    let letter = loop {
        // The expiry is noticed by the next claim after the ack wait.
        assert!(consumer.next(SHORT).await.unwrap().is_none());
        if let Some(letter) = broker.dead_letters(0, 10).await.unwrap().pop() {
            break letter;
        }
        assert!(std::time::Instant::now() < deadline, "never dead-lettered");
    };
    assert_eq!(letter.message_id, "stuck");
    assert_eq!(letter.deliveries, 2);
    assert_eq!(
        letter.reason,
        "not acknowledged within 300ms after 2 deliveries \
         (an earlier delivery failed: downstream timed out)"
    );
    assert_eq!(broker.lag("g").await.unwrap(), Lag::default());
}

async fn a_settlement_from_an_earlier_delivery_changes_nothing(db: Db) {
    let broker = db.broker().await;
    let one_second = config("g", "events.>", Duration::from_secs(1), 0);
    let mut slow = broker.consumer(one_second.clone()).await.unwrap();
    let mut other = broker.consumer(one_second).await.unwrap();
    broker.publish(msg("events.a", "m1")).await.unwrap();

    let late = slow.next(WAIT).await.unwrap().unwrap();
    // The ack wait runs out; another member has the message now.
    let current = other.next(WAIT).await.unwrap().unwrap();
    assert_eq!(current.message.attempt, 2);

    late.progress().await.unwrap();
    late.nak(Duration::ZERO, "too late").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        slow.next(Duration::from_millis(10))
            .await
            .unwrap()
            .is_none(),
        "the late nak made the message due again"
    );
    let lag = broker.lag("g").await.unwrap();
    assert_eq!((lag.pending, lag.unacknowledged), (0, 1));
    current.ack().await.unwrap();
    assert_eq!(broker.lag("g").await.unwrap(), Lag::default());
    assert!(broker.dead_letters(0, 10).await.unwrap().is_empty());
}

async fn a_group_keeps_the_filter_it_was_created_with(db: Db) {
    let broker = db.broker().await;
    broker
        .consumer(config("g", "events.>", WAIT, 0))
        .await
        .unwrap();
    let refused = broker
        .consumer(config("g", "events.policy.>", WAIT, 0))
        .await
        .err()
        .expect("another filter is refused");
    assert!(
        refused.to_string().contains("'events.>'"),
        "the message names the group's filter: {refused}"
    );
    // The same filter with other settings joins (the last to join sets them).
    broker
        .consumer(config("g", "events.>", SHORT, 3))
        .await
        .unwrap();
    for bad in ["", "events.>.x", "bad group"] {
        assert!(broker.consumer(config(bad, bad, WAIT, 0)).await.is_err());
    }
    assert!(broker.publish(msg("events.*", "w")).await.is_err());
}

/// A group reading a sliver of a busy stream: its claims pass over the rest in batches and
/// leave the cursor at the stream's end, so that its idle polls stay cheap.
async fn a_group_passes_over_the_messages_it_does_not_read(db: Db) {
    let broker = db.broker().await;
    let mut pipeline = broker
        .consumer(config("pipeline", "events.submission.received.*", WAIT, 0))
        .await
        .unwrap();
    // More than one claim transaction scans (10 batches of 200), with subjects that share
    // the filter's prefix and subjects that do not.
    for i in 0..2300 {
        let subject = if i % 10 == 0 {
            "events.policy.updated.acme"
        } else {
            "events.submission.received.acme.late"
        };
        broker
            .publish(msg(subject, &format!("o{i}")))
            .await
            .unwrap();
    }
    broker
        .publish(msg("events.submission.received.acme", "wanted"))
        .await
        .unwrap();
    for i in 0..5 {
        broker
            .publish(msg("events.policy.updated.acme", &format!("after{i}")))
            .await
            .unwrap();
    }
    let lag = broker.lag("pipeline").await.unwrap();
    assert_eq!((lag.pending, lag.unacknowledged), (1, 0));
    let d = pipeline.next(WAIT).await.unwrap().unwrap();
    assert_eq!(d.message.id, "wanted");
    d.ack().await.unwrap();
    assert!(pipeline.next(SHORT).await.unwrap().is_none());
    assert_eq!(db.cursor("pipeline").await, db.last_sequence().await + 1);
    assert_eq!(broker.lag("pipeline").await.unwrap(), Lag::default());
}

/// A member waiting in `next` gets a new message without waiting out its poll interval: from
/// its own broker directly, and on PostgreSQL from another process's broker too (`NOTIFY`).
async fn a_publish_wakes_a_waiting_member(db: Db) {
    let broker = db.broker().await;
    let publisher = match db {
        Db::Sqlite(_) => broker.clone(),
        Db::Postgres(_) => db.broker().await,
    };
    let mut consumer = broker
        .consumer(config("g", "events.>", WAIT, 0))
        .await
        .unwrap();
    let mut latencies = Vec::new();
    for i in 0..7 {
        let waiting = tokio::spawn(async move {
            let d = consumer.next(WAIT).await.unwrap().expect("a message");
            let arrived = std::time::Instant::now();
            d.ack().await.unwrap();
            (consumer, arrived)
        });
        // Long enough for the member's polls to have backed off to their longest pause.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let sent = std::time::Instant::now();
        publisher
            .publish(msg("events.a", &format!("m{i}")))
            .await
            .unwrap();
        let (back, arrived) = waiting.await.unwrap();
        consumer = back;
        latencies.push(arrived.duration_since(sent));
    }
    latencies.sort();
    // Polling alone takes up to the longest pause (100ms; about 70ms at this rhythm); being
    // woken, a few milliseconds.
    assert!(
        latencies[latencies.len() / 2] < Duration::from_millis(50),
        "{latencies:?}"
    );
}

#[tokio::test]
async fn a_database_without_the_broker_tables_is_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    let e = EmbeddedBroker::open(missing.to_str().unwrap())
        .await
        .err()
        .expect("a missing file is refused");
    assert!(e.to_string().contains("carrierhub migrate"), "{e}");
    assert!(!missing.exists(), "opening the broker created the file");

    // A SQLite file of another application (or an old store): no broker tables.
    let other = dir.path().join("other.db");
    unrelated_sqlite_file(&other).await;
    let e = EmbeddedBroker::open(other.to_str().unwrap())
        .await
        .err()
        .expect("an unmigrated file is refused");
    assert!(
        e.to_string().contains("broker's tables are missing")
            && e.to_string().contains("carrierhub migrate"),
        "{e}"
    );

    if let Some(db) = TestDatabase::create_or_skip("an unmigrated PostgreSQL database").await {
        let e = EmbeddedBroker::open(db.url())
            .await
            .err()
            .expect("an unmigrated database is refused");
        assert!(e.to_string().contains("carrierhub migrate"), "{e}");
    }
}

/// Creates a SQLite file with one unrelated table.
async fn unrelated_sqlite_file(path: &std::path::Path) {
    use sqlx::{ConnectOptions, Connection};
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    sqlx::query("CREATE TABLE notes (text TEXT)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

/// Writes abandoned at random points (a select whose other branch won, a request past its
/// time limit) never leave the SQLite file's write lock taken: right after them, another
/// connection that will not wait long can begin a write, and the broker still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_writes_never_keep_the_sqlite_write_lock() {
    use rand::Rng;
    use sqlx::{ConnectOptions, Connection};
    let db = Db::sqlite().await.unwrap();
    let broker = db.broker().await;
    let mut consumer = broker
        .consumer(config("g", "feeds.>", Duration::from_secs(30), 1000))
        .await
        .unwrap();
    let mut held: Option<Delivery> = None;
    for i in 0..1000 {
        let pause = Duration::from_micros(rand::rng().random_range(0..3000));
        let publish = broker.publish(msg("feeds.a", &format!("m{i}")));
        let progress = async {
            match &held {
                Some(d) => d.progress().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = publish => {}
            next = consumer.next(Duration::ZERO) => {
                if let Ok(Some(d)) = next {
                    held = Some(d);
                }
            }
            _ = progress => {}
            _ = tokio::time::sleep(pause) => {}
        }
    }
    // An abandoned transaction's rollback may still be on its way to SQLite's worker.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut other = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db.url())
        .busy_timeout(Duration::from_secs(3))
        .connect()
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .expect("an abandoned write still holds the write lock");
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    other.close().await.unwrap();
    tokio::time::timeout(WAIT, broker.publish(msg("feeds.a", "last")))
        .await
        .expect("the broker is stuck")
        .unwrap();
}
