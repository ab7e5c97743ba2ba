//! The web UI of `durable serve` in a real headless Chromium (Debian's
//! `chromium`, driven over WebDriver by Debian's `chromedriver`): pages
//! loaded from a real server process, clicked and read like a person would.
//!
//! `scripts/setup-browser.sh` installs both (the README's test command runs
//! it). Screenshots of the pages go to `target/ui/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::server::Server;
use crate::util::{Env, wasm};

const HIRE: &str = r#"{"name":"Ada Lovelace","email":"ada@example.com","team":"engineering"}"#;

/// A chromedriver process (and the Chromium it starts) of one test, in its
/// own process group so that both are stopped by pid when the test ends.
pub(crate) struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Driver {
    pub(crate) fn start() -> Driver {
        for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            assert!(
                std::path::Path::new(tool).exists(),
                "{tool} is missing: the UI tests need Debian's chromium and chromium-driver \
                 (scripts/setup-browser.sh installs them; scripts/test.sh runs it)"
            );
        }
        let profile = tempfile::tempdir().expect("a profile directory");
        // A free port for chromedriver; retried if another process takes it
        // between the probe and the start.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let mut cmd = Command::new("/usr/bin/chromedriver");
            cmd.arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
            let mut child = cmd.spawn().expect("chromedriver starts");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Driver {
                        child,
                        port,
                        _profile: profile,
                    };
                }
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("chromedriver did not start");
    }

    /// A WebDriver session in a new headless Chromium, with `extra` flags.
    pub(crate) async fn browser(&self, extra: &[&str]) -> Client {
        let profile = tempfile::tempdir_in(self._profile.path()).expect("a profile");
        let mut args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--window-size=1400,1000".into(),
            format!("--user-data-dir={}", profile.keep().display()),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let options = json!({ "binary": "/usr/bin/chromium", "args": args });
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), options);
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a browser session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group of a child this test spawned
        // (chromedriver and the Chromium processes it started).
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Runs an async test body on its own runtime.
pub(crate) fn block_on<F: std::future::Future<Output = ()>>(body: F) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(body);
}

/// Where screenshots go: `target/ui/`.
fn shots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target/tmp is in target/")
        .join("ui");
    std::fs::create_dir_all(&dir).expect("target/ui");
    dir
}

pub(crate) async fn screenshot(b: &Client, name: &str) {
    let png = b.screenshot().await.expect("a screenshot");
    std::fs::write(shots().join(name), png).expect("writing the screenshot");
}

/// Evaluates `expr` (a JavaScript expression) in the page.
pub(crate) async fn eval(b: &Client, expr: &str) -> Value {
    b.execute(&format!("return ({expr});"), vec![])
        .await
        .unwrap_or_else(|e| panic!("evaluating {expr}: {e}"))
}

/// Waits up to 20 s until `expr` is true in the page; on failure, saves a
/// screenshot and shows the page's text.
pub(crate) async fn until(b: &Client, what: &str, expr: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if eval(b, expr).await == Value::Bool(true) {
            return;
        }
        if Instant::now() > deadline {
            let name = format!(
                "failed-{}.png",
                what.replace(|c: char| !c.is_alphanumeric(), "-")
            );
            screenshot(b, &name).await;
            let text = eval(b, "document.body.innerText").await;
            panic!(
                "waited 20 s for {what} ({expr}); the page (screenshot target/ui/{name}) says:\n{}",
                text.as_str().unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn click(b: &Client, css: &str) {
    b.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
}

/// Replaces the text of the field `css` with `text`.
async fn type_into(b: &Client, css: &str, text: &str) {
    let field = b
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"));
    field.clear().await.expect("clear");
    field.send_keys(text).await.expect("type");
}

/// Chooses registered workflow `name` in the start form, once listed.
async fn choose_workflow(b: &Client, name: &str) {
    until(
        b,
        "the workflow in the start form",
        &format!(
            "[...document.querySelectorAll('#start-workflow option')].some(o => o.value === {})",
            json!(name)
        ),
    )
    .await;
    b.find(Locator::Css("#start-workflow"))
        .await
        .expect("the workflow list")
        .select_by_value(name)
        .await
        .unwrap_or_else(|e| panic!("choosing {name}: {e}"));
}

/// Answers the confirmation dialog with yes.
async fn confirm(b: &Client) {
    until(
        b,
        "the confirmation",
        "document.querySelector('#confirm')?.open === true",
    )
    .await;
    click(b, "#confirm-yes").await;
}

/// The browser's view of a bar: data attributes and where it is drawn.
async fn bar(b: &Client, key: &str) -> Value {
    eval(
        b,
        &format!(
            "(() => {{ const e = document.querySelector('#timeline .bar[data-key={k}]');
                 if (!e) return null;
                 const r = e.getBoundingClientRect();
                 return {{source: e.dataset.source, drive: Number(e.dataset.drive),
                          start: Number(e.dataset.startMs), end: Number(e.dataset.endMs),
                          left: r.left, right: r.right, top: r.top, width: r.width}}; }})()",
            k = json!(key)
        ),
    )
    .await
}

