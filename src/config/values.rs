//! The parsers of single setting values: each turns the text of one variable into its value
//! or a sentence saying what was expected.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use tracing_subscriber::EnvFilter;

pub(super) fn integer_in<T>(min: T, max: T) -> impl FnOnce(&str) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    move |s| match s.parse::<T>() {
        Ok(v) if v >= min && v <= max => Ok(v),
        _ => Err(format!("expected a whole number from {min} to {max}")),
    }
}

pub(super) fn millis_in(min: u64, max: u64) -> impl FnOnce(&str) -> Result<Duration, String> {
    move |s| {
        integer_in(min, max)(s)
            .map(Duration::from_millis)
            .map_err(|e| format!("{e} (milliseconds)"))
    }
}

pub(super) fn boolean(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

pub(super) fn log_filter(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err(
            "expected a level (error, warn, info, debug, trace) or an EnvFilter directive".into(),
        );
    }
    EnvFilter::try_new(s)
        .map(|_| s.to_owned())
        .map_err(|e| format!("not a valid log filter: {e}"))
}

pub(super) fn comma_list(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|item| !item.is_empty())
}

pub(super) fn proxies(s: &str) -> Result<Vec<IpNet>, String> {
    comma_list(s)
        .map(|item| {
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{item:?} is not an IP address or CIDR"))
        })
        .collect()
}

pub(super) fn server_id(s: &str) -> Result<String, String> {
    let valid = (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if valid {
        Ok(s.to_owned())
    } else {
        Err("expected 1 to 64 characters of A-Z a-z 0-9 . _ -".into())
    }
}

/// The machine's hostname, cut to a valid server id.
pub(super) fn default_server_id() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let cleaned: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if cleaned.is_empty() {
        "concurrent-socket".into()
    } else {
        cleaned
    }
}
