//! The one place where domain errors become HTTP responses.
//!
//! Every error leaves as JSON `{"detail": "...", "code": "..."}` with a status
//! from a fixed mapping. Internal details (database, crypto) go to the log; the
//! client only sees a generic message. Messages never contain credential values,
//! profile secrets or the master key.

use airlock_store::StoreError;

use crate::auth::AuthError;
use crate::catalog::{CatalogError, KeyRefusal};
use crate::packages::PackagesError;
use crate::runner::RunnerError;
use crate::transfer::TransferError;
use crate::validate::Invalid;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// An error an API handler returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            detail: detail.into(),
            retry_after: None,
        }
    }
    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }
    pub fn unauthorized(code: &'static str, detail: impl Into<String>) -> ApiError {
        Self::new(StatusCode::UNAUTHORIZED, code, detail)
    }
    pub fn forbidden(code: &'static str, detail: impl Into<String>) -> ApiError {
        Self::new(StatusCode::FORBIDDEN, code, detail)
    }
    pub fn not_found(detail: impl Into<String>) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }
    pub fn conflict(code: &'static str, detail: impl Into<String>) -> ApiError {
        Self::new(StatusCode::CONFLICT, code, detail)
    }
    pub fn invalid(detail: impl Into<String>) -> ApiError {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", detail)
    }
    pub fn too_large(detail: impl Into<String>) -> ApiError {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", detail)
    }
    pub fn too_many(detail: impl Into<String>, retry_after_secs: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry_after_secs.max(1)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", detail)
        }
    }
    pub fn internal() -> ApiError {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound => ApiError::not_found("not found"),
            StoreError::Conflict(m) => ApiError::conflict("conflict", m),
            other => {
                tracing::error!(error = %other, "store error");
                ApiError::internal()
            }
        }
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> ApiError {
        ApiError::invalid(e.0)
    }
}

