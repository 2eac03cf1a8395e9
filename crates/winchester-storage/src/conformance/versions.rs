//! Trigger definition versions: recorded once, listed in order, and streams
//! that keep the version they were opened under.

use super::*;
use winchester_core::DefinitionVersion;

fn version(trigger: &str, version: &str, text: &str) -> DefinitionVersion {
    DefinitionVersion { trigger: trigger.into(), version: version.into(), text: text.into() }
}

/// The suite's triggers, every one at `v` (`None`: unversioned).
fn at_version(v: Option<&str>) -> TriggerSet {
    let mut set = triggers();
    set.update(|t| t.version = v.map(str::to_string));
    set
}

/// Versions are recorded once (the first use stays); a stream records the
/// version it was opened under; an event of another version closes the key's
/// open stream and opens one of its own version, whose fire counts start anew.
pub async fn streams_keep_their_definition_version(h: &dyn Harness) {
    let storage = h.storage();
    let (v1_set, v2_set) = (at_version(Some("v1")), at_version(Some("v2")));
    let (v1, v2) = (version("things", "v1", "{\"v\":\"v1\"}"), version("things", "v2", "{\"v\":\"v2\"}"));
    storage.record_versions(std::slice::from_ref(&v1), t0()).await.expect("record v1");
    storage.record_versions(&[v1.clone(), v2.clone()], t0() + Duration::hours(1)).await.expect("record v1 again, v2");
    let all = storage.trigger_versions(None).await.expect("versions");
    let got: Vec<(&str, DateTime<Utc>)> = all.iter().map(|v| (v.definition.version.as_str(), v.first_used)).collect();
    assert_eq!(got, [("v1", t0()), ("v2", t0() + Duration::hours(1))], "first use kept, oldest first");
    assert_eq!(all[0].definition, v1);
    assert_eq!(storage.trigger_version("things", "v2").await.expect("get").map(|v| v.definition), Some(v2));
    assert!(storage.trigger_version("things", "v3").await.expect("get").is_none());
    assert!(storage.trigger_versions(Some("others")).await.expect("none").is_empty());

    let a = ingest(&*storage, &[plan(&v1_set, "a", "thing.start", "k", t0())], t0()).await;
    let b = ingest(&*storage, &[plan(&v1_set, "b", "thing.start", "k", t0())], t0()).await;
    assert_eq!(stream_of(&a[0]), stream_of(&b[0]), "same version: same stream");
    let c = ingest(
        &*storage,
        &[plan(&v2_set, "c", "thing.start", "k", t0()), plan(&v2_set, "d", "thing.done", "k", t0())],
        t0(),
    )
    .await;
    let (old, new) = (stream_of(&a[0]), stream_of(&c[0]));
    assert_ne!(old, new, "another version: a new stream");
    assert_eq!(stream_of(&c[1]), new);
    let old = stream(&*storage, old).await;
    let new = stream(&*storage, new).await;
    assert_eq!((old.version.as_deref(), old.open, old.event_count, old.fire_timestamp), (Some("v1"), false, 2, None));
    assert_eq!((new.version.as_deref(), new.open, new.event_count), (Some("v2"), true, 2));
    assert!(new.fire_timestamp.is_some(), "fire criteria counted under v2 only");
    // The closed v1 stream still expires by its own expiration.
    let due = storage.ready_streams(Action::Expire, old.expire_timestamp, 10).await.expect("ready");
    assert!(due.iter().any(|s| s.id == old.id), "closed older version expires when due");
}

/// Recorded versions list by trigger name, then first use; a version
/// recorded again keeps its first text and first use.
pub async fn versions_listed_by_trigger_then_first_use(h: &dyn Harness) {
    let storage = h.storage();
    storage.record_versions(&[], t0()).await.expect("record nothing");
    assert!(storage.trigger_versions(None).await.expect("versions").is_empty());
    storage.record_versions(&[version("b", "v1", "b one")], t0()).await.expect("record");
    let hour = Duration::hours(1);
    let second = [version("a", "v2", "a two"), version("b", "v2", "b two")];
    storage.record_versions(&second, t0() + hour).await.expect("record");
    let third = [version("a", "v1", "a one"), version("b", "v1", "b one, changed")];
    storage.record_versions(&third, t0() + hour * 2).await.expect("record");
    let rows = |vs: &[crate::TriggerVersion]| {
        vs.iter()
            .map(|v| {
                (v.definition.trigger.clone(), v.definition.version.clone(), v.definition.text.clone(), v.first_used)
            })
            .collect::<Vec<_>>()
    };
    let row = |t: &str, v: &str, text: &str, at| (t.to_string(), v.to_string(), text.to_string(), at);
    let all = storage.trigger_versions(None).await.expect("versions");
    assert_eq!(
        rows(&all),
        [
            row("a", "v2", "a two", t0() + hour),
            row("a", "v1", "a one", t0() + hour * 2),
            row("b", "v1", "b one", t0()),
            row("b", "v2", "b two", t0() + hour),
        ]
    );
    assert_eq!(rows(&storage.trigger_versions(Some("a")).await.expect("versions")), rows(&all[..2]));
    let one = storage.trigger_version("b", "v1").await.expect("get").expect("recorded");
    assert_eq!(rows(&[one]), [row("b", "v1", "b one", t0())], "the first text and use stay");
    assert!(storage.trigger_version("a", "v9").await.expect("get").is_none());
    assert!(storage.trigger_version("c", "v1").await.expect("get").is_none());
}

/// A stream opened without a version takes events of any version (and keeps
/// none); a versioned stream takes unversioned events and keeps its version.
pub async fn unversioned_streams_join_any_version(h: &dyn Harness) {
    let storage = h.storage();
    let (none, v1, v2) = (at_version(None), at_version(Some("v1")), at_version(Some("v2")));
    let a = stream_of(&ingest(&*storage, &[plan(&none, "a", "thing.start", "k", t0())], t0()).await[0]);
    let b = stream_of(&ingest(&*storage, &[plan(&v1, "b", "thing.start", "k", t0())], t0()).await[0]);
    assert_eq!(a, b, "an unversioned stream takes a versioned event");
    let s = stream(&*storage, a).await;
    assert_eq!((s.version, s.event_count, s.open), (None, 2, true));
    let c = stream_of(&ingest(&*storage, &[plan(&v1, "c", "thing.start", "k2", t0())], t0()).await[0]);
    let d = stream_of(&ingest(&*storage, &[plan(&none, "d", "thing.start", "k2", t0())], t0()).await[0]);
    assert_eq!(c, d, "a versioned stream takes an unversioned event");
    assert_eq!(stream(&*storage, c).await.version.as_deref(), Some("v1"));
    let e = stream_of(&ingest(&*storage, &[plan(&v2, "e", "thing.start", "k2", t0())], t0()).await[0]);
    assert_ne!(e, c, "but not one of another version");
    assert_eq!(stream(&*storage, e).await.version.as_deref(), Some("v2"));
    assert!(!stream(&*storage, c).await.open);
}
