//! The original Winchester's example configs (../shared/winchester-etc, beside
//! the checkout in CI) load unchanged. Each test says plainly when it skips.

use crate::support::*;
use std::process::Command;

fn shared_or_skip(test: &str) -> Option<std::path::PathBuf> {
    let p = shared_etc();
    if p.is_none() {
        println!("skipped {test}: ../shared/winchester-etc not found beside the checkout");
    }
    p
}

/// The original winchester.yaml (MySQL URL, missing config_path) still checks:
/// its files are found beside it and its triggers and pipelines validate.
#[test]
fn original_configs_check() {
    let Some(etc) = shared_or_skip("original_configs_check") else { return };
    let (code, out, err) = run(Command::new(bin("winchester"))
        .arg("-c")
        .arg(etc.join("winchester.yaml"))
        .arg("check")
        .env_remove("DATABASE_URL"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("test_trigger") && out.contains("test_pipeline: logger") && out.contains("event definitions"),
        "{out}"
    );
    assert!(out.contains("map_distingushed_by"), "the misspelling is warned about: {out}");
}

/// Broken copies of the original triggers.yaml fail, naming trigger and key.
#[test]
fn broken_copies_of_original_fail() {
    let Some(etc) = shared_or_skip("broken_copies_of_original_fail") else { return };
    let original = std::fs::read_to_string(etc.join("triggers.yaml")).unwrap();
    let pipelines = std::fs::read_to_string(etc.join("pipelines.yaml")).unwrap();
    let cases = [
        ("- compute.instance.*", "- compute.instance.[*", "key \"match_criteria[0].event_type\""),
        (
            "fire_criteria:\n  - event_type: compute.instance.exists",
            "fire_criteria:\n  - event_type: compute.instance.exists\n    numbr: 2",
            "key \"fire_criteria[0].numbr\": unknown key",
        ),
        ("expiration: \"$last + 1h\"", "expiration: \"$last + one hour\"", "key \"expiration\""),
    ];
    for (from, to, needle) in cases {
        assert!(original.contains(from), "sample changed: {from:?}");
        let dir = ConfigDir::new(&[
            ("winchester.yaml", "trigger_definitions: triggers.yaml\npipeline_config: pipelines.yaml\npipeline_handlers: {logger: \"winchester.pipeline_handler:LoggingHandler\"}\n"),
            ("triggers.yaml", &original.replacen(from, to, 1)),
            ("pipelines.yaml", &pipelines),
        ]);
        let (code, out, err) = run(Command::new(bin("winchester")).arg("-c").arg(dir.config()).arg("check"));
        assert_eq!(code, 1, "{to}: {out}{err}");
        assert!(err.contains("trigger \"test_trigger\"") && err.contains(needle), "{needle}: {err}");
    }
}

/// The original triggers drive streams as the spec predicts: an instance's day
/// fires on its exists event, which joins the day of its audit period.
#[tokio::test]
async fn original_trigger_behaviour() {
    let Some(etc) = shared_or_skip("original_trigger_behaviour") else { return };
    let yaml = std::fs::read_to_string(etc.join("triggers.yaml")).unwrap();
    let db = TestDb::new().await;
    let (tm, clock) = manager(&db, &yaml, t(2014, 8, 1, 23, 30, 0));
    let i = ("instance_id", s("i-1"));
    tm.add_event(event("1", "compute.instance.create.start", t(2014, 8, 1, 23, 0, 0), &[i.clone()])).await.unwrap();
    tm.add_event(event("2", "compute.instance.create.end", t(2014, 8, 1, 23, 1, 0), &[i.clone()])).await.unwrap();
    clock.set(t(2014, 8, 2, 0, 0, 30));
    tm.add_event(event(
        "3",
        "compute.instance.exists",
        t(2014, 8, 2, 0, 0, 20),
        &[i.clone(), ("audit_period_beginning", winchester_core::TraitValue::Datetime(t(2014, 8, 1, 0, 0, 0)))],
    ))
    .await
    .unwrap();
    let streams = tm.storage().list_streams(&Default::default()).await.unwrap();
    assert_eq!(streams.len(), 1, "{streams:?}");
    assert_eq!(streams[0].event_count, 3);
    assert!(streams[0].fire_timestamp.is_some());
    db.drop_db().await;
}
