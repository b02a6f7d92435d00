//! `crm_activity_add` (ACTIVITIES.md #12): a to-do through `crm.activity.todo.add`; a call,
//! meeting or e-mail through `crm.activity.add`, which alone keeps priority and the
//! communication (methods.md §12). One request; a retry never creates a second activity.
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::activity::{Activity, ActivityError, Input, Output, RunContext};
use crate::once::Once;
use crate::schema::{ActivityDef, PropType, Property, Text};
use crate::{text, texts};

use crate::crm::{self, id_of, portal_error, Owner};

pub struct CrmActivityAdd;

pub(super) fn activity() -> Arc<dyn Activity> {
    Arc::new(CrmActivityAdd)
}

const MARKER: &str = "crm.activity";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Call,
    Meeting,
    Email,
    Todo,
}

impl Kind {
    fn parse(raw: &str) -> Result<Self, ActivityError> {
        match raw.to_ascii_lowercase().as_str() {
            "call" => Ok(Kind::Call),
            "meeting" => Ok(Kind::Meeting),
            "email" | "e-mail" => Ok(Kind::Email),
            "todo" => Ok(Kind::Todo),
            _ => Err(ActivityError::invalid(texts::not_one_of(
                "type",
                raw,
                "call, meeting, email, todo",
            ))),
        }
    }

    /// For messages.
    fn title(self) -> Text {
        match self {
            Kind::Call => text!("call", "звонок"),
            Kind::Meeting => text!("meeting", "встреча"),
            Kind::Email => text!("e-mail", "письмо"),
            Kind::Todo => text!("to-do", "дело"),
        }
    }

    /// `TYPE_ID` of `crm.activity.add` (data-types.md#activity-enums).
    fn type_id(self) -> u8 {
        match self {
            Kind::Meeting => 1,
            Kind::Call => 2,
            Kind::Email => 4,
            Kind::Todo => 0,
        }
    }
}

/// `PRIORITY`: 1 low, 2 medium, 3 high.
fn priority(raw: &str) -> Result<u8, ActivityError> {
    match raw.to_ascii_lowercase().as_str() {
        "low" | "1" => Ok(1),
        "medium" | "2" => Ok(2),
        "high" | "3" => Ok(3),
        _ => Err(ActivityError::invalid(texts::not_one_of(
            "priority",
            raw,
            "low, medium, high",
        ))),
    }
}

/// What the run creates, read from the input before any request.
struct Plan {
    kind: Kind,
    owner: Owner,
    owner_id: u64,
    subject: String,
    method: &'static str,
    params: Value,
}

/// Stored in the activity so a retry after a crash can find it (`ORIGIN_ID`; the to-do API
/// has no such field, so to-dos are found by owner, subject and time).
fn origin_id(ctx: &RunContext) -> String {
    format!("b24flow:{}", ctx.job.id)
}

/// A to-do without a deadline is due at the end of the portal's next working day
/// (ACTIVITIES.md #12; issue 12: a default instead of an error).
async fn default_deadline(
    ctx: &RunContext,
    input: &Input,
) -> Result<Option<String>, ActivityError> {
    let is_todo = input
        .string("type")
        .is_some_and(|t| Kind::parse(&t).ok() == Some(Kind::Todo));
    if !is_todo || crm::datetime(input, "deadline")?.is_some() {
        return Ok(None);
    }
    // `server.time` gives the portal's clock in its own zone, so "tomorrow" is the portal's.
    let answer = ctx.b24.call("server.time", json!({})).await.map_err(|e| {
        portal_error(
            text!(
                "cannot read the portal's time for a default deadline",
                "не удалось узнать время портала для срока по умолчанию"
            ),
            e,
        )
    })?;
    let now = answer
        .result
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .ok_or_else(|| {
            ActivityError::invalid(text!(
                "server.time answered no time",
                "server.time не вернул время портала"
            ))
        })?;
    Ok(Some(
        end_of_next_working_day(now)
            .format("%Y-%m-%dT%H:%M:%S%:z")
            .to_string(),
    ))
}

/// The next Monday-to-Friday after `now`, at 18:00 (Bitrix24's default end of the working
/// day) in `now`'s zone.
fn end_of_next_working_day(
    now: chrono::DateTime<chrono::FixedOffset>,
) -> chrono::DateTime<chrono::FixedOffset> {
    use chrono::{Datelike, Days, NaiveTime, Weekday};
    let mut day = now.date_naive();
    loop {
        day = day.checked_add_days(Days::new(1)).unwrap_or(day);
        if !matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
            break;
        }
    }
    let end = day.and_time(NaiveTime::from_hms_opt(18, 0, 0).unwrap_or_default());
    end.and_local_timezone(now.timezone())
        .single()
        .unwrap_or(now)
}

