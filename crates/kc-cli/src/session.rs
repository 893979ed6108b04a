//! The token store: one session per gateway in `$XDG_CONFIG_HOME/keycontacts/sessions.json`
//! (`~/.config/keycontacts/` without `XDG_CONFIG_HOME`).
//!
//! The file holds secrets (access and refresh tokens), so the directory is made with mode
//! 0700 and the file is always written with mode 0600, whole, through a temporary file
//! renamed over it. A lock on `sessions.lock` beside it serializes the read-modify-write of
//! a refresh between several `kc` processes: refresh tokens are single use, so two
//! processes refreshing the same session at once would end it.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind as IoErrorKind, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{CliError, Result};

/// The name of the token file inside the configuration directory.
pub const SESSIONS_FILE: &str = "sessions.json";
/// The lock file beside it.
const LOCK_FILE: &str = "sessions.lock";

/// Who a session signs in as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    /// A person, signed in with e-mail and password; renewed with the refresh token.
    User,
    /// A service account, signed in with client id and secret; renewed by asking for a new
    /// token with the secret read again from its file.
    Service,
}

/// The tokens and identity of one sign-in at one gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Person or service account.
    pub kind: SessionKind,
    /// The person's login e-mail (user sessions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The person's user id (user sessions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The service account's client id (service sessions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The file the service account's secret is read from (service sessions); the secret
    /// itself is never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<PathBuf>,
    /// The bearer token.
    pub access_token: String,
    /// The single-use token that renews a user session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// When the access token expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_expire_time: Option<DateTime<Utc>>,
}

impl Session {
    /// Whether the access token has expired or expires within `margin_seconds`.
    pub fn expires_within(&self, margin_seconds: i64) -> bool {
        self.access_token_expire_time
            .is_some_and(|at| at <= Utc::now() + chrono::Duration::seconds(margin_seconds))
    }
}

/// The whole token file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sessions {
    /// The gateway of the last login, used when neither `--gateway` nor `KC_GATEWAY` names
    /// one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_gateway: Option<String>,
    /// One session per gateway address.
    #[serde(default)]
    pub gateways: BTreeMap<String, Session>,
}

/// The configuration directory and its token file.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store of this user: `$XDG_CONFIG_HOME/keycontacts`, else
    /// `$HOME/.config/keycontacts`.
    pub fn from_env() -> Result<Self> {
        let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
                Some(home) => PathBuf::from(home).join(".config"),
                None => {
                    return Err(CliError::other(
                        "neither XDG_CONFIG_HOME nor HOME is set: no place for the token file",
                    ));
                }
            },
        };
        Ok(Self::at(base.join("keycontacts")))
    }

    /// The store in `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The token file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(SESSIONS_FILE)
    }

    /// Reads the token file; empty when there is none yet.
    pub fn load(&self) -> Result<Sessions> {
        let path = self.path();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                CliError::other(format!(
                    "the token file {} is not valid: {e} (remove it and log in again)",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == IoErrorKind::NotFound => Ok(Sessions::default()),
            Err(e) => Err(CliError::other(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    /// Writes the whole token file, mode 0600, atomically.
    pub fn save(&self, sessions: &Sessions) -> Result<()> {
        self.ensure_dir()?;
        let path = self.path();
        let tmp = self
            .dir
            .join(format!(".{SESSIONS_FILE}.{}.tmp", std::process::id()));
        let bytes = serde_json::to_vec_pretty(sessions)
            .map_err(|e| CliError::other(format!("cannot encode the token file: {e}")))?;
        let write = || -> std::io::Result<()> {
            let mut file = private_file(&tmp)?;
            file.write_all(&bytes)?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            CliError::other(format!("cannot write {}: {e}", path.display()))
        })
    }

    /// Runs `f` on the token file while holding the store's lock, then writes what `f` left
    /// when it changed anything.
    pub fn update<T>(&self, f: impl FnOnce(&mut Sessions) -> Result<T>) -> Result<T> {
        let _lock = self.lock()?;
        let before = self.load()?;
        let mut sessions = before.clone();
        let value = f(&mut sessions)?;
        if sessions != before {
            self.save(&sessions)?;
        }
        Ok(value)
    }

    /// Takes the store's exclusive lock (released when the guard is dropped).
    pub fn lock(&self) -> Result<File> {
        self.ensure_dir()?;
        let path = self.dir.join(LOCK_FILE);
        let file = private_file_keep(&path)
            .map_err(|e| CliError::other(format!("cannot open {}: {e}", path.display())))?;
        file.lock()
            .map_err(|e| CliError::other(format!("cannot lock {}: {e}", path.display())))?;
        Ok(file)
    }

    fn ensure_dir(&self) -> Result<()> {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder
            .create(&self.dir)
            .map_err(|e| CliError::other(format!("cannot create {}: {e}", self.dir.display())))
    }
}

/// A new file only its owner may read and write (mode 0600), truncated.
fn private_file(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path)?;
    restrict(&file)?;
    Ok(file)
}

/// A file only its owner may read and write (mode 0600), kept as it is.
fn private_file_keep(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Sets mode 0600 on a file that may have existed with a wider one.
fn restrict(file: &File) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(token: &str) -> Session {
        Session {
            kind: SessionKind::User,
            email: Some("ana@example.com".into()),
            user_id: Some("u1".into()),
            client_id: None,
            client_secret_file: None,
            access_token: token.into(),
            refresh_token: Some("r1".into()),
            access_token_expire_time: Some(Utc::now() + chrono::Duration::minutes(5)),
        }
    }

    #[test]
    fn saved_sessions_read_back_and_the_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path().join("keycontacts"));
        assert_eq!(store.load().unwrap(), Sessions::default());
        store
            .update(|s| {
                s.current_gateway = Some("http://gw:1".into());
                s.gateways.insert("http://gw:1".into(), session("a1"));
                Ok(())
            })
            .unwrap();
        let loaded = store.load().unwrap();
        assert_eq!(loaded.gateways["http://gw:1"].access_token, "a1");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(store.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let dir_mode = fs::metadata(dir.path().join("keycontacts"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(dir_mode & 0o777, 0o700);
        }
    }

    #[test]
    fn expiry_margin() {
        let mut s = session("a");
        assert!(!s.expires_within(10));
        s.access_token_expire_time = Some(Utc::now() + chrono::Duration::seconds(5));
        assert!(s.expires_within(10));
        s.access_token_expire_time = None;
        assert!(!s.expires_within(10));
    }
}
