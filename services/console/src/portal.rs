//! The provider portal, a sandbox EHR: pick a site, a practitioner, a patient and
//! optionally an encounter, then launch any app active at the site in an EHR launch with
//! that context. The choices come from the site's data: the repository of a
//! repository-backed site, the upstream EHR of an EHR-backed one. The patient portal does the same for a signed-in
//! patient, with the patient fixed to the user's own record.
//!
//! The choices are a plain GET form, so the pages work without JavaScript and the browser's
//! back button keeps them. A launch is a POST: it records a `LaunchCreated` event and
//! redirects the browser to the app's launch URI with `iss` and `launch`.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use hearth_auth::LaunchRequest;
use hearth_auth_store::{App, Site};
use serde::Deserialize;
use serde_json::Value;

use crate::ConsoleState;
use crate::error::{ConsoleError, ConsoleResult};
use crate::html::{self, csrf_field, escape};
use crate::session::{FormData, Viewer};

/// Matches listed per search.
const RESULTS: usize = 20;

#[derive(Debug, Default, Deserialize)]
pub struct PortalQuery {
    site: Option<String>,
    practitioner_name: Option<String>,
    patient_name: Option<String>,
    practitioner: Option<String>,
    patient: Option<String>,
    encounter: Option<String>,
}

impl PortalQuery {
    fn value(field: &Option<String>) -> Option<&str> {
        field.as_deref().map(str::trim).filter(|v| !v.is_empty())
    }
}

pub async fn provider_page(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<PortalQuery>,
) -> ConsoleResult<Response> {
    if !viewer.can_use_provider_portal() {
        return Err(ConsoleError::Forbidden(
            "the provider portal is for administrators, app vendors and practitioners".into(),
        ));
    }
    let sites = launch_sites(&state, &viewer)?;
    let site = chosen_site(&sites, PortalQuery::value(&query.site))?;
    let csrf = csrf_field(&viewer);

    let practitioner_section = match viewer.practitioner() {
        Some(own) if !viewer.can_see_usage() => format!(
            "<p>Practitioner: <strong>{}</strong> (you)</p><input type=\"hidden\" name=\"practitioner\" value=\"{}\">",
            escape(&resource_label(&state, &site, "Practitioner", own).await),
            escape(own)
        ),
        _ => {
            let chosen = PortalQuery::value(&query.practitioner);
            let search = PortalQuery::value(&query.practitioner_name).unwrap_or("");
            let found = search_people(&state, &site, "Practitioner", search).await?;
            format!(
                "<fieldset><legend>Practitioner</legend>\
                 <label for=\"practitioner_name\">Search practitioners by name</label>\
                 <input type=\"search\" id=\"practitioner_name\" name=\"practitioner_name\" value=\"{search}\">\
                 {choices}</fieldset>",
                search = escape(search),
                choices = radio_list("practitioner", &found, chosen, Some("No practitioner")),
            )
        }
    };
    let patient_search = PortalQuery::value(&query.patient_name).unwrap_or("");
    let chosen_patient = PortalQuery::value(&query.patient);
    let patients = search_people(&state, &site, "Patient", patient_search).await?;
    let encounters = match chosen_patient {
        Some(patient) => encounters_of(&state, &site, patient).await?,
        None => Vec::new(),
    };
    let encounter_section = if chosen_patient.is_some() {
        format!(
            "<fieldset><legend>Encounter <small>(optional)</small></legend>{}</fieldset>",
            radio_list(
                "encounter",
                &encounters,
                PortalQuery::value(&query.encounter),
                Some("No encounter")
            )
        )
    } else {
        String::new()
    };
    let choose = format!(
        "<form method=\"get\" action=\"/console/portal\" class=\"portal\">\
         {site_select}{practitioner_section}\
         <fieldset><legend>Patient</legend>\
         <label for=\"patient_name\">Search patients by name</label>\
         <input type=\"search\" id=\"patient_name\" name=\"patient_name\" value=\"{search}\">\
         {patients}</fieldset>{encounter_section}\
         <button type=\"submit\" class=\"secondary\">Search and update choices</button></form>",
        site_select = site_select(&sites, &site),
        search = escape(patient_search),
        patients = radio_list("patient", &patients, chosen_patient, None),
    );

    let context = LaunchContext {
        site_id: site.site_id.clone(),
        practitioner: match viewer.practitioner() {
            Some(own) if !viewer.can_see_usage() => Some(own.to_string()),
            _ => PortalQuery::value(&query.practitioner).map(str::to_string),
        },
        patient: chosen_patient.map(str::to_string),
        encounter: PortalQuery::value(&query.encounter).map(str::to_string),
    };
    let apps = launch_buttons(&state, &site, &context, &csrf)?;
    let summary = match &context.patient {
        Some(patient) => format!(
            "<p>Launch context: patient <strong id=\"chosen-patient\">{}</strong>{}.</p>",
            escape(&resource_label(&state, &site, "Patient", patient).await),
            context
                .encounter
                .as_deref()
                .map(|e| format!(", encounter <code>{}</code>", escape(e)))
                .unwrap_or_default()
        ),
        None => "<p>Choose a patient to launch apps with a patient context.</p>".to_string(),
    };
    let body = format!(
        "<h1>Provider portal</h1><p>A sandbox EHR: choose the context, then launch an app the way an EHR would.</p>\
         <div class=\"portal-grid\"><section aria-labelledby=\"context-heading\"><h2 id=\"context-heading\">Context</h2>{choose}</section>\
         <section aria-labelledby=\"launch-heading\"><h2 id=\"launch-heading\">Apps at {site_name}</h2>{summary}{apps}</section></div>",
        site_name = escape(&site.name),
    );
    Ok(html::page(
        &viewer,
        "/console/portal",
        "Provider portal",
        &body,
    ))
}

