//! The rendered Kubernetes objects, as far as the checks read them: metadata, pod templates of
//! workloads, Services, ConfigMaps, Secrets, NetworkPolicies, HPAs and PDBs.
//!
//! Only the fields the checks need are typed; everything else is ignored (kubernetes-validate
//! has already held the whole document against the API schema).

use std::collections::BTreeMap;

use anyhow::{Context, anyhow};
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

/// The part of `metadata` the checks use.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Meta {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, if set.
    pub namespace: Option<String>,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
}

/// One rendered object.
#[derive(Debug, Clone)]
pub struct Object {
    /// `kind`.
    pub kind: String,
    /// `metadata`.
    pub meta: Meta,
    /// The whole document.
    pub raw: Value,
}

impl Object {
    /// `kind/name`, for messages.
    pub fn id(&self) -> String {
        format!("{}/{}", self.kind.to_lowercase(), self.meta.name)
    }

    /// Its namespace (`default` when unset, as the API server would put it).
    pub fn namespace(&self) -> &str {
        self.meta.namespace.as_deref().unwrap_or("default")
    }

    /// `spec` (or another top-level field) as `T`.
    pub fn field<T: for<'de> Deserialize<'de>>(&self, field: &str) -> anyhow::Result<T> {
        let value = self.raw.get(field).cloned().unwrap_or(Value::Null);
        let value = if value.is_null() {
            Value::Object(serde_json::Map::new())
        } else {
            value
        };
        serde_json::from_value(value).with_context(|| format!("{}: bad {field}", self.id()))
    }
}

/// Parses the multi-document YAML that `kubectl kustomize` prints.
pub(crate) fn parse(yaml: &str) -> anyhow::Result<Vec<Object>> {
    let mut objects = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(yaml) {
        let raw = Value::deserialize(document).context("the rendered YAML does not parse")?;
        if raw.is_null() {
            continue;
        }
        let kind = raw
            .get("kind")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("a rendered document has no kind"))?
            .to_owned();
        let meta: Meta = serde_json::from_value(raw.get("metadata").cloned().unwrap_or_default())
            .with_context(|| format!("bad metadata of a {kind}"))?;
        objects.push(Object { kind, meta, raw });
    }
    Ok(objects)
}

/// A Kubernetes label selector (`matchLabels` and `matchExpressions`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct LabelSelector {
    /// Labels that must all be present with these values.
    pub match_labels: BTreeMap<String, String>,
    /// Further requirements, all of which must hold.
    pub match_expressions: Vec<Requirement>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub(crate) struct Requirement {
    /// Label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// Values for `In` and `NotIn`.
    pub values: Vec<String>,
}

impl LabelSelector {
    /// Whether `labels` satisfy the selector. The empty selector selects everything; an
    /// unknown operator selects nothing.
    pub(crate) fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let labels_match = self
            .match_labels
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value));
        labels_match
            && self.match_expressions.iter().all(|requirement| {
                let value = labels.get(&requirement.key);
                match requirement.operator.as_str() {
                    "In" => value.is_some_and(|value| requirement.values.contains(value)),
                    "NotIn" => value.is_none_or(|value| !requirement.values.contains(value)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    _ => false,
                }
            })
    }
}

/// An integer or a name (a port).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub(crate) enum IntOrString {
    /// A number.
    Int(i64),
    /// A name.
    Str(String),
}

/// A pod template, or a bare pod's spec, with the labels its pods get.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PodTemplate {
    /// Template metadata (labels).
    pub metadata: Meta,
    /// The pod spec.
    pub spec: PodSpec,
}

