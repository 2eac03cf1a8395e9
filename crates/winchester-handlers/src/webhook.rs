//! `webhook`: POSTs each fired or expired stream as one JSON document.
//!
//! Replaces the original's `AtomPubHandler`. `handle_events` only remembers the
//! events whose type matches `event_types`; the HTTP request is made in
//! `commit`, carrying the run's idempotency key so that a receiver can drop
//! the duplicates a retried firing produces.

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde_yaml::{Mapping, Value};
use std::sync::Arc;
use std::time::Duration;
use winchester::pipeline::params::{self, Checked, Raw, Scalar};
use winchester::pipeline::{Env, Handler, HandlerConfigError, HandlerContext, HandlerError, SharedResource};
use winchester_core::criteria::EventTypeFilter;
use winchester_core::Event;

/// Default per-attempt timeout, in seconds.
pub const DEFAULT_TIMEOUT_SECS: f64 = 10.0;
/// Default number of retries after the first attempt.
pub const DEFAULT_MAX_RETRIES: u32 = 3;
/// Default delay before the first retry, in seconds (doubled for each further retry).
pub const DEFAULT_BACKOFF_SECS: f64 = 0.5;
/// Longest wait between two attempts, whether from backoff or from `Retry-After`.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Name of the header carrying [`Env::idempotency_key`].
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

/// Headers the handler sets itself, which `headers` may not override.
const RESERVED_HEADERS: &[&str] = &["content-type", "content-length", "host", "idempotency-key", "transfer-encoding"];

/// Longest piece of a response body quoted in an error.
const BODY_SNIPPET_CHARS: usize = 200;

/// Why a webhook delivery failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The receiver answered with a status that is not worth retrying.
    #[error("webhook {url} rejected the request with HTTP {status}: {body}")]
    Rejected {
        /// The target URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// Every attempt failed with a retryable error.
    #[error("webhook {url} failed after {attempts} attempts; last error: {last}")]
    GaveUp {
        /// The target URL.
        url: String,
        /// How many requests were made.
        attempts: u32,
        /// The last attempt's error.
        last: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    /// The request body could not be built.
    #[error("cannot build the webhook request for {url}: {message}")]
    Request {
        /// The target URL.
        url: String,
        /// What went wrong.
        message: String,
    },
}

/// The validated params of a `webhook` handler.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Where to POST (http or https).
    pub url: Url,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Delay before the first retry; doubled for each further one, capped at [`MAX_BACKOFF`].
    pub backoff: Duration,
    /// Extra headers sent with every request.
    pub headers: HeaderMap,
    /// Which events are sent.
    pub event_types: EventTypeFilter,
}

/// The params of a `webhook` handler as written (see [`params::read`]).
#[derive(Deserialize)]
struct WebhookParams {
    url: Option<Raw<String>>,
    timeout: Option<Raw<f64>>,
    max_retries: Option<Raw<u32>>,
    backoff: Option<Raw<f64>>,
    headers: Option<Raw<Mapping>>,
    event_types: Option<Raw<Value>>,
}

impl WebhookConfig {
    /// Validates `params`; an `Err` names the param at fault.
    pub fn from_params(params: &Mapping) -> Result<WebhookConfig, HandlerConfigError> {
        let p: WebhookParams = params::read(params)?;
        let url = parse_url(&params::require("url", p.url, "must be a string", |_| true)?)?;
        let mut c = Checked::default();
        let timeout = seconds(&mut c, "timeout", p.timeout, DEFAULT_TIMEOUT_SECS, false);
        let backoff = seconds(&mut c, "backoff", p.backoff, DEFAULT_BACKOFF_SECS, true);
        let retries = "must be an integer from 0 to 100";
        let max_retries = c.get("max_retries", p.max_retries, retries, |n| *n <= 100).unwrap_or(DEFAULT_MAX_RETRIES);
        let headers = c.get("headers", p.headers, "must be a map of header name to value", |_| true);
        let headers = headers.map(|m| parse_headers(&mut c, &m)).unwrap_or_default();
        let event_types =
            p.event_types.and_then(|r| EventTypeFilter::from_yaml(&r.found).map_err(|e| c.push("event_types", e)).ok());
        params::finish(c)?;
        let event_types = event_types.map_or_else(|| EventTypeFilter::new(&["*"]), Ok)?;
        Ok(WebhookConfig { url, timeout, max_retries, backoff, headers, event_types })
    }

