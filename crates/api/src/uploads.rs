//! `POST /v1/carriers/{carrier}/submissions`: a carrier's payload, streamed to disk, checked
//! against its mapping, and queued for the worker.

use crate::params::Params;
use crate::problem::Problem;
use crate::routes::submission_body;
use crate::AppState;
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use carrierhub_mapping::MappingSpec;
use carrierhub_model::CarrierId;
use carrierhub_pipeline::Delivery;
use futures_util::TryStreamExt;
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

async fn write_stream<S, E>(path: &std::path::Path, mut stream: S) -> Result<u64, Problem>
where
    S: futures_util::Stream<Item = Result<axum::body::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| Problem::internal(&e))?;
    let mut size = 0u64;
    while let Some(chunk) = stream.try_next().await.map_err(bad_upload)? {
        size += chunk.len() as u64;
        file.write_all(&chunk)
            .await
            .map_err(|e| Problem::internal(&e))?;
    }
    file.flush().await.map_err(|e| Problem::internal(&e))?;
    Ok(size)
}

pub async fn create_submission(
    State(state): State<AppState>,
    Path(carrier): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    request: Request<Body>,
) -> Result<Response, Problem> {
    let carrier = CarrierId::parse(&carrier).map_err(|e| Problem::bad_request(e.to_string()))?;
    let params = Params::new(q, &["mapping", "file_name"])?;
    let spool = spool_path(&state).await?;
    let is_multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));

    let mut mapping_name = params.text("mapping");
    let mut mapping_text: Option<String> = None;
    let mut file_name = params.text("file_name");
    let mut got_file = false;
    if is_multipart {
        let mut multipart = Multipart::from_request(request, &state)
            .await
            .map_err(|e| bad_upload(e.body_text()))?;
        while let Some(field) = multipart.next_field().await.map_err(bad_upload)? {
            match field.name().unwrap_or_default() {
                "file" => {
                    if file_name.is_none() {
                        file_name = field.file_name().map(str::to_owned);
                    }
                    write_stream(&spool.0, field).await?;
                    got_file = true;
                }
                "mapping" => mapping_name = Some(field.text().await.map_err(bad_upload)?),
                "mapping_file" => mapping_text = Some(field.text().await.map_err(bad_upload)?),
                other => {
                    return Err(Problem::bad_request(format!(
                    "unknown form field '{other}'; expected 'file' and 'mapping' or 'mapping_file'"
                )))
                }
            }
        }
    } else {
        write_stream(&spool.0, request.into_body().into_data_stream()).await?;
        got_file = true;
    }
    if !got_file {
        return Err(Problem::bad_request("the form has no 'file' field"));
    }

    let mapping = match (mapping_text, mapping_name) {
        (Some(text), _) => MappingSpec::parse("mapping_file", &text)
            .map_err(|e| Problem::unprocessable(e.to_string()))?,
        (None, Some(name)) => {
            let stored = state.store.find_mapping(&carrier, &name).await?.ok_or_else(|| {
                Problem::unprocessable(format!(
                    "carrier '{carrier}' has no mapping named '{name}'; send the mapping file as 'mapping_file'"
                ))
            })?;
            MappingSpec::parse(&name, &stored.text).map_err(|e| Problem::unprocessable(e.to_string()))?
        }
        (None, None) => {
            return Err(Problem::bad_request(
                "name the mapping: a 'mapping' form field or query parameter, or a 'mapping_file' form field",
            ))
        }
    };

    let receipt = state
        .pipeline
        .receive(Delivery {
            carrier,
            mapping,
            file_name: file_name.unwrap_or_else(|| "upload".to_owned()),
            path: spool.0.clone(),
            spooled: true,
            received_via: "api".to_owned(),
        })
        .await?;
    if let Some(worker) = &state.worker {
        worker.notify();
    }
    let mut body = submission_body(&receipt.submission);
    body["unmapped_columns"] = serde_json::json!(receipt.unmapped_columns);
    let location = format!("/v1/submissions/{}", receipt.submission.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response())
}
