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
    token_server: Mutex<Option<Child>>,
}

/// The certificate the test registry serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerCert {
    /// A server certificate (`CA:FALSE`, SAN `IP:127.0.0.1`) issued by the
    /// test CA, which [`TestRegistry::ca_file`] holds: what a lab should run.
    IssuedByCa,
    /// The CA certificate itself (self-signed, `CA:TRUE`, SAN `IP:127.0.0.1`):
    /// the mistake of serving the lab CA as the server certificate, which
    /// rustls refuses (`CaUsedAsEndEntity`) even when the CA is trusted.
    CaItself,
    /// A server certificate issued by the test CA that has expired.
    Expired,
}

/// How the test registry authenticates clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// HTTP Basic against an htpasswd file.
    Htpasswd,
    /// Bearer tokens (as Harbor does): a small token issuer on another
    /// loopback port checks the password and signs RS256 JWTs that the
    /// registry verifies (`auth: token`).
    Token,
}

/// The token issuer: Basic-authenticated `GET /token?scope=…&service=…`
/// answering `{"token": JWT}`, the JWT signed with `openssl dgst`.
const TOKEN_SERVER: &str = r#"
import base64, http.server, json, subprocess, sys, time, urllib.parse
port, key, cert, user, password = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
der = subprocess.run(["openssl", "x509", "-in", cert, "-outform", "DER"], check=True, capture_output=True).stdout
def b64u(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        want = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        if self.headers.get("Authorization") != want:
            self.send_response(401); self.end_headers(); self.wfile.write(b'{"details":"bad credentials"}'); return
        q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        access = []
        for scope in q.get("scope", []):
            for one in scope.split(" "):
                kind, _, rest = one.partition(":")
                name, _, actions = rest.rpartition(":")
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        claims = {"iss": "metis-test-issuer", "sub": user, "aud": q.get("service", [""])[0],
                  "exp": now + 300, "nbf": now - 10, "iat": now, "jti": str(now) + self.path, "access": access}
        signing = b64u(json.dumps(header).encode()) + "." + b64u(json.dumps(claims).encode())
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=signing.encode(),
                             check=True, capture_output=True).stdout
        token = signing + "." + b64u(sig)
        body = json.dumps({"token": token, "expires_in": 300}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json"); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): sys.stderr.write(self.requestline + chr(10)); sys.stderr.flush()
http.server.HTTPServer(("127.0.0.1", int(port)), H).serve_forever()
"#;

impl TestRegistry {
    /// Makes a CA and a server certificate (SAN IP:127.0.0.1), an htpasswd
    /// file, a config, starts the registry on a free port and waits until it
    /// accepts connections.
    pub fn start() -> Result<Self> {
        Self::start_with(Auth::Htpasswd)
    }

    /// Like [`TestRegistry::start`], authenticating as `auth` says.
    pub fn start_with(auth: Auth) -> Result<Self> {
        Self::start_serving(auth, ServerCert::IssuedByCa)
    }

    /// Like [`TestRegistry::start`], serving the certificate `cert` says.
    pub fn start_serving(auth: Auth, cert: ServerCert) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("metis-registry-")
            .tempdir()?;
        let d = dir.path();
        std::fs::create_dir_all(d.join("certs"))?;
        std::fs::create_dir_all(d.join("storage"))?;
        let p = |name: &str| d.join(name).display().to_string();
        match cert {
            ServerCert::IssuedByCa | ServerCert::Expired => {
                self_signed("/CN=metis test CA", &p("ca.key"), &p("certs/ca.crt"), &[])?
            }
            // A CA certificate that also names the server, so the only thing
            // wrong with it is being a CA.
            ServerCert::CaItself => self_signed(
                "/CN=127.0.0.1",
                &p("ca.key"),
                &p("certs/ca.crt"),
                &["-addext", "subjectAltName=IP:127.0.0.1"],
            )?,
        }
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
            // -1: not valid after a day before it was made.
            if cert == ServerCert::Expired {
                "-1"
            } else {
                "2"
            },
            "-extfile",
            &p("server.ext"),
            "-out",
            &p("server.crt"),
        ]))?;
        let htpasswd = tool::run(tool::command("htpasswd").args(["-Bbn", USER, PASSWORD]))?;
        std::fs::write(d.join("htpasswd"), &htpasswd.stdout)?;
        let port = free_port()?;
        let mut token_server = None;
        let auth_config = match auth {
            Auth::Htpasswd => format!(
                "auth:\n  htpasswd:\n    realm: metis-test\n    path: {}\n",
                p("htpasswd")
            ),
            Auth::Token => {
                self_signed(
                    "/CN=metis test token issuer",
                    &p("token.key"),
                    &p("token.crt"),
                    &[],
                )?;
                std::fs::write(d.join("token_server.py"), TOKEN_SERVER)?;
                let token_port = free_port()?;
                let log = std::fs::File::create(d.join("token.log"))?;
                let child = tool::command("python3")
                    .arg(d.join("token_server.py"))
                    .args([
                        &token_port.to_string(),
                        &p("token.key"),
                        &p("token.crt"),
                        USER,
                        PASSWORD,
                    ])
                    .stdin(Stdio::null())
                    .stdout(log.try_clone()?)
                    .stderr(log)
                    .spawn()
                    .context("starting the token issuer (python3)")?;
                token_server = Some(child);
                wait_for_port(token_port, Duration::from_secs(10))?;
                format!(
                    "auth:\n  token:\n    realm: http://127.0.0.1:{token_port}/token\n    \
                     service: metis-test-registry\n    issuer: metis-test-issuer\n    \
                     rootcertbundle: {}\n",
                    p("token.crt")
                )
            }
        };
        std::fs::write(
            d.join("config.yml"),
            format!(
                "version: 0.1\n\
                 log:\n  level: info\n  accesslog:\n    disabled: false\n\
                 storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {crt}\n    key: {key}\n\
                 {auth_config}",
                storage = p("storage"),
                crt = p(match cert {
                    ServerCert::IssuedByCa | ServerCert::Expired => "server.crt",
                    ServerCert::CaItself => "certs/ca.crt",
                }),
                key = p(match cert {
                    ServerCert::IssuedByCa | ServerCert::Expired => "server.key",
                    ServerCert::CaItself => "ca.key",
                }),
            ),
        )?;
        let registry = TestRegistry {
            dir,
            port,
            child: Mutex::new(None),
            token_server: Mutex::new(token_server),
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

    /// What the token issuer logged (token auth only).
    pub fn token_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("token.log")).unwrap_or_default()
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
        let token_server = self
            .token_server
            .get_mut()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(mut c) = token_server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_for_port(port: u16, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listened on 127.0.0.1:{port} within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A self-signed RSA certificate `cert` for `subject`, its key in `key`
/// (a CA certificate: `openssl req -x509` marks it `CA:TRUE`), with `extra`
/// arguments to `openssl req`.
fn self_signed(subject: &str, key: &str, cert: &str, extra: &[&str]) -> Result<()> {
    tool::run(
        tool::command("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", subject,
                "-keyout", key, "-out", cert,
            ])
            .args(extra),
    )?;
    Ok(())
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