/// The part of a pod spec the checks use.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodSpec {
    /// Containers.
    pub containers: Vec<Container>,
    /// Init containers.
    pub init_containers: Vec<Container>,
    /// Pod-level security settings.
    pub security_context: Option<SecurityContext>,
    /// ServiceAccount the pod runs as.
    pub service_account_name: Option<String>,
    /// Whether the ServiceAccount token is mounted.
    pub automount_service_account_token: Option<bool>,
    /// Whether Service environment variables are injected.
    pub enable_service_links: Option<bool>,
    /// How long the kubelet waits after SIGTERM.
    pub termination_grace_period_seconds: Option<i64>,
    /// Volumes.
    pub volumes: Vec<Volume>,
}

impl PodSpec {
    /// Init containers, then containers.
    pub fn all_containers(&self) -> impl Iterator<Item = &Container> {
        self.init_containers.iter().chain(&self.containers)
    }
}

/// The part of a container the checks use.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Container {
    /// Container name.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Entrypoint override.
    pub command: Vec<String>,
    /// Arguments.
    pub args: Vec<String>,
    /// Environment variables.
    pub env: Vec<EnvVar>,
    /// Environment from ConfigMaps and Secrets.
    pub env_from: Vec<EnvFromSource>,
    /// Declared ports.
    pub ports: Vec<ContainerPort>,
    /// Container-level security settings.
    pub security_context: Option<SecurityContext>,
    /// Requests and limits.
    pub resources: Resources,
    /// Liveness probe.
    pub liveness_probe: Option<Probe>,
    /// Readiness probe.
    pub readiness_probe: Option<Probe>,
    /// Startup probe.
    pub startup_probe: Option<Probe>,
    /// Volumes mounted into it.
    pub volume_mounts: Vec<VolumeMount>,
}

/// One `volumeMounts` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct VolumeMount {
    /// The pod's volume mounted.
    pub name: String,
    /// Where, in the container.
    pub mount_path: String,
    /// Mounted read-only.
    pub read_only: Option<bool>,
    /// The path inside the volume mounted there (the whole volume when unset).
    pub sub_path: Option<String>,
}

/// One `env` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EnvVar {
    /// Variable name.
    pub name: String,
    /// Literal value.
    pub value: Option<String>,
    /// Where the value comes from otherwise.
    pub value_from: Option<EnvVarSource>,
}

/// `env[].valueFrom`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EnvVarSource {
    /// A key of a Secret.
    pub secret_key_ref: Option<KeyRef>,
    /// A key of a ConfigMap.
    pub config_map_key_ref: Option<KeyRef>,
}

/// A reference to one key of a ConfigMap or Secret.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct KeyRef {
    /// Object name.
    pub name: String,
    /// Key.
    pub key: String,
}

/// `envFrom` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EnvFromSource {
    /// Prefix prepended to every key.
    pub prefix: Option<String>,
    /// A whole ConfigMap.
    pub config_map_ref: Option<NameRef>,
    /// A whole Secret.
    pub secret_ref: Option<NameRef>,
}

/// A reference to an object by name.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NameRef {
    /// Object name.
    pub name: String,
}

/// A declared container port.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerPort {
    /// Port name, e.g. `grpc`.
    pub name: Option<String>,
    /// Port number.
    pub container_port: u16,
    /// `TCP` (default), `UDP` or `SCTP`.
    pub protocol: Option<String>,
}

/// Pod- or container-level security settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SecurityContext {
    /// Refuse to start as uid 0.
    pub run_as_non_root: Option<bool>,
    /// Uid.
    pub run_as_user: Option<i64>,
    /// Read-only root filesystem (container only).
    pub read_only_root_filesystem: Option<bool>,
    /// `no_new_privs` (container only).
    pub allow_privilege_escalation: Option<bool>,
    /// Privileged mode (container only).
    pub privileged: Option<bool>,
    /// Capabilities (container only).
    pub capabilities: Option<Capabilities>,
    /// Seccomp profile.
    pub seccomp_profile: Option<SeccompProfile>,
}

/// Capabilities added and dropped.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Capabilities {
    /// Added.
    pub add: Vec<String>,
    /// Dropped.
    pub drop: Vec<String>,
}

