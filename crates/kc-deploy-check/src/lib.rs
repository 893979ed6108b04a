//! `cargo xtask deploy-check`: the Kubernetes manifests under `deploy/` held against the API
//! schema, against the service binaries, and against the suite's call graph.
//!
//! For each overlay of [`OVERLAYS`]:
//! 1. `kubectl kustomize` renders it (into `target/deploy/<overlay>.yaml`), and
//!    `kubernetes-validate --strict` accepts the result for Kubernetes 1.30
//!    ([`render::KUBERNETES_VERSION`]).
//! 2. [`manifests`]: every flag and environment variable a service container sets is one its
//!    binary's `--help` lists; a secret (a setting with a `*_FILE` twin) comes only as a file
//!    of a Secret volume mounted read-only, which its `*_FILE` variable names; ports and probe
//!    ports match `KC_LISTEN`; every service address
//!    names a rendered Service on that port; every Secret or ConfigMap key referenced is defined
//!    in the overlay or listed in deploy/README.md as one the operator provides; every workload
//!    has the hardened securityContext, resources, and (when long-running) probes; every
//!    service of [`SERVICES`] has a Deployment, Service, migration and db-bootstrap Job, and
//!    in production an HPA and a PDB. TLS: certificate and key come in pairs, keys from
//!    Secrets; a TLS port is probed with tcpSocket (the kubelet's gRPC probes speak only
//!    plaintext), a plaintext one with gRPC; each service URL's scheme matches whether its
//!    callee serves TLS, `https://` comes with a CA, and a callee that requires client
//!    certificates is given one; in an overlay whose [`Overlay::tls`] is set every server
//!    serves TLS, every internal one requires client certificates, every URL is `https://`.
//! 3. [`network`]: the rendered NetworkPolicies, evaluated ([`netpol`]) on the rendered pods
//!    and on hosts outside the namespace, let each service be reached only by the services
//!    whose `calls` or `calls_later` name it (in a cluster every service runs, so the registry
//!    reaches access management, T8), let nothing outside reach a service unless [`DEPLOYED`]
//!    says it is public, let a relying application's pod in the namespace (label
//!    [`labels::RELYING_APP`]) reach the public services and nothing else of the suite, and
//!    let pods out only to DNS, Postgres, the OTLP collector and (for the services whose
//!    `sends_mail` is set in [`SERVICES`]) the SMTP relay.
//!
//! A service of [`SERVICES`] without manifests, a row in [`DEPLOYED`], or a built binary fails
//! the check. Manifests of a service not in [`SERVICES`] yet (being written) are checked as far
//! as that is possible without its row: against its binary if it is built, skipped otherwise.

#![warn(missing_docs, unreachable_pub)]

mod binaries;
mod manifests;
mod netpol;
mod network;
mod objects;
mod render;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use kc_bench::suite::{SERVICES, Service};
use kc_bench::workspace;

use binaries::BinarySpec;
use objects::{Object, Workload};

/// What the manifests promise about a service beyond [`SERVICES`]: one row per service that
/// has a directory under `deploy/base/`.
#[derive(Debug)]
pub struct Deployed {
    /// Short name, as in [`SERVICES`]: `identity`.
    pub service: &'static str,
    /// Reachable from outside the namespace (the gateway only).
    pub public: bool,
}

/// The services with manifests. Adding a service: a directory under `deploy/base/`, a line in
/// `deploy/base/kustomization.yaml` and in `deploy/overlays/production/kustomization.yaml`, a
/// row here, and a row in deploy/README.md's secrets table for each Secret key it reads.
pub const DEPLOYED: &[Deployed] = &[
    Deployed {
        service: "identity",
        public: false,
    },
    Deployed {
        service: "contacts",
        public: false,
    },
    Deployed {
        service: "access",
        public: false,
    },
    Deployed {
        service: "notification",
        public: false,
    },
    Deployed {
        service: "gateway",
        public: true,
    },
];

/// An overlay and what it promises.
#[derive(Debug)]
pub struct Overlay {
    /// Directory name under `deploy/overlays/`.
    pub name: &'static str,
    /// Whether it runs the services highly available: HPA (at least two replicas) and PDB
    /// for each; otherwise one replica each and neither.
    pub ha: bool,
    /// Whether it may define Secrets itself (dev values); otherwise every Secret is the
    /// operator's and must be listed in deploy/README.md.
    pub defines_secrets: bool,
    /// Whether every server serves TLS, every internal one requires client certificates
    /// (mTLS), and every service URL is `https://`; otherwise each may stay plaintext.
    pub tls: bool,
}

/// The overlays, each rendered and checked.
pub const OVERLAYS: &[Overlay] = &[
    Overlay {
        name: "dev",
        ha: false,
        defines_secrets: true,
        tls: false,
    },
    Overlay {
        name: "production",
        ha: true,
        defines_secrets: false,
        tls: true,
    },
];

