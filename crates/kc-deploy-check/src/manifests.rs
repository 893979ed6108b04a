//! The manifests held against the binaries and against what a platform team requires: flags,
//! environment, ports, probes, addresses, Secret and ConfigMap keys, security settings,
//! resources, and the objects each service needs.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use super::binaries::{CommandSpec, PROCESS_ENV};
use super::objects::{
    Container, HpaSpec, IntOrString, KeyToPath, Object, PdbSpec, Probe, ServiceSpec, Volume,
    Workload,
};
use super::{Binaries, Rendered, Report, Role, deployed, labels, service};
use kc_bench::suite::SERVICES;

/// What the checks of one overlay need.
pub(crate) struct Context<'a> {
    /// The rendered overlay.
    pub suite: &'a Rendered,
    /// The binaries' help.
    pub binaries: &'a Binaries,
    /// (Secret, key) pairs deploy/README.md lists as the operator's.
    pub operator_secrets: &'a BTreeSet<(String, String)>,
}

/// The rows of deploy/README.md's table of operator-provided secrets: a Markdown table whose
/// first two header cells are `Secret` and `Key`. Backticks around cells are ignored.
pub(crate) fn operator_secrets(readme: &str) -> BTreeSet<(String, String)> {
    let cells = |line: &str| -> Vec<String> {
        line.trim()
            .trim_matches('|')
            .split('|')
            .map(|cell| cell.trim().trim_matches('`').to_owned())
            .collect()
    };
    let mut rows = BTreeSet::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let header = cells(line);
        let is_table = line.trim_start().starts_with('|')
            && header.len() >= 2
            && header[0].eq_ignore_ascii_case("secret")
            && header[1].eq_ignore_ascii_case("key");
        if !is_table {
            continue;
        }
        lines.next(); // the |---|---| line
        for row in lines.by_ref() {
            if !row.trim_start().starts_with('|') {
                break;
            }
            let row = cells(row);
            if row.len() >= 2 && !row[0].is_empty() && !row[1].is_empty() {
                rows.insert((row[0].clone(), row[1].clone()));
            }
        }
    }
    rows
}

/// Runs every manifest check of one overlay; returns the operator-provided (Secret, key)
/// pairs it references.
pub(crate) fn check(context: &Context<'_>, report: &mut Report) -> BTreeSet<(String, String)> {
    let suite = context.suite;
    let mut referenced = BTreeSet::new();
    for workload in &suite.workloads {
        check_security(workload, report);
        for container in workload.template.spec.all_containers() {
            check_resources(workload, container, report);
            check_refs(context, workload, container, &mut referenced, report);
            check_addresses(context, workload, container, report);
            if is_suite_binary(container) {
                check_suite_container(context, workload, container, report);
            }
        }
        if workload.long_running() {
            for container in &workload.template.spec.containers {
                check_probes_exist(workload, container, report);
            }
        }
        check_volumes(context, workload, &mut referenced, report);
    }
    if !suite.overlay.defines_secrets {
        for secret in suite.of_kind("Secret") {
            report.fail(format!(
                "{} is committed: every Secret of this overlay is the operator's",
                secret.id()
            ));
        }
    }
    check_services_present(context, report);
    check_availability(context, report);
    referenced
}

/// Whether the container runs one of the suite's binaries.
fn is_suite_binary(container: &Container) -> bool {
    container
        .command
        .first()
        .is_some_and(|program| binary_name(program).starts_with("kc-"))
}

fn binary_name(program: &str) -> &str {
    program.rsplit('/').next().unwrap_or(program)
}

fn where_(workload: &Workload, container: &Container) -> String {
    format!("{} container {}", workload.object.id(), container.name)
}

/// runAsNonRoot, read-only root filesystem, no privilege escalation, all capabilities
/// dropped, seccomp RuntimeDefault, no service-account token.
fn check_security(workload: &Workload, report: &mut Report) {
    let spec = &workload.template.spec;
    let id = workload.object.id();
    let pod = spec.security_context.clone().unwrap_or_default();
    report.check(spec.automount_service_account_token == Some(false), || {
        format!("{id}: automountServiceAccountToken must be false")
    });
    for container in spec.all_containers() {
        let at = where_(workload, container);
        let own = container.security_context.clone().unwrap_or_default();
        let non_root = own.run_as_non_root.or(pod.run_as_non_root) == Some(true);
        report.check(non_root, || format!("{at}: runAsNonRoot must be true"));
        let uid = own.run_as_user.or(pod.run_as_user);
        report.check(uid != Some(0), || format!("{at}: runs as uid 0"));
        report.check(own.read_only_root_filesystem == Some(true), || {
            format!("{at}: readOnlyRootFilesystem must be true")
        });
        report.check(own.allow_privilege_escalation == Some(false), || {
            format!("{at}: allowPrivilegeEscalation must be false")
        });
        report.check(own.privileged != Some(true), || {
            format!("{at}: must not be privileged")
        });
        let capabilities = own.capabilities.clone().unwrap_or_default();
        report.check(
            capabilities.drop.iter().any(|cap| cap == "ALL") && capabilities.add.is_empty(),
            || format!("{at}: capabilities must drop ALL and add none"),
        );
        let seccomp = own
            .seccomp_profile
            .as_ref()
            .or(pod.seccomp_profile.as_ref())
            .map(|profile| profile.kind.as_str());
        report.check(seccomp == Some("RuntimeDefault"), || {
            format!("{at}: seccompProfile must be RuntimeDefault")
        });
    }
}

/// CPU and memory requests, and a memory limit.
fn check_resources(workload: &Workload, container: &Container, report: &mut Report) {
    let at = where_(workload, container);
    let resources = &container.resources;
    report.check(
        resources.requests.contains_key("cpu")
            && resources.requests.contains_key("memory")
            && resources.limits.contains_key("memory"),
        || format!("{at}: needs cpu and memory requests and a memory limit"),
    );
}

/// Long-running containers have liveness and readiness probes.
fn check_probes_exist(workload: &Workload, container: &Container, report: &mut Report) {
    let at = where_(workload, container);
    report.check(
        container.liveness_probe.is_some() && container.readiness_probe.is_some(),
        || format!("{at}: needs liveness and readiness probes"),
    );
}

/// The environment of a container, as the process will see it: envFrom ConfigMaps and
/// Secrets in order, then `env`. Values are `None` when they cannot be known (a Secret the
/// operator provides).
fn environment(
    suite: &Rendered,
    workload: &Workload,
    container: &Container,
) -> BTreeMap<String, Option<String>> {
    let namespace = workload.object.namespace();
    let lookup = |kind: &str, name: &str| -> Option<BTreeMap<String, String>> {
        suite
            .find(kind, namespace, name)
            .and_then(|object| super::objects::data(object).ok())
    };
    let mut env = BTreeMap::new();
    for source in &container.env_from {
        let prefix = source.prefix.clone().unwrap_or_default();
        let data = if let Some(config_map) = &source.config_map_ref {
            lookup("ConfigMap", &config_map.name)
        } else if let Some(secret) = &source.secret_ref {
            lookup("Secret", &secret.name)
        } else {
            None
        };
        for (key, value) in data.unwrap_or_default() {
            env.insert(format!("{prefix}{key}"), Some(value));
        }
    }
    for var in &container.env {
        let value = if let Some(value) = &var.value {
            Some(value.clone())
        } else if let Some(source) = &var.value_from {
            if let Some(key_ref) = &source.config_map_key_ref {
                lookup("ConfigMap", &key_ref.name).and_then(|data| data.get(&key_ref.key).cloned())
            } else if let Some(key_ref) = &source.secret_key_ref {
                lookup("Secret", &key_ref.name).and_then(|data| data.get(&key_ref.key).cloned())
            } else {
                None
            }
        } else {
            Some(String::new())
        };
        env.insert(var.name.clone(), value);
    }
    env
}

