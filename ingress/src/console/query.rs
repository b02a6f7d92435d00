//! The job filter as clients send it (query string or JSON body), checked with clear errors.
use b24flow_common::db::ops::{Cursor, ErrorClass, JobFilter, StateFilter};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;
/// Longest search text or error text an operator may send.
pub const MAX_TEXT: usize = 1000;

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct FilterQuery {
    pub portal: Option<String>,
    pub activity: Option<String>,
    pub state: Option<String>,
    pub error_class: Option<String>,
    /// RFC 3339 time; jobs created at or after.
    pub since: Option<String>,
    /// RFC 3339 time; jobs created before.
    pub until: Option<String>,
    /// Text search.
    pub q: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct PageQuery {
    #[serde(flatten)]
    pub filter: FilterQuery,
    pub cursor: Option<String>,
    pub limit: Option<String>,
}

fn present(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn time(name: &str, v: &Option<String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    present(v)
        .map(|s| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    ApiError::bad_request(
                        "invalid_time",
                        format!("{name} must be an RFC 3339 time like 2024-05-01T12:00:00Z"),
                    )
                })
        })
        .transpose()
}

impl FilterQuery {
    pub fn to_filter(&self) -> Result<JobFilter, ApiError> {
        let state = present(&self.state)
            .map(|s| {
                StateFilter::parse(s).ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_state",
                        format!(
                            "state must be one of {}",
                            StateFilter::ALL.map(StateFilter::as_str).join(", ")
                        ),
                    )
                })
            })
            .transpose()?;
        let error_class = present(&self.error_class)
            .map(|s| {
                ErrorClass::parse(s).ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_error_class",
                        format!(
                            "error_class must be one of {}",
                            ErrorClass::ALL.map(ErrorClass::as_str).join(", ")
                        ),
                    )
                })
            })
            .transpose()?;
        let text = present(&self.q).map(str::to_string);
        if text.as_ref().is_some_and(|t| t.len() > MAX_TEXT) {
            return Err(ApiError::bad_request(
                "search_too_long",
                format!("q is limited to {MAX_TEXT} bytes"),
            ));
        }
        Ok(JobFilter {
            portal: present(&self.portal).map(str::to_string),
            activity: present(&self.activity).map(str::to_string),
            state,
            error_class,
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
            text,
        })
    }
}

impl PageQuery {
    pub fn cursor(&self) -> Result<Option<Cursor>, ApiError> {
        present(&self.cursor)
            .map(|c| {
                Cursor::decode(c).ok_or_else(|| {
                    ApiError::bad_request("invalid_cursor", "cursor is not one this API gave out")
                })
            })
            .transpose()
    }

    pub fn limit(&self) -> Result<i64, ApiError> {
        match present(&self.limit) {
            None => Ok(DEFAULT_LIMIT),
            Some(s) => s
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_limit",
                        format!("limit must be a number from 1 to {MAX_LIMIT}"),
                    )
                }),
        }
    }
}

/// The operator's error text for a discard: required, one paragraph, bounded.
pub fn error_text(raw: Option<&str>) -> Result<String, ApiError> {
    let text = raw.map(str::trim).unwrap_or_default();
    if text.is_empty() {
        return Err(ApiError::bad_request(
            "error_text_required",
            "a discard needs error_text: what the workflow should be told",
        ));
    }
    if text.len() > MAX_TEXT {
        return Err(ApiError::bad_request(
            "error_text_too_long",
            format!("error_text is limited to {MAX_TEXT} bytes"),
        ));
    }
    Ok(text.to_string())
}
