//! The store's behaviour, one suite for every backend: each test below runs as
//! `sqlite::NAME` and `postgres::NAME` on a fresh database of its own (see `common/mod.rs`).
//! Tests assert through the `Store` API; only the outbox and a forced failure need SQL.
//!
//! PostgreSQL is reached at `postgres://postgres@127.0.0.1:5432/postgres` unless
//! `CARRIERHUB_TEST_POSTGRES_URL` says otherwise. Without a server the PostgreSQL half skips
//! with a notice, except under `CI=true`, where it fails.

use crate::common;

use carrierhub_model::*;
use carrierhub_store::Scope;
use carrierhub_store::*;
use common::*;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

conformance!(
    versions_transactions_and_events_follow_the_changes,
    upserts_by_natural_key_insert_update_or_leave_unchanged,
    a_batch_for_a_submission_held_by_another_worker_is_refused_whole,
    a_batch_failing_at_its_last_statement_leaves_nothing,
    two_writers_of_the_same_policy_lose_no_update,
    paging_is_stable_while_another_task_writes,
    transactions_are_applied_once_by_reference,
    leases_decide_who_may_work_on_a_submission,
    submissions_are_queued_by_events_and_counted_attempts,
    the_outbox_is_published_once_and_leases_have_one_holder,
    claims_need_their_policy_and_are_versioned,
    rejections_keep_their_position_and_sheet,
    mapping_revisions_and_the_current_one,
    submissions_carriers_and_replays,
    known_policy_numbers_are_per_carrier,
    portfolio_sums_are_exact,
    pagination_with_filters_visits_every_match_once,
    a_schema_behind_the_build_is_refused_without_migrating,
    as_of_reads_return_the_versions_current_then,
    paging_as_of_a_past_instant_is_stable_while_another_task_writes,
    extras_are_returned_when_asked_and_filter_current_and_past_versions,
    an_idempotency_key_replays_its_response_and_refuses_another_request,
    an_idempotency_key_is_claimed_by_exactly_one_of_concurrent_requests,
    released_abandoned_and_expired_idempotency_keys_are_free_again,
    document_content_is_stored_once_in_chunks_and_read_back_whole,
    every_read_returns_only_what_the_scope_allows,
    a_policy_stamp_moves_with_every_change_to_its_detail,
    api_keys_round_trip_refuse_a_duplicate_id_and_keep_their_first_revocation,
    the_audit_log_lists_newest_first_by_page_filters_and_purges,
    events_are_read_in_publication_order_within_the_scope,
    webhook_deliveries_are_queued_once_in_scope_claimed_retried_and_logged,
    the_warehouse_reads_published_events_after_a_position_and_a_carriers_history,
    the_warehouse_follows_the_publication_order_not_the_ids,
    the_warehouse_reads_the_history_of_records_and_the_rows_of_months,
    fenced_leases_have_one_holder_and_a_token_that_grows_with_each_handover,
    text_with_separators_and_escapes_is_stored_as_sent,
);

async fn versions_transactions_and_events_follow_the_changes(target: Target) {
    let store = target.store().await;
    let first = claimed_submission(&store, "w").await;
    // The same policy three times in one batch: new, endorsed, then cancelled.
    let outcome = store
        .commit_batch(batch(
            first,
            "w",
            vec![
                policy("P1", 10000, PolicyStatus::Active),
                policy("P2", 5000, PolicyStatus::Active),
                policy("P1", 12050, PolicyStatus::Active),
                policy("P1", 3000, PolicyStatus::Cancelled),
            ],
        ))
        .await
        .unwrap();
    assert_eq!(iuur(&outcome.counts), (2, 2, 0, 0));
    store.finish_submission(first, "w", None).await.unwrap();

    // A later batch repeating the final state writes nothing.
    let (second, counts) = ingest(&store, vec![policy("P1", 3000, PolicyStatus::Cancelled)]).await;
    assert_eq!(iuur(&counts), (0, 0, 1, 0));

    let p1 = policy_id(&store, "P1").await;
    let versions = assert_consistent_history(&store, p1).await;
    assert_eq!(versions.len(), 3);
    let movements: Vec<Vec<(String, String)>> = versions
        .iter()
        .map(|v| {
            v.premium_transactions
                .iter()
                .map(|t| (t.kind.clone(), t.amount.amount.to_string()))
                .collect()
        })
        .collect();
    assert_eq!(
        movements,
        [
            vec![("new_business".to_owned(), "100".to_owned())],
            vec![("endorsement".to_owned(), "20.5".to_owned())],
            vec![("cancellation".to_owned(), "-90.5".to_owned())],
        ]
    );
    // Lineage: each version points to the record it came from, none to the re-send.
    let lineage: Vec<(i64, u64, u64)> = versions
        .iter()
        .map(|v| {
            (
                v.lineage.submission_id,
                v.lineage.record_number,
                v.lineage.line,
            )
        })
        .collect();
    assert_eq!(lineage, [(first, 1, 2), (first, 3, 4), (first, 4, 5)]);
    assert!(versions.iter().all(|v| v.lineage.submission_id != second));
    assert_eq!(versions[2].record["premium"]["amount"], "30");

    let detail = store.get_policy(p1, &Scope::all()).await.unwrap().unwrap();
    assert_eq!(detail.summary.status.code, "cancelled");
    assert_eq!(detail.summary.premium, eur(3000));
    assert_eq!(
        detail.lineage,
        Lineage {
            submission_id: first,
            record_number: 4,
            line: 5
        }
    );

    let events = target.outbox().await;
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "policy.created",
            "policy.created",
            "policy.updated",
            "policy.cancelled"
        ]
    );
    assert_eq!(events[3].subject_id, p1);
    assert_eq!(events[3].payload["version"], 3);
    assert_eq!(events[3].payload["submission_id"], first);
    let s = store
        .get_submission(first, &Scope::all())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((s.counts.received, s.committed_through), (4, 4));
    assert_eq!(s.status, SubmissionStatus::Completed);
}

async fn upserts_by_natural_key_insert_update_or_leave_unchanged(target: Target) {
    let store = target.store().await;
    let (first, counts) = ingest(
        &store,
        vec![
            policy("P1", 10000, PolicyStatus::Active),
            policy("P2", 20000, PolicyStatus::Active),
            policy("P3", 30000, PolicyStatus::Active),
        ],
    )
    .await;
    assert_eq!(iuur(&counts), (3, 0, 0, 0));

    let mut other_carrier = policy_of("beta", "P1", eur(777), PolicyStatus::Active);
    other_carrier.insured.name = "Bea".into();
    store
        .ensure_carrier(&carrier("beta"), "Beta")
        .await
        .unwrap();
    let (second, counts) = ingest(
        &store,
        vec![
            policy("P1", 10000, PolicyStatus::Active),
            policy("P2", 25000, PolicyStatus::Active),
            policy("P3", 30000, PolicyStatus::Cancelled),
            policy("P4", 40000, PolicyStatus::Active),
            // The same number at another carrier is another policy.
            CanonicalRecord::Policy(other_carrier),
        ],
    )
    .await;
    assert_eq!(iuur(&counts), (2, 2, 1, 0));

    let acme = all_policies(
        &store,
        PolicyFilter {
            carrier: Some("acme".into()),
            ..PolicyFilter::default()
        },
    )
    .await;
    let summary: Vec<(&str, i64, String)> = acme
        .iter()
        .map(|p| (p.number.as_str(), p.version, p.premium.to_string()))
        .collect();
    assert_eq!(
        summary,
        [
            ("P1", 1, "100.00 EUR".to_owned()),
            ("P2", 2, "250.00 EUR".to_owned()),
            ("P3", 2, "300.00 EUR".to_owned()),
            ("P4", 1, "400.00 EUR".to_owned()),
        ]
    );
    for p in &acme {
        assert_consistent_history(&store, p.id).await;
    }
    let p2 = store
        .get_policy(acme[1].id, &Scope::all())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        p2.lineage,
        Lineage {
            submission_id: second,
            record_number: 2,
            line: 3
        }
    );
    let p1 = store
        .get_policy(acme[0].id, &Scope::all())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        p1.lineage.submission_id, first,
        "an unchanged record adds no lineage"
    );
    let beta = all_policies(
        &store,
        PolicyFilter {
            carrier: Some("beta".into()),
            ..PolicyFilter::default()
        },
    )
    .await;
    assert_eq!(beta.len(), 1);
    assert_eq!(beta[0].insured_name, "Bea");
    assert!(store
        .get_policy(i64::MAX, &Scope::all())
        .await
        .unwrap()
        .is_none());
    assert!(store
        .list_policy_versions(i64::MAX, &Scope::all())
        .await
        .unwrap()
        .is_empty());
}

async fn a_batch_for_a_submission_held_by_another_worker_is_refused_whole(target: Target) {
    let store = target.store().await;
    let id = claimed_submission(&store, "w").await;
    let mut b = batch(
        id,
        "someone-else",
        vec![policy("P1", 100, PolicyStatus::Active)],
    );
    b.rejections.push(NewRejection {
        record_number: 2,
        source_line: 3,
        sheet: None,
        field: None,
        source_column: None,
        value: None,
        reason: "bad".into(),
    });
    b.rejected_records = 1;
    let err = store.commit_batch(b).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Invalid(m) if m.contains("someone-else") && m.contains('w')),
        "{err}"
    );
    assert!(all_policies(&store, PolicyFilter::default())
        .await
        .is_empty());
    let s = store
        .get_submission(id, &Scope::all())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((s.counts, s.committed_through), (Counts::default(), 0));
    assert!(store
        .list_rejections(id, &Scope::all(), &PageRequest::default())
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(target.outbox().await.is_empty());

    let err = store
        .commit_batch(batch(id + 1000, "w", vec![]))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
}

async fn a_batch_failing_at_its_last_statement_leaves_nothing(target: Target) {
    let store = target.store().await;
    let (_, _) = ingest(
        &store,
        vec![
            policy("P1", 10000, PolicyStatus::Active),
            claim("C1", "P1", 0, 500),
        ],
    )
    .await;
    let events_before = target.outbox().await.len();
    let p1 = policy_id(&store, "P1").await;
    target.fail_commits_through(777).await;

    let id = claimed_submission(&store, "w").await;
    let records = vec![
        policy("P1", 15000, PolicyStatus::Active),
        policy("P2", 20000, PolicyStatus::Active),
        claim("C1", "P1", 100, 400),
        claim("C2", "P2", 0, 50),
        claim("C3", "NOPE", 0, 50),
        transaction(
            "P1",
            "T1",
            TransactionType::Endorsement,
            500,
            date(2025, 6, 1),
        ),
    ];
    let mut failing = batch(id, "w", records.clone());
    failing.through_record = 777;
    failing.rejections.push(NewRejection {
        record_number: 7,
        source_line: 8,
        sheet: None,
        field: Some("premium".into()),
        source_column: Some("Beitrag".into()),
        value: Some("x".into()),
        reason: "not a number".into(),
    });
    failing.rejected_records = 1;
    failing.skipped_records = 2;
    let err = store.commit_batch(failing.clone()).await.unwrap_err();
    assert!(err.to_string().contains("forced failure"), "{err}");

    // Nothing of it: not the new version, the new policy, the claims, the rejections, the
    // events, the transaction, nor the counters.
    let versions = assert_consistent_history(&store, p1).await;
    assert_eq!(versions.len(), 1);
    let policies = all_policies(&store, PolicyFilter::default()).await;
    assert_eq!(policies.len(), 1);
    let claims = store
        .list_claims(&Scope::all(), &ClaimFilter::default())
        .await
        .unwrap();
    assert_eq!(claims.items.len(), 1);
    assert_eq!(claims.items[0].version, 1);
    assert!(store
        .list_rejections(id, &Scope::all(), &PageRequest::default())
        .await
        .unwrap()
        .items
        .is_empty());
    assert_eq!(target.outbox().await.len(), events_before);
    let s = store
        .get_submission(id, &Scope::all())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((s.counts, s.committed_through), (Counts::default(), 0));
    assert_eq!(s.status, SubmissionStatus::Processing);

    // The same batch committed for real counts once.
    let mut ok = failing;
    ok.through_record = 8;
    let outcome = store.commit_batch(ok).await.unwrap();
    // P1 updated, P2 inserted, C1 updated, C2 inserted, C3 rejected, T1 updated.
    assert_eq!(iuur(&outcome.counts), (2, 3, 0, 2));
    let s = store
        .get_submission(id, &Scope::all())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.counts.received, 9);
    assert_eq!(s.counts.skipped, 2);
    assert_eq!(s.committed_through, 8);
    assert_eq!(
        store
            .list_rejections(id, &Scope::all(), &PageRequest::default())
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    let versions = assert_consistent_history(&store, p1).await;
    assert_eq!(versions.len(), 3);
    assert_eq!(
        store
            .get_policy(p1, &Scope::all())
            .await
            .unwrap()
            .unwrap()
            .summary
            .premium,
        eur(15500)
    );
}

async fn two_writers_of_the_same_policy_lose_no_update(target: Target) {
    // Two stores on one database, as two processes would have, each with its submission.
    let first = target.store().await;
    let second = target.store().await;
    let a = claimed_submission(&first, "a").await;
    let b = claimed_submission(&second, "b").await;
    const ROUNDS: i64 = 12;

    let writer = |store: Arc<dyn Store>, submission: i64, owner: &'static str, base: i64| {
        tokio::spawn(async move {
            let mut counts = Counts::default();
            for round in 0..ROUNDS {
                // Every commit is a distinct state of P1, and a new key both writers race
                // to create.
                let mut b = batch(
                    submission,
                    owner,
                    vec![
                        policy("P1", base + round, PolicyStatus::Active),
                        policy(&format!("R{round}"), base + round, PolicyStatus::Active),
                    ],
                );
                b.through_record = round as u64 + 1;
                let outcome = store
                    .commit_batch(b)
                    .await
                    .unwrap_or_else(|e| panic!("writer {owner}, round {round}: {e}"));
                counts.add(&outcome.counts);
                tokio::task::yield_now().await;
            }
            counts
        })
    };
    let (ca, cb) = tokio::join!(
        writer(first.clone(), a, "a", 100_000),
        writer(second.clone(), b, "b", 500_000)
    );
    let (ca, cb) = (ca.unwrap(), cb.unwrap());

    // Every commit made exactly one version of P1 and of its R key.
    assert_eq!(ca.inserted + ca.updated, 2 * ROUNDS as u64);
    assert_eq!(cb.inserted + cb.updated, 2 * ROUNDS as u64);
    assert_eq!(ca.inserted + cb.inserted, 1 + ROUNDS as u64);
    assert_eq!(ca.unchanged + cb.unchanged, 0);

    let p1 = policy_id(&first, "P1").await;
    let versions = assert_consistent_history(&first, p1).await;
    assert_eq!(versions.len(), 2 * ROUNDS as usize, "no version lost");
    let premiums: HashSet<String> = versions
        .iter()
        .map(|v| v.record["premium"]["amount"].as_str().unwrap().to_owned())
        .collect();
    let expected: HashSet<String> = (0..ROUNDS)
        .flat_map(|r| [100_000 + r, 500_000 + r])
        .map(|cents| Decimal::new(cents, 2).normalize().to_string())
        .collect();
    assert_eq!(premiums, expected, "every state written once");
    // Each writer's own states keep their order in the chain.
    let cents: Vec<i64> = versions
        .iter()
        .map(|v| {
            let amount = Decimal::from_str(v.record["premium"]["amount"].as_str().unwrap());
            (amount.unwrap() * Decimal::from(100)).to_i64().unwrap()
        })
        .collect();
    for base in [100_000, 500_000] {
        let mine: Vec<i64> = cents
            .iter()
            .copied()
            .filter(|c| (base..base + ROUNDS).contains(c))
            .collect();
        assert_eq!(mine, (base..base + ROUNDS).collect::<Vec<_>>());
    }
    for round in 0..ROUNDS {
        let id = policy_id(&first, &format!("R{round}")).await;
        let versions = assert_consistent_history(&first, id).await;
        assert_eq!(
            versions.len(),
            2,
            "R{round}: created once, then updated once"
        );
    }
    let submissions = [
        first
            .get_submission(a, &Scope::all())
            .await
            .unwrap()
            .unwrap(),
        first
            .get_submission(b, &Scope::all())
            .await
            .unwrap()
            .unwrap(),
    ];
    assert_eq!(submissions[0].counts.received, 2 * ROUNDS as u64);
    assert_eq!(submissions[1].committed_through, ROUNDS as u64);
}

