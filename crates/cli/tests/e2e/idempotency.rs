//! `Idempotency-Key` on uploads and replays, driven over HTTP against the real binary: a
//! request sent again with its key gets the first response and creates nothing; the key with
//! another request, or while the first is in flight, is a 409.

use crate::common;

use carrierhub_store::testing::TestDatabase;
use common::{get, response, Env, Server, ACME_FEED, ACME_MAPPING};
use reqwest::multipart::{Form, Part};
use reqwest::{Client, StatusCode};
use serde_json::Value;

const UPLOAD: &str = "/v1/carriers/acme/submissions";

/// A multipart upload of `feed` with the mapping file; reqwest draws a new boundary for
/// every form, as many clients do on every try.
fn form(feed: &[u8]) -> Form {
    Form::new()
        .part(
            "file",
            Part::bytes(feed.to_vec()).file_name("acme-2025-11.csv"),
        )
        .text("mapping_file", ACME_MAPPING)
}

/// What came back: status, the headers a client looks at, the body as JSON.
struct Answer {
    status: StatusCode,
    content_type: String,
    location: Option<String>,
    replayed: Option<String>,
    retry_after: Option<String>,
    body: Value,
}

async fn answer(r: reqwest::Response) -> Answer {
    let header = |name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (location, replayed, retry_after) = (
        header("location"),
        header("idempotent-replayed"),
        header("retry-after"),
    );
    let (status, content_type, body) = response(r).await;
    Answer {
        status,
        content_type,
        location,
        replayed,
        retry_after,
        body,
    }
}

async fn upload(client: &Client, server: &Server, key: &str, form: Form) -> Answer {
    answer(
        client
            .post(server.url(UPLOAD))
            .header("Idempotency-Key", key)
            .multipart(form)
            .send()
            .await
            .expect("POST an upload"),
    )
    .await
}

async fn submission_ids(client: &Client, server: &Server) -> Vec<i64> {
    let (status, _, page) = get(client, server, "/v1/submissions?limit=100").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect()
}