impl From<KeyRefusal> for ApiError {
    fn from(e: KeyRefusal) -> ApiError {
        let code = match e {
            KeyRefusal::Unknown => "unknown_key",
            KeyRefusal::Revoked => "profile_revoked",
            KeyRefusal::Unlocked => "profile_unlocked",
            KeyRefusal::Expired => "profile_expired",
        };
        ApiError::unauthorized(code, e.to_string())
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> ApiError {
        let detail = e.to_string();
        match e {
            CatalogError::Invalid(e) => e.into(),
            CatalogError::NoCredential(_) | CatalogError::NoProfile(_) => {
                ApiError::not_found(detail)
            }
            CatalogError::CredentialExists(_) => ApiError::conflict("credential_exists", detail),
            CatalogError::CredentialInUse { .. } => ApiError::conflict("credential_in_use", detail),
            CatalogError::Revoked(_) => ApiError::conflict("profile_revoked", detail),
            CatalogError::Locked(_) => ApiError::conflict("profile_locked", detail),
            CatalogError::Unlocked(_) => ApiError::conflict("profile_unlocked", detail),
            CatalogError::ValuesMissing(_) => ApiError::conflict("values_missing", detail),
            CatalogError::Key(k) => k.into(),
            CatalogError::Unreadable => {
                tracing::error!("a stored value or key secret is not UTF-8");
                ApiError::internal()
            }
            CatalogError::Store(e) => e.into(),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        let detail = e.to_string();
        match e {
            AuthError::Invalid(e) => e.into(),
            AuthError::AlreadySetUp => ApiError::conflict("already_setup", detail),
            AuthError::SetupRequired(_) => ApiError::conflict("setup_required", detail),
            AuthError::WrongPassword(_) => ApiError::unauthorized("wrong_password", detail),
            AuthError::Throttled { wait_secs, .. } => ApiError::too_many(detail, wait_secs),
            AuthError::Internal => {
                tracing::error!("password hashing or a stored hash failed");
                ApiError::internal()
            }
            AuthError::Store(e) => e.into(),
        }
    }
}

impl From<RunnerError> for ApiError {
    fn from(e: RunnerError) -> ApiError {
        let detail = e.to_string();
        match e {
            RunnerError::Unavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "sandbox_unavailable",
                detail,
            ),
            RunnerError::QueueFull => ApiError::too_many(detail, 1),
            RunnerError::PausedFull(_) => ApiError::too_many(detail, 5),
            RunnerError::Catalog(e) => e.into(),
            RunnerError::Store(e) => e.into(),
        }
    }
}

impl From<crate::approvals::ApprovalError> for ApiError {
    fn from(e: crate::approvals::ApprovalError) -> ApiError {
        use crate::approvals::ApprovalError as E;
        let detail = e.to_string();
        match e {
            E::NotFound(_) => ApiError::not_found(detail),
            E::Decided(_) => ApiError::conflict("approval_decided", detail),
            E::ProfileInactive(_) => ApiError::conflict("profile_inactive", detail),
            E::Invalid(_) => ApiError::invalid(detail),
            E::TooMany => ApiError::too_many(detail, 30),
            E::Runner(e) => e.into(),
            E::Store(e) => e.into(),
        }
    }
}

impl From<crate::inbox::InboxError> for ApiError {
    fn from(e: crate::inbox::InboxError) -> ApiError {
        use crate::inbox::InboxError as E;
        let detail = e.to_string();
        match e {
            E::NotFound(..) => ApiError::not_found(detail),
            E::Decided(_) => ApiError::conflict("request_decided", detail),
            E::Invalid(_) => ApiError::invalid(detail),
            E::Catalog(e) => e.into(),
            E::Packages(e) => e.into(),
            E::Store(e) => e.into(),
        }
    }
}

impl From<crate::tokens::TokenError> for ApiError {
    fn from(e: crate::tokens::TokenError) -> ApiError {
        use crate::tokens::TokenError as E;
        let detail = e.to_string();
        match e {
            E::Invalid(_) => ApiError::invalid(detail),
            E::NotFound(_) => ApiError::not_found(detail),
            E::Store(e) => e.into(),
        }
    }
}

impl From<crate::notify::NotifyError> for ApiError {
    fn from(e: crate::notify::NotifyError) -> ApiError {
        use crate::notify::NotifyError as E;
        let detail = e.to_string();
        match e {
            E::Invalid(_) => ApiError::invalid(detail),
            E::NotFound(_) => ApiError::not_found(detail),
            E::Store(e) => e.into(),
        }
    }
}

impl From<PackagesError> for ApiError {
    fn from(e: PackagesError) -> ApiError {
        let detail = e.to_string();
        match e {
            PackagesError::Invalid(_) => ApiError::invalid(detail),
            PackagesError::NoInstall(_) | PackagesError::NoPackage(_) => {
                ApiError::not_found(detail)
            }
            PackagesError::NotAwaiting(..) => ApiError::conflict("request_decided", detail),
            PackagesError::Unavailable => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "packages_unavailable",
                detail,
            ),
            PackagesError::Store(e) => e.into(),
        }
    }
}

impl From<TransferError> for ApiError {
    fn from(e: TransferError) -> ApiError {
        let detail = e.to_string();
        let unprocessable =
            |code| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail.clone());
        match e {
            TransferError::Invalid(e) => e.into(),
            TransferError::WrongPassphrase => unprocessable("wrong_passphrase"),
            TransferError::Corrupt(_) => unprocessable("corrupt_file"),
            TransferError::UnsupportedVersion(_) => unprocessable("unsupported_version"),
            TransferError::TooLarge(_) => ApiError::too_large(detail),
            TransferError::NoProfile(_) => ApiError::not_found(detail),
            TransferError::Expired => ApiError::new(StatusCode::GONE, "import_expired", detail),
            TransferError::ChangedMeanwhile => ApiError::conflict("import_conflict", detail),
            TransferError::Internal(what) => {
                tracing::error!(what, "export or import failed");
                ApiError::internal()
            }
            TransferError::Catalog(e) => e.into(),
            TransferError::Store(e) => e.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "detail": self.detail, "code": self.code });
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

pub type ApiResult<T> = std::result::Result<T, ApiError>;
