//! A program run on a real pseudo-terminal, driven as a person would: a detached
//! tmux session on a private server, keys sent with `send-keys`, the screen read
//! with `capture-pane`. The server is killed on drop, also when a test fails.

use std::process::Command;
use std::time::{Duration, Instant};

/// A detached tmux session running one shell command; see the module docs.
pub struct Tmux {
    socket: String,
}

/// The tmux server's socket: private to this session, removed on drop.
fn socket_path(name: &str) -> String {
    std::env::temp_dir().join(name).display().to_string()
}

/// Quotes `word` for `sh`.
pub fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

impl Tmux {
    /// Starts `argv` with `env` on a 200×50 terminal. When it ends, the pane shows
    /// `[exit N]` (see [`Tmux::exit_code`]) and stays open until drop.
    pub fn start(argv: &[&str], env: &[(&str, &str)]) -> Tmux {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let socket = socket_path(&format!(
            "metis-tmux-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        let mut script = String::from("env");
        for (k, v) in env {
            script.push_str(&format!(" {}", shell_quote(&format!("{k}={v}"))));
        }
        for a in argv {
            script.push(' ');
            script.push_str(&shell_quote(a));
        }
        script.push_str("; echo \"[exit $?]\"; sleep 3600");
        let tmux = Tmux { socket };
        let status = Command::new("tmux")
            .args(["-S", &tmux.socket, "-f", "/dev/null", "new-session", "-d"])
            .args(["-x", "200", "-y", "50", "-s", "t", "sh", "-c", &script])
            .env_remove("TMUX")
            .status()
            .expect("running tmux (apt-get install tmux)");
        assert!(status.success(), "tmux new-session failed");
        tmux
    }

    /// The whole pane, scrollback included, wrapped lines joined.
    pub fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-S", &self.socket, "capture-pane", "-p", "-J", "-S", "-"])
            .args(["-t", "t"])
            .output()
            .expect("running tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls the screen until `found` accepts it; panics with the screen after
    /// `timeout`.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        found: impl Fn(&str) -> bool,
    ) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if found(&screen) {
                return screen;
            }
            if start.elapsed() > timeout {
                panic!("waited {timeout:?} for {what}; the screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the screen shows `text`.
    pub fn wait_for(&self, text: &str, timeout: Duration) -> String {
        self.wait_until(&format!("{text:?}"), timeout, |s| s.contains(text))
    }

    /// Sends tmux key names (`Down`, `Enter`, `Escape`, `C-c`).
    pub fn keys(&self, keys: &[&str]) {
        let status = Command::new("tmux")
            .args(["-S", &self.socket, "send-keys", "-t", "t"])
            .args(keys)
            .status()
            .expect("running tmux send-keys");
        assert!(status.success(), "tmux send-keys {keys:?} failed");
    }

    /// Types `text` literally (no key names).
    pub fn type_text(&self, text: &str) {
        let status = Command::new("tmux")
            .args(["-S", &self.socket, "send-keys", "-t", "t", "-l", text])
            .status()
            .expect("running tmux send-keys");
        assert!(status.success(), "tmux send-keys -l {text:?} failed");
    }

    /// Waits for the program to end and returns its exit code and the screen.
    pub fn exit_code(&self, timeout: Duration) -> (i32, String) {
        let screen = self.wait_until("the program to end", timeout, |s| {
            s.lines().any(|l| l.contains("[exit "))
        });
        let code = screen
            .lines()
            .find_map(|l| {
                let at = l.find("[exit ")?;
                l[at + 6..].strip_suffix(']')?.parse().ok()
            })
            .expect("an [exit N] line");
        (code, screen)
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-S", &self.socket, "kill-server"])
            .status();
        let _ = std::fs::remove_file(&self.socket);
    }
}
