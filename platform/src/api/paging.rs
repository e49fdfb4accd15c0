//! Collection paging: `currentPage`, `pageSize` (default 5, trimmed to 2000), `withTotalPages`,
//! `withTotalElements`, and the `statistics`/`self`/`next`/`prev` fields of every collection.

use std::collections::HashMap;

use actix_web::HttpRequest;
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::media::base_url;
use crate::store::Page;

pub const DEFAULT_PAGE_SIZE: u64 = 5;
pub const MAX_PAGE_SIZE: u64 = 2000;

#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub current_page: u64,
    pub page_size: u64,
    pub with_total_pages: bool,
    pub with_total_elements: bool,
}

impl PageRequest {
    /// Reads the paging parameters; unparsable values are a 422 naming the parameter.
    pub fn from_query(query: &HashMap<String, String>) -> Result<PageRequest, ApiError> {
        let number = |name: &str, default: u64| -> Result<u64, ApiError> {
            match query.get(name) {
                None => Ok(default),
                Some(text) => text.parse::<u64>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    ApiError::invalid(
                        "general",
                        &format!("{name} must be a positive integer, got {text:?}"),
                    )
                }),
            }
        };
        let flag = |name: &str| {
            query
                .get(name)
                .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        };
        Ok(PageRequest {
            current_page: number("currentPage", 1)?,
            page_size: number("pageSize", DEFAULT_PAGE_SIZE)?.min(MAX_PAGE_SIZE),
            with_total_pages: flag("withTotalPages"),
            with_total_elements: flag("withTotalElements"),
        })
    }

    pub fn window(&self) -> Page {
        Page {
            offset: (self.current_page - 1).saturating_mul(self.page_size),
            limit: self.page_size,
        }
    }

    /// The collection body: `{<key>: items, statistics, self, next?, prev?}`.
    pub fn collection(&self, req: &HttpRequest, key: &str, items: Vec<Value>, total: u64) -> Value {
        let mut statistics = Map::new();
        statistics.insert("currentPage".into(), json!(self.current_page));
        statistics.insert("pageSize".into(), json!(self.page_size));
        if self.with_total_pages {
            statistics.insert("totalPages".into(), json!(total.div_ceil(self.page_size)));
        }
        if self.with_total_elements {
            statistics.insert("totalElements".into(), json!(total));
        }
        let mut body = Map::new();
        let shown = self.window().offset + items.len() as u64;
        body.insert(key.into(), Value::Array(items));
        body.insert("statistics".into(), Value::Object(statistics));
        body.insert("self".into(), json!(self.page_url(req, self.current_page)));
        if shown < total {
            body.insert(
                "next".into(),
                json!(self.page_url(req, self.current_page + 1)),
            );
        }
        if self.current_page > 1 {
            body.insert(
                "prev".into(),
                json!(self.page_url(req, self.current_page - 1)),
            );
        }
        Value::Object(body)
    }

    fn page_url(&self, req: &HttpRequest, page: u64) -> String {
        let mut params: Vec<(String, String)> = url_pairs(req.query_string())
            .into_iter()
            .filter(|(k, _)| k != "currentPage" && k != "pageSize")
            .collect();
        params.push(("pageSize".into(), self.page_size.to_string()));
        params.push(("currentPage".into(), page.to_string()));
        let query = params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        format!("{}{}?{}", base_url(req), req.path(), query)
    }
}

/// A collection of `items` the store returns whole (a user's groups and roles, a group's roles),
/// paged here exactly like the collections paged in SQL: `currentPage` past the end is an empty
/// page, so a client that walks pages until one is empty stops.
pub fn page_of(
    req: &HttpRequest,
    query: &HashMap<String, String>,
    key: &str,
    items: Vec<Value>,
) -> Result<Value, ApiError> {
    let page = PageRequest::from_query(query)?;
    let total = items.len() as u64;
    let window = page.window();
    let shown = items
        .into_iter()
        .skip(usize::try_from(window.offset).unwrap_or(usize::MAX))
        .take(usize::try_from(window.limit).unwrap_or(usize::MAX))
        .collect();
    Ok(page.collection(req, key, shown, total))
}

/// Raw `key=value` pairs of a query string, kept encoded (they are only echoed back).
fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (p.to_owned(), String::new()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn page_parameters_default_trim_and_reject() {
        type Pairs = &'static [(&'static str, &'static str)];
        let cases: [(Pairs, Option<(u64, u64)>); 5] = [
            (&[], Some((1, 5))),
            (&[("pageSize", "5000")], Some((1, 2000))),
            (&[("currentPage", "3"), ("pageSize", "10")], Some((3, 10))),
            (&[("pageSize", "0")], None),
            (&[("currentPage", "x")], None),
        ];
        for (pairs, expected) in cases {
            let got = PageRequest::from_query(&query(pairs))
                .ok()
                .map(|p| (p.current_page, p.page_size));
            assert_eq!(got, expected, "{pairs:?}");
        }
        let page =
            PageRequest::from_query(&query(&[("currentPage", "3"), ("pageSize", "10")])).unwrap();
        assert_eq!(page.window().offset, 20);
    }
}
