//! The portal's company structure: users (stored with Bitrix field names) and departments.
//! A portal always has the root department (ID 1) and the installing admin.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

use crate::php;

pub(crate) const ROOT_DEPARTMENT: u64 = 1;

#[derive(Clone, Debug)]
pub(crate) struct Department {
    pub id: u64,
    pub name: String,
    pub sort: i64,
    /// `None` only for the root.
    pub parent: Option<u64>,
    pub head: Option<u64>,
}

#[derive(Default)]
pub(crate) struct Directory {
    /// id -> fields. Stored values: strings, `ACTIVE`/`IS_ONLINE` as `Y`/`N`,
    /// `UF_DEPARTMENT` as a list of numbers, `PERSONAL_BIRTHDAY` as `YYYY-MM-DD` or "".
    pub users: BTreeMap<u64, Map<String, Value>>,
    pub departments: BTreeMap<u64, Department>,
    next_user: u64,
    next_department: u64,
}

const FIRST: &[&str] = &[
    "Anna", "Ben", "Clara", "David", "Eva", "Felix", "Greta", "Hugo", "Ida", "Jonas",
];
const LAST: &[&str] = &[
    "Koch", "Wagner", "Becker", "Schulz", "Hoffmann", "Fischer", "Weber", "Meyer",
];
const FIRST_RU: &[(&str, &str)] = &[
    ("Анна", "F"),
    ("Иван", "M"),
    ("Мария", "F"),
    ("Сергей", "M"),
    ("Ольга", "F"),
    ("Дмитрий", "M"),
];
const LAST_RU: &[(&str, &str)] = &[
    ("Иванов", "Иванова"),
    ("Смирнов", "Смирнова"),
    ("Кузнецов", "Кузнецова"),
    ("Попов", "Попова"),
];
const SECOND_RU: &[(&str, &str)] = &[
    ("Сергеевич", "Сергеевна"),
    ("Петрович", "Петровна"),
    ("Алексеевич", "Алексеевна"),
];

impl Directory {
    pub fn new(company: &str) -> Self {
        let mut d = Directory {
            next_user: 1,
            next_department: 1,
            ..Default::default()
        };
        d.departments.insert(
            ROOT_DEPARTMENT,
            Department {
                id: ROOT_DEPARTMENT,
                name: company.to_string(),
                sort: 500,
                parent: None,
                head: None,
            },
        );
        d.next_department = ROOT_DEPARTMENT + 1;
        d
    }

    pub fn add_department(&mut self, name: &str, parent: Option<u64>) -> u64 {
        let id = self.next_department;
        self.next_department += 1;
        self.departments.insert(
            id,
            Department {
                id,
                name: name.to_string(),
                sort: 500,
                parent: Some(parent.unwrap_or(ROOT_DEPARTMENT)),
                head: None,
            },
        );
        id
    }

