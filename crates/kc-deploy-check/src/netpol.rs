//! An evaluator of Kubernetes NetworkPolicies (`networking.k8s.io/v1`): given the policies
//! and two hosts, may the one open a connection to the other on a port?
//!
//! The semantics are the API's:
//! - A policy applies to the pods of its own namespace that its `podSelector` selects, for the
//!   directions of its `policyTypes` (when unset: `Ingress`, plus `Egress` if it has egress
//!   rules).
//! - A pod that no policy selects for a direction is unrestricted in that direction; one that
//!   some policy selects admits only what a rule of such a policy allows (rules add up).
//! - A rule's peers (`from`/`to`) and ports each match everything when empty or missing.
//! - A peer with only `podSelector` means pods of the policy's namespace; with only
//!   `namespaceSelector`, every pod of the matching namespaces; with both, the matching pods
//!   of the matching namespaces; `ipBlock` means addresses in `cidr` but none of `except`.
//! - A named port matches a port of that name on the destination pod, with its protocol.
//! - A connection succeeds when the source's egress allows it and the destination's ingress
//!   allows it; hosts outside the cluster have no policies of their own.
//!
//! Where implementations differ the evaluator takes the side that allows more, so that a
//! proof of *denial* holds on every implementation: an `ipBlock` matches pod addresses too.

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::{Context, anyhow, bail};
use serde::Deserialize;

use super::objects::{IntOrString, LabelSelector, Object};

/// A NetworkPolicy.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    /// Its name, for explanations.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// The pods it applies to.
    pub pod_selector: LabelSelector,
    /// Whether it restricts ingress.
    pub ingress_type: bool,
    /// Whether it restricts egress.
    pub egress_type: bool,
    /// Ingress rules (`from` peers).
    pub ingress: Vec<Rule>,
    /// Egress rules (`to` peers).
    pub egress: Vec<Rule>,
}

/// One ingress or egress rule.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Rule {
    /// Sources (ingress); every source when empty.
    pub from: Vec<Peer>,
    /// Destinations (egress); every destination when empty.
    pub to: Vec<Peer>,
    /// Ports; every port when empty.
    pub ports: Vec<PolicyPort>,
}

/// A peer of a rule.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct Peer {
    /// Pods (in the namespaces below, else in the policy's own).
    pub pod_selector: Option<LabelSelector>,
    /// Namespaces.
    pub namespace_selector: Option<LabelSelector>,
    /// Addresses.
    pub ip_block: Option<IpBlock>,
}

/// An `ipBlock`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct IpBlock {
    /// Addresses allowed.
    pub cidr: String,
    /// Addresses excepted from `cidr`.
    pub except: Vec<String>,
}

/// A port of a rule.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct PolicyPort {
    /// `TCP` when unset.
    pub protocol: Option<String>,
    /// Number or name; every port of the protocol when unset.
    pub port: Option<IntOrString>,
    /// Last port of a range starting at `port`.
    pub end_port: Option<u16>,
}

/// The spec as it is written, before defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct PolicySpec {
    pod_selector: LabelSelector,
    policy_types: Option<Vec<String>>,
    ingress: Vec<Rule>,
    egress: Vec<Rule>,
}

impl Policy {
    /// The policy of a rendered NetworkPolicy object.
    pub(crate) fn from_object(object: &Object) -> anyhow::Result<Policy> {
        let spec: PolicySpec = object.field("spec")?;
        Policy::from_spec(&object.meta.name, object.namespace(), spec)
    }

    /// A policy from its YAML spec (hand-made policies of the tests).
    #[cfg(test)]
    pub(crate) fn from_yaml(name: &str, namespace: &str, spec: &str) -> anyhow::Result<Policy> {
        let spec: PolicySpec = serde_yaml_ng::from_str(spec)
            .with_context(|| format!("networkpolicy {name}: bad spec"))?;
        Policy::from_spec(name, namespace, spec)
    }

