//! What the CRM activities share: owner types (methods.md §0.1), tolerant parsing of the
//! numbers and dates workflows hand over, `true`/`false` results, portal errors with context.
use b24flow_common::bitrix::B24Error;
use serde_json::{json, Map, Value};

use crate::activity::{ActivityError, Input};
use crate::schema::Text;
use crate::texts;

pub mod options;
pub mod update;

pub use crate::values::{id_of, text_of};

/// A CRM owner as the activities' `select` properties name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    Lead,
    Deal,
    Contact,
    Company,
}

impl Owner {
    pub const OPTIONS: &'static [(&'static str, &'static str, &'static str)] = &[
        ("lead", "Lead", "Лид"),
        ("deal", "Deal", "Сделка"),
        ("contact", "Contact", "Контакт"),
        ("company", "Company", "Компания"),
    ];

    pub fn parse(key: &str, raw: &str) -> Result<Self, ActivityError> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "lead" | "1" => Ok(Owner::Lead),
            "deal" | "2" => Ok(Owner::Deal),
            "contact" | "3" => Ok(Owner::Contact),
            "company" | "4" => Ok(Owner::Company),
            _ => Err(ActivityError::invalid(texts::not_one_of(
                key,
                raw,
                "lead, deal, contact, company",
            ))),
        }
    }

    /// `entityTypeId` / `OWNER_TYPE_ID`.
    pub fn type_id(self) -> u8 {
        match self {
            Owner::Lead => 1,
            Owner::Deal => 2,
            Owner::Contact => 3,
            Owner::Company => 4,
        }
    }

    /// For messages: `deal 812` / `сделка 812`.
    pub fn describe(self, id: u64) -> Text {
        let ru = match self {
            Owner::Lead => "лид",
            Owner::Deal => "сделка",
            Owner::Contact => "контакт",
            Owner::Company => "компания",
        };
        Text {
            en: format!("{} {id}", self.name()),
            ru: format!("{ru} {id}"),
        }
    }

    /// The lower-case name `crm.timeline.comment.add` wants (methods.md §14).
    pub fn name(self) -> &'static str {
        match self {
            Owner::Lead => "lead",
            Owner::Deal => "deal",
            Owner::Contact => "contact",
            Owner::Company => "company",
        }
    }
}

/// A required positive ID property (`1 234` tolerated).
pub fn required_id(input: &Input, key: &str) -> Result<u64, ActivityError> {
    let id = input.required_int(key)?;
    u64::try_from(id)
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ActivityError::invalid(texts::not_valid_id(key, &id.to_string())))
}

/// All values of a Multiple ID property.
pub fn id_list(input: &Input, key: &str) -> Result<Vec<u64>, ActivityError> {
    input
        .list(key)
        .iter()
        .map(|raw| {
            let digits: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
            digits
                .parse::<u64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| ActivityError::invalid(texts::not_valid_id(key, raw)))
        })
        .collect()
}

/// A number as people type it: `1 234,5`, `1,234.5`, `1234.5` (spaces, also non-breaking,
/// are thousands separators; a lone comma is the decimal point).
pub fn parse_number(raw: &str) -> Option<f64> {
    let compact: String = raw
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '\u{a0}' && *c != '\u{202f}')
        .collect();
    let normalized = if compact.contains('.') {
        compact.replace(',', "")
    } else if compact.matches(',').count() == 1 {
        compact.replace(',', ".")
    } else {
        compact.replace(',', "")
    };
    normalized.parse::<f64>().ok().filter(|n| n.is_finite())
}

pub fn number(input: &Input, key: &str) -> Result<Option<f64>, ActivityError> {
    let Some(raw) = input.string(key) else {
        return Ok(None);
    };
    parse_number(&raw)
        .map(Some)
        .ok_or_else(|| ActivityError::invalid(texts::not_number(key, &raw)))
}

/// A workflow date (`2026-05-01`, `01.05.2026`, `05/01/2026`, or a datetime of those) as
/// ISO `YYYY-MM-DD`, which REST accepts whatever the portal's locale.
pub fn parse_date(raw: &str) -> Option<String> {
    let (date, _) = split_date_time(raw.trim());
    let (y, m, d) = date_parts(date)?;
    Some(format!("{y:04}-{m:02}-{d:02}"))
}

/// A workflow datetime as ISO `YYYY-MM-DDTHH:MM:SS` (an offset given in ISO input is kept;
/// without one the portal reads it in the user's time zone, as the workflow meant it).
pub fn parse_datetime(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let (date, time) = split_date_time(raw);
    let (y, m, d) = date_parts(date)?;
    let time = time.trim();
    if time.is_empty() {
        return Some(format!("{y:04}-{m:02}-{d:02}T00:00:00"));
    }
    let (clock, offset) = match time.find(['+', 'Z']).or_else(|| time.rfind('-')) {
        Some(i) if i > 0 => (&time[..i], &time[i..]),
        _ => (time, ""),
    };
    let mut parts = clock.split(':');
    let h: u32 = parts.next()?.trim().parse().ok()?;
    let min: u32 = parts.next().unwrap_or("0").trim().parse().ok()?;
    let sec: u32 = parts
        .next()
        .unwrap_or("0")
        .split('.')
        .next()?
        .trim()
        .parse()
        .ok()?;
    if h > 23 || min > 59 || sec > 59 || parts.next().is_some() {
        return None;
    }
    Some(format!(
        "{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{sec:02}{offset}"
    ))
}

