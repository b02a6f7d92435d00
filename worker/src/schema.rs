//! Property schemas. One definition per activity produces both what `run` reads and the
//! `bizproc.activity.add` / `bizproc.robot.add` registration (protocol.md §3.1).
use serde_json::{json, Map, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PropType {
    Bool,
    Date,
    Datetime,
    Double,
    Int,
    Select,
    String,
    Text,
    User,
}

impl PropType {
    fn as_str(self) -> &'static str {
        match self {
            PropType::Bool => "bool",
            PropType::Date => "date",
            PropType::Datetime => "datetime",
            PropType::Double => "double",
            PropType::Int => "int",
            PropType::Select => "select",
            PropType::String => "string",
            PropType::Text => "text",
            PropType::User => "user",
        }
    }
}

pub use b24flow_common::lang::Lang;

/// A localised text: English and Russian. Shown as English where no portal is involved
/// (operators' logs); rendered with [`Text::get`] for the portal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Text {
    pub en: String,
    pub ru: String,
}

impl Text {
    pub fn new(en: &str, ru: &str) -> Self {
        Self {
            en: en.into(),
            ru: ru.into(),
        }
    }
    /// A text the portal gave us (a CRM status name, a line): already in its language.
    pub fn same(text: &str) -> Self {
        Self::new(text, text)
    }
    pub fn get(&self, lang: Lang) -> &str {
        match lang {
            Lang::Ru => &self.ru,
            Lang::En => &self.en,
        }
    }
    pub fn to_json(&self) -> Value {
        json!({ "en": self.en, "ru": self.ru })
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.en)
    }
}

/// Texts not (yet) translated, or that came from elsewhere (a portal's or an SMTP server's
/// own words), read the same in both languages.
impl From<String> for Text {
    fn from(text: String) -> Self {
        Self {
            ru: text.clone(),
            en: text,
        }
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Self {
        Self::same(text)
    }
}

impl From<&String> for Text {
    fn from(text: &String) -> Self {
        Self::same(text)
    }
}

/// A [`Text`] from two format strings with the same arguments:
/// `text!("user {id} read", "пользователь {id} прочитан")`.
#[macro_export]
macro_rules! text {
    ($en:literal, $ru:literal $(, $arg:expr)* $(,)?) => {
        $crate::schema::Text {
            en: format!($en $(, $arg)*),
            ru: format!($ru $(, $arg)*),
        }
    };
}

/// One option of a select property: the value the workflow gets and its title.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    pub value: String,
    pub title: Text,
}

#[derive(Clone, Debug)]
pub struct Property {
    pub key: &'static str,
    pub name: Text,
    pub ty: PropType,
    pub required: bool,
    pub multiple: bool,
    pub default: Option<Value>,
    /// The options of a select, in order.
    pub options: Vec<Choice>,
    /// What the designer shows under the property: what to put there.
    pub help: Option<Text>,
    /// Its value never reaches the job row, logs or operators: the ingress seals it apart
    /// (`common::secrets`, whose list a unit test keeps equal to these flags).
    pub secret: bool,
}

impl Property {
    pub fn new(key: &'static str, ty: PropType, en: &str, ru: &str) -> Self {
        Self {
            key,
            name: Text::new(en, ru),
            ty,
            required: false,
            multiple: false,
            default: None,
            options: Vec::new(),
            help: None,
            secret: false,
        }
    }
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }
    pub fn secret(mut self) -> Self {
        self.secret = true;
        self
    }
    pub fn multiple(mut self) -> Self {
        self.multiple = true;
        self
    }
    pub fn default(mut self, value: impl Into<Value>) -> Self {
        self.default = Some(value.into());
        self
    }
    /// Fixed options: `(value, English title, Russian title)`.
    pub fn options(mut self, options: &[(&str, &str, &str)]) -> Self {
        self.options = options
            .iter()
            .map(|(value, en, ru)| Choice {
                value: value.to_string(),
                title: Text::new(en, ru),
            })
            .collect();
        self
    }
    /// Options read from the portal: `(value, title)` in the portal's own language.
    pub fn set_portal_options(&mut self, options: Vec<(String, String)>) {
        self.options = options
            .into_iter()
            .map(|(value, title)| Choice {
                title: Text::same(&title),
                value,
            })
            .collect();
    }
    pub fn help(mut self, en: &str, ru: &str) -> Self {
        self.help = Some(Text::new(en, ru));
        self
    }

    fn to_json(&self, lang: Lang) -> Value {
        // Descriptor keys are case-insensitive server-side (protocol.md §3.1). Names and
        // descriptions may be `{lang: text}` maps; option titles are plain strings, so they
        // go in the portal's language.
        let mut p = Map::new();
        p.insert("Name".into(), self.name.to_json());
        if let Some(help) = &self.help {
            p.insert("Description".into(), help.to_json());
        }
        p.insert("Type".into(), json!(self.ty.as_str()));
        p.insert("Required".into(), json!(yn(self.required)));
        p.insert("Multiple".into(), json!(yn(self.multiple)));
        if let Some(d) = &self.default {
            p.insert("Default".into(), d.clone());
        }
        if !self.options.is_empty() {
            let options: Map<String, Value> = self
                .options
                .iter()
                .map(|c| (c.value.clone(), json!(c.title.get(lang))))
                .collect();
            p.insert("Options".into(), Value::Object(options));
        }
        Value::Object(p)
    }
}

