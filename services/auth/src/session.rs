//! Sign-in sessions and authorization requests in progress, kept in memory.
//!
//! A session lasts `session_seconds` after sign-in; an authorization request in progress
//! lasts ten minutes. Both are lost when the process restarts, which only means the user
//! signs in again; grants and tokens are in the auth store.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hearth_smart::scope::ScopeSet;
use parking_lot::Mutex;

use hearth_auth_store::{App, Launch};

/// How long an authorization request may stay on the sign-in, picker and approval pages.
const PENDING_TTL: Duration = Duration::from_secs(600);

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct Login {
    pub session_id: String,
    pub user_id: String,
    pub expires: Instant,
}

/// A validated authorization request waiting for the user.
#[derive(Debug, Clone)]
pub struct Pending {
    pub id: String,
    /// Echoed in every form of the flow, so another site cannot post them.
    pub csrf: String,
    pub created: Instant,
    pub site_id: String,
    pub app: App,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub scope_requested: String,
    pub scopes: ScopeSet,
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub launch: Option<Launch>,
    /// The session that signed in for this request, once one did.
    pub session_id: Option<String>,
    pub user_id: Option<String>,
    /// The patient chosen in the picker, for standalone launches.
    pub patient: Option<String>,
}

#[derive(Default)]
pub struct Sessions {
    logins: Mutex<HashMap<String, Login>>,
    pending: Mutex<HashMap<String, Pending>>,
}

impl Sessions {
    pub fn start_login(&self, user_id: &str, lifetime: Duration) -> Login {
        let login = Login {
            session_id: hearth_smart::secret::generate_token(32),
            user_id: user_id.to_string(),
            expires: Instant::now() + lifetime,
        };
        let mut logins = self.logins.lock();
        logins.retain(|_, l| l.expires > Instant::now());
        logins.insert(login.session_id.clone(), login.clone());
        login
    }

    pub fn login(&self, session_id: &str) -> Option<Login> {
        let logins = self.logins.lock();
        logins
            .get(session_id)
            .filter(|l| l.expires > Instant::now())
            .cloned()
    }

    pub fn end_login(&self, session_id: &str) {
        self.logins.lock().remove(session_id);
    }

    pub fn put_pending(&self, pending: Pending) {
        let mut all = self.pending.lock();
        all.retain(|_, p| p.created.elapsed() < PENDING_TTL);
        all.insert(pending.id.clone(), pending);
    }

    /// Returns the request if it exists, is fresh and `csrf` matches.
    pub fn pending(&self, id: &str, csrf: &str) -> Option<Pending> {
        let all = self.pending.lock();
        all.get(id)
            .filter(|p| p.created.elapsed() < PENDING_TTL)
            .filter(|p| crate::same_secret(&p.csrf, csrf))
            .cloned()
    }

    pub fn take_pending(&self, id: &str) -> Option<Pending> {
        self.pending.lock().remove(id)
    }
}
