//! `deal_update` (ACTIVITIES.md #10): writes the set properties of a deal with one
//! `crm.item.update` (entity type 2), which also moves a deal between pipelines
//! (methods.md §7–10).

use super::crm_options::OptionSource;
use super::crm_update_common::{field, Kind, UpdateSpec, ASSIGNED_BY, COMMENTS};

pub const SPEC: UpdateSpec = UpdateSpec {
    code: "deal_update",
    name: ("Update a deal", "Изменение Сделки"),
    description: (
        "Writes the set fields of a deal, including its pipeline and stage",
        "Записывает заполненные поля сделки, в том числе направление и стадию",
    ),
    id_name: ("Deal ID", "ID сделки"),
    options: OPTIONS,
    entity_type_id: 2,
    entity: "deal",
    id_key: "deal_id",
    fields: &[
        field("title", "title", Kind::Text, "Deal name", "Название сделки"),
        field(
            "deal_type",
            "typeId",
            Kind::Select,
            "Deal type",
            "Тип сделки",
        ),
        field(
            "category_id",
            "categoryId",
            Kind::SelectId,
            "Pipeline",
            "Направление",
        ),
        field("stage_id", "stageId", Kind::Select, "Stage", "Стадия"),
        field("currency", "currencyId", Kind::Select, "Currency", "Валюта"),
        field("source", "sourceId", Kind::Select, "Source", "Источник"),
        field(
            "probability",
            "probability",
            Kind::Int,
            "Probability, %",
            "Вероятность, %",
        ),
        // A deal has no tax rate of its own; the seed's field was the tax amount.
        field("tax_rate", "taxValue", Kind::Double, "Tax", "Налог"),
        field(
            "opportunity",
            "opportunity",
            Kind::Double,
            "Amount",
            "Сумма",
        ),
        field(
            "company_id",
            "companyId",
            Kind::Id,
            "Company ID",
            "ID компании",
        ),
        ASSIGNED_BY,
        COMMENTS,
        field(
            "contact_ids",
            "contactIds",
            Kind::Ids,
            "Contacts",
            "Контакты",
        ),
        field(
            "source_description",
            "sourceDescription",
            Kind::LongText,
            "Source details",
            "Дополнительно об источнике",
        ),
    ],
    multi: &[],
    legacy: None,
    manual_opportunity: true,
};

const OPTIONS: &[(&str, OptionSource)] = &[
    ("deal_type", OptionSource::Status("DEAL_TYPE")),
    ("category_id", OptionSource::DealCategories),
    ("stage_id", OptionSource::DealStages),
    ("currency", OptionSource::Currencies),
    ("source", OptionSource::Status("SOURCE")),
];