pub async fn patient_page(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<PortalQuery>,
) -> ConsoleResult<Response> {
    let Some(patient) = viewer.patient() else {
        return Err(ConsoleError::Forbidden(
            "the patient portal is for users who are a patient".into(),
        ));
    };
    let sites = launch_sites(&state, &viewer)?;
    let site = chosen_site(&sites, PortalQuery::value(&query.site))?;
    let context = LaunchContext {
        site_id: site.site_id.clone(),
        practitioner: None,
        patient: Some(patient.to_string()),
        encounter: None,
    };
    let apps = launch_buttons(&state, &site, &context, &csrf_field(&viewer))?;
    let body = format!(
        "<h1>Patient portal</h1><p>Signed in as <strong>{name}</strong>.</p>\
         <form method=\"get\" action=\"/console/patient-portal\">{site_select}\
         <button type=\"submit\" class=\"secondary\">Show apps</button></form>\
         <section aria-labelledby=\"launch-heading\"><h2 id=\"launch-heading\">Apps at {site_name}</h2>{apps}</section>",
        name = escape(&resource_label(&state, &site, "Patient", patient).await),
        site_select = site_select(&sites, &site),
        site_name = escape(&site.name),
    );
    Ok(html::page(
        &viewer,
        "/console/patient-portal",
        "Patient portal",
        &body,
    ))
}

/// Context fields that a launch button posts.
struct LaunchContext {
    site_id: String,
    practitioner: Option<String>,
    patient: Option<String>,
    encounter: Option<String>,
}

fn launch_buttons(
    state: &ConsoleState,
    site: &Site,
    context: &LaunchContext,
    csrf: &str,
) -> ConsoleResult<String> {
    let apps: Vec<App> = state
        .auth
        .store
        .active_apps(&site.site_id)?
        .into_iter()
        .filter(|app| !app.disabled && app.launch_uri.as_deref().is_some_and(is_launchable))
        .collect();
    if apps.is_empty() {
        return Ok("<p>No app with a launch URI is active at this site.</p>".to_string());
    }
    let hidden = |name: &str, value: &Option<String>| {
        value
            .as_deref()
            .map(|v| {
                format!(
                    "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
                    escape(v)
                )
            })
            .unwrap_or_default()
    };
    let mut items = String::new();
    for app in apps {
        items.push_str(&format!(
            "<li><form method=\"post\" action=\"/console/portal/launch\">{csrf}\
             <input type=\"hidden\" name=\"site\" value=\"{site}\">\
             <input type=\"hidden\" name=\"client_id\" value=\"{id}\">{practitioner}{patient}{encounter}\
             <button type=\"submit\" data-client-id=\"{id}\">Launch {name}</button> \
             <small class=\"scope\">{scope}</small></form></li>",
            site = escape(&context.site_id),
            id = escape(&app.client_id),
            practitioner = hidden("practitioner", &context.practitioner),
            patient = hidden("patient", &context.patient),
            encounter = hidden("encounter", &context.encounter),
            name = escape(&app.name),
            scope = escape(&app.scope),
        ));
    }
    Ok(format!("<ul class=\"launches\">{items}</ul>"))
}

