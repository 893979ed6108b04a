//! Token signing keys at rest: encrypted under the key-encryption key
//! (`--key-encryption-key-file`), re-encrypted when that key rotates
//! (`--previous-key-encryption-key-file`), raw seeds from before encryption encrypted at
//! start, and a start with a key that opens no stored key refused with one clear line.
//! Identity is started, stopped and started again on one database, as a replica restarts.

use kc_runtime::cli::ParseArgs;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use kc_identity::config::IdentityArgs;
use kc_proto::identity as pb;
use kc_proto::identity::identity_service_client::IdentityServiceClient;
use kc_runtime::Shutdown;
use kc_runtime::secrets::{SecretKey, generate_key};
use kc_testkit::{SpawnedService, TestDatabase, spawn_service, test_database};
use tonic::Request;
use tonic::transport::Channel;

/// A directory of key files for one test.
struct KeyDir(PathBuf);

impl KeyDir {
    fn new() -> Self {
        let dir = kc_testkit::target_dir()
            .join("kc-test-keys")
            .join(format!("kek-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("create the key directory");
        Self(dir)
    }

    /// A new key-encryption key file called `name`, and the key.
    fn key(&self, name: &str) -> (PathBuf, SecretKey) {
        let path = self.0.join(name);
        std::fs::write(&path, generate_key().expect("generate a key")).expect("write a key");
        let key = SecretKey::from_file("test", &path).expect("read the key back");
        (path, key)
    }
}

impl Drop for KeyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Identity's arguments on `db` with `kek` as the key-encryption key (and `previous`).
fn args(db: &TestDatabase, kek: &Path, previous: Option<&Path>) -> IdentityArgs {
    let sealing = kc_testkit::secrets::test_keys()
        .code_sealing_key
        .display()
        .to_string();
    let kek = kek.display().to_string();
    let mut argv = vec![
        "kc-identity".to_owned(),
        "--database-url".to_owned(),
        db.url.clone(),
        "--key-encryption-key-file".to_owned(),
        kek,
        "--code-sealing-key-file".to_owned(),
        sealing,
    ];
    if let Some(previous) = previous {
        argv.push("--previous-key-encryption-key-file".to_owned());
        argv.push(previous.display().to_string());
    }
    argv.extend(crate::helpers::FAST_HASHING.map(str::to_owned));
    IdentityArgs::parse_from(argv).expect("test arguments parse")
}

/// A running identity.
struct Running {
    service: SpawnedService,
    shutdown: Shutdown,
    channel: Channel,
    args: IdentityArgs,
}

impl Running {
    async fn start(args: IdentityArgs) -> Self {
        let shutdown = Shutdown::new();
        let service = {
            let (args, shutdown) = (args.clone(), shutdown.clone());
            spawn_service(move |listener| kc_identity::run(args, listener, shutdown)).await
        };
        let channel = service.channel().await;
        Self {
            service,
            shutdown,
            channel,
            args,
        }
    }

    async fn stop(self) {
        self.shutdown.trigger();
        self.service
            .task
            .await
            .expect("identity task")
            .expect("identity stops cleanly");
    }

    fn client(&self) -> IdentityServiceClient<Channel> {
        IdentityServiceClient::new(self.channel.clone())
    }

    /// A new service account's access token.
    async fn service_token(&self) -> String {
        let (_, identity) = kc_identity::build(&self.args).await.expect("domain");
        let name = format!("kc-test-{}", uuid::Uuid::new_v4().simple());
        let (client_id, secret) = identity
            .create_service_account(&name)
            .await
            .expect("service account");
        self.client()
            .issue_service_token(pb::IssueServiceTokenRequest {
                client_id: client_id.to_string(),
                client_secret: secret,
            })
            .await
            .expect("service token")
            .into_inner()
            .access_token
    }

    /// Whether `token` is accepted by an RPC that needs a verified service token.
    async fn accepts(&self, token: &str) -> Result<(), tonic::Status> {
        let mut request = Request::new(pb::BatchGetUsersRequest { user_ids: vec![] });
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header"),
        );
        self.client().batch_get_users(request).await.map(|_| ())
    }

    /// The kids `GetSigningKeys` serves.
    async fn served_kids(&self) -> Vec<String> {
        crate::helpers::signing_keys(&self.channel)
            .await
            .into_iter()
            .map(|key| key.kid)
            .collect()
    }
}

/// A row of `identity.signing_keys`.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Row {
    kid: String,
    private_key: Vec<u8>,
    encryption_key_id: Option<String>,
    public_key: Vec<u8>,
}