/// Every ConfigMap and Secret key a container's environment references exists (or, for a
/// Secret, is listed as the operator's).
fn check_refs(
    context: &Context<'_>,
    workload: &Workload,
    container: &Container,
    referenced: &mut BTreeSet<(String, String)>,
    report: &mut Report,
) {
    let at = where_(workload, container);
    let namespace = workload.object.namespace();
    for source in &container.env_from {
        if let Some(config_map) = &source.config_map_ref {
            report.check(
                context
                    .suite
                    .find("ConfigMap", namespace, &config_map.name)
                    .is_some(),
                || format!("{at}: envFrom ConfigMap {} is not defined", config_map.name),
            );
        }
        if let Some(secret) = &source.secret_ref {
            report.check(
                context
                    .suite
                    .find("Secret", namespace, &secret.name)
                    .is_some(),
                || {
                    format!(
                        "{at}: envFrom Secret {}: reference operator secrets key by key \
                         (env valueFrom.secretKeyRef) so that their keys are known",
                        secret.name
                    )
                },
            );
        }
    }
    for var in &container.env {
        let Some(source) = &var.value_from else {
            continue;
        };
        if let Some(key_ref) = &source.config_map_key_ref {
            check_key(
                context,
                namespace,
                "ConfigMap",
                &key_ref.name,
                &key_ref.key,
                referenced,
                report,
                &at,
            );
        }
        if let Some(key_ref) = &source.secret_key_ref {
            check_key(
                context,
                namespace,
                "Secret",
                &key_ref.name,
                &key_ref.key,
                referenced,
                report,
                &at,
            );
        }
    }
}

/// Every ConfigMap and Secret a pod's volumes reference exists with the keys projected.
fn check_volumes(
    context: &Context<'_>,
    workload: &Workload,
    referenced: &mut BTreeSet<(String, String)>,
    report: &mut Report,
) {
    let at = workload.object.id();
    let namespace = workload.object.namespace();
    for volume in &workload.template.spec.volumes {
        for (kind, name, items) in volume_sources(volume) {
            if items.is_empty() {
                let defined = context.suite.find(kind, namespace, name).is_some();
                let listed = kind == "Secret"
                    && context
                        .operator_secrets
                        .iter()
                        .any(|(secret, _)| *secret == name);
                if listed && !defined {
                    referenced.extend(
                        context
                            .operator_secrets
                            .iter()
                            .filter(|(secret, _)| *secret == name)
                            .cloned(),
                    );
                }
                report.check(defined || listed, || {
                    format!("{at}: volume {}: {kind} {name} is not defined", volume.name)
                });
            } else {
                for item in items {
                    let where_ = format!("{at} volume {}", volume.name);
                    check_key(
                        context, namespace, kind, name, &item.key, referenced, report, &where_,
                    );
                }
            }
        }
    }
}

/// The ConfigMaps and Secrets a volume projects: kind, name, and the keys it selects (every
/// key when empty).
fn volume_sources(volume: &Volume) -> Vec<(&'static str, &str, &[KeyToPath])> {
    let mut sources = Vec::new();
    if let Some(secret) = &volume.secret {
        sources.push((
            "Secret",
            secret.secret_name.as_str(),
            secret.items.as_slice(),
        ));
    }
    if let Some(config_map) = &volume.config_map {
        sources.push((
            "ConfigMap",
            config_map.name.as_str(),
            config_map.items.as_slice(),
        ));
    }
    if let Some(projected) = &volume.projected {
        for source in &projected.sources {
            if let Some(secret) = &source.secret {
                sources.push(("Secret", secret.name.as_str(), secret.items.as_slice()));
            }
            if let Some(config_map) = &source.config_map {
                sources.push((
                    "ConfigMap",
                    config_map.name.as_str(),
                    config_map.items.as_slice(),
                ));
            }
        }
    }
    sources
}

/// A file of a container that a ConfigMap or Secret volume provides.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MountedFile {
    /// `Secret` or `ConfigMap`.
    kind: &'static str,
    /// The object's name.
    name: String,
    /// The key whose value the file holds.
    key: String,
    /// Whether the volume is mounted read-only.
    read_only: bool,
}

/// The ConfigMap or Secret key that the file `path` of `container` holds, through the
/// volume mounted over it; `None` when no mounted volume projects a key there.
fn mounted_file(workload: &Workload, container: &Container, path: &str) -> Option<MountedFile> {
    container.volume_mounts.iter().find_map(|mount| {
        let root = mount.mount_path.trim_end_matches('/');
        let below = if path == root {
            ""
        } else {
            path.strip_prefix(root)?.strip_prefix('/')?
        };
        let inside = match mount.sub_path.as_deref().filter(|sub| !sub.is_empty()) {
            Some(sub) if below.is_empty() => sub.to_owned(),
            Some(sub) => format!("{}/{below}", sub.trim_end_matches('/')),
            None => below.to_owned(),
        };
        let volume = workload
            .template
            .spec
            .volumes
            .iter()
            .find(|volume| volume.name == mount.name)?;
        volume_sources(volume)
            .into_iter()
            .find_map(|(kind, name, items)| {
                let key = if items.is_empty() {
                    // Every key is a file named after it, at the volume's top.
                    (!inside.is_empty() && !inside.contains('/')).then(|| inside.clone())?
                } else {
                    items.iter().find(|item| item.path == inside)?.key.clone()
                };
                Some(MountedFile {
                    kind,
                    name: name.to_owned(),
                    key,
                    read_only: mount.read_only == Some(true),
                })
            })
    })
}

/// A `*_FILE` variable of a container and the file it names.
struct FileSetting {
    /// `DATABASE_URL_FILE`.
    var: String,
    /// Its value: the file's path in the container.
    path: String,
    /// The volume's key there, if a mounted volume provides the file.
    file: Option<MountedFile>,
    /// The file's content, when the overlay defines its ConfigMap or Secret.
    content: Option<String>,
}

