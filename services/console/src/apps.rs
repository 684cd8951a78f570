//! App pages: the list, registration, editing, secret rotation, disabling and enabling.
//! Platform admins change apps; site admins and app vendors see them read-only (vendors
//! only their own).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use hearth_auth::AppRequest;
use hearth_auth_store::App;
use hearth_schemas::{ClientType, RegistrationSource};

use crate::ConsoleState;
use crate::error::{ConsoleError, ConsoleResult};
use crate::html::{self, csrf_field, escape};
use crate::session::{FormData, Viewer};

pub async fn list(State(state): State<ConsoleState>, viewer: Viewer) -> ConsoleResult<Response> {
    let apps: Vec<App> = state
        .auth
        .store
        .apps()?
        .into_iter()
        .filter(|app| viewer.can_see_app(app))
        .collect();
    if !viewer.is_platform_admin() && viewer.admin_site().is_none() && viewer.vendor().is_none() {
        return Err(ConsoleError::Forbidden(
            "only administrators and app vendors see apps".to_string(),
        ));
    }
    let mut rows = String::new();
    for app in &apps {
        let sites = state.auth.store.app_sites(&app.client_id)?;
        rows.push_str(&format!(
            "<tr><td><a href=\"/console/apps/{id_path}\">{name}</a></td><td><code>{id}</code></td>\
             <td>{kind}</td><td>{vendor}</td><td>{sites}</td><td>{status}</td></tr>",
            id_path = path_segment(&app.client_id),
            name = escape(&app.name),
            id = escape(&app.client_id),
            kind = client_type_label(app.client_type),
            vendor = escape(app.vendor.as_deref().unwrap_or("")),
            sites = escape(&sites.join(", ")),
            status = if app.disabled { "disabled" } else { "enabled" },
        ));
    }
    if apps.is_empty() {
        rows.push_str("<tr><td colspan=\"6\">No apps yet.</td></tr>");
    }
    let register = if viewer.can_manage_apps() {
        "<p><a class=\"button\" href=\"/console/apps/new\">Register an app</a></p>"
    } else {
        ""
    };
    let body = format!(
        "<h1>Apps</h1>{register}{wrap}<table><caption id=\"apps-caption\">Registered apps</caption>\
         <thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Client id</th><th scope=\"col\">Type</th>\
         <th scope=\"col\">Vendor</th><th scope=\"col\">Active at</th><th scope=\"col\">Status</th></tr></thead>\
         <tbody>{rows}</tbody></table></div>",
        wrap = html::table_wrap("apps-caption"),
    );
    Ok(html::page(&viewer, "/console/apps", "Apps", &body))
}

pub async fn new_form(
    State(state): State<ConsoleState>,
    viewer: Viewer,
) -> ConsoleResult<Response> {
    require_app_admin(&viewer)?;
    let sites = state.auth.store.sites()?;
    let body = app_form(&viewer, None, &AppFields::default(), &sites, &[], None);
    Ok(html::page(
        &viewer,
        "/console/apps",
        "Register an app",
        &body,
    ))
}

pub async fn create(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    body: Bytes,
) -> ConsoleResult<Response> {
    require_app_admin(&viewer)?;
    let form = FormData::checked(&viewer, &body)?;
    let fields = AppFields::from_form(&form);
    let chosen_sites = form.all("sites");
    let sites = state.auth.store.sites()?;
    let mut request = match fields.request() {
        Ok(request) => request,
        Err(message) => {
            let body = app_form(
                &viewer,
                None,
                &fields,
                &sites,
                &chosen_sites,
                Some(&message),
            );
            return Ok(html::page(
                &viewer,
                "/console/apps",
                "Register an app",
                &body,
            ));
        }
    };
    // The sites are part of the request, so an unknown one rejects the form before the
    // app is registered.
    request.sites = chosen_sites.clone();
    let registered = hearth_auth::register_app_at_sites(
        &state.auth,
        &request,
        &viewer.user_id,
        RegistrationSource::Console,
    )
    .await;
    let (app, secret) = match registered {
        Ok(done) => done,
        Err(error) if error.status.is_client_error() => {
            let body = app_form(
                &viewer,
                None,
                &fields,
                &sites,
                &chosen_sites,
                Some(&error.description),
            );
            return Ok(html::page(
                &viewer,
                "/console/apps",
                "Register an app",
                &body,
            ));
        }
        Err(error) => return Err(error.into()),
    };
    tracing::info!(client_id = %app.client_id, user_id = %viewer.user_id, "app registered in the console");
    match secret {
        Some(secret) => Ok(secret_page(&viewer, &app, &secret, "registered")),
        None => Ok(Redirect::to(&format!(
            "/console/apps/{}?done=registered",
            path_segment(&app.client_id)
        ))
        .into_response()),
    }
}

