//! `deal_update` (ACTIVITIES.md #10): writes the set properties of a deal with one
//! `crm.item.update` (entity type 2), which also moves a deal between pipelines
//! (methods.md §7–10).

use std::sync::Arc;

use crate::activity::Activity;
use crate::crm::options::OptionSource;
use crate::crm::update::{field, CrmUpdate, Kind, UpdateSpec, ASSIGNED_BY, COMMENTS};

const SPEC: UpdateSpec = UpdateSpec {
    code: "deal_update",
    name: ("Update a deal", "Изменение Сделки"),
    description: (
        "Writes the set fields of a deal, including its pipeline and stage",
        "Записывает заполненные поля сделки, в том числе направление и стадию",
    ),
    id_name: ("Deal ID", "ID сделки"),
    id_help: (
        "ID of the deal to change, e.g. {=Document:ID} in a deal's workflow.",
        "ID изменяемой сделки, например {=Document:ID} в процессе сделки.",
    ),
    options: OPTIONS,
    entity_type_id: 2,
    entity: ("deal", "сделка"),
    id_key: "deal_id",
    fields: &[
        field("title", "title", Kind::Text, "Deal name", "Название сделки").help("The deal's new name. Empty: unchanged.", "Новое название сделки. Пусто — не меняется."),
        field(
            "deal_type",
            "typeId",
            Kind::Select,
            "Deal type",
            "Тип сделки",
        ).help("One of the portal's deal types (the list is read from the portal when the activity is installed or its options refreshed). Empty: unchanged.", "Значение из справочника «Тип сделки» портала (список читается из портала при установке действия и при обновлении списков). Пусто — не меняется."),
        field(
            "category_id",
            "categoryId",
            Kind::SelectId,
            "Pipeline",
            "Направление",
        ).help("The pipeline to move the deal to (the portal's pipelines). Choose a stage of that pipeline too, or the deal gets its first stage. Empty: unchanged.", "Направление, в которое перенести сделку (направления портала). Укажите и стадию этого направления, иначе сделка встанет на первую стадию. Пусто — не меняется."),
        field("stage_id", "stageId", Kind::Select, "Stage", "Стадия").help("The new stage; the list shows \"pipeline: stage\". The stage must belong to the deal's pipeline (or to the one chosen above). Empty: unchanged.", "Новая стадия; в списке — «направление: стадия». Стадия должна быть из направления сделки (или из выбранного выше). Пусто — не меняется."),
        field("currency", "currencyId", Kind::Select, "Currency", "Валюта").help("The deal's currency, from the portal's currencies (e.g. RUB). Empty: unchanged.", "Валюта сделки из валют портала (например, RUB). Пусто — не меняется."),
        field("source", "sourceId", Kind::Select, "Source", "Источник").help("One of the portal's sources (the list is read from the portal when the activity is installed or its options refreshed). Empty: unchanged.", "Значение из справочника «Источник» портала (список читается из портала при установке действия и при обновлении списков). Пусто — не меняется."),
        field(
            "probability",
            "probability",
            Kind::Int,
            "Probability, %",
            "Вероятность, %",
        ).help("Probability of success in percent, a whole number from 0 to 100. Empty: unchanged.", "Вероятность успеха в процентах — целое число от 0 до 100. Пусто — не меняется."),
        // A deal has no tax rate of its own; the seed's field was the tax amount.
        field("tax_rate", "taxValue", Kind::Double, "Tax", "Налог").help("The deal's tax amount, a number; spaces and a decimal comma are fine (1 500 000,50). Empty: unchanged.", "Сумма налога сделки — число; пробелы и десятичная запятая допустимы (1 500 000,50). Пусто — не меняется."),
        field(
            "opportunity",
            "opportunity",
            Kind::Double,
            "Amount",
            "Сумма",
        ).help("The deal's amount, a number; spaces and a decimal comma are fine (1 500 000,50). It is kept even if the deal has products. Empty: unchanged.", "Сумма сделки — число; пробелы и десятичная запятая допустимы (1 500 000,50). Сохраняется, даже если в сделке есть товары. Пусто — не меняется."),
        field(
            "company_id",
            "companyId",
            Kind::Id,
            "Company ID",
            "ID компании",
        ).help("ID of the deal's company. Empty: unchanged.", "ID компании сделки. Пусто — не меняется."),
        ASSIGNED_BY,
        COMMENTS,
        field(
            "contact_ids",
            "contactIds",
            Kind::Ids,
            "Contacts",
            "Контакты",
        ).help("IDs of the deal's contacts, one per value; this list replaces the current links. Empty: unchanged.", "ID контактов сделки, по одному в значении; список заменяет текущие привязки. Пусто — не меняется."),
        field(
            "source_description",
            "sourceDescription",
            Kind::LongText,
            "Source details",
            "Дополнительно об источнике",
        ).help("Details about the source. Empty: unchanged.", "Пояснение к источнику. Пусто — не меняется."),
    ],
    multi: &[],
    legacy: None,
    manual_opportunity: true,
};

pub(super) fn activity() -> Arc<dyn Activity> {
    Arc::new(CrmUpdate(&SPEC))
}

const OPTIONS: &[(&str, OptionSource)] = &[
    ("deal_type", OptionSource::Status("DEAL_TYPE")),
    ("category_id", OptionSource::DealCategories),
    ("stage_id", OptionSource::DealStages),
    ("currency", OptionSource::Currencies),
    ("source", OptionSource::Status("SOURCE")),
];
