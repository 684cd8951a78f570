//! The HTML pages of the authorization flow: sign-in, patient picker, approval and error.
//! They use no scripts or external assets, label every control and fit a phone screen.

/// Response layer for the whole server: HTML pages (sign-in, approval, grant management,
/// errors) may not be framed by another site, so a click on Approve cannot be hijacked,
/// and they get no CORS headers, which only the JSON endpoints need.
pub async fn protect_html_pages(
    mut response: axum::response::Response,
) -> axum::response::Response {
    use axum::http::{HeaderValue, header};

    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/html"));
    if !is_html {
        return response;
    }
    let headers = response.headers_mut();
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'none'"),
    );
    for name in [
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
    ] {
        headers.remove(name);
    }
    response
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1a1a1a;overflow-wrap:anywhere}\
main{max-width:28rem;margin:2rem auto;padding:1.5rem;background:#fff;border-radius:8px;box-shadow:0 1px 3px #0002}\
h1{font-size:1.4rem;margin-top:0}label{display:block;margin:.8rem 0 .3rem;font-weight:600}\
input[type=text],input[type=password],input[type=search]{width:100%;box-sizing:border-box;padding:.6rem;font-size:1rem;border:1px solid #6b7280;border-radius:4px}\
button{margin-top:1rem;padding:.6rem 1.2rem;font-size:1rem;border-radius:4px;border:1px solid #1d4ed8;background:#1d4ed8;color:#fff;cursor:pointer}\
button.secondary{background:#fff;color:#1d4ed8}button:focus,input:focus{outline:3px solid #f59e0b;outline-offset:2px}\
ul{padding-left:1.2rem}li{margin:.3rem 0}.error{color:#b91c1c;font-weight:600}\
.patients li{list-style:none;margin:.5rem 0}.patients{padding:0}\
@media (max-width:30rem){main{margin:0;border-radius:0;box-shadow:none}}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} - Hearth</title><style>{STYLE}</style></head>\
         <body><main>{body}</main></body></html>",
        title = escape(title),
    )
}

fn hidden(pending_id: &str, csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"request\" value=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(pending_id),
        escape(csrf)
    )
}

pub fn error_page(error: &str, description: &str) -> String {
    page(
        "Authorization error",
        &format!(
            "<h1>The app's request cannot be completed</h1><p role=\"alert\" class=\"error\">{}</p><p>{}</p>\
             <p>Close this window and try again from the app, or contact its developer.</p>",
            escape(error),
            escape(description)
        ),
    )
}

pub fn login_page(
    action: &str,
    pending_id: &str,
    csrf: &str,
    app_name: &str,
    error: Option<&str>,
) -> String {
    let error = error
        .map(|e| format!("<p role=\"alert\" class=\"error\">{}</p>", escape(e)))
        .unwrap_or_default();
    page(
        "Sign in",
        &format!(
            "<h1>Sign in to continue to {app}</h1>{error}\
             <form method=\"post\" action=\"{action}\">{hidden}\
             <label for=\"username\">Username</label>\
             <input type=\"text\" id=\"username\" name=\"username\" autocomplete=\"username\" required autofocus>\
             <label for=\"password\">Password</label>\
             <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
             <button type=\"submit\">Sign in</button></form>",
            app = escape(app_name),
            action = escape(action),
            hidden = hidden(pending_id, csrf),
        ),
    )
}

/// A patient in the picker: id, display name and a short description.
pub struct PatientChoice {
    pub id: String,
    pub name: String,
    pub detail: String,
}

pub fn picker_page(
    action: &str,
    pending_id: &str,
    csrf: &str,
    app_name: &str,
    query: &str,
    patients: &[PatientChoice],
    notice: Option<&str>,
) -> String {
    let mut list = String::new();
    for patient in patients {
        list.push_str(&format!(
            "<li><button type=\"submit\" name=\"patient\" value=\"{id}\" class=\"secondary\">{name}</button> <span>{detail}</span></li>",
            id = escape(&patient.id),
            name = escape(&patient.name),
            detail = escape(&patient.detail),
        ));
    }
    if let Some(notice) = notice {
        list.push_str(&format!("<li role=\"alert\">{}</li>", escape(notice)));
    } else if patients.is_empty() {
        list.push_str("<li>No patient matches.</li>");
    }
    page(
        "Choose a patient",
        &format!(
            "<h1>Choose the patient for {app}</h1>\
             <form method=\"post\" action=\"{action}\">{hidden}\
             <label for=\"name\">Search by name</label>\
             <input type=\"search\" id=\"name\" name=\"name\" value=\"{query}\">\
             <button type=\"submit\" name=\"search\" value=\"1\" class=\"secondary\">Search</button>\
             <ul class=\"patients\" aria-label=\"Patients\">{list}</ul></form>",
            app = escape(app_name),
            action = escape(action),
            hidden = hidden(pending_id, csrf),
            query = escape(query),
        ),
    )
}

pub fn approve_page(
    action: &str,
    pending_id: &str,
    csrf: &str,
    app_name: &str,
    patient: Option<&str>,
    scopes: &[String],
) -> String {
    let mut items = String::new();
    for description in scopes {
        items.push_str(&format!("<li>{}</li>", escape(description)));
    }
    let patient = patient
        .map(|p| format!("<p>Patient: <strong>{}</strong></p>", escape(p)))
        .unwrap_or_default();
    page(
        "Allow access",
        &format!(
            "<h1>{app} asks for access</h1>{patient}<p>If you allow it, {app} may:</p><ul>{items}</ul>\
             <form method=\"post\" action=\"{action}\">{hidden}\
             <button type=\"submit\" name=\"decision\" value=\"approve\">Allow</button> \
             <button type=\"submit\" name=\"decision\" value=\"deny\" class=\"secondary\">Deny</button></form>",
            app = escape(app_name),
            action = escape(action),
            hidden = hidden(pending_id, csrf),
        ),
    )
}

/// The sign-in form of the grant management page.
pub fn manage_login_page(action: &str, csrf: &str, error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p role=\"alert\" class=\"error\">{}</p>", escape(e)))
        .unwrap_or_default();
    page(
        "Sign in",
        &format!(
            "<h1>Sign in to manage the apps you allowed</h1>{error}\
             <form method=\"post\" action=\"{action}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label for=\"username\">Username</label>\
             <input type=\"text\" id=\"username\" name=\"username\" autocomplete=\"username\" required autofocus>\
             <label for=\"password\">Password</label>\
             <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
             <button type=\"submit\">Sign in</button></form>",
            action = escape(action),
            csrf = escape(csrf),
        ),
    )
}

