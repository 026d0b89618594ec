//! The server's own OpenPGP key pair, for the Web Key Service: what
//! `gpg-wks-client` encrypts submissions and confirmation responses to
//! once it finds the key of the submission address (by WKD, or in its
//! keyring). Made on first use under `policy = "confirm"`, with the
//! register address as its user ID, and kept in `STATE_DIR/wks-key.asc`
//! (mode 0600, written atomically, so a crash never leaves half a key);
//! its public half goes beside it in `STATE_DIR/wks-key.pub.asc`, for the
//! operator to publish (`keyreg --import` it, and hkpd and db2flat serve
//! it by WKD and HKP like any key).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ripem_core::atomic::write_atomically;
use ripem_openpgp::ServerKey;

use crate::error::RegistrarError;

/// The secret key's file under the state directory.
pub fn secret_path(state_dir: &Path) -> PathBuf {
    state_dir.join("wks-key.asc")
}

/// The public key's file under the state directory.
pub fn public_path(state_dir: &Path) -> PathBuf {
    state_dir.join("wks-key.pub.asc")
}

fn failed(path: &Path, reason: impl std::fmt::Display) -> RegistrarError {
    RegistrarError::ServerKey {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// The key pair in `state_dir`, made (for `register`) if there is none.
pub fn load_or_make(state_dir: &Path, register: &str) -> Result<ServerKey, RegistrarError> {
    let secret = secret_path(state_dir);
    match std::fs::read_to_string(&secret) {
        Ok(text) => return ServerKey::from_armored_secret(&text).map_err(|err| failed(&secret, err)),
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(failed(&secret, err)),
        Err(_) => {}
    }
    let key = ServerKey::generate(&format!("RIPEM key server <{register}>")).map_err(|err| failed(&secret, err))?;
    let public = public_path(state_dir);
    let armored_public = key.to_armored_public().map_err(|err| failed(&public, err))?;
    write_atomically(&public, armored_public.as_bytes()).map_err(|err| failed(&public, err))?;
    let armored = key.to_armored_secret().map_err(|err| failed(&secret, err))?;
    // Written private first, then renamed into place: never readable by others.
    let staging = state_dir.join(".wks-key.asc.new");
    std::fs::write(&staging, b"").map_err(|err| failed(&staging, err))?;
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o600)).map_err(|err| failed(&staging, err))?;
    std::fs::write(&staging, armored.as_bytes()).map_err(|err| failed(&staging, err))?;
    std::fs::File::open(&staging)
        .and_then(|file| file.sync_all())
        .map_err(|err| failed(&staging, err))?;
    std::fs::rename(&staging, &secret).map_err(|err| failed(&secret, err))?;
    ripem_core::atomic::sync_dir(state_dir).map_err(|err| failed(state_dir, err))?;
    Ok(key)
}
