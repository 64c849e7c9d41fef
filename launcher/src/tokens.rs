//! The token-file server: serves the EKS credential token files to the filter through Envoy.
//!
//! The wasm VM has no filesystem (proxy-wasm gives it none) and Envoy cannot serve a file that
//! changes, while EKS rotates these files under a running pod (IRSA's web identity token, EKS Pod
//! Identity's authorization token). So the launcher reads them, fresh on every request, and
//! answers on the Linux abstract Unix socket `@duo-bedrock-tokens-<launcher pid>`, which Envoy
//! reaches as the cluster `duo_bedrock_token_files`:
//!
//! - `GET /web-identity-token`: `AWS_WEB_IDENTITY_TOKEN_FILE`'s content;
//! - `GET /container-authorization-token`: `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`'s content.
//!
//! 200 with the file's current content (at most 16 KiB, else 500); 404 when the variable is
//! unset; 503 with a plain-text cause naming the variable and the path when the file cannot be
//! read. No answer ever carries a file's content except a 200. Only the Envoy the launcher
//! started may connect (its pid, checked with `SO_PEERCRED`): an abstract socket has no file
//! permissions, and a host-network pod shares its namespace with the whole node.

use crate::render::TOKEN_FILE_VARS;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The largest token file served.
pub const MAX_TOKEN_BYTES: u64 = 16 * 1024;
/// The largest request head read.
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Connections served at once (Envoy opens about one per worker).
const MAX_CONNECTIONS: usize = 64;

/// The answer to a peer that is not the launcher's Envoy (nothing read from it first).
const FORBIDDEN: &[u8] =
    b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// The abstract socket name (without the leading `@` Envoy's `pipe` address uses) for `pid`,
/// with a random part: abstract names are per network namespace, and in the image the launcher
/// is PID 1 in every pod, so two host-network pods on one node would otherwise collide.
pub fn socket_name(pid: u32) -> String {
    let mut random = [0u8; 8];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut random));
    format!(
        "duo-bedrock-tokens-{pid}-{:016x}",
        u64::from_le_bytes(random)
    )
}

/// What the server serves: each token variable's path on the server and its file, if set.
#[derive(Debug, Clone)]
pub struct TokenFiles(pub Vec<(&'static str, &'static str, Option<PathBuf>)>);

impl TokenFiles {
    pub fn from_env(env: &crate::env::Env) -> TokenFiles {
        TokenFiles(
            TOKEN_FILE_VARS
                .iter()
                .map(|(var, path)| (*var, *path, env.get(var).map(PathBuf::from)))
                .collect(),
        )
    }

    /// Reads every set file once: the first that cannot be read, as `VAR=path: cause`.
    pub fn check(&self) -> Result<(), String> {
        for (var, _, file) in &self.0 {
            if let Some(file) = file {
                if let Err(e) = read_token(file) {
                    return Err(format!("{var}={}: {e}", file.display()));
                }
            }
        }
        Ok(())
    }

    /// (status, reason, body) for `GET <path>`.
    fn answer(&self, path: &str) -> (u16, &'static str, Vec<u8>) {
        let Some((var, _, file)) = self.0.iter().find(|(_, p, _)| *p == path) else {
            return (404, "Not Found", b"no such token\n".to_vec());
        };
        let Some(file) = file else {
            return (404, "Not Found", format!("{var} is not set\n").into_bytes());
        };
        match read_token(file) {
            Ok(content) => (200, "OK", content),
            Err(TokenError::TooLarge) => (
                500,
                "Internal Server Error",
                format!(
                    "{var}={}: larger than {MAX_TOKEN_BYTES} bytes\n",
                    file.display()
                )
                .into_bytes(),
            ),
            Err(TokenError::Io(e)) => (
                503,
                "Service Unavailable",
                format!("{var}={}: cannot read it: {e}\n", file.display()).into_bytes(),
            ),
        }
    }
}

