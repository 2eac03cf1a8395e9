//! Trigger definition versions, for hot reload.
//!
//! A version is the first 16 hex digits of the SHA-256 of the definition's
//! *text*: a canonical JSON document (`{"handlers", "pipelines", "trigger"}`,
//! keys sorted, no whitespace) holding the trigger as written, every pipeline
//! it names (its handlers, parsed, with their params) and the handler types
//! those handlers resolve to. Layout, comments and key order of the files do
//! not change a version; any change of meaning (a criterion, the expiration, a
//! pipeline's handlers or params) does. The text is stored with the version,
//! so a stream opened under an older version can still be fired or expired
//! by its own definition after the files have changed
//! ([`DefinitionVersion::parse`]).

use crate::config_error::{ConfigError, ConfigErrors};
use crate::pipeline_config::PipelineConfig;
use crate::trigger::TriggerDefinition;
use serde_yaml::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// One version of a trigger definition: its name, version and stored text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionVersion {
    /// The trigger's name.
    pub trigger: String,
    /// The version: 16 hex digits of the text's SHA-256.
    pub version: String,
    /// The canonical definition text (JSON) the version is the hash of.
    pub text: String,
}

/// A definition rebuilt from its stored text: the trigger, its pipelines and
/// the handler types they use.
#[derive(Debug, Clone)]
pub struct VersionedDefinition {
    /// The trigger (its `version` set).
    pub trigger: TriggerDefinition,
    /// The pipelines it names.
    pub pipelines: PipelineConfig,
    /// Handler name -> handler type, for the handlers of those pipelines.
    pub handler_types: BTreeMap<String, String>,
}

impl DefinitionVersion {
    /// The version of `trigger` with the `pipelines` it names; `handler_type`
    /// resolves a handler name to its type (`pipeline_handlers`).
    pub fn of(
        trigger: &TriggerDefinition,
        pipelines: &PipelineConfig,
        handler_type: &dyn Fn(&str) -> String,
    ) -> DefinitionVersion {
        let mut pipes = serde_yaml::Mapping::new();
        let mut handlers = serde_yaml::Mapping::new();
        for name in [&trigger.fire_pipeline, &trigger.expire_pipeline].into_iter().flatten() {
            let Some(entries) = pipelines.get(name) else { continue };
            let list: Vec<Value> = entries
                .iter()
                .map(|e| {
                    handlers.insert(e.name.clone().into(), handler_type(&e.name).into());
                    let mut m = serde_yaml::Mapping::new();
                    m.insert("name".into(), e.name.clone().into());
                    m.insert("params".into(), Value::Mapping(e.params.clone()));
                    Value::Mapping(m)
                })
                .collect();
            pipes.insert(name.clone().into(), Value::Sequence(list));
        }
        let mut doc = serde_yaml::Mapping::new();
        doc.insert("handlers".into(), Value::Mapping(handlers));
        doc.insert("pipelines".into(), Value::Mapping(pipes));
        doc.insert("trigger".into(), trigger.source.clone());
        let mut text = String::new();
        canonical(&Value::Mapping(doc), &mut text);
        let digest = Sha256::digest(text.as_bytes());
        let mut version = String::with_capacity(16);
        for b in &digest[..8] {
            let _ = write!(version, "{b:02x}");
        }
        DefinitionVersion { trigger: trigger.name.clone(), version, text }
    }

    /// Rebuilds the definition from its stored text. Errors name the trigger
    /// and version (the text was valid when stored, so this means a newer
    /// build reads definitions differently, or the row was edited).
    pub fn parse(&self) -> Result<VersionedDefinition, ConfigErrors> {
        let origin = format!("trigger {:?} version {}", self.trigger, self.version);
        let bad = |m: String| ConfigErrors(vec![ConfigError::new(m).context(origin.clone())]);
        let doc: Value = serde_yaml::from_str(&self.text).map_err(|e| bad(format!("stored definition: {e}")))?;
        let (mut errors, mut warnings) = (vec![], vec![]);
        let trigger = TriggerDefinition::from_yaml(&doc["trigger"], 0, &mut errors, &mut warnings);
        // The stored text is JSON this program wrote, not a config file: read
        // as written (serde_yaml), not re-resolved by PyYAML's YAML 1.1 rules.
        let pipelines = PipelineConfig::from_value(doc["pipelines"].clone(), Path::new(&origin))?;
        let mut handler_types = BTreeMap::new();
        if let Value::Mapping(m) = &doc["handlers"] {
            for (k, v) in m {
                if let (Some(k), Some(v)) = (k.as_str(), v.as_str()) {
                    handler_types.insert(k.to_string(), v.to_string());
                }
            }
        }
        match trigger {
            Some(mut trigger) if errors.is_empty() => {
                trigger.version = Some(self.version.clone());
                Ok(VersionedDefinition { trigger, pipelines, handler_types })
            }
            _ => Err(ConfigErrors(errors.into_iter().map(|e| e.context(origin.clone())).collect())),
        }
    }
}

