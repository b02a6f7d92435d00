//! `invoice_from_deal` (ACTIVITIES.md #1): an invoice from a deal's products and parties,
//! with its payment link and number (methods.md §1). New invoices: 2–3 requests (reads,
//! requisite lookup only when the deal has none chosen, one linked write batch); old ones
//! the same on `crm.invoice.*`. The invoice carries the job's marker in its external code,
//! so a retry after a crash finds it, and finishes it if needed, instead of creating a second one.
mod legacy;
mod read;
mod smart;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map};

use crate::activity::{Activity, ActivityError, Input, Output, RunContext};
use crate::once::{Found, Once, Prior};
use crate::schema::{ActivityDef, PropType, Property, Text};
use crate::{text, texts};

use crate::crm;
use read::InvoiceKind;

pub struct InvoiceFromDeal;

pub(super) fn activity() -> Arc<dyn Activity> {
    Arc::new(InvoiceFromDeal)
}

const MARKER: &str = "invoice";

/// What the workflow gets back, as the side effect's marker keeps it.
#[derive(Serialize, Deserialize)]
pub struct Created {
    pub invoice_id: u64,
    #[serde(default)]
    pub payment_url: String,
    #[serde(default)]
    pub invoice_number: String,
}

impl Created {
    fn output(&self, what: Text) -> Output {
        let mut values = Map::new();
        values.insert("invoice_id".into(), json!(self.invoice_id));
        values.insert("invoice_number".into(), json!(self.invoice_number));
        values.insert("payment_url".into(), json!(self.payment_url));
        Output {
            return_values: values,
            log_message: Text {
                en: format!(
                    "invoice {} (No. {}) {}",
                    self.invoice_id, self.invoice_number, what.en
                ),
                ru: format!(
                    "счёт {} (№ {}) {}",
                    self.invoice_id, self.invoice_number, what.ru
                ),
            },
        }
    }
}

/// What a lookup finds of an interrupted attempt: a finished invoice, or the ID of one
/// whose later steps may be missing (finish it).
pub type Earlier = Found<Created, u64>;

/// The external code stored in the invoice (`xmlId` / `XML_ID`).
fn xml_id(ctx: &RunContext) -> String {
    format!("b24flow:{}", ctx.job.id)
}

#[async_trait]
impl Activity for InvoiceFromDeal {
    fn definition(&self) -> ActivityDef {
        let p = Property::new;
        ActivityDef {
            code: "invoice_from_deal",
            name: Text::new("Create an invoice from a deal", "Создать счет на основании сделки"),
            description: Text::new(
                "Creates an invoice with the deal's products, payer and requisites, and returns its payment link and number",
                "Создаёт счёт с товарами, плательщиком и реквизитами сделки и возвращает ссылку на оплату и номер",
            ),
            properties: vec![
                p("deal_id", PropType::Int, "Deal ID", "ID сделки")
                    .required()
                    .default("{=Document:ID}")
                    .help(
                        "The deal whose products, company and contact go into the invoice; {=Document:ID} in a deal's workflow.",
                        "Сделка, товары, компания и контакт которой попадут в счёт; в процессе сделки — {=Document:ID}.",
                    ),
                p("paysystem_company", PropType::Int, "Payment system for companies", "Платёжная система для компаний")
                    .required()
                    .help(
                        "ID of the payment system used when the payer is a company (Sales center, payment systems).",
                        "ID платёжной системы, если плательщик — компания (Центр продаж → Платёжные системы).",
                    ),
                p("paysystem_contact", PropType::Int, "Payment system for contacts", "Платёжная система для контактов")
                    .required()
                    .help(
                        "ID of the payment system used when the payer is a person (the deal has only a contact).",
                        "ID платёжной системы, если плательщик — физическое лицо (в сделке только контакт).",
                    ),
                p("my_company_id", PropType::Int, "My company ID", "ID моей компании").help(
                    "The seller: ID of one of your companies with its requisites. Empty: the deal's own or none.",
                    "Продавец: ID вашей компании с реквизитами. Пусто — указанная в сделке или никакая.",
                ),
                p("invoice_kind", PropType::Select, "Invoice kind", "Вид счёта")
                    .options(&[("smart", "New invoice", "Новый счёт"), ("legacy", "Old invoice", "Старый счёт")])
                    .default("smart")
                    .help(
                        "New invoice (the current CRM) or the old, deprecated one for portals that still use it.",
                        "Новый счёт (современная CRM) или старый — для порталов, где ещё работают старые счета.",
                    ),
            ],
            returns: vec![
                p("payment_url", PropType::String, "Payment link", "Ссылка на оплату"),
                p("invoice_number", PropType::String, "Invoice number", "Номер счёта"),
                p("invoice_id", PropType::Int, "Invoice ID", "ID счёта"),
            ],
        }
    }

    async fn run(&self, ctx: &RunContext, input: &Input) -> Result<Output, ActivityError> {
        let once = ctx.once(MARKER).await?;
        if let Some(created) = once.recorded::<Created>() {
            return Ok(created.output(text!(
                "already created by an earlier attempt",
                "уже создан предыдущей попыткой"
            )));
        }
        let deal_id = crm::required_id(input, "deal_id")?;
        let pay_company = crm::required_id(input, "paysystem_company")?;
        let pay_contact = crm::required_id(input, "paysystem_contact")?;
        let my_company = match input.string("my_company_id") {
            Some(_) => Some(crm::required_id(input, "my_company_id")?),
            None => None,
        };
        let kind = match input
            .string("invoice_kind")
            .map(|k| k.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("smart") => InvoiceKind::Smart,
            Some("legacy") => InvoiceKind::Legacy,
            Some(other) => {
                return Err(ActivityError::invalid(texts::not_one_of(
                    "invoice_kind",
                    other,
                    "smart, legacy",
                )))
            }
        };
        let marker = xml_id(ctx);
        let mut existing = None;
        let created = once
            .run(
                || async {
                    match kind {
                        InvoiceKind::Smart => smart::find_earlier(ctx, &marker).await,
                        InvoiceKind::Legacy => legacy::find_earlier(ctx, &marker).await,
                    }
                },
                |prior| {
                    if let Prior::Partly(id) = prior {
                        existing = Some(id);
                    }
                    let (existing, marker) = (existing, &marker);
                    async move {
                        let source = read::read(ctx, deal_id, my_company, kind).await?;
                        let pay_system = if source.payer_is_company() {
                            pay_company
                        } else {
                            pay_contact
                        };
                        match kind {
                            InvoiceKind::Smart => {
                                smart::create(ctx, &source, pay_system, marker, existing).await
                            }
                            InvoiceKind::Legacy => {
                                legacy::create(ctx, &source, pay_system, marker, existing).await
                            }
                        }
                    }
                },
            )
            .await?;
        let created = match created {
            Once::Acted(created) => created,
            found => {
                return Ok(found.into_value().output(text!(
                    "found, created by an earlier attempt",
                    "найден, создан предыдущей попыткой"
                )))
            }
        };
        let what = match (kind, existing) {
            (_, Some(_)) => text!(
                "finished after an interrupted attempt from deal {deal_id}",
                "по сделке {deal_id} дооформлен после прерванной попытки"
            ),
            (InvoiceKind::Smart, None) => {
                text!("created from deal {deal_id}", "создан по сделке {deal_id}")
            }
            (InvoiceKind::Legacy, None) => text!(
                "created (old invoice) from deal {deal_id}",
                "создан по сделке {deal_id} (старый счёт)"
            ),
        };
        Ok(created.output(what))
    }
}
