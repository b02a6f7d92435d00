//! `callback_call` (ACTIVITIES.md #3): `voximplant.callback.start` rings the manager on a
//! line, speaks the text, then dials the client (methods.md §3). One request per run. The
//! line and voice options are read from the portal at registration, so re-running the
//! registration refreshes them (`bizproc.activity.update`) without a reinstall.
use std::sync::Arc;

use async_trait::async_trait;
use b24flow_common::bitrix::{B24Error, Batch};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::activity::{
    Activity, ActivityError, Input, OptionAnswers, OptionQuery, Output, RunContext,
};
use crate::once::NotDone;
#[cfg(test)]
use crate::schema::Lang;
use crate::schema::{ActivityDef, Choice, PropType, Property, Text};
use crate::text;

pub struct CallbackCall;

pub(super) fn activity() -> Arc<dyn Activity> {
    Arc::new(CallbackCall)
}

/// Option value resolved at run time to the portal's current default outgoing line.
const DEFAULT_LINE: &str = "default";
/// The Bitrix24 base number, a line ID of its own (docs of `voximplant.line.outgoing.get`).
const BASE_NUMBER_LINE: &str = "LINK_BASE_NUMBER";
/// Marker of the started call; its value is the run's output.
const CALL_DONE: &str = "callback.done";

/// Markers of each attempt's request (`callback.attempt.<n>`): started right before it,
/// done once the portal answered.
const ATTEMPT: &str = "callback.attempt";

/// What the started call's marker keeps.
#[derive(Serialize, Deserialize)]
struct Called {
    #[serde(default)]
    call_id: String,
    /// The line it went out on (the default line is resolved in the same request).
    #[serde(default)]
    line: String,
}

#[async_trait]
impl Activity for CallbackCall {
    fn definition(&self) -> ActivityDef {
        self.definition_with_options(&OptionAnswers::new())
    }

    fn option_queries(&self) -> Vec<OptionQuery> {
        let query = |key, method| OptionQuery {
            key,
            method,
            params: json!({}),
        };
        vec![
            query("lines", "voximplant.line.get"),
            query("default", "voximplant.line.outgoing.get"),
            query("voices", "voximplant.tts.voices.get"),
        ]
    }

    fn definition_with_options(&self, answers: &OptionAnswers) -> ActivityDef {
        let answer = |key| answers.get(key).and_then(|a| a.as_ref().ok());
        let lines = pairs(answer("lines"));
        let default_label = match answer("default").and_then(Value::as_str) {
            Some(id) => {
                let name = lines
                    .iter()
                    .find(|(l, _)| l == id)
                    .map_or(id, |(_, n)| n.as_str());
                Text::new(
                    &format!("Default outgoing line (now {name})"),
                    &format!("Линия по умолчанию (сейчас {name})"),
                )
            }
            None => Text::new("Default outgoing line", "Линия по умолчанию"),
        };
        let mut line = Property::new("line", PropType::Select, "Line", "Линия")
            .required()
            .default(DEFAULT_LINE)
            .help(
                "The line the call goes out on: one of the portal's lines, the base station \
                 number, or the default outgoing line as it is set at the time of the call.",
                "Линия, с которой идёт звонок: одна из линий портала, номер базовой станции \
                 или линия по умолчанию — та, что выбрана на момент звонка.",
            );
        line.set_portal_options(lines);
        line.options.splice(
            0..0,
            [
                Choice {
                    value: DEFAULT_LINE.to_string(),
                    title: default_label,
                },
                Choice {
                    value: BASE_NUMBER_LINE.to_string(),
                    title: Text::new("Base station number", "Номер базовой станции"),
                },
            ],
        );
        let mut voice = Property::new("voice", PropType::Select, "Voice", "Голос").help(
            "The voice that reads the text. Empty: the portal's default voice.",
            "Голос, которым читается текст. Пусто — голос портала по умолчанию.",
        );
        voice.set_portal_options(pairs(answer("voices")));

        ActivityDef {
            code: "callback_call",
            name: Text::new("Callback call", "Обратный звонок"),
            description: Text::new(
                "Calls a manager on a line, speaks the text, then connects the client",
                "Звонит менеджеру на линию, произносит текст и соединяет с клиентом",
            ),
            properties: vec![
                Property::new(
                    "phone",
                    PropType::String,
                    "Client's phone",
                    "Телефон клиента",
                )
                .required()
                .default("{=Document:PHONE}")
                .help(
                    "The number to call after the manager answers, e.g. +7 495 123-45-67; \
                     spaces, brackets and dashes are fine; a Russian 8 (...) becomes +7.",
                    "Номер, на который позвонить после ответа менеджера, например \
                     +7 495 123-45-67; пробелы, скобки и дефисы допустимы, 8 в начале \
                     заменяется на +7.",
                ),
                line,
                Property::new(
                    "text",
                    PropType::Text,
                    "Text spoken to the manager",
                    "Текст для менеджера",
                )
                .required()
                .help(
                    "Spoken to the manager before the client is connected, e.g. \
                     \"Client Acme asked for a callback\".",
                    "Произносится менеджеру перед соединением с клиентом, например \
                     «Клиент ООО Ромашка просит перезвонить».",
                ),
                voice,
            ],
            returns: vec![
                crate::values::result_property(),
                Property::new("call_id", PropType::String, "Call ID", "ID звонка"),
            ],
        }
    }