/// A seccomp profile.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SeccompProfile {
    /// `RuntimeDefault`, `Localhost` or `Unconfined`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// Requests and limits.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Resources {
    /// Requests by resource name.
    pub requests: BTreeMap<String, Value>,
    /// Limits by resource name.
    pub limits: BTreeMap<String, Value>,
}

/// A probe: which handler it uses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Probe {
    /// Native gRPC health check.
    pub grpc: Option<GrpcAction>,
    /// HTTP GET.
    pub http_get: Option<Value>,
    /// Command.
    pub exec: Option<Value>,
    /// TCP connect.
    pub tcp_socket: Option<TcpSocketAction>,
}

/// A TCP connect probe.
#[derive(Debug, Clone, Deserialize)]
pub struct TcpSocketAction {
    /// Port number or container port name.
    pub(crate) port: IntOrString,
}

/// A native gRPC probe.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct GrpcAction {
    /// Port (numbers only: the API has no named gRPC probe ports).
    pub port: u16,
    /// `grpc.health.v1` service name; empty for the whole server.
    pub service: Option<String>,
}

/// A volume, as far as it references ConfigMaps and Secrets.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Volume {
    /// Volume name.
    pub name: String,
    /// A Secret volume.
    pub secret: Option<SecretVolume>,
    /// A ConfigMap volume.
    pub config_map: Option<ConfigMapVolume>,
    /// A projected volume.
    pub projected: Option<ProjectedVolume>,
}

/// A Secret volume.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SecretVolume {
    /// Secret name.
    pub secret_name: String,
    /// Keys projected (all when empty).
    pub items: Vec<KeyToPath>,
}

/// A ConfigMap volume.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ConfigMapVolume {
    /// ConfigMap name.
    pub name: String,
    /// Keys projected (all when empty).
    pub items: Vec<KeyToPath>,
}

/// A projected volume.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ProjectedVolume {
    /// Its sources.
    pub sources: Vec<ProjectedSource>,
}

/// One source of a projected volume.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProjectedSource {
    /// Keys of a Secret.
    pub secret: Option<ConfigMapVolume>,
    /// Keys of a ConfigMap.
    pub config_map: Option<ConfigMapVolume>,
}

/// `items[]` of a ConfigMap or Secret volume.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct KeyToPath {
    /// Key.
    pub key: String,
    /// The file it becomes, relative to the volume.
    pub path: String,
}

/// A workload: an object that runs pods from a template.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The object.
    pub object: Object,
    /// Its pod template.
    pub template: PodTemplate,
    /// `spec.replicas`, when the kind has it and it is set.
    pub replicas: Option<i64>,
}

impl Workload {
    /// Whether its pods run until stopped (as opposed to Jobs, which finish).
    pub fn long_running(&self) -> bool {
        matches!(
            self.object.kind.as_str(),
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Pod"
        )
    }

    /// Labels of its pods.
    pub fn pod_labels(&self) -> &BTreeMap<String, String> {
        &self.template.metadata.labels
    }
}

/// The workloads among `objects`, with their pod templates.
pub(crate) fn workloads(objects: &[Object]) -> anyhow::Result<Vec<Workload>> {
    let mut workloads = Vec::new();
    for object in objects {
        let template = match object.kind.as_str() {
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
                object.raw.pointer("/spec/template")
            }
            "CronJob" => object.raw.pointer("/spec/jobTemplate/spec/template"),
            "Pod" => Some(&object.raw),
            _ => None,
        };
        let Some(template) = template else { continue };
        let template: PodTemplate = serde_json::from_value(template.clone())
            .with_context(|| format!("{}: bad pod template", object.id()))?;
        let replicas = object.raw.pointer("/spec/replicas").and_then(Value::as_i64);
        workloads.push(Workload {
            object: object.clone(),
            template,
            replicas,
        });
    }
    Ok(workloads)
}

