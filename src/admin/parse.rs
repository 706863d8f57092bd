//! Parsing and validation of a registration, without I/O.

use std::fmt;
use std::str::FromStr;

use http::StatusCode;
use serde_json::{Map, Value};

use crate::addr::{BackendAddr, InvalidBackendAddr};

/// The weight of a backend registered without one.
pub const DEFAULT_WEIGHT: u32 = 1;

/// The largest weight a backend can be registered with.
pub const MAX_WEIGHT: u32 = 1000;

/// The largest `/register` body accepted, in bytes (64 KiB).
pub const MAX_BODY: usize = 64 * 1024;

/// A backend to register: a [`BackendAddr`] and a weight in `1..=`[`MAX_WEIGHT`].
///
/// Built by [`parse_registration`] from a `/register` body, or parsed from `URL[=WEIGHT]`
/// (the command-line form) with [`FromStr`]. Displays as `URL` (without the weight), the
/// normalised address as the API reports it.
///
/// ```
/// use tower_lb::admin::BackendSpec;
///
/// let spec: BackendSpec = "HTTP://Example.COM:80/=5".parse().unwrap();
/// assert_eq!(spec.to_string(), "http://example.com");
/// assert_eq!(spec.weight(), 5);
/// assert!("127.0.0.1:1080".parse::<BackendSpec>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSpec {
    address: BackendAddr,
    weight: u32,
}

impl BackendSpec {
    /// A backend at `address` (validated and normalised as a [`BackendAddr`]) with `weight`.
    pub fn new(address: &str, weight: u32) -> Result<Self, RegisterError> {
        Ok(Self {
            address: address.parse()?,
            weight: check_weight(i128::from(weight))?,
        })
    }

    /// The normalised address.
    pub fn address(&self) -> &BackendAddr {
        &self.address
    }

    /// The weight.
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// Returns the address and the weight.
    pub fn into_parts(self) -> (BackendAddr, u32) {
        (self.address, self.weight)
    }
}

impl fmt::Display for BackendSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.address, f)
    }
}

impl FromStr for BackendSpec {
    type Err = RegisterError;

    /// Parses `URL` or `URL=WEIGHT`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // A backend address has no query, so the last `=` can only start a weight.
        let Some((address, weight)) = s.rsplit_once('=') else {
            return Self::new(s, DEFAULT_WEIGHT);
        };
        let weight = weight
            .parse::<i128>()
            .map_err(|_| RegisterError::WrongType {
                field: "weight",
                expected: "an integer",
            })
            .and_then(check_weight)?;
        Self::new(address, weight)
    }
}

/// Why a registration was refused. See [`status`](RegisterError::status) for the HTTP status
/// each kind maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegisterError {
    /// The body is empty.
    Empty,
    /// The body is not valid JSON.
    Malformed(String),
    /// The body is JSON but not an object.
    NotAnObject,
    /// The object has a field other than `address` and `weight`.
    UnknownField(String),
    /// The object has no `address`.
    MissingAddress,
    /// A field has the wrong JSON type.
    WrongType {
        /// The field.
        field: &'static str,
        /// What it should have been.
        expected: &'static str,
    },
    /// The address is not an absolute `http://` URL with a host (see [`BackendAddr`]).
    BadAddress {
        /// The address as given.
        address: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The weight is not in `1..=`[`MAX_WEIGHT`].
    WeightOutOfRange(i128),
}

impl RegisterError {
    /// The HTTP status for this error: `403 Forbidden` for an unknown field, `400 Bad Request`
    /// for everything else.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::UnknownField(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => {
                f.pad(r#"empty body: expected {"address": "http://host:port", "weight": 1}"#)
            }
            Self::Malformed(error) => write!(f, "malformed JSON: {error}"),
            Self::NotAnObject => f.pad("the body must be a JSON object"),
            Self::UnknownField(name) => {
                write!(
                    f,
                    "unknown field {name:?}: only \"address\" and \"weight\" are allowed"
                )
            }
            Self::MissingAddress => f.pad("missing field \"address\""),
            Self::WrongType { field, expected } => write!(f, "{field:?} must be {expected}"),
            Self::BadAddress { address, reason } => {
                write!(f, "invalid address {address:?}: {reason}")
            }
            Self::WeightOutOfRange(weight) => {
                write!(
                    f,
                    "\"weight\" must be between 1 and {MAX_WEIGHT}, got {weight}"
                )
            }
        }
    }
}