pub async fn launch(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    body: Bytes,
) -> ConsoleResult<Response> {
    let form = FormData::checked(&viewer, &body)?;
    let site_id = form
        .get("site")
        .ok_or_else(|| ConsoleError::BadRequest("site is missing".into()))?;
    let client_id = form
        .get("client_id")
        .ok_or_else(|| ConsoleError::BadRequest("client_id is missing".into()))?;
    if !viewer.can_launch_at(site_id) {
        return Err(ConsoleError::Forbidden(format!(
            "you cannot launch apps at site {site_id}"
        )));
    }
    let site = state
        .auth
        .store
        .site(site_id)?
        .ok_or_else(|| ConsoleError::NotFound(format!("no site {site_id}")))?;
    let app = match state.auth.store.app(client_id)? {
        Some(app) if !app.disabled && state.auth.store.is_active(site_id, client_id)? => app,
        _ => {
            return Err(ConsoleError::BadRequest(format!(
                "app {client_id} is not active at site {site_id}"
            )));
        }
    };
    let launch_uri = app
        .launch_uri
        .clone()
        .ok_or_else(|| ConsoleError::BadRequest(format!("app {client_id} has no launch URI")))?;
    // Apps registered before launch URIs were checked may hold one of another scheme,
    // such as javascript:, which the browser must never be sent to.
    if !is_launchable(&launch_uri) {
        return Err(ConsoleError::BadRequest(format!(
            "the launch URI of app {client_id} is not an https URL (or http at localhost); correct it on the app's page"
        )));
    }

    // A patient launches only with its own record; a practitioner who is not also an
    // administrator or vendor launches as itself.
    let (patient, user) = if let Some(own) = viewer
        .patient()
        .filter(|_| !viewer.can_use_provider_portal())
    {
        (Some(own.to_string()), Some(format!("Patient/{own}")))
    } else if !viewer.can_use_provider_portal() {
        return Err(ConsoleError::Forbidden("you cannot launch apps".into()));
    } else {
        let practitioner = match viewer.practitioner() {
            Some(own) if !viewer.can_see_usage() => Some(own.to_string()),
            _ => form.get("practitioner").map(str::to_string),
        };
        (
            form.get("patient").map(str::to_string),
            practitioner.map(|p| format!("Practitioner/{p}")),
        )
    };
    let request = LaunchRequest {
        client_id: Some(client_id.to_string()),
        patient,
        encounter: form.get("encounter").map(str::to_string),
        need_patient_banner: Some(true),
        user,
        ..LaunchRequest::default()
    };
    let launch = hearth_auth::create_launch_as(&state.auth, &site, &request).await?;
    tracing::info!(client_id = %client_id, site_id = %site_id, user_id = %viewer.user_id, "EHR launch from the portal");

    let iss = hearth_auth::fhir_base_url(&state.settings.public_url, site_id);
    let mut target = url::Url::parse(&launch_uri).map_err(|_| {
        ConsoleError::BadRequest(format!("the launch URI of app {client_id} is not a URL"))
    })?;
    target
        .query_pairs_mut()
        .append_pair("iss", &iss)
        .append_pair("launch", &launch);
    Ok(Redirect::to(target.as_str()).into_response())
}

/// Returns whether the portal may send a browser to a launch URI, which is only when it
/// passes the check of app registration.
fn is_launchable(launch_uri: &str) -> bool {
    hearth_auth::check_launch_uri(launch_uri).is_ok()
}

/// Returns the sites where the viewer may launch apps.
fn launch_sites(state: &ConsoleState, viewer: &Viewer) -> ConsoleResult<Vec<Site>> {
    Ok(state
        .auth
        .store
        .sites()?
        .into_iter()
        .filter(|site| viewer.can_launch_at(&site.site_id))
        .collect())
}

fn chosen_site(sites: &[Site], requested: Option<&str>) -> ConsoleResult<Site> {
    let found = match requested {
        Some(id) => sites.iter().find(|s| s.site_id == id),
        None => sites
            .iter()
            .find(|s| s.site_id == hearth_auth::DEFAULT_SITE)
            .or(sites.first()),
    };
    found
        .cloned()
        .ok_or_else(|| ConsoleError::NotFound("no site where you can launch apps".into()))
}

fn site_select(sites: &[Site], chosen: &Site) -> String {
    let mut options = String::new();
    for site in sites {
        let selected = if site.site_id == chosen.site_id {
            " selected"
        } else {
            ""
        };
        options.push_str(&format!(
            "<option value=\"{id}\"{selected}>{name} ({id})</option>",
            id = escape(&site.site_id),
            name = escape(&site.name),
        ));
    }
    format!("<label for=\"site\">Site</label><select id=\"site\" name=\"site\">{options}</select>")
}

/// One search result: id, label and a detail line.
struct Choice {
    id: String,
    label: String,
    detail: String,
}

