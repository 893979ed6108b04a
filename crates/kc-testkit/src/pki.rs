//! A throwaway public-key infrastructure for TLS tests: a CA, and certificates it signs for
//! servers (valid for `localhost` and `127.0.0.1`) and clients, written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// A CA whose certificate and signed leaves live in a directory of their own.
pub struct TestPki {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    /// The CA's certificate (PEM file).
    pub ca_file: PathBuf,
}

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate (PEM).
    pub cert_file: PathBuf,
    /// Its private key (PEM, PKCS#8).
    pub key_file: PathBuf,
}

impl TestPki {
    /// A new CA named `name`, its files under a new temporary directory.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("kc-pki-{name}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("create the pki directory");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name = distinguished_name(&format!("{name} test ca"));
        let key = KeyPair::generate().expect("ca key");
        let cert = params.self_signed(&key).expect("self-sign the ca");
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, cert.pem()).expect("write the ca");
        Self {
            dir,
            issuer: Issuer::new(params, key),
            ca_file,
        }
    }

    /// A server certificate for `localhost` and `127.0.0.1`, written as `<name>.pem` and
    /// `<name>-key.pem` (overwriting an earlier one of that name).
    pub fn server(&self, name: &str) -> CertFiles {
        self.leaf(name, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate for mTLS, written like [`TestPki::server`]'s.
    pub fn client(&self, name: &str) -> CertFiles {
        self.leaf(name, ExtendedKeyUsagePurpose::ClientAuth)
    }

    /// A certificate a service both serves and presents as a client (mTLS), written like
    /// [`TestPki::server`]'s.
    pub fn service(&self, name: &str) -> CertFiles {
        self.leaf_for(
            name,
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )
    }

    fn leaf(&self, name: &str, usage: ExtendedKeyUsagePurpose) -> CertFiles {
        self.leaf_for(name, vec![usage])
    }

    fn leaf_for(&self, name: &str, usages: Vec<ExtendedKeyUsagePurpose>) -> CertFiles {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("leaf params");
        params.distinguished_name = distinguished_name(name);
        params.extended_key_usages = usages;
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign the leaf");
        let files = CertFiles {
            cert_file: self.dir.join(format!("{name}.pem")),
            key_file: self.dir.join(format!("{name}-key.pem")),
        };
        write_replacing(&files.cert_file, &cert.pem());
        write_replacing(&files.key_file, &key.serialize_pem());
        files
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

/// Writes `text` to a temporary file and renames it over `path`, as a Secret update does.
fn write_replacing(path: &Path, text: &str) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).expect("write a pem file");
    std::fs::rename(&temporary, path).expect("rename a pem file");
}