/// The demo's run: `durable run` killed right after `create_record#1`
/// commits, then a server that takes the run up and finishes it.
fn onboarding_demo(env: &Env) -> Server {
    env.crash_after(
        &wasm("onboarding"),
        HIRE,
        "onboarding-demo",
        "create_record#1",
    );
    let server = Server::start(env, &[]);
    assert_eq!(server.result("onboarding-demo")["status"], "succeeded");
    server
}

/// The onboarding demo as the README shows it (a crash right after
/// `create_record` commits, then the server resumes it) on the run's own
/// page: three bars, the parallel two overlapping, `create_record`
/// recovered from drive 1; a step's detail; the runs list; a fork.
#[test]
fn the_run_page_draws_the_onboarding_demo_after_a_crash_and_forks_from_a_step() {
    let env = Env::new();
    let server = onboarding_demo(&env);
    let driver = Driver::start();
    block_on(async {
        let b = driver.browser(&[]).await;
        let base = format!("http://127.0.0.1:{}", server.port);

        // The run's own URL loads directly.
        b.goto(&format!("{base}/runs/onboarding-demo"))
            .await
            .expect("the run page");
        until(
            &b,
            "three step bars",
            "document.querySelectorAll('#timeline .bar').length === 3",
        )
        .await;
        until(
            &b,
            "the status",
            "document.querySelector('#run-status')?.textContent.trim() === 'succeeded'",
        )
        .await;
        let create = bar(&b, "create_record#1").await;
        let laptop = bar(&b, "provision_laptop#1").await;
        let access = bar(&b, "grant_access#1").await;
        assert_eq!(
            (&create["source"], &create["drive"]),
            (&json!("recovered"), &json!(1))
        );
        for step in [&laptop, &access] {
            assert_eq!(
                (&step["source"], &step["drive"]),
                (&json!("executed"), &json!(2))
            );
        }
        // The parallel calls overlap in time, and on the screen.
        let (l, a) = (&laptop, &access);
        let num = |v: &Value| v.as_f64().expect("a number");
        assert!(
            num(&l["start"]) < num(&a["end"]) && num(&a["start"]) < num(&l["end"]),
            "the parallel steps do not overlap in time: {l} {a}"
        );
        let overlap = num(&l["right"]).min(num(&a["right"])) - num(&l["left"]).max(num(&a["left"]));
        assert!(
            overlap > 0.5 * num(&l["width"]).min(num(&a["width"])),
            "the parallel bars are not drawn side by side in time: {l} {a}"
        );
        assert!(
            num(&create["right"]) <= num(&l["left"]) + 1.0,
            "create_record is drawn before the parallel steps: {create} {l}"
        );
        assert!(num(&l["width"]) > 20.0, "the 300 ms bars are visible: {l}");
        screenshot(&b, "run.png").await;

        // A step's detail: its output, input and idempotency key.
        click(&b, "#timeline .bar[data-key='grant_access#1']").await;
        until(
            &b,
            "the step's detail",
            "document.querySelector('#step-detail')?.dataset.key === 'grant_access#1'
             && document.querySelector('#step-detail [data-field=output]')?.textContent.includes('engineering-oncall')",
        )
        .await;
        let detail = eval(&b, "document.querySelector('#step-detail').innerText").await;
        let detail = detail.as_str().unwrap_or_default();
        assert!(
            detail.contains("onboarding-demo/grant_access#1"),
            "{detail}"
        );
        assert!(detail.contains("EMP-"), "the step's input: {detail}");
        screenshot(&b, "step.png").await;
        // The open step is in the URL: a reload opens it again.
        b.refresh().await.expect("reload");
        until(
            &b,
            "the step after a reload",
            "document.querySelector('#step-detail')?.dataset.key === 'grant_access#1'",
        )
        .await;

        // Fork from provision_laptop#1: a new run that takes create_record
        // from the original and runs the rest again.
        click(&b, "#timeline .bar[data-key='provision_laptop#1']").await;
        until(
            &b,
            "provision_laptop's detail",
            "document.querySelector('#step-detail')?.dataset.key === 'provision_laptop#1'",
        )
        .await;
        click(&b, "#fork-step").await;
        confirm(&b).await;
        until(
            &b,
            "the forked run's page",
            "location.pathname.startsWith('/runs/') && location.pathname !== '/runs/onboarding-demo'
             && document.querySelector('#run-status')?.textContent.trim() === 'succeeded'",
        )
        .await;
        let path = eval(&b, "decodeURIComponent(location.pathname)").await;
        let forked = path
            .as_str()
            .unwrap_or_default()
            .trim_start_matches("/runs/")
            .to_string();
        let (_, shown) = server.call("GET", &format!("/v1/runs/{forked}"), b"");
        assert_eq!(
            shown["forked_from"], "onboarding-demo/provision_laptop#1",
            "{shown}"
        );
        assert_eq!(shown["status"], "succeeded");

        // The runs list: both runs, newest first, with their status.
        b.goto(&base).await.expect("the runs list");
        until(
            &b,
            "two runs listed",
            "document.querySelectorAll('#runs tr[data-run-id]').length === 2",
        )
        .await;
        let listed = eval(
            &b,
            "[...document.querySelectorAll('#runs tr[data-run-id]')].map(r => [r.dataset.runId, r.dataset.status])",
        )
        .await;
        assert_eq!(
            listed,
            json!([[forked, "succeeded"], ["onboarding-demo", "succeeded"]])
        );
        // The id search narrows the list (the fork's id is the original's
        // with `-fork-...`).
        type_into(&b, "#search", "onboarding-demo-").await;
        until(
            &b,
            "the search",
            &format!(
                "[...document.querySelectorAll('#runs tr[data-run-id]')].map(r => r.dataset.runId).join() === {}",
                json!(forked)
            ),
        )
        .await;
        type_into(&b, "#search", "").await;
        until(
            &b,
            "the list again",
            "document.querySelectorAll('#runs tr[data-run-id]').length === 2",
        )
        .await;
        screenshot(&b, "runs.png").await;
        // A link in the list leads to the run.
        click(&b, "#runs tr[data-run-id='onboarding-demo'] a").await;
        until(
            &b,
            "the run page from the list",
            "location.pathname === '/runs/onboarding-demo'
             && document.querySelectorAll('#timeline .bar').length === 3",
        )
        .await;
        b.close().await.expect("closing the browser");
    });
}

