//! What the ingress and the worker share: configuration, the job model and its Postgres
//! repository, the AMQP topology and publisher, the Bitrix24 REST client, crypto, telemetry.
pub mod amqp;
pub mod bitrix;
pub mod catalogue;
pub mod config;
pub mod crypto;
pub mod db;
pub mod error_kind;
pub mod gather;
pub mod lang;
pub mod metrics;
pub mod secrets;
pub mod telemetry;

pub use config::Config;
