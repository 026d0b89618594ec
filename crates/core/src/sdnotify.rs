//! Telling systemd that a service is ready (`Type=notify`).
//!
//! systemd passes the path of a datagram socket in `$NOTIFY_SOCKET`
//! (a leading `@` means Linux's abstract namespace); the service sends it
//! `READY=1` once it can do its work. Outside systemd the variable is
//! unset and nothing happens. This is best effort: a service that can't
//! notify still works, and systemd reports the start as timed out.

use std::os::unix::net::UnixDatagram;

/// Environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";

/// Sends `READY=1` to systemd, if it asked for it.
pub fn ready() {
    if let Some(path) = std::env::var_os(NOTIFY_SOCKET_ENV) {
        let _ = send(&path, "READY=1");
    }
}

fn send(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &address)?;
        }
        None => {
            socket.send_to(state.as_bytes(), path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), "READY=1").unwrap();
        let mut buffer = [0u8; 64];
        let length = listener.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..length], b"READY=1");
    }
}
