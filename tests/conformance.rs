//! The storage conformance suite (`winchester_storage::conformance`), run
//! against both backends: one test per check and backend
//! (`conformance::postgres::<check>`, `conformance::sqlite::<check>`), each
//! on a fresh database.

use crate::support::TestDb;
use std::sync::Arc;
use winchester_storage::conformance::{async_trait, Harness};
use winchester_storage::Storage;

#[async_trait]
impl Harness for TestDb {
    fn storage(&self) -> Arc<dyn Storage> {
        self.storage.clone()
    }

    async fn refuse_stream_inserts_containing(&self, needle: &str) {
        self.fail_stream_inserts_containing(needle).await
    }

    async fn cleanup(self: Box<Self>) {
        self.drop_db().await
    }
}

mod postgres {
    winchester_storage::storage_conformance_tests!(crate::support::TestDb::on(crate::support::Backend::Postgres), ignore {
        one_claim_twice_in_a_batch_finishes_once = "PostgreSQL's finish_many holds a compare-and-set per stream id, \
            not per run: both runs of one claim are reported Done",
        claims_come_oldest_due_first = "PostgreSQL's claim_ready picks the oldest due but answers them in the \
            order UPDATE ... RETURNING yields (row order), not due order",
    });
}

mod sqlite {
    winchester_storage::storage_conformance_tests!(crate::support::TestDb::on(crate::support::Backend::Sqlite), ignore {
        duplicates_amid_new_events_keep_their_places = "SQLite's ingest takes the ids of a statement's new events \
            to be consecutive, but a duplicate skipped by ON CONFLICT DO NOTHING uses up an AUTOINCREMENT id: \
            Corrupt(\"1 new events written, 2 expected\")",
        long_batch_outcomes_in_order = "the same SQLite ingest bug as duplicates_amid_new_events_keep_their_places",
    });
}
