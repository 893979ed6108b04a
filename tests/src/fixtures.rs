//! Fixtures every cross-service test shares: the operator's credentials, the flags that make
//! the services cheap to run in tests, and a signed-in person.

/// The operator's login, bootstrapped by every sandbox.
pub const OPERATOR_EMAIL: &str = "operator@keycontacts.test";
/// The password of the operator and of every person the fixtures register.
pub const PASSWORD: &str = "correct horse battery staple";

/// Cheap argon2 parameters: the tests exercise the logic, not the cost.
pub const FAST_HASHING: [&str; 4] = ["--argon2-memory-kib", "256", "--argon2-iterations", "1"];
/// A service stops at once when told (no drain), as a crash looks to its callers.
pub const NO_DRAIN: [&str; 4] = ["--shutdown-delay", "0s", "--shutdown-grace", "0s"];
/// The gateway's deadline for calls that set none: production's 5 s is tight when four
/// suites share two cpus, and a write's wait for its effect (T8) would fail a test for the
/// machine's load alone. A test that wants a short deadline sets `grpc-timeout`.
pub const PATIENT_DEADLINE: [&str; 2] = ["--default-deadline", "15s"];

/// A person signed in (through the gateway, or at identity where no gateway runs).
#[derive(Debug, Clone)]
pub struct Person {
    /// The user id.
    pub id: String,
    /// The login e-mail.
    pub email: String,
    /// The display name.
    pub name: String,
    /// An access token.
    pub token: String,
}
