//! `winchester serve`: the HTTP API over a winchester database.
//!
//! Quincy v1 compatible (paths, parameter names, paging marks; the stream
//! objects also carry quincy's `name`), plus bulk actions, trigger counts, a
//! live tail (server-sent events), health checks, `/metrics` and an OpenAPI
//! document generated from the handlers' annotations (the router is built from
//! the same annotations, so the document cannot miss a route).
//!
//! Layout:
//! - [`router`], [`ApiState`], [`serve`]: the server.
//! - `handlers`: one function per endpoint.
//! - [`ingest`]: `POST /v1/events` (events in, answered after their commit).
//! - `params`: query parameters and bodies -> storage filters (400s name the parameter).
//! - `error`: JSON errors.
//! - `console`: the operator console (HTML at `/`).
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod console;
mod counts;
pub mod error;
mod handlers;
pub mod ingest;
pub mod params;

use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::future::BoxFuture;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use winchester::tail::{Tail, TailItem};
use winchester::TriggerManager;
use winchester_core::distiller::Distiller;
use winchester_core::{Clock, SystemClock, TriggerSet};
use winchester_storage::replica::ReadRouter;
use winchester_storage::{QueryStore, Storage};

pub use error::ApiError;

/// Checks that the database is reachable and its schema current (`/readyz`).
pub type ReadyCheck = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// Items the shared tail keeps for slow clients before dropping them.
pub const TAIL_BUFFER: usize = 1024;
/// Longest time a request (other than the tail) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest request body.
pub const BODY_LIMIT: usize = 64 * 1024;
/// Streams changed per page by the bulk actions.
pub const BULK_PAGE: u32 = 500;

/// What every handler shares.
#[derive(Clone)]
pub struct ApiState {
    /// The database.
    pub storage: Arc<dyn Storage>,
    /// The loaded trigger definitions (`/v1/triggers`); a reload swaps them.
    pub triggers: winchester::live::Live<TriggerSet>,
    /// Bearer token required by mutating requests, if any.
    pub token: Option<String>,
    /// Refuse every mutating request.
    pub read_only: bool,
    /// `/readyz`.
    pub ready: ReadyCheck,
    /// The stream counts the overview and `/v1/triggers` share.
    pub(crate) counts: Arc<counts::SharedCounts>,
    /// `POST /v1/events`.
    pub ingest: ingest::Ingest,
    /// The hot standby reads go to while its lag allows (`database.read_url`;
    /// see [`ApiState::reads`]).
    pub replica: Option<Arc<ReadRouter>>,
    tail: broadcast::Sender<Arc<TailItem>>,
    stopping: watch::Receiver<bool>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState").field("read_only", &self.read_only).field("token", &self.token.is_some()).finish()
    }
}

impl ApiState {
    /// State for a server; starts the shared tail reader (one per server, fanned
    /// out to every `/v1/tail` client), which ends when `stopping` turns true.
    pub fn new(
        storage: Arc<dyn Storage>,
        triggers: Arc<TriggerSet>,
        token: Option<String>,
        read_only: bool,
        ready: ReadyCheck,
        stopping: watch::Receiver<bool>,
    ) -> ApiState {
        let (tx, _) = broadcast::channel(TAIL_BUFFER);
        tokio::spawn(run_tail(storage.clone(), tx.clone(), stopping.clone()));
        let manager = TriggerManager::new(storage.clone(), triggers.clone(), Arc::new(SystemClock) as Arc<dyn Clock>)
            .with_source("http");
        let ingest = ingest::Ingest {
            manager,
            max_body: winchester_core::api_config::DEFAULT_INGEST_MAX_BODY,
            queue_limit: winchester_core::api_config::DEFAULT_INGEST_QUEUE_LIMIT,
        };
        let triggers = winchester::live::Live::new(triggers);
        ApiState {
            storage,
            triggers,
            token,
            read_only,
            ready,
            counts: Arc::default(),
            ingest,
            replica: None,
            tail: tx,
            stopping,
        }
    }

    /// The same state with `POST /v1/events` saving through `manager` (its
    /// clock, distiller and source), within these limits.
    pub fn with_ingest(mut self, manager: TriggerManager, max_body: usize, queue_limit: usize) -> ApiState {
        self.ingest = ingest::Ingest { manager, max_body, queue_limit };
        self
    }

    /// Swaps in reloaded definitions: `/v1/triggers` lists them, and the next
    /// `POST /v1/events` matches (and distills) with them.
    pub fn set_definitions(&self, triggers: Arc<TriggerSet>, distiller: Option<Arc<Distiller>>) {
        self.ingest.manager.set_definitions(triggers.clone(), distiller);
        self.triggers.set(triggers);
    }

    /// Sends the reads (see [`ApiState::reads`]) through `router`.
    pub fn with_replica(self, router: Arc<ReadRouter>) -> ApiState {
        ApiState { replica: Some(router), ..self }
    }

    /// Where reads that no write follows go (listings, counts, event
    /// queries, console pages): the hot standby while its lag allows, else
    /// the primary. Writes, the reads a write depends on and the tail use
    /// [`ApiState::storage`], the primary.
    pub fn reads(&self) -> &dyn QueryStore {
        match &self.replica {
            Some(router) => router.as_ref(),
            None => self.storage.queries(),
        }
    }

    pub(crate) fn subscribe(&self) -> (broadcast::Receiver<Arc<TailItem>>, watch::Receiver<bool>) {
        (self.tail.subscribe(), self.stopping.clone())
    }
}

