//! The manifests held against the binaries and against what a platform team requires: flags,
//! environment, ports, probes, addresses, Secret and ConfigMap keys, security settings,
//! resources, and the objects each service needs.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use super::binaries::{CommandSpec, PROCESS_ENV};
use super::objects::{
    Container, HpaSpec, IntOrString, Object, PdbSpec, Probe, ServiceSpec, Workload,
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
        let mut sources = Vec::new();
        if let Some(secret) = &volume.secret {
            sources.push(("Secret", secret.secret_name.clone(), &secret.items));
        }
        if let Some(config_map) = &volume.config_map {
            sources.push(("ConfigMap", config_map.name.clone(), &config_map.items));
        }
        if let Some(projected) = &volume.projected {
            for source in &projected.sources {
                if let Some(secret) = &source.secret {
                    sources.push(("Secret", secret.name.clone(), &secret.items));
                }
                if let Some(config_map) = &source.config_map {
                    sources.push(("ConfigMap", config_map.name.clone(), &config_map.items));
                }
            }
        }
        for (kind, name, items) in sources {
            if items.is_empty() {
                let defined = context.suite.find(kind, namespace, &name).is_some();
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
                        context, namespace, kind, &name, &item.key, referenced, report, &where_,
                    );
                }
            }
        }
    }
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
    for (name, value) in environment(context.suite, workload, container) {
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
    for (kind, probe) in [
        ("startupProbe", &container.startup_probe),
        ("readinessProbe", &container.readiness_probe),
        ("livenessProbe", &container.liveness_probe),
    ] {
        check_grpc_probe(&at, kind, probe.as_ref(), port, health_service, report);
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
    // whose credentials are the operator's Secret: never literal values.
    if let Some(known) = known {
        for var in ["KC_CLIENT_ID", "KC_CLIENT_SECRET"] {
            let from_secret = container.env.iter().any(|entry| {
                entry.name == var
                    && entry
                        .value_from
                        .as_ref()
                        .is_some_and(|source| source.secret_key_ref.is_some())
            });
            if known.service_account {
                report.check(from_secret, || {
                    format!(
                        "{at}: {name} has a service account: set {var} from its Secret \
                         (kc-{name}-account)"
                    )
                });
            } else {
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
                Some((service_name, namespace, url.port_or_known_default()?))
            });
        let Some((service_name, namespace, port)) = target else {
            report.fail(format!("{at}: {var} is not an http://<service>:<port> URL"));
            continue;
        };
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
