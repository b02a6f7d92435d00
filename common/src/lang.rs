//! The languages b24flow speaks to a portal in: Russian unless the portal says English
//! (registrations, the app page, texts sent to workflows).

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Lang {
    #[default]
    Ru,
    En,
}

impl Lang {
    /// From a Bitrix24 `LANG` / `LANGUAGE_ID` (`ru`, `en`, `de`, `ua`, …). Russian-speaking
    /// portals get Russian, the rest English; no language at all means Russian.
    pub fn from_code(code: Option<&str>) -> Lang {
        match code.map(|c| c.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("ru") | Some("ua") | Some("by") | Some("kz") => Lang::Ru,
            Some(_) => Lang::En,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Ru => "ru",
            Lang::En => "en",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portals_speak_russian_unless_they_say_otherwise() {
        assert_eq!(Lang::from_code(None), Lang::Ru);
        assert_eq!(Lang::from_code(Some("ru")), Lang::Ru);
        assert_eq!(Lang::from_code(Some("EN")), Lang::En);
        assert_eq!(Lang::from_code(Some("de")), Lang::En);
    }
}
