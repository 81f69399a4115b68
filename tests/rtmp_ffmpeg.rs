//! Real publishers against `vid::rtmp::Session`: ffmpeg pushes 3 s of
//! H.264 + AAC over RTMP to a socket on 127.0.0.1 that the test drives
//! through the public sans-IO API, once with Debian's ffmpeg and once with
//! the (newer) imageio-ffmpeg binary. Each is skipped, with a printed
//! reason, when its ffmpeg is not installed.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vid::rtmp::handshake::{find_digest, PACKET_SIZE};
use vid::rtmp::{Event, Session, SessionConfig};

fn debian_ffmpeg() -> Option<PathBuf> {
    let p = PathBuf::from("/usr/bin/ffmpeg");
    p.exists().then_some(p)
}

fn imageio_ffmpeg() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let p = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    p.exists().then_some(p)
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Default, Debug)]
struct Seen {
    app: Option<String>,
    publish_name: Option<String>,
    metadata: usize,
    video: Vec<i64>,
    audio: Vec<i64>,
    unpublish: bool,
    eof: bool,
    /// C0+C1 as received, to see which handshake flavour the client used.
    c0c1: Vec<u8>,
}

fn serve(mut sock: TcpStream, deadline: Instant) -> Result<Seen, String> {
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    let mut session = Session::new(SessionConfig::default());
    let mut seen = Seen::default();
    let mut events = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while Instant::now() < deadline {
        let n = match sock.read(&mut buf) {
            Ok(0) => {
                seen.eof = true;
                break;
            }
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                seen.eof = true;
                break;
            }
            Err(e) => return Err(format!("read: {e}")),
        };
        let want = (1 + PACKET_SIZE).saturating_sub(seen.c0c1.len()).min(n);
        seen.c0c1.extend_from_slice(&buf[..want]);
        session
            .feed(&buf[..n], &mut events)
            .map_err(|e| format!("session error: {e}"))?;
        for ev in events.drain(..) {
            match ev {
                Event::Connect { app, .. } => seen.app = Some(app),
                Event::Publish {
                    stream_id, name, ..
                } => {
                    seen.publish_name = Some(name);
                    session.accept_publish(stream_id);
                }
                Event::Metadata { values, .. } => {
                    assert!(values.iter().any(|(k, _)| k == "width"), "{values:?}");
                    seen.metadata += 1;
                }
                Event::Video { timestamp_ms, .. } => seen.video.push(timestamp_ms),
                Event::Audio { timestamp_ms, .. } => seen.audio.push(timestamp_ms),
                Event::Unpublish { .. } => seen.unpublish = true,
            }
        }
        while !session.output().is_empty() {
            match sock.write(session.output()) {
                Ok(n) => session.consume_output(n),
                // The publisher may already be gone after its last message.
                Err(_) if seen.unpublish => break,
                Err(e) => return Err(format!("write: {e}")),
            }
        }
    }
    assert!(session.bytes_in() > 10_000, "{}", session.bytes_in());
    Ok(seen)
}

fn publish_with(ffmpeg: PathBuf) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let url = format!("rtmp://127.0.0.1:{port}/live/test");
    let child = Command::new(&ffmpeg)
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=30"])
        .args(["-f", "lavfi", "-i", "sine", "-t", "3"])
        .args(["-c:v", "libx264", "-g", "30", "-c:a", "aac", "-f", "flv"])
        .arg(&url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", ffmpeg.display()));
    let mut child = KillOnDrop(child);

    let deadline = Instant::now() + Duration::from_secs(40);
    let sock = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if let Ok(Some(st)) = child.0.try_wait() {
                    panic!("{} exited before connecting: {st}", ffmpeg.display());
                }
                assert!(Instant::now() < deadline, "ffmpeg never connected");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    sock.set_nonblocking(false).unwrap();
    let seen = serve(sock, deadline);

    // ffmpeg must finish on its own, successfully.
    let status = loop {
        if let Some(st) = child.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "ffmpeg did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.0.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let seen = seen.unwrap_or_else(|e| panic!("{e}; ffmpeg said: {stderr}"));
    assert!(status.success(), "ffmpeg failed ({status}): {stderr}");

    println!(
        "{}: video {} audio {} metadata {} unpublish {} eof {}",
        ffmpeg.display(),
        seen.video.len(),
        seen.audio.len(),
        seen.metadata,
        seen.unpublish,
        seen.eof
    );
    // ffmpeg signs C1, so it took the digest path, and it only goes on when
    // our S1 digest and S2 signature check out.
    let c1: [u8; PACKET_SIZE] = seen.c0c1[1..].try_into().unwrap();
    assert!(
        find_digest(&c1, true).is_some(),
        "ffmpeg C1 carries no digest"
    );
    assert_eq!(seen.app.as_deref(), Some("live"));
    assert_eq!(seen.publish_name.as_deref(), Some("test"));
    assert!(seen.metadata >= 1);
    assert!(
        seen.video.len() >= 80,
        "{} video messages",
        seen.video.len()
    );
    assert!(
        seen.audio.len() >= 100,
        "{} audio messages",
        seen.audio.len()
    );
    for (kind, ts) in [("video", &seen.video), ("audio", &seen.audio)] {
        assert!(
            ts.windows(2).all(|w| w[0] <= w[1]),
            "{kind} timestamps go back: {ts:?}"
        );
        let span = ts[ts.len() - 1] - ts[0];
        assert!((2500..4000).contains(&span), "{kind} spans {span} ms");
    }
    assert!(seen.unpublish || seen.eof, "neither unpublish nor EOF");
}

#[test]
fn publish_from_debian_ffmpeg() {
    match debian_ffmpeg() {
        Some(f) => publish_with(f),
        None => println!("skipped: /usr/bin/ffmpeg not found"),
    }
}

#[test]
fn publish_from_imageio_ffmpeg() {
    match imageio_ffmpeg() {
        Some(f) => publish_with(f),
        None => println!(
            "skipped: imageio_ffmpeg binary not found (python3 -c 'import imageio_ffmpeg')"
        ),
    }
}
