//! `b24flow jobs`: what operators need from a terminal.
use anyhow::Context;
use b24flow_common::db::{self, jobs};
use b24flow_common::Config;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum JobsCommand {
    /// Newest jobs, optionally of one state (queued, running, succeeded, failed, discarded).
    List {
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// One job with its history.
    Show { id: uuid::Uuid },
    /// Counts per state.
    Stats,
}

pub async fn run(config: Config, command: JobsCommand) -> anyhow::Result<()> {
    let pool = db::pool(&config.database_url, 2)?;
    let client = pool.get().await.context("connecting to Postgres")?;
    match command {
        JobsCommand::List { state, limit } => {
            let state = state
                .map(|s| jobs::JobState::parse(&s).with_context(|| format!("unknown state {s:?}")))
                .transpose()?;
            for job in jobs::list(&client, state, limit).await? {
                println!(
                    "{}  {:<9}  {:<20}  attempt {}  {}  {}",
                    job.id,
                    job.state.as_str(),
                    job.code,
                    job.attempt,
                    job.created_at.format("%Y-%m-%d %H:%M:%S"),
                    job.last_error.unwrap_or_default()
                );
            }
        }
        JobsCommand::Show { id } => {
            let job = jobs::get(&client, id)
                .await?
                .with_context(|| format!("no job {id}"))?;
            println!("job        {}", job.id);
            println!("code       {}", job.code);
            println!(
                "state      {} (attempt {}/{})",
                job.state.as_str(),
                job.attempt,
                job.max_attempts
            );
            println!("workflow   {}", job.workflow_id.unwrap_or_default());
            println!("document   {}", job.document_id);
            println!("properties {}", job.properties);
            if let Some(result) = job.result {
                println!("result     {result}");
            }
            if let Some(error) = job.last_error {
                println!("error      {error}");
            }
            println!("history:");
            for e in jobs::history(&client, id).await? {
                println!(
                    "  {}  #{}  {} -> {}  {}",
                    e.at.format("%H:%M:%S%.3f"),
                    e.attempt,
                    e.from_state.unwrap_or_else(|| "-".into()),
                    e.to_state,
                    e.message.unwrap_or_default()
                );
            }
        }
        JobsCommand::Stats => {
            for (state, count) in jobs::count_by_state(&client).await? {
                println!("{state:<10} {count}");
            }
        }
    }
    Ok(())
}