async fn pool(db: &TestDatabase) -> sqlx::PgPool {
    let options = kc_runtime::db::connect_options(&db.url, "identity").expect("options");
    sqlx::PgPool::connect_with(options).await.expect("connect")
}

async fn rows(db: &TestDatabase) -> Vec<Row> {
    sqlx::query_as(
        "SELECT kid, private_key, encryption_key_id, public_key FROM signing_keys \
         ORDER BY create_time",
    )
    .fetch_all(&pool(db).await)
    .await
    .expect("read signing keys")
}

/// The Ed25519 public key of a 32-byte seed.
fn public_of(seed: &[u8]) -> Vec<u8> {
    let seed: [u8; 32] = seed.try_into().expect("a 32-byte seed");
    SigningKey::from_bytes(&seed)
        .verifying_key()
        .as_bytes()
        .to_vec()
}

/// Asserts that `row` holds no raw seed and opens with `kek` (and only with it) to the seed
/// of its public key.
#[track_caller]
fn assert_encrypted_with(row: &Row, kek: &SecretKey, others: &[&SecretKey]) {
    assert_eq!(
        row.encryption_key_id.as_deref(),
        Some(kek.id().as_str()),
        "{} names its key-encryption key",
        row.kid
    );
    assert_ne!(row.private_key.len(), 32, "{} is not a bare seed", row.kid);
    assert!(
        row.private_key
            .windows(32)
            .all(|window| public_of(window) != row.public_key),
        "no 32 bytes of {}'s stored private key are the seed of its public key",
        row.kid
    );
    let seed = kek
        .decrypt(&row.private_key, row.kid.as_bytes())
        .expect("the row opens with its key-encryption key");
    assert_eq!(
        public_of(&seed),
        row.public_key,
        "{} opens to its seed",
        row.kid
    );
    assert!(
        kek.decrypt(&row.private_key, b"another-kid").is_err(),
        "the ciphertext is bound to its kid"
    );
    for other in others {
        assert!(other.decrypt(&row.private_key, row.kid.as_bytes()).is_err());
    }
}

fn kid_of(token: &str) -> String {
    kc_runtime::token::parse(token).expect("a JWT").kid
}

#[tokio::test]
async fn signing_keys_are_stored_encrypted_and_keep_signing_across_restarts() {
    let db = test_database().await;
    let keys = KeyDir::new();
    let (kek_file, kek) = keys.key("kek");

    let first = Running::start(args(&db, &kek_file, None)).await;
    let token = first.service_token().await;
    let stored = rows(&db).await;
    assert_eq!(stored.len(), 1, "the first start creates one key");
    assert_encrypted_with(&stored[0], &kek, &[]);
    assert_eq!(kid_of(&token), stored[0].kid);
    first.stop().await;

    let again = Running::start(args(&db, &kek_file, None)).await;
    again
        .accepts(&token)
        .await
        .expect("a token signed before the restart verifies after it");
    let after = again.service_token().await;
    assert_eq!(kid_of(&after), stored[0].kid, "the same key signs");
    again.accepts(&after).await.expect("a new token verifies");
    assert_eq!(
        rows(&db).await[0].private_key,
        stored[0].private_key,
        "a start under the same key leaves the rows as they are"
    );

    // Rotating the signing key stores the new key encrypted too.
    let (_, identity) = kc_identity::build(&again.args).await.expect("domain");
    let rotated = identity.keys().rotate().await.expect("rotate");
    let stored = rows(&db).await;
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[1].kid, rotated.kid);
    for row in &stored {
        assert_encrypted_with(row, &kek, &[]);
    }
    assert_eq!(
        again.served_kids().await,
        [rotated.kid.clone(), stored[0].kid.clone()]
    );
    again.stop().await;
}

