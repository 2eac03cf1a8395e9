//! How every connection to PostgreSQL is made: [`PgOptions`], the URL's
//! connection options together with the pooler in front of the server.
//!
//! A program builds one `PgOptions` from its configuration and makes every
//! connection from it (the storage pool, the schema check, migrations, the
//! readiness probe, bench and soak), so no path can forget the pooler.
//!
//! Behind a transaction pooler ([`Pooler::Transaction`]) each transaction may
//! run on another server connection, and a server connection passes from one
//! client to the next with whatever session state it holds. Then:
//! - statements are unnamed: sqlx names every statement it prepares with
//!   `persistent(true)` (`sqlx_s_1`, `sqlx_s_2`, …, counted per client
//!   connection), even with its statement cache off, and the name is left on the
//!   server connection for the next client to collide with ("prepared statement
//!   \"sqlx_s_1\" already exists"). Code sends every statement with
//!   `.persistent(`[`PgOptions::named_statements`]`())` instead;
//! - the statement cache is off;
//! - there is no LISTEN (a worker or a tail polls);
//! - every statement runs inside a transaction, which keeps the pooler from
//!   handing the server connection to another client between sqlx's Parse and
//!   its Bind (see `Conn`).

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::ConnectOptions;
use std::str::FromStr;
use std::time::Duration;
use winchester_core::config::Pooler;

/// Longest wait for a pooled connection. While the server is down, every
/// call fails with [`winchester_storage::StorageError::Unavailable`] after this long (the
/// pool keeps trying to connect meanwhile): long enough to ride out a busy
/// pool, short enough for the API to answer 503 before its request timeout.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// The options every connection to one PostgreSQL database is built from.
#[derive(Debug, Clone)]
pub struct PgOptions {
    connect: PgConnectOptions,
    pooler: Pooler,
}

impl PgOptions {
    /// The database `url` names, reached through `pooler`.
    pub fn new(url: &str, pooler: Pooler) -> Result<PgOptions, sqlx::Error> {
        let mut connect: PgConnectOptions = url.parse()?;
        if pooler == Pooler::Transaction {
            connect = connect.statement_cache_capacity(0);
        }
        Ok(PgOptions { connect, pooler })
    }

    /// The database `url` names, reached directly (or through a pooler in
    /// session mode).
    pub fn direct(url: &str) -> Result<PgOptions, sqlx::Error> {
        PgOptions::new(url, Pooler::None)
    }

    /// The pooler in front of the server.
    pub fn pooler(&self) -> Pooler {
        self.pooler
    }

    /// Whether statements may be named (prepared once per connection and
    /// reused): not behind a transaction pooler.
    pub fn named_statements(&self) -> bool {
        named_statements(self.pooler)
    }

    /// One connection of its own.
    pub async fn connect(&self) -> Result<PgConnection, sqlx::Error> {
        self.connect.connect().await
    }

    /// A pool of at most `max_connections`, waiting at most [`ACQUIRE_TIMEOUT`]
    /// for a connection.
    pub async fn pool(&self, max_connections: u32) -> Result<PgPool, sqlx::Error> {
        PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(self.connect.clone())
            .await
    }

    /// A pool of at most `max_connections` that connects only when first
    /// used, waiting at most `acquire_timeout` for a connection.
    pub fn lazy_pool(&self, max_connections: u32, acquire_timeout: Duration) -> PgPool {
        PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .connect_lazy_with(self.connect.clone())
    }
}

/// Whether statements may be named through `pooler`: not behind a
/// transaction pooler. The one rule for [`PgOptions`] and the storage.
pub(crate) fn named_statements(pooler: Pooler) -> bool {
    pooler != Pooler::Transaction
}

/// A URL reached directly (see [`PgOptions::direct`]).
impl FromStr for PgOptions {
    type Err = sqlx::Error;

    fn from_str(url: &str) -> Result<PgOptions, sqlx::Error> {
        PgOptions::direct(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_pooler_means_unnamed_statements_and_no_cache() {
        let direct = PgOptions::direct("postgres://u@h/d").unwrap();
        assert!(direct.named_statements());
        assert_eq!(direct.pooler(), Pooler::None);
        let pooled = PgOptions::new("postgres://u@h/d", Pooler::Transaction).unwrap();
        assert!(!pooled.named_statements());
        assert_eq!(pooled.pooler(), Pooler::Transaction);
    }
}
