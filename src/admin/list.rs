//! Lists as wazo-confd serves them (SPEC §9.2): `search` (a case-insensitive substring of
//! the names, descriptions, extensions and numbers), exact filters by any scalar key
//! (`?mode=deny`), `order`, `direction`, `limit` and `offset`, answered as
//! `{"items": [...], "total": N}` where `total` counts the matches before paging.

use std::cmp::Ordering;

use serde_json::{json, Map, Value as Json};

use super::edit::scalar_text;
use super::error::ApiError;

/// The keys `search` looks in.
const SEARCHED: [&str; 9] = [
    "name",
    "description",
    "extension",
    "extensions",
    "number",
    "numbers",
    "did",
    "patterns",
    "uuid",
];

/// Query keys that are not filters.
const RESERVED: [&str; 7] = [
    "search",
    "order",
    "direction",
    "limit",
    "offset",
    "tenant",
    // wazo-confd's clients send it; there are no sub-tenants here.
    "recurse",
];

/// Filters, orders and pages `items` as the query says; every bad parameter is reported.
pub fn page(items: Vec<Map<String, Json>>, query: &[(String, String)]) -> Result<Json, ApiError> {
    let mut errors = Vec::new();
    let get = |k: &str| {
        query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let number = |k: &str, errors: &mut Vec<String>| -> Option<usize> {
        let v = get(k)?;
        match v.parse::<usize>() {
            Ok(n) => Some(n),
            Err(_) => {
                errors.push(format!("{k}: `{v}` is not a whole number of 0 or more"));
                None
            }
        }
    };
    let limit = number("limit", &mut errors);
    let offset = number("offset", &mut errors).unwrap_or(0);
    let descending = match get("direction") {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(d) => {
            errors.push(format!("direction: `{d}` is neither asc nor desc"));
            false
        }
    };
    // Keys every item has, with scalar values: what can be filtered and ordered by.
    let scalar_keys: Vec<String> = match items.first() {
        Some(first) => first
            .iter()
            .filter(|(_, v)| scalar_text(v).is_some())
            .map(|(k, _)| k.clone())
            .collect(),
        None => Vec::new(),
    };
    let known = |k: &str| scalar_keys.iter().any(|s| s == k) || items.is_empty();
    let order = get("order");
    if let Some(o) = order.filter(|o| !known(o)) {
        errors.push(format!("order: `{o}` is not a key that can be ordered by"));
    }
    let mut filters = Vec::new();
    for (k, v) in query {
        if RESERVED.contains(&k.as_str()) {
            continue;
        }
        if known(k) {
            filters.push((k.as_str(), v.as_str()));
        } else {
            errors.push(format!("{k}: not a key that can be filtered by"));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let search = get("search").map(str::to_lowercase);
    let mut matched: Vec<Map<String, Json>> = items
        .into_iter()
        .filter(|item| {
            filters
                .iter()
                .all(|(k, v)| item.get(*k).and_then(scalar_text).as_deref() == Some(*v))
        })
        .filter(|item| search.as_deref().is_none_or(|s| searched(item, s)))
        .collect();
    if let Some(o) = order {
        matched.sort_by(|a, b| compare(a.get(o), b.get(o)));
    }
    if descending {
        matched.reverse();
    }
    let total = matched.len();
    let items: Vec<Json> = matched
        .into_iter()
        .skip(offset)
        .take(limit.unwrap_or(usize::MAX))
        .map(Json::Object)
        .collect();
    Ok(json!({ "items": items, "total": total }))
}

/// Whether `needle` (lowercase) is in one of the searched keys of `item`.
fn searched(item: &Map<String, Json>, needle: &str) -> bool {
    SEARCHED.iter().any(|k| match item.get(*k) {
        Some(Json::String(s)) => s.to_lowercase().contains(needle),
        Some(Json::Array(a)) => a
            .iter()
            .filter_map(Json::as_str)
            .any(|s| s.to_lowercase().contains(needle)),
        _ => false,
    })
}

/// Order of two scalar values: null first, numbers by value, the rest by their text.
fn compare(a: Option<&Json>, b: Option<&Json>) -> Ordering {
    match (a, b) {
        (Some(Json::Number(x)), Some(Json::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (None | Some(Json::Null), None | Some(Json::Null)) => Ordering::Equal,
        (None | Some(Json::Null), _) => Ordering::Less,
        (_, None | Some(Json::Null)) => Ordering::Greater,
        (Some(x), Some(y)) => scalar_text(x).cmp(&scalar_text(y)),
    }
}
