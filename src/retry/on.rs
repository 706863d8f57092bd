//! [`RetryOn`]: which failures and which statuses a [`Retry`](super::Retry) retries.

use std::fmt;
use std::str::FromStr;

use http::StatusCode;

/// The conditions a request is retried on, as HAProxy's `retry-on` and nginx's
/// `proxy_next_upstream` name them; parses from a comma list.
///
/// | name | retries when |
/// |---|---|
/// | `connect-failure` (`conn-failure`, `error`) | the attempt failed before the backend could act on it ([`is_retry_safe`](super::is_retry_safe)): connect refused, failed or timed out, connection closed before any byte of the response |
/// | `5xx` | the backend answered `500` to `599` |
/// | `gateway-error` | the backend answered `502`, `503` or `504` (Envoy's name) |
/// | `500` … `599` | the backend answered that status (`503`, `502,504`, …) |
///
/// The default, [`RetryOn::CONNECT_FAILURE`], retries connect failures only, as HAProxy's
/// default `retry-on conn-failure` and nginx's `proxy_next_upstream error`. A retried
/// response is not sent to the client: its body is dropped (the backend connection it came on
/// is closed, not reused, unless its body had ended) and the request goes to another backend;
/// when no retry is left, or the budget is empty, or no other backend is ready, the client
/// gets the last backend's answer as it was.
///
/// ```
/// use http::StatusCode;
/// use tower_lb::retry::RetryOn;
///
/// let on: RetryOn = "connect-failure,503,504".parse().unwrap();
/// assert!(on.connect_failure());
/// assert!(on.status(StatusCode::SERVICE_UNAVAILABLE));
/// assert!(!on.status(StatusCode::BAD_GATEWAY));
/// assert_eq!(on.to_string(), "connect-failure,503,504");
/// assert_eq!("5xx".parse::<RetryOn>().unwrap().to_string(), "5xx");
/// assert!("teapot".parse::<RetryOn>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RetryOn {
    connect_failure: bool,
    /// Bit `n` for status `500 + n`.
    statuses: u128,
}

const ALL_5XX: u128 = (1 << 100) - 1;
const GATEWAY: u128 = (1 << 2) | (1 << 3) | (1 << 4);

impl RetryOn {
    /// Connect failures only: the default.
    pub const CONNECT_FAILURE: Self = Self {
        connect_failure: true,
        statuses: 0,
    };

    /// Nothing: no retry at all.
    pub const NONE: Self = Self {
        connect_failure: false,
        statuses: 0,
    };

    /// Connect failures and `502`, `503`, `504`: what a fleet behind the balancer needs so a
    /// backend answering `503` costs its clients nothing.
    pub const GATEWAY_ERRORS: Self = Self {
        connect_failure: true,
        statuses: GATEWAY,
    };

    /// Whether connect failures are retried.
    pub const fn connect_failure(&self) -> bool {
        self.connect_failure
    }

    /// Whether a response with `status` is retried.
    #[inline]
    pub fn status(&self, status: StatusCode) -> bool {
        let code = status.as_u16();
        self.statuses != 0 && (500..600).contains(&code) && self.statuses & (1 << (code - 500)) != 0
    }

    /// Whether any status is retried.
    pub const fn any_status(&self) -> bool {
        self.statuses != 0
    }

    /// The same, with connect failures retried or not.
    #[must_use]
    pub const fn with_connect_failure(mut self, enabled: bool) -> Self {
        self.connect_failure = enabled;
        self
    }

    /// The same, with responses of `status` (`500` to `599`) retried too; other statuses are
    /// ignored.
    #[must_use]
    pub fn with_status(mut self, status: StatusCode) -> Self {
        let code = status.as_u16();
        if (500..600).contains(&code) {
            self.statuses |= 1 << (code - 500);
        }
        self
    }
}

impl Default for RetryOn {
    fn default() -> Self {
        Self::CONNECT_FAILURE
    }
}

/// A `retry-on` condition [`RetryOn`] does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRetryOn(String);

impl fmt::Display for InvalidRetryOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown retry-on condition {:?}: expected a comma list of connect-failure, 5xx, \
             gateway-error or a status from 500 to 599",
            self.0
        )
    }
}

impl std::error::Error for InvalidRetryOn {}

impl FromStr for RetryOn {
    type Err = InvalidRetryOn;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut on = Self::NONE;
        for word in s.split(',').map(str::trim) {
            match word.to_ascii_lowercase().replace('_', "-").as_str() {
                "connect-failure" | "conn-failure" | "error" => on.connect_failure = true,
                "5xx" => on.statuses |= ALL_5XX,
                "gateway-error" => on.statuses |= GATEWAY,
                "none" if s.trim() == word => {}
                code => match code.parse::<u16>() {
                    Ok(code @ 500..=599) => on.statuses |= 1 << (code - 500),
                    _ => return Err(InvalidRetryOn(word.to_owned())),
                },
            }
        }
        Ok(on)
    }
}

impl fmt::Display for RetryOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut words = Vec::new();
        if self.connect_failure {
            words.push("connect-failure".to_owned());
        }
        if self.statuses == ALL_5XX {
            words.push("5xx".to_owned());
        } else {
            words.extend(
                (0..100)
                    .filter(|n| self.statuses & (1 << n) != 0)
                    .map(|n| (500 + n).to_string()),
            );
        }
        if words.is_empty() {
            return f.pad("none");
        }
        f.pad(&words.join(","))
    }
}

impl fmt::Debug for RetryOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RetryOn({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_codes_and_classes_and_prints_them_back() {
        for (text, printed) in [
            ("connect-failure", "connect-failure"),
            ("conn-failure,5xx", "connect-failure,5xx"),
            (" 503 , error ", "connect-failure,503"),
            ("gateway-error", "502,503,504"),
            ("GATEWAY_ERROR,500", "500,502,503,504"),
            ("none", "none"),
        ] {
            let on: RetryOn = text.parse().unwrap();
            assert_eq!(on.to_string(), printed, "{text}");
            assert_eq!(printed.parse::<RetryOn>(), Ok(on), "{printed}");
        }
        let on: RetryOn = "5xx".parse().unwrap();
        assert!(!on.connect_failure());
        for code in [500, 503, 599] {
            assert!(on.status(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        for code in [200, 404, 499, 600] {
            assert!(!on.status(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        assert_eq!(RetryOn::default(), RetryOn::CONNECT_FAILURE);
        assert_eq!(
            RetryOn::GATEWAY_ERRORS,
            "connect-failure,gateway-error".parse().unwrap()
        );
    }

    #[test]
    fn unknown_conditions_are_named_in_the_error() {
        for bad in ["", "teapot", "404", "600", "5xx,", "none,503"] {
            let err = bad.parse::<RetryOn>().unwrap_err().to_string();
            assert!(err.contains("unknown retry-on condition"), "{bad}: {err}");
        }
        assert!(
            "503,418"
                .parse::<RetryOn>()
                .unwrap_err()
                .to_string()
                .contains("\"418\"")
        );
    }
}
