//! Reads from the auth state store.

use std::path::Path;

use hearth_projection::ReadPool;
use hearth_schemas::AuthorizationGranted;
use rusqlite::{Connection, OptionalExtension, params};
use serde::de::DeserializeOwned;

use crate::models::{App, Grant, IssuedToken, Launch, RefreshToken, Site, User};

/// Read access to the auth store.
#[derive(Clone)]
pub struct AuthStore {
    pool: ReadPool,
}

fn from_json<T: DeserializeOwned>(text: Option<String>) -> Option<T> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

/// Reads a grant row; shared with the projection, which reads inside its transaction.
pub(crate) fn grant_row(conn: &Connection, grant_id: &str) -> rusqlite::Result<Option<Grant>> {
    let row: Option<(String, bool, Option<i64>, Option<String>)> = conn
        .prepare_cached("SELECT json, code_redeemed, revoked_at, revoked_reason FROM grants WHERE grant_id = ?1")?
        .query_row([grant_id], |row| {
            Ok((row.get(0)?, row.get::<_, i64>(1)? != 0, row.get(2)?, row.get(3)?))
        })
        .optional()?;
    Ok(
        row.and_then(|(json, code_redeemed, revoked_at, revoked_reason)| {
            let approval: AuthorizationGranted = serde_json::from_str(&json).ok()?;
            Some(Grant {
                approval,
                code_redeemed,
                revoked_at,
                revoked_reason,
            })
        }),
    )
}

impl AuthStore {
    /// Opens read access to the store at `path`, which the projection runner creates.
    pub fn open(path: &Path) -> Self {
        AuthStore {
            pool: ReadPool::new(path, 64),
        }
    }

    fn json_by_key<T: DeserializeOwned>(
        &self,
        sql: &str,
        key: &str,
    ) -> rusqlite::Result<Option<T>> {
        let conn = self.pool.get()?;
        let text: Option<String> = conn
            .prepare_cached(sql)?
            .query_row([key], |row| row.get(0))
            .optional()?;
        Ok(from_json(text))
    }

    fn json_list<T: DeserializeOwned>(&self, sql: &str, args: &[&str]) -> rusqlite::Result<Vec<T>> {
        let conn = self.pool.get()?;
        let mut statement = conn.prepare_cached(sql)?;
        let rows = statement.query_map(rusqlite::params_from_iter(args), |row| {
            row.get::<_, String>(0)
        })?;
        let mut values = Vec::new();
        for row in rows {
            if let Some(value) = from_json(Some(row?)) {
                values.push(value);
            }
        }
        Ok(values)
    }

    pub fn app(&self, client_id: &str) -> rusqlite::Result<Option<App>> {
        self.json_by_key("SELECT json FROM apps WHERE client_id = ?1", client_id)
    }

    pub fn apps(&self) -> rusqlite::Result<Vec<App>> {
        self.json_list("SELECT json FROM apps ORDER BY client_id", &[])
    }

    pub fn site(&self, site_id: &str) -> rusqlite::Result<Option<Site>> {
        self.json_by_key("SELECT json FROM sites WHERE site_id = ?1", site_id)
    }

    pub fn sites(&self) -> rusqlite::Result<Vec<Site>> {
        self.json_list("SELECT json FROM sites ORDER BY site_id", &[])
    }

    /// Returns whether the app is active at the site.
    pub fn is_active(&self, site_id: &str, client_id: &str) -> rusqlite::Result<bool> {
        let conn = self.pool.get()?;
        let found: Option<i64> = conn
            .prepare_cached("SELECT 1 FROM activations WHERE site_id = ?1 AND client_id = ?2")?
            .query_row(params![site_id, client_id], |row| row.get(0))
            .optional()?;
        Ok(found.is_some())
    }

    /// The apps active at a site.
    pub fn active_apps(&self, site_id: &str) -> rusqlite::Result<Vec<App>> {
        self.json_list(
            "SELECT a.json FROM apps a JOIN activations s ON s.client_id = a.client_id WHERE s.site_id = ?1 ORDER BY a.client_id",
            &[site_id],
        )
    }

    /// The sites where an app is active.
    pub fn app_sites(&self, client_id: &str) -> rusqlite::Result<Vec<String>> {
        let conn = self.pool.get()?;
        let mut statement = conn.prepare_cached(
            "SELECT site_id FROM activations WHERE client_id = ?1 ORDER BY site_id",
        )?;
        let rows = statement.query_map([client_id], |row| row.get(0))?;
        rows.collect()
    }

    pub fn user(&self, user_id: &str) -> rusqlite::Result<Option<User>> {
        self.json_by_key("SELECT json FROM users WHERE user_id = ?1", user_id)
    }

    pub fn user_by_username(&self, username: &str) -> rusqlite::Result<Option<User>> {
        self.json_by_key("SELECT json FROM users WHERE username = ?1", username)
    }

    pub fn users(&self) -> rusqlite::Result<Vec<User>> {
        self.json_list("SELECT json FROM users ORDER BY username", &[])
    }

    pub fn launch(&self, launch_id: &str) -> rusqlite::Result<Option<Launch>> {
        self.json_by_key("SELECT json FROM launches WHERE launch_id = ?1", launch_id)
    }

    pub fn grant(&self, grant_id: &str) -> rusqlite::Result<Option<Grant>> {
        let conn = self.pool.get()?;
        grant_row(&conn, grant_id)
    }

