//! Fault injection: ingest about 105,000 records while processes die, and compare the
//! result with an uninterrupted run of the same feeds.
//!
//! - On PostgreSQL and NATS JetStream with three worker processes, one of them killed with
//!   SIGKILL every few seconds and restarted;
//! - the same, with the NATS server itself killed and restarted in the middle;
//! - embedded (SQLite and the embedded broker) with the single process killed with SIGKILL
//!   every few seconds and restarted.
//!
//! Afterwards the canonical tables (every policy and claim version, every premium and claim
//! transaction, the rejections, the money totals) equal those of the uninterrupted run, and
//! every outbox event was published exactly once.
//!
//! Each scenario starts its own NATS server (`nats-server` from the PATH or /usr/sbin, or
//! `CARRIERHUB_TEST_NATS_SERVER`), so restarting it disturbs nothing else. Without
//! PostgreSQL or nats-server the scenarios needing them skip with a notice, except under
//! `CI=true`, where they fail.

use crate::common;

use carrierhub_broker::testing::NatsServer;
use carrierhub_broker::{Broker, ConsumerConfig, EmbeddedBroker, NatsBroker};
use carrierhub_store::testing::TestDatabase;
use common::Env;
use rand::Rng;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// Policies per carrier and delivery: seven carriers, two deliveries and their claims make
/// about 105,000 records, enough for a kill every few seconds to land mid-batch many times
/// (each scenario asserts at least three).
const POLICIES: usize = 7_000;
const DEADLINE: Duration = Duration::from_secs(240);

/// One file to submit, in order within its carrier.
#[derive(Clone, Debug)]
struct Feed {
    carrier: String,
    mapping: PathBuf,
    file: PathBuf,
}

/// The feeds and the uninterrupted run's tables, made once for all scenarios.
struct Reference {
    _dir: tempfile::TempDir,
    feeds: Vec<Feed>,
    snapshot: Snapshot,
    records: u64,
}

static REFERENCE: OnceCell<Option<Reference>> = OnceCell::const_new();

fn generate(dir: &Path) -> Vec<Feed> {
    let env_bin = common::BIN;
    for delivery in ["1", "2"] {
        let out = Command::new(env_bin)
            .args(["gen", "--out"])
            .arg(dir)
            .args(["--policies", &POLICIES.to_string(), "--delivery", delivery])
            .args(["--defect-rate", "0.002"])
            .output()
            .expect("run gen");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut feeds = Vec::new();
    let carriers: Vec<String> = names
        .iter()
        .filter_map(|n| n.strip_suffix("-policies.toml").map(str::to_owned))
        .collect();
    for carrier in &carriers {
        let find = |prefix: &str| {
            names
                .iter()
                .find(|n| n.starts_with(prefix) && !n.ends_with(".toml"))
                .unwrap_or_else(|| panic!("no {prefix}* in {names:?}"))
                .clone()
        };
        let d1 = find(&format!("{carrier}-policies."));
        let d2 = find(&format!("{carrier}-policies-d2."));
        let claims = find(&format!("{carrier}-claims."));
        let policy_mapping = dir.join(format!("{carrier}-policies.toml"));
        let claim_mapping = dir.join(format!("{carrier}-claims.toml"));
        // A carrier's claims refer to its policies: first delivery, claims, second delivery.
        for (file, mapping) in [
            (d1, &policy_mapping),
            (claims, &claim_mapping),
            (d2, &policy_mapping),
        ] {
            feeds.push(Feed {
                carrier: carrier.clone(),
                mapping: mapping.clone(),
                file: dir.join(file),
            });
        }
    }
    assert_eq!(carriers.len(), 7, "{carriers:?}");
    feeds
}

async fn reference() -> Option<&'static Reference> {
    REFERENCE
        .get_or_init(|| async {
            let db = TestDatabase::create_or_skip("fault injection reference").await?;
            let dir = tempfile::tempdir().unwrap();
            let feeds = generate(dir.path());
            let env = Env::with_database(db.url());
            let mut records = 0;
            for f in &feeds {
                let s = env.ingest(&f.carrier, &f.mapping, &f.file);
                records += s["counts"]["received"].as_u64().unwrap();
            }
            let snapshot = Snapshot::take(db.url()).await;
            Some(Reference {
                _dir: dir,
                feeds,
                snapshot,
                records,
            })
        })
        .await
        .as_ref()
}

/// What the comparison covers, each as sorted text rows; amounts normalised so the same
/// value reads the same from either backend.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    tables: BTreeMap<&'static str, Vec<String>>,
}