    fn from_spec(name: &str, namespace: &str, spec: PolicySpec) -> anyhow::Result<Policy> {
        let (ingress_type, egress_type) = match &spec.policy_types {
            Some(types) => {
                for kind in types {
                    if kind != "Ingress" && kind != "Egress" {
                        bail!("networkpolicy {name}: unknown policy type {kind}");
                    }
                }
                (
                    types.iter().any(|kind| kind == "Ingress"),
                    types.iter().any(|kind| kind == "Egress"),
                )
            }
            None => (true, !spec.egress.is_empty()),
        };
        let rules = spec.ingress.iter().chain(&spec.egress);
        for rule in rules {
            for peer in rule.from.iter().chain(&rule.to) {
                if let Some(block) = &peer.ip_block {
                    Cidr::parse(&block.cidr)
                        .with_context(|| format!("networkpolicy {name}: bad ipBlock"))?;
                    for except in &block.except {
                        Cidr::parse(except)
                            .with_context(|| format!("networkpolicy {name}: bad ipBlock"))?;
                    }
                }
            }
        }
        Ok(Policy {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            pod_selector: spec.pod_selector,
            ingress_type,
            egress_type,
            ingress: spec.ingress,
            egress: spec.egress,
        })
    }

    fn selects(&self, pod: &Pod) -> bool {
        pod.namespace == self.namespace && self.pod_selector.matches(&pod.labels)
    }
}

/// A pod: where it runs, its labels and its named ports.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pod {
    /// Namespace name.
    pub namespace: String,
    /// Labels of its namespace (`kubernetes.io/metadata.name` is added).
    pub namespace_labels: BTreeMap<String, String>,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its container ports: (name, number, protocol).
    pub ports: Vec<(Option<String>, u16, Protocol)>,
}

/// Something that opens or accepts connections: a pod, or an address outside the cluster.
#[derive(Debug, Clone)]
pub(crate) struct Host {
    /// A name for messages.
    pub name: String,
    /// Its address.
    pub ip: IpAddr,
    /// Its pod, if it is one.
    pub pod: Option<Pod>,
}

impl Host {
    /// A pod at `ip`.
    pub(crate) fn pod(name: impl Into<String>, ip: IpAddr, mut pod: Pod) -> Host {
        pod.namespace_labels
            .insert("kubernetes.io/metadata.name".into(), pod.namespace.clone());
        Host {
            name: name.into(),
            ip,
            pod: Some(pod),
        }
    }

    /// An address outside the cluster.
    pub(crate) fn external(name: impl Into<String>, ip: IpAddr) -> Host {
        Host {
            name: name.into(),
            ip,
            pod: None,
        }
    }
}

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// The protocol of a manifest field (`TCP` when unset).
    pub(crate) fn parse(text: Option<&str>) -> anyhow::Result<Protocol> {
        match text.unwrap_or("TCP") {
            "TCP" => Ok(Protocol::Tcp),
            "UDP" => Ok(Protocol::Udp),
            "SCTP" => Ok(Protocol::Sctp),
            other => Err(anyhow!("unknown protocol {other}")),
        }
    }
}

/// The policies of the rendered manifests.
#[derive(Debug, Clone, Default)]
pub(crate) struct Policies {
    policies: Vec<Policy>,
}

/// Why a connection is allowed or denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// Whether the connection succeeds.
    pub allowed: bool,
    /// Which side decided, and by which policies.
    pub reason: String,
}

impl Policies {
    /// These policies.
    pub(crate) fn new(policies: Vec<Policy>) -> Policies {
        Policies { policies }
    }

    /// Whether `src` may connect to `dst` on `port`/`protocol`.
    pub(crate) fn connect(&self, src: &Host, dst: &Host, port: u16, protocol: Protocol) -> Verdict {
        let egress = match &src.pod {
            None => Side::Unrestricted,
            Some(pod) => self.side(pod, Direction::Egress, dst, port, protocol),
        };
        let ingress = match &dst.pod {
            None => Side::Unrestricted,
            Some(pod) => self.side(pod, Direction::Ingress, src, port, protocol),
        };
        match (&egress, &ingress) {
            (Side::Denied(names), _) => Verdict {
                allowed: false,
                reason: format!(
                    "egress of {} denied (it is selected by {} and no rule allows it)",
                    src.name,
                    names.join(", ")
                ),
            },
            (_, Side::Denied(names)) => Verdict {
                allowed: false,
                reason: format!(
                    "ingress of {} denied (it is selected by {} and no rule allows it)",
                    dst.name,
                    names.join(", ")
                ),
            },
            _ => Verdict {
                allowed: true,
                reason: format!("egress {}, ingress {}", egress.explain(), ingress.explain()),
            },
        }
    }

