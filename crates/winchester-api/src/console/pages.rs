//! The console's HTML (maud escapes every interpolated value).

use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};
use std::sync::Arc;
use winchester_core::{DistValue, Event};
use winchester_storage::replica::ReplicaStatus;
use winchester_storage::{Count, StoredEvent, Stream, StreamCount, StreamState, Transition, TransitionKind};

use super::Ctx;
use crate::params::{Params, STREAM_FILTER_PARAMS};
use crate::ApiState;

const NAV: &[(&str, &str, &str)] = &[
    ("overview", "/", "Overview"),
    ("streams", "/streams", "Streams"),
    ("events", "/events", "Events"),
    ("live", "/live", "Live"),
];

fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn opt_time(t: &Option<DateTime<Utc>>) -> String {
    t.as_ref().map(time).unwrap_or_else(|| "—".into())
}

/// "3m 20s" style.
fn ago(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
    }
}

fn dist_value(v: &DistValue) -> String {
    match v {
        DistValue::Value(v) => v.to_string(),
        DistValue::Timerange { begin, end } => format!("{} – {}", time(begin), time(end)),
    }
}

fn state_badge(s: StreamState) -> Markup {
    html! { span class={"badge s-" (s.as_str())} { (s.as_str()) } }
}

/// The page frame: header, navigation, login state, flash message.
pub fn layout(ctx: &Ctx, title: &str, nav: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · winchester" }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "winchester" }
                    nav aria-label="Pages" {
                        @for (key, href, label) in NAV {
                            a href=(href) aria-current=[(*key == nav).then_some("page")] { (label) }
                        }
                    }
                    div.who {
                        @if ctx.read_only {
                            span.pill.warn title="api.read_only is set: actions are disabled" { "read-only" }
                        } @else if !ctx.token_set {
                            span.pill.warn title="winchester serve runs without a token" { "no token" }
                        } @else if ctx.authed {
                            form.inline method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(ctx.csrf);
                                button.link type="submit" { "Log out" }
                            }
                        } @else {
                            a.pill href="/login" { "Log in to act" }
                        }
                    }
                }
                main #main {
                    h1 { (title) }
                    @if let Some(f) = &ctx.flash { p.flash role="status" { (f) } }
                    (content)
                }
            }
        }
    }
}

/// An error inside the frame.
pub fn error(message: &str) -> Markup {
    html! { p.error role="alert" { (message) } }
}

/// What the overview shows.
pub struct Overview {
    pub now: DateTime<Utc>,
    pub triggers: Vec<String>,
    pub counts: Arc<Vec<StreamCount>>,
    pub transitions: Vec<Transition>,
    pub since: DateTime<Utc>,
    pub oldest_fire: Option<Stream>,
    pub oldest_expire: Option<Stream>,
    pub last_finish: Option<Transition>,
    /// The hot standby reads come from, and `max_read_lag`, when there is one.
    pub replica: Option<(ReplicaStatus, std::time::Duration)>,
}

/// What counts as a worker finishing a stream.
pub const FINISHED: [TransitionKind; 3] = CHART_KINDS;

const CHART_KINDS: [TransitionKind; 3] = [TransitionKind::Fired, TransitionKind::Expired, TransitionKind::Failed];

