//! Helpers for the end-to-end tests in `tests/tests/`: they start the `hearth` binary as a
//! child process on a free loopback port and talk to it over HTTP.
//!
//! The binary is found through `HEARTH_BIN`, or else in the cargo target directory
//! (`CARGO_TARGET_DIR`, or `target/` of the workspace). Kafka runs use the broker named by
//! `HEARTH_TEST_KAFKA_BROKERS`, which the test command starts.

pub mod browser;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Which log a test server runs on.
#[derive(Debug, Clone)]
pub enum Backend {
    Embedded,
    /// Kafka at these bootstrap servers, with topics under a prefix unique to the test.
    Kafka {
        brokers: String,
        topic_prefix: String,
    },
}

impl Backend {
    /// The Kafka backend when the test command provides a broker, else `None`.
    pub fn kafka(test_name: &str) -> Option<Backend> {
        let brokers = std::env::var("HEARTH_TEST_KAFKA_BROKERS").ok()?;
        let unique = format!("{test_name}-{}-{}", std::process::id(), unique_suffix());
        Some(Backend::Kafka {
            brokers,
            topic_prefix: format!("{unique}."),
        })
    }
}

fn unique_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// The path of the `hearth` binary under test.
pub fn hearth_bin() -> PathBuf {
    if let Ok(path) = std::env::var("HEARTH_BIN") {
        return PathBuf::from(path);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target"));
    target.join("debug").join("hearth")
}

/// The repository's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// The Synthea R4 test data, unpacked once per test process into a temporary directory.
pub fn synthea_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        let archive = workspace_root().join("tests/data/synthea-r4.tar.xz");
        let status = Command::new("tar")
            .arg("-xJf")
            .arg(&archive)
            .arg("-C")
            .arg(dir.path())
            .status()
            .expect("cannot run tar");
        assert!(status.success(), "unpacking {} failed", archive.display());
        dir
    })
    .path()
    .join("synthea")
    .leak()
}

/// Files that `hearth load` must reject.
pub fn invalid_dir() -> PathBuf {
    workspace_root().join("tests/data/invalid")
}

/// A running `hearth serve`, stopped with SIGTERM when dropped.
pub struct Server {
    child: Child,
    pub port: u16,
    pub data_dir: tempfile::TempDir,
    pub base_url: String,
}

impl Server {
    pub fn start(backend: &Backend) -> anyhow::Result<Server> {
        let data_dir = tempfile::tempdir().context("cannot create the data directory")?;
        Self::start_in(backend, data_dir)
    }

    /// Starts a server on an existing data directory, as after a restart.
    pub fn start_in(backend: &Backend, data_dir: tempfile::TempDir) -> anyhow::Result<Server> {
        Self::start_with(backend, data_dir, &[], &[])
    }

    /// Starts a server with extra `serve` arguments and environment variables.
    pub fn start_with(
        backend: &Backend,
        data_dir: tempfile::TempDir,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> anyhow::Result<Server> {
        let mut data_dir = data_dir;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            match Self::try_start(backend, data_dir, port, args, envs)? {
                Started::Ready(server) => return Ok(server),
                Started::Exited(dir) => {
                    // Another process may have taken the free port before hearth bound it.
                    eprintln!(
                        "hearth exited before it was ready on port {port}; trying another port"
                    );
                    data_dir = dir;
                }
            }
        }
        bail!("hearth exited before it was ready, {PORT_ATTEMPTS} times")
    }

