//! A real nutcracker (twemproxy) process for placement-parity tests: started on the given
//! listen ports with a YAML config, waited for until every pool listens, killed on drop.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::tempdir;

/// A nutcracker process, killed (and its directory removed) on drop.
pub struct Nutcracker {
    pub child: Child,
    dir: PathBuf,
    log: PathBuf,
}

impl Nutcracker {
    pub fn binary() -> PathBuf {
        let sbin = Path::new("/usr/sbin/nutcracker");
        if sbin.exists() {
            return sbin.to_owned();
        }
        let which = Command::new("which").arg("nutcracker").output();
        match which {
            Ok(o) if o.status.success() => {
                PathBuf::from(String::from_utf8_lossy(&o.stdout).trim().to_owned())
            }
            _ => panic!("nutcracker not found: install the Debian package `nutcracker`"),
        }
    }

    pub fn start(conf: &str, listens: &[u16], stats_port: u16) -> Nutcracker {
        let dir = tempdir("nutcracker");
        let path = dir.join("conf.yml");
        std::fs::write(&path, conf).unwrap();
        let log = dir.join("nutcracker.log");
        let child = Command::new(Self::binary())
            .arg("-c")
            .arg(&path)
            .args(["-s", &stats_port.to_string(), "-a", "127.0.0.1", "-o"])
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut nc = Nutcracker { child, dir, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut pending: Vec<u16> = listens.to_vec();
        while !pending.is_empty() {
            if let Some(status) = nc.child.try_wait().unwrap() {
                panic!("nutcracker exited ({status}):\n{}\n{conf}", nc.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "nutcracker not listening:\n{}",
                nc.log_text()
            );
            pending.retain(|&p| TcpStream::connect(("127.0.0.1", p)).is_err());
            thread::sleep(Duration::from_millis(20));
        }
        nc
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Nutcracker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