fn yn(b: bool) -> &'static str {
    if b {
        "Y"
    } else {
        "N"
    }
}

#[derive(Clone, Debug)]
pub struct ActivityDef {
    pub code: &'static str,
    pub name: Text,
    pub description: Text,
    pub properties: Vec<Property>,
    pub returns: Vec<Property>,
}

/// Robots share the activities' code namespace (ACTIVITIES.md), so they get a prefix.
pub use b24flow_common::catalogue::ROBOT_PREFIX;

impl ActivityDef {
    /// Every activity also returns `error_text` (ACTIVITIES.md "Rules for every activity").
    fn all_returns(&self) -> Vec<Property> {
        let mut returns = self.returns.clone();
        returns.push(Property::new(
            "error_text",
            PropType::String,
            "Error text",
            "Текст ошибки",
        ));
        returns
    }

    /// The parameters of `bizproc.activity.add` (or `bizproc.robot.add` when `robot`), with
    /// option titles in `lang`.
    pub fn registration(&self, handler: &str, robot: bool, lang: Lang) -> Value {
        let props: Map<String, Value> = self
            .properties
            .iter()
            .map(|p| (p.key.to_string(), p.to_json(lang)))
            .collect();
        let returns: Map<String, Value> = self
            .all_returns()
            .iter()
            .map(|p| (p.key.to_string(), p.to_json(lang)))
            .collect();
        let code = if robot {
            format!("{ROBOT_PREFIX}{}", self.code)
        } else {
            self.code.to_string()
        };
        json!({
            "CODE": code,
            "HANDLER": handler,
            "AUTH_USER_ID": 1,
            // Explicit Y: an empty value lets the template decide (protocol.md §8.3).
            "USE_SUBSCRIPTION": "Y",
            "NAME": self.name.to_json(),
            "DESCRIPTION": self.description.to_json(),
            "PROPERTIES": props,
            "RETURN_PROPERTIES": returns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_carries_the_schema_and_error_text() {
        let def = ActivityDef {
            code: "demo",
            name: Text::new("Demo", "Демо"),
            description: Text::new("d", "д"),
            properties: vec![Property::new("k", PropType::Select, "K", "К")
                .required()
                .options(&[("a", "A", "А")])
                .help("Pick one", "Выберите")
                .default("a")],
            returns: vec![Property::new("r", PropType::Int, "R", "Р").multiple()],
        };
        let reg = def.registration("https://x.example/b24/activity", true, Lang::Ru);
        assert_eq!(reg["CODE"], "robot_demo");
        assert_eq!(reg["USE_SUBSCRIPTION"], "Y");
        assert_eq!(reg["PROPERTIES"]["k"]["Options"]["a"], "А");
        assert_eq!(reg["PROPERTIES"]["k"]["Description"]["ru"], "Выберите");
        let english = def.registration("https://x.example/b24/activity", true, Lang::En);
        assert_eq!(english["PROPERTIES"]["k"]["Options"]["a"], "A");
        assert_eq!(reg["PROPERTIES"]["k"]["Required"], "Y");
        assert_eq!(reg["RETURN_PROPERTIES"]["r"]["Multiple"], "Y");
        assert_eq!(reg["RETURN_PROPERTIES"]["error_text"]["Type"], "string");
    }
}
