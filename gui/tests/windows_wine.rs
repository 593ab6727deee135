//! metis-flash-gui.exe, cross-built for x86_64-pc-windows-gnu by
//! `scripts/build-windows --gui`, run under Wine: `--version`, and the window
//! itself on a virtual display (Xvfb; Wine draws its OpenGL with Mesa's
//! software renderer): it opens with its title, draws the first-run screen (a
//! fresh Wine prefix has no settings) and keeps running; a screenshot of it is
//! kept for a person to look at. Then, on a laptop set up by metis-flash.exe
//! from the lab profile, the window flashes a node of an `oci:` registry (the
//! example lab, published by the project's publisher) to an image file, driven
//! by the keyboard through xdotool as an operator can, and the file is
//! byte-for-byte what the Linux flasher writes.
//!
//! The .exe is found beside METIS_WINDOWS_EXE (metis-flash.exe; .ci/run sets
//! it). Without it the test is skipped with a message, except in CI, where that
//! is a failure.

mod lab;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use metis_tests::wine::{z, Prefix, WINE};

/// The GUI's .exe, or why there is none (a failure in CI).
fn gui_exe() -> Option<PathBuf> {
    let reason = match std::env::var_os("METIS_WINDOWS_EXE") {
        None => "METIS_WINDOWS_EXE is not set (scripts/build-windows --gui prints the path of \
                 metis-flash.exe; the GUI's .exe is beside it)"
            .to_string(),
        Some(exe) => {
            let gui = Path::new(&exe).with_file_name("metis-flash-gui.exe");
            if !gui.is_file() {
                format!(
                    "{} does not exist (scripts/build-windows --gui builds it)",
                    gui.display()
                )
            } else if !Path::new(WINE).exists() {
                format!("{WINE} is missing (scripts/install-deps installs wine64)")
            } else if let Some(tool) = ["Xvfb", "xdotool", "xwd", "xwdtopnm"]
                .into_iter()
                .find(|t| !on_path(t))
            {
                format!("{tool} is missing (scripts/install-deps installs it)")
            } else {
                return Some(gui);
            }
        }
    };
    metis_tests::skip_outside_ci("Windows GUI", &reason);
    None
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// A virtual X display, stopped when dropped.
struct Display {
    number: u32,
    server: Child,
}

impl Display {
    fn start() -> Display {
        // A display number no other X server (a parallel test, bench/gui.sh) uses.
        let number = (0..200)
            .map(|i| 150 + (std::process::id() + i) % 200)
            .find(|n| !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists())
            .expect("a free X display number");
        let server = Command::new("Xvfb")
            .arg(format!(":{number}"))
            .args(["-screen", "0", "1024x768x24", "-nolisten", "tcp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting Xvfb");
        let socket = format!("/tmp/.X11-unix/X{number}");
        let start = Instant::now();
        while !Path::new(&socket).exists() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "Xvfb did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Display { number, server }
    }

    fn name(&self) -> String {
        format!(":{}", self.number)
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// A P6 PPM's width, height and pixels (xwdtopnm's output).
fn parse_ppm(bytes: &[u8]) -> (usize, usize, &[u8]) {
    let mut fields = Vec::new();
    let mut at = 0;
    while fields.len() < 4 {
        while bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        let start = at;
        while !bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        fields.push(std::str::from_utf8(&bytes[start..at]).unwrap().to_owned());
    }
    assert_eq!(fields[0], "P6", "not a binary PPM");
    assert_eq!(fields[3], "255", "not 8 bits a channel");
    let (w, h) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
    (w, h, &bytes[at + 1..])
}

#[test]
fn metis_flash_gui_exe_opens_its_window_and_flashes_a_node_under_wine() {
    let Some(exe) = gui_exe() else { return };
    let work = tempfile::Builder::new()
        .prefix("gui-wine-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let prefix = Prefix(work.path().join("wine"));
    let wine = |display: Option<&str>| {
        let mut c = Command::new(WINE);
        c.arg(&exe)
            .env("WINEPREFIX", &prefix.0)
            .env("WINEDEBUG", "-all")
            .env("METIS_CACHE", z(&work.path().join("cache")))
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::null());
        if let Some(d) = display {
            c.env("DISPLAY", d);
        }
        c
    };

    // --version answers without a window (and is the build of this checkout).
    let o = wine(None).arg("--version").output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.starts_with("metis-flash-gui 0.1.0 ("),
        "--version: {o:?}"
    );

    // The window, on a virtual display.
    let display = Display::start();
    let log = std::fs::File::create(work.path().join("window.log")).unwrap();
    let mut app = wine(Some(&display.name()))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let xdotool = |args: &[&str]| {
        Command::new("xdotool")
            .args(args)
            .env("DISPLAY", display.name())
            .output()
            .unwrap()
    };
    let start = Instant::now();
    let window = loop {
        let found = xdotool(&["search", "--name", "^Metis flasher$"]);
        let id = String::from_utf8_lossy(&found.stdout)
            .lines()
            .next()
            .map(str::to_owned);
        if let Some(id) = id {
            break id;
        }
        if let Ok(Some(status)) = app.try_wait() {
            panic!(
                "metis-flash-gui.exe exited ({status}) before its window showed:\n{}",
                std::fs::read_to_string(work.path().join("window.log")).unwrap_or_default()
            );
        }
        // A fresh prefix starts Wine's own services first (~10 s here).
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "no window titled \"Metis flasher\" after 3 minutes"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    // Its first frames drawn, then it must still be running: nothing crashed.
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        app.try_wait().unwrap().is_none(),
        "metis-flash-gui.exe exited after opening its window:\n{}",
        std::fs::read_to_string(work.path().join("window.log")).unwrap_or_default()
    );

    // What the window shows: the first-run screen's text on egui's dark panel,
    // not an empty or black surface.
    let xwd = work.path().join("window.xwd");
    let shot = Command::new("xwd")
        .args(["-silent", "-id", &window, "-out"])
        .arg(&xwd)
        .env("DISPLAY", display.name())
        .status()
        .unwrap();
    assert!(shot.success(), "xwd failed");
    let ppm = Command::new("xwdtopnm").arg(&xwd).output().unwrap();
    assert!(ppm.status.success(), "xwdtopnm failed");
    let (w, h, pixels) = parse_ppm(&ppm.stdout);
    assert!(
        w >= 560 && h >= 400,
        "the window is {w}x{h}, smaller than its minimum"
    );
    let mut colours = std::collections::HashMap::new();
    for p in pixels.chunks_exact(3) {
        *colours.entry([p[0], p[1], p[2]]).or_insert(0usize) += 1;
    }
    let (background, most) = colours
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(c, n)| (*c, *n))
        .unwrap();
    let total = w * h;
    // egui's panel in its dark theme (27, 27, 27: Linux) or its light one (248,
    // 248, 248: Windows reports a light system theme, which egui follows); text
    // and fields are the rest.
    let grey = background.iter().all(|&c| c == background[0]);
    assert!(
        grey && [(15..=60), (230..=252)]
            .iter()
            .any(|r| r.contains(&background[0])),
        "the window's background is {background:?}, not egui's panel (nothing drawn?)"
    );
    assert!(
        colours.len() > 20 && most < total * 98 / 100,
        "the window shows almost nothing: {} colours, {}% background",
        colours.len(),
        most * 100 / total
    );
    let ppm_file = work.path().join("window.ppm");
    std::fs::write(&ppm_file, &ppm.stdout).unwrap();
    let _ = Command::new("sh")
        .args(["-c", "pnmtopng \"$1\" > \"$2\"", "sh"])
        .arg(&ppm_file)
        .arg(work.path().join("window.png"))
        .status();
    let _ = app.kill();
    let _ = app.wait();

    // The laptop set up by metis-flash.exe from the lab profile (its registry
    // as Windows names it), so the window opens on the node list.
    let cli = std::env::var_os("METIS_WINDOWS_EXE")
        .map(PathBuf::from)
        .unwrap();
    let profile = lab::profile_of(work.path(), Path::new(&z(lab::registry())));
    let setup = Command::new(WINE)
        .arg(&cli)
        .args(["setup", &z(&profile), "--yes", "--expect-fingerprint"])
        .arg(metis_core::trust::DEMO_KEY_FINGERPRINT)
        .arg("--identity")
        .arg(z(&lab::demo("operator.agekey")))
        .env("WINEPREFIX", &prefix.0)
        .env("WINEDEBUG", "-all")
        .env_remove("DISPLAY")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(setup.status.success(), "metis-flash.exe setup: {setup:?}");

    // The operator's keys: the node's name and Enter; Tab to "Image file…" (Wine
    // has no disks to offer) and Enter twice; the name again and Enter. Each
    // step waits for the window's log line that says it may go on.
    let log_path = work.path().join("flash.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut app = wine(Some(&display.name()))
        .current_dir(work.path())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let logged = |app: &mut Child, text: &str| {
        let start = Instant::now();
        loop {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            if log.contains(text) {
                return;
            }
            let ended = app.try_wait().unwrap();
            assert!(
                ended.is_none()
                    && !log.contains(" failed")
                    && start.elapsed() < Duration::from_secs(300),
                "waited for the window's line \"{text}\"; it logged:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    logged(&mut app, "lab index revision");
    let window = loop {
        let found = xdotool(&["search", "--name", "^Metis flasher$"]);
        if let Some(id) = String::from_utf8_lossy(&found.stdout).lines().next() {
            break id.to_owned();
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "no second window"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    std::thread::sleep(Duration::from_secs(1));
    let keys = |args: &[&str]| {
        let mut all = vec!["windowfocus", "--sync", window.as_str()];
        all.extend_from_slice(args);
        let o = xdotool(&all);
        assert!(o.status.success(), "xdotool {args:?}: {o:?}");
        std::thread::sleep(Duration::from_millis(400));
    };
    keys(&["key", "Tab"]);
    keys(&["type", "--delay", "20", "titan-13"]);
    keys(&["key", "Return"]);
    logged(&mut app, "titan-13 revision 1 verified");
    logged(&mut app, "disks for a");
    keys(&["key", "Tab"]);
    keys(&["key", "Return"]);
    keys(&["key", "Return"]);
    keys(&["type", "--delay", "20", "titan-13"]);
    keys(&["key", "Return"]);
    logged(&mut app, "insert and power on");
    let _ = app.kill();
    let _ = app.wait();

    let by_window = work.path().join("titan-13.img");
    let by_cli = work.path().join("cli.img");
    lab::cli_flash(work.path(), "titan-13", &by_cli);
    let size = std::fs::metadata(&by_cli).unwrap().len();
    assert_eq!(
        std::fs::metadata(&by_window).map(|m| m.len()).ok(),
        Some(size),
        "the window's image file"
    );
    assert_eq!(
        lab::sha(&by_window, size),
        lab::sha(&by_cli, size),
        "metis-flash-gui.exe wrote another image than the Linux flasher"
    );

    let kept = work.keep();
    eprintln!(
        "the window under Wine: {w}x{h}, {} colours; screenshot {}",
        colours.len(),
        kept.join("window.png").display()
    );
    drop(prefix);
    // Only the screenshot is kept (the prefix is ~100 MiB, the images 2 x 64 MiB).
    for dir in ["wine", "cache", "cli-cache", "cli-config"] {
        let _ = std::fs::remove_dir_all(kept.join(dir));
    }
    for file in ["window.xwd", "window.ppm", "titan-13.img", "cli.img"] {
        let _ = std::fs::remove_file(kept.join(file));
    }
}
