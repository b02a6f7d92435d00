//! The app page in a real browser, inside the simulated portal's app frame (an iframe the
//! portal POSTs the user's `AUTH_ID` into, as Bitrix24 does). Screenshots land in
//! `target/screenshots/app-*.png`.
use fantoccini::{Client, Locator};

use crate::support::browser::{browser, screenshot, screenshot_tall, start_driver, text_of};
use crate::support::*;

/// Opens the portal's app frame for `user` and switches into the app's iframe.
async fn open_as(client: &Client, app: &TestApp, user: u64) {
    let frame = app.portal.app_frame_url(&app.url("/b24/app"), user);
    client.goto(&frame).await.expect("app frame");
    let iframe = client
        .wait()
        .for_element(Locator::Id("app"))
        .await
        .expect("the app's iframe");
    iframe.enter_frame().await.expect("into the iframe");
    client
        .wait()
        .for_element(Locator::Css("h1"))
        .await
        .expect("the app page");
}

async fn status_of(client: &Client, code: &str, kind: &str) -> String {
    text_of(
        client,
        &format!("tr[data-code=\"{code}\"] td[data-status=\"{kind}\"]"),
    )
    .await
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|_| panic!("no {css}"))
        .click()
        .await
        .expect("click");
}

/// Clicks an action button and waits for the page that says its job is queued.
async fn act(client: &Client, css: &str) {
    click(client, css).await;
    client
        .wait()
        .for_element(Locator::Id("notice"))
        .await
        .expect("the action's notice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_manages_activities_on_the_app_page_in_the_browser() {
    let app = spawn_app().await;
    let driver = start_driver().await;
    let client = browser(&driver).await;

    open_as(&client, &app, 1).await;
    assert!(text_of(&client, "h1")
        .await
        .contains("действия бизнес-процессов"));
    assert_eq!(
        status_of(&client, "user_info", "activity").await,
        "установлено"
    );
    screenshot(&client, "app-01-admin-ru").await;

    // Uninstall one activity: a job removes it and its robot from the portal.
    click(
        &client,
        "tr[data-code=\"user_info\"] button[data-action=\"uninstall\"]",
    )
    .await;
    client
        .wait()
        .for_element(Locator::Id("notice"))
        .await
        .expect("notice");
    app.wait_registrations().await;
    assert!(!app
        .portal
        .activities()
        .iter()
        .any(|a| a.code.ends_with("user_info")));
    open_as(&client, &app, 1).await;
    assert_eq!(
        status_of(&client, "user_info", "activity").await,
        "не установлено"
    );
    assert_eq!(
        status_of(&client, "user_info", "robot").await,
        "не установлено"
    );
    screenshot(&client, "app-02-user-info-uninstalled").await;

    // And install it again.
    click(
        &client,
        "tr[data-code=\"user_info\"] button[data-action=\"install\"]",
    )
    .await;
    app.wait_registrations().await;
    open_as(&client, &app, 1).await;
    assert_eq!(
        status_of(&client, "user_info", "activity").await,
        "установлено"
    );
    assert_eq!(
        status_of(&client, "user_info", "robot").await,
        "установлено"
    );

    // A telephony line added in the portal appears after "Refresh options".
    app.portal.add_phone_line("reg555", "Support line 555");
    act(&client, "button[data-action=\"refresh\"]").await;
    app.wait_registrations().await;
    open_as(&client, &app, 1).await;
    assert!(text_of(&client, "#last-refresh")
        .await
        .contains("Support line 555"));
    screenshot_tall(&client, "app-03-options-refreshed").await;

    // The page switches to English and back.
    click(&client, "#switch-language").await;
    client
        .wait()
        .for_element(Locator::Css("#activities"))
        .await
        .expect("page");
    assert!(text_of(&client, "h1").await.contains("workflow activities"));
    assert_eq!(
        status_of(&client, "user_info", "activity").await,
        "installed"
    );
    screenshot(&client, "app-04-admin-en").await;

    // An employee who is not an administrator sees only a refusal.
    let employee = app.portal.add_user(serde_json::json!({ "NAME": "Olga" }));
    open_as(&client, &app, employee).await;
    assert!(text_of(&client, "#refusal")
        .await
        .contains("администраторам"));
    assert!(client.find(Locator::Css("#activities")).await.is_err());
    screenshot(&client, "app-05-not-an-admin").await;

    let _ = client.close().await;
    app.cleanup().await;
}