fn split_date_time(raw: &str) -> (&str, &str) {
    match raw.find(['T', ' ']) {
        Some(i) => (&raw[..i], &raw[i + 1..]),
        None => (raw, ""),
    }
}

fn date_parts(date: &str) -> Option<(u32, u32, u32)> {
    let num = |s: &str| s.trim().parse::<u32>().ok();
    let (y, m, d) = if let Some((a, rest)) = date.split_once('-') {
        let (b, c) = rest.split_once('-')?;
        (num(a)?, num(b)?, num(c)?)
    } else if let Some((a, rest)) = date.split_once('.') {
        let (b, c) = rest.split_once('.')?;
        (num(c)?, num(b)?, num(a)?)
    } else if let Some((a, rest)) = date.split_once('/') {
        let (b, c) = rest.split_once('/')?;
        (num(c)?, num(a)?, num(b)?)
    } else {
        return None;
    };
    chrono::NaiveDate::from_ymd_opt(y as i32, m, d).map(|_| (y, m, d))
}

pub fn date(input: &Input, key: &str) -> Result<Option<String>, ActivityError> {
    let Some(raw) = input.string(key) else {
        return Ok(None);
    };
    parse_date(&raw)
        .map(Some)
        .ok_or_else(|| ActivityError::invalid(texts::not_date(key, &raw)))
}

pub fn datetime(input: &Input, key: &str) -> Result<Option<String>, ActivityError> {
    let Some(raw) = input.string(key) else {
        return Ok(None);
    };
    parse_datetime(&raw)
        .map(Some)
        .ok_or_else(|| ActivityError::invalid(texts::not_datetime(key, &raw)))
}

/// `{"result": "true"|"false"}`: the contract's spelling (ACTIVITIES.md #7–10, 13, 14).
pub fn result_values(ok: bool) -> Map<String, Value> {
    let mut values = Map::new();
    values.insert("result".into(), json!(if ok { "true" } else { "false" }));
    values
}

/// A portal error with what we were doing, keeping its kind (retry or not). The portal's
/// own words follow the context untranslated.
pub fn portal_error(context: impl Into<Text>, e: B24Error) -> ActivityError {
    let context = context.into();
    let mut err = ActivityError::from(e);
    err.message = Text {
        en: format!("{}: {}", context.en, err.message.en),
        ru: format!("{}: {}", context.ru, err.message.ru),
    };
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_tolerate_spaces_and_either_decimal_comma_or_thousands_commas() {
        assert_eq!(parse_number("1 234,5"), Some(1234.5));
        assert_eq!(parse_number("1,234.5"), Some(1234.5));
        assert_eq!(parse_number("1\u{a0}000"), Some(1000.0));
        assert_eq!(parse_number("1,234,567"), Some(1234567.0));
        assert_eq!(parse_number("-3.25"), Some(-3.25));
        assert_eq!(parse_number("abc"), None);
        assert_eq!(parse_number(""), None);
    }

    #[test]
    fn dates_in_the_usual_workflow_formats_become_iso() {
        assert_eq!(parse_date("1990-05-01").as_deref(), Some("1990-05-01"));
        assert_eq!(parse_date("01.05.1990").as_deref(), Some("1990-05-01"));
        assert_eq!(parse_date("05/01/1990").as_deref(), Some("1990-05-01"));
        assert_eq!(
            parse_date("1990-05-01T03:00:00+03:00").as_deref(),
            Some("1990-05-01")
        );
        assert_eq!(parse_date("31.02.1990"), None);
        assert_eq!(parse_date("tomorrow"), None);
    }

    #[test]
    fn datetimes_keep_their_time_and_offset() {
        assert_eq!(
            parse_datetime("01.09.2026 10:30:00").as_deref(),
            Some("2026-09-01T10:30:00")
        );
        assert_eq!(
            parse_datetime("2026-09-01T10:00:00+02:00").as_deref(),
            Some("2026-09-01T10:00:00+02:00")
        );
        assert_eq!(
            parse_datetime("2026-09-01 09:05").as_deref(),
            Some("2026-09-01T09:05:00")
        );
        assert_eq!(
            parse_datetime("2026-09-01").as_deref(),
            Some("2026-09-01T00:00:00")
        );
        assert_eq!(parse_datetime("2026-09-01 25:00"), None);
    }

    #[test]
    fn owners_take_names_or_type_ids() {
        assert_eq!(Owner::parse("k", "Deal").unwrap(), Owner::Deal);
        assert_eq!(Owner::parse("k", "4").unwrap().name(), "company");
        assert!(Owner::parse("k", "order").is_err());
    }

    #[test]
    fn id_lists_reject_garbage() {
        let input = Input::new(&json!({"a": ["1", " 2 ", ""], "b": "x"}));
        assert_eq!(id_list(&input, "a").unwrap(), vec![1, 2]);
        assert!(id_list(&input, "b").is_err());
    }
}
