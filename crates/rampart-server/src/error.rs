//! Errors: [`ServerError`] for the operator (startup, serving), [`ApiError`]
//! for clients. An `ApiError` carries only a safe code and message; internal
//! causes are logged in the request's span and answered with a bare 500.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rampart_proto::ErrorCode;
use rampart_proto::error::ErrorBody;
use serde::de::DeserializeOwned;

/// Why the server could not start or keep serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The data directory could not be created or used.
    #[error("data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A schema migration failed.
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The TLS certificate or key could not be loaded.
    #[error("TLS: {0}")]
    Tls(String),
    /// Accepting or serving connections failed.
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
    /// The server key (`server.key` in the data directory) is unusable.
    #[error("server key {0}")]
    ServerKey(String),
    /// The blob store (the `[files]` section) cannot be used.
    #[error("blob store: {0}")]
    BlobStore(String),
    /// Another process (a running server, or an administrator's console)
    /// holds the data directory's lock file.
    #[error(
        "the data directory {0} is in use by a running Rampart server (or another \
         `rampart admin` command); stop it first, or administer it over HTTP with an \
         admin's session"
    )]
    InUse(std::path::PathBuf),
    /// `rampart admin` was pointed at a directory without a Rampart database.
    #[error("{0} holds no Rampart database; check the data directory")]
    NoDatabase(std::path::PathBuf),
    /// The separate metrics address (`[metrics] listen`) could not be bound.
    #[error("cannot listen for metrics on {addr}: {source}")]
    MetricsListen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// A background task died (a bug).
    #[error("internal: {0}")]
    Internal(String),
}

/// A refused REST request: a stable code and a message safe to show users.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Overrides the code's usual status (only 503 for "try again later",
    /// which the proto error codes have no name for).
    status: Option<StatusCode>,
    /// For `rate_limited`: seconds to wait (body field and `Retry-After`).
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            status: None,
            retry_after: None,
        }
    }

    /// The stable error code (what `ErrorBody::code` will say).
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The message, safe to show to users.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// `403 forbidden` with the reason.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub fn unauthorized() -> Self {
        Self::new(ErrorCode::Unauthorized, "a valid session token is required")
    }

    /// The server is overloaded; the client should retry later.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            status: Some(StatusCode::SERVICE_UNAVAILABLE),
            ..Self::new(ErrorCode::Internal, message)
        }
    }

    /// Too many failed attempts: wait `secs` seconds. Answered before any
    /// credential is checked, so it reveals nothing about them.
    pub fn rate_limited(secs: u64) -> Self {
        let secs = secs.max(1);
        Self {
            retry_after: Some(secs),
            ..Self::new(
                ErrorCode::RateLimited,
                format!("too many attempts; try again in {secs} s"),
            )
        }
    }

    /// Too much at once from this caller (not a failure): wait `secs`
    /// seconds, for the reason given.
    pub fn slow_down(secs: u64, message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(secs.max(1)),
            ..Self::new(ErrorCode::RateLimited, message)
        }
    }

    /// A wrong password (or unknown user: the same words on purpose).
    pub fn bad_credentials() -> Self {
        Self::new(ErrorCode::BadCredentials, "username or password is wrong")
    }

    /// A wrong, expired or replayed second-factor code.
    pub fn bad_code() -> Self {
        Self::new(
            ErrorCode::BadCredentials,
            "the code is wrong, expired or already used",
        )
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    /// Logs `cause` (inside the current request span) and hides it from the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(ErrorCode::Internal, "internal server error")
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        Self::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status.unwrap_or_else(|| {
            StatusCode::from_u16(self.code.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        });
        let body = ErrorBody {
            code: self.code,
            message: self.message,
            current_epoch: None,
            retry_after: self.retry_after,
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// `axum::Json`, but a body that fails to parse is answered with our
/// [`ErrorBody`] (`bad_request`, or `too_large` past the body limit). Field
/// errors that have their own code (usernames) keep it.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(ErrorCode::TooLarge, "request body is too large");
    }
    // serde_json's message names the field and position but never echoes values
    // longer than a token, and our custom deserialisers (usernames, ids) produce
    // fixed texts, so it is safe to show.
    let detail = rejection.body_text();
    if let JsonRejection::JsonDataError(_) = &rejection
        && detail.contains("usernames are")
    {
        return ApiError::new(ErrorCode::InvalidUsername, detail);
    }
    ApiError::bad_request(detail)
}

impl<T: serde::Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}
