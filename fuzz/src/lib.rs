//! Fuzz targets for tower-lb's input parsers, as plain functions.
//!
//! Each `fuzz_targets/<name>.rs` hands libFuzzer's input to the function of the same name here;
//! each function panics (which libFuzzer reports as a crash) when the code under test panics or
//! breaks what it documents. `tests/replay.rs` runs the committed seeds, the regression inputs
//! and any generated corpus through the same functions under plain `cargo test`.

mod admin;
mod algo;
mod xff;

pub use self::admin::{
    backend_address, check_error, check_normal_address, check_spec, register_body,
};
pub use self::algo::algo_name;
pub use self::xff::xff;

/// The input libFuzzer's `&str` targets see for `data`: its longest UTF-8 prefix (as
/// `arbitrary` builds a `&str` from the rest of the input).
pub fn utf8_prefix(data: &[u8]) -> &str {
    match std::str::from_utf8(data) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&data[..e.valid_up_to()]).unwrap_or_default(),
    }
}
