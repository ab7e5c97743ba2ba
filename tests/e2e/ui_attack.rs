//! The server against web pages of other sites, in a real headless
//! Chromium (the harness is `ui.rs`'s): a page on another loopback origin
//! tries everything a page can send without the server's consent, and a
//! page on a rebound name tries to read the server as its own origin.

use std::time::Duration;

use serde_json::json;

use crate::server::Server;
use crate::ui::{Driver, block_on, eval, screenshot, until};
use crate::util::Env;

/// A web server of the attacker's on another loopback origin: every GET
/// gets `html`. Stops when dropped.
struct Attacker {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Attacker {
    fn serve(html: String) -> Attacker {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            while !stopped.load(std::sync::atomic::Ordering::SeqCst) {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).is_ok_and(|n| n == 1) {
                    head.push(byte[0]);
                }
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{html}",
                    html.len()
                );
            }
        });
        Attacker { port, stop }
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A page on another loopback origin tries everything a page can send
/// without the server's consent (a `no-cors` fetch with a JSON-looking
/// text body, a form post, a read); a page on a rebound name (the
/// attacker's DNS answers 127.0.0.1) tries to read the server as its own
/// origin. The server starts, cancels and tells nothing.
#[test]
fn pages_on_other_origins_and_rebound_names_cannot_use_the_server() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    let digest = server.upload("testbed");
    let (status, _) = server.json(
        "POST",
        "/v1/runs",
        &json!({"component": digest, "id": "w", "input": {"mode": "events", "n": 1, "delay_ms": 600000}}),
    );
    assert_eq!(status, 201);
    let target = format!("http://127.0.0.1:{}", server.port);
    let start = json!({"component": digest, "id": "evil", "input": {"mode": "repeat"}}).to_string();
    // A text/plain form sends `NAME=VALUE`: split so that it is JSON.
    let form_name =
        format!(r#"{{"component":"{digest}","id":"evil-form","input":{{"mode":"repeat","pad":""#);
    let html = format!(
        r#"<!doctype html><title>attacker</title><body>
<iframe name="sink" style="display:none"></iframe>
<form id="f" method="post" target="sink" action="{target}/v1/runs/w/cancel"></form>
<form id="g" method="post" target="sink" enctype="text/plain" action="{target}/v1/runs"><input name='{form_name}' value='"}}}}'></form>
<script>
(async () => {{
  const said = [];
  const go = async (what, f) => {{ try {{ const r = await f(); said.push(what + ':' + (r.type === 'opaque' ? 'opaque' : r.status)); }} catch (e) {{ said.push(what + ':blocked'); }} }};
  await go('start', () => fetch('{target}/v1/runs', {{method: 'POST', mode: 'no-cors', headers: {{'Content-Type': 'text/plain'}}, body: {start_js}}}));
  await go('event', () => fetch('{target}/v1/runs/w/events/ping', {{method: 'POST', mode: 'no-cors', body: '{{"data": 1}}'}}));
  await go('cancel', () => fetch('{target}/v1/runs/w/cancel', {{method: 'POST', mode: 'no-cors'}}));
  await go('json', () => fetch('{target}/v1/runs', {{method: 'POST', headers: {{'Content-Type': 'application/json'}}, body: {start_js}}}));
  await go('read', () => fetch('{target}/v1/runs/w').then(r => r.text().then(t => ({{status: t.length ? 'read' : r.status}}))));
  document.getElementById('f').submit();
  await new Promise(r => setTimeout(r, 500));
  document.getElementById('g').submit();
  await new Promise(r => setTimeout(r, 500));
  document.title = 'done ' + said.join(' ');
}})();
</script>"#,
        start_js = json!(start),
    );
    let attacker = Attacker::serve(html);
    let driver = Driver::start();
    block_on(async {
        let b = driver.browser(&[]).await;
        b.goto(&format!("http://localhost:{}/", attacker.port))
            .await
            .expect("the attacker's page");
        until(&b, "the attack to end", "document.title.startsWith('done')").await;
        let said = eval(&b, "document.title").await;
        let said = said.as_str().unwrap_or_default().to_string();
        assert!(
            !said.contains("read:read"),
            "the page read the server: {said}"
        );
        assert!(!said.contains("json:201"), "{said}");

        // Rebinding: the attacker's name resolves to 127.0.0.1.
        let rule = "--host-resolver-rules=MAP rebind.attacker.example 127.0.0.1";
        let r = driver.browser(&[rule]).await;
        r.goto(&format!(
            "http://rebind.attacker.example:{}/v1/runs",
            server.port
        ))
        .await
        .expect("the rebound name");
        let text = eval(&r, "document.body.innerText").await;
        let text = text.as_str().unwrap_or_default();
        assert!(text.contains("forbidden_host"), "{text}");
        assert!(!text.contains("\"w\""), "the run list was shown: {text}");
        r.goto(&format!("http://rebind.attacker.example:{}/", server.port))
            .await
            .expect("the rebound UI");
        let text = eval(&r, "document.body.innerText").await;
        assert!(
            text.as_str().unwrap_or_default().contains("forbidden_host"),
            "{text}"
        );
        screenshot(&r, "rebinding-refused.png").await;
        eprintln!("the attacker's page saw: {said}");
    });
    drop(attacker);
    // Nothing happened to the server's runs.
    let (_, listed) = server.call("GET", "/v1/runs", b"");
    let ids: Vec<&str> = listed["runs"]
        .as_array()
        .map(|r| r.iter().filter_map(|r| r["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["w"], "{listed}");
    let (_, run) = server.call("GET", "/v1/runs/w", b"");
    assert_eq!(run["cancel_requested"], false, "{run}");
    assert_eq!(run["events"], json!([]), "{run}");
}
