//! The operator console: server-rendered pages at `/` (overview, streams,
//! stream detail, events, live tail) over the same storage queries and
//! parameter parsing as the API. Assets are compiled in; forms post with a
//! per-session CSRF token; actions need the API token, given once on the login
//! form (see `session`).

mod pages;
mod session;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use chrono::{Duration, Utc};
use maud::Markup;
use winchester_storage::{all_stream_events, Action, Count, StreamFilter, COUNT_CAP};

use crate::error::ApiError;
use crate::params::{Params, EVENT_FILTER_PARAMS, PAGE_PARAMS, STREAM_FILTER_PARAMS};
use crate::{ApiState, BULK_PAGE};
pub use session::{Ctx, Sessions};

/// Rows per page in the console's tables (unless `limit` is given).
pub const PAGE_ROWS: u32 = 50;
/// Most transitions read for the overview's chart (the last hour).
pub const CHART_ROWS: u32 = 100_000;
/// Transitions searched back for the last finished stream.
pub const LAST_FINISH_ROWS: i64 = 1000;

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's routes (merged into the server's router outside the API's
/// bearer-token guard: console posts are checked by session and CSRF token).
pub fn routes() -> Router<ApiState> {
    use tower_http::compression::CompressionLayer;
    Router::new()
        .route("/", get(overview))
        .route("/streams", get(streams))
        .route("/streams/{id}", get(stream))
        .route("/streams/action", post(stream_action))
        .route("/events", get(events))
        .route("/events/{message_id}", get(event))
        .route("/live", get(live))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/assets/console.css", get(|| async { asset("text/css; charset=utf-8", CSS) }))
        .route("/assets/console.js", get(|| async { asset("text/javascript; charset=utf-8", JS) }))
        .layer(axum::middleware::map_response(security_headers))
        .layer(Extension(Sessions::default()))
        .layer(CompressionLayer::new())
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "max-age=3600")], body).into_response()
}

async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    r
}

/// A page (or an error shown as one), with the session cookie when new.
fn respond(ctx: &Ctx, title: &str, nav: &str, body: Result<Markup, ApiError>) -> Response {
    let (status, content) = match body {
        Ok(m) => (StatusCode::OK, m),
        Err(e) => (e.status, pages::error(&e.message)),
    };
    let mut r = (status, pages::layout(ctx, title, nav, content)).into_response();
    with_cookie(ctx, &mut r);
    r
}

