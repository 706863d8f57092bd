//! Peer, trusted networks and `X-Forwarded-For` lines into `ClientIp::resolve`.
//!
//! The checks live in `tower_lb_fuzz::xff` (`src/`), shared with `tests/replay.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tower_lb_fuzz::xff(data));
