//! A small W3C WebDriver client over HTTP (ureq), driving headless Chromium through Debian's
//! `chromedriver`: enough for the console tests (navigate, find, type, click, read text, run a
//! script, screenshot). One chromedriver process per browser, killed on drop.

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::browser_netns::BrowserNetns;

/// The W3C key of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long a page may take to show what a test waits for (Docker work included).
pub const DEADLINE: Duration = Duration::from_secs(90);

pub struct Browser {
    driver: Child,
    base: String,
    agent: ureq::Agent,
    /// The Berth server's https base URL, as the browser reaches it (through the relay).
    pub site: String,
    profile: tempfile::TempDir,
    /// Last: dropped after chromedriver is gone.
    _netns: BrowserNetns,
}

/// chromedriver's port inside the browser's own namespace (nothing else listens there).
const DRIVER_PORT: u16 = 9515;

/// Where the flows' screenshots go: `target/console-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .join("target/console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    dir
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session at `width`×`height`, trusting the
    /// test server's self-signed certificate.
    pub fn start(site: &str, width: u32, height: u32) -> Browser {
        let netns = BrowserNetns::create();
        let target = site
            .trim_end_matches('/')
            .strip_prefix("https://")
            .expect("an https site");
        let site = format!("https://{}", netns.relay(target));
        let driver = netns
            .command("chromedriver")
            .arg(format!("--port={DRIVER_PORT}"))
            .arg(format!("--allowed-ips={}", netns.host_ip))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver, installed by .ci/run)");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        let base = format!("http://{}:{DRIVER_PORT}", netns.ns_ip);
        let end = Instant::now() + Duration::from_secs(30);
        while agent.get(&format!("{base}/status")).call().is_err() {
            assert!(Instant::now() < end, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().expect("profile directory");
        let mut browser = Browser {
            driver,
            base,
            agent,
            site,
            profile,
            _netns: netns,
        };
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            // The test server's certificate is self-signed (acceptInsecureCerts covers navigation only).
            "--ignore-certificate-errors".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", browser.profile.path().display()),
        ];
        let session = browser.call(
            "POST",
            "/session",
            json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "acceptInsecureCerts": true,
                "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
            }}}),
        );
        let id = session["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {session}"))
            .to_owned();
        browser.base = format!("{}/session/{id}", browser.base);
        browser
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let mut response = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self.agent.post(&url).send_json(&body),
        }
        .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let status = response.status().as_u16();
        let value: Value = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_json()
            .unwrap_or(Value::Null);
        assert!(status < 300, "WebDriver {method} {path}: {status} {value}");
        value["value"].clone()
    }

    /// Like `call`, but a WebDriver error (e.g. no such element) is None.
    fn try_call(&self, path: &str, body: Value) -> Option<Value> {
        let url = format!("{}{path}", self.base);
        let mut response = self.agent.post(&url).send_json(&body).ok()?;
        let value: Value = response.body_mut().read_json().ok()?;
        (response.status().as_u16() < 300).then(|| value["value"].clone())
    }

    pub fn goto(&self, path: &str) {
        self.call(
            "POST",
            "/url",
            json!({"url": format!("{}{path}", self.site)}),
        );
    }

    pub fn url(&self) -> String {
        self.call("GET", "/url", Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The first element matching `css` now, if any.
    pub fn find_now(&self, css: &str) -> Option<String> {
        self.try_call("/element", json!({"using": "css selector", "value": css}))
            .and_then(|v| v[ELEMENT].as_str().map(str::to_owned))
    }

    /// Waits for an element matching `css`.
    pub fn find(&self, css: &str) -> String {
        self.wait(&format!("element {css}"), || self.find_now(css))
    }

    pub fn click(&self, css: &str) {
        let element = self.find(css);
        self.call("POST", &format!("/element/{element}/click"), json!({}));
    }

    /// Presses and releases one key (a WebDriver key code such as `\u{E004}`, Tab) on the
    /// focused element, as a keyboard user would.
    pub fn press(&self, key: &str) {
        self.call(
            "POST",
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
                {"type": "keyDown", "value": key},
                {"type": "keyUp", "value": key},
            ]}]}),
        );
    }

    /// Accepts the page's `confirm()` dialog, waiting for it to open.
    pub fn accept_dialog(&self) {
        self.wait("a dialog", || {
            self.try_call("/alert/accept", json!({})).map(|_| ())
        });
    }

    /// Types `text` into the field `css` (after clearing it; file inputs take a path).
    pub fn fill(&self, css: &str, text: &str) {
        let element = self.find(css);
        if self.script(
            "return arguments[0].type !== 'file'",
            json!([{ELEMENT: element}]),
        ) == json!(true)
        {
            self.call("POST", &format!("/element/{element}/clear"), json!({}));
        }
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            json!({"text": text}),
        );
    }

    /// The rendered text of `css` (waits for the element).
    pub fn text(&self, css: &str) -> String {
        let element = self.find(css);
        self.call("GET", &format!("/element/{element}/text"), Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Runs `body` (a function body) in the page with `args`; its return value.
    pub fn script(&self, body: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({"script": body, "args": args}),
        )
    }

    /// Polls `check` until it gives Some; panics with `what` and a screenshot after DEADLINE.
    pub fn wait<T>(&self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(v) = check() {
                return v;
            }
            if Instant::now() > end {
                let shot = self.screenshot(&format!(
                    "failed-{}",
                    what.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
                ));
                panic!(
                    "timed out waiting for {what} (screenshot {})",
                    shot.display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until the text of `css` contains `needle`; returns the text.
    pub fn wait_text(&self, css: &str, needle: &str) -> String {
        self.wait(&format!("{needle:?} in {css}"), || {
            let element = self.find_now(css)?;
            let text = self.try_get(&format!("/element/{element}/text"))?;
            let text = text.as_str()?.to_owned();
            text.contains(needle).then_some(text)
        })
    }

    fn try_get(&self, path: &str) -> Option<Value> {
        let mut response = self
            .agent
            .get(&format!("{}{path}", self.base))
            .call()
            .ok()?;
        let value: Value = response.body_mut().read_json().ok()?;
        (response.status().as_u16() < 300).then(|| value["value"].clone())
    }

    /// Saves a PNG of the viewport under `target/console-screenshots/<name>.png`.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let data = self.call("GET", "/screenshot", Value::Null);
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or_default())
            .expect("base64 PNG");
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    pub fn resize(&self, width: u32, height: u32) {
        self.call(
            "POST",
            "/window/rect",
            json!({"width": width, "height": height}),
        );
    }

    /// Signs in through the console's login page and waits for the applications list.
    pub fn sign_in(&self, tenant: &str, user: &str, password: &str) {
        self.goto("/console/login");
        self.fill("#tenant", tenant);
        self.fill("#username", user);
        self.fill("#password", password);
        self.click("form#login button[type=submit]");
        self.wait("the applications page", || {
            self.url().ends_with("/console/applications").then_some(())
        });
        self.wait_text("#who", user);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.agent.delete(&self.base).call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