/// A grant as the management page lists it.
pub struct GrantSummary {
    pub grant_id: String,
    pub app_name: String,
    pub granted_at: String,
    pub scopes: Vec<String>,
    /// `None` while the grant is active, else when and why it ended.
    pub revoked: Option<String>,
}

/// The signed-in user's grants at a site, each active one with a revoke button.
pub fn grants_page(action: &str, csrf: &str, user: &str, grants: &[GrantSummary]) -> String {
    let mut items = String::new();
    for grant in grants {
        let scopes: String = grant
            .scopes
            .iter()
            .map(|s| format!("<li>{}</li>", escape(s)))
            .collect();
        let status = match &grant.revoked {
            Some(revoked) => format!("<p>Revoked: {}</p>", escape(revoked)),
            None => format!(
                "<form method=\"post\" action=\"{action}\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <button type=\"submit\" name=\"grant_id\" value=\"{id}\">Revoke access of {app}</button></form>",
                action = escape(action),
                csrf = escape(csrf),
                id = escape(&grant.grant_id),
                app = escape(&grant.app_name),
            ),
        };
        items.push_str(&format!(
            "<li class=\"grant\"><h2>{app}</h2><p>Allowed {when}</p><ul>{scopes}</ul>{status}</li>",
            app = escape(&grant.app_name),
            when = escape(&grant.granted_at),
        ));
    }
    if grants.is_empty() {
        items.push_str("<li>You have not allowed any app at this site.</li>");
    }
    page(
        "Apps you allowed",
        &format!(
            "<h1>Apps you allowed</h1><p>Signed in as {user}.</p>\
             <ul class=\"patients\" aria-label=\"Grants\">{items}</ul>",
            user = escape(user),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn pages_escape_untrusted_text() {
        let html = login_page(
            "/auth/authorize/login",
            "p1",
            "c1",
            "<script>alert(1)</script>",
            Some("bad <b>"),
        );
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("<label for=\"username\">"));
    }
}
