//! `winchester ingest`: JSON lines of events, or of raw notifications
//! (`--notifications`), into the engine; optionally with "now" following the
//! events' own timestamps (`--event-time`, replay).

use anyhow::Context;
use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::VecDeque;
use std::io::BufRead;
use std::sync::Arc;
use std::time::Duration;
use winchester::{EventOutcome, Replay, TriggerManager};
use winchester_core::{Event, ManualClock};

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
        let mut s = format!(
            "ingested: {}\nduplicates: {}\nrejected: {}\n",
            self.ingested,
            self.duplicates,
            self.rejected.len()
        );
        for (line, reason) in &self.rejected {
            s.push_str(&format!("  line {line}: {reason}\n"));
        }
        s
    }
}

/// What the lines are and how they are saved.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Most events per transaction.
    pub batch_size: usize,
    /// Lines are raw OpenStack notifications (distilled through
    /// `distiller_config`), not flat events.
    pub notifications: bool,
    /// Replay: the trigger manager's clock, moved to each event's timestamp
    /// (never backward). Events are still saved in batches, each judged at its
    /// own time (see [`winchester::replay`]).
    pub event_time: Option<Arc<ManualClock>>,
    /// Progress shown while reading (see [`progress_bar`]).
    pub progress: Option<ProgressBar>,
}

impl IngestOptions {
    /// Flat events in batches of `batch_size`, wall-clock time, no progress bar.
    pub fn new(batch_size: usize) -> IngestOptions {
        IngestOptions { batch_size: batch_size.max(1), notifications: false, event_time: None, progress: None }
    }
}

/// A progress bar on stderr, only when stderr is a terminal: a bar over
/// `file_len` bytes for a file, a spinner with a line count for stdin.
pub fn progress_bar(file_len: Option<u64>) -> Option<ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = match file_len {
        Some(len) => {
            let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
            if let Ok(style) =
                ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {bytes}/{total_bytes} ({eta}) {msg}")
            {
                pb.set_style(style.progress_chars("=> "));
            }
            pb
        }
        None => {
            let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}") {
                pb.set_style(style);
            }
            pb
        }
    };
    pb.enable_steady_tick(Duration::from_millis(200));
    Some(pb)
}

/// Reads JSON lines of events from `input` and adds them in batches of `batch_size`.
pub async fn run(tm: &TriggerManager, input: impl BufRead, batch_size: usize) -> anyhow::Result<IngestReport> {
    run_with(tm, input, &IngestOptions::new(batch_size)).await
}

/// Reads JSON lines from `input` as `opts` says and saves them.
pub async fn run_with(
    tm: &TriggerManager,
    mut input: impl BufRead,
    opts: &IngestOptions,
) -> anyhow::Result<IngestReport> {
    let batch_size = opts.batch_size.max(1);
    let mut report = IngestReport::default();
    let mut batch = Batch {
        events: Vec::with_capacity(batch_size),
        lines: VecDeque::with_capacity(batch_size),
        replay: opts.event_time.clone().map(|clock| Replay::new(tm.clone(), clock, batch_size)),
    };
    let mut buf = Vec::new();
    let mut n: u64 = 0;
    loop {
        buf.clear();
        let read = input.read_until(b'\n', &mut buf).with_context(|| format!("reading line {}", n + 1))?;
        if read == 0 {
            break;
        }
        n += 1;
        if let Some(pb) = &opts.progress {
            pb.inc(read as u64);
            if n.is_multiple_of(1000) {
                pb.set_message(format!("{n} lines, {} ingested", report.ingested));
            }
        }
        let line = match std::str::from_utf8(&buf) {
            Ok(l) => l.trim(),
            Err(e) => {
                report.rejected.push((n, format!("not UTF-8: {e}")));
                continue;
            }
        };
        if line.is_empty() {
            continue;
        }
        let event = match parse_line(tm, line, opts.notifications) {
            Ok(e) => e,
            Err(reason) => {
                report.rejected.push((n, reason));
                continue;
            }
        };
        batch.lines.push_back(n);
        if let Some(replay) = &mut batch.replay {
            let first = batch.lines[0];
            let outcomes =
                replay.push(event).await.with_context(|| format!("saving the batch starting at line {first}"))?;
            batch.report(outcomes, &mut report);
            continue;
        }
        batch.events.push(event);
        if batch.events.len() >= batch_size {
            batch.flush(tm, &mut report).await?;
        }
    }
    batch.flush(tm, &mut report).await?;
    if let Some(pb) = &opts.progress {
        pb.finish_and_clear();
    }
    report.rejected.sort();
    Ok(report)
}

/// One line to an event, or why not.
fn parse_line(tm: &TriggerManager, line: &str, notification: bool) -> Result<Event, String> {
    let v = serde_json::from_str::<serde_json::Value>(line).map_err(|e| format!("invalid JSON: {e}"))?;
    if !notification {
        return Event::from_json(&v).map_err(|e| e.to_string());
    }
    match tm.distill(&v) {
        Ok(Some(e)) => Ok(e),
        Ok(None) => {
            let event_type = v.get("event_type").and_then(|t| t.as_str()).unwrap_or("?");
            Err(format!("no event definition covers event_type {event_type:?}"))
        }
        Err(e) => Err(e.to_string()),
    }
}

struct Batch {
    events: Vec<Event>,
    /// Line numbers of the events not yet reported, in order.
    lines: VecDeque<u64>,
    replay: Option<Replay>,
}

impl Batch {
    async fn flush(&mut self, tm: &TriggerManager, report: &mut IngestReport) -> anyhow::Result<()> {
        let Some(&first) = self.lines.front() else {
            return Ok(());
        };
        let outcomes = match &mut self.replay {
            Some(replay) => replay.finish().await,
            None => tm.add_events(std::mem::take(&mut self.events)).await,
        }
        .with_context(|| format!("saving the batch starting at line {first}"))?;
        self.report(outcomes, report);
        Ok(())
    }

    /// Counts the outcomes of the oldest lines not yet reported.
    fn report(&mut self, outcomes: Vec<EventOutcome>, report: &mut IngestReport) {
        for o in outcomes {
            let Some(n) = self.lines.pop_front() else { break };
            match o {
                EventOutcome::Saved { .. } => report.ingested += 1,
                EventOutcome::Duplicate => report.duplicates += 1,
                EventOutcome::Rejected(e) => report.rejected.push((n, e.to_string())),
                EventOutcome::Failed(reason) => report.rejected.push((n, reason)),
                EventOutcome::Undistilled { event_type } => {
                    report.rejected.push((n, format!("no event definition covers event_type {event_type:?}")))
                }
                EventOutcome::DistillFailed(e) => report.rejected.push((n, e.to_string())),
            }
        }
    }
}

/// The earliest representable time: where a replay clock starts before the
/// first event moves it.
pub fn replay_epoch() -> DateTime<Utc> {
    DateTime::<Utc>::MIN_UTC
}
