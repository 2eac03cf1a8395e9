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
    winchester_storage::storage_conformance_tests!(crate::support::TestDb::on(crate::support::Backend::Postgres));
}

mod sqlite {
    winchester_storage::storage_conformance_tests!(crate::support::TestDb::on(crate::support::Backend::Sqlite));
}