    /// The wait before retry number `retry` (0-based) when the receiver gave no `Retry-After`.
    pub fn backoff_for(&self, retry: u32) -> Duration {
        let factor = 2f64.powi(retry.min(30) as i32);
        let secs = (self.backoff.as_secs_f64() * factor).min(MAX_BACKOFF.as_secs_f64());
        Duration::from_secs_f64(secs)
    }
}

fn parse_url(s: &str) -> Result<Url, HandlerConfigError> {
    let invalid = |message: String| HandlerConfigError::invalid("url", message);
    let url = Url::parse(s.trim()).map_err(|e| invalid(format!("is not a valid URL ({s:?}): {e}")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(invalid(format!("must be an http or https URL, found scheme {:?}", url.scheme())));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(format!("has no host: {s:?}")));
    }
    Ok(url)
}

/// A number of seconds up to an hour, positive (or, with `allow_zero`,
/// non-negative); `default` when absent.
fn seconds(c: &mut Checked, key: &str, raw: Option<Raw<f64>>, default: f64, allow_zero: bool) -> Duration {
    let range = if allow_zero { "from 0 to 3600" } else { "greater than 0 and at most 3600" };
    let ok = |s: &f64| s.is_finite() && *s <= 3600.0 && if allow_zero { *s >= 0.0 } else { *s > 0.0 };
    let secs = c.get(key, raw, &format!("must be a number of seconds {range}"), ok);
    Duration::from_secs_f64(secs.unwrap_or(default))
}

/// The `headers` map; each bad entry is an error under `headers.NAME`.
fn parse_headers(c: &mut Checked, m: &Mapping) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (k, v) in m {
        let Some(name) = k.as_str() else {
            c.push("headers", format!("must have strings as header names, found {}", params::show(k)));
            continue;
        };
        let key = format!("headers.{name}");
        let value = c.get(&key, Some(Raw::from(v.clone())), "must have a string value", |_| true);
        match (HeaderName::from_bytes(name.as_bytes()), value.map(|v: Scalar| HeaderValue::from_str(&v.text()))) {
            (Err(_), _) => c.push(&key, "is not a valid header name"),
            (Ok(n), _) if RESERVED_HEADERS.contains(&n.as_str()) => {
                c.push(&key, "is set by the handler and cannot be configured")
            }
            (Ok(_), Some(Err(_))) => c.push(&key, "has an invalid value"),
            (Ok(n), Some(Ok(mut value))) => {
                // They may carry credentials: keep them out of Debug output.
                value.set_sensitive(true);
                out.append(n, value);
            }
            (Ok(_), None) => {}
        }
    }
    out
}

/// The HTTP client (and its connection pool) the `webhook` handlers of one
/// [`HandlerContext`] share.
#[derive(Debug)]
pub struct HttpClient(pub reqwest::Client);

/// Dropping the client closes its idle connections.
impl SharedResource for HttpClient {}

impl HttpClient {
    /// `context`'s client, built on first use.
    pub fn of(context: &HandlerContext) -> Result<Arc<HttpClient>, WebhookError> {
        context.resource(|| {
            reqwest::Client::builder()
                .user_agent(concat!("winchester-rs/", env!("CARGO_PKG_VERSION")))
                .build()
                .map(HttpClient)
                .map_err(|e| WebhookError::Client(e.to_string()))
        })
    }
}

/// The JSON document POSTed for a stream.
pub fn stream_document(env: &Env, events: &[Event]) -> serde_json::Value {
    serde_json::json!({
        "stream_id": env.stream_id,
        "stream_name": env.stream_name,
        "action": env.action.as_str(),
        "distinguishing_traits": env.distinguishing_traits.to_plain_json(),
        "events": events.iter().map(Event::to_json).collect::<Vec<_>>(),
    })
}

/// The `webhook` handler: remembers matching events, POSTs them in `commit`
/// with its context's [`HttpClient`].
#[derive(Debug)]
pub struct WebhookHandler {
    config: Arc<WebhookConfig>,
    context: HandlerContext,
    pending: Vec<Event>,
}

impl WebhookHandler {
    /// Builds a handler from its YAML params.
    pub fn from_params(params: &Mapping, context: &HandlerContext) -> Result<WebhookHandler, HandlerConfigError> {
        Ok(WebhookHandler::new(Arc::new(WebhookConfig::from_params(params)?), context))
    }

