//! Flag defaults and help rendered from the library's constants, so `--help` and the library
//! agree.

use std::time::Duration;

use clap::builder::OsStr;
use tower_lb::Algo;
use tower_lb::health::OutlierDetection;
use tower_lb::server::Config;
use tower_lb::tls::BackendTls;

/// `--eject-after`'s default: the failures of [`Config::DEFAULT_OUTLIER_DETECTION`], 0 when
/// it is off.
pub(super) fn default_eject_after() -> u32 {
    if Config::DEFAULT_OUTLIER_DETECTION.is_some() {
        OutlierDetection::DEFAULT_CONSECUTIVE_FAILURES
    } else {
        0
    }
}

/// `--backend-alpn`'s default, [`BackendTls::DEFAULT_ALPN`] as the flag spells it: `h2,http/1.1`.
pub(super) fn default_backend_alpn() -> OsStr {
    let names: Vec<&str> = BackendTls::DEFAULT_ALPN
        .iter()
        .map(|p| std::str::from_utf8(p).expect("ALPN names are ASCII"))
        .collect();
    names.join(",").into()
}

/// A default duration as the flags spell it, in seconds: `10`, `0.5`; what
/// [`parse_seconds_or_zero`](super::parse::parse_seconds_or_zero) reads back.
pub(crate) fn seconds(duration: Duration) -> OsStr {
    duration.as_secs_f64().to_string().into()
}

/// A default timeout as the flags spell it. `None` (no timeout) renders as `0`, which
/// `--connect-timeout` and `--backend-timeout` reject: should the library's default become
/// `None`, parsing fails in every test until the flags can say it.
pub(super) fn seconds_or_zero(timeout: Option<Duration>) -> OsStr {
    seconds(timeout.unwrap_or(Duration::ZERO))
}

/// `--algo`'s help, read from the crate's one list of algorithms: every name and, in the long
/// help, when to choose each.
pub(super) fn algo_help(long: bool) -> String {
    let mut help = String::from("Balancing algorithm, case-insensitive");
    if long {
        help.push_str("; long names such as least-conn work too:");
        for algo in Algo::ALL {
            let names = algo.short_names().join(" or ");
            help += &format!("\n  {names} ({}): {}", algo.long_name(), algo.about());
        }
    } else {
        let names: Vec<_> = Algo::ALL
            .iter()
            .map(|algo| algo.short_names().join(" or "))
            .collect();
        help += &format!(": {}", names.join(", "));
    }
    help
}
