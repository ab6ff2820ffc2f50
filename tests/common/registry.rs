//! A real `docker-registry` (distribution 2.8, Debian package) on 127.0.0.1 with storage in a
//! temporary directory, behind a byte-counting TCP relay so tests can assert how much the
//! registry served. Stopped (killed) on drop.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A running registry.
pub struct Registry {
    child: Child,
    /// Where clients connect: the counting relay.
    pub addr: String,
    served: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Registry {
    /// Starts one, or `None` (skip) when `docker-registry` is not installed.
    pub fn start() -> Option<Registry> {
        let bin = super::find_tool("DOCKER_REGISTRY", "docker-registry", &[])?;
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("storage").display()
            ),
        )
        .unwrap();
        let child = Command::new(bin)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // Its log (every 404 a push probes for is an "error") stays in the temp dir.
            .stderr(std::fs::File::create(dir.path().join("registry.log")).unwrap())
            .spawn()
            .expect("starting docker-registry");
        let backend = format!("127.0.0.1:{port}");
        let served = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        {
            let (served, stop, backend) = (served.clone(), stop.clone(), backend.clone());
            std::thread::spawn(move || relay(listener, &backend, &served, &stop));
        }
        let reg = Registry {
            child,
            addr,
            served,
            stop,
            _dir: dir,
        };
        reg.wait_ready(&backend);
        Some(reg)
    }

    fn wait_ready(&self, backend: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(mut s) = TcpStream::connect(backend) {
                let _ = s.write_all(b"GET /v2/ HTTP/1.0\r\nHost: x\r\n\r\n");
                let mut resp = String::new();
                let _ = s.read_to_string(&mut resp);
                if resp.starts_with("HTTP/1.0 200") || resp.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("docker-registry did not answer /v2/ on {backend}");
    }

    /// The registry's storage directory (for tampering tests).
    pub fn storage(&self) -> std::path::PathBuf {
        self._dir.path().join("storage")
    }

    /// `docker://ADDR/name`.
    pub fn url(&self, name: &str) -> String {
        format!("docker://{}/{name}", self.addr)
    }

    /// Bytes the registry sent to clients since the last [`reset`](Self::reset) (HTTP
    /// headers included).
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::SeqCst)
    }

    /// Zeroes the counter.
    pub fn reset(&self) {
        self.served.store(0, Ordering::SeqCst);
    }

    /// `skopeo copy oci:DIR:TAG docker://ADDR/NAME:TAG`.
    pub fn push(&self, layout: &Path, tag: &str, name: &str) {
        self.push_with(layout, tag, name, &[]);
    }

    /// [`push`](Self::push) with extra `skopeo copy` arguments (`--format v2s2`).
    pub fn push_with(&self, layout: &Path, tag: &str, name: &str, args: &[&str]) {
        let out = Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .args(args)
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("{}:{tag}", self.url(name)))
            .output()
            .expect("running skopeo");
        assert!(
            out.status.success(),
            "skopeo copy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Accepts connections and relays each to `backend`, counting backend -> client bytes.
fn relay(listener: TcpListener, backend: &str, served: &Arc<AtomicU64>, stop: &AtomicBool) {
    for client in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let Ok(server) = TcpStream::connect(backend) else {
            continue;
        };
        let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        let served = served.clone();
        std::thread::spawn(move || pipe(client, server, None));
        std::thread::spawn(move || pipe(s2, c2, Some(&served)));
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, count: Option<&AtomicU64>) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
                if let Some(c) = count {
                    c.fetch_add(n as u64, Ordering::SeqCst);
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