/// Labels that tie the manifests together.
pub mod labels {
    /// `kc-<service>` on every pod of a service, `postgres`, `mailpit`.
    pub const NAME: &str = "app.kubernetes.io/name";
    /// `server`, `migration`, `db-bootstrap`, `database`, `mail-sink`.
    pub const COMPONENT: &str = "app.kubernetes.io/component";
    /// Prefix of `keycontacts.io/calls-<service>`: the pod calls that service.
    pub const CALLS_PREFIX: &str = "keycontacts.io/calls-";
    /// `"true"` on the pods of a relying application in the suite's namespace: they may
    /// reach the public services (the gateway) and nothing else of the suite.
    pub const RELYING_APP: &str = "keycontacts.io/relying-app";
}

/// Arguments of `cargo xtask deploy-check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Use the binaries already in target/debug instead of building the suite's services first.
    #[arg(long)]
    no_build: bool,
}

/// `cargo xtask deploy-check`: builds the binaries of [`SERVICES`] (unless `--no-build`), then
/// runs [`check`].
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if !args.no_build {
        let mut build = workspace::cargo();
        build.args(["build", "--bins"]);
        for service in SERVICES {
            build.args(["--package", service.bin]);
        }
        build.env(
            "SQLX_OFFLINE",
            std::env::var_os("SQLX_OFFLINE").unwrap_or_else(|| "true".into()),
        );
        workspace::check(&mut build).await?;
    }
    check().await
}

/// Renders, validates and checks every overlay with the binaries of target/debug; prints
/// each failure and a closing `deploy-check: N passed, M failed` line.
pub async fn check() -> anyhow::Result<ExitCode> {
    let tools = render::Tools::find().await;
    let root = workspace::root();
    let out_dir = workspace::target_dir().join("deploy");
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("could not create {}", out_dir.display()))?;
    let mut report = Report::default();

    let binaries = load_binaries(&mut report).await;
    report.scope = "deploy/README.md".into();
    let readme_path = root.join("deploy/README.md");
    let readme = std::fs::read_to_string(&readme_path)
        .with_context(|| format!("could not read {}", readme_path.display()))?;
    let operator_secrets = manifests::operator_secrets(&readme);
    report.check(!operator_secrets.is_empty(), || {
        "deploy/README.md has no operator-provided secrets table (| Secret | Key | ...)".into()
    });

    let mut referenced_operator_secrets = BTreeSet::new();
    for overlay in OVERLAYS {
        report.scope = overlay.name.to_owned();
        let dir = root.join("deploy/overlays").join(overlay.name);
        let rendered = match tools.render(&dir).await {
            Ok(rendered) => rendered,
            Err(err) => {
                report.fail(format!("{err:#}"));
                continue;
            }
        };
        report.pass();
        let file = out_dir.join(format!("{}.yaml", overlay.name));
        std::fs::write(&file, &rendered)
            .with_context(|| format!("could not write {}", file.display()))?;
        match tools.validate(&file).await {
            Ok(()) => report.pass(),
            Err(err) => report.fail(format!("{err:#}")),
        }
        let suite = match Rendered::parse(overlay, &rendered) {
            Ok(suite) => suite,
            Err(err) => {
                report.fail(format!("{err:#}"));
                continue;
            }
        };
        let context = manifests::Context {
            suite: &suite,
            binaries: &binaries,
            operator_secrets: &operator_secrets,
        };
        referenced_operator_secrets.extend(manifests::check(&context, &mut report));
        network::check(&suite, &mut report);
    }

    report.scope = "deploy/README.md".into();
    for (name, key) in &operator_secrets {
        report.check(
            referenced_operator_secrets.contains(&(name.clone(), key.clone())),
            || format!("lists secret {name} key {key}, which no overlay references"),
        );
    }

    Ok(report.finish())
}

/// The binaries' `--help`, by binary name: every `kc-*` in target/debug. A service of
/// [`SERVICES`] whose binary is missing fails here.
pub struct Binaries {
    specs: BTreeMap<String, BinarySpec>,
}

impl Binaries {
    /// The spec of `bin`, if it was built.
    pub fn get(&self, bin: &str) -> Option<&BinarySpec> {
        self.specs.get(bin)
    }
}

