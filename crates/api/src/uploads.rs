//! `POST /v1/carriers/{carrier}/submissions`: a carrier's payload, streamed to disk, checked
//! against its mapping, and queued for the worker. With an `Idempotency-Key`, a request sent
//! again gets the first response (see `idempotency.rs`).

use crate::idempotency::{self, Fingerprint};
use crate::params::Params;
use crate::problem::Problem;
use crate::routes::submission_body;
use crate::{AppState, Caller};
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use carrierhub_mapping::MappingSpec;
use carrierhub_model::CarrierId;
use carrierhub_pipeline::Delivery;
use futures_util::TryStreamExt;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;

/// Deletes the spooled upload whatever happens to the request.
struct Spool(PathBuf);

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn spool_path(state: &AppState) -> Result<Spool, Problem> {
    let dir = state.pipeline.documents().incoming_dir();
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| Problem::internal(&e))?;
    let name = format!(
        "upload-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    );
    Ok(Spool(dir.join(name)))
}

fn bad_upload(e: impl std::fmt::Display) -> Problem {
    Problem::bad_request(format!("the upload could not be read: {e}"))
}

/// Writes `stream` to `path` and returns the SHA-256 of what it wrote, hashed on the way.
async fn write_stream<S, E>(path: &std::path::Path, mut stream: S) -> Result<[u8; 32], Problem>
where
    S: futures_util::Stream<Item = Result<axum::body::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| Problem::internal(&e))?;
    let mut hasher = Sha256::new();
    while let Some(chunk) = stream.try_next().await.map_err(bad_upload)? {
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| Problem::internal(&e))?;
    }
    file.flush().await.map_err(|e| Problem::internal(&e))?;
    Ok(hasher.finalize().into())
}

/// A text field of a form, with the SHA-256 of its text.
async fn text_part(
    field: axum::extract::multipart::Field<'_>,
) -> Result<(String, [u8; 32]), Problem> {
    let text = field.text().await.map_err(bad_upload)?;
    let sha256 = Sha256::digest(text.as_bytes()).into();
    Ok((text, sha256))
}

/// What a form part or a raw body held, for the request's fingerprint.
enum Content {
    Part {
        name: String,
        file_name: Option<String>,
        sha256: [u8; 32],
    },
    Body {
        sha256: [u8; 32],
    },
}

/// A payload sent as a multipart form (`file` with `mapping` or `mapping_file`, and for
/// dry runs `carrier`) or as a raw body, spooled to disk.
struct Upload {
    spool: Spool,
    file_name: Option<String>,
    mapping_name: Option<String>,
    mapping_text: Option<String>,
    carrier: Option<String>,
    /// The parts of the form in the order sent, or the raw body.
    contents: Vec<Content>,
}

impl Upload {
    /// Adds what the upload held to `fingerprint`. The multipart boundary is not part of it:
    /// a client may choose a new one each time it sends the same request.
    fn fingerprint(&self, fingerprint: &mut Fingerprint) {
        for content in &self.contents {
            match content {
                Content::Part {
                    name,
                    file_name,
                    sha256,
                } => fingerprint.part(name, file_name.as_deref(), sha256),
                Content::Body { sha256 } => fingerprint.body(sha256),
            }
        }
    }
}

async fn read_upload(
    state: &AppState,
    params: &Params,
    headers: &HeaderMap,
    request: Request<Body>,
    accept_carrier: bool,
) -> Result<Upload, Problem> {
    let spool = spool_path(state).await?;
    let is_multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let mut upload = Upload {
        spool,
        file_name: params.text("file_name"),
        mapping_name: params.text("mapping"),
        mapping_text: None,
        carrier: if accept_carrier {
            params.text("carrier")
        } else {
            None
        },
        contents: Vec::new(),
    };
    let mut got_file = false;
    if is_multipart {
        let mut multipart = Multipart::from_request(request, state)
            .await
            .map_err(|e| bad_upload(e.body_text()))?;
        while let Some(field) = multipart.next_field().await.map_err(bad_upload)? {
            let name = field.name().unwrap_or_default().to_owned();
            let file_name = field.file_name().map(str::to_owned);
            let sha256 = match name.as_str() {
                "file" => {
                    if upload.file_name.is_none() {
                        upload.file_name = file_name.clone();
                    }
                    got_file = true;
                    write_stream(&upload.spool.0, field).await?
                }
                "mapping" => {
                    let (text, sha256) = text_part(field).await?;
                    upload.mapping_name = Some(text);
                    sha256
                }
                "mapping_file" => {
                    let (text, sha256) = text_part(field).await?;
                    upload.mapping_text = Some(text);
                    sha256
                }
                "carrier" if accept_carrier => {
                    let (text, sha256) = text_part(field).await?;
                    upload.carrier = Some(text);
                    sha256
                }
                other => {
                    return Err(Problem::bad_request(format!(
                        "unknown form field '{other}'; expected 'file' and 'mapping' or 'mapping_file'{}",
                        if accept_carrier { ", and optionally 'carrier'" } else { "" }
                    )))
                }
            };
            upload.contents.push(Content::Part {
                name,
                file_name,
                sha256,
            });
        }
    } else {
        let sha256 = write_stream(&upload.spool.0, request.into_body().into_data_stream()).await?;
        upload.contents.push(Content::Body { sha256 });
        got_file = true;
    }
    if !got_file {
        return Err(Problem::bad_request("the form has no 'file' field"));
    }
    Ok(upload)
}

