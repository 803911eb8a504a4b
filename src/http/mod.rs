//! Built-in HTTP endpoints served on the WebSocket port (health, metrics, status).

use crate::runtime::{HttpResponse, Request, ServerHandle};

/// Answers a built-in endpoint, or `None` to let the handler answer.
pub(crate) fn builtin(_req: &Request<'_>, _handle: &ServerHandle) -> Option<HttpResponse> {
    None
}
