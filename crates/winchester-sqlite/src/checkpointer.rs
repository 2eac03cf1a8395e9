//! Background checkpoints: each process that opens a database file copies
//! the WAL back into it every [`CHECKPOINT_INTERVAL`] on a connection of its
//! own, so that a writer's `COMMIT` seldom has to (SQLite's automatic
//! checkpoint runs inside the commit that crosses its threshold, and took
//! about a tenth of a batched ingest's time).
//!
//! The checkpoints are `PASSIVE`: they copy what no reader still needs and
//! never wait for or block readers and writers. When two processes try at
//! once, one of them finds the checkpoint lock taken and skips its turn. The
//! writers' automatic checkpoint ([`TUNING`](crate::TUNING)) stays as the
//! fallback for a WAL that grows faster than this copies it back.
//!
//! Why every half second and not more often: each checkpoint copies every
//! page written since the one before, and a batch rewrites the same index
//! pages as the batch before it, so copying less often copies each page fewer
//! times. The copy also competes with the writer for the machine's cores
//! while it runs. Checkpointing every 100 ms made a burst of 20 batches a
//! fifth slower than every 500 ms; under sustained ingest (100 batches, the
//! WAL crossing its bound) both intervals measured the same
//! (docs/performance.md).

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, Row};
use std::sync::Weak;
use std::time::Duration;

/// How often a process checkpoints the WAL.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);

/// Starts the checkpoints of the database `opts` opens; they stop when
/// `alive` can no longer be upgraded (every handle on the storage dropped).
pub(crate) fn spawn(opts: SqliteConnectOptions, alive: Weak<()>) {
    tokio::spawn(async move {
        let mut conn = match opts.connect().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "Could not open a connection for background checkpoints; commits will checkpoint the WAL themselves.");
                return;
            }
        };
        let mut tick = tokio::time::interval(CHECKPOINT_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tick.tick().await;
            if alive.strong_count() == 0 {
                break;
            }
            match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&mut conn).await {
                Ok(row) => {
                    failing = false;
                    tracing::trace!(
                        wal_frames = row.try_get::<i64, _>(1).unwrap_or(-1),
                        checkpointed = row.try_get::<i64, _>(2).unwrap_or(-1),
                        "Checkpoint."
                    );
                }
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "Background checkpoint failed; retrying every {CHECKPOINT_INTERVAL:?}.");
                }
                Err(_) => {}
            }
        }
        let _ = conn.close().await;
    });
}