    /// What the policies selecting `pod` for `direction` say about `peer` on `port`.
    fn side(
        &self,
        pod: &Pod,
        direction: Direction,
        peer: &Host,
        port: u16,
        protocol: Protocol,
    ) -> Side {
        let selecting: Vec<&Policy> = self
            .policies
            .iter()
            .filter(|policy| policy.selects(pod))
            .filter(|policy| match direction {
                Direction::Ingress => policy.ingress_type,
                Direction::Egress => policy.egress_type,
            })
            .collect();
        if selecting.is_empty() {
            return Side::Unrestricted;
        }
        // Named ports are the destination pod's: the pod itself for ingress, the peer for egress.
        let destination = match direction {
            Direction::Ingress => Some(pod),
            Direction::Egress => peer.pod.as_ref(),
        };
        for policy in &selecting {
            let rules = match direction {
                Direction::Ingress => &policy.ingress,
                Direction::Egress => &policy.egress,
            };
            for rule in rules {
                let peers = match direction {
                    Direction::Ingress => &rule.from,
                    Direction::Egress => &rule.to,
                };
                let peer_ok = peers.is_empty()
                    || peers
                        .iter()
                        .any(|candidate| peer_matches(candidate, &policy.namespace, peer));
                let port_ok = rule.ports.is_empty()
                    || rule
                        .ports
                        .iter()
                        .any(|candidate| port_matches(candidate, destination, port, protocol));
                if peer_ok && port_ok {
                    return Side::Allowed(policy.name.clone());
                }
            }
        }
        Side::Denied(selecting.iter().map(|policy| policy.name.clone()).collect())
    }
}

#[derive(Debug, Clone, Copy)]
enum Direction {
    Ingress,
    Egress,
}

enum Side {
    Unrestricted,
    Allowed(String),
    Denied(Vec<String>),
}

impl Side {
    fn explain(&self) -> String {
        match self {
            Side::Unrestricted => "unrestricted".into(),
            Side::Allowed(name) => format!("allowed by {name}"),
            Side::Denied(_) => "denied".into(),
        }
    }
}

/// Whether `host` is one of the hosts `peer` names, in a policy of `namespace`.
fn peer_matches(peer: &Peer, namespace: &str, host: &Host) -> bool {
    if let Some(block) = &peer.ip_block {
        // Checked when the policy was built.
        let inside = Cidr::parse(&block.cidr).is_ok_and(|cidr| cidr.contains(host.ip));
        let excepted = block
            .except
            .iter()
            .any(|except| Cidr::parse(except).is_ok_and(|cidr| cidr.contains(host.ip)));
        return inside && !excepted;
    }
    let Some(pod) = &host.pod else {
        // Pod and namespace selectors name pods only.
        return false;
    };
    let namespace_ok = match &peer.namespace_selector {
        Some(selector) => selector.matches(&pod.namespace_labels),
        None => pod.namespace == namespace,
    };
    let pod_ok = peer
        .pod_selector
        .as_ref()
        .is_none_or(|selector| selector.matches(&pod.labels));
    // A peer with neither selector is invalid in the API; it names nothing here.
    let names_something = peer.namespace_selector.is_some() || peer.pod_selector.is_some();
    names_something && namespace_ok && pod_ok
}

/// Whether `port`/`protocol` on the `destination` pod (none: outside the cluster) is one the
/// rule's `candidate` port names.
fn port_matches(
    candidate: &PolicyPort,
    destination: Option<&Pod>,
    port: u16,
    protocol: Protocol,
) -> bool {
    let Ok(candidate_protocol) = Protocol::parse(candidate.protocol.as_deref()) else {
        return false;
    };
    if candidate_protocol != protocol {
        return false;
    }
    match &candidate.port {
        None => true,
        Some(IntOrString::Int(number)) => {
            let first = i64::from(port);
            match candidate.end_port {
                Some(end) => *number <= first && first <= i64::from(end),
                None => *number == first,
            }
        }
        Some(IntOrString::Str(name)) => destination.is_some_and(|pod| {
            pod.ports.iter().any(|(port_name, number, port_protocol)| {
                port_name.as_deref() == Some(name.as_str())
                    && *number == port
                    && *port_protocol == protocol
            })
        }),
    }
}

