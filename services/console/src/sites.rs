//! Site pages: the list and creation (platform admins), and one site's app activations
//! and grants with revocation (platform admins and that site's admin).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use hearth_auth_store::Site;
use hearth_schemas::{Backing, UpstreamAuthMethod};

use crate::ConsoleState;
use crate::apps::path_segment;
use crate::error::{ConsoleError, ConsoleResult};
use crate::html::{self, csrf_field, escape};
use crate::session::{FormData, Viewer};
use crate::site_form::SiteFields;

/// Grants listed on a site page, newest first.
const GRANTS_SHOWN: usize = 200;

pub async fn list(State(state): State<ConsoleState>, viewer: Viewer) -> ConsoleResult<Response> {
    let fields = SiteFields {
        backing: "repository".to_string(),
        auth_method: "none".to_string(),
        default_freshness: "0".to_string(),
        ..SiteFields::default()
    };
    let body = list_body(&state, &viewer, None, &fields)?;
    Ok(html::page(&viewer, "/console/sites", "Sites", &body))
}

fn list_body(
    state: &ConsoleState,
    viewer: &Viewer,
    error: Option<&str>,
    fields: &SiteFields,
) -> ConsoleResult<String> {
    if !viewer.is_platform_admin() && viewer.admin_site().is_none() {
        return Err(ConsoleError::Forbidden(
            "only administrators see sites".into(),
        ));
    }
    let mut rows = String::new();
    for site in state.auth.store.sites()? {
        if !viewer.can_manage_site(&site.site_id) {
            continue;
        }
        let apps = state.auth.store.active_apps(&site.site_id)?.len();
        rows.push_str(&format!(
            "<tr><td><a href=\"/console/sites/{path}\">{name}</a></td><td><code>{id}</code></td>\
             <td>{backing}</td><td><code>{base}</code></td><td>{apps}</td></tr>",
            path = path_segment(&site.site_id),
            name = escape(&site.name),
            id = escape(&site.site_id),
            backing = backing_label(&site),
            base = escape(&format!(
                "{}{}",
                state.settings.public_url, site.fhir_base_path
            )),
        ));
    }
    let create = if viewer.is_platform_admin() {
        let error = error.map(|e| html::notice("error", e)).unwrap_or_default();
        format!(
            "<section aria-labelledby=\"new-site\"><h2 id=\"new-site\">Create a site</h2>{error}\
             <form method=\"post\" action=\"/console/sites\" class=\"site-form\">{csrf}{fields}\
             <button type=\"submit\">Create site</button></form></section>",
            csrf = csrf_field(viewer),
            fields = fields.render(false),
        )
    } else {
        String::new()
    };
    Ok(format!(
        "<h1>Sites</h1>{wrap}<table><caption id=\"sites-caption\">Sites and their FHIR bases</caption>\
         <thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Site id</th><th scope=\"col\">Backing</th>\
         <th scope=\"col\">FHIR base</th><th scope=\"col\">Active apps</th></tr></thead><tbody>{rows}</tbody></table></div>{create}",
        wrap = html::table_wrap("sites-caption"),
    ))
}

