//! Errors of the console, shown to the browser as an HTML page with the status code.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use hearth_auth::OAuthError;

use crate::html;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The request needs a signed-in user.
    #[error("sign-in needed")]
    SignInNeeded,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    /// The form's CSRF token is missing or belongs to another session.
    #[error("the form has expired; reload the page and submit it again")]
    Csrf,
    /// An operation of the authorization server failed; its description is for users.
    #[error("{}", .0.description)]
    Auth(OAuthError),
    #[error("reading the auth store failed: {0}")]
    Store(#[from] rusqlite::Error),
    #[error("reading the repository failed: {0}")]
    Repository(#[from] hearth_cdr::Error),
    /// A read at the EHR behind a site failed.
    #[error("the EHR behind site {0} could not be searched: {1}")]
    Upstream(String, String),
}

pub type ConsoleResult<T> = Result<T, ConsoleError>;

impl From<OAuthError> for ConsoleError {
    fn from(error: OAuthError) -> Self {
        ConsoleError::Auth(error)
    }
}

impl ConsoleError {
    fn status(&self) -> StatusCode {
        match self {
            ConsoleError::SignInNeeded => StatusCode::SEE_OTHER,
            ConsoleError::Forbidden(_) => StatusCode::FORBIDDEN,
            ConsoleError::NotFound(_) => StatusCode::NOT_FOUND,
            ConsoleError::BadRequest(_) | ConsoleError::Csrf => StatusCode::BAD_REQUEST,
            ConsoleError::Auth(error) => error.status,
            ConsoleError::Store(_) | ConsoleError::Repository(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ConsoleError::Upstream(..) => StatusCode::BAD_GATEWAY,
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        if matches!(self, ConsoleError::SignInNeeded) {
            return axum::response::Redirect::to("/console/sign-in").into_response();
        }
        let status = self.status();
        let message = if status.is_server_error() {
            tracing::error!(error = %self, "a console request failed");
            "Hearth could not complete the request. The server log has the details.".to_string()
        } else {
            self.to_string()
        };
        let body = format!(
            "<h1>{}</h1><p role=\"alert\" class=\"error\">{}</p><p><a href=\"/console/\">Back to the console</a></p>",
            html::escape(status.canonical_reason().unwrap_or("Error")),
            html::escape(&message)
        );
        (status, Html(html::bare_page("Error", &body))).into_response()
    }
}
