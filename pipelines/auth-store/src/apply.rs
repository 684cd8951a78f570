//! Applying `hearth.auth` events to the store.
//!
//! Most events set configuration. Four are requests that the store decides in log order,
//! so every replica decides them the same way:
//! - `CodeRedeemed`: the grant's code must be unused, unexpired and its grant live. A code
//!   presented a second time revokes the grant.
//! - `TokenRefreshed`: the presented refresh token must be the grant's current one. A
//!   rotated refresh token presented again revokes the grant.
//! - `TokenIssued` and `TokenRefreshed`: the client assertion's `jti`, when the client
//!   sent one, must be unused.
//! - `UserRegistered`: the username must not belong to another user.
//!
//! Expiry is compared with the event's `occurred_at`, never the clock of the replica.

use hearth_log::Record;
use hearth_projection::{Error as ProjectionError, Projection, StoreState};
use hearth_schemas::{AnyEvent, TokenKind};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::models::{App, IssuedToken, Site, User};
use crate::schema;

/// What the store decided for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    Applied,
    Refused(Refusal),
    Undecodable(String),
}

/// Why a request event was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    UnknownGrant,
    GrantRevoked,
    CodeExpired,
    /// The code was redeemed before; the grant is now revoked.
    CodeReplayed,
    UnknownRefreshToken,
    RefreshExpired,
    /// The refresh token was rotated before; the grant is now revoked.
    RefreshReused,
    /// The client assertion's `jti` was used before.
    AssertionReplayed,
    UsernameTaken,
    UnknownApp,
}

/// The auth store projection of `hearth.auth`.
#[derive(Debug, Default)]
pub struct AuthProjection;

impl Projection for AuthProjection {
    type Outcome = AuthOutcome;
    type Prepared = Result<AnyEvent, String>;

    fn name(&self) -> &'static str {
        "auth"
    }

    fn migrate(&mut self, conn: &Connection) -> rusqlite::Result<StoreState> {
        schema::create(conn)?;
        Ok(StoreState::Current)
    }

    fn prepare(record: &Record) -> Self::Prepared {
        hearth_schemas::decode_any(&record.value).map_err(|e| e.to_string())
    }

    fn apply(
        &mut self,
        tx: &Transaction<'_>,
        record: &Record,
        prepared: Self::Prepared,
    ) -> Result<AuthOutcome, ProjectionError> {
        match prepared {
            Ok(event) => Ok(apply_event(tx, &event)?),
            Err(error) => {
                tracing::warn!(offset = record.offset, %error, "skipping an undecodable auth event");
                Ok(AuthOutcome::Undecodable(error))
            }
        }
    }
}

fn to_json(value: &impl serde::Serialize) -> rusqlite::Result<String> {
    serde_json::to_string(value).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn load_app(conn: &Connection, client_id: &str) -> rusqlite::Result<Option<App>> {
    let json: Option<String> = conn
        .prepare_cached("SELECT json FROM apps WHERE client_id = ?1")?
        .query_row([client_id], |row| row.get(0))
        .optional()?;
    Ok(json.and_then(|text| serde_json::from_str(&text).ok()))
}

fn save_app(conn: &Connection, app: &App) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO apps (client_id, json) VALUES (?1, ?2)")?
        .execute(params![app.client_id, to_json(app)?])?;
    Ok(())
}

fn save_site(conn: &Connection, site: &Site) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO sites (site_id, fhir_base_path, json) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![site.site_id, site.fhir_base_path, to_json(site)?])?;
    Ok(())
}