/// The `*_FILE` variables of a container's environment (with a known value), each with the
/// file it names: `DATABASE_URL_FILE` stands for the URL in that file.
fn file_settings(
    suite: &Rendered,
    workload: &Workload,
    container: &Container,
    env: &BTreeMap<String, Option<String>>,
) -> Vec<FileSetting> {
    let namespace = workload.object.namespace();
    env.iter()
        .filter(|(var, _)| var.ends_with("_FILE"))
        .filter_map(|(var, path)| Some((var, path.clone()?)))
        .map(|(var, path)| {
            let file = mounted_file(workload, container, &path);
            let content = file.as_ref().and_then(|file| {
                suite
                    .find(file.kind, namespace, &file.name)
                    .and_then(|object| super::objects::data(object).ok())?
                    .remove(&file.key)
            });
            FileSetting {
                var: var.clone(),
                path,
                file,
                content,
            }
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn check_key(
    context: &Context<'_>,
    namespace: &str,
    kind: &str,
    name: &str,
    key: &str,
    referenced: &mut BTreeSet<(String, String)>,
    report: &mut Report,
    at: &str,
) {
    let object = context.suite.find(kind, namespace, name);
    let defined = object
        .and_then(|object| super::objects::data(object).ok())
        .is_some_and(|data| data.contains_key(key));
    if defined {
        report.pass();
        return;
    }
    let pair = (name.to_owned(), key.to_owned());
    if kind == "Secret" && object.is_none() && context.operator_secrets.contains(&pair) {
        referenced.insert(pair);
        report.pass();
        return;
    }
    report.fail(format!(
        "{at}: {kind} {name} key {key} is neither defined in the overlay nor listed in \
         deploy/README.md's table of operator-provided secrets"
    ));
}

/// Every URL a container is given that names an in-cluster host (`name`, `name.namespace`,
/// `name.namespace.svc[.cluster.local]`) names a rendered Service with that port.
fn check_addresses(
    context: &Context<'_>,
    workload: &Workload,
    container: &Container,
    report: &mut Report,
) {
    let at = where_(workload, container);
    let env = environment(context.suite, workload, container);
    let files: Vec<_> = file_settings(context.suite, workload, container, &env)
        .into_iter()
        .map(|setting| {
            let name = format!("{} ({})", setting.var, setting.path);
            (name, setting.content)
        })
        .collect();
    for (name, value) in env.into_iter().chain(files) {
        let Some(value) = value else { continue };
        let Ok(url) = url::Url::parse(&value) else {
            continue;
        };
        let Some(host) = url.host_str() else { continue };
        if !url.has_authority() || host.parse::<std::net::IpAddr>().is_ok() {
            continue;
        }
        let Some((service_name, namespace)) = in_cluster_host(host, workload.object.namespace())
        else {
            continue;
        };
        // `name.namespace` only when that namespace is the suite's: `example.com` is not.
        let suite_namespace = context
            .suite
            .objects
            .iter()
            .any(|object| object.namespace() == namespace);
        if !suite_namespace {
            continue;
        }
        let Some(port) = url.port_or_known_default().or(match url.scheme() {
            "postgres" | "postgresql" => Some(5432),
            _ => None,
        }) else {
            report.fail(format!("{at}: {name} ({host}) has no port"));
            continue;
        };
        let service = context.suite.find("Service", &namespace, &service_name);
        let spec = service.and_then(|service| service.field::<ServiceSpec>("spec").ok());
        report.check(
            spec.is_some_and(|spec| spec.ports.iter().any(|p| p.port == port)),
            || {
                format!(
                    "{at}: {name} names {host}:{port}, but no Service {service_name} with \
                     port {port} is rendered in namespace {namespace}"
                )
            },
        );
    }
}

/// The Service name and namespace of an in-cluster host name, if it is one.
fn in_cluster_host(host: &str, namespace: &str) -> Option<(String, String)> {
    let host = host.trim_end_matches('.');
    let host = host
        .strip_suffix(".cluster.local")
        .unwrap_or(host)
        .trim_end_matches(".svc");
    let parts: Vec<&str> = host.split('.').collect();
    match parts.as_slice() {
        [name] => Some(((*name).to_owned(), namespace.to_owned())),
        [name, namespace] => Some(((*name).to_owned(), (*namespace).to_owned())),
        _ => None,
    }
}

/// A container running a suite binary: its subcommand, flags and environment are ones the
/// binary accepts; a server listens on a reachable port its ports, probes and Service agree
/// on, drains within the grace period, and is given exactly the addresses of the services it
/// calls.
fn check_suite_container(
    context: &Context<'_>,
    workload: &Workload,
    container: &Container,
    report: &mut Report,
) {
    let at = where_(workload, container);
    let bin = binary_name(&container.command[0]);
    let name = bin.trim_start_matches("kc-");
    let known = service(name);
    report.check(
        known.is_none() || known.is_some_and(|s| s.bin == bin),
        || format!("{at}: runs {bin}, which is not the binary of service {name}"),
    );
    let Some(binary) = context.binaries.get(bin) else {
        if known.is_none() {
            report.note(format!(
                "{bin} is not in SERVICES and not built: its containers are not held against \
                 its --help"
            ));
        }
        // Missing binaries of SERVICES already failed when the binaries were loaded.
        return;
    };
    let Some(command) = container.args.first() else {
        report.fail(format!(
            "{at}: name the subcommand explicitly (args: [serve] or [migrate])"
        ));
        return;
    };
    let Some(spec) = binary.commands.get(command) else {
        report.fail(format!(
            "{at}: {bin} has no subcommand {command} (it has {})",
            binary
                .commands
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ));
        return;
    };
    check_flags(&at, bin, command, spec, &container.args[1..], report);
    let env = environment(context.suite, workload, container);
    for var in env.keys() {
        let accepted = spec.env.contains(var) || PROCESS_ENV.iter().any(|(name, _)| name == var);
        report.check(accepted, || {
            format!("{at}: sets {var}, which `{bin} {command}` does not accept")
        });
    }
    check_secret_files(context, workload, container, spec, &env, report);
    let is_server = Role::of(workload.pod_labels()) == Role::Server(name.to_owned());
    if command == "serve" {
        report.check(is_server && workload.long_running(), || {
            format!(
                "{at}: serves, so its pods must be labelled {}=kc-{name}, {}=server in a \
                 Deployment",
                labels::NAME,
                labels::COMPONENT
            )
        });
        check_server(context, workload, container, name, &env, report);
    } else {
        report.check(!is_server, || {
            format!("{at}: a server pod must run `{bin} serve`, not `{command}`")
        });
    }
}

/// Secrets reach a suite binary as files, never through its environment or command line: a
/// setting whose file twin the binary accepts (`DATABASE_URL_FILE`, `--database-url-file`) is
/// a secret, and only its twin may be given. Every `*_FILE` variable the binary reads names a
/// file that a ConfigMap or Secret volume, mounted read-only, provides from a key the overlay
/// defines or deploy/README.md lists.
fn check_secret_files(
    context: &Context<'_>,
    workload: &Workload,
    container: &Container,
    spec: &CommandSpec,
    env: &BTreeMap<String, Option<String>>,
    report: &mut Report,
) {
    let at = where_(workload, container);
    for var in env.keys() {
        let twin = format!("{var}_FILE");
        report.check(!spec.env.contains(&twin), || {
            format!(
                "{at}: sets the secret {var} in its environment: mount its Secret as a file and \
                 set {twin} (deploy/README.md, Operator-provided secrets)"
            )
        });
    }
    for arg in container.args.iter().skip(1) {
        let Some(flag) = arg.strip_prefix("--") else {
            continue;
        };
        let flag = flag.split('=').next().unwrap_or_default();
        let twin = format!("--{flag}-file");
        report.check(!spec.flags.contains(&twin), || {
            format!(
                "{at}: passes the secret --{flag} on its command line: mount its Secret as a \
                 file and pass {twin}"
            )
        });
    }
    let namespace = workload.object.namespace();
    for FileSetting {
        var, path, file, ..
    } in file_settings(context.suite, workload, container, env)
    {
        if !spec.env.contains(&var) {
            continue;
        }
        let Some(file) = file else {
            report.fail(format!(
                "{at}: {var} names {path}, which no ConfigMap or Secret volume of the pod \
                 provides (a volume with items selecting the key, mounted over its directory)"
            ));
            continue;
        };
        report.check(file.read_only, || {
            format!("{at}: {var} names {path}, whose volume must be mounted readOnly")
        });
        let defined = context.suite.find(file.kind, namespace, &file.name);
        let known = match defined {
            Some(object) => {
                super::objects::data(object).is_ok_and(|data| data.contains_key(&file.key))
            }
            None => {
                file.kind == "Secret"
                    && context
                        .operator_secrets
                        .contains(&(file.name.clone(), file.key.clone()))
            }
        };
        report.check(known, || {
            format!(
                "{at}: {var} names {path}, key {} of {} {}, which is neither defined in the \
                 overlay nor listed in deploy/README.md's table of operator-provided secrets",
                file.key, file.kind, file.name
            )
        });
    }
}

fn check_flags(
    at: &str,
    bin: &str,
    command: &str,
    spec: &CommandSpec,
    args: &[String],
    report: &mut Report,
) {
    for arg in args {
        let Some(flag) = arg.strip_prefix("--") else {
            continue;
        };
        let flag = format!("--{}", flag.split('=').next().unwrap_or_default());
        report.check(spec.flags.contains(&flag), || {
            format!("{at}: passes {flag}, which `{bin} {command}` does not accept")
        });
    }
}

/// The metrics of a server: `KC_METRICS_LISTEN` set to all addresses, on a container port
/// named `metrics`, which the pod's scrape annotations name.
fn check_metrics(
    workload: &Workload,
    container: &Container,
    env: &BTreeMap<String, Option<String>>,
    report: &mut Report,
) {
    let at = where_(workload, container);
    let listen = env
        .get("KC_METRICS_LISTEN")
        .cloned()
        .flatten()
        .and_then(|value| value.parse::<SocketAddr>().ok());
    let Some(listen) = listen else {
        report.fail(format!(
            "{at}: KC_METRICS_LISTEN must be set to an address (without it the server \
             exports no metrics)"
        ));
        return;
    };
    report.check(listen.ip().is_unspecified(), || {
        format!("{at}: KC_METRICS_LISTEN {listen} must listen on all addresses (0.0.0.0 or [::])")
    });
    let port = listen.port();
    report.check(
        container
            .ports
            .iter()
            .any(|p| p.name.as_deref() == Some("metrics") && p.container_port == port),
        || format!("{at}: needs a container port named metrics with containerPort {port}"),
    );
    let annotations = &workload.template.metadata.annotations;
    let expected = [
        ("prometheus.io/scrape", "true".to_owned()),
        ("prometheus.io/port", port.to_string()),
        ("prometheus.io/path", "/metrics".to_owned()),
    ];
    for (key, value) in expected {
        report.check(annotations.get(key) == Some(&value), || {
            format!("{at}: the pod template needs the annotation {key}: \"{value}\"")
        });
    }
}

/// `KC_<NAME>_URL` variables that address something other than a service of the suite: the
/// SMTP relay (whose in-cluster address, the dev mail sink, is held against the rendered
/// Services like every URL, and whose egress the network checks cover).
const NOT_SERVICE_URLS: &[&str] = &["KC_SMTP_URL"];

/// The checks of a `serve` container.
fn check_server(
    context: &Context<'_>,
    workload: &Workload,
    container: &Container,
    name: &str,
    env: &BTreeMap<String, Option<String>>,
    report: &mut Report,
) {
    let at = where_(workload, container);
    let pod = &workload.template.spec;
    let known = service(name);

    // The listen address, and every port that must agree with it.
    let listen = env
        .get("KC_LISTEN")
        .cloned()
        .flatten()
        .and_then(|value| value.parse::<SocketAddr>().ok());
    let Some(listen) = listen else {
        report.fail(format!(
            "{at}: KC_LISTEN must be set to an address (the default is 127.0.0.1, unreachable \
             from the kubelet and other pods)"
        ));
        return;
    };
    report.check(listen.ip().is_unspecified(), || {
        format!("{at}: KC_LISTEN {listen} must listen on all addresses (0.0.0.0 or [::])")
    });
    let port = listen.port();
    if let Some(known) = known {
        report.check(known.port == port, || {
            format!("{at}: listens on {port}, SERVICES says {}", known.port)
        });
    }
    report.check(
        container
            .ports
            .iter()
            .any(|p| p.name.as_deref() == Some("grpc") && p.container_port == port),
        || format!("{at}: needs a container port named grpc with containerPort {port}"),
    );
    check_metrics(workload, container, env, report);
    let health_service = known.map(|known| known.grpc_service);
    let tls = Tls::of(env);
    check_tls(context, workload, container, name, env, report);
    for (kind, probe) in [
        ("startupProbe", &container.startup_probe),
        ("readinessProbe", &container.readiness_probe),
        ("livenessProbe", &container.liveness_probe),
    ] {
        if tls.serves {
            check_tcp_probe(&at, kind, probe.as_ref(), port, report);
        } else {
            check_grpc_probe(&at, kind, probe.as_ref(), port, health_service, report);
        }
    }

    // Graceful shutdown: the kubelet waits longer than the drain.
    let duration = |var: &str, default: Duration| match env.get(var).cloned().flatten() {
        // The services' own syntax, so what the manifest sets is read as they read it.
        Some(text) => kc_runtime::config::parse_duration(&text).ok(),
        None => Some(default),
    };
    let delay = duration("KC_SHUTDOWN_DELAY", Duration::ZERO);
    let grace = duration("KC_SHUTDOWN_GRACE", Duration::from_secs(20));
    let period = pod.termination_grace_period_seconds.unwrap_or(30);
    match (delay, grace) {
        (Some(delay), Some(grace)) => {
            report.check(
                u64::try_from(period).unwrap_or(0) > (delay + grace).as_secs(),
                || {
                    format!(
                        "{at}: terminationGracePeriodSeconds {period} must exceed \
                         KC_SHUTDOWN_DELAY + KC_SHUTDOWN_GRACE ({}s)",
                        (delay + grace).as_secs()
                    )
                },
            );
            report.check(!delay.is_zero(), || {
                format!(
                    "{at}: KC_SHUTDOWN_DELAY must be set, so that readiness fails before the \
                     server stops accepting"
                )
            });
        }
        _ => report.fail(format!(
            "{at}: KC_SHUTDOWN_DELAY or KC_SHUTDOWN_GRACE is not a duration"
        )),
    }
    report.check(pod.enable_service_links == Some(false), || {
        format!("{}: enableServiceLinks must be false", workload.object.id())
    });

    // Its ServiceAccount exists and mounts no token.
    let account = pod.service_account_name.clone().unwrap_or_default();
    let account_ok = context
        .suite
        .find("ServiceAccount", workload.object.namespace(), &account)
        .is_some_and(|object| {
            object.raw.get("automountServiceAccountToken") == Some(&serde_json::Value::Bool(false))
        });
    report.check(account_ok, || {
        format!(
            "{}: needs its own ServiceAccount (found `{account}`) with \
             automountServiceAccountToken: false",
            workload.object.id()
        )
    });

    // The addresses of the services it calls, and the labels that open the network to them.
    let given: BTreeSet<String> = env
        .keys()
        .filter(|var| !NOT_SERVICE_URLS.contains(&var.as_str()))
        .filter_map(|var| var.strip_prefix("KC_")?.strip_suffix("_URL"))
        .map(str::to_lowercase)
        .collect();
    let labelled: BTreeSet<String> = workload
        .pod_labels()
        .iter()
        .filter(|(_, value)| *value == "true")
        .filter_map(|(key, _)| key.strip_prefix(labels::CALLS_PREFIX))
        .map(str::to_owned)
        .collect();
    report.check(given == labelled, || {
        format!(
            "{}: is given the URLs of {given:?} but labelled to call {labelled:?} \
             ({}<service>: \"true\")",
            workload.object.id(),
            labels::CALLS_PREFIX
        )
    });
    if let Some(known) = known {
        // In a cluster every service runs: each is given the URLs of all it may call, the
        // ones it calls later (the registry follows access management, T8) included.
        let calls: BTreeSet<String> = known.callees().map(str::to_owned).collect();
        report.check(given == calls, || {
            format!("{at}: is given the URLs of {given:?}, but SERVICES says it calls {calls:?}")
        });
    }
    // A service that calls others authenticates as its service account (SERVICES says which),
    // whose credentials are the operator's Secret: never literal values, and the client
    // secret as a file.
    if let Some(known) = known {
        if known.service_account {
            let id_from_secret = container.env.iter().any(|entry| {
                entry.name == "KC_CLIENT_ID"
                    && entry
                        .value_from
                        .as_ref()
                        .is_some_and(|source| source.secret_key_ref.is_some())
            });
            report.check(id_from_secret, || {
                format!(
                    "{at}: {name} has a service account: set KC_CLIENT_ID from its Secret \
                     (kc-{name}-account)"
                )
            });
            let secret_file = env
                .get("KC_CLIENT_SECRET_FILE")
                .cloned()
                .flatten()
                .and_then(|path| mounted_file(workload, container, &path))
                .is_some_and(|file| file.kind == "Secret");
            report.check(secret_file, || {
                format!(
                    "{at}: {name} has a service account: set KC_CLIENT_SECRET_FILE to the \
                     client-secret of its Secret (kc-{name}-account) mounted as a file"
                )
            });
        } else {
            for var in ["KC_CLIENT_ID", "KC_CLIENT_SECRET", "KC_CLIENT_SECRET_FILE"] {
                report.check(!env.contains_key(var), || {
                    format!("{at}: sets {var}, but SERVICES gives {name} no service account")
                });
            }
        }
    }
    for callee in &given {
        let var = format!("KC_{}_URL", callee.to_uppercase());
        let target = env
            .get(&var)
            .cloned()
            .flatten()
            .and_then(|value| url::Url::parse(&value).ok())
            .and_then(|url| {
                let (service_name, namespace) =
                    in_cluster_host(url.host_str()?, workload.object.namespace())?;
                Some((
                    url.scheme().to_owned(),
                    service_name,
                    namespace,
                    url.port_or_known_default()?,
                ))
            });
        let Some((scheme, service_name, namespace, port)) = target else {
            report.fail(format!(
                "{at}: {var} is not an http(s)://<service>:<port> URL"
            ));
            continue;
        };
        let callee_tls = server_tls(context.suite, &namespace, callee);
        check_call_tls(
            &at,
            &var,
            &scheme,
            tls,
            callee_tls,
            context.suite.overlay.tls,
            report,
        );
        let serves_callee = context
            .suite
            .find("Service", &namespace, &service_name)
            .and_then(|object| object.field::<ServiceSpec>("spec").ok())
            .is_some_and(|spec| {
                spec.ports.iter().any(|p| p.port == port)
                    && context.suite.workloads.iter().any(|candidate| {
                        candidate.object.namespace() == namespace
                            && Role::of(candidate.pod_labels()) == Role::Server(callee.clone())
                            && selects(&spec.selector, candidate)
                    })
            });
        report.check(serves_callee, || {
            format!(
                "{at}: {var} names Service {service_name}:{port}, which does not select the \
                 kc-{callee} server pods on that port"
            )
        });
    }
}

/// The TLS settings of a suite binary, from its environment (a variable whose value the
/// overlay does not know, from an operator Secret, counts as set).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Tls {
    /// Serves TLS: `KC_TLS_CERT_FILE`.
    serves: bool,
    /// Requires client certificates (mTLS): `KC_TLS_CLIENT_CA_FILE`.
    requires_client_cert: bool,
    /// Trusts a CA for the `https://` services it calls: `KC_TLS_CA_FILE`.
    trusts: bool,
    /// Presents a client certificate: `KC_TLS_CLIENT_CERT_FILE`.
    client_cert: bool,
}

impl Tls {
    fn of(env: &BTreeMap<String, Option<String>>) -> Tls {
        let set = |var: &str| {
            env.get(var)
                .is_some_and(|value| value.as_deref().is_none_or(|value| !value.is_empty()))
        };
        Tls {
            serves: set("KC_TLS_CERT_FILE"),
            requires_client_cert: set("KC_TLS_CLIENT_CA_FILE"),
            trusts: set("KC_TLS_CA_FILE"),
            client_cert: set("KC_TLS_CLIENT_CERT_FILE"),
        }
    }
}

/// The TLS settings of the server of `callee` in `namespace`, if one is rendered.
fn server_tls(suite: &Rendered, namespace: &str, callee: &str) -> Option<Tls> {
    let workload = suite.workloads.iter().find(|workload| {
        workload.object.namespace() == namespace
            && Role::of(workload.pod_labels()) == Role::Server(callee.to_owned())
    })?;
    let container = workload.template.spec.containers.iter().find(|container| {
        container
            .command
            .first()
            .is_some_and(|program| binary_name(program) == format!("kc-{callee}"))
    })?;
    Some(Tls::of(&environment(suite, workload, container)))
}

/// The TLS settings of a server: certificate and key (and client certificate and key) come
/// in pairs, client certificates are required only of a TLS port, private keys come from
/// Secrets; where the overlay turns TLS on, the server serves it and, unless public, requires
/// client certificates.
fn check_tls(
    context: &Context<'_>,
    workload: &Workload,
    container: &Container,
    name: &str,
    env: &BTreeMap<String, Option<String>>,
    report: &mut Report,
) {
    let at = where_(workload, container);
    let tls = Tls::of(env);
    for (one, other) in [
        ("KC_TLS_CERT_FILE", "KC_TLS_KEY_FILE"),
        ("KC_TLS_CLIENT_CERT_FILE", "KC_TLS_CLIENT_KEY_FILE"),
    ] {
        report.check(env.contains_key(one) == env.contains_key(other), || {
            format!("{at}: sets one of {one} and {other}: set both or neither")
        });
    }
    report.check(tls.serves || !tls.requires_client_cert, || {
        format!("{at}: sets KC_TLS_CLIENT_CA_FILE without KC_TLS_CERT_FILE (mTLS needs TLS)")
    });
    for var in ["KC_TLS_KEY_FILE", "KC_TLS_CLIENT_KEY_FILE"] {
        let Some(path) = env.get(var).cloned().flatten() else {
            continue;
        };
        let from_secret =
            mounted_file(workload, container, &path).is_some_and(|file| file.kind == "Secret");
        report.check(from_secret, || {
            format!("{at}: {var} names {path}, which must be a file of a mounted Secret")
        });
    }
    if context.suite.overlay.tls {
        report.check(tls.serves, || {
            format!(
                "{at}: this overlay serves TLS everywhere: set KC_TLS_CERT_FILE and \
                 KC_TLS_KEY_FILE to its Secret kc-{name}-tls"
            )
        });
        let public = deployed(name).is_some_and(|row| row.public);
        report.check(public || tls.requires_client_cert, || {
            format!(
                "{at}: {name} is internal: set KC_TLS_CLIENT_CA_FILE (the suite CA, ca.crt of \
                 kc-{name}-tls) so that only the suite's services connect"
            )
        });
    }
}

/// One call's TLS: `https://` exactly when the callee serves TLS, with a CA to trust, and a
/// client certificate when the callee requires one; `https://` always where the overlay
/// turns TLS on.
fn check_call_tls(
    at: &str,
    var: &str,
    scheme: &str,
    caller: Tls,
    callee: Option<Tls>,
    overlay_tls: bool,
    report: &mut Report,
) {
    let https = match scheme {
        "https" => true,
        "http" => false,
        _ => {
            report.fail(format!("{at}: {var} is a {scheme}:// URL, not http(s)://"));
            return;
        }
    };
    if overlay_tls {
        report.check(https, || {
            format!("{at}: {var} must be an https:// URL in this overlay")
        });
    }
    if https {
        report.check(caller.trusts, || {
            format!(
                "{at}: {var} is https://: set KC_TLS_CA_FILE to the CA of the callee's certificate"
            )
        });
    }
    let Some(callee) = callee else { return };
    report.check(https == callee.serves, || {
        if callee.serves {
            format!("{at}: {var} is http://, but its callee serves TLS only: use https://")
        } else {
            format!("{at}: {var} is https://, but its callee serves plaintext")
        }
    });
    if callee.requires_client_cert {
        report.check(caller.client_cert, || {
            format!(
                "{at}: {var}'s callee requires client certificates: set \
                 KC_TLS_CLIENT_CERT_FILE and KC_TLS_CLIENT_KEY_FILE"
            )
        });
    }
}

/// The probe of a TLS port: a TCP connect to it (the kubelet's gRPC probes speak plaintext
/// only and would fail the handshake).
fn check_tcp_probe(at: &str, kind: &str, probe: Option<&Probe>, port: u16, report: &mut Report) {
    let Some(tcp) = probe.and_then(|probe| probe.tcp_socket.as_ref()) else {
        report.fail(format!(
            "{at}: serves TLS, so its {kind} must be tcpSocket (a gRPC probe cannot do TLS)"
        ));
        return;
    };
    let ok = match &tcp.port {
        IntOrString::Int(number) => *number == i64::from(port),
        IntOrString::Str(name) => name == "grpc",
    };
    report.check(ok, || {
        format!("{at}: {kind} must connect to the gRPC port {port} (or `grpc`)")
    });
}

fn check_grpc_probe(
    at: &str,
    kind: &str,
    probe: Option<&Probe>,
    port: u16,
    health_service: Option<&str>,
    report: &mut Report,
) {
    let Some(grpc) = probe.and_then(|probe| probe.grpc.as_ref()) else {
        report.fail(format!("{at}: needs a native gRPC {kind}"));
        return;
    };
    report.check(grpc.port == port, || {
        format!(
            "{at}: {kind} checks port {}, the server listens on {port}",
            grpc.port
        )
    });
    let checked = grpc.service.clone().unwrap_or_default();
    match health_service {
        Some(expected) => report.check(checked == expected, || {
            format!("{at}: {kind} checks health of `{checked}`, expected `{expected}`")
        }),
        None => report.check(!checked.is_empty(), || {
            format!("{at}: {kind} must name the gRPC service whose health it checks")
        }),
    }
}

/// Whether a Service selector selects the pods of `workload`.
fn selects(selector: &BTreeMap<String, String>, workload: &Workload) -> bool {
    !selector.is_empty()
        && selector
            .iter()
            .all(|(key, value)| workload.pod_labels().get(key) == Some(value))
}

/// Each service of SERVICES has its row, a server Deployment and a Service, and (with a schema)
/// its migration and db-bootstrap Jobs; each rendered server has a row and a Service.
fn check_services_present(context: &Context<'_>, report: &mut Report) {
    let suite = context.suite;
    let servers: Vec<(&Workload, String)> = suite
        .workloads
        .iter()
        .filter_map(|workload| match Role::of(workload.pod_labels()) {
            Role::Server(name) => Some((workload, name)),
            _ => None,
        })
        .collect();
    for known in SERVICES {
        report.check(deployed(known.name).is_some(), || {
            format!(
                "service {} has no row in DEPLOYED (crates/kc-deploy-check/src/lib.rs)",
                known.name
            )
        });
        report.check(
            servers
                .iter()
                .any(|(w, name)| name == known.name && w.object.kind == "Deployment"),
            || {
                format!(
                    "service {} has no Deployment: add deploy/base/{}/ and list it in \
                     deploy/base/kustomization.yaml",
                    known.name, known.name
                )
            },
        );
        let Some(schema) = known.schema else { continue };
        let runs = |workload: &Workload, subcommand: &str| {
            workload.object.kind == "Job"
                && workload.template.spec.containers.iter().any(|container| {
                    container
                        .command
                        .first()
                        .is_some_and(|program| binary_name(program) == known.bin)
                        && container.args.first().map(String::as_str) == Some(subcommand)
                })
        };
        report.check(suite.workloads.iter().any(|w| runs(w, "migrate")), || {
            format!(
                "service {}: no Job runs `{} migrate`",
                known.name, known.bin
            )
        });
        let bootstraps = suite.workloads.iter().any(|workload| {
            workload.object.kind == "Job"
                && Role::of(workload.pod_labels()) == Role::Bootstrap(known.name.to_owned())
                && workload.template.spec.containers.iter().any(|container| {
                    container
                        .env
                        .iter()
                        .any(|var| var.name == "SCHEMA" && var.value.as_deref() == Some(schema))
                })
        });
        report.check(bootstraps, || {
            format!(
                "service {}: no db-bootstrap Job creates role kc_{schema} and schema {schema}",
                known.name
            )
        });
    }
    for (workload, name) in &servers {
        let row = deployed(name);
        report.check(row.is_some(), || {
            format!(
                "{}: service {name} has no row in DEPLOYED (crates/kc-deploy-check/src/lib.rs)",
                workload.object.id()
            )
        });
        let port = workload
            .template
            .spec
            .containers
            .iter()
            .flat_map(|container| &container.ports)
            .find(|port| port.name.as_deref() == Some("grpc"));
        let exposed = suite.of_kind("Service").any(|object| {
            let Ok(spec) = object.field::<ServiceSpec>("spec") else {
                return false;
            };
            let headless = spec.cluster_ip.as_deref() == Some("None");
            object.namespace() == workload.object.namespace()
                && selects(&spec.selector, workload)
                && (headless || row.is_some_and(|row| row.public))
                && spec.ports.iter().any(|service_port| {
                    service_port.name.as_deref() == Some("grpc")
                        && port.is_some_and(|port| {
                            service_port.port == port.container_port
                                && match &service_port.target_port {
                                    None => true,
                                    Some(IntOrString::Str(name)) => name == "grpc",
                                    Some(IntOrString::Int(number)) => {
                                        *number == i64::from(port.container_port)
                                    }
                                }
                        })
                })
        });
        report.check(exposed, || {
            format!(
                "{}: needs a Service selecting its pods with a port named grpc on its \
                 container port (headless: clients balance over the pods themselves)",
                workload.object.id()
            )
        });
    }
}

/// dev: one replica per Deployment and no HPA or PDB; production: an HPA with at least two
/// replicas and a PDB per service.
fn check_availability(context: &Context<'_>, report: &mut Report) {
    let suite = context.suite;
    let hpas: Vec<(&Object, HpaSpec)> = suite
        .of_kind("HorizontalPodAutoscaler")
        .filter_map(|object| Some((object, object.field::<HpaSpec>("spec").ok()?)))
        .collect();
    let pdbs: Vec<(&Object, PdbSpec)> = suite
        .of_kind("PodDisruptionBudget")
        .filter_map(|object| Some((object, object.field::<PdbSpec>("spec").ok()?)))
        .collect();
    for workload in &suite.workloads {
        if workload.object.kind != "Deployment" {
            continue;
        }
        let id = workload.object.id();
        let is_server = matches!(Role::of(workload.pod_labels()), Role::Server(_));
        let hpa = hpas.iter().find(|(object, spec)| {
            object.namespace() == workload.object.namespace()
                && spec.scale_target_ref.kind == "Deployment"
                && spec.scale_target_ref.name == workload.object.meta.name
        });
        let pdb = pdbs.iter().find(|(object, spec)| {
            object.namespace() == workload.object.namespace()
                && spec
                    .selector
                    .as_ref()
                    .is_some_and(|selector| selector.matches(workload.pod_labels()))
        });
        if suite.overlay.ha && is_server {
            let replicas = hpa
                .and_then(|(_, spec)| spec.min_replicas)
                .or(workload.replicas)
                .unwrap_or(1);
            report.check(replicas >= 2, || {
                format!("{id}: runs {replicas} replica(s); at least two in this overlay")
            });
            report.check(hpa.is_some(), || {
                format!("{id}: needs a HorizontalPodAutoscaler")
            });
            report.check(hpa.is_none() || workload.replicas.is_none(), || {
                format!("{id}: leave spec.replicas to its HorizontalPodAutoscaler")
            });
            report.check(
                pdb.is_some_and(|(_, spec)| {
                    spec.min_available.is_some() || spec.max_unavailable.is_some()
                }),
                || format!("{id}: needs a PodDisruptionBudget"),
            );
        } else if !suite.overlay.ha {
            report.check(workload.replicas == Some(1), || {
                format!(
                    "{id}: runs {:?} replicas; one in this overlay",
                    workload.replicas
                )
            });
        }
    }
    if !suite.overlay.ha {
        for (object, _) in &hpas {
            report.fail(format!("{}: no HPA in this overlay", object.id()));
        }
        for (object, _) in &pdbs {
            report.fail(format!(
                "{}: no PodDisruptionBudget in this overlay",
                object.id()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OVERLAYS;
    use serde_json::{Value, json};

    /// A dev render in namespace `ns`: the Secret `kc-x-db` (key `url`), a Deployment whose
    /// only container is `container`, with the volumes `db` (kc-x-db's `url` as the file
    /// `database-url`) and `keys` (every key of the operator's kc-x-keys), and `extra`.
    fn suite(container: Value, extra: &[Value]) -> Rendered {
        suite_in(&OVERLAYS[0], container, extra)
    }

    /// [`suite`], rendered as `overlay`.
    fn suite_in(overlay: &'static crate::Overlay, container: Value, extra: &[Value]) -> Rendered {
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "kc-x-db", "namespace": "ns"},
            "stringData": {"url": "postgres://kc_x:pw@postgres:5432/db"},
        });
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "kc-x", "namespace": "ns"},
            "spec": {"template": {"metadata": {"labels": {"app": "x"}}, "spec": {
                "containers": [container],
                "volumes": [
                    {"name": "db", "secret": {"secretName": "kc-x-db",
                        "items": [{"key": "url", "path": "database-url"}]}},
                    {"name": "keys", "secret": {"secretName": "kc-x-keys"}},
                ],
            }}},
        });
        let documents: Vec<String> = [secret, deployment]
            .iter()
            .chain(extra)
            .map(Value::to_string)
            .collect();
        Rendered::parse(overlay, &documents.join("\n---\n")).unwrap()
    }

    /// A container of `kc-x serve` with `env`, `args` after `serve`, and `mounts`.
    fn container(env: Value, args: &[&str], mounts: Value) -> Value {
        let mut argv = vec!["serve"];
        argv.extend(args);
        json!({"name": "x", "image": "i", "command": ["kc-x"], "args": argv, "env": env,
               "volumeMounts": mounts})
    }

    /// The failures of `check` on the one container of `suite`.
    fn failures(
        suite: &Rendered,
        check: impl FnOnce(&Context<'_>, &Workload, &Container, &mut Report),
    ) -> Vec<String> {
        let operator_secrets = BTreeSet::from([("kc-x-keys".to_owned(), "key".to_owned())]);
        let binaries = Binaries {
            specs: BTreeMap::new(),
        };
        let context = Context {
            suite,
            binaries: &binaries,
            operator_secrets: &operator_secrets,
        };
        let workload = &suite.workloads[0];
        let mut report = Report::default();
        check(
            &context,
            workload,
            &workload.template.spec.containers[0],
            &mut report,
        );
        report.failures
    }

    fn mounts() -> Value {
        json!([
            {"name": "db", "mountPath": "/run/secrets/kc-x-db", "readOnly": true},
            {"name": "keys", "mountPath": "/run/secrets/kc-x/", "readOnly": true},
        ])
    }

    #[test]
    fn file_paths_resolve_through_the_mounted_volumes() {
        let suite = suite(
            container(
                json!([]),
                &[],
                json!([
                    {"name": "db", "mountPath": "/run/secrets/kc-x-db", "readOnly": true},
                    {"name": "keys", "mountPath": "/run/secrets/kc-x/"},
                    {"name": "keys", "mountPath": "/etc/key", "subPath": "key"},
                ]),
            ),
            &[],
        );
        let workload = &suite.workloads[0];
        let file = |path: &str| {
            mounted_file(workload, &workload.template.spec.containers[0], path)
                .map(|file| (file.kind, file.name, file.key, file.read_only))
        };
        let secret = |name: &str, key: &str, read_only| {
            Some(("Secret", name.to_owned(), key.to_owned(), read_only))
        };
        // An item's file is its path, not its key.
        assert_eq!(
            file("/run/secrets/kc-x-db/database-url"),
            secret("kc-x-db", "url", true)
        );
        assert_eq!(file("/run/secrets/kc-x-db/url"), None);
        // Without items every key is a file at the top of the volume.
        assert_eq!(
            file("/run/secrets/kc-x/key"),
            secret("kc-x-keys", "key", false)
        );
        assert_eq!(file("/run/secrets/kc-x/dir/key"), None);
        assert_eq!(file("/etc/key"), secret("kc-x-keys", "key", false));
        // A mount path is a directory, not a prefix of names.
        assert_eq!(file("/run/secrets/kc-x-dbx/database-url"), None);
        assert_eq!(file("/elsewhere/url"), None);
    }

    #[test]
    fn secrets_reach_binaries_only_as_mounted_files() {
        let spec = CommandSpec {
            flags: [
                "--database-url",
                "--database-url-file",
                "--listen",
                "--key-file",
            ]
            .map(str::to_owned)
            .into(),
            env: [
                "DATABASE_URL",
                "DATABASE_URL_FILE",
                "KC_LISTEN",
                "KC_KEY_FILE",
            ]
            .map(str::to_owned)
            .into(),
        };
        let run = |suite: &Rendered| {
            failures(suite, |context, workload, container, report| {
                let env = environment(context.suite, workload, container);
                check_secret_files(context, workload, container, &spec, &env, report);
            })
        };

        let files = suite(
            container(
                json!([
                    {"name": "DATABASE_URL_FILE", "value": "/run/secrets/kc-x-db/database-url"},
                    {"name": "KC_KEY_FILE", "value": "/run/secrets/kc-x/key"},
                    {"name": "KC_LISTEN", "value": "0.0.0.0:1"},
                ]),
                &["--listen=0.0.0.0:1"],
                mounts(),
            ),
            &[],
        );
        assert_eq!(run(&files), Vec::<String>::new());

        let values = suite(
            container(
                json!([
                    {"name": "DATABASE_URL",
                     "valueFrom": {"secretKeyRef": {"name": "kc-x-db", "key": "url"}}},
                ]),
                &["--database-url=postgres://kc_x:pw@postgres/db"],
                mounts(),
            ),
            &[],
        );
        let failed = run(&values);
        assert_eq!(failed.len(), 2, "{failed:#?}");
        assert!(failed[0].contains("sets the secret DATABASE_URL in its environment"));
        assert!(failed[0].contains("set DATABASE_URL_FILE"));
        assert!(failed[1].contains("passes the secret --database-url on its command line"));

        let unmounted = suite(
            container(
                json!([
                    {"name": "DATABASE_URL_FILE", "value": "/run/secrets/kc-x-db/url"},
                    {"name": "KC_KEY_FILE", "value": "/run/secrets/kc-x/other"},
                ]),
                &[],
                json!([
                    {"name": "db", "mountPath": "/run/secrets/kc-x-db", "readOnly": true},
                    {"name": "keys", "mountPath": "/run/secrets/kc-x"},
                ]),
            ),
            &[],
        );
        let failed = run(&unmounted);
        assert_eq!(failed.len(), 3, "{failed:#?}");
        assert!(failed[0].contains("DATABASE_URL_FILE names /run/secrets/kc-x-db/url, which no"));
        assert!(failed[1].contains("must be mounted readOnly"));
        assert!(failed[2].contains("key other of Secret kc-x-keys, which is neither defined"));
    }

    #[test]
    fn addresses_in_mounted_files_name_rendered_services() {
        let database_file = container(
            json!([{"name": "DATABASE_URL_FILE", "value": "/run/secrets/kc-x-db/database-url"}]),
            &[],
            mounts(),
        );
        let postgres = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "postgres", "namespace": "ns"},
            "spec": {"selector": {"app": "postgres"}, "ports": [{"port": 5432}]},
        });
        let run = |suite: &Rendered| {
            failures(suite, |context, workload, container, report| {
                check_addresses(context, workload, container, report);
            })
        };
        let failed = run(&suite(database_file.clone(), &[]));
        assert_eq!(failed.len(), 1, "{failed:#?}");
        assert!(failed[0].contains(
            "DATABASE_URL_FILE (/run/secrets/kc-x-db/database-url) names postgres:5432, but no \
             Service postgres"
        ));
        assert_eq!(
            run(&suite(database_file, &[postgres])),
            Vec::<String>::new()
        );
    }

    fn env_of(vars: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
        vars.iter()
            .map(|(var, value)| ((*var).to_owned(), value.map(str::to_owned)))
            .collect()
    }

    #[test]
    fn tls_settings_are_read_from_the_environment() {
        assert_eq!(Tls::of(&env_of(&[])), Tls::default());
        // A value only the operator's Secret knows counts as set; an empty one does not.
        let tls = Tls::of(&env_of(&[
            ("KC_TLS_CERT_FILE", Some("/run/secrets/kc-x-tls/tls.crt")),
            ("KC_TLS_CLIENT_CA_FILE", None),
            ("KC_TLS_CA_FILE", Some("")),
            (
                "KC_TLS_CLIENT_CERT_FILE",
                Some("/run/secrets/kc-x-tls/tls.crt"),
            ),
        ]));
        assert_eq!(
            tls,
            Tls {
                serves: true,
                requires_client_cert: true,
                trusts: false,
                client_cert: true,
            }
        );
    }

    #[test]
    fn tls_files_come_in_pairs_and_keys_from_secrets() {
        let run = |suite: &Rendered| {
            failures(suite, |context, workload, container, report| {
                let env = environment(context.suite, workload, container);
                check_tls(context, workload, container, "x", &env, report);
            })
        };
        let complete = json!([
            {"name": "KC_TLS_CERT_FILE", "value": "/run/secrets/kc-x/tls.crt"},
            {"name": "KC_TLS_KEY_FILE", "value": "/run/secrets/kc-x/tls.key"},
            {"name": "KC_TLS_CLIENT_CA_FILE", "value": "/run/secrets/kc-x/ca.crt"},
            {"name": "KC_TLS_CLIENT_CERT_FILE", "value": "/run/secrets/kc-x/tls.crt"},
            {"name": "KC_TLS_CLIENT_KEY_FILE", "value": "/run/secrets/kc-x/tls.key"},
        ]);
        assert_eq!(
            run(&suite(container(complete.clone(), &[], mounts()), &[])),
            Vec::<String>::new()
        );
        // Plaintext is fine where the overlay does not turn TLS on.
        assert_eq!(
            run(&suite(container(json!([]), &[], mounts()), &[])),
            Vec::<String>::new()
        );

        let broken = suite(
            container(
                json!([
                    {"name": "KC_TLS_KEY_FILE", "value": "/etc/tls.key"},
                    {"name": "KC_TLS_CLIENT_CA_FILE", "value": "/run/secrets/kc-x/ca.crt"},
                    {"name": "KC_TLS_CLIENT_CERT_FILE", "value": "/run/secrets/kc-x/tls.crt"},
                ]),
                &[],
                mounts(),
            ),
            &[],
        );
        let failed = run(&broken);
        assert_eq!(failed.len(), 4, "{failed:#?}");
        assert!(failed[0].contains("sets one of KC_TLS_CERT_FILE and KC_TLS_KEY_FILE"));
        assert!(
            failed[1].contains("sets one of KC_TLS_CLIENT_CERT_FILE and KC_TLS_CLIENT_KEY_FILE")
        );
        assert!(failed[2].contains("KC_TLS_CLIENT_CA_FILE without KC_TLS_CERT_FILE"));
        assert!(failed[3].contains(
            "KC_TLS_KEY_FILE names /etc/tls.key, which must be a file of a mounted Secret"
        ));

        // Production: every server serves TLS and, unless public, requires client certificates.
        let production = &OVERLAYS[1];
        assert!(production.tls);
        let failed = run(&suite_in(
            production,
            container(json!([]), &[], mounts()),
            &[],
        ));
        assert_eq!(failed.len(), 2, "{failed:#?}");
        assert!(
            failed[0].contains("set KC_TLS_CERT_FILE and KC_TLS_KEY_FILE to its Secret kc-x-tls")
        );
        assert!(failed[1].contains("x is internal: set KC_TLS_CLIENT_CA_FILE"));
        assert_eq!(
            run(&suite_in(
                production,
                container(complete, &[], mounts()),
                &[]
            )),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_call_uses_tls_when_its_callee_serves_it() {
        let run = |scheme: &str, caller: Tls, callee: Option<Tls>, overlay_tls: bool| {
            let mut report = Report::default();
            check_call_tls(
                "at",
                "KC_Y_URL",
                scheme,
                caller,
                callee,
                overlay_tls,
                &mut report,
            );
            report.failures
        };
        let plaintext = Tls::default();
        let mtls = Tls {
            serves: true,
            requires_client_cert: true,
            ..Tls::default()
        };
        let tls = Tls {
            serves: true,
            ..Tls::default()
        };
        let client = Tls {
            trusts: true,
            client_cert: true,
            ..Tls::default()
        };
        let trusting = Tls {
            trusts: true,
            ..Tls::default()
        };
        let none = Vec::<String>::new();
        assert_eq!(run("http", plaintext, Some(plaintext), false), none);
        assert_eq!(run("https", client, Some(mtls), true), none);
        assert_eq!(run("https", trusting, Some(tls), false), none);
        // A callee not rendered: only the caller's side is checked.
        assert_eq!(run("https", trusting, None, true), none);

        let failed = run("http", client, Some(mtls), true);
        assert_eq!(failed.len(), 2, "{failed:#?}");
        assert!(failed[0].contains("KC_Y_URL must be an https:// URL in this overlay"));
        assert!(failed[1].contains("KC_Y_URL is http://, but its callee serves TLS only"));

        let failed = run("https", plaintext, Some(mtls), false);
        assert_eq!(failed.len(), 2, "{failed:#?}");
        assert!(failed[0].contains("set KC_TLS_CA_FILE"));
        assert!(failed[1].contains("callee requires client certificates"));

        let failed = run("https", trusting, Some(plaintext), false);
        assert_eq!(failed.len(), 1, "{failed:#?}");
        assert!(failed[0].contains("KC_Y_URL is https://, but its callee serves plaintext"));

        let failed = run("grpc", client, Some(mtls), false);
        assert_eq!(failed.len(), 1, "{failed:#?}");
        assert!(failed[0].contains("is a grpc:// URL, not http(s)://"));
    }

    #[test]
    fn a_tls_port_is_probed_with_tcp() {
        let run = |probe: Value| {
            let probe: Probe = serde_json::from_value(probe).unwrap();
            let mut report = Report::default();
            check_tcp_probe("at", "readinessProbe", Some(&probe), 50051, &mut report);
            report.failures
        };
        let none = Vec::<String>::new();
        assert_eq!(run(json!({"tcpSocket": {"port": "grpc"}})), none);
        assert_eq!(run(json!({"tcpSocket": {"port": 50051}})), none);
        let failed = run(json!({"tcpSocket": {"port": 9090}}));
        assert_eq!(failed.len(), 1, "{failed:#?}");
        assert!(failed[0].contains("readinessProbe must connect to the gRPC port 50051"));
        let failed = run(json!({"tcpSocket": {"port": "metrics"}}));
        assert_eq!(failed.len(), 1, "{failed:#?}");
        let failed = run(json!({"grpc": {"port": 50051, "service": "s"}}));
        assert_eq!(failed.len(), 1, "{failed:#?}");
        assert!(failed[0].contains("serves TLS, so its readinessProbe must be tcpSocket"));
        let mut report = Report::default();
        check_tcp_probe("at", "livenessProbe", None, 50051, &mut report);
        assert_eq!(report.failures.len(), 1);
    }

    #[test]
    fn the_operator_secrets_table_is_read() {
        let readme = "# x\n\n| Secret | Key | used by | what |\n|---|---|---|---|\n\
                      | `kc-identity-db` | `url` | identity | its URL |\n\
                      | kc-postgres-admin | url | bootstrap | admin |\n\nAfter.\n\
                      | not | a table row we read |\n";
        let rows = operator_secrets(readme);
        assert_eq!(
            rows.into_iter().collect::<Vec<_>>(),
            [
                ("kc-identity-db".to_owned(), "url".to_owned()),
                ("kc-postgres-admin".to_owned(), "url".to_owned())
            ]
        );
    }

    #[test]
    fn in_cluster_hosts() {
        let host = |h: &str| in_cluster_host(h, "ns");
        assert_eq!(
            host("kc-identity"),
            Some(("kc-identity".into(), "ns".into()))
        );
        assert_eq!(
            host("kc-identity.other"),
            Some(("kc-identity".into(), "other".into()))
        );
        assert_eq!(
            host("kc-identity.other.svc.cluster.local"),
            Some(("kc-identity".into(), "other".into()))
        );
        assert_eq!(host("db.example.com"), None);
    }
}