    fn failure_values(&self) -> Map<String, Value> {
        let mut values = crate::values::result_error();
        values.insert("call_id".into(), json!(""));
        values
    }

    async fn run(&self, ctx: &RunContext, input: &Input) -> Result<Output, ActivityError> {
        // A retry must never ring the manager twice (SPEC.md "Guarantees").
        let once = ctx.once_per_attempt(CALL_DONE, ATTEMPT, uncertain).await?;
        if let Some(Called { call_id, .. }) = once.recorded() {
            return Ok(started(
                &call_id,
                text!(
                    "already started by an earlier attempt",
                    "уже начат предыдущей попыткой"
                ),
            ));
        }
        let raw_phone = input.required_string("phone")?;
        let phone = normalize_phone(&raw_phone);
        if phone.is_empty() {
            return Err(ActivityError::invalid(text!(
                "phone: {raw_phone:?} has no digits",
                "phone: в «{raw_phone}» нет цифр номера"
            )));
        }
        let line = input.required_string("line")?;
        let text = input.required_string("text")?;
        let voice = input.string("voice");

        let mut params =
            json!({ "FROM_LINE": line, "TO_NUMBER": phone, "TEXT_TO_PRONOUNCE": text });
        if let Some(voice) = &voice {
            params["VOICE"] = json!(voice);
        }
        let called = once
            .run_per_attempt(ATTEMPT, || async {
                let answer = if line == DEFAULT_LINE {
                    // The default line can change after registration: read it in the same request.
                    params["FROM_LINE"] = json!("$result[line]");
                    let mut batch = Batch::new(true);
                    batch.push("line", "voximplant.line.outgoing.get", &json!({}));
                    // The batch's `cmd` goes out as a JSON object with sorted keys, so the producer's key
                    // must sort first ("line" < "start") for the portal to run it first.
                    batch.push("start", "voximplant.callback.start", &params);
                    ctx.b24.batch(&batch).await.and_then(|result| {
                        let used_line = result.get("line")?.clone();
                        Ok((result.get("start")?.clone(), Some(used_line)))
                    })
                } else {
                    ctx.b24
                        .call("voximplant.callback.start", params)
                        .await
                        .map(|r| (r.result, Some(json!(line))))
                };
                let (call, used_line) = match answer {
                    Ok(ok) => ok,
                    Err(e) if portal_refused(&e) => {
                        return Err(NotDone::Refused {
                            note: json!({ "error": e.description() }),
                            error: e.into(),
                        });
                    }
                    // The request may have reached the portal: the call may be ringing.
                    Err(e) => {
                        tracing::warn!(error = %e, "callback call request ended without an answer");
                        return Err(NotDone::Unsure(uncertain()));
                    }
                };
                let call_id = call
                    .get("CALL_ID")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if call.get("RESULT") != Some(&Value::Bool(true)) || call_id.is_empty() {
                    return Err(NotDone::Refused {
                        error: ActivityError::invalid(text!(
                            "the portal did not start the call: {call}",
                            "портал не начал звонок: {call}"
                        )),
                        note: json!({ "error": "no call" }),
                    });
                }
                let line = used_line
                    .as_ref()
                    .and_then(Value::as_str)
                    .unwrap_or(&line)
                    .to_string();
                Ok(Called {
                    call_id: call_id.to_string(),
                    line,
                })
            })
            .await?
            .into_value();
        let (call_id, used_line) = (called.call_id, called.line);
        let voice = voice.unwrap_or_default();
        let detail = if voice.is_empty() {
            text!("line {used_line} → {phone}", "линия {used_line} → {phone}")
        } else {
            text!(
                "line {used_line} → {phone}, voice {voice}",
                "линия {used_line} → {phone}, голос {voice}"
            )
        };
        Ok(started(&call_id, detail))
    }
}

fn started(call_id: &str, detail: Text) -> Output {
    let mut values = Map::new();
    values.insert("result".into(), json!("OK"));
    values.insert("call_id".into(), json!(call_id));
    Output {
        return_values: values,
        log_message: Text {
            en: format!("callback call {call_id} started ({})", detail.en),
            ru: format!("обратный звонок {call_id} начат ({})", detail.ru),
        },
    }
}