    /// Starts a server on a given port, such as the port of a server that was stopped, so
    /// absolute URLs it handed out before stay valid.
    pub fn start_on_port(
        backend: &Backend,
        data_dir: tempfile::TempDir,
        port: u16,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> anyhow::Result<Server> {
        match Self::try_start(backend, data_dir, port, args, envs)? {
            Started::Ready(server) => Ok(server),
            Started::Exited(_) => bail!("hearth exited before it was ready on port {port}"),
        }
    }

    /// Starts a server and waits until it responds, or until it exits (such as when the
    /// port is taken). After an exit it returns the data directory for another try.
    fn try_start(
        backend: &Backend,
        data_dir: tempfile::TempDir,
        port: u16,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> anyhow::Result<Started> {
        let mut command = Command::new(hearth_bin());
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir.path())
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env_remove("HEARTH_CONFIG")
            .env("HEARTH_LOG", "warn")
            .args(args)
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Backend::Kafka {
            brokers,
            topic_prefix,
        } = backend
        {
            command
                .arg("--kafka-brokers")
                .arg(brokers)
                .env("HEARTH_KAFKA_TOPIC_PREFIX", topic_prefix);
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", hearth_bin().display()))?;
        let mut server = Server {
            child,
            port,
            data_dir,
            base_url: format!("http://127.0.0.1:{port}"),
        };
        if server.wait_ready(Duration::from_secs(60))? {
            return Ok(Started::Ready(server));
        }
        let placeholder = tempfile::tempdir().context("cannot create a temporary directory")?;
        Ok(Started::Exited(std::mem::replace(
            &mut server.data_dir,
            placeholder,
        )))
    }

    /// Waits until this server responds on its port. Returns false if the process exited
    /// first. Another server on the same port rejects this server's admin credential, so
    /// its responses are not mistaken for this one's.
    fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<bool> {
        let deadline = Instant::now() + timeout;
        let url = format!("{}/admin/sites", self.base_url);
        let client = reqwest::blocking::Client::new();
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(false);
            }
            let token = self.admin_token();
            if !token.is_empty()
                && let Ok(response) = client.get(&url).bearer_auth(&token).send()
                && response.status().is_success()
            {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("hearth did not answer {url} within {timeout:?}")
    }

    pub fn fhir_url(&self) -> String {
        format!("{}/fhir", self.base_url)
    }

    /// The admin credential the server created in its data directory.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("admin-token"))
            .map(|t| t.trim().to_string())
            .unwrap_or_default()
    }

    /// GETs `url` with the admin credential and returns the status and the JSON body.
    pub fn get_json(&self, url: &str) -> (u16, serde_json::Value) {
        let response = reqwest::blocking::Client::new()
            .get(url)
            .bearer_auth(self.admin_token())
            .send()
            .unwrap_or_else(|e| panic!("GET {url} failed: {e}"));
        let status = response.status().as_u16();
        let body = response.text().unwrap_or_default();
        let value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{url} returned invalid JSON ({e}): {body}"));
        (status, value)
    }

    /// Runs `hearth load` against this server.
    pub fn load(&self, paths: &[&Path]) -> anyhow::Result<Output> {
        let mut command = Command::new(hearth_bin());
        command
            .arg("load")
            .arg("--quiet")
            .arg("--url")
            .arg(&self.base_url)
            .arg(format!("--admin-token={}", self.admin_token()));
        for path in paths {
            command.arg(path);
        }
        command.output().context("cannot run hearth load")
    }

    /// The process id of the server.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a server killed from outside and returns its data directory.
    pub fn abandon(mut self) -> tempfile::TempDir {
        let _ = self.child.wait();
        std::mem::replace(
            &mut self.data_dir,
            tempfile::tempdir().expect("cannot create a temporary directory"),
        )
    }

    /// Stops the server with SIGTERM and waits for it, returning its data directory.
    pub fn stop(mut self) -> anyhow::Result<tempfile::TempDir> {
        self.terminate()?;
        let data_dir = std::mem::replace(&mut self.data_dir, tempfile::tempdir()?);
        Ok(data_dir)
    }

    fn terminate(&mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let pid = self.child.id().to_string();
        Command::new("kill").arg("-TERM").arg(&pid).status()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("hearth exited with {status} after SIGTERM");
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill()?;
        bail!("hearth did not stop within 30 s of SIGTERM")
    }
}

/// How many free ports [`Server::start_with`] tries before it gives up.
const PORT_ATTEMPTS: usize = 3;

/// What became of a server process that was started.
enum Started {
    Ready(Server),
    /// The process exited before it responded. This is the data directory it was given.
    Exited(tempfile::TempDir),
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.terminate();
    }
}