/// The actions, on a server with a token: log in, start a run of a
/// registered workflow, watch it wait, send it its event and see it finish
/// without a reload; cancel another; bad JSON is refused before sending.
#[test]
fn actions_from_the_ui_start_a_run_send_its_event_and_cancel_another() {
    let env = Env::new();
    let token = "ui-test-token";
    let server = Server::start(&env, &["--token", token]);
    let digest = server.upload("approval");
    let (status, body) = server.json(
        "POST",
        "/v1/workflows",
        &json!({"name": "approval", "component": digest}),
    );
    assert_eq!(status, 201, "{body}");
    let driver = Driver::start();
    block_on(async {
        let b = driver.browser(&[]).await;
        let base = format!("http://127.0.0.1:{}", server.port);
        b.goto(&base).await.expect("the runs list");

        // The API answers 401: the page asks for the token.
        until(&b, "the token field", "document.querySelector('#token-input') !== null && document.querySelector('#token-input').offsetParent !== null").await;
        type_into(&b, "#token-input", token).await;
        click(&b, "#token-save").await;
        // Start a run of the registered workflow.
        choose_workflow(&b, "approval").await;
        type_into(&b, "#start-input", "{\"report\": \"R-1\", \"amount\": ").await;
        until(
            &b,
            "bad JSON refused",
            "document.querySelector('#start-submit').disabled === true",
        )
        .await;
        type_into(
            &b,
            "#start-input",
            r#"{"report": "R-1", "amount": 120, "approval_timeout_ms": 600000, "pay_delay_ms": 10}"#,
        )
        .await;
        type_into(&b, "#start-id", "expense-1").await;
        click(&b, "#start-submit").await;
        confirm(&b).await;
        until(
            &b,
            "the new run waiting for its event",
            "location.pathname === '/runs/expense-1'
             && document.querySelector('#run-status')?.textContent.trim() === 'waiting'",
        )
        .await;

        // Send the event: invalid JSON first (refused in the page), then
        // the approval; the page follows the run to its end by itself.
        type_into(&b, "#event-name", "approval").await;
        type_into(&b, "#event-data", "{approved: yes}").await;
        until(
            &b,
            "the event's bad JSON refused",
            "document.querySelector('#event-send').disabled === true",
        )
        .await;
        type_into(&b, "#event-data", r#"{"approved": true, "by": "grace"}"#).await;
        click(&b, "#event-send").await;
        confirm(&b).await;
        until(
            &b,
            "the run finished after its event",
            "document.querySelector('#run-status')?.textContent.trim() === 'succeeded'",
        )
        .await;
        let (_, result) = server.call("GET", "/v1/runs/expense-1/result", b"");
        assert_eq!(result["output"]["by"], "grace", "{result}");
        // The wait's record spans the wait: from its first call (before the
        // event was sent from the page) to the event.
        let (_, shown) = server.call("GET", "/v1/runs/expense-1", b"");
        let wait = shown["steps"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["key"] == "$event:approval#1"))
            .unwrap_or_else(|| panic!("no event wait in {shown}"));
        let sent = shown["events"][0]["sent_at_ms"].as_i64().expect("sent");
        assert!(
            wait["started_at_ms"].as_i64().expect("start") < sent
                && wait["finished_at_ms"].as_i64().expect("end") >= sent,
            "the wait's record does not span the wait: {wait} (event sent at {sent})"
        );
        until(
            &b,
            "the event wait and the sleep drawn",
            "document.querySelector('#timeline .bar[data-key=\"$event:approval#1\"]') !== null
             && document.querySelector('#timeline .bar[data-key=\"$sleep#1\"]') !== null",
        )
        .await;

        // Cancel another waiting run from its page.
        let (status, _) = server.json(
            "POST",
            "/v1/runs",
            &json!({"workflow": "approval", "id": "expense-2",
                    "input": {"report": "R-2", "amount": 5, "approval_timeout_ms": 600000}}),
        );
        assert_eq!(status, 201);
        b.goto(&format!("{base}/runs/expense-2"))
            .await
            .expect("the run page");
        until(
            &b,
            "the second run waiting",
            "document.querySelector('#run-status')?.textContent.trim() === 'waiting'",
        )
        .await;
        click(&b, "#cancel-run").await;
        confirm(&b).await;
        until(
            &b,
            "the run cancelled",
            "document.querySelector('#run-status')?.textContent.trim() === 'cancelled'",
        )
        .await;
        let (_, shown) = server.call("GET", "/v1/runs/expense-2", b"");
        assert_eq!(shown["status"], "cancelled", "{shown}");

        // The API's error is shown: the id of a run that exists, with
        // another input.
        b.goto(&base).await.expect("the runs list");
        choose_workflow(&b, "approval").await;
        type_into(&b, "#start-input", r#"{"report": "R-9"}"#).await;
        type_into(&b, "#start-id", "expense-1").await;
        click(&b, "#start-submit").await;
        confirm(&b).await;
        until(
            &b,
            "the API's error shown",
            "(document.querySelector('#error')?.textContent ?? '').includes('expense-1')",
        )
        .await;
        assert_eq!(eval(&b, "location.pathname").await, "/");
        b.close().await.expect("closing the browser");
    });
}

/// Text whose contrast with what is behind it is below WCAG AA (4.5:1):
/// `[text, ratio]` of each visible element that has its own text.
const LOW_CONTRAST: &str = r#"(() => {
  const rgb = c => { const m = c.match(/[\d.]+/g) || []; return m.map(Number); };
  const lum = ([r, g, b]) => [r, g, b].map(v => { v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); })
    .reduce((a, v, i) => a + v * [0.2126, 0.7152, 0.0722][i], 0);
  const behind = e => { for (; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) return c.slice(0, 3); }
    return [255, 255, 255]; };
  const low = [];
  for (const e of document.querySelectorAll('body *')) {
    const own = [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    const r = e.getBoundingClientRect();
    if (!own || r.width === 0 || r.height === 0 || getComputedStyle(e).visibility === 'hidden') continue;
    const a = lum(rgb(getComputedStyle(e).color).slice(0, 3)), b = lum(behind(e));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) low.push([e.textContent.trim().slice(0, 40), Math.round(ratio * 100) / 100]);
  }
  return low;
})()"#;