    /// Adds a user from Bitrix-named fields, filling what is missing as a fresh portal would.
    pub fn add_user(&mut self, fields: &Value) -> u64 {
        let given = php::upper_keys(fields);
        let requested_id = given
            .get("ID")
            .map(php::intval)
            .filter(|&id| id > 0)
            .map(|id| id as u64);
        let id = match requested_id {
            Some(id) if !self.users.contains_key(&id) => id,
            _ => self.next_user,
        };
        self.next_user = self.next_user.max(id + 1);

        let mut user = Map::new();
        let pick = (id as usize).wrapping_sub(1);
        let name_given = given.contains_key("NAME");
        user.insert("NAME".into(), json!(FIRST[pick % FIRST.len()]));
        user.insert(
            "LAST_NAME".into(),
            json!(if name_given {
                ""
            } else {
                LAST[pick % LAST.len()]
            }),
        );
        user.insert("SECOND_NAME".into(), json!(""));
        user.insert("ACTIVE".into(), json!("Y"));
        user.insert("IS_ONLINE".into(), json!("N"));
        user.insert("USER_TYPE".into(), json!("employee"));
        user.insert("UF_DEPARTMENT".into(), json!([ROOT_DEPARTMENT]));
        user.insert("PERSONAL_GENDER".into(), json!(""));
        user.insert("PERSONAL_BIRTHDAY".into(), json!(""));
        user.insert("WORK_POSITION".into(), json!(""));
        user.insert("TITLE".into(), json!(""));
        user.insert("TIME_ZONE".into(), json!(""));
        user.insert("TIME_ZONE_OFFSET".into(), json!("0"));
        user.insert("UF_EMPLOYMENT_DATE".into(), json!(""));
        user.insert("DATE_REGISTER".into(), json!("2024-03-11T00:00:00+03:00"));
        user.insert("LAST_LOGIN".into(), json!("2025-01-20T09:41:07+03:00"));

        for (key, value) in given {
            if key == "ID" {
                continue;
            }
            user.insert(key.clone(), normalize_field(&key, &value));
        }
        if !user.contains_key("EMAIL") {
            let local = |s: &Value| {
                s.as_str()
                    .unwrap_or("")
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .collect::<String>()
                    .to_lowercase()
            };
            let (n, l) = (local(&user["NAME"]), local(&user["LAST_NAME"]));
            let email = if n.is_empty() {
                format!("user{id}@example.com")
            } else if l.is_empty() {
                format!("{n}{id}@example.com")
            } else {
                format!("{n}.{l}{id}@example.com")
            };
            user.insert("EMAIL".into(), json!(email));
        }
        self.users.insert(id, user);
        id
    }

    /// Departments and users with every field filled (some with Cyrillic names).
    pub fn seed_demo(&mut self, users: usize) -> Vec<u64> {
        let mut rng = StdRng::seed_from_u64(0x5eed + self.users.len() as u64);
        let sales = self.add_department("Sales", None);
        let depts = [
            sales,
            self.add_department("Продажи Север", Some(sales)),
            self.add_department("Marketing", None),
            self.add_department("Разработка", None),
            self.add_department("Customer Support", None),
            self.add_department("Бухгалтерия", None),
        ];
        let mut ids = Vec::with_capacity(users);
        for i in 0..users {
            let cyrillic = i % 3 == 1;
            let (name, last, second, gender) = if cyrillic {
                let (first, gender) = FIRST_RU[rng.gen_range(0..FIRST_RU.len())];
                let (last_m, last_f) = LAST_RU[rng.gen_range(0..LAST_RU.len())];
                let (sec_m, sec_f) = SECOND_RU[rng.gen_range(0..SECOND_RU.len())];
                if gender == "F" {
                    (first, last_f, sec_f, gender)
                } else {
                    (first, last_m, sec_m, gender)
                }
            } else {
                let first = FIRST[rng.gen_range(0..FIRST.len())];
                let gender = if "AnnaClaraEvaGretaIda".contains(first) {
                    "F"
                } else {
                    "M"
                };
                (first, LAST[rng.gen_range(0..LAST.len())], "", gender)
            };
            let dept_count = rng.gen_range(1..=2);
            let mut my_depts: Vec<u64> = (0..dept_count)
                .map(|_| depts[rng.gen_range(0..depts.len())])
                .collect();
            my_depts.dedup();
            let n = self.next_user;
            let ascii = format!("u{n}");
            let year = rng.gen_range(1965..2002);
            let month = rng.gen_range(1..=12);
            let day = rng.gen_range(1..=28);
            let position = ["Manager", "Engineer", "Accountant", "Менеджер"][rng.gen_range(0..4)];
            let id = self.add_user(&json!({
                "NAME": name, "LAST_NAME": last, "SECOND_NAME": second,
                "EMAIL": format!("{ascii}.{}@example.com", if cyrillic { "ru" } else { "de" }),
                "ACTIVE": rng.gen_bool(0.95), "IS_ONLINE": if rng.gen_bool(0.3) { "Y" } else { "N" },
                "PERSONAL_GENDER": gender, "PERSONAL_PROFESSION": "Manager",
                "PERSONAL_WWW": format!("https://{ascii}.example.com"),
                "PERSONAL_BIRTHDAY": format!("{year:04}-{month:02}-{day:02}"),
                "PERSONAL_PHOTO": format!("https://cdn.example.com/avatars/{ascii}.jpg"),
                "PERSONAL_ICQ": format!("{}", 100_000 + n), "PERSONAL_PHONE": format!("+49 30 {:07}", n),
                "PERSONAL_FAX": format!("+49 30 {:07}", n + 1), "PERSONAL_MOBILE": format!("+49 170 {:07}", n),
                "PERSONAL_PAGER": format!("p-{n}"), "PERSONAL_STREET": if cyrillic { "ул. Ленина, 5" } else { "Hauptstr. 1" },
                "PERSONAL_CITY": if cyrillic { "Москва" } else { "Berlin" }, "PERSONAL_STATE": if cyrillic { "МО" } else { "BE" },
                "PERSONAL_ZIP": if cyrillic { "101000" } else { "10115" }, "PERSONAL_COUNTRY": if cyrillic { "RU" } else { "DE" },
                "WORK_COMPANY": "Acme", "WORK_POSITION": position,
                "WORK_PHONE": format!("+49 30 5{:06}", n), "UF_DEPARTMENT": my_depts,
                "UF_INTERESTS": "chess, hiking", "UF_SKILLS": "negotiation", "UF_WEB_SITES": format!("https://{ascii}.example.org"),
                "UF_XING": format!("xing/{ascii}"), "UF_LINKEDIN": format!("linkedin/{ascii}"), "UF_FACEBOOK": format!("fb/{ascii}"),
                "UF_TWITTER": format!("@{ascii}"), "UF_SKYPE": format!("skype.{ascii}"), "UF_DISTRICT": if cyrillic { "Центр" } else { "Mitte" },
                "UF_PHONE_INNER": format!("{}", 200 + n), "USER_TYPE": "employee",
            }));
            ids.push(id);
        }
        for (i, dept) in depts.iter().enumerate() {
            if let (Some(d), Some(head)) = (self.departments.get_mut(dept), ids.get(i)) {
                d.head = Some(*head);
            }
        }
        ids
    }
}