#[derive(Debug)]
enum TokenError {
    TooLarge,
    Io(io::Error),
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::TooLarge => write!(f, "larger than {MAX_TOKEN_BYTES} bytes"),
            TokenError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// The file's current content, at most [`MAX_TOKEN_BYTES`]. An error never carries content.
fn read_token(file: &std::path::Path) -> Result<Vec<u8>, TokenError> {
    let mut content = Vec::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(MAX_TOKEN_BYTES + 1).read_to_end(&mut content))
        .map_err(TokenError::Io)?;
    if content.len() as u64 > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge);
    }
    Ok(content)
}

/// Binds `@<name>` and serves `files` on a thread of its own. `peer`: the only process id
/// allowed to connect (0: nobody yet; the launcher sets it to Envoy's once it started).
pub fn serve(name: &str, files: TokenFiles, peer: Arc<AtomicU32>) -> io::Result<()> {
    let listener = UnixListener::bind_addr(&SocketAddr::from_abstract_name(name)?)?;
    let files = Arc::new(files);
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("token-files".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                // Only the Envoy the launcher started is served, and only it takes a slot: any
                // other peer is closed at once, before anything is read from it.
                let allowed = peer.load(Ordering::SeqCst);
                if allowed == 0 || peer_pid(&stream) != Some(allowed) {
                    let mut stream = stream;
                    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
                    let _ = stream.write_all(FORBIDDEN);
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                    continue;
                }
                if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                    active.fetch_sub(1, Ordering::SeqCst);
                    continue;
                }
                let (files, done) = (files.clone(), active.clone());
                let spawned = std::thread::Builder::new()
                    .name("token-files-conn".into())
                    .spawn(move || {
                        let _ = connection(stream, &files);
                        done.fetch_sub(1, Ordering::SeqCst);
                    });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::SeqCst);
                }
            }
        })?;
    Ok(())
}

/// The process id of the peer of a Unix socket.
fn peer_pid(stream: &UnixStream) -> Option<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: a valid socket descriptor, a buffer of the size passed.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(cred.pid as u32)
}

/// Serves the requests of one connection (HTTP/1.1 keep-alive) until it closes.
/// Only connections of the launcher's Envoy get here (checked at accept, in [`serve`]).
fn connection(mut stream: UnixStream, files: &TokenFiles) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > MAX_HEAD_BYTES {
                return reply(
                    &mut stream,
                    431,
                    "Request Header Fields Too Large",
                    b"",
                    false,
                );
            }
            let mut chunk = [0u8; 2048];
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end);
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or_default().split(' ');
        let (method, target, version) = (
            request_line.next().unwrap_or_default(),
            request_line.next().unwrap_or_default(),
            request_line.next().unwrap_or_default(),
        );
        let mut keep_alive = version == "HTTP/1.1";
        let mut has_body = false;
        for line in lines {
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            match name.as_str() {
                "connection" if value.eq_ignore_ascii_case("close") => keep_alive = false,
                "content-length" => has_body |= value != "0",
                "transfer-encoding" => has_body = true,
                _ => {}
            }
        }
        if has_body || !version.starts_with("HTTP/1.") {
            return reply(&mut stream, 400, "Bad Request", b"", false);
        }
        let (status, reason, body) = if method != "GET" {
            (405, "Method Not Allowed", b"GET only\n".to_vec())
        } else {
            files.answer(target.split('?').next().unwrap_or_default())
        };
        reply(&mut stream, status, reason, &body, keep_alive)?;
        if !keep_alive {
            return Ok(());
        }
    }
}

