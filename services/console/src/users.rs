//! The users page of platform admins: every user with its roles and FHIR user, a form
//! that adds a user (a portal user with a `fhirUser`, or an administrator or vendor), and
//! a button that disables one. Disabling ends the user's sessions at once.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use hearth_auth::UserRequest;

use crate::ConsoleState;
use crate::apps::path_segment;
use crate::error::{ConsoleError, ConsoleResult};
use crate::html::{self, csrf_field, escape};
use crate::session::{FormData, Viewer};

/// Roles the form offers, with their labels. The empty value is a portal user.
const ROLES: &[(&str, &str)] = &[
    ("", "None: a practitioner or patient who uses a portal"),
    ("platform-admin", "Platform admin (all sites)"),
    ("site-admin", "Site admin (one site)"),
    ("app-vendor", "App vendor (its own apps' usage)"),
];

/// The fields of the form, kept as typed when it comes back with an error. The password
/// is never sent back.
#[derive(Debug, Default)]
struct UserFields {
    username: String,
    display_name: String,
    fhir_user: String,
    role: String,
    site_id: String,
    vendor: String,
}

#[derive(serde::Deserialize)]
pub struct UsersQuery {
    done: Option<String>,
}

fn require_platform_admin(viewer: &Viewer) -> ConsoleResult<()> {
    if viewer.is_platform_admin() {
        Ok(())
    } else {
        Err(ConsoleError::Forbidden(
            "only platform admins manage users".into(),
        ))
    }
}

pub async fn list(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<UsersQuery>,
) -> ConsoleResult<Response> {
    require_platform_admin(&viewer)?;
    let notice = match query.done.as_deref() {
        Some("created") => html::notice("ok", "The user is added."),
        Some("disabled") => html::notice(
            "ok",
            "The user is disabled. Its sessions ended and it can no longer sign in.",
        ),
        _ => String::new(),
    };
    let body = page_body(&state, &viewer, &notice, &UserFields::default())?;
    Ok(html::page(&viewer, "/console/users", "Users", &body))
}

fn page_body(
    state: &ConsoleState,
    viewer: &Viewer,
    notice: &str,
    fields: &UserFields,
) -> ConsoleResult<String> {
    let csrf = csrf_field(viewer);
    let mut rows = String::new();
    for user in state.auth.store.users()? {
        let r = &user.registration;
        let scope = match (r.site_id.as_deref(), r.vendor.as_deref()) {
            (Some(site), _) => format!("site {}", escape(site)),
            (None, Some(vendor)) => format!("vendor {}", escape(vendor)),
            (None, None) => String::new(),
        };
        let action = if user.disabled {
            "disabled".to_string()
        } else if r.user_id == viewer.user_id {
            "you".to_string()
        } else {
            format!(
                "<form method=\"post\" action=\"/console/users/{path}/disable\" data-confirm=\"Disable {name}? Its sessions end at once.\">{csrf}\
                 <button type=\"submit\" class=\"danger small\" aria-label=\"Disable {name}\">Disable</button></form>",
                path = path_segment(&r.user_id),
                name = escape(&r.username),
            )
        };
        rows.push_str(&format!(
            "<tr data-username=\"{username}\"><td>{username}</td><td>{display}</td><td>{fhir_user}</td>\
             <td>{roles}</td><td>{scope}</td><td>{status}</td><td>{action}</td></tr>",
            username = escape(&r.username),
            display = escape(r.display_name.as_deref().unwrap_or("")),
            fhir_user = r
                .fhir_user
                .as_deref()
                .map(|f| format!("<code>{}</code>", escape(f)))
                .unwrap_or_default(),
            roles = escape(&r.roles.join(", ")),
            status = if user.disabled { "disabled" } else { "active" },
        ));
    }
    let role_options: String = ROLES
        .iter()
        .map(|(value, label)| {
            let selected = if *value == fields.role {
                " selected"
            } else {
                ""
            };
            format!("<option value=\"{value}\"{selected}>{label}</option>")
        })
        .collect();
    let mut site_options = String::from("<option value=\"\">No site</option>");
    for site in state.auth.store.sites()? {
        let selected = if site.site_id == fields.site_id {
            " selected"
        } else {
            ""
        };
        site_options.push_str(&format!(
            "<option value=\"{id}\"{selected}>{name} ({id})</option>",
            id = escape(&site.site_id),
            name = escape(&site.name),
        ));
    }
    Ok(format!(
        "{notice}<h1>Users</h1>\
         {wrap}<table>\
         <caption id=\"users-caption\">Users who sign in to the console, the portals and Hearth's authorization pages</caption>\
         <thead><tr><th scope=\"col\">Username</th><th scope=\"col\">Name</th><th scope=\"col\">FHIR user</th>\
         <th scope=\"col\">Roles</th><th scope=\"col\">Site or vendor</th><th scope=\"col\">Status</th><th scope=\"col\">Disable</th></tr></thead>\
         <tbody>{rows}</tbody></table></div>\
         <section aria-labelledby=\"new-user\"><h2 id=\"new-user\">Add a user</h2>\
         <form method=\"post\" action=\"/console/users\" class=\"user-form\">{csrf}\
         <label for=\"new_username\">Username</label>\
         <input type=\"text\" id=\"new_username\" name=\"username\" value=\"{username}\" required maxlength=\"{max_name}\" autocomplete=\"off\">\
         <label for=\"new_display_name\">Display name <small>(optional)</small></label>\
         <input type=\"text\" id=\"new_display_name\" name=\"display_name\" value=\"{display}\" maxlength=\"{max_name}\" autocomplete=\"off\">\
         <label for=\"new_password\">Password <small>(at least {min} characters)</small></label>\
         <input type=\"password\" id=\"new_password\" name=\"password\" required minlength=\"{min}\" maxlength=\"{max_password}\" autocomplete=\"new-password\">\
         <label for=\"new_fhir_user\">FHIR user <small>(Practitioner/ID for the provider portal, Patient/ID for the patient portal)</small></label>\
         <input type=\"text\" id=\"new_fhir_user\" name=\"fhir_user\" value=\"{fhir_user}\" pattern=\"(Practitioner|PractitionerRole|Patient|RelatedPerson|Person)/[A-Za-z0-9\\-\\.]{{1,64}}\">\
         <label for=\"new_role\">Console role</label>\
         <select id=\"new_role\" name=\"role\">{role_options}</select>\
         <label for=\"new_site\">Site <small>(for a site admin)</small></label>\
         <select id=\"new_site\" name=\"site_id\">{site_options}</select>\
         <label for=\"new_vendor\">Vendor <small>(for an app vendor)</small></label>\
         <input type=\"text\" id=\"new_vendor\" name=\"vendor\" value=\"{vendor}\" maxlength=\"{max_name}\">\
         <button type=\"submit\">Add user</button></form></section>",
        username = escape(&fields.username),
        display = escape(&fields.display_name),
        fhir_user = escape(&fields.fhir_user),
        vendor = escape(&fields.vendor),
        min = hearth_auth::MIN_PASSWORD_BYTES,
        max_password = hearth_auth::MAX_PASSWORD_BYTES,
        max_name = hearth_auth::MAX_NAME_CHARS,
        wrap = html::table_wrap("users-caption"),
    ))
}

