//! The routing table: a request's method and path to the function that
//! answers it, after [`auth::refusal`]; a path no route has is 404, a method a
//! route does not take 405 (with `Allow`). The routes that take fields (query
//! string and body) read them with [`super::asked::fields`].

use super::asked::not_found;
use super::walk::{View, Walk};
use super::{auth, config_entry, control, extract, files, health, metrics, page, Context};
use crate::control::http::body::Cursor;
use crate::control::http::request::Request;
use crate::control::http::response::Response;

/// Answers one request.
pub fn respond(req: &Request, cx: &mut Context) -> Response {
    // The status page holds no data (it fetches the JSON routes with the token),
    // so it is the one route served without the token or an own Origin: a GET
    // only. Every route checks the Host (DNS rebinding).
    let page = req.method == "GET" && req.segments() == ["ui"];
    if let Some(refusal) = auth::refusal(req, cx, page) {
        return refusal;
    }
    if page {
        return page::status_page();
    }
    let segments = req.segments();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match segments.as_slice() {
        [""] => only(req, "GET", || in_pieces(View::Configs)),
        ["stats"] => only(req, "GET", || in_pieces(View::Stats)),
        ["series"] => only(req, "GET", || in_pieces(View::Series)),
        ["health"] => only(req, "GET", || health::health(cx)),
        ["ui"] => only(req, "GET", page::status_page),
        ["metrics"] => only(req, "GET", || Response::in_pieces(metrics::CONTENT_TYPE, Cursor::new(metrics::Walk::default()))),
        ["capturers"] => match req.method.as_str() {
            "GET" => in_pieces(View::Capturers),
            "DELETE" => control::stop_capturer(req, cx),
            other => Response::error(405, format!("{other} is not allowed here; use GET or DELETE")).with_header("Allow", "GET, DELETE"),
        },
        [name, "start"] => only(req, "POST", || control::start(name, req, cx)),
        [name, "stop"] => only(req, "DELETE", || control::stop(name, cx)),
        [name, "config"] => only(req, "GET", || {
            let ids = cx.manager.handlers_named(name);
            Response::json(200, &ids.iter().map(|&h| config_entry(cx.manager.handler(h), cx.manager.storage(), cx.now)).collect::<Vec<_>>())
        }),
        [name, "rotate"] => only(req, "POST", || control::rotate(name, req, cx)),
        [name, "files"] => only(req, "GET", || {
            if cx.manager.handlers_named(name).is_empty() {
                return not_found(name, cx.manager);
            }
            Response::in_pieces("application/json", Cursor::new(files::Walk::new(name)))
        }),
        [name, "data"] => only(req, "GET", || extract::extract(name, req, cx)),
        #[cfg(debug_assertions)]
        ["debug", "clock"] if crate::clock::driven() => only(req, "POST", || super::debug::clock(req)),
                _ => Response::error(
            404,
            format!("no route {} {}; see GET / , /stats, /series, /health, /metrics, /capturers, /ui, /<name>/start|stop|config|rotate|files|data", req.method, req.path),
        ),
    }
}

/// An answer about every handler or socket, its body produced in pieces ([`super::walk`]).
fn in_pieces(view: View) -> Response {
    Response::in_pieces("application/json", Cursor::new(Walk::new(view)))
}

/// The route's answer if the request has its method, else 405.
fn only(req: &Request, method: &'static str, answer: impl FnOnce() -> Response) -> Response {
    if req.method == method {
        answer()
    } else {
        Response::error(
            405,
            format!("{} is not allowed here; use {method}", req.method),
        )
        .with_header("Allow", method)
    }
}