async fn load_binaries(report: &mut Report) -> Binaries {
    report.scope = "binaries".into();
    let dir = workspace::bin_dir();
    let mut candidates: BTreeMap<String, PathBuf> = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_binary = name.starts_with("kc-")
                && !name.contains('.')
                && entry.file_type().is_ok_and(|kind| kind.is_file());
            if is_binary {
                candidates.insert(name, entry.path());
            }
        }
    }
    for service in SERVICES {
        report.check(candidates.contains_key(service.bin), || {
            format!(
                "{} is not built in {} (cargo build --bins)",
                service.bin,
                dir.display()
            )
        });
    }
    let mut specs = BTreeMap::new();
    for (bin, path) in candidates {
        match BinarySpec::load(&bin, &path).await {
            Ok(spec) => {
                specs.insert(bin, spec);
            }
            Err(err) => report.fail(format!("{err:#}")),
        }
    }
    Binaries { specs }
}

/// One rendered overlay.
pub struct Rendered {
    /// The overlay.
    pub overlay: &'static Overlay,
    /// Every object.
    pub objects: Vec<Object>,
    /// The workloads among them.
    pub workloads: Vec<Workload>,
}

impl Rendered {
    fn parse(overlay: &'static Overlay, yaml: &str) -> anyhow::Result<Rendered> {
        let objects = objects::parse(yaml)
            .with_context(|| format!("could not parse the {} render", overlay.name))?;
        let workloads = objects::workloads(&objects)?;
        Ok(Rendered {
            overlay,
            objects,
            workloads,
        })
    }

    /// Objects of `kind`.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Object> + 'a {
        self.objects
            .iter()
            .filter(move |object| object.kind == kind)
    }

    /// The object of `kind` named `name` in `namespace`.
    pub fn find(&self, kind: &str, namespace: &str, name: &str) -> Option<&Object> {
        self.objects.iter().find(|object| {
            object.kind == kind && object.meta.name == name && object.namespace() == namespace
        })
    }

    /// The labels of `namespace` as the API server would have them.
    pub fn namespace_labels(&self, namespace: &str) -> BTreeMap<String, String> {
        let mut labels = self
            .find("Namespace", "default", namespace)
            .map(|object| object.meta.labels.clone())
            .unwrap_or_default();
        labels.insert("kubernetes.io/metadata.name".into(), namespace.to_owned());
        labels
    }
}

/// What a pod of the suite is, from its labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The server of a service (`kc-<service>`, component `server`).
    Server(String),
    /// A service's migration Job.
    Migration(String),
    /// A service's db-bootstrap Job.
    Bootstrap(String),
    /// An in-cluster Postgres (dev).
    Database,
    /// An in-cluster mail sink (dev).
    MailSink,
    /// Anything else.
    Other,
}

impl Role {
    /// The role of a pod with `pod_labels`.
    pub fn of(pod_labels: &BTreeMap<String, String>) -> Role {
        let service = pod_labels
            .get(labels::NAME)
            .and_then(|name| name.strip_prefix("kc-"))
            .map(str::to_owned);
        let component = pod_labels.get(labels::COMPONENT).map(String::as_str);
        match (component, service) {
            (Some("server"), Some(service)) => Role::Server(service),
            (Some("migration"), Some(service)) => Role::Migration(service),
            (Some("db-bootstrap"), Some(service)) => Role::Bootstrap(service),
            (Some("database"), _) => Role::Database,
            (Some("mail-sink"), _) => Role::MailSink,
            _ => Role::Other,
        }
    }
}

/// The [`SERVICES`] entry named `name`, if it has one yet.
pub fn service(name: &str) -> Option<&'static Service> {
    SERVICES.iter().find(|service| service.name == name)
}

/// The [`DEPLOYED`] row of `name`.
pub fn deployed(name: &str) -> Option<&'static Deployed> {
    DEPLOYED.iter().find(|row| row.service == name)
}

/// Results of the checks.
#[derive(Debug, Default)]
pub struct Report {
    /// Prefix of the messages that follow (the overlay).
    pub scope: String,
    passed: usize,
    failures: Vec<String>,
    notes: BTreeSet<String>,
}

impl Report {
    /// Counts a check that passed.
    pub fn pass(&mut self) {
        self.passed += 1;
    }

    /// Records a failed check.
    pub fn fail(&mut self, message: String) {
        self.failures.push(format!("[{}] {message}", self.scope));
    }

    /// Passes when `ok`, fails with `message()` otherwise.
    pub fn check(&mut self, ok: bool, message: impl FnOnce() -> String) {
        if ok {
            self.pass();
        } else {
            self.fail(message());
        }
    }

    /// Records something skipped, printed once.
    pub fn note(&mut self, message: String) {
        self.notes.insert(format!("[{}] {message}", self.scope));
    }

    /// Prints notes, failures and the summary line; the exit code.
    fn finish(self) -> ExitCode {
        for note in &self.notes {
            eprintln!("deploy-check: note: {note}");
        }
        for failure in &self.failures {
            eprintln!("deploy-check: FAILED {failure}");
        }
        println!(
            "deploy-check: {} passed, {} failed",
            self.passed,
            self.failures.len()
        );
        if self.failures.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}
