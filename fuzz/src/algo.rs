//! Invariants of `Algo::from_str`: the `algo_name` target.

use tower_lb::Algo;

/// The `algo_name` target: an arbitrary string as an algorithm name. `Algo::from_str` never
/// panics, is case- and `-`/`_`-insensitive, and every accepted name round-trips through
/// `Display` and `long_name`.
pub fn algo_name(name: &str) {
    let parsed = name.parse::<Algo>();
    // Case and `-`/`_` do not matter.
    let ok = parsed.as_ref().ok();
    assert_eq!(
        name.to_ascii_uppercase().parse::<Algo>().ok().as_ref(),
        ok,
        "{name:?}"
    );
    assert_eq!(
        name.replace('-', "_").parse::<Algo>().ok().as_ref(),
        ok,
        "{name:?}"
    );
    match parsed {
        Ok(algo) => {
            assert!(Algo::ALL.contains(&algo));
            assert_eq!(algo.to_string().parse::<Algo>(), Ok(algo));
            assert_eq!(algo.long_name().parse::<Algo>(), Ok(algo));
            assert_eq!(format!("{algo:>8}").parse::<Algo>(), Ok(algo));
        }
        Err(error) => {
            let message = error.to_string();
            assert!(message.contains("valid: RR (round-robin)"), "{message}");
        }
    }
}