/// The data of a ConfigMap (`data`) or Secret (`stringData`, and `data` base64-decoded).
pub(crate) fn data(object: &Object) -> anyhow::Result<BTreeMap<String, String>> {
    let mut data = BTreeMap::new();
    let text = |field: &str| {
        object
            .raw
            .get(field)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(key, value)| (key.clone(), value.as_str().unwrap_or_default().to_owned()))
    };
    if object.kind == "Secret" {
        for (key, encoded) in text("data") {
            // Long values are folded over several lines.
            let encoded: String = encoded.split_whitespace().collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded.as_bytes())
                .with_context(|| format!("{}: key {key} is not base64", object.id()))?;
            data.insert(key, String::from_utf8_lossy(&bytes).into_owned());
        }
        data.extend(text("stringData"));
    } else {
        data.extend(text("data"));
        // binaryData keys exist too; their values are not text.
        data.extend(text("binaryData").map(|(key, _)| (key, String::new())));
    }
    Ok(data)
}

/// A Service's spec, as far as the checks read it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct ServiceSpec {
    /// `None` for a headless Service.
    #[serde(rename = "clusterIP")]
    pub cluster_ip: Option<String>,
    /// Pods it selects.
    pub selector: BTreeMap<String, String>,
    /// Its ports.
    pub ports: Vec<ServicePort>,
}

/// A Service port.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct ServicePort {
    /// Port name.
    pub name: Option<String>,
    /// Port number.
    pub port: u16,
    /// Container port (number or name); the port itself when unset.
    pub target_port: Option<IntOrString>,
}

/// A PodDisruptionBudget's spec, as far as the checks read it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct PdbSpec {
    /// Pods it protects.
    pub selector: Option<LabelSelector>,
    /// Least available pods.
    pub min_available: Option<IntOrString>,
    /// Most unavailable pods.
    pub max_unavailable: Option<IntOrString>,
}

/// A HorizontalPodAutoscaler's spec, as far as the checks read it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct HpaSpec {
    /// What it scales.
    pub scale_target_ref: ScaleTarget,
    /// Fewest replicas.
    pub min_replicas: Option<i64>,
    /// Most replicas.
    pub max_replicas: i64,
}

/// `scaleTargetRef`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ScaleTarget {
    /// Kind of the target.
    pub kind: String,
    /// Name of the target.
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        let selector: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"app": "a"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["x", "y"]},
                {"key": "legacy", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "NotIn", "values": ["z"]},
            ]
        }))
        .unwrap();
        assert!(selector.matches(&labels(&[("app", "a"), ("tier", "x")])));
        assert!(!selector.matches(&labels(&[("app", "a"), ("tier", "w")])));
        assert!(!selector.matches(&labels(&[("app", "b"), ("tier", "x")])));
        assert!(!selector.matches(&labels(&[("app", "a"), ("tier", "x"), ("legacy", "1")])));
        assert!(!selector.matches(&labels(&[("app", "a"), ("tier", "x"), ("zone", "z")])));
        assert!(LabelSelector::default().matches(&labels(&[])));
    }

    #[test]
    fn parses_documents_and_secret_data() {
        let objects = parse(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: n\n\
             data:\n  url: |\n    aHR0cDov\n    L3g=\nstringData:\n  other: plain\n---\n\
             apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: j\nspec:\n  template:\n\
             \x20   metadata:\n      labels:\n        a: b\n    spec:\n      containers:\n\
             \x20       - name: c\n          image: i\n",
        )
        .unwrap();
        assert_eq!(objects.len(), 2);
        let secret = data(&objects[0]).unwrap();
        assert_eq!(secret["url"], "http://x");
        assert_eq!(secret["other"], "plain");
        let workloads = workloads(&objects).unwrap();
        assert_eq!(workloads.len(), 1);
        assert_eq!(workloads[0].pod_labels()["a"], "b");
        assert!(!workloads[0].long_running());
        assert_eq!(workloads[0].object.namespace(), "default");
    }
}
