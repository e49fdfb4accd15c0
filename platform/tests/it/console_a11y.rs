//! Accessibility of every console page in a real browser: each form control has a label (or an
//! accessible name), each button a name, each image alternative text, and the keyboard focus is
//! visible on everything Tab reaches.

use serde_json::{Value, json};

use crate::fixture::{ADMIN_PASSWORD, MGMT_ADMIN};
use crate::supervisor::start_server;
use crate::webdriver::Browser;

const TAB: &str = "\u{E004}";

/// Controls without a label, buttons without a name, images without alternative text.
const UNNAMED: &str = r#"
const problems = [];
const named = (el) => (el.labels && el.labels.length) || el.getAttribute('aria-label')
  || el.getAttribute('aria-labelledby') || el.getAttribute('title');
for (const el of document.querySelectorAll('input, select, textarea, progress')) {
  if (el.type !== 'hidden' && !named(el)) problems.push('no label: ' + el.outerHTML.slice(0, 120));
}
for (const el of document.querySelectorAll('button')) {
  if (!el.textContent.trim() && !el.getAttribute('aria-label')) problems.push('no name: ' + el.outerHTML.slice(0, 120));
}
for (const el of document.querySelectorAll('img')) {
  if (!el.hasAttribute('alt')) problems.push('no alt: ' + el.outerHTML.slice(0, 120));
}
for (const el of document.querySelectorAll('svg[role=img], [role=img]')) {
  if (!el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby')) problems.push('no alt: ' + el.outerHTML.slice(0, 120));
}
return problems;
"#;

/// The focused element, and whether its focus indicator shows (an outline or a box shadow).
const FOCUSED: &str = r#"
const el = document.activeElement;
if (!el || el === document.body) return null;
const s = getComputedStyle(el);
const outline = s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0;
const shadow = s.boxShadow && s.boxShadow !== 'none';
const id = el.tagName + (el.id ? '#' + el.id : '') + ' ' + (el.textContent || el.getAttribute('aria-label') || '').trim().slice(0, 40);
return {id, visible: outline || shadow};
"#;

fn check_page(browser: &Browser, path: &str, ready: &str) {
    browser.goto(path);
    browser.find(ready);
    let problems = browser.script(UNNAMED, json!([]));
    assert_eq!(problems, json!([]), "{path}");
    // Tab through the page from the top until the focus comes back round (or 100 steps).
    browser.script("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); return true;", json!([]));
    let mut seen: Vec<String> = Vec::new();
    for _ in 0..100 {
        browser.press(TAB);
        let focused: Value = browser.script(FOCUSED, json!([]));
        let Some(id) = focused["id"].as_str() else {
            continue;
        };
        if seen.iter().any(|s| s == id) {
            break;
        }
        assert_eq!(focused["visible"], true, "{path}: no visible focus on {id}");
        seen.push(id.to_owned());
    }
    assert!(seen.len() >= 3, "{path}: Tab reached only {seen:?}");
}

#[test]
fn every_console_page_labels_its_controls_and_shows_focus() {
    let (_cleanup, server) = start_server(&[]);
    let app = server
        .req("POST", "/application/applications")
        .basic(MGMT_ADMIN, ADMIN_PASSWORD)
        .json(&json!({"name": "a11y", "key": "a11y-key", "type": "MICROSERVICE"}))
        .send()
        .expect(201)
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let browser = Browser::start(&server.https, 1280, 800);
    browser.goto("/console/login");
    check_page(&browser, "/console/login", "form#login");
    browser.sign_in("management", "admin", ADMIN_PASSWORD);
    let pages = [
        ("/console/applications".to_owned(), "#apps tbody tr"),
        (format!("/console/applications/{app}"), "#versions tbody tr"),
        (format!("/console/applications/{app}/logs/x"), "#log-search"),
        ("/console/alarms".to_owned(), "#alarm-list tbody tr"),
        ("/console/tenants".to_owned(), "#tenant-list tbody tr"),
        ("/console/users".to_owned(), "#member-group option"),
        ("/console/options".to_owned(), "#option-list tbody tr"),
        ("/console/audit".to_owned(), "#audit-list tbody tr"),
    ];
    for (path, ready) in &pages {
        check_page(&browser, path, ready);
    }
}
