//! `contact_update` (ACTIVITIES.md #8): writes the set properties of a contact with one
//! `crm.item.update` (entity type 3, methods.md §7–10).
use super::crm_options::OptionSource;
use super::crm_update_common::{
    field, Kind, UpdateSpec, ASSIGNED_BY, COMMENTS, EMAIL, IM, PHONE, WEB,
};

pub const SPEC: UpdateSpec = UpdateSpec {
    code: "contact_update",
    name: ("Update a contact", "Изменение Контакта"),
    description: (
        "Writes the set fields of a contact; phones, e-mails, messengers and sites are added",
        "Записывает заполненные поля контакта; телефоны, e-mail, мессенджеры и сайты добавляются",
    ),
    id_name: ("Contact ID", "ID контакта"),
    options: OPTIONS,
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
        ASSIGNED_BY,
        COMMENTS,
    ],
    multi: &[PHONE, EMAIL, IM, WEB],
    legacy: None,
    manual_opportunity: false,
};

const OPTIONS: &[(&str, OptionSource)] = &[
    ("contact_type", OptionSource::Status("CONTACT_TYPE")),
    ("source", OptionSource::Status("SOURCE")),
];
