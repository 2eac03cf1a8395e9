//! `winchester ingest`: JSON lines of events, or of raw notifications
//! (`--notifications`), into the engine; optionally with "now" following the
//! events' own timestamps (`--event-time`, replay).

use crate::common::ConfigArgs;
use anyhow::Context;
use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::VecDeque;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use winchester::storage::RetryPolicy;
use winchester::{EventOutcome, Replay, TriggerManager};
use winchester_core::{Event, ManualClock};

/// How long [`run_pipe`] waits for more lines before saving a partial batch.
pub const DEFAULT_FLUSH_AFTER: Duration = Duration::from_millis(200);

/// `winchester ingest` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct IngestArgs {
    /// Input file, or - for standard input.
    pub file: String,
    /// Events per transaction.
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
    /// Lines are raw notifications (oslo envelopes included), distilled
    /// through distiller_config.
    #[arg(long)]
    pub notifications: bool,
    /// Replay: "now" follows the events' timestamps instead of the wall clock.
    #[arg(long)]
    pub event_time: bool,
    /// Standard input or another pipe: save what was read once no line
    /// has arrived for this many milliseconds, without waiting for a full batch.
    #[arg(long, value_name = "MS", default_value_t = 200)]
    pub flush_after_ms: u64,
}

/// `winchester ingest`: prints the report (and the counters of triggers with
/// a `debug_level`); exit 2 if a line was rejected.
pub async fn command(config: &ConfigArgs, args: &IngestArgs) -> anyhow::Result<ExitCode> {
    let cfg = crate::common::load_ingest_config(config)?;
    let mut tm = crate::common::trigger_manager(&cfg, config, 2, crate::common::Run::OneShot).await?.with_source("cli");
    crate::common::record_versions(&tm, &cfg).await?;
    if args.notifications && cfg.distiller_file.is_none() {
        anyhow::bail!(
            "{}: --notifications needs distiller_config (an event_definitions.yaml)",
            config.config.display()
        );
    }
    let mut opts = IngestOptions::new(args.batch_size);
    opts.notifications = args.notifications;
    if args.event_time {
        let clock = Arc::new(ManualClock::new(replay_epoch()));
        tm = tm.with_clock(clock.clone());
        opts.event_time = Some(clock);
    }
    opts.flush_after = Duration::from_millis(args.flush_after_ms);
    let report = ingest_file(&tm, &args.file, opts).await?;
    print!("{}", report.render());
    // Triggers with a debug_level asked for their counters.
    for line in tm.debug().dump() {
        eprintln!("{line}");
    }
    Ok(if report.rejected.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

/// Ingests `file` (`-`: standard input) with a progress bar: a regular file
/// in place, standard input, a named pipe or a device as input that may pause.
async fn ingest_file(tm: &TriggerManager, file: &str, mut opts: IngestOptions) -> anyhow::Result<IngestReport> {
    if file == "-" {
        opts.progress = progress_bar(None);
        return run_pipe(tm, std::io::BufReader::new(std::io::stdin()), &opts).await;
    }
    let path = PathBuf::from(file);
    let f = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let regular = f.metadata().ok().filter(|m| m.is_file());
    opts.progress = progress_bar(regular.as_ref().map(|m| m.len()));
    if regular.is_some() {
        run_with(tm, std::io::BufReader::new(f), &opts).await
    } else {
        // A named pipe or a device: it may pause like stdin.
        run_pipe(tm, std::io::BufReader::new(f), &opts).await
    }
}

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
    /// Pipes ([`run_pipe`]): what was read is saved once no new line has
    /// arrived for this long, instead of waiting for a full batch.
    pub flush_after: Duration,
}

impl IngestOptions {
    /// Flat events in batches of `batch_size`, wall-clock time, no progress bar.
    pub fn new(batch_size: usize) -> IngestOptions {
        IngestOptions {
            batch_size: batch_size.max(1),
            notifications: false,
            event_time: None,
            progress: None,
            flush_after: DEFAULT_FLUSH_AFTER,
        }
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
pub async fn run_with(tm: &TriggerManager, input: impl BufRead, opts: &IngestOptions) -> anyhow::Result<IngestReport> {
    run_lines(tm, Lines::Read(input), opts).await
}

/// Like [`run_with`], for input that may pause (a pipe, `tail -F log |`):
/// lines are read on a thread of their own, and a partial batch is saved as
/// soon as no line has arrived for `opts.flush_after`.
pub async fn run_pipe(
    tm: &TriggerManager,
    mut input: impl BufRead + Send + 'static,
    opts: &IngestOptions,
) -> anyhow::Result<IngestReport> {
    let (tx, rx) = tokio::sync::mpsc::channel(opts.batch_size.clamp(1, 4096));
    // Not joined: it may sit in a read that never returns; it ends when the
    // input does or when nobody receives any more.
    std::thread::spawn(move || loop {
        let mut line = Vec::new();
        let next = match input.read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => Ok(line),
            Err(e) => Err(e),
        };
        let failed = next.is_err();
        if tx.blocking_send(next).is_err() || failed {
            return;
        }
    });
    run_lines(tm, Lines::<std::io::Empty>::Pipe { rx, wait: opts.flush_after }, opts).await
}

/// Where lines come from: a reader read in place, or a reader thread's channel.
enum Lines<R> {
    Read(R),
    Pipe { rx: tokio::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>, wait: Duration },
}

enum Next {
    /// A line of this many bytes is in the buffer.
    Line(usize),
    /// No line for a while and events are waiting: save them.
    Idle,
    Eof,
}

impl<R: BufRead> Lines<R> {
    async fn next(&mut self, buf: &mut Vec<u8>, pending: bool) -> std::io::Result<Next> {
        match self {
            Lines::Read(r) => Ok(match r.read_until(b'\n', buf)? {
                0 => Next::Eof,
                n => Next::Line(n),
            }),
            Lines::Pipe { rx, wait } => {
                let got = if pending {
                    match tokio::time::timeout(*wait, rx.recv()).await {
                        Ok(got) => got,
                        Err(_) => return Ok(Next::Idle),
                    }
                } else {
                    rx.recv().await
                };
                match got {
                    Some(line) => {
                        *buf = line?;
                        Ok(Next::Line(buf.len()))
                    }
                    None => Ok(Next::Eof),
                }
            }
        }
    }
}

async fn run_lines<R: BufRead>(
    tm: &TriggerManager,
    mut input: Lines<R>,
    opts: &IngestOptions,
) -> anyhow::Result<IngestReport> {
    let batch_size = opts.batch_size.max(1);
    let mut report = IngestReport::default();
    let mut batch = Batch {
        events: Vec::with_capacity(batch_size),
        lines: VecDeque::with_capacity(batch_size),
        replay: opts.event_time.clone().map(|clock| Replay::new(tm.clone(), clock, batch_size)),
        retry: RetryPolicy::new(),
    };
    let mut buf = Vec::new();
    let mut n: u64 = 0;
    loop {
        buf.clear();
        let pending = !batch.events.is_empty();
        let read = match input.next(&mut buf, pending).await.with_context(|| format!("reading line {}", n + 1))? {
            Next::Line(read) => read,
            Next::Idle => {
                batch.flush(tm, &mut report).await?;
                continue;
            }
            Next::Eof => break,
        };
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
            let event_type = v.get("event_type").and_then(|t| t.as_str()).unwrap_or("?").to_string();
            Err(EventOutcome::Undistilled { event_type }.rejection().unwrap_or_default())
        }
        Err(e) => Err(e.to_string()),
    }
}

struct Batch {
    events: Vec<Event>,
    /// Line numbers of the events not yet reported, in order.
    lines: VecDeque<u64>,
    replay: Option<Replay>,
    /// Backoff and outage logging across batches (one warning per outage).
    retry: RetryPolicy,
}

impl Batch {
    async fn flush(&mut self, tm: &TriggerManager, report: &mut IngestReport) -> anyhow::Result<()> {
        let Some(&first) = self.lines.front() else {
            return Ok(());
        };
        let what = format!("saving the batch starting at line {first}");
        let outcomes = match &mut self.replay {
            Some(replay) => replay.finish().await,
            None => {
                // Through a database outage (a restart, a failover) the batch
                // waits and is tried again; a try whose commit went through
                // but whose answer was lost comes back as duplicates.
                let events = std::mem::take(&mut self.events);
                self.retry.retry(&what, || tm.add_events(events.clone())).await
            }
        }
        .context(what)?;
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
                other => report.rejected.push((n, other.rejection().unwrap_or_default())),
            }
        }
    }
}

/// The earliest representable time: where a replay clock starts before the
/// first event moves it.
pub fn replay_epoch() -> DateTime<Utc> {
    DateTime::<Utc>::MIN_UTC
}