impl std::error::Error for RegisterError {}

impl From<InvalidBackendAddr> for RegisterError {
    /// A [`BadAddress`](RegisterError::BadAddress), with the same message.
    fn from(error: InvalidBackendAddr) -> Self {
        let (address, reason) = error.into_parts();
        Self::BadAddress { address, reason }
    }
}

/// Parses and validates a `/register` body: `{"address": "http://host:port", "weight": 5}`.
///
/// `weight` is optional ([`DEFAULT_WEIGHT`]) and must be an integer in `1..=`[`MAX_WEIGHT`];
/// `address` must be a valid [`BackendAddr`]. Any other field is an
/// [`UnknownField`](RegisterError::UnknownField). Pure and total: it never panics, whatever
/// the bytes.
///
/// ```
/// use tower_lb::admin::{parse_registration, RegisterError};
///
/// let spec = parse_registration(br#"{"address": "http://127.0.0.1:1080/", "weight": 5}"#).unwrap();
/// assert_eq!(spec.to_string(), "http://127.0.0.1:1080");
/// assert_eq!(spec.weight(), 5);
///
/// let err = parse_registration(br#"{"address": "http://127.0.0.1:1080", "port": 1}"#);
/// assert_eq!(err, Err(RegisterError::UnknownField("port".into())));
/// ```
pub fn parse_registration(body: &[u8]) -> Result<BackendSpec, RegisterError> {
    let fields = object(body)?;
    let address = address_field(&fields)?;
    let weight = weight_field(&fields)?;
    Ok(BackendSpec { address, weight })
}

/// Parses and validates a `DELETE /register` body: `{"address": "http://host:port"}`, the
/// normalised address of the backend to drain.
///
/// The same body as for [`parse_registration`] is accepted: a `weight` field is ignored,
/// whatever its value, but any other field is an
/// [`UnknownField`](RegisterError::UnknownField). Pure and total, like `parse_registration`.
///
/// ```
/// use tower_lb::admin::parse_deregistration;
///
/// let addr = parse_deregistration(br#"{"address": "http://127.0.0.1:1080/", "weight": 0}"#).unwrap();
/// assert_eq!(addr, "http://127.0.0.1:1080".parse::<tower_lb::BackendAddr>().unwrap());
/// assert!(parse_deregistration(br#"{"weight": 1}"#).is_err());
/// ```
pub fn parse_deregistration(body: &[u8]) -> Result<BackendAddr, RegisterError> {
    address_field(&object(body)?)
}

/// The body as a JSON object with no field but `address` and `weight`.
fn object(body: &[u8]) -> Result<Map<String, Value>, RegisterError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(RegisterError::Empty);
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| RegisterError::Malformed(e.to_string()))?;
    let Value::Object(fields) = value else {
        return Err(RegisterError::NotAnObject);
    };
    if let Some(name) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "address" | "weight"))
    {
        return Err(RegisterError::UnknownField(name.clone()));
    }
    Ok(fields)
}

fn address_field(fields: &Map<String, Value>) -> Result<BackendAddr, RegisterError> {
    match fields.get("address") {
        None => Err(RegisterError::MissingAddress),
        Some(Value::String(address)) => Ok(address.parse()?),
        Some(_) => Err(RegisterError::WrongType {
            field: "address",
            expected: "a string",
        }),
    }
}

fn weight_field(fields: &Map<String, Value>) -> Result<u32, RegisterError> {
    let wrong_type = RegisterError::WrongType {
        field: "weight",
        expected: "an integer",
    };
    match fields.get("weight") {
        None => Ok(DEFAULT_WEIGHT),
        Some(Value::Number(n)) => {
            let n = n
                .as_i64()
                .map(i128::from)
                .or_else(|| n.as_u64().map(i128::from))
                .ok_or(wrong_type)?;
            check_weight(n)
        }
        Some(_) => Err(wrong_type),
    }
}

