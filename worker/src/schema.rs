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

/// A localised text: English and Russian.
#[derive(Clone, Debug)]
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
    fn to_json(&self) -> Value {
        json!({ "en": self.en, "ru": self.ru })
    }
}

#[derive(Clone, Debug)]
pub struct Property {
    pub key: &'static str,
    pub name: Text,
    pub ty: PropType,
    pub required: bool,
    pub multiple: bool,
    pub default: Option<Value>,
    /// `value → title` for selects.
    pub options: Vec<(String, String)>,
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
        }
    }
    pub fn required(mut self) -> Self {
        self.required = true;
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
    pub fn options(mut self, options: &[(&str, &str)]) -> Self {
        self.options = options
            .iter()
            .map(|(v, t)| (v.to_string(), t.to_string()))
            .collect();
        self
    }

    fn to_json(&self) -> Value {
        // Descriptor keys are case-insensitive server-side (protocol.md §3.1); Bitrix
        // shows one `Name` string, so the English one goes there.
        let mut p = Map::new();
        p.insert("Name".into(), self.name.to_json());
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
                .map(|(v, t)| (v.clone(), Value::String(t.clone())))
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

    /// The parameters of `bizproc.activity.add` (or `bizproc.robot.add` when `robot`).
    pub fn registration(&self, handler: &str, robot: bool) -> Value {
        let props: Map<String, Value> = self
            .properties
            .iter()
            .map(|p| (p.key.to_string(), p.to_json()))
            .collect();
        let returns: Map<String, Value> = self
            .all_returns()
            .iter()
            .map(|p| (p.key.to_string(), p.to_json()))
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
                .options(&[("a", "A")])
                .default("a")],
            returns: vec![Property::new("r", PropType::Int, "R", "Р").multiple()],
        };
        let reg = def.registration("https://x.example/b24/activity", true);
        assert_eq!(reg["CODE"], "robot_demo");
        assert_eq!(reg["USE_SUBSCRIPTION"], "Y");
        assert_eq!(reg["PROPERTIES"]["k"]["Options"]["a"], "A");
        assert_eq!(reg["PROPERTIES"]["k"]["Required"], "Y");
        assert_eq!(reg["RETURN_PROPERTIES"]["r"]["Multiple"], "Y");
        assert_eq!(reg["RETURN_PROPERTIES"]["error_text"]["Type"], "string");
    }
}