fn plan(
    input: &Input,
    origin: &str,
    default_deadline: Option<String>,
) -> Result<Plan, ActivityError> {
    let subject = input.required_string("subject")?;
    let kind = Kind::parse(&input.required_string("type")?)?;
    let description = input.required_string("description")?;
    let owner = Owner::parse("owner_type", &input.required_string("owner_type")?)?;
    let owner_id = crm::required_id(input, "owner_id")?;
    let priority = priority(&input.required_string("priority")?)?;
    let responsible = input.user("responsible")?;
    let deadline = crm::datetime(input, "deadline")?.or(default_deadline);
    let (method, params) = if kind == Kind::Todo {
        let deadline = deadline.ok_or_else(|| {
            ActivityError::invalid(text!(
                "deadline: a to-do needs a deadline (crm.activity.todo.add)",
                "deadline: у дела должен быть крайний срок (crm.activity.todo.add)"
            ))
        })?;
        let mut p = json!({
            "ownerTypeId": owner.type_id(), "ownerId": owner_id, "deadline": deadline,
            "title": subject, "description": description,
        });
        if let Some(user) = responsible {
            p["responsibleId"] = json!(user);
        }
        ("crm.activity.todo.add", p)
    } else {
        let communication = input.required_string("communication")?;
        if kind == Kind::Email && !communication.contains('@') {
            return Err(ActivityError::invalid(text!(
                "communication: {communication:?} is not an e-mail address",
                "communication: «{communication}» — не адрес e-mail"
            )));
        }
        if kind == Kind::Call && !communication.chars().any(|c| c.is_ascii_digit()) {
            return Err(ActivityError::invalid(text!(
                "communication: {communication:?} is not a phone number",
                "communication: «{communication}» — не номер телефона"
            )));
        }
        let mut fields = json!({
            "OWNER_TYPE_ID": owner.type_id(), "OWNER_ID": owner_id, "TYPE_ID": kind.type_id(),
            "SUBJECT": subject, "DESCRIPTION": description, "DESCRIPTION_TYPE": 1,
            "PRIORITY": priority, "DIRECTION": 2, "COMPLETED": "N",
            // Without ENTITY_* the portal binds the communication to the owner.
            "COMMUNICATIONS": [{ "VALUE": communication }],
            "ORIGIN_ID": origin,
        });
        if let Some(user) = responsible {
            fields["RESPONSIBLE_ID"] = json!(user);
        }
        if let Some(deadline) = deadline {
            fields["START_TIME"] = json!(deadline);
            fields["END_TIME"] = json!(deadline);
        }
        ("crm.activity.add", json!({ "fields": fields }))
    };
    Ok(Plan {
        kind,
        owner,
        owner_id,
        subject,
        method,
        params,
    })
}