#[tokio::test]
async fn a_key_encryption_key_rotation_re_encrypts_every_signing_key() {
    let db = test_database().await;
    let keys = KeyDir::new();
    let (old_file, old) = keys.key("old");
    let (new_file, new) = keys.key("new");

    let before = Running::start(args(&db, &old_file, None)).await;
    let (_, identity) = kc_identity::build(&before.args).await.expect("domain");
    identity
        .keys()
        .rotate()
        .await
        .expect("rotate the signing key");
    let token = before.service_token().await;
    let kids: Vec<String> = rows(&db).await.into_iter().map(|row| row.kid).collect();
    assert_eq!(kids.len(), 2);
    for row in rows(&db).await {
        assert_encrypted_with(&row, &old, &[&new]);
    }
    before.stop().await;

    // The new key as current, the old one as previous: every row is re-encrypted at start.
    let during = Running::start(args(&db, &new_file, Some(&old_file))).await;
    let stored = rows(&db).await;
    assert_eq!(
        stored.iter().map(|row| row.kid.clone()).collect::<Vec<_>>(),
        kids,
        "the signing keys themselves do not change"
    );
    for row in &stored {
        assert_encrypted_with(row, &new, &[&old]);
    }
    during
        .accepts(&token)
        .await
        .expect("a token signed before the rotation verifies");
    let signed = during.service_token().await;
    assert_eq!(kid_of(&signed), kids[1], "the newest key still signs");
    during.stop().await;

    // The previous key dropped: identity starts, signs, and rotates its signing key.
    let after = Running::start(args(&db, &new_file, None)).await;
    after.accepts(&token).await.expect("still verifies");
    let (_, identity) = kc_identity::build(&after.args).await.expect("domain");
    let rotated = identity
        .keys()
        .rotate()
        .await
        .expect("rotate after the rotation");
    let newest = after.service_token().await;
    assert_eq!(kid_of(&newest), rotated.kid);
    after.accepts(&newest).await.expect("the new key verifies");
    for row in rows(&db).await {
        assert_encrypted_with(&row, &new, &[&old]);
    }
    after.stop().await;

    // The old key alone no longer opens anything.
    let error = kc_identity::build(&args(&db, &old_file, None))
        .await
        .expect_err("the old key opens no stored key");
    let line = format!("{error:#}");
    assert!(line.contains("--key-encryption-key-file"), "{line}");
    assert!(
        line.contains(&new.id()),
        "names the key that encrypted it: {line}"
    );
}

#[tokio::test]
async fn a_wrong_key_encryption_key_fails_the_start_with_one_clear_line() {
    let db = test_database().await;
    let keys = KeyDir::new();
    let (right_file, right) = keys.key("right");
    let (wrong_file, wrong) = keys.key("wrong");
    let (other_file, _) = keys.key("other");

    Running::start(args(&db, &right_file, None))
        .await
        .stop()
        .await;
    let before = rows(&db).await;

    // As the binary prints it: `kc-identity: {error:#}`.
    for previous in [None, Some(other_file.as_path())] {
        let shutdown = Shutdown::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let error = kc_identity::run(args(&db, &wrong_file, previous), listener, shutdown)
            .await
            .expect_err("a key that opens no stored key refuses to start");
        let line = format!("{error:#}");
        assert!(!line.contains('\n'), "one line: {line}");
        assert!(
            line.contains("--key-encryption-key-file"),
            "names the setting: {line}"
        );
        assert!(line.contains(&right.id()), "names the key it needs: {line}");
        assert!(line.contains(&wrong.id()), "and the key it got: {line}");
    }
    assert_eq!(
        rows(&db)
            .await
            .into_iter()
            .map(|row| row.private_key)
            .collect::<Vec<_>>(),
        before
            .into_iter()
            .map(|row| row.private_key)
            .collect::<Vec<_>>(),
        "a refused start changes nothing"
    );

    // A missing key file is refused naming the setting, before anything else.
    let error = kc_identity::build(&args(&db, &keys.0.join("absent"), None))
        .await
        .expect_err("no key file");
    assert!(
        format!("{error:#}").contains("--key-encryption-key-file"),
        "{error:#}"
    );
}

#[tokio::test]
async fn raw_seeds_stored_before_encryption_are_encrypted_at_start() {
    let db = test_database().await;
    let keys = KeyDir::new();
    let (kek_file, kek) = keys.key("kek");
    Running::start(args(&db, &kek_file, None))
        .await
        .stop()
        .await;

    // A key as identity stored them before encryption at rest: the bare seed, signing now.
    let legacy = kc_runtime::token::generate_signing_key();
    let legacy_kid = kc_runtime::token::key_id(&legacy.verifying_key());
    let pool = pool(&db).await;
    sqlx::query("UPDATE signing_keys SET retire_time = clock_timestamp()")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO signing_keys (kid, private_key, public_key) VALUES ($1, $2, $3)")
        .bind(&legacy_kid)
        .bind(legacy.as_bytes().as_slice())
        .bind(legacy.verifying_key().as_bytes().as_slice())
        .execute(&pool)
        .await
        .unwrap();

    let running = Running::start(args(&db, &kek_file, None)).await;
    let stored = rows(&db).await;
    assert_eq!(stored.len(), 2);
    for row in &stored {
        assert_encrypted_with(row, &kek, &[]);
    }
    let token = running.service_token().await;
    assert_eq!(kid_of(&token), legacy_kid, "the legacy key keeps signing");
    running.accepts(&token).await.expect("and verifying");
    running.stop().await;
}