/// Bitrix stores `ACTIVE`/`IS_ONLINE` as Y/N, `UF_DEPARTMENT` as ints, dates without time.
fn normalize_field(key: &str, value: &Value) -> Value {
    match key {
        "ACTIVE" | "IS_ONLINE" => {
            let yes = match value {
                Value::String(s) => {
                    !(s.is_empty()
                        || s.eq_ignore_ascii_case("N")
                        || s == "0"
                        || s.eq_ignore_ascii_case("false"))
                }
                other => php::to_bool(other),
            };
            json!(if yes { "Y" } else { "N" })
        }
        "UF_DEPARTMENT" => {
            let ids: Vec<i64> = php::values(value)
                .iter()
                .filter(|v| !php::is_empty(v))
                .map(php::intval)
                .filter(|&id| id > 0)
                .collect();
            json!(ids)
        }
        "PERSONAL_BIRTHDAY" => json!(date_part(value.as_str().unwrap_or(""))),
        _ => match value {
            Value::Null => Value::Null,
            Value::Array(_) | Value::Object(_) => value.clone(),
            other => json!(php::to_string(other).unwrap_or_default()),
        },
    }
}

/// `1990-05-01`, `1990-05-01T03:00:00+03:00` or `01.05.1990` -> `1990-05-01`.
fn date_part(s: &str) -> String {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() >= 10 && b[4] == b'-' && b[7] == b'-' {
        return s.get(..10).unwrap_or_default().to_string();
    }
    if b.len() >= 10 && b[2] == b'.' && b[5] == b'.' {
        if let (Some(y), Some(m), Some(d)) = (s.get(6..10), s.get(3..5), s.get(..2)) {
            return format!("{y}-{m}-{d}");
        }
    }
    String::new()
}
