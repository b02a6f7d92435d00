//! `department.get` (methods.md §6), following the core's `CIntranetRestService::departmentGet`:
//! `FILTER` (an array) replaces the query; filter keys are exactly `ID`, `NAME`, `SORT`,
//! `PARENT`, `UF_HEAD` (case-sensitive); `sort`/`order` choose the order (tree order by
//! default); IDs are `intval`'d, and an **empty list filters nothing** (the iblock filter
//! builder skips empty arrays, `CIBlock::FilterCreateEx`), so `ID=[]` lists every department.

use std::cmp::Ordering;

use serde_json::{json, Map, Value};

use super::{start_param, Ctx, Handler, Reply, RestError};
use crate::php;
use crate::state::directory::{Department, Directory};

const FIELDS: &[&str] = &["ID", "NAME", "SORT", "PARENT", "UF_HEAD"];

pub(crate) fn route(method: &str) -> Option<Handler> {
    let handler: Handler = match method {
        "department.get" => get,
        _ => return None,
    };
    Some(handler)
}

fn render(d: &Department) -> Value {
    let mut m = Map::new();
    m.insert("ID".into(), json!(d.id.to_string()));
    m.insert("NAME".into(), json!(d.name));
    m.insert("SORT".into(), json!(d.sort));
    if let Some(parent) = d.parent {
        m.insert("PARENT".into(), json!(parent.to_string()));
    }
    if let Some(head) = d.head {
        m.insert("UF_HEAD".into(), json!(head.to_string()));
    }
    Value::Object(m)
}

/// `intval` of a scalar, or of each element of an array (`None` = empty array: no filter).
fn int_filter(v: &Value) -> Option<Vec<i64>> {
    let values: Vec<i64> = if php::is_array(v) {
        php::values(v).iter().map(php::intval).collect()
    } else {
        vec![php::intval(v)]
    };
    (!values.is_empty()).then_some(values)
}

/// Nested-set (LEFT_MARGIN) order: depth-first, siblings by SORT then NAME.
fn tree_order(dir: &Directory) -> Vec<&Department> {
    fn walk<'a>(dir: &'a Directory, parent: Option<u64>, out: &mut Vec<&'a Department>) {
        let mut children: Vec<&Department> = dir
            .departments
            .values()
            .filter(|d| d.parent == parent)
            .collect();
        children.sort_by(|a, b| {
            a.sort
                .cmp(&b.sort)
                .then_with(|| a.name.cmp(&b.name))
                .then(a.id.cmp(&b.id))
        });
        for child in children {
            out.push(child);
            walk(dir, Some(child.id), out);
        }
    }
    let mut out = Vec::new();
    walk(dir, None, &mut out);
    // Departments whose parent is missing still exist; list them last.
    for d in dir.departments.values() {
        if !out.iter().any(|o| o.id == d.id) {
            out.push(d);
        }
    }
    out
}

fn get(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    let start = start_param(&params);
    let mut query: Map<String, Value> = php::entries(&params).into_iter().collect();
    if let Some(filter) = query.get("FILTER").filter(|f| php::is_array(f)) {
        query = php::entries(filter).into_iter().collect();
    }
    let upper = php::upper_keys(&Value::Object(query.clone()));
    let sort_field = upper
        .get("SORT")
        .and_then(Value::as_str)
        .map(str::to_uppercase)
        .filter(|f| FIELDS.contains(&f.as_str()));
    let desc = upper
        .get("ORDER")
        .and_then(Value::as_str)
        .is_some_and(|o| o.eq_ignore_ascii_case("DESC"));

    let ids = query
        .get("ID")
        .filter(|v| !v.is_null())
        .and_then(int_filter);
    let parents = query
        .get("PARENT")
        .filter(|v| !v.is_null())
        .and_then(int_filter);
    let heads = query
        .get("UF_HEAD")
        .filter(|v| !v.is_null())
        .and_then(int_filter);
    let sorts = query.get("SORT").filter(|v| !v.is_null()).map(php::intval);
    let names: Option<Vec<String>> = query
        .get("NAME")
        .map(|v| {
            php::values(v)
                .iter()
                .filter_map(php::to_string)
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
        })
        .filter(|v| !v.is_empty());

    let dir = &ctx.state.directory;
    let mut rows: Vec<&Department> = tree_order(dir)
        .into_iter()
        .filter(|d| ids.as_ref().is_none_or(|ids| ids.contains(&(d.id as i64))))
        .filter(|d| {
            parents
                .as_ref()
                .is_none_or(|p| p.contains(&(d.parent.unwrap_or(0) as i64)))
        })
        .filter(|d| {
            heads
                .as_ref()
                .is_none_or(|h| h.contains(&(d.head.unwrap_or(0) as i64)))
        })
        .filter(|d| sorts.is_none_or(|s| s == d.sort))
        .filter(|d| {
            names
                .as_ref()
                .is_none_or(|n| n.iter().any(|n| php::like(&d.name, n)))
        })
        .collect();
    if let Some(field) = sort_field {
        rows.sort_by(|a, b| {
            let ord = match field.as_str() {
                "ID" => a.id.cmp(&b.id),
                "NAME" => a.name.to_lowercase().cmp(&b.name.to_lowercase()),
                "SORT" => a.sort.cmp(&b.sort),
                "PARENT" => a.parent.cmp(&b.parent),
                "UF_HEAD" => a.head.cmp(&b.head),
                _ => Ordering::Equal,
            };
            if desc {
                ord.reverse()
            } else {
                ord
            }
        });
    }
    // Paged by page number: start 10 is still the first page of 50.
    let offset = (start / 50) * 50;
    let total = rows.len();
    let result: Vec<Value> = rows
        .iter()
        .skip(offset)
        .take(50)
        .map(|d| render(d))
        .collect();
    Ok(Reply {
        result: Value::Array(result),
        total: Some(total as u64),
        next: (offset + 50 < total).then_some((offset + 50) as u64),
    })
}
