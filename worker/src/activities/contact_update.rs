//! `contact_update` (ACTIVITIES.md #8): writes the set properties of a contact with one
//! `crm.item.update` (entity type 3, methods.md §7–10).
use std::sync::Arc;

use crate::activity::Activity;
use crate::crm::options::OptionSource;
use crate::crm::update::{field, CrmUpdate, Kind, UpdateSpec, ASSIGNED_BY, COMMENTS, EMAIL, IM, PHONE, WEB};

const SPEC: UpdateSpec = UpdateSpec {
    code: "contact_update",
    name: ("Update a contact", "Изменение Контакта"),
    description: (
        "Writes the set fields of a contact; phones, e-mails, messengers and sites are added",
        "Записывает заполненные поля контакта; телефоны, e-mail, мессенджеры и сайты добавляются",
    ),
    id_name: ("Contact ID", "ID контакта"),
    id_help: (
        "ID of the contact to change, e.g. {=Document:ID} in a contact's workflow.",
        "ID изменяемого контакта, например {=Document:ID} в процессе контакта.",
    ),
    options: OPTIONS,
    entity_type_id: 3,
    entity: ("contact", "контакт"),
    id_key: "contact_id",
    fields: &[
        field("name", "name", Kind::Text, "First name", "Имя").help("The contact's new first name. Empty: unchanged.", "Новое имя контакта. Пусто — не меняется."),
        field("last_name", "lastName", Kind::Text, "Last name", "Фамилия").help("The contact's new last name. Empty: unchanged.", "Новая фамилия контакта. Пусто — не меняется."),
        field(
            "second_name",
            "secondName",
            Kind::Text,
            "Second name",
            "Отчество",
        ).help("The contact's new middle name. Empty: unchanged.", "Новое отчество контакта. Пусто — не меняется."),
        field(
            "birthdate",
            "birthdate",
            Kind::Date,
            "Date of birth",
            "Дата рождения",
        ).help("Date of birth, a date: 31.12.1990 or 1990-12-31. Empty: unchanged.", "Дата рождения — дата: 31.12.1990 или 1990-12-31. Пусто — не меняется."),
        field(
            "contact_type",
            "typeId",
            Kind::Select,
            "Contact type",
            "Тип контакта",
        ).help("One of the portal's contact types (the list is read from the portal when the activity is installed or its options refreshed). Empty: unchanged.", "Значение из справочника «Тип контакта» портала (список читается из портала при установке действия и при обновлении списков). Пусто — не меняется."),
        field("source", "sourceId", Kind::Select, "Source", "Источник").help("One of the portal's sources (the list is read from the portal when the activity is installed or its options refreshed). Empty: unchanged.", "Значение из справочника «Источник» портала (список читается из портала при установке действия и при обновлении списков). Пусто — не меняется."),
        field(
            "company_ids",
            "companyIds",
            Kind::Ids,
            "Companies",
            "Компании",
        ).help("IDs of the contact's companies, one per value; this list replaces the current links. Empty: unchanged.", "ID компаний контакта, по одному в значении; список заменяет текущие привязки. Пусто — не меняется."),
        field("post", "post", Kind::Text, "Position", "Должность").help("The contact's position. Empty: unchanged.", "Должность контакта. Пусто — не меняется."),
        ASSIGNED_BY,
        COMMENTS,
    ],
    multi: &[PHONE, EMAIL, IM, WEB],
    legacy: None,
    manual_opportunity: false,
};

pub(super) fn activity() -> Arc<dyn Activity> {
    Arc::new(CrmUpdate(&SPEC))
}

const OPTIONS: &[(&str, OptionSource)] = &[
    ("contact_type", OptionSource::Status("CONTACT_TYPE")),
    ("source", OptionSource::Status("SOURCE")),
];