/// Both themes (the system's choice, `prefers-color-scheme`) keep every
/// text readable on the runs list and on a run with its step open; the
/// timeline works from the keyboard (Tab to a bar, Enter opens it).
#[test]
fn both_themes_are_readable_and_the_timeline_works_from_the_keyboard() {
    let env = Env::new();
    let server = onboarding_demo(&env);
    let driver = Driver::start();
    block_on(async {
        let base = format!("http://127.0.0.1:{}", server.port);
        for (theme, flags) in [
            ("light", &["--blink-settings=preferredColorScheme=1"][..]),
            ("dark", &["--blink-settings=preferredColorScheme=0"][..]),
        ] {
            let b = driver.browser(flags).await;
            let dark = eval(&b, "matchMedia('(prefers-color-scheme: dark)').matches").await;
            assert_eq!(dark, json!(theme == "dark"));
            b.goto(&base).await.expect("the runs list");
            until(
                &b,
                "the run listed",
                "document.querySelectorAll('#runs tr[data-run-id]').length === 1",
            )
            .await;
            let low = eval(&b, LOW_CONTRAST).await;
            assert_eq!(
                low,
                json!([]),
                "low contrast on the runs list, {theme} theme"
            );

            b.goto(&format!("{base}/runs/onboarding-demo"))
                .await
                .expect("the run");
            until(
                &b,
                "three bars",
                "document.querySelectorAll('#timeline .bar').length === 3",
            )
            .await;
            // From the keyboard: Tab until a bar has the focus, then Enter.
            let mut on_bar = false;
            for _ in 0..60 {
                b.active_element()
                    .await
                    .expect("the focused element")
                    .send_keys("\u{E004}")
                    .await
                    .expect("Tab");
                if eval(
                    &b,
                    "document.activeElement?.matches('#timeline .bar') === true",
                )
                .await
                    == json!(true)
                {
                    on_bar = true;
                    break;
                }
            }
            assert!(on_bar, "no timeline bar is reachable with Tab ({theme})");
            let key = eval(&b, "document.activeElement.dataset.key").await;
            b.active_element()
                .await
                .expect("the focused bar")
                .send_keys("\u{E007}")
                .await
                .expect("Enter");
            until(
                &b,
                "the step opened from the keyboard",
                &format!("document.querySelector('#step-detail')?.dataset.key === {key}"),
            )
            .await;
            let low = eval(&b, LOW_CONTRAST).await;
            assert_eq!(
                low,
                json!([]),
                "low contrast on the run page, {theme} theme"
            );
            screenshot(&b, &format!("run-{theme}.png")).await;
            b.close().await.expect("closing the browser");
        }
    });
}

