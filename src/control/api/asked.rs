//! What a request asks for, as the routes that change the manager read it: its
//! fields (query string and body alike), and the 404 for a handler name no
//! handler has.

use serde_json::{Map, Value};

use crate::control::http::form;
use crate::control::http::request::Request;
use crate::control::http::response::Response;
use crate::manager::Manager;

/// 404 for a handler name no handler has, with the names there are.
pub(super) fn not_found(name: &str, manager: &Manager) -> Response {
    let mut names: Vec<&str> = manager
        .handlers()
        .map(|(_, h)| h.spec().name.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    Response::error(
        404,
        format!(
            "no handler named {name:?} (running: {})",
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        ),
    )
}

/// The request's fields: query string, then the body's (which win).
pub(super) fn fields(req: &Request) -> Result<Map<String, Value>, Response> {
    let mut out = form::urlencoded(&req.query)
        .map_err(|e| Response::error(e.status, format!("query string: {}", e.message)))?;
    let body = form::decode(req.header("content-type"), &req.body)
        .map_err(|e| Response::error(e.status, e.message))?;
    out.extend(body);
    Ok(out)
}
