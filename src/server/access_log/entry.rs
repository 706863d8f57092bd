//! One access-log line: what is kept of a request, and its two formats.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Method, Version};
use serde::Serialize;

use super::Format;
use crate::BackendAddr;
use crate::admin::backends::{civil_from_days, rfc3339};

/// What the log keeps of one request, filled in as it goes.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) time: SystemTime,
    pub(crate) client: Option<IpAddr>,
    pub(crate) method: Method,
    /// Path and query, as the client sent them.
    pub(crate) path: String,
    pub(crate) version: Version,
    pub(crate) referer: Option<HeaderValue>,
    pub(crate) user_agent: Option<HeaderValue>,
    pub(crate) status: u16,
    pub(crate) backend: Option<BackendAddr>,
    pub(crate) ttfb: Duration,
    pub(crate) total: Duration,
    pub(crate) bytes: u64,
    pub(crate) retries: usize,
}

#[derive(Serialize)]
struct Json<'a> {
    time: String,
    client: Option<IpAddr>,
    method: &'a str,
    path: &'a str,
    protocol: &'static str,
    status: u16,
    backend: Option<&'a BackendAddr>,
    ttfb_ms: f64,
    total_ms: f64,
    bytes: u64,
    retries: usize,
    referer: Option<&'a str>,
    user_agent: Option<&'a str>,
}

fn millis(d: Duration) -> f64 {
    // Microsecond precision is plenty, and keeps the numbers short.
    (d.as_micros() as f64) / 1000.0
}

fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

impl Entry {
    /// Writes the entry as one line (with its `\n`) in `format`.
    pub(crate) fn write(&self, format: Format, out: &mut impl Write) -> io::Result<()> {
        match format {
            Format::Json => self.write_json(out),
            Format::Combined => self.write_combined(out),
        }
    }

    fn write_json(&self, out: &mut impl Write) -> io::Result<()> {
        let header = |v: &'_ Option<HeaderValue>| -> Option<String> {
            v.as_ref()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let (referer, user_agent) = (header(&self.referer), header(&self.user_agent));
        let line = Json {
            time: rfc3339(self.time),
            client: self.client,
            method: self.method.as_str(),
            path: &self.path,
            protocol: protocol(self.version),
            status: self.status,
            backend: self.backend.as_ref(),
            ttfb_ms: millis(self.ttfb),
            total_ms: millis(self.total),
            bytes: self.bytes,
            retries: self.retries,
            referer: referer.as_deref(),
            user_agent: user_agent.as_deref(),
        };
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")
    }

    /// Apache's combined format, then the balancer's own fields as `key=value`:
    /// `127.0.0.1 - - [04/Dec/2026:21:40:00 +0000] "GET / HTTP/1.1" 200 12 "-" "curl/8.14.1"
    /// backend=http://127.0.0.1:1080 ttfb=0.000412 total=0.000530 retries=0`.
    fn write_combined(&self, out: &mut impl Write) -> io::Result<()> {
        let mut line = String::with_capacity(256);
        match self.client {
            Some(ip) => write!(line, "{ip}"),
            None => write!(line, "-"),
        }
        .ok();
        line.push_str(" - - [");
        clf_time(self.time, &mut line);
        line.push_str("] \"");
        escape(self.method.as_str().as_bytes(), &mut line);
        line.push(' ');
        escape(self.path.as_bytes(), &mut line);
        line.push(' ');
        line.push_str(protocol(self.version));
        let _ = write!(line, "\" {} ", self.status);
        // `%b`: `-` for no body.
        if self.bytes == 0 {
            line.push('-');
        } else {
            let _ = write!(line, "{}", self.bytes);
        }
        for header in [&self.referer, &self.user_agent] {
            line.push_str(" \"");
            match header {
                Some(value) => escape(value.as_bytes(), &mut line),
                None => line.push('-'),
            }
            line.push('"');
        }
        line.push_str(" backend=");
        match &self.backend {
            Some(backend) => {
                let _ = write!(line, "{backend}");
            }
            None => line.push('-'),
        }
        let _ = writeln!(
            line,
            " ttfb={:.6} total={:.6} retries={}",
            self.ttfb.as_secs_f64(),
            self.total.as_secs_f64(),
            self.retries
        );
        out.write_all(line.as_bytes())
    }
}

/// `04/Dec/2026:21:40:00 +0000`, the common log format's time, in UTC.
fn clf_time(time: SystemTime, out: &mut String) {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    let _ = write!(
        out,
        "{day:02}/{}/{year:04}:{:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    );
}

/// As Apache writes a request line or header: `"` and `\` escaped with a backslash, bytes
/// outside printable ASCII as `\xhh`, so that a line cannot be forged or broken.
fn escape(bytes: &[u8], out: &mut String) {
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            time: UNIX_EPOCH + Duration::from_millis(1_796_420_400_125),
            client: Some([127, 0, 0, 1].into()),
            method: Method::GET,
            path: "/a b\"?q=\\1".to_owned(),
            version: Version::HTTP_11,
            referer: None,
            user_agent: Some(HeaderValue::from_static("curl/8.14.1")),
            status: 200,
            backend: Some("http://127.0.0.1:1080".parse().unwrap()),
            ttfb: Duration::from_micros(412),
            total: Duration::from_micros(530),
            bytes: 12,
            retries: 1,
        }
    }

    fn line(entry: &Entry, format: Format) -> String {
        let mut out = Vec::new();
        entry.write(format, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn combined_is_apaches_line_then_the_balancers_fields() {
        assert_eq!(
            line(&entry(), Format::Combined),
            "127.0.0.1 - - [04/Dec/2026:21:40:00 +0000] \"GET /a b\\\"?q=\\\\1 HTTP/1.1\" 200 12 \
             \"-\" \"curl/8.14.1\" backend=http://127.0.0.1:1080 ttfb=0.000412 total=0.000530 \
             retries=1\n"
        );
        let mut no_body = entry();
        no_body.bytes = 0;
        no_body.backend = None;
        no_body.path = "/\n\u{7f}".to_owned();
        let line = line(&no_body, Format::Combined);
        assert!(
            line.contains("\"GET /\\x0a\\x7f HTTP/1.1\" 200 - "),
            "{line}"
        );
        assert!(line.contains(" backend=- "), "{line}");
    }

    #[test]
    fn json_is_one_object_per_line() {
        let line = line(&entry(), Format::Json);
        assert!(line.ends_with("}\n") && !line.trim_end().contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["time"], "2026-12-04T21:40:00.125Z");
        assert_eq!(v["client"], "127.0.0.1");
        assert_eq!(v["method"], "GET");
        assert_eq!(v["path"], "/a b\"?q=\\1");
        assert_eq!(v["protocol"], "HTTP/1.1");
        assert_eq!(v["status"], 200);
        assert_eq!(v["backend"], "http://127.0.0.1:1080");
        assert_eq!(v["ttfb_ms"], 0.412);
        assert_eq!(v["total_ms"], 0.53);
        assert_eq!(v["bytes"], 12);
        assert_eq!(v["retries"], 1);
        assert_eq!(v["referer"], serde_json::Value::Null);
        assert_eq!(v["user_agent"], "curl/8.14.1");
    }
}
