//! The page frame and small HTML helpers. Every value that comes from a user, an app
//! registration or the repository goes through [`escape`].

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

use crate::session::Viewer;

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

/// Renders a page without navigation, for sign-in and errors.
pub fn bare_page(title: &str, body: &str) -> String {
    frame(title, "", body)
}

/// Renders a page with the navigation that the viewer's roles allow. `current` is the path of
/// the navigation entry to mark as the current page.
pub fn page(viewer: &Viewer, current: &str, title: &str, body: &str) -> Response {
    let mut links = Vec::new();
    if viewer.is_platform_admin() || viewer.admin_site().is_some() {
        links.push(("/console/apps", "Apps"));
        links.push(("/console/sites", "Sites"));
    } else if viewer.vendor().is_some() {
        links.push(("/console/apps", "Apps"));
    }
    if viewer.is_platform_admin() {
        links.push(("/console/users", "Users"));
    }
    if viewer.can_see_usage() {
        links.push(("/console/usage", "Usage"));
    }
    if viewer.can_use_provider_portal() {
        links.push(("/console/portal", "Provider portal"));
    }
    if viewer.patient().is_some() {
        links.push(("/console/patient-portal", "Patient portal"));
    }
    let mut nav = String::from("<nav aria-label=\"Console\"><ul>");
    for (href, label) in links {
        let marker = if href == current {
            " aria-current=\"page\""
        } else {
            ""
        };
        nav.push_str(&format!("<li><a href=\"{href}\"{marker}>{label}</a></li>"));
    }
    nav.push_str("</ul></nav>");
    let header = format!(
        "<header><a class=\"brand\" href=\"/console/\">Hearth console</a>{nav}\
         <form method=\"post\" action=\"/console/sign-out\" class=\"signout\">{csrf}\
         <span class=\"who\">{who} <small>({role})</small></span> \
         <button type=\"submit\" class=\"secondary\">Sign out</button></form></header>",
        csrf = csrf_field(viewer),
        who = escape(viewer.display_name()),
        role = escape(&viewer.role_label()),
    );
    no_store(Html(frame(title, &header, body)).into_response())
}

fn frame(title: &str, header: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} - Hearth</title>\
         <link rel=\"stylesheet\" href=\"/console/assets/console.css\"></head>\
         <body><a class=\"skip\" href=\"#main\">Skip to content</a>{header}\
         <main id=\"main\">{body}</main>\
         <script src=\"/console/assets/console.js\" defer></script></body></html>",
        title = escape(title),
    )
}

/// Opens the box that scrolls a wide table sideways on a small screen. The box is a Tab
/// stop, so keyboard users can scroll it too. It is a region labelled by the table's
/// caption, whose id is `caption_id`.
pub fn table_wrap(caption_id: &str) -> String {
    format!(
        "<div class=\"table-wrap\" role=\"region\" aria-labelledby=\"{}\" tabindex=\"0\">",
        escape(caption_id)
    )
}

/// Renders the hidden CSRF field of a form posted by a signed-in viewer.
pub fn csrf_field(viewer: &Viewer) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(&viewer.csrf)
    )
}

/// Renders a notice above a page's content. `kind` is `ok` or `error`.
pub fn notice(kind: &str, text: &str) -> String {
    let role = if kind == "error" { "alert" } else { "status" };
    format!(
        "<p class=\"notice {kind}\" role=\"{role}\">{}</p>",
        escape(text)
    )
}

/// Marks a response as not cacheable: console pages show live state and secrets.
pub fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

/// Formats microseconds since the Unix epoch as an ISO 8601 instant in UTC.
pub fn instant(micros: i64) -> String {
    hearth_cdr::format_instant(micros)
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
}
