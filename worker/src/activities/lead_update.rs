//! `lead_update` (ACTIVITIES.md #9): writes the set properties of a lead with one
//! `crm.item.update` (entity type 1; the lead status is `stageId` there, methods.md §7–10).
use std::sync::Arc;

use crate::activity::Activity;
use crate::crm::options::OptionSource;
use crate::crm::update::{field, CrmUpdate, Kind, UpdateSpec, COMMENTS, EMAIL, PHONE};

const SPEC: UpdateSpec = UpdateSpec {
    code: "lead_update",
    name: ("Update a lead", "Изменение Лида"),
    description: (
        "Writes the set fields of a lead; phones and e-mails are added",
        "Записывает заполненные поля лида; телефоны и e-mail добавляются",
    ),
    id_name: ("Lead ID", "ID лида"),
    id_help: (
        "ID of the lead to change, e.g. {=Document:ID} in a lead's workflow.",
        "ID изменяемого лида, например {=Document:ID} в процессе лида.",
    ),
    options: OPTIONS,
    entity_type_id: 1,
    entity: ("lead", "лид"),
    id_key: "lead_id",
    fields: &[
        field("title", "title", Kind::Text, "Lead name", "Название лида").help("The lead's new name. Empty: unchanged.", "Новое название лида. Пусто — не меняется."),
        field(
            "birthdate",
            "birthdate",
            Kind::Date,
            "Date of birth",
            "Дата рождения",
        ).help("Date of birth, a date: 31.12.1990 or 1990-12-31. Empty: unchanged.", "Дата рождения — дата: 31.12.1990 или 1990-12-31. Пусто — не меняется."),
        field("name", "name", Kind::Text, "First name", "Имя").help("The client's first name. Empty: unchanged.", "Имя клиента. Пусто — не меняется."),
        field("last_name", "lastName", Kind::Text, "Last name", "Фамилия").help("The client's last name. Empty: unchanged.", "Фамилия клиента. Пусто — не меняется."),
        field(
            "second_name",
            "secondName",
            Kind::Text,
            "Second name",
            "Отчество",
        ).help("The client's middle name. Empty: unchanged.", "Отчество клиента. Пусто — не меняется."),
        field(
            "status_description",
            "statusDescription",
            Kind::LongText,
            "Status details",
            "Дополнительно о статусе",
        ).help("Details about the status. Empty: unchanged.", "Пояснение к статусу. Пусто — не меняется."),
        field("status", "stageId", Kind::Select, "Status", "Статус").help("One of the portal's lead statuses (the list is read from the portal when the activity is installed or its options refreshed). Empty: unchanged.", "Значение из справочника «Статусы лида» портала (список читается из портала при установке действия и при обновлении списков). Пусто — не меняется."),
        field(
            "honorific",
            "honorific",
            Kind::Select,
            "Salutation",
            "Обращение",
        ).help("One of the portal's salutations (the list is read from the portal when the activity is installed or its options refreshed). Empty: unchanged.", "Значение из справочника «Обращения» портала (список читается из портала при установке действия и при обновлении списков). Пусто — не меняется."),
        field("source", "sourceId", Kind::Select, "Source", "Источник").help("One of the portal's sources (the list is read from the portal when the activity is installed or its options refreshed). Empty: unchanged.", "Значение из справочника «Источник» портала (список читается из портала при установке действия и при обновлении списков). Пусто — не меняется."),
        field(
            "company_id",
            "companyId",
            Kind::Id,
            "Company ID",
            "ID компании",
        ).help("ID of the company to link the lead to. Empty: unchanged.", "ID компании, к которой привязать лид. Пусто — не меняется."),
        COMMENTS,
        field(
            "opportunity",
            "opportunity",
            Kind::Double,
            "Amount",
            "Сумма",
        ).help("The lead's amount, a number; spaces and a decimal comma are fine (1 500 000,50). Empty: unchanged.", "Сумма лида — число; пробелы и десятичная запятая допустимы (1 500 000,50). Пусто — не меняется."),
    ],
    multi: &[PHONE, EMAIL],
    legacy: None,
    manual_opportunity: true,
};

pub(super) fn activity() -> Arc<dyn Activity> {
    Arc::new(CrmUpdate(&SPEC))
}

const OPTIONS: &[(&str, OptionSource)] = &[
    ("status", OptionSource::Status("STATUS")),
    ("honorific", OptionSource::Status("HONORIFIC")),
    ("source", OptionSource::Status("SOURCE")),
];
