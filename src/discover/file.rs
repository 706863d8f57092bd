//! Backends from a watched file, TOML or JSON, re-read when it changes.
//!
//! A file ending in `.json` is a JSON list; any other is TOML with a `backends` array:
//!
//! ```text
//! # backends.toml                       // backends.json
//! [[backends]]                          [
//! address = "http://10.0.0.1:8080"        {"address": "http://10.0.0.1:8080", "weight": 3},
//! weight = 3                              {"address": "http://10.0.0.2:8080"}
//!                                       ]
//! [[backends]]
//! address = "http://10.0.0.2:8080"      # weight: 1 to 1000, default 1
//! ```
//!
//! The file is polled: when its modification time or size changes it is read again and its
//! backends [reconciled](super::Reconcile) with the last set (Traefik's and rpxy's file
//! providers watch the same way). A file that cannot be read or does not parse (an unknown
//! key, a bad address, a weight out of range) is logged with the reason and the last good
//! set is kept; at start-up, [`BackendsFile::load`] returns the error instead.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::channel::{SetDiscover, channel};
use crate::BackendAddr;

/// The largest weight, `POST /register`'s bound.
const MAX_WEIGHT: u32 = 1000;

/// One backend of the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    address: BackendAddr,
    #[serde(default = "one")]
    weight: u32,
}

fn one() -> u32 {
    1
}

/// The TOML form: a table with a `backends` array.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlFile {
    #[serde(default)]
    backends: Vec<Entry>,
}

/// A file that could not be read or parsed.
#[derive(Debug)]
pub struct FileError {
    path: PathBuf,
    reason: String,
}

impl FileError {
    pub(crate) fn new(path: &Path, reason: impl fmt::Display) -> Self {
        Self {
            path: path.to_owned(),
            reason: reason.to_string(),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Why it was refused.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason.trim_end())
    }
}

impl std::error::Error for FileError {}

/// Parses a backends list, TOML or (`json`) JSON; see the [module docs](self).
pub fn parse(text: &str, json: bool) -> Result<Vec<(BackendAddr, u32)>, String> {
    let entries = if json {
        serde_json::from_str::<Vec<Entry>>(text).map_err(|e| e.to_string())?
    } else {
        toml::from_str::<TomlFile>(text)
            .map_err(|e| one_line(text, &e))?
            .backends
    };
    entries
        .into_iter()
        .map(|Entry { address, weight }| {
            if (1..=MAX_WEIGHT).contains(&weight) {
                Ok((address, weight))
            } else {
                Err(format!(
                    "backend {address}: \"weight\" must be between 1 and {MAX_WEIGHT}, got {weight}"
                ))
            }
        })
        .collect()
}

/// A TOML error on one line, for logs: `line N, column M: message`.
fn one_line(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end().replace('\n', " ");
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |n| n + 1) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

/// A watched backends file. See the [module docs](self).
#[derive(Debug, Clone)]
#[must_use]
pub struct BackendsFile {
    path: PathBuf,
    interval: Duration,
}

impl BackendsFile {
    /// How often the file's modification time is checked by default: every second.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

