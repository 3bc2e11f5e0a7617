//! A worker that dies mid-submission is resumed by another with the same result as an
//! uninterrupted run: no record lost, none counted twice, no duplicate versions.

use carrierhub_mapping::MappingSpec;
use carrierhub_model::CarrierId;
use carrierhub_pipeline::{Delivery, DocumentStore, NoProgress, Pipeline, Progress};
use carrierhub_store::testing::TestDatabase;
use carrierhub_store::Scope;
use carrierhub_store::{open_store, Counts, PolicyFilter, SqliteStore, Store, SubmissionStatus};
use carrierhub_synth::{carrier, demo_defects, write_policy_feed, FeedOptions};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

async fn sqlite(dir: &Path) -> Arc<dyn Store> {
    std::fs::create_dir_all(dir).unwrap();
    Arc::new(SqliteStore::open(&dir.join("db.sqlite")).await.unwrap())
}

fn pipeline(dir: &Path, store: Arc<dyn Store>) -> Pipeline {
    Pipeline::new(store, DocumentStore::new(dir.join("documents")))
        .with_batch_size(100)
        .with_lease(Duration::ZERO)
}

/// Dies (panics) after `after` batches are committed, like a worker killed mid-file.
struct DieAfter {
    after: usize,
    seen: AtomicUsize,
}

impl Progress for DieAfter {
    fn committed(&self, _bytes: u64, _counts: &Counts) {
        if self.seen.fetch_add(1, Ordering::SeqCst) + 1 == self.after {
            panic!("worker killed");
        }
    }
}

async fn snapshot(p: &Pipeline) -> Vec<(String, i64, String, String)> {
    let mut filter = PolicyFilter::default();
    filter.page.limit = 10_000;
    p.store()
        .list_policies(&Scope::all(), &filter)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| (s.number, s.version, s.status.code, s.premium.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_submission_resumes_to_the_same_result() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = sqlite(&tmp.path().join("whole")).await;
    let interrupted = sqlite(&tmp.path().join("interrupted")).await;
    resumes_to_the_same_result(tmp.path(), whole, interrupted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_submission_resumes_to_the_same_result_on_postgres() {
    let test = "resume::an_interrupted_submission_resumes_to_the_same_result_on_postgres";
    let (Some(a), Some(b)) = (
        TestDatabase::create_or_skip(test).await,
        TestDatabase::create_or_skip(test).await,
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let whole = open_store(a.url()).await.unwrap();
    let interrupted = open_store(b.url()).await.unwrap();
    resumes_to_the_same_result(tmp.path(), whole, interrupted).await;
}

/// Processes the same feed whole into one store, and with a worker dying after four batches
/// into the other, then resumed by a second worker: both stores must end up the same.
async fn resumes_to_the_same_result(
    tmp: &Path,
    whole_store: Arc<dyn Store>,
    interrupted_store: Arc<dyn Store>,
) {
    let profile = carrier("thames").unwrap();
    let feed = tmp.join("thames.csv");
    let mut out = std::fs::File::create(&feed).unwrap();
    let truth = write_policy_feed(
        &profile,
        &FeedOptions {
            policies: 1_000,
            seed: 3,
            delivery: 1,
            defects: demo_defects(&profile, 1_000),
        },
        &mut out,
    )
    .unwrap();
    let spec = MappingSpec::parse("thames-policies.toml", profile.policy_mapping).unwrap();
    let delivery = || Delivery {
        carrier: CarrierId::parse("thames").unwrap(),
        mapping: spec.clone(),
        file_name: "thames.csv".into(),
        path: feed.clone(),
        spooled: false,
        received_via: "test".into(),
        replay_of: None,
    };

    let whole = pipeline(&tmp.join("whole"), whole_store);
    let id = whole.receive(delivery()).await.unwrap().submission.id;
    let expected = whole.process(id, "w1", Arc::new(NoProgress)).await.unwrap();
    assert_eq!(expected.counts.received, 1_000);
    assert_eq!(expected.counts.rejected as usize, truth.rejected);

    let interrupted = pipeline(&tmp.join("interrupted"), interrupted_store);
    let id = interrupted.receive(delivery()).await.unwrap().submission.id;
    let crashing = interrupted.clone();
    let died = tokio::spawn(async move {
        let die = Arc::new(DieAfter {
            after: 4,
            seen: AtomicUsize::new(0),
        });
        crashing.process(id, "w1", die).await
    })
    .await;
    assert!(died.is_err(), "the first worker dies");
    let midway = interrupted
        .store()
        .get_submission(id, &Scope::all())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(midway.status, SubmissionStatus::Processing);
    assert_eq!(
        midway.committed_through, 400,
        "four batches of 100 were committed"
    );

    let resumed = interrupted
        .process(id, "w2", Arc::new(NoProgress))
        .await
        .unwrap();
    assert_eq!(resumed.status, SubmissionStatus::Completed);
    assert_eq!(resumed.counts, expected.counts);
    assert_eq!(snapshot(&interrupted).await, snapshot(&whole).await);
    let rejections = |p: Pipeline| async move {
        let page = carrierhub_store::PageRequest {
            after_id: None,
            limit: 500,
        };
        p.store()
            .list_rejections(id, &Scope::all(), &page)
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|r| (r.line, r.reason))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        rejections(interrupted.clone()).await,
        rejections(whole.clone()).await
    );
}

#[tokio::test]
async fn a_submission_held_by_a_live_worker_is_not_taken_over() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("db.sqlite")).await.unwrap());
    let p = Pipeline::new(store.clone(), DocumentStore::new(dir.join("documents")));
    let profile = carrier("northwind").unwrap();
    let feed = tmp.path().join("nw.csv");
    write_policy_feed(
        &profile,
        &FeedOptions {
            policies: 10,
            seed: 1,
            delivery: 1,
            defects: Default::default(),
        },
        &mut std::fs::File::create(&feed).unwrap(),
    )
    .unwrap();
    let id = p
        .receive(Delivery {
            carrier: CarrierId::parse("northwind").unwrap(),
            mapping: MappingSpec::parse("m", profile.policy_mapping).unwrap(),
            file_name: "nw.csv".into(),
            path: feed,
            spooled: false,
            received_via: "test".into(),
            replay_of: None,
        })
        .await
        .unwrap()
        .submission
        .id;
    assert!(store
        .claim_submission(id, "a", Duration::from_secs(60))
        .await
        .unwrap()
        .claimed()
        .is_some());
    assert!(store
        .claim_submission(id, "b", Duration::from_secs(60))
        .await
        .unwrap()
        .claimed()
        .is_none());
    assert!(matches!(
        p.process(id, "b", Arc::new(NoProgress)).await,
        Err(carrierhub_pipeline::PipelineError::Busy(_))
    ));
}