fn reply(
    stream: &mut UnixStream,
    status: u16,
    reason: &str,
    body: &[u8],
    keep_alive: bool,
) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\ncache-control: no-store\r\n\
         content-length: {}\r\nconnection: {}\r\n\r\n",
        body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn get(name: &str, path: &str) -> (u16, String) {
        let addr = SocketAddr::from_abstract_name(name).unwrap();
        let mut s = UnixStream::connect_addr(&addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nhost: tokens\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out[9..12].parse().unwrap();
        let body = out.split_once("\r\n\r\n").unwrap().1.to_string();
        (status, body)
    }

    /// A server for this test process, serving `web` as the web identity token file.
    fn server(tag: &str, web: Option<PathBuf>, allow_me: bool) -> String {
        let name = format!("duo-bedrock-tokens-test-{}-{tag}", std::process::id());
        let files = TokenFiles(vec![
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/web-identity-token", web),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                "/container-authorization-token",
                None,
            ),
        ]);
        let me = if allow_me { std::process::id() } else { 0 };
        serve(&name, files, Arc::new(AtomicU32::new(me))).unwrap();
        name
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("duo-bedrock-tokens-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn serves_the_current_content_without_restart_and_never_leaks_it() {
        let dir = temp_dir("rotate");
        let file = dir.join("token");
        std::fs::write(&file, "first-token").unwrap();
        let name = server("rotate", Some(file.clone()), true);
        assert_eq!(
            get(&name, "/web-identity-token"),
            (200, "first-token".into())
        );
        // Rotated in place (as the kubelet does, through a symlink swap or a rewrite).
        std::fs::write(&file, "second-token\n").unwrap();
        assert_eq!(
            get(&name, "/web-identity-token"),
            (200, "second-token\n".into())
        );
        // Unset variable, unknown path.
        let (status, body) = get(&name, "/container-authorization-token");
        assert_eq!(status, 404);
        assert!(
            body.contains("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"),
            "{body}"
        );
        assert_eq!(get(&name, "/other").0, 404);
        // Too large: 500, no content.
        std::fs::write(&file, "s".repeat(MAX_TOKEN_BYTES as usize + 1)).unwrap();
        let (status, body) = get(&name, "/web-identity-token");
        assert_eq!(status, 500);
        assert!(
            body.contains("AWS_WEB_IDENTITY_TOKEN_FILE") && !body.contains("sss"),
            "{body}"
        );
        // Exactly the limit is served.
        std::fs::write(&file, "t".repeat(MAX_TOKEN_BYTES as usize)).unwrap();
        assert_eq!(
            get(&name, "/web-identity-token").1.len(),
            MAX_TOKEN_BYTES as usize
        );
        // Unreadable (gone, a directory): 503 naming the variable and the path, no content.
        std::fs::write(&file, "secret-content").unwrap();
        std::fs::remove_file(&file).unwrap();
        let (status, body) = get(&name, "/web-identity-token");
        assert_eq!(status, 503);
        assert!(
            body.contains("AWS_WEB_IDENTITY_TOKEN_FILE")
                && body.contains(&file.display().to_string()),
            "{body}"
        );
        assert!(!body.contains("secret-content"), "{body}");
        std::fs::create_dir(&file).unwrap();
        let (status, body) = get(&name, "/web-identity-token");
        assert_eq!(status, 503, "{body}");
        assert!(!body.contains("secret"), "{body}");
        // Keep-alive: two requests on one connection.
        let addr = SocketAddr::from_abstract_name(&name).unwrap();
        let mut s = UnixStream::connect_addr(&addr).unwrap();
        write!(
            s,
            "GET /other HTTP/1.1\r\n\r\nGET /other HTTP/1.1\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert_eq!(out.matches("HTTP/1.1 404").count(), 2, "{out}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_the_allowed_peer_reads_tokens() {
        let dir = temp_dir("peer");
        let file = dir.join("token");
        std::fs::write(&file, "peer-secret").unwrap();
        let name = server("peer", Some(file), false);
        // The server answers 403 and closes without reading the request: the client sees the
        // 403 or, when its request was still unread, a reset. Never the token.
        let addr = SocketAddr::from_abstract_name(&name).unwrap();
        let mut s = UnixStream::connect_addr(&addr).unwrap();
        let _ = write!(
            s,
            "GET /web-identity-token HTTP/1.1\r\nhost: tokens\r\nconnection: close\r\n\r\n"
        );
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let out = String::from_utf8_lossy(&out);
        assert!(out.is_empty() || out.starts_with("HTTP/1.1 403"), "{out}");
        assert!(!out.contains("peer-secret"), "{out}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn check_names_the_variable_and_path_only() {
        let dir = temp_dir("check");
        let missing = dir.join("missing");
        let files = TokenFiles(vec![(
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "/web-identity-token",
            Some(missing.clone()),
        )]);
        let e = files.check().unwrap_err();
        assert!(
            e.starts_with(&format!(
                "AWS_WEB_IDENTITY_TOKEN_FILE={}: ",
                missing.display()
            )),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
