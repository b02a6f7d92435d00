//! The app page's words in Russian and English (Russian unless the portal says English).
use serde::Serialize;

pub use b24flow_common::lang::Lang;

#[derive(Serialize)]
pub struct Words {
    pub title: &'static str,
    pub intro: &'static str,
    pub activity: &'static str,
    pub description: &'static str,
    pub as_activity: &'static str,
    pub as_robot: &'static str,
    pub installed: &'static str,
    pub not_installed: &'static str,
    pub install: &'static str,
    pub uninstall: &'static str,
    pub install_all: &'static str,
    pub uninstall_all: &'static str,
    pub refresh: &'static str,
    pub refresh_help: &'static str,
    pub last_refresh: &'static str,
    pub no_changes: &'static str,
    pub added: &'static str,
    pub removed: &'static str,
    pub recent_jobs: &'static str,
    pub unfinished: &'static str,
    pub state: &'static str,
    pub time: &'static str,
    pub error: &'static str,
    pub no_jobs: &'static str,
    pub queued_action: &'static str,
    pub other_language: &'static str,
    pub no_catalogue: &'static str,
}

pub fn words(lang: Lang) -> Words {
    match lang {
        Lang::Ru => Words {
            title: "b24flow — действия бизнес-процессов",
            intro: "Здесь можно установить или удалить каждое действие (в дизайнере бизнес-процессов и как робота CRM) и обновить списки выбора из данных портала.",
            activity: "Действие",
            description: "Описание",
            as_activity: "Действие БП",
            as_robot: "Робот CRM",
            installed: "установлено",
            not_installed: "не установлено",
            install: "Установить",
            uninstall: "Удалить",
            install_all: "Установить все",
            uninstall_all: "Удалить все",
            refresh: "Обновить списки",
            refresh_help: "Перечитать справочники CRM, воронки, стадии, валюты, линии и голоса телефонии и обновить установленные действия.",
            last_refresh: "Последнее обновление списков",
            no_changes: "Списки не изменились.",
            added: "добавлено",
            removed: "удалено",
            recent_jobs: "Последние задания",
            unfinished: "Ожидают выполнения",
            state: "Состояние",
            time: "Время",
            error: "Ошибка",
            no_jobs: "Заданий пока нет.",
            queued_action: "Задание поставлено в очередь; обновите страницу через несколько секунд.",
            other_language: "English",
            no_catalogue: "Обработчик заданий ещё не запускался: список действий появится после его запуска.",
        },
        Lang::En => Words {
            title: "b24flow — workflow activities",
            intro: "Install or uninstall each activity (in the workflow designer and as a CRM robot), and refresh its choices from the portal's data.",
            activity: "Activity",
            description: "Description",
            as_activity: "Workflow activity",
            as_robot: "CRM robot",
            installed: "installed",
            not_installed: "not installed",
            install: "Install",
            uninstall: "Uninstall",
            install_all: "Install all",
            uninstall_all: "Uninstall all",
            refresh: "Refresh options",
            refresh_help: "Re-read CRM dictionaries, pipelines, stages, currencies, telephony lines and voices, and update the installed activities.",
            last_refresh: "Last refresh of options",
            no_changes: "No choices changed.",
            added: "added",
            removed: "removed",
            recent_jobs: "Recent jobs",
            unfinished: "Waiting to run",
            state: "State",
            time: "Time",
            error: "Error",
            no_jobs: "No jobs yet.",
            queued_action: "The job is queued; reload the page in a few seconds.",
            other_language: "Русский",
            no_catalogue: "No worker has started yet: the activities appear once one runs.",
        },
    }
}

/// Refusals, shown as a page inside the portal.
pub fn refusal(lang: Lang, reason: Refusal) -> &'static str {
    match (lang, reason) {
        (Lang::Ru, Refusal::NotFromPortal) => {
            "Откройте b24flow из вашего портала Битрикс24 (Приложения → b24flow)."
        }
        (Lang::En, Refusal::NotFromPortal) => {
            "Open b24flow from your Bitrix24 portal (Applications → b24flow)."
        }
        (Lang::Ru, Refusal::NotInstalled) => {
            "Приложение b24flow не установлено на этом портале. Установите его заново."
        }
        (Lang::En, Refusal::NotInstalled) => {
            "b24flow is not installed on this portal. Install it again."
        }
        (Lang::Ru, Refusal::NotAdmin) => "Эта страница доступна только администраторам портала.",
        (Lang::En, Refusal::NotAdmin) => "Only the portal's administrators can use this page.",
        (Lang::Ru, Refusal::Expired) => "Страница устарела. Откройте приложение заново.",
        (Lang::En, Refusal::Expired) => "This page has expired. Open the app again.",
        (Lang::Ru, Refusal::PortalUnavailable) => {
            "Портал сейчас не отвечает. Попробуйте через минуту."
        }
        (Lang::En, Refusal::PortalUnavailable) => {
            "The portal does not answer right now. Try again in a minute."
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    NotFromPortal,
    NotInstalled,
    NotAdmin,
    Expired,
    PortalUnavailable,
}

/// A job's state as the page shows it.
pub fn job_state(lang: Lang, state: &str) -> String {
    let ru = match state {
        "queued" => "в очереди",
        "retrying" => "повтор позже",
        "paused" => "приостановлено",
        "running" => "выполняется",
        "succeeded" => "выполнено",
        "failed" => "ошибка",
        "discarded" => "отменено",
        other => other,
    };
    match lang {
        Lang::Ru => ru.to_string(),
        Lang::En => state.to_string(),
    }
}
