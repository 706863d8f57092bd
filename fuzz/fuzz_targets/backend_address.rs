//! Arbitrary strings as backend addresses into `admin::parse_address`.
//!
//! The checks live in `tower_lb_fuzz::backend_address` (`src/`), shared with `tests/replay.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &str| tower_lb_fuzz::backend_address(data));
