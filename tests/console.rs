//! The operator console in a real browser: headless Chromium driven over
//! WebDriver (chromedriver) against the real `winchester serve` binary over a
//! real database with known streams. Screenshots of each page go to
//! target/console-screenshots/ (copies are in docs/console/).

use crate::support::*;
use chrono::Utc;
use fantoccini::{Client, ClientBuilder, Locator};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use winchester_core::TraitValue;
use winchester_storage::StreamState;

const TRIGGERS: &str = r#"
- name: orders
  distinguished_by: [order_id]
  expiration: "$last + 1h"
  fire_pipeline: fire_p
  match_criteria: [{event_type: "order.*"}]
  fire_criteria: [{event_type: order.paid}]
"#;
const PIPELINES: &str = "fire_p:\n  - logger\n";
const TOKEN: &str = "console-test-token";
const XSS: &str = "<script>alert(1)</script>";

/// chromium and chromedriver, from $CHROMIUM / $CHROMEDRIVER or the PATH.
fn browser() -> Option<(PathBuf, PathBuf)> {
    let find = |var: &str, names: &[&str]| -> Option<PathBuf> {
        if let Some(p) = std::env::var_os(var).map(PathBuf::from).filter(|p| p.exists()) {
            return Some(p);
        }
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path).flat_map(|d| names.iter().map(move |n| d.join(n))).find(|p| p.exists())
    };
    Some((find("CHROMIUM", &["chromium", "chromium-browser"])?, find("CHROMEDRIVER", &["chromedriver"])?))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn connect(chromium: &Path, driver_port: u16) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"],
        }),
    );
    let url = format!("http://127.0.0.1:{driver_port}");
    for _ in 0..100 {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector).capabilities(caps.clone()).connect(&url).await {
            Ok(c) => return c,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("chromedriver on port {driver_port} did not accept a session");
}

async fn text(c: &Client, css: &str) -> String {
    // The console refreshes parts of the page live: an element found may be
    // replaced before its text is read; then it is found again.
    // (While a fragment is swapped in, the element is briefly absent too.)
    let mut last = String::new();
    for _ in 0..100 {
        let read = match c.find(Locator::Css(css)).await {
            Ok(element) => element.text().await,
            Err(e) => Err(e),
        };
        match read {
            Ok(t) => return t,
            Err(e) if e.to_string().contains("stale element") || e.to_string().contains("no such element") => {
                last = e.to_string();
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("{css}: {e}"),
        }
    }
    panic!("{css}: {last}")
}

async fn count(c: &Client, css: &str) -> usize {
    c.find_all(Locator::Css(css)).await.unwrap().len()
}

async fn shot(c: &Client, name: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), c.screenshot().await.unwrap()).unwrap();
}

