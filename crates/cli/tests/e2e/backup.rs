//! `carrierhub backup` while the server ingests, and `carrierhub restore` of that backup:
//!
//! - the backup is taken while workers commit batches (asserted: it holds unfinished
//!   submissions);
//! - the restored store passes the integrity check, and the store's read side holds: paging
//!   visits every policy and claim once, the portfolio's sums equal the rows', every
//!   submission's counts equal the rows it committed (batches whole or absent);
//! - `restore` refuses to replace a store without `--force`, and moves the replaced one aside
//!   with it;
//! - served again, the restored store finishes the interrupted submissions, and ends with
//!   exactly the canonical rows of the original server (nothing lost, nothing doubled).

use crate::common;

use carrierhub_store::{ClaimFilter, Cursor, PageRequest, PolicyFilter, Scope, Store};
use common::Env;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn store_of(env: &Env) -> String {
    env.data_dir().join("carrierhub.db").display().to_string()
}

async fn sqlite(path: &str) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&format!("sqlite://{path}"))
        .await
        .expect("open the SQLite store")
}

/// Feeds of three carriers (policies, then claims), in submission order.
fn feeds(dir: &Path) -> Vec<(String, PathBuf, PathBuf)> {
    let out = Command::new(common::BIN)
        .args(["gen", "--out"])
        .arg(dir)
        .args([
            "--policies",
            "8000",
            "--carriers",
            "3",
            "--defect-rate",
            "0.002",
        ])
        .output()
        .expect("run gen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut feeds = Vec::new();
    for carrier in names
        .iter()
        .filter_map(|n| n.strip_suffix("-policies.toml"))
    {
        for kind in ["policies", "claims"] {
            let file = names
                .iter()
                .find(|n| n.starts_with(&format!("{carrier}-{kind}.")) && !n.ends_with(".toml"))
                .unwrap_or_else(|| panic!("no {carrier}-{kind} feed in {names:?}"));
            feeds.push((
                carrier.to_owned(),
                dir.join(format!("{carrier}-{kind}.toml")),
                dir.join(file),
            ));
        }
    }
    assert_eq!(feeds.len(), 6, "{names:?}");
    feeds
}

/// Every canonical row, sorted, to compare two stores.
async fn canonical_rows(store: &str) -> Vec<String> {
    let pool = sqlite(store).await;
    let mut rows = Vec::new();
    for sql in [
        "SELECT 'pv ' || p.carrier_id || '/' || p.policy_number || '#' || v.version || ':' || v.content_hash \
         FROM policy_versions v JOIN policies p ON p.id = v.policy_id",
        "SELECT 'cv ' || c.carrier_id || '/' || c.claim_number || '#' || v.version || ':' || v.content_hash \
         FROM claim_versions v JOIN claims c ON c.id = v.claim_id",
        "SELECT 'pt ' || p.carrier_id || '/' || p.policy_number || ' ' || t.kind || ' ' || CAST(t.amount AS TEXT) \
         FROM premium_transactions t JOIN policies p ON p.id = t.policy_id",
        "SELECT 'ct ' || c.carrier_id || '/' || c.claim_number || ' ' || t.kind || ' ' || CAST(t.amount AS TEXT) \
         FROM claim_transactions t JOIN claims c ON c.id = t.claim_id",
        "SELECT 'r ' || s.file_name || ':' || r.record_number || ':' || COALESCE(r.field, '') \
         FROM rejections r JOIN submissions s ON s.id = r.submission_id",
        "SELECT 'e ' || event_type || ' ' || subject_id FROM outbox WHERE event_type NOT LIKE 'submission.%'",
    ] {
        let part: Vec<String> = sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap();
        rows.extend(part);
    }
    pool.close().await;
    rows.sort();
    rows
}

/// (finished, all) submissions.
async fn progress(store: &str) -> (i64, i64) {
    let pool = sqlite(store).await;
    let row: (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(status IN ('completed', 'failed')), 0), COUNT(*) FROM submissions",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    row
}

/// The read side of the store, as the conformance suite checks it, on whatever it holds.
async fn check_read_side(store: Arc<dyn Store>, path: &str) {
    let pool = sqlite(path).await;
    let all = Scope::all();

    // Paging visits every policy and claim once.
    let mut filter = PolicyFilter {
        page: PageRequest {
            after_id: None,
            limit: 500,
        },
        ..PolicyFilter::default()
    };
    let mut seen = HashSet::new();
    let mut premium_by_line: BTreeMap<(String, String, String), Decimal> = BTreeMap::new();
    loop {
        let page = store.list_policies(&all, &filter).await.unwrap();
        for p in &page.items {
            assert!(seen.insert(p.id), "policy {} listed twice", p.id);
            *premium_by_line
                .entry((
                    p.carrier.clone(),
                    p.line_of_business.code.to_string(),
                    p.premium.currency.to_string(),
                ))
                .or_default() += p.premium.amount;
        }
        match page.next_cursor {
            Some(c) => filter.page.after_id = Some(Cursor::decode(&c).unwrap().after_id),
            None => break,
        }
    }
    let policies: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM policies")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(seen.len() as i64, policies, "policies listed");
    assert!(policies > 0);

    let mut filter = ClaimFilter {
        page: PageRequest {
            after_id: None,
            limit: 500,
        },
        ..ClaimFilter::default()
    };
    let mut claims_seen = HashSet::new();
    loop {
        let page = store.list_claims(&all, &filter).await.unwrap();
        for c in &page.items {
            assert!(claims_seen.insert(c.id), "claim {} listed twice", c.id);
        }
        match page.next_cursor {
            Some(c) => filter.page.after_id = Some(Cursor::decode(&c).unwrap().after_id),
            None => break,
        }
    }
    let claims: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM claims")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(claims_seen.len() as i64, claims, "claims listed");

    // The portfolio's sums are the listed policies' premiums, exactly.
    let portfolio = store.portfolio(&all).await.unwrap();
    let policies_in_portfolio: u64 = portfolio.iter().map(|l| l.policies).sum();
    assert_eq!(policies_in_portfolio as i64, policies);
    for line in &portfolio {
        let key = (
            line.carrier.clone(),
            line.line_of_business.clone(),
            line.currency.clone(),
        );
        assert_eq!(
            Some(&line.premium),
            premium_by_line.get(&key),
            "premium of {key:?}"
        );
    }

    // A sample of policies reads back whole, with its versions.
    for id in seen.iter().take(50) {
        let detail = store.get_policy(*id, &all).await.unwrap();
        assert!(detail.is_some(), "policy {id} listed but not readable");
    }

    // Every submission's counts are what it committed: its batches are whole or absent.
    let rows: Vec<(i64, String, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT s.id, s.status, s.inserted + s.updated, s.rejected, \
           (SELECT COUNT(*) FROM policy_versions v WHERE v.submission_id = s.id) \
           + (SELECT COUNT(*) FROM claim_versions v WHERE v.submission_id = s.id), \
           (SELECT COUNT(*) FROM rejections r WHERE r.submission_id = s.id) \
         FROM submissions s",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(!rows.is_empty());
    for (id, status, written, rejected, versions, rejections) in rows {
        assert_eq!(
            (written, rejected),
            (versions, rejections),
            "submission {id} ({status}): counts against its rows"
        );
    }
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_during_an_ingest_restores_to_a_consistent_store() {
    let dir = tempfile::tempdir().unwrap();
    let feeds = feeds(dir.path());
    let env = Env::new();
    let server = env.serve();
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for (carrier, mapping, file) in &feeds {
        let form = reqwest::multipart::Form::new()
            .part(
                "file",
                reqwest::multipart::Part::bytes(std::fs::read(file).unwrap())
                    .file_name(file.file_name().unwrap().to_string_lossy().into_owned()),
            )
            .text("mapping_file", std::fs::read_to_string(mapping).unwrap());
        let r = client
            .post(server.url(&format!("/v1/carriers/{carrier}/submissions")))
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        ids.push(
            r.json::<serde_json::Value>().await.unwrap()["id"]
                .as_i64()
                .unwrap(),
        );
    }

    // Back up while the workers write: after the first submission is done.
    let store = store_of(&env);
    let deadline = Instant::now() + Duration::from_secs(120);
    while progress(&store).await.0 == 0 {
        assert!(Instant::now() < deadline, "nothing processed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let backup = env.path("backup");
    let out = env.run(&["backup", backup.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "backup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout).trim());
    let backup_db = backup.join("carrierhub.db").display().to_string();
    let (finished, all) = progress(&backup_db).await;
    assert!(
        finished < all,
        "the backup was taken after the ingest ended ({finished} of {all} finished)"
    );
    assert_eq!(all as usize, ids.len());

    // The original finishes; its rows are what the restored store must end with.
    for id in &ids {
        server.wait_for_submission(&client, *id).await;
    }
    let want = canonical_rows(&store).await;

    // Restore into a new data directory and check the store as it was backed up.
    let restored = Env::new();
    let out = restored.run(&["restore", backup.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restored_db = store_of(&restored);
    // The claims of the original's workers are let go in the copy (no process works on it),
    // so the next server resumes them at once instead of waiting out their leases.
    let processing = {
        let pool = sqlite(&backup_db).await;
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM submissions WHERE status = 'processing' AND lease_until IS NOT NULL",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        pool.close().await;
        n
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    if processing > 0 {
        assert!(
            stdout.contains(&format!("{processing} submissions were being processed")),
            "{stdout}"
        );
    }
    {
        let pool = sqlite(&restored_db).await;
        let held: (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM submissions WHERE lease_owner IS NOT NULL \
                       OR lease_until IS NOT NULL), \
                    (SELECT COUNT(*) FROM broker_deliveries \
                       WHERE visible_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        pool.close().await;
        assert_eq!(held, (0, 0), "claims still held in the restored store");
    }
    let opened = carrierhub_store::open_store_with(&restored_db, false)
        .await
        .expect("the restored store opens without migrating");
    check_read_side(opened, &restored_db).await;

    // A second restore would replace it: refused without --force.
    let again = restored.run(&["restore", backup.to_str().unwrap()]);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("--force"), "{stderr}");
    let forced = restored.run(&["restore", "--force", backup.to_str().unwrap()]);
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    let moved = std::fs::read_dir(restored.data_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with("replaced-"));
    assert!(moved, "the replaced store was not moved aside");

    // Served again, it finishes what was in flight, each record once.
    let server2 = restored.serve();
    for id in &ids {
        let done = server2.wait_for_submission(&client, *id).await;
        assert_eq!(done["status"], "completed", "{done}");
    }
    let got = canonical_rows(&restored_db).await;
    assert_eq!(
        got.len(),
        want.len(),
        "rows of the restored store, finished"
    );
    assert!(
        got == want,
        "the restored store ended differently from the original"
    );
    drop(server);
}

#[test]
fn restore_refuses_a_damaged_backup_and_backup_refuses_postgres() {
    let env = Env::new();
    // A store to back up: one small ingest.
    let mapping = env.write("acme.toml", common::ACME_MAPPING);
    let feed = env.write("acme.csv", common::ACME_FEED);
    env.ingest("acme", &mapping, &feed);
    let backup = env.path("backup");
    let out = env.run(&["backup", backup.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Into a non-empty directory: refused.
    let again = env.run(&["backup", backup.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));

    // A document changed after the backup: refused, naming it.
    let documents = backup.join("documents").join("sha256");
    let shard = std::fs::read_dir(&documents)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let document = std::fs::read_dir(&shard)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&document, b"tampered").unwrap();
    let target = Env::new();
    let out = target.run(&["restore", backup.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("damaged")
            && stderr.contains(&*document.file_name().unwrap().to_string_lossy()),
        "{stderr}"
    );
    assert!(
        !target.data_dir().join("carrierhub.db").exists(),
        "a failed restore left a store behind"
    );

    // Not a backup.
    let out = target.run(&["restore", env.path("nowhere").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("carrierhub-backup.json"));

    // PostgreSQL: pg_dump, and what else to keep.
    let pg = Env::with_database("postgres://nobody@127.0.0.1:1/none");
    let out = pg.run(&["backup", env.path("pg-backup").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pg_dump"));
}