const QUERIES: &[(&str, &str)] = &[
    (
        "policy versions",
        "SELECT p.carrier_id || '/' || p.policy_number || '#' || CAST(v.version AS TEXT) || ':' || v.content_hash, '' \
         FROM policy_versions v JOIN policies p ON p.id = v.policy_id",
    ),
    (
        "current policies",
        "SELECT carrier_id || '/' || policy_number || '#' || CAST(version AS TEXT) || ' ' || currency, CAST(premium AS TEXT) FROM policies",
    ),
    (
        "claim versions",
        "SELECT c.carrier_id || '/' || c.claim_number || '#' || CAST(v.version AS TEXT) || ':' || v.content_hash, '' \
         FROM claim_versions v JOIN claims c ON c.id = v.claim_id",
    ),
    (
        "premium transactions",
        "SELECT p.carrier_id || '/' || p.policy_number || ' ' || t.kind, CAST(t.amount AS TEXT) \
         FROM premium_transactions t JOIN policies p ON p.id = t.policy_id",
    ),
    (
        "claim transactions",
        "SELECT c.carrier_id || '/' || c.claim_number || ' ' || t.kind, CAST(t.amount AS TEXT) \
         FROM claim_transactions t JOIN claims c ON c.id = t.claim_id",
    ),
    (
        "rejections",
        "SELECT s.file_name || ':' || CAST(r.record_number AS TEXT) || ':' || COALESCE(r.field, ''), '' \
         FROM rejections r JOIN submissions s ON s.id = r.submission_id",
    ),
    (
        "change events",
        "SELECT event_type, '' FROM outbox WHERE event_type NOT LIKE 'submission.%'",
    ),
];

fn row_text(key: String, amount: String) -> String {
    if amount.is_empty() {
        key
    } else {
        let amount = Decimal::from_str(&amount)
            .unwrap_or_else(|e| panic!("amount {amount}: {e}"))
            .normalize();
        format!("{key} = {amount}")
    }
}

impl Snapshot {
    async fn take(store: &str) -> Self {
        let db = Db::open(store).await;
        let mut tables = BTreeMap::new();
        for (name, sql) in QUERIES {
            let mut rows: Vec<String> = db
                .pairs(sql)
                .await
                .into_iter()
                .map(|(key, amount)| row_text(key, amount))
                .collect();
            rows.sort();
            tables.insert(*name, rows);
        }
        db.close().await;
        Self { tables }
    }

    /// Fails naming the first difference of each table, rather than printing 200,000 rows.
    fn assert_same(&self, reference: &Self) {
        for (name, want) in &reference.tables {
            let got = &self.tables[name];
            assert!(!want.is_empty(), "the reference has no {name}");
            if got != want {
                let first = got
                    .iter()
                    .zip(want)
                    .find(|(g, w)| g != w)
                    .map(|(g, w)| format!("got {g:?}, want {w:?}"))
                    .unwrap_or_default();
                panic!(
                    "{name} differ: {} rows, want {}; first difference: {first}",
                    got.len(),
                    want.len()
                );
            }
        }
    }
}

/// Uploads every feed through the API, in order.
async fn upload_all(client: &reqwest::Client, base: &str, feeds: &[Feed]) -> Vec<i64> {
    let mut ids = Vec::new();
    for f in feeds {
        let form = reqwest::multipart::Form::new()
            .part(
                "file",
                reqwest::multipart::Part::bytes(std::fs::read(&f.file).unwrap())
                    .file_name(f.file.file_name().unwrap().to_string_lossy().into_owned()),
            )
            .text("mapping_file", std::fs::read_to_string(&f.mapping).unwrap());
        let r = client
            .post(format!("{base}/v1/carriers/{}/submissions", f.carrier))
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
        let body: serde_json::Value = r.json().await.unwrap();
        ids.push(body["id"].as_i64().unwrap());
    }
    ids
}

/// Either backend's database, for the few queries the comparison needs.
enum Db {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

impl Db {
    async fn open(store: &str) -> Self {
        if store.starts_with("postgres") {
            Self::Postgres(sqlx::PgPool::connect(store).await.unwrap())
        } else {
            Self::Sqlite(
                sqlx::SqlitePool::connect(&format!("sqlite://{store}"))
                    .await
                    .unwrap(),
            )
        }
    }

    /// The rows of a query selecting two text columns.
    async fn pairs(&self, sql: &str) -> Vec<(String, String)> {
        match self {
            Self::Postgres(pool) => sqlx::query_as(sql).fetch_all(pool).await.unwrap(),
            Self::Sqlite(pool) => sqlx::query_as(sql).fetch_all(pool).await.unwrap(),
        }
    }