async fn paging_is_stable_while_another_task_writes(target: Target) {
    let store = target.store().await;
    const EXISTING: usize = 120;
    let existing: Vec<CanonicalRecord> = (0..EXISTING)
        .map(|i| policy(&format!("E{i:04}"), 1000 + i as i64, PolicyStatus::Active))
        .collect();
    ingest(&store, existing).await;
    let before: Vec<i64> = all_policies(&store, PolicyFilter::default())
        .await
        .iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(before.len(), EXISTING);

    let writer_store = target.store().await;
    let writer = tokio::spawn(async move {
        let id = claimed_submission(&writer_store, "writer").await;
        for round in 0..10 {
            let mut records: Vec<CanonicalRecord> = (0..20)
                .map(|i| {
                    policy(
                        &format!("N{round:02}{i:02}"),
                        5000 + i,
                        PolicyStatus::Active,
                    )
                })
                .collect();
            // Existing policies change too (their ids stay).
            records.push(policy(
                &format!("E{:04}", round * 7),
                99_999,
                PolicyStatus::Active,
            ));
            let mut b = batch(id, "writer", records);
            b.through_record = (round + 1) * 21;
            writer_store.commit_batch(b).await.unwrap();
            tokio::task::yield_now().await;
        }
    });

    let mut seen = Vec::new();
    let mut filter = PolicyFilter::default();
    filter.page.limit = 7;
    loop {
        let page = store.list_policies(&Scope::all(), &filter).await.unwrap();
        seen.extend(page.items.iter().map(|p| p.id));
        match page.next_cursor {
            Some(c) => filter.page.after_id = Some(Cursor::decode(&c).unwrap().after_id),
            None => break,
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    writer.await.unwrap();

    let distinct: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!(distinct.len(), seen.len(), "no policy seen twice");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "ids ascend");
    for id in &before {
        assert!(distinct.contains(id), "pre-existing policy {id} skipped");
    }
    assert_eq!(
        all_policies(&store, PolicyFilter::default()).await.len(),
        EXISTING + 200
    );
}

async fn transactions_are_applied_once_by_reference(target: Target) {
    let store = target.store().await;
    ingest(&store, vec![policy("P1", 100_000, PolicyStatus::Active)]).await;
    let p1 = policy_id(&store, "P1").await;

    let (first, counts) = ingest(
        &store,
        vec![
            transaction(
                "P1",
                "T1",
                TransactionType::Endorsement,
                15_000,
                date(2025, 6, 1),
            ),
            transaction(
                "P1",
                "T2",
                TransactionType::Cancellation,
                -40_000,
                date(2025, 9, 1),
            ),
            transaction(
                "NOPE",
                "T3",
                TransactionType::Endorsement,
                100,
                date(2025, 6, 1),
            ),
            transaction(
                "P1",
                "T4",
                TransactionType::Endorsement,
                -1_000_000,
                date(2025, 6, 1),
            ),
        ],
    )
    .await;
    assert_eq!(iuur(&counts), (0, 2, 0, 2));
    let rejected = store
        .list_rejections(first, &Scope::all(), &PageRequest::default())
        .await
        .unwrap()
        .items;
    let fields: Vec<(u64, Option<&str>)> = rejected
        .iter()
        .map(|r| (r.record_number, r.field.as_deref()))
        .collect();
    assert_eq!(fields, [(3, Some("policy_number")), (4, Some("premium"))]);
    assert!(
        rejected[0].reason.contains("not known"),
        "{}",
        rejected[0].reason
    );

    let versions = assert_consistent_history(&store, p1).await;
    assert_eq!(versions.len(), 3);
    let v2 = &versions[1].premium_transactions;
    assert_eq!(v2.len(), 1);
    assert_eq!(
        (v2[0].kind.as_str(), v2[0].amount),
        ("endorsement", eur(15_000))
    );
    assert_eq!(v2[0].effective_date, date(2025, 6, 1), "the carrier's date");
    let v3 = &versions[2].premium_transactions;
    assert_eq!(
        (v3[0].kind.as_str(), v3[0].amount),
        ("cancellation", eur(-40_000))
    );
    assert_eq!(v3[0].effective_date, date(2025, 9, 1));
    assert_eq!(versions[1].transaction.as_ref().unwrap()["reference"], "T1");
    assert!(versions[0].transaction.is_none());
    let current = store
        .get_policy(p1, &Scope::all())
        .await
        .unwrap()
        .unwrap()
        .summary;
    assert_eq!(
        (current.premium, current.status.code.as_str()),
        (eur(75_000), "cancelled")
    );

    // Sent again: applied already. The same reference with other content is refused.
    let (again, counts) = ingest(
        &store,
        vec![
            transaction(
                "P1",
                "T1",
                TransactionType::Endorsement,
                15_000,
                date(2025, 6, 1),
            ),
            transaction(
                "P1",
                "T2",
                TransactionType::Cancellation,
                -40_000,
                date(2025, 9, 1),
            ),
            transaction(
                "P1",
                "T1",
                TransactionType::Endorsement,
                16_000,
                date(2025, 6, 1),
            ),
        ],
    )
    .await;
    assert_eq!(iuur(&counts), (0, 0, 2, 1));
    let rejected = store
        .list_rejections(again, &Scope::all(), &PageRequest::default())
        .await
        .unwrap()
        .items;
    assert_eq!(rejected[0].field.as_deref(), Some("reference"));

    // The policy's original state, re-sent, is one only transactions followed: no change.
    let (_, counts) = ingest(&store, vec![policy("P1", 100_000, PolicyStatus::Active)]).await;
    assert_eq!(iuur(&counts), (0, 0, 1, 0));
    // A state the carrier really changed is a new version.
    let (_, counts) = ingest(&store, vec![policy("P1", 200_000, PolicyStatus::Active)]).await;
    assert_eq!(iuur(&counts), (0, 1, 0, 0));
    assert_eq!(assert_consistent_history(&store, p1).await.len(), 4);

    // In one batch: a transaction before its policy exists is refused; after, applied.
    let (_, counts) = ingest(
        &store,
        vec![
            transaction(
                "P9",
                "X1",
                TransactionType::Endorsement,
                500,
                date(2025, 2, 1),
            ),
            policy("P9", 1_000, PolicyStatus::Active),
            transaction(
                "P9",
                "X1",
                TransactionType::Endorsement,
                500,
                date(2025, 2, 1),
            ),
            transaction(
                "P9",
                "X1",
                TransactionType::Endorsement,
                500,
                date(2025, 2, 1),
            ),
        ],
    )
    .await;
    assert_eq!(iuur(&counts), (1, 1, 1, 1));
    let p9 = policy_id(&store, "P9").await;
    let versions = assert_consistent_history(&store, p9).await;
    assert_eq!(versions.len(), 2);
    assert_eq!(
        store
            .get_policy(p9, &Scope::all())
            .await
            .unwrap()
            .unwrap()
            .summary
            .premium,
        eur(1_500)
    );
}

async fn leases_decide_who_may_work_on_a_submission(target: Target) {
    let store = target.store().await;
    let id = new_submission(&store).await;
    let s = store
        .get_submission(id, &Scope::all())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.status, SubmissionStatus::Received);
    assert!(s.started_at.is_none() && s.finished_at.is_none());

    let s = store
        .claim_submission(id, "w1", LEASE)
        .await
        .unwrap()
        .claimed()
        .unwrap();
    assert_eq!(s.status, SubmissionStatus::Processing);
    let started = s.started_at.expect("started");
    assert!(store
        .claim_submission(id, "w2", LEASE)
        .await
        .unwrap()
        .claimed()
        .is_none());
    // The holder may claim again (it extends its lease).
    assert!(store
        .claim_submission(id, "w1", LEASE)
        .await
        .unwrap()
        .claimed()
        .is_some());
    assert!(matches!(
        store.finish_submission(id, "w2", None).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store
            .commit_batch(batch(id, "w2", vec![policy("P1", 1, PolicyStatus::Active)]))
            .await,
        Err(StoreError::Invalid(_))
    ));

    // A lease that runs out lets another worker resume; the first may then commit no more.
    store
        .claim_submission(id, "w1", Duration::from_millis(1))
        .await
        .unwrap()
        .claimed()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let s = store
        .claim_submission(id, "w2", LEASE)
        .await
        .unwrap()
        .claimed()
        .unwrap();
    assert_eq!(s.started_at, Some(started), "started once");
    assert!(matches!(
        store
            .commit_batch(batch(id, "w1", vec![policy("P1", 1, PolicyStatus::Active)]))
            .await,
        Err(StoreError::Invalid(_))
    ));
    store
        .commit_batch(batch(id, "w2", vec![policy("P1", 1, PolicyStatus::Active)]))
        .await
        .unwrap();
    assert_eq!(
        store
            .unfinished_submissions()
            .await
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect::<Vec<_>>(),
        [id]
    );
    let done = store.finish_submission(id, "w2", None).await.unwrap();
    assert_eq!(done.status, SubmissionStatus::Completed);
    assert!(done.finished_at.is_some() && done.error.is_none());
    assert!(store
        .claim_submission(id, "w1", LEASE)
        .await
        .unwrap()
        .claimed()
        .is_none());
    assert!(store
        .claim_submission(id, "w2", LEASE)
        .await
        .unwrap()
        .claimed()
        .is_none());
    assert!(store.unfinished_submissions().await.unwrap().is_empty());

    let failing = claimed_submission(&store, "w3").await;
    let failed = store
        .finish_submission(failing, "w3", Some("the document vanished"))
        .await
        .unwrap();
    assert_eq!(failed.status, SubmissionStatus::Failed);
    assert_eq!(failed.error.as_deref(), Some("the document vanished"));
    assert!(store
        .claim_submission(failing, "w3", LEASE)
        .await
        .unwrap()
        .claimed()
        .is_none());
    assert!(matches!(
        store.claim_submission(i64::MAX, "w", LEASE).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn submissions_are_queued_by_events_and_counted_attempts(target: Target) {
    let store = target.store().await;
    let first = new_submission(&store).await;
    let second = new_submission(&store).await;
    // Each submission is queued by its event, written with it.
    let events = store.unpublished_events(100).await.unwrap();
    let received: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == "submission.received")
        .map(|e| (e.subject_id, e.payload["submission_id"].as_i64()))
        .collect();
    assert_eq!(received, [(first, Some(first)), (second, Some(second))]);

    // A carrier's submissions go in order: the second waits for the first.
    assert_eq!(
        store.earlier_unfinished_submission(second).await.unwrap(),
        Some(first)
    );
    assert_eq!(
        store.earlier_unfinished_submission(first).await.unwrap(),
        None
    );

    let s = store
        .claim_submission(first, "w1", LEASE)
        .await
        .unwrap()
        .claimed()
        .unwrap();
    assert_eq!(s.attempts, 1);
    match store.claim_submission(first, "w2", LEASE).await.unwrap() {
        SubmissionClaim::Held { owner } => assert_eq!(owner, "w1"),
        other => panic!("expected held, got {other:?}"),
    }
    assert!(store
        .extend_submission_lease(first, "w1", LEASE)
        .await
        .unwrap());
    assert!(!store
        .extend_submission_lease(first, "w2", LEASE)
        .await
        .unwrap());
    // The worker dies; the next claim is the second attempt.
    store
        .claim_submission(first, "w1", Duration::from_millis(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let s = store
        .claim_submission(first, "w2", LEASE)
        .await
        .unwrap()
        .claimed()
        .unwrap();
    assert_eq!(s.attempts, 3);
    assert!(!store
        .extend_submission_lease(first, "w1", LEASE)
        .await
        .unwrap());
    let mut b = batch(first, "w2", vec![policy("P1", 100, PolicyStatus::Active)]);
    b.message_id = Some("event-7".into());
    store.commit_batch(b).await.unwrap();
    let failed = store
        .finish_submission(first, "w2", Some("dead-lettered after 3 attempts"))
        .await
        .unwrap();
    assert_eq!(failed.message_id.as_deref(), Some("event-7"));
    assert_eq!(
        store.earlier_unfinished_submission(second).await.unwrap(),
        None
    );
    match store.claim_submission(first, "w3", LEASE).await.unwrap() {
        SubmissionClaim::Finished(s) => assert_eq!(s.status, SubmissionStatus::Failed),
        other => panic!("expected finished, got {other:?}"),
    }

    // Redriven: received again, attempts cleared, progress kept.
    let again = store.requeue_submission(first).await.unwrap();
    assert_eq!(again.status, SubmissionStatus::Received);
    assert_eq!((again.attempts, again.error.as_deref()), (0, None));
    assert_eq!(again.committed_through, 1);
    assert!(
        store.requeue_submission(first).await.is_err(),
        "only a failed one"
    );
    let s = store
        .claim_submission(first, "w3", LEASE)
        .await
        .unwrap()
        .claimed()
        .unwrap();
    assert_eq!(s.attempts, 1);
    store.finish_submission(first, "w3", None).await.unwrap();

    let kinds: Vec<_> = store
        .unpublished_events(100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event_type.starts_with("submission.") && e.subject_id == first)
        .map(|e| {
            (
                e.event_type,
                e.payload["status"].as_str().map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("submission.received".to_owned(), None),
            ("submission.failed".to_owned(), Some("failed".to_owned())),
            (
                "submission.completed".to_owned(),
                Some("completed".to_owned())
            ),
        ]
    );
}

async fn the_outbox_is_published_once_and_leases_have_one_holder(target: Target) {
    let store = target.store().await;
    let id = claimed_submission(&store, "w").await;
    store
        .commit_batch(batch(
            id,
            "w",
            vec![
                policy("P1", 100, PolicyStatus::Active),
                policy("P2", 100, PolicyStatus::Active),
            ],
        ))
        .await
        .unwrap();
    let events = store.unpublished_events(100).await.unwrap();
    let types: Vec<_> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        ["submission.received", "policy.created", "policy.created"]
    );
    assert!(events.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(events[1].carrier, "acme");
    assert_eq!(store.unpublished_events(1).await.unwrap().len(), 1);
    store
        .mark_events_published(&[events[0].id, events[1].id])
        .await
        .unwrap();
    let left = store.unpublished_events(100).await.unwrap();
    assert_eq!(left, events[2..]);
    store.mark_events_published(&[events[2].id]).await.unwrap();
    assert!(store.unpublished_events(100).await.unwrap().is_empty());

    assert!(store.take_lease("relay", "a", LEASE).await.unwrap());
    assert!(
        store.take_lease("relay", "a", LEASE).await.unwrap(),
        "renewed"
    );
    assert!(!store.take_lease("relay", "b", LEASE).await.unwrap());
    assert!(store.take_lease("other", "b", LEASE).await.unwrap());
    assert!(store
        .take_lease("relay", "a", Duration::from_millis(1))
        .await
        .unwrap());
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(
        store.take_lease("relay", "b", LEASE).await.unwrap(),
        "expired: taken over"
    );
    assert!(!store.take_lease("relay", "a", LEASE).await.unwrap());
}

async fn claims_need_their_policy_and_are_versioned(target: Target) {
    let store = target.store().await;
    let (first, counts) = ingest(
        &store,
        vec![
            claim("C0", "P1", 0, 100),
            policy("P1", 10000, PolicyStatus::Active),
            claim("C1", "P1", 0, 100_000),
            claim("C2", "NOPE", 0, 100),
        ],
    )
    .await;
    assert_eq!(iuur(&counts), (2, 0, 0, 2));
    let rejected = store
        .list_rejections(first, &Scope::all(), &PageRequest::default())
        .await
        .unwrap()
        .items;
    let numbers: Vec<u64> = rejected.iter().map(|r| r.record_number).collect();
    assert_eq!(numbers, [1, 4], "a claim before its policy is refused too");
    assert_eq!(rejected[1].value.as_deref(), Some("NOPE"));
    assert!(rejected[1].reason.contains("ingest the policy feed first"));

    let (_, counts) = ingest(
        &store,
        vec![
            claim("C1", "P1", 30_000, 70_000),
            claim("C3", "P1", 0, 500),
            claim("C3", "P1", 0, 500),
        ],
    )
    .await;
    assert_eq!(iuur(&counts), (1, 1, 1, 0));

    let p1 = policy_id(&store, "P1").await;
    let mut filter = ClaimFilter {
        policy_id: Some(p1),
        ..ClaimFilter::default()
    };
    let claims = store
        .list_claims(&Scope::all(), &filter)
        .await
        .unwrap()
        .items;
    let view: Vec<(&str, i64, String, String)> = claims
        .iter()
        .map(|c| {
            (
                c.number.as_str(),
                c.version,
                c.paid.to_string(),
                c.incurred.to_string(),
            )
        })
        .collect();
    assert_eq!(
        view,
        [
            ("C1", 2, "300.00 EUR".into(), "1000.00 EUR".into()),
            ("C3", 1, "0.00 EUR".into(), "5.00 EUR".into()),
        ]
    );
    assert!(claims.iter().all(|c| c.policy_number == "P1"));
    filter.status = Some(ClaimStatus::Closed);
    assert!(store
        .list_claims(&Scope::all(), &filter)
        .await
        .unwrap()
        .items
        .is_empty());
    let detail = store.get_policy(p1, &Scope::all()).await.unwrap().unwrap();
    assert_eq!(detail.claims.len(), 2);

    let events = target.outbox().await;
    let claim_events: Vec<&str> = events
        .iter()
        .filter(|e| e.event_type.starts_with("claim."))
        .map(|e| e.event_type.as_str())
        .collect();
    assert_eq!(
        claim_events,
        ["claim.created", "claim.updated", "claim.created"]
    );
    let update = events
        .iter()
        .find(|e| e.event_type == "claim.updated")
        .unwrap();
    assert_eq!(update.payload["version"], 2);
    assert_eq!(update.payload["policy_id"], p1);
    assert_eq!(update.payload["paid"]["amount"], "300");
}

async fn rejections_keep_their_position_and_sheet(target: Target) {
    let store = target.store().await;
    let id = claimed_submission(&store, "w").await;
    let mut b = batch(id, "w", vec![policy("P1", 100, PolicyStatus::Active)]);
    for (n, sheet) in [(2, Some("Renewals")), (2, Some("Renewals")), (3, None)] {
        b.rejections.push(NewRejection {
            record_number: n,
            source_line: n + 1,
            sheet: sheet.map(str::to_owned),
            field: Some("effective_date".into()),
            source_column: Some("Inception Date".into()),
            value: Some("TBC".into()),
            reason: format!("reason {n}"),
        });
    }
    b.rejected_records = 2;
    b.skipped_records = 3;
    b.through_record = 7;
    let outcome = store.commit_batch(b).await.unwrap();
    assert_eq!(
        outcome.counts,
        Counts {
            received: 6,
            inserted: 1,
            updated: 0,
            unchanged: 0,
            rejected: 2,
            skipped: 3
        }
    );
    let s = store
        .get_submission(id, &Scope::all())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.counts, outcome.counts);
    assert_eq!(s.committed_through, 7);

    let mut page = PageRequest {
        after_id: None,
        limit: 2,
    };
    let first = store
        .list_rejections(id, &Scope::all(), &page)
        .await
        .unwrap();
    assert_eq!(first.items.len(), 2);
    let cursor = Cursor::decode(first.next_cursor.as_deref().unwrap()).unwrap();
    page.after_id = Some(cursor.after_id);
    let second = store
        .list_rejections(id, &Scope::all(), &page)
        .await
        .unwrap();
    assert_eq!(second.items.len(), 1);
    assert!(second.next_cursor.is_none());
    let all: Vec<Rejection> = first.items.into_iter().chain(second.items).collect();
    assert_eq!(all[0].sheet.as_deref(), Some("Renewals"));
    assert_eq!(all[2].sheet, None);
    assert_eq!(
        (
            all[0].file_name.as_str(),
            all[0].line,
            all[0].column.as_deref(),
            all[0].value.as_deref()
        ),
        ("f.csv", 3, Some("Inception Date"), Some("TBC"))
    );
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    assert!(store
        .list_rejections(id + 1, &Scope::all(), &PageRequest::default())
        .await
        .unwrap()
        .items
        .is_empty());
}

async fn mapping_revisions_and_the_current_one(target: Target) {
    let store = target.store().await;
    let acme = carrier("acme");
    let beta = carrier("beta");
    store.ensure_carrier(&acme, "Acme").await.unwrap();
    store.ensure_carrier(&acme, "Acme again").await.unwrap();
    store.ensure_carrier(&beta, "Beta").await.unwrap();
    assert!(store
        .find_mapping(&acme, "policies")
        .await
        .unwrap()
        .is_none());
    let one = register(&store, &acme, "a1", "first").await;
    let same = register(&store, &acme, "a1", "first").await;
    assert_eq!(one, same, "the same text is one revision");
    assert_eq!((one.revision, one.version), (1, 3));
    let two = register(&store, &acme, "a2", "second").await;
    assert_eq!(two.revision, 2);
    let other = register(&store, &beta, "a2", "second").await;
    assert_eq!(other.revision, 1, "revisions count per carrier");

    let current = store
        .find_mapping(&acme, "policies")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (current.reference.id, current.text.as_str()),
        (two.id, "second")
    );

    // The revision the latest submission used is the current one.
    store.record_document("d", 1).await.unwrap();
    for mapping in [two.id, one.id] {
        store
            .create_submission(NewSubmission {
                carrier: &acme,
                mapping_id: mapping,
                file_name: "f.csv",
                document_sha256: "d",
                received_via: "test",
                replay_of: None,
            })
            .await
            .unwrap();
    }
    let current = store
        .find_mapping(&acme, "policies")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(current.reference, one);
    assert_eq!(current.carrier, "acme");
    let fetched = store.get_mapping(two.id).await.unwrap();
    assert_eq!((fetched.reference, fetched.text.as_str()), (two, "second"));
    assert!(matches!(
        store.get_mapping(i64::MAX).await,
        Err(StoreError::NotFound(_))
    ));
    let carriers = store.list_carriers(&Scope::all()).await.unwrap();
    let names: Vec<(&str, &str)> = carriers
        .iter()
        .map(|c| (c.id.as_str(), c.name.as_str()))
        .collect();
    assert_eq!(names, [("acme", "Acme"), ("beta", "Beta")]);
}

async fn register(
    store: &Arc<dyn Store>,
    carrier: &CarrierId,
    sha256: &str,
    text: &str,
) -> MappingRef {
    store
        .register_mapping(NewMapping {
            carrier,
            name: "policies",
            record: RecordKind::Transaction,
            version: 3,
            sha256,
            text,
        })
        .await
        .unwrap()
}

async fn submissions_carriers_and_replays(target: Target) {
    let store = target.store().await;
    let (first, _) = ingest(
        &store,
        vec![
            policy("P1", 100, PolicyStatus::Active),
            claim("C1", "P1", 0, 1),
        ],
    )
    .await;
    let beta = carrier("beta");
    store.ensure_carrier(&beta, "Beta").await.unwrap();
    let mapping = store
        .register_mapping(NewMapping {
            carrier: &beta,
            name: "m",
            record: RecordKind::Claim,
            version: 1,
            sha256: "s",
            text: "t",
        })
        .await
        .unwrap();
    let beta_submission = store
        .create_submission(NewSubmission {
            carrier: &beta,
            mapping_id: mapping.id,
            file_name: "claims.csv",
            document_sha256: "d",
            received_via: "api",
            replay_of: None,
        })
        .await
        .unwrap();
    let original = store
        .get_submission(first, &Scope::all())
        .await
        .unwrap()
        .unwrap();
    let replay = store
        .create_submission(NewSubmission {
            carrier: &carrier("acme"),
            mapping_id: original.mapping.id,
            file_name: &original.file_name,
            document_sha256: &original.document_sha256,
            received_via: "replay",
            replay_of: Some(first),
        })
        .await
        .unwrap();
    let replayed = store
        .get_submission(replay, &Scope::all())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(replayed.replay_of, Some(first));
    assert_eq!(replayed.received_via, "replay");
    assert_eq!(replayed.mapping, original.mapping);
    assert_eq!(original.replay_of, None);

    let mut filter = SubmissionFilter {
        carrier: Some("acme".into()),
        page: PageRequest {
            after_id: None,
            limit: 1,
        },
    };
    let mut acme_ids = Vec::new();
    loop {
        let page = store
            .list_submissions(&Scope::all(), &filter)
            .await
            .unwrap();
        acme_ids.extend(page.items.iter().map(|s| s.id));
        match page.next_cursor {
            Some(c) => filter.page.after_id = Some(Cursor::decode(&c).unwrap().after_id),
            None => break,
        }
    }
    assert_eq!(acme_ids, [first, replay]);
    let unfinished: Vec<i64> = store
        .unfinished_submissions()
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(unfinished, [beta_submission, replay]);

    let carriers = store.list_carriers(&Scope::all()).await.unwrap();
    let view: Vec<(&str, i64, i64, i64)> = carriers
        .iter()
        .map(|c| (c.id.as_str(), c.policies, c.claims, c.submissions))
        .collect();
    assert_eq!(view, [("acme", 1, 1, 2), ("beta", 0, 0, 1)]);
}

async fn known_policy_numbers_are_per_carrier(target: Target) {
    let store = target.store().await;
    ingest(
        &store,
        vec![
            policy("P1", 100, PolicyStatus::Active),
            policy("P2", 100, PolicyStatus::Cancelled),
        ],
    )
    .await;
    let asked: Vec<String> = ["P1", "P2", "P3", "p1"].map(String::from).to_vec();
    let known = store
        .known_policy_numbers(&carrier("acme"), &asked)
        .await
        .unwrap();
    assert_eq!(known, HashSet::from(["P1".to_owned(), "P2".to_owned()]));
    assert!(store
        .known_policy_numbers(&carrier("beta"), &asked)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .known_policy_numbers(&carrier("acme"), &[])
        .await
        .unwrap()
        .is_empty());
}

async fn portfolio_sums_are_exact(target: Target) {
    let store = target.store().await;
    let usd = Currency::parse("USD").unwrap();
    let mut records = Vec::new();
    // A tenth, a thousand times, sums to exactly 100 (and would not in floating point).
    for i in 0..1_000 {
        records.push(CanonicalRecord::Policy(policy_of(
            "acme",
            &format!("T{i:05}"),
            Money::new(Decimal::new(1, 1), usd),
            PolicyStatus::Active,
        )));
    }
    let huge = Decimal::from_str("12345678901234567.89").unwrap();
    records.push(CanonicalRecord::Policy(policy_of(
        "acme",
        "BIG",
        Money::new(huge, usd),
        PolicyStatus::Cancelled,
    )));
    let mut auto = policy_of("acme", "A1", eur(33), PolicyStatus::Active);
    auto.line_of_business = Coded::new(LineOfBusiness::PersonalAuto, "KFZ");
    records.push(CanonicalRecord::Policy(auto.clone()));
    auto.number = PolicyNumber::parse("A2").unwrap();
    auto.premium = eur(67);
    records.push(CanonicalRecord::Policy(auto));
    records.push(policy("H1", 123_456, PolicyStatus::Active));
    ingest(&store, records).await;

    let lines = store.portfolio(&Scope::all()).await.unwrap();
    let view: Vec<(&str, &str, &str, u64, u64, String)> = lines
        .iter()
        .map(|l| {
            (
                l.carrier.as_str(),
                l.line_of_business.as_str(),
                l.currency.as_str(),
                l.policies,
                l.in_force,
                l.premium.to_string(),
            )
        })
        .collect();
    assert_eq!(
        view,
        [
            ("acme", "homeowners", "EUR", 1, 1, "1234.56".to_owned()),
            (
                "acme",
                "homeowners",
                "USD",
                1_001,
                1_000,
                "12345678901234667.89".to_owned()
            ),
            ("acme", "personal_auto", "EUR", 2, 2, "1.00".to_owned()),
        ]
    );
}

async fn pagination_with_filters_visits_every_match_once(target: Target) {
    let store = target.store().await;
    let records: Vec<CanonicalRecord> = (0..25)
        .map(|i| {
            let status = if i % 3 == 0 {
                PolicyStatus::Cancelled
            } else {
                PolicyStatus::Active
            };
            let mut p = policy_of("acme", &format!("P{i:02}"), eur(100 + i), status);
            if i % 2 == 0 {
                p.line_of_business = Coded::new(LineOfBusiness::PersonalAuto, "KFZ");
            }
            CanonicalRecord::Policy(p)
        })
        .collect();
    ingest(&store, records).await;

    let mut filter = PolicyFilter {
        carrier: Some("acme".into()),
        line_of_business: Some(LineOfBusiness::PersonalAuto),
        status: Some(PolicyStatus::Active),
        as_of: None,
        extras: vec![],
        include_extras: false,
        page: PageRequest {
            after_id: None,
            limit: 3,
        },
    };
    let mut pages = 0;
    let mut numbers = Vec::new();
    loop {
        let page = store.list_policies(&Scope::all(), &filter).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 3);
        numbers.extend(page.items.iter().map(|p| p.number.clone()));
        match page.next_cursor {
            Some(c) => filter.page.after_id = Some(Cursor::decode(&c).unwrap().after_id),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25)
        .filter(|i| i % 2 == 0 && i % 3 != 0)
        .map(|i| format!("P{i:02}"))
        .collect();
    assert_eq!(numbers, expected);
    assert_eq!(pages, expected.len().div_ceil(3));
    filter.carrier = Some("nobody".into());
    filter.page.after_id = None;
    let empty = store.list_policies(&Scope::all(), &filter).await.unwrap();
    assert!(empty.items.is_empty() && empty.next_cursor.is_none());
}

async fn a_schema_behind_the_build_is_refused_without_migrating(target: Target) {
    // The target's database is empty: no migration has run.
    let err = match open_store_with(&target.locator, false).await {
        Ok(_) => panic!("an empty database opened without migrating"),
        Err(e) => e,
    };
    assert!(
        matches!(&err, StoreError::Schema(m) if m.contains("carrierhub migrate")),
        "{err}"
    );
    let applied = migrate(&target.locator).await.unwrap();
    assert!(!applied.is_empty());
    assert_eq!(applied[0].version, 1);
    assert!(
        applied.windows(2).all(|w| w[0].version < w[1].version),
        "{applied:?}"
    );
    assert!(
        migrate(&target.locator).await.unwrap().is_empty(),
        "nothing left"
    );
    let store = open_store_with(&target.locator, false).await.unwrap();
    store.ping().await.unwrap();
}

/// A claim of `acme` with a status of its own.
fn claim_with(
    number: &str,
    policy_number: &str,
    status: ClaimStatus,
    paid: i64,
    reserve: i64,
) -> CanonicalRecord {
    let CanonicalRecord::Claim(mut c) = claim(number, policy_number, paid, reserve) else {
        unreachable!("claim() makes claims")
    };
    c.status = Coded::new(status, status.code());
    CanonicalRecord::Claim(c)
}

fn as_of(t: chrono::DateTime<chrono::Utc>) -> PolicyFilter {
    PolicyFilter {
        as_of: Some(t),
        ..PolicyFilter::default()
    }
}

/// (number, version, line, status, premium) of each policy, in id order.
async fn policies_view(
    store: &Arc<dyn Store>,
    filter: PolicyFilter,
) -> Vec<(String, i64, String, String, Money)> {
    all_policies(store, filter)
        .await
        .into_iter()
        .map(|p| {
            (
                p.number,
                p.version,
                p.line_of_business.code,
                p.status.code,
                p.premium,
            )
        })
        .collect()
}

/// (number, version, policy id, status, paid, reserve) of each claim.
async fn claims_view(
    store: &Arc<dyn Store>,
    filter: ClaimFilter,
) -> Vec<(String, i64, i64, String, Money, Money)> {
    store
        .list_claims(&Scope::all(), &filter)
        .await
        .expect("list claims")
        .items
        .into_iter()
        .map(|c| {
            (
                c.number,
                c.version,
                c.policy_id,
                c.status.code,
                c.paid,
                c.reserve,
            )
        })
        .collect()
}

/// (carrier, line, currency, policies, in force, premium) of each portfolio line.
fn portfolio_view(lines: &[PortfolioLine]) -> Vec<(&str, &str, &str, u64, u64, Decimal)> {
    lines
        .iter()
        .map(|l| {
            (
                l.carrier.as_str(),
                l.line_of_business.as_str(),
                l.currency.as_str(),
                l.policies,
                l.in_force,
                l.premium,
            )
        })
        .collect()
}

fn row(
    number: &str,
    version: i64,
    line: LineOfBusiness,
    status: PolicyStatus,
    cents: i64,
) -> (String, i64, String, String, Money) {
    (
        number.to_owned(),
        version,
        line.code().to_owned(),
        status.code().to_owned(),
        eur(cents),
    )
}

async fn as_of_reads_return_the_versions_current_then(target: Target) {
    use ClaimStatus::{Closed, Open};
    use LineOfBusiness::{Homeowners, PersonalAuto};
    use PolicyStatus::{Active, Cancelled};
    let store = target.store().await;
    let micro = chrono::Duration::microseconds(1);

    // Delivery 1: P4 twice in the batch (its first version lasts no time at all).
    let (first, _) = ingest(
        &store,
        vec![
            policy("P1", 10_000, Active),
            policy("P2", 20_000, Active),
            policy("P4", 1_000, Active),
            policy("P4", 2_000, Active),
            claim("C1", "P1", 0, 500),
        ],
    )
    .await;
    let portfolio_then = store.portfolio(&Scope::all()).await.unwrap();
    let (p1, p2, p4) = (
        policy_id(&store, "P1").await,
        policy_id(&store, "P2").await,
        policy_id(&store, "P4").await,
    );
    let t1 = store.list_policy_versions(p1, &Scope::all()).await.unwrap()[0].valid_from;

    // Delivery 2: P1 endorsed and moved to another line, P2 cancelled, P3 and B1 new; claim
    // C1 closed and moved to P3.
    store
        .ensure_carrier(&carrier("beta"), "Beta")
        .await
        .unwrap();
    let mut p1_auto = policy_of("acme", "P1", eur(15_000), Active);
    p1_auto.line_of_business = Coded::new(PersonalAuto, "KFZ");
    let mut p3_auto = policy_of("acme", "P3", eur(30_000), Active);
    p3_auto.line_of_business = Coded::new(PersonalAuto, "KFZ");
    ingest(
        &store,
        vec![
            CanonicalRecord::Policy(p1_auto),
            policy("P2", 5_000, Cancelled),
            CanonicalRecord::Policy(p3_auto),
            CanonicalRecord::Policy(policy_of("beta", "B1", eur(7_700), Active)),
            claim_with("C1", "P3", Closed, 500, 0),
            claim("C2", "P3", 0, 900),
        ],
    )
    .await;
    let p3 = policy_id(&store, "P3").await;
    let t2 = store.list_policy_versions(p1, &Scope::all()).await.unwrap()[1].valid_from;

    // Delivery 3: a cancellation transaction on P3.
    ingest(
        &store,
        vec![transaction(
            "P3",
            "T1",
            TransactionType::Cancellation,
            -10_000,
            date(2025, 6, 1),
        )],
    )
    .await;
    let t3 = store.list_policy_versions(p3, &Scope::all()).await.unwrap()[1].valid_from;
    assert!(t1 < t2 && t2 < t3, "{t1} < {t2} < {t3}");

    // Before the first delivery: nothing existed.
    let before = t1 - micro;
    assert!(all_policies(&store, as_of(before)).await.is_empty());
    assert!(store
        .get_policy_as_of(p1, before, &Scope::all())
        .await
        .unwrap()
        .is_none());
    assert!(store
        .portfolio_as_of(before, &Scope::all())
        .await
        .unwrap()
        .is_empty());
    let claims_before = ClaimFilter {
        as_of: Some(before),
        ..ClaimFilter::default()
    };
    assert!(claims_view(&store, claims_before).await.is_empty());

    // Between deliveries 1 and 2 (from the instant delivery 1 began): its state, whatever
    // came later.
    for t in [t1, t1 + micro, t2 - micro] {
        assert_eq!(
            policies_view(&store, as_of(t)).await,
            [
                row("P1", 1, Homeowners, Active, 10_000),
                row("P2", 1, Homeowners, Active, 20_000),
                row("P4", 2, Homeowners, Active, 2_000),
            ],
            "as of {t}"
        );
        assert_eq!(
            store.portfolio_as_of(t, &Scope::all()).await.unwrap(),
            portfolio_then
        );
    }
    let between = t2 - micro;
    assert_eq!(
        portfolio_view(&store.portfolio_as_of(between, &Scope::all()).await.unwrap()),
        [("acme", "homeowners", "EUR", 3, 3, Decimal::from(320))]
    );
    let detail = store
        .get_policy_as_of(p1, between, &Scope::all())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            detail.summary.version,
            detail.versions,
            detail.summary.premium,
            detail.summary.updated_at,
            detail.created_at,
        ),
        (1, 1, eur(10_000), t1, t1)
    );
    assert_eq!(
        detail.lineage,
        Lineage {
            submission_id: first,
            record_number: 1,
            line: 2
        }
    );
    let claims: Vec<(&str, i64, i64)> = detail
        .claims
        .iter()
        .map(|c| (c.number.as_str(), c.version, c.policy_id))
        .collect();
    assert_eq!(claims, [("C1", 1, p1)]);
    assert!(
        store
            .get_policy_as_of(p3, between, &Scope::all())
            .await
            .unwrap()
            .is_none(),
        "P3 did not exist yet"
    );
    // Filters apply to the values of the time: the status and the line then.
    let filtered = |status: Option<PolicyStatus>, line: Option<LineOfBusiness>, t| PolicyFilter {
        status,
        line_of_business: line,
        as_of: Some(t),
        ..PolicyFilter::default()
    };
    assert!(
        policies_view(&store, filtered(Some(Cancelled), None, between))
            .await
            .is_empty()
    );
    assert_eq!(
        policies_view(&store, filtered(Some(Active), Some(Homeowners), between))
            .await
            .len(),
        3
    );
    assert!(
        policies_view(&store, filtered(None, Some(PersonalAuto), between))
            .await
            .is_empty()
    );
    let claims_between = |status: Option<ClaimStatus>, policy_id: Option<i64>| ClaimFilter {
        status,
        policy_id,
        as_of: Some(between),
        ..ClaimFilter::default()
    };
    assert_eq!(
        claims_view(&store, claims_between(Some(Open), Some(p1))).await,
        [("C1".to_owned(), 1, p1, "open".to_owned(), eur(0), eur(500))]
    );
    assert!(claims_view(&store, claims_between(Some(Closed), None))
        .await
        .is_empty());

    // From delivery 2 on: P2 cancelled then, P1 on another line, C1 closed on P3.
    assert_eq!(
        policies_view(&store, filtered(Some(Cancelled), None, t2)).await,
        [row("P2", 2, Homeowners, Cancelled, 5_000)]
    );
    assert_eq!(
        policies_view(&store, filtered(None, Some(PersonalAuto), t3 - micro)).await,
        [
            row("P1", 2, PersonalAuto, Active, 15_000),
            row("P3", 1, PersonalAuto, Active, 30_000),
        ]
    );
    let acme_at_t2 = PolicyFilter {
        carrier: Some("acme".into()),
        as_of: Some(t2),
        ..PolicyFilter::default()
    };
    assert_eq!(all_policies(&store, acme_at_t2).await.len(), 4);
    assert_eq!(
        portfolio_view(&store.portfolio_as_of(t2, &Scope::all()).await.unwrap()),
        [
            ("acme", "homeowners", "EUR", 2, 1, Decimal::from(70)),
            ("acme", "personal_auto", "EUR", 2, 2, Decimal::from(450)),
            ("beta", "homeowners", "EUR", 1, 1, Decimal::from(77)),
        ]
    );
    assert!(store
        .get_policy_as_of(p1, t2, &Scope::all())
        .await
        .unwrap()
        .unwrap()
        .claims
        .is_empty());
    let p3_then = store
        .get_policy_as_of(p3, t2, &Scope::all())
        .await
        .unwrap()
        .unwrap();
    let claims: Vec<(&str, i64, &str)> = p3_then
        .claims
        .iter()
        .map(|c| (c.number.as_str(), c.version, c.status.code.as_str()))
        .collect();
    assert_eq!(claims, [("C1", 2, "closed"), ("C2", 1, "open")]);
    let closed_at_t2 = ClaimFilter {
        status: Some(Closed),
        as_of: Some(t2),
        ..ClaimFilter::default()
    };
    assert_eq!(
        claims_view(&store, closed_at_t2).await,
        [(
            "C1".to_owned(),
            2,
            p3,
            "closed".to_owned(),
            eur(500),
            eur(0)
        )]
    );

    // The cancellation transaction: active just before, cancelled from then on.
    let p3_before = store
        .get_policy_as_of(p3, t3 - micro, &Scope::all())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (p3_before.summary.status.code.as_str(), p3_before.versions),
        ("active", 1)
    );
    let p3_after = store
        .get_policy_as_of(p3, t3, &Scope::all())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            p3_after.summary.status.code.as_str(),
            p3_after.summary.premium,
            p3_after.versions
        ),
        ("cancelled", eur(20_000), 2)
    );
    assert_eq!(
        policies_view(&store, filtered(Some(Cancelled), None, t3)).await,
        [
            row("P2", 2, Homeowners, Cancelled, 5_000),
            row("P3", 2, PersonalAuto, Cancelled, 20_000),
        ]
    );

    // As of now (or later), as-of reads are the current reads, exactly.
    let later = chrono::Utc::now() + chrono::Duration::days(1);
    assert_eq!(
        all_policies(&store, as_of(later)).await,
        all_policies(&store, PolicyFilter::default()).await
    );
    for id in [p1, p2, p3, p4] {
        assert_eq!(
            store
                .get_policy_as_of(id, later, &Scope::all())
                .await
                .unwrap(),
            store.get_policy(id, &Scope::all()).await.unwrap()
        );
    }
    let claims_later = ClaimFilter {
        as_of: Some(later),
        ..ClaimFilter::default()
    };
    assert_eq!(
        store
            .list_claims(&Scope::all(), &claims_later)
            .await
            .unwrap()
            .items,
        store
            .list_claims(&Scope::all(), &ClaimFilter::default())
            .await
            .unwrap()
            .items
    );
    assert_eq!(
        store.portfolio_as_of(later, &Scope::all()).await.unwrap(),
        store.portfolio(&Scope::all()).await.unwrap()
    );
    assert!(store
        .get_policy_as_of(i64::MAX, later, &Scope::all())
        .await
        .unwrap()
        .is_none());
}

