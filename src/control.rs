//! Control: how an operator manages bsc. The hand-rolled HTTP/1.1 server
//! ([`http`]), the routes and answers of the management API ([`api`]), and the
//! `bsc` client commands that call it ([`client`]). Calls go down only: to the
//! [`crate::manager`] and below.

pub mod api;
pub mod client;
pub mod http;
