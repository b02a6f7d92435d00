//! Templates (compiled in) and the page answers built from them.
use std::sync::LazyLock;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use minijinja::Environment;
use serde::Serialize;

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, source) in [
        ("base.html", include_str!("templates/base.html")),
        ("macros.html", include_str!("templates/macros.html")),
        ("login.html", include_str!("templates/login.html")),
        ("overview.html", include_str!("templates/overview.html")),
        ("jobs.html", include_str!("templates/jobs.html")),
        ("job_rows.html", include_str!("templates/job_rows.html")),
        ("job.html", include_str!("templates/job.html")),
        ("portal.html", include_str!("templates/portal.html")),
        ("error.html", include_str!("templates/error.html")),
    ] {
        env.add_template(name, source)
            .expect("dashboard templates compile");
    }
    env
});

/// Renders `name` (HTML-escaped by default) with `context`; a template error is a 500 page
/// and a log line, never a panic.
pub fn page(status: StatusCode, name: &str, context: impl Serialize) -> Response {
    let rendered = TEMPLATES.get_template(name).and_then(|t| t.render(context));
    match rendered {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %e, "dashboard template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_template_compiles() {
        assert!(super::TEMPLATES.templates().count() >= 9);
    }
}