/// The runs list's workflow filter lists workflow names (not the options'
/// object names) and shows only the runs of the one chosen.
#[test]
fn the_workflow_filter_lists_names_and_filters_the_runs() {
    let env = Env::new();
    let server = onboarding_demo(&env);
    let digest = server.upload("testbed");
    let (status, body) = server.json(
        "POST",
        "/v1/runs",
        &json!({"component": digest, "id": "other", "input": {"mode": "repeat"}}),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(server.result("other")["status"], "succeeded");
    let driver = Driver::start();
    block_on(async {
        let b = driver.browser(&[]).await;
        b.goto(&format!("http://127.0.0.1:{}", server.port))
            .await
            .expect("the runs list");
        until(
            &b,
            "both runs listed",
            "document.querySelectorAll('#runs tr[data-run-id]').length === 2",
        )
        .await;
        until(
            &b,
            "the filter's options",
            "document.querySelectorAll('#workflow-filter option').length === 3",
        )
        .await;
        let options = eval(
            &b,
            "[...document.querySelectorAll('#workflow-filter option')].map(o => [o.value, o.textContent])",
        )
        .await;
        assert_eq!(
            options,
            json!([
                ["", "All workflows"],
                ["onboarding", "onboarding"],
                ["testbed", "testbed"]
            ])
        );
        b.find(Locator::Css("#workflow-filter"))
            .await
            .expect("the filter")
            .select_by_value("testbed")
            .await
            .expect("choosing testbed");
        until(
            &b,
            "only the testbed run",
            "[...document.querySelectorAll('#runs tr[data-run-id]')].map(r => r.dataset.runId).join() === 'other'",
        )
        .await;
        screenshot(&b, "workflow-filter.png").await;
    });
}

/// Tags: the list's tag filter shows only the runs with that tag, a run's
/// page shows its tags, and a tag there links to the runs that share it.
#[test]
fn the_tag_filter_finds_runs_and_a_runs_tags_link_to_their_list() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    let digest = server.upload("testbed");
    for (id, customer) in [("t1", "42"), ("t2", "42"), ("t3", "7")] {
        let (status, body) = server.json(
            "POST",
            "/v1/runs",
            &json!({"component": digest, "id": id, "tags": {"customer": customer},
                    "input": {"mode": "tag", "value": {"plan": "pro"}}}),
        );
        assert_eq!(status, 201, "{body}");
        assert_eq!(server.result(id)["status"], "succeeded");
    }
    let ids =
        "[...document.querySelectorAll('#runs tr[data-run-id]')].map(r => r.dataset.runId).join()";
    let driver = Driver::start();
    block_on(async {
        let b = driver.browser(&[]).await;
        let base = format!("http://127.0.0.1:{}", server.port);
        b.goto(&base).await.expect("the runs list");
        until(&b, "three runs", &format!("{ids} === 't3,t2,t1'")).await;
        // Not applied until it is KEY:VALUE.
        type_into(&b, "#tag-filter", "customer").await;
        until(
            &b,
            "the field marked invalid",
            "document.querySelector('#tag-filter').getAttribute('aria-invalid') === 'true'",
        )
        .await;
        type_into(&b, "#tag-filter", "customer:42").await;
        until(&b, "the tagged runs", &format!("{ids} === 't2,t1'")).await;
        assert_eq!(
            eval(&b, "location.search").await,
            json!("?tag=customer%3A42")
        );
        screenshot(&b, "tag-filter.png").await;

        b.goto(&format!("{base}/runs/t3"))
            .await
            .expect("a run page");
        until(
            &b,
            "its tags",
            "[...document.querySelectorAll('[data-fk=tags] a')].map(a => a.textContent).join() === 'customer=7,plan=pro'",
        )
        .await;
        click(&b, "[data-fk=tags] a[data-tag=plan]").await;
        until(
            &b,
            "the runs with plan:pro",
            &format!("{ids} === 't3,t2,t1'"),
        )
        .await;
        assert_eq!(
            eval(&b, "document.querySelector('#tag-filter').value").await,
            json!("plan:pro")
        );
    });
}

