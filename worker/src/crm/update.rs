//! The four CRM updates (ACTIVITIES.md #7–10) as one routine over a per-entity field map:
//! only set properties are written, in one `crm.item.update` (methods.md §7–10); phones,
//! e-mails, messengers and sites are added through `fm` (`value` or `value:TYPE`).
use b24flow_common::bitrix::Batch;
use serde_json::{json, Map, Value};

use crate::activity::{
    Activity, ActivityError, Input, OptionAnswers, OptionQuery, Output, RunContext,
};
use crate::schema::{ActivityDef, PropType, Property, Text};

use crate::crm::options::{self, OptionSource};
use crate::crm::{self, portal_error};

/// How a property's value is written.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Text,
    /// Multi-line text (comments).
    LongText,
    Date,
    Double,
    Int,
    /// A single CRM ID.
    Id,
    /// A Multiple property of CRM IDs.
    Ids,
    User,
    /// A select: the option key as it is.
    Select,
    /// A select whose keys are numeric IDs (pipelines).
    SelectId,
}

impl Kind {
    /// The property type registered for this kind.
    pub fn prop_type(self) -> PropType {
        match self {
            Kind::Text => PropType::String,
            Kind::LongText => PropType::Text,
            Kind::Date => PropType::Date,
            Kind::Double => PropType::Double,
            Kind::Int | Kind::Id | Kind::Ids => PropType::Int,
            Kind::User => PropType::User,
            Kind::Select | Kind::SelectId => PropType::Select,
        }
    }
}

/// Property key → `crm.item` field (camelCase) and how to write it.
pub struct Field {
    pub key: &'static str,
    pub field: &'static str,
    pub kind: Kind,
    pub en: &'static str,
    pub ru: &'static str,
    /// The designer's help under the property: (English, Russian).
    pub help: Option<(&'static str, &'static str)>,
}

impl Field {
    pub const fn help(self, en: &'static str, ru: &'static str) -> Field {
        Field {
            help: Some((en, ru)),
            ..self
        }
    }
}

pub const fn field(
    key: &'static str,
    field: &'static str,
    kind: Kind,
    en: &'static str,
    ru: &'static str,
) -> Field {
    Field {
        key,
        field,
        kind,
        en,
        ru,
        help: None,
    }
}

/// A Multiple string property added to a multi-field (`PHONE`, `EMAIL`, `IM`, `WEB`).
pub struct Multi {
    pub key: &'static str,
    pub type_id: &'static str,
    pub en: &'static str,
    pub ru: &'static str,
    /// The designer's help: (English, Russian).
    pub help: (&'static str, &'static str),
}

/// Properties several CRM entities share.
pub const ASSIGNED_BY: Field = field(
    "assigned_by",
    "assignedById",
    Kind::User,
    "Responsible",
    "Ответственный",
)
.help(
    "The new responsible user (user_5 or 5). Empty: unchanged.",
    "Новый ответственный (user_5 или 5). Пусто — не меняется.",
);
pub const COMMENTS: Field = field(
    "comments",
    "comments",
    Kind::LongText,
    "Comment",
    "Комментарий",
)
.help(
    "Replaces the comment. Empty: unchanged.",
    "Заменяет комментарий. Пусто — не меняется.",
);
pub const PHONE: Multi = Multi {
    key: "phone",
    type_id: "PHONE",
    en: "Phone (value or value:TYPE)",
    ru: "Телефон (значение или значение:ТИП)",
    help: (
        "Added to the existing phones, one per value: +74951234567, or +74951234567:MOBILE. \
         Types: WORK (default), MOBILE, FAX, HOME, PAGER, MAILING, OTHER.",
        "Добавляется к имеющимся телефонам, по одному в значении: +74951234567 или \
         +74951234567:MOBILE. Типы: WORK (по умолчанию), MOBILE, FAX, HOME, PAGER, MAILING, OTHER.",
    ),
};
pub const EMAIL: Multi = Multi {
    key: "email",
    type_id: "EMAIL",
    en: "E-mail (value or value:TYPE)",
    ru: "E-mail (значение или значение:ТИП)",
    help: (
        "Added to the existing e-mails, one per value: a@b.ru, or a@b.ru:HOME. \
         Types: WORK (default), HOME, MAILING, OTHER.",
        "Добавляется к имеющимся адресам, по одному в значении: a@b.ru или a@b.ru:HOME. \
         Типы: WORK (по умолчанию), HOME, MAILING, OTHER.",
    ),
};
pub const IM: Multi = Multi {
    key: "im",
    type_id: "IM",
    en: "Messenger (value or value:TYPE)",
    ru: "Мессенджер (значение или значение:ТИП)",
    help: (
        "Added to the existing messengers, one per value: @alice:TELEGRAM. Types: TELEGRAM, \
         VK, SKYPE, VIBER, BITRIX24, OPENLINE, IMOL, ICQ, MSN, JABBER, OTHER (default).",
        "Добавляется к имеющимся мессенджерам, по одному в значении: @alice:TELEGRAM. Типы: \
         TELEGRAM, VK, SKYPE, VIBER, BITRIX24, OPENLINE, IMOL, ICQ, MSN, JABBER, OTHER (по умолчанию).",
    ),
};
pub const WEB: Multi = Multi {
    key: "web",
    type_id: "WEB",
    en: "Website (value or value:TYPE)",
    ru: "Сайт (значение или значение:ТИП)",
    help: (
        "Added to the existing sites, one per value: https://acme.ru, or https://vk.com/acme:VK. \
         Types: WORK (default), HOME, VK, LIVEJOURNAL, TWITTER, OTHER.",
        "Добавляется к имеющимся сайтам, по одному в значении: https://acme.ru или \
         https://vk.com/acme:VK. Типы: WORK (по умолчанию), HOME, VK, LIVEJOURNAL, TWITTER, OTHER.",
    ),
};