pub fn overview(o: &Overview) -> Markup {
    let mut triggers = o.triggers.clone();
    for c in o.counts.iter() {
        if !triggers.contains(&c.trigger) {
            triggers.push(c.trigger.clone());
        }
    }
    let count = |t: &str, s: StreamState| {
        o.counts.iter().find(|c| c.trigger == t && c.state == s).map_or(Count::default(), |c| c.count)
    };
    let waiting = |label: &str, s: &Option<Stream>, due: fn(&Stream) -> DateTime<Utc>| {
        html! {
            div.card {
                h2 { (label) }
                @match s {
                    Some(s) => {
                        p.big { (ago(o.now - due(s))) " late" }
                        p { a href={"/streams/" (s.id)} { "stream " (s.id) } " (" (s.trigger) "), due " (time(&due(s))) }
                    }
                    None => { p.big { "none" } p.muted { "nothing is waiting" } }
                }
            }
        }
    };
    html! {
        section.cards aria-label="Workers" {
            (waiting("Oldest waiting to fire", &o.oldest_fire, |s| s.fire_timestamp.unwrap_or(s.expire_timestamp)))
            (waiting("Oldest waiting to expire", &o.oldest_expire, |s| s.expire_timestamp))
            div.card {
                h2 { "Last finished by a worker" }
                @match &o.last_finish {
                    Some(t) => {
                        p.big { (ago(o.now - t.at)) " ago" }
                        p { a href={"/streams/" (t.stream_id)} { "stream " (t.stream_id) } " " (t.kind.as_str()) " at " (time(&t.at)) }
                    }
                    None => { p.big { "never" } p.muted { "no stream finished recently" } }
                }
            }
            @if let Some((replica, max_lag)) = &o.replica {
                div.card #replica {
                    h2 { "Reads" }
                    p.big {
                        "from the " (replica.target.as_str())
                    }
                    p {
                        "replica lag "
                        @match replica.lag {
                            Some(lag) => { (format!("{:.1} s", lag.as_secs_f64())) }
                            None => { "unknown" }
                        }
                        " (max_read_lag " (format!("{:.1} s", max_lag.as_secs_f64())) ")"
                    }
                    @if replica.fallback.is_some() {
                        p.muted { (replica.describe(*max_lag)) }
                    }
                }
            }
        }
        section aria-labelledby="chart-h" {
            h2 #chart-h { "Fired, expired and failed per minute, last hour" }
            (chart(&o.transitions, o.since))
        }
        section aria-labelledby="counts-h" {
            h2 #counts-h { "Streams by trigger and state" }
            div.scroll {
                table #counts {
                    thead { tr { th scope="col" { "Trigger" } @for s in StreamState::ALL { th.num scope="col" { (s.as_str()) } } th.num scope="col" { "total" } } }
                    tbody {
                        @for t in &triggers {
                            tr data-trigger=(t) {
                                th scope="row" { a href={"/streams?trigger_name=" (enc(t))} { (t) } }
                                @for s in StreamState::ALL {
                                    @let n = count(t, s);
                                    td.num data-state=(s.as_str()) {
                                        @if n.n > 0 { a href={"/streams?trigger_name=" (enc(t)) "&state=" (s.as_str())} { (n) } } @else { span.muted { "0" } }
                                    }
                                }
                                td.num data-state="total" { (Count::sum(StreamState::ALL.iter().map(|s| count(t, *s)))) }
                            }
                        }
                        @if triggers.is_empty() { tr { td colspan="10" { "No triggers are loaded." } } }
                    }
                }
            }
        }
    }
}

fn enc(s: &str) -> String {
    serde_urlencoded::to_string([("v", s)]).map(|q| q[2..].to_string()).unwrap_or_default()
}