fn check_weight(weight: i128) -> Result<u32, RegisterError> {
    match u32::try_from(weight) {
        Ok(w) if (1..=MAX_WEIGHT).contains(&w) => Ok(w),
        _ => Err(RegisterError::WeightOutOfRange(weight)),
    }
}

/// Validates and normalises a backend address: [`BackendAddr`]'s [`FromStr`], with its error
/// as a [`RegisterError::BadAddress`] (the same message), as `/register` reports it.
///
/// The address must be an absolute `http://` or `https://` URL with a host, an optional port
/// (`1..=65535`) and an optional path prefix (requests are forwarded under it); user info, a
/// query or a fragment are refused. The normal form has a lower-case scheme and host, no
/// default port (`:80`, `:443`) and no trailing `/`.
///
/// ```
/// use tower_lb::admin::parse_address;
///
/// assert_eq!(parse_address("http://127.0.0.1:1080/").unwrap(), parse_address("http://127.0.0.1:1080").unwrap());
/// assert!(parse_address("ftp://x").is_err());
/// assert!(parse_address("http://").is_err());
/// ```
pub fn parse_address(address: &str) -> Result<BackendAddr, RegisterError> {
    Ok(address.parse()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<(String, u32), RegisterError> {
        parse_registration(body.as_bytes()).map(|s| (s.to_string(), s.weight()))
    }

    #[test]
    fn valid_body_with_and_without_weight() {
        assert_eq!(
            parse(r#"{"address": "http://127.0.0.1:1080", "weight": 5}"#),
            Ok(("http://127.0.0.1:1080".into(), 5))
        );
        assert_eq!(
            parse(r#"{"address": "http://backend.example/"}"#),
            Ok(("http://backend.example".into(), 1))
        );
        assert_eq!(
            parse(r#"{"weight": 1000, "address": "http://[::1]:8080/api/"}"#),
            Ok(("http://[::1]:8080/api".into(), 1000))
        );
    }

    #[test]
    fn empty_and_malformed_bodies_are_bad_requests() {
        for body in ["", "  \n", "{", "{\"address\": }", "nul", "\u{0}"] {
            let err = parse(body).unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{body:?}: {err}");
        }
        assert_eq!(parse(""), Err(RegisterError::Empty));
        assert!(matches!(parse("{"), Err(RegisterError::Malformed(_))));
        for body in ["[]", "\"http://x\"", "5", "null"] {
            assert_eq!(parse(body), Err(RegisterError::NotAnObject), "{body}");
        }
    }

    #[test]
    fn wrong_types_are_bad_requests() {
        for body in [
            r#"{"address": 5}"#,
            r#"{"address": null}"#,
            r#"{"address": ["http://x"]}"#,
            r#"{"address": "http://x", "weight": "5"}"#,
            r#"{"address": "http://x", "weight": 1.5}"#,
            r#"{"address": "http://x", "weight": null}"#,
            r#"{"address": "http://x", "weight": true}"#,
        ] {
            let err = parse(body).unwrap_err();
            assert!(
                matches!(err, RegisterError::WrongType { .. }),
                "{body}: {err:?}"
            );
            assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        }
        assert_eq!(parse("{}"), Err(RegisterError::MissingAddress));
        assert_eq!(
            parse(r#"{"weight": 2}"#),
            Err(RegisterError::MissingAddress)
        );
    }

    #[test]
    fn weight_must_be_in_range() {
        for (weight, ok) in [
            ("0", false),
            ("1", true),
            ("1000", true),
            ("1001", false),
            ("-1", false),
            ("18446744073709551615", false),
        ] {
            let res = parse(&format!(r#"{{"address": "http://x", "weight": {weight}}}"#));
            assert_eq!(res.is_ok(), ok, "{weight}: {res:?}");
            if !ok {
                let err = res.unwrap_err();
                assert!(matches!(err, RegisterError::WeightOutOfRange(_)));
                assert!(err.to_string().contains("between 1 and 1000"), "{err}");
            }
        }
    }

    #[test]
    fn unknown_fields_are_forbidden_and_named() {
        let err = parse(r#"{"address": "http://x", "wieght": 2}"#).unwrap_err();
        assert_eq!(err, RegisterError::UnknownField("wieght".into()));
        assert_eq!(err.status(), StatusCode::FORBIDDEN);
        assert!(err.to_string().contains("\"wieght\""), "{err}");
        // Even when the rest of the body is wrong too.
        let err = parse(r#"{"extra": 1}"#).unwrap_err();
        assert_eq!(err.status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn bad_addresses_are_refused_with_a_reason() {
        for address in [
            "ftp://x",
            "127.0.0.1:1080",
            "http://",
            "http:///x",
            "/path",
            "",
            "x",
            "http://h:0",
            "http://h:99999",
            "http://h:",
            "http://user:pw@h",
            "http://h/?q=1",
            "http://h/#top",
            "http:// h",
            "https://x:0",
            "ftp://x",
        ] {
            let err = parse_address(address).unwrap_err();
            assert!(
                matches!(&err, RegisterError::BadAddress { address: a, .. } if a == address),
                "{address}: {err:?}"
            );
            assert!(err.to_string().contains("invalid address"), "{err}");
        }
    }

    #[test]
    fn addresses_are_normalised() {
        let same = ["http://x:1", "http://x:1/", "HTTP://X:1//", "Http://x:1"];
        for a in same {
            let addr = parse_address(a).unwrap();
            assert_eq!(addr, parse_address("http://x:1").unwrap(), "{a}");
            assert_eq!(addr.to_string(), "http://x:1");
        }
        assert_eq!(
            parse_address("http://x:80/").unwrap().to_string(),
            "http://x"
        );
        assert_eq!(
            parse_address("http://x:443/a/b/").unwrap().to_string(),
            "http://x:443/a/b"
        );
    }

    #[test]
    fn command_line_form() {
        let spec: BackendSpec = "http://127.0.0.1:9000=7".parse().unwrap();
        assert_eq!(
            (spec.to_string().as_str(), spec.weight()),
            ("http://127.0.0.1:9000", 7)
        );
        let spec: BackendSpec = "http://127.0.0.1:9000/".parse().unwrap();
        assert_eq!(spec.weight(), DEFAULT_WEIGHT);
        assert!(matches!(
            "http://x=0".parse::<BackendSpec>(),
            Err(RegisterError::WeightOutOfRange(0))
        ));
        assert!(matches!(
            "http://x=heavy".parse::<BackendSpec>(),
            Err(RegisterError::WrongType { .. })
        ));
        assert!("localhost:9000=2".parse::<BackendSpec>().is_err());
    }

    #[test]
    fn deregistration_needs_an_address_and_ignores_the_weight() {
        let addr = parse_address("http://127.0.0.1:1080").unwrap();
        for body in [
            r#"{"address": "http://127.0.0.1:1080"}"#,
            r#"{"address": "HTTP://127.0.0.1:1080/", "weight": 5}"#,
            r#"{"address": "http://127.0.0.1:1080", "weight": "heavy"}"#,
            r#"{"address": "http://127.0.0.1:1080", "weight": -1}"#,
        ] {
            assert_eq!(
                parse_deregistration(body.as_bytes()),
                Ok(addr.clone()),
                "{body}"
            );
        }
        for (body, expected) in [
            ("", RegisterError::Empty),
            ("[]", RegisterError::NotAnObject),
            (r#"{"weight": 1}"#, RegisterError::MissingAddress),
            (
                r#"{"address": "http://x", "force": true}"#,
                RegisterError::UnknownField("force".into()),
            ),
        ] {
            assert_eq!(
                parse_deregistration(body.as_bytes()),
                Err(expected),
                "{body}"
            );
        }
        assert!(matches!(
            parse_deregistration(br#"{"address": "ftp://x"}"#),
            Err(RegisterError::BadAddress { .. })
        ));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in 0..2000 {
            let body: Vec<u8> = (0..len % 64)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    b"{}[]\":,0123456789.-eE aw\\ntrul"[(seed % 30) as usize]
                })
                .collect();
            let _ = parse_registration(&body);
            let _ = parse_deregistration(&body);
        }
    }
}
