//! The rendered NetworkPolicies evaluated on the rendered pods and on hosts outside the
//! namespace: who reaches each service, and where each pod may connect.

use std::net::IpAddr;

use super::netpol::{Host, Pod, Policies, Policy, Protocol};
use super::objects::Workload;
use super::{Rendered, Report, Role, deployed, service};

/// The cluster DNS, as the policies expect it (namespace kube-system, `k8s-app: kube-dns`).
const DNS_NAMESPACE: &str = "kube-system";
/// The OpenTelemetry collector, as the policies expect it.
const OTLP_NAMESPACE: &str = "observability";
/// Its port (OTLP/gRPC).
const OTLP_PORT: u16 = 4317;
/// The Prometheus scraper, as the policies expect it (namespace `observability`, label
/// `app.kubernetes.io/name: prometheus`).
const SCRAPER_NAMESPACE: &str = "observability";
/// Postgres's port.
const POSTGRES_PORT: u16 = 5432;
/// The SMTP relay's submission port (outside the cluster).
const SMTP_PORT: u16 = 587;

/// A rendered pod and what it is.
struct Member {
    host: Host,
    role: Role,
    /// Its gRPC port, for servers.
    grpc_port: Option<u16>,
    /// Its Prometheus port (named `metrics`), for servers.
    metrics_port: Option<u16>,
    /// Its SMTP port, for a mail sink.
    smtp_port: Option<u16>,
    /// The workload it comes from.
    workload: String,
}

/// Runs the network checks of one overlay.
pub(crate) fn check(suite: &Rendered, report: &mut Report) {
    let mut policies = Vec::new();
    for object in suite.of_kind("NetworkPolicy") {
        match Policy::from_object(object) {
            Ok(policy) => policies.push(policy),
            Err(err) => report.fail(format!("{err:#}")),
        }
    }
    let policies = Policies::new(policies);
    let members = members(suite, report);
    report.check(
        suite.of_kind("NetworkPolicy").any(|object| {
            object.raw.pointer("/spec/podSelector") == Some(&serde_json::json!({}))
                && object.raw.pointer("/spec/policyTypes")
                    == Some(&serde_json::json!(["Ingress", "Egress"]))
                && object.raw.pointer("/spec/ingress").is_none()
                && object.raw.pointer("/spec/egress").is_none()
        }),
        || "no default-deny NetworkPolicy (podSelector {}, Ingress and Egress, no rules)".into(),
    );

    let outsiders = outsiders(suite);
    let world = World::new();

    for dst in &members {
        // Who reaches a server: its callers per SERVICES, and from outside only if public.
        if let (Role::Server(callee), Some(port)) = (&dst.role, dst.grpc_port) {
            for src in &members {
                if src.workload == dst.workload {
                    continue;
                }
                let expected = match &src.role {
                    Role::Server(caller) => match service(caller) {
                        Some(known) => known.callees().any(|called| called == callee.as_str()),
                        None => {
                            report.note(format!(
                                "service {caller} is not in SERVICES yet: what it may call is \
                                 not checked"
                            ));
                            continue;
                        }
                    },
                    _ => false,
                };
                expect_tcp(&policies, &src.host, &dst.host, port, expected, report);
                expect_tcp(&policies, &src.host, &dst.host, 9, false, report);
            }
            let public = deployed(callee).is_some_and(|row| row.public);
            for outsider in &outsiders {
                expect_tcp(&policies, outsider, &dst.host, port, public, report);
                expect_tcp(&policies, outsider, &dst.host, 9, false, report);
            }
        }
        // The scraper reaches a server's metrics port, and nothing else does.
        if let (Role::Server(_), Some(port)) = (&dst.role, dst.metrics_port) {
            expect_tcp(&policies, &world.scraper, &dst.host, port, true, report);
            let others = members
                .iter()
                .filter(|src| src.workload != dst.workload)
                .map(|src| &src.host);
            for src in others.chain(&outsiders) {
                expect_tcp(&policies, src, &dst.host, port, false, report);
            }
        }
        // Nothing outside reaches the in-cluster database or mail sink.
        if matches!(dst.role, Role::Database | Role::MailSink) {
            for outsider in &outsiders {
                for (_, port, protocol) in dst.host.pod.iter().flat_map(|pod| &pod.ports) {
                    expect_host(
                        &policies, outsider, &dst.host, *port, *protocol, false, report,
                    );
                }
            }
        }
    }

    relying_apps(suite, &policies, &members, report);

    // Where each pod may connect.
    let databases: Vec<(&Host, u16)> = members
        .iter()
        .filter(|member| member.role == Role::Database)
        .map(|member| (&member.host, POSTGRES_PORT))
        .collect();
    let databases = if databases.is_empty() {
        vec![(&world.postgres, POSTGRES_PORT)]
    } else {
        databases
    };
    let relays: Vec<(&Host, u16)> = members
        .iter()
        .filter_map(|member| Some((&member.host, member.smtp_port?)))
        .collect();
    let relays = if relays.is_empty() {
        vec![(&world.smtp, SMTP_PORT)]
    } else {
        relays
    };
    for src in &members {
        let at = &src.host.name;
        // DNS, for every pod of the suite.
        for protocol in [Protocol::Udp, Protocol::Tcp] {
            expect_host(&policies, &src.host, &world.dns, 53, protocol, true, report);
        }
        let server = match &src.role {
            Role::Server(name) => Some(name.as_str()),
            _ => None,
        };
        // Postgres: the services with a schema, their migration and db-bootstrap Jobs.
        let needs_database = match &src.role {
            Role::Server(name) => match service(name) {
                Some(known) => Some(known.schema.is_some()),
                None => {
                    report.note(format!(
                        "service {name} is not in SERVICES yet: its database access is not \
                         checked"
                    ));
                    None
                }
            },
            Role::Migration(_) | Role::Bootstrap(_) => Some(true),
            Role::Database | Role::MailSink | Role::Other => Some(false),
        };
        if let Some(expected) = needs_database {
            for (database, port) in &databases {
                if database.name != *at {
                    expect_tcp(&policies, &src.host, database, *port, expected, report);
                }
            }
        }
        // Traces: every server.
        expect_tcp(
            &policies,
            &src.host,
            &world.collector,
            OTLP_PORT,
            server.is_some(),
            report,
        );
        // Mail: only the services that send it.
        let sends_mail = server
            .and_then(service)
            .is_some_and(|known| known.sends_mail);
        for (relay, port) in &relays {
            if relay.name != *at {
                expect_tcp(&policies, &src.host, relay, *port, sends_mail, report);
            }
        }
        // Nothing else: the internet, another namespace's pods, the API server.
        for (host, port) in [
            (&world.internet, 443),
            (&world.internet, 80),
            (&world.foreign_pod, 8080),
            (&world.api_server, 443),
        ] {
            expect_tcp(&policies, &src.host, host, port, false, report);
        }
    }
}

