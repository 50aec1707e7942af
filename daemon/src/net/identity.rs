//! The node's identity: an ed25519 key, persisted with mode 0600.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use libp2p::identity::Keypair;

use super::NetError;

/// Loads the key at `path`, or creates it (mode 0600) when there is none.
pub fn load_or_create_keypair(path: &Path) -> Result<Keypair, NetError> {
    match std::fs::read(path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes).map_err(|e| NetError::Identity {
            path: path.to_owned(),
            advice: "not a chorus identity key; move it away to make a new identity",
            source: e.into(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key.to_protobuf_encoding().map_err(|e| NetError::Identity {
                path: path.to_owned(),
                advice: "cannot encode the new key",
                source: e.into(),
            })?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
            }
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| io_err(path, e))?;
            f.write_all(&bytes).map_err(|e| io_err(path, e))?;
            f.sync_all().map_err(|e| io_err(path, e))?;
            Ok(key)
        }
        Err(e) => Err(io_err(path, e)),
    }
}

fn io_err(path: &Path, e: std::io::Error) -> NetError {
    NetError::Identity {
        path: path.to_owned(),
        advice: "check the state dir's permissions and disk",
        source: e.into(),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_key_is_made_once_with_mode_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.key");
        let a = load_or_create_keypair(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = load_or_create_keypair(&path).unwrap();
        assert_eq!(a.public(), b.public());
        std::fs::write(&path, b"garbage").unwrap();
        assert!(load_or_create_keypair(&path).is_err());
    }
}
