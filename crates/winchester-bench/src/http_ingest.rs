//! Ingest over HTTP (issue 27): [`CLIENTS`] concurrent clients posting the
//! workload to `POST /v1/events` of a real `winchester serve` (a child
//! process, as in [`crate::query`]), in batches of [`BATCH`] or one event
//! per request. Every request's body is made before the clock starts; each
//! client sends its next request once the last one is answered. Every answer
//! must be 200 with each event ingested, or the stage fails: a bench that
//! measured refusals would be wrong.

use anyhow::{anyhow, bail, Context};
use std::path::Path;
use std::time::Instant;
use winchester_core::Event;

use crate::target::{with_scratch, Target};

/// Concurrent HTTP clients (the figure).
pub const CLIENTS: usize = 64;
/// Events per request of the batched run.
pub const BATCH: usize = 100;

/// Posts `events` from [`CLIENTS`] clients, `per_request` events a request
/// (request `k` goes to client `k % CLIENTS`), to a fresh server on a
/// scratch database of `target`. Returns events/s (first request sent to
/// last answer received).
pub async fn measure(
    target: &Target,
    exe_dir: &Path,
    config: &Path,
    events: &[Event],
    per_request: usize,
) -> anyhow::Result<f64> {
    let per_request = per_request.max(1);
    let mut bodies: Vec<Vec<(Vec<u8>, usize)>> = vec![Vec::new(); CLIENTS];
    for (k, chunk) in events.chunks(per_request).enumerate() {
        let body = serde_json::to_vec(&chunk.iter().map(Event::to_json).collect::<Vec<_>>())?;
        bodies[k % CLIENTS].push((body, chunk.len()));
    }
    let n = events.len();
    with_scratch(target, |db| async move {
        let server = crate::query::serve(&db.url, exe_dir, config).await?;
        let url = format!("{}/v1/events", server.base);
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(CLIENTS);
        for mine in bodies {
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                let client = crate::query::http_client()?;
                for (body, len) in mine {
                    let r = client
                        .post(&url)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body)
                        .send()
                        .await
                        .context("POST /v1/events")?;
                    let status = r.status();
                    let text = r.text().await.context("POST /v1/events: reading the answer")?;
                    if status != reqwest::StatusCode::OK {
                        bail!("POST /v1/events answered {status}: {}", text.chars().take(300).collect::<String>());
                    }
                    let v: serde_json::Value = serde_json::from_str(&text).context("POST /v1/events: the answer")?;
                    if v["ingested"].as_u64() != Some(len as u64) {
                        bail!("POST /v1/events saved {} of {len} events: {}", v["ingested"], v["results"]);
                    }
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await.map_err(|e| anyhow!("an HTTP client panicked: {e}"))??;
        }
        let took = start.elapsed();
        drop(server);
        Ok(n as f64 / took.as_secs_f64())
    })
    .await
}