fn with_cookie(ctx: &Ctx, r: &mut Response) {
    if let Some(c) = &ctx.set_cookie {
        r.headers_mut().insert(header::SET_COOKIE, c.clone());
    }
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn redirect(ctx: &Ctx, to: &str) -> Response {
    // Only local paths: `back` comes from the form.
    let to = if to.starts_with('/') && !to.starts_with("//") && !to.contains('\\') { to } else { "/" };
    let mut r = Redirect::to(to).into_response();
    with_cookie(ctx, &mut r);
    r
}

async fn overview(State(st): State<ApiState>, ctx: Ctx) -> Response {
    let body = async {
        let now = Utc::now();
        let counts = st.counts.get(st.reads()).await?;
        let since = now - Duration::hours(1);
        let transitions = st.reads().transitions_from(since, CHART_ROWS).await?;
        let oldest_fire = st.storage.ready_streams(Action::Fire, now, 1).await?.into_iter().next();
        let oldest_expire = st.storage.ready_streams(Action::Expire, now, 1).await?.into_iter().next();
        let (_, last_tid) = st.reads().latest_ids().await?;
        let recent =
            st.reads().transitions_since((last_tid - LAST_FINISH_ROWS).max(0), &[], LAST_FINISH_ROWS as u32).await?;
        let last_finish = recent.iter().rev().find(|t| pages::FINISHED.contains(&t.kind)).cloned();
        Ok(pages::overview(&pages::Overview {
            now,
            triggers: st.triggers.get().iter().map(|t| t.name.clone()).collect(),
            counts,
            transitions,
            since,
            oldest_fire,
            oldest_expire,
            last_finish,
            replica: st.replica.as_ref().map(|r| (r.status(), r.max_lag())),
        }))
    }
    .await;
    respond(&ctx, "Overview", "overview", body)
}

/// The stream filter and page of a console query string (the API's names).
fn stream_query(q: Option<&str>) -> Result<(Params, StreamFilter), ApiError> {
    let p = Params::from_query(q, &[STREAM_FILTER_PARAMS, PAGE_PARAMS])?;
    let mut filter = p.stream_filter()?;
    filter.page = p.page()?;
    if p.get("limit").is_none() {
        filter.page.limit = Some(PAGE_ROWS);
    }
    Ok((p, filter))
}

async fn streams(State(st): State<ApiState>, ctx: Ctx, RawQuery(q): RawQuery) -> Response {
    let body = async {
        let (p, filter) = match stream_query(q.as_deref()) {
            Ok(v) => v,
            Err(e) => {
                return Ok(pages::streams(
                    &ctx,
                    &st,
                    &Params::default(),
                    q.as_deref(),
                    &[],
                    Count::default(),
                    None,
                    Some(&e.message),
                ))
            }
        };
        let rows = st.reads().list_streams(&filter).await?;
        let total = st.reads().count_streams_upto(&filter, Some(COUNT_CAP)).await?;
        let next = (rows.len() as u32 == filter.page.limit.unwrap_or(PAGE_ROWS))
            .then(|| rows.last().map(|s| filter.page.next_mark(s.id)))
            .flatten();
        Ok(pages::streams(&ctx, &st, &p, q.as_deref(), &rows, total, next.as_deref(), None))
    }
    .await;
    respond(&ctx, "Streams", "streams", body)
}

async fn stream(State(st): State<ApiState>, ctx: Ctx, Path(id): Path<String>) -> Response {
    let body = async {
        let id = id
            .parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| ApiError::bad_request(format!("{id:?} is not a stream id")))?;
        let s =
            st.storage.get_stream(id).await?.ok_or_else(|| ApiError::not_found(format!("no stream with id {id}")))?;
        let events = all_stream_events(st.storage.as_ref(), id, 1000).await?;
        Ok(pages::stream(&ctx, &s, &events))
    }
    .await;
    respond(&ctx, &format!("Stream {id}"), "streams", body)
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

async fn stream_action(State(st): State<ApiState>, ctx: Ctx, Form(form): Form<Vec<(String, String)>>) -> Response {
    let back = field(&form, "back").unwrap_or("/streams").to_string();
    let result = async {
        ctx.check_post(field(&form, "csrf"))?;
        let action = field(&form, "action").unwrap_or("");
        if action != "retry" && action != "purge" {
            return Err(ApiError::bad_request(format!("action: {action:?} is not retry or purge")));
        }
        let confirmed = field(&form, "confirmed") == Some("yes");
        let matching = field(&form, "scope") == Some("matching");
        let ids: Vec<i64> = form
            .iter()
            .filter(|(k, _)| k == "id")
            .map(|(_, v)| v.parse::<i64>().map_err(|_| ApiError::bad_request(format!("id: {v:?} is not a stream id"))))
            .collect::<Result<_, _>>()?;
        if !matching && ids.is_empty() {
            return Err(ApiError::bad_request("select at least one stream"));
        }
        let filter = if matching {
            let (_, mut f) = stream_query(field(&form, "filter"))?;
            f.page = Default::default();
            Some(f)
        } else {
            None
        };
        if (action == "purge" || matching) && !confirmed {
            let n = match &filter {
                Some(f) => st.storage.count_streams_upto(f, Some(COUNT_CAP)).await?,
                None => Count { n: ids.len() as u64, exact: true },
            };
            return Ok(Err(pages::confirm(&ctx, &form, action, n)));
        }
        let (matched, changed) = match (&filter, action) {
            (Some(f), "retry") => {
                let o = st.storage.retry_streams(f, BULK_PAGE).await?;
                (o.matched, o.changed)
            }
            (Some(f), _) => {
                let o = st.storage.purge_streams(f, BULK_PAGE).await?;
                (o.matched, o.changed)
            }
            (None, "retry") => {
                let mut changed = 0;
                for id in &ids {
                    let Some(to) = st.storage.get_stream(*id).await?.and_then(|s| s.state.retry_state()) else {
                        continue;
                    };
                    changed += u64::from(st.storage.retry_stream(*id).await?.is_some_and(|s| s.state == to));
                }
                (ids.len() as u64, changed)
            }
            (None, _) => {
                let mut changed = 0;
                for id in &ids {
                    changed += u64::from(st.storage.purge_stream(*id).await?);
                }
                (ids.len() as u64, changed)
            }
        };
        let verb = if action == "retry" { "Retried" } else { "Purged" };
        let note = if action == "retry" { " (only error and expire_error streams are retried)" } else { "" };
        Ok(Ok(format!("{verb} {changed} of {matched} streams{note}.")))
    }
    .await;
    match result {
        Ok(Ok(msg)) => {
            tracing::info!(message = %msg, "Console action.");
            ctx.flash(msg);
            let back = if field(&form, "action") == Some("purge") && back.starts_with("/streams/") {
                "/streams".to_string()
            } else {
                back
            };
            redirect(&ctx, &back)
        }
        Ok(Err(page)) => respond(&ctx, "Confirm", "streams", Ok(page)),
        Err(e) => respond(&ctx, "Refused", "streams", Err(e)),
    }
}

async fn events(State(st): State<ApiState>, ctx: Ctx, RawQuery(q): RawQuery) -> Response {
    let body = async {
        let parsed = Params::from_query(q.as_deref(), &[EVENT_FILTER_PARAMS, PAGE_PARAMS]).and_then(|p| {
            let mut f = p.event_filter()?;
            f.page = p.page()?;
            if p.get("limit").is_none() {
                f.page.limit = Some(PAGE_ROWS);
            }
            Ok((p, f))
        });
        let (p, filter) = match parsed {
            Ok(v) => v,
            Err(e) => {
                return Ok(pages::events(
                    &Params::default(),
                    q.as_deref(),
                    &[],
                    Count::default(),
                    None,
                    Some(&e.message),
                ))
            }
        };
        let rows = st.reads().list_events(&filter).await?;
        let total = st.reads().count_events_upto(&filter, Some(COUNT_CAP)).await?;
        let next = (rows.len() as u32 == filter.page.limit.unwrap_or(PAGE_ROWS))
            .then(|| rows.last().map(|e| filter.page.next_mark(e.id)))
            .flatten();
        Ok(pages::events(&p, q.as_deref(), &rows, total, next.as_deref(), None))
    }
    .await;
    respond(&ctx, "Events", "events", body)
}

async fn event(State(st): State<ApiState>, ctx: Ctx, Path(message_id): Path<String>) -> Response {
    let body = async {
        let e = st
            .reads()
            .get_event(&message_id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no event with message_id {message_id:?}")))?;
        let ids = st.reads().event_streams(e.id).await?;
        let mut streams = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(s) = st.storage.get_stream(id).await? {
                streams.push(s);
            }
        }
        Ok(pages::event(&e, &streams))
    }
    .await;
    respond(&ctx, "Event", "events", body)
}

async fn live(ctx: Ctx, RawQuery(q): RawQuery) -> Response {
    let body =
        Params::from_query(q.as_deref(), &[&["event_name", "traits", "trigger_name", "kind"]]).map(|p| pages::live(&p));
    respond(&ctx, "Live", "live", body)
}

async fn login_form(ctx: Ctx, RawQuery(q): RawQuery) -> Response {
    let next = Params::from_query(q.as_deref(), &[&["next"]]).ok().and_then(|p| p.get("next").map(str::to_string));
    respond(&ctx, "Log in", "login", Ok(pages::login(&ctx, next.as_deref().unwrap_or("/"), None)))
}

async fn login(State(st): State<ApiState>, mut ctx: Ctx, Form(form): Form<Vec<(String, String)>>) -> Response {
    let next = field(&form, "next").unwrap_or("/").to_string();
    if let Err(e) = ctx.check_csrf(field(&form, "csrf")) {
        return respond(&ctx, "Log in", "login", Err(e));
    }
    if ctx.login(&st, field(&form, "token").unwrap_or("")) {
        tracing::info!("Console login.");
        redirect(&ctx, &next)
    } else {
        tracing::warn!("Console login with a wrong token.");
        let mut r = respond(&ctx, "Log in", "login", Ok(pages::login(&ctx, &next, Some("That is not the API token."))));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        r
    }
}

async fn logout(mut ctx: Ctx, Form(form): Form<Vec<(String, String)>>) -> Response {
    if let Err(e) = ctx.check_csrf(field(&form, "csrf")) {
        return respond(&ctx, "Log out", "login", Err(e));
    }
    ctx.logout();
    redirect(&ctx, "/")
}