/// Stacked bars, one per minute, drawn on the server.
fn chart(transitions: &[Transition], since: DateTime<Utc>) -> Markup {
    let mut buckets = [[0u32; 3]; 60];
    for t in transitions {
        let Some(k) = CHART_KINDS.iter().position(|k| *k == t.kind) else { continue };
        let m = (t.at - since).num_minutes();
        if (0..60).contains(&m) {
            buckets[m as usize][k] += 1;
        }
    }
    let totals: Vec<u32> = (0..3).map(|k| buckets.iter().map(|b| b[k]).sum()).collect();
    let max = buckets.iter().map(|b| b.iter().sum::<u32>()).max().unwrap_or(0).max(1);
    let (w, h, left, bottom) = (600.0, 160.0, 36.0, 18.0);
    let bw = (w - left) / 60.0;
    let y = |n: u32| (h - bottom) * f64::from(n) / f64::from(max);
    let mut rects = Vec::new();
    for (i, b) in buckets.iter().enumerate() {
        let mut base = h - bottom;
        for (k, n) in b.iter().enumerate().filter(|(_, n)| **n > 0) {
            let hh = y(*n);
            base -= hh;
            rects.push((k, i, *n, base, hh));
        }
    }
    html! {
        figure.chart {
            svg viewBox={"0 0 " (w) " " (h)} role="img" aria-labelledby="chart-desc" {
                desc #chart-desc { "Per minute over the last hour: fired " (totals[0]) ", expired " (totals[1]) ", failed " (totals[2]) " in total." }
                line.axis x1=(left) y1=(h - bottom) x2=(w) y2=(h - bottom) {}
                text.tick x=(left - 4.0) y="10" text-anchor="end" { (max) }
                text.tick x=(left - 4.0) y=(h - bottom) text-anchor="end" { "0" }
                text.tick x=(left) y=(h - 4.0) { "-60m" }
                text.tick x=(w) y=(h - 4.0) text-anchor="end" { "now" }
                @for (k, i, n, top, hh) in &rects {
                    rect class={"k" (k)} x=(format!("{:.1}", left + bw * *i as f64 + 0.5)) y=(format!("{top:.1}")) width=(format!("{:.1}", bw - 1.0)) height=(format!("{hh:.1}")) {
                        title { (CHART_KINDS[*k].as_str()) ": " (n) ", " (60 - i) " min ago" }
                    }
                }
            }
            figcaption.legend {
                @for (k, kind) in CHART_KINDS.iter().enumerate() {
                    span { i class={"sw k" (k)} {} (kind.as_str()) " " strong data-kind=(kind.as_str()) { (totals[k]) } }
                }
            }
        }
    }
}

/// The filter as a query string (the API's names), without paging.
fn filter_query(p: &Params, names: &[&str]) -> String {
    let pairs: Vec<(&str, &str)> = names.iter().filter_map(|n| p.get(n).map(|v| (*n, v))).collect();
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

fn hidden_csrf(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name="csrf" value=(ctx.csrf); }
}

fn act_note(ctx: &Ctx) -> Markup {
    html! {
        @if ctx.read_only { p.muted { "The server is read-only: actions are disabled." } }
        @else if !ctx.authed { p.muted { "Actions need the API token: " a href="/login" { "log in" } "." } }
    }
}

