//! The storage conformance suite (`winchester_storage::conformance`), run
//! against both backends, each check on a fresh database.

use crate::support::*;
use winchester_storage::conformance;

async fn claim_ready_takes_each_stream_once(backend: Backend) {
    let db = TestDb::on(backend).await;
    conformance::claim_ready_takes_each_stream_once(db.storage.clone()).await;
    db.drop_db().await;
}

async fn claim_ready_among_respects_trigger_scope(backend: Backend) {
    let db = TestDb::on(backend).await;
    conformance::claim_ready_among_respects_trigger_scope(db.storage.clone()).await;
    db.drop_db().await;
}

async fn fire_wins_over_expire(backend: Backend) {
    let db = TestDb::on(backend).await;
    conformance::fire_wins_over_expire(db.storage.clone()).await;
    db.drop_db().await;
}

async fn renew_and_finish_many(backend: Backend) {
    let db = TestDb::on(backend).await;
    conformance::renew_and_finish_many(db.storage.clone()).await;
    db.drop_db().await;
}

async fn load_events_of_several_streams(backend: Backend) {
    let db = TestDb::on(backend).await;
    conformance::load_events_of_several_streams(db.storage.clone()).await;
    db.drop_db().await;
}

async fn streams_keep_their_definition_version(backend: Backend) {
    let db = TestDb::on(backend).await;
    conformance::streams_keep_their_definition_version(db.storage.clone()).await;
    db.drop_db().await;
}

crate::backend_tests!(
    streams_keep_their_definition_version,
    claim_ready_takes_each_stream_once,
    claim_ready_among_respects_trigger_scope,
    fire_wins_over_expire,
    renew_and_finish_many,
    load_events_of_several_streams
);
