//! `user_info` (ACTIVITIES.md #6): a user's profile from `user.get` and the names of the
//! user's departments from `department.get` (methods.md §6), in one batch with a `$result`
//! reference. Department names are then kept per portal for a minute, so a busy portal pays
//! one command per job for the profile and one for the answer, not three (issue 9: at
//! 2 requests/s × 50 commands that is the difference between 33 and 50 jobs/s).
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use b24flow_common::bitrix::{B24Error, Batch, ErrorKind, PortalClient};
use serde_json::{json, Map, Value};

use crate::activity::{Activity, ActivityError, Input, Output, RunContext};
use crate::schema::{ActivityDef, PropType, Property, Text};
use crate::text;
use crate::values::{id_of, is_yes, text_of, yes_no};

pub struct UserInfo;

pub(super) fn activity() -> Arc<dyn Activity> {
    Arc::new(UserInfo)
}

/// How long a department's name is reused without asking the portal again.
const DEPARTMENT_NAME_TTL: Duration = Duration::from_secs(60);

/// Set while this portal's department names are kept here.
const DEPARTMENTS_KNOWN: &str = "department_names:known";

fn department_key(id: u64) -> String {
    format!("department_name:{id}")
}

/// Return value, Bitrix24 `user.get` field, type.
const FIELDS: &[(&str, &str, PropType, &str, &str)] = &[
    ("is_online", "IS_ONLINE", PropType::Bool, "Online", "В сети"),
    ("active", "ACTIVE", PropType::Bool, "Active", "Активен"),
    ("email", "EMAIL", PropType::String, "E-mail", "E-mail"),
    ("name", "NAME", PropType::String, "First name", "Имя"),
    (
        "last_name",
        "LAST_NAME",
        PropType::String,
        "Last name",
        "Фамилия",
    ),
    (
        "second_name",
        "SECOND_NAME",
        PropType::String,
        "Second name",
        "Отчество",
    ),
    (
        "gender",
        "PERSONAL_GENDER",
        PropType::String,
        "Gender",
        "Пол",
    ),
    (
        "profession",
        "PERSONAL_PROFESSION",
        PropType::String,
        "Profession",
        "Профессия",
    ),
    (
        "www",
        "PERSONAL_WWW",
        PropType::String,
        "Web page",
        "Веб-страница",
    ),
    (
        "birthday",
        "PERSONAL_BIRTHDAY",
        PropType::Date,
        "Birthday",
        "Дата рождения",
    ),
    (
        "photo_url",
        "PERSONAL_PHOTO",
        PropType::String,
        "Photo URL",
        "Фотография",
    ),
    ("icq", "PERSONAL_ICQ", PropType::String, "ICQ", "ICQ"),
    (
        "personal_phone",
        "PERSONAL_PHONE",
        PropType::String,
        "Personal phone",
        "Личный телефон",
    ),
    ("fax", "PERSONAL_FAX", PropType::String, "Fax", "Факс"),
    (
        "personal_mobile",
        "PERSONAL_MOBILE",
        PropType::String,
        "Mobile phone",
        "Мобильный телефон",
    ),
    (
        "pager",
        "PERSONAL_PAGER",
        PropType::String,
        "Pager",
        "Пейджер",
    ),
    (
        "street",
        "PERSONAL_STREET",
        PropType::String,
        "Street",
        "Улица",
    ),
    ("city", "PERSONAL_CITY", PropType::String, "City", "Город"),
    (
        "state",
        "PERSONAL_STATE",
        PropType::String,
        "Region",
        "Область",
    ),
    (
        "zip",
        "PERSONAL_ZIP",
        PropType::String,
        "ZIP code",
        "Индекс",
    ),
    (
        "country",
        "PERSONAL_COUNTRY",
        PropType::String,
        "Country",
        "Страна",
    ),
    (
        "work_company",
        "WORK_COMPANY",
        PropType::String,
        "Company",
        "Компания",
    ),
    (
        "work_position",
        "WORK_POSITION",
        PropType::String,
        "Position",
        "Должность",
    ),
    (
        "work_phone",
        "WORK_PHONE",
        PropType::String,
        "Work phone",
        "Рабочий телефон",
    ),
    (
        "interests",
        "UF_INTERESTS",
        PropType::String,
        "Interests",
        "Интересы",
    ),
    ("skills", "UF_SKILLS", PropType::String, "Skills", "Навыки"),
    (
        "web_sites",
        "UF_WEB_SITES",
        PropType::String,
        "Other sites",
        "Другие сайты",
    ),
    ("xing", "UF_XING", PropType::String, "Xing", "Xing"),
    (
        "linkedin",
        "UF_LINKEDIN",
        PropType::String,
        "LinkedIn",
        "LinkedIn",
    ),
    (
        "facebook",
        "UF_FACEBOOK",
        PropType::String,
        "Facebook",
        "Facebook",
    ),
    (
        "twitter",
        "UF_TWITTER",
        PropType::String,
        "Twitter",
        "Twitter",
    ),
    ("skype", "UF_SKYPE", PropType::String, "Skype", "Skype"),
    (
        "district",
        "UF_DISTRICT",
        PropType::String,
        "District",
        "Район",
    ),
    (
        "inner_phone",
        "UF_PHONE_INNER",
        PropType::String,
        "Internal phone",
        "Внутренний телефон",
    ),
    (
        "user_type",
        "USER_TYPE",
        PropType::String,
        "User type",
        "Тип пользователя",
    ),
];