#[derive(serde::Deserialize)]
pub struct ShowQuery {
    done: Option<String>,
}

pub async fn show(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(client_id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<ShowQuery>,
) -> ConsoleResult<Response> {
    let app = find_visible(&state, &viewer, &client_id)?;
    let sites = state.auth.store.sites()?;
    let active = state.auth.store.app_sites(&client_id)?;
    let notice = match query.done.as_deref() {
        Some("registered") => html::notice("ok", "The app is registered."),
        Some("updated") => html::notice("ok", "The registration is saved."),
        Some("disabled") => html::notice("ok", "The app is disabled and its grants are revoked."),
        Some("enabled") => html::notice("ok", "The app is enabled."),
        _ => String::new(),
    };
    let body = format!(
        "{notice}{}",
        app_form(
            &viewer,
            Some(&app),
            &AppFields::from_app(&app),
            &sites,
            &active,
            None
        )
    );
    Ok(html::page(&viewer, "/console/apps", &app.name, &body))
}

pub async fn update(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(client_id): Path<String>,
    body: Bytes,
) -> ConsoleResult<Response> {
    require_app_admin(&viewer)?;
    let app = find_visible(&state, &viewer, &client_id)?;
    let form = FormData::checked(&viewer, &body)?;
    let fields = AppFields::from_form(&form);
    let sites = state.auth.store.sites()?;
    let active = state.auth.store.app_sites(&client_id)?;
    let mut request = match fields.request() {
        Ok(request) => request,
        Err(message) => {
            let body = app_form(
                &viewer,
                Some(&app),
                &fields,
                &sites,
                &active,
                Some(&message),
            );
            return Ok(html::page(&viewer, "/console/apps", &app.name, &body));
        }
    };
    request.client_id = None;
    let updated = hearth_auth::update_app_as(
        &state.auth,
        &client_id,
        &request,
        &viewer.user_id,
        RegistrationSource::Console,
    )
    .await;
    match updated {
        Ok(_) => Ok(Redirect::to(&format!(
            "/console/apps/{}?done=updated",
            path_segment(&client_id)
        ))
        .into_response()),
        Err(error) if error.status.is_client_error() => {
            let body = app_form(
                &viewer,
                Some(&app),
                &fields,
                &sites,
                &active,
                Some(&error.description),
            );
            Ok(html::page(&viewer, "/console/apps", &app.name, &body))
        }
        Err(error) => Err(error.into()),
    }
}

pub async fn rotate_secret(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(client_id): Path<String>,
    body: Bytes,
) -> ConsoleResult<Response> {
    require_app_admin(&viewer)?;
    FormData::checked(&viewer, &body)?;
    let app = find_visible(&state, &viewer, &client_id)?;
    let secret = hearth_auth::rotate_secret_as(&state.auth, &client_id, &viewer.user_id).await?;
    tracing::info!(client_id = %client_id, user_id = %viewer.user_id, "client secret rotated in the console");
    Ok(secret_page(&viewer, &app, &secret, "rotated"))
}

pub async fn set_status(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(client_id): Path<String>,
    body: Bytes,
) -> ConsoleResult<Response> {
    require_app_admin(&viewer)?;
    let form = FormData::checked(&viewer, &body)?;
    find_visible(&state, &viewer, &client_id)?;
    let done = match form.get("action") {
        Some("disable") => {
            hearth_auth::disable_app_as(&state.auth, &client_id, &viewer.user_id).await?;
            "disabled"
        }
        Some("enable") => {
            hearth_auth::enable_app_as(&state.auth, &client_id, &viewer.user_id).await?;
            "enabled"
        }
        _ => {
            return Err(ConsoleError::BadRequest(
                "action must be disable or enable".into(),
            ));
        }
    };
    Ok(Redirect::to(&format!(
        "/console/apps/{}?done={done}",
        path_segment(&client_id)
    ))
    .into_response())
}

/// Renders the page that shows a new client secret, the only time it is shown.
fn secret_page(viewer: &Viewer, app: &App, secret: &str, what: &str) -> Response {
    let body = format!(
        "<h1>Client secret of {name}</h1>\
         <p role=\"status\">The client secret was {what}. Copy it now: Hearth stores only its hash and cannot show it again.</p>\
         <label for=\"secret\">Client secret</label>\
         <input type=\"text\" id=\"secret\" readonly value=\"{secret}\" class=\"secret\">\
         <p><a href=\"/console/apps/{path}\">Back to {name}</a></p>",
        name = escape(&app.name),
        secret = escape(secret),
        path = path_segment(&app.client_id),
    );
    html::page(viewer, "/console/apps", "Client secret", &body)
}

fn require_app_admin(viewer: &Viewer) -> ConsoleResult<()> {
    if viewer.can_manage_apps() {
        Ok(())
    } else {
        Err(ConsoleError::Forbidden(
            "only platform admins register and change apps".to_string(),
        ))
    }
}

fn find_visible(state: &ConsoleState, viewer: &Viewer, client_id: &str) -> ConsoleResult<App> {
    match state.auth.store.app(client_id)? {
        Some(app) if viewer.can_see_app(&app) => Ok(app),
        _ => Err(ConsoleError::NotFound(format!(
            "no app with client id {client_id}"
        ))),
    }
}

/// Characters kept as they are in a path segment: letters, digits and RFC 3986's
/// unreserved marks.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes one path segment.
pub fn path_segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, PATH_SEGMENT).to_string()
}

