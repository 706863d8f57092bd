//! Arbitrary strings as algorithm names: `Algo::from_str` never panics, is case- and
//! `-`/`_`-insensitive, and every accepted name round-trips through `Display` and `long_name`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_lb::Algo;

fuzz_target!(|name: &str| {
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
});