/// Writes `v` as canonical JSON: mapping keys as strings, sorted; no whitespace.
fn canonical(v: &Value, out: &mut String) {
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => out.push_str(&i.to_string()),
            (_, Some(u), _) => out.push_str(&u.to_string()),
            (_, _, Some(f)) if f.is_finite() => {
                out.push_str(&serde_json::Number::from_f64(f).map_or("null".into(), |n| n.to_string()))
            }
            _ => out.push_str(&quote(&n.to_string())),
        },
        Value::String(s) => out.push_str(&quote(s)),
        Value::Sequence(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        Value::Mapping(m) => {
            let mut entries: Vec<(String, &Value)> = m
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        Value::String(s) => s.clone(),
                        other => {
                            let mut s = String::new();
                            canonical(other, &mut s);
                            s
                        }
                    };
                    (key, v)
                })
                .collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&quote(&k));
                out.push(':');
                canonical(v, out);
            }
            out.push('}');
        }
        Value::Tagged(t) => {
            let mut m = serde_yaml::Mapping::new();
            m.insert(t.tag.to_string().into(), t.value.clone());
            canonical(&Value::Mapping(m), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger::TriggerSet;

    fn version(triggers: &str, pipelines: &str) -> DefinitionVersion {
        let (set, _) = TriggerSet::from_yaml_str(triggers, Path::new("t.yaml")).unwrap();
        let p = PipelineConfig::from_yaml_str(pipelines, Path::new("p.yaml")).unwrap();
        let v = DefinitionVersion::of(set.iter().next().unwrap(), &p, &|n: &str| n.to_string());
        v
    }

    const T: &str = "- name: t\n  expiration: \"$last + 1h\"\n  fire_pipeline: p\n  fire_criteria: [{event_type: a.end}]\n  match_criteria: [{event_type: \"a.*\", traits: {n: 3}}]\n";

    /// Layout and key order do not change a version; meaning does, in the
    /// trigger or in a pipeline it names (and only one it names).
    #[test]
    fn versions_follow_meaning_not_layout() {
        let v = version(T, "p: [logger]\nq: [logger]\n");
        assert_eq!(v.version.len(), 16);
        let relaid = "# comment\n- {match_criteria: [{traits: {n: 3}, event_type: \"a.*\"}], fire_criteria: [{event_type: a.end}],\n   fire_pipeline: p, expiration: \"$last + 1h\", name: t}\n";
        assert_eq!(version(relaid, "q: [logger]\np: [{name: logger}]\n").version, v.version);
        assert_eq!(version(T, "p: [logger]\nq: [logger, logger]\n").version, v.version, "unnamed pipeline");
        assert_ne!(version(T, "p: [{name: logger, params: {x: 1}}]\n").version, v.version);
        assert_ne!(version(&T.replace("1h", "2h"), "p: [logger]\n").version, v.version);
        assert_ne!(version(&T.replace("n: 3", "n: 4"), "p: [logger]\n").version, v.version);
    }

    /// The stored text rebuilds the same definition, pipelines and handler types.
    #[test]
    fn text_round_trips() {
        let (set, _) = TriggerSet::from_yaml_str(T, Path::new("t.yaml")).unwrap();
        let p = PipelineConfig::from_yaml_str("p: [{name: hook, params: {url: 'http://x'}}]\n", Path::new("p.yaml"))
            .unwrap();
        let v = DefinitionVersion::of(set.iter().next().unwrap(), &p, &|_| "webhook".to_string());
        let back = v.parse().unwrap();
        assert_eq!(back.trigger.version.as_deref(), Some(v.version.as_str()));
        assert_eq!(back.trigger.fire_criteria.len(), 1);
        assert_eq!(back.pipelines.get("p").unwrap()[0].params.get("url").and_then(|u| u.as_str()), Some("http://x"));
        assert_eq!(back.handler_types.get("hook").map(String::as_str), Some("webhook"));
        assert_eq!(DefinitionVersion::of(&back.trigger, &back.pipelines, &|_| "webhook".into()).version, v.version);
        let broken = DefinitionVersion { text: "{\"trigger\": 5}".into(), ..v };
        assert!(broken.parse().unwrap_err().to_string().contains(&format!("version {}", broken.version)));
    }
}
