//! `company_update` (ACTIVITIES.md #7): writes the set properties of a company with
//! `crm.item.update` (entity type 4); addresses, which `crm.item` no longer writes for
//! companies, go through `crm.company.update` in the same batch (methods.md §7–10).

use std::sync::Arc;

use crate::activity::Activity;
use crate::crm::options::OptionSource;
use crate::crm::update::{field, CrmUpdate, Kind, UpdateSpec, ASSIGNED_BY, COMMENTS, EMAIL, IM, PHONE};

const SPEC: UpdateSpec = UpdateSpec {
    code: "company_update",
    name: ("Update a company", "Изменение Компании"),
    description: (
        "Writes the set fields of a company; phones, e-mails and messengers are added",
        "Записывает заполненные поля компании; телефоны, e-mail и мессенджеры добавляются",
    ),
    id_name: ("Company ID", "ID компании"),
    id_help: (
        "ID of the company to change, e.g. {=Document:ID} in a company's workflow.",
        "ID изменяемой компании, например {=Document:ID} в процессе компании.",
    ),
    options: OPTIONS,
    entity_type_id: 4,
    entity: ("company", "компания"),
    id_key: "company_id",
    fields: &[
        field(
            "title",
            "title",
            Kind::Text,
            "Company name",
            "Название компании",
        ).help("The company's new name. Empty: unchanged.", "Новое название компании. Пусто — не меняется."),
        field(
            "industry",
            "industry",
            Kind::Select,
            "Industry",
            "Сфера деятельности",
        ).help("One of the portal's industries (the list is read from the portal when the activity is installed or its options refreshed). Empty: unchanged.", "Значение из справочника «Сфера деятельности» портала (список читается из портала при установке действия и при обновлении списков). Пусто — не меняется."),
        field("currency", "currencyId", Kind::Select, "Currency", "Валюта").help("The currency of the revenue, from the portal's currencies (e.g. RUB). Empty: unchanged.", "Валюта годового оборота из валют портала (например, RUB). Пусто — не меняется."),
        field(
            "company_type",
            "typeId",
            Kind::Select,
            "Company type",
            "Тип компании",
        ).help("One of the portal's company types (the list is read from the portal when the activity is installed or its options refreshed). Empty: unchanged.", "Значение из справочника «Тип компании» портала (список читается из портала при установке действия и при обновлении списков). Пусто — не меняется."),
        field(
            "employees",
            "employees",
            Kind::Select,
            "Employees",
            "Кол-во сотрудников",
        ).help("One of the portal's employee counts (the list is read from the portal when the activity is installed or its options refreshed). Empty: unchanged.", "Значение из справочника «Кол-во сотрудников» портала (список читается из портала при установке действия и при обновлении списков). Пусто — не меняется."),
        field(
            "revenue",
            "revenue",
            Kind::Double,
            "Annual revenue",
            "Годовой оборот",
        ).help("Annual revenue, a number; spaces and a decimal comma are fine (1 500 000,50). Empty: unchanged.", "Годовой оборот — число; пробелы и десятичная запятая допустимы (1 500 000,50). Пусто — не меняется."),
        field(
            "contact_ids",
            "contactIds",
            Kind::Ids,
            "Contacts",
            "Контакты",
        ).help("IDs of the company's contacts, one per value; this list replaces the current links. Empty: unchanged.", "ID контактов компании, по одному в значении; список заменяет текущие привязки. Пусто — не меняется."),
        ASSIGNED_BY,
        COMMENTS,
    ],
    multi: &[PHONE, EMAIL, IM],
    legacy: Some((
        "crm.company.update",
        &[
            field("address", "ADDRESS", Kind::Text, "Address", "Адрес").help("Street address. Empty: unchanged.", "Улица, дом. Пусто — не меняется."),
            field(
                "address_2",
                "ADDRESS_2",
                Kind::Text,
                "Address (line 2)",
                "Адрес (стр. 2)",
            ).help("The second address line (office, building). Empty: unchanged.", "Вторая строка адреса (офис, корпус). Пусто — не меняется."),
            field("address_city", "ADDRESS_CITY", Kind::Text, "City", "Город").help("The city of the address. Empty: unchanged.", "Город адреса. Пусто — не меняется."),
        ],
    )),
    manual_opportunity: false,
};

pub(super) fn activity() -> Arc<dyn Activity> {
    Arc::new(CrmUpdate(&SPEC))
}

const OPTIONS: &[(&str, OptionSource)] = &[
    ("industry", OptionSource::Status("INDUSTRY")),
    ("currency", OptionSource::Currencies),
    ("company_type", OptionSource::Status("COMPANY_TYPE")),
    ("employees", OptionSource::Status("EMPLOYEES")),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activity::{Activity, Input};
    use crate::crm::update::CrmUpdate;
    use serde_json::json;

    #[test]
    fn addresses_go_to_the_legacy_method_and_the_rest_to_crm_item() {
        let input =
            Input::new(&json!({"company_id": "5", "title": "Acme", "address_city": "Berlin"}));
        let item = SPEC.item_fields(&input).unwrap();
        let legacy = SPEC.legacy_fields(&input).unwrap();
        assert_eq!(item.keys().collect::<Vec<_>>(), vec!["title"]);
        assert_eq!(legacy["ADDRESS_CITY"], "Berlin");
        let def = CrmUpdate(&SPEC).definition();
        let keys: Vec<&str> = def.properties.iter().map(|p| p.key).collect();
        for key in [
            "company_id",
            "industry",
            "revenue",
            "contact_ids",
            "phone",
            "im",
            "address_2",
        ] {
            assert!(keys.contains(&key), "{key}");
        }
    }
}