async fn paging_as_of_a_past_instant_is_stable_while_another_task_writes(target: Target) {
    let store = target.store().await;
    const EXISTING: usize = 60;
    let existing: Vec<CanonicalRecord> = (0..EXISTING)
        .map(|i| {
            let status = if i % 4 == 0 {
                PolicyStatus::Cancelled
            } else {
                PolicyStatus::Active
            };
            policy(&format!("E{i:04}"), 1000 + i as i64, status)
        })
        .collect();
    ingest(&store, existing).await;
    let active_now = PolicyFilter {
        status: Some(PolicyStatus::Active),
        ..PolicyFilter::default()
    };
    let expected = all_policies(&store, active_now.clone()).await;
    assert_eq!(expected.len(), 45);
    let portfolio_then = store.portfolio(&Scope::all()).await.unwrap();
    let then = store
        .list_policy_versions(expected[0].id, &Scope::all())
        .await
        .unwrap()[0]
        .valid_from;

    let writer_store = target.store().await;
    let writer = tokio::spawn(async move {
        let id = claimed_submission(&writer_store, "writer").await;
        for round in 0..10 {
            let mut records: Vec<CanonicalRecord> = (0..10)
                .map(|i| {
                    policy(
                        &format!("N{round:02}{i:02}"),
                        5000 + i,
                        PolicyStatus::Active,
                    )
                })
                .collect();
            // Existing policies are cancelled, reactivated, repriced.
            records.push(policy(
                &format!("E{:04}", round * 5 + 1),
                99_999,
                PolicyStatus::Cancelled,
            ));
            records.push(policy(
                &format!("E{:04}", round * 4),
                88_888,
                PolicyStatus::Active,
            ));
            let mut b = batch(id, "writer", records);
            b.through_record = (round + 1) * 12;
            writer_store.commit_batch(b).await.unwrap();
            tokio::task::yield_now().await;
        }
    });

    let mut seen = Vec::new();
    let mut filter = PolicyFilter {
        as_of: Some(then),
        ..active_now.clone()
    };
    filter.page.limit = 4;
    loop {
        let page = store.list_policies(&Scope::all(), &filter).await.unwrap();
        assert!(page.items.len() <= 4);
        seen.extend(page.items);
        match page.next_cursor {
            Some(c) => filter.page.after_id = Some(Cursor::decode(&c).unwrap().after_id),
            None => break,
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    writer.await.unwrap();

    assert_eq!(seen, expected, "the past does not move while paging");
    filter.page = PageRequest::default();
    assert_eq!(all_policies(&store, filter).await, expected);
    assert_eq!(
        store.portfolio_as_of(then, &Scope::all()).await.unwrap(),
        portfolio_then
    );
    assert_ne!(
        all_policies(&store, active_now).await,
        expected,
        "the present did move"
    );
}

async fn extras_are_returned_when_asked_and_filter_current_and_past_versions(target: Target) {
    let store = target.store().await;
    let with = |number: &str, cents: i64, extras: &[(&str, &str)]| {
        let mut p = policy_of("acme", number, eur(cents), PolicyStatus::Active);
        p.extras = extras
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CanonicalRecord::Policy(p)
    };
    ingest(
        &store,
        vec![
            with("P1", 100, &[("broker_code", "AB12"), ("branch", "North")]),
            with("P2", 200, &[("broker_code", "CD34")]),
            with("P3", 300, &[]),
        ],
    )
    .await;
    let before_change = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    // P2 moves to broker AB12; P1 loses its branch.
    ingest(
        &store,
        vec![
            with("P1", 100, &[("broker_code", "AB12")]),
            with("P2", 200, &[("broker_code", "AB12")]),
        ],
    )
    .await;

    let list = |extras: Vec<(&str, &str)>, include: bool, as_of| {
        let store = store.clone();
        let filter = PolicyFilter {
            carrier: Some("acme".into()),
            as_of,
            extras: extras
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            include_extras: include,
            page: PageRequest {
                after_id: None,
                limit: 50,
            },
            ..Default::default()
        };
        async move {
            store
                .list_policies(&Scope::all(), &filter)
                .await
                .unwrap()
                .items
        }
    };
    let numbers = |items: &[PolicySummary]| -> Vec<String> {
        items.iter().map(|p| p.number.clone()).collect()
    };

    let now = list(vec![("broker_code", "AB12")], false, None).await;
    assert_eq!(numbers(&now), ["P1", "P2"], "the current versions' extras");
    assert!(now.iter().all(|p| p.extras.is_none()), "not asked for");
    let then = list(vec![("broker_code", "AB12")], true, Some(before_change)).await;
    assert_eq!(numbers(&then), ["P1"], "the versions current then");
    assert_eq!(
        then[0]
            .extras
            .as_ref()
            .unwrap()
            .get("branch")
            .map(String::as_str),
        Some("North")
    );
    let both = list(
        vec![("broker_code", "AB12"), ("branch", "North")],
        false,
        None,
    )
    .await;
    assert!(both.is_empty(), "every filter must hold");
    let all = list(vec![], true, None).await;
    assert_eq!(numbers(&all), ["P1", "P2", "P3"]);
    assert_eq!(
        all[2].extras,
        Some(Default::default()),
        "no extras is an empty map"
    );
    assert_eq!(all[0].extras.as_ref().unwrap().len(), 1);

    let p1 = all[0].id;
    let detail = store.get_policy(p1, &Scope::all()).await.unwrap().unwrap();
    assert_eq!(
        detail
            .summary
            .extras
            .unwrap()
            .get("broker_code")
            .map(String::as_str),
        Some("AB12")
    );

    // Claims keep theirs the same way.
    let claim_with = |number: &str, adjuster: &str| {
        let CanonicalRecord::Claim(mut c) = claim(number, "P1", 100, 50) else {
            unreachable!("a claim")
        };
        c.extras = [("adjuster".to_owned(), adjuster.to_owned())].into();
        CanonicalRecord::Claim(c)
    };
    ingest(
        &store,
        vec![claim_with("C1", "Kim"), claim_with("C2", "Lee")],
    )
    .await;
    let claims = store
        .list_claims(
            &Scope::all(),
            &ClaimFilter {
                extras: vec![("adjuster".into(), "Lee".into())],
                include_extras: true,
                page: PageRequest {
                    after_id: None,
                    limit: 50,
                },
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .items;
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].number, "C2");
    assert_eq!(claims[0].extras.as_ref().unwrap()["adjuster"], "Lee");
}

/// A claim of `key` in `scope` for the request `fingerprint`, kept a day, locked a minute.
fn idempotency<'a>(
    scope: &'a str,
    key: &'a str,
    fingerprint: &'a str,
    token: &'a str,
) -> IdempotencyRequest<'a> {
    IdempotencyRequest {
        scope,
        key,
        fingerprint,
        token,
        ttl: Duration::from_secs(24 * 3600),
        lock: Duration::from_secs(60),
    }
}