pub async fn create(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    body: Bytes,
) -> ConsoleResult<Response> {
    require_platform_admin(&viewer)?;
    let form = FormData::checked(&viewer, &body)?;
    let text = |name: &str| form.get(name).unwrap_or_default().to_string();
    let fields = UserFields {
        username: text("username"),
        display_name: text("display_name"),
        fhir_user: text("fhir_user"),
        role: text("role"),
        site_id: text("site_id"),
        vendor: text("vendor"),
    };
    let optional = |value: &str| Some(value.to_string()).filter(|v| !v.is_empty());
    let request = UserRequest {
        username: fields.username.clone(),
        // The raw field, because a password may begin or end with a space.
        password: form.raw("password").unwrap_or_default().to_string(),
        fhir_user: optional(&fields.fhir_user),
        display_name: optional(&fields.display_name),
        roles: optional(&fields.role).into_iter().collect(),
        site_id: optional(&fields.site_id).filter(|_| fields.role == "site-admin"),
        vendor: optional(&fields.vendor).filter(|_| fields.role == "app-vendor"),
    };
    match hearth_auth::create_user_as(&state.auth, &request, &viewer.user_id).await {
        Ok(user) => {
            tracing::info!(user_id = %user.registration.user_id, actor = %viewer.user_id, "user added in the console");
            Ok(Redirect::to("/console/users?done=created").into_response())
        }
        Err(error) if error.status.is_client_error() => {
            let notice = html::notice("error", &error.description);
            let body = page_body(&state, &viewer, &notice, &fields)?;
            let mut response = html::page(&viewer, "/console/users", "Users", &body);
            *response.status_mut() = error.status;
            Ok(response)
        }
        Err(error) => Err(error.into()),
    }
}

pub async fn disable(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(user_id): Path<String>,
    body: Bytes,
) -> ConsoleResult<Response> {
    require_platform_admin(&viewer)?;
    FormData::checked(&viewer, &body)?;
    if user_id == viewer.user_id {
        return Err(ConsoleError::BadRequest(
            "you cannot disable your own user; ask another platform admin".into(),
        ));
    }
    hearth_auth::disable_user_as(&state.auth, &user_id, &viewer.user_id).await?;
    Ok(Redirect::to("/console/users?done=disabled").into_response())
}