#[async_trait]
impl Activity for CrmActivityAdd {
    fn definition(&self) -> ActivityDef {
        let p = Property::new;
        ActivityDef {
            code: "crm_activity_add",
            name: Text::new("Create a CRM activity", "Создание своего дела в crm"),
            description: Text::new(
                "Creates a to-do, call, meeting or e-mail activity on a lead, deal, contact or company",
                "Создаёт дело (задачу, звонок, встречу или письмо) у лида, сделки, контакта или компании",
            ),
            properties: vec![
                p("subject", PropType::String, "Subject", "Тема")
                    .required()
                    .help("The activity's title, as the timeline shows it.", "Название дела — так оно будет видно в таймлайне."),
                p("type", PropType::Select, "Type", "Тип")
                    .required()
                    .options(&[("call", "Call", "Звонок"), ("meeting", "Meeting", "Встреча"), ("email", "E-mail", "Письмо"), ("todo", "To-do", "Дело")])
                    .default("todo")
                    .help(
                        "A to-do is created with the current to-do API; a call, meeting or e-mail keeps priority and communication.",
                        "Дело создаётся через новый API дел; звонок, встреча и письмо сохраняют важность и средство связи.",
                    ),
                p("description", PropType::Text, "Description", "Описание")
                    .required()
                    .help("What is to be done, as plain text.", "Что нужно сделать, обычным текстом."),
                p("owner_type", PropType::Select, "Owner type", "Тип владельца")
                    .required()
                    .options(Owner::OPTIONS)
                    .help("Which kind of CRM item the activity belongs to.", "К какому элементу CRM относится дело."),
                p("owner_id", PropType::Int, "Owner ID", "ID владельца")
                    .required()
                    .help("The ID of that lead, deal, contact or company, e.g. {=Document:ID}.", "ID этого лида, сделки, контакта или компании, например {=Document:ID}."),
                p("priority", PropType::Select, "Priority", "Важность")
                    .required()
                    .options(&[("low", "Low", "Низкая"), ("medium", "Medium", "Средняя"), ("high", "High", "Высокая")])
                    .default("medium")
                    .help("For calls, meetings and e-mails; a to-do has no priority.", "Для звонков, встреч и писем; у дела (to-do) важности нет."),
                p("communication", PropType::String, "Phone or e-mail", "Телефон или e-mail")
                    .required()
                    .help(
                        "For a call a phone number, for an e-mail an address, for a meeting either; a to-do does not use it.",
                        "Для звонка — номер телефона, для письма — адрес e-mail, для встречи — любое из них; делу (to-do) не нужно.",
                    ),
                p("responsible", PropType::User, "Responsible", "Ответственный").help(
                    "Who does it: user_5 or 5. Empty: the portal chooses.",
                    "Кто выполняет: user_5 или 5. Пусто — выбирает портал.",
                ),
                p("deadline", PropType::Datetime, "Deadline", "Крайний срок").help(
                    "E.g. 01.09.2026 10:00. A to-do without one is due at 18:00 on the portal's next working day.",
                    "Например, 01.09.2026 10:00. Дело без срока получает срок 18:00 следующего рабочего дня портала.",
                ),
            ],
            returns: vec![p("activity_id", PropType::Int, "Activity ID", "ID дела")],
        }
    }

    async fn run(&self, ctx: &RunContext, input: &Input) -> Result<Output, ActivityError> {
        let marker = ctx.once(MARKER).await?;
        if let Some(Created { activity_id }) = marker.recorded() {
            return Ok(output(
                activity_id,
                text!(
                    "already created by an earlier attempt",
                    "уже создано предыдущей попыткой"
                ),
            ));
        }
        let default_deadline = default_deadline(ctx, input).await?;
        let plan = plan(input, &origin_id(ctx), default_deadline)?;
        let what = plan.owner.describe(plan.owner_id);
        let created = marker
            .run(
                || async {
                    let found = find_earlier(ctx, &plan).await?;
                    Ok(found.map(|activity_id| Created { activity_id }).into())
                },
                |_| create(ctx, &plan, &what),
            )
            .await?;
        let text = match &created {
            Once::Acted(_) => {
                let kind = plan.kind.title();
                Text {
                    en: format!("{} created on {}", kind.en, what.en),
                    ru: format!("{}: создано ({})", what.ru, kind.ru),
                }
            }
            _ => text!(
                "found, created by an earlier attempt",
                "найдено, создано предыдущей попыткой"
            ),
        };
        Ok(output(created.into_value().activity_id, text))
    }
}

/// What the side effect made, as its marker keeps it.
#[derive(Serialize, Deserialize)]
struct Created {
    activity_id: u64,
}

async fn create(ctx: &RunContext, plan: &Plan, what: &Text) -> Result<Created, ActivityError> {
    let answer = ctx
        .b24
        .call(plan.method, plan.params.clone())
        .await
        .map_err(|e| {
            let context = Text {
                en: format!("no activity created on {}", what.en),
                ru: format!("{}: дело не создано", what.ru),
            };
            portal_error(context, e)
        })?;
    // todo.add answers {"id": 7}; activity.add answers the bare ID.
    let activity_id = id_of(answer.result.get("id"))
        .or_else(|| id_of(Some(&answer.result)))
        .ok_or_else(|| {
            ActivityError::invalid(text!(
                "{} answered no activity ID",
                "{} не вернул ID дела",
                plan.method
            ))
        })?;
    Ok(Created { activity_id })
}