/// Applies one event and returns the decision.
pub(crate) fn apply_event(conn: &Connection, event: &AnyEvent) -> rusqlite::Result<AuthOutcome> {
    match event {
        AnyEvent::AppRegistered(e) => save_app(conn, &App::from_registered(e))?,
        AnyEvent::AppUpdated(e) => match load_app(conn, &e.client_id)? {
            Some(mut app) => {
                app.update(e);
                save_app(conn, &app)?;
            }
            None => return Ok(AuthOutcome::Refused(Refusal::UnknownApp)),
        },
        AnyEvent::AppSecretRotated(e) => match load_app(conn, &e.client_id)? {
            Some(mut app) => {
                app.client_secret_hash = Some(e.client_secret_hash.clone());
                save_app(conn, &app)?;
            }
            None => return Ok(AuthOutcome::Refused(Refusal::UnknownApp)),
        },
        AnyEvent::AppDisabled(e) => set_app_disabled(conn, &e.client_id, true)?,
        AnyEvent::AppEnabled(e) => set_app_disabled(conn, &e.client_id, false)?,
        AnyEvent::SiteRegistered(e) => save_site(conn, &Site::from_registered(e))?,
        AnyEvent::SiteUpdated(e) => save_site(conn, &Site::from_updated(e))?,
        AnyEvent::AppActivated(e) => {
            conn.prepare_cached(
                "INSERT OR IGNORE INTO activations (site_id, client_id) VALUES (?1, ?2)",
            )?
            .execute(params![e.site_id, e.client_id])?;
        }
        AnyEvent::AppDeactivated(e) => {
            conn.prepare_cached("DELETE FROM activations WHERE site_id = ?1 AND client_id = ?2")?
                .execute(params![e.site_id, e.client_id])?;
        }
        AnyEvent::UserRegistered(e) => return register_user(conn, e),
        AnyEvent::UserDisabled(e) => {
            let json: Option<String> = conn
                .prepare_cached("SELECT json FROM users WHERE user_id = ?1")?
                .query_row([&e.user_id], |row| row.get(0))
                .optional()?;
            if let Some(mut user) = json.and_then(|t| serde_json::from_str::<User>(&t).ok()) {
                user.disabled = true;
                conn.prepare_cached("UPDATE users SET json = ?2 WHERE user_id = ?1")?
                    .execute(params![e.user_id, to_json(&user)?])?;
            }
            conn.prepare_cached("DELETE FROM console_sessions WHERE user_id = ?1")?
                .execute([&e.user_id])?;
        }
        AnyEvent::ConsoleSignedIn(e) => {
            // Expired sessions are dropped here, in log order, so every replica keeps the
            // same rows.
            conn.prepare_cached("DELETE FROM console_sessions WHERE expires_at <= ?1")?
                .execute([e.occurred_at])?;
            conn.prepare_cached(
                "INSERT OR REPLACE INTO console_sessions (session_hash, user_id, expires_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![e.session_hash, e.user_id, e.expires_at])?;
        }
        AnyEvent::ConsoleSignedOut(e) => {
            conn.prepare_cached("DELETE FROM console_sessions WHERE session_hash = ?1")?
                .execute([&e.session_hash])?;
        }
        AnyEvent::LaunchCreated(e) => {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO launches (launch_id, expires_at, json) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![e.launch_id, e.expires_at, to_json(e)?])?;
        }
        AnyEvent::AuthorizationGranted(e) => {
            conn.prepare_cached(
                "INSERT OR IGNORE INTO grants (grant_id, site_id, client_id, user_id, code_hash, code_expires_at, created_at, json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                e.grant_id,
                e.site_id,
                e.client_id,
                e.user_id,
                e.code_hash,
                e.code_expires_at,
                e.occurred_at,
                to_json(e)?
            ])?;
        }
        AnyEvent::CodeRedeemed(e) => {
            return redeem_code(conn, &e.grant_id, &e.code_hash, e.occurred_at);
        }
        AnyEvent::TokenIssued(e) => {
            if let Some(jti) = &e.assertion_jti
                && !record_assertion(conn, &e.client_id, jti, e.expires_at)?
            {
                return Ok(AuthOutcome::Refused(Refusal::AssertionReplayed));
            }
            let token = IssuedToken {
                token_id: e.token_id.clone(),
                grant_id: e.grant_id.clone(),
                client_id: e.client_id.clone(),
                site_id: e.site_id.clone(),
                scope: e.scope.clone(),
                expires_at: e.expires_at,
                issued_at: e.occurred_at,
                patient: e.patient.clone(),
                encounter: e.encounter.clone(),
                fhir_user: e.fhir_user.clone(),
                user_id: e.user_id.clone(),
                revoked: false,
            };
            store_token(conn, &token)?;
            if let (Some(grant_id), Some(hash)) = (&e.grant_id, &e.refresh_token_hash) {
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO refresh_tokens (hash, grant_id, current, expires_at) VALUES (?1, ?2, 1, ?3)",
                )?
                .execute(params![hash, grant_id, e.refresh_expires_at])?;
            }
        }
        AnyEvent::TokenRefreshed(e) => return refresh(conn, e),
        AnyEvent::TokenRevoked(e) => {
            if let Some(token_id) = &e.token_id {
                conn.prepare_cached("UPDATE access_tokens SET revoked = 1 WHERE token_id = ?1")?
                    .execute([token_id])?;
            }
            if e.token_kind == TokenKind::Refresh
                && let Some(grant_id) = &e.grant_id
            {
                revoke_grant(conn, grant_id, "REFRESH_TOKEN_REVOKED", e.occurred_at)?;
            }
        }
        AnyEvent::GrantRevoked(e) => {
            let reason = serde_json::to_value(e.reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| "OTHER".to_string());
            revoke_grant(conn, &e.grant_id, &reason, e.occurred_at)?;
        }
        _ => {}
    }
    Ok(AuthOutcome::Applied)
}

