//! Issue 12: the admin's app page inside Bitrix24 (`/b24/app`).
use crate::support::*;

/// Opens the app page as Bitrix24's iframe does: a POST with the user's `AUTH_ID`.
async fn open(app: &TestApp, auth_id: &str, lang: &str, extra: &[(&str, &str)]) -> (u16, String) {
    let member_id = app.portal.member_id();
    let mut form = vec![("AUTH_ID", auth_id), ("member_id", member_id.as_str())];
    form.extend_from_slice(extra);
    let response = app
        .http
        .post(format!(
            "{}?DOMAIN={}&PROTOCOL=0&LANG={lang}",
            app.url("/b24/app"),
            app.portal.domain()
        ))
        .form(&form)
        .send()
        .await
        .expect("app page");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

fn admin_token(app: &TestApp) -> String {
    app.portal.issue_token(1).access_token
}

/// The value of the page's first `name="csrf"` field.
fn csrf_of(page: &str) -> String {
    let start = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    page[start..]
        .split('"')
        .next()
        .unwrap_or_default()
        .to_string()
}

fn registered(app: &TestApp, code: &str) -> (bool, bool) {
    let all = app.portal.activities();
    (
        all.iter().any(|a| a.code == code && !a.is_robot),
        all.iter()
            .any(|a| a.code == format!("robot_{code}") && a.is_robot),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_sees_every_activity_in_russian_with_its_status() {
    let app = spawn_app().await;
    let (status, page) = open(&app, &admin_token(&app), "ru", &[]).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Информация о пользователе"), "{page}");
    assert!(page.contains("Установить все"));
    assert_eq!(
        page.matches("data-status=\"activity\">установлено").count(),
        14
    );
    let (status, page) = open(&app, &admin_token(&app), "en", &[]).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("User info") && page.contains("Install all"),
        "{page}"
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_admin_or_a_forged_token_sees_nothing() {
    let app = spawn_app().await;
    let user = app.portal.add_user(serde_json::json!({ "NAME": "Olga" }));
    let employee = app.portal.issue_token(user).access_token;
    let (status, page) = open(&app, &employee, "ru", &[]).await;
    assert_eq!(status, 403);
    assert!(page.contains("только администраторам"), "{page}");
    assert!(!page.contains("user_info"));
    let (status, page) = open(&app, "forged-token", "en", &[]).await;
    assert_eq!(status, 401);
    assert!(!page.contains("user_info"), "{page}");
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_uninstalls_and_reinstalls_one_activity_through_jobs() {
    let app = spawn_app().await;
    let token = admin_token(&app);
    let (_, page) = open(&app, &token, "en", &[]).await;
    let csrf = csrf_of(&page);
    let (status, page) = open(
        &app,
        &token,
        "en",
        &[
            ("action", "uninstall"),
            ("code", "user_info"),
            ("csrf", &csrf),
        ],
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("queued"), "{page}");
    app.wait_registrations().await;
    assert_eq!(registered(&app, "user_info"), (false, false));
    assert_eq!(
        registered(&app, "smtp_send"),
        (true, true),
        "the others stay"
    );

    let (status, _) = open(
        &app,
        &token,
        "en",
        &[
            ("action", "install"),
            ("code", "user_info"),
            ("csrf", &csrf),
        ],
    )
    .await;
    assert_eq!(status, 200);
    app.wait_registrations().await;
    assert_eq!(registered(&app, "user_info"), (true, true));
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_without_the_pages_token_changes_nothing() {
    let app = spawn_app().await;
    let token = admin_token(&app);
    let (status, page) = open(
        &app,
        &token,
        "en",
        &[("action", "uninstall_all"), ("csrf", "forged")],
    )
    .await;
    assert_eq!(status, 403, "{page}");
    let (status, _) = open(&app, &token, "en", &[("action", "uninstall_all")]).await;
    assert_eq!(status, 403);
    let client = app.pool.get().await.expect("db");
    let jobs: i64 = client
        .query_one("SELECT count(*) FROM jobs WHERE kind = 'register'", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(jobs, 1, "only the install's registration");
    assert_eq!(registered(&app, "user_info"), (true, true));
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshing_options_picks_up_a_new_telephony_line_and_says_so() {
    let app = spawn_app().await;
    let token = admin_token(&app);
    app.portal.add_phone_line("reg777", "Sales line 777");
    let (_, page) = open(&app, &token, "en", &[]).await;
    let csrf = csrf_of(&page);
    let (status, _) = open(
        &app,
        &token,
        "en",
        &[("action", "refresh"), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(status, 200);
    app.wait_registrations().await;
    let callback = app
        .portal
        .activities()
        .into_iter()
        .find(|a| a.code == "callback_call" && !a.is_robot)
        .expect("callback_call registered");
    let options = callback.properties["line"]["OPTIONS"].to_string();
    assert!(options.contains("Sales line 777"), "{options}");
    let (_, page) = open(&app, &token, "en", &[]).await;
    assert!(
        page.contains("Sales line 777"),
        "the page shows what changed: {page}"
    );
    app.cleanup().await;
}
