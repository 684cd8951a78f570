//! Turns decoded events into rows of the raw tables.
//!
//! Identifiers of people and launches become pseudonyms here, and nothing secret is
//! copied: events carry only hashes of codes and tokens, and those are left out too.
//! Two facts come from earlier events rather than the event itself: a refresh carries no
//! user, so the converter remembers each grant's user from its authorization and first
//! token, and an API call whose event has no site backing takes the backing of the
//! site's latest registration.

use std::collections::HashMap;

use hearth_schemas::{
    AnyEvent, ApiCall, AuthorizationDenied, AuthorizationGranted, Backing, ClientType,
    LaunchCreated, TokenIssued, TokenRefreshed,
};

use crate::pseudonym::Pseudonyms;
use crate::rows::{
    ApiCallRow, AppRow, AuthorizationRow, LaunchRow, SiteRow, TokenGrantRow, codes, seconds,
};

/// Grants remembered at most; the map is emptied when it grows past this, and grants
/// missing from it are looked up in ClickHouse.
const MAX_REMEMBERED_GRANTS: usize = 500_000;

/// Longest text copied from a request into a row, in bytes. Scope parameters and error
/// descriptions are otherwise unbounded client input.
const MAX_TEXT: usize = 1024;

/// The user behind a grant, as stored in `token_grants`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GrantUser {
    pub user_type: i8,
    pub user_hash: u64,
    pub patient_hash: u64,
}

/// A row for one of the raw tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Converted {
    Launch(LaunchRow),
    Authorization(AuthorizationRow),
    TokenGrant(TokenGrantRow),
    ApiCall(ApiCallRow),
    Site(SiteRow),
    App(AppRow),
}

/// Where a record sits in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub partition: u32,
    pub offset: u64,
}

/// Converts events, remembering grants and site backings across calls.
pub struct Converter {
    pseudonyms: Pseudonyms,
    grants: HashMap<String, GrantUser>,
    backings: HashMap<String, i8>,
}

impl Converter {
    pub fn new(pseudonyms: Pseudonyms) -> Converter {
        Converter {
            pseudonyms,
            grants: HashMap::new(),
            backings: HashMap::new(),
        }
    }

    pub fn pseudonyms(&self) -> &Pseudonyms {
        &self.pseudonyms
    }

    /// Records the backing (an `Enum8` number) of a site.
    pub fn remember_backing(&mut self, site_id: String, backing: i8) {
        self.backings.insert(site_id, backing);
    }

    pub fn remember_grant(&mut self, grant_id: String, user: GrantUser) {
        if self.grants.len() >= MAX_REMEMBERED_GRANTS {
            self.grants.clear();
        }
        self.grants.insert(grant_id, user);
    }

    pub fn knows_grant(&self, grant_id: &str) -> bool {
        self.grants.contains_key(grant_id)
    }

    /// Converts one event, or returns `None` for event types analytics does not store.
    pub fn convert(&mut self, at: Position, event: AnyEvent) -> Option<Converted> {
        let converted = match event {
            AnyEvent::LaunchCreated(event) => Converted::Launch(self.launch(at, event)),
            AnyEvent::AuthorizationGranted(event) => {
                Converted::Authorization(self.granted(at, event))
            }
            AnyEvent::AuthorizationDenied(event) => {
                Converted::Authorization(self.denied(at, event))
            }
            AnyEvent::TokenIssued(event) => Converted::TokenGrant(self.issued(at, event)),
            AnyEvent::TokenRefreshed(event) => Converted::TokenGrant(self.refreshed(at, event)),
            AnyEvent::ApiCall(event) => Converted::ApiCall(self.api_call(at, event)),
            AnyEvent::SiteRegistered(event) => Converted::Site(self.site(
                at,
                SiteFields {
                    occurred_at: event.occurred_at,
                    site_id: event.site_id,
                    name: event.name,
                    backing: event.backing,
                    fhir_base_path: event.fhir_base_path,
                },
            )),
            AnyEvent::SiteUpdated(event) => Converted::Site(self.site(
                at,
                SiteFields {
                    occurred_at: event.occurred_at,
                    site_id: event.site_id,
                    name: event.name,
                    backing: event.backing,
                    fhir_base_path: event.fhir_base_path,
                },
            )),
            AnyEvent::AppRegistered(event) => Converted::App(app(
                at,
                AppFields {
                    occurred_at: event.occurred_at,
                    client_id: event.client_id,
                    name: event.name,
                    vendor: event.vendor,
                    client_type: event.client_type,
                },
            )),
            AnyEvent::AppUpdated(event) => Converted::App(app(
                at,
                AppFields {
                    occurred_at: event.occurred_at,
                    client_id: event.client_id,
                    name: event.name,
                    vendor: event.vendor,
                    client_type: event.client_type,
                },
            )),
            _ => return None,
        };
        Some(converted)
    }

