//! The `/register` API: add backends to a running balancer over HTTP.
//!
//! Work in progress: [`parse_registration`] validates a request body.

mod parse;

pub use self::parse::{
    BackendSpec, DEFAULT_WEIGHT, MAX_BODY, MAX_WEIGHT, RegisterError, parse_address,
    parse_registration,
};