fn accepted_response(id: i64) -> IdempotentResponse {
    IdempotentResponse {
        status: 202,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("location".into(), format!("/v1/submissions/{id}")),
        ],
        body: format!("{{\"id\":{id}}}").into_bytes(),
    }
}

async fn an_idempotency_key_replays_its_response_and_refuses_another_request(target: Target) {
    let store = target.store().await;
    let scope = "carrier=acme route=POST /v1/carriers/{carrier}/submissions";
    let first = idempotency(scope, "k1", "fp-a", "t1");
    assert_eq!(
        store.claim_idempotency_key(&first).await.unwrap(),
        IdempotencyClaim::Acquired
    );
    // While the first request is in flight: the same request waits, another is refused.
    let retry = idempotency(scope, "k1", "fp-a", "t2");
    assert_eq!(
        store.claim_idempotency_key(&retry).await.unwrap(),
        IdempotencyClaim::InProgress
    );
    let other = idempotency(scope, "k1", "fp-b", "t3");
    assert_eq!(
        store.claim_idempotency_key(&other).await.unwrap(),
        IdempotencyClaim::Mismatch
    );
    // Only the holder's token completes the key.
    let response = accepted_response(7);
    assert!(!store
        .complete_idempotency_key(scope, "k1", "t2", &response)
        .await
        .unwrap());
    assert!(store
        .complete_idempotency_key(scope, "k1", "t1", &response)
        .await
        .unwrap());
    // A body that is not text survives as it was.
    let binary = IdempotentResponse {
        status: 422,
        headers: vec![],
        body: vec![0, 159, 146, 150, 255],
    };

    // Another store on the same database (another process) sees the completed key.
    let again = target.store().await;
    assert_eq!(
        again.claim_idempotency_key(&retry).await.unwrap(),
        IdempotencyClaim::Completed(response.clone())
    );
    assert_eq!(
        again.claim_idempotency_key(&other).await.unwrap(),
        IdempotencyClaim::Mismatch
    );
    // A completed key is not released by anyone.
    again
        .release_idempotency_key(scope, "k1", "t1")
        .await
        .unwrap();
    assert_eq!(
        again.claim_idempotency_key(&retry).await.unwrap(),
        IdempotencyClaim::Completed(response.clone())
    );

    // Keys are scoped: the same key elsewhere is another key.
    let elsewhere = "carrier=other route=POST /v1/carriers/{carrier}/submissions";
    let there = idempotency(elsewhere, "k1", "fp-b", "t4");
    assert_eq!(
        store.claim_idempotency_key(&there).await.unwrap(),
        IdempotencyClaim::Acquired
    );
    assert!(store
        .complete_idempotency_key(elsewhere, "k1", "t4", &binary)
        .await
        .unwrap());
    assert_eq!(
        store
            .claim_idempotency_key(&idempotency(elsewhere, "k1", "fp-b", "t5"))
            .await
            .unwrap(),
        IdempotencyClaim::Completed(binary)
    );
    assert_eq!(
        store.claim_idempotency_key(&retry).await.unwrap(),
        IdempotencyClaim::Completed(response)
    );
    // Nothing here has expired.
    assert_eq!(store.purge_idempotency_keys().await.unwrap(), 0);
}