fn set_app_disabled(conn: &Connection, client_id: &str, disabled: bool) -> rusqlite::Result<()> {
    if let Some(mut app) = load_app(conn, client_id)? {
        app.disabled = disabled;
        save_app(conn, &app)?;
    }
    Ok(())
}

fn register_user(
    conn: &Connection,
    event: &hearth_schemas::UserRegistered,
) -> rusqlite::Result<AuthOutcome> {
    let owner: Option<String> = conn
        .prepare_cached("SELECT user_id FROM users WHERE username = ?1")?
        .query_row([&event.username], |row| row.get(0))
        .optional()?;
    if owner.is_some_and(|owner| owner != event.user_id) {
        return Ok(AuthOutcome::Refused(Refusal::UsernameTaken));
    }
    let user = User {
        registration: event.clone(),
        disabled: false,
    };
    conn.prepare_cached(
        "INSERT OR REPLACE INTO users (user_id, username, json) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![event.user_id, event.username, to_json(&user)?])?;
    Ok(AuthOutcome::Applied)
}

fn redeem_code(
    conn: &Connection,
    grant_id: &str,
    code_hash: &str,
    now: i64,
) -> rusqlite::Result<AuthOutcome> {
    let row: Option<(String, i64, bool, Option<i64>)> = conn
        .prepare_cached("SELECT code_hash, code_expires_at, code_redeemed, revoked_at FROM grants WHERE grant_id = ?1")?
        .query_row([grant_id], |row| Ok((row.get(0)?, row.get(1)?, row.get::<_, i64>(2)? != 0, row.get(3)?)))
        .optional()?;
    let Some((stored_hash, expires_at, redeemed, revoked_at)) = row else {
        return Ok(AuthOutcome::Refused(Refusal::UnknownGrant));
    };
    if stored_hash != code_hash {
        return Ok(AuthOutcome::Refused(Refusal::UnknownGrant));
    }
    if redeemed {
        revoke_grant(conn, grant_id, "CODE_REPLAY", now)?;
        return Ok(AuthOutcome::Refused(Refusal::CodeReplayed));
    }
    if revoked_at.is_some() {
        return Ok(AuthOutcome::Refused(Refusal::GrantRevoked));
    }
    if now > expires_at {
        return Ok(AuthOutcome::Refused(Refusal::CodeExpired));
    }
    conn.prepare_cached("UPDATE grants SET code_redeemed = 1 WHERE grant_id = ?1")?
        .execute([grant_id])?;
    Ok(AuthOutcome::Applied)
}

fn refresh(
    conn: &Connection,
    event: &hearth_schemas::TokenRefreshed,
) -> rusqlite::Result<AuthOutcome> {
    let presented: Option<(String, bool, Option<i64>)> = conn
        .prepare_cached("SELECT grant_id, current, expires_at FROM refresh_tokens WHERE hash = ?1")?
        .query_row([&event.previous_refresh_hash], |row| {
            Ok((row.get(0)?, row.get::<_, i64>(1)? != 0, row.get(2)?))
        })
        .optional()?;
    let Some((grant_id, current, expires_at)) = presented else {
        return Ok(AuthOutcome::Refused(Refusal::UnknownRefreshToken));
    };
    if grant_id != event.grant_id {
        return Ok(AuthOutcome::Refused(Refusal::UnknownRefreshToken));
    }
    if grant_revoked(conn, &grant_id)? {
        return Ok(AuthOutcome::Refused(Refusal::GrantRevoked));
    }
    if !current {
        revoke_grant(conn, &grant_id, "REFRESH_REUSE", event.occurred_at)?;
        return Ok(AuthOutcome::Refused(Refusal::RefreshReused));
    }
    if expires_at.is_some_and(|at| event.occurred_at > at) {
        return Ok(AuthOutcome::Refused(Refusal::RefreshExpired));
    }
    if let Some(jti) = &event.assertion_jti
        && !record_assertion(conn, &event.client_id, jti, event.expires_at)?
    {
        return Ok(AuthOutcome::Refused(Refusal::AssertionReplayed));
    }

    conn.prepare_cached("UPDATE refresh_tokens SET current = 0 WHERE hash = ?1")?
        .execute([&event.previous_refresh_hash])?;
    conn.prepare_cached("INSERT OR REPLACE INTO refresh_tokens (hash, grant_id, current, expires_at) VALUES (?1, ?2, 1, ?3)")?
        .execute(params![event.refresh_token_hash, grant_id, event.refresh_expires_at])?;

    let approval = crate::read::grant_row(conn, &grant_id)?;
    let token = IssuedToken {
        token_id: event.token_id.clone(),
        grant_id: Some(grant_id),
        client_id: event.client_id.clone(),
        site_id: event.site_id.clone(),
        scope: event.scope.clone(),
        expires_at: event.expires_at,
        issued_at: event.occurred_at,
        patient: approval.as_ref().and_then(|g| g.approval.patient.clone()),
        encounter: approval.as_ref().and_then(|g| g.approval.encounter.clone()),
        fhir_user: approval.as_ref().and_then(|g| g.approval.fhir_user.clone()),
        user_id: approval.as_ref().and_then(|g| g.approval.user_id.clone()),
        revoked: false,
    };
    store_token(conn, &token)?;
    Ok(AuthOutcome::Applied)
}

fn store_token(conn: &Connection, token: &IssuedToken) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO access_tokens (token_id, grant_id, client_id, site_id, expires_at, revoked, json)
         VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)",
    )?
    .execute(params![
        token.token_id,
        token.grant_id,
        token.client_id,
        token.site_id,
        token.expires_at,
        to_json(token)?
    ])?;
    Ok(())
}