/// One entity's update.
pub struct UpdateSpec {
    pub code: &'static str,
    /// (English, Russian)
    pub name: (&'static str, &'static str),
    pub description: (&'static str, &'static str),
    pub id_name: (&'static str, &'static str),
    /// The designer's help under the ID property: (English, Russian).
    pub id_help: (&'static str, &'static str),
    /// Select options read from the portal at registration.
    pub options: &'static [(&'static str, OptionSource)],
    pub entity_type_id: u8,
    /// For messages: ("company", "компания"), ("deal", "сделка")...
    pub entity: (&'static str, &'static str),
    pub id_key: &'static str,
    pub fields: &'static [Field],
    pub multi: &'static [Multi],
    /// Fields `crm.item` cannot write, with the deprecated method that still can
    /// (company addresses: disabled in `crm.item`, object-fields.md#company).
    pub legacy: Option<(&'static str, &'static [Field])>,
    /// Fields set together with `opportunity` so a deal's products do not overwrite it.
    pub manual_opportunity: bool,
}

impl UpdateSpec {
    /// The registered properties: the ID, the fields, the multi-fields, the legacy fields.
    pub fn properties(&self) -> Vec<Property> {
        let (id_en, id_ru) = self.id_name;
        let mut props = vec![Property::new(self.id_key, PropType::Int, id_en, id_ru)
            .required()
            .help(self.id_help.0, self.id_help.1)];
        let legacy = self.legacy.map(|(_, f)| f).unwrap_or(&[]);
        for f in self.fields.iter().chain(legacy) {
            let mut p = Property::new(f.key, f.kind.prop_type(), f.en, f.ru);
            if matches!(f.kind, Kind::Ids) {
                p = p.multiple();
            }
            if let Some((en, ru)) = f.help {
                p = p.help(en, ru);
            }
            props.push(p);
        }
        for m in self.multi {
            props.push(
                Property::new(m.key, PropType::String, m.en, m.ru)
                    .multiple()
                    .help(m.help.0, m.help.1),
            );
        }
        props
    }

    /// What `crm.item.update` gets: the set fields plus `fm` additions; empty if nothing set.
    pub fn item_fields(&self, input: &Input) -> Result<Map<String, Value>, ActivityError> {
        let mut fields = write_fields(self.fields, input)?;
        if self.manual_opportunity && fields.contains_key("opportunity") {
            fields.insert("isManualOpportunity".into(), json!("Y"));
        }
        let mut fm = Map::new();
        for m in self.multi {
            for raw in input.list(m.key) {
                let (value, value_type) = split_multi_value(m.type_id, &raw);
                fm.insert(
                    format!("n{}", fm.len()),
                    json!({ "typeId": m.type_id, "valueType": value_type, "value": value }),
                );
            }
        }
        if !fm.is_empty() {
            fields.insert("fm".into(), Value::Object(fm));
        }
        Ok(fields)
    }

    /// What the legacy method gets (UPPER_CASE names), empty if none set.
    pub fn legacy_fields(&self, input: &Input) -> Result<Map<String, Value>, ActivityError> {
        match self.legacy {
            Some((_, fields)) => write_fields(fields, input),
            None => Ok(Map::new()),
        }
    }

