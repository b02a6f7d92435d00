//! `crm_feed_post` (ACTIVITIES.md #14): a timeline comment on a lead, deal, contact or
//! company, the title in bold above the message: one `crm.timeline.comment.add`
//! (the live feed method is gone, methods.md §14).
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::activity::{Activity, ActivityError, Input, Output, RunContext};
use crate::once::Once;
use crate::schema::{ActivityDef, PropType, Property, Text};
use crate::text;

use crate::crm::{self, id_of, portal_error, result_values, text_of, Owner};

pub struct CrmFeedPost;

pub(super) fn activity() -> Arc<dyn Activity> {
    Arc::new(CrmFeedPost)
}

const MARKER: &str = "crm.timeline.comment";

/// What the side effect made, as its marker keeps it.
#[derive(Serialize, Deserialize)]
struct Posted {
    comment_id: u64,
}

/// The comment: `[B]title[/B]` on its own line, then the message (BBCode).
fn comment(title: &str, message: &str) -> String {
    format!("[B]{title}[/B]\n{message}")
}

#[async_trait]
impl Activity for CrmFeedPost {
    fn definition(&self) -> ActivityDef {
        let p = Property::new;
        ActivityDef {
            code: "crm_feed_post",
            name: Text::new("Post into a CRM entity's feed", "Создание сообщения в ленту сущностей crm"),
            description: Text::new(
                "Adds a comment with a bold title to the timeline of a lead, deal, contact or company",
                "Добавляет комментарий с заголовком в таймлайн лида, сделки, контакта или компании",
            ),
            properties: vec![
                p("entity_type", PropType::Select, "Entity type", "Тип сущности")
                    .required()
                    .options(Owner::OPTIONS)
                    .help("Whose timeline gets the comment.", "В чей таймлайн добавить комментарий."),
                p("entity_id", PropType::Int, "Entity ID", "ID сущности")
                    .required()
                    .help("The ID of that lead, deal, contact or company, e.g. {=Document:ID}.", "ID этого лида, сделки, контакта или компании, например {=Document:ID}."),
                p("message", PropType::Text, "Message", "Сообщение")
                    .required()
                    .help("The comment's text; BBCode such as [B]bold[/B] and links work.", "Текст комментария; можно использовать BBCode, например [B]жирный[/B], и ссылки."),
                p("title", PropType::String, "Title", "Заголовок")
                    .required()
                    .help("Shown in bold on the first line, above the message.", "Выводится жирным первой строкой, над сообщением."),
            ],
            returns: vec![
                p("result", PropType::String, "Result (true/false)", "Результат (true/false)"),
                p("comment_id", PropType::Int, "Comment ID", "ID комментария"),
            ],
        }
    }

    fn failure_values(&self) -> Map<String, Value> {
        result_values(false)
    }

    async fn run(&self, ctx: &RunContext, input: &Input) -> Result<Output, ActivityError> {
        let marker = ctx.once(MARKER).await?;
        if let Some(Posted { comment_id }) = marker.recorded() {
            return Ok(output(
                comment_id,
                text!(
                    "already posted by an earlier attempt",
                    "уже добавлен предыдущей попыткой"
                ),
            ));
        }
        let owner = Owner::parse("entity_type", &input.required_string("entity_type")?)?;
        let entity_id = crm::required_id(input, "entity_id")?;
        let text = comment(
            &input.required_string("title")?,
            &input.required_string("message")?,
        );
        let what = owner.describe(entity_id);
        let posted = marker
            .run(
                || async {
                    let found = find_earlier(ctx, owner, entity_id, &text).await?;
                    Ok(found.map(|comment_id| Posted { comment_id }).into())
                },
                |_| post(ctx, owner, entity_id, &text, &what),
            )
            .await?;
        let text = match &posted {
            Once::Acted(_) => Text {
                en: format!("posted on {}", what.en),
                ru: format!("добавлен: {}", what.ru),
            },
            _ => Text {
                en: format!("found on {}, posted by an earlier attempt", what.en),
                ru: format!("{}: найден, добавлен предыдущей попыткой", what.ru),
            },
        };
        Ok(output(posted.into_value().comment_id, text))
    }
}

async fn post(
    ctx: &RunContext,
    owner: Owner,
    entity_id: u64,
    text: &str,
    what: &Text,
) -> Result<Posted, ActivityError> {
    let answer = ctx
        .b24
        .call(
            "crm.timeline.comment.add",
            json!({ "fields": { "ENTITY_ID": entity_id, "ENTITY_TYPE": owner.name(), "COMMENT": text } }),
        )
        .await
        .map_err(|e| {
            let context = Text {
                en: format!("nothing posted on {}", what.en),
                ru: format!("{}: комментарий не добавлен", what.ru),
            };
            portal_error(context, e)
        })?;
    let comment_id = id_of(Some(&answer.result)).ok_or_else(|| {
        ActivityError::invalid(text!(
            "crm.timeline.comment.add answered no comment ID",
            "crm.timeline.comment.add не вернул ID комментария"
        ))
    })?;
    Ok(Posted { comment_id })
}

/// The comment an interrupted attempt may have posted: same entity, same text.
async fn find_earlier(
    ctx: &RunContext,
    owner: Owner,
    entity_id: u64,
    text: &str,
) -> Result<Option<u64>, ActivityError> {
    let answer = ctx
        .b24
        .call(
            "crm.timeline.comment.list",
            json!({
                "filter": { "ENTITY_ID": entity_id, "ENTITY_TYPE": owner.name() },
                "select": ["ID", "COMMENT"],
                "order": { "ID": "DESC" },
            }),
        )
        .await
        .map_err(|e| {
            portal_error(
                text!(
                    "cannot check for a comment of an earlier attempt",
                    "не удалось проверить, добавила ли комментарий предыдущая попытка"
                ),
                e,
            )
        })?;
    Ok(answer
        .result
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| text_of(c.get("COMMENT")) == text)
        .and_then(|c| id_of(c.get("ID"))))
}

fn output(id: u64, what: Text) -> Output {
    let mut values = result_values(true);
    values.insert("comment_id".into(), json!(id));
    Output {
        return_values: values,
        log_message: Text {
            en: format!("timeline comment {id} {}", what.en),
            ru: format!("комментарий {id} в таймлайне {}", what.ru),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_title_is_bold_above_the_message() {
        assert_eq!(
            comment("Invoice sent", "Link: x"),
            "[B]Invoice sent[/B]\nLink: x"
        );
    }
}
