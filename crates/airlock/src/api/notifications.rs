//! Notification settings (admin): webhooks, their recent deliveries, a test.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::docs::ErrorBody;
use super::Json;
use crate::api::session::AdminSession;
use crate::app::AppState;
use crate::error::ApiResult;
use crate::notify::{Delivery, EmailView, Event, NewEmail, NewWebhook, WebhookView};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_notifications))
        .routes(routes!(add_webhook))
        .routes(routes!(delete_webhook))
        .routes(routes!(set_email, clear_email))
        .routes(routes!(send_test))
}

#[derive(ToSchema)]
#[allow(dead_code)] // the schema of the settings answer
struct NotificationSettings {
    webhooks: Vec<WebhookView>,
    /// The SMTP settings, or null.
    email: Option<EmailView>,
    /// The latest deliveries (kept in memory, at most 100), newest first.
    deliveries: Vec<Delivery>,
    /// Notices dropped because the queue was full, since start.
    dropped: u64,
}

/// The webhooks (never their secrets) and the latest deliveries.
#[utoipa::path(
    get,
    path = "/notifications",
    tag = "admin",
    security(("admin_session" = [])),
    responses((status = 200, description = "Settings and deliveries", body = NotificationSettings))
)]
async fn get_notifications(
    State(state): State<AppState>,
    _s: AdminSession,
) -> ApiResult<Json<serde_json::Value>> {
    let n = &state.notifier;
    Ok(Json(json!({
        "webhooks": n.webhooks().await?,
        "email": n.email().await?,
        "deliveries": n.deliveries(),
        "dropped": n.dropped(),
    })))
}

/// Adds a webhook; its secret keys the `X-Airlock-Signature` of every delivery
/// and is never shown again.
#[utoipa::path(
    post,
    path = "/notifications/webhooks",
    tag = "admin",
    security(("admin_session" = [])),
    request_body = NewWebhook,
    responses(
        (status = 201, description = "Added", body = WebhookView),
        (status = 422, description = "A bad URL, secret or event list (`invalid_input`)", body = ErrorBody),
    )
)]
async fn add_webhook(
    State(state): State<AppState>,
    _s: AdminSession,
    Json(body): Json<NewWebhook>,
) -> ApiResult<Response> {
    let hook = state.notifier.add(body).await?;
    tracing::info!(webhook = %hook.id, "webhook added");
    Ok((StatusCode::CREATED, Json(hook)).into_response())
}

/// Deletes a webhook.
#[utoipa::path(
    delete,
    path = "/notifications/webhooks/{id}",
    tag = "admin",
    security(("admin_session" = [])),
    params(("id" = String, Path, description = "Webhook id (`whk_…`)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such webhook (`not_found`)", body = ErrorBody),
    )
)]
async fn delete_webhook(
    State(state): State<AppState>,
    _s: AdminSession,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.notifier.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Saves the SMTP settings (replacing earlier ones; an omitted password keeps
/// the stored one while the username stays the same).
#[utoipa::path(
    put,
    path = "/notifications/email",
    tag = "admin",
    security(("admin_session" = [])),
    request_body = NewEmail,
    responses(
        (status = 200, description = "Saved", body = EmailView),
        (status = 422, description = "A bad host, address, event list, or a password without TLS (`invalid_input`)", body = ErrorBody),
    )
)]
async fn set_email(
    State(state): State<AppState>,
    _s: AdminSession,
    Json(body): Json<NewEmail>,
) -> ApiResult<Json<EmailView>> {
    let e = state.notifier.set_email(body).await?;
    tracing::info!(host = %e.host, "e-mail notifications configured");
    Ok(Json(e))
}

/// Removes the SMTP settings.
#[utoipa::path(
    delete,
    path = "/notifications/email",
    tag = "admin",
    security(("admin_session" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "None were set (`not_found`)", body = ErrorBody),
    )
)]
async fn clear_email(State(state): State<AppState>, _s: AdminSession) -> ApiResult<StatusCode> {
    state.notifier.clear_email().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends a `test` notice to every webhook and the e-mail recipients; see the
/// deliveries for the outcome.
#[utoipa::path(
    post,
    path = "/notifications/test",
    tag = "admin",
    security(("admin_session" = [])),
    responses((status = 202, description = "Queued"))
)]
async fn send_test(State(state): State<AppState>, _s: AdminSession) -> ApiResult<StatusCode> {
    state.notifier.notify(
        Event::Test,
        "a test notification from the Settings page".into(),
        "/ui/settings".into(),
        json!({}),
    );
    Ok(StatusCode::ACCEPTED)
}
