//! The key files the services need, made once per test process: identity's key-encryption
//! key and the X25519 pair with which identity seals mailed codes to notification. Tests
//! that play notification's part open codes with [`open_code`].

use std::path::PathBuf;
use std::sync::OnceLock;

use kc_runtime::secrets::{OpeningKey, generate_key};

/// The key files of this test process.
#[derive(Debug)]
pub struct TestKeys {
    /// Identity's key-encryption key (`--key-encryption-key-file`).
    pub key_encryption_key: PathBuf,
    /// The public key identity seals codes to (`--code-sealing-key-file`).
    pub code_sealing_key: PathBuf,
    /// Notification's secret key that opens them (`--code-opening-key-file`).
    pub code_opening_key: PathBuf,
    /// The opening key itself, for tests that read codes.
    pub opening: OpeningKey,
}

/// The key files of this test process (written on first use under the target directory,
/// mode 0600).
pub fn test_keys() -> &'static TestKeys {
    static KEYS: OnceLock<TestKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = crate::target_dir().join("kc-test-keys").join(format!(
            "{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&dir).expect("create the test key directory");
        let opening = OpeningKey::generate().expect("generate an opening key");
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write a test key file");
            restrict(&path);
            path
        };
        TestKeys {
            key_encryption_key: write(
                "key-encryption-key",
                &generate_key().expect("generate a key-encryption key"),
            ),
            code_sealing_key: write("code-sealing-key", &opening.sealing_key().to_text()),
            code_opening_key: write("code-opening-key", &opening.to_text()),
            opening,
        }
    })
}

#[cfg(unix)]
fn restrict(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .expect("restrict a test key file");
}

#[cfg(not(unix))]
fn restrict(_path: &std::path::Path) {}

/// The arguments that give kc-identity its key files.
pub fn identity_key_args() -> Vec<String> {
    let keys = test_keys();
    vec![
        "--key-encryption-key-file".into(),
        keys.key_encryption_key.display().to_string(),
        "--code-sealing-key-file".into(),
        keys.code_sealing_key.display().to_string(),
    ]
}

/// The arguments that give kc-contacts the public key it seals notification e-mail codes to
/// (C11), the same file identity uses.
pub fn contacts_key_args() -> Vec<String> {
    vec![
        "--code-sealing-key-file".into(),
        test_keys().code_sealing_key.display().to_string(),
    ]
}

/// The arguments that give kc-notification its code-opening key.
pub fn notification_key_args() -> Vec<String> {
    vec![
        "--code-opening-key-file".into(),
        test_keys().code_opening_key.display().to_string(),
    ]
}

/// The code in a sealed box of an identity event, as notification reads it.
pub fn open_code(sealed: &[u8]) -> String {
    let opened = test_keys()
        .opening
        .open(sealed)
        .expect("the sealed code opens with the test opening key");
    String::from_utf8(opened.to_vec()).expect("a code is UTF-8")
}