/// An address range.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n` or `x::y/n`.
    pub(crate) fn parse(text: &str) -> anyhow::Result<Cidr> {
        let (address, prefix) = text
            .split_once('/')
            .ok_or_else(|| anyhow!("`{text}` is not a CIDR (no /prefix)"))?;
        let network: IpAddr = address
            .parse()
            .map_err(|_| anyhow!("`{text}` is not a CIDR (bad address)"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| anyhow!("`{text}` is not a CIDR (bad prefix)"))?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        if prefix > bits {
            bail!("`{text}` is not a CIDR (prefix longer than the address)");
        }
        Ok(Cidr { network, prefix })
    }

    /// Whether `ip` is in the range.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(network) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(network) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: &str = "suite";

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn pod(name: &str, namespace: &str, last_octet: u8, pod_labels: &[(&str, &str)]) -> Host {
        Host::pod(
            name,
            IpAddr::from([10, 244, 0, last_octet]),
            Pod {
                namespace: namespace.into(),
                namespace_labels: BTreeMap::new(),
                labels: labels(pod_labels),
                ports: vec![(Some("grpc".into()), 50051, Protocol::Tcp)],
            },
        )
    }

    fn policy(name: &str, spec: &str) -> Policy {
        Policy::from_yaml(name, NS, spec).unwrap()
    }

    fn allowed(policies: &Policies, src: &Host, dst: &Host, port: u16) -> bool {
        policies.connect(src, dst, port, Protocol::Tcp).allowed
    }

    #[test]
    fn without_policies_everything_is_allowed() {
        let policies = Policies::default();
        let a = pod("a", NS, 1, &[("app", "a")]);
        let b = pod("b", NS, 2, &[("app", "b")]);
        assert!(allowed(&policies, &a, &b, 50051));
        assert!(allowed(&policies, &a, &b, 1));
    }

    #[test]
    fn default_deny_denies_both_directions() {
        let policies = Policies::new(vec![policy(
            "deny",
            "podSelector: {}\npolicyTypes: [Ingress, Egress]",
        )]);
        let a = pod("a", NS, 1, &[("app", "a")]);
        let b = pod("b", NS, 2, &[("app", "b")]);
        let verdict = policies.connect(&a, &b, 50051, Protocol::Tcp);
        assert!(!verdict.allowed);
        assert!(verdict.reason.contains("egress of a denied"), "{verdict:?}");
        // A host outside has no egress policy of ours, but b's ingress still denies.
        let outside = Host::external("outside", IpAddr::from([203, 0, 113, 7]));
        assert!(!allowed(&policies, &outside, &b, 50051));
        // A pod of another namespace is not selected by the policy.
        let other = pod("other", "elsewhere", 3, &[("app", "a")]);
        assert!(allowed(
            &policies,
            &other,
            &Host::external("x", outside.ip),
            443
        ));
    }

    #[test]
    fn ingress_from_labelled_callers_on_a_named_port_only() {
        let policies = Policies::new(vec![
            policy("deny", "podSelector: {}\npolicyTypes: [Ingress]"),
            policy(
                "b-ingress",
                "podSelector: {matchLabels: {app: b}}\n\
                 ingress:\n- from: [{podSelector: {matchLabels: {calls-b: 'true'}}}]\n  \
                 ports: [{port: grpc}]",
            ),
        ]);
        let caller = pod("caller", NS, 1, &[("app", "a"), ("calls-b", "true")]);
        let stranger = pod("stranger", NS, 2, &[("app", "c")]);
        let b = pod("b", NS, 3, &[("app", "b")]);
        assert!(allowed(&policies, &caller, &b, 50051));
        // Another port of b: the named port is 50051 only.
        assert!(!allowed(&policies, &caller, &b, 8080));
        assert!(!allowed(&policies, &stranger, &b, 50051));
        // The same labels in another namespace: a bare podSelector means the policy's own.
        let impostor = pod("impostor", "elsewhere", 4, &[("calls-b", "true")]);
        assert!(!allowed(&policies, &impostor, &b, 50051));
        // UDP on the same port does not match a TCP rule.
        assert!(!policies.connect(&caller, &b, 50051, Protocol::Udp).allowed);
    }

    #[test]
    fn namespace_and_pod_selectors_combine() {
        let policies = Policies::new(vec![policy(
            "egress",
            "podSelector: {}\npolicyTypes: [Egress]\negress:\n\
             - to:\n  - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}\n    \
             podSelector: {matchLabels: {k8s-app: kube-dns}}\n  ports: [{port: 53, protocol: UDP}]",
        )]);
        let a = pod("a", NS, 1, &[]);
        let dns = pod("dns", "kube-system", 2, &[("k8s-app", "kube-dns")]);
        let not_dns = pod("not-dns", "kube-system", 3, &[("k8s-app", "other")]);
        let dns_elsewhere = pod("dns-elsewhere", "elsewhere", 4, &[("k8s-app", "kube-dns")]);
        assert!(policies.connect(&a, &dns, 53, Protocol::Udp).allowed);
        assert!(!policies.connect(&a, &dns, 53, Protocol::Tcp).allowed);
        assert!(!policies.connect(&a, &not_dns, 53, Protocol::Udp).allowed);
        assert!(
            !policies
                .connect(&a, &dns_elsewhere, 53, Protocol::Udp)
                .allowed
        );
    }

    #[test]
    fn a_namespace_selector_alone_admits_every_pod_of_those_namespaces() {
        let policies = Policies::new(vec![policy(
            "from-all-namespaces",
            "podSelector: {matchLabels: {app: gw}}\ningress:\n- from: [{namespaceSelector: {}}]",
        )]);
        let gw = pod("gw", NS, 1, &[("app", "gw")]);
        let anywhere = pod("anywhere", "elsewhere", 2, &[]);
        assert!(allowed(&policies, &anywhere, &gw, 50051));
        // But not an address outside the cluster.
        let outside = Host::external("outside", IpAddr::from([203, 0, 113, 7]));
        assert!(!allowed(&policies, &outside, &gw, 50051));
    }

    #[test]
    fn ip_blocks_with_exceptions_and_port_ranges() {
        let policies = Policies::new(vec![policy(
            "db",
            "podSelector: {matchLabels: {db: 'true'}}\npolicyTypes: [Egress]\negress:\n\
             - to: [{ipBlock: {cidr: 198.51.100.0/24, except: [198.51.100.128/25]}}]\n  \
             ports: [{port: 5432, endPort: 5433}]",
        )]);
        let a = pod("a", NS, 1, &[("db", "true")]);
        let db = Host::external("db", IpAddr::from([198, 51, 100, 10]));
        let excepted = Host::external("excepted", IpAddr::from([198, 51, 100, 200]));
        assert!(allowed(&policies, &a, &db, 5432));
        assert!(allowed(&policies, &a, &db, 5433));
        assert!(!allowed(&policies, &a, &db, 5434));
        assert!(!allowed(&policies, &a, &excepted, 5432));
        // A pod without the label is not selected: its egress is unrestricted.
        let b = pod("b", NS, 2, &[]);
        assert!(allowed(&policies, &b, &excepted, 443));
    }

    #[test]
    fn policy_types_default_from_the_rules() {
        // No policyTypes and no egress rules: an ingress-only policy.
        let ingress_only = policy("i", "podSelector: {}\ningress: []");
        assert!(ingress_only.ingress_type && !ingress_only.egress_type);
        // No policyTypes with egress rules: both.
        let both = policy("b", "podSelector: {}\negress: [{}]");
        assert!(both.ingress_type && both.egress_type);
        // An empty rule allows everything in its direction.
        let policies = Policies::new(vec![policy(
            "allow-all-egress",
            "podSelector: {}\npolicyTypes: [Egress]\negress: [{}]",
        )]);
        let a = pod("a", NS, 1, &[]);
        assert!(allowed(
            &policies,
            &a,
            &Host::external("x", IpAddr::from([1, 1, 1, 1])),
            443
        ));
        assert!(Policy::from_yaml("bad", NS, "policyTypes: [Sideways]").is_err());
        assert!(
            Policy::from_yaml(
                "bad",
                NS,
                "egress: [{to: [{ipBlock: {cidr: 10.0.0.0}}]}]\npolicyTypes: [Egress]"
            )
            .is_err()
        );
    }

    #[test]
    fn cidrs() {
        let v4 = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(v4.contains(IpAddr::from([10, 1, 2, 3])));
        assert!(!v4.contains(IpAddr::from([11, 0, 0, 1])));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains(IpAddr::from([8, 8, 8, 8]))
        );
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains(IpAddr::from([10, 0, 0, 1])));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nonsense/8").is_err());
    }
}
