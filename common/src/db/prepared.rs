//! Statements prepared once per connection and then only bound and run. A query given as
//! text is parsed and planned by Postgres again each time and costs a round trip more
//! (tokio-postgres prepares an unnamed statement first); the hot path runs the same few
//! statements for every call and job, so each connection keeps them (deadpool's cache).
//! Only for fixed SQL: each distinct text stays cached for the connection's life.
use std::future::Future;

use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Error, Row};

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

pub trait Prepared: GenericClient {
    fn query_prepared<'a>(
        &'a self,
        sql: &'a str,
        params: Params<'a>,
    ) -> impl Future<Output = Result<Vec<Row>, Error>> + Send + 'a {
        async move {
            let statement = self.prepare_cached(sql).await?;
            self.query(&statement, params).await
        }
    }

    fn query_one_prepared<'a>(
        &'a self,
        sql: &'a str,
        params: Params<'a>,
    ) -> impl Future<Output = Result<Row, Error>> + Send + 'a {
        async move {
            let statement = self.prepare_cached(sql).await?;
            self.query_one(&statement, params).await
        }
    }

    fn query_opt_prepared<'a>(
        &'a self,
        sql: &'a str,
        params: Params<'a>,
    ) -> impl Future<Output = Result<Option<Row>, Error>> + Send + 'a {
        async move {
            let statement = self.prepare_cached(sql).await?;
            self.query_opt(&statement, params).await
        }
    }

    fn execute_prepared<'a>(
        &'a self,
        sql: &'a str,
        params: Params<'a>,
    ) -> impl Future<Output = Result<u64, Error>> + Send + 'a {
        async move {
            let statement = self.prepare_cached(sql).await?;
            self.execute(&statement, params).await
        }
    }
}

impl<C: GenericClient> Prepared for C {}
