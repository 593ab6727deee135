//! A real OCI registry on loopback for the tests: Debian's `docker-registry`
//! (CNCF distribution) with TLS from a CA made for the test, htpasswd (bcrypt)
//! auth and storage in a temporary directory. Stopped on drop.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::tool;

/// User name the test registry accepts.
pub const USER: &str = "metis-ci";
/// Password the test registry accepts.
pub const PASSWORD: &str = "correct-horse-battery";

/// A running `docker-registry serve` on 127.0.0.1.
pub struct TestRegistry {
    dir: tempfile::TempDir,
    port: u16,
    child: Mutex<Option<Child>>,
}

impl TestRegistry {
    /// Makes a CA and a server certificate (SAN IP:127.0.0.1), an htpasswd
    /// file, a config, starts the registry on a free port and waits until it
    /// accepts connections.
    pub fn start() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("metis-registry-")
            .tempdir()?;
        let d = dir.path();
        std::fs::create_dir_all(d.join("certs"))?;
        std::fs::create_dir_all(d.join("storage"))?;
        let p = |name: &str| d.join(name).display().to_string();
        tool::run(tool::command("openssl").args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=metis test CA",
            "-keyout",
            &p("ca.key"),
            "-out",
            &p("certs/ca.crt"),
        ]))?;
        tool::run(tool::command("openssl").args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &p("server.key"),
            "-out",
            &p("server.csr"),
        ]))?;
        std::fs::write(
            d.join("server.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )?;
        tool::run(tool::command("openssl").args([
            "x509",
            "-req",
            "-in",
            &p("server.csr"),
            "-CA",
            &p("certs/ca.crt"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &p("server.ext"),
            "-out",
            &p("server.crt"),
        ]))?;
        let htpasswd = tool::run(tool::command("htpasswd").args(["-Bbn", USER, PASSWORD]))?;
        std::fs::write(d.join("htpasswd"), &htpasswd.stdout)?;
        let port = free_port()?;
        std::fs::write(
            d.join("config.yml"),
            format!(
                "version: 0.1\n\
                 log:\n  level: info\n  accesslog:\n    disabled: false\n\
                 storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {crt}\n    key: {key}\n\
                 auth:\n  htpasswd:\n    realm: metis-test\n    path: {htpasswd}\n",
                storage = p("storage"),
                crt = p("server.crt"),
                key = p("server.key"),
                htpasswd = p("htpasswd"),
            ),
        )?;
        let registry = TestRegistry {
            dir,
            port,
            child: Mutex::new(None),
        };
        registry.restart()?;
        Ok(registry)
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The CA certificate (PEM) that signed the server certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("certs/ca.crt")
    }

    /// A directory with `ca.crt`, for `skopeo --cert-dir`.
    pub fn cert_dir(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    /// The registry's storage root.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Everything the registry logged so far (access log included).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// How many blob data files with `digest` the storage holds (0 or 1: the
    /// registry stores content once, whatever the repository).
    pub fn stored_copies(&self, digest: &str) -> usize {
        let hex = digest.trim_start_matches("sha256:");
        let data = self
            .storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data");
        usize::from(data.is_file())
    }

    /// Stops the registry (SIGKILL, as a crash or a pulled cable would).
    pub fn stop(&self) {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mut c) = child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// (Re)starts the registry on the same port and storage; waits until it
    /// accepts connections.
    pub fn restart(&self) -> Result<()> {
        self.stop();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("registry.log"))?;
        let mut child = tool::command("docker-registry")
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting docker-registry (apt-get install docker-registry)")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!("docker-registry exited ({status}):\n{}", self.log());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!(
                    "docker-registry did not listen within 20 s:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        *self.child.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        Ok(())
    }

    /// Its directory (certificates, config, log, storage).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The path of a workspace binary (`metis-flash`, `metis-build`), built
/// first so the test never runs a stale one.
pub fn workspace_binary(package: &str, name: &str) -> Result<PathBuf> {
    static BUILD: Mutex<()> = Mutex::new(());
    let _guard = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            package,
            "--bin",
            name,
            "--message-format=json",
        ])
        .current_dir(crate::workspace_root())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("building {name}"))?;
    if !out.status.success() {
        bail!("cargo build -p {package} failed");
    }
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] == "compiler-artifact" && msg["target"]["name"] == name {
            if let Some(exe) = msg["executable"].as_str() {
                return Ok(PathBuf::from(exe));
            }
        }
    }
    bail!("cargo build did not report the {name} executable")
}