    pub async fn run(&self, ctx: &RunContext, input: &Input) -> Result<Output, ActivityError> {
        let id = crm::required_id(input, self.id_key)?;
        let fields = self.item_fields(input)?;
        let legacy = self.legacy_fields(input)?;
        let what = Text {
            en: format!("{} {id}", self.entity.0),
            ru: format!("{} {id}", self.entity.1),
        };
        if fields.is_empty() && legacy.is_empty() {
            return Ok(Output {
                return_values: crm::result_values(true),
                log_message: Text {
                    en: format!("{}: no property set, nothing written", what.en),
                    ru: format!(
                        "{}: ни одно свойство не заполнено, ничего не записано",
                        what.ru
                    ),
                },
            });
        }
        let mut written: Vec<String> = fields.keys().cloned().collect();
        written.extend(legacy.keys().cloned());
        let item_params =
            json!({ "entityTypeId": self.entity_type_id, "id": id, "fields": fields });
        let context = Text {
            en: format!("{} was not updated", what.en),
            ru: format!("{}: изменения не записаны", what.ru),
        };
        match (fields.is_empty(), self.legacy) {
            (false, Some((method, _))) if !legacy.is_empty() => {
                // Both writes in one request; halt so a refused item update stops the second.
                let mut batch = Batch::new(true);
                batch.push("item", "crm.item.update", &item_params);
                batch.push("legacy", method, &json!({ "id": id, "fields": legacy }));
                let answer = ctx
                    .b24
                    .batch(&batch)
                    .await
                    .map_err(|e| portal_error(context.clone(), e))?;
                answer
                    .get("item")
                    .map_err(|e| portal_error(context.clone(), e))?;
                answer
                    .get("legacy")
                    .map_err(|e| portal_error(context.clone(), e))?;
            }
            (true, Some((method, _))) => {
                ctx.b24
                    .call(method, json!({ "id": id, "fields": legacy }))
                    .await
                    .map_err(|e| portal_error(context.clone(), e))?;
            }
            _ => {
                ctx.b24
                    .call("crm.item.update", item_params)
                    .await
                    .map_err(|e| portal_error(context.clone(), e))?;
            }
        }
        Ok(Output {
            return_values: crm::result_values(true),
            log_message: Text {
                en: format!("{} updated: {}", what.en, written.join(", ")),
                ru: format!("{}: записаны поля {}", what.ru, written.join(", ")),
            },
        })
    }
}

/// The one return value of the updates: `result` (`true`/`false`).
pub fn result_returns() -> Vec<Property> {
    vec![Property::new(
        "result",
        PropType::String,
        "Result (true/false)",
        "Результат (true/false)",
    )]
}

fn write_fields(fields: &[Field], input: &Input) -> Result<Map<String, Value>, ActivityError> {
    let mut out = Map::new();
    for f in fields {
        let value = match f.kind {
            Kind::Text | Kind::LongText | Kind::Select => input.string(f.key).map(Value::String),
            Kind::Date => crm::date(input, f.key)?.map(Value::String),
            Kind::Double => crm::number(input, f.key)?.map(|n| json!(n)),
            Kind::Int | Kind::SelectId => input.int(f.key)?.map(|n| json!(n)),
            Kind::Id => match input.string(f.key) {
                Some(_) => Some(json!(crm::required_id(input, f.key)?)),
                None => None,
            },
            Kind::Ids => {
                let ids = crm::id_list(input, f.key)?;
                (!ids.is_empty()).then(|| json!(ids))
            }
            Kind::User => input.user(f.key)?.map(|id| json!(id)),
        };
        if let Some(v) = value {
            out.insert(f.field.to_string(), v);
        }
    }
    Ok(out)
}

/// `VALUE_TYPE`s per multi-field (methods.md §7–10); the first is the default.
fn value_types(type_id: &str) -> &'static [&'static str] {
    match type_id {
        "PHONE" => &["WORK", "MOBILE", "FAX", "HOME", "PAGER", "MAILING", "OTHER"],
        "EMAIL" => &["WORK", "HOME", "MAILING", "OTHER"],
        "WEB" => &["WORK", "HOME", "VK", "LIVEJOURNAL", "TWITTER", "OTHER"],
        _ => &[
            "OTHER", "TELEGRAM", "VK", "SKYPE", "VIBER", "BITRIX24", "OPENLINE", "IMOL", "ICQ",
            "MSN", "JABBER",
        ],
    }
}

/// `value` or `value:TYPE`. Only a known type after the last colon counts, so
/// `https://x.example:8080` stays a whole address.
pub fn split_multi_value(type_id: &str, raw: &str) -> (String, &'static str) {
    let types = value_types(type_id);
    if let Some((value, suffix)) = raw.rsplit_once(':') {
        let suffix = suffix.trim().to_ascii_uppercase();
        if let Some(t) = types.iter().find(|t| **t == suffix) {
            if !value.trim().is_empty() {
                return (value.trim().to_string(), t);
            }
        }
    }
    (raw.trim().to_string(), types[0])
}

