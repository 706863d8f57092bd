//! Invariants shared by the fuzz targets in `fuzz_targets/`.
//!
//! Each check panics (which libFuzzer reports as a crash) when a value the parsers accepted
//! breaks what `tower_lb::admin` documents about it.

use http::StatusCode;
use tower_lb::admin::{
    BackendSpec, DEFAULT_WEIGHT, MAX_WEIGHT, RegisterError, parse_address, parse_registration,
};

/// Checks an accepted registration: weight in `1..=MAX_WEIGHT`, address in normal form, and
/// the spec round-trips through the JSON body and the command-line form `URL=WEIGHT`.
pub fn check_spec(spec: &BackendSpec) {
    assert!(
        (1..=MAX_WEIGHT).contains(&spec.weight()),
        "weight out of range: {spec:?}"
    );
    check_normal_address(spec);

    // The normal form, sent back as a body, is the same registration.
    let body = serde_json::json!({ "address": spec.to_string(), "weight": spec.weight() });
    let body = serde_json::to_vec(&body).expect("a JSON value serialises");
    assert_eq!(
        parse_registration(&body).as_ref(),
        Ok(spec),
        "body {:?}",
        String::from_utf8_lossy(&body)
    );
    // And so is its command-line form.
    let cli = format!("{spec}={}", spec.weight());
    assert_eq!(cli.parse::<BackendSpec>().as_ref(), Ok(spec), "{cli:?}");
    let plain = spec.to_string();
    if spec.weight() == DEFAULT_WEIGHT && !plain.contains('=') {
        // Without `=WEIGHT` (the last `=` starts a weight, so only for addresses without one).
        assert_eq!(plain.parse::<BackendSpec>().as_ref(), Ok(spec), "{plain:?}");
    }
}

/// Checks the documented normal form of an accepted address: `http` scheme, a non-empty
/// lower-case host, no user info, no port 0 or 80, a canonical port, no query, no fragment,
/// no trailing `/`, and normalising it again changes nothing.
pub fn check_normal_address(spec: &BackendSpec) {
    let uri = spec.address();
    let shown = spec.to_string();
    assert_eq!(uri.scheme_str(), Some("http"), "{shown}");
    let authority = uri.authority().expect("a normal address has an authority");
    let host = authority.host();
    assert!(!host.is_empty(), "{shown}");
    assert_eq!(host, host.to_ascii_lowercase(), "{shown}");
    assert!(!authority.as_str().contains('@'), "{shown}");
    match authority.port() {
        None => assert_eq!(authority.as_str(), host, "{shown}"),
        Some(port) => {
            let n = port.as_u16();
            assert!(n != 0 && n != 80, "{shown}");
            assert_eq!(port.as_str(), n.to_string(), "{shown}");
        }
    }
    assert!(uri.query().is_none(), "{shown}");
    assert!(!shown.contains('#'), "{shown}");
    assert!(!shown.ends_with('/'), "{shown}");
    assert!(uri.path() == "/" || !uri.path().ends_with('/'), "{shown}");

    let again = parse_address(&shown).unwrap_or_else(|e| panic!("{shown:?} re-parses: {e}"));
    assert_eq!(&again, uri, "{shown}");
    assert_eq!(again.to_string(), uri.to_string(), "{shown}");
}

/// Checks a refusal: 403 for an unknown field, 400 otherwise, and a non-empty message.
pub fn check_error(error: &RegisterError) {
    let status = error.status();
    match error {
        RegisterError::UnknownField(_) => assert_eq!(status, StatusCode::FORBIDDEN),
        _ => assert_eq!(status, StatusCode::BAD_REQUEST, "{error:?}"),
    }
    assert!(!error.to_string().is_empty(), "{error:?}");
}
