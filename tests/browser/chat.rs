//! The chat page of `ringws serve` (src/bin/ringws/chat.rs, assets/chat/) in two
//! browsers: both are welcomed, `/join` one room, take names with `/nick`, hear each
//! other's messages; markup in a message is shown as text; and when the server process
//! is replaced by a new one on the same port, both pages reconnect by themselves.

use std::net::SocketAddr;
use std::process::Child;
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};

use crate::common::serve::ringws_child;
use crate::{goto, js_string, runtime, wait_until, with_browsers};

/// Every wait of this test.
const STEP: Duration = Duration::from_secs(20);

/// A `ringws serve` child process, killed when dropped (if still running).
struct Serve {
    child: Child,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    /// `ringws serve` with two shards on `bind`; its address once it serves.
    async fn start(bind: String) -> (Serve, SocketAddr) {
        tokio::task::spawn_blocking(move || {
            let base = [
                "serve",
                "--bind",
                &bind,
                "--shards",
                "2",
                "--shutdown-timeout",
                "1s",
            ];
            let (child, addr) = ringws_child(&base, &[], "serving ws://", "/echo");
            let serve = Serve { child };
            let addr = addr.unwrap_or_else(|log| panic!("ringws serve on {bind}: {log}"));
            (serve, addr)
        })
        .await
        .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()))
    }

    /// Stops the process as an operator would (SIGTERM: close 1001 to every peer, then
    /// exit) and asserts it exited with status 0 within 15 s.
    async fn stop(mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: a plain kill(2) of the child this test started.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "SIGTERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for ringws serve") {
                assert!(
                    status.success(),
                    "ringws serve ended with {status} on SIGTERM"
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "ringws serve still runs 15 s after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// What the page's log holds, one `|`-separated entry per line (for failure messages).
const LOG: &str =
    "Array.from(document.querySelectorAll('#log li')).map(li => li.textContent).join(' | ')";

/// A notice line of the log whose text is `text` exactly.
fn notice(text: &str) -> String {
    format!(
        "Array.from(document.querySelectorAll('#log li.notice')).some(li => li.textContent === {})",
        js_string(text)
    )
}

/// A notice line that starts with `prefix`.
fn notice_starting(prefix: &str) -> String {
    format!(
        "Array.from(document.querySelectorAll('#log li.notice')).some(li => li.textContent.startsWith({}))",
        js_string(prefix)
    )
}

/// A chat message line from `from` whose text is `text` exactly (as text: the span's
/// `textContent`).
fn message(from: &str, text: &str) -> String {
    format!(
        "Array.from(document.querySelectorAll('#log li:not(.notice)')).some(li => \
           li.children.length === 3 && li.children[1].textContent === {} && \
           li.children[2].textContent === {})",
        js_string(from),
        js_string(text)
    )
}

/// Waits for `condition` in the page of `who`.
async fn expect(client: &Client, who: &str, condition: &str, what: &str) {
    wait_until(client, condition, STEP, &format!("{who}: {what}"), LOG).await;
}

/// Types `line` into the page's input and presses its Send button, once the page is
/// connected; waits until the page took it (it clears the input after sending).
async fn say(client: &Client, who: &str, line: &str) {
    expect(
        client,
        who,
        "!document.getElementById('text').disabled",
        "the input is enabled (connected)",
    )
    .await;
    let input = client
        .find(Locator::Id("text"))
        .await
        .expect("the input field");
    input.send_keys(line).await.expect("type the line");
    client
        .find(Locator::Id("button"))
        .await
        .expect("the Send button")
        .click()
        .await
        .expect("click Send");
    expect(
        client,
        who,
        "document.getElementById('text').value === ''",
        &format!("the page sent {line:?}"),
    )
    .await;
}

/// Waits until the page is connected and welcomed; returns the name it was given.
async fn welcomed(client: &Client, who: &str) -> String {
    expect(
        client,
        who,
        "document.getElementById('status').textContent === 'connected' && \
         document.getElementById('me').textContent.startsWith('you are guest-')",
        "connected and welcomed",
    )
    .await;
    let me = crate::eval(client, "document.getElementById('me').textContent").await;
    let me = me.as_str().expect("text");
    // "you are guest-N (shard S)"
    me["you are ".len()..]
        .split(" (shard")
        .next()
        .expect("a name")
        .to_owned()
}

#[test]
fn chat_in_two_browsers() {
    if crate::driver().is_none() {
        return;
    }
    runtime().block_on(async {
        let (server, addr) = Serve::start("127.0.0.1:0".to_owned()).await;
        eprintln!("ringws serve at {addr}");
        with_browsers(2, &[], Duration::from_secs(150), move |clients| async move {
            let (a, b) = (&clients[0], &clients[1]);
            let page = format!("http://{addr}/");
            goto(a, &page).await;
            goto(b, &page).await;
            let a_guest = welcomed(a, "A").await;
            let b_guest = welcomed(b, "B").await;
            assert_ne!(a_guest, b_guest);

            // Both move to one room; A hears B arrive.
            let room = "browsers";
            say(a, "A", &format!("/join {room}")).await;
            expect(a, "A", &notice(&format!("you joined the room {room}")), "join").await;
            expect(
                a,
                "A",
                &format!("document.getElementById('room').textContent === 'room: {room}'"),
                "the header shows the room",
            )
            .await;
            say(b, "B", &format!("/join {room}")).await;
            expect(b, "B", &notice(&format!("you joined the room {room}")), "join").await;
            expect(
                a,
                "A",
                &notice_starting(&format!("{b_guest} joined (shard ")),
                "B's arrival",
            )
            .await;

            // Names.
            say(a, "A", "/nick alice").await;
            expect(a, "A", &notice("you are now alice"), "own rename").await;
            expect(
                a,
                "A",
                "document.getElementById('me').textContent.startsWith('you are alice (shard ')",
                "the header shows the new name",
            )
            .await;
            expect(b, "B", &notice(&format!("{a_guest} is now alice")), "A's rename").await;
            say(b, "B", "/nick bob").await;
            expect(b, "B", &notice("you are now bob"), "own rename").await;
            expect(a, "A", &notice(&format!("{b_guest} is now bob")), "B's rename").await;

            // A message each way (non-ASCII included; the sender hears its own too).
            let hello = "hello bob, from alice: ✓ é ü 日本";
            say(a, "A", hello).await;
            expect(b, "B", &message("alice", hello), "A's message").await;
            expect(a, "A", &message("alice", hello), "its own message").await;
            let markup = "<b>x</b> & <i>y</i> <img src=x onerror=\"window.pwned=1\"> <script>window.pwned=2</script>";
            say(b, "B", markup).await;
            expect(a, "A", &message("bob", markup), "B's message, as text").await;
            expect(b, "B", &message("bob", markup), "its own message, as text").await;
            // Shown as text: no element was made from it, no script of it ran.
            for (client, who) in [(a, "A"), (b, "B")] {
                let made = crate::eval(
                    client,
                    "document.querySelectorAll('#log b, #log i, #log img, #log script').length",
                )
                .await;
                assert_eq!(made, 0, "{who}: elements made from a message");
                let pwned = crate::eval(client, "window.pwned === undefined").await;
                assert_eq!(pwned, true, "{who}: a message's markup ran");
            }

            // The server process is replaced on the same port: the pages notice, retry,
            // and are welcomed by the new process.
            server.stop().await;
            for (client, who) in [(a, "A"), (b, "B")] {
                expect(
                    client,
                    who,
                    "document.getElementById('status').textContent.startsWith('disconnected')",
                    "the page saw the server go",
                )
                .await;
            }
            let (server, again) = Serve::start(addr.to_string()).await;
            assert_eq!(again, addr);
            let restarted = Instant::now();
            let a_again = welcomed(a, "A after the restart").await;
            let b_again = welcomed(b, "B after the restart").await;
            eprintln!(
                "both pages reconnected {:?} after the new process served",
                restarted.elapsed()
            );
            // Both are back in the lobby, under new guest names.
            let back = "back after the restart ✓";
            say(a, "A", back).await;
            expect(b, "B", &message(&a_again, back), "A's message after the restart").await;
            say(b, "B", "and B too").await;
            expect(a, "A", &message(&b_again, "and B too"), "B's message after the restart")
                .await;
            drop(server);
        })
        .await;
    });
}
