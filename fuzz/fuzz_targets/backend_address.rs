//! Arbitrary strings as backend addresses: `parse_address` never panics, agrees with
//! `BackendSpec::new`, and what it accepts is in normal form, idempotently.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_lb::admin::{BackendSpec, RegisterError, parse_address, parse_registration};
use tower_lb_fuzz::{check_error, check_spec};

fuzz_target!(|address: &str| {
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
});
