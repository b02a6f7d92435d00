//! `company_update` (ACTIVITIES.md #7): writes the set properties of a company with
//! `crm.item.update` (entity type 4); addresses, which `crm.item` no longer writes for
//! companies, go through `crm.company.update` in the same batch (methods.md §7–10).

use super::crm_options::OptionSource;
use super::crm_update_common::{field, Kind, UpdateSpec, ASSIGNED_BY, COMMENTS, EMAIL, IM, PHONE};

pub const SPEC: UpdateSpec = UpdateSpec {
    code: "company_update",
    name: ("Update a company", "Изменение Компании"),
    description: (
        "Writes the set fields of a company; phones, e-mails and messengers are added",
        "Записывает заполненные поля компании; телефоны, e-mail и мессенджеры добавляются",
    ),
    id_name: ("Company ID", "ID компании"),
    options: OPTIONS,
    entity_type_id: 4,
    entity: "company",
    id_key: "company_id",
    fields: &[
        field(
            "title",
            "title",
            Kind::Text,
            "Company name",
            "Название компании",
        ),
        field(
            "industry",
            "industry",
            Kind::Select,
            "Industry",
            "Сфера деятельности",
        ),
        field("currency", "currencyId", Kind::Select, "Currency", "Валюта"),
        field(
            "company_type",
            "typeId",
            Kind::Select,
            "Company type",
            "Тип компании",
        ),
        field(
            "employees",
            "employees",
            Kind::Select,
            "Employees",
            "Кол-во сотрудников",
        ),
        field(
            "revenue",
            "revenue",
            Kind::Double,
            "Annual revenue",
            "Годовой оборот",
        ),
        field(
            "contact_ids",
            "contactIds",
            Kind::Ids,
            "Contacts",
            "Контакты",
        ),
        ASSIGNED_BY,
        COMMENTS,
    ],
    multi: &[PHONE, EMAIL, IM],
    legacy: Some((
        "crm.company.update",
        &[
            field("address", "ADDRESS", Kind::Text, "Address", "Адрес"),
            field(
                "address_2",
                "ADDRESS_2",
                Kind::Text,
                "Address (line 2)",
                "Адрес (стр. 2)",
            ),
            field("address_city", "ADDRESS_CITY", Kind::Text, "City", "Город"),
        ],
    )),
    manual_opportunity: false,
};

const OPTIONS: &[(&str, OptionSource)] = &[
    ("industry", OptionSource::Status("INDUSTRY")),
    ("currency", OptionSource::Currencies),
    ("company_type", OptionSource::Status("COMPANY_TYPE")),
    ("employees", OptionSource::Status("EMPLOYEES")),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activities::crm_update_common::CrmUpdate;
    use crate::activity::{Activity, Input};
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