pub fn client_type_label(client_type: ClientType) -> &'static str {
    match client_type {
        ClientType::Public => "public",
        ClientType::ConfidentialSymmetric => "confidential-symmetric",
        ClientType::ConfidentialAsymmetric => "confidential-asymmetric",
    }
}

/// The fields of the app form as typed, so a rejected form comes back filled in.
#[derive(Debug, Default)]
struct AppFields {
    client_id: String,
    name: String,
    client_type: String,
    redirect_uris: String,
    launch_uri: String,
    scope: String,
    vendor: String,
    jwks: String,
    jwks_uri: String,
    grant_types: Vec<String>,
}

impl AppFields {
    fn from_form(form: &FormData) -> AppFields {
        let text = |name: &str| form.get(name).unwrap_or_default().to_string();
        AppFields {
            client_id: text("client_id"),
            name: text("name"),
            client_type: text("client_type"),
            redirect_uris: text("redirect_uris"),
            launch_uri: text("launch_uri"),
            scope: text("scope"),
            vendor: text("vendor"),
            jwks: text("jwks"),
            jwks_uri: text("jwks_uri"),
            grant_types: form.all("grant_types"),
        }
    }

    fn from_app(app: &App) -> AppFields {
        let jwks = app
            .jwks
            .as_deref()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
            .and_then(|value| serde_json::to_string_pretty(&value).ok())
            .unwrap_or_default();
        AppFields {
            client_id: app.client_id.clone(),
            name: app.name.clone(),
            client_type: client_type_label(app.client_type).to_string(),
            redirect_uris: app.redirect_uris.join("\n"),
            launch_uri: app.launch_uri.clone().unwrap_or_default(),
            scope: app.scope.clone(),
            vendor: app.vendor.clone().unwrap_or_default(),
            jwks,
            jwks_uri: app.jwks_uri.clone().unwrap_or_default(),
            grant_types: app.grant_types.clone(),
        }
    }

    /// Builds the registration request, or returns a message naming the invalid field.
    fn request(&self) -> Result<AppRequest, String> {
        let optional = |text: &str| (!text.is_empty()).then(|| text.to_string());
        let jwks = match self.jwks.as_str() {
            "" => None,
            text => Some(
                serde_json::from_str(text)
                    .map_err(|e| format!("the JSON Web Key Set is not valid JSON: {e}"))?,
            ),
        };
        Ok(AppRequest {
            client_id: optional(&self.client_id),
            name: self.name.clone(),
            client_type: self.client_type.clone(),
            redirect_uris: self
                .redirect_uris
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            launch_uri: optional(&self.launch_uri),
            scope: self.scope.split_whitespace().collect::<Vec<_>>().join(" "),
            grant_types: (!self.grant_types.is_empty()).then(|| self.grant_types.clone()),
            token_endpoint_auth_method: None,
            jwks,
            jwks_uri: optional(&self.jwks_uri),
            logo_uri: None,
            client_uri: None,
            contacts: Vec::new(),
            vendor: optional(&self.vendor),
            software_id: None,
            software_version: None,
            sites: Vec::new(),
        })
    }
}