#[async_trait]
impl Activity for UserInfo {
    fn reads_only(&self) -> bool {
        true
    }

    fn definition(&self) -> ActivityDef {
        let mut returns: Vec<Property> = FIELDS
            .iter()
            .map(|(key, _, ty, en, ru)| Property::new(key, *ty, en, ru))
            .collect();
        returns.push(
            Property::new(
                "department_ids",
                PropType::Int,
                "Department IDs",
                "ID подразделений",
            )
            .multiple(),
        );
        returns.push(
            Property::new(
                "department_names",
                PropType::String,
                "Departments",
                "Подразделения",
            )
            .multiple(),
        );
        ActivityDef {
            code: "user_info",
            name: Text::new("User info", "Информация о пользователе"),
            description: Text::new(
                "Reads a user's profile and departments",
                "Получает профиль пользователя и его подразделения",
            ),
            properties: vec![
                Property::new("user_id", PropType::User, "User", "Пользователь")
                    .required()
                    .help(
                        "Whose profile to read: user_5 or 5; of several users the first one.",
                        "Чей профиль получить: user_5 или 5; если пользователей несколько — первый.",
                    ),
            ],
            returns,
        }
    }

    async fn run(&self, ctx: &RunContext, input: &Input) -> Result<Output, ActivityError> {
        let user_id = input.required_user("user_id")?;
        let (users, departments) = read_user(&ctx.b24, user_id).await?;
        let user = users
            .as_array()
            .and_then(|users| users.first())
            .ok_or_else(|| {
                ActivityError::invalid(text!(
                    "user {user_id} does not exist",
                    "пользователь {user_id} не найден"
                ))
            })?;
        remember_departments(&ctx.b24, departments.as_ref());

        let mut values = Map::new();
        for (key, field, ty, _, _) in FIELDS {
            let raw = user.get(*field).unwrap_or(&Value::Null);
            let value = match ty {
                PropType::Bool => json!(as_yes_no(raw)),
                PropType::Date => json!(as_date(raw)),
                _ => json!(text_of(Some(raw))),
            };
            values.insert((*key).to_string(), value);
        }
        let department_ids = department_ids(user);
        let department_names = department_names(&ctx.b24, &department_ids).await?;
        values.insert("department_ids".into(), json!(department_ids));
        values.insert("department_names".into(), json!(department_names));
        let full_name = [text_of(user.get("NAME")), text_of(user.get("LAST_NAME"))]
            .join(" ")
            .trim()
            .to_string();
        Ok(Output {
            return_values: values,
            log_message: text!(
                "user {user_id} ({full_name}) read",
                "получен профиль пользователя {user_id} ({full_name})"
            ),
        })
    }
}

