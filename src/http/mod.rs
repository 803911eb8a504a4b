//! Built-in HTTP endpoints: `/healthz`, `/metrics` (Prometheus text) and
//! `/status` (JSON).
//!
//! They are answered on the WebSocket port, before the handler's `on_http`,
//! unless [`crate::runtime::Config::admin_listen`] is set: then only a small
//! blocking thread on that address serves them ([`admin`]), so operators can
//! keep them off the public port.

pub(crate) mod admin;
mod metrics;
mod status;

use crate::runtime::{HttpResponse, Request, ServerHandle};

/// Answers a built-in endpoint on the WebSocket port, or `None` to let the
/// handler answer.
pub(crate) fn builtin(req: &Request<'_>, handle: &ServerHandle) -> Option<HttpResponse> {
    if handle.config().admin_listen.is_some() {
        return None;
    }
    respond(req, handle)
}

/// Answers `/healthz`, `/metrics` and `/status`; `None` for other paths.
pub(crate) fn respond(req: &Request<'_>, handle: &ServerHandle) -> Option<HttpResponse> {
    let path = req.path().split('?').next().unwrap_or_default();
    if !matches!(path, "/healthz" | "/metrics" | "/status") {
        return None;
    }
    let head_only = match req.method() {
        "GET" => false,
        "HEAD" => true,
        _ => {
            return Some(
                HttpResponse::text(405, "method not allowed: use GET or HEAD\n")
                    .header("Allow", "GET, HEAD"),
            )
        }
    };
    let mut resp = match path {
        "/healthz" if handle.is_shutting_down() => HttpResponse::text(503, "shutting down\n"),
        "/healthz" => match handle.config().app_status.as_ref().map(|a| a.health()) {
            Some(Err(reason)) => HttpResponse::text(503, format!("{reason}\n")),
            _ => HttpResponse::text(200, "ok\n"),
        },
        "/metrics" => HttpResponse::with_type(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics::render(handle).into_bytes(),
        ),
        _ => HttpResponse::with_type(200, "application/json", status::render(handle).into_bytes()),
    };
    resp = resp.header("Cache-Control", "no-store");
    resp.head_only = head_only;
    Some(resp)
}