/// Renders the registration form. With `app`, it edits that app and shows its actions.
fn app_form(
    viewer: &Viewer,
    app: Option<&App>,
    fields: &AppFields,
    sites: &[hearth_auth_store::Site],
    active: &[String],
    error: Option<&str>,
) -> String {
    let editable = viewer.can_manage_apps();
    let disabled_attr = if editable { "" } else { " disabled" };
    let error = error.map(|e| html::notice("error", e)).unwrap_or_default();
    let (heading, action) = match app {
        Some(app) => (
            format!("App {}", escape(&app.name)),
            format!("/console/apps/{}", path_segment(&app.client_id)),
        ),
        None => ("Register an app".to_string(), "/console/apps".to_string()),
    };
    let client_id_field = match app {
        Some(app) => format!(
            "<p>Client id: <code id=\"client-id\">{}</code> ({})</p>",
            escape(&app.client_id),
            if app.disabled { "disabled" } else { "enabled" }
        ),
        None => format!(
            "<label for=\"client_id\">Client id <small>(optional; generated when empty)</small></label>\
             <input type=\"text\" id=\"client_id\" name=\"client_id\" value=\"{}\" maxlength=\"{}\">",
            escape(&fields.client_id),
            hearth_auth::MAX_CLIENT_ID_CHARS
        ),
    };
    let mut types = String::new();
    for (value, label) in [
        ("public", "Public (browser or native app, PKCE)"),
        (
            "confidential-symmetric",
            "Confidential with a client secret",
        ),
        (
            "confidential-asymmetric",
            "Confidential with keys (private_key_jwt)",
        ),
    ] {
        let selected = if fields.client_type == value {
            " selected"
        } else {
            ""
        };
        types.push_str(&format!(
            "<option value=\"{value}\"{selected}>{label}</option>"
        ));
    }
    let mut grants = String::new();
    for (value, label) in [
        ("authorization_code", "Authorization code (user launches)"),
        ("refresh_token", "Refresh token"),
        (
            "client_credentials",
            "Client credentials (backend services)",
        ),
    ] {
        let checked = if fields.grant_types.iter().any(|g| g == value) {
            " checked"
        } else {
            ""
        };
        grants.push_str(&format!(
            "<label class=\"check\"><input type=\"checkbox\" name=\"grant_types\" value=\"{value}\"{checked}{disabled_attr}> {label}</label>"
        ));
    }
    let site_choices = if app.is_none() {
        let mut boxes = String::new();
        for site in sites {
            let checked = if active.contains(&site.site_id) {
                " checked"
            } else {
                ""
            };
            boxes.push_str(&format!(
                "<label class=\"check\"><input type=\"checkbox\" name=\"sites\" value=\"{id}\"{checked}> {name} <code>{id}</code></label>",
                id = escape(&site.site_id),
                name = escape(&site.name),
            ));
        }
        format!("<fieldset><legend>Activate at sites</legend>{boxes}</fieldset>")
    } else {
        let links: Vec<String> = active
            .iter()
            .map(|site| {
                format!(
                    "<a href=\"/console/sites/{}\">{}</a>",
                    path_segment(site),
                    escape(site)
                )
            })
            .collect();
        format!(
            "<p>Active at: {}</p>",
            if links.is_empty() {
                "no site".to_string()
            } else {
                links.join(", ")
            }
        )
    };
    let submit = if editable {
        format!(
            "<button type=\"submit\">{}</button>",
            if app.is_some() {
                "Save changes"
            } else {
                "Register"
            }
        )
    } else {
        String::new()
    };
    let form = format!(
        "<form method=\"post\" action=\"{action}\" class=\"app-form\">{csrf}{client_id_field}\
         <label for=\"name\">Name</label>\
         <input type=\"text\" id=\"name\" name=\"name\" value=\"{name}\" required maxlength=\"{max_name}\"{disabled_attr}>\
         <label for=\"client_type\">Client type</label>\
         <select id=\"client_type\" name=\"client_type\"{disabled_attr}>{types}</select>\
         <label for=\"redirect_uris\">Redirect URIs <small>(one per line; https, or http at localhost)</small></label>\
         <textarea id=\"redirect_uris\" name=\"redirect_uris\" rows=\"3\" maxlength=\"{max_redirects}\"{disabled_attr}>{redirects}</textarea>\
         <label for=\"launch_uri\">Launch URI <small>(for EHR launches; https, or http at localhost)</small></label>\
         <input type=\"url\" id=\"launch_uri\" name=\"launch_uri\" value=\"{launch}\" maxlength=\"{max_uri}\"{disabled_attr}>\
         <label for=\"scope\">Scopes the app may be granted <small>(space separated)</small></label>\
         <textarea id=\"scope\" name=\"scope\" rows=\"2\" required maxlength=\"{max_scope}\"{disabled_attr}>{scope}</textarea>\
         <fieldset><legend>Grant types <small>(none checked: chosen from the redirect URIs)</small></legend>{grants}</fieldset>\
         <label for=\"vendor\">Vendor</label>\
         <input type=\"text\" id=\"vendor\" name=\"vendor\" value=\"{vendor}\" maxlength=\"{max_name}\"{disabled_attr}>\
         <fieldset><legend>Keys of a confidential asymmetric client</legend>\
         <label for=\"jwks_uri\">JWKS URL</label>\
         <input type=\"url\" id=\"jwks_uri\" name=\"jwks_uri\" value=\"{jwks_uri}\" maxlength=\"{max_uri}\"{disabled_attr}>\
         <label for=\"jwks\">or a JSON Web Key Set (public keys)</label>\
         <textarea id=\"jwks\" name=\"jwks\" rows=\"4\" class=\"mono\"{disabled_attr}>{jwks}</textarea>\
         <label for=\"jwks_file\" class=\"file\">Load a JWKS file into the field</label>\
         <input type=\"file\" id=\"jwks_file\" accept=\".json,.jwks,application/json\" data-fill=\"jwks\"{disabled_attr}>\
         </fieldset>{site_choices}{submit}</form>",
        csrf = csrf_field(viewer),
        name = escape(&fields.name),
        redirects = escape(&fields.redirect_uris),
        launch = escape(&fields.launch_uri),
        scope = escape(&fields.scope),
        vendor = escape(&fields.vendor),
        jwks_uri = escape(&fields.jwks_uri),
        jwks = escape(&fields.jwks),
        max_name = hearth_auth::MAX_NAME_CHARS,
        max_uri = hearth_auth::MAX_URI_CHARS,
        max_scope = hearth_auth::MAX_SCOPE_CHARS,
        // One URI per line, each with its line break.
        max_redirects = hearth_auth::MAX_REDIRECT_URIS * (hearth_auth::MAX_URI_CHARS + 1),
    );
    let actions = match app {
        Some(app) if editable => {
            let path = path_segment(&app.client_id);
            let rotate = if app.client_type == ClientType::ConfidentialSymmetric {
                format!(
                    "<form method=\"post\" action=\"/console/apps/{path}/secret\" data-confirm=\"Issue a new client secret? The current one stops working.\">{csrf}\
                     <button type=\"submit\" class=\"secondary\">Rotate client secret</button></form>",
                    csrf = csrf_field(viewer)
                )
            } else {
                String::new()
            };
            let (action, label) = if app.disabled {
                ("enable", "Enable app")
            } else {
                ("disable", "Disable app and revoke its grants")
            };
            format!(
                "<section class=\"actions\" aria-labelledby=\"actions-heading\"><h2 id=\"actions-heading\">Actions</h2>{rotate}\
                 <form method=\"post\" action=\"/console/apps/{path}/status\" data-confirm=\"{label}?\">{csrf}\
                 <input type=\"hidden\" name=\"action\" value=\"{action}\">\
                 <button type=\"submit\" class=\"danger\">{label}</button></form></section>",
                csrf = csrf_field(viewer)
            )
        }
        _ => String::new(),
    };
    format!("<h1>{heading}</h1>{error}{form}{actions}")
}
