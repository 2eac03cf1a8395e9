//! Console sessions: a random id in an HttpOnly, SameSite=Strict cookie; the
//! server keeps, per id, whether the token was given and the CSRF token of its
//! forms. The API token itself never leaves the login form's POST.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::ApiState;

/// Name of the session cookie.
pub const COOKIE: &str = "winchester_session";
/// Sessions unused this long are forgotten.
pub const IDLE: Duration = Duration::from_secs(12 * 3600);
/// Most sessions kept; the least recently used go first.
pub const MAX_SESSIONS: usize = 10_000;

struct Session {
    csrf: String,
    authed: bool,
    seen: Instant,
    flash: Option<String>,
}

/// The server-side session table, shared by the console's handlers.
#[derive(Clone, Default)]
pub struct Sessions(Arc<Mutex<HashMap<String, Session>>>);

fn random_hex() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new session; returns its id.
    fn create(&self, authed: bool) -> (String, String) {
        let mut map = self.lock();
        let now = Instant::now();
        map.retain(|_, s| now.duration_since(s.seen) < IDLE);
        while map.len() >= MAX_SESSIONS {
            let Some(oldest) = map.iter().min_by_key(|(_, s)| s.seen).map(|(k, _)| k.clone()) else { break };
            map.remove(&oldest);
        }
        let (id, csrf) = (random_hex(), random_hex());
        map.insert(id.clone(), Session { csrf: csrf.clone(), authed, seen: now, flash: None });
        (id, csrf)
    }

    fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Leaves a message for the session's next page.
    pub fn flash(&self, id: &str, msg: String) {
        if let Some(s) = self.lock().get_mut(id) {
            s.flash = Some(msg);
        }
    }
}

/// The caller's session (made on the first visit) and what it may do.
pub struct Ctx {
    /// Session id.
    pub id: String,
    /// CSRF token of this session's forms.
    pub csrf: String,
    /// The token was given (or none is configured).
    pub authed: bool,
    /// The server is read-only.
    pub read_only: bool,
    /// A token is configured (a login form makes sense).
    pub token_set: bool,
    /// Message left by the previous action.
    pub flash: Option<String>,
    /// Set-Cookie to send (a new session).
    pub set_cookie: Option<HeaderValue>,
    sessions: Sessions,
}

fn cookie_value(id: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict")).ok()
}

impl FromRequestParts<ApiState> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &ApiState) -> Result<Ctx, ApiError> {
        let sessions = parts
            .extensions
            .get::<Sessions>()
            .cloned()
            .ok_or_else(|| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "console sessions not set up"))?;
        let given = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().strip_prefix(COOKIE).and_then(|r| r.strip_prefix('=')))
            .map(str::to_string)
            .next();
        let found = given.and_then(|id| {
            let mut map = sessions.lock();
            let s = map.get_mut(&id)?;
            if s.seen.elapsed() >= IDLE {
                return None;
            }
            s.seen = Instant::now();
            Some((id, s.csrf.clone(), s.authed, s.flash.take()))
        });
        let (id, csrf, authed, flash, set_cookie) = match found {
            Some((id, csrf, authed, flash)) => (id, csrf, authed, flash, None),
            None => {
                let authed = st.token.is_none();
                let (id, csrf) = sessions.create(authed);
                let c = cookie_value(&id);
                (id, csrf, authed, None, c)
            }
        };
        Ok(Ctx {
            id,
            csrf,
            authed,
            read_only: st.read_only,
            token_set: st.token.is_some(),
            flash,
            set_cookie,
            sessions,
        })
    }
}

impl Ctx {
    /// Whether action buttons work for this session.
    pub fn can_act(&self) -> bool {
        self.authed && !self.read_only
    }

    /// Checks a form's CSRF token against the session's (403).
    pub fn check_csrf(&self, csrf: Option<&str>) -> Result<(), ApiError> {
        if csrf.is_some_and(|c| bool::from(c.as_bytes().ct_eq(self.csrf.as_bytes()))) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "the form's CSRF token is missing or stale; reload the page and try again",
            ))
        }
    }

    /// Checks a form post: the CSRF token (403), the login (401), read-only (403).
    pub fn check_post(&self, csrf: Option<&str>) -> Result<(), ApiError> {
        self.check_csrf(csrf)?;
        if !self.authed {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "actions need the API token: log in first"));
        }
        if self.read_only {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "the server is read-only (api.read_only)"));
        }
        Ok(())
    }

    /// Checks `token` against the server's; on success replaces this session by
    /// a new logged-in one (a new id, so a planted cookie is worthless).
    pub fn login(&mut self, st: &ApiState, token: &str) -> bool {
        let Some(want) = &st.token else { return true };
        if !bool::from(token.as_bytes().ct_eq(want.as_bytes())) {
            return false;
        }
        self.sessions.remove(&self.id);
        let (id, csrf) = self.sessions.create(true);
        self.set_cookie = cookie_value(&id);
        (self.id, self.csrf, self.authed) = (id, csrf, true);
        true
    }

    /// Forgets the session.
    pub fn logout(&mut self) {
        self.sessions.remove(&self.id);
        self.set_cookie =
            HeaderValue::from_str(&format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")).ok();
    }

    /// Leaves a message for the next page.
    pub fn flash(&self, msg: String) {
        self.sessions.flash(&self.id, msg);
    }
}
