//! The one integration-test binary: real Postgres, real RabbitMQ, a simulated portal.
//! Each test gets its own database and AMQP names and removes them afterwards.
mod support;

mod app_page;
mod app_page_browser;

mod crm_invoice;
mod crm_timeline;
mod crm_update;
mod fuzz;
mod hardening;
mod ingress_checks;
mod install;
mod install_security;
mod job_ends;
mod limits;
mod portal_limits;
mod run_as;
mod side_effects;
mod smtp;
mod telephony_calendar;
mod texts;
mod user_info;

mod dashboard_browser;
mod dashboard_http;
mod durable_path;
mod faults;
mod operator_api;
mod operator_cli;
