//! `deal_update` (ACTIVITIES.md #10): writes the set properties of a deal with one
//! `crm.item.update` (entity type 2), which also moves a deal between pipelines
//! (methods.md §7–10).
use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::activity::{
    Activity, ActivityError, Input, OptionAnswers, OptionQuery, Output, RunContext,
};
use crate::schema::{ActivityDef, Text};

use super::crm_common::result_values;
use super::crm_options::{self, OptionSource};
use super::crm_update_common::{field, result_returns, Kind, UpdateSpec};

pub struct DealUpdate;

const SPEC: UpdateSpec = UpdateSpec {
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

#[async_trait]
impl Activity for DealUpdate {
    fn definition(&self) -> ActivityDef {
        ActivityDef {
            code: "deal_update",
            name: Text::new("Update a deal", "Изменение Сделки"),
            description: Text::new(
                "Writes the set fields of a deal, including its pipeline and stage",
                "Записывает заполненные поля сделки, в том числе направление и стадию",
            ),
            properties: SPEC.properties("Deal ID", "ID сделки"),
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
