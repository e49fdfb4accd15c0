//! Integration tests of the `berth` server: every test runs the real binary on a temporary
//! data directory and talks to it over real TLS (and plain HTTP where asked).

// Tests block on purpose (polling the server from plain threads), never on a runtime worker.
#![allow(clippy::disallowed_methods)]

mod applications;
mod bad_input;
mod browser_netns;
mod churn;
mod clients;
mod connections;
mod consistency;
mod console;
mod console_a11y;
mod console_admin;
mod console_versions;
mod crash_scale;
mod crash_tools;
mod crash_trials;
mod credentials;
mod cross_site;
mod escalation;
mod exec_probes;
mod faults;
mod fixture;
mod hardening;
mod held;
mod holders;
mod hostile_packages;
mod hygiene;
mod inspect;
mod interruptions;
mod log_streams;
mod login;
mod manifest_budget;
mod operate;
mod options;
mod package_agreement;
mod proxy;
mod proxy_framing;
mod proxy_limits;
mod proxy_streams;
mod restart;
mod revisions;
mod serve;
mod storage_quota;
mod subscriptions;
mod supervisor;
mod swarm;
mod tenants;
mod tenants_many;
mod tls_reload;
mod upload;
mod upload_arriving;
mod upload_networks;
mod usage_history;
mod users;
mod versions;
mod webdriver;
