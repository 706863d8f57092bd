//! Invariants of the `/register` parsers: the `register_body` and `backend_address` targets.

use http::StatusCode;
use tower_lb::admin::{
    BackendSpec, DEFAULT_WEIGHT, MAX_WEIGHT, RegisterError, parse_address, parse_deregistration,
    parse_registration,
};

/// The `register_body` target: arbitrary bytes as a `/register` body.
///
/// `parse_registration` (`POST`) and `parse_deregistration` (`DELETE`) never panic. Whatever
/// `parse_registration` accepts is a valid, normalised registration that round-trips (see
/// [`check_spec`]) and names the address the body gave; `parse_deregistration` accepts the
/// same bodies with the same address, and refuses a body only when `parse_registration` does
/// for a reason other than the weight (which `DELETE` ignores), with the same error.
pub fn register_body(body: &[u8]) {
    let registration = parse_registration(body);
    let deregistration = parse_deregistration(body);
    match &registration {
        Ok(spec) => {
            check_spec(spec);
            // The body was an object whose `address` string normalises to the spec's address.
            let value: serde_json::Value = serde_json::from_slice(body).expect("accepted => JSON");
            let address = value["address"]
                .as_str()
                .expect("accepted => address string");
            assert_eq!(parse_address(address).as_ref(), Ok(spec.address()));
        }
        Err(error) => check_error(error),
    }
    let weight_only = |e: &RegisterError| {
        matches!(
            e,
            RegisterError::WeightOutOfRange(_)
                | RegisterError::WrongType {
                    field: "weight",
                    ..
                }
        )
    };
    match (&registration, &deregistration) {
        (Ok(spec), Ok(uri)) => assert_eq!(spec.address(), uri),
        (Err(e), Ok(uri)) => {
            assert!(
                weight_only(e),
                "DELETE accepted {uri} but POST refused: {e:?}"
            );
            let spec = BackendSpec::new(&uri.to_string(), DEFAULT_WEIGHT)
                .unwrap_or_else(|e| panic!("DELETE accepted {uri}, not an address: {e:?}"));
            assert_eq!(spec.address(), uri, "DELETE accepted {uri}, not normalised");
            check_normal_address(&spec);
        }
        (Err(e), Err(d)) => {
            assert!(!weight_only(d), "DELETE refused the weight: {d:?}");
            assert_eq!(e, d);
            check_error(d);
        }
        (Ok(spec), Err(d)) => panic!("POST accepted {spec:?} but DELETE refused: {d:?}"),
    }
}

/// The `backend_address` target: an arbitrary string as a backend address. `parse_address`
/// never panics, agrees with `BackendSpec::new`, and what it accepts is in normal form,
/// idempotently, and is accepted in a body as the same backend.
pub fn backend_address(address: &str) {
    let parsed = parse_address(address);
    let spec = BackendSpec::new(address, 1);
    match (&parsed, &spec) {
        (Ok(uri), Ok(spec)) => {
            assert_eq!(spec.address(), uri);
            check_spec(spec);
            // The same address in a body is accepted as the same backend.
            let body = serde_json::to_vec(&serde_json::json!({ "address": address })).unwrap();
            assert_eq!(parse_registration(&body).as_ref(), Ok(spec));
        }
        (Err(a), Err(b)) => {
            assert_eq!(a, b);
            assert!(
                matches!(a, RegisterError::BadAddress { address: given, .. } if given == address),
                "{a:?}"
            );
            check_error(a);
        }
        _ => panic!("parse_address {parsed:?} but BackendSpec::new {spec:?}"),
    }
}

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

/// Checks the documented normal form of an accepted address: an `http`, `https` or `h2c`
/// scheme (the address's own), a non-empty lower-case host, no user info, no port 0 or the
/// scheme's default, a canonical port, no query, no fragment, no trailing `/`, and
/// normalising it again changes nothing.
pub fn check_normal_address(spec: &BackendSpec) {
    let uri = spec.address().to_uri();
    let shown = spec.to_string();
    let scheme = spec.address().scheme();
    assert_eq!(uri.scheme_str(), Some(scheme.as_str()), "{shown}");
    assert!(
        ["http", "https", "h2c"].contains(&scheme.as_str()),
        "{shown}"
    );
    let authority = uri.authority().expect("a normal address has an authority");
    let host = authority.host();
    assert!(!host.is_empty(), "{shown}");
    assert_eq!(host, host.to_ascii_lowercase(), "{shown}");
    assert!(!authority.as_str().contains('@'), "{shown}");
    match authority.port() {
        None => assert_eq!(authority.as_str(), host, "{shown}"),
        Some(port) => {
            let n = port.as_u16();
            assert!(n != 0 && n != scheme.default_port(), "{shown}");
            assert_eq!(port.as_str(), n.to_string(), "{shown}");
        }
    }
    assert!(uri.query().is_none(), "{shown}");
    assert!(!shown.contains('#'), "{shown}");
    assert!(!shown.ends_with('/'), "{shown}");
    assert!(uri.path() == "/" || !uri.path().ends_with('/'), "{shown}");

    let again = parse_address(&shown).unwrap_or_else(|e| panic!("{shown:?} re-parses: {e}"));
    assert_eq!(&again, spec.address(), "{shown}");
    assert_eq!(again.to_string(), shown, "{shown}");
    assert_eq!(again.to_uri(), uri, "{shown}");
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
