//! The dashboard over plain HTTP: login, session cookie flags, security headers, CSRF.
use reqwest::redirect::Policy;
use reqwest::StatusCode;

use crate::support::*;

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("build the http client")
}

/// The `value` of the first hidden `csrf` input of a page.
fn csrf_of(html: &str) -> String {
    let at =
        html.find("name=\"csrf\" value=\"").expect("a csrf field") + "name=\"csrf\" value=\"".len();
    html[at..]
        .split('"')
        .next()
        .expect("a value in the page")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_needs_a_login_sets_a_strict_cookie_sends_security_headers_and_checks_csrf() {
    let app = spawn_app().await;
    let http = no_redirects();
    let overview = http.get(app.url("/dashboard")).send().await.unwrap();
    assert_eq!(overview.status(), StatusCode::SEE_OTHER);
    assert_eq!(overview.headers()["location"], "/dashboard/login");

    let wrong = http
        .post(app.url("/dashboard/login"))
        .form(&[("token", "wrong"), ("name", "eve")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong
        .text()
        .await
        .unwrap()
        .contains("not the operator token"));

    let login = http
        .post(app.url("/dashboard/login"))
        .form(&[("token", app.operator_token.as_str()), ("name", "frank")])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    let set_cookie = login.headers()["set-cookie"].to_str().unwrap().to_string();
    for flag in ["b24flow_session=", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(flag), "{flag} missing in {set_cookie}");
    }
    let cookie = set_cookie.split(';').next().unwrap().to_string();

    let page = http
        .get(app.url("/dashboard"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let headers = page.headers().clone();
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["cache-control"], "no-store");
    let html = page.text().await.unwrap();
    assert!(
        !html.contains(&app.operator_token),
        "the token never appears in a page"
    );
    assert!(!html.contains("<script>"), "no inline script");
    for asset in [
        "/dashboard/assets/uPlot.iife.min.js",
        "/dashboard/assets/app.js",
    ] {
        assert!(html.contains(asset));
        let served = http.get(app.url(asset)).send().await.unwrap();
        assert_eq!(served.status(), StatusCode::OK, "{asset}");
    }
    let csrf = csrf_of(&html);

    // An action without the session's CSRF token is refused; with it, it is done.
    let pause = app.url("/dashboard/portals/1/pause");
    let forged = http
        .post(&pause)
        .header("cookie", &cookie)
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let missing = http
        .post(&pause)
        .header("cookie", &cookie)
        .form(&[("x", "y")])
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::FORBIDDEN);
    assert!(app.api_get("/api/portals").await[0]["paused_at"].is_null());
    let done = http
        .post(&pause)
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let portals = app.api_get("/api/portals").await;
    assert!(
        portals[0]["paused_by"]
            .as_str()
            .unwrap()
            .starts_with("frank via dashboard"),
        "{portals}"
    );

    // The session reads /api (the charts do), but acts there only with the CSRF header.
    let read = http
        .get(app.url("/api/stats"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    let resume = app.url("/api/portals/1/resume");
    let unguarded = http
        .post(&resume)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(unguarded.status(), StatusCode::FORBIDDEN);
    let guarded = http
        .post(&resume)
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(guarded.status(), StatusCode::OK);

    // Logging out ends the session in the browser.
    let out = http
        .post(app.url("/dashboard/logout"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert!(out.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("b24flow_session=;"));
    app.cleanup().await;
}

/// Logs in as `name`; the session cookie to send.
async fn login(app: &TestApp, http: &reqwest::Client, name: &str) -> String {
    let login = http
        .post(app.url("/dashboard/login"))
        .form(&[("token", app.operator_token.as_str()), ("name", name)])
        .send()
        .await
        .expect("log in");
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    let set_cookie = login.headers()["set-cookie"]
        .to_str()
        .expect("log in")
        .to_string();
    set_cookie.split(';').next().expect("log in").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_page_lists_its_rest_calls_and_the_portal_page_sets_the_plan_with_csrf() {
    let app = spawn_app().await;
    let http = no_redirects();
    let cookie = login(&app, &http, "grace").await;
    let sent = app
        .run_activity("user_info", serde_json::json!({ "user_id": "user_1" }))
        .await;
    let id = app.job_id_of(&sent.event_token).await;
    let page = || async {
        http.get(app.url(&format!("/dashboard/jobs/{id}")))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    wait_until(|| async { page().await.contains("bizproc.event.send") }).await;
    let html = page().await;
    let rest = &html[html
        .find("id=\"rest-calls\"")
        .expect("a REST calls section")..];
    let rest = &rest[..rest.find("</section>").unwrap()];
    assert!(rest.contains("Attempt 1"), "{rest}");
    assert!(rest.contains("user.get") && rest.contains(">ok<"), "{rest}");
    assert!(
        !html.contains(&sent.event_token),
        "no call parameters on the page"
    );

    let portal_page = http
        .get(app.url("/dashboard/portals/1"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(portal_page.contains("id=\"plan-form\""), "{portal_page}");
    let csrf = csrf_of(&portal_page);
    let set = app.url("/dashboard/portals/1/limits");
    let custom = [("plan", "custom"), ("rate_per_sec", "4"), ("burst", "10")];
    let forged = http
        .post(&set)
        .header("cookie", &cookie)
        .form(&[custom.as_slice(), &[("csrf", "forged")]].concat())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        app.api_get("/api/portals/1/limits").await["plan"],
        "standard"
    );

    let not_a_number = http
        .post(&set)
        .header("cookie", &cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("plan", "custom"),
            ("rate_per_sec", "fast"),
            ("burst", "10"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(not_a_number.status(), StatusCode::BAD_REQUEST);
    assert!(not_a_number
        .text()
        .await
        .unwrap()
        .contains("is not a number"));

    let saved = http
        .post(&set)
        .header("cookie", &cookie)
        .form(&[custom.as_slice(), &[("csrf", csrf.as_str())]].concat())
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    assert_eq!(saved.headers()["location"], "/dashboard/portals/1?ok=plan");
    let limits = app.api_get("/api/portals/1/limits").await;
    assert_eq!(
        (limits["plan"].as_str(), limits["burst"].as_i64()),
        (Some("custom"), Some(10))
    );
    // The form always sends the custom fields; a fixed plan ignores them.
    let standard = http
        .post(&set)
        .header("cookie", &cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("plan", "standard"),
            ("rate_per_sec", "4"),
            ("burst", "10"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(standard.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.api_get("/api/portals/1/limits").await["burst"], 50);

    let events = app.api_get("/api/portals/1").await["events"].clone();
    let custom_event = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["message"] == "custom 4/s burst 10 (was standard 2/s burst 50)")
        .unwrap_or_else(|| panic!("{events}"));
    assert!(custom_event["actor"]
        .as_str()
        .unwrap()
        .starts_with("grace via dashboard"));
    let portal_page = http
        .get(app.url("/dashboard/portals/1?ok=plan"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(portal_page.contains("Plan saved"));
    // (minijinja escapes the slashes)
    assert!(
        portal_page.contains("burst 10 (was standard 2"),
        "{portal_page}"
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_out_ends_the_session_on_the_server_and_only_that_one() {
    let app = spawn_app_with(AppOptions {
        install: false,
        worker: false,
        ..AppOptions::default()
    })
    .await;
    let http = no_redirects();
    let cookie = login(&app, &http, "heidi").await;
    let other = login(&app, &http, "ivan").await;
    let get = |path: &'static str, cookie: String| {
        let http = http.clone();
        let url = app.url(path);
        async move { http.get(url).header("cookie", cookie).send().await.unwrap() }
    };
    let page = get("/dashboard", cookie.clone()).await;
    assert_eq!(page.status(), StatusCode::OK);
    let csrf = csrf_of(&page.text().await.unwrap());
    let out = http
        .post(app.url("/dashboard/logout"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);

    // A copy of the logged-out cookie opens nothing any more.
    let again = get("/dashboard", cookie.clone()).await;
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
    assert_eq!(again.headers()["location"], "/dashboard/login");
    assert_eq!(
        get("/api/stats", cookie.clone()).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // The login page offers a new login instead of bouncing back to the dashboard.
    assert_eq!(
        get("/dashboard/login", cookie.clone()).await.status(),
        StatusCode::OK
    );
    // Another operator's session lives on.
    assert_eq!(get("/dashboard", other).await.status(), StatusCode::OK);
    app.cleanup().await;
}