fn uncertain() -> ActivityError {
    ActivityError::invalid(text!(
        "an earlier attempt sent the callback request but got no answer; the call may have \
         started, so it is not started again",
        "предыдущая попытка отправила запрос на звонок, но не получила ответа; звонок мог \
         начаться, поэтому повторно он не запускается"
    ))
}

/// The portal answered with an error, so the call was not started: the error codes of
/// `voximplant.callback.start` and the limits that refuse a request before running it.
/// A 5xx or a lost answer may have started it.
fn portal_refused(e: &B24Error) -> bool {
    match e {
        B24Error::Api { status, code, .. } => {
            *status < 500 || matches!(code.as_str(), "QUERY_LIMIT_EXCEEDED" | "OVERLOAD_LIMIT")
        }
        B24Error::NotInstalled(_)
        | B24Error::PortalChanged(_)
        | B24Error::Refresh { .. }
        | B24Error::Db(_) => true,
        B24Error::Transport { .. } | B24Error::BadResponse { .. } | B24Error::TooLarge { .. } => {
            false
        }
    }
}

/// `{id: name}` objects (`voximplant.line.get`, `voximplant.tts.voices.get`) as options;
/// PHP sends an empty one as `[]`.
fn pairs(answer: Option<&Value>) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = answer
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(id, name)| {
            let name = name
                .as_str()
                .map_or_else(|| name.to_string(), str::to_string);
            (id.clone(), name)
        })
        .collect();
    pairs.sort_by(|a, b| a.1.cmp(&b.1));
    pairs
}

/// Spaces, dashes, dots and parentheses removed. A Russian number written with the trunk
/// prefix (`8 912 …`, 11 digits, area code starting 3/4/8/9, not the `810` international
/// prefix) becomes `+7…`; anything else is passed through for the portal to judge.
pub fn normalize_phone(raw: &str) -> String {
    let cleaned: String = raw
        .chars()
        .filter(|c| !(c.is_whitespace() || matches!(c, '-' | '‐' | '–' | '—' | '(' | ')' | '.')))
        .collect();
    let digits = cleaned.as_bytes();
    let trunk_prefixed = digits.len() == 11
        && digits.iter().all(u8::is_ascii_digit)
        && digits[0] == b'8'
        && matches!(digits[1], b'3' | b'4' | b'8' | b'9')
        && !cleaned.starts_with("810");
    if trunk_prefixed {
        format!("+7{}", &cleaned[1..])
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_lose_separators_and_the_russian_trunk_prefix_only_when_unambiguous() {
        assert_eq!(normalize_phone("8 (912) 345-67-89"), "+79123456789");
        assert_eq!(normalize_phone("8-800-555-35-35"), "+78005553535");
        assert_eq!(normalize_phone("+7 (912) 345 67 89"), "+79123456789");
        assert_eq!(normalize_phone("+49 170 1234567"), "+491701234567");
        // 810… is the international prefix; 8 followed by 1/2/5/6/7 is no Russian area code.
        assert_eq!(normalize_phone("8 10 49 170 123"), "81049170123");
        assert_eq!(normalize_phone("8 612 345 67 89"), "86123456789");
        assert_eq!(normalize_phone("89123456789 ext"), "89123456789ext");
        assert_eq!(normalize_phone("8912345678"), "8912345678");
        assert_eq!(normalize_phone("+89123456789"), "+89123456789");
    }

    #[test]
    fn line_options_have_the_portal_lines_and_the_two_special_entries() {
        let mut answers = OptionAnswers::new();
        answers.insert(
            "lines",
            Ok(json!({"reg151083": "Cloud PBX (9)", "74951234567": "Moscow"})),
        );
        answers.insert("default", Ok(json!("reg151083")));
        answers.insert(
            "voices",
            Ok(json!({"ruinternalfemale": "Russian (Female)"})),
        );
        let def = CallbackCall.definition_with_options(&answers);
        let line = def.properties.iter().find(|p| p.key == "line").unwrap();
        let values: Vec<&str> = line.options.iter().map(|c| c.value.as_str()).collect();
        assert_eq!(
            values,
            ["default", "LINK_BASE_NUMBER", "reg151083", "74951234567"]
        );
        assert_eq!(
            line.options[0].title.en,
            "Default outgoing line (now Cloud PBX (9))"
        );
        assert_eq!(
            line.options[0].title.ru,
            "Линия по умолчанию (сейчас Cloud PBX (9))"
        );
        let voice = def.properties.iter().find(|p| p.key == "voice").unwrap();
        assert_eq!(voice.options.len(), 1);
        assert_eq!(voice.options[0].value, "ruinternalfemale");
        assert_eq!(voice.options[0].title.get(Lang::En), "Russian (Female)");
        // No rights to read the lines: still the two special entries.
        let bare = CallbackCall.definition();
        let line = bare.properties.iter().find(|p| p.key == "line").unwrap();
        assert_eq!(line.options.len(), 2);
    }
}
