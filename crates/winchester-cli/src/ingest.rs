//! `winchester ingest`: JSON lines of events into the engine.

use anyhow::Context;
use std::io::BufRead;
use winchester::{EventOutcome, TriggerManager};
use winchester_core::Event;

/// Counts from an ingest run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IngestReport {
    /// Events saved.
    pub ingested: u64,
    /// Events whose message_id was already stored.
    pub duplicates: u64,
    /// `(line number, reason)` of each rejected line.
    pub rejected: Vec<(u64, String)>,
}

impl IngestReport {
    /// The printed summary.
    pub fn render(&self) -> String {
        let mut s = format!("ingested: {}\nduplicates: {}\nrejected: {}\n", self.ingested, self.duplicates, self.rejected.len());
        for (line, reason) in &self.rejected {
            s.push_str(&format!("  line {line}: {reason}\n"));
        }
        s
    }
}

/// Reads JSON lines from `input` and adds them in batches of `batch_size`.
pub async fn run(tm: &TriggerManager, input: impl BufRead, batch_size: usize) -> anyhow::Result<IngestReport> {
    let mut report = IngestReport::default();
    let mut batch: Vec<Event> = Vec::with_capacity(batch_size);
    let mut lines: Vec<u64> = Vec::with_capacity(batch_size);
    for (i, line) in input.lines().enumerate() {
        let n = i as u64 + 1;
        let line = line.with_context(|| format!("reading line {n}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<serde_json::Value>(&line)
            .map_err(|e| format!("invalid JSON: {e}"))
            .and_then(|v| Event::from_json(&v).map_err(|e| e.to_string()));
        match parsed {
            Ok(e) => {
                batch.push(e);
                lines.push(n);
            }
            Err(reason) => report.rejected.push((n, reason)),
        }
        if batch.len() >= batch_size {
            flush(tm, &mut batch, &mut lines, &mut report).await?;
        }
    }
    flush(tm, &mut batch, &mut lines, &mut report).await?;
    report.rejected.sort();
    Ok(report)
}

async fn flush(tm: &TriggerManager, batch: &mut Vec<Event>, lines: &mut Vec<u64>, report: &mut IngestReport) -> anyhow::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let first = lines[0];
    let outcomes = tm
        .add_events(std::mem::take(batch))
        .await
        .with_context(|| format!("saving the batch starting at line {first}"))?;
    for (o, n) in outcomes.into_iter().zip(lines.drain(..)) {
        match o {
            EventOutcome::Saved { .. } => report.ingested += 1,
            EventOutcome::Duplicate => report.duplicates += 1,
            EventOutcome::Rejected(e) => report.rejected.push((n, e.to_string())),
            EventOutcome::Failed(reason) => report.rejected.push((n, reason)),
            EventOutcome::Undistilled { event_type } => report.rejected.push((n, format!("no event definition covers {event_type:?}"))),
            EventOutcome::DistillFailed(e) => report.rejected.push((n, e.to_string())),
        }
    }
    Ok(())
}
