//! `contact_update` (ACTIVITIES.md #8): writes the set properties of a contact with one
//! `crm.item.update` (entity type 3, methods.md §7–10).
use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::activity::{
    Activity, ActivityError, Input, OptionAnswers, OptionQuery, Output, RunContext,
};
use crate::schema::{ActivityDef, Text};

use super::crm_common::result_values;
use super::crm_options::{self, OptionSource};
use super::crm_update_common::{field, result_returns, Kind, Multi, UpdateSpec};

pub struct ContactUpdate;

const SPEC: UpdateSpec = UpdateSpec {
    entity_type_id: 3,
    entity: "contact",
    id_key: "contact_id",
    fields: &[
        field("name", "name", Kind::Text, "First name", "Имя"),
        field("last_name", "lastName", Kind::Text, "Last name", "Фамилия"),
        field(
            "second_name",
            "secondName",
            Kind::Text,
            "Second name",
            "Отчество",
        ),
        field(
            "birthdate",
            "birthdate",
            Kind::Date,
            "Date of birth",
            "Дата рождения",
        ),
        field(
            "contact_type",
            "typeId",
            Kind::Select,
            "Contact type",
            "Тип контакта",
        ),
        field("source", "sourceId", Kind::Select, "Source", "Источник"),
        field(
            "company_ids",
            "companyIds",
            Kind::Ids,
            "Companies",
            "Компании",
        ),
        field("post", "post", Kind::Text, "Position", "Должность"),
        field(
            "assigned_by",
            "assignedById",
            Kind::User,
            "Responsible",
            "Ответственный",
        ),
        field(
            "comments",
            "comments",
            Kind::LongText,
            "Comment",
            "Комментарий",
        ),
    ],
    multi: &[
        Multi {
            key: "phone",
            type_id: "PHONE",
            en: "Phone (value or value:TYPE)",
            ru: "Телефон (значение или значение:ТИП)",
        },
        Multi {
            key: "email",
            type_id: "EMAIL",
            en: "E-mail (value or value:TYPE)",
            ru: "E-mail (значение или значение:ТИП)",
        },
        Multi {
            key: "im",
            type_id: "IM",
            en: "Messenger (value or value:TYPE)",
            ru: "Мессенджер (значение или значение:ТИП)",
        },
        Multi {
            key: "web",
            type_id: "WEB",
            en: "Website (value or value:TYPE)",
            ru: "Сайт (значение или значение:ТИП)",
        },
    ],
    legacy: None,
    manual_opportunity: false,
};

const OPTIONS: &[(&str, OptionSource)] = &[
    ("contact_type", OptionSource::Status("CONTACT_TYPE")),
    ("source", OptionSource::Status("SOURCE")),
];

#[async_trait]
impl Activity for ContactUpdate {
    fn definition(&self) -> ActivityDef {
        ActivityDef {
            code: "contact_update",
            name: Text::new("Update a contact", "Изменение Контакта"),
            description: Text::new(
                "Writes the set fields of a contact; phones, e-mails, messengers and sites are added",
                "Записывает заполненные поля контакта; телефоны, e-mail, мессенджеры и сайты добавляются",
            ),
            properties: SPEC.properties("Contact ID", "ID контакта"),
            returns: result_returns(),
        }
    }

    fn option_queries(&self) -> Vec<OptionQuery> {
        crm_options::queries(OPTIONS)
    }

    fn definition_with_options(&self, answers: &OptionAnswers) -> ActivityDef {
        let mut def = self.definition();
        crm_options::fill(&mut def, answers, OPTIONS);
        def
    }

    fn failure_values(&self) -> Map<String, Value> {
        result_values(false)
    }

    async fn run(&self, ctx: &RunContext, input: &Input) -> Result<Output, ActivityError> {
        SPEC.run(ctx, input).await
    }
}