#[test]
fn a_child_workflows_page_links_to_its_parent_and_the_parent_lists_its_children() {
    let env = Env::new();
    let family = wasm("family");
    env.run(&[
        "run",
        &family,
        "--id",
        "p",
        "--input",
        r#"{"mode":"fanout","n":3,"limit":2}"#,
    ])
    .success();
    let server = Server::start(&env, &[]);
    let driver = Driver::start();
    block_on(async {
        let b = driver.browser(&[]).await;
        b.goto(&format!("http://127.0.0.1:{}/runs/p:family-2", server.port))
            .await
            .expect("the child's page");
        until(
            &b,
            "the parent link",
            "!!document.querySelector('[data-fk=parent]')",
        )
        .await;
        screenshot(&b, "child-run.png").await;
        click(&b, "[data-fk=parent]").await;
        until(
            &b,
            "the parent's children",
            "document.querySelectorAll('tr[data-child-id]').length === 3",
        )
        .await;
        let listed = eval(
            &b,
            "[...document.querySelectorAll('tr[data-child-id]')].map(r => [r.dataset.childId, r.querySelector('.badge').textContent])",
        )
        .await;
        assert_eq!(
            listed,
            json!([
                ["p:family-1", "succeeded"],
                ["p:family-2", "succeeded"],
                ["p:family-3", "succeeded"]
            ])
        );
        screenshot(&b, "parent-run.png").await;
        click(&b, "[data-fk='child:p:family-3']").await;
        until(
            &b,
            "the third child's page",
            "location.pathname.endsWith('/runs/p%3Afamily-3') || location.pathname.endsWith('/runs/p:family-3')",
        )
        .await;
    });
}