    fn launch(&self, at: Position, event: LaunchCreated) -> LaunchRow {
        let p = &self.pseudonyms;
        LaunchRow {
            occurred_at: seconds(event.occurred_at),
            log_partition: at.partition,
            log_offset: at.offset,
            launch_hash: p.launch(Some(&event.launch_id)),
            user_hash: p.user(event.user.as_deref()),
            patient_hash: p.patient(&event.site_id, event.patient.as_deref()),
            encounter_hash: p.encounter(&event.site_id, event.encounter.as_deref()),
            intent: bounded(event.intent.unwrap_or_default()),
            expires_at: seconds(event.expires_at),
            client_id: event.client_id.unwrap_or_default(),
            site_id: event.site_id,
            event_id: event.event_id,
        }
    }

    fn granted(&mut self, at: Position, event: AuthorizationGranted) -> AuthorizationRow {
        let p = &self.pseudonyms;
        let user = GrantUser {
            user_type: codes::user_type(Some(event.user_type)),
            user_hash: p.user(event.user_id.as_deref()),
            patient_hash: p.patient(&event.site_id, event.patient.as_deref()),
        };
        let row = AuthorizationRow {
            occurred_at: seconds(event.occurred_at),
            log_partition: at.partition,
            log_offset: at.offset,
            outcome: codes::GRANTED,
            user_type: user.user_type,
            user_hash: user.user_hash,
            patient_hash: user.patient_hash,
            launch_type: launch_type(event.launch_id.as_deref()),
            launch_hash: p.launch(event.launch_id.as_deref()),
            scope_requested: bounded(event.scope_requested),
            scope_granted: bounded(event.scope_granted),
            refresh_policy: codes::refresh_policy(event.refresh_policy),
            error: String::new(),
            error_description: String::new(),
            grant_id: event.grant_id.clone(),
            client_id: event.client_id,
            site_id: event.site_id,
            event_id: event.event_id,
        };
        self.remember_grant(event.grant_id, user);
        row
    }

    fn denied(&self, at: Position, event: AuthorizationDenied) -> AuthorizationRow {
        let p = &self.pseudonyms;
        AuthorizationRow {
            occurred_at: seconds(event.occurred_at),
            log_partition: at.partition,
            log_offset: at.offset,
            outcome: codes::DENIED,
            grant_id: String::new(),
            user_type: codes::user_type(None),
            user_hash: p.user(event.user_id.as_deref()),
            patient_hash: 0,
            launch_type: launch_type(event.launch_id.as_deref()),
            launch_hash: p.launch(event.launch_id.as_deref()),
            scope_requested: bounded(event.scope_requested.unwrap_or_default()),
            scope_granted: String::new(),
            refresh_policy: 0,
            error: bounded(event.error),
            error_description: bounded(event.error_description.unwrap_or_default()),
            client_id: event.client_id.unwrap_or_default(),
            site_id: event.site_id,
            event_id: event.event_id,
        }
    }

    fn issued(&mut self, at: Position, event: TokenIssued) -> TokenGrantRow {
        let p = &self.pseudonyms;
        let user = GrantUser {
            user_type: codes::user_type(Some(event.user_type)),
            user_hash: p.user(event.user_id.as_deref()),
            patient_hash: p.patient(&event.site_id, event.patient.as_deref()),
        };
        if let Some(grant_id) = &event.grant_id {
            self.remember_grant(grant_id.clone(), user);
        }
        TokenGrantRow {
            occurred_at: seconds(event.occurred_at),
            log_partition: at.partition,
            log_offset: at.offset,
            grant_id: event.grant_id.unwrap_or_default(),
            grant_type: codes::grant_type(event.grant_type),
            scope: bounded(event.scope),
            user_type: user.user_type,
            user_hash: user.user_hash,
            patient_hash: user.patient_hash,
            refresh_token_issued: u8::from(event.refresh_token_hash.is_some()),
            id_token_issued: u8::from(event.id_token_issued),
            expires_at: seconds(event.expires_at),
            client_id: event.client_id,
            site_id: event.site_id,
            event_id: event.event_id,
        }
    }

