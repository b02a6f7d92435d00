//! The portal's page that shows an app to a signed-in user: Bitrix24 puts the app in an
//! iframe and POSTs to the app's handler with that user's fresh `AUTH_ID`, `member_id` and
//! `DOMAIN` / `PROTOCOL` / `LANG` in the query (protocol.md §1.1, widget_data). Browser tests
//! open `Portal::app_frame_url` to see the app as an admin (or any user) would.
use axum::extract::{Query, State};
use axum::response::Html;
use serde::Deserialize;

use crate::portal::Portal;

#[derive(Deserialize)]
pub(crate) struct FrameQuery {
    handler: String,
    user: u64,
    #[serde(default)]
    lang: Option<String>,
}

pub(crate) async fn app_frame(
    State(portal): State<Portal>,
    Query(q): Query<FrameQuery>,
) -> Html<String> {
    let pair = portal.issue_token(q.user);
    let lang = q.lang.unwrap_or_else(|| portal.inner.cfg.language.clone());
    let sep = if q.handler.contains('?') { '&' } else { '?' };
    let action = format!(
        "{}{sep}DOMAIN={}&PROTOCOL=0&LANG={}",
        q.handler,
        portal.domain(),
        lang
    );
    Html(format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>Bitrix24</title>
<style>body{{margin:0;font:14px Arial;background:#eef2f4}} header{{background:#2fc6f6;color:#fff;padding:10px 16px}}
iframe{{border:0;width:100%;height:calc(100vh - 40px);background:#fff}}</style></head>
<body><header>Bitrix24 · {domain} · Applications → b24flow</header>
<iframe name="app" id="app"></iframe>
<form id="open" method="post" target="app" action="{action}">
<input type="hidden" name="AUTH_ID" value="{auth}">
<input type="hidden" name="AUTH_EXPIRES" value="{expires}">
<input type="hidden" name="REFRESH_ID" value="{refresh}">
<input type="hidden" name="member_id" value="{member}">
<input type="hidden" name="status" value="P">
<input type="hidden" name="PLACEMENT" value="DEFAULT">
<input type="hidden" name="PLACEMENT_OPTIONS" value="{{}}">
</form>
<script>document.getElementById('open').submit();</script>
</body></html>"#,
        domain = html_escape(&portal.domain()),
        action = html_escape(&action),
        auth = pair.access_token,
        expires = pair.expires_in,
        refresh = pair.refresh_token,
        member = portal.member_id(),
    ))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Portal {
    /// The portal's page showing the app at `handler` to `user_id` (see the module docs).
    pub fn app_frame_url(&self, handler: &str, user_id: u64) -> String {
        let encoded: String = url::form_urlencoded::byte_serialize(handler.as_bytes()).collect();
        format!(
            "{}/app-frame?handler={encoded}&user={user_id}",
            self.base_url()
        )
    }
}