    /// The file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            interval: Self::DEFAULT_INTERVAL,
        }
    }

    /// How often the file's modification time is checked.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads and parses the file now.
    pub fn load(&self) -> Result<Vec<(BackendAddr, u32)>, FileError> {
        let text =
            std::fs::read_to_string(&self.path).map_err(|e| FileError::new(&self.path, e))?;
        let json = self.path.extension().is_some_and(|ext| ext == "json");
        parse(&text, json).map_err(|e| FileError::new(&self.path, e))
    }

    /// What tells one version of the file from another without reading it: its modification
    /// time and size, and (on Unix) its inode, so that a file replaced by a rename is seen as
    /// new even when it has the same size and its modification time falls in the same clock
    /// tick as the last one (the kernel stamps files with a coarse clock).
    fn stamp(&self) -> Option<(SystemTime, u64, u64)> {
        let meta = std::fs::metadata(&self.path).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        Some((meta.modified().ok()?, meta.len(), inode))
    }

    /// Reads the file now and whenever it changes, calling `publish` with every full set
    /// that parses; never returns unless `publish` returns `false`. A file that fails is
    /// logged with the reason and `publish` not called, so the last good set stays.
    pub async fn watch<F>(&self, mut publish: F)
    where
        F: FnMut(Vec<(BackendAddr, u32)>) -> bool,
    {
        let mut seen = None;
        loop {
            let stamp = self.stamp();
            if stamp.is_none() || stamp != seen {
                seen = stamp;
                match self.load() {
                    Ok(set) => {
                        tracing::info!(file = %self.path.display(), backends = set.len(), "backends file loaded");
                        if !publish(set) {
                            return;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "backends file refused; keeping the last set");
                    }
                }
            }
            tokio::time::sleep(self.interval).await;
        }
    }

    /// A discovery stream of the file's backends, each service built by `make`: a task
    /// spawned on the current tokio runtime [`watch`](Self::watch)es the file until the
    /// stream is dropped.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn discover<S, F>(&self, make: F) -> SetDiscover<BackendAddr, S>
    where
        S: Send + 'static,
        F: Fn(&BackendAddr) -> S + Send + Sync + 'static,
    {
        let (mut publisher, discover) = channel(make);
        let file = self.clone();
        tokio::spawn(async move {
            let closed = publisher.on_close();
            tokio::select! {
                () = closed => {}
                () = file.watch(|set| publisher.publish(set)) => {}
            }
        });
        discover
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use tower::discover::Change;

    #[test]
    fn parses_toml_and_json() {
        let toml = "[[backends]]\naddress = \"http://127.0.0.1:1080\"\nweight = 3\n\n[[backends]]\naddress = \"http://127.0.0.1:1081/\"\n";
        let json = r#"[{"address": "http://127.0.0.1:1080", "weight": 3}, {"address": "http://127.0.0.1:1081"}]"#;
        for set in [parse(toml, false).unwrap(), parse(json, true).unwrap()] {
            let set: Vec<_> = set.iter().map(|(a, w)| (a.to_string(), *w)).collect();
            assert_eq!(
                set,
                [
                    ("http://127.0.0.1:1080".to_owned(), 3),
                    ("http://127.0.0.1:1081".to_owned(), 1)
                ]
            );
        }
    }

    #[test]
    fn refuses_unknown_keys_bad_addresses_and_weights() {
        let error = parse(
            "[[backends]]\naddress = \"http://127.0.0.1:1\"\nwieght = 2\n",
            false,
        )
        .unwrap_err();
        assert!(
            error.contains("wieght") && error.contains("line 3"),
            "{error}"
        );
        let error = parse(r#"[{"address": "ftp://x"}]"#, true).unwrap_err();
        assert!(error.contains("ftp"), "{error}");
        let error = parse(r#"[{"address": "http://127.0.0.1:1", "weight": 0}]"#, true).unwrap_err();
        assert!(error.contains("between 1 and 1000"), "{error}");
    }

    #[tokio::test]
    async fn rewritten_file_is_reconciled_and_bad_file_keeps_the_set() {
        let dir = std::env::temp_dir().join(format!("tower-lb-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("backends.json");
        std::fs::write(&path, r#"[{"address": "http://127.0.0.1:1"}]"#).unwrap();
        let file = BackendsFile::new(&path).interval(Duration::from_millis(20));
        let mut discover = file.discover(|a: &BackendAddr| a.to_string());
        let Some(Ok(Change::Insert(k, _))) = discover.next().await else {
            panic!("no insert")
        };
        assert_eq!(k.key().to_string(), "http://127.0.0.1:1");

        // A bad file: nothing changes. Then a good one with a different size.
        std::fs::write(&path, "[{").unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        std::fs::write(
            &path,
            r#"[{"address": "http://127.0.0.1:22", "weight": 2}]"#,
        )
        .unwrap();
        let Some(Ok(Change::Insert(k, _))) = discover.next().await else {
            panic!("no insert")
        };
        assert_eq!(
            (k.key().to_string(), crate::Weight::weight(&k)),
            ("http://127.0.0.1:22".to_owned(), 2)
        );
        let Some(Ok(Change::Remove(k))) = discover.next().await else {
            panic!("no remove")
        };
        assert_eq!(k.key().to_string(), "http://127.0.0.1:1");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
