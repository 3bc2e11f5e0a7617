//! The warehouse end to end: Parquet tables written from the outbox by `warehouse sync` and
//! by the `warehouse` role (killed mid-way and restarted), read back by `carrierhub query`,
//! `POST /v1/query` within a key's scope, DuckDB, and through S3 (moto's server).

use crate::common;

use common::{Env, BIN};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Feeds of three carriers (two deliveries: 10% changed, some cancelled) and their claims,
/// ingested in order.
fn ingest_demo(env: &Env, policies: u32) {
    let dir = env.path("feeds");
    for delivery in ["1", "2"] {
        let out = Command::new(BIN)
            .args(["gen", "--out"])
            .arg(&dir)
            .args(["--carriers", "3", "--policies", &policies.to_string()])
            .args(["--delivery", delivery])
            .output()
            .expect("run gen");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let carriers: Vec<String> = names
        .iter()
        .filter_map(|n| n.strip_suffix("-policies.toml").map(str::to_owned))
        .collect();
    assert_eq!(carriers.len(), 3, "{names:?}");
    for carrier in &carriers {
        let find = |prefix: &str| {
            dir.join(
                names
                    .iter()
                    .find(|n| n.starts_with(prefix) && !n.ends_with(".toml"))
                    .unwrap_or_else(|| panic!("no {prefix}* in {names:?}")),
            )
        };
        let policy_mapping = dir.join(format!("{carrier}-policies.toml"));
        let claim_mapping = dir.join(format!("{carrier}-claims.toml"));
        env.ingest(
            carrier,
            &policy_mapping,
            &find(&format!("{carrier}-policies.")),
        );
        env.ingest(
            carrier,
            &claim_mapping,
            &find(&format!("{carrier}-claims.")),
        );
        env.ingest(
            carrier,
            &policy_mapping,
            &find(&format!("{carrier}-policies-d2.")),
        );
    }
}

/// Runs `carrierhub query --format csv` on the warehouse at `warehouse`; the rows, each a
/// list of fields, header first.
fn query_csv(env: &Env, warehouse: &Path, sql: &str) -> Vec<Vec<String>> {
    let out = env
        .command()
        .arg("--warehouse")
        .arg(warehouse)
        .args(["query", "--format", "csv", sql])
        .output()
        .expect("run query");
    assert!(
        out.status.success(),
        "query failed: {sql}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect()
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap_or_else(|e| panic!("'{s}': {e}"))
}

/// (carrier, line, currency) → (policies, in force, premium) from `carrierhub portfolio`.
fn portfolio(env: &Env) -> BTreeMap<(String, String, String), (u64, u64, Decimal)> {
    let out = env.run(&["portfolio", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    lines
        .as_array()
        .expect("an array of lines")
        .iter()
        .map(|l| {
            (
                (
                    l["carrier"].as_str().unwrap().to_owned(),
                    l["line_of_business"].as_str().unwrap().to_owned(),
                    l["currency"].as_str().unwrap().to_owned(),
                ),
                (
                    l["policies"].as_u64().unwrap(),
                    l["in_force"].as_u64().unwrap(),
                    dec(&l["premium"]
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| l["premium"].to_string())),
                ),
            )
        })
        .collect()
}

const PORTFOLIO_SQL: &str = "SELECT carrier, line_of_business, currency, COUNT(*) AS policies, \
     SUM(CASE WHEN status = 'active' THEN 1 ELSE 0 END) AS in_force, SUM(premium) AS premium \
     FROM policies WHERE is_current GROUP BY carrier, line_of_business, currency \
     ORDER BY carrier, line_of_business, currency";

fn warehouse_portfolio(
    env: &Env,
    warehouse: &Path,
) -> BTreeMap<(String, String, String), (u64, u64, Decimal)> {
    query_csv(env, warehouse, PORTFOLIO_SQL)
        .into_iter()
        .skip(1)
        .map(|r| {
            (
                (r[0].clone(), r[1].clone(), r[2].clone()),
                (r[3].parse().unwrap(), r[4].parse().unwrap(), dec(&r[5])),
            )
        })
        .collect()
}

/// Every Parquet file under `dir`, by relative path, with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn watermark(dir: &Path) -> i64 {
    std::fs::read(dir.join("_carrierhub/watermark.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["outbox_id"].as_i64())
        .unwrap_or(0)
}

fn last_event(env: &Env, warehouse: &Path) -> i64 {
    let out = env
        .command()
        .arg("--warehouse")
        .arg(warehouse)
        .args(["warehouse", "status"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["last_event"].as_i64().unwrap()
}

fn sync(env: &Env, warehouse: &Path) {
    let out = env
        .command()
        .arg("--warehouse")
        .arg(warehouse)
        .args(["warehouse", "sync"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn query_totals_equal_the_stores_and_a_restarted_writer_writes_the_same_files() {
    let env = Env::new();
    ingest_demo(&env, 400);
    let reference = env.path("reference");
    sync(&env, &reference);

    // Policies, in force and premium by carrier, line and currency, to the cent.
    let store = portfolio(&env);
    assert!(!store.is_empty());
    assert_eq!(warehouse_portfolio(&env, &reference), store);

    // Premium transactions add up to the current premiums, carrier by carrier.
    let mut by_carrier: BTreeMap<(String, String), Decimal> = BTreeMap::new();
    for ((carrier, _, currency), (_, _, premium)) in &store {
        *by_carrier
            .entry((carrier.clone(), currency.clone()))
            .or_default() += *premium;
    }
    let transactions: BTreeMap<(String, String), Decimal> = query_csv(
        &env,
        &reference,
        "SELECT carrier, currency, SUM(amount) FROM premium_transactions GROUP BY 1, 2",
    )
    .into_iter()
    .skip(1)
    .map(|r| ((r[0].clone(), r[1].clone()), dec(&r[2])))
    .collect();
    assert_eq!(transactions, by_carrier);

    // Cancellations and changes are there as versions, and every policy has one current one.
    let versions = query_csv(
        &env,
        &reference,
        "SELECT COUNT(*), COUNT(DISTINCT policy_id), SUM(CASE WHEN is_current THEN 1 ELSE 0 END), \
                SUM(CASE WHEN is_current AND status = 'cancelled' THEN 1 ELSE 0 END), \
                SUM(CASE WHEN valid_to IS NULL THEN 1 ELSE 0 END) FROM policies",
    );
    let v: Vec<i64> = versions[1].iter().map(|s| s.parse().unwrap()).collect();
    assert!(v[0] > v[1], "second delivery made new versions: {v:?}");
    assert_eq!(v[1], v[2]);
    assert_eq!(v[2], v[4]);
    assert!(v[3] > 0, "some policies are cancelled: {v:?}");

    // Claims: transactions add up to paid + reserve of the current versions.
    let claims = query_csv(
        &env,
        &reference,
        "SELECT (SELECT SUM(incurred) FROM claims WHERE is_current), \
                (SELECT SUM(amount) FROM claim_transactions), \
                (SELECT COUNT(*) FROM claims WHERE is_current)",
    );
    assert!(claims[1][2].parse::<i64>().unwrap() > 0);
    assert_eq!(dec(&claims[1][0]), dec(&claims[1][1]));

    // The writer role, in steps of 25 events, killed mid-way and restarted, ends with the
    // same files, byte for byte.
    let restarted = env.path("restarted");
    let last = last_event(&env, &restarted);
    let role = |dir: &Path| {
        env.serve_with(&[
            "--role",
            "warehouse",
            "--warehouse",
            dir.to_str().unwrap(),
            "--warehouse-interval-ms",
            "20",
            "--warehouse-events-per-step",
            "25",
            // The restarted role takes over the killed one's lease when it runs out.
            "--warehouse-lease-ms",
            "500",
        ])
    };
    let server = role(&restarted);
    let deadline = Instant::now() + Duration::from_secs(60);
    while watermark(&restarted) < last / 3 {
        assert!(Instant::now() < deadline, "the writer does not progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill();
    let interrupted_at = watermark(&restarted);
    assert!(
        interrupted_at < last,
        "killed before the end ({interrupted_at} of {last})"
    );
    let server = role(&restarted);
    let deadline = Instant::now() + Duration::from_secs(120);
    while watermark(&restarted) < last {
        assert!(
            Instant::now() < deadline,
            "the restarted writer does not catch up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server.kill();
    let (want, got) = (files(&reference), files(&restarted));
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &want {
        assert!(got[name] == *bytes, "{name} differs after the restart");
    }
    assert_eq!(warehouse_portfolio(&env, &restarted), store);

    duckdb_reads_the_same_totals(&reference, &store);
}

/// A carrier of two policies (effective 2025-01 and 2025-03, producer AG1) and a claim on
/// each (lost 2025-02 and 2025-04), in CSV, and what changes them.
const BOOKS_POLICIES: &str = r#"
[mapping]
name = "books-policies"
carrier = "books"
record = "policy"
version = 1

[source]
format = "csv"

[conventions]
date_format = "%Y-%m-%d"
currency = "EUR"

[fields]
number = "number"
line_of_business = { value = "homeowners" }
status = { value = "active" }
effective_date = "effective"
expiration_date = "expires"
premium = "premium"
producer = "producer"

[fields.insured]
name = "insured"
"#;

const BOOKS_CLAIMS: &str = r#"
[mapping]
name = "books-claims"
carrier = "books"
record = "claim"
version = 1

[source]
format = "csv"

[conventions]
date_format = "%Y-%m-%d"
currency = "EUR"

[fields]
number = "number"
policy_number = "policy"
loss_date = "loss"
reported_date = "reported"
status = { value = "open" }
paid = "paid"
reserve = "reserve"
"#;

const POLICIES_HEADER: &str = "number,effective,expires,premium,producer,insured\n";
const CLAIMS_HEADER: &str = "number,policy,loss,reported,paid,reserve\n";

/// Ingests `rows` (CSV lines after the header) with the books carrier's policy or claim
/// mapping.
fn ingest_books(env: &Env, name: &str, claims: bool, rows: &str) {
    let (mapping, header) = if claims {
        (env.write("books-claims.toml", BOOKS_CLAIMS), CLAIMS_HEADER)
    } else {
        (
            env.write("books-policies.toml", BOOKS_POLICIES),
            POLICIES_HEADER,
        )
    };
    let feed = env.write(name, format!("{header}{rows}"));
    let report = env.ingest("books", &mapping, &feed);
    assert_eq!(report["counts"]["rejected"], 0, "{report}");
}

fn books(env: &Env) {
    ingest_books(
        env,
        "books-p1.csv",
        false,
        "B1,2025-01-10,2026-01-10,1000.00,AG1,Anna\nB2,2025-03-05,2026-03-05,500.00,AG1,Ben\n",
    );
    ingest_books(
        env,
        "books-c1.csv",
        true,
        "K1,B1,2025-02-01,2025-02-03,100.00,50.00\nK2,B2,2025-04-01,2025-04-02,20.00,0.00\n",
    );
}

/// Every Parquet file under `dir` with its modification time and bytes.
fn files_stamped(dir: &Path) -> BTreeMap<String, (std::time::SystemTime, Vec<u8>)> {
    files(dir)
        .into_iter()
        .map(|(name, bytes)| {
            let modified = std::fs::metadata(dir.join(&name))
                .unwrap()
                .modified()
                .unwrap();
            (name, (modified, bytes))
        })
        .collect()
}

/// The files that were written (or appeared, or went) between two stamps.
fn rewritten(
    before: &BTreeMap<String, (std::time::SystemTime, Vec<u8>)>,
    after: &BTreeMap<String, (std::time::SystemTime, Vec<u8>)>,
) -> Vec<String> {
    let names: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    names
        .into_iter()
        .filter(|n| before.get(*n).map(|f| f.0) != after.get(*n).map(|f| f.0))
        .cloned()
        .collect()
}

/// Asserts that a warehouse written from scratch has the same files, byte for byte.
fn same_as_from_scratch(env: &Env, warehouse: &Path, name: &str) {
    let scratch = env.path(name);
    sync(env, &scratch);
    let (want, got) = (files(&scratch), files(warehouse));
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    for (file, bytes) in &want {
        assert!(
            got[file] == *bytes,
            "{file} differs from the one written from scratch"
        );
    }
}

#[test]
fn a_change_rewrites_only_the_months_it_touches() {
    let env = Env::new();
    ingest_demo(&env, 100);
    books(&env);
    let wh = env.path("incremental");
    sync(&env, &wh);
    let before = files_stamped(&wh);
    assert!(before.len() > 40, "{} files", before.len());
    let month = |table: &str, m: &str| format!("{table}/carrier=books/month={m}/part-0.parquet");

    // A premium change of the January policy: its version and its movement, both January.
    std::thread::sleep(Duration::from_millis(20));
    ingest_books(
        &env,
        "books-p2.csv",
        false,
        "B1,2025-01-10,2026-01-10,1200.00,AG1,Anna\n",
    );
    sync(&env, &wh);
    let after = files_stamped(&wh);
    assert_eq!(
        rewritten(&before, &after),
        [
            month("policies", "2025-01"),
            month("premium_transactions", "2025-01")
        ]
    );
    // The other files are the very same (not written again).
    for (name, (modified, bytes)) in &before {
        if !name.contains("month=2025-01") || !name.contains("carrier=books") {
            assert_eq!(after[name].0, *modified, "{name} was rewritten");
            assert!(after[name].1 == *bytes, "{name} changed");
        }
    }

    // A claim whose loss moves from February to May, with a payment: its old version's
    // validity ends in February, the new version and the payment are in May.
    std::thread::sleep(Duration::from_millis(20));
    ingest_books(
        &env,
        "books-c2.csv",
        true,
        "K1,B1,2025-05-15,2025-05-20,150.00,50.00\n",
    );
    sync(&env, &wh);
    let moved = files_stamped(&wh);
    assert_eq!(
        rewritten(&after, &moved),
        [
            month("claim_transactions", "2025-05"),
            month("claims", "2025-02"),
            month("claims", "2025-05"),
        ]
    );
    let claims = query_csv(
        &env,
        &wh,
        "SELECT month, version, is_current, paid FROM claims WHERE claim_number = 'K1' ORDER BY version",
    );
    let claims: Vec<(&str, &str, &str, Decimal)> = claims[1..]
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str(), r[2].as_str(), dec(&r[3])))
        .collect();
    assert_eq!(
        claims,
        [
            ("2025-02", "1", "false", dec("100")),
            ("2025-05", "2", "true", dec("150"))
        ]
    );

    // Totals still equal the store's to the cent, and the files those written from scratch.
    assert_eq!(warehouse_portfolio(&env, &wh), portfolio(&env));
    same_as_from_scratch(&env, &wh, "scratch");
}

#[test]
fn claims_keep_the_book_of_the_policy_version_in_force_at_their_loss() {
    let env = Env::new();
    books(&env);
    let wh = env.path("warehouse");
    sync(&env, &wh);
    // B1 moves to producer AG2 after its claim's loss.
    ingest_books(
        &env,
        "books-p2.csv",
        false,
        "B1,2025-01-10,2026-01-10,1000.00,AG2,Anna\n",
    );
    sync(&env, &wh);
    let producers = query_csv(
        &env,
        &wh,
        "SELECT 'policy', producer FROM policies WHERE policy_number = 'B1' AND is_current \
         UNION ALL SELECT 'claim', producer FROM claims WHERE claim_number = 'K1' \
         UNION ALL SELECT 'movement ' || kind, producer FROM claim_transactions WHERE claim_number = 'K1' \
         ORDER BY 1",
    );
    assert_eq!(
        producers[1..],
        [
            ["claim", "AG1"],
            ["movement payment", "AG1"],
            ["movement reserve_change", "AG1"],
            ["policy", "AG2"],
        ]
        .map(|r| r.map(str::to_owned).to_vec())
    );
    // The old book still has the claim; the new one has the policy but not the claim.
    let in_book = |book: &str, sql: &str| -> Vec<Vec<String>> {
        let out = env
            .command()
            .arg("--warehouse")
            .arg(&wh)
            .args(["query", "--format", "csv", "--book", book, sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').map(str::to_owned).collect())
            .collect()
    };
    let claims_sql = "SELECT claim_number FROM claims WHERE is_current ORDER BY 1";
    assert_eq!(in_book("AG1", claims_sql), [["K1"], ["K2"]]);
    assert!(in_book("AG2", claims_sql).is_empty());
    assert_eq!(
        in_book(
            "AG2",
            "SELECT policy_number FROM policies WHERE is_current ORDER BY 1"
        ),
        [["B1"]]
    );
    same_as_from_scratch(&env, &wh, "scratch");
}

/// The watermark's writer (`host:pid:n`) and lease token.
fn watermark_writer(dir: &Path) -> (u32, i64) {
    let bytes = std::fs::read(dir.join("_carrierhub/watermark.json")).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let pid = v["writer"]
        .as_str()
        .and_then(|w| w.split(':').nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no writer in {v}"));
    (pid, v["token"].as_i64().unwrap())
}

#[test]
fn one_warehouse_role_writes_a_location_and_another_takes_over_when_it_dies() {
    let env = Env::new();
    books(&env);
    let wh = env.path("warehouse");
    // The warehouse follows the publication order: a relay of its own publishes the changes.
    let relay = env.serve_with(&["--role", "relay"]);
    let role = || {
        env.serve_with(&[
            "--role",
            "warehouse",
            "--warehouse",
            wh.to_str().unwrap(),
            "--warehouse-interval-ms",
            "20",
            "--warehouse-lease-ms",
            "1000",
        ])
    };
    let caught_up = |what: &str, within: Duration| {
        let last = last_event(&env, &wh);
        let deadline = Instant::now() + within;
        while watermark(&wh) < last {
            assert!(
                Instant::now() < deadline,
                "{what}: the warehouse is not written"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let first = role();
    caught_up("first role", Duration::from_secs(30));
    let (writer, token) = watermark_writer(&wh);
    assert_eq!(writer, first.pid());

    // A second role on the same location stands by, longer than a lease lasts: every change
    // is still written by the first.
    let second = role();
    for (i, premium) in ["1100.00", "1200.00", "1300.00"].into_iter().enumerate() {
        std::thread::sleep(Duration::from_millis(600));
        ingest_books(
            &env,
            &format!("books-change-{i}.csv"),
            false,
            &format!("B1,2025-01-10,2026-01-10,{premium},AG1,Anna\n"),
        );
        caught_up("while both run", Duration::from_secs(30));
        assert_eq!(watermark_writer(&wh), (first.pid(), token));
    }

    // The first dies: the second takes over once its lease has run out, with a new token.
    let killed = Instant::now();
    first.kill();
    ingest_books(
        &env,
        "books-after.csv",
        false,
        "B2,2025-03-05,2026-03-05,700.00,AG1,Ben\n",
    );
    caught_up("after the first died", Duration::from_secs(30));
    let (writer, next) = watermark_writer(&wh);
    assert_eq!(writer, second.pid());
    assert!(next > token, "token {next} after {token}");
    // The first renewed its lease at most a step before it died.
    assert!(
        killed.elapsed() >= Duration::from_millis(700),
        "taken over {:?} after the holder died, before its lease ran out",
        killed.elapsed()
    );
    second.kill();
    relay.kill();
    assert_eq!(warehouse_portfolio(&env, &wh), portfolio(&env));
    same_as_from_scratch(&env, &wh, "scratch");
}

/// `warehouse sync` beside a running server: the server's relay holds the outbox's lease, so
/// the sync cannot publish the events written before it began; it waits for that relay to
/// publish them and then applies them. Nothing is left out, nothing is said on standard error,
/// and the server's relay goes on publishing afterwards.
#[test]
fn warehouse_sync_beside_a_running_servers_relay_applies_what_that_relay_publishes() {
    let env = Env::new();
    books(&env);
    let wh = env.path("warehouse");
    // A relay that looks at the outbox only every 3 s (nothing in its process writes), so
    // the changes another process writes wait unpublished that long, under its lease.
    let mut command = env.command();
    command.env("CARRIERHUB_RELAY_POLL_MS", "3000").args([
        "serve",
        "--role",
        "relay",
        "--bind",
        "127.0.0.1:0",
        "--admin-bind",
        "127.0.0.1:0",
    ]);
    let relay = common::Server::start(command);
    for (i, premium) in ["1100.00", "1200.00", "1300.00"].into_iter().enumerate() {
        ingest_books(
            &env,
            &format!("books-change-{i}.csv"),
            false,
            &format!("B1,2025-01-10,2026-01-10,{premium},AG1,Anna\n"),
        );
        let out = env
            .command()
            .arg("--warehouse")
            .arg(&wh)
            .args(["warehouse", "sync"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(!stderr.contains("warning"), "change {i}: {stderr}");
        assert_eq!(watermark(&wh), last_event(&env, &wh), "change {i}");
        assert_eq!(
            warehouse_portfolio(&env, &wh),
            portfolio(&env),
            "change {i}"
        );
    }
    relay.kill();
    same_as_from_scratch(&env, &wh, "scratch");
}

/// The mapping of carrier `late`: the books carrier's policy mapping under another name.
fn late_mapping(env: &Env) -> PathBuf {
    env.write(
        "late-policies.toml",
        BOOKS_POLICIES
            .replace("name = \"books-policies\"", "name = \"late-policies\"")
            .replace("carrier = \"books\"", "carrier = \"late\""),
    )
}

/// On PostgreSQL an outbox id is taken at INSERT and seen at COMMIT: a submission whose
/// change events commit after those of a later one has lower ids than events the warehouse
/// applied already. It follows the publication order, in which they come later, and so still
/// writes them; following ids, it would pass them for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_committed_after_higher_ids_reach_the_warehouse_on_postgres() {
    use carrierhub_store::testing::TestDatabase;
    let Some(db) = TestDatabase::create_or_skip("warehouse::late_commit_on_postgres").await else {
        return;
    };
    let env = Env::with_database(db.url());
    let out = env.run(&["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    // Carrier `late`'s change events wait, inserted (their ids taken) and not committed,
    // until the test lets them go.
    for statement in [
        "CREATE FUNCTION hold_late() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.carrier_id = 'late' AND NEW.event_type LIKE 'policy.%' THEN \
             PERFORM pg_advisory_xact_lock(4242); \
           END IF; RETURN NEW; END $$",
        "CREATE TRIGGER hold_late AFTER INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION hold_late()",
    ] {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    let mut gate = pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(4242)")
        .execute(&mut *gate)
        .await
        .unwrap();

    let mapping = late_mapping(&env);
    let feed = env.write(
        "late.csv",
        format!("{POLICIES_HEADER}L1,2025-06-10,2026-06-10,800.00,AG9,Lena\n"),
    );
    let late = env
        .command()
        .args(["ingest", "--carrier", "late", "--mapping"])
        .arg(&mapping)
        .arg(&feed)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
    )
    .fetch_one(&pool)
    .await
    .unwrap()
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "the late batch never reached the outbox"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Meanwhile another carrier's changes commit, with higher ids, and are applied.
    books(&env);
    let wh = env.path("warehouse");
    sync(&env, &wh);
    let carriers = "SELECT carrier, COUNT(*) FROM policies GROUP BY 1 ORDER BY 1";
    assert_eq!(query_csv(&env, &wh, carriers)[1..], [["books", "2"]]);

    // The late batch commits: its events' ids are below those applied, and they are
    // published (and applied) after them.
    sqlx::query("SELECT pg_advisory_unlock(4242)")
        .execute(&mut *gate)
        .await
        .unwrap();
    let status = tokio::task::spawn_blocking(move || {
        let mut late = late;
        late.wait()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(status.success());
    let ids = "SELECT MAX(id) FILTER (WHERE carrier_id = 'late'), \
                      MIN(id) FILTER (WHERE carrier_id = 'books') \
                 FROM outbox WHERE event_type LIKE 'policy.%'";
    let (late_id, books_id): (Option<i64>, Option<i64>) =
        sqlx::query_as(ids).fetch_one(&pool).await.unwrap();
    assert!(
        late_id.unwrap() < books_id.unwrap(),
        "the late events have the lower ids: {late_id:?} {books_id:?}"
    );
    sync(&env, &wh);
    assert_eq!(
        query_csv(&env, &wh, carriers)[1..],
        [["books", "2"], ["late", "1"]]
    );
    let positions = "SELECT MIN(published_seq) FILTER (WHERE carrier_id = 'late'), \
                            MAX(published_seq) FILTER (WHERE carrier_id = 'books') \
                       FROM outbox WHERE event_type LIKE 'policy.%'";
    let (late_seq, books_seq): (Option<i64>, Option<i64>) =
        sqlx::query_as(positions).fetch_one(&pool).await.unwrap();
    assert!(late_seq.unwrap() > books_seq.unwrap());
    assert_eq!(warehouse_portfolio(&env, &wh), portfolio(&env));
    drop(gate);
    pool.close().await;
}

/// The Python with `duckdb` that `.ci/warehouse-python.sh` prepares, if any.
fn duckdb_python() -> Option<PathBuf> {
    python_with("duckdb")
}

fn python_with(module: &str) -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let candidates = [
        std::env::var_os("CARRIERHUB_TEST_PYTHON").map(PathBuf::from),
        Some(root.join(".ci/venv/bin/python")),
    ];
    candidates.into_iter().flatten().find(|p| {
        Command::new(p)
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

fn missing(what: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} is missing (run `bash .ci/warehouse-python.sh`)");
    }
    eprintln!("skipped: {what} is missing (run `bash .ci/warehouse-python.sh`)");
}

/// DuckDB reads the Parquet files as they are (hive partitions) and sums the same.
fn duckdb_reads_the_same_totals(
    warehouse: &Path,
    store: &BTreeMap<(String, String, String), (u64, u64, Decimal)>,
) {
    let Some(python) = duckdb_python() else {
        return missing("Python with duckdb");
    };
    let script = format!(
        r#"
import duckdb, json, sys
rows = duckdb.sql("""
  SELECT carrier, line_of_business, currency, COUNT(*), SUM(CASE WHEN status = 'active' THEN 1 ELSE 0 END),
         CAST(SUM(premium) AS VARCHAR)
  FROM read_parquet('{dir}/policies/*/*/*.parquet', hive_partitioning = true)
  WHERE is_current GROUP BY ALL ORDER BY ALL""").fetchall()
print(json.dumps([list(r) for r in rows]))
"#,
        dir = warehouse.display()
    );
    let out = Command::new(python).args(["-c", &script]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let got: BTreeMap<(String, String, String), (u64, u64, Decimal)> = rows
        .iter()
        .map(|r| {
            (
                (
                    r[0].as_str().unwrap().to_owned(),
                    r[1].as_str().unwrap().to_owned(),
                    r[2].as_str().unwrap().to_owned(),
                ),
                (
                    r[3].as_u64().unwrap(),
                    r[4].as_u64().unwrap(),
                    dec(r[5].as_str().unwrap()),
                ),
            )
        })
        .collect();
    assert_eq!(&got, store);
}

fn create_key(env: &Env, args: &[&str]) -> String {
    let out = env.run(&[&["keys", "create", "--json"], args].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["token"].as_str().unwrap().to_owned()
}

/// `POST /v1/query` with `token`: status and body.
async fn post_query(
    client: &reqwest::Client,
    server: &common::Server,
    token: &str,
    body: serde_json::Value,
) -> (reqwest::StatusCode, String) {
    let r = client
        .post(server.url("/v1/query"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

async fn rows(
    client: &reqwest::Client,
    server: &common::Server,
    token: &str,
    sql: &str,
) -> Vec<serde_json::Value> {
    let (status, body) = post_query(
        client,
        server,
        token,
        serde_json::json!({"sql": sql, "format": "json"}),
    )
    .await;
    assert_eq!(status, 200, "{sql}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{sql}: {e}: {body}"))
}

#[tokio::test]
async fn a_scoped_key_sees_only_its_carriers_rows_through_joins_subqueries_and_aggregates() {
    let env = Env::new();
    ingest_demo(&env, 150);
    sync(&env, &env.data_dir().join("warehouse"));
    let carriers = query_csv(
        &env,
        &env.data_dir().join("warehouse"),
        "SELECT DISTINCT carrier FROM policies ORDER BY carrier",
    );
    let mine = carriers[1][0].clone();
    assert_eq!(carriers.len(), 4, "three carriers: {carriers:?}");
    let admin = create_key(&env, &["--role", "admin"]);
    let carrier = create_key(&env, &["--role", "carrier", "--carrier", &mine]);
    let server = env.serve_with(&[
        "--api-keys",
        "--query-timeout-secs",
        "3",
        "--query-memory-mib",
        "8",
    ]);
    let client = reqwest::Client::new();

    for table in [
        "policies",
        "coverages",
        "premium_transactions",
        "claims",
        "claim_transactions",
    ] {
        let sql =
            format!("SELECT carrier, COUNT(*) AS n FROM {table} GROUP BY carrier ORDER BY carrier");
        let all = rows(&client, &server, &admin, &sql).await;
        let seen = rows(&client, &server, &carrier, &sql).await;
        let expected: Vec<_> = all
            .iter()
            .filter(|r| r["carrier"] == mine.as_str())
            .cloned()
            .collect();
        assert!(!expected.is_empty(), "{table} has rows of {mine}");
        assert_eq!(seen, expected, "{table}");
        assert!(all.len() > 1, "{table}: the admin sees every carrier");
    }
    // Joins, subqueries, set operations and window functions see the scope on both sides.
    for sql in [
        "SELECT DISTINCT c.carrier AS a, p.carrier AS b FROM claims c JOIN policies p ON p.policy_id = c.policy_id",
        "SELECT DISTINCT p.carrier AS a, t.carrier AS b FROM policies p CROSS JOIN (SELECT carrier FROM claim_transactions LIMIT 100000) t",
        "SELECT DISTINCT carrier AS a, carrier AS b FROM policies WHERE policy_id IN (SELECT policy_id FROM claims WHERE carrier <> 'nobody')",
        "SELECT DISTINCT carrier AS a, carrier AS b FROM (SELECT carrier FROM policies UNION ALL SELECT carrier FROM claims) u",
        "SELECT DISTINCT carrier AS a, carrier AS b FROM (SELECT carrier, ROW_NUMBER() OVER (PARTITION BY carrier ORDER BY policy_id) AS r FROM policies) w WHERE r = 1",
        "WITH x AS (SELECT carrier FROM premium_transactions) SELECT DISTINCT carrier AS a, carrier AS b FROM x",
    ] {
        let seen = rows(&client, &server, &carrier, sql).await;
        assert!(!seen.is_empty(), "{sql}");
        for r in &seen {
            assert_eq!(r["a"], mine.as_str(), "{sql}: {r}");
            assert_eq!(r["b"], mine.as_str(), "{sql}: {r}");
        }
    }
    // Another carrier's rows do not exist for it, even asked for by name.
    let other = carriers[2][0].clone();
    let n = rows(
        &client,
        &server,
        &carrier,
        &format!("SELECT COUNT(*) AS n FROM policies WHERE carrier = '{other}'"),
    )
    .await;
    assert_eq!(n[0]["n"], 0);

    // Writes, DDL and COPY are refused; so is nonsense; an unknown format is a 400.
    for sql in [
        "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/tmp'",
        "COPY policies TO '/tmp/out.parquet'",
        "INSERT INTO policies VALUES (1)",
        "DROP TABLE policies",
        "SET datafusion.execution.batch_size = 1",
    ] {
        let (status, body) =
            post_query(&client, &server, &carrier, serde_json::json!({"sql": sql})).await;
        assert_eq!(status, 422, "{sql}: {body}");
    }
    let (status, body) = post_query(
        &client,
        &server,
        &carrier,
        serde_json::json!({"sql": "SELEC nonsense"}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("invalid-query"), "{body}");
    let (status, _) = post_query(
        &client,
        &server,
        &carrier,
        serde_json::json!({"sql": "SELECT 1", "format": "xml"}),
    )
    .await;
    assert_eq!(status, 400);

    // Past the time limit: 408; past the memory limit: 413.
    let (status, body) = post_query(
        &client,
        &server,
        &carrier,
        serde_json::json!({"sql": "SELECT COUNT(*) FROM policies a, policies b, policies c, policies e, coverages d WHERE a.premium + b.premium > c.premium + e.premium"}),
    )
    .await;
    assert_eq!(status, 408, "{body}");
    assert!(body.contains("query-timeout"), "{body}");
    let (status, body) = post_query(
        &client,
        &server,
        &carrier,
        serde_json::json!({"sql": MEMORY_HOG}),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("query-too-large"), "{body}");

    // The formats: CSV and Parquet by Accept, Arrow by name.
    let r = client
        .post(server.url("/v1/query"))
        .bearer_auth(&carrier)
        .header("accept", "text/csv")
        .json(&serde_json::json!({"sql": "SELECT carrier FROM policies LIMIT 2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert_eq!(
        r.text().await.unwrap(),
        format!("carrier\n{mine}\n{mine}\n")
    );
    let r = client
        .post(server.url("/v1/query"))
        .bearer_auth(&carrier)
        .header("accept", "application/vnd.apache.parquet")
        .json(&serde_json::json!({"sql": "SELECT 1 AS one"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().starts_with(b"PAR1"));
    let (status, body) = post_query(
        &client,
        &server,
        &carrier,
        serde_json::json!({"sql": "SELECT 1 AS one", "format": "arrow"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// A query whose aggregate and sort need far more than a few MiB.
const MEMORY_HOG: &str = "SELECT a.policy_id, b.policy_id, c.policy_id, COUNT(*) AS n \
     FROM policies a, policies b, policies c GROUP BY 1, 2, 3 ORDER BY 4";

#[test]
fn a_query_past_its_time_or_memory_limit_is_ended() {
    // Through the CLI: the time limit and the memory limit end a query with a clear error.
    let env = Env::new();
    ingest_demo(&env, 150);
    let wh = env.data_dir().join("warehouse");
    sync(&env, &wh);
    // Five-way cross join: minutes of work on any machine, so only the limit can end it.
    let heavy = "SELECT COUNT(*) FROM policies a, policies b, policies c, policies e, coverages d \
                 WHERE a.premium + b.premium > c.premium + e.premium";
    let out = env
        .command()
        .args(["query", "--query-timeout-secs", "1", heavy])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("time limit"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = env
        .command()
        .args(["query", "--query-memory-mib", "8", MEMORY_HOG])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("memory"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A free port on the loopback interface.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// moto's S3 server, stopped when dropped.
struct Moto(std::process::Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_warehouse_lives_in_an_s3_bucket() {
    let Some(python) = python_with("moto.server") else {
        return missing("Python with moto[server]");
    };
    let port = free_port();
    let _moto = Moto(
        Command::new(&python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start moto"),
    );
    let endpoint = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let created = loop {
        let out = Command::new(&python)
            .args([
                "-c",
                &format!(
                    "import boto3; boto3.client('s3', endpoint_url='{endpoint}', region_name='us-east-1', \
                     aws_access_key_id='test', aws_secret_access_key='test').create_bucket(Bucket='lake')"
                ),
            ])
            .output()
            .unwrap();
        if out.status.success() || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );

    let env = Env::new();
    ingest_demo(&env, 150);
    let s3 = |args: &[&str]| {
        env.command()
            .args(["--warehouse", "s3://lake/carrierhub/wh"])
            .args(args)
            .env("AWS_ENDPOINT", &endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .output()
            .unwrap()
    };
    let out = s3(&["warehouse", "sync"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = s3(&["query", "--format", "csv", PORTFOLIO_SQL]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: BTreeMap<_, _> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let r: Vec<&str> = l.split(',').collect();
            (
                (r[0].to_owned(), r[1].to_owned(), r[2].to_owned()),
                (r[3].parse().unwrap(), r[4].parse().unwrap(), dec(r[5])),
            )
        })
        .collect();
    assert_eq!(got, portfolio(&env));
    // A second sync finds nothing to do, and the files are in the bucket under the prefix.
    let out = s3(&["warehouse", "status"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["lag_events"], 0, "{status}");
    let listed = Command::new(&python)
        .args([
            "-c",
            &format!(
                "import boto3; c = boto3.client('s3', endpoint_url='{endpoint}', region_name='us-east-1', \
                 aws_access_key_id='test', aws_secret_access_key='test'); \
                 print('\\n'.join(o['Key'] for o in c.list_objects_v2(Bucket='lake')['Contents']))"
            ),
        ])
        .output()
        .unwrap();
    let keys = String::from_utf8_lossy(&listed.stdout);
    assert!(
        keys.contains("carrierhub/wh/_carrierhub/watermark.json"),
        "{keys}"
    );
    assert!(
        keys.lines().any(
            |k| k.starts_with("carrierhub/wh/claim_transactions/carrier=")
                && k.contains("/month=")
                && k.ends_with("/part-0.parquet")
        ),
        "{keys}"
    );
}