    async fn close(self) {
        match self {
            Self::Postgres(pool) => pool.close().await,
            Self::Sqlite(pool) => pool.close().await,
        }
    }
}

/// Whether every submission is finished, read from the store (the API may be down).
async fn all_finished(store: &str) -> bool {
    let db = Db::open(store).await;
    let open = db
        .pairs(
            "SELECT CAST(COUNT(*) AS TEXT), '' FROM submissions \
             WHERE status IN ('received', 'processing')",
        )
        .await;
    db.close().await;
    open[0].0 == "0"
}

/// Every outbox event's id, and whether all are marked published.
async fn outbox_ids(store: &str) -> (HashSet<String>, bool) {
    let db = Db::open(store).await;
    let rows = db
        .pairs(
            "SELECT CAST(id AS TEXT), CASE WHEN published_at IS NULL THEN 'no' ELSE 'yes' END \
             FROM outbox",
        )
        .await;
    db.close().await;
    let all_published = rows.iter().all(|(_, p)| p == "yes");
    (
        rows.into_iter()
            .map(|(id, _)| format!("event-{id}"))
            .collect(),
        all_published,
    )
}

/// Every outbox event was published exactly once: all are marked published (the relay marks
/// an event only after the broker acknowledged it, so each is in the stream at least once),
/// and the stream holds exactly as many messages as the outbox has events (so none is there
/// twice). The first messages are also read back through a consumer group.
async fn assert_published_once(broker: Arc<dyn Broker>, store: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let expected = loop {
        let (ids, published) = outbox_ids(store).await;
        if published {
            break ids;
        }
        assert!(Instant::now() < deadline, "the outbox was not drained");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        broker.message_count().await.unwrap(),
        expected.len() as u64,
        "the stream holds another number of messages than the outbox has events"
    );
    let mut consumer = broker
        .consumer(ConsumerConfig::new("audit", "events.>"))
        .await
        .unwrap();
    let mut seen = HashSet::new();
    for _ in 0..500 {
        let d = consumer
            .next(Duration::from_secs(5))
            .await
            .unwrap()
            .expect("a message");
        assert!(
            expected.contains(&d.message.id),
            "{} is not an outbox event",
            d.message.id
        );
        assert!(
            seen.insert(d.message.id.clone()),
            "{} read twice",
            d.message.id
        );
        d.ack().await.unwrap();
    }
}

fn worker(env: &Env, nats: &str) -> common::Server {
    env.serve_with(&[
        "--role",
        "worker",
        "--broker",
        nats,
        "--lease-secs",
        "3",
        "--max-attempts",
        "1000",
        "--worker-concurrency",
        "1",
    ])
}

/// Three workers on PostgreSQL and NATS, one killed every few seconds; with
/// `restart_nats`, the NATS server too, once, in the middle.
async fn distributed(restart_nats: bool) {
    let Some(reference) = reference().await else {
        return;
    };
    let Some(db) = TestDatabase::create_or_skip("fault injection").await else {
        return;
    };
    let Some(mut nats) = NatsServer::start_or_skip() else {
        return;
    };
    let env = Env::with_database(db.url());
    let api = env.serve_with(&["--role", "api,relay", "--broker", &nats.url()]);
    let mut workers: Vec<common::Server> = (0..3).map(|_| worker(&env, &nats.url())).collect();
    let client = reqwest::Client::new();
    let started = Instant::now();
    upload_all(&client, &api.base, &reference.feeds).await;

    let mut kills = 0;
    let mut nats_restarted = !restart_nats;
    while !all_finished(db.url()).await {
        assert!(
            started.elapsed() < DEADLINE,
            "not finished within {DEADLINE:?}"
        );
        let pause = rand::rng().random_range(1500..3500);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let victim = rand::rng().random_range(0..workers.len());
        let replacement = worker(&env, &nats.url());
        std::mem::replace(&mut workers[victim], replacement).kill();
        kills += 1;
        if !nats_restarted && kills == 3 {
            nats.kill();
            tokio::time::sleep(Duration::from_secs(2)).await;
            nats.start();
            nats_restarted = true;
        }
    }
    eprintln!(
        "{} records with {kills} worker kills{} in {:?}",
        reference.records,
        if restart_nats {
            " and a NATS restart"
        } else {
            ""
        },
        started.elapsed()
    );
    assert!(kills >= 3, "the run ended before the faults began");
    Snapshot::take(db.url())
        .await
        .assert_same(&reference.snapshot);
    let broker = Arc::new(NatsBroker::connect(&nats.url()).await.unwrap());
    assert_published_once(broker, db.url()).await;
    drop(api);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_on_postgres_and_nats_survive_sigkill() {
    distributed(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_survive_sigkill_and_a_nats_restart() {
    distributed(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_process_survives_sigkill() {
    let Some(reference) = reference().await else {
        return;
    };
    let env = Env::new();
    let serve = || env.serve_with(&["--lease-secs", "3", "--max-attempts", "1000"]);
    let mut server = serve();
    let client = reqwest::Client::new();
    let started = Instant::now();
    upload_all(&client, &server.base, &reference.feeds).await;
    let store = env.data_dir().join("carrierhub.db").display().to_string();
    let mut kills = 0;
    while !all_finished(&store).await {
        assert!(
            started.elapsed() < DEADLINE,
            "not finished within {DEADLINE:?}"
        );
        let pause = rand::rng().random_range(1500..3500);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        server.kill();
        kills += 1;
        server = serve();
    }
    eprintln!(
        "{} records with {kills} kills of the process in {:?}",
        reference.records,
        started.elapsed()
    );
    assert!(kills >= 3, "the run ended before the faults began");
    // The last process publishes what the outbox still holds.
    Snapshot::take(&store)
        .await
        .assert_same(&reference.snapshot);
    let broker = Arc::new(EmbeddedBroker::open(&store).await.unwrap());
    assert_published_once(broker, &store).await;
    drop(server);
}
