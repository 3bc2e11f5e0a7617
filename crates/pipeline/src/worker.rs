//! The in-process worker: processes received submissions in the background, and resumes
//! those a previous process left unfinished. The submissions table is its durable queue.

use crate::{NoProgress, Pipeline, PipelineError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Clone)]
pub struct Worker {
    pipeline: Pipeline,
    wake: Arc<Notify>,
    owner: String,
}

impl Worker {
    pub fn new(pipeline: Pipeline) -> Self {
        Self {
            pipeline,
            wake: Arc::new(Notify::new()),
            owner: format!(
                "worker-{}-{}",
                std::process::id(),
                chrono::Utc::now().timestamp_micros()
            ),
        }
    }

    /// Tells the worker a submission is waiting.
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Processes everything unfinished, then waits for more; never returns.
    pub async fn run(self) {
        loop {
            match self.pipeline.store().unfinished_submissions().await {
                Ok(submissions) => {
                    for s in submissions {
                        match self
                            .pipeline
                            .process(s.id, &self.owner, Arc::new(NoProgress))
                            .await
                        {
                            Ok(_) | Err(PipelineError::Busy(_)) => {}
                            Err(e) => {
                                tracing::error!(submission_id = s.id, error = %e, "processing failed; will retry")
                            }
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot list unfinished submissions"),
            }
            // Woken by a new submission, or polls for ones whose worker's lease expired.
            let _ = tokio::time::timeout(Duration::from_secs(5), self.wake.notified()).await;
        }
    }
}