#[allow(clippy::too_many_arguments)]
pub fn streams(
    ctx: &Ctx,
    st: &ApiState,
    p: &Params,
    raw: Option<&str>,
    rows: &[Stream],
    total: Count,
    next: Option<&str>,
    err: Option<&str>,
) -> Markup {
    let trigger = p.get("trigger_name").or(p.get("name")).unwrap_or("");
    let state = p.get("state").unwrap_or("");
    let filter = filter_query(p, STREAM_FILTER_PARAMS);
    let here = format!("/streams{}", raw.map(|q| format!("?{q}")).unwrap_or_default());
    let disabled = !ctx.can_act();
    html! {
        form.filters method="get" action="/streams" role="search" {
            label { "Trigger"
                select name="trigger_name" {
                    option value="" { "any" }
                    @for t in st.triggers.get().iter() { option value=(t.name) selected[t.name == trigger] { (t.name) } }
                }
            }
            label { "State"
                select name="state" {
                    option value="" { "any" }
                    @for s in StreamState::ALL { option value=(s.as_str()) selected[s.as_str() == state] { (s.as_str()) } }
                }
            }
            label { "Distinguishing traits"
                input type="text" name="distinguishing_traits" placeholder="k=v; k2=v2" value=(p.get("distinguishing_traits").unwrap_or(""));
            }
            label { "Last event after"
                input type="text" name="younger_than" placeholder="2026-11-23T10:00:00Z" value=(p.get("younger_than").unwrap_or(""));
            }
            label { "First event before"
                input type="text" name="older_than" placeholder="2026-11-23T12:00:00Z" value=(p.get("older_than").unwrap_or(""));
            }
            div.buttons { button type="submit" { "Filter" } a.button.secondary href="/streams" { "Clear" } }
        }
        @if let Some(e) = err { (error(e)) }
        div.bar {
            p #match-count { strong { (total) } " streams match" @if !filter.is_empty() { " this filter" } "." }
            form.inline method="post" action="/streams/action" {
                (hidden_csrf(ctx))
                input type="hidden" name="scope" value="matching";
                input type="hidden" name="filter" value=(filter);
                input type="hidden" name="back" value=(here);
                input type="hidden" name="confirmed" value="";
                button #retry-all type="submit" name="action" value="retry" disabled[disabled || total.n == 0]
                    data-confirm={"Retry all " (total) " streams matching this filter? Only error and expire_error streams change." } { "Retry all " (total) " matching" }
                button #purge-all .danger type="submit" name="action" value="purge" disabled[disabled || total.n == 0]
                    data-confirm={"Purge all " (total) " streams matching this filter? This cannot be undone."} { "Purge all " (total) " matching" }
            }
        }
        (act_note(ctx))
        form #rows method="post" action="/streams/action" {
            (hidden_csrf(ctx))
            input type="hidden" name="scope" value="selected";
            input type="hidden" name="back" value=(here);
            input type="hidden" name="confirmed" value="";
            div.scroll {
                table #streams {
                    thead { tr {
                        th { input #select-all type="checkbox" aria-label="Select all rows on this page"; }
                        th scope="col" { "Id" } th scope="col" { "Trigger" } th scope="col" { "State" }
                        th scope="col" { "Distinguishing traits" } th.num scope="col" { "Events" }
                        th scope="col" { "First event" } th scope="col" { "Last event" } th scope="col" { "Fires" }
                        th scope="col" { "Expires" } th.num scope="col" { "Attempts" } th scope="col" { "Error" }
                    } }
                    tbody {
                        @for s in rows {
                            tr data-id=(s.id) data-state=(s.state.as_str()) {
                                td { input.row type="checkbox" name="id" value=(s.id) aria-label={"Select stream " (s.id)}; }
                                td { a href={"/streams/" (s.id)} { (s.id) } }
                                td { (s.trigger) }
                                td { (state_badge(s.state)) }
                                td.traits { @for (k, v) in &s.dist_traits.0 { span.kv { b { (k) } "=" (dist_value(v)) } " " } }
                                td.num { (s.event_count) }
                                td.t { (time(&s.first_event)) } td.t { (time(&s.last_event)) }
                                td.t { (opt_time(&s.fire_timestamp)) } td.t { (time(&s.expire_timestamp)) }
                                td.num { (s.attempts) }
                                td.err { (s.last_error.as_deref().unwrap_or("")) }
                            }
                        }
                        @if rows.is_empty() { tr { td colspan="12" { "No streams match." } } }
                    }
                }
            }
            div.bar {
                div.buttons {
                    button #retry-selected type="submit" name="action" value="retry" disabled[disabled] { "Retry selected" }
                    button #purge-selected .danger type="submit" name="action" value="purge" disabled[disabled]
                        data-confirm="Purge the selected streams? This cannot be undone." { "Purge selected" }
                }
                (pager("/streams", &filter, next))
            }
        }
    }
}

