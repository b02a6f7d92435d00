//! The per-process writer of jobs' ends: the terminal writes of concurrently finishing
//! jobs (state, result, outcome when not stored before, history row, REST call log,
//! secrets erased) go out as one statement and one commit. Each row keeps its own guard,
//! so every job learns whether its attempt still owned it; an attempt answered `true` is
//! durable (its delivery may be acked), one answered with an error is not (the lease
//! expires and the job is run or answered again, as after a crash).
use std::collections::HashSet;

use b24flow_common::db::jobs::{self, Finish};
use b24flow_common::db::{DbError, Pool};
use b24flow_common::gather::{GatherSettings, Gatherer};
use uuid::Uuid;

/// No wait of its own: jobs that end while a flush runs join the next one, so groups
/// grow with the load and a lone job pays nothing extra.
const SETTINGS: GatherSettings = GatherSettings {
    window: std::time::Duration::ZERO,
    max_group: 256,
    slots: 2,
    queue: 16_384,
};

#[derive(Clone)]
pub struct Finisher {
    ends: Gatherer<Finish, Result<bool, DbError>>,
}

impl Finisher {
    /// Starts the writer (it stops when the last clone is dropped).
    pub fn start(db: Pool) -> Self {
        let ends = Gatherer::start(SETTINGS, move |group: Vec<Finish>| {
            let db = db.clone();
            async move { write(&db, group).await }
        });
        Self { ends }
    }

    /// Ends the job: true when its attempt still owned it (now ended), false when a newer
    /// attempt did (nothing changed).
    pub async fn finish(&self, end: Finish) -> Result<bool, DbError> {
        self.ends
            .submit(end)
            .await
            .unwrap_or(Err(DbError::Config("the job end writer stopped".into())))
    }
}

async fn write(db: &Pool, group: Vec<Finish>) -> Vec<Result<bool, DbError>> {
    let client = match db.get().await {
        Ok(client) => client,
        Err(e) => {
            tracing::warn!(error = %e, jobs = group.len(), "no database connection for the job ends");
            return group.iter().map(|_| Err(unreachable())).collect();
        }
    };
    let mut answers: Vec<Option<Result<bool, DbError>>> = group.iter().map(|_| None).collect();
    for rounds in distinct_rounds(&group) {
        let ends: Vec<Finish> = rounds.iter().map(|&i| group[i].clone()).collect();
        match jobs::finish_many(&client, &ends).await {
            Ok(ended) => {
                for (&i, ended) in rounds.iter().zip(ended) {
                    answers[i] = Some(Ok(ended));
                }
            }
            // Postgres refused the statement (a value it cannot store): one by one, so
            // one bad end cannot keep the others from being written.
            Err(e) if ends.len() > 1 && !e.is_unreachable() => {
                tracing::warn!(error = %e, jobs = ends.len(), "a group of job ends was refused; writing them one by one");
                for (&i, end) in rounds.iter().zip(&ends) {
                    let single = jobs::finish_many(&client, std::slice::from_ref(end)).await;
                    answers[i] = Some(single.map(|e| e.first().copied().unwrap_or(false)));
                }
            }
            Err(e) if ends.len() == 1 => answers[rounds[0]] = Some(Err(e)),
            Err(e) => {
                tracing::warn!(error = %e, jobs = ends.len(), "the job ends were not written");
                for &i in &rounds {
                    answers[i] = Some(Err(unreachable()));
                }
            }
        }
    }
    answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|| Err(DbError::Config("job end not written".into()))))
        .collect()
}

/// The group split into rounds in which each job appears once (a statement may update a
/// row only once); almost always a single round.
fn distinct_rounds(group: &[Finish]) -> Vec<Vec<usize>> {
    let mut rounds: Vec<(HashSet<Uuid>, Vec<usize>)> = Vec::new();
    for (i, end) in group.iter().enumerate() {
        match rounds.iter_mut().find(|(ids, _)| !ids.contains(&end.id)) {
            Some((ids, members)) => {
                ids.insert(end.id);
                members.push(i);
            }
            None => rounds.push((HashSet::from([end.id]), vec![i])),
        }
    }
    rounds.into_iter().map(|(_, members)| members).collect()
}

/// The failure each job of a group gets when Postgres did not answer (a `DbError` cannot
/// be cloned; the cause is logged once for the group).
fn unreachable() -> DbError {
    DbError::Timeout("job end writer: Postgres did not answer")
}

#[cfg(test)]
mod tests {
    use super::*;
    use b24flow_common::db::jobs::JobState;

    fn end(id: Uuid) -> Finish {
        Finish {
            id,
            attempt: 1,
            state: JobState::Succeeded,
            result: None,
            error: None,
            message: "done".into(),
            outcome: None,
            rest_calls: None,
        }
    }

    #[test]
    fn a_job_twice_in_a_group_goes_into_two_statements() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let group = [end(a), end(b), end(a), end(a)];
        assert_eq!(distinct_rounds(&group), vec![vec![0, 1], vec![2], vec![3]]);
    }

    #[test]
    fn distinct_jobs_share_one_statement() {
        let group: Vec<Finish> = (0..5).map(|_| end(Uuid::new_v4())).collect();
        assert_eq!(distinct_rounds(&group), vec![vec![0, 1, 2, 3, 4]]);
    }
}