/// Reads new rows and broadcasts them. Sending never waits: a client that
/// falls [`TAIL_BUFFER`] items behind is dropped by its own stream.
async fn run_tail(
    storage: Arc<dyn Storage>,
    tx: broadcast::Sender<Arc<TailItem>>,
    mut stopping: watch::Receiver<bool>,
) {
    // The tail reads the database all the time, so it is what notices an
    // outage for the server: logged once when it starts and once when it
    // ends (requests meanwhile answer 503 without a warning each).
    let mut retry = winchester_storage::RetryPolicy::new();
    let mut tail = None;
    while !*stopping.borrow() {
        let result = match tail.as_mut() {
            None => Tail::start(storage.clone()).await.map(|t| {
                tail = Some(t);
                vec![]
            }),
            Some(t) => tokio::select! {
                r = t.next() => r,
                _ = stopping.changed() => break,
            },
        };
        match result {
            Ok(items) => {
                retry.succeeded();
                for item in items {
                    let _ = tx.send(Arc::new(item));
                }
            }
            Err(e) => {
                let wait = if e.is_retryable() {
                    retry.failed("live tail", &e)
                } else {
                    tracing::warn!(error = %e, "Tail read failed; retrying in 1s.");
                    Duration::from_secs(1)
                };
                tokio::select! { _ = tokio::time::sleep(wait) => {}, _ = stopping.changed() => {} }
            }
        }
    }
}

/// The OpenAPI document's header; the paths come from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(title = "winchester-rs API", description = "Quincy v1 compatible API of winchester-rs, plus bulk actions, trigger counts, a live tail and health checks."),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// The routes and their OpenAPI document, from the same annotations.
fn routes() -> (Router<ApiState>, Router<ApiState>, utoipa::openapi::OpenApi) {
    use handlers::*;
    let (api, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(list_streams))
        .routes(routes!(count_streams))
        .routes(routes!(get_stream, reset_stream, delete_stream))
        .routes(routes!(bulk_retry))
        .routes(routes!(bulk_purge))
        .routes(routes!(list_events, crate::ingest::post_events))
        .routes(routes!(count_events))
        .routes(routes!(get_event))
        .routes(routes!(list_triggers))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi))
        .split_for_parts();
    let (tail, tail_doc) = OpenApiRouter::new().routes(routes!(tail)).split_for_parts();
    doc.merge(tail_doc);
    (api, tail, doc)
}

/// The OpenAPI document of every endpoint.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    routes().2
}

/// The whole application: auth, timeouts, body limit and compression on
/// everything but the tail (a long-lived stream). `POST /v1/events` reads its
/// body with its own limit (`api.ingest_max_body_bytes`).
pub fn router(state: ApiState) -> Router {
    use tower_http::compression::CompressionLayer;
    use tower_http::timeout::TimeoutLayer;
    let (api, tail, _) = routes();
    let api = api
        .layer(CompressionLayer::new())
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, REQUEST_TIMEOUT));
    api.merge(tail)
        .fallback(|| async { ApiError::not_found("no such endpoint; see /v1/openapi.json") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .merge(console::routes())
        .layer(axum::middleware::from_fn_with_state(state.clone(), recount_after_changes))
        .layer(axum::middleware::from_fn(body_limit))
        .with_state(state)
}

/// [`BODY_LIMIT`] on every request but `POST /v1/events`: a larger declared
/// length gets 413 at once, a body that turns out larger fails to read (413
/// from the extractor).
async fn body_limit(req: Request, next: Next) -> Response {
    if is_ingest(&req) {
        return next.run(req).await;
    }
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than {BODY_LIMIT} bytes"))
            .into_response();
    }
    next.run(req.map(|b| axum::body::Body::new(http_body_util::Limited::new(b, BODY_LIMIT)))).await
}

/// Whether `req` is ingest's `POST /v1/events`.
fn is_ingest(req: &Request) -> bool {
    req.method() == Method::POST && req.uri().path() == "/v1/events"
}

/// Mutating requests: refused when read-only (403), need the bearer token
/// when one is set (401; compared in constant time).
async fn guard(axum::extract::State(st): axum::extract::State<ApiState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    if let Some(token) = &st.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        use subtle::ConstantTimeEq;
        if !bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
            let mut r = ApiError::new(StatusCode::UNAUTHORIZED, "this request needs Authorization: Bearer <token>")
                .into_response();
            r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            return r;
        }
    }
    if st.read_only {
        return ApiError::new(StatusCode::FORBIDDEN, "the server is read-only (api.read_only)").into_response();
    }
    next.run(req).await
}

/// After an operator's action (any method but GET, HEAD and OPTIONS, on the
/// API or the console, except ingest's `POST /v1/events`, which changes
/// streams as every other ingester does), the shared stream counts are read
/// afresh on the next request, so an operator sees the effect of their own
/// action at once.
async fn recount_after_changes(
    axum::extract::State(st): axum::extract::State<ApiState>,
    req: Request,
    next: Next,
) -> Response {
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) && !is_ingest(&req);
    let response = next.run(req).await;
    if changes {
        st.counts.forget().await;
    }
    response
}

/// Serves on `listener` until `shutdown` completes (then stops accepting,
/// ends tails and finishes the requests in hand).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    stop: watch::Sender<bool>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let app = router(state);
    // Small answers (one event's result) go out at once, not after the
    // client's delayed acknowledgement of the previous segment.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "Cannot set TCP_NODELAY.");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop.send(true);
        })
        .await
}
