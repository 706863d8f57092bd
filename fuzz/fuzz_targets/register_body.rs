//! Arbitrary bytes as a `/register` body: `parse_registration` never panics, and whatever it
//! accepts is a valid, normalised registration that round-trips (see `tower_lb_fuzz::check_spec`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_lb::admin::{parse_address, parse_registration};
use tower_lb_fuzz::{check_error, check_spec};

fuzz_target!(|body: &[u8]| {
    match parse_registration(body) {
        Ok(spec) => {
            check_spec(&spec);
            // The body was an object whose `address` string normalises to the spec's address.
            let value: serde_json::Value = serde_json::from_slice(body).expect("accepted => JSON");
            let address = value["address"]
                .as_str()
                .expect("accepted => address string");
            assert_eq!(parse_address(address).as_ref(), Ok(spec.address()));
        }
        Err(error) => check_error(&error),
    }
});