/// Records a client assertion id; returns false when it was recorded before.
fn record_assertion(
    conn: &Connection,
    client_id: &str,
    jti: &str,
    expires_at: i64,
) -> rusqlite::Result<bool> {
    let inserted = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO assertion_ids (client_id, jti, expires_at) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![client_id, jti, expires_at])?;
    Ok(inserted == 1)
}

fn grant_revoked(conn: &Connection, grant_id: &str) -> rusqlite::Result<bool> {
    let revoked: Option<Option<i64>> = conn
        .prepare_cached("SELECT revoked_at FROM grants WHERE grant_id = ?1")?
        .query_row([grant_id], |row| row.get(0))
        .optional()?;
    Ok(matches!(revoked, Some(Some(_))))
}

fn revoke_grant(conn: &Connection, grant_id: &str, reason: &str, now: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE grants SET revoked_at = ?2, revoked_reason = ?3 WHERE grant_id = ?1 AND revoked_at IS NULL",
    )?
    .execute(params![grant_id, now, reason])?;
    conn.prepare_cached("UPDATE access_tokens SET revoked = 1 WHERE grant_id = ?1")?
        .execute([grant_id])?;
    conn.prepare_cached("UPDATE refresh_tokens SET current = 0 WHERE grant_id = ?1")?
        .execute([grant_id])?;
    Ok(())
}
