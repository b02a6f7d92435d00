//! `lead_update` (ACTIVITIES.md #9): writes the set properties of a lead with one
//! `crm.item.update` (entity type 1; the lead status is `stageId` there, methods.md §7–10).
use super::crm_options::OptionSource;
use super::crm_update_common::{field, Kind, UpdateSpec, COMMENTS, EMAIL, PHONE};

pub const SPEC: UpdateSpec = UpdateSpec {
    code: "lead_update",
    name: ("Update a lead", "Изменение Лида"),
    description: (
        "Writes the set fields of a lead; phones and e-mails are added",
        "Записывает заполненные поля лида; телефоны и e-mail добавляются",
    ),
    id_name: ("Lead ID", "ID лида"),
    options: OPTIONS,
    entity_type_id: 1,
    entity: "lead",
    id_key: "lead_id",
    fields: &[
        field("title", "title", Kind::Text, "Lead name", "Название лида"),
        field(
            "birthdate",
            "birthdate",
            Kind::Date,
            "Date of birth",
            "Дата рождения",
        ),
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
            "status_description",
            "statusDescription",
            Kind::LongText,
            "Status details",
            "Дополнительно о статусе",
        ),
        field("status", "stageId", Kind::Select, "Status", "Статус"),
        field(
            "honorific",
            "honorific",
            Kind::Select,
            "Salutation",
            "Обращение",
        ),
        field("source", "sourceId", Kind::Select, "Source", "Источник"),
        field(
            "company_id",
            "companyId",
            Kind::Id,
            "Company ID",
            "ID компании",
        ),
        COMMENTS,
        field(
            "opportunity",
            "opportunity",
            Kind::Double,
            "Amount",
            "Сумма",
        ),
    ],
    multi: &[PHONE, EMAIL],
    legacy: None,
    manual_opportunity: true,
};

const OPTIONS: &[(&str, OptionSource)] = &[
    ("status", OptionSource::Status("STATUS")),
    ("honorific", OptionSource::Status("HONORIFIC")),
    ("source", OptionSource::Status("SOURCE")),
];