fn pager(path: &str, filter: &str, next: Option<&str>) -> Markup {
    let sep = if filter.is_empty() { "" } else { "&" };
    html! {
        nav.pager aria-label="Pages" {
            a href={(path) "?" (filter)} { "First page" }
            @if let Some(m) = next { " " a #next-page href={(path) "?" (filter) (sep) "mark=" (enc(m))} { "Next page →" } }
        }
    }
}

fn traits_table(traits: &std::collections::BTreeMap<String, winchester_core::TraitValue>) -> Markup {
    html! {
        dl.traits {
            @for (k, v) in traits { div { dt { (k) } dd { (v.to_string()) } } }
        }
    }
}

pub fn stream(ctx: &Ctx, s: &Stream, events: &[Event]) -> Markup {
    let disabled = !ctx.can_act();
    let mut timeline: Vec<(DateTime<Utc>, &str)> =
        vec![(s.first_event, "first event"), (s.last_event, "last event"), (s.expire_timestamp, "expires")];
    if let Some(f) = s.fire_timestamp {
        timeline.push((f, "fires"));
    }
    if let Some(l) = s.lease_expires_at {
        timeline.push((l, "lease expires"));
    }
    timeline.sort();
    html! {
        div.bar {
            p { (state_badge(s.state)) " " (s.trigger) }
            form.inline method="post" action="/streams/action" {
                (hidden_csrf(ctx))
                input type="hidden" name="id" value=(s.id);
                input type="hidden" name="back" value={"/streams/" (s.id)};
                input type="hidden" name="confirmed" value="";
                button #retry type="submit" name="action" value="retry" disabled[disabled || s.state.retry_state().is_none()] { "Retry" }
                button #purge .danger type="submit" name="action" value="purge" disabled[disabled]
                    data-confirm={"Purge stream " (s.id) "? This cannot be undone."} { "Purge" }
            }
        }
        (act_note(ctx))
        div.cols {
            section {
                h2 { "Fields" }
                dl.fields #fields {
                    div { dt { "id" } dd { (s.id) } }
                    div { dt { "trigger" } dd { (s.trigger) } }
                    div { dt { "state" } dd #state { (s.state.as_str()) } }
                    div { dt { "state serial" } dd { (s.state_serial_no) } }
                    div { dt { "open" } dd { (s.open) } }
                    div { dt { "events" } dd { (s.event_count) } }
                    div { dt { "first event" } dd { (time(&s.first_event)) } }
                    div { dt { "last event" } dd { (time(&s.last_event)) } }
                    div { dt { "fires" } dd { (opt_time(&s.fire_timestamp)) } }
                    div { dt { "expires" } dd { (time(&s.expire_timestamp)) } }
                    div { dt { "lease expires" } dd { (opt_time(&s.lease_expires_at)) } }
                    div { dt { "attempts" } dd { (s.attempts) } }
                    div { dt { "error" } dd.err { (s.last_error.as_deref().unwrap_or("—")) } }
                }
                h2 { "Distinguishing traits" }
                dl.traits { @for (k, v) in &s.dist_traits.0 { div { dt { (k) } dd { (dist_value(v)) } } } }
            }
            section {
                h2 { "Timeline" }
                ol.timeline {
                    @for (t, what) in &timeline { li { time datetime=(t.to_rfc3339()) { (time(t)) } " " (what) } }
                    li.now { "now: " (s.state.as_str()) @if s.attempts > 0 { ", " (s.attempts) " attempt(s)" } @if let Some(e) = &s.last_error { ", error: " (e) } }
                }
            }
        }
        h2 { "Events (" (events.len()) ")" }
        (event_table(events.iter(), "stream-events"))
    }
}

fn event_table<'a>(events: impl Iterator<Item = &'a Event>, id: &str) -> Markup {
    html! {
        div.scroll {
            table id=(id) {
                thead { tr { th scope="col" { "Time" } th scope="col" { "Event type" } th scope="col" { "Traits" } } }
                tbody {
                    @for e in events {
                        tr {
                            td.t { a href={"/events/" (enc(&e.message_id))} { (time(&e.timestamp)) } }
                            td { (e.event_type) }
                            td.traits { @for (k, v) in &e.traits { span.kv { b { (k) } "=" (v.to_string()) } " " } }
                        }
                    }
                }
            }
        }
    }
}

pub fn events(
    p: &Params,
    _raw: Option<&str>,
    rows: &[StoredEvent],
    total: Count,
    next: Option<&str>,
    err: Option<&str>,
) -> Markup {
    let filter = filter_query(p, crate::params::EVENT_FILTER_PARAMS);
    html! {
        form.filters method="get" action="/events" role="search" {
            label { "Event name (glob)" input type="text" name="event_name" placeholder="compute.instance.*" value=(p.get("event_name").unwrap_or("")); }
            label { "Traits" input type="text" name="traits" placeholder="k=v; k2=v2" value=(p.get("traits").unwrap_or("")); }
            label { "From" input type="text" name="from_datetime" placeholder="2026-11-23T10:00:00Z" value=(p.get("from_datetime").unwrap_or("")); }
            label { "To" input type="text" name="to_datetime" placeholder="2026-11-23T12:00:00Z" value=(p.get("to_datetime").unwrap_or("")); }
            div.buttons { button type="submit" { "Search" } a.button.secondary href="/events" { "Clear" } }
        }
        @if let Some(e) = err { (error(e)) }
        p #match-count { strong { (total) } " events match." }
        (event_table(rows.iter().map(|e| &e.event), "events"))
        (pager("/events", &filter, next))
    }
}

