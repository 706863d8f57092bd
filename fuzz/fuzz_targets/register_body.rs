//! Arbitrary bytes as a `/register` body into `admin::parse_registration`.
//!
//! The checks live in `tower_lb_fuzz::register_body` (`src/`), shared with `tests/replay.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tower_lb_fuzz::register_body(data));