/// `user.get`, and while this portal's department names are not known here yet,
/// `department.get` of the user's departments in the same batch (a `$result` reference).
async fn read_user(
    b24: &PortalClient,
    user_id: u64,
) -> Result<(Value, Option<Value>), ActivityError> {
    let filter = json!({ "filter": { "ID": user_id } });
    if b24
        .memo_get(DEPARTMENTS_KNOWN, DEPARTMENT_NAME_TTL)
        .is_some()
    {
        let answer = b24.call("user.get", filter).await?;
        return Ok((answer.result, None));
    }
    let mut batch = Batch::new(false);
    batch.push("user", "user.get", &filter);
    // A whole-value reference is replaced by the referenced array itself (Bitrix core
    // CRestUtil::processBatchElement), so one sub-call reads all of the user's departments.
    batch.push(
        "departments",
        "department.get",
        &json!({ "ID": "$result[user][0][UF_DEPARTMENT]" }),
    );
    let answer = b24.batch(&batch).await?;
    let user = answer.get("user")?.clone();
    Ok((user, answer.get("departments").ok().cloned()))
}

/// Keeps the names `department.get` gave (it may return more than asked for, e.g. for an
/// empty list; every department it names is worth keeping).
fn remember_departments(b24: &PortalClient, departments: Option<&Value>) {
    let Some(departments) = departments else {
        return;
    };
    for d in departments.as_array().into_iter().flatten() {
        if let Some(id) = id_of(d.get("ID")) {
            let name = d.get("NAME").map(|v| text_of(Some(v))).unwrap_or_default();
            b24.memo_put(&department_key(id), Value::String(name));
        }
    }
    b24.memo_put(DEPARTMENTS_KNOWN, Value::Bool(true));
}

/// The names of `ids`, in their order; unknown ones (or ones the portal would not give)
/// are empty.
async fn department_names(b24: &PortalClient, ids: &[u64]) -> Result<Vec<String>, ActivityError> {
    let known = |id: &u64| b24.memo_get(&department_key(*id), DEPARTMENT_NAME_TTL);
    let missing: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|id| known(id).is_none())
        .collect();
    if !missing.is_empty() {
        match b24.call("department.get", json!({ "ID": missing })).await {
            Ok(answer) => remember_departments(b24, Some(&answer.result)),
            // The portal refused the read (e.g. no rights): the names stay empty.
            Err(e @ B24Error::Api { .. }) if e.kind() == ErrorKind::Permanent => {
                tracing::debug!(error = %e, "department names not readable");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(ids
        .iter()
        .map(|id| {
            known(id)
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        })
        .collect())
}

fn department_ids(user: &Value) -> Vec<u64> {
    match user.get("UF_DEPARTMENT") {
        Some(Value::Array(ids)) => ids.iter().filter_map(|v| id_of(Some(v))).collect(),
        Some(v) => id_of(Some(v)).into_iter().collect(),
        None => Vec::new(),
    }
}

/// `user.get` gives `ACTIVE` as a JSON bool and `IS_ONLINE` as `Y`/`N`; workflows want `Y`/`N`.
fn as_yes_no(v: &Value) -> &'static str {
    yes_no(is_yes(v))
}

/// `PERSONAL_BIRTHDAY` comes as an ISO datetime (`1990-05-01T03:00:00+03:00`); the date
/// part is the birthday whatever the offset.
fn as_date(v: &Value) -> String {
    let text = text_of(Some(v));
    text.split('T').next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_converted_for_the_workflow() {
        assert_eq!(as_yes_no(&json!(true)), "Y");
        assert_eq!(as_yes_no(&json!("N")), "N");
        assert_eq!(as_date(&json!("1990-05-01T03:00:00+03:00")), "1990-05-01");
        assert_eq!(as_date(&json!("")), "");
        assert_eq!(text_of(Some(&json!(["a", "", "b"]))), "a, b");
        assert_eq!(
            department_ids(&json!({"UF_DEPARTMENT": [3, "7"]})),
            vec![3, 7]
        );
    }

    #[test]
    fn every_listed_return_value_is_declared() {
        let def = UserInfo.definition();
        let keys: Vec<&str> = def.returns.iter().map(|p| p.key).collect();
        assert_eq!(keys.len(), 37);
        assert!(keys.contains(&"department_names") && keys.contains(&"user_type"));
    }
}