/// Lists a site's settings as a description list. No setting is a secret: an upstream's
/// bearer token lives only in the server configuration.
fn settings_list(site: &Site) -> String {
    let mut items: Vec<(&str, String)> = vec![(
        "Dynamic client registration",
        if site.dynamic_registration {
            "allowed"
        } else {
            "not allowed"
        }
        .to_string(),
    )];
    if site.backing == Backing::Ehr {
        let text = |value: &Option<String>, default: &str| {
            value
                .as_deref()
                .map(|v| format!("<code>{}</code>", escape(v)))
                .unwrap_or_else(|| default.to_string())
        };
        let method = match site.upstream_auth_method {
            UpstreamAuthMethod::None => "no credential".to_string(),
            UpstreamAuthMethod::Bearer => {
                "a static bearer token from the server configuration".to_string()
            }
            UpstreamAuthMethod::BackendServices => format!(
                "SMART Backend Services as client {}, token endpoint {}, scopes {}",
                text(&site.upstream_client_id, "(none)"),
                text(
                    &site.upstream_token_url,
                    "from the EHR's SMART configuration"
                ),
                text(&site.upstream_scope, "<code>system/*.rs</code>"),
            ),
        };
        let per_type = if site.cache_freshness_s.is_empty() {
            "none".to_string()
        } else {
            site.cache_freshness_s
                .iter()
                .map(|(t, seconds)| format!("{} {seconds} s", escape(t)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        items.extend([
            (
                "Upstream FHIR base URL",
                text(&site.upstream_base_url, "(none)"),
            ),
            (
                "Upstream FHIR version",
                text(&site.upstream_fhir_version, "4.0.1 (R4)"),
            ),
            ("Authentication at the EHR", method),
            (
                "Cache freshness",
                format!("{} s", site.default_cache_freshness_s),
            ),
            ("Cache freshness per type", per_type),
        ]);
    }
    let rows: String = items
        .iter()
        .map(|(term, value)| format!("<dt>{term}</dt><dd>{value}</dd>"))
        .collect();
    format!("<dl class=\"settings\" id=\"site-settings\">{rows}</dl>")
}

fn backing_label(site: &Site) -> String {
    match site.backing {
        Backing::Repository => "repository".to_string(),
        Backing::Ehr => format!(
            "upstream EHR {}",
            escape(site.upstream_base_url.as_deref().unwrap_or(""))
        ),
    }
}

pub async fn create(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    body: Bytes,
) -> ConsoleResult<Response> {
    if !viewer.is_platform_admin() {
        return Err(ConsoleError::Forbidden(
            "only platform admins create sites".into(),
        ));
    }
    let form = FormData::checked(&viewer, &body)?;
    let fields = SiteFields::from_form(&form);
    let request = match fields.to_request() {
        Ok(request) => request,
        Err(message) => {
            let body = list_body(&state, &viewer, Some(&message), &fields)?;
            return Ok(html::page(&viewer, "/console/sites", "Sites", &body));
        }
    };
    match hearth_auth::create_site_as(&state.auth, &request, &viewer.user_id).await {
        Ok(site) => Ok(Redirect::to(&format!(
            "/console/sites/{}?done=created",
            path_segment(&site.site_id)
        ))
        .into_response()),
        Err(error) if error.status.is_client_error() => {
            let body = list_body(&state, &viewer, Some(&error.description), &fields)?;
            Ok(html::page(&viewer, "/console/sites", "Sites", &body))
        }
        Err(error) => Err(error.into()),
    }
}

#[derive(serde::Deserialize)]
pub struct SiteQuery {
    done: Option<String>,
}

pub async fn show(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(site_id): Path<String>,
    Query(query): Query<SiteQuery>,
) -> ConsoleResult<Response> {
    let site = find_managed(&state, &viewer, &site_id)?;
    let notice = match query.done.as_deref() {
        Some("created") => html::notice("ok", "The site is created."),
        Some("updated") => html::notice("ok", "The site's settings are saved."),
        Some("activated") => html::notice("ok", "The app is active at this site."),
        Some("deactivated") => html::notice("ok", "The app is no longer active at this site."),
        Some("revoked") => html::notice(
            "ok",
            "Revoked. Tokens of the revoked grants stop working at once.",
        ),
        _ => String::new(),
    };
    let csrf = csrf_field(&viewer);
    let path = path_segment(&site_id);

    let mut app_rows = String::new();
    for app in state.auth.store.apps()? {
        let active = state.auth.store.is_active(&site_id, &app.client_id)?;
        let (action, label) = if active {
            ("deactivate", "Deactivate")
        } else {
            ("activate", "Activate")
        };
        app_rows.push_str(&format!(
            "<tr><td>{name}</td><td><code>{id}</code></td><td>{status}</td><td>\
             <form method=\"post\" action=\"/console/sites/{path}/apps\">{csrf}\
             <input type=\"hidden\" name=\"client_id\" value=\"{id}\">\
             <input type=\"hidden\" name=\"action\" value=\"{action}\">\
             <button type=\"submit\" class=\"secondary small\" aria-label=\"{label} {name}\">{label}</button></form></td></tr>",
            name = escape(&app.name),
            id = escape(&app.client_id),
            status = if active { "active" } else { "inactive" },
        ));
    }

    let grants = state.auth.store.grants(None, Some(&site_id))?;
    let mut grant_rows = String::new();
    for grant in grants.iter().take(GRANTS_SHOWN) {
        let approval = &grant.approval;
        let revoke = if grant.is_revoked() {
            format!(
                "revoked ({})",
                escape(grant.revoked_reason.as_deref().unwrap_or("unknown reason"))
            )
        } else {
            format!(
                "<form method=\"post\" action=\"/console/sites/{path}/grants/revoke\">{csrf}\
                 <input type=\"hidden\" name=\"grant_id\" value=\"{id}\">\
                 <button type=\"submit\" class=\"danger small\" aria-label=\"Revoke grant {id}\">Revoke</button></form>",
                id = escape(&approval.grant_id),
            )
        };
        grant_rows.push_str(&format!(
            "<tr data-grant-id=\"{id}\"><td><code title=\"{id}\">{short}…</code></td><td>{client}</td><td>{user}</td><td>{patient}</td>\
             <td class=\"scope\">{scope}</td><td>{at}</td><td>{revoke}</td></tr>",
            id = escape(&approval.grant_id),
            short = escape(approval.grant_id.get(..8).unwrap_or(&approval.grant_id)),
            client = escape(&approval.client_id),
            user = escape(
                approval
                    .fhir_user
                    .as_deref()
                    .or(approval.user_id.as_deref())
                    .unwrap_or("")
            ),
            patient = escape(approval.patient.as_deref().unwrap_or("")),
            scope = escape(&approval.scope_granted),
            at = html::instant(approval.occurred_at),
        ));
    }
    if grants.is_empty() {
        grant_rows.push_str("<tr><td colspan=\"7\">No grants yet.</td></tr>");
    }
    let live = grants.iter().filter(|g| !g.is_revoked()).count();
    let revoke_all = if live > 0 {
        let label = revoke_all_label(live);
        format!(
            "<form method=\"post\" action=\"/console/sites/{path}/grants/revoke\" data-confirm=\"{label} at this site?\">{csrf}\
             <input type=\"hidden\" name=\"all\" value=\"1\">\
             <button type=\"submit\" class=\"danger\">{label}</button></form>"
        )
    } else {
        String::new()
    };
    let edit = if viewer.is_platform_admin() {
        format!(
            "<p><a href=\"/console/sites/{path}/settings\" class=\"button secondary\">Edit settings</a></p>"
        )
    } else {
        String::new()
    };
    let body = format!(
        "{notice}<h1>Site {name}</h1>\
         <p>Site id <code>{id}</code>, backing: {backing}. FHIR base <code>{base}</code>.</p>\
         <section aria-labelledby=\"settings-heading\"><h2 id=\"settings-heading\">Settings</h2>{settings}{edit}</section>\
         <section aria-labelledby=\"apps-heading\"><h2 id=\"apps-heading\">Apps</h2>\
         {apps_wrap}<table><caption id=\"apps-caption\">Apps and whether they are active at this site</caption>\
         <thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Client id</th><th scope=\"col\">Status</th><th scope=\"col\">Change</th></tr></thead>\
         <tbody>{app_rows}</tbody></table></div></section>\
         <section aria-labelledby=\"grants-heading\"><h2 id=\"grants-heading\">Grants</h2>{revoke_all}\
         {grants_wrap}<table><caption id=\"grants-caption\">Grants at this site, newest first</caption>\
         <thead><tr><th scope=\"col\">Grant</th><th scope=\"col\">App</th><th scope=\"col\">User</th><th scope=\"col\">Patient</th>\
         <th scope=\"col\">Scopes</th><th scope=\"col\">Granted</th><th scope=\"col\">Revoke</th></tr></thead>\
         <tbody>{grant_rows}</tbody></table></div></section>",
        name = escape(&site.name),
        id = escape(&site.site_id),
        backing = backing_label(&site),
        base = escape(&format!(
            "{}{}",
            state.settings.public_url, site.fhir_base_path
        )),
        settings = settings_list(&site),
        apps_wrap = html::table_wrap("apps-caption"),
        grants_wrap = html::table_wrap("grants-caption"),
    );
    Ok(html::page(&viewer, "/console/sites", &site.name, &body))
}

/// `GET /console/sites/{site_id}/settings`: the settings form of a site, for platform
/// admins.
pub async fn settings_page(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(site_id): Path<String>,
) -> ConsoleResult<Response> {
    let site = find_editable(&state, &viewer, &site_id)?;
    let body = settings_body(&viewer, &site, &SiteFields::from_site(&site), None);
    Ok(html::page(&viewer, "/console/sites", &site.name, &body))
}

/// `POST /console/sites/{site_id}/settings`: replaces the site's settings through the
/// admin API's update operation.
pub async fn update_settings(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(site_id): Path<String>,
    body: Bytes,
) -> ConsoleResult<Response> {
    let site = find_editable(&state, &viewer, &site_id)?;
    let form = FormData::checked(&viewer, &body)?;
    let mut fields = SiteFields::from_form(&form);
    // The site id and backing come from the stored site, never from the form.
    fields.site_id = site.site_id.clone();
    fields.backing = SiteFields::from_site(&site).backing;
    let request = match fields.to_request() {
        Ok(request) => request,
        Err(message) => {
            let body = settings_body(&viewer, &site, &fields, Some(&message));
            return Ok(html::page(&viewer, "/console/sites", &site.name, &body));
        }
    };
    match hearth_auth::update_site_as(&state.auth, &site_id, &request, &viewer.user_id).await {
        Ok(_) => {
            tracing::info!(site_id = %site_id, user_id = %viewer.user_id, "site settings changed in the console");
            Ok(Redirect::to(&format!(
                "/console/sites/{}?done=updated",
                path_segment(&site_id)
            ))
            .into_response())
        }
        Err(error) if error.status.is_client_error() => {
            let body = settings_body(&viewer, &site, &fields, Some(&error.description));
            Ok(html::page(&viewer, "/console/sites", &site.name, &body))
        }
        Err(error) => Err(error.into()),
    }
}

fn settings_body(viewer: &Viewer, site: &Site, fields: &SiteFields, error: Option<&str>) -> String {
    let error = error.map(|e| html::notice("error", e)).unwrap_or_default();
    format!(
        "<h1>Settings of site {name}</h1>{error}\
         <form method=\"post\" action=\"/console/sites/{path}/settings\" class=\"site-form\">{csrf}{fields}\
         <button type=\"submit\">Save settings</button> \
         <a href=\"/console/sites/{path}\" class=\"button secondary\">Cancel</a></form>",
        name = escape(&site.name),
        path = path_segment(&site.site_id),
        csrf = csrf_field(viewer),
        fields = fields.render(true),
    )
}

fn find_editable(state: &ConsoleState, viewer: &Viewer, site_id: &str) -> ConsoleResult<Site> {
    if !viewer.is_platform_admin() {
        return Err(ConsoleError::Forbidden(
            "only platform admins change a site's settings".into(),
        ));
    }
    find_managed(state, viewer, site_id)
}

pub async fn set_activation(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(site_id): Path<String>,
    body: Bytes,
) -> ConsoleResult<Response> {
    find_managed(&state, &viewer, &site_id)?;
    let form = FormData::checked(&viewer, &body)?;
    let client_id = form
        .get("client_id")
        .ok_or_else(|| ConsoleError::BadRequest("client_id is missing".into()))?;
    let done = match form.get("action") {
        Some("activate") => {
            hearth_auth::activate_app_as(&state.auth, &site_id, client_id, &viewer.user_id).await?;
            "activated"
        }
        Some("deactivate") => {
            hearth_auth::deactivate_app_as(&state.auth, &site_id, client_id, &viewer.user_id)
                .await?;
            "deactivated"
        }
        _ => {
            return Err(ConsoleError::BadRequest(
                "action must be activate or deactivate".into(),
            ));
        }
    };
    Ok(Redirect::to(&format!(
        "/console/sites/{}?done={done}",
        path_segment(&site_id)
    ))
    .into_response())
}

/// Revokes one grant (`grant_id`) or every live grant of the site (`all`), optionally
/// only those of one app (`client_id`).
pub async fn revoke(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(site_id): Path<String>,
    body: Bytes,
) -> ConsoleResult<Response> {
    find_managed(&state, &viewer, &site_id)?;
    let form = FormData::checked(&viewer, &body)?;
    let grant_ids: Vec<String> = if let Some(grant_id) = form.get("grant_id") {
        match state.auth.store.grant(grant_id)? {
            Some(grant) if grant.approval.site_id == site_id => vec![grant_id.to_string()],
            _ => {
                return Err(ConsoleError::NotFound(format!(
                    "no grant {grant_id} at this site"
                )));
            }
        }
    } else if form.get("all").is_some() {
        state
            .auth
            .store
            .grants(form.get("client_id"), Some(&site_id))?
            .into_iter()
            .filter(|g| !g.is_revoked())
            .map(|g| g.approval.grant_id)
            .collect()
    } else {
        return Err(ConsoleError::BadRequest("name a grant_id or all".into()));
    };
    for grant_id in &grant_ids {
        hearth_auth::revoke_grant_as(&state.auth, grant_id, &viewer.user_id).await?;
    }
    tracing::info!(site_id = %site_id, count = grant_ids.len(), user_id = %viewer.user_id, "grants revoked in the console");
    Ok(Redirect::to(&format!(
        "/console/sites/{}?done=revoked",
        path_segment(&site_id)
    ))
    .into_response())
}

/// Labels the button that revokes every live grant of a site, in singular or plural.
fn revoke_all_label(live: usize) -> String {
    match live {
        1 => "Revoke 1 live grant".to_string(),
        _ => format!("Revoke all {live} live grants"),
    }
}

fn find_managed(state: &ConsoleState, viewer: &Viewer, site_id: &str) -> ConsoleResult<Site> {
    if !viewer.can_manage_site(site_id) {
        return Err(ConsoleError::Forbidden(format!(
            "you do not govern site {site_id}"
        )));
    }
    state
        .auth
        .store
        .site(site_id)?
        .ok_or_else(|| ConsoleError::NotFound(format!("no site {site_id}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoke_all_label_agrees_in_number() {
        assert_eq!(revoke_all_label(1), "Revoke 1 live grant");
        assert_eq!(revoke_all_label(2), "Revoke all 2 live grants");
        assert_eq!(revoke_all_label(31), "Revoke all 31 live grants");
    }
}
