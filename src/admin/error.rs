//! The admin API's errors: a status and a JSON list of messages, each naming the field or
//! object it concerns (SPEC §9.2), e.g.
//! ``["extensions[0]: `not valid!` is neither an exact extension nor a pattern"]``.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::config::ConfigErrors;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub errors: Vec<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            errors: vec![message.into()],
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 400 with every problem of a request.
    pub fn invalid(errors: Vec<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            errors,
        }
    }

    /// 400 with the checker's errors of the file an edit would have written. Errors inside
    /// the edited object (at `object`, a key path such as `tenant[0].users[2]`) are named by
    /// their field (`extensions[0]: ...`); others by the object they are in.
    pub fn from_config(errors: &ConfigErrors, object: Option<&str>) -> Self {
        let messages = errors
            .0
            .iter()
            .map(|e| {
                let field = e.field.as_deref().unwrap_or("");
                let inside = object.and_then(|o| {
                    if field == o {
                        Some("")
                    } else {
                        field.strip_prefix(o).and_then(|r| r.strip_prefix('.'))
                    }
                });
                match inside {
                    Some("") => e.message.clone(),
                    Some(rel) => {
                        // "`extensions`: x" at `extensions[0]` reads "extensions[0]: x".
                        let key = rel.split(['.', '[']).next().unwrap_or(rel);
                        let message = e
                            .message
                            .strip_prefix(&format!("`{key}`: "))
                            .unwrap_or(&e.message);
                        format!("{rel}: {message}")
                    }
                    None if e.context.is_empty() => e.message.clone(),
                    None => format!("{}: {}", e.context, e.message),
                }
            })
            .collect();
        Self::invalid(messages)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.errors)).into_response()
    }
}