/// A relying application's pod in the suite's namespace (labelled
/// [`labels::RELYING_APP`](super::labels::RELYING_APP)) reaches the gRPC port of the public
/// services (the gateway) and no other port of the suite; an unlabelled pod of the namespace
/// reaches none (the default deny).
fn relying_apps(suite: &Rendered, policies: &Policies, members: &[Member], report: &mut Report) {
    let Some(namespace) = members
        .iter()
        .find_map(|member| Some(member.host.pod.as_ref()?.namespace.clone()))
    else {
        return;
    };
    let in_namespace = |name: &str, labelled: bool, index: u8| {
        let labels = labelled
            .then(|| (super::labels::RELYING_APP.to_owned(), "true".to_owned()))
            .into_iter()
            .collect();
        Host::pod(
            name,
            IpAddr::from([10, 244, 255, index]),
            Pod {
                namespace_labels: suite.namespace_labels(&namespace),
                namespace: namespace.clone(),
                labels,
                ..Pod::default()
            },
        )
    };
    let relying = in_namespace(
        "a relying application's pod (keycontacts.io/relying-app)",
        true,
        1,
    );
    let plain = in_namespace("an unlabelled pod of the namespace", false, 2);
    for dst in members {
        let ports = dst.host.pod.iter().flat_map(|pod| &pod.ports);
        for (_, port, protocol) in ports {
            let public_grpc = matches!(&dst.role, Role::Server(callee)
                if dst.grpc_port == Some(*port)
                    && deployed(callee).is_some_and(|row| row.public));
            expect_host(
                policies,
                &relying,
                &dst.host,
                *port,
                *protocol,
                public_grpc,
                report,
            );
            expect_host(policies, &plain, &dst.host, *port, *protocol, false, report);
        }
    }
}

/// [`expect_host`] over TCP, the protocol of every service and of the database.
fn expect_tcp(
    policies: &Policies,
    src: &Host,
    dst: &Host,
    port: u16,
    expected: bool,
    report: &mut Report,
) {
    expect_host(policies, src, dst, port, Protocol::Tcp, expected, report);
}

/// Reports a finding unless the policies allow `src` to reach `dst` on `port` exactly when
/// `expected` says so.
fn expect_host(
    policies: &Policies,
    src: &Host,
    dst: &Host,
    port: u16,
    protocol: Protocol,
    expected: bool,
    report: &mut Report,
) {
    let verdict = policies.connect(src, dst, port, protocol);
    report.check(verdict.allowed == expected, || {
        format!(
            "{} -> {}:{port}/{protocol:?} is {} but must be {}: {}",
            src.name,
            dst.name,
            if verdict.allowed { "allowed" } else { "denied" },
            if expected { "allowed" } else { "denied" },
            verdict.reason
        )
    });
}