#[test]
fn queued_runs_are_listed_and_their_page_says_what_holds_them() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    let digest = server.upload("family");
    let (status, body) = server.json(
        "POST",
        "/v1/workflows",
        &json!({"name": "family", "component": digest}),
    );
    assert!(status == 201 || status == 200, "{body}");
    let (status, body) = server.json("PUT", "/v1/queues/payments", &json!({"concurrency": 1}));
    assert_eq!(status, 201, "{body}");
    for (id, input) in [
        ("holder", json!({"mode": "slow"})),
        ("charge-1", json!({"mode": "nap"})),
        ("charge-2", json!({"mode": "nap"})),
    ] {
        let (status, body) = server.json(
            "POST",
            "/v1/runs",
            &json!({"workflow": "family", "id": id, "queue": "payments", "input": input}),
        );
        assert_eq!(status, 201, "{body}");
    }
    let driver = Driver::start();
    block_on(async {
        let b = driver.browser(&[]).await;
        b.goto(&format!("http://127.0.0.1:{}/?status=queued", server.port))
            .await
            .expect("the runs page");
        until(
            &b,
            "the queued runs",
            "document.querySelectorAll('tr[data-status=queued]').length === 2",
        )
        .await;
        screenshot(&b, "queued-runs.png").await;
        b.goto(&format!("http://127.0.0.1:{}/runs/charge-2", server.port))
            .await
            .expect("a queued run's page");
        until(
            &b,
            "what holds the run",
            "!!document.querySelector('[data-fk=queued] [data-held-by=concurrency]')",
        )
        .await;
        let text = eval(&b, "document.querySelector('[data-fk=queued]').textContent").await;
        assert!(
            text.as_str().is_some_and(
                |t| t.starts_with("payments: 1 ahead, priority 0; held by concurrency")
            ),
            "{text}"
        );
        screenshot(&b, "queued-run.png").await;
    });
}