async fn an_idempotency_key_is_claimed_by_exactly_one_of_concurrent_requests(target: Target) {
    const REQUESTS: usize = 12;
    // Each request through its own store, as separate processes would claim it.
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(target.store().await);
    }
    for round in 0..4 {
        let key = format!("key-{round}");
        let start = Arc::new(tokio::sync::Barrier::new(REQUESTS));
        let tasks: Vec<_> = (0..REQUESTS)
            .map(|i| {
                let store = stores[i % stores.len()].clone();
                let start = start.clone();
                let key = key.clone();
                tokio::spawn(async move {
                    let token = format!("token-{i}");
                    start.wait().await;
                    store
                        .claim_idempotency_key(&idempotency("scope", &key, "fp", &token))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut acquired = 0;
        for task in tasks {
            match task.await.unwrap() {
                IdempotencyClaim::Acquired => acquired += 1,
                IdempotencyClaim::InProgress => {}
                other => panic!("round {round}: unexpected {other:?}"),
            }
        }
        assert_eq!(acquired, 1, "round {round}: exactly one request proceeds");
    }
}

async fn released_abandoned_and_expired_idempotency_keys_are_free_again(target: Target) {
    let store = target.store().await;
    let response = accepted_response(1);

    // Released (the request failed in a way a retry may not): free, even for another request.
    let claim = idempotency("s", "released", "fp-a", "t1");
    assert_eq!(
        store.claim_idempotency_key(&claim).await.unwrap(),
        IdempotencyClaim::Acquired
    );
    store
        .release_idempotency_key("s", "released", "t1")
        .await
        .unwrap();
    let retry = idempotency("s", "released", "fp-b", "t2");
    assert_eq!(
        store.claim_idempotency_key(&retry).await.unwrap(),
        IdempotencyClaim::Acquired
    );
    // Another request's token does not release the claim.
    store
        .release_idempotency_key("s", "released", "t1")
        .await
        .unwrap();
    assert_eq!(
        store
            .claim_idempotency_key(&idempotency("s", "released", "fp-b", "t3"))
            .await
            .unwrap(),
        IdempotencyClaim::InProgress
    );

    // Abandoned (still in flight after its lock): the next request takes it over, and the
    // first can no longer complete it.
    let short = IdempotencyRequest {
        lock: Duration::from_millis(50),
        ..idempotency("s", "abandoned", "fp-a", "t1")
    };
    assert_eq!(
        store.claim_idempotency_key(&short).await.unwrap(),
        IdempotencyClaim::Acquired
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(
        store
            .claim_idempotency_key(&idempotency("s", "abandoned", "fp-a", "t2"))
            .await
            .unwrap(),
        IdempotencyClaim::Acquired
    );
    assert!(!store
        .complete_idempotency_key("s", "abandoned", "t1", &response)
        .await
        .unwrap());
    assert!(store
        .complete_idempotency_key("s", "abandoned", "t2", &response)
        .await
        .unwrap());
    // A completed key is never abandoned, however long ago its lock ran out.
    assert_eq!(
        store
            .claim_idempotency_key(&idempotency("s", "abandoned", "fp-a", "t3"))
            .await
            .unwrap(),
        IdempotencyClaim::Completed(response.clone())
    );

    // Expired: the key (and its response) is forgotten, and removed by a purge.
    let brief = IdempotencyRequest {
        ttl: Duration::from_millis(50),
        ..idempotency("s", "expired", "fp-a", "t1")
    };
    assert_eq!(
        store.claim_idempotency_key(&brief).await.unwrap(),
        IdempotencyClaim::Acquired
    );
    assert!(store
        .complete_idempotency_key("s", "expired", "t1", &response)
        .await
        .unwrap());
    let also_brief = IdempotencyRequest {
        ttl: Duration::from_millis(50),
        ..idempotency("s", "purged", "fp-a", "t1")
    };
    assert_eq!(
        store.claim_idempotency_key(&also_brief).await.unwrap(),
        IdempotencyClaim::Acquired
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(
        store
            .claim_idempotency_key(&idempotency("s", "expired", "fp-b", "t2"))
            .await
            .unwrap(),
        IdempotencyClaim::Acquired,
        "an expired key is free for any request"
    );
    // "purged" expired; "expired" was claimed again, with a new time to live; "released"
    // and "abandoned" live on.
    assert_eq!(store.purge_idempotency_keys().await.unwrap(), 1);
    assert_eq!(store.purge_idempotency_keys().await.unwrap(), 0);
    assert_eq!(
        store
            .claim_idempotency_key(&idempotency("s", "purged", "fp-b", "t2"))
            .await
            .unwrap(),
        IdempotencyClaim::Acquired
    );
    assert_eq!(
        store
            .claim_idempotency_key(&idempotency("s", "abandoned", "fp-a", "t4"))
            .await
            .unwrap(),
        IdempotencyClaim::Completed(response)
    );
}

/// Bytes that differ from chunk to chunk (a chunk read twice or out of order shows).
fn document_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

async fn read_document(store: &Arc<dyn Store>, sha256: &str) -> Result<Vec<u8>> {
    let mut sink = Vec::new();
    let size = store.read_document_content(sha256, &mut sink).await?;
    assert_eq!(size, sink.len() as u64);
    Ok(sink)
}

async fn document_content_is_stored_once_in_chunks_and_read_back_whole(target: Target) {
    let store = target.store().await;
    // The store does not hash: any identifier stands for the content's SHA-256 here.
    let sha = "d0c5".repeat(16);
    let content = document_bytes(DOCUMENT_CHUNK_BYTES * 5 / 2);
    let size = content.len() as u64;
    if !store.shares_documents() {
        // One machine: documents live in the data directory only; the store keeps no bytes.
        assert_eq!(target.kind, Kind::Sqlite);
        let mut reader = &content[..];
        assert!(!store
            .store_document_content(&sha, size, &mut reader)
            .await
            .unwrap());
        assert!(matches!(
            read_document(&store, &sha).await,
            Err(StoreError::NotFound(_))
        ));
        return;
    }
    assert_eq!(target.kind, Kind::Postgres);
    assert!(matches!(
        read_document(&store, &sha).await,
        Err(StoreError::NotFound(_))
    ));

    // Content shorter than its recorded size is refused, and nothing of it is kept.
    let err = store
        .store_document_content(&sha, size + 1, &mut &content[..])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Invalid(m) if m.contains("not stored")),
        "{err}"
    );
    assert!(matches!(
        read_document(&store, &sha).await,
        Err(StoreError::NotFound(_))
    ));

    // Two processes storing the same new document at once: one stores it, the other waits
    // and finds it stored.
    let other = target.store().await;
    let (mut first, mut second) = (&content[..], &content[..]);
    let (a, b) = tokio::join!(
        store.store_document_content(&sha, size, &mut first),
        other.store_document_content(&sha, size, &mut second),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a ^ b, "exactly one stores it: {a} {b}");
    assert!(read_document(&other, &sha).await.unwrap() == content);

    // Sent again: the content is not even read, and stays one copy of three chunks.
    let mut again = &content[..];
    assert!(!store
        .store_document_content(&sha, size, &mut again)
        .await
        .unwrap());
    assert_eq!(
        again.len(),
        content.len(),
        "stored content is not read again"
    );
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&target.locator)
        .await
        .unwrap();
    let (chunks, stored_size): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM document_chunks WHERE sha256 = $1), \
                (SELECT size_bytes FROM documents WHERE sha256 = $1)",
    )
    .bind(&sha)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((chunks, stored_size), (3, size as i64));
    assert!(read_document(&store, &sha).await.unwrap() == content);

    // Edge sizes: empty, and an exact number of chunks.
    for (len, chunks) in [(0, 1), (DOCUMENT_CHUNK_BYTES * 2, 2)] {
        let sha = format!("{len:064x}");
        let content = document_bytes(len);
        assert!(store
            .store_document_content(&sha, len as u64, &mut &content[..])
            .await
            .unwrap());
        assert!(
            read_document(&store, &sha).await.unwrap() == content,
            "{len} bytes"
        );
        let stored: i64 =
            sqlx::query_scalar("SELECT count(*) FROM document_chunks WHERE sha256 = $1")
                .bind(&sha)
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert_eq!(stored, chunks, "{len} bytes");
    }
}