fn assert_conflict(a: &Answer, key: &str, slug: &str) {
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.body);
    assert_eq!(a.content_type, "application/problem+json");
    assert_eq!(a.body["status"], 409);
    assert!(
        a.body["type"].as_str().unwrap().ends_with(slug),
        "{}",
        a.body
    );
    assert_eq!(a.body["idempotency_key"], key, "{}", a.body);
    assert!(
        a.body["detail"].as_str().unwrap().contains(key),
        "the detail names the key: {}",
        a.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_and_request_return_the_first_submission() {
    let env = Env::new();
    let server = env.serve();
    let client = Client::new();

    let first = upload(&client, &server, "upload-1", form(ACME_FEED)).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    assert_eq!(first.replayed, None);
    let id = first.body["id"].as_i64().unwrap();

    // Sent again (a new boundary): the first response, marked as a replay.
    let again = upload(&client, &server, "upload-1", form(ACME_FEED)).await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.replayed.as_deref(), Some("true"));
    assert_eq!(again.body, first.body, "the same body, the same submission");
    assert_eq!(again.location, first.location);
    assert_eq!(again.content_type, "application/json");
    assert_eq!(submission_ids(&client, &server).await, [id]);
    let done = server.wait_for_submission(&client, id).await;
    assert_eq!(done["status"], "completed");

    // Still the first response once the submission is processed: a replay is not a read.
    let later = upload(&client, &server, "upload-1", form(ACME_FEED)).await;
    assert_eq!(later.body, first.body);
    assert_eq!(later.replayed.as_deref(), Some("true"));

    // Keys are per carrier: the same key for another carrier is another request.
    let elsewhere = answer(
        client
            .post(server.url("/v1/carriers/other/submissions"))
            .header("Idempotency-Key", "upload-1")
            .multipart(form(ACME_FEED))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(elsewhere.status, StatusCode::ACCEPTED, "{}", elsewhere.body);
    assert_eq!(elsewhere.replayed, None);
    assert_ne!(elsewhere.body["id"], first.body["id"]);

    // Without a key, nothing changes: every upload is a new submission.
    for _ in 0..2 {
        let r = client
            .post(server.url(UPLOAD))
            .multipart(form(ACME_FEED))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert!(r.headers().get("idempotent-replayed").is_none());
    }
    assert_eq!(submission_ids(&client, &server).await.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_with_another_request_is_a_conflict() {
    let env = Env::new();
    let server = env.serve();
    let client = Client::new();

    let first = upload(&client, &server, "k-42", form(ACME_FEED)).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);

    // Another file under the same key.
    let mut other_feed = ACME_FEED.to_vec();
    other_feed.extend_from_slice(b"\n");
    let other = upload(&client, &server, "k-42", form(&other_feed)).await;
    assert_conflict(&other, "k-42", "idempotency-key-reused");

    // The same file under another name, or with another query: other requests too.
    let renamed = Form::new()
        .part(
            "file",
            Part::bytes(ACME_FEED.to_vec()).file_name("renamed.csv"),
        )
        .text("mapping_file", ACME_MAPPING);
    assert_conflict(
        &upload(&client, &server, "k-42", renamed).await,
        "k-42",
        "idempotency-key-reused",
    );
    let with_query = answer(
        client
            .post(server.url(&format!("{UPLOAD}?file_name=x.csv")))
            .header("Idempotency-Key", "k-42")
            .multipart(form(ACME_FEED))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_conflict(&with_query, "k-42", "idempotency-key-reused");
    assert_eq!(submission_ids(&client, &server).await.len(), 1);

    // The first request is still answered as it was.
    let again = upload(&client, &server, "k-42", form(ACME_FEED)).await;
    assert_eq!(again.body, first.body);

    // A malformed key is refused before anything happens.
    let empty = upload(&client, &server, "\"\"", form(ACME_FEED)).await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST, "{}", empty.body);
    assert_eq!(empty.content_type, "application/problem+json");
    assert_eq!(submission_ids(&client, &server).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_refused_as_unprocessable_is_refused_again_and_a_new_key_goes_through() {
    let env = Env::new();
    let server = env.serve();
    let client = Client::new();
    let named = |mapping: &str| {
        Form::new()
            .part("file", Part::bytes(ACME_FEED.to_vec()).file_name("a.csv"))
            .text("mapping", mapping.to_owned())
    };

    // The carrier has no such mapping yet: 422, kept, so the retry is answered alike.
    let refused = upload(&client, &server, "named-1", named("acme-policies")).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    let again = upload(&client, &server, "named-1", named("acme-policies")).await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(again.replayed.as_deref(), Some("true"));
    assert_eq!(again.body, refused.body);
    assert_eq!(again.content_type, "application/problem+json");

    // Once the mapping exists, the same request with a new key is accepted.
    let stored = upload(&client, &server, "with-file", form(ACME_FEED)).await;
    assert_eq!(stored.status, StatusCode::ACCEPTED);
    let accepted = upload(&client, &server, "named-2", named("acme-policies")).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.body);
    assert_eq!(accepted.replayed, None);
    assert_eq!(submission_ids(&client, &server).await.len(), 2);
}

/// A multipart body written by hand with `boundary`, as a client that makes up a new
/// boundary on each try sends it.
fn handmade(boundary: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"mapping_file\"\r\n\r\n\
             {ACME_MAPPING}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; \
             filename=\"acme.csv\"\r\nContent-Type: text/csv\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(ACME_FEED);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_boundary_with_the_same_parts_is_a_replay() {
    let env = Env::new();
    let server = env.serve();
    let client = Client::new();
    let send = |boundary: &'static str| {
        client
            .post(server.url(UPLOAD))
            .header("Idempotency-Key", "\"boundaries\"")
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(handmade(boundary))
            .send()
    };
    let first = answer(send("AaB03x").await.unwrap()).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    let second = answer(
        send("----------------------------9051914041544843365972754266")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(second.status, StatusCode::ACCEPTED, "{}", second.body);
    assert_eq!(second.replayed.as_deref(), Some("true"));
    assert_eq!(second.body["id"], first.body["id"]);

    // A raw body (the mapping named in the query) is fingerprinted by its bytes.
    let raw = |key: &'static str, body: &'static [u8]| {
        client
            .post(server.url(&format!("{UPLOAD}?mapping=acme-policies&file_name=raw.csv")))
            .header("Idempotency-Key", key)
            .body(body)
            .send()
    };
    let a = answer(raw("raw", ACME_FEED).await.unwrap()).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let b = answer(raw("raw", ACME_FEED).await.unwrap()).await;
    assert_eq!(b.replayed.as_deref(), Some("true"));
    assert_eq!(b.body["id"], a.body["id"]);
    let c = answer(raw("raw", &ACME_FEED[..ACME_FEED.len() - 1]).await.unwrap()).await;
    assert_conflict(&c, "raw", "idempotency-key-reused");
    assert_eq!(submission_ids(&client, &server).await.len(), 2);
}

/// Sends `REQUESTS` identical uploads with one key at once: exactly one submission is
/// created; every other request gets either its response (a replay) or 409 in progress.
async fn concurrent_requests_make_one_submission(env: &Env) {
    const REQUESTS: usize = 8;
    let server = env.serve();
    let client = Client::new();
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(REQUESTS));
    let tasks: Vec<_> = (0..REQUESTS)
        .map(|_| {
            let client = client.clone();
            let url = server.url(UPLOAD);
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                answer(
                    client
                        .post(url)
                        .header("Idempotency-Key", "together")
                        .multipart(form(ACME_FEED))
                        .send()
                        .await
                        .expect("POST an upload"),
                )
                .await
            })
        })
        .collect();
    let mut ids = Vec::new();
    let mut in_progress = 0;
    for task in tasks {
        let a = task.await.unwrap();
        match a.status {
            StatusCode::ACCEPTED => ids.push(a.body["id"].as_i64().unwrap()),
            StatusCode::CONFLICT => {
                assert_conflict(&a, "together", "idempotency-key-in-progress");
                assert_eq!(a.retry_after.as_deref(), Some("2"));
                in_progress += 1;
            }
            other => panic!("unexpected {other}: {}", a.body),
        }
    }
    assert_eq!(ids.len() + in_progress, REQUESTS);
    ids.dedup();
    assert_eq!(ids.len(), 1, "every accepted request names one submission");
    assert_eq!(submission_ids(&client, &server).await, ids);
    // Once the first has finished, a retry gets its response.
    let retry = upload(&client, &server, "together", form(ACME_FEED)).await;
    assert_eq!(retry.status, StatusCode::ACCEPTED);
    assert_eq!(retry.body["id"].as_i64(), Some(ids[0]));
    assert_eq!(submission_ids(&client, &server).await, ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_key_create_one_submission() {
    concurrent_requests_make_one_submission(&Env::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_key_create_one_submission_on_postgres() {
    let Some(database) = TestDatabase::create_or_skip(
        "postgres::concurrent_requests_with_one_key_create_one_submission_on_postgres",
    )
    .await
    else {
        return;
    };
    concurrent_requests_make_one_submission(&Env::with_database(database.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_with_a_key_is_made_once() {
    let env = Env::new();
    let server = env.serve();
    let client = Client::new();
    let first = upload(&client, &server, "original", form(ACME_FEED)).await;
    let id = first.body["id"].as_i64().unwrap();
    server.wait_for_submission(&client, id).await;

    let replay = |key: &'static str, body: &'static str| {
        client
            .post(server.url(&format!("/v1/submissions/{id}/replay")))
            .header("Idempotency-Key", key)
            .body(body)
            .send()
    };
    let a = answer(replay("replay-1", "").await.unwrap()).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    assert_eq!(a.body["replay_of"], id);
    let b = answer(replay("replay-1", "").await.unwrap()).await;
    assert_eq!(b.status, StatusCode::ACCEPTED);
    assert_eq!(b.replayed.as_deref(), Some("true"));
    assert_eq!(b.body["id"], a.body["id"]);
    // The same key with a mapping in the body is another request.
    let c = answer(replay("replay-1", ACME_MAPPING).await.unwrap()).await;
    assert_conflict(&c, "replay-1", "idempotency-key-reused");
    // The key of the upload is another route's: a replay with it is a request of its own.
    let d = answer(replay("original", "").await.unwrap()).await;
    assert_eq!(d.status, StatusCode::ACCEPTED, "{}", d.body);
    assert_eq!(d.replayed, None);
    assert_eq!(submission_ids(&client, &server).await.len(), 3);
}