fn radio_list(name: &str, choices: &[Choice], chosen: Option<&str>, none: Option<&str>) -> String {
    let mut out = format!("<ul class=\"choices\" aria-label=\"{name} choices\">");
    if let Some(label) = none {
        let checked = if chosen.is_none() { " checked" } else { "" };
        out.push_str(&format!(
            "<li><label><input type=\"radio\" name=\"{name}\" value=\"\"{checked}> {label}</label></li>"
        ));
    }
    let mut listed_chosen = false;
    for choice in choices {
        let checked = if chosen == Some(choice.id.as_str()) {
            listed_chosen = true;
            " checked"
        } else {
            ""
        };
        out.push_str(&format!(
            "<li><label><input type=\"radio\" name=\"{name}\" value=\"{id}\"{checked}> {label} <small>{detail}</small></label></li>",
            id = escape(&choice.id),
            label = escape(&choice.label),
            detail = escape(&choice.detail),
        ));
    }
    // Keeps a choice made under an earlier search when the new search does not list it.
    if let (Some(id), false) = (chosen, listed_chosen) {
        out.push_str(&format!(
            "<li><label><input type=\"radio\" name=\"{name}\" value=\"{id}\" checked> {id} <small>(chosen before)</small></label></li>",
            id = escape(id),
        ));
    }
    if choices.is_empty() && none.is_none() && chosen.is_none() {
        out.push_str("<li>No match.</li>");
    }
    out.push_str("</ul>");
    out
}

/// Searches a site's resources as Hearth itself. A failed search at an EHR is a 502 page
/// that names the site.
async fn search_site(
    state: &ConsoleState,
    site: &Site,
    resource_type: &str,
    params: &[(String, String)],
    count: usize,
) -> ConsoleResult<Vec<Value>> {
    hearth_auth::search_at(&state.auth, site, resource_type, params, count)
        .await
        .map_err(|error| ConsoleError::Upstream(site.site_id.clone(), error.to_string()))
}

/// Searches Patients or Practitioners by name; an empty name lists the first ones.
async fn search_people(
    state: &ConsoleState,
    site: &Site,
    resource_type: &str,
    name: &str,
) -> ConsoleResult<Vec<Choice>> {
    let params = if name.trim().is_empty() {
        Vec::new()
    } else {
        vec![("name".to_string(), name.trim().to_string())]
    };
    let found = search_site(state, site, resource_type, &params, RESULTS).await?;
    Ok(found
        .into_iter()
        .map(|resource| Choice {
            id: resource["id"].as_str().unwrap_or_default().to_string(),
            label: person_name(&resource),
            detail: match resource_type {
                "Patient" => format!(
                    "born {}, {}",
                    resource["birthDate"].as_str().unwrap_or("unknown"),
                    resource["gender"].as_str().unwrap_or("gender unknown")
                ),
                _ => resource["id"].as_str().unwrap_or_default().to_string(),
            },
        })
        .collect())
}

/// Returns the latest encounters of a patient, newest first.
async fn encounters_of(
    state: &ConsoleState,
    site: &Site,
    patient: &str,
) -> ConsoleResult<Vec<Choice>> {
    let params = vec![("patient".to_string(), format!("Patient/{patient}"))];
    let found = search_site(state, site, "Encounter", &params, 500).await?;
    let mut encounters: Vec<(String, Choice)> = found
        .into_iter()
        .map(|e| {
            let start = e["period"]["start"].as_str().unwrap_or("").to_string();
            let kind = e["type"][0]["text"]
                .as_str()
                .or(e["type"][0]["coding"][0]["display"].as_str())
                .or(e["class"]["code"].as_str())
                .unwrap_or("encounter")
                .to_string();
            let choice = Choice {
                id: e["id"].as_str().unwrap_or_default().to_string(),
                label: kind,
                detail: start.get(..10).unwrap_or(&start).to_string(),
            };
            (start, choice)
        })
        .collect();
    encounters.sort_by(|a, b| b.0.cmp(&a.0));
    Ok(encounters
        .into_iter()
        .take(RESULTS)
        .map(|(_, c)| c)
        .collect())
}

fn person_name(resource: &Value) -> String {
    let name = &resource["name"][0];
    let mut parts: Vec<&str> = Vec::new();
    if let Some(prefix) = name["prefix"][0].as_str() {
        parts.push(prefix);
    }
    parts.extend(
        name["given"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str),
    );
    parts.extend(name["family"].as_str());
    let text = parts.join(" ");
    if text.trim().is_empty() {
        resource["id"].as_str().unwrap_or("unnamed").to_string()
    } else {
        text
    }
}

/// Returns the display name of a Patient or Practitioner at a site, or its reference
/// when it is not found or cannot be read.
async fn resource_label(
    state: &ConsoleState,
    site: &Site,
    resource_type: &str,
    id: &str,
) -> String {
    match hearth_auth::read_at(&state.auth, site, resource_type, id).await {
        Ok(Some(resource)) => person_name(&resource),
        Ok(None) => format!("{resource_type}/{id}"),
        Err(error) => {
            tracing::warn!(site_id = %site.site_id, resource_type, %error, "reading a portal label failed");
            format!("{resource_type}/{id}")
        }
    }
}