    pub fn grant_by_code(&self, code_hash: &str) -> rusqlite::Result<Option<Grant>> {
        let conn = self.pool.get()?;
        let grant_id: Option<String> = conn
            .prepare_cached("SELECT grant_id FROM grants WHERE code_hash = ?1")?
            .query_row([code_hash], |row| row.get(0))
            .optional()?;
        match grant_id {
            Some(grant_id) => grant_row(&conn, &grant_id),
            None => Ok(None),
        }
    }

    /// Grants of an app, newest first, optionally at one site.
    pub fn grants(
        &self,
        client_id: Option<&str>,
        site_id: Option<&str>,
    ) -> rusqlite::Result<Vec<Grant>> {
        let conn = self.pool.get()?;
        let mut statement = conn.prepare_cached(
            "SELECT grant_id FROM grants WHERE (?1 IS NULL OR client_id = ?1) AND (?2 IS NULL OR site_id = ?2)
             ORDER BY created_at DESC, grant_id",
        )?;
        let ids: Vec<String> = statement
            .query_map(params![client_id, site_id], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut grants = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(grant) = grant_row(&conn, &id)? {
                grants.push(grant);
            }
        }
        Ok(grants)
    }

    /// Returns the grants a user approved at a site, newest first, revoked ones included.
    pub fn user_grants(&self, user_id: &str, site_id: &str) -> rusqlite::Result<Vec<Grant>> {
        let conn = self.pool.get()?;
        let mut statement = conn.prepare_cached(
            "SELECT grant_id FROM grants WHERE user_id = ?1 AND site_id = ?2
             ORDER BY created_at DESC, grant_id",
        )?;
        let ids: Vec<String> = statement
            .query_map(params![user_id, site_id], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut grants = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(grant) = grant_row(&conn, &id)? {
                grants.push(grant);
            }
        }
        Ok(grants)
    }

    /// Returns whether a grant exists and is not revoked.
    pub fn grant_is_live(&self, grant_id: &str) -> rusqlite::Result<bool> {
        let conn = self.pool.get()?;
        let revoked: Option<Option<i64>> = conn
            .prepare_cached("SELECT revoked_at FROM grants WHERE grant_id = ?1")?
            .query_row([grant_id], |row| row.get(0))
            .optional()?;
        Ok(matches!(revoked, Some(None)))
    }

    pub fn refresh_token(&self, hash: &str) -> rusqlite::Result<Option<RefreshToken>> {
        let conn = self.pool.get()?;
        conn.prepare_cached(
            "SELECT grant_id, current, expires_at FROM refresh_tokens WHERE hash = ?1",
        )?
        .query_row([hash], |row| {
            Ok(RefreshToken {
                grant_id: row.get(0)?,
                current: row.get::<_, i64>(1)? != 0,
                expires_at: row.get(2)?,
            })
        })
        .optional()
    }

    /// The access token with this id, with `revoked` set when it or its grant was revoked.
    pub fn access_token(&self, token_id: &str) -> rusqlite::Result<Option<IssuedToken>> {
        let conn = self.pool.get()?;
        let row: Option<(String, bool)> = conn
            .prepare_cached("SELECT json, revoked FROM access_tokens WHERE token_id = ?1")?
            .query_row([token_id], |row| {
                Ok((row.get(0)?, row.get::<_, i64>(1)? != 0))
            })
            .optional()?;
        Ok(row.and_then(|(json, revoked)| {
            let mut token: IssuedToken = serde_json::from_str(&json).ok()?;
            token.revoked = revoked;
            Some(token)
        }))
    }

    /// Returns the user id and expiry (microseconds since the epoch) of a console session,
    /// found by the SHA-256 of its cookie value. Expiry is the caller's check.
    pub fn console_session(&self, session_hash: &str) -> rusqlite::Result<Option<(String, i64)>> {
        let conn = self.pool.get()?;
        conn.prepare_cached(
            "SELECT user_id, expires_at FROM console_sessions WHERE session_hash = ?1",
        )?
        .query_row([session_hash], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()
    }

    /// Returns whether a client assertion id was used before by this client.
    pub fn assertion_seen(&self, client_id: &str, jti: &str) -> rusqlite::Result<bool> {
        let conn = self.pool.get()?;
        let found: Option<i64> = conn
            .prepare_cached("SELECT 1 FROM assertion_ids WHERE client_id = ?1 AND jti = ?2")?
            .query_row(params![client_id, jti], |row| row.get(0))
            .optional()?;
        Ok(found.is_some())
    }

    /// Returns whether an access token may still be used: issued, not revoked, its grant
    /// (if any) live, and its app enabled and active at the token's site. Expiry is the
    /// caller's check, from the token itself.
    pub fn token_is_live(&self, token_id: &str) -> rusqlite::Result<bool> {
        let conn = self.pool.get()?;
        let row: Option<(bool, Option<i64>, bool)> = conn
            .prepare_cached(
                "SELECT t.revoked,
                        (SELECT g.revoked_at FROM grants g WHERE g.grant_id = t.grant_id),
                        EXISTS (
                            SELECT 1 FROM activations a JOIN apps p ON p.client_id = a.client_id
                            WHERE a.site_id = t.site_id AND a.client_id = t.client_id
                              AND NOT json_extract(p.json, '$.disabled')
                        )
                 FROM access_tokens t WHERE t.token_id = ?1",
            )?
            .query_row([token_id], |row| {
                Ok((
                    row.get::<_, i64>(0)? != 0,
                    row.get(1)?,
                    row.get::<_, i64>(2)? != 0,
                ))
            })
            .optional()?;
        Ok(matches!(row, Some((false, None, true))))
    }
}