/// A policy of `carrier_id` in book `producer`.
fn booked(carrier_id: &str, number: &str, producer: Option<&str>) -> CanonicalRecord {
    let mut p = policy_of(carrier_id, number, eur(10_000), PolicyStatus::Active);
    p.producer = producer.map(str::to_owned);
    CanonicalRecord::Policy(p)
}

async fn every_read_returns_only_what_the_scope_allows(target: Target) {
    let store = target.store().await;
    let (acme_submission, _) = ingest(
        &store,
        vec![
            booked("acme", "P1", Some("AB12")),
            booked("acme", "P2", Some("ZZ")),
            booked("acme", "P3", None),
            claim("C1", "P1", 0, 100),
            claim("C2", "P2", 0, 200),
        ],
    )
    .await;
    // Beta's own submission, with a policy in the same book code and a claim.
    let beta = carrier("beta");
    store.ensure_carrier(&beta, "Beta").await.unwrap();
    let mapping = register(&store, &beta, "m", "t").await;
    let beta_submission = store
        .create_submission(NewSubmission {
            carrier: &beta,
            mapping_id: mapping.id,
            file_name: "beta.csv",
            document_sha256: "d",
            received_via: "test",
            replay_of: None,
        })
        .await
        .unwrap();
    store
        .claim_submission(beta_submission, "w", LEASE)
        .await
        .unwrap();
    let mut beta_claim = claim("BC1", "B1", 0, 300);
    if let CanonicalRecord::Claim(c) = &mut beta_claim {
        c.carrier = beta.clone();
    }
    let mut b = batch(
        beta_submission,
        "w",
        vec![booked("beta", "B1", Some("AB12")), beta_claim],
    );
    b.rejections.push(NewRejection {
        record_number: 3,
        source_line: 4,
        sheet: None,
        field: Some("premium".into()),
        source_column: None,
        value: Some("x".into()),
        reason: "not a number".into(),
    });
    b.rejected_records = 1;
    b.through_record = 3;
    store.commit_batch(b).await.unwrap();
    store
        .finish_submission(beta_submission, "w", None)
        .await
        .unwrap();
    let t1 = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    // P1 moves from book AB12 to ZZ.
    ingest(&store, vec![booked("acme", "P1", Some("ZZ"))]).await;

    let all = Scope::all();
    let ids = |items: Vec<PolicySummary>| items.into_iter().map(|p| p.number).collect::<Vec<_>>();
    let everything = store
        .list_policies(&all, &PolicyFilter::default())
        .await
        .unwrap();
    assert_eq!(ids(everything.items), ["P1", "P2", "P3", "B1"]);
    let id_of = |n: &str| {
        let store = store.clone();
        let n = n.to_owned();
        async move {
            store
                .list_policies(&Scope::all(), &PolicyFilter::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .find(|p| p.number == n)
                .unwrap()
                .id
        }
    };
    let (p1, p2, b1) = (id_of("P1").await, id_of("P2").await, id_of("B1").await);

    // Carrier acme only: nothing of beta's, by id, by list, by filter, in counts or sums.
    let acme = Scope::carriers(["acme"]);
    let carriers = store.list_carriers(&acme).await.unwrap();
    assert_eq!(
        carriers
            .iter()
            .map(|c| (c.id.as_str(), c.policies, c.claims))
            .collect::<Vec<_>>(),
        [("acme", 3, 2)]
    );
    let listed = store
        .list_policies(&acme, &PolicyFilter::default())
        .await
        .unwrap();
    assert_eq!(ids(listed.items), ["P1", "P2", "P3"]);
    let by_filter = PolicyFilter {
        carrier: Some("beta".into()),
        ..PolicyFilter::default()
    };
    assert!(store
        .list_policies(&acme, &by_filter)
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(store.get_policy(b1, &acme).await.unwrap().is_none());
    assert!(store.get_policy(b1, &all).await.unwrap().is_some());
    assert!(store
        .get_policy_as_of(b1, chrono::Utc::now(), &acme)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .list_policy_versions(b1, &acme)
        .await
        .unwrap()
        .is_empty());
    let claims = |scope: Scope, filter: ClaimFilter| {
        let store = store.clone();
        async move {
            store
                .list_claims(&scope, &filter)
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|c| c.number)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        claims(acme.clone(), ClaimFilter::default()).await,
        ["C1", "C2"]
    );
    let of_b1 = ClaimFilter {
        policy_id: Some(b1),
        ..ClaimFilter::default()
    };
    assert!(claims(acme.clone(), of_b1.clone()).await.is_empty());
    assert_eq!(claims(all.clone(), of_b1).await, ["BC1"]);
    assert!(store
        .get_submission(beta_submission, &acme)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .get_submission(acme_submission, &acme)
        .await
        .unwrap()
        .is_some());
    let page = PageRequest {
        after_id: None,
        limit: 10,
    };
    assert!(store
        .list_rejections(beta_submission, &acme, &page)
        .await
        .unwrap()
        .items
        .is_empty());
    assert_eq!(
        store
            .list_rejections(beta_submission, &all, &page)
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let submissions = store
        .list_submissions(&acme, &SubmissionFilter::default())
        .await
        .unwrap();
    assert!(submissions.items.iter().all(|s| s.carrier == "acme"));
    assert!(!submissions.items.is_empty());
    let lines = store.portfolio(&acme).await.unwrap();
    assert!(!lines.is_empty() && lines.iter().all(|l| l.carrier == "acme"));
    let lines = store.portfolio_as_of(t1, &acme).await.unwrap();
    assert!(!lines.is_empty() && lines.iter().all(|l| l.carrier == "acme"));

    // Book AB12 of acme: P1 as it was before it moved, never P2 or P3 or beta's B1.
    let book = Scope::carriers(["acme"]).with_books(["AB12"]);
    assert!(store
        .list_policies(&book, &PolicyFilter::default())
        .await
        .unwrap()
        .items
        .is_empty());
    let then = PolicyFilter {
        as_of: Some(t1),
        ..PolicyFilter::default()
    };
    assert_eq!(
        ids(store.list_policies(&book, &then).await.unwrap().items),
        ["P1"]
    );
    assert!(store.get_policy(p1, &book).await.unwrap().is_none());
    assert!(store
        .get_policy_as_of(p1, t1, &book)
        .await
        .unwrap()
        .is_some());
    assert!(store.get_policy(p2, &book).await.unwrap().is_none());
    assert!(claims(book.clone(), ClaimFilter::default())
        .await
        .is_empty());
    let claims_then = ClaimFilter {
        as_of: Some(t1),
        ..ClaimFilter::default()
    };
    assert_eq!(claims(book.clone(), claims_then).await, ["C1"]);
    // Submissions span books: none is visible under a book restriction.
    assert!(store
        .get_submission(acme_submission, &book)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .list_submissions(&book, &SubmissionFilter::default())
        .await
        .unwrap()
        .items
        .is_empty());
    let carriers = store.list_carriers(&book).await.unwrap();
    assert_eq!(
        carriers
            .iter()
            .map(|c| (c.id.as_str(), c.policies, c.claims, c.submissions))
            .collect::<Vec<_>>(),
        [("acme", 0, 0, 0)]
    );
    assert!(store.portfolio(&book).await.unwrap().is_empty());
    let then = store.portfolio_as_of(t1, &book).await.unwrap();
    assert_eq!(then.iter().map(|l| l.policies).sum::<u64>(), 1);
    // Book ZZ now: P1 and P2, and their claims.
    let zz = Scope::carriers(["acme"]).with_books(["ZZ"]);
    assert_eq!(
        ids(store
            .list_policies(&zz, &PolicyFilter::default())
            .await
            .unwrap()
            .items),
        ["P1", "P2"]
    );
    assert_eq!(claims(zz, ClaimFilter::default()).await, ["C1", "C2"]);

    // An empty scope sees nothing at all.
    let nothing = Scope::carriers(Vec::<String>::new());
    assert!(store.list_carriers(&nothing).await.unwrap().is_empty());
    assert!(store
        .list_policies(&nothing, &PolicyFilter::default())
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(store.portfolio(&nothing).await.unwrap().is_empty());
}

async fn a_policy_stamp_moves_with_every_change_to_its_detail(target: Target) {
    let store = target.store().await;
    ingest(
        &store,
        vec![
            policy("P1", 100, PolicyStatus::Active),
            policy("P2", 100, PolicyStatus::Active),
        ],
    )
    .await;
    let p1 = policy_id(&store, "P1").await;
    assert_eq!(store.policy_stamp(p1 + 1000).await.unwrap(), None);
    let stamp = || async { store.policy_stamp(p1).await.unwrap().expect("P1 exists") };
    let mut seen = vec![stamp().await];
    // Unchanged by a delivery that leaves P1 as it is, or changes another policy.
    ingest(
        &store,
        vec![
            policy("P1", 100, PolicyStatus::Active),
            policy("P2", 200, PolicyStatus::Active),
        ],
    )
    .await;
    assert_eq!(stamp().await, seen[0]);
    // Moved by a new version, a new claim, a changed claim, a claim moved away.
    ingest(&store, vec![policy("P1", 150, PolicyStatus::Active)]).await;
    seen.push(stamp().await);
    ingest(&store, vec![claim("C1", "P1", 0, 10)]).await;
    seen.push(stamp().await);
    ingest(&store, vec![claim("C1", "P1", 5, 10)]).await;
    seen.push(stamp().await);
    ingest(&store, vec![claim("C1", "P2", 5, 10)]).await;
    seen.push(stamp().await);
    // Each change moved it (the last one back to what P1 was before its claim arrived).
    for pair in seen.windows(2) {
        assert_ne!(pair[0], pair[1], "every change moves the stamp: {seen:?}");
    }
    let distinct: HashSet<&String> = seen[..4].iter().collect();
    assert_eq!(distinct.len(), 4, "{seen:?}");
}

/// A new key from fresh key material; the token is returned beside it.
fn new_key(role: Role, scope: Scope) -> (NewApiKey, String) {
    let generated = ApiKeySecret::generate();
    let key = NewApiKey {
        id: generated.id,
        secret_sha256: generated.secret_sha256,
        role,
        scope,
        description: None,
        expires_at: None,
        rate_limits: Default::default(),
        created_by: "admin-1".into(),
    };
    (key, generated.token)
}

/// Whole seconds: both backends keep instants to the microsecond.
fn whole_seconds(t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(t.timestamp(), 0).unwrap()
}

async fn api_keys_round_trip_refuse_a_duplicate_id_and_keep_their_first_revocation(target: Target) {
    let store = target.store().await;
    let start = chrono::Utc::now() - chrono::Duration::milliseconds(1);
    let in_30_days = whole_seconds(chrono::Utc::now() + chrono::Duration::days(30));

    // A carrier's key: two carriers, one book, its own rate limits, an expiry.
    let (mut carrier_key, carrier_token) = new_key(
        Role::Carrier,
        Scope::carriers(["acme", "beta"]).with_books(["AB12"]),
    );
    carrier_key.description = Some("acme's feed uploader".into());
    carrier_key.expires_at = Some(in_30_days);
    carrier_key.rate_limits = [
        ("reads".to_owned(), "100/1m".parse().unwrap()),
        ("uploads".to_owned(), "5/1h".parse().unwrap()),
    ]
    .into();
    let created = store.create_api_key(&carrier_key).await.unwrap();
    assert_eq!(created.id, carrier_key.id);
    assert_eq!(created.secret_sha256, carrier_key.secret_sha256);
    assert_eq!(created.role, Role::Carrier);
    assert_eq!(created.scope, carrier_key.scope);
    assert_eq!(created.description.as_deref(), Some("acme's feed uploader"));
    assert_eq!(created.created_by, "admin-1");
    assert_eq!(created.expires_at, Some(in_30_days));
    assert_eq!(created.revoked_at, None);
    assert_eq!(created.rate_limits, carrier_key.rate_limits);
    assert_eq!(
        created.rate_limits["uploads"],
        RateLimit {
            limit: 5,
            window_secs: 3600
        }
    );
    assert!(created.created_at >= start && created.created_at <= chrono::Utc::now());
    assert!(created.is_active(chrono::Utc::now()));
    assert!(!created.is_active(in_30_days));

    // Read back as stored, by a second store on the same database, with its hash.
    let other = target.store().await;
    let got = other.get_api_key(&carrier_key.id).await.unwrap().unwrap();
    assert_eq!(got, created);
    assert!(verify_token(&got, &carrier_token));
    assert_eq!(parse_token(&carrier_token), Some(got.id.as_str()));

    // An administrator's key, unrestricted; an analyst's that may see nothing (an empty
    // carrier set is not the absence of a restriction); one that has expired.
    let (admin_key, admin_token) = new_key(Role::Admin, Scope::all());
    let admin = store.create_api_key(&admin_key).await.unwrap();
    assert!(admin.scope.is_unrestricted() && admin.rate_limits.is_empty());
    assert!(!verify_token(&admin, &carrier_token));
    assert!(verify_token(&admin, &admin_token));
    let (nothing_key, _) = new_key(Role::Analyst, Scope::carriers(Vec::<String>::new()));
    let nothing = store.create_api_key(&nothing_key).await.unwrap();
    assert_eq!(nothing.scope.carriers, Some(Default::default()));
    assert!(!nothing.scope.allows_carrier("acme"));
    let (mut expired_key, _) = new_key(Role::Operator, Scope::carriers(["acme"]));
    expired_key.expires_at = Some(whole_seconds(chrono::Utc::now()) - chrono::Duration::days(1));
    let expired = store.create_api_key(&expired_key).await.unwrap();
    assert!(!expired.is_active(chrono::Utc::now()));

    // A second key with an existing id is refused, and the first one is left as it was.
    let (mut duplicate, _) = new_key(Role::Admin, Scope::all());
    duplicate.id = carrier_key.id.clone();
    let err = store.create_api_key(&duplicate).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Invalid(m) if m.contains(&carrier_key.id)),
        "{err}"
    );
    assert_eq!(
        store.get_api_key(&carrier_key.id).await.unwrap().unwrap(),
        created
    );
    // Neither a malformed id nor a hash that is not one is stored.
    let (mut bad_hash, _) = new_key(Role::Admin, Scope::all());
    bad_hash.secret_sha256 = "not-a-hash".into();
    assert!(matches!(
        store.create_api_key(&bad_hash).await,
        Err(StoreError::Invalid(_))
    ));
    let (mut bad_id, _) = new_key(Role::Admin, Scope::all());
    bad_id.id = "has_underscore".into();
    assert!(matches!(
        store.create_api_key(&bad_id).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(store.get_api_key(&bad_hash.id).await.unwrap().is_none());

    // Listed oldest first, exactly as read one by one.
    let listed = store.list_api_keys().await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|k| k.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            carrier_key.id.as_str(),
            admin_key.id.as_str(),
            nothing_key.id.as_str(),
            expired_key.id.as_str()
        ]
    );
    assert_eq!(listed, vec![created.clone(), admin, nothing, expired]);

    // Revoked from now on; revoking again keeps the first time.
    let revoked = store
        .revoke_api_key(&carrier_key.id)
        .await
        .unwrap()
        .unwrap();
    let first_revocation = revoked.revoked_at.expect("revoked");
    assert!(first_revocation >= created.created_at && first_revocation <= chrono::Utc::now());
    assert!(!revoked.is_active(chrono::Utc::now()));
    assert_eq!(
        revoked,
        ApiKey {
            revoked_at: Some(first_revocation),
            ..created.clone()
        }
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    let again = store
        .revoke_api_key(&carrier_key.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.revoked_at, Some(first_revocation));
    let stored = other.get_api_key(&carrier_key.id).await.unwrap().unwrap();
    assert_eq!(stored.revoked_at, Some(first_revocation));
    // The others are untouched.
    assert!(store
        .get_api_key(&admin_key.id)
        .await
        .unwrap()
        .unwrap()
        .revoked_at
        .is_none());

    // No such key.
    assert!(store
        .revoke_api_key("aaaaaaaaaaaa")
        .await
        .unwrap()
        .is_none());
    assert!(store.get_api_key("aaaaaaaaaaaa").await.unwrap().is_none());
}

fn audit(actor: &str, action: &str, status: u16) -> NewAuditEntry {
    NewAuditEntry {
        actor: actor.into(),
        role: None,
        action: action.into(),
        target: None,
        status,
        client: None,
        request_id: None,
        detail: None,
    }
}

/// Every page of `filter`, following the cursors; each page at most `filter.limit` long.
async fn audit_pages(store: &Arc<dyn Store>, mut filter: AuditFilter) -> Vec<Vec<i64>> {
    let mut pages = Vec::new();
    loop {
        let page = store.list_audit(&filter).await.unwrap();
        assert!(page.items.len() <= filter.page_limit() as usize);
        pages.push(page.items.iter().map(|e| e.id).collect());
        match page.next_cursor {
            Some(cursor) => filter.before_id = Some(AuditFilter::parse_cursor(&cursor).unwrap()),
            None => return pages,
        }
        assert!(pages.len() < 100, "paging does not end");
    }
}

async fn the_audit_log_lists_newest_first_by_page_filters_and_purges(target: Target) {
    let store = target.store().await;
    assert!(store
        .list_audit(&AuditFilter::default())
        .await
        .unwrap()
        .items
        .is_empty());
    let start = chrono::Utc::now() - chrono::Duration::milliseconds(1);

    // Every field is kept.
    let full = NewAuditEntry {
        actor: "alice".into(),
        role: Some("operator".into()),
        action: "POST /v1/carriers/acme/submissions".into(),
        target: Some("submission:42".into()),
        status: 201,
        client: Some("203.0.113.7".into()),
        request_id: Some("req-1".into()),
        detail: Some("policies.csv".into()),
    };
    let mut ids = vec![store.record_audit(&full).await.unwrap()];
    for (actor, status) in [
        ("anonymous", 401),
        ("bob", 200),
        ("alice", 403),
        ("bob", 429),
        ("alice", 500),
        ("bob", 404),
    ] {
        ids.push(
            store
                .record_audit(&audit(actor, "GET /v1/policies", status))
                .await
                .unwrap(),
        );
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let newest_first: Vec<i64> = ids.iter().rev().copied().collect();

    let all = store.list_audit(&AuditFilter::default()).await.unwrap();
    assert!(all.next_cursor.is_none());
    assert_eq!(
        all.items.iter().map(|e| e.id).collect::<Vec<_>>(),
        newest_first
    );
    let first = all.items.last().unwrap();
    assert_eq!(first.entry, full);
    assert!(first.at >= start && first.at <= chrono::Utc::now());
    assert!(all.items.windows(2).all(|w| w[0].at >= w[1].at));
    assert_eq!(
        (all.items[0].entry.actor.as_str(), all.items[0].entry.status),
        ("bob", 404)
    );

    // Pages of three, then of one: every entry once, newest first.
    let pages = audit_pages(
        &store,
        AuditFilter {
            limit: 3,
            ..AuditFilter::default()
        },
    )
    .await;
    assert_eq!(pages.len(), 3);
    assert_eq!(pages.concat(), newest_first);
    let pages = audit_pages(
        &store,
        AuditFilter {
            limit: 1,
            ..AuditFilter::default()
        },
    )
    .await;
    assert_eq!(pages.concat(), newest_first);

    // By actor, and only the denied requests (401, 403, 429; not 404 or 500).
    let alice = audit_pages(
        &store,
        AuditFilter {
            actor: Some("alice".into()),
            limit: 2,
            ..AuditFilter::default()
        },
    )
    .await;
    assert_eq!(alice.concat(), [ids[5], ids[3], ids[0]]);
    let denied = store
        .list_audit(&AuditFilter {
            denied_only: true,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let statuses: Vec<u16> = denied.items.iter().map(|e| e.entry.status).collect();
    assert_eq!(statuses, [429, 403, 401]);
    let denied_bob = audit_pages(
        &store,
        AuditFilter {
            actor: Some("bob".into()),
            denied_only: true,
            limit: 1,
            ..AuditFilter::default()
        },
    )
    .await;
    assert_eq!(denied_bob.concat(), [ids[4]]);
    assert!(store
        .list_audit(&AuditFilter {
            actor: Some("nobody".into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap()
        .items
        .is_empty());

    // Purging removes what was recorded before the instant, and only that.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let cutoff = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let later = [
        store
            .record_audit(&audit("carol", "key.create", 201))
            .await
            .unwrap(),
        store
            .record_audit(&audit("carol", "key.revoke", 200))
            .await
            .unwrap(),
    ];
    assert_eq!(store.purge_audit(cutoff).await.unwrap(), 7);
    let left = store.list_audit(&AuditFilter::default()).await.unwrap();
    assert_eq!(
        left.items.iter().map(|e| e.id).collect::<Vec<_>>(),
        [later[1], later[0]]
    );
    assert_eq!(store.purge_audit(cutoff).await.unwrap(), 0);
    // Ids keep growing after everything was purged: a cursor never meets a reused id.
    assert_eq!(store.purge_audit(chrono::Utc::now()).await.unwrap(), 2);
    let next = store.record_audit(&audit("carol", "x", 200)).await.unwrap();
    assert!(next > later[1], "{next} after {}", later[1]);
}

/// Publishes everything in the outbox; returns the events in the order published.
async fn publish_all(store: &Arc<dyn Store>) -> Vec<OutboxEvent> {
    let events = store.unpublished_events(1000).await.unwrap();
    let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
    store.mark_events_published(&ids).await.unwrap();
    events
}

async fn events_are_read_in_publication_order_within_the_scope(target: Target) {
    let store = target.store().await;
    assert_eq!(store.last_published_event().await.unwrap(), None);
    ingest(
        &store,
        vec![
            booked("acme", "P1", Some("AB12")),
            booked("acme", "P2", Some("ZZ")),
            claim("C1", "P1", 0, 100),
        ],
    )
    .await;
    let unpublished = store.unpublished_events(100).await.unwrap();
    // Published out of id order: readers follow the publication, not the ids.
    let (last, first) = unpublished.split_at(3);
    store
        .mark_events_published(&first.iter().map(|e| e.id).collect::<Vec<_>>())
        .await
        .unwrap();
    store
        .mark_events_published(&last.iter().map(|e| e.id).collect::<Vec<_>>())
        .await
        .unwrap();
    // Publishing again changes nothing.
    store
        .mark_events_published(&[unpublished[0].id])
        .await
        .unwrap();
    let all = |after| EventFilter {
        after,
        limit: 100,
        ..EventFilter::default()
    };
    let read = store.list_events(&Scope::all(), &all(None)).await.unwrap();
    let ids: Vec<i64> = read.iter().map(|e| e.id).collect();
    let expected: Vec<i64> = first.iter().chain(last).map(|e| e.id).collect();
    assert_eq!(ids, expected);
    assert_eq!(
        store.last_published_event().await.unwrap(),
        expected.last().copied()
    );
    // Resuming after an event gives exactly the rest.
    let rest = store
        .list_events(&Scope::all(), &all(Some(expected[1])))
        .await
        .unwrap();
    assert_eq!(rest.iter().map(|e| e.id).collect::<Vec<_>>(), expected[2..]);
    assert!(matches!(
        store.list_events(&Scope::all(), &all(Some(999_999))).await,
        Err(StoreError::NotFound(_))
    ));
    // Types, carriers, limit.
    let policies = store
        .list_events(
            &Scope::all(),
            &EventFilter {
                types: vec!["policy.created".into()],
                limit: 1,
                ..all(None)
            },
        )
        .await
        .unwrap();
    assert_eq!(policies.len(), 1);
    assert_eq!(policies[0].event_type, "policy.created");
    let types = |events: &[OutboxEvent]| {
        events
            .iter()
            .map(|e| e.event_type.clone())
            .collect::<Vec<_>>()
    };
    // Scope: another carrier sees nothing; a book sees its policy and its claim only.
    let beta = Scope::carriers(["beta"]);
    assert!(store
        .list_events(&beta, &all(None))
        .await
        .unwrap()
        .is_empty());
    let book = Scope::carriers(["acme"]).with_books(["AB12"]);
    let in_book = store.list_events(&book, &all(None)).await.unwrap();
    // (The claim was published first.)
    assert_eq!(types(&in_book), ["claim.created", "policy.created"]);
    assert_eq!(in_book[1].payload["number"], "P1");
    let filtered = store
        .list_events(
            &Scope::all(),
            &EventFilter {
                carriers: vec!["beta".into()],
                ..all(None)
            },
        )
        .await
        .unwrap();
    assert!(filtered.is_empty());
}

async fn webhook_deliveries_are_queued_once_in_scope_claimed_retried_and_logged(target: Target) {
    let store = target.store().await;
    let new = |scope: Scope, types: Vec<String>| NewWebhook {
        url: "https://example.test/hook".into(),
        secret: "whsec_c2VjcmV0".into(),
        event_types: types,
        carriers: vec![],
        scope,
        description: None,
        created_by: "key:a".into(),
    };
    let everything = store
        .create_webhook(&new(Scope::all(), vec![]))
        .await
        .unwrap();
    let book = store
        .create_webhook(&new(
            Scope::carriers(["acme"]).with_books(["AB12"]),
            vec!["policy.created".into(), "claim.created".into()],
        ))
        .await
        .unwrap();
    let beta = store
        .create_webhook(&NewWebhook {
            created_by: "key:b".into(),
            ..new(Scope::carriers(["beta"]), vec![])
        })
        .await
        .unwrap();
    assert_eq!(everything.secret, "whsec_c2VjcmV0");
    assert_eq!(store.list_webhooks(None).await.unwrap().len(), 3);
    assert_eq!(
        store.list_webhooks(Some("key:b")).await.unwrap(),
        std::slice::from_ref(&beta)
    );
    assert!(store
        .get_webhook(beta.id, Some("key:a"))
        .await
        .unwrap()
        .is_none());

    ingest(
        &store,
        vec![
            booked("acme", "P1", Some("AB12")),
            booked("acme", "P2", Some("ZZ")),
            claim("C1", "P1", 0, 100),
        ],
    )
    .await;
    let events = publish_all(&store).await;
    // Published again (a relay that died before marking): nothing is queued twice.
    store
        .mark_events_published(&events.iter().map(|e| e.id).collect::<Vec<_>>())
        .await
        .unwrap();
    let page = PageRequest {
        after_id: None,
        limit: 100,
    };
    let of = |w: i64| {
        let store = store.clone();
        async move {
            store
                .list_deliveries(w, &page)
                .await
                .unwrap()
                .items
                .iter()
                .map(|d| d.event_type.clone())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(of(everything.id).await.len(), events.len());
    assert_eq!(of(book.id).await, ["policy.created", "claim.created"]);
    assert!(of(beta.id).await.is_empty());

    // Claims: each due delivery once while its lease runs.
    let claimed = store.claim_deliveries("d1", 100, LEASE).await.unwrap();
    assert_eq!(claimed.len(), events.len() + 2);
    assert!(store
        .claim_deliveries("d2", 100, LEASE)
        .await
        .unwrap()
        .is_empty());
    let first = claimed[0].clone();
    assert_eq!(first.attempts, 0);
    let retry_at = chrono::Utc::now() + chrono::Duration::milliseconds(300);
    let failed = |id, outcome| AttemptResult {
        delivery_id: id,
        owner: "d1".into(),
        status_code: Some(503),
        error: Some("status 503".into()),
        duration_ms: 12,
        outcome,
        disable_after: Duration::from_secs(3600),
    };
    store
        .record_delivery_attempt(&failed(first.id, AttemptOutcome::RetryAt(retry_at)))
        .await
        .unwrap();
    assert!(store
        .claim_deliveries("d2", 100, LEASE)
        .await
        .unwrap()
        .is_empty());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let again = store.claim_deliveries("d2", 100, LEASE).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].attempts), (first.id, 1));
    store
        .record_delivery_attempt(&AttemptResult {
            owner: "d2".into(),
            status_code: Some(204),
            error: None,
            outcome: AttemptOutcome::Delivered,
            ..failed(first.id, AttemptOutcome::Delivered)
        })
        .await
        .unwrap();
    let log = store
        .list_deliveries(first.webhook_id, &page)
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|d| d.id == first.id)
        .unwrap();
    assert_eq!(log.status, DeliveryStatus::Delivered);
    assert_eq!(log.attempts, 2);
    assert_eq!(
        log.log.iter().map(|a| a.status_code).collect::<Vec<_>>(),
        [Some(503), Some(204)]
    );
    assert!(log.log[0].next_attempt_at.is_some());
    let hook = store
        .get_webhook(first.webhook_id, None)
        .await
        .unwrap()
        .unwrap();
    assert!(hook.failing_since.is_none() && hook.disabled_at.is_none());

    // A lease that runs out lets another process claim the delivery (its sender died).
    let second = claimed[1].clone();
    store
        .record_delivery_attempt(&failed(
            second.id,
            AttemptOutcome::RetryAt(chrono::Utc::now()),
        ))
        .await
        .unwrap();
    let short = store
        .claim_deliveries("d3", 1, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(short[0].id, second.id);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let taken = store.claim_deliveries("d4", 100, LEASE).await.unwrap();
    assert!(taken.iter().any(|d| d.id == second.id));

    // Failing for longer than allowed disables the webhook: nothing more is claimed or
    // queued for it.
    store
        .record_delivery_attempt(&AttemptResult {
            owner: "d4".into(),
            disable_after: Duration::ZERO,
            ..failed(second.id, AttemptOutcome::GiveUp)
        })
        .await
        .unwrap();
    let hook = store
        .get_webhook(second.webhook_id, None)
        .await
        .unwrap()
        .unwrap();
    assert!(hook.disabled_at.is_some(), "{hook:?}");
    assert!(hook.disabled_reason.unwrap().contains("status 503"));
    let given_up = store
        .list_deliveries(second.webhook_id, &page)
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|d| d.id == second.id)
        .unwrap();
    assert_eq!(given_up.status, DeliveryStatus::Failed);
    // Redelivery queues it again, due now.
    let redelivered = store
        .redeliver(second.webhook_id, second.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(redelivered.status, DeliveryStatus::Pending);
    assert!(store.redeliver(beta.id, second.id).await.unwrap().is_none());

    assert!(store.delete_webhook(beta.id, Some("key:b")).await.unwrap());
    assert!(!store.delete_webhook(beta.id, Some("key:b")).await.unwrap());
    assert!(!store.delete_webhook(book.id, Some("key:b")).await.unwrap());
}

async fn the_warehouse_reads_published_events_after_a_position_and_a_carriers_history(
    target: Target,
) {
    let store = target.store().await;
    let first = claimed_submission(&store, "w").await;
    store
        .commit_batch(batch(
            first,
            "w",
            vec![
                policy("P1", 10000, PolicyStatus::Active),
                policy("P2", 5000, PolicyStatus::Active),
                policy("P1", 3000, PolicyStatus::Cancelled),
            ],
        ))
        .await
        .unwrap();
    store.finish_submission(first, "w", None).await.unwrap();

    // Nothing is read before it is published.
    let all = store.unpublished_events(1000).await.unwrap();
    assert!(all.len() >= 4, "{all:?}");
    assert!(all.iter().all(|e| e.published_seq.is_none()), "{all:?}");
    assert!(store
        .published_events_after(0, 1000)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.last_event_id().await.unwrap(), all.last().unwrap().id);
    let ids: Vec<i64> = all.iter().map(|e| e.id).collect();
    let of = |events: &[OutboxEvent]| events.iter().map(|e| e.id).collect::<Vec<_>>();

    // Published events, in publication order, each with its position, from any position.
    store.mark_events_published(&ids[..3]).await.unwrap();
    let published = store.published_events_after(0, 1000).await.unwrap();
    assert_eq!(of(&published), ids[..3]);
    let seqs: Vec<i64> = published
        .iter()
        .map(|e| e.published_seq.expect("a published event has its position"))
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(store.last_published_seq().await.unwrap(), seqs[2]);
    let after = store.published_events_after(seqs[0], 1).await.unwrap();
    assert_eq!(of(&after), ids[1..2]);
    // The rest is unpublished: not there until the relay marks it.
    assert!(store
        .published_events_after(seqs[2], 10)
        .await
        .unwrap()
        .is_empty());
    store.mark_events_published(&ids).await.unwrap();
    let rest = store.published_events_after(seqs[2], 1000).await.unwrap();
    assert_eq!(of(&rest), ids[3..]);
    assert_eq!(
        store.last_published_seq().await.unwrap(),
        rest.last().unwrap().published_seq.unwrap()
    );
    // The events of `list_events` carry their positions too.
    let listed = store
        .list_events(
            &Scope::all(),
            &EventFilter {
                limit: 1000,
                ..EventFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(listed, [published, rest].concat());

    // The carrier's whole history: both versions of P1, one of P2, their premium movements.
    let carrier = all[0].carrier.clone();
    let data = store.warehouse_carrier(&carrier).await.unwrap();
    let versions: Vec<(String, i64, bool)> = data
        .policy_versions
        .iter()
        .map(|v| {
            (
                v.record.number.as_str().to_owned(),
                v.version,
                v.valid_to.is_none(),
            )
        })
        .collect();
    assert_eq!(
        versions,
        [
            ("P1".to_owned(), 1, false),
            ("P1".to_owned(), 2, true),
            ("P2".to_owned(), 1, true)
        ]
    );
    let total: Decimal = data.premium_transactions.iter().map(|t| t.amount).sum();
    assert_eq!(total, Decimal::from(80));
    assert!(store
        .warehouse_carrier("nobody")
        .await
        .unwrap()
        .policy_versions
        .is_empty());
}

/// On PostgreSQL an event with a lower id can commit (and be published) after one with a
/// higher id: a reader that follows the publication order still reads it, after the other.
async fn the_warehouse_follows_the_publication_order_not_the_ids(target: Target) {
    let store = target.store().await;
    ingest(
        &store,
        vec![
            policy("P1", 10000, PolicyStatus::Active),
            policy("P2", 5000, PolicyStatus::Active),
        ],
    )
    .await;
    let pending = store.unpublished_events(100).await.unwrap();
    assert!(pending.len() >= 3, "{pending:?}");
    let (low, high) = (pending[0].id, pending[1].id);
    assert!(low < high);
    let of = |events: &[OutboxEvent]| events.iter().map(|e| e.id).collect::<Vec<_>>();

    // The higher id is published first; a reader applies it and keeps its position.
    store.mark_events_published(&[high]).await.unwrap();
    let read = store.published_events_after(0, 100).await.unwrap();
    assert_eq!(of(&read), [high]);
    let position = read[0].published_seq.unwrap();
    assert!(store
        .published_events_after(position, 100)
        .await
        .unwrap()
        .is_empty());
    // The lower id is published later: it comes after that position, not before it.
    store.mark_events_published(&[low]).await.unwrap();
    let next = store.published_events_after(position, 100).await.unwrap();
    assert_eq!(of(&next), [low]);
    assert!(next[0].published_seq.unwrap() > position);
    // From the start: the publication order, not the ids; the others, unpublished, are not
    // there. Publishing again moves nothing.
    let all = store.published_events_after(0, 100).await.unwrap();
    assert_eq!(of(&all), [high, low]);
    store.mark_events_published(&[low, high]).await.unwrap();
    assert_eq!(store.published_events_after(0, 100).await.unwrap(), all);
    let rest: Vec<i64> = pending[2..].iter().map(|e| e.id).collect();
    store.mark_events_published(&rest).await.unwrap();
    let everything = store.published_events_after(0, 100).await.unwrap();
    assert_eq!(of(&everything), [vec![high, low], rest].concat());
}

async fn the_warehouse_reads_the_history_of_records_and_the_rows_of_months(target: Target) {
    let store = target.store().await;
    ingest(
        &store,
        vec![
            policy("P1", 10000, PolicyStatus::Active),
            policy("P2", 5000, PolicyStatus::Active),
            policy("P1", 3000, PolicyStatus::Cancelled),
        ],
    )
    .await;
    // A claim of P2, lost in 2025-03 (the policies are effective in 2025-01).
    ingest(&store, vec![claim("C1", "P2", 1000, 500)]).await;
    let p1 = policy_id(&store, "P1").await;
    let p2 = policy_id(&store, "P2").await;
    let all = store.warehouse_carrier("acme").await.unwrap();
    let c1 = all.claim_versions[0].claim_id;
    let read = |selection: WarehouseSelection| {
        let store = store.clone();
        async move { store.warehouse_rows("acme", &selection).await.unwrap() }
    };
    let shape = |d: &WarehouseCarrier| {
        (
            d.policy_versions
                .iter()
                .map(|v| (v.policy_id, v.version))
                .collect::<Vec<_>>(),
            d.claim_versions
                .iter()
                .map(|v| (v.claim_id, v.version, v.policy_id))
                .collect::<Vec<_>>(),
            d.premium_transactions
                .iter()
                .map(|t| t.amount)
                .sum::<Decimal>(),
            d.claim_transactions.len(),
        )
    };
    let records = |policies: Vec<i64>, claims: Vec<i64>| {
        read(WarehouseSelection::Records { policies, claims })
    };
    let months = |m: WarehouseMonths| read(WarehouseSelection::Months(m));
    let m = |s: &str| vec![s.to_owned()];

    // A record's history: P1's versions and movements, not P2's or the claim.
    assert_eq!(
        shape(&records(vec![p1], vec![]).await),
        (vec![(p1, 1), (p1, 2)], vec![], Decimal::from(30), 0)
    );
    // A policy's history includes the claims that name it, with their transactions.
    assert_eq!(
        shape(&records(vec![p2], vec![]).await),
        (vec![(p2, 1)], vec![(c1, 1, p2)], Decimal::from(50), 2)
    );
    assert_eq!(
        shape(&records(vec![], vec![c1]).await),
        (vec![], vec![(c1, 1, p2)], Decimal::ZERO, 2)
    );
    // A month: its rows, and every version of the policies its transactions and claims
    // refer to.
    assert_eq!(
        shape(
            &months(WarehouseMonths {
                policies: m("2025-01"),
                ..Default::default()
            })
            .await
        ),
        (vec![(p1, 1), (p1, 2), (p2, 1)], vec![], Decimal::ZERO, 0)
    );
    assert_eq!(
        shape(
            &months(WarehouseMonths {
                claims: m("2025-03"),
                ..Default::default()
            })
            .await
        ),
        (vec![(p2, 1)], vec![(c1, 1, p2)], Decimal::ZERO, 0)
    );
    assert_eq!(
        shape(
            &months(WarehouseMonths {
                claim_transactions: m("2025-03"),
                ..Default::default()
            })
            .await
        ),
        (vec![(p2, 1)], vec![(c1, 1, p2)], Decimal::ZERO, 2)
    );
    assert_eq!(
        shape(
            &months(WarehouseMonths {
                premium_transactions: m("2025-01"),
                ..Default::default()
            })
            .await
        ),
        (
            vec![(p1, 1), (p1, 2), (p2, 1)],
            vec![],
            Decimal::from(80),
            0
        )
    );
    let nothing = WarehouseMonths {
        policies: m("2024-12"),
        premium_transactions: m("2024-12"),
        claims: m("2025-01"),
        claim_transactions: m("2025-02"),
    };
    assert_eq!(
        shape(&months(nothing).await),
        (vec![], vec![], Decimal::ZERO, 0)
    );
    // Another carrier's ids are not read.
    assert!(store
        .warehouse_rows(
            "nobody",
            &WarehouseSelection::Records {
                policies: vec![p1, p2],
                claims: vec![c1]
            }
        )
        .await
        .unwrap()
        .policy_versions
        .is_empty());
}

async fn fenced_leases_have_one_holder_and_a_token_that_grows_with_each_handover(target: Target) {
    let store = target.store().await;
    let take = |owner: &'static str, ttl: Duration| {
        let store = store.clone();
        async move {
            store
                .take_fenced_lease("warehouse:/w", owner, ttl)
                .await
                .unwrap()
                .map(|l| l.token)
        }
    };
    assert_eq!(take("a", LEASE).await, Some(1));
    // Renewed by its holder: the same token; refused to another owner.
    assert_eq!(take("a", LEASE).await, Some(1));
    assert_eq!(take("b", LEASE).await, None);
    assert_eq!(
        store
            .take_fenced_lease("warehouse:/other", "b", LEASE)
            .await
            .unwrap()
            .map(|l| l.token),
        Some(1)
    );
    // Expired: taken over with the next token; the old holder is refused and learns it.
    assert_eq!(take("a", Duration::from_millis(1)).await, Some(1));
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(take("b", LEASE).await, Some(2));
    assert_eq!(take("a", LEASE).await, None);
    assert_eq!(take("b", Duration::from_millis(1)).await, Some(2));
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(take("a", LEASE).await, Some(3));
    // The plain leases are another name space.
    assert!(store.take_lease("warehouse:/w", "b", LEASE).await.unwrap());
}

/// Text is stored exactly as it was sent, whatever it holds. The PostgreSQL store writes a
/// batch's rows with `COPY`, where a tab, a newline, a backslash or `\N` would be a separator,
/// an escape or a NULL if a value were not encoded right.
async fn text_with_separators_and_escapes_is_stored_as_sent(target: Target) {
    const HOSTILE: &str =
        "tab\there\nnew line\r\n\\N \\. back\\slash \"quoted\" 'single' ; | , ünï ✓ 😀";
    let number = r#"P\1"';|,\N"#;
    let store = target.store().await;
    let mut p = policy_of("acme", number, eur(12_345), PolicyStatus::Active);
    p.insured.name = HOSTILE.into();
    p.producer = Some(format!("producer {HOSTILE}"));
    p.line_of_business = Coded::new(LineOfBusiness::Homeowners, "W\tG\\");
    p.status = Coded::new(PolicyStatus::Active, "\\N");
    p.extras.insert("note\t1".into(), HOSTILE.into());
    let (_, counts) = ingest(&store, vec![CanonicalRecord::Policy(p)]).await;
    assert_eq!(iuur(&counts), (1, 0, 0, 0));

    let id = policy_id(&store, number).await;
    let summary = store
        .get_policy(id, &Scope::all())
        .await
        .unwrap()
        .unwrap()
        .summary;
    assert_eq!(summary.number, number);
    assert_eq!(summary.insured_name, HOSTILE);
    assert_eq!(summary.producer, Some(format!("producer {HOSTILE}")));
    assert_eq!(summary.line_of_business.original, "W\tG\\");
    assert_eq!(summary.status.original, "\\N");
    let versions = assert_consistent_history(&store, id).await;
    assert_eq!(versions[0].record["insured"]["name"], HOSTILE);
    assert_eq!(versions[0].record["extras"]["note\t1"], HOSTILE);

    // A transaction whose reference holds the same characters is applied, and recognised by
    // that reference when it is sent again.
    let reference = "T\\1\t\"x\"\n\\N";
    let endorsement = || {
        transaction(
            number,
            reference,
            TransactionType::Endorsement,
            1_000,
            date(2025, 6, 1),
        )
    };
    let (_, counts) = ingest(&store, vec![endorsement()]).await;
    assert_eq!(iuur(&counts), (0, 1, 0, 0));
    let (_, counts) = ingest(&store, vec![endorsement()]).await;
    assert_eq!(iuur(&counts), (0, 0, 1, 0));
    let versions = assert_consistent_history(&store, id).await;
    assert_eq!(versions.len(), 2);
    assert_eq!(
        versions[1].transaction.as_ref().unwrap()["reference"],
        reference
    );

    // The change events carry the number as sent.
    let events = target.outbox().await;
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.payload["number"] == number));
}