/// The activity an interrupted attempt may have created.
async fn find_earlier(ctx: &RunContext, plan: &Plan) -> Result<Option<u64>, ActivityError> {
    let mut filter = json!({
        "OWNER_TYPE_ID": plan.owner.type_id(), "OWNER_ID": plan.owner_id, "SUBJECT": plan.subject,
    });
    if plan.kind == Kind::Todo {
        // Ten minutes of slack for the clock difference between us and the portal.
        let since = ctx.job.created_at - chrono::Duration::minutes(10);
        filter[">=CREATED"] = json!(since.to_rfc3339());
    } else {
        filter["ORIGIN_ID"] = json!(origin_id(ctx));
    }
    let answer = ctx
        .b24
        .call(
            "crm.activity.list",
            json!({ "filter": filter, "order": { "ID": "DESC" }, "select": ["ID"] }),
        )
        .await
        .map_err(|e| {
            portal_error(
                text!(
                    "cannot check for an activity of an earlier attempt",
                    "не удалось проверить, создала ли дело предыдущая попытка"
                ),
                e,
            )
        })?;
    Ok(answer
        .result
        .as_array()
        .and_then(|list| list.first())
        .and_then(|a| id_of(a.get("ID"))))
}

fn output(id: u64, what: Text) -> Output {
    let mut values = Map::new();
    values.insert("activity_id".into(), json!(id));
    Output {
        return_values: values,
        log_message: Text {
            en: format!("CRM activity {id}: {}", what.en),
            ru: format!("дело CRM {id}: {}", what.ru),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(extra: Value) -> Input {
        let mut base = json!({
            "subject": "Call back", "type": "call", "description": "Re: offer", "owner_type": "deal",
            "owner_id": "812", "priority": "high", "communication": "+49 30 1234", "responsible": "user_5",
            "deadline": "01.09.2026 10:00:00"
        });
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        Input::new(&base)
    }

    #[test]
    fn a_call_keeps_priority_communication_and_origin() {
        let plan = plan(&input(json!({})), "b24flow:x", None).unwrap();
        assert_eq!(plan.method, "crm.activity.add");
        let f = &plan.params["fields"];
        assert_eq!(f["TYPE_ID"], 2);
        assert_eq!(f["PRIORITY"], 3);
        assert_eq!(f["OWNER_TYPE_ID"], 2);
        assert_eq!(f["COMMUNICATIONS"][0]["VALUE"], "+49 30 1234");
        assert_eq!(f["RESPONSIBLE_ID"], 5);
        assert_eq!(f["END_TIME"], "2026-09-01T10:00:00");
        assert_eq!(f["ORIGIN_ID"], "b24flow:x");
    }

    #[test]
    fn a_todo_uses_the_todo_api_and_needs_a_deadline() {
        let plan = plan(
            &input(json!({"type": "todo", "owner_type": "lead"})),
            "o",
            None,
        )
        .unwrap();
        assert_eq!(plan.method, "crm.activity.todo.add");
        assert_eq!(plan.params["ownerTypeId"], 1);
        assert_eq!(plan.params["deadline"], "2026-09-01T10:00:00");
        assert_eq!(plan.params["responsibleId"], 5);
        assert!(super::plan(&input(json!({"type": "todo", "deadline": ""})), "o", None).is_err());
        let defaulted = super::plan(
            &input(json!({"type": "todo", "deadline": ""})),
            "o",
            Some("2026-09-02T18:00:00+03:00".into()),
        )
        .unwrap();
        assert_eq!(defaulted.params["deadline"], "2026-09-02T18:00:00+03:00");
    }

    #[test]
    fn the_default_deadline_is_the_end_of_the_next_working_day_in_the_portals_zone() {
        let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap();
        let due = |s: &str| end_of_next_working_day(at(s)).to_rfc3339();
        // Monday → Tuesday; Friday, Saturday and Sunday → Monday; the zone is kept.
        assert_eq!(
            due("2026-11-30T09:00:00+03:00"),
            "2026-12-01T18:00:00+03:00"
        );
        assert_eq!(
            due("2026-12-04T23:59:00+03:00"),
            "2026-12-07T18:00:00+03:00"
        );
        assert_eq!(
            due("2026-12-05T10:00:00+03:00"),
            "2026-12-07T18:00:00+03:00"
        );
        assert_eq!(
            due("2026-12-06T10:00:00-05:00"),
            "2026-12-07T18:00:00-05:00"
        );
    }

    #[test]
    fn bad_choices_are_input_errors() {
        for bad in [
            json!({"type": "fax"}),
            json!({"priority": "urgent"}),
            json!({"owner_type": "order"}),
            json!({"owner_id": "abc"}),
            json!({"type": "email", "communication": "+49 30 1"}),
            json!({"subject": ""}),
        ] {
            assert!(plan(&input(bad.clone()), "o", None).is_err(), "{bad}");
        }
    }
}