/// One activity type for all four CRM updates; each is an [`UpdateSpec`].
pub struct CrmUpdate(pub &'static UpdateSpec);

#[async_trait::async_trait]
impl Activity for CrmUpdate {
    fn definition(&self) -> ActivityDef {
        let spec = self.0;
        ActivityDef {
            code: spec.code,
            name: Text::new(spec.name.0, spec.name.1),
            description: Text::new(spec.description.0, spec.description.1),
            properties: spec.properties(),
            returns: result_returns(),
        }
    }

    fn option_queries(&self) -> Vec<OptionQuery> {
        options::queries(self.0.options)
    }

    fn definition_with_options(&self, answers: &OptionAnswers) -> ActivityDef {
        let mut def = self.definition();
        options::fill(&mut def, answers, self.0.options);
        def
    }

    fn failure_values(&self) -> serde_json::Map<String, serde_json::Value> {
        crate::crm::result_values(false)
    }

    async fn run(&self, ctx: &RunContext, input: &Input) -> Result<Output, ActivityError> {
        self.0.run(ctx, input).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: &[Field] = &[
        field("title", "title", Kind::Text, "Title", "Название"),
        field("revenue", "revenue", Kind::Double, "Revenue", "Доход"),
        field(
            "contact_ids",
            "contactIds",
            Kind::Ids,
            "Contacts",
            "Контакты",
        ),
        field(
            "assigned_by",
            "assignedById",
            Kind::User,
            "Responsible",
            "Ответственный",
        ),
        field(
            "birthdate",
            "birthdate",
            Kind::Date,
            "Birthday",
            "Дата рождения",
        ),
        field(
            "opportunity",
            "opportunity",
            Kind::Double,
            "Amount",
            "Сумма",
        ),
    ];
    const MULTI: &[Multi] = &[
        Multi {
            key: "phone",
            type_id: "PHONE",
            en: "Phone",
            ru: "Телефон",
            help: ("", ""),
        },
        Multi {
            key: "web",
            type_id: "WEB",
            en: "Site",
            ru: "Сайт",
            help: ("", ""),
        },
    ];
    const SPEC: UpdateSpec = UpdateSpec {
        code: "test_update",
        name: ("Test", "Тест"),
        description: ("Test", "Тест"),
        id_name: ("ID", "ID"),
        id_help: ("", ""),
        options: &[],
        entity_type_id: 4,
        entity: ("company", "компания"),
        id_key: "company_id",
        fields: FIELDS,
        multi: MULTI,
        legacy: None,
        manual_opportunity: true,
    };

    #[test]
    fn only_set_properties_are_written_with_their_types() {
        let input = Input::new(&json!({
            "company_id": "5", "title": "Acme", "revenue": "1 500,50", "contact_ids": ["3", "4"],
            "assigned_by": "user_7", "birthdate": "", "phone": ["+49 30 1", "+49 170 2:mobile"],
            "web": "https://acme.example:8080", "opportunity": "10"
        }));
        let fields = SPEC.item_fields(&input).unwrap();
        assert_eq!(fields["title"], "Acme");
        assert_eq!(fields["revenue"], json!(1500.5));
        assert_eq!(fields["contactIds"], json!([3, 4]));
        assert_eq!(fields["assignedById"], json!(7));
        assert!(!fields.contains_key("birthdate"));
        assert_eq!(fields["isManualOpportunity"], "Y");
        assert_eq!(
            fields["fm"],
            json!({
                "n0": {"typeId": "PHONE", "valueType": "WORK", "value": "+49 30 1"},
                "n1": {"typeId": "PHONE", "valueType": "MOBILE", "value": "+49 170 2"},
                "n2": {"typeId": "WEB", "valueType": "WORK", "value": "https://acme.example:8080"}
            })
        );
    }

    #[test]
    fn malformed_values_are_input_errors() {
        for bad in [
            json!({"revenue": "lots"}),
            json!({"contact_ids": ["3", "x"]}),
            json!({"assigned_by": "group_1"}),
            json!({"birthdate": "someday"}),
        ] {
            let err = SPEC.item_fields(&Input::new(&bad)).unwrap_err();
            assert_eq!(
                err.kind,
                b24flow_common::bitrix::ErrorKind::Permanent,
                "{bad}"
            );
        }
    }

    #[test]
    fn messenger_values_default_to_other_and_take_known_types() {
        assert_eq!(
            split_multi_value("IM", "alice:telegram"),
            ("alice".into(), "TELEGRAM")
        );
        assert_eq!(split_multi_value("IM", "alice"), ("alice".into(), "OTHER"));
        assert_eq!(
            split_multi_value("EMAIL", "a@b.example:home"),
            ("a@b.example".into(), "HOME")
        );
        assert_eq!(
            split_multi_value("PHONE", ":WORK"),
            (":WORK".into(), "WORK")
        );
    }
}