    /// Builds a handler from an already validated configuration.
    pub fn new(config: Arc<WebhookConfig>, context: &HandlerContext) -> WebhookHandler {
        WebhookHandler { config, context: context.clone(), pending: Vec::new() }
    }

    /// The events that `commit` will send.
    pub fn pending(&self) -> &[Event] {
        &self.pending
    }

    async fn send(&self, env: &Env) -> Result<(), WebhookError> {
        let cfg = &*self.config;
        let url = cfg.url.as_str();
        let body = serde_json::to_vec(&stream_document(env, &self.pending))
            .map_err(|e| WebhookError::Request { url: url.to_string(), message: e.to_string() })?;
        let idem = HeaderValue::from_str(&env.idempotency_key).map_err(|_| WebhookError::Request {
            url: url.to_string(),
            message: "the idempotency key is not a valid header value".into(),
        })?;
        let client = &HttpClient::of(&self.context)?.0;
        let attempts_allowed = cfg.max_retries.saturating_add(1);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result = client
                .post(cfg.url.clone())
                .timeout(cfg.timeout)
                .headers(cfg.headers.clone())
                .header(CONTENT_TYPE, "application/json")
                .header(IDEMPOTENCY_KEY_HEADER, idem.clone())
                .body(body.clone())
                .send()
                .await;
            // (error text, Retry-After) for a retryable failure.
            let (error, retry_after) = match result {
                Ok(resp) => {
                    let status = resp.status();
                    if status.is_success() {
                        tracing::info!(
                            stream_id = env.stream_id,
                            url,
                            status = status.as_u16(),
                            attempt,
                            events = self.pending.len(),
                            "webhook delivered"
                        );
                        return Ok(());
                    }
                    let retry_after = retry_after(resp.headers());
                    if !is_retryable(status) {
                        let text = resp.text().await.unwrap_or_default();
                        return Err(WebhookError::Rejected {
                            url: url.to_string(),
                            status: status.as_u16(),
                            body: snippet(&text),
                        });
                    }
                    (format!("HTTP {status}"), retry_after)
                }
                Err(e) if e.is_timeout() => (format!("timed out after {:?}", cfg.timeout), None),
                Err(e) => (format!("request error: {}", error_chain(&e)), None),
            };
            if attempt >= attempts_allowed {
                return Err(WebhookError::GaveUp { url: url.to_string(), attempts: attempt, last: error });
            }
            let wait = retry_after.unwrap_or_else(|| cfg.backoff_for(attempt - 1)).min(MAX_BACKOFF);
            tracing::warn!(
                stream_id = env.stream_id,
                url,
                attempt,
                wait_ms = wait.as_millis() as u64,
                "webhook attempt failed ({error}); retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

fn is_retryable(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS
}

/// `Retry-After` in its delay-seconds form.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    v.parse::<u64>().ok().map(|s| Duration::from_secs(s).min(MAX_BACKOFF))
}

fn snippet(text: &str) -> String {
    let t = text.trim();
    let mut s: String = t.chars().take(BODY_SNIPPET_CHARS).collect();
    if t.chars().count() > BODY_SNIPPET_CHARS {
        s.push_str("...");
    }
    if s.is_empty() {
        s.push_str("(empty body)");
    }
    s
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[async_trait]
impl Handler for WebhookHandler {
    async fn handle_events(&mut self, events: Vec<Event>, _env: &mut Env) -> Result<Vec<Event>, HandlerError> {
        let filter = &self.config.event_types;
        self.pending = events.iter().filter(|e| filter.matches(&e.event_type)).cloned().collect();
        Ok(events)
    }

    async fn commit(&mut self, env: &Env) -> Result<(), HandlerError> {
        if self.pending.is_empty() {
            tracing::debug!(stream_id = env.stream_id, "webhook: no matching events; nothing sent");
            return Ok(());
        }
        self.send(env).await.map_err(|e| {
            tracing::error!(stream_id = env.stream_id, "{e}");
            Box::new(e) as HandlerError
        })
    }

    async fn rollback(&mut self, _env: &Env) -> Result<(), HandlerError> {
        self.pending.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap as AxHeaders, StatusCode as AxStatus};
    use axum::response::{IntoResponse, Response};
    use std::collections::{BTreeMap, VecDeque};
    use std::sync::Mutex;
    use winchester::storage::Action;
    use winchester_core::trigger::DistValue;
    use winchester_core::{DistTraits, TraitValue};

    /// One scripted reply: status, extra headers, delay before answering.
    #[derive(Clone)]
    struct Reply {
        status: u16,
        headers: Vec<(&'static str, &'static str)>,
        delay: Duration,
        body: &'static str,
    }

    fn reply(status: u16) -> Reply {
        Reply { status, headers: vec![], delay: Duration::ZERO, body: "" }
    }

    #[derive(Default)]
    struct Server {
        script: Mutex<VecDeque<Reply>>,
        seen: Mutex<Vec<(AxHeaders, Bytes)>>,
    }

    impl Server {
        fn count(&self) -> usize {
            self.seen.lock().unwrap().len()
        }
    }

    async fn endpoint(State(s): State<Arc<Server>>, headers: AxHeaders, body: Bytes) -> Response {
        s.seen.lock().unwrap().push((headers, body));
        let r = {
            let mut q = s.script.lock().unwrap();
            if q.len() > 1 {
                q.pop_front().unwrap()
            } else {
                q.front().cloned().unwrap_or_else(|| reply(200))
            }
        };
        tokio::time::sleep(r.delay).await;
        let mut resp = (AxStatus::from_u16(r.status).unwrap(), r.body).into_response();
        for (k, v) in r.headers {
            resp.headers_mut().insert(k, v.parse().unwrap());
        }
        resp
    }

    /// Starts a server on 127.0.0.1:0 answering POST /hook with `script` (the last reply repeats).
    async fn serve(script: Vec<Reply>) -> (String, Arc<Server>) {
        let state = Arc::new(Server { script: Mutex::new(script.into()), seen: Mutex::default() });
        let app = axum::Router::new().route("/hook", axum::routing::post(endpoint)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        (format!("http://{addr}/hook"), state)
    }

    fn params(yaml: &str) -> Mapping {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn handler(url: &str, extra: &str) -> WebhookHandler {
        WebhookHandler::from_params(&params(&format!("url: {url}\nbackoff: 0.01\n{extra}")), &HandlerContext::new())
            .unwrap()
    }

    fn env() -> Env {
        let mut dt = BTreeMap::new();
        dt.insert("instance_id".to_string(), DistValue::Value(TraitValue::String("i-1".into())));
        Env {
            stream_id: 42,
            stream_name: "test_trigger".into(),
            action: Action::Fire,
            distinguishing_traits: DistTraits(dt),
            idempotency_key: "fire-42-abc".into(),
            values: BTreeMap::new(),
        }
    }

    fn event(id: &str, ty: &str) -> Event {
        let mut traits = BTreeMap::new();
        traits.insert("instance_id".to_string(), TraitValue::String("i-1".into()));
        traits.insert("memory_mb".to_string(), TraitValue::Int(512));
        Event {
            message_id: id.into(),
            event_type: ty.into(),
            timestamp: chrono::DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z").unwrap().into(),
            traits,
        }
    }

    async fn run(h: &mut WebhookHandler, env: &mut Env, events: Vec<Event>) -> Result<(), HandlerError> {
        let out = h.handle_events(events.clone(), env).await.unwrap();
        assert_eq!(out, events, "handle_events must return its input unchanged");
        h.commit(env).await
    }

    #[tokio::test]
    async fn body_shape_and_headers() {
        let (url, srv) = serve(vec![reply(200)]).await;
        let mut env = env();
        let events = vec![event("m1", "compute.instance.create.end"), event("m2", "compute.instance.exists")];
        for _ in 0..2 {
            let mut h = handler(&url, "headers:\n  X-Api-Key: secret\n  X-Num: 5\n");
            run(&mut h, &mut env, events.clone()).await.unwrap();
        }
        let seen = srv.seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        let (headers, body) = &seen[0];
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["idempotency-key"], "fire-42-abc");
        assert_eq!(headers["x-api-key"], "secret");
        assert_eq!(headers["x-num"], "5");
        assert_eq!(seen[1].0["idempotency-key"], headers["idempotency-key"]);
        let doc: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(
            doc,
            serde_json::json!({
                "stream_id": 42,
                "stream_name": "test_trigger",
                "action": "fire",
                "distinguishing_traits": {"instance_id": "i-1"},
                "events": [
                    {"message_id": "m1", "event_type": "compute.instance.create.end",
                     "timestamp": "2026-11-23T10:00:00Z", "instance_id": "i-1", "memory_mb": 512},
                    {"message_id": "m2", "event_type": "compute.instance.exists",
                     "timestamp": "2026-11-23T10:00:00Z", "instance_id": "i-1", "memory_mb": 512},
                ]
            })
        );
        assert_eq!(seen[1].1, *body);
    }

    #[tokio::test]
    async fn expire_action_and_event_type_filter() {
        let (url, srv) = serve(vec![reply(204)]).await;
        let mut env = env();
        env.action = Action::Expire;
        let mut h = handler(&url, "event_types: ['compute.*', '!compute.instance.exists']\n");
        let events = vec![event("m1", "compute.instance.create.end"), event("m2", "compute.instance.exists")];
        run(&mut h, &mut env, events).await.unwrap();
        let seen = srv.seen.lock().unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&seen[0].1).unwrap();
        assert_eq!(doc["action"], "expire");
        let ids: Vec<_> = doc["events"].as_array().unwrap().iter().map(|e| e["message_id"].clone()).collect();
        assert_eq!(ids, vec![serde_json::json!("m1")]);
    }

    #[tokio::test]
    async fn nothing_matching_sends_nothing() {
        let (url, srv) = serve(vec![reply(200)]).await;
        let mut h = handler(&url, "event_types: foo.*\n");
        run(&mut h, &mut env(), vec![event("m1", "bar")]).await.unwrap();
        assert_eq!(srv.count(), 0);
    }

    #[tokio::test]
    async fn handle_events_and_rollback_send_nothing() {
        let (url, srv) = serve(vec![reply(200)]).await;
        let mut h = handler(&url, "");
        let mut env = env();
        let events = vec![event("m1", "a")];
        let out = h.handle_events(events.clone(), &mut env).await.unwrap();
        assert_eq!(out, events);
        assert_eq!(h.pending().len(), 1);
        h.rollback(&env).await.unwrap();
        assert!(h.pending().is_empty());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(srv.count(), 0);
    }

    #[tokio::test]
    async fn retries_500_then_succeeds() {
        let (url, srv) = serve(vec![reply(500), reply(503), reply(200)]).await;
        let mut h = handler(&url, "");
        run(&mut h, &mut env(), vec![event("m1", "a")]).await.unwrap();
        assert_eq!(srv.count(), 3);
        let seen = srv.seen.lock().unwrap();
        assert!(seen.iter().all(|(h, _)| h["idempotency-key"] == "fire-42-abc"));
    }

    #[tokio::test]
    async fn gives_up_after_max_retries() {
        let (url, srv) = serve(vec![reply(502)]).await;
        let mut h = handler(&url, "max_retries: 2\n");
        let err = run(&mut h, &mut env(), vec![event("m1", "a")]).await.unwrap_err().to_string();
        assert_eq!(srv.count(), 3);
        assert!(err.contains("after 3 attempts") && err.contains("502") && err.contains(&url), "{err}");
    }

    #[tokio::test]
    async fn no_retry_on_400() {
        let mut r = reply(400);
        r.body = "bad payload: missing field";
        let (url, srv) = serve(vec![r, reply(200)]).await;
        let mut h = handler(&url, "");
        let err = run(&mut h, &mut env(), vec![event("m1", "a")]).await.unwrap_err().to_string();
        assert_eq!(srv.count(), 1);
        assert!(err.contains(&url) && err.contains("400") && err.contains("bad payload"), "{err}");
    }

    #[tokio::test]
    async fn retries_429_and_honours_retry_after() {
        let mut r = reply(429);
        r.headers.push(("retry-after", "1"));
        let (url, srv) = serve(vec![r, reply(408), reply(200)]).await;
        let mut h = handler(&url, "");
        let start = std::time::Instant::now();
        run(&mut h, &mut env(), vec![event("m1", "a")]).await.unwrap();
        assert_eq!(srv.count(), 3);
        assert!(start.elapsed() >= Duration::from_millis(950), "Retry-After ignored: {:?}", start.elapsed());
    }

    #[tokio::test]
    async fn timeout_is_retried_then_fails() {
        let mut slow = reply(200);
        slow.delay = Duration::from_secs(3);
        let (url, srv) = serve(vec![slow]).await;
        let mut h = handler(&url, "timeout: 0.2\nmax_retries: 1\n");
        let start = std::time::Instant::now();
        let err = run(&mut h, &mut env(), vec![event("m1", "a")]).await.unwrap_err().to_string();
        assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
        assert!(err.contains("timed out") && err.contains("after 2 attempts"), "{err}");
        assert_eq!(srv.count(), 2);
    }

    #[tokio::test]
    async fn connection_refused_is_retried() {
        // Bind then drop a listener to get a port nobody listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut h = handler(&format!("http://127.0.0.1:{port}/hook"), "max_retries: 1\n");
        let err = run(&mut h, &mut env(), vec![event("m1", "a")]).await.unwrap_err().to_string();
        assert!(err.contains("after 2 attempts") && err.contains("request error"), "{err}");
    }

    #[test]
    fn defaults() {
        let c = WebhookConfig::from_params(&params("url: https://example.com/x")).unwrap();
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(c.max_retries, 3);
        assert_eq!(c.backoff, Duration::from_millis(500));
        assert!(c.headers.is_empty());
        let c = WebhookConfig::from_params(&params("url: http://x/\nheaders: {Authorization: Bearer s3cret}")).unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(c.event_types.is_catch_all());
        assert_eq!(c.backoff_for(0), Duration::from_millis(500));
        assert_eq!(c.backoff_for(1), Duration::from_secs(1));
        assert_eq!(c.backoff_for(3), Duration::from_secs(4));
        assert_eq!(c.backoff_for(20), MAX_BACKOFF);
    }

    #[test]
    fn bad_params_rejected() {
        let err = |y: &str| WebhookConfig::from_params(&params(y)).unwrap_err().to_string();
        assert!(err("timeout: 5").contains("missing required param \"url\""));
        assert!(err("url: not a url").contains("\"url\""));
        assert!(err("url: ftp://example.com/").contains("http or https"));
        assert!(err("url: [1]").contains("\"url\""));
        assert!(err("url: http://x/\nretries: 3").contains("unknown param \"retries\""));
        assert!(err("url: http://x/\ntimeout: 0").contains("\"timeout\""));
        assert!(err("url: http://x/\ntimeout: abc").contains("\"timeout\""));
        assert!(err("url: http://x/\nbackoff: -1").contains("\"backoff\""));
        assert!(err("url: http://x/\nmax_retries: -1").contains("\"max_retries\""));
        assert!(err("url: http://x/\nmax_retries: 1.5").contains("\"max_retries\""));
        assert!(err("url: http://x/\nheaders: [a]").contains("\"headers\""));
        assert!(err("url: http://x/\nheaders: {'bad name': x}").contains("not a valid header name"));
        assert!(err("url: http://x/\nheaders: {Idempotency-Key: x}").contains("set by the handler"));
        assert!(err("url: http://x/\nevent_types: [1]").contains("\"event_types\""));
        assert!(err("url: http://x/\nevent_types: ['[']").contains("\"event_types\""));
    }

    #[tokio::test]
    async fn handlers_of_a_context_share_its_client() {
        let (a, b) = (HandlerContext::new(), HandlerContext::new());
        let client = HttpClient::of(&a).unwrap();
        assert!(Arc::ptr_eq(&client, &HttpClient::of(&a.clone()).unwrap()));
        assert!(!Arc::ptr_eq(&client, &HttpClient::of(&b).unwrap()));
        // A delivery uses its context's client (made on first use).
        let (url, srv) = serve(vec![reply(200)]).await;
        let c = HandlerContext::new();
        let mut h = WebhookHandler::from_params(&params(&format!("url: {url}")), &c).unwrap();
        assert!(c.get::<HttpClient>().is_none());
        run(&mut h, &mut env(), vec![event("m1", "a")]).await.unwrap();
        assert!(c.get::<HttpClient>().is_some());
        assert_eq!(srv.count(), 1);
        c.shutdown().await;
        assert!(c.get::<HttpClient>().is_none());
    }

    #[test]
    fn snippet_is_bounded() {
        let long = "x".repeat(1000);
        assert_eq!(snippet(&long).len(), BODY_SNIPPET_CHARS + 3);
        assert_eq!(snippet(""), "(empty body)");
    }
}
