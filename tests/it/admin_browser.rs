//! The `/admin` dashboard in a real browser: headless Chromium driven over WebDriver
//! (`chromedriver`, started through `devsvc::Launch`) by fantoccini, against the real binaries
//! of `admin::Deployment`. The page loads with an admin token, a dead task leaves the dead list
//! when its Retry button is clicked, and the depth chart follows submissions to a priority
//! paused from the page. A screenshot goes to `target/tmp/admin-dashboard.png`.
//!
//! Without Chromium and chromedriver the test fails in CI (`CI=true`) and is skipped, saying
//! how to install them, elsewhere.

// Helpers outside #[test] fns unwrap too: a panic is a failure with a location.
#![allow(clippy::unwrap_used)]

use std::{path::Path, time::Duration};

use fantoccini::{ClientBuilder, Locator, wd::Capabilities};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use spec_server::devsvc::{Launch, Launched, Ready};

use crate::admin::Deployment;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const INSTALL: &str = "apt-get update && apt-get install -y chromium chromium-driver";

/// Longest wait for the page to show a change (it polls the stats every 2 s).
const PAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// `chromedriver` on a free port, or why it cannot run here.
fn chromedriver(dir: &Path) -> Result<(Launched, u16), String> {
    for bin in [CHROMIUM, CHROMEDRIVER] {
        if !Path::new(bin).exists() {
            return Err(format!("{bin} is missing: install the browser with `{INSTALL}`"));
        }
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut driver = Launch::new(CHROMEDRIVER)
        .named("chromedriver")
        .arg(format!("--port={port}"))
        .hint(INSTALL)
        .log_to(dir.join("chromedriver.log"))
        .spawn()
        .map_err(|e| e.to_string())?;
    driver.wait_ready(Ready::Port(port), Duration::from_secs(30)).map_err(|e| e.to_string())?;
    Ok((driver, port))
}

/// The value of `attr` on the first element matching `css`, polled until `pred` holds.
async fn wait_attr(c: &fantoccini::Client, css: &str, attr: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + PAGE_TIMEOUT;
    loop {
        let v = match c.find(Locator::Css(css)).await {
            Ok(e) => e.attr(attr).await.ok().flatten().unwrap_or_default(),
            Err(_) => String::new(),
        };
        if pred(&v) {
            return v;
        }
        let status = match c.find(Locator::Id("status")).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        assert!(tokio::time::Instant::now() < deadline, "{what}: {css}[{attr}] is {v:?}; page status {status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many elements match `css` now.
async fn count(c: &fantoccini::Client, css: &str) -> usize {
    c.find_all(Locator::Css(css)).await.map(|v| v.len()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let (_driver, port) = match chromedriver(dir.path()) {
        Ok(d) => d,
        Err(why) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("SKIPPED the_dashboard_in_headless_chromium: {why}");
            return;
        }
        Err(why) => panic!("the browser test needs Chromium in CI: {why}"),
    };
    let d = Deployment::start().await;
    let dead = d.dead_task("critical").await;

    let mut caps = Capabilities::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1400", "--no-first-run", "--no-default-browser-check"],
        }),
    );
    let c = ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .unwrap();

    // The page loads and, given the token, draws its first samples.
    c.goto(&format!("{}/admin", d.base)).await.unwrap();
    assert_eq!(c.title().await.unwrap(), "Queue dashboard");
    c.find(Locator::Id("token")).await.unwrap().send_keys(&d.admin_token).await.unwrap();
    c.find(Locator::Id("save-token")).await.unwrap().click().await.unwrap();
    wait_attr(&c, "#depth-chart", "data-samples", "the chart gets samples", |v| v.parse::<u32>().unwrap_or(0) >= 1)
        .await;
    // Confirmation prompts are answered yes (headless Chrome cannot click them).
    c.execute("window.confirm = () => true;", vec![]).await.unwrap();

    // The dead list (the page's default state) shows the task; Retry moves it out.
    let row = format!("#tasks tr[data-id='{dead}']");
    wait_attr(&c, &row, "data-state", "the dead task is listed", |v| v == "dead").await;
    c.find(Locator::Css(&format!("{row} button.retry"))).await.unwrap().click().await.unwrap();
    let deadline = tokio::time::Instant::now() + PAGE_TIMEOUT;
    while count(&c, &row).await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the retried task is still in the dead list");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t = d.task(&dead).await;
    assert!(matches!(t["state"].as_str(), Some("pending" | "active")), "{t}");
    let (_, dead_page, _) = d.all_pages("dead", "", 10).await;
    assert_eq!(dead_page, 0);

    // Pause `default` from the page, submit five tasks to it: the chart's latest sample
    // of `default` climbs to 5 (the worker takes none of them while paused).
    c.find(Locator::Css("#queues [data-priority='default'] button.pause")).await.unwrap().click().await.unwrap();
    wait_attr(&c, "#queues [data-priority='default']", "class", "default shows paused", |v| v.contains("paused")).await;
    for _ in 0..5 {
        d.submit("email", "default").await;
    }
    let latest = wait_attr(&c, "#depth-chart", "data-latest", "the depth chart shows 5 default tasks", |v| {
        serde_json::from_str::<Value>(v).is_ok_and(|j| j["default"] == 5)
    })
    .await;
    let samples: u32 =
        c.find(Locator::Id("depth-chart")).await.unwrap().attr("data-samples").await.unwrap().unwrap().parse().unwrap();
    assert!(samples >= 2, "several samples drawn: {samples}");
    let points = c
        .find(Locator::Css("#depth-chart polyline[data-series='default']"))
        .await
        .unwrap()
        .attr("points")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(points.split(' ').count() >= 2, "a line, not a dot: {points:?}");

    // One task's view: the payload with its body redacted.
    let (_, pending, _) = d.all_pages("pending", "default", 10).await;
    assert_eq!(pending, 5);
    c.find(Locator::Id("state")).await.unwrap().select_by_value("pending").await.unwrap();
    let first = "#tasks tbody tr:first-child td.id a";
    wait_attr(&c, "#tasks tbody tr:first-child", "data-state", "pending tasks listed", |v| v == "pending").await;
    c.find(Locator::Css(first)).await.unwrap().click().await.unwrap();
    wait_attr(&c, "#detail", "hidden", "the task opens", |v| v.is_empty()).await;
    let payload = c.find(Locator::Id("detail-payload")).await.unwrap().text().await.unwrap();
    assert!(payload.contains("[redacted]") && !payload.contains("424242"), "{payload}");

    let shot = c.screenshot().await.unwrap();
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("admin-dashboard.png");
    std::fs::write(&path, shot).unwrap();
    eprintln!("screenshot: {} (depth {latest}, {samples} samples)", path.display());
    c.close().await.unwrap();
}
