//! The routes that change the manager: `POST /<name>/start`, `DELETE
//! /<name>/stop`, `POST /<name>/rotate` and `DELETE /capturers`. Each
//! validates its fields with the config file's code, calls the [`Manager`],
//! saves the handlers added over the API when they changed, and answers with
//! an [`answers`](super::answers) type or a config entry.

use serde_json::Value;

use super::answers::{CapturerStopped, Rotated};
use super::asked::{fields, not_found};
use super::{config_entry, Context};
use crate::clock::UnixMicros;
use crate::config::{self, HandlerSpec};
use crate::control::http::request::Request;
use crate::control::http::response::Response;
use crate::manager::{AddError, HandlerId, Manager, RotateError};

/// `POST /<name>/start`: 201 with the new handler's config entry.
pub(super) fn start(name: &str, req: &Request, cx: &mut Context) -> Response {
    if let Err(m) = config::validate_name(name) {
        return Response::error(400, format!("handler name: {m}"));
    }
    let fields = match fields(req) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let spec = match HandlerSpec::from_api_fields(name, fields) {
        Ok(s) => s,
        Err(e) => return Response::error(400, e.to_string()),
    };
    match cx.manager.add_handler(spec, cx.registry, cx.now, cx.mono) {
        Ok(hid) => {
            cx.manager.save_api_handlers();
            Response::json(
                201,
                &config_entry(cx.manager.handler(hid), cx.manager.storage(), cx.now),
            )
        }
        Err(e @ (AddError::Conflict(_) | AddError::Socket(_))) => {
            Response::error(409, e.to_string())
        }
        Err(AddError::Invalid(e)) => Response::error(400, e),
    }
}

/// `DELETE /<name>/stop`: every handler of that name, 200 with their entries.
pub(super) fn stop(name: &str, cx: &mut Context) -> Response {
    let ids = cx.manager.handlers_named(name);
    if ids.is_empty() {
        return not_found(name, cx.manager);
    }
    let entries = owned_entries(cx.manager, &ids, cx.now);
    for hid in ids {
        cx.manager.remove_handler(hid, cx.registry, cx.now);
    }
    cx.manager.save_api_handlers();
    Response::json(200, &entries)
}

/// Config entries of handlers about to be stopped, taken before they go (the
/// entries borrow the handlers).
fn owned_entries(manager: &Manager, ids: &[HandlerId], now: UnixMicros) -> Vec<Value> {
    ids.iter()
        .map(|&h| {
            serde_json::to_value(config_entry(manager.handler(h), manager.storage(), now))
                .unwrap_or(Value::Null)
        })
        .collect()
}

/// `POST /<name>/rotate`: closes the files of every handler of that name and
/// names the next ones (the request's fields are metadata).
pub(super) fn rotate(name: &str, req: &Request, cx: &mut Context) -> Response {
    if cx.manager.handlers_named(name).is_empty() {
        return not_found(name, cx.manager);
    }
    let fields = match fields(req) {
        Ok(f) => f,
        Err(r) => return r,
    };
    match cx.manager.rotate(name, &fields, cx.now) {
        Ok(rotated) => {
            let answer: Vec<Rotated> = rotated
                .into_iter()
                .map(|r| {
                    let spec = cx.manager.handler(r.id).spec();
                    Rotated {
                        address: (spec.address.host.as_str().into(), spec.address.port),
                        log_file_path: r.path.display().to_string(),
                        name: spec.name.as_str().into(),
                        previous_file: r.previous.map(|p| p.display().to_string()),
                    }
                })
                .collect();
            Response::json(200, &answer)
        }
        Err(RotateError::NotFound) => not_found(name, cx.manager),
        Err(RotateError::Invalid(m)) => Response::error(400, m),
        Err(RotateError::Conflict(m)) => Response::error(409, m),
        Err(RotateError::Failed(m)) => Response::error(503, m),
    }
}

/// `DELETE /capturers` with `loc`, `port` (and optionally `conn_type`).
pub(super) fn stop_capturer(req: &Request, cx: &mut Context) -> Response {
    let fields = match fields(req) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let text = |key: &str| match fields.get(key) {
        None => None,
        Some(Value::String(s)) => Some(s.trim().to_string()),
        Some(other) => Some(other.to_string()),
    };
    let Some(port) = text("port") else {
        return Response::error(400, "port: is required");
    };
    let Ok(port) = port.parse::<u16>() else {
        return Response::error(
            400,
            format!("port: must be a whole number 0..65535, got {port:?}"),
        );
    };
    let address = config::Address {
        host: text("loc").unwrap_or_default(),
        port,
    };
    let Some(cid) = cx.manager.capturer_at(&address) else {
        return no_capturer(
            cx.manager,
            format!("no capturer at {}", address.python_repr()),
        );
    };
    let cap = cx.manager.capturer(cid);
    let conn_type = cap.conn_type;
    if let Some(want) = text("conn_type") {
        if want != conn_type.as_str() {
            return no_capturer(
                cx.manager,
                format!(
                    "no {want} capturer at {} (it is {conn_type})",
                    address.python_repr()
                ),
            );
        }
    }
    let stopped = owned_entries(cx.manager, cap.handlers(), cx.now);
    // The removed handlers' files are flushed and closed, and the socket is
    // closed, before the answer is sent.
    cx.manager.remove_capturer(&address, cx.registry, cx.now);
    cx.manager.save_api_handlers();
    Response::json(
        200,
        &CapturerStopped {
            address: (address.host.as_str().into(), address.port),
            conn_type: conn_type.as_str().into(),
            key: address.python_repr(),
            stopped,
        },
    )
}

/// 404 for `DELETE /capturers`: `why`, and the capturers there are.
fn no_capturer(manager: &Manager, why: String) -> Response {
    let existing: Vec<String> = manager
        .capturers()
        .iter()
        .map(|(_, c)| c.address.python_repr())
        .collect();
    Response::error(
        404,
        format!(
            "{why} (capturers: {})",
            if existing.is_empty() {
                "none".into()
            } else {
                existing.join(", ")
            }
        ),
    )
}
