//! Password checks for the sign-in forms, with a limit on failed attempts per username.
//!
//! After `MAX_FAILURES` failed sign-ins within `LOCK_DURATION`, the username is locked
//! for `LOCK_DURATION` from the last failure, whether or not the user exists, so the
//! reply does not tell an attacker which usernames exist. A correct password while locked
//! is rejected too. The counts are kept in memory, so a restart clears them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hearth_auth_store::User;
use parking_lot::Mutex;

use crate::AuthState;

/// Failed sign-ins that lock a username.
pub const MAX_FAILURES: u32 = 5;
/// How long failures count, and how long a lock lasts after the last one.
pub const LOCK_DURATION: Duration = Duration::from_secs(15 * 60);
/// Usernames tracked at most; past this, entries whose failures expired are dropped.
const MAX_TRACKED: usize = 100_000;

/// Why a sign-in failed, with the message the sign-in page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInError {
    Invalid,
    Locked { minutes: u64 },
}

impl SignInError {
    pub fn message(&self) -> String {
        match self {
            SignInError::Invalid => "The username or password is not correct.".to_string(),
            SignInError::Locked { minutes } => format!(
                "Too many failed sign-ins for this username. It is locked; try again in \
                 {minutes} minute{}.",
                if *minutes == 1 { "" } else { "s" }
            ),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Failed sign-ins per username (in lower case).
#[derive(Default)]
pub struct FailedSignIns {
    entries: Mutex<HashMap<String, Failures>>,
}

impl FailedSignIns {
    /// Returns the time left on the username's lock, if it is locked.
    fn locked_for(&self, username: &str) -> Option<Duration> {
        let entries = self.entries.lock();
        let failures = entries.get(username)?;
        let left = LOCK_DURATION.checked_sub(failures.last.elapsed())?;
        (failures.count >= MAX_FAILURES).then_some(left)
    }

    /// Counts a failure and returns whether it locked the username.
    fn record_failure(&self, username: &str) -> bool {
        let mut entries = self.entries.lock();
        if entries.len() >= MAX_TRACKED {
            entries.retain(|_, f| f.last.elapsed() < LOCK_DURATION);
        }
        let now = Instant::now();
        let failures = entries.entry(username.to_string()).or_insert(Failures {
            count: 0,
            last: now,
        });
        if failures.last.elapsed() >= LOCK_DURATION {
            failures.count = 0;
        }
        failures.count += 1;
        failures.last = now;
        failures.count == MAX_FAILURES
    }

    fn clear(&self, username: &str) {
        self.entries.lock().remove(username);
    }
}

/// Checks a username and password against the stored users and the failure limit.
pub fn verify(state: &AuthState, username: &str, password: &str) -> Result<User, SignInError> {
    let key = username.trim().to_lowercase();
    if let Some(left) = state.failed_sign_ins.locked_for(&key) {
        return Err(SignInError::Locked {
            minutes: left.as_secs().div_ceil(60).max(1),
        });
    }
    let user = match state.store.user_by_username(username) {
        Ok(user) => user.filter(|u| !u.disabled),
        Err(error) => {
            tracing::error!(%error, "loading a user for sign-in failed");
            None
        }
    };
    let verified = user.as_ref().is_some_and(|u| {
        hearth_smart::secret::verify_password(password, &u.registration.password_hash)
            .unwrap_or(false)
    });
    match user.filter(|_| verified) {
        Some(user) => {
            state.failed_sign_ins.clear(&key);
            Ok(user)
        }
        None => {
            if state.failed_sign_ins.record_failure(&key) {
                tracing::warn!(
                    failures = MAX_FAILURES,
                    lock_seconds = LOCK_DURATION.as_secs(),
                    "locked a username after failed sign-ins"
                );
            }
            Err(SignInError::Invalid)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifth_failure_locks_username() {
        let failures = FailedSignIns::default();
        for attempt in 1..MAX_FAILURES {
            assert!(!failures.record_failure("alice"), "attempt {attempt}");
            assert!(failures.locked_for("alice").is_none(), "attempt {attempt}");
        }

        assert!(failures.record_failure("alice"));

        let left = failures.locked_for("alice").expect("alice is locked");
        assert!(left > LOCK_DURATION - Duration::from_secs(5), "{left:?}");
        assert!(failures.locked_for("bob").is_none());
    }

    #[test]
    fn success_clears_failures() {
        let failures = FailedSignIns::default();
        for _ in 1..MAX_FAILURES {
            failures.record_failure("alice");
        }

        failures.clear("alice");

        assert!(!failures.record_failure("alice"));
        assert!(failures.locked_for("alice").is_none());
    }

    #[test]
    fn locked_message_names_minutes() {
        assert!(
            SignInError::Locked { minutes: 15 }
                .message()
                .contains("try again in 15 minutes")
        );
        assert!(
            SignInError::Locked { minutes: 1 }
                .message()
                .contains("in 1 minute.")
        );
    }
}