/// Waits until `css` matches `n` elements.
async fn wait_count(c: &Client, css: &str, n: usize) {
    for _ in 0..100 {
        if count(c, css).await == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{css}: expected {n} elements, found {}", count(c, css).await);
}

async fn state_of(db: &TestDb, id: i64) -> Option<StreamState> {
    db.storage.get_stream(id).await.unwrap().map(|s| s.state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_browser() {
    let Some((chromium, chromedriver)) = browser() else {
        eprintln!(
            "SKIPPED console_in_a_browser: chromium and chromedriver not found (apt-get install chromium chromium-driver, \
             or set CHROMIUM and CHROMEDRIVER)"
        );
        return;
    };
    let db = TestDb::new().await;
    let dir = ConfigDir::new(&[
        (
            "winchester.yaml",
            &format!(
                "database: {{url: '{}'}}\ntrigger_definitions: triggers.yaml\npipeline_config: pipelines.yaml\napi: {{token: '{TOKEN}'}}\n",
                db.url
            ),
        ),
        ("triggers.yaml", TRIGGERS),
        ("pipelines.yaml", PIPELINES),
    ]);
    // Known streams: 8 orders, one event each (o7 has two); o0..o3 fail (o0, o1 in
    // region east), o4 and o5 fire and complete; o6 carries a hostile trait value.
    let (tm, _clock) = manager(&db, TRIGGERS, Utc::now());
    let mut ids = Vec::new();
    for i in 0..8 {
        let region = if i < 2 { "east" } else { "west" };
        let note = if i == 6 { XSS } else { "plain" };
        let traits = [
            ("order_id", s(&format!("o{i}"))),
            ("region", s(region)),
            ("note", s(note)),
            ("amount", TraitValue::Int(i)),
        ];
        let e = event(&format!("m{i}"), "order.created", Utc::now(), &traits);
        match tm.add_event(e).await.unwrap() {
            winchester::EventOutcome::Saved { stream_ids, .. } => ids.extend(stream_ids),
            o => panic!("{o:?}"),
        }
    }
    let e = event("m7b", "order.updated", Utc::now(), &[("order_id", s("o7")), ("step", s("two"))]);
    tm.add_event(e).await.unwrap();
    assert_eq!(ids.len(), 8);
    let list = |ids: &[i64]| ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let (error, firing, completed) =
        (StreamState::Error as i16, StreamState::Firing as i16, StreamState::Completed as i16);
    db.exec(&format!("UPDATE stream SET open = false, state = {error}, attempts = 1, last_error = 'boom: handler failed' WHERE id IN ({})", list(&ids[0..4]))).await;
    db.exec(&format!("UPDATE stream SET open = false, state = {firing} WHERE id IN ({})", list(&ids[4..6]))).await;
    db.exec(&format!("UPDATE stream SET state = {completed} WHERE id IN ({})", list(&ids[4..6]))).await;

    // The real server and the real browser.
    let (server, base) = spawn_serve(&dir.config()).await;
    let port = free_port();
    let _driver = KillOnDrop(
        Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let c = connect(&chromium, port).await;
    let go = |path: &str| format!("{base}{path}");

    // Overview: the counts per state and the chart's totals.
    c.goto(&go("/")).await.unwrap();
    let cell = |state: &str| format!("#counts tr[data-trigger=orders] td[data-state={state}]");
    assert_eq!(text(&c, &cell("error")).await, "4");
    assert_eq!(text(&c, &cell("active")).await, "2");
    assert_eq!(text(&c, &cell("completed")).await, "2");
    assert_eq!(text(&c, &cell("total")).await, "8");
    assert_eq!(text(&c, "strong[data-kind=fired]").await, "2");
    assert_eq!(text(&c, "strong[data-kind=failed]").await, "4");
    shot(&c, "overview").await;

    // Streams: a filter narrows the table.
    c.goto(&go("/streams")).await.unwrap();
    assert_eq!(count(&c, "#streams tbody tr[data-id]").await, 8);
    c.find(Locator::Css("select[name=state]")).await.unwrap().select_by_value("error").await.unwrap();
    c.find(Locator::Css("form.filters button[type=submit]")).await.unwrap().click().await.unwrap();
    wait_count(&c, "#streams tbody tr[data-id]", 4).await;
    assert_eq!(count(&c, "#streams tbody tr[data-state=error]").await, 4);
    c.goto(&go("/streams?distinguishing_traits=order_id%3Do6")).await.unwrap();
    assert_eq!(count(&c, "#streams tbody tr[data-id]").await, 1);

    // The hostile trait value is text, not markup, on the events page.
    c.goto(&go("/events?traits=order_id%3Do6")).await.unwrap();
    assert_eq!(count(&c, "#events tbody tr").await, 1);
    assert!(text(&c, "#events tbody").await.contains(XSS), "the value shows as text");
    assert!(c.get_alert_text().await.is_err(), "no alert was opened");
    assert!(!c.source().await.unwrap().contains(XSS), "the page source holds it escaped");

    // Without the token: buttons disabled, and a forced post is refused.
    c.goto(&go("/streams?state=error")).await.unwrap();
    let retry_all = c.find(Locator::Css("#retry-all")).await.unwrap();
    assert!(!retry_all.is_enabled().await.unwrap(), "retry-all is disabled without the token");
    assert!(!c.find(Locator::Css("#purge-selected")).await.unwrap().is_enabled().await.unwrap());
    shot(&c, "streams-logged-out").await;
    c.execute(
        "document.querySelectorAll('button[disabled]').forEach(b => b.disabled = false); \
         document.querySelector('input[name=confirmed]').value = 'yes'; document.getElementById('retry-all').dataset.confirm = '';",
        vec![],
    )
    .await
    .unwrap();
    c.find(Locator::Css("#retry-all")).await.unwrap().click().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(text(&c, "main").await.contains("log in"), "{}", text(&c, "main").await);
    for id in &ids[0..4] {
        assert_eq!(state_of(&db, *id).await, Some(StreamState::Error), "nothing changed without the token");
    }

    // Log in (a wrong token first).
    c.goto(&go("/login")).await.unwrap();
    c.find(Locator::Css("#token")).await.unwrap().send_keys("wrong").await.unwrap();
    c.find(Locator::Css("form.login button")).await.unwrap().click().await.unwrap();
    assert!(text(&c, ".error").await.contains("not the API token"));
    c.find(Locator::Css("#token")).await.unwrap().send_keys(TOKEN).await.unwrap();
    c.find(Locator::Css("form.login button")).await.unwrap().click().await.unwrap();
    wait_count(&c, "header form[action='/logout']", 1).await;

    // The cookie: a random id, HttpOnly and SameSite=Strict, never the token.
    let r = reqwest::get(go("/")).await.unwrap();
    let cookie = r.headers().get("set-cookie").expect("a session cookie").to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && !cookie.contains(TOKEN), "{cookie}");
    // A forged post (no session, no CSRF token) is refused.
    let r = reqwest::Client::new()
        .post(go("/streams/action"))
        .form(&[("action", "retry"), ("id", &ids[3].to_string())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::FORBIDDEN);
    // Logged in, a form with a wrong CSRF token is refused too.
    c.goto(&go(&format!("/streams/{}", ids[3]))).await.unwrap();
    c.execute("document.querySelector('#retry').form.querySelector('input[name=csrf]').value = 'forged';", vec![])
        .await
        .unwrap();
    c.find(Locator::Css("#retry")).await.unwrap().click().await.unwrap();
    wait_count(&c, ".error", 1).await;
    assert!(text(&c, ".error").await.contains("CSRF"));
    assert_eq!(state_of(&db, ids[3]).await, Some(StreamState::Error));

    // A stream's page lists its events; retrying its error changes its state.
    let (o3, o7) = (ids[3], ids[7]);
    c.goto(&go(&format!("/streams/{o7}"))).await.unwrap();
    assert_eq!(count(&c, "#stream-events tbody tr").await, 2);
    c.goto(&go(&format!("/streams/{o3}"))).await.unwrap();
    assert_eq!(count(&c, "#stream-events tbody tr").await, 1);
    assert_eq!(text(&c, "#state").await, "error");
    shot(&c, "stream").await;
    c.find(Locator::Css("#retry")).await.unwrap().click().await.unwrap();
    for _ in 0..50 {
        if text(&c, "#state").await == "retry_fire" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(text(&c, "#state").await, "retry_fire");
    assert_eq!(state_of(&db, o3).await, Some(StreamState::RetryFire));

    // Purge asks first: dismissed, nothing happens; accepted, the stream is gone.
    let o6 = ids[6];
    c.goto(&go(&format!("/streams/{o6}"))).await.unwrap();
    c.find(Locator::Css("#purge")).await.unwrap().click().await.unwrap();
    assert!(c.get_alert_text().await.unwrap().contains(&format!("Purge stream {o6}")));
    c.dismiss_alert().await.unwrap();
    assert!(state_of(&db, o6).await.is_some(), "dismissed: still there");
    c.find(Locator::Css("#purge")).await.unwrap().click().await.unwrap();
    c.accept_alert().await.unwrap();
    wait_count(&c, ".flash", 1).await;
    assert!(text(&c, ".flash").await.contains("Purged 1 of 1"));
    assert_eq!(state_of(&db, o6).await, None, "purged");

    // Retry all matching: exactly the error streams of region east (o0, o1),
    // not o2 (error, west).
    c.goto(&go("/streams?state=error&distinguishing_traits=order_id%3Do0")).await.unwrap();
    assert_eq!(count(&c, "#streams tbody tr[data-id]").await, 1);
    c.goto(&go("/streams?state=error")).await.unwrap();
    assert_eq!(count(&c, "#streams tbody tr[data-id]").await, 3);
    // Select o0 and o1 by their rows, then retry the selection.
    for id in [ids[0], ids[1]] {
        c.find(Locator::Css(&format!("#streams tr[data-id='{id}'] input.row"))).await.unwrap().click().await.unwrap();
    }
    shot(&c, "streams").await;
    c.find(Locator::Css("#retry-selected")).await.unwrap().click().await.unwrap();
    wait_count(&c, ".flash", 1).await;
    assert!(text(&c, ".flash").await.contains("Retried 2 of 2"), "{}", text(&c, ".flash").await);
    assert_eq!(state_of(&db, ids[0]).await, Some(StreamState::RetryFire));
    assert_eq!(state_of(&db, ids[1]).await, Some(StreamState::RetryFire));
    assert_eq!(state_of(&db, ids[2]).await, Some(StreamState::Error));
    // Now all matching `state=error&distinguishing_traits=order_id=o2`.
    db.exec(&format!("UPDATE stream SET state = {error} WHERE id IN ({})", list(&ids[0..2]))).await;
    c.goto(&go("/streams?state=error&distinguishing_traits=order_id%3Do2")).await.unwrap();
    assert!(text(&c, "#retry-all").await.contains("Retry all 1 matching"));
    c.find(Locator::Css("#retry-all")).await.unwrap().click().await.unwrap();
    assert!(c.get_alert_text().await.unwrap().contains("Retry all 1 streams"));
    c.accept_alert().await.unwrap();
    wait_count(&c, ".flash", 1).await;
    assert!(text(&c, ".flash").await.contains("Retried 1 of 1"), "{}", text(&c, ".flash").await);
    assert_eq!(state_of(&db, ids[2]).await, Some(StreamState::RetryFire), "the matching stream changed");
    assert_eq!(state_of(&db, ids[0]).await, Some(StreamState::Error), "the others did not");
    assert_eq!(state_of(&db, ids[1]).await, Some(StreamState::Error));

    // Events and an event's page (its streams).
    c.goto(&go("/events?event_name=order.*")).await.unwrap();
    assert_eq!(count(&c, "#events tbody tr").await, 9);
    shot(&c, "events").await;
    c.goto(&go("/events/m7b")).await.unwrap();
    assert_eq!(count(&c, "#event-streams li").await, 1);
    assert!(text(&c, "#event-streams").await.contains(&format!("stream {o7}")));
    shot(&c, "event").await;

    // Live: a new event appears; while paused it is held.
    c.goto(&go("/live")).await.unwrap();
    for _ in 0..50 {
        if text(&c, "#live-status").await == "live" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tm.add_event(event("live1", "order.created", Utc::now(), &[("order_id", s("o100")), ("note", s(XSS))]))
        .await
        .unwrap();
    wait_count(&c, "#live tbody tr[data-kind=event]", 1).await;
    assert!(text(&c, "#live tbody").await.contains(XSS));
    c.find(Locator::Css("#pause")).await.unwrap().click().await.unwrap();
    tm.add_event(event("live2", "order.created", Utc::now(), &[("order_id", s("o101"))])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(count(&c, "#live tbody tr[data-kind=event]").await, 1, "paused");
    c.find(Locator::Css("#pause")).await.unwrap().click().await.unwrap();
    wait_count(&c, "#live tbody tr[data-kind=event]", 2).await;
    shot(&c, "live").await;

    // Phone width.
    c.set_window_size(390, 844).await.unwrap();
    c.goto(&go("/")).await.unwrap();
    shot(&c, "overview-phone").await;

    c.close().await.unwrap();
    drop(server);
    db.drop_db().await;
}