/// The rendered pods: one per workload, with addresses in 10.244.0.0/16.
fn members(suite: &Rendered, report: &mut Report) -> Vec<Member> {
    let mut members = Vec::new();
    for (index, workload) in suite.workloads.iter().enumerate() {
        let Ok(index) = u16::try_from(index + 1) else {
            break;
        };
        let [high, low] = index.to_be_bytes();
        let ip = IpAddr::from([10, 244, high, low]);
        match member(suite, workload, ip) {
            Ok(member) => members.push(member),
            Err(err) => report.fail(format!("{}: {err:#}", workload.object.id())),
        }
    }
    members
}

fn member(suite: &Rendered, workload: &Workload, ip: IpAddr) -> anyhow::Result<Member> {
    let namespace = workload.object.namespace().to_owned();
    let mut ports = Vec::new();
    for container in &workload.template.spec.containers {
        for port in &container.ports {
            ports.push((
                port.name.clone(),
                port.container_port,
                Protocol::parse(port.protocol.as_deref())?,
            ));
        }
    }
    let named = |name: &str| {
        ports
            .iter()
            .find(|(port_name, _, _)| port_name.as_deref() == Some(name))
            .map(|(_, number, _)| *number)
    };
    let role = Role::of(workload.pod_labels());
    let grpc_port = named("grpc");
    let metrics_port = named("metrics");
    let smtp_port = if role == Role::MailSink {
        named("smtp")
    } else {
        None
    };
    let pod = Pod {
        namespace_labels: suite.namespace_labels(&namespace),
        namespace,
        labels: workload.pod_labels().clone(),
        ports,
    };
    Ok(Member {
        host: Host::pod(workload.object.id(), ip, pod),
        role,
        grpc_port,
        metrics_port,
        smtp_port,
        workload: workload.object.id(),
    })
}

/// Hosts outside the namespace that try to reach the services: a plain pod of another
/// namespace, a pod there that copies each rendered pod's labels, and an address outside the
/// cluster.
fn outsiders(suite: &Rendered) -> Vec<Host> {
    let elsewhere = |labels, index: u8| {
        Host::pod(
            format!("pod#{index} in namespace elsewhere"),
            IpAddr::from([10, 245, 0, index]),
            Pod {
                namespace: "elsewhere".into(),
                labels,
                ..Pod::default()
            },
        )
    };
    let mut hosts = vec![
        elsewhere(Default::default(), 1),
        Host::external("client outside the cluster", IpAddr::from([203, 0, 113, 7])),
    ];
    for (index, workload) in suite.workloads.iter().enumerate().take(200) {
        let index = u8::try_from(index + 2).unwrap_or(u8::MAX);
        let mut host = elsewhere(workload.pod_labels().clone(), index);
        host.name = format!(
            "a pod of namespace elsewhere labelled like {}",
            workload.object.id()
        );
        hosts.push(host);
    }
    hosts
}

/// Hosts the suite's pods may or may not reach.
struct World {
    dns: Host,
    scraper: Host,
    collector: Host,
    postgres: Host,
    smtp: Host,
    internet: Host,
    foreign_pod: Host,
    api_server: Host,
}

impl World {
    fn new() -> World {
        let pod = |name: &str, namespace: &str, labels: &[(&str, &str)], ip: [u8; 4], ports| {
            Host::pod(
                name,
                IpAddr::from(ip),
                Pod {
                    namespace: namespace.into(),
                    labels: labels
                        .iter()
                        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                        .collect(),
                    ports,
                    ..Pod::default()
                },
            )
        };
        World {
            dns: pod(
                "cluster DNS",
                DNS_NAMESPACE,
                &[("k8s-app", "kube-dns")],
                [10, 246, 0, 10],
                vec![
                    (Some("dns".into()), 53, Protocol::Udp),
                    (Some("dns-tcp".into()), 53, Protocol::Tcp),
                ],
            ),
            collector: pod(
                "OpenTelemetry collector",
                OTLP_NAMESPACE,
                &[("app.kubernetes.io/name", "opentelemetry-collector")],
                [10, 247, 0, 1],
                vec![(Some("otlp-grpc".into()), OTLP_PORT, Protocol::Tcp)],
            ),
            scraper: pod(
                "Prometheus",
                SCRAPER_NAMESPACE,
                &[("app.kubernetes.io/name", "prometheus")],
                [10, 247, 0, 2],
                vec![(Some("web".into()), 9090, Protocol::Tcp)],
            ),
            foreign_pod: pod(
                "a pod of namespace elsewhere",
                "elsewhere",
                &[("app", "other")],
                [10, 245, 1, 1],
                vec![(Some("http".into()), 8080, Protocol::Tcp)],
            ),
            postgres: Host::external("external Postgres", IpAddr::from([198, 51, 100, 10])),
            smtp: Host::external("external SMTP relay", IpAddr::from([198, 51, 100, 25])),
            internet: Host::external("the internet", IpAddr::from([203, 0, 113, 80])),
            api_server: Host::external("the Kubernetes API server", IpAddr::from([10, 96, 0, 1])),
        }
    }
}