pub fn event(e: &StoredEvent, streams: &[Stream]) -> Markup {
    let ev = &e.event;
    html! {
        dl.fields {
            div { dt { "message_id" } dd { (ev.message_id) } }
            div { dt { "event_type" } dd { (ev.event_type) } }
            div { dt { "timestamp" } dd { (time(&ev.timestamp)) } }
        }
        h2 { "Traits" }
        (traits_table(&ev.traits))
        h2 { "Streams (" (streams.len()) ")" }
        @if streams.is_empty() { p.muted { "It belongs to no stream (or they were purged)." } }
        ul #event-streams {
            @for s in streams { li { a href={"/streams/" (s.id)} { "stream " (s.id) } " " (s.trigger) " " (state_badge(s.state)) } }
        }
    }
}

pub fn live(p: &Params) -> Markup {
    let src = format!("/v1/tail?{}", filter_query(p, &["event_name", "traits", "trigger_name", "kind"]));
    html! {
        form.filters method="get" action="/live" role="search" {
            label { "Event name (glob)" input type="text" name="event_name" value=(p.get("event_name").unwrap_or("")); }
            label { "Traits" input type="text" name="traits" placeholder="k=v" value=(p.get("traits").unwrap_or("")); }
            label { "Trigger (transitions)" input type="text" name="trigger_name" value=(p.get("trigger_name").unwrap_or("")); }
            label { "Show"
                select name="kind" {
                    @for (v, l) in [("", "events and streams"), ("events", "events"), ("streams", "stream transitions")] {
                        option value=(v) selected[p.get("kind").unwrap_or("") == v] { (l) }
                    }
                }
            }
            div.buttons { button type="submit" { "Apply" } }
        }
        div.bar {
            p #live-status role="status" { "connecting…" }
            button #pause type="button" aria-pressed="false" { "Pause" }
        }
        div.scroll {
            table #live data-src=(src) {
                thead { tr { th scope="col" { "Time" } th scope="col" { "Kind" } th scope="col" { "What" } th scope="col" { "Details" } } }
                tbody {}
            }
        }
    }
}

pub fn login(ctx: &Ctx, next: &str, err: Option<&str>) -> Markup {
    html! {
        @if let Some(e) = err { (error(e)) }
        @if !ctx.token_set { p { "This server has no API token: actions need no login." } }
        @else if ctx.authed { p { "You are logged in." } }
        form.login method="post" action="/login" {
            (hidden_csrf(ctx))
            input type="hidden" name="next" value=(next);
            label { "API token" input #token type="password" name="token" autocomplete="current-password" required autofocus; }
            button type="submit" { "Log in" }
            p.muted { "The token stays on the server: this browser gets only a random session id (HttpOnly, SameSite=Strict)." }
        }
    }
}

/// A confirmation page for posts without JavaScript's confirm dialog.
pub fn confirm(ctx: &Ctx, form: &[(String, String)], action: &str, n: Count) -> Markup {
    let back = form.iter().find(|(k, _)| k == "back").map_or("/streams", |(_, v)| v.as_str());
    html! {
        p.confirm { strong { (if action == "purge" { "Purge" } else { "Retry" }) " " (n) " streams?" }
            @if action == "purge" { " This cannot be undone." } }
        form.inline method="post" action="/streams/action" {
            @for (k, v) in form { @if k != "confirmed" && k != "csrf" { input type="hidden" name=(k) value=(v); } }
            (hidden_csrf(ctx))
            input type="hidden" name="confirmed" value="yes";
            button.danger type="submit" { "Yes, " (action) }
            " "
            a.button.secondary href=(back) { "Cancel" }
        }
    }
}