/// The mapping an upload names: its text, or the latest revision of a stored one.
async fn upload_mapping(
    state: &AppState,
    carrier: &CarrierId,
    upload: &mut Upload,
) -> Result<MappingSpec, Problem> {
    match (upload.mapping_text.take(), upload.mapping_name.take()) {
        (Some(text), _) => MappingSpec::parse("mapping_file", &text)
            .map_err(|e| Problem::unprocessable(e.to_string())),
        (None, Some(name)) => {
            let stored = state.store.find_mapping(carrier, &name).await?.ok_or_else(|| {
                Problem::unprocessable(format!(
                    "carrier '{carrier}' has no mapping named '{name}'; send the mapping file as 'mapping_file'"
                ))
            })?;
            MappingSpec::parse(&name, &stored.text).map_err(|e| Problem::unprocessable(e.to_string()))
        }
        (None, None) => Err(Problem::bad_request(
            "name the mapping: a 'mapping' form field or query parameter, or a 'mapping_file' form field",
        )),
    }
}

/// Upload a carrier's payload: a form with `file` and `mapping` (a stored mapping's name) or
/// `mapping_file` (the TOML), or the raw payload as the body with `?mapping=NAME`. The
/// payload is checked against the mapping, stored, and processed in the background.
#[utoipa::path(post, path = "/v1/carriers/{carrier}/submissions", tag = "submissions", operation_id = "create_submission",
    params(
        ("carrier" = String, Path, min_length = 1, example = "northwind", description = "The carrier's id (a lowercase slug)"),
        ("mapping" = Option<String>, Query, description = "The name of a mapping stored for the carrier (for a raw body)"),
        ("file_name" = Option<String>, Query, description = "The payload's file name (for a raw body)"),
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "A unique value per request (a UUID): sent again with the same key, the request gets the first response with `Idempotent-Replayed: true`, and nothing new is created"),
    ),
    request_body(description = "The payload", content(
        (crate::openapi::UploadForm = "multipart/form-data"),
        (crate::openapi::RawPayload = "application/octet-stream"),
    )),
    responses(
        (status = 202, description = "Received; processed in the background", body = crate::openapi::SubmissionBody,
            headers(
                ("Location" = String, description = "The submission: `/v1/submissions/{id}`"),
                ("Idempotent-Replayed" = String, description = "`true` when this is the first response to the same `Idempotency-Key`, answered again"),
            )),
        (status = 404, description = "Not found: no such carrier for the caller", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Conflict: the `Idempotency-Key` was used with another request, or its first request is still in flight (with `Retry-After`)", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
        (status = 422, description = "Unprocessable: the payload cannot be read with the mapping, or the mapping is invalid or unknown", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_submission(
    State(state): State<AppState>,
    caller: Caller,
    Path(carrier): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    request: Request<Body>,
) -> Result<Response, Problem> {
    let carrier = CarrierId::parse(&carrier).map_err(|e| Problem::bad_request(e.to_string()))?;
    // A carrier outside the caller's scope is one that does not exist, for it.
    if !caller.scope.allows_carrier_wide(carrier.as_str()) {
        return Err(Problem::not_found(format!("no carrier '{carrier}'")));
    }
    let query = idempotency::canonical_query(&q);
    let params = Params::new(q, &["mapping", "file_name"])?;
    let key = idempotency::key_of(&headers)?;
    let upload = read_upload(&state, &params, &headers, request, false).await?;
    let Some(key) = key else {
        return submit(state, carrier, upload).await;
    };
    let mut fingerprint = Fingerprint::new(
        &format!("/v1/carriers/{carrier}/submissions"),
        &carrier,
        &query,
    );
    upload.fingerprint(&mut fingerprint);
    // Keys are the caller's own: another caller's key never replays this one's response.
    let scope = format!(
        "caller={} carrier={carrier} route=POST /v1/carriers/{{carrier}}/submissions",
        caller.subject
    );
    let work = {
        let state = state.clone();
        async move { submit(state, carrier, upload).await.into_response() }
    };
    idempotency::once(&state, scope, key, fingerprint.finish(), work).await
}

/// Receives an upload as a submission: the mapping it names, the preflight, the record.
async fn submit(
    state: AppState,
    carrier: CarrierId,
    mut upload: Upload,
) -> Result<Response, Problem> {
    let mapping = upload_mapping(&state, &carrier, &mut upload).await?;
    let receipt = state
        .pipeline
        .receive(Delivery {
            carrier,
            mapping,
            file_name: upload.file_name.unwrap_or_else(|| "upload".to_owned()),
            path: upload.spool.0.clone(),
            spooled: true,
            received_via: "api".to_owned(),
            replay_of: None,
        })
        .await?;
    Ok(accepted(&state, &receipt))
}

fn accepted(state: &AppState, receipt: &carrierhub_pipeline::Receipt) -> Response {
    if let Some(relay) = &state.relay {
        relay.notify();
    }
    let mut body = submission_body(&receipt.submission);
    body["unmapped_columns"] = serde_json::json!(receipt.unmapped_columns);
    let location = format!("/v1/submissions/{}", receipt.submission.id);
    (
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response()
}

/// `POST /v1/mappings/check`: a dry run of a mapping on a payload; writes nothing.
///
/// The payload is mapped exactly as ingestion would; the report has the records, the
/// errors by kind with examples, the source columns nothing reads and the codes no table
/// translates.
#[utoipa::path(post, path = "/v1/mappings/check", tag = "mappings", operation_id = "check_mapping",
    params(
        ("mapping" = Option<String>, Query, description = "The name of a mapping stored for `carrier`"),
        ("carrier" = Option<String>, Query, description = "The carrier whose stored mapping `mapping` names"),
        ("file_name" = Option<String>, Query, description = "The payload's file name (for a raw body)"),
        ("sample" = Option<u32>, Query, maximum = 1000, description = "Mapped records to show (default 5, at most 1000)"),
        ("max_records" = Option<u64>, Query, description = "Stop after this many records"),
    ),
    request_body(description = "The payload", content(
        (crate::openapi::CheckForm = "multipart/form-data"),
        (crate::openapi::RawPayload = "application/octet-stream"),
    )),
    responses(
        (status = 200, description = "The dry run's report", body = carrierhub_pipeline::CheckReport),
        (status = 404, description = "Not found: no such carrier for the caller", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unprocessable: the payload cannot be read, or the mapping is invalid or unknown", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn check_mapping(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    request: Request<Body>,
) -> Result<Response, Problem> {
    let params = Params::new(
        q,
        &["mapping", "file_name", "carrier", "sample", "max_records"],
    )?;
    let sample = params.parsed::<usize>("sample")?.unwrap_or(5).min(1_000);
    let max_records = params.parsed::<u64>("max_records")?;
    let mut upload = read_upload(&state, &params, &headers, request, true).await?;
    let named_carrier = upload
        .carrier
        .take()
        .map(|c| CarrierId::parse(&c).map_err(|e| Problem::bad_request(e.to_string())))
        .transpose()?;
    let lookup_carrier = named_carrier
        .clone()
        .unwrap_or_else(|| CarrierId::parse("check").expect("valid id"));
    if upload.mapping_text.is_none() && named_carrier.is_none() {
        return Err(Problem::bad_request(
            "a stored mapping is named per carrier: give 'carrier' too, or send 'mapping_file'",
        ));
    }
    let hidden = |c: &CarrierId| !caller.scope.allows_carrier_wide(c.as_str());
    if named_carrier.as_ref().is_some_and(hidden) {
        return Err(Problem::not_found(format!(
            "no carrier '{}'",
            named_carrier
                .as_ref()
                .map(CarrierId::as_str)
                .unwrap_or_default()
        )));
    }
    let spec = upload_mapping(&state, &lookup_carrier, &mut upload).await?;
    let anonymous = named_carrier.is_none() && spec.carrier.is_none();
    let carrier = named_carrier
        .or_else(|| spec.carrier.clone())
        .unwrap_or(lookup_carrier);
    // The known-policy check below reads the carrier's policies: only the caller's own.
    if !anonymous && hidden(&carrier) {
        return Err(Problem::not_found(format!("no carrier '{carrier}'")));
    }
    let file_name = upload
        .file_name
        .clone()
        .unwrap_or_else(|| "upload".to_owned());
    let path = upload.spool.0.clone();
    let for_carrier = carrier.clone();
    let mut report = tokio::task::spawn_blocking(move || {
        let _keep = upload.spool;
        carrierhub_pipeline::check_file(
            &spec,
            &for_carrier,
            &path,
            &file_name,
            carrierhub_pipeline::CheckOptions {
                sample,
                max_records,
                ..Default::default()
            },
        )
    })
    .await
    .map_err(|e| Problem::internal(&e))??;
    let known = state
        .store
        .known_policy_numbers(&carrier, &report.referenced_policies())
        .await?;
    report.apply_known_policies(&known);
    Ok(Json(report).into_response())
}

/// `POST /v1/submissions/{id}/replay`: process a submission's document again, with the
/// mapping sent as the body (TOML), or the named mapping's latest revision (`?mapping=`),
/// or else the latest revision of the mapping it used.
#[utoipa::path(post, path = "/v1/submissions/{id}/replay", tag = "submissions", operation_id = "replay_submission",
    summary = "Process a submission's document again",
    params(
        ("id" = i64, Path, minimum = 1, example = 1, description = "The submission's id"),
        ("mapping" = Option<String>, Query, description = "The name of a stored mapping of the carrier (when the body is empty)"),
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "A unique value per request (a UUID): sent again with the same key, the request gets the first response with `Idempotent-Replayed: true`, and nothing new is created"),
    ),
    request_body(description = "A mapping (TOML), or nothing for the named or the latest one", content(
        (String = "text/plain"),
    )),
    responses(
        (status = 202, description = "Received as a new submission; processed in the background", body = crate::openapi::SubmissionBody,
            headers(
                ("Location" = String, description = "The new submission: `/v1/submissions/{id}`"),
                ("Idempotent-Replayed" = String, description = "`true` when this is the first response to the same `Idempotency-Key`, answered again"),
            )),
        (status = 404, description = "Not found: no such submission for the caller", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Conflict: the `Idempotency-Key` was used with another request, or its first request is still in flight (with `Retry-After`), or the submission is busy", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
        (status = 422, description = "Unprocessable: the mapping is invalid or unknown, or the document cannot be read with it", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn replay_submission(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Problem> {
    let id = crate::params::path_id("submission", &id)?;
    let body = String::from_utf8(body.to_vec())
        .map_err(|_| Problem::bad_request("the body is not UTF-8 text (a mapping is TOML)"))?;
    let query = idempotency::canonical_query(&q);
    let params = Params::new(q, &["mapping"])?;
    let key = idempotency::key_of(&headers)?;
    let original = state
        .store
        .get_submission(id, &caller.scope)
        .await?
        .ok_or_else(|| Problem::not_found(format!("submission {id} does not exist")))?;
    let carrier = CarrierId::parse(&original.carrier).map_err(|e| Problem::internal(&e))?;
    let Some(key) = key else {
        return replay(state, id, carrier, params, body).await;
    };
    let mut fingerprint =
        Fingerprint::new(&format!("/v1/submissions/{id}/replay"), &carrier, &query);
    fingerprint.body(&Sha256::digest(body.as_bytes()));
    let scope = format!(
        "caller={} carrier={carrier} route=POST /v1/submissions/{{id}}/replay",
        caller.subject
    );
    let work = {
        let state = state.clone();
        async move {
            replay(state, id, carrier, params, body)
                .await
                .into_response()
        }
    };
    idempotency::once(&state, scope, key, fingerprint.finish(), work).await
}

/// Receives submission `id`'s document again with the mapping the request names.
async fn replay(
    state: AppState,
    id: i64,
    carrier: CarrierId,
    params: Params,
    body: String,
) -> Result<Response, Problem> {
    let mapping = if !body.trim().is_empty() {
        Some(MappingSpec::parse("body", &body).map_err(|e| Problem::unprocessable(e.to_string()))?)
    } else if let Some(name) = params.text("mapping") {
        let stored = state
            .store
            .find_mapping(&carrier, &name)
            .await?
            .ok_or_else(|| {
                Problem::unprocessable(format!("carrier '{carrier}' has no mapping named '{name}'"))
            })?;
        Some(
            MappingSpec::parse(&name, &stored.text)
                .map_err(|e| Problem::unprocessable(e.to_string()))?,
        )
    } else {
        None
    };
    let receipt = state.pipeline.replay(id, mapping).await?;
    Ok(accepted(&state, &receipt))
}
