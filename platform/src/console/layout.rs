//! The frame every console page shares: head, skip link, navigation, message area.

use maud::{DOCTYPE, Markup, html};

/// Navigation entries: path, label, and the page key that marks the entry current.
const NAV: &[(&str, &str, &str)] = &[
    ("/console/applications", "Applications", "applications"),
    ("/console/alarms", "Alarms", "alarms"),
    ("/console/tenants", "Tenants", "tenants"),
    ("/console/users", "Users", "users"),
    ("/console/options", "Options", "options"),
    ("/console/audit", "Audit log", "audit"),
];

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Berth" }
            link rel="stylesheet" href="/console/static/console.css";
            script src="/console/static/console.js" defer {}
        }
    }
}

/// A signed-in page: `page` selects the script that fills it, `section` the current nav entry.
pub fn page(title: &str, page: &str, section: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body data-page=(page) {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/console/applications" { "Berth" }
                    nav aria-label="Main" {
                        ul {
                            @for (href, label, key) in NAV {
                                li {
                                    @if *key == section {
                                        a href=(href) aria-current="page" { (label) }
                                    } @else {
                                        a href=(href) { (label) }
                                    }
                                }
                            }
                        }
                    }
                    div.who {
                        span #who {}
                        button #signout type="button" { "Sign out" }
                    }
                }
                div #flash role="alert" hidden {}
                main #main tabindex="-1" {
                    h1 #title { (title) }
                    (body)
                }
            }
        }
    }
}

/// The sign-in page (no navigation).
pub fn bare(title: &str, page: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body data-page=(page) {
                div #flash role="alert" hidden {}
                main #main.narrow tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}
