//! The value of a backend's key: `{"address": "http://10.0.0.7:8080", "weight": 5}`.

use serde::{Deserialize, Serialize};

use crate::addr::BackendAddr;

#[derive(Serialize, Deserialize)]
struct Value<A> {
    address: A,
    #[serde(default = "one")]
    weight: u32,
}

const fn one() -> u32 {
    1
}

/// Parses a key's value into a normalised address and a weight (default 1, at least 1).
pub(crate) fn parse(value: &[u8]) -> Result<(BackendAddr, u32), String> {
    let Value { address, weight } = serde_json::from_slice::<Value<String>>(value)
        .map_err(|e| format!("not {{\"address\": \"http://host:port\", \"weight\": N}}: {e}"))?;
    let address = address.parse::<BackendAddr>().map_err(|e| e.to_string())?;
    if weight == 0 {
        return Err("weight 0: a weight is at least 1".to_owned());
    }
    Ok((address, weight))
}

/// The value written for a backend.
pub(crate) fn encode(address: &BackendAddr, weight: u32) -> String {
    serde_json::to_string(&Value {
        address: address.to_string(),
        weight,
    })
    .expect("a string and a number serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_normalises_and_defaults_the_weight() {
        let (addr, weight) = parse(br#"{"address": "HTTP://127.0.0.1:80/", "weight": 5}"#).unwrap();
        assert_eq!((addr.to_string().as_str(), weight), ("http://127.0.0.1", 5));
        let (_, weight) = parse(br#"{"address": "http://127.0.0.1:1080"}"#).unwrap();
        assert_eq!(weight, 1);
        let encoded = encode(&"http://127.0.0.1:1080".parse().unwrap(), 3);
        assert_eq!(encoded, r#"{"address":"http://127.0.0.1:1080","weight":3}"#);
        assert_eq!(parse(encoded.as_bytes()).unwrap().1, 3);
    }

    #[test]
    fn bad_values_say_why() {
        for (value, reason) in [
            (&b"not json"[..], "not {\"address\""),
            (br#"{"weight": 2}"#, "missing field `address`"),
            (br#"{"address": "ftp://x:1"}"#, "ftp://x:1"),
            (br#"{"address": "http://x:1", "weight": 0}"#, "weight 0"),
            (
                br#"{"address": "http://x:1", "weight": -1}"#,
                "invalid value",
            ),
        ] {
            let error = parse(value).unwrap_err();
            assert!(error.contains(reason), "{error:?} lacks {reason:?}");
        }
    }
}
