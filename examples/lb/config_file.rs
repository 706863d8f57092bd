//! `--config FILE`: the command line's settings in a TOML file, one key per flag (its long
//! name), which the flags given on the command line override; `--check-config FILE`.
//!
//! The file is parsed into [`ConfigFile`] (unknown keys and wrong types are errors naming the
//! key and line), turned into the flags it stands for, and those go through the same clap
//! parsers as the command line: one set of rules, defaults and messages for both.

use std::ffi::OsString;
use std::path::Path;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};
use serde::{Deserialize, Serialize};

use crate::cli::Args;

/// Every key of a config file: the long name of a flag, with a value of the flag's type
/// (seconds as numbers, repeatable flags as arrays, switches as booleans).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct ConfigFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    algo: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health_interval: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health_timeout: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backend: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    demo: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    workers: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trust_proxy: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eject_after: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eject_time: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eject_max_time: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eject_max_percent: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    slow_start: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_bind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allow_backend: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_header_timeout: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idle_timeout: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connect_timeout: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backend_timeout: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grace: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_header_size: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_connections: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_conns_per_backend: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    queue_timeout: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retries: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_non_idempotent: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dns: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dns_srv: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dns_server: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dns_min_ttl: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dns_max_ttl: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backends_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health_grpc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_timeout: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_on: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_buffer: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hash_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hash_balance_factor: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sticky_cookie: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sticky_secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_log: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_log_format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_cert: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_key: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    redirect_http: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backend_ca: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backend_cert: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backend_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backend_alpn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    etcd: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    etcd_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    etcd_lease_ttl: Option<u64>,
}

/// The flags a file stands for: each key's long name with its values (none for a switch).
pub(crate) type FileFlags = Vec<(String, Vec<String>)>;

/// Reads `path` and checks every key as its flag: the flags it stands for, or the reason it
/// is refused, naming the file, the key and its line.
pub(crate) fn load(path: &Path) -> Result<FileFlags, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the config file {}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("config file {}: {e}", path.display()))
}

/// [`load`] on the file's text.
pub(crate) fn parse(text: &str) -> Result<FileFlags, String> {
    // toml's message names the key ("unknown field `wieght`"), its span gives the line.
    let file: ConfigFile = toml::from_str(text).map_err(|e| one_line(text, &e))?;
    let serde_json::Value::Object(keys) = serde_json::to_value(&file).map_err(|e| e.to_string())?
    else {
        unreachable!("a struct serializes to an object")
    };
    let command = Args::command();
    let mut flags = Vec::new();
    for (key, value) in keys {
        let values = match value {
            serde_json::Value::Bool(false) => continue,
            serde_json::Value::Bool(true) => Vec::new(),
            serde_json::Value::Array(items) => items.iter().map(plain).collect(),
            other => vec![plain(&other)],
        };
        // The same checks as on the command line, one key at a time so the error names it.
        let mut argv = vec![OsString::from("lb")];
        if values.is_empty() {
            argv.push(format!("--{key}").into());
        }
        for value in &values {
            argv.push(format!("--{key}={value}").into());
        }
        if let Err(error) = command.clone().try_get_matches_from(argv) {
            let line = text
                .lines()
                .position(|l| l.trim_start().starts_with(&key))
                .map_or_else(String::new, |n| format!("line {}, ", n + 1));
            return Err(format!("{line}key `{key}`: {}", reason(&error)));
        }
        flags.push((key, values));
    }
    Ok(flags)
}

/// A TOML error on one line: `line N, column M: message`.
fn one_line(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end().replace('\n', " ");
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |n| n + 1) + 1;
            // A type error's message does not name the key: the line does.
            let key = text
                .lines()
                .nth(line - 1)
                .and_then(|l| l.split_once('='))
                .map(|(key, _)| key.trim())
                .filter(|key| !key.is_empty() && !message.contains(&format!("`{key}`")))
                .map_or_else(String::new, |key| format!("key `{key}`: "));
            format!("line {line}, column {column}: {key}{message}")
        }
        None => message,
    }
}

/// A TOML value as a flag spells it.
fn plain(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The first line of a clap error, without its `error: ` prefix.
pub(crate) fn reason(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    let first = rendered.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}

/// The command line `argv` (normalised, program name first) over the file it names with
/// `--config`, if any: a flag given on the command line wins over the file's key.
pub(crate) fn merge(argv: &[OsString]) -> Result<Args, String> {
    let command = Args::command();
    let matches = command
        .clone()
        .try_get_matches_from(argv)
        .map_err(|e| reason(&e))?;
    let Some(path) = matches.get_one::<std::path::PathBuf>("config") else {
        return Args::from_arg_matches(&matches).map_err(|e| reason(&e));
    };
    let mut merged = vec![argv[0].clone()];
    for (key, values) in load(path)? {
        let id = command
            .get_arguments()
            .find(|arg| arg.get_long() == Some(key.as_str()))
            .map(|arg| arg.get_id().as_str().to_owned())
            .expect("every key is a flag: checked by `parse`");
        if matches.value_source(&id) == Some(ValueSource::CommandLine) {
            continue;
        }
        if values.is_empty() {
            merged.push(format!("--{key}").into());
        }
        for value in values {
            merged.push(format!("--{key}={value}").into());
        }
    }
    merged.extend(argv[1..].iter().cloned());
    let matches = command
        .try_get_matches_from(merged)
        .map_err(|e| format!("config file {}: {}", path.display(), reason(&e)))?;
    Args::from_arg_matches(&matches).map_err(|e| reason(&e))
}

/// `--check-config FILE`: the exit status, 0 when the file is valid (printing `ok`), 2 with
/// the reason on standard error when not.
pub(crate) fn check(path: &Path) -> u8 {
    match load(path).and_then(|_| {
        let argv: Vec<OsString> = vec!["lb".into(), "--config".into(), path.into()];
        merge(&argv).map(|_| ())
    }) {
        Ok(()) => {
            println!("lb: config file {}: ok", path.display());
            0
        }
        Err(reason) => {
            eprintln!("lb: {reason}");
            2
        }
    }
}

#[cfg(test)]
mod tests;
