//! Arbitrary strings as algorithm names into `Algo::from_str`.
//!
//! The checks live in `tower_lb_fuzz::algo_name` (`src/`), shared with `tests/replay.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &str| tower_lb_fuzz::algo_name(data));