    fn refreshed(&self, at: Position, event: TokenRefreshed) -> TokenGrantRow {
        // NOTE: a refresh of a grant that is neither remembered nor in ClickHouse (its
        // authorization predates the data kept there) gets user type '' and no user.
        let user = self
            .grants
            .get(&event.grant_id)
            .copied()
            .unwrap_or_default();
        TokenGrantRow {
            occurred_at: seconds(event.occurred_at),
            log_partition: at.partition,
            log_offset: at.offset,
            grant_type: codes::grant_type(hearth_schemas::GrantType::RefreshToken),
            scope: bounded(event.scope),
            user_type: user.user_type,
            user_hash: user.user_hash,
            patient_hash: user.patient_hash,
            refresh_token_issued: 1,
            id_token_issued: 0,
            expires_at: seconds(event.expires_at),
            grant_id: event.grant_id,
            client_id: event.client_id,
            site_id: event.site_id,
            event_id: event.event_id,
        }
    }

    fn api_call(&self, at: Position, event: ApiCall) -> ApiCallRow {
        let p = &self.pseudonyms;
        let site_id = event.site_id.unwrap_or_default();
        let backing = match event.backing {
            Some(backing) => codes::backing(Some(backing)),
            None => self.backings.get(&site_id).copied().unwrap_or(0),
        };
        ApiCallRow {
            occurred_at: seconds(event.occurred_at),
            log_partition: at.partition,
            log_offset: at.offset,
            backing,
            surface: codes::surface(event.surface),
            method: bounded(event.method),
            route: bounded(event.route),
            interaction: event.interaction.unwrap_or_default(),
            operation: bounded(event.operation.unwrap_or_default()),
            resource_type: bounded(event.resource_type.unwrap_or_default()),
            status: u16::try_from(event.status).unwrap_or(0),
            error_code: bounded(event.error_code.unwrap_or_default()),
            latency_us: non_negative(event.latency_us),
            request_bytes: non_negative(event.request_bytes),
            response_bytes: non_negative(event.response_bytes),
            cache: codes::cache(event.cache),
            upstream_status: event
                .upstream_status
                .and_then(|status| u16::try_from(status).ok())
                .unwrap_or(0),
            upstream_latency_us: event.upstream_latency_us.map_or(0, non_negative),
            client_id: event.client_id.unwrap_or_default(),
            grant_id: event.grant_id.unwrap_or_default(),
            user_type: codes::user_type(event.user_type),
            user_hash: p.user(event.user_id.as_deref()),
            patient_hash: p.patient(&site_id, event.patient.as_deref()),
            site_id,
        }
    }

    /// Builds the row of a site's registration or update and remembers its backing.
    fn site(&mut self, at: Position, site: SiteFields) -> SiteRow {
        let backing = codes::backing(Some(site.backing));
        self.remember_backing(site.site_id.clone(), backing);
        SiteRow {
            occurred_at: seconds(site.occurred_at),
            log_partition: at.partition,
            log_offset: at.offset,
            site_id: site.site_id,
            name: bounded(site.name),
            backing,
            fhir_base_path: site.fhir_base_path,
        }
    }
}

/// The fields of `SiteRegistered` and `SiteUpdated` that the `sites` table keeps.
struct SiteFields {
    occurred_at: i64,
    site_id: String,
    name: String,
    backing: Backing,
    fhir_base_path: String,
}

/// The fields of `AppRegistered` and `AppUpdated` that the `apps` table keeps.
struct AppFields {
    occurred_at: i64,
    client_id: String,
    name: String,
    vendor: Option<String>,
    client_type: ClientType,
}

/// Builds the row of an app's registration or update.
fn app(at: Position, app: AppFields) -> AppRow {
    AppRow {
        occurred_at: seconds(app.occurred_at),
        log_partition: at.partition,
        log_offset: at.offset,
        client_id: app.client_id,
        name: bounded(app.name),
        vendor: bounded(app.vendor.unwrap_or_default()),
        client_type: codes::client_type(app.client_type),
    }
}

fn launch_type(launch_id: Option<&str>) -> i8 {
    if launch_id.is_some() {
        codes::EHR_LAUNCH
    } else {
        codes::STANDALONE
    }
}

fn non_negative(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Cuts `text` to at most [`MAX_TEXT`] bytes at a character boundary.
fn bounded(mut text: String) -> String {
    if text.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests;
