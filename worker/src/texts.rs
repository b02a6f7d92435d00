//! The texts a workflow reads most often, in both languages: malformed or missing input
//! (ACTIVITIES.md "Rules for every activity") and the runner's own verdicts. Activity-specific
//! texts live with their activity, built with [`crate::text!`].
use crate::schema::Text;
use crate::text;

pub fn required_empty(key: &str) -> Text {
    text!(
        "the required property {key} is empty",
        "не заполнено обязательное свойство {key}"
    )
}

pub fn not_whole_number(key: &str, raw: &str) -> Text {
    text!(
        "{key}: {raw:?} is not a whole number",
        "{key}: «{raw}» — не целое число"
    )
}

pub fn not_number(key: &str, raw: &str) -> Text {
    text!(
        "{key}: {raw:?} is not a number",
        "{key}: «{raw}» — не число"
    )
}

pub fn not_valid_id(key: &str, raw: &str) -> Text {
    text!(
        "{key}: {raw:?} is not a valid ID",
        "{key}: «{raw}» — не ID (нужно целое число больше нуля)"
    )
}

pub fn not_user(key: &str, raw: &str) -> Text {
    text!(
        "{key}: {raw:?} is not a user (expected user_<id> or <id>)",
        "{key}: «{raw}» — не пользователь (ожидается user_<ID> или <ID>)"
    )
}

pub fn not_yes_no(key: &str, raw: &str) -> Text {
    text!(
        "{key}: {raw:?} is not Y or N",
        "{key}: «{raw}» — не Y и не N"
    )
}

pub fn not_date(key: &str, raw: &str) -> Text {
    text!(
        "{key}: {raw:?} is not a date",
        "{key}: «{raw}» — не дата (ожидается ДД.ММ.ГГГГ или ГГГГ-ММ-ДД)"
    )
}

pub fn not_datetime(key: &str, raw: &str) -> Text {
    text!(
        "{key}: {raw:?} is not a date and time",
        "{key}: «{raw}» — не дата и время (ожидается ДД.ММ.ГГГГ ЧЧ:ММ или ГГГГ-ММ-ДД ЧЧ:ММ)"
    )
}

/// `allowed`: the accepted values, e.g. `lead, deal, contact, company`.
pub fn not_one_of(key: &str, raw: &str, allowed: &str) -> Text {
    text!(
        "{key}: {raw:?} is not one of {allowed}",
        "{key}: «{raw}» — допустимые значения: {allowed}"
    )
}

pub fn retries_exhausted(attempts: i32) -> Text {
    text!(
        "gave up after {attempts} attempts",
        "сделано попыток: {attempts}, больше не повторяем"
    )
}

pub fn workflow_timeout() -> Text {
    text!(
        "the workflow's timeout would pass before the next attempt",
        "время ожидания бизнес-процесса истечёт раньше следующей попытки"
    )
}

pub fn unknown_activity(code: &str) -> Text {
    text!(
        "b24flow has no activity {code:?}",
        "в b24flow нет действия «{code}»"
    )
}

pub fn internal_error() -> Text {
    text!(
        "b24flow hit an internal error while running this activity and stopped it; it is not retried",
        "внутренняя ошибка b24flow при выполнении действия; выполнение остановлено и не повторяется"
    )
}

pub fn call_not_stored() -> Text {
    text!(
        "b24flow accepted this call while its database was unavailable, but the database refused to store it (a property value it cannot hold, such as a NUL character); the activity did not run",
        "b24flow принял вызов, когда база данных была недоступна, но база данных отказалась его сохранить (значение свойства, которое она не может хранить, например символ NUL); действие не выполнено"
    )
}

pub fn secret_unreadable(error: &dyn std::fmt::Display) -> Text {
    text!(
        "the job's secret properties cannot be read: {error}",
        "не удалось прочитать секретные свойства задания: {error}"
    )
}

/// A job that runs as its workflow's user, whose sealed token is no longer there.
pub fn run_as_token_gone() -> Text {
    text!(
        "the token of the user this workflow runs as is no longer stored (it is erased when a job ends), and the installer's rights are not used instead: start the workflow again",
        "токен пользователя, от имени которого выполняется процесс, больше не хранится (он удаляется по завершении задания), а права установившего приложение вместо него не используются: запустите процесс заново"
    )
}

pub fn database(error: &dyn std::fmt::Display) -> Text {
    text!("database: {error}", "ошибка базы данных b24flow: {error}")
}

/// The workflow log's prefix of a failure.
pub fn error_prefix() -> Text {
    text!("error", "ошибка")
}

/// Bitrix24 refused a call for the rights of the user whose token made it (the user the
/// workflow runs as): which right is missing, then the portal's own words.
pub fn access_denied(method: &str, portal_words: &str) -> Text {
    let (en, ru) = missing_right(method);
    text!(
        "access denied: the user this activity runs as lacks {en} ({method}: {portal_words})",
        "доступ запрещён: у пользователя, от имени которого выполняется действие, нет {ru} ({method}: {portal_words})",
    )
}

/// The right a method needs, as the portal's permission settings name it (English after
/// "lacks", Russian after "нет").
fn missing_right(method: &str) -> (String, String) {
    let m = method.to_ascii_lowercase();
    let pair = |en: &str, ru: &str| (en.to_string(), ru.to_string());
    let verb = m.rsplit('.').next().unwrap_or_default();
    if m.starts_with("crm.") {
        return match verb {
            "get" | "list" | "fields" => pair(
                "the permission to read this CRM item",
                "права на чтение этого элемента CRM",
            ),
            "update" | "set" => pair(
                "the permission to change this CRM item",
                "права на изменение этого элемента CRM",
            ),
            "delete" => pair(
                "the permission to delete this CRM record",
                "права на удаление этой записи CRM",
            ),
            _ => pair(
                "the permission to add records to this CRM item",
                "права на добавление записей в этот элемент CRM",
            ),
        };
    }
    if m.starts_with("calendar.") {
        return pair(
            "the permission to edit this calendar",
            "права на изменение этого календаря",
        );
    }
    if m.starts_with("disk.") {
        return pair(
            "access to this file on Disk",
            "доступа к этому файлу на Диске",
        );
    }
    if m.starts_with("telephony.") || m.starts_with("voximplant.") {
        return pair(
            "the telephony permission to make calls",
            "права телефонии на звонки",
        );
    }
    if m.starts_with("user.") || m.starts_with("department.") {
        return pair(
            "access to the company's employee data",
            "доступа к данным сотрудников компании",
        );
    }
    if m.starts_with("bizproc.") {
        return pair(
            "administrator rights (workflow settings)",
            "прав администратора (настройки бизнес-процессов)",
        );
    }
    (
        format!("the permission {method} requires"),
        format!("права, которого требует {method}"),
    )
}
